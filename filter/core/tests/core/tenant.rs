//! Tenant-aware plans end to end in native code: the tenant claim, `{tenant}`/`{sub}`
//! placeholders, `requireTenant`, `revokedTenants` (inline, remote list, refresh grant),
//! the audit record and the minted `tenant` claim; and a property test that no tenant
//! value widens a grant beyond its own literal namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use proptest::prelude::*;
use registry_token_core::config::Config;
use registry_token_core::handler::{self, Context, Decision, Outcome, RequestView};
use registry_token_core::policy::plan::{Catalogue, Placeholders, PlanSpec, RuleSpec};
use registry_token_core::policy::revocation::{parse_lists, RemoteList, RevokedLists};
use registry_token_core::policy::scope::{is_path_component, parse_scopes, Scope};
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::token::refresh::{RefreshClaims, RefreshKeys};
use serde_json::{json, Value};

const SECRET: &str = "refresh-secret-T-at-least-32-characters";

fn reason(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

/// One plan, `tenants`, as the default: `tenants/{tenant}/**` pull,push and
/// `users/{sub}/*` everything; refresh tokens on.
fn tenant_config(f: impl FnOnce(&mut Value)) -> Config {
    let mut c = base_config();
    c["plans"] = json!([{"name": "tenants", "repositories": [
        {"pattern": "tenants/{tenant}/**", "actions": ["pull", "push"]},
        {"pattern": "users/{sub}/*", "actions": ["*"]},
        {"pattern": "public/*", "actions": ["pull"]}
    ]}]);
    c["defaultPlan"] = json!("tenants");
    c["refreshTokens"] = json!({"lifetimeSeconds": 86_400, "secrets": [SECRET]});
    f(&mut c);
    config_from(c)
}

fn claims_with_tenant(tenant: Value) -> Value {
    let mut c = default_claims();
    c["stellaops:tenant"] = tenant;
    c
}

fn get(config: &Config, scopes: &[&str], claims: &Value) -> Decision {
    let mut q = format!("service={SERVICE}");
    for s in scopes {
        q.push_str("&scope=");
        q.push_str(s);
    }
    decide(config, &q, &[("authorization", &bearer(&optok(claims)))])
}

fn granted(d: &Decision) -> Value {
    let token = body(d)["token"].as_str().unwrap().to_string();
    verify_minted(&token, SERVICE)["access"].clone()
}

fn minted(d: &Decision) -> Value {
    let token = body(d)["token"].as_str().unwrap().to_string();
    verify_minted(&token, SERVICE)
}

const ACME_X: &str = "repository:tenants/acme/x:pull,push";
const GLOBEX_X: &str = "repository:tenants/globex/x:pull,push";

#[test]
fn a_tenant_gets_its_own_namespace_only() {
    let config = tenant_config(|_| {});
    let acme = claims_with_tenant(json!("acme"));
    let d = get(&config, &[ACME_X], &acme);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        granted(&d),
        json!([{"type": "repository", "name": "tenants/acme/x", "actions": ["pull", "push"]}])
    );
    let claims = minted(&d);
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["sub"], "alice");
    let audit = d.audit.as_ref().unwrap();
    assert_eq!(audit.tenant.as_deref(), Some("acme"));
    assert!(audit.to_line().contains(r#""tenant":"acme""#));
    // Deep names in the own namespace too.
    let d = get(&config, &["repository:tenants/acme/a/b/c:pull"], &acme);
    assert_eq!(d.status, 200, "{}", d.body);
    // Another tenant's namespace: nothing, so 403 plan_denied.
    let d = get(&config, &[GLOBEX_X], &acme);
    assert_eq!(d.status, 403, "{}", d.body);
    assert_eq!(reason(&d), "plan_denied");
    assert_eq!(d.audit.as_ref().unwrap().tenant.as_deref(), Some("acme"));
    // Mixed: only the own scope is granted.
    let d = get(
        &config,
        &[GLOBEX_X, ACME_X, "repository:tenants/acme2/x:pull"],
        &acme,
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let g = granted(&d);
    assert_eq!(g.as_array().unwrap().len(), 1, "{g}");
    assert_eq!(g[0]["name"], "tenants/acme/x");
    // {sub}: alice's own namespace, not bob's.
    let d = get(&config, &["repository:users/alice/app:push,delete"], &acme);
    assert_eq!(granted(&d)[0]["actions"], json!(["push", "delete"]));
    let d = get(&config, &["repository:users/bob/app:pull"], &acme);
    assert_eq!(reason(&d), "plan_denied");
    // globex gets globex.
    let d = get(&config, &[GLOBEX_X], &claims_with_tenant(json!("globex")));
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(minted(&d)["tenant"], "globex");
}

#[test]
fn no_tenant_matches_no_placeholder_rule_and_mints_no_tenant_claim() {
    let config = tenant_config(|_| {});
    let d = get(&config, &[ACME_X], &default_claims());
    assert_eq!(reason(&d), "plan_denied");
    assert_eq!(d.audit.as_ref().unwrap().tenant, None);
    assert!(!d.audit.as_ref().unwrap().to_line().contains("\"tenant\":"));
    let d = get(&config, &["repository:public/base:pull"], &default_claims());
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(minted(&d).get("tenant").is_none());
}

/// The malformed tenant values of the issue, as claim values.
fn malformed() -> Vec<Value> {
    vec![
        json!("ACME"),
        json!("a/b"),
        json!(".."),
        json!("*"),
        json!("a b"),
        json!(""),
        json!("a".repeat(300)),
        json!("tenants/acme"),
        json!("acme/.."),
        json!("-acme"),
        json!("acme\n"),
        json!("ac%2fme"),
        json!("{tenant}"),
    ]
}

#[test]
fn malformed_tenants_are_refused_with_require_tenant() {
    let config = tenant_config(|c| c["authority"]["requireTenant"] = json!(true));
    for value in malformed() {
        let d = get(&config, &[ACME_X], &claims_with_tenant(value.clone()));
        assert_eq!(d.status, 401, "{value}: {}", d.body);
        assert_eq!(reason(&d), "invalid_tenant", "{value}");
        assert!(header(&d, "www-authenticate")
            .unwrap()
            .contains("invalid_token"));
        // The next honest request is served.
        let d = get(&config, &[ACME_X], &claims_with_tenant(json!("acme")));
        assert_eq!(d.status, 200, "{value}: {}", d.body);
    }
    // Missing: its own label.
    let d = get(&config, &[ACME_X], &default_claims());
    assert_eq!(d.status, 401, "{}", d.body);
    assert_eq!(reason(&d), "missing_tenant");
    // Also for `docker login` (no scope): the credential itself is refused.
    let d = decide(
        &config,
        &format!("service={SERVICE}"),
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(reason(&d), "missing_tenant");
}

#[test]
fn malformed_tenants_match_nothing_without_require_tenant() {
    let config = tenant_config(|_| {});
    for value in malformed() {
        let claims = claims_with_tenant(value.clone());
        let text = value.as_str().unwrap();
        for scope in [
            ACME_X.to_string(),
            GLOBEX_X.to_string(),
            format!("repository:tenants/{text}/x:pull"),
            "repository:tenants/a/b/x:pull".to_string(),
        ] {
            let d = get(&config, &[&scope], &claims);
            assert!(
                d.status == 403 || d.status == 400,
                "{value} {scope}: {}",
                d.body
            );
            assert!(
                ["plan_denied", "malformed_scope"].contains(&reason(&d)),
                "{value} {scope}: {}",
                reason(&d)
            );
        }
        // What needs no placeholder is still served, with no tenant claim.
        let d = get(&config, &["repository:public/base:pull"], &claims);
        assert_eq!(d.status, 200, "{value}: {}", d.body);
        assert!(minted(&d).get("tenant").is_none(), "{value}");
        // The audit record keeps what was presented, bounded and on one line.
        let line = d.audit.as_ref().unwrap().to_line();
        assert!(!line.contains('\n'));
        assert!(line.contains("\"tenant\":"), "{line}");
    }
}

#[test]
fn a_tenant_claim_of_the_wrong_type_is_refused() {
    for require in [false, true] {
        let config = tenant_config(|c| c["authority"]["requireTenant"] = json!(require));
        for value in [
            json!(42),
            json!(["acme"]),
            json!({"id": "acme"}),
            json!(true),
            json!(null),
        ] {
            let d = get(&config, &[ACME_X], &claims_with_tenant(value.clone()));
            assert_eq!(d.status, 401, "{value}: {}", d.body);
            assert_eq!(reason(&d), "invalid_claim", "{value}");
            assert!(d.body.contains("stellaops:tenant"), "{}", d.body);
        }
        let d = get(&config, &[ACME_X], &claims_with_tenant(json!("acme")));
        assert_eq!(d.status, 200, "{}", d.body);
    }
}

#[test]
fn the_tenant_claim_name_is_configurable() {
    let config = tenant_config(|c| c["authority"]["tenantClaim"] = json!("org"));
    let mut claims = default_claims();
    claims["org"] = json!("acme");
    claims["stellaops:tenant"] = json!("globex");
    let d = get(&config, &[ACME_X], &claims);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(minted(&d)["tenant"], "acme");
    assert_eq!(reason(&get(&config, &[GLOBEX_X], &claims)), "plan_denied");
    // The default claim is ignored now, even with a wrong type.
    let mut claims = default_claims();
    claims["org"] = json!("acme");
    claims["stellaops:tenant"] = json!(7);
    assert_eq!(get(&config, &[ACME_X], &claims).status, 200);
}

#[test]
fn revoked_tenants_inline() {
    let config = tenant_config(|c| c["revokedTenants"] = json!(["acme"]));
    let d = get(&config, &[ACME_X], &claims_with_tenant(json!("acme")));
    assert_eq!(d.status, 403, "{}", d.body);
    assert_eq!(reason(&d), "tenant_revoked");
    // Also what needs no placeholder.
    let d = get(
        &config,
        &["repository:public/base:pull"],
        &claims_with_tenant(json!("acme")),
    );
    assert_eq!(reason(&d), "tenant_revoked");
    // Exact comparison: other tenants and no tenant pass.
    let d = get(&config, &[GLOBEX_X], &claims_with_tenant(json!("globex")));
    assert_eq!(d.status, 200, "{}", d.body);
    let d = get(
        &config,
        &["repository:public/base:pull"],
        &claims_with_tenant(json!("acme2")),
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let d = get(&config, &["repository:public/base:pull"], &default_claims());
    assert_eq!(d.status, 200, "{}", d.body);
}

fn decide_with_list(
    config: &Config,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
    lists: &RevokedLists,
) -> Decision {
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if form.is_some() {
        headers.push((
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ));
    }
    let path = format!("/token?{query}");
    let view = RequestView {
        method,
        path: &path,
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
        body: form.map(str::as_bytes),
    };
    let keys = match &config.authority.keys {
        registry_token_core::config::KeySource::Inline(k) => Some(k),
        _ => None,
    };
    let ctx = Context {
        config,
        keys: keys.into(),
        crypto: &RustCrypto,
        now: NOW,
        replay: replay_cache(),
        cache: None,
        revocation: RemoteList::Known {
            lists,
            fetched_at: NOW - 10,
        },
    };
    handler::handle_token(&view, &ctx)
}

#[test]
fn revoked_tenants_from_the_remote_list() {
    let config = tenant_config(|c| {
        c["revocation"] =
            json!({"url": "https://licensing.example/r.json", "cluster": "licensing"});
    });
    let lists = parse_lists(br#"{"revokedTenants": ["acme"]}"#).unwrap();
    assert!(lists.tenants.contains("acme"));
    assert_eq!(lists.len(), 1);
    let again = parse_lists(lists.to_document().to_string().as_bytes()).unwrap();
    assert_eq!(again, lists);
    assert!(parse_lists(br#"{"revokedTenants": "acme"}"#).is_err());
    assert!(parse_lists(br#"{"revokedTenants": [""]}"#).is_err());
    assert!(parse_lists(br#"{"revokedTenants": [7]}"#).is_err());
    let auth = bearer(&optok(&claims_with_tenant(json!("acme"))));
    let q = format!("service={SERVICE}&scope={ACME_X}");
    let d = decide_with_list(
        &config,
        "GET",
        &q,
        &[("authorization", &auth)],
        None,
        &lists,
    );
    assert_eq!(d.status, 403, "{}", d.body);
    assert_eq!(reason(&d), "tenant_revoked");
    let d = decide_with_list(
        &config,
        "GET",
        &q,
        &[("authorization", &auth)],
        None,
        &RevokedLists::default(),
    );
    assert_eq!(d.status, 200, "{}", d.body);
}

fn login_rt(config: &Config, claims: &Value) -> String {
    let d = decide(
        config,
        &format!("account=alice&client_id=docker&offline_token=true&service={SERVICE}"),
        &[("authorization", &bearer(&optok(claims)))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    body(&d)["refresh_token"].as_str().unwrap().to_string()
}

fn refresh(config: &Config, rt: &str, scope: &str) -> Decision {
    decide_post(
        config,
        &format!("client_id=docker&grant_type=refresh_token&refresh_token={rt}&scope={scope}&service={SERVICE}"),
        &[],
        None,
        NOW,
    )
}

#[test]
fn refresh_tokens_carry_the_tenant() {
    let config = tenant_config(|_| {});
    let rt = login_rt(&config, &claims_with_tenant(json!("acme")));
    let d = refresh(&config, &rt, ACME_X);
    assert_eq!(d.status, 200, "{}", d.body);
    let token = body(&d)["access_token"].as_str().unwrap().to_string();
    let claims = verify_minted(&token, SERVICE);
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["access"][0]["name"], "tenants/acme/x");
    assert_eq!(d.audit.as_ref().unwrap().tenant.as_deref(), Some("acme"));
    let d = refresh(&config, &rt, GLOBEX_X);
    assert_eq!(d.status, 400, "{}", d.body);
    assert_eq!(reason(&d), "plan_denied");
    // Revoking the tenant refuses the refresh grant too (400 invalid_grant on POST).
    let revoked = tenant_config(|c| c["revokedTenants"] = json!(["acme"]));
    let d = refresh(&revoked, &rt, ACME_X);
    assert_eq!(d.status, 400, "{}", d.body);
    assert_eq!(reason(&d), "tenant_revoked");
    assert_eq!(body(&d)["error"], "invalid_grant");
    // And the remote list.
    let lists = parse_lists(br#"{"revokedTenants": ["acme"]}"#).unwrap();
    let form = format!("client_id=docker&grant_type=refresh_token&refresh_token={rt}&scope={ACME_X}&service={SERVICE}");
    let d = decide_with_list(&config, "POST", "", &[], Some(&form), &lists);
    assert_eq!(reason(&d), "tenant_revoked");
}

#[test]
fn refresh_tokens_sealed_before_tenants_keep_working_unless_a_tenant_is_required() {
    // A token as an earlier release sealed it: no `ten` member.
    let keys = RefreshKeys::new(vec![SECRET.as_bytes().to_vec()]);
    let old = keys.seal(&RefreshClaims {
        sub: "alice".into(),
        plan: "tenants".into(),
        lic: vec![],
        azp: None,
        cid: None,
        jkt: None,
        x5t_s256: None,
        ten: None,
        iat: NOW - 100,
        exp: NOW + 86_000,
        jti: "old-token".into(),
    });
    let payload = old.split('.').nth(1).unwrap();
    let json = String::from_utf8(base64_url(payload)).unwrap();
    assert!(!json.contains("\"ten\""), "{json}");
    let config = tenant_config(|_| {});
    let d = refresh(&config, &old, "repository:users/alice/app:pull");
    assert_eq!(d.status, 200, "{}", d.body);
    // It has no tenant: no tenant namespace.
    assert_eq!(reason(&refresh(&config, &old, ACME_X)), "plan_denied");
    let strict = tenant_config(|c| c["authority"]["requireTenant"] = json!(true));
    let d = refresh(&strict, &old, "repository:users/alice/app:pull");
    assert_eq!(d.status, 400, "{}", d.body);
    assert_eq!(reason(&d), "missing_tenant");
    // A new one, with requireTenant, works.
    let rt = login_rt(&strict, &claims_with_tenant(json!("acme")));
    assert_eq!(refresh(&strict, &rt, ACME_X).status, 200);
}

fn base64_url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn mint_reuse_keeps_tenants_apart() {
    // Same subject and grant, different tenants: never the same reused token.
    let config = tenant_config(|c| {
        c["signing"]["reuseSeconds"] = json!(60);
        c["plans"][0]["repositories"] = json!([{"pattern": "public/*"}]);
    });
    let scope = ["repository:public/base:pull"];
    let a = get(&config, &scope, &claims_with_tenant(json!("acme")));
    let b = get(&config, &scope, &claims_with_tenant(json!("globex")));
    let a2 = get(&config, &scope, &claims_with_tenant(json!("acme")));
    assert_eq!(minted(&a)["tenant"], "acme");
    assert_eq!(minted(&b)["tenant"], "globex");
    assert_eq!(body(&a)["token"], body(&a2)["token"], "reuse is on");
    assert_ne!(body(&a)["token"], body(&b)["token"]);
}

#[test]
fn tenant_configuration_and_environment() {
    let c = tenant_config(|_| {});
    assert_eq!(c.authority.tenant_claim, "stellaops:tenant");
    assert!(!c.authority.require_tenant);
    let env = [
        ("REGISTRY_TOKEN_AUTHORITY__TENANTCLAIM", "org".to_string()),
        (
            "REGISTRY_TOKEN_AUTHORITY__REQUIRETENANT",
            "true".to_string(),
        ),
        ("REGISTRY_TOKEN_REVOKEDTENANTS", "acme,globex".to_string()),
    ];
    let c = Config::load(base_config().to_string().as_bytes(), env).unwrap();
    assert_eq!(c.authority.tenant_claim, "org");
    assert!(c.authority.require_tenant);
    assert!(c.revoked.tenants.contains("acme") && c.revoked.tenants.contains("globex"));
    let error = |f: &dyn Fn(&mut Value)| {
        let mut v = base_config();
        f(&mut v);
        Config::from_value(v).unwrap_err().to_string()
    };
    for bad in [json!(""), json!(" org"), json!("sub"), json!("aud")] {
        let e = error(&|v| v["authority"]["tenantClaim"] = bad.clone());
        assert!(e.contains("authority.tenantClaim"), "{e}");
    }
    let e = error(&|v| v["authority"]["requireTenant"] = json!("yes"));
    assert!(e.contains("requireTenant"), "{e}");
    let e = error(&|v| v["revokedTenants"] = json!(["acme", " x"]));
    assert!(e.contains("revokedTenants[1]"), "{e}");
    let e = error(&|v| {
        v["plans"] = json!([{"name": "p", "repositories": [
            {"pattern": "tenants/{tenant}/**"}, {"pattern": "tenants/a{tenant}"}
        ]}]);
        v["defaultPlan"] = json!("p");
    });
    assert!(
        e.contains("plans[0].repositories[1].pattern") && e.contains("{tenant}"),
        "{e}"
    );
    let e = error(&|v| {
        v["plans"] = json!([{"name": "p", "repositories": [{"pattern": "x/{foo}/*"}]}]);
        v["defaultPlan"] = json!("p");
    });
    assert!(e.contains("plans[0].repositories[0].pattern"), "{e}");
}

// ---- property: no tenant value widens a grant ----

fn catalogue() -> Catalogue {
    let rule = |pattern: &str, actions: &[&str]| RuleSpec {
        resource_type: "repository".into(),
        pattern: pattern.into(),
        actions: actions.iter().map(|a| (*a).to_string()).collect(),
        tags: None,
    };
    Catalogue::compile(&[PlanSpec {
        name: "p".into(),
        rules: vec![
            rule("tenants/{tenant}/**", &["pull", "push"]),
            rule("shared/{tenant}/*", &["pull"]),
            rule("{tenant}/{sub}", &["*"]),
        ],
    }])
    .unwrap()
}

/// Whether `name` lies in the namespace the rules above give `tenant` (and `sub`), by
/// plain string reasoning, with no matcher involved.
fn in_own_namespace(name: &str, tenant: &str, sub: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let tenants_rule = parts.len() >= 2 && parts[0] == "tenants" && parts[1] == tenant;
    let shared_rule = parts.len() == 3 && parts[0] == "shared" && parts[1] == tenant;
    let own_rule = parts.len() == 2 && parts[0] == tenant && parts[1] == sub;
    tenants_rule || shared_rule || own_rule
}

/// Tenant strings: anything, and things built to look like an escape.
fn tenant_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9./*_{}: -]{0,12}",
        "[a-z0-9]{1,6}(/|\\.\\.|\\*|\\*\\*|/\\.\\./|%2f| |\\n|[A-Z])[a-z0-9]{0,6}",
        "[a-z0-9]{1,8}([._-][a-z0-9]{1,4}){0,2}",
        Just("..".to_string()),
        Just("*".to_string()),
        Just("**".to_string()),
        Just(String::new()),
    ]
}

fn name_strategy(tenant: String) -> impl Strategy<Value = String> {
    let t = tenant.clone();
    prop_oneof![
        Just(format!("tenants/{tenant}/x")),
        Just(format!("tenants/{tenant}")),
        Just(format!("shared/{tenant}/x")),
        Just(format!("{t}/alice")),
        "(tenants|shared)/[a-z0-9]{1,6}(/[a-z0-9*.]{1,4}){0,3}",
        "[a-z0-9]{1,6}/[a-z]{1,6}",
        "[a-z0-9./]{1,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the tenant string, a grant is either nothing (an invalid tenant) or lies in
    /// the tenant's own literal namespace, exactly as the placeholder-free plan written
    /// for that tenant by hand would grant it.
    #[test]
    fn no_tenant_value_widens_a_grant(
        (tenant, name) in tenant_strategy().prop_flat_map(|t| (Just(t.clone()), name_strategy(t))),
        sub in prop_oneof![Just("alice".to_string()), any::<String>()],
    ) {
        let c = catalogue();
        let vars = Placeholders::new(Some(&tenant), Some(&sub));
        let Ok(requested) = parse_scopes([format!("repository:{name}:pull,push,delete")]) else {
            // A name the Docker grammar refuses never reaches the plans.
            return Ok(());
        };
        let granted = c.grant_for("p", &requested, &vars).unwrap();
        if !is_path_component(&tenant) {
            prop_assert_eq!(vars.tenant(), None);
        }
        for g in &granted {
            let Scope { name: granted_name, .. } = g;
            prop_assert_eq!(granted_name, &name);
            prop_assert!(is_path_component(&tenant) || is_path_component(&sub), "{tenant:?}");
            prop_assert!(in_own_namespace(&name, &tenant, &sub), "{tenant:?} {sub:?} {name:?}");
            prop_assert!(!tenant.contains(['/', '*', ' ']) && tenant != ".." && !tenant.is_empty());
            prop_assert!(!tenant.bytes().any(|b| b.is_ascii_uppercase()));
        }
        // Equivalent to the plan with the (valid) tenant written in literally.
        if is_path_component(&tenant) && is_path_component(&sub) {
            let rule = |pattern: String, actions: &[&str]| RuleSpec {
                resource_type: "repository".into(),
                pattern,
                actions: actions.iter().map(|a| (*a).to_string()).collect(),
                tags: None,
            };
            let literal = Catalogue::compile(&[PlanSpec {
                name: "p".into(),
                rules: vec![
                    rule(format!("tenants/{tenant}/**"), &["pull", "push"]),
                    rule(format!("shared/{tenant}/*"), &["pull"]),
                    rule(format!("{tenant}/{sub}"), &["*"]),
                ],
            }]).unwrap();
            prop_assert_eq!(literal.grant("p", &requested).unwrap(), granted);
        } else if !is_path_component(&tenant) && !is_path_component(&sub) {
            prop_assert!(granted.is_empty());
        }
    }
}
