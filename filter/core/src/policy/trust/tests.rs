//! Trust policies: conditions (exact, `*`, `**`), first match, templates and their value
//! checks, tenants, plans claims, mistyped claims failing closed, configuration errors,
//! and the property that no claim value widens a grant.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::policy::plan::{Catalogue, Placeholders, PlanSpec, RuleSpec};
use crate::policy::scope::Scope;

fn claims(pairs: &[(&str, Claim)]) -> BTreeMap<String, Claim> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn s(v: &str) -> Claim {
    Claim::Str(v.to_string())
}

fn spec(name: &str, conds: &[(&str, &[&str])]) -> TrustSpec {
    TrustSpec {
        name: name.into(),
        claims: conds
            .iter()
            .map(|(c, alts)| {
                (
                    (*c).to_string(),
                    alts.iter().map(|a| (*a).to_string()).collect(),
                )
            })
            .collect(),
        plans: vec!["ci".into()],
        ..TrustSpec::default()
    }
}

fn plans_known(p: &str) -> bool {
    ["ci", "read", "write", "admin"].contains(&p)
}

fn compile(specs: &[TrustSpec]) -> TrustPolicies {
    TrustPolicies::compile(specs, &plans_known).unwrap_or_else(|e| panic!("{e:?}"))
}

fn eval(p: &TrustPolicies, c: &BTreeMap<String, Claim>) -> Result<Outcome, TrustDenial> {
    p.evaluate(&|n| c.get(n), &plans_known)
}

fn github(repository: &str, git_ref: &str) -> BTreeMap<String, Claim> {
    let owner = repository.split('/').next().unwrap_or("");
    claims(&[
        ("sub", s(&format!("repo:{repository}:ref:{git_ref}"))),
        ("repository", s(repository)),
        ("repository_owner", s(owner)),
        ("ref", s(git_ref)),
    ])
}

fn github_policy() -> TrustSpec {
    TrustSpec {
        subject: Some("github:{repository}@{ref}".into()),
        tenant: Some("{repository_owner}".into()),
        ..spec(
            "acme-main",
            &[
                ("repository_owner", &["acme"]),
                ("ref", &["refs/heads/main"]),
            ],
        )
    }
}

#[test]
fn a_github_token_of_the_main_branch_gets_its_subject_tenant_and_plan() {
    let p = compile(&[github_policy()]);
    let out = eval(&p, &github("acme/app", "refs/heads/main")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.policy, "acme-main");
    assert_eq!(out.subject, "github:acme/app@refs/heads/main");
    assert_eq!(out.tenant.as_deref(), Some("acme"));
    assert_eq!(out.plans, vec!["ci"]);
    assert_eq!(out.license, None);
    // Another ref, another owner, a look-alike owner: no policy.
    for (repo, r) in [
        ("acme/app", "refs/heads/dev"),
        ("acme/app", "refs/heads/main2"),
        ("acme/app", "refs/heads/main/x"),
        ("acme/app", "refs/tags/main"),
        ("evil/app", "refs/heads/main"),
        ("acme-evil/app", "refs/heads/main"),
        ("Acme/app", "refs/heads/main"),
    ] {
        assert_eq!(
            eval(&p, &github(repo, r)),
            Err(TrustDenial::NoMatch),
            "{repo} {r}"
        );
    }
    assert_eq!(p.claims(), ["ref", "repository", "repository_owner"]);
}

