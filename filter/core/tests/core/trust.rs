//! Several issuers and their trust policies, through the whole decision: a
//! GitHub-Actions-shaped token of a second issuer gets the subject, tenant and plan of the
//! policy its claims match; another ref or owner is 403 `no_trust_policy`; an `iss` no
//! issuer has (trailing slash, case, none) is 401 `unknown_issuer`; keys never mix across
//! issuers (same `kid`, other key); hostile claims fail closed; group plans give the union
//! of their plans and no more; anonymous callers pull public repositories only. Tokens are
//! signed by `jsonwebtoken`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry_token_core::config::Config;
use registry_token_core::handler::{Decision, Outcome};
use serde_json::{json, Value};

use crate::common::*;

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const GH_KID: &str = "gh-1";
const APP: &str = "repository:acme/app:pull,push";

fn reason(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

/// `base_config` with a GitHub issuer (key `other_rsa`, kid `gh-1`): owner acme on main
/// pushes `{tenant}/*`; a `ci` plan; `f` tweaks the JSON.
fn config(f: impl FnOnce(&mut Value)) -> Config {
    let mut c = base_config();
    c["plans"].as_array_mut().unwrap().push(json!(
        {"name": "ci", "repositories": [{"pattern": "{tenant}/*", "actions": ["pull", "push"]}]}
    ));
    c["plans"].as_array_mut().unwrap().push(json!(
        {"name": "public", "repositories": [{"pattern": "public/**", "actions": ["pull"]}]}
    ));
    c["issuers"] = json!([{
        "issuer": GITHUB,
        "audiences": [SERVICE],
        "jwks": {"keys": [other_rsa().jwk(GH_KID)]},
        "requiredScopes": [],
        "requireSenderConstraint": false,
        "algorithms": ["RS256"],
        "policies": [{
            "name": "acme-main",
            "claims": {"repository_owner": "acme", "ref": "refs/heads/main"},
            "subject": "github:{repository}@{ref}",
            "tenant": "{repository_owner}",
            "plans": ["ci"]
        }]
    }]);
    f(&mut c);
    config_from(c)
}

fn github_claims(repository: &str, git_ref: &str) -> Value {
    json!({
        "iss": GITHUB, "aud": SERVICE,
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository,
        "repository_owner": repository.split('/').next().unwrap(),
        "ref": git_ref,
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300,
    })
}

fn sign_other(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(other_rsa().pkcs8_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn get_with(config: &Config, scopes: &[&str], token: &str) -> Decision {
    let mut q = format!("service={SERVICE}");
    for s in scopes {
        q.push_str("&scope=");
        q.push_str(s);
    }
    decide(config, &q, &[("authorization", &bearer(token))])
}

fn minted(d: &Decision) -> Value {
    assert_eq!(d.status, 200, "{}", d.body);
    verify_minted(body(d)["token"].as_str().unwrap(), SERVICE)
}

#[test]
fn a_github_token_of_acme_main_pushes_to_its_tenant_namespace() {
    let c = config(|_| {});
    let d = get_with(
        &c,
        &[APP],
        &sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID),
    );
    let m = minted(&d);
    assert_eq!(m["sub"], "github:acme/app@refs/heads/main");
    assert_eq!(m["tenant"], "acme");
    assert_eq!(
        m["access"],
        json!([{"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}])
    );
    let audit = d.audit.as_ref().unwrap();
    assert_eq!(audit.issuer.as_deref(), Some(GITHUB));
    assert_eq!(audit.policy.as_deref(), Some("acme-main"));
    assert_eq!(audit.plan.as_deref(), Some("ci"));
    // Another tenant's namespace: nothing.
    let d = get_with(
        &c,
        &["repository:globex/app:pull,push"],
        &sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID),
    );
    assert_eq!(reason(&d), "plan_denied");
}

#[test]
fn another_ref_or_owner_is_refused_with_the_trust_policy_reason() {
    let c = config(|_| {});
    for (repo, r) in [
        ("acme/app", "refs/heads/dev"),
        ("acme/app", "refs/pull/1/merge"),
        ("evil/app", "refs/heads/main"),
        ("acme2/app", "refs/heads/main"),
    ] {
        let d = get_with(&c, &[APP], &sign_other(&github_claims(repo, r), GH_KID));
        assert_eq!(
            (d.status, reason(&d)),
            (403, "no_trust_policy"),
            "{repo} {r}"
        );
        let audit = d.audit.as_ref().unwrap();
        assert_eq!(
            audit.issuer.as_deref(),
            Some(GITHUB),
            "the verified issuer is recorded"
        );
        assert_eq!(audit.policy, None);
    }
}

#[test]
fn an_iss_no_issuer_has_is_unknown_issuer() {
    let c = config(|_| {});
    for iss in [
        json!(format!("{GITHUB}/")),
        json!(GITHUB.to_uppercase()),
        json!("https://Token.actions.githubusercontent.com"),
        json!("https://evil.example"),
        json!(""),
        json!(7),
        json!([GITHUB]),
        Value::Null,
    ] {
        let mut claims = github_claims("acme/app", "refs/heads/main");
        claims["iss"] = iss.clone();
        let d = get_with(&c, &[APP], &sign_other(&claims, GH_KID));
        assert_eq!((d.status, reason(&d)), (401, "unknown_issuer"), "{iss}");
    }
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims.as_object_mut().unwrap().remove("iss");
    let d = get_with(&c, &[APP], &sign_other(&claims, GH_KID));
    assert_eq!(reason(&d), "unknown_issuer");
    // Without `issuers`, the one-Authority configuration keeps its own label.
    let mut one = base_config();
    one["issuers"] = json!([]);
    let mut claims = default_claims();
    claims["iss"] = json!("https://evil.example");
    let d = get_with(&config_from(one), &[], &optok(&claims));
    assert_eq!(reason(&d), "wrong_issuer");
}

#[test]
fn keys_never_mix_across_issuers() {
    // The GitHub issuer publishes its key under the Authority's kid.
    let c = config(|c| {
        c["issuers"][0]["jwks"] = json!({"keys": [other_rsa().jwk(AUTH_KID)]});
    });
    // iss GitHub, kid of the Authority, signed by the Authority's key: GitHub's key of
    // that kid does not verify it.
    let mut claims = github_claims("acme/app", "refs/heads/main");
    let forged = sign_rsa(&claims, Algorithm::RS256, Some(AUTH_KID));
    assert_eq!(reason(&get_with(&c, &[APP], &forged)), "bad_signature");
    // iss Authority, signed by GitHub's key under the shared kid: refused too.
    let mut auth = default_claims();
    auth["stellaops:plan"] = json!("admin");
    assert_eq!(
        reason(&get_with(&c, &[], &sign_other(&auth, AUTH_KID))),
        "bad_signature"
    );
    // Each issuer's own tokens still pass.
    assert_eq!(
        reason(&get_with(&c, &[APP], &sign_other(&claims, AUTH_KID))),
        "issued"
    );
    assert_eq!(reason(&get_with(&c, &[], &optok(&auth))), "issued");
    // A kid only the other issuer has: unknown to this one.
    let c = config(|_| {});
    assert_eq!(
        reason(&get_with(
            &c,
            &[APP],
            &sign_rsa(&claims, Algorithm::RS256, Some(AUTH_KID))
        )),
        "unknown_key"
    );
    claims["iss"] = json!(ISSUER);
    assert_eq!(
        reason(&get_with(&c, &[], &sign_other(&claims, GH_KID))),
        "unknown_key"
    );
}

#[test]
fn each_issuer_checks_its_own_audience_algorithms_scopes_and_binding() {
    let c = config(|_| {});
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims["aud"] = json!(AUDIENCE);
    assert_eq!(
        reason(&get_with(&c, &[APP], &sign_other(&claims, GH_KID))),
        "wrong_audience"
    );
    claims["aud"] = json!(SERVICE);
    claims["exp"] = json!(NOW - 3600);
    assert_eq!(
        reason(&get_with(&c, &[APP], &sign_other(&claims, GH_KID))),
        "expired"
    );
    // requiredScopes default: registry.token.issue, which a workload token lacks.
    let c = config(|c| {
        c["issuers"][0]
            .as_object_mut()
            .unwrap()
            .remove("requiredScopes");
    });
    let token = sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID);
    assert_eq!(reason(&get_with(&c, &[APP], &token)), "insufficient_scope");
    let c = config(|c| c["issuers"][0]["requireSenderConstraint"] = json!(true));
    assert_eq!(reason(&get_with(&c, &[APP], &token)), "unbound_token");
    let c = config(|c| c["issuers"][0]["algorithms"] = json!(["ES256"]));
    assert_eq!(reason(&get_with(&c, &[APP], &token)), "disallowed_alg");
    // The Authority's own tokens are unaffected by the issuer's settings.
    assert_eq!(
        reason(&get_with(&c, &[], &optok(&default_claims()))),
        "issued"
    );
}

#[test]
fn hostile_claims_fail_closed_and_widen_nothing() {
    let c = config(|_| {});
    let mut cases: Vec<(&str, Value)> = vec![
        ("ref", json!(["refs/heads/main"])),
        ("ref", json!(1)),
        ("repository_owner", json!({"name": "acme"})),
        ("repository_owner", json!(true)),
        ("repository", json!(null)),
        ("repository", json!("acme/..")),
        ("repository", json!("acme/%2F")),
        ("repository", json!("acme/{tenant}")),
        ("repository", json!("acme/*")),
        ("repository", json!("")),
        ("repository", json!("a".repeat(300))),
    ];
    cases.push(("ref", json!(Value::Null)));
    for (claim, value) in cases {
        let mut claims = github_claims("acme/app", "refs/heads/main");
        claims[claim] = value.clone();
        let d = get_with(&c, &[APP], &sign_other(&claims, GH_KID));
        assert_eq!(
            (d.status, reason(&d)),
            (401, "invalid_claim"),
            "{claim}: {value}"
        );
    }
    // A missing template claim is refused; a missing condition claim matches no policy.
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims.as_object_mut().unwrap().remove("repository");
    assert_eq!(
        reason(&get_with(&c, &[APP], &sign_other(&claims, GH_KID))),
        "invalid_claim"
    );
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims.as_object_mut().unwrap().remove("ref");
    assert_eq!(
        reason(&get_with(&c, &[APP], &sign_other(&claims, GH_KID))),
        "no_trust_policy"
    );
    // A tenant that is not one path component never reaches {tenant}: refused.
    let c = config(|c| {
        c["issuers"][0]["policies"][0]["claims"] = json!({"ref": "refs/heads/main"});
        c["issuers"][0]["policies"][0]["tenant"] = json!("{repository}");
    });
    let d = get_with(
        &c,
        &[APP],
        &sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID),
    );
    assert_eq!(reason(&d), "invalid_claim");
}

#[test]
fn policy_subjects_licences_and_revocation_apply() {
    let c = config(|c| {
        c["issuers"][0]["policies"][0]["license"] = json!("lic-0042");
    });
    let token = sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID);
    assert_eq!(reason(&get_with(&c, &[APP], &token)), "license_revoked");
    let c = config(|c| c["revokedSubjects"] = json!(["github:acme/app@refs/heads/main"]));
    assert_eq!(reason(&get_with(&c, &[APP], &token)), "subject_revoked");
    let c = config(|c| c["revokedTenants"] = json!(["acme"]));
    assert_eq!(reason(&get_with(&c, &[APP], &token)), "tenant_revoked");
}

#[test]
fn a_workload_token_never_gets_a_refresh_token_and_works_as_a_password() {
    let c = config(|c| {
        c["refreshTokens"] = json!({"lifetimeSeconds": 86_400, "secrets": ["refresh-secret-at-least-32-characters-long"]});
    });
    let token = sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID);
    let q = format!("service={SERVICE}&scope={APP}&offline_token=true");
    let d = decide(&c, &q, &[("authorization", &bearer(&token))]);
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(body(&d).get("refresh_token").is_none(), "{}", d.body);
    let form = format!("grant_type=password&service={SERVICE}&scope={APP}&password={token}");
    let d = decide_post(&c, &form, &[], None, NOW);
    assert_eq!(d.status, 200, "{}", d.body);
}

