//! The `/token` decision end to end in native code: OpToks signed by `jsonwebtoken`,
//! minted tokens checked by `jsonwebtoken`. The OpToken's own checks are in `optok`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use jsonwebtoken::Algorithm;
use registry_token_core::handler::{Grant, Outcome};
use serde_json::{json, Value};

mod optok;

const PULL_PUBLIC: &str = "service=registry.example&scope=repository:stella-ops/public/base:pull";

fn cfg() -> registry_token_core::config::Config {
    config_from(base_config())
}

fn reason(d: &registry_token_core::handler::Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

fn with_claims(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut c = default_claims();
    f(c.as_object_mut().unwrap());
    optok(&c)
}

#[test]
fn issues_a_registry_token_for_the_default_plan() {
    let config = cfg();
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.outcome, Outcome::Issued(Grant::Get));
    assert_eq!(header(&d, "cache-control"), Some("no-store"));
    assert_eq!(header(&d, "content-type"), Some("application/json"));
    let b = body(&d);
    assert_eq!(b["token"], b["access_token"]);
    assert_eq!(b["expires_in"], 300);
    assert_eq!(b["issued_at"], "2027-01-15T08:00:00Z");
    let claims = verify_minted(b["token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["iss"], "registry-token-service");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["aud"], SERVICE,
        "aud must be a string for registry 2.8"
    );
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["nbf"], NOW);
    assert_eq!(claims["exp"], NOW + 300);
    assert_eq!(
        claims["jti"].as_str().unwrap().len(),
        22,
        "128 bits base64url"
    );
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "stella-ops/public/base", "actions": ["pull"]}])
    );
    let audit = d.audit.unwrap();
    assert_eq!(audit.decision, "issued");
    assert_eq!(audit.subject.as_deref(), Some("alice"));
    assert_eq!(audit.plan.as_deref(), Some("community"));
    assert_eq!(audit.jti.as_deref(), claims["jti"].as_str());
    assert_eq!(audit.exp, Some(NOW + 300));
}

#[test]
fn minted_header_carries_alg_typ_and_thumbprint_kid() {
    let config = cfg();
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    let token = body(&d)["token"].as_str().unwrap().to_string();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    // RFC 7638 thumbprint of the signing key, computed here independently.
    let pk = &signing_rsa().public;
    use rsa::traits::PublicKeyParts;
    use sha2::Digest;
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        b64(&pk.e().to_bytes_be()),
        b64(&pk.n().to_bytes_be())
    );
    assert_eq!(
        header.kid.unwrap(),
        b64(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    assert!(header.x5c.is_none());
}

#[test]
fn docker_login_without_scope_gets_empty_access() {
    let config = cfg();
    let d = decide(
        &config,
        "service=registry.example",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["access"], json!([]));
}

#[test]
fn grant_is_the_intersection_of_asked_and_allowed() {
    let config = cfg();
    let d = decide(
        &config,
        "service=registry.example&scope=repository:stella-ops/public/base:pull,push",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 200);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]));
}

#[test]
fn several_scopes_some_denied_grants_the_rest() {
    let config = cfg();
    let d = decide(
        &config,
        "service=registry.example&scope=repository:stella-ops/public/a:pull&scope=repository:other/x:pull",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 200);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), SERVICE);
    assert_eq!(
        claims["access"],
        json!([{"type":"repository","name":"stella-ops/public/a","actions":["pull"]}])
    );
}

#[test]
fn space_separated_scopes_in_one_parameter() {
    let config = config_from({
        let mut c = base_config();
        c["defaultPlan"] = json!("enterprise");
        c
    });
    let d = decide(
        &config,
        "service=registry.example&scope=repository:stella-ops/a:pull+registry:catalog:*",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["access"].as_array().unwrap().len(), 2);
    assert_eq!(
        claims["access"][1],
        json!({"type":"registry","name":"catalog","actions":["*"]})
    );
}

#[test]
fn plan_claim_selects_the_plan_and_first_match_wins() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.insert("stellaops:plan".into(), json!("enterprise"));
    });
    let d = decide(
        &config,
        "service=registry.example&scope=repository:stella-ops/private/locked:pull,push&scope=repository:stella-ops/private/open:pull,push",
        &[("authorization", &bearer(&tok))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]));
    assert_eq!(claims["access"][1]["actions"], json!(["pull", "push"]));
}

#[test]
fn plan_granting_nothing_is_403() {
    let config = cfg();
    let d = decide(
        &config,
        "service=registry.example&scope=repository:other/thing:push",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "plan_denied");
    let b = body(&d);
    assert_eq!(b["status"], 403);
    assert_eq!(b["title"], "Forbidden");
    assert_eq!(b["errors"][0]["code"], "DENIED");
    assert!(b["type"].as_str().unwrap().ends_with("plan_denied"));
    assert_eq!(header(&d, "cache-control"), Some("no-store"));
    assert_eq!(header(&d, "content-type"), Some("application/problem+json"));
}

#[test]
fn unknown_plan_claim_is_403() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.insert("stellaops:plan".into(), json!("platinum"));
    });
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "unknown_plan");
}