#[test]
fn patterns_star_stays_within_slashes_and_colons_double_star_does_not() {
    let g = |p: &str| Glob::compile(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let sa = g("system:serviceaccount:ci:*");
    assert!(sa.matches("system:serviceaccount:ci:builder"));
    assert!(
        !sa.matches("system:serviceaccount:ci:"),
        "* needs a character"
    );
    assert!(!sa.matches("system:serviceaccount:ci:a:b"));
    assert!(!sa.matches("system:serviceaccount:cix:builder"));
    assert!(!sa.matches("system:serviceaccount:ci"));
    let rel = g("refs/heads/release/*");
    assert!(rel.matches("refs/heads/release/1.0"));
    assert!(!rel.matches("refs/heads/release/1.0/hotfix"));
    assert!(!rel.matches("refs/heads/release"));
    let any = g("refs/heads/**");
    assert!(any.matches("refs/heads/a/b/c"));
    assert!(!any.matches("refs/tags/a"));
    let mid = g("a*b*c");
    assert!(mid.matches("aXbYc") && mid.matches("abbbc") && !mid.matches("abc"));
    assert!(!mid.matches("ab") && !mid.matches("a/b/c") && !mid.matches("axb/c"));
    let exact = g("refs/heads/main");
    assert!(exact.matches("refs/heads/main") && !exact.matches("refs/heads/mainx"));
    // Never a whole-value wildcard; no empty value; bounded.
    for bad in ["*", "**", "", "a***b"] {
        assert!(Glob::compile(bad).is_err(), "{bad:?}");
    }
    assert!(Glob::compile(&"a".repeat(MAX_PATTERN_BYTES + 1)).is_err());
    // A very long value never matches, and costs a bounded table.
    assert!(!g("**x").matches(&"a".repeat(MAX_VALUE_BYTES + 1)));
    assert!(g("**x").matches(&format!("{}x", "a".repeat(MAX_VALUE_BYTES - 1))));
}

#[test]
fn the_first_matching_policy_decides() {
    let mut prod = spec(
        "prod",
        &[("environment", &["prod"]), ("repository_owner", &["acme"])],
    );
    prod.plans = vec!["write".into()];
    let mut any_branch = spec("branches", &[("repository_owner", &["acme"])]);
    any_branch.plans = vec!["read".into()];
    let p = compile(&[prod, any_branch]);
    let mut c = github("acme/app", "refs/heads/x");
    assert_eq!(eval(&p, &c).map(|o| o.policy), Ok("branches".into()));
    c.insert("environment".into(), s("prod"));
    let out = eval(&p, &c).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (out.policy.as_str(), out.plans),
        ("prod", vec!["write".to_string()])
    );
    c.insert("environment".into(), s("staging"));
    assert_eq!(eval(&p, &c).map(|o| o.policy), Ok("branches".into()));
}

#[test]
fn mistyped_claims_fail_closed() {
    let p = compile(&[github_policy()]);
    for wrong in [
        Claim::Other,
        Claim::List(vec!["acme".into()]),
        Claim::List(Vec::new()),
    ] {
        let mut c = github("acme/app", "refs/heads/main");
        c.insert("repository_owner".into(), wrong.clone());
        assert_eq!(
            eval(&p, &c),
            Err(TrustDenial::WrongType("repository_owner".into())),
            "{wrong:?}"
        );
    }
    // A later, broader policy is not reached through a mistyped claim.
    let broad = spec("broad", &[("sub", &["repo:**"])]);
    let p = compile(&[github_policy(), broad]);
    let mut c = github("acme/app", "refs/heads/main");
    c.insert("ref".into(), Claim::Other);
    assert_eq!(eval(&p, &c), Err(TrustDenial::WrongType("ref".into())));
    // A missing condition claim is simply no match.
    let mut c = github("acme/app", "refs/heads/main");
    c.remove("ref");
    assert_eq!(eval(&p, &c).map(|o| o.policy), Ok("broad".into()));
}

#[test]
fn templates_refuse_hostile_values_and_missing_or_mistyped_claims() {
    let mut pol = spec("p", &[("sub", &["x"])]);
    pol.subject = Some("ci:{project}".into());
    pol.tenant = Some("{namespace}".into());
    let p = compile(&[pol]);
    let base = || {
        claims(&[
            ("sub", s("x")),
            ("project", s("g/app")),
            ("namespace", s("acme")),
        ])
    };
    let out = eval(&p, &base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (out.subject.as_str(), out.tenant.as_deref()),
        ("ci:g/app", Some("acme"))
    );
    for bad in [
        "..",
        "a/../b",
        "{tenant}",
        "{sub}",
        "*",
        "a*",
        "%2F",
        "a%2fb",
        "a b",
        "",
        "\u{0}",
        "é",
        "a\\b",
        "a\"b",
        "a?b",
        "line\nbreak",
    ] {
        let mut c = base();
        c.insert("project".into(), s(bad));
        assert_eq!(
            eval(&p, &c),
            Err(TrustDenial::Render(RenderError::Refused("project".into()))),
            "{bad:?}"
        );
    }
    let mut c = base();
    c.insert("project".into(), s(&"a".repeat(256)));
    assert!(matches!(
        eval(&p, &c),
        Err(TrustDenial::Render(RenderError::Refused(_)))
    ));
    let mut c = base();
    c.insert("project".into(), s(&"a".repeat(253)));
    assert!(
        matches!(
            eval(&p, &c),
            Err(TrustDenial::Render(RenderError::Refused(_)))
        ),
        "the rendered subject is bounded too"
    );
    let mut c = base();
    c.remove("project");
    assert_eq!(
        eval(&p, &c),
        Err(TrustDenial::Render(RenderError::Missing("project".into())))
    );
    let mut c = base();
    c.insert("project".into(), Claim::List(vec!["a".into()]));
    assert_eq!(
        eval(&p, &c),
        Err(TrustDenial::Render(RenderError::WrongType(
            "project".into()
        )))
    );
    // The tenant must be one path component: `/`, uppercase, `..` never reach a pattern.
    for bad in ["a/b", "ACME", "-acme", "a..b", "a%2Fb", "acme/", "x__-y"] {
        let mut c = base();
        c.insert("namespace".into(), s(bad));
        let got = eval(&p, &c);
        assert!(
            matches!(
                got,
                Err(TrustDenial::InvalidTenant) | Err(TrustDenial::Render(_))
            ),
            "{bad:?}: {got:?}"
        );
    }
}

