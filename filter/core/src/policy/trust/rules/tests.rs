//! A token's own rules: intersection with the plans' grant, first match, one-segment `*`,
//! hostile rules refused, and the property that no rule widens a plan's grant.

use proptest::prelude::*;

use super::*;

fn rules(r: &[&str]) -> Result<TokenRules, String> {
    TokenRules::compile(&r.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
}

fn ok(r: &[&str]) -> TokenRules {
    rules(r).unwrap_or_else(|e| panic!("{r:?}: {e}"))
}

fn scope(name: &str, actions: &[&str]) -> Scope {
    Scope {
        resource_type: "repository".into(),
        name: name.into(),
        actions: actions.iter().map(|a| (*a).to_string()).collect(),
    }
}

fn narrowed(r: &TokenRules, name: &str, actions: &[&str]) -> Vec<String> {
    r.narrow(&[scope(name, actions)])
        .into_iter()
        .flat_map(|s| s.actions)
        .collect()
}

#[test]
fn the_grant_is_narrowed_to_the_first_matching_rule() {
    let r = ok(&[
        "repository:acme/app/secret:pull",
        "repository:acme/app/*:pull,push",
        "repository:acme/**:pull",
    ]);
    assert_eq!(
        narrowed(&r, "acme/app/web", &["pull", "push"]),
        ["pull", "push"]
    );
    // The first matching rule decides, even when a later one would allow more.
    assert_eq!(narrowed(&r, "acme/app/secret", &["pull", "push"]), ["pull"]);
    assert_eq!(narrowed(&r, "acme/other", &["pull", "push"]), ["pull"]);
    assert_eq!(narrowed(&r, "acme/a/b/c", &["push"]), Vec::<String>::new());
    // `*` is one segment.
    assert_eq!(
        narrowed(&r, "acme/app/web/x", &["push"]),
        Vec::<String>::new()
    );
    // No rule matching: nothing, the scope is dropped.
    assert!(r.narrow(&[scope("globex/app", &["pull"])]).is_empty());
    // Only narrowing: what the plans did not grant stays out even if a rule allows it.
    assert_eq!(narrowed(&r, "acme/app/web", &["pull"]), ["pull"]);
    // A plan's `*` becomes the rule's actions; a rule's `*` keeps the plan's.
    assert_eq!(narrowed(&r, "acme/app/web", &["*"]), ["pull", "push"]);
    let all = ok(&["repository:acme/**:*"]);
    assert_eq!(narrowed(&all, "acme/x", &["*"]), ["*"]);
    assert_eq!(narrowed(&all, "acme/x", &["delete"]), ["delete"]);
    // Registry rules take only `*`, as in a plan.
    let reg = ok(&["registry:catalog:*"]);
    let cat = Scope {
        resource_type: "registry".into(),
        name: "catalog".into(),
        actions: vec!["*".into()],
    };
    assert_eq!(
        reg.narrow(std::slice::from_ref(&cat)),
        std::slice::from_ref(&cat)
    );
    assert!(ok(&["repository:**:*"]).narrow(&[cat]).is_empty());
    assert_eq!(r.source().len(), 3);
}

#[test]
fn hostile_rules_are_refused() {
    let refused = |r: &[&str], why: &str| {
        let e = rules(r).map(|_| ()).unwrap_err();
        assert!(e.contains(why), "{r:?}: {e}");
    };
    refused(&[], "no rule");
    let many = vec!["repository:a:pull"; MAX_RULES + 1];
    refused(&many, "more than 64");
    assert!(rules(&vec!["repository:a:pull"; MAX_RULES]).is_ok());
    let long = format!("repository:{}:pull", "a".repeat(MAX_RULE_BYTES));
    refused(&[&long], "rule 0: longer than");
    for (rule, why) in [
        ("", "type:pattern:actions"),
        ("acme/app", "type:pattern:actions"),
        ("repository:acme/app", "type:pattern:actions"),
        ("blob:acme/app:pull", "neither repository nor registry"),
        (
            "Repository:acme/app:pull",
            "neither repository nor registry",
        ),
        ("repository:acme/../x:pull", ". or .."),
        ("repository:../x:pull", ". or .."),
        ("repository:acme/.:pull", ". or .."),
        ("repository:{tenant}/*:pull", "placeholders"),
        ("repository:acme/{sub}:pull", "placeholders"),
        ("repository:acme/app:", "no action"),
        ("repository:acme/app:pull,", "no action"),
        ("repository:acme/app:,push", "no action"),
        ("repository::pull", "pattern is empty"),
        ("repository:acme//x:pull", "empty segment"),
        ("repository:/acme:pull", "start or end"),
        ("repository:acme/%2F:pull", "character '%'"),
        ("repository:acme/a b:pull", "U+0020"),
        ("repository:Acme/x:pull", "uppercase"),
        ("repository:acme/a**:pull", "whole segment"),
        ("repository:acme/x:admin", "unknown action"),
        ("repository:acme/x:pull push", "unknown action"),
        ("registry:catalog:pull", "registry rules only"),
        ("registry:acme:*", "registry rules match only"),
    ] {
        refused(&["repository:ok/*:pull", rule], why);
        // The failing rule is named by its index.
        let e = rules(&["repository:ok/*:pull", rule])
            .map(|_| ())
            .unwrap_err();
        assert!(e.starts_with("rule 1:"), "{rule:?}: {e}");
    }
    // A registry host's port is part of the pattern, not a separator.
    let port = ok(&["repository:localhost:5000/acme/*:pull"]);
    assert_eq!(
        narrowed(&port, "localhost:5000/acme/x", &["pull", "push"]),
        ["pull"]
    );
}

fn pattern() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("acme".to_string()),
        Just("app".to_string()),
        Just("*".to_string()),
        Just("**".to_string()),
        Just("a*".to_string()),
        Just("..".to_string()),
        Just("x".to_string()),
    ];
    prop::collection::vec(seg, 1..4).prop_map(|v| v.join("/"))
}

fn actions() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("pull".to_string()),
        Just("push".to_string()),
        Just("pull,push".to_string()),
        Just("*".to_string()),
        Just("delete,pull".to_string()),
    ]
}

proptest! {
    /// Whatever rules a token carries, the narrowed grant is a subset of the plans':
    /// no scope the plans did not grant, no action they did not grant (a granted `*`
    /// stays `*` or becomes some of pull, push, delete).
    #[test]
    fn no_rule_widens_the_plans_grant(
        rs in prop::collection::vec((pattern(), actions()), 1..6),
        granted in prop::collection::vec((
            prop::collection::vec(prop_oneof![
                Just("acme"), Just("app"), Just("x"), Just("other")
            ], 1..4),
            prop::sample::subsequence(vec!["pull", "push", "delete", "*"], 1..3),
        ), 0..5),
    ) {
        let strings: Vec<String> = rs.iter().map(|(p, a)| format!("repository:{p}:{a}")).collect();
        let Ok(r) = TokenRules::compile(&strings) else {
            return Ok(());
        };
        let plan: Vec<Scope> = granted.iter().map(|(n, a)| scope(&n.join("/"), a)).collect();
        for got in r.narrow(&plan) {
            let within = plan.iter().any(|p| {
                p.name == got.name
                    && got
                        .actions
                        .iter()
                        .all(|a| p.actions.iter().any(|b| b == "*" || b == a))
            });
            prop_assert!(within, "{} {:?} widened {plan:?} under {strings:?}", got.name, got.actions);
        }
    }
}