#[test]
fn no_plan_and_no_default_is_403() {
    let mut c = base_config();
    c.as_object_mut().unwrap().remove("defaultPlan");
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "missing_plan");
}

#[test]
fn revoked_licence_is_403_before_the_plan() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.insert("stellaops:plan".into(), json!("admin"));
        c.insert("stellaops:license".into(), json!("lic-0042"));
    });
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&tok))]);
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "license_revoked");
    let ok = with_claims(|c| {
        c.insert("stellaops:license".into(), json!("lic-0043"));
    });
    assert_eq!(
        decide(&config, PULL_PUBLIC, &[("authorization", &bearer(&ok))]).status,
        200
    );
}

#[test]
fn missing_credentials_is_401_with_a_bearer_challenge() {
    let config = cfg();
    let d = decide(&config, PULL_PUBLIC, &[]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "missing_credentials");
    let challenge = header(&d, "www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"https://gateway.example/token\""),
        "{challenge}"
    );
    assert!(
        !challenge.contains("error="),
        "RFC 6750 §3.1: no error code without credentials"
    );
    assert_eq!(body(&d)["errors"][0]["code"], "UNAUTHORIZED");
}

#[test]
fn basic_credentials_carry_the_optok_as_password() {
    let config = cfg();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("alice:{}", optok(&default_claims()))
        )
    );
    let d = decide(&config, PULL_PUBLIC, &[("authorization", &basic)]);
    assert_eq!(d.status, 200, "{}", d.body);
    for bad in ["Basic !!!", "Basic bm9jb2xvbg==", "Basic YWxpY2U6"] {
        let d = decide(&config, PULL_PUBLIC, &[("authorization", bad)]);
        assert_eq!(d.status, 401, "{bad}");
        assert_eq!(reason(&d), "malformed_credentials");
    }
}

#[test]
fn authorization_scheme_is_case_insensitive_and_unknown_schemes_refused() {
    let config = cfg();
    let tok = optok(&default_claims());
    assert_eq!(
        decide(
            &config,
            PULL_PUBLIC,
            &[("authorization", &format!("bearer {tok}"))]
        )
        .status,
        200
    );
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &format!("Token {tok}"))],
    );
    assert_eq!(d.status, 401);
    let d = decide(&config, PULL_PUBLIC, &[("authorization", "Bearer")]);
    assert_eq!(d.status, 401);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[
            ("authorization", &bearer(&tok)),
            ("authorization", &bearer(&tok)),
        ],
    );
    assert_eq!(d.status, 400);
}

#[test]
fn request_errors_are_400() {
    let config = cfg();
    let auth = bearer(&optok(&default_claims()));
    let cases = [
        ("scope=repository:a:pull", "missing_service"),
        ("service=&scope=repository:a:pull", "missing_service"),
        (
            "service=registry.example&scope=repository:UPPER:pull",
            "malformed_scope",
        ),
        (
            "service=registry.example&scope=repository:a",
            "malformed_scope",
        ),
        (
            "service=registry.example&scope=repository:a:",
            "malformed_scope",
        ),
        ("service=registry.example&scope=nonsense", "malformed_scope"),
        ("service=registry.example&scope=%zz", "malformed_request"),
    ];
    for (q, want) in cases {
        let d = decide(&config, q, &[("authorization", &auth)]);
        assert_eq!(d.status, 400, "{q}: {}", d.body);
        assert_eq!(reason(&d), want, "{q}");
        let b = body(&d);
        assert_eq!(b["status"], 400);
        assert!(!b["detail"].as_str().unwrap().is_empty());
        assert!(header(&d, "www-authenticate").is_none());
    }
}

#[test]
fn too_many_scopes_or_a_huge_query_is_400() {
    let config = cfg();
    let auth = bearer(&optok(&default_claims()));
    let many: Vec<String> = (0..33)
        .map(|i| format!("scope=repository:r{i}:pull"))
        .collect();
    let d = decide(
        &config,
        &format!("service=registry.example&{}", many.join("&")),
        &[("authorization", &auth)],
    );
    assert_eq!(d.status, 400);
    let huge = format!("service=registry.example&pad={}", "a".repeat(9000));
    let d = decide(&config, &huge, &[("authorization", &auth)]);
    assert_eq!(d.status, 400);
}

/// Hardening: the allow-list is required; `[]` no longer means "any" (it is a
/// configuration error, see tests/core/config.rs); `["*"]` is the explicit opt-out.
#[test]
fn unknown_service_is_403_and_any_service_only_with_an_explicit_star() {
    let config = cfg();
    let auth = bearer(&optok(&default_claims()));
    let d = decide(&config, "service=evil.example", &[("authorization", &auth)]);
    assert_eq!(d.status, 403);
    assert_eq!(reason(&d), "unknown_service");
    let mut c = base_config();
    c["registry"]["allowedServices"] = json!(["*"]);
    let open = config_from(c);
    assert_eq!(open.warnings().len(), 1, "the opt-out is warned about");
    let d = decide(&open, "service=any.example", &[("authorization", &auth)]);
    assert_eq!(d.status, 200);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), "any.example");
    assert_eq!(claims["aud"], "any.example");
}

