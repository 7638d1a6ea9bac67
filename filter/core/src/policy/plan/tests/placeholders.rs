//! `{tenant}` and `{sub}` segments: each matches only the caller's own valid value, keeps
//! first-match order with literal rules, refuses values that are not one path component,
//! names the rule in its errors, and agrees with the naive matcher at scale.

use super::scale::*;
use super::*;

fn allowed_as(
    c: &Catalogue,
    name: &str,
    tenant: Option<&str>,
    sub: Option<&str>,
) -> Option<Allowed> {
    c.allowed_for("p", "repository", name, &Placeholders::new(tenant, sub))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn tenant_placeholder_matches_only_own_namespace() {
    let c = one_plan(vec![rule("tenants/{tenant}/**", &["pull", "push"])]);
    let acme = Some("acme");
    assert_eq!(
        allowed_as(&c, "tenants/acme/x", acme, None),
        Some(set(&["pull", "push"]))
    );
    assert_eq!(
        allowed_as(&c, "tenants/acme/a/b/c", acme, None),
        Some(set(&["pull", "push"]))
    );
    assert_eq!(
        allowed_as(&c, "tenants/acme", acme, None),
        Some(set(&["pull", "push"]))
    );
    assert_eq!(allowed_as(&c, "tenants/globex/x", acme, None), None);
    assert_eq!(allowed_as(&c, "tenants/acme2/x", acme, None), None);
    assert_eq!(allowed_as(&c, "tenants/acm/x", acme, None), None);
    assert_eq!(allowed_as(&c, "acme/x", acme, None), None);
    // Without a tenant, or with the subject only, nothing.
    assert_eq!(allowed_as(&c, "tenants/acme/x", None, None), None);
    assert_eq!(allowed_as(&c, "tenants/acme/x", None, Some("acme")), None);
    // The placeholder-free API never fills placeholders.
    assert_eq!(allowed(&c, "tenants/acme/x"), None);
}

#[test]
fn sub_placeholder_and_both() {
    let c = one_plan(vec![
        rule("users/{sub}/*", &["*"]),
        rule("tenants/{tenant}/users/{sub}", &["delete"]),
        rule("tenants/{tenant}/**", &["pull"]),
    ]);
    let (t, u) = (Some("acme"), Some("alice"));
    assert_eq!(allowed_as(&c, "users/alice/app", t, u), Some(Allowed::All));
    assert_eq!(allowed_as(&c, "users/alice/a/b", t, u), None);
    assert_eq!(allowed_as(&c, "users/bob/app", t, u), None);
    assert_eq!(
        allowed_as(&c, "tenants/acme/users/alice", t, u),
        Some(set(&["delete"]))
    );
    assert_eq!(
        allowed_as(&c, "tenants/acme/users/bob", t, u),
        Some(set(&["pull"]))
    );
    assert_eq!(allowed_as(&c, "tenants/acme/users/alice", None, u), None);
    assert_eq!(
        allowed_as(&c, "tenants/acme/users/alice", t, None),
        Some(set(&["pull"]))
    );
}

#[test]
fn placeholder_first_match_order_with_literals() {
    // A literal rule before the placeholder wins for its own name; after it, it loses.
    let c = one_plan(vec![
        rule("tenants/acme/frozen", &["pull"]),
        rule("tenants/{tenant}/*", &["*"]),
        rule("tenants/acme/other", &["delete"]),
        rule("tenants/*/public", &["pull"]),
    ]);
    let t = Some("acme");
    assert_eq!(
        allowed_as(&c, "tenants/acme/frozen", t, None),
        Some(set(&["pull"]))
    );
    assert_eq!(
        allowed_as(&c, "tenants/acme/other", t, None),
        Some(Allowed::All)
    );
    assert_eq!(
        allowed_as(&c, "tenants/globex/public", t, None),
        Some(set(&["pull"]))
    );
    assert_eq!(
        allowed_as(&c, "tenants/acme/other", None, None),
        Some(set(&["delete"]))
    );
}

#[test]
fn invalid_placeholder_values_never_match() {
    let c = one_plan(vec![
        rule("tenants/{tenant}/**", &["*"]),
        rule("{tenant}", &["*"]),
        rule("users/{sub}", &["*"]),
    ]);
    let long = "a".repeat(256);
    for bad in [
        "",
        "ACME",
        "Acme",
        "a/b",
        "..",
        ".",
        "*",
        "**",
        "a b",
        "a\nb",
        "-a",
        "a-",
        "a..b",
        "a___b",
        "_a",
        "a.",
        "{tenant}",
        "é",
        "a:1",
        "a%2fb",
        long.as_str(),
    ] {
        for name in [
            format!("tenants/{bad}/x"),
            format!("tenants/{bad}"),
            bad.to_string(),
            format!("users/{bad}"),
            "tenants/x/y".to_string(),
            "tenants/acme/x".to_string(),
        ] {
            assert_eq!(
                allowed_as(&c, &name, Some(bad), Some(bad)),
                None,
                "{bad:?} {name:?}"
            );
        }
        assert_eq!(
            Placeholders::new(Some(bad), Some(bad)),
            Placeholders::NONE,
            "{bad:?}"
        );
    }
    let max = "a".repeat(255);
    assert_eq!(
        Placeholders::new(Some(&max), None).tenant(),
        Some(max.as_str())
    );
    for good in [
        "acme",
        "a",
        "0",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a---b",
        "acme-corp.eu_1",
    ] {
        assert_eq!(
            allowed_as(&c, good, Some(good), None),
            Some(Allowed::All),
            "{good}"
        );
    }
}

#[test]
fn placeholder_pattern_errors_name_the_rule() {
    for pattern in [
        "a{tenant}",
        "{tenant}b",
        "{tenant",
        "tenant}",
        "{foo}",
        "{}",
        "{Tenant}",
        "a/{tenant}{sub}",
        "{{tenant}}",
        "x/{sub}*",
        "{tenant}/**/{sub}x",
    ] {
        assert_eq!(pattern_err(pattern), PatternError::Placeholder, "{pattern}");
    }
    let e = compile_err(&[plan("p", vec![rule("ok/*", &[]), rule("t/a{tenant}", &[])])]);
    assert_eq!(
            e.to_string(),
            "plans[0].repositories[1].pattern: \"t/a{tenant}\": placeholders are \"{tenant}\" and \"{sub}\", each a whole segment"
        );
    // Not in registry rules.
    assert!(Catalogue::compile(&[plan("p", vec![registry_rule("{tenant}", &[])])]).is_err());
    // Whole-segment placeholders compile anywhere in a repository pattern.
    for pattern in [
        "{tenant}",
        "{sub}",
        "{tenant}/{sub}",
        "a/{tenant}/**",
        "**/{sub}",
        "{tenant}/*-dev",
    ] {
        assert!(
            Catalogue::compile(&[plan("p", vec![rule(pattern, &[])])]).is_ok(),
            "{pattern}"
        );
    }
}

fn random_tenant(rng: &mut Rng, tenants: usize) -> String {
    format!("t{}", rng.below(tenants))
}

#[test]
fn placeholder_index_agrees_with_linear_scan() {
    let mut rng = Rng::new(0x7e4a);
    let tenants = 5;
    for round in 0..30 {
        let mut rules = random_rules(&mut rng, 5 + round * 7, 3);
        // Mix in placeholder rules at random positions.
        for _ in 0..(3 + round) {
            let at = rng.below(rules.len() + 1);
            let pattern = match rng.below(6) {
                0 => "tenants/{tenant}/**".to_owned(),
                1 => "users/{sub}/*".to_owned(),
                2 => format!("org{}/{{tenant}}/*", rng.below(3)),
                3 => "{tenant}/{sub}".to_owned(),
                4 => "**/{sub}/app".to_owned(),
                _ => format!("tenants/{{tenant}}/{}", random_pattern_segment(&mut rng, 3)),
            };
            rules.insert(
                at,
                rule(&pattern, ACTION_CHOICES[rng.below(ACTION_CHOICES.len())]),
            );
        }
        let catalogue = one_plan(rules.clone());
        let naive = Naive::new(&rules);
        for _ in 0..200 {
            let tenant = random_tenant(&mut rng, tenants);
            let sub = format!("u{}", rng.below(3));
            let name = match rng.below(5) {
                0 => format!(
                    "tenants/{}/{}",
                    random_tenant(&mut rng, tenants),
                    random_segment(&mut rng, 3)
                ),
                1 => format!("users/u{}/{}", rng.below(3), random_segment(&mut rng, 3)),
                2 => format!("{}/u{}", random_tenant(&mut rng, tenants), rng.below(3)),
                3 => format!("org{}/{}/x", rng.below(3), random_tenant(&mut rng, tenants)),
                _ => random_name(&mut rng, 3),
            };
            let t = (rng.below(4) != 0).then_some(tenant.as_str());
            let u = (rng.below(4) != 0).then_some(sub.as_str());
            let vars = Placeholders::new(t, u);
            assert_eq!(
                catalogue
                    .allowed_for("p", "repository", &name, &vars)
                    .unwrap_or(None),
                naive.allowed_for(&name, &vars),
                "{name} {t:?} {u:?}"
            );
        }
    }
}

#[test]
fn placeholder_lookup_work_does_not_grow_with_rule_count() {
    // A placeholder-heavy catalogue: every rule has one, 10 vs 10,000 rules.
    let build = |count: usize| -> Vec<RuleSpec> {
        (0..count)
            .map(|i| match i % 4 {
                0 => rule(&format!("r{i}/{{tenant}}/**"), &["pull", "push"]),
                1 => rule(&format!("tenants/{{tenant}}/r{i}/*"), &[]),
                2 => rule(&format!("users/{{sub}}/r{i}-*"), &["*"]),
                _ => rule(&format!("r{i}/{{tenant}}/{{sub}}/*-dev"), &["delete"]),
            })
            .collect()
    };
    let names: Vec<String> = (0..10)
        .flat_map(|i| {
            [
                format!("r{}/acme/a/b", i * 4),
                format!("tenants/acme/r{}/x", i * 4 + 1),
                format!("users/alice/r{}-x", i * 4 + 2),
                format!("r{}/acme/alice/app-dev", i * 4 + 3),
                format!("tenants/globex/r{}/x", i * 4 + 1),
                format!("nomatch{i}/x"),
            ]
        })
        .collect();
    let vars = Placeholders::new(Some("acme"), Some("alice"));
    let steps = |rules: Vec<RuleSpec>| -> usize {
        let c = one_plan(rules);
        let plan = c.plans.first().unwrap_or_else(|| panic!("no plan"));
        names
            .iter()
            .map(|name| {
                let mut steps = 0;
                plan.allowed("repository", name, &vars, &mut steps);
                steps
            })
            .max()
            .unwrap_or(0)
    };
    let small = steps(build(10));
    let large = steps(build(10_000));
    assert!(small > 0);
    assert!(large <= small + 4, "small {small}, large {large}");
    // And the large catalogue does match (the names of the first ten rules).
    let c = one_plan(build(10_000));
    assert!(allowed_as(&c, "r0/acme/a/b", Some("acme"), None).is_some());
    assert!(allowed_as(&c, "tenants/acme/r9997/x", Some("acme"), None).is_some());
    assert!(allowed_as(&c, "tenants/globex/r9997/x", Some("acme"), None).is_none());
}