#[test]
fn group_plans_grant_the_union_of_their_plans_and_no_more() {
    let c = config(|c| {
        c["plans"].as_array_mut().unwrap().push(json!(
            {"name": "team-a", "repositories": [{"pattern": "a/**", "actions": ["pull", "push"]}, {"pattern": "shared/x", "actions": ["pull"]}]}
        ));
        c["plans"].as_array_mut().unwrap().push(json!(
            {"name": "team-b", "repositories": [{"pattern": "b/**", "actions": ["pull"]}, {"pattern": "shared/*", "actions": ["push"]}]}
        ));
        c["issuers"][0]["policies"] = json!([{
            "name": "groups", "claims": {"repository_owner": "acme"},
            "plansClaim": "groups"
        }]);
    });
    let mut claims = github_claims("acme/app", "refs/heads/main");
    claims["groups"] = json!(["team-a", "team-b", "not-a-plan"]);
    let token = sign_other(&claims, GH_KID);
    let d = get_with(
        &c,
        &[
            "repository:a/x:pull,push",
            "repository:b/y:pull,push",
            "repository:shared/x:pull,push,delete",
            "repository:c/z:pull",
        ],
        &token,
    );
    let m = minted(&d);
    assert_eq!(
        m["access"],
        json!([
            {"type": "repository", "name": "a/x", "actions": ["pull", "push"]},
            {"type": "repository", "name": "b/y", "actions": ["pull"]},
            {"type": "repository", "name": "shared/x", "actions": ["pull", "push"]},
        ])
    );
    assert_eq!(
        d.audit.as_ref().unwrap().plan.as_deref(),
        Some("team-a team-b")
    );
    // One group: that plan only.
    claims["groups"] = json!("team-b");
    let d = get_with(&c, &["repository:a/x:pull"], &sign_other(&claims, GH_KID));
    assert_eq!(reason(&d), "plan_denied");
    // None of the catalogue's, or mistyped: refused.
    claims["groups"] = json!(["nobody"]);
    assert_eq!(
        reason(&get_with(
            &c,
            &["repository:a/x:pull"],
            &sign_other(&claims, GH_KID)
        )),
        "missing_plan"
    );
    claims["groups"] = json!([1, 2]);
    assert_eq!(
        reason(&get_with(
            &c,
            &["repository:a/x:pull"],
            &sign_other(&claims, GH_KID)
        )),
        "invalid_claim"
    );
}

