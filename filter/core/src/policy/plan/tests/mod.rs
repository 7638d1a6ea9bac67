//! Tests of the plan catalogue: its structure, pattern and action compile errors that
//! name the rule, pattern semantics, first match wins, and the grant. `scale` checks
//! the trie against a naive matcher at 10,000 rules; `placeholders` the `{tenant}` and
//! `{sub}` segments.

use super::*;
use crate::policy::scope::{parse_scopes, Scope};
use crate::wire::testrng::Rng;

mod placeholders;
mod scale;

fn rule(pattern: &str, actions: &[&str]) -> RuleSpec {
    RuleSpec {
        resource_type: "repository".to_owned(),
        pattern: pattern.to_owned(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        tags: None,
    }
}

fn registry_rule(pattern: &str, actions: &[&str]) -> RuleSpec {
    RuleSpec {
        resource_type: "registry".to_owned(),
        ..rule(pattern, actions)
    }
}

fn plan(name: &str, rules: Vec<RuleSpec>) -> PlanSpec {
    PlanSpec {
        name: name.to_owned(),
        rules,
    }
}

fn one_plan(rules: Vec<RuleSpec>) -> Catalogue {
    Catalogue::compile(&[plan("p", rules)]).unwrap_or_else(|e| panic!("{e}"))
}

fn compile_err(plans: &[PlanSpec]) -> PlanError {
    match Catalogue::compile(plans) {
        Ok(_) => panic!("compiled"),
        Err(e) => e,
    }
}

fn pattern_err(pattern: &str) -> PatternError {
    match compile_err(&[plan("p", vec![rule(pattern, &[])])]) {
        PlanError::InvalidPattern { reason, .. } => reason,
        other => panic!("{pattern}: {other:?}"),
    }
}

fn allowed(c: &Catalogue, name: &str) -> Option<Allowed> {
    c.allowed("p", "repository", name)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn matches(pattern: &str, name: &str) -> bool {
    allowed(&one_plan(vec![rule(pattern, &[])]), name).is_some()
}

fn set(actions: &[&str]) -> Allowed {
    let mut s = ActionSet::EMPTY;
    for a in actions {
        s = s.with(ActionSet::bit(a).unwrap_or(0));
    }
    Allowed::Only(s)
}

fn scope(ty: &str, name: &str, actions: &[&str]) -> Scope {
    Scope {
        resource_type: ty.to_owned(),
        name: name.to_owned(),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// Grants one repository scope `a` with `requested` under a plan allowing `allowed`.
fn grant_one(allowed_actions: &[&str], requested: &[&str]) -> Vec<String> {
    let c = one_plan(vec![rule("a", allowed_actions)]);
    let granted = c
        .grant("p", &[scope("repository", "a", requested)])
        .unwrap_or_default();
    granted.into_iter().flat_map(|s| s.actions).collect()
}

// ---- catalogue structure ----

#[test]
fn empty_catalogue() {
    let c = Catalogue::compile(&[]).unwrap_or_default();
    assert!(!c.has_plan("x"));
    assert_eq!(c.plan_names().count(), 0);
}

#[test]
fn plan_names_in_order() {
    let c = Catalogue::compile(&[
        plan("zeta", vec![]),
        plan("alpha", vec![]),
        plan("mid", vec![]),
    ])
    .unwrap_or_default();
    assert_eq!(c.plan_names().collect::<Vec<_>>(), ["zeta", "alpha", "mid"]);
    assert!(c.has_plan("alpha"));
    assert!(!c.has_plan("Alpha"));
}

#[test]
fn plan_without_rules_grants_nothing() {
    let c = one_plan(vec![]);
    assert_eq!(allowed(&c, "a"), None);
    assert_eq!(
        c.grant("p", &[scope("repository", "a", &["pull"])]),
        Ok(vec![])
    );
}

#[test]
fn empty_plan_name() {
    let e = compile_err(&[plan("a", vec![]), plan("", vec![])]);
    assert_eq!(e, PlanError::EmptyName { plan: 1 });
    assert_eq!(e.to_string(), "plans[1].name: plan name is empty");
}

#[test]
fn duplicate_plan_name() {
    let e = compile_err(&[plan("a", vec![]), plan("b", vec![]), plan("a", vec![])]);
    assert_eq!(
        e.to_string(),
        "plans[2].name: \"a\": duplicate plan name (first defined at plans[0])"
    );
}

#[test]
fn unknown_plan() {
    let c = one_plan(vec![rule("**", &["*"])]);
    assert_eq!(
        c.allowed("gold", "repository", "a"),
        Err(UnknownPlan {
            name: "gold".to_owned()
        })
    );
    assert!(c.grant("gold", &[]).is_err());
    assert_eq!(
        UnknownPlan {
            name: "gold".to_owned()
        }
        .to_string(),
        "unknown plan \"gold\""
    );
    let e = c.allowed("bad\n\"plan", "repository", "a");
    assert_eq!(
        e.map_err(|e| e.to_string()),
        Err("unknown plan \"bad?\\\"plan\"".to_owned())
    );
}

// ---- pattern compile errors ----

#[test]
fn error_message_names_location() {
    let e = compile_err(&[
        plan("a", vec![rule("x", &[])]),
        plan(
            "b",
            vec![
                rule("x", &[]),
                rule("y", &[]),
                rule("z", &[]),
                rule("stella-ops/**x", &[]),
            ],
        ),
    ]);
    assert_eq!(
        e.to_string(),
        "plans[1].repositories[3].pattern: \"stella-ops/**x\": \"**\" must be a whole segment"
    );
}

#[test]
fn double_star_inside_segment() {
    for p in ["a**", "**a", "a/b**c", "***", "a/***/b"] {
        assert_eq!(pattern_err(p), PatternError::DoubleStarNotWhole, "{p}");
    }
}

#[test]
fn empty_pattern() {
    assert_eq!(pattern_err(""), PatternError::Empty);
}

#[test]
fn slashes() {
    for p in ["/a", "a/", "/", "/**"] {
        assert_eq!(pattern_err(p), PatternError::LeadingOrTrailingSlash, "{p}");
    }
    assert_eq!(pattern_err("a//b"), PatternError::EmptySegment);
}

#[test]
fn invalid_characters() {
    for (p, c) in [
        ("a b", ' '),
        ("a/b?", '?'),
        ("team/[ab]", '['),
        ("é", 'é'),
        ("a@b", '@'),
        ("a\tb", '\t'),
    ] {
        assert_eq!(pattern_err(p), PatternError::InvalidCharacter(c), "{p:?}");
    }
    assert_eq!(
        PatternError::InvalidCharacter('?').to_string(),
        "character '?' can never appear in a repository name"
    );
    assert_eq!(
        PatternError::InvalidCharacter('\t').to_string(),
        "character U+0009 can never appear in a repository name"
    );
}

#[test]
fn uppercase_only_in_host() {
    assert_eq!(pattern_err("Team/*"), PatternError::Uppercase);
    assert_eq!(pattern_err("Foo.bar"), PatternError::Uppercase);
    assert_eq!(pattern_err("example.com/Team"), PatternError::Uppercase);
    assert!(matches(
        "Registry.Example.com/team",
        "Registry.Example.com/team"
    ));
}

#[test]
fn colon_only_in_host() {
    assert_eq!(pattern_err("team/a:b"), PatternError::ColonOutsideHost);
    assert_eq!(pattern_err("a:b"), PatternError::ColonOutsideHost);
    assert!(matches("localhost:5000/**", "localhost:5000/x/y"));
    assert!(matches("*:5000/app", "localhost:5000/app"));
    assert!(!matches("*:5000/app", "localhost:5001/app"));
}

#[test]
fn registry_patterns() {
    let c = one_plan(vec![registry_rule("catalog", &["*"])]);
    assert_eq!(
        c.allowed("p", "registry", "catalog"),
        Ok(Some(Allowed::All))
    );
    let c = one_plan(vec![registry_rule("*", &["*"])]);
    assert_eq!(
        c.allowed("p", "registry", "catalog"),
        Ok(Some(Allowed::All))
    );
    for p in ["catalog/x", "cat*", "**", "", "Catalog"] {
        let e = compile_err(&[plan("p", vec![registry_rule(p, &["*"])])]);
        assert!(
            matches!(
                e,
                PlanError::InvalidPattern {
                    reason: PatternError::RegistryPattern,
                    ..
                }
            ),
            "{p}"
        );
    }
}

#[test]
fn resource_type_names() {
    let c = Catalogue::compile(&[plan(
        "p",
        vec![RuleSpec {
            resource_type: String::new(),
            ..rule("a", &[])
        }],
    )])
    .unwrap_or_default();
    assert_eq!(
        c.allowed("p", "repository", "a"),
        Ok(Some(Allowed::Only(ActionSet::PULL)))
    );
    let e = compile_err(&[plan(
        "p",
        vec![
            rule("a", &[]),
            RuleSpec {
                resource_type: "repo".to_owned(),
                ..rule("a", &[])
            },
        ],
    )]);
    assert_eq!(
            e.to_string(),
            "plans[0].repositories[1].type: \"repo\": unknown resource type (expected \"repository\" or \"registry\")"
        );
}

// ---- actions ----

#[test]
fn default_actions_pull() {
    let c = one_plan(vec![rule("a", &[])]);
    assert_eq!(allowed(&c, "a"), Some(set(&["pull"])));
}

#[test]
fn star_means_all() {
    let c = one_plan(vec![rule("a", &["pull", "*"])]);
    assert_eq!(allowed(&c, "a"), Some(Allowed::All));
}

#[test]
fn duplicate_actions_ok() {
    let c = one_plan(vec![rule("a", &["push", "pull", "push"])]);
    assert_eq!(allowed(&c, "a"), Some(set(&["pull", "push"])));
}

#[test]
fn unknown_action_refused() {
    let e = compile_err(&[plan("p", vec![rule("a", &["pull", "pul"])])]);
    assert_eq!(
            e.to_string(),
            "plans[0].repositories[0].actions: \"pul\": unknown action (expected \"pull\", \"push\", \"delete\" or \"*\")"
        );
    for bad in ["Pull", "", " pull", "**", "read"] {
        assert!(
            matches!(
                compile_err(&[plan("p", vec![rule("a", &[bad])])]),
                PlanError::InvalidAction {
                    reason: ActionError::Unknown,
                    ..
                }
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn registry_actions_must_be_star() {
    for actions in [&["pull"][..], &[][..], &["*", "pull"][..]] {
        let e = compile_err(&[plan("p", vec![registry_rule("catalog", actions)])]);
        assert!(
            matches!(
                e,
                PlanError::InvalidAction {
                    reason: ActionError::RegistryNeedsStar,
                    ..
                }
            ),
            "{actions:?}"
        );
    }
    let e = compile_err(&[plan("p", vec![registry_rule("catalog", &[])])]);
    assert_eq!(
        e.to_string(),
        "plans[0].repositories[0].actions: registry rules only support the action \"*\""
    );
    let e = compile_err(&[plan("p", vec![registry_rule("catalog", &["pull"])])]);
    assert_eq!(
        e.to_string(),
        "plans[0].repositories[0].actions: \"pull\": registry rules only support the action \"*\""
    );
}

#[test]
fn action_set_api() {
    let s = ActionSet::EMPTY.with(4).with(1);
    assert!(s.contains("pull") && s.contains("delete") && !s.contains("push"));
    assert!(!s.contains("*") && !s.contains("x"));
    assert_eq!(s.names().collect::<Vec<_>>(), ["pull", "delete"]);
    assert!(ActionSet::EMPTY.is_empty());
    assert!(Allowed::All.permits("delete"));
    assert!(!Allowed::All.permits("frob"));
    assert!(!Allowed::All.permits("*"));
}

// ---- pattern semantics ----

#[test]
fn literal_pattern() {
    assert!(matches("team/app", "team/app"));
    assert!(!matches("team/app", "team/app2"));
    assert!(!matches("team/app", "team"));
    assert!(!matches("team/app", "team/app/x"));
    assert!(!matches("team", "team/app"));
}

#[test]
fn star_is_one_segment() {
    assert!(matches("team/*", "team/app"));
    assert!(!matches("team/*", "team"));
    assert!(!matches("team/*", "team/a/b"));
    assert!(matches("*", "alpine"));
    assert!(!matches("*", "library/alpine"));
    assert!(matches("*/*", "library/alpine"));
    assert!(matches("*/app", "x/app"));
    assert!(!matches("*/app", "x/y/app"));
}

#[test]
fn glob_within_segment() {
    assert!(matches("team/base-*", "team/base-alpine"));
    assert!(matches("team/base-*", "team/base-"));
    assert!(!matches("team/base-*", "team/bas"));
    assert!(!matches("team/base-*", "team/base-a/b"));
    assert!(matches("team/*-dev", "team/app-dev"));
    assert!(!matches("team/*-dev", "team/app-dev2"));
    assert!(matches("team/a*b*c", "team/abc"));
    assert!(matches("team/a*b*c", "team/axxbyyc"));
    assert!(matches("team/a*b*c", "team/abcbc"));
    assert!(!matches("team/a*b*c", "team/acb"));
    assert!(matches("t*m/*", "team/x"));
    assert!(!matches("a*a", "a"));
    assert!(matches("a*a", "aa"));
}

#[test]
fn double_star_tail() {
    assert!(matches("a/**", "a"));
    assert!(matches("a/**", "a/b"));
    assert!(matches("a/**", "a/b/c"));
    assert!(!matches("a/**", "ab"));
    assert!(!matches("a/**", "b/a"));
}

#[test]
fn double_star_alone_matches_everything() {
    for name in ["a", "a/b", "a/b/c/d/e", "localhost:5000/x"] {
        assert!(matches("**", name), "{name}");
    }
}

#[test]
fn double_star_head_and_middle() {
    assert!(matches("**/app", "app"));
    assert!(matches("**/app", "x/y/app"));
    assert!(!matches("**/app", "x/app2"));
    assert!(matches("a/**/b", "a/b"));
    assert!(matches("a/**/b", "a/x/b"));
    assert!(matches("a/**/b", "a/x/y/b"));
    assert!(!matches("a/**/b", "a/x/y"));
    assert!(matches("a/**/b/**", "a/x/b/y/z"));
    assert!(matches("**/**", "a/b"));
    assert!(matches("a/**/*-dev", "a/x/y/app-dev"));
    assert!(!matches("a/**/*-dev", "a"));
}

#[test]
fn matching_is_case_sensitive() {
    assert!(!matches("example.com/**", "Example.com/x"));
}

#[test]
fn glob_matcher_unit() {
    let cases = [
        ("*", "", true),
        ("*", "abc", true),
        ("a*", "a", true),
        ("*a", "ba", true),
        ("*a", "ab", false),
        ("a*b", "ab", true),
        ("a*b", "axb", true),
        ("a*b", "axbx", false),
        ("*x*", "abxcd", true),
        ("*x*", "abcd", false),
        ("a*b*c*d", "aXbXcXd", true),
        ("a*b*c*d", "aXcXbXd", false),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            Glob::new(pattern).matches(text),
            expected,
            "{pattern} {text}"
        );
    }
}

// ---- first match wins ----

#[test]
fn narrow_rule_first() {
    let c = one_plan(vec![rule("team/secret", &[]), rule("team/*", &["*"])]);
    assert_eq!(allowed(&c, "team/secret"), Some(set(&["pull"])));
    assert_eq!(allowed(&c, "team/other"), Some(Allowed::All));
}

#[test]
fn broad_rule_first_shadows_later_narrow() {
    let c = one_plan(vec![rule("team/**", &["pull"]), rule("team/app", &["*"])]);
    assert_eq!(allowed(&c, "team/app"), Some(set(&["pull"])));
}

#[test]
fn later_broader_rule_does_not_override() {
    let c = one_plan(vec![rule("team/app", &["pull"]), rule("**", &["*"])]);
    assert_eq!(allowed(&c, "team/app"), Some(set(&["pull"])));
    assert_eq!(allowed(&c, "other"), Some(Allowed::All));
}

#[test]
fn identical_patterns_first_wins() {
    let c = one_plan(vec![
        rule("a/*", &["push"]),
        rule("a/*", &["*"]),
        rule("a/*", &["delete"]),
    ]);
    assert_eq!(allowed(&c, "a/b"), Some(set(&["push"])));
}

#[test]
fn first_match_across_kinds() {
    let c = one_plan(vec![
        rule("**/x", &["delete"]),
        rule("a/*", &["push"]),
        rule("a/x", &["pull"]),
    ]);
    assert_eq!(allowed(&c, "a/x"), Some(set(&["delete"])));
    assert_eq!(allowed(&c, "a/y"), Some(set(&["push"])));
}

#[test]
fn registry_and_repository_rules_are_separate() {
    let c = one_plan(vec![
        rule("catalog", &["pull"]),
        registry_rule("catalog", &["*"]),
    ]);
    assert_eq!(allowed(&c, "catalog"), Some(set(&["pull"])));
    assert_eq!(
        c.allowed("p", "registry", "catalog"),
        Ok(Some(Allowed::All))
    );
    assert_eq!(c.allowed("p", "plugin", "catalog"), Ok(None));
}

#[test]
fn plans_are_independent() {
    let c = Catalogue::compile(&[
        plan("free", vec![rule("public/**", &[])]),
        plan("gold", vec![rule("**", &["pull", "push"])]),
    ])
    .unwrap_or_default();
    assert_eq!(c.allowed("free", "repository", "private/x"), Ok(None));
    assert_eq!(
        c.allowed("gold", "repository", "private/x"),
        Ok(Some(set(&["pull", "push"])))
    );
}

// ---- grant ----

#[test]
fn grant_intersection_table() {
    let table: [(&[&str], &[&str], &[&str]); 16] = [
        (&["pull"], &["pull"], &["pull"]),
        (&["pull"], &["push"], &[]),
        (&["pull"], &["pull", "push"], &["pull"]),
        (&["pull"], &["push", "pull"], &["pull"]),
        (&["pull", "push"], &["push", "pull"], &["push", "pull"]),
        (&["*"], &["push", "pull"], &["push", "pull"]),
        (&["*"], &["delete"], &["delete"]),
        (&["*"], &["*"], &["*"]),
        (&["*"], &["pull", "*"], &["*"]),
        (&["pull", "push"], &["*"], &["pull", "push"]),
        (&["delete", "pull"], &["*"], &["pull", "delete"]),
        (
            &["push", "pull", "delete"],
            &["*"],
            &["pull", "push", "delete"],
        ),
        (&["*"], &["frob"], &[]),
        (&["*"], &["pull", "frob"], &["pull"]),
        (&[], &["*"], &["pull"]),
        (&["delete"], &["pull", "push"], &[]),
    ];
    for (allowed_actions, requested, expected) in table {
        assert_eq!(
            grant_one(allowed_actions, requested),
            expected,
            "allowed {allowed_actions:?} requested {requested:?}"
        );
    }
}

#[test]
fn grant_omits_unmatched_and_keeps_order() {
    let c = one_plan(vec![
        rule("team/**", &["pull", "push"]),
        registry_rule("catalog", &["*"]),
    ]);
    let requested = parse_scopes([
        "repository:other/x:pull repository:team/b:push,pull,delete",
        "registry:catalog:* plugin:x:pull repository:team/a:delete repository:team/c:pull",
    ])
    .unwrap_or_default();
    assert_eq!(
        c.grant("p", &requested),
        Ok(vec![
            scope("repository", "team/b", &["push", "pull"]),
            scope("registry", "catalog", &["*"]),
            scope("repository", "team/c", &["pull"]),
        ])
    );
}

#[test]
fn grant_registry_without_rule() {
    let c = one_plan(vec![rule("**", &["*"])]);
    assert_eq!(
        c.grant("p", &[scope("registry", "catalog", &["*"])]),
        Ok(vec![])
    );
}

#[test]
fn grant_nothing_requested() {
    let c = one_plan(vec![rule("**", &["*"])]);
    assert_eq!(c.grant("p", &[]), Ok(vec![]));
}

#[test]
fn grant_host_port_names() {
    let c = one_plan(vec![rule("localhost:5000/team/*", &["*"])]);
    let requested =
        parse_scopes(["repository:localhost:5000/team/app:pull,push"]).unwrap_or_default();
    assert_eq!(
        c.grant("p", &requested),
        Ok(vec![scope(
            "repository",
            "localhost:5000/team/app",
            &["pull", "push"]
        )])
    );
}