#[test]
fn group_plans_come_from_a_list_or_string_claim_and_only_name_known_plans() {
    let mut pol = spec("groups", &[("iss_env", &["corp"])]);
    pol.plans = vec!["read".into()];
    pol.plans_claim = Some("groups".into());
    let p = compile(&[pol]);
    let with = |g: Claim| claims(&[("iss_env", s("corp")), ("sub", s("alice")), ("groups", g)]);
    let out = eval(
        &p,
        &with(Claim::List(vec![
            "write".into(),
            "nobody".into(),
            "read".into(),
            "admin".into(),
        ])),
    );
    assert_eq!(
        out.map(|o| o.plans),
        Ok(vec!["read".into(), "write".into(), "admin".into()])
    );
    assert_eq!(
        eval(&p, &with(s("write"))).map(|o| o.plans),
        Ok(vec!["read".into(), "write".into()])
    );
    assert_eq!(
        eval(&p, &with(Claim::Other)),
        Err(TrustDenial::WrongType("groups".into()))
    );
    // Only the claim, no fixed plan: a token naming no known plan gets none.
    let mut pol = spec("only-groups", &[("iss_env", &["corp"])]);
    pol.plans = Vec::new();
    pol.plans_claim = Some("groups".into());
    let p = compile(&[pol]);
    assert_eq!(
        eval(&p, &with(Claim::List(vec!["nobody".into()]))),
        Err(TrustDenial::NoPlan("only-groups".into()))
    );
    let mut c = with(Claim::Other);
    c.remove("groups");
    assert_eq!(eval(&p, &c), Err(TrustDenial::NoPlan("only-groups".into())));
}

#[test]
fn configuration_errors_name_the_policy_and_field() {
    let err = |specs: &[TrustSpec]| {
        TrustPolicies::compile(specs, &plans_known)
            .map(|_| ())
            .unwrap_err()
    };
    let e = err(&[spec("p", &[])]);
    assert_eq!((e.policy, e.field.as_str()), (0, "claims"));
    let e = err(&[spec("a", &[("x", &["1"])]), spec("a", &[("x", &["2"])])]);
    assert_eq!((e.policy, e.field.as_str()), (1, "name"));
    let e = err(&[spec("a b", &[("x", &["1"])])]);
    assert_eq!(e.field, "name");
    let e = err(&[spec("a", &[("x", &["*"])])]);
    assert_eq!(e.field, "claims.x");
    let e = err(&[spec("a", &[("x", &[])])]);
    assert_eq!(e.field, "claims.x");
    let mut p = spec("a", &[("x", &["1"])]);
    p.plans = vec!["missing".into()];
    assert_eq!(err(&[p]).field, "plans[0]");
    let mut p = spec("a", &[("x", &["1"])]);
    p.plans = Vec::new();
    assert_eq!(err(&[p]).field, "plans");
    for bad in ["{", "}", "a{b", "{}", "{a}}", "{a{b}}", ""] {
        let mut p = spec("a", &[("x", &["1"])]);
        p.subject = Some(bad.into());
        assert_eq!(err(&[p]).field, "subject", "{bad:?}");
    }
    let mut p = spec("a", &[("x", &["1"])]);
    p.license = Some(" lic".into());
    assert_eq!(err(&[p]).field, "license");
}

#[test]
fn a_rules_claim_is_compiled_or_refuses_the_token() {
    let mut pol = spec("robots", &[("iss_env", &["ledger"])]);
    pol.rules_claim = Some("registry_rules".into());
    let p = compile(&[pol]);
    let with = |r: Option<Claim>| {
        let mut c = claims(&[("iss_env", s("ledger")), ("sub", s("robot:1"))]);
        if let Some(r) = r {
            c.insert("registry_rules".into(), r);
        }
        c
    };
    let list = |r: &[&str]| Claim::List(r.iter().map(|x| (*x).to_string()).collect());
    let out =
        eval(&p, &with(Some(list(&["repository:acme/*:pull"])))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.rules.as_ref().map(|r| r.source().to_vec()),
        Some(vec!["repository:acme/*:pull".to_string()])
    );
    // Missing, a string, another type, empty, a rule that does not compile: refused.
    for bad in [
        None,
        Some(s("repository:acme/*:pull")),
        Some(Claim::Other),
        Some(list(&[])),
        Some(list(&["repository:acme/*:pull", "repository:../x:pull"])),
        Some(list(&["repository:{tenant}/*:pull"])),
    ] {
        let got = eval(&p, &with(bad.clone()));
        assert!(
            matches!(&got, Err(TrustDenial::Rules(c, _)) if c == "registry_rules"),
            "{bad:?}: {got:?}"
        );
        assert!(got.unwrap_err().to_string().contains("registry_rules"));
    }
    // Without rulesClaim the same token has no rules to narrow its grant.
    let p = compile(&[spec("plain", &[("iss_env", &["ledger"])])]);
    assert_eq!(eval(&p, &with(None)).map(|o| o.rules), Ok(None));
    // The claim is kept at verification.
    let mut pol = spec("robots", &[("iss_env", &["ledger"])]);
    pol.rules_claim = Some("registry_rules".into());
    assert!(compile(&[pol])
        .claims()
        .contains(&"registry_rules".to_string()));
}

