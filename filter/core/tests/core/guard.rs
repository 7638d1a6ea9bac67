//! The guard on the registry's route, end to end in native code: registry tokens minted by
//! `/token` (OpToken → plan → mint, with the new claims) presented on `/v2/…` routes —
//! identity headers, revocation that reaches issued tokens, tag rules (protected,
//! immutable with the registry's `HEAD` answer, delete), the filtered catalogue, hostile
//! tokens and paths, the configuration's `guard` and `tags`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use registry_token_core::config::Config;
use registry_token_core::handler::guard::{
    self, GuardContext, GuardStep, GuardView, HeadAnswer, ImmutableCheck, Pass, TokenMemo,
};
use registry_token_core::handler::{Decision, Outcome, Route};
use registry_token_core::policy::revocation::{RemoteList, RevokedLists};
use registry_token_core::token::crypto::RustCrypto;
use serde_json::{json, Value};

/// Two plans over `{tenant}/**`: community (protected `latest`/`release-*`, immutable
/// `v*`, no delete) and enterprise (may push the protected tags); a public namespace;
/// the catalogue for both; refresh tokens on; the guard on.
fn guard_config(f: impl FnOnce(&mut Value)) -> Config {
    let mut c = base_config();
    let tags = json!({"protected": ["latest", "release-*"], "immutable": ["v*"], "delete": false});
    let mut owner = tags.clone();
    owner["pushProtected"] = json!(true);
    owner["delete"] = json!(true);
    c["plans"] = json!([
        {"name": "community", "repositories": [
            {"pattern": "{tenant}/**", "actions": ["pull", "push", "delete"], "tags": tags},
            {"pattern": "public/*", "actions": ["pull"]},
            {"type": "registry", "pattern": "catalog", "actions": ["*"]}
        ]},
        {"name": "enterprise", "repositories": [
            {"pattern": "{tenant}/**", "actions": ["*"], "tags": owner},
            {"type": "registry", "pattern": "catalog", "actions": ["*"]}
        ]}
    ]);
    c["defaultPlan"] = json!("community");
    c["refreshTokens"] =
        json!({"lifetimeSeconds": 86_400, "secrets": ["refresh-secret-G-at-least-32-characters"]});
    c["guard"] = json!({"registryCluster": "registry"});
    f(&mut c);
    config_from(c)
}

/// A registry token from `/token` for `scopes`, the OpToken carrying `claims`.
fn registry_token(config: &Config, scopes: &[&str], claims: &Value) -> String {
    let mut q = format!("service={SERVICE}");
    for s in scopes {
        q.push_str("&scope=");
        q.push_str(s);
    }
    let d = decide(config, &q, &[("authorization", &bearer(&optok(claims)))]);
    assert_eq!(d.status, 200, "{}", d.body);
    body(&d)["token"].as_str().unwrap().to_owned()
}

fn claims(tenant: &str, plan: Option<&str>, license: Option<&str>) -> Value {
    let mut c = default_claims();
    c["stellaops:tenant"] = json!(tenant);
    if let Some(p) = plan {
        c["stellaops:plan"] = json!(p);
    }
    if let Some(l) = license {
        c["stellaops:license"] = json!(l);
    }
    c
}

struct Guard {
    config: Config,
    memo: TokenMemo,
}

impl Guard {
    fn new(config: Config) -> Guard {
        Guard {
            config,
            memo: TokenMemo::default(),
        }
    }

    fn ctx<'a>(&'a self, remote: RemoteList<'a>, now: u64) -> GuardContext<'a> {
        GuardContext {
            config: &self.config,
            guard: self.config.guard.as_ref().unwrap(),
            crypto: &RustCrypto,
            now,
            revocation: remote,
            memo: &self.memo,
        }
    }

    fn step_at(
        &self,
        method: &str,
        path: &str,
        auth: &[&str],
        remote: RemoteList<'_>,
        now: u64,
    ) -> GuardStep {
        guard::guard(
            &GuardView {
                method,
                path,
                authorization: auth,
            },
            &self.ctx(remote, now),
        )
    }

    fn step(&self, method: &str, path: &str, token: &str) -> GuardStep {
        let auth = format!("Bearer {token}");
        self.step_at(method, path, &[&auth], RemoteList::NotConfigured, NOW)
    }
}