#[test]
fn anonymous_callers_pull_public_repositories_only() {
    let scope = |s: &str| format!("service={SERVICE}&scope={s}");
    // Off: 401 as ever.
    let off = config(|_| {});
    assert_eq!(
        reason(&decide(&off, &scope("repository:public/base:pull"), &[])),
        "missing_credentials"
    );
    let on = config(|c| c["anonymous"] = json!({"plan": "public"}));
    let d = decide(&on, &scope("repository:public/base:pull"), &[]);
    let m = minted(&d);
    assert_eq!(m["sub"], "anonymous");
    assert_eq!(
        m["access"],
        json!([{"type": "repository", "name": "public/base", "actions": ["pull"]}])
    );
    assert_eq!(
        d.audit.as_ref().unwrap().policy.as_deref(),
        Some("anonymous")
    );
    // A push asks; only the pull is granted.
    let m = minted(&decide(
        &on,
        &scope("repository:public/base:pull,push"),
        &[],
    ));
    assert_eq!(m["access"][0]["actions"], json!(["pull"]));
    // Push alone, or a private repository: the caller is asked to authenticate.
    for s in [
        "repository:public/base:push",
        "repository:acme/app:pull",
        "registry:catalog:*",
    ] {
        let d = decide(&on, &scope(s), &[]);
        assert_eq!((d.status, reason(&d)), (401, "missing_credentials"), "{s}");
    }
    // Credentials still go their own way.
    let token = sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID);
    assert_eq!(reason(&get_with(&on, &[APP], &token)), "issued");
    // A POST without credentials is no anonymous pull.
    let d = decide_post(
        &on,
        &format!("grant_type=password&service={SERVICE}"),
        &[],
        None,
        NOW,
    );
    assert_eq!(reason(&d), "missing_grant_parameter");
}