#[test]
fn a_rules_claim_is_checked_in_the_configuration() {
    for (claim, plans_claim, why) in [
        ("", None, "not a claim name"),
        ("a\nb", None, "not a claim name"),
        ("groups", Some("groups"), "read as plans or as a condition"),
        ("iss_env", None, "read as plans or as a condition"),
    ] {
        let mut p = spec("a", &[("iss_env", &["1"])]);
        p.rules_claim = Some(claim.to_string());
        p.plans_claim = plans_claim.map(str::to_string);
        let e = TrustPolicies::compile(&[p], &plans_known)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.field, "rulesClaim", "{claim:?}");
        assert!(e.reason.contains(why), "{claim:?}: {}", e.reason);
    }
}

fn catalogue() -> Catalogue {
    let rule = |pattern: &str, actions: &[&str]| RuleSpec {
        resource_type: "repository".into(),
        pattern: pattern.into(),
        actions: actions.iter().map(|a| (*a).to_string()).collect(),
        tags: None,
    };
    Catalogue::compile(&[PlanSpec {
        name: "ci".into(),
        rules: vec![
            rule("{tenant}/*", &["pull", "push"]),
            rule("users/{sub}/*", &["pull", "push"]),
            rule("public/*", &["pull"]),
        ],
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("acme".to_string()),
        Just("/".to_string()),
        Just("..".to_string()),
        Just("*".to_string()),
        Just("**".to_string()),
        Just("{tenant}".to_string()),
        Just("{sub}".to_string()),
        Just("%2F".to_string()),
        Just("%2e%2e".to_string()),
        Just("globex".to_string()),
        Just("-".to_string()),
        Just(".".to_string()),
        Just("A".to_string()),
        Just(" ".to_string()),
        "[a-z0-9]{1,4}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

proptest! {
    /// Whatever the claims hold, the tenant (and, through `{sub}`, the subject) grants
    /// only the namespace named by a value equal to the claim, which is one repository
    /// path component: `/`, `..`, `*`, a placeholder or an encoded separator never widen
    /// a grant.
    #[test]
    fn no_claim_value_widens_a_grant(
        owner in hostile(),
        sub in hostile(),
        repo in prop::collection::vec(prop_oneof![
            Just("acme".to_string()), Just("globex".to_string()), Just("users".to_string()),
            Just("public".to_string()), Just("x".to_string()), "[a-z0-9]{1,3}",
        ], 1..4),
    ) {
        let mut pol = spec("p", &[("iss_env", &["ci"])]);
        pol.tenant = Some("{repository_owner}".into());
        pol.subject = Some("{sub}".into());
        let p = compile(&[pol]);
        let c = claims(&[("iss_env", s("ci")), ("repository_owner", s(&owner)), ("sub", s(&sub))]);
        let name = repo.join("/");
        let Ok(out) = eval(&p, &c) else {
            return Ok(());
        };
        let tenant = out.tenant.clone().unwrap_or_default();
        prop_assert_eq!(&tenant, &owner, "the tenant is the claim, unchanged");
        prop_assert!(crate::policy::scope::is_path_component(&tenant));
        let cat = catalogue();
        let vars = Placeholders::new(out.tenant.as_deref(), Some(&out.subject));
        let scope = Scope {
            resource_type: "repository".into(),
            name: name.clone(),
            actions: vec!["pull".into(), "push".into()],
        };
        let granted = cat.grant_for("ci", &[scope], &vars).unwrap_or_else(|e| panic!("{e}"));
        for g in &granted {
            let segs: Vec<&str> = g.name.split('/').collect();
            let ok = (segs.len() == 2 && segs[0] == tenant)
                || (segs.len() == 3 && segs[0] == "users" && segs[1] == sub
                    && crate::policy::scope::is_path_component(&sub))
                || (segs.len() == 2 && segs[0] == "public" && g.actions == ["pull"]);
            prop_assert!(ok, "{} granted {:?} to tenant {:?} sub {:?}", g.name, g.actions, tenant, sub);
        }
    }
}