fn passed(step: GuardStep) -> Pass {
    match step {
        GuardStep::Pass(p) => p,
        other => panic!("expected a pass, got {other:?}"),
    }
}

fn refused(step: GuardStep) -> Decision {
    match step {
        GuardStep::Refuse(d) => *d,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn check(step: GuardStep) -> ImmutableCheck {
    match step {
        GuardStep::CheckImmutable(c) => *c,
        other => panic!("expected an immutable check, got {other:?}"),
    }
}

fn label(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        _ => "not rejected",
    }
}

/// The refusal is the registry's error format, with its reason, audited.
fn assert_refusal(d: &Decision, status: u16, reason: &str) {
    assert_eq!((d.status, label(d)), (status, reason), "{}", d.body);
    let b: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(b["errors"][0]["detail"]["reason"], reason);
    assert!(b["errors"][0]["message"].as_str().unwrap().len() > 10);
    let audit = d.audit.as_ref().unwrap();
    assert_eq!((audit.decision, audit.reason), ("rejected", reason));
}

fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
    d.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const APP: &str = "repository:acme/app:pull,push,delete";
const M: &str = "/v2/acme/app/manifests";

#[test]
fn the_guard_owns_v2_only_when_configured() {
    let on = guard_config(|_| {});
    let off = config_from(base_config());
    for path in [
        "/v2",
        "/v2/",
        "/v2/acme/app/manifests/latest",
        "/v2/_catalog",
    ] {
        assert_eq!(
            registry_token_core::handler::route(&on, path),
            Route::Registry,
            "{path}"
        );
        assert_eq!(
            registry_token_core::handler::route(&off, path),
            Route::PassThrough,
            "{path}"
        );
    }
    for path in [
        "/v20",
        "/v2x/a",
        "/other/v2/",
        "/token",
        "/jwks",
        "/healthz",
    ] {
        assert_ne!(
            registry_token_core::handler::route(&on, path),
            Route::Registry,
            "{path}"
        );
    }
}

#[test]
fn a_minted_token_passes_with_the_identity_headers_and_is_verified_once() {
    let g = Guard::new(guard_config(|_| {}));
    let token = registry_token(
        &g.config,
        &[APP],
        &claims("acme", Some("enterprise"), Some("lic-7")),
    );
    let p = passed(g.step("GET", &format!("{M}/latest"), &token));
    assert_eq!(
        p.set,
        vec![
            ("x-registry-plan", "enterprise".to_owned()),
            ("x-registry-tenant", "acme".to_owned()),
            ("x-registry-subject", "alice".to_owned()),
        ]
    );
    assert!(p.catalog.is_none());
    assert_eq!((g.memo.len(), g.memo.hits()), (1, 0));
    passed(g.step("GET", "/v2/acme/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &token));
    assert_eq!(
        g.memo.hits(),
        1,
        "the second request is answered from the memo"
    );
    let quiet = Guard::new(guard_config(|c| {
        c["guard"]["identityHeaders"] = json!(false)
    }));
    assert!(passed(quiet.step("GET", &format!("{M}/latest"), &token))
        .set
        .is_empty());
}

#[test]
fn what_has_no_rule_passes_untouched() {
    let g = Guard::new(guard_config(|_| {}));
    for (method, path, auth) in [
        ("GET", "/v2/", vec!["Bearer not-a-token"]),
        ("GET", "/v2", vec![]),
        ("GET", "/v2/acme/app/manifests/latest", vec![]),
        ("GET", "/v2/acme/app/manifests/latest", vec!["Basic YTpi"]),
        ("GET", "/v2/acme/app/nothing/here", vec!["Bearer x.y.z"]),
        (
            "OPTIONS",
            "/v2/acme/app/manifests/latest",
            vec!["Bearer x.y.z"],
        ),
    ] {
        let p = passed(g.step_at(method, path, &auth, RemoteList::NotConfigured, NOW));
        assert!(p.set.is_empty() && p.catalog.is_none(), "{method} {path}");
    }
}

#[test]
fn a_token_the_gateway_did_not_mint_or_no_longer_honours_is_refused() {
    let g = Guard::new(guard_config(|_| {}));
    let token = registry_token(&g.config, &[APP], &claims("acme", None, None));
    let path = format!("{M}/latest");
    // Expired: the lifetime (300 s) and the skew are past.
    let late = NOW + 300 + g.config.authority.clock_skew_seconds + 1;
    let auth = format!("Bearer {token}");
    let d = refused(g.step_at("GET", &path, &[&auth], RemoteList::NotConfigured, late));
    assert_refusal(&d, 401, "guard_invalid_token");
    let challenge = header(&d, "www-authenticate").unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:acme/app:pull\""
        )),
        "{challenge}"
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // Another signer under the same kid, alg none, HS256 keyed with the public key, a
    // token for another service, tampered claims, garbage.
    let other = {
        let mut v = base_config();
        v["signing"]["keyPem"] = json!(other_rsa().pkcs8_pem);
        v["guard"] = json!({"registryCluster": "registry"});
        v["plans"] =
            json!([{"name": "community", "repositories": [{"pattern": "**", "actions": ["*"]}]}]);
        registry_token(&config_from(v), &[APP], &claims("acme", None, None))
    };
    let (header_json, claims_json) = jws_parts(&token);
    let unsigned = |h: &Value, c: &Value| {
        format!(
            "{}.{}.",
            b64(h.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        )
    };
    let mut none = header_json.clone();
    none["alg"] = json!("none");
    let hs = {
        use hmac::Mac;
        let mut h = header_json.clone();
        h["alg"] = json!("HS256");
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(claims_json.to_string().as_bytes())
        );
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(signing_rsa().pkcs8_pem.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let mut widened = claims_json.clone();
    widened["plan"] = json!("enterprise");
    let sig = token.rsplit('.').next().unwrap();
    let tampered = format!(
        "{}.{}",
        unsigned(&header_json, &widened).trim_end_matches('.'),
        sig
    );
    let foreign_service = {
        let mut c = claims_json.clone();
        c["aud"] = json!("other.example");
        format!(
            "{}.{}",
            unsigned(&header_json, &c).trim_end_matches('.'),
            sig
        )
    };
    for (what, t) in [
        ("another signer", other),
        ("alg none", unsigned(&none, &claims_json)),
        ("HS256 with the public key", hs),
        ("tampered plan", tampered),
        ("another service", foreign_service),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let d = refused(g.step("GET", &path, &t));
        assert_refusal(&d, 401, "guard_invalid_token");
        assert!(!what.is_empty());
    }
    let two = [auth.as_str(), auth.as_str()];
    let d = refused(g.step_at("GET", &path, &two, RemoteList::NotConfigured, NOW));
    assert_refusal(&d, 401, "guard_invalid_token");
    // And the honest token still passes afterwards.
    passed(g.step("GET", &path, &token));
}

#[test]
fn revocation_reaches_tokens_already_issued() {
    let issuing = guard_config(|_| {});
    let token = registry_token(&issuing, &[APP], &claims("acme", None, Some("lic-7")));
    let path = format!("{M}/latest");
    for (field, value, reason) in [
        ("revokedLicenses", "lic-7", "guard_license_revoked"),
        ("revokedSubjects", "alice", "guard_subject_revoked"),
        ("revokedTenants", "acme", "guard_tenant_revoked"),
    ] {
        let g = Guard::new(guard_config(|c| c[field] = json!([value])));
        let d = refused(g.step("GET", &path, &token));
        assert_refusal(&d, 401, reason);
        let audit = d.audit.as_ref().unwrap();
        assert_eq!(audit.subject.as_deref(), Some("alice"));
        assert_eq!(audit.requested, ["repository:acme/app:pull"]);
        assert!(header(&d, "www-authenticate").unwrap().contains("realm="));
        // The realm refuses the same caller for the matching reason.
        let d = decide(
            &g.config,
            &format!("service={SERVICE}&scope={APP}"),
            &[(
                "authorization",
                &bearer(&optok(&claims("acme", None, Some("lic-7")))),
            )],
        );
        assert_eq!(d.status, 403, "{}", d.body);
    }
    // The remote list: known and revoking, and a stale one under `refuse`.
    let g = Guard::new(guard_config(|c| {
        c["revocation"] = json!({"url": "https://ledger.example/v1/revocations", "cluster": "ledger", "refreshSeconds": 10, "maxStaleSeconds": 60, "onStale": "refuse"});
    }));
    let lists = RevokedLists {
        subjects: ["alice".to_owned()].into_iter().collect(),
        ..RevokedLists::default()
    };
    let auth = format!("Bearer {token}");
    let known = RemoteList::Known {
        lists: &lists,
        fetched_at: NOW - 1,
    };
    assert_refusal(
        &refused(g.step_at("GET", &path, &[&auth], known, NOW)),
        401,
        "guard_subject_revoked",
    );
    let empty = RevokedLists::default();
    passed(g.step_at(
        "GET",
        &path,
        &[&auth],
        RemoteList::Known {
            lists: &empty,
            fetched_at: NOW - 1,
        },
        NOW,
    ));
    let stale = RemoteList::Known {
        lists: &empty,
        fetched_at: NOW - 600,
    };
    let d = refused(g.step_at("GET", &path, &[&auth], stale, NOW));
    assert_refusal(&d, 503, "guard_revocation_unavailable");
    assert!(header(&d, "retry-after").is_some());
}

#[test]
fn a_revoked_refresh_token_reaches_the_tokens_minted_from_it() {
    let config = guard_config(|_| {});
    // The password grant with offline_token issues a refresh token; the registry token
    // minted with it carries its id.
    let form = format!("grant_type=password&service={SERVICE}&scope={APP}&access_type=offline&client_id=docker&username=alice&password={}", optok(&claims("acme", None, None)));
    let d = decide_post(&config, &form, &[], None, NOW);
    assert_eq!(d.status, 200, "{}", d.body);
    let rtid = d.audit.as_ref().unwrap().refresh_token_id.clone().unwrap();
    let token = body(&d)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jws_parts(&token).1["rtid"], json!(rtid));
    let g = Guard::new(guard_config(|c| c["revokedRefreshTokens"] = json!([rtid])));
    assert_refusal(
        &refused(g.step("GET", &format!("{M}/latest"), &token)),
        401,
        "guard_refresh_token_revoked",
    );
}

#[test]
fn protected_tags_delete_and_digests() {
    let g = Guard::new(guard_config(|_| {}));
    let community = registry_token(&g.config, &[APP], &claims("acme", None, None));
    let enterprise = registry_token(
        &g.config,
        &["repository:acme/app:*"],
        &claims("acme", Some("enterprise"), None),
    );
    for tag in ["latest", "release-1"] {
        let d = refused(g.step("PUT", &format!("{M}/{tag}"), &community));
        assert_refusal(&d, 403, "protected_tag");
        assert_eq!(
            serde_json::from_str::<Value>(&d.body).unwrap()["errors"][0]["code"],
            "DENIED"
        );
        passed(g.step("PUT", &format!("{M}/{tag}"), &enterprise));
    }
    passed(g.step("PUT", &format!("{M}/dev"), &community));
    passed(g.step("GET", &format!("{M}/latest"), &community));
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    passed(g.step("PUT", &format!("{M}/{digest}"), &community));
    assert_refusal(
        &refused(g.step("DELETE", &format!("{M}/{digest}"), &community)),
        403,
        "delete_refused",
    );
    // Enterprise may delete, but its rule names immutable tags: a delete would untag one.
    assert_refusal(
        &refused(g.step("DELETE", &format!("{M}/{digest}"), &enterprise)),
        403,
        "immutable_tag",
    );
    // A repository whose rule has no tags: nothing applies.
    let public = registry_token(
        &g.config,
        &["repository:public/x:pull"],
        &claims("acme", None, None),
    );
    passed(g.step("GET", "/v2/public/x/manifests/latest", &public));
}

#[test]
fn an_immutable_tag_keeps_its_digest() {
    let g = Guard::new(guard_config(|_| {}));
    let token = registry_token(&g.config, &[APP], &claims("acme", None, None));
    let c = check(g.step("PUT", &format!("{M}/v1.2.3"), &token));
    assert_eq!(c.head_path, "/v2/acme/app/manifests/v1.2.3");
    assert_eq!(c.authorization, format!("Bearer {token}"));
    let manifest = br#"{"schemaVersion":2}"#;
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(manifest);
        format!(
            "sha256:{}",
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let ctx = g.ctx(RemoteList::NotConfigured, NOW);
    let answer = |status, digest| HeadAnswer { status, digest };
    // New tag, the same manifest again: pass (with the identity headers).
    let p = guard::immutable(&c, Some(manifest), answer(Some(404), None), &ctx).unwrap();
    assert!(p.set.iter().any(|(k, _)| *k == "x-registry-subject"));
    guard::immutable(&c, Some(manifest), answer(Some(200), Some(&digest)), &ctx).unwrap();
    // Another manifest under it, an unreadable answer, a registry that cannot say.
    let other = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    let d =
        *guard::immutable(&c, Some(manifest), answer(Some(200), Some(other)), &ctx).unwrap_err();
    assert_refusal(&d, 403, "immutable_tag");
    assert!(d.body.contains("immutable"), "{}", d.body);
    let d = *guard::immutable(&c, Some(manifest), answer(Some(200), None), &ctx).unwrap_err();
    assert_refusal(&d, 403, "immutable_tag");
    for status in [None, Some(401), Some(500), Some(503)] {
        let d = *guard::immutable(&c, Some(manifest), answer(status, None), &ctx).unwrap_err();
        assert_refusal(&d, 503, "immutable_check_failed");
    }
    let d = *guard::immutable(&c, None, answer(Some(404), None), &ctx).unwrap_err();
    assert_refusal(&d, 413, "manifest_too_large");
    // An empty body (a PUT without one) is a manifest like any other: its digest decides.
    let d = *guard::immutable(&c, Some(b""), answer(Some(200), Some(&digest)), &ctx).unwrap_err();
    assert_refusal(&d, 403, "immutable_tag");
    // Tags the rule does not name, and digests, are not checked.
    passed(g.step("PUT", &format!("{M}/stable"), &token));
}

#[test]
fn each_caller_sees_only_its_own_repositories_in_the_catalogue() {
    let g = Guard::new(guard_config(|_| {}));
    let page = br#"{"repositories":["acme/app","acme/base","globex/db","public/x","zeta/z"]}"#;
    let cut = |tenant: &str, plan: Option<&str>| {
        let token = registry_token(
            &g.config,
            &["registry:catalog:*"],
            &claims(tenant, plan, None),
        );
        let p = passed(g.step("GET", "/v2/_catalog?n=5", &token));
        let caller = p.catalog.expect("a catalogue answer is filtered");
        let out =
            guard::catalog_body(page, &caller, &g.ctx(RemoteList::NotConfigured, NOW)).unwrap();
        serde_json::from_slice::<Value>(&out).unwrap()["repositories"].clone()
    };
    assert_eq!(
        cut("acme", None),
        json!(["acme/app", "acme/base", "public/x"])
    );
    assert_eq!(cut("globex", None), json!(["globex/db", "public/x"]));
    assert_eq!(cut("globex", Some("enterprise")), json!(["globex/db"]));
    let token = registry_token(
        &g.config,
        &["registry:catalog:*"],
        &claims("acme", None, None),
    );
    let caller = passed(g.step("GET", "/v2/_catalog", &token))
        .catalog
        .unwrap();
    let ctx = g.ctx(RemoteList::NotConfigured, NOW);
    let big = format!(
        "{{\"repositories\":[{}]}}",
        vec!["\"acme/x\""; 60_000].join(",")
    );
    assert_refusal(
        &guard::catalog_body(big.as_bytes(), &caller, &ctx).unwrap_err(),
        502,
        "catalog_too_large",
    );
    for bad in [&b"<html>"[..], b"{\"repositories\":7}", b""] {
        assert_refusal(
            &guard::catalog_body(bad, &caller, &ctx).unwrap_err(),
            502,
            "catalog_unreadable",
        );
    }
    // A HEAD of the catalogue, or a tags list, is not cut.
    assert!(passed(g.step("HEAD", "/v2/_catalog", &token))
        .catalog
        .is_none());
}

#[test]
fn paths_the_guard_cannot_read_unambiguously_are_refused() {
    let g = Guard::new(guard_config(|_| {}));
    let token = registry_token(&g.config, &[APP], &claims("acme", None, None));
    for path in [
        "/v2/acme%2Fapp/manifests/latest",
        "/v2/acme/app/manifests/lat%65st",
        "/v2/acme//app/manifests/latest",
        "/v2/acme/./app/manifests/latest",
        "/v2/globex/../acme/app/manifests/latest",
        "/v2/Acme/App/manifests/latest",
        "/v2/acme/app/manifests/-bad",
        "/v2/acme/app/manifests/sha256:xyz",
        "/v2//_catalog",
        "/v2/acme\\app/manifests/latest",
    ] {
        let d = refused(g.step("PUT", path, &token));
        assert_refusal(&d, 400, "guard_invalid_path");
        assert_eq!(
            serde_json::from_str::<Value>(&d.body).unwrap()["errors"][0]["code"],
            "NAME_INVALID",
            "{path}"
        );
    }
    // Trailing slashes of the upload route are the API's own.
    passed(g.step("POST", "/v2/acme/app/blobs/uploads/", &token));
    passed(g.step(
        "PUT",
        &format!("{M}/latest"),
        &registry_token(
            &g.config,
            &["repository:acme/app:*"],
            &claims("acme", Some("enterprise"), None),
        ),
    ));
}

#[test]
fn the_guard_and_tags_configuration_is_checked() {
    let refused_with = |f: &dyn Fn(&mut Value), field: &str| {
        let mut v = base_config();
        v["guard"] = json!({"registryCluster": "registry"});
        v["plans"] = json!([{"name": "community", "repositories": [{"pattern": "a/*", "tags": {"immutable": ["v*"]}}]}]);
        f(&mut v);
        let e = Config::from_value(v).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    };
    refused_with(&|v| v["guard"] = json!({}), "registryCluster");
    refused_with(
        &|v| v["guard"]["registryCluster"] = json!(" "),
        "guard.registryCluster",
    );
    refused_with(
        &|v| v["guard"]["timeoutMillis"] = json!(10),
        "guard.timeoutMillis",
    );
    refused_with(&|v| v["guard"]["rateLimit"] = json!(1), "rateLimit");
    refused_with(
        &|v| v["plans"][0]["repositories"][0]["tags"]["immutable"] = json!(["v/1"]),
        "tags.immutable[0]",
    );
    refused_with(
        &|v| v["plans"][0]["repositories"][0]["tags"]["protected"] = json!([""]),
        "tags.protected[0]",
    );
    refused_with(
        &|v| v["plans"][0]["repositories"][0]["tags"]["mutable"] = json!([]),
        "mutable",
    );
    refused_with(
        &|v| {
            v["plans"][0]["repositories"][0] =
                json!({"type": "registry", "pattern": "catalog", "tags": {}})
        },
        "tags",
    );
    let ok = guard_config(|_| {});
    let g = ok.guard.as_ref().unwrap();
    assert_eq!(
        (
            g.registry_cluster.as_str(),
            g.timeout_millis,
            g.identity_headers
        ),
        ("registry", 5000, true)
    );
    assert!(!g.keys.is_empty());
    // The environment overrides the section like any other.
    let mut v = base_config();
    v["guard"] = json!({"registryCluster": "registry"});
    let c = Config::load(
        v.to_string().as_bytes(),
        vec![(
            "REGISTRY_TOKEN_GUARD__REGISTRYCLUSTER".to_owned(),
            "registry-internal".to_owned(),
        )],
    )
    .unwrap();
    assert_eq!(c.guard.unwrap().registry_cluster, "registry-internal");
}

#[test]
fn the_new_claims_are_in_the_minted_token_and_the_mint_memo_keeps_them_apart() {
    let config = guard_config(|c| c["signing"]["reuseSeconds"] = json!(60));
    let a = registry_token(&config, &[APP], &claims("acme", None, Some("lic-1")));
    let (_, c) = jws_parts(&a);
    assert_eq!(c["plan"], "community");
    assert_eq!(c["licenses"], json!(["lic-1"]));
    assert_eq!(
        c["access"][0]["tags"],
        json!({"protected": ["latest", "release-*"], "pushProtected": false, "immutable": ["v*"], "delete": false})
    );
    assert!(c.get("rtid").is_none());
    // The same caller under another licence is not handed the first token.
    let b = registry_token(&config, &[APP], &claims("acme", None, Some("lic-2")));
    assert_ne!(a, b);
    assert_eq!(
        registry_token(&config, &[APP], &claims("acme", None, Some("lic-1"))),
        a,
        "reused"
    );
}
