//! `POST /token` (password and refresh grants, RFC 6749 errors) and refresh tokens, end
//! to end in native code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use registry_token_core::config::Config;
use registry_token_core::handler::{self, Context, Decision, Grant, Outcome, RequestView};
use registry_token_core::policy::revocation::{RemoteList, RevokedLists};
use registry_token_core::token::crypto::RustCrypto;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SECRET_A: &str = "refresh-secret-A-at-least-32-characters";
const SECRET_B: &str = "refresh-secret-B-at-least-32-characters";
const SCOPE: &str = "repository:stella-ops/public/base:pull";
const LIFETIME: u64 = 86_400;

fn reason(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

fn config_with(f: impl FnOnce(&mut Value)) -> Config {
    let mut c = base_config();
    c["refreshTokens"] = json!({"lifetimeSeconds": LIFETIME, "secrets": [SECRET_A]});
    f(&mut c);
    config_from(c)
}

fn rt_config() -> Config {
    config_with(|_| {})
}

fn password_form(token: &str, extra: &str) -> String {
    format!("client_id=containerd-client&grant_type=password&password={token}&scope={SCOPE}&service={SERVICE}&username=alice{extra}")
}

fn refresh_form(rt: &str, extra: &str) -> String {
    format!("client_id=docker&grant_type=refresh_token&refresh_token={rt}&scope={SCOPE}&service={SERVICE}{extra}")
}

fn post(config: &Config, form: &str) -> Decision {
    decide_post(config, form, &[], None, NOW)
}

/// Asserts an RFC 6749 §5.2 error: status, `error`, reason label, headers.
fn assert_oauth_error(d: &Decision, status: u16, error: &str, label: &str) {
    assert_eq!(d.status, status, "{label}: {}", d.body);
    assert_eq!(reason(d), label, "{}", d.body);
    let b = body(d);
    assert_eq!(b["error"], error, "{label}");
    assert!(!b["error_description"].as_str().unwrap().is_empty());
    assert_eq!(header(d, "content-type"), Some("application/json"));
    assert_eq!(header(d, "cache-control"), Some("no-store"));
    assert_eq!(header(d, "www-authenticate"), None);
    assert_eq!(d.audit.as_ref().unwrap().reason, label);
}

/// A refresh token obtained with `docker login` (`GET … offline_token=true`).
fn login_rt(config: &Config, claims: &Value) -> String {
    let d = decide(
        config,
        &format!("account=alice&client_id=docker&offline_token=true&service={SERVICE}"),
        &[("authorization", &bearer(&optok(claims)))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    body(&d)["refresh_token"].as_str().unwrap().to_string()
}

#[test]
fn containerd_password_grant() {
    let d = post(&rt_config(), &password_form(&optok(&default_claims()), ""));
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.outcome, Outcome::Issued(Grant::Password));
    assert_eq!(Grant::Password.label(), "password");
    let b = body(&d);
    assert_eq!(b["access_token"], b["token"]);
    assert_eq!(b["expires_in"], 300);
    assert_eq!(b["issued_at"], "2027-01-15T08:00:00Z");
    assert_eq!(b["scope"], SCOPE);
    assert_eq!(b["token_type"], "Bearer");
    assert!(b.get("refresh_token").is_none(), "not asked");
    let claims = verify_minted(b["access_token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["access"][0]["name"], "stella-ops/public/base");
    let audit = d.audit.unwrap();
    assert_eq!(audit.grant, "password");
    assert_eq!(
        audit.request_client_id.as_deref(),
        Some("containerd-client")
    );
    assert_eq!(audit.refresh_token_id, None);
    let line = serde_json::to_value(&audit).unwrap();
    assert_eq!(line["grant"], "password");
}

#[test]
fn space_joined_and_repeated_scopes() {
    let config = config_with(|c| c["defaultPlan"] = json!("enterprise"));
    let tok = optok(&default_claims());
    let joined = format!("grant_type=password&password={tok}&service={SERVICE}&scope=repository:stella-ops/a:pull+repository:stella-ops/a:pull,push");
    let d = post(&config, &joined);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(body(&d)["scope"], "repository:stella-ops/a:pull,push");
    let repeated = format!("grant_type=password&password={tok}&service={SERVICE}&scope=repository:stella-ops/a:pull&scope=repository:stella-ops/b:push");
    let d = post(&config, &repeated);
    assert_eq!(
        body(&d)["scope"],
        "repository:stella-ops/a:pull repository:stella-ops/b:push"
    );
}

#[test]
fn password_grant_offline_gets_a_refresh_token_only_when_enabled() {
    let tok = optok(&default_claims());
    let d = post(&rt_config(), &password_form(&tok, "&access_type=offline"));
    assert_eq!(d.status, 200, "{}", d.body);
    let rt = body(&d)["refresh_token"].as_str().unwrap().to_string();
    assert!(rt.starts_with("rtr1."));
    assert_eq!(rt.split('.').count(), 3);
    assert!(d.audit.unwrap().refresh_token_id.is_some());
    let d = post(&cfg_off(), &password_form(&tok, "&access_type=offline"));
    assert_eq!(d.status, 200);
    assert!(body(&d).get("refresh_token").is_none());
}

fn cfg_off() -> Config {
    config_from(base_config())
}

#[test]
fn get_body_is_unchanged_unless_a_refresh_token_is_issued() {
    let tok = optok(&default_claims());
    let q = format!("account=alice&client_id=docker&scope={SCOPE}&service={SERVICE}");
    let d = decide(&rt_config(), &q, &[("authorization", &bearer(&tok))]);
    let keys: Vec<String> = body(&d).as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["access_token", "expires_in", "issued_at", "token"]);
    assert_eq!(d.outcome, Outcome::Issued(Grant::Get));
    assert_eq!(d.audit.as_ref().unwrap().grant, "get");
    assert_eq!(
        d.audit.as_ref().unwrap().request_client_id.as_deref(),
        Some("docker")
    );
    // docker login with offline_token=true, refresh tokens off: unchanged.
    let d = decide(
        &cfg_off(),
        &format!("{q}&offline_token=true"),
        &[("authorization", &bearer(&tok))],
    );
    assert_eq!(body(&d).as_object().unwrap().len(), 4);
    let d = decide(
        &rt_config(),
        &format!("{q}&offline_token=true"),
        &[("authorization", &bearer(&tok))],
    );
    let b = body(&d);
    assert_eq!(b.as_object().unwrap().len(), 5);
    assert!(b["refresh_token"].as_str().unwrap().starts_with("rtr1."));
}

#[test]
fn refresh_grant_round_trip_without_rotation() {
    let config = rt_config();
    let rt = login_rt(&config, &default_claims());
    for extra in ["", "&access_type=offline"] {
        let d = post(&config, &refresh_form(&rt, extra));
        assert_eq!(d.status, 200, "{}", d.body);
        assert_eq!(d.outcome, Outcome::Issued(Grant::RefreshToken));
        let b = body(&d);
        assert!(b.get("refresh_token").is_none(), "never rotated");
        assert_eq!(b["scope"], SCOPE);
        let claims = verify_minted(b["access_token"].as_str().unwrap(), SERVICE);
        assert_eq!(claims["sub"], "alice");
        let audit = d.audit.unwrap();
        assert_eq!(audit.grant, "refresh_token");
        assert_eq!(audit.subject.as_deref(), Some("alice"));
        assert_eq!(audit.client_id.as_deref(), Some("cli"));
        assert_eq!(audit.request_client_id.as_deref(), Some("docker"));
        assert_eq!(audit.plan.as_deref(), Some("community"));
        assert!(audit.refresh_token_id.is_some());
    }
    // containers/image: repeated scope fields.
    let form = format!("grant_type=refresh_token&refresh_token={rt}&client_id=containers%2Fimage&scope={SCOPE}&scope=repository:stella-ops/public/other:pull&service={SERVICE}");
    let d = post(&config, &form);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        body(&d)["scope"],
        format!("{SCOPE} repository:stella-ops/public/other:pull")
    );
}

#[test]
fn refresh_token_keeps_the_resolved_plan_and_current_rules_apply() {
    let mut claims = default_claims();
    claims["stellaops:plan"] = json!("enterprise");
    let rt = login_rt(&rt_config(), &claims);
    let push = format!("grant_type=refresh_token&refresh_token={rt}&scope=repository:stella-ops/x:push&service={SERVICE}");
    let d = post(&rt_config(), &push);
    assert_eq!(d.status, 200, "{}", d.body);
    // The plan removed from the catalogue: refused.
    let removed = config_with(|c| {
        c["plans"] = json!([{"name": "community", "repositories": [{"pattern": "**"}]}]);
    });
    assert_oauth_error(&post(&removed, &push), 400, "invalid_grant", "unknown_plan");
    // The plan's rules narrowed: the current rules apply.
    let narrowed = config_with(|c| {
        c["plans"][1]["repositories"] = json!([{"pattern": "stella-ops/**", "actions": ["pull"]}]);
    });
    assert_oauth_error(&post(&narrowed, &push), 400, "invalid_scope", "plan_denied");
}

#[test]
fn every_byte_of_a_refresh_token_flipped_is_refused() {
    let config = rt_config();
    let rt = login_rt(&config, &default_claims());
    for i in 0..rt.len() {
        let mut bytes = rt.clone().into_bytes();
        bytes[i] ^= 0x01;
        let altered = String::from_utf8(bytes).unwrap();
        let d = post(&config, &refresh_form(&altered, ""));
        assert_oauth_error(&d, 400, "invalid_grant", "invalid_refresh_token");
    }
}

#[test]
fn secrets_wrong_and_rotated() {
    let old = rt_config();
    let rt_old = login_rt(&old, &default_claims());
    let wrong = config_with(|c| c["refreshTokens"]["secrets"] = json!([SECRET_B]));
    assert_oauth_error(
        &post(&wrong, &refresh_form(&rt_old, "")),
        400,
        "invalid_grant",
        "invalid_refresh_token",
    );
    let rotated = config_with(|c| c["refreshTokens"]["secrets"] = json!([SECRET_B, SECRET_A]));
    assert_eq!(post(&rotated, &refresh_form(&rt_old, "")).status, 200);
    let rt_new = login_rt(&rotated, &default_claims());
    assert_eq!(post(&rotated, &refresh_form(&rt_new, "")).status, 200);
    assert_eq!(post(&wrong, &refresh_form(&rt_new, "")).status, 200);
    assert_oauth_error(
        &post(&old, &refresh_form(&rt_new, "")),
        400,
        "invalid_grant",
        "invalid_refresh_token",
    );
}

#[test]
fn refresh_token_expires() {
    let config = rt_config();
    let rt = login_rt(&config, &default_claims());
    let form = refresh_form(&rt, "");
    assert_eq!(
        decide_post(&config, &form, &[], None, NOW + LIFETIME - 1).status,
        200
    );
    let d = decide_post(&config, &form, &[], None, NOW + LIFETIME);
    assert_oauth_error(&d, 400, "invalid_grant", "refresh_token_expired");
}

fn rt_id(config: &Config, rt: &str) -> String {
    let d = post(config, &refresh_form(rt, ""));
    d.audit.unwrap().refresh_token_id.unwrap()
}

#[test]
fn revoked_id_subject_and_licence_inline() {
    let mut claims = default_claims();
    claims["stellaops:license"] = json!("lic-7");
    let rt = login_rt(&rt_config(), &claims);
    let id = rt_id(&rt_config(), &rt);
    for (field, value, label) in [
        ("revokedRefreshTokens", id.as_str(), "refresh_token_revoked"),
        ("revokedSubjects", "alice", "subject_revoked"),
        ("revokedLicenses", "lic-7", "license_revoked"),
    ] {
        let config = config_with(|c| c[field] = json!([value]));
        let d = post(&config, &refresh_form(&rt, ""));
        assert_oauth_error(&d, 400, "invalid_grant", label);
    }
    // A revoked subject is refused on GET too (403), and on the password grant (400).
    let config = config_with(|c| c["revokedSubjects"] = json!(["alice"]));
    let tok = optok(&default_claims());
    let d = decide(
        &config,
        &format!("scope={SCOPE}&service={SERVICE}"),
        &[("authorization", &bearer(&tok))],
    );
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "subject_revoked");
    assert_oauth_error(
        &post(&config, &password_form(&tok, "")),
        400,
        "invalid_grant",
        "subject_revoked",
    );
}

fn post_with_list(config: &Config, form: &str, lists: &RevokedLists) -> Decision {
    let headers = vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    let view = RequestView {
        method: "POST",
        path: "/token",
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
        body: Some(form.as_bytes()),
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
fn revoked_id_subject_and_licence_remote() {
    let config = config_with(|c| {
        c["revocation"] =
            json!({"url": "https://licensing.example/r.json", "cluster": "licensing"});
    });
    let mut claims = default_claims();
    claims["stellaops:license"] = json!("lic-9");
    let rt = login_rt(&config, &claims);
    let id = rt_id(&config, &rt);
    let form = refresh_form(&rt, "");
    assert_eq!(
        post_with_list(&config, &form, &RevokedLists::default()).status,
        200
    );
    let doc = |key: &str, value: &str| {
        registry_token_core::policy::revocation::parse_lists(
            json!({ key: [value] }).to_string().as_bytes(),
        )
        .unwrap()
    };
    for (key, value, label) in [
        ("revokedRefreshTokens", id.as_str(), "refresh_token_revoked"),
        ("revokedSubjects", "alice", "subject_revoked"),
        ("revokedLicenses", "lic-9", "license_revoked"),
    ] {
        let d = post_with_list(&config, &form, &doc(key, value));
        assert_oauth_error(&d, 400, "invalid_grant", label);
    }
}

#[test]
fn refresh_and_access_tokens_are_not_interchangeable() {
    let config = rt_config();
    let tok = optok(&default_claims());
    let rt = login_rt(&config, &default_claims());
    // An OpToken as refresh_token.
    assert_oauth_error(
        &post(&config, &refresh_form(&tok, "")),
        400,
        "invalid_grant",
        "invalid_refresh_token",
    );
    // A refresh token as Bearer, Basic or password.
    let q = format!("scope={SCOPE}&service={SERVICE}");
    let d = decide(&config, &q, &[("authorization", &bearer(&rt))]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "malformed_token");
    let basic = format!("Basic {}", base64_std(&format!("alice:{rt}")));
    assert_eq!(
        reason(&decide(&config, &q, &[("authorization", &basic)])),
        "malformed_token"
    );
    assert_oauth_error(
        &post(&config, &password_form(&rt, "")),
        400,
        "invalid_grant",
        "malformed_token",
    );
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn request_errors() {
    let config = rt_config();
    let tok = optok(&default_claims());
    let good = password_form(&tok, "");
    // Media type.
    for ct in [None, Some("application/json"), Some("text/plain")] {
        let headers: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", *c)).collect();
        let d = decide_full(
            &config,
            "POST",
            "",
            &headers,
            None,
            Some(good.as_bytes()),
            NOW,
        );
        assert_oauth_error(&d, 400, "invalid_request", "unsupported_media_type");
    }
    // Size: 16 KiB accepted, one more byte refused with 413.
    let pad = |n: usize| format!("{good}&x={}", "a".repeat(n - good.len() - 3));
    assert_eq!(post(&config, &pad(16 * 1024)).status, 200);
    assert_oauth_error(
        &post(&config, &pad(16 * 1024 + 1)),
        413,
        "invalid_request",
        "body_too_large",
    );
    // Missing body (the glue buffered none) reads as empty.
    let d = decide_full(
        &config,
        "POST",
        "",
        &[("content-type", "application/x-www-form-urlencoded")],
        None,
        None,
        NOW,
    );
    assert_oauth_error(&d, 400, "invalid_request", "missing_grant_parameter");
    for (form, status, error, label) in [
        (format!("service={SERVICE}"), 400, "invalid_request", "missing_grant_parameter"),
        (format!("grant_type=&service={SERVICE}&password={tok}"), 400, "invalid_request", "missing_grant_parameter"),
        (format!("grant_type=password&service={SERVICE}"), 400, "invalid_request", "missing_grant_parameter"),
        (format!("grant_type=refresh_token&service={SERVICE}"), 400, "invalid_request", "missing_grant_parameter"),
        (format!("grant_type=client_credentials&service={SERVICE}"), 400, "unsupported_grant_type", "unsupported_grant_type"),
        (format!("grant_type=authorization_code&service={SERVICE}"), 400, "unsupported_grant_type", "unsupported_grant_type"),
        (format!("{good}&service=other"), 400, "invalid_request", "malformed_request"),
        (format!("{good}&password={tok}"), 400, "invalid_request", "malformed_request"),
        (format!("{good}&grant_type=password"), 400, "invalid_request", "malformed_request"),
        (format!("{good}&client_id=x"), 400, "invalid_request", "malformed_request"),
        (format!("{good}&username=%zz"), 400, "invalid_request", "malformed_request"),
        (format!("{good}&x%zz=1"), 400, "invalid_request", "malformed_request"),
        (format!("{good}&service=%FF"), 400, "invalid_request", "malformed_request"),
        (format!("grant_type=password&password={tok}"), 400, "invalid_request", "missing_service"),
        (format!("grant_type=password&password={tok}&service=elsewhere"), 400, "invalid_request", "unknown_service"),
        (format!("{good}&scope=repository:"), 400, "invalid_scope", "malformed_scope"),
        (format!("grant_type=password&password={tok}&service={SERVICE}&scope=repository:other/x:push"), 400, "invalid_scope", "plan_denied"),
    ] {
        let d = post(&config, &form);
        assert_oauth_error(&d, status, error, label);
    }
    // Unknown parameters are ignored, empty ones omitted (RFC 6749 §3.1, §3.2).
    assert_eq!(
        post(
            &config,
            &format!("{good}&foo=bar&foo=baz&access_type=&client_id=")
        )
        .status,
        200
    );
    // Non-UTF-8 body.
    let mut raw = good.clone().into_bytes();
    raw.extend_from_slice(b"&x=\xff");
    let d = decide_full(
        &config,
        "POST",
        "",
        &[("content-type", "application/x-www-form-urlencoded")],
        None,
        Some(&raw),
        NOW,
    );
    assert_oauth_error(&d, 400, "invalid_request", "malformed_request");
    // Refresh grant while refresh tokens are off.
    let d = post(&cfg_off(), &refresh_form("rtr1.x.y", ""));
    assert_oauth_error(&d, 400, "unsupported_grant_type", "refresh_disabled");
}

#[test]
fn grant_faults_are_invalid_grant_on_post_and_keep_their_get_status() {
    let config = rt_config();
    let mut expired = default_claims();
    expired["exp"] = json!(NOW - 3600);
    let mut revoked = default_claims();
    revoked["stellaops:license"] = json!("lic-0042");
    for (claims, label, get_status) in
        [(expired, "expired", 401), (revoked, "license_revoked", 403)]
    {
        let tok = optok(&claims);
        assert_oauth_error(
            &post(&config, &password_form(&tok, "")),
            400,
            "invalid_grant",
            label,
        );
        let d = decide(
            &config,
            &format!("scope={SCOPE}&service={SERVICE}"),
            &[("authorization", &bearer(&tok))],
        );
        assert_eq!((d.status, reason(&d)), (get_status, label));
    }
    assert_oauth_error(
        &post(&config, &password_form("not-a-jwt", "")),
        400,
        "invalid_grant",
        "malformed_token",
    );
}

// ---- Bindings --------------------------------------------------------------------------

fn x5t(hex: &str) -> String {
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    b64(&bytes)
}

#[test]
fn mtls_bound_refresh_token_needs_the_certificate() {
    let config = rt_config();
    let cert = "ab".repeat(32);
    let other = "cd".repeat(32);
    let mut claims = default_claims();
    claims["cnf"] = json!({"x5t#S256": x5t(&cert)});
    let d = decide_at(
        &config,
        "GET",
        &format!("offline_token=true&service={SERVICE}"),
        &[("authorization", &bearer(&optok(&claims)))],
        Some(&cert),
        NOW,
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let rt = body(&d)["refresh_token"].as_str().unwrap().to_string();
    let form = refresh_form(&rt, "");
    assert_oauth_error(
        &decide_post(&config, &form, &[], None, NOW),
        400,
        "invalid_grant",
        "mtls_no_certificate",
    );
    assert_oauth_error(
        &decide_post(&config, &form, &[], Some(&other), NOW),
        400,
        "invalid_grant",
        "mtls_mismatch",
    );
    let d = decide_post(&config, &form, &[], Some(&cert), NOW);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(
        d.audit.unwrap().binding,
        Some(format!("x5t#S256:{}", x5t(&cert)))
    );
}

fn jkt_of(k: &EcFixture) -> String {
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        k.x, k.y
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A DPoP proof for `method` on the realm, `ath` = hash of `token`, signed by `key`.
fn proof(key: &EcFixture, method: &str, token: &str) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": key.x, "y": key.y}});
    let jti = JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let claims = json!({"jti": format!("post-{jti}"), "htm": method, "htu": REALM, "iat": NOW,
        "ath": b64(&Sha256::digest(token.as_bytes()))});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let ek = EncodingKey::from_ec_pem(key.pkcs8_pem.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &ek, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

#[test]
fn dpop_bound_password_and_refresh_grants_need_a_proof_from_the_same_key() {
    let config = rt_config();
    let key = proof_ec();
    let other = other_proof_ec();
    let mut claims = default_claims();
    claims["cnf"] = json!({"jkt": jkt_of(key)});
    let tok = optok(&claims);
    let form = password_form(&tok, "&access_type=offline");
    // Password grant: the proof is for POST, its ath the OpToken's hash.
    assert_oauth_error(
        &post(&config, &form),
        400,
        "invalid_dpop_proof",
        "dpop_missing",
    );
    let get_proof = proof(key, "GET", &tok);
    assert_oauth_error(
        &decide_post(&config, &form, &[("dpop", &get_proof)], None, NOW),
        400,
        "invalid_dpop_proof",
        "dpop_htm",
    );
    let p = proof(key, "POST", &tok);
    let d = decide_post(&config, &form, &[("dpop", &p)], None, NOW);
    assert_eq!(d.status, 200, "{}", d.body);
    let rt = body(&d)["refresh_token"].as_str().unwrap().to_string();
    // Refresh grant: a proof from the same key, ath the refresh token's hash.
    let rform = refresh_form(&rt, "");
    assert_oauth_error(
        &post(&config, &rform),
        400,
        "invalid_dpop_proof",
        "dpop_missing",
    );
    let wrong_key = proof(other, "POST", &rt);
    assert_oauth_error(
        &decide_post(&config, &rform, &[("dpop", &wrong_key)], None, NOW),
        400,
        "invalid_dpop_proof",
        "dpop_jkt_mismatch",
    );
    let wrong_ath = proof(key, "POST", &tok);
    assert_oauth_error(
        &decide_post(&config, &rform, &[("dpop", &wrong_ath)], None, NOW),
        400,
        "invalid_dpop_proof",
        "dpop_ath",
    );
    let good = proof(key, "POST", &rt);
    let d = decide_post(&config, &rform, &[("dpop", &good)], None, NOW);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.outcome, Outcome::Issued(Grant::RefreshToken));
    assert_eq!(
        d.audit.unwrap().binding,
        Some(format!("jkt:{}", jkt_of(key)))
    );
    // Replayed proof.
    assert_oauth_error(
        &decide_post(&config, &rform, &[("dpop", &good)], None, NOW),
        400,
        "invalid_dpop_proof",
        "dpop_replay",
    );
}

#[test]
fn unbound_refresh_token_refused_when_binding_becomes_required() {
    let rt = login_rt(&rt_config(), &default_claims());
    let strict = config_with(|c| c["authority"]["requireSenderConstraint"] = json!(true));
    assert_oauth_error(
        &post(&strict, &refresh_form(&rt, "")),
        400,
        "invalid_grant",
        "unbound_token",
    );
}

// ---- Configuration ---------------------------------------------------------------------

fn config_error(f: impl FnOnce(&mut Value)) -> String {
    let mut c = base_config();
    f(&mut c);
    Config::from_value(c).unwrap_err().to_string()
}

#[test]
fn refresh_token_configuration() {
    assert!(cfg_off().refresh_tokens.is_none());
    let c = rt_config();
    assert_eq!(
        c.refresh_tokens.as_ref().unwrap().lifetime_seconds,
        LIFETIME
    );
    assert!(
        !format!("{c:?}").contains(SECRET_A),
        "secrets never in Debug"
    );
    for (value, field) in [
        (
            json!({"lifetimeSeconds": 299, "secrets": [SECRET_A]}),
            "refreshTokens.lifetimeSeconds",
        ),
        (
            json!({"lifetimeSeconds": 2_592_001, "secrets": [SECRET_A]}),
            "refreshTokens.lifetimeSeconds",
        ),
        (json!({"lifetimeSeconds": 300}), "refreshTokens.secrets"),
        (
            json!({"lifetimeSeconds": 300, "secrets": [SECRET_A, "short"]}),
            "refreshTokens.secrets[1]",
        ),
        (
            json!({"secrets": [SECRET_A]}),
            "refreshTokens.lifetimeSeconds",
        ),
        (
            json!({"lifetimeSeconds": 300, "secret": [SECRET_A]}),
            "refreshTokens",
        ),
    ] {
        let e = config_error(|c| c["refreshTokens"] = value.clone());
        assert!(e.contains(field), "{value}: {e}");
    }
    assert!(Config::from_value({
        let mut c = base_config();
        c["refreshTokens"] = json!({"lifetimeSeconds": 2_592_000, "secrets": [SECRET_A]});
        c
    })
    .is_ok());
    assert!(Config::from_value({
        let mut c = base_config();
        c["refreshTokens"] = json!({});
        c
    })
    .unwrap()
    .refresh_tokens
    .is_none());
    let e = config_error(|c| c["revokedSubjects"] = json!([" x"]));
    assert!(e.contains("revokedSubjects[0]"), "{e}");
    let e = config_error(|c| c["revokedRefreshTokens"] = json!([""]));
    assert!(e.contains("revokedRefreshTokens[0]"), "{e}");
}

#[test]
fn refresh_token_environment_overrides() {
    let bytes = base_config().to_string();
    let env = [
        (
            "REGISTRY_TOKEN_REFRESHTOKENS__LIFETIMESECONDS",
            "600".to_string(),
        ),
        (
            "REGISTRY_TOKEN_REFRESHTOKENS__SECRETS",
            json!([SECRET_B, SECRET_A]).to_string(),
        ),
        ("REGISTRY_TOKEN_REVOKEDSUBJECTS", "bob,carol".to_string()),
        ("REGISTRY_TOKEN_REVOKEDREFRESHTOKENS", "id-1".to_string()),
    ];
    let c = Config::load(bytes.as_bytes(), env).unwrap();
    assert_eq!(c.refresh_tokens.as_ref().unwrap().lifetime_seconds, 600);
    assert!(c.revoked.subjects.contains("bob") && c.revoked.subjects.contains("carol"));
    assert!(c.revoked.refresh_tokens.contains("id-1"));
    // The env-configured secrets seal and open.
    let rt = login_rt(&c, &default_claims());
    assert_eq!(post(&c, &refresh_form(&rt, "")).status, 200);
    let comma = [(
        "REGISTRY_TOKEN_REFRESHTOKENS__SECRETS",
        format!("{SECRET_A},{SECRET_B}"),
    )];
    let mut v = base_config();
    v["refreshTokens"] = json!({"lifetimeSeconds": 300});
    let c = Config::load(v.to_string().as_bytes(), comma).unwrap();
    assert!(c.refresh_tokens.is_some());
}