fn refused(f: impl FnOnce(&mut Value)) -> String {
    let mut c = base_config();
    c["plans"].as_array_mut().unwrap().push(json!(
        {"name": "ci", "repositories": [{"pattern": "{tenant}/*", "actions": ["pull", "push"]}]}
    ));
    c["issuers"] = json!([{
        "issuer": GITHUB, "audiences": [SERVICE], "requiredScopes": [],
        "jwks": {"keys": [other_rsa().jwk(GH_KID)]},
        "policies": [{"name": "p", "claims": {"ref": "refs/heads/main"}, "plans": ["ci"]}]
    }]);
    f(&mut c);
    match Config::from_value(c) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn configuration_errors_name_the_field() {
    let e = refused(|c| c["issuers"][0]["issuer"] = json!(ISSUER));
    assert!(e.contains("issuers[0].issuer"), "{e}");
    let e = refused(|c| c["issuers"][0]["policies"] = json!([]));
    assert!(e.contains("issuers[0].policies"), "{e}");
    let e = refused(|c| c["issuers"][0]["policies"][0]["claims"] = json!({}));
    assert!(e.contains("issuers[0].policies[0].claims"), "{e}");
    let e = refused(|c| c["issuers"][0]["policies"][0]["plans"] = json!(["nope"]));
    assert!(e.contains("issuers[0].policies[0].plans[0]"), "{e}");
    let e = refused(|c| c["issuers"][0]["policies"][0]["claims"] = json!({"sub": "**"}));
    assert!(e.contains("issuers[0].policies[0].claims.sub"), "{e}");
    let e = refused(|c| c["issuers"][0]["audiences"] = json!([]));
    assert!(e.contains("issuers[0].audiences"), "{e}");
    let e = refused(|c| {
        c["issuers"][0].as_object_mut().unwrap().remove("jwks");
    });
    assert!(e.contains("issuers[0].jwks"), "{e}");
    let e = refused(|c| c["issuers"][0]["policies"][0]["bogus"] = json!(1));
    assert!(e.contains("bogus"), "{e}");
    let e = refused(|c| {
        let dup = c["issuers"][0].clone();
        c["issuers"].as_array_mut().unwrap().push(dup);
    });
    assert!(e.contains("issuers[1].issuer"), "{e}");
    // The anonymous plan may only pull.
    let e = refused(|c| c["anonymous"] = json!({"plan": "enterprise"}));
    assert!(e.contains("anonymous.plan"), "{e}");
    let e = refused(|c| c["anonymous"] = json!({"plan": "ci"}));
    assert!(e.contains("anonymous.plan"), "{e}");
    let e = refused(|c| c["anonymous"] = json!({"plan": "missing"}));
    assert!(e.contains("anonymous.plan"), "{e}");
}

#[test]
fn issuers_and_anonymous_come_from_the_environment_too() {
    let mut c = base_config();
    c["plans"].as_array_mut().unwrap().push(json!(
        {"name": "ci", "repositories": [{"pattern": "{tenant}/*", "actions": ["pull", "push"]}]}
    ));
    let issuers = json!([{
        "issuer": GITHUB, "audiences": [SERVICE], "requiredScopes": [],
        "requireSenderConstraint": false,
        "jwks": {"keys": [other_rsa().jwk(GH_KID)]},
        "policies": [{"name": "p", "claims": {"ref": "refs/heads/main"}, "tenant": "{repository_owner}", "plans": ["ci"]}]
    }]);
    let env = [
        ("REGISTRY_TOKEN_ISSUERS".to_string(), issuers.to_string()),
        (
            "REGISTRY_TOKEN_ANONYMOUS__PLAN".to_string(),
            "community".to_string(),
        ),
    ];
    let config = Config::load(c.to_string().as_bytes(), env).unwrap();
    assert_eq!(config.issuers.len(), 1);
    assert_eq!(config.anonymous.as_deref(), Some("community"));
    let token = sign_other(&github_claims("acme/app", "refs/heads/main"), GH_KID);
    assert_eq!(reason(&get_with(&config, &[APP], &token)), "issued");
}

#[test]
fn the_authority_is_named_only_once_several_issuers_are_trusted() {
    let with = get_with(&config(|_| {}), &[], &optok(&default_claims()));
    assert_eq!(with.audit.as_ref().unwrap().issuer.as_deref(), Some(ISSUER));
    // One Authority: the ledger gets the record it always got (no `issuer`).
    let alone = get_with(&config_from(base_config()), &[], &optok(&default_claims()));
    let audit = alone.audit.as_ref().unwrap();
    assert_eq!(
        (audit.issuer.as_deref(), audit.policy.as_deref()),
        (None, None)
    );
    let record = registry_token_core::ledger::record(audit).unwrap();
    assert!(
        !record.contains("issuer") && !record.contains("policy"),
        "{record}"
    );
    let record = registry_token_core::ledger::record(with.audit.as_ref().unwrap()).unwrap();
    assert!(
        record.contains(&format!(r#""issuer":"{ISSUER}""#)),
        "{record}"
    );
}
