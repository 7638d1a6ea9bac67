//! Tenant-aware plans end to end with a real registry 2.8 and skopeo: one plan
//! `tenants/{tenant}/**` serves every tenant its own namespace only (neither the gateway
//! nor, with one tenant's token, the registry hands out another's); malformed tenant values
//! are refused with `requireTenant` (401 `invalid_tenant`) and granted nothing without it;
//! a claim that is not a string is 401 `invalid_claim` either way; `revokedTenants` → 403
//! `tenant_revoked`; the next honest request is served.

use std::time::Duration;

use registry_token_e2e::authority::OpTokSpec;
use registry_token_e2e::gateway::{
    bearer, filter_config, start_gateway, token_path, verify_registry_token, ConfigForm, TestKeys,
    SERVICE,
};
use registry_token_e2e::registry::{
    self, creds, empty_oci_dir, oci_manifest_digest, oci_ref, OciImage, Registry, RegistryAuth,
};
use registry_token_e2e::{prom_value, Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

use super::common::REALM;

/// Pull and push in tenant acme's namespace.
pub(crate) const ACME_X: &str = "repository:tenants/acme/x:pull,push";

const GLOBEX_X: &str = "repository:tenants/globex/x:pull,push";

/// An OpTok of the test Authority with the tenant claim set to `tenant` (any JSON value;
/// `None`: no claim).
fn optok_with_tenant(keys: &TestKeys, tenant: Option<Value>) -> String {
    let mut claims = OpTokSpec::default().claims();
    if let Some(t) = tenant {
        claims["stellaops:tenant"] = t;
    }
    keys.authority
        .sign(&claims, Some(keys.authority.kid()), Some("at+jwt"))
}

/// An OpTok of tenant `tenant`.
pub(crate) fn tenant_optok(keys: &TestKeys, tenant: &str) -> String {
    optok_with_tenant(keys, Some(json!(tenant)))
}

/// The configuration: one plan for every tenant, the default plan.
pub(crate) fn tenant_config(keys: &TestKeys, require_tenant: bool) -> Value {
    let mut config = filter_config(keys, REALM);
    config["plans"] = json!([{"name": "tenants", "repositories": [
        {"pattern": "tenants/{tenant}/**", "actions": ["pull", "push"]},
        {"pattern": "public/*", "actions": ["pull"]}
    ]}]);
    config["defaultPlan"] = json!("tenants");
    config["authority"]["requireTenant"] = json!(require_tenant);
    config["revokedTenants"] = json!(["initech"]);
    config
}

/// `GET /token` for `scopes` with `optok` as the bearer.
pub(crate) fn token(envoy: &Envoy, optok: &str, scopes: &[&str]) -> Reply {
    envoy.get(
        &token_path(SERVICE, scopes),
        &[("authorization", &bearer(optok))],
    )
}

fn reason(reply: &Reply) -> String {
    reply.json()["type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("urn:registry-token-filter:error:")
        .to_owned()
}

fn rejected_count(envoy: &Envoy, reason: &str) -> f64 {
    prom_value(
        &envoy.stats_prometheus(),
        &format!(r#"registry_token_rejected_total{{reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

/// Counters are bumped just after the reply: wait until `reason` reaches `want`.
fn wait_rejected(envoy: &Envoy, reason: &str, want: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = rejected_count(envoy, reason);
        if v >= want || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks for a token and returns it and its verified claims.
pub(crate) fn minted(envoy: &Envoy, optok: &str, scope: &str, public_pem: &str) -> (String, Value) {
    let reply = token(envoy, optok, &[scope]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let tok = reply.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {reply:?}"))
        .to_owned();
    let (_, claims) = verify_registry_token(&tok, public_pem).unwrap_or_else(|e| panic!("{e}"));
    (tok, claims)
}

/// The malformed tenant values of the issue (strings).
fn malformed_strings() -> Vec<String> {
    vec![
        "ACME".into(),
        "a/b".into(),
        "..".into(),
        "*".into(),
        "a b".into(),
        String::new(),
        "a".repeat(300),
        "tenants/acme".into(),
        "acme/../globex".into(),
        "**".into(),
        "-acme".into(),
    ]
}

/// Pushes a fresh image to `repo:tag` with `optok`: the image, or what skopeo said.
pub(crate) fn push(
    registry: &Registry,
    optok: &str,
    repo: &str,
    tag: &str,
) -> Result<OciImage, String> {
    let image = OciImage::build(tag);
    let run = registry::copy(
        &image.reference(),
        &registry.docker_ref(repo, tag),
        None,
        Some(&creds(optok)),
    );
    if run.success {
        Ok(image)
    } else {
        Err(run.to_string())
    }
}

/// Pulls `repo:tag` with `optok` into a fresh OCI layout: its manifest digest.
pub(crate) fn pull(registry: &Registry, optok: &str, repo: &str, tag: &str) -> String {
    let dir = empty_oci_dir();
    let run = registry::copy(
        &registry.docker_ref(repo, tag),
        &oci_ref(dir.path(), tag),
        Some(&creds(optok)),
        None,
    );
    assert!(run.success, "pull of {repo}:{tag} failed:\n{run}");
    oci_manifest_digest(dir.path(), tag).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn one_plan_serves_every_tenant_its_own_namespace_only() {
    let keys = TestKeys::generate();
    let mut config = tenant_config(&keys, false);
    // Registry 2.8 finds the key through x5c (or a libtrust kid).
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    let public = keys.signing_public_pem();
    let acme = tenant_optok(&keys, "acme");
    let globex = tenant_optok(&keys, "globex");

    // acme pushes and pulls its own namespace through the registry.
    let image = push(&registry, &acme, "tenants/acme/x", "v1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pull(&registry, &acme, "tenants/acme/x", "v1"),
        image.manifest_digest
    );
    // ...and cannot push into globex's.
    let Err(err) = push(&registry, &acme, "tenants/globex/x", "v1") else {
        panic!("acme pushed to globex's namespace");
    };
    assert!(
        err.contains("403") || err.contains("unauthorized") || err.contains("denied"),
        "{err}"
    );
    // globex pushes its own.
    push(&registry, &globex, "tenants/globex/x", "v1").unwrap_or_else(|e| panic!("{e}"));

    // The gateway's answers: acme's token names acme and grants acme's repository only.
    let (tok, claims) = minted(&envoy, &acme, ACME_X, &public);
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "tenants/acme/x", "actions": ["pull", "push"]}])
    );
    let before = rejected_count(&envoy, "plan_denied");
    let reply = token(&envoy, &acme, &[GLOBEX_X]);
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reason(&reply), "plan_denied");
    assert_eq!(
        wait_rejected(&envoy, "plan_denied", before + 1.0),
        before + 1.0
    );
    // Both asked at once: only acme's is granted.
    let reply = token(&envoy, &acme, &[GLOBEX_X, ACME_X]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let (_, both) = verify_registry_token(reply.json()["token"].as_str().unwrap_or(""), &public)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(both["access"].as_array().map(Vec::len), Some(1), "{both}");

    // The registry accepts the minted token for the tenant's namespace...
    let list = registry_token_e2e::get(
        &format!("{}/v2/tenants/acme/x/tags/list", registry.url()),
        &[("authorization", &format!("Bearer {tok}"))],
    );
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.json()["tags"], json!(["v1"]));
    // ...and not for another tenant's (the token grants nothing there).
    let other = registry_token_e2e::get(
        &format!("{}/v2/tenants/globex/x/tags/list", registry.url()),
        &[("authorization", &format!("Bearer {tok}"))],
    );
    assert_eq!(other.status, 401, "{other:?}");

    // The audit record carries the tenant.
    assert!(
        envoy.wait_for_log(Duration::from_secs(10), |log| log
            .lines()
            .any(|l| l.contains("registry-token-filter: audit")
                && l.contains(r#""tenant":"acme""#)
                && l.contains(r#""decision":"issued""#))),
        "no audit line with the tenant"
    );

    // Malformed tenant values, without requireTenant: nothing granted in any tenant
    // namespace, what needs no tenant is still served, and no tenant claim is minted.
    for value in malformed_strings() {
        let op = optok_with_tenant(&keys, Some(json!(value)));
        for scope in [ACME_X, GLOBEX_X, "repository:tenants/a/b/x:pull"] {
            let reply = token(&envoy, &op, &[scope]);
            assert_eq!(reply.status, 403, "{value:?} {scope}: {reply:?}");
            assert_eq!(reason(&reply), "plan_denied", "{value:?}");
        }
        let (_, claims) = minted(&envoy, &op, "repository:public/base:pull", &public);
        assert!(claims.get("tenant").is_none(), "{value:?}: {claims}");
        let (_, claims) = minted(&envoy, &acme, ACME_X, &public);
        assert_eq!(claims["tenant"], "acme", "the next honest request");
    }
    // A tenant claim that is not a string: 401 invalid_claim.
    for value in [
        json!(7),
        json!(["acme"]),
        json!({"id": "acme"}),
        json!(null),
    ] {
        let reply = token(
            &envoy,
            &optok_with_tenant(&keys, Some(value.clone())),
            &[ACME_X],
        );
        assert_eq!(reply.status, 401, "{value}: {reply:?}");
        assert_eq!(reason(&reply), "invalid_claim", "{value}");
        assert_eq!(token(&envoy, &acme, &[ACME_X]).status, 200);
    }
    // No tenant at all: served, nothing of a tenant.
    let reply = token(&envoy, &optok_with_tenant(&keys, None), &[ACME_X]);
    assert_eq!(reason(&reply), "plan_denied");

    // A revoked tenant: 403 tenant_revoked, whatever it asks; others go on.
    let initech = tenant_optok(&keys, "initech");
    let before = rejected_count(&envoy, "tenant_revoked");
    for scope in [
        "repository:tenants/initech/x:pull",
        "repository:public/base:pull",
    ] {
        let reply = token(&envoy, &initech, &[scope]);
        assert_eq!(reply.status, 403, "{reply:?}");
        assert_eq!(reason(&reply), "tenant_revoked");
    }
    assert_eq!(
        wait_rejected(&envoy, "tenant_revoked", before + 2.0),
        before + 2.0
    );
    let Err(err) = push(&registry, &initech, "tenants/initech/x", "v1") else {
        panic!("a revoked tenant pushed");
    };
    assert!(!err.is_empty());
    assert_eq!(token(&envoy, &acme, &[ACME_X]).status, 200);
    // The registry still serves acme's image to acme.
    assert_eq!(
        pull(&registry, &acme, "tenants/acme/x", "v1"),
        image.manifest_digest
    );
}

#[test]
fn require_tenant_refuses_every_malformed_tenant() {
    let keys = TestKeys::generate();
    let envoy = start_gateway(
        &tenant_config(&keys, true),
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new(),
    );
    let public = keys.signing_public_pem();
    let acme = tenant_optok(&keys, "acme");
    let before = rejected_count(&envoy, "invalid_tenant");
    let values = malformed_strings();
    for value in &values {
        let op = optok_with_tenant(&keys, Some(json!(value)));
        for scope in [ACME_X, "repository:public/base:pull"] {
            let reply = token(&envoy, &op, &[scope]);
            assert_eq!(reply.status, 401, "{value:?}: {reply:?}");
            assert_eq!(reason(&reply), "invalid_tenant", "{value:?}");
            assert!(
                reply
                    .header("www-authenticate")
                    .is_some_and(|h| h.contains("invalid_token")),
                "{reply:?}"
            );
        }
        // The next honest request.
        let (_, claims) = minted(&envoy, &acme, ACME_X, &public);
        assert_eq!(claims["tenant"], "acme");
    }
    let want = before + 2.0 * values.len() as f64;
    assert_eq!(wait_rejected(&envoy, "invalid_tenant", want), want);
    // Missing: 401 missing_tenant; not a string: 401 invalid_claim.
    let reply = token(&envoy, &optok_with_tenant(&keys, None), &[ACME_X]);
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reason(&reply), "missing_tenant");
    let reply = token(
        &envoy,
        &optok_with_tenant(&keys, Some(json!(42))),
        &[ACME_X],
    );
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reason(&reply), "invalid_claim");
    // Revoked: 403.
    let reply = token(&envoy, &tenant_optok(&keys, "initech"), &[ACME_X]);
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reason(&reply), "tenant_revoked");
    assert_eq!(token(&envoy, &acme, &[ACME_X]).status, 200);
    // The refusals are counted under their own labels.
    assert!(wait_rejected(&envoy, "missing_tenant", 1.0) >= 1.0);
    assert!(wait_rejected(&envoy, "tenant_revoked", 1.0) >= 1.0);
}