#[test]
fn other_methods_are_405() {
    let config = cfg();
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let d = decide_at(&config, method, PULL_PUBLIC, &[], None, NOW);
        assert_eq!(d.status, 405);
        assert_eq!(reason(&d), "method_not_allowed");
        assert_eq!(header(&d, "allow"), Some("GET, HEAD, POST"));
    }
}

#[test]
fn sender_constraint_required_refuses_unbound_tokens() {
    let mut c = base_config();
    c["authority"]["requireSenderConstraint"] = json!(true);
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "unbound_token");
}

#[test]
fn lifetime_is_configurable() {
    let mut c = base_config();
    c["signing"]["lifetimeSeconds"] = json!(120);
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(body(&d)["expires_in"], 120);
    let claims = verify_minted(body(&d)["token"].as_str().unwrap(), SERVICE);
    assert_eq!(claims["exp"], NOW + 120);
}

#[test]
fn es256_minting_verifies_independently() {
    let mut c = base_config();
    c["signing"] = json!({"keyPem": signing_ec().sec1_pem, "algorithm": "ES256"});
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    let token = body(&d)["token"].as_str().unwrap().to_string();
    let key =
        jsonwebtoken::DecodingKey::from_ec_components(&signing_ec().x, &signing_ec().y).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.set_audience(&[SERVICE]);
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
    assert_eq!(data.header.alg, Algorithm::ES256);
    assert_eq!(data.claims["access"][0]["name"], "stella-ops/public/base");
}

#[test]
fn libtrust_kid_format() {
    let mut c = base_config();
    c["signing"]["kidFormat"] = json!("libtrust");
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    let token = body(&d)["token"].as_str().unwrap().to_string();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    // Independent libtrust fingerprint: SHA-256 of the DER SPKI, 30 bytes, base32, 4-groups.
    use rsa::pkcs8::EncodePublicKey;
    use sha2::Digest;
    let der = signing_rsa().public.to_public_key_der().unwrap();
    let digest = sha2::Sha256::digest(der.as_bytes());
    let b32 = base32_nopad(&digest[..30]);
    let groups: Vec<String> = b32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert_eq!(kid, groups.join(":"));
    assert_eq!(kid.len(), 59);
}

fn base32_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[test]
fn explicit_key_id_wins() {
    let mut c = base_config();
    c["signing"]["keyId"] = json!("my-key-2026");
    let config = config_from(c);
    let d = decide(
        &config,
        PULL_PUBLIC,
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    let token = body(&d)["token"].as_str().unwrap().to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.unwrap(),
        "my-key-2026"
    );
}

#[test]
fn keys_unavailable_is_503_with_retry_after() {
    let config = cfg();
    let headers = vec![(
        "authorization".to_string(),
        bearer(&optok(&default_claims())),
    )];
    let path = format!("/token?{PULL_PUBLIC}");
    let view = registry_token_core::handler::RequestView {
        method: "GET",
        path: &path,
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
        body: None,
    };
    let crypto = registry_token_core::token::crypto::RustCrypto;
    let ctx = registry_token_core::handler::Context {
        config: &config,
        keys: None.into(),
        crypto: &crypto,
        now: NOW,
        replay: replay_cache(),
        cache: None,
        revocation: registry_token_core::policy::revocation::RemoteList::NotConfigured,
    };
    let d = registry_token_core::handler::handle_token(&view, &ctx);
    assert_eq!(d.status, 503);
    assert_eq!(header(&d, "retry-after"), Some("5"));
    assert_eq!(reason(&d), "keys_unavailable");
}

#[test]
fn error_bodies_never_carry_secrets() {
    let config = cfg();
    let tok = with_claims(|c| {
        c.insert("stellaops:plan".into(), json!("platinum"));
    });
    for q in [
        PULL_PUBLIC,
        "service=registry.example&scope=repository:x/y:push",
    ] {
        let d = decide(&config, q, &[("authorization", &bearer(&tok))]);
        assert!(!d.body.contains(&tok));
        assert!(!d.body.contains("PRIVATE KEY"));
        let audit = serde_json::to_string(&d.audit).unwrap();
        assert!(
            !audit.contains(&tok),
            "the audit record must not hold the OpTok"
        );
    }
}

#[test]
fn plan_refusals_do_not_claim_a_missing_optok_scope() {
    let config = cfg();
    let d = decide(
        &config,
        "service=registry.example&scope=repository:other/thing:push",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    let challenge = header(&d, "www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        !challenge.contains("scope=\"registry.token.issue\""),
        "{challenge}"
    );
}

#[test]
fn audit_keeps_what_was_asked_even_when_malformed() {
    let config = cfg();
    let d = decide(
        &config,
        "service=registry.example&scope=repository:UPPER:pull&scope=repository:ok:pull",
        &[("authorization", &bearer(&optok(&default_claims())))],
    );
    assert_eq!(d.status, 400);
    let audit = d.audit.unwrap();
    assert_eq!(audit.reason, "malformed_scope");
    assert_eq!(
        audit.requested,
        vec!["repository:UPPER:pull", "repository:ok:pull"]
    );
}
