//! The verified-OpTok cache and mint reuse: hits and misses, expiry, the bound, failures
//! never cached, key-set and policy changes, per-request sender checks on a hit, and
//! decisions identical with and without the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use registry_token_core::config::{Config, KeySource};
use registry_token_core::handler::cache::{CacheStats, Caches};
use registry_token_core::handler::{self, Context, Decision, Outcome, RequestView};
use registry_token_core::sender::replay::MemoryReplayCache;
use registry_token_core::token::crypto::RustCrypto;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const Q: &str = "service=registry.example&scope=repository:stella-ops/public/base:pull";

fn reason(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

/// One decision with an explicit cache (or none) and replay cache.
fn run(
    config: &Config,
    cache: Option<&Caches>,
    replay: &MemoryReplayCache,
    query: &str,
    headers: &[(&str, &str)],
    peer_cert: Option<&str>,
    now: u64,
) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = format!("/token?{query}");
    let view = RequestView {
        method: "GET",
        path: &path,
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(peer_cert),
        body: None,
    };
    let keys = match &config.authority.keys {
        KeySource::Inline(k) => Some(k),
        KeySource::Remote { .. } => None,
    };
    let ctx = Context {
        config,
        keys: keys.into(),
        crypto: &RustCrypto,
        now,
        replay,
        cache,
        revocation: registry_token_core::policy::revocation::RemoteList::NotConfigured,
    };
    handler::handle_token(&view, &ctx)
}

fn bearer_at(config: &Config, cache: &Caches, token: &str, now: u64) -> Decision {
    let replay = MemoryReplayCache::new(180);
    run(
        config,
        Some(cache),
        &replay,
        Q,
        &[("authorization", &bearer(token))],
        None,
        now,
    )
}

fn claims_with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = default_claims();
    f(c.as_object_mut().unwrap());
    c
}

fn stats(c: &Caches) -> (u64, u64, u64) {
    let CacheStats {
        optok_hits,
        optok_misses,
        mint_reused,
    } = c.stats();
    (optok_hits, optok_misses, mint_reused)
}

#[test]
fn second_use_of_a_token_is_a_hit_with_the_same_decision() {
    let config = config_from(base_config());
    let cache = Caches::default();
    let tok = optok(&default_claims());
    let a = bearer_at(&config, &cache, &tok, NOW);
    let b = bearer_at(&config, &cache, &tok, NOW + 5);
    assert_eq!((a.status, b.status), (200, 200), "{}", b.body);
    assert_eq!(stats(&cache), (1, 1, 0));
    assert_eq!(cache.len(), (1, 0));
    assert_eq!(a.audit.unwrap().subject, b.audit.unwrap().subject);
    // Another token is a miss.
    let other = optok(&claims_with(|c| {
        c.insert("sub".into(), json!("bob"));
    }));
    assert_eq!(bearer_at(&config, &cache, &other, NOW).status, 200);
    assert_eq!(stats(&cache), (1, 2, 0));
}

#[test]
fn an_entry_lasts_until_exp_and_never_beyond() {
    let config = config_from(base_config());
    let cache = Caches::default();
    let tok = optok(&claims_with(|c| {
        c.insert("exp".into(), json!(NOW + 100));
    }));
    assert_eq!(bearer_at(&config, &cache, &tok, NOW).status, 200);
    assert_eq!(bearer_at(&config, &cache, &tok, NOW + 99).status, 200);
    assert_eq!(stats(&cache), (1, 1, 0));
    // At exp the entry no longer answers: the token is verified again (accepted inside
    // the skew, exactly as without a cache) and not stored again (its interval is empty).
    assert_eq!(bearer_at(&config, &cache, &tok, NOW + 100).status, 200);
    assert_eq!(stats(&cache), (1, 2, 0));
    assert_eq!(cache.len(), (0, 0));
    let d = bearer_at(&config, &cache, &tok, NOW + 160);
    assert_eq!((d.status, reason(&d)), (401, "expired"));
}

#[test]
fn an_entry_never_answers_before_it_was_verified() {
    // A clock that steps back must not let a not-yet-valid token through.
    let config = config_from(base_config());
    let cache = Caches::default();
    let tok = optok(&claims_with(|c| {
        c.insert("nbf".into(), json!(NOW));
        c.insert("iat".into(), json!(NOW));
    }));
    assert_eq!(bearer_at(&config, &cache, &tok, NOW).status, 200);
    let d = bearer_at(&config, &cache, &tok, NOW - 61);
    assert_eq!((d.status, reason(&d)), (401, "not_yet_valid"));
    assert_eq!(stats(&cache), (0, 2, 0));
}

#[test]
fn the_cache_is_bounded() {
    let config = config_from(base_config());
    let cache = Caches::new(3, 3);
    let tokens: Vec<String> = (0..5)
        .map(|i| {
            optok(&claims_with(|c| {
                c.insert("sub".into(), json!(format!("user-{i}")));
            }))
        })
        .collect();
    for t in &tokens {
        assert_eq!(bearer_at(&config, &cache, t, NOW).status, 200);
    }
    assert_eq!(cache.len().0, 3);
    // The two oldest were evicted; the three newest hit.
    for t in &tokens[2..] {
        bearer_at(&config, &cache, t, NOW);
    }
    assert_eq!(stats(&cache), (3, 5, 0));
    bearer_at(&config, &cache, &tokens[0], NOW);
    assert_eq!(stats(&cache), (3, 6, 0));
    assert_eq!(cache.len().0, 3);
}

#[test]
fn failed_verifications_are_never_cached() {
    let config = config_from(base_config());
    let cache = Caches::default();
    let good = optok(&default_claims());
    // Change the signature's first character: the last one carries padding bits, and a
    // non-canonical last character is refused as malformed base64url before any check.
    let dot = good.rfind('.').expect("three parts") + 1;
    let mut forged = good.clone();
    let first = &good[dot..=dot];
    forged.replace_range(dot..=dot, if first == "A" { "B" } else { "A" });
    let cases = [
        (forged, "bad_signature"),
        (
            optok(&claims_with(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            })),
            "wrong_issuer",
        ),
        (
            optok(&claims_with(|c| {
                c.insert("exp".into(), json!(NOW - 61));
            })),
            "expired",
        ),
        (
            sign_rsa(&default_claims(), Algorithm::RS256, Some("nope")),
            "unknown_key",
        ),
        (
            optok(&claims_with(|c| {
                c.insert("scope".into(), json!("openid"));
            })),
            "insufficient_scope",
        ),
    ];
    for (tok, want) in &cases {
        for _ in 0..2 {
            let d = bearer_at(&config, &cache, tok, NOW);
            assert_eq!(reason(&d), *want, "{}", d.body);
        }
    }
    assert_eq!(cache.len(), (0, 0));
    assert_eq!(stats(&cache), (0, 10, 0));
}

#[test]
fn a_key_set_change_invalidates_entries() {
    let cache = Caches::default();
    let tok = optok(&default_claims());
    let config = config_from(base_config());
    assert_eq!(bearer_at(&config, &cache, &tok, NOW).status, 200);
    // Rotation: the OpTok's key is gone. The cached verification must not answer.
    let mut rotated = base_config();
    rotated["authority"]["jwks"] = json!({"keys": [other_rsa().jwk(AUTH_KID)]});
    let rotated = config_from(rotated);
    let d = bearer_at(&rotated, &cache, &tok, NOW);
    assert_eq!((d.status, reason(&d)), (401, "bad_signature"));
    // A key added next to the old one: a new set, so verified again (and accepted).
    let mut grown = base_config();
    grown["authority"]["jwks"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(other_rsa().jwk("other"));
    let grown = config_from(grown);
    assert_eq!(bearer_at(&grown, &cache, &tok, NOW).status, 200);
    assert_eq!(stats(&cache), (0, 3, 0));
    // Under the grown set the entry answers (same keys, same verdict)...
    assert_eq!(bearer_at(&grown, &cache, &tok, NOW).status, 200);
    assert_eq!(stats(&cache), (1, 3, 0));
    // ...and back to the first set the token is verified again (an entry holds the one
    // context it was last verified under) and accepted.
    assert_eq!(bearer_at(&config, &cache, &tok, NOW).status, 200);
    assert_eq!(stats(&cache), (1, 4, 0));
}

#[test]
fn a_policy_change_invalidates_entries() {
    let cache = Caches::default();
    let tok = optok(&default_claims());
    let config = config_from(base_config());
    assert_eq!(bearer_at(&config, &cache, &tok, NOW).status, 200);
    for (path, value, want) in [
        ("audiences", json!(["someone-else"]), "wrong_audience"),
        (
            "issuer",
            json!("https://other-authority.example"),
            "wrong_issuer",
        ),
        ("algorithms", json!(["ES256"]), "disallowed_alg"),
        (
            "requiredScopes",
            json!(["registry.token.issue", "admin"]),
            "insufficient_scope",
        ),
    ] {
        let mut c = base_config();
        c["authority"][path] = value;
        let d = bearer_at(&config_from(c), &cache, &tok, NOW);
        assert_eq!(reason(&d), want, "{path}: {}", d.body);
    }
    assert_eq!(stats(&cache).0, 0);
}

// ---------------------------------------------------------------------------------------
// Sender constraints are per request.
// ---------------------------------------------------------------------------------------

fn jkt() -> String {
    let k = proof_ec();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        k.x, k.y
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

fn proof(token: &str, jti: &str) -> String {
    let k = proof_ec();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256",
        "jwk": {"kty": "EC", "crv": "P-256", "x": k.x, "y": k.y}});
    let claims = json!({"jti": jti, "htm": "GET", "htu": REALM, "iat": NOW,
        "ath": b64(&Sha256::digest(token.as_bytes()))});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let ek = EncodingKey::from_ec_pem(k.pkcs8_pem.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &ek, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn strict() -> Config {
    let mut c = base_config();
    c["authority"]["requireSenderConstraint"] = json!(true);
    config_from(c)
}

#[test]
fn dpop_proofs_are_checked_on_every_request_even_on_a_hit() {
    let config = strict();
    let cache = Caches::default();
    let replay = MemoryReplayCache::new(180);
    let tok = optok(&claims_with(|c| {
        c.insert("cnf".into(), json!({"jkt": jkt()}));
    }));
    let auth = format!("DPoP {tok}");
    let call = |proofs: &[&str]| {
        let mut h: Vec<(&str, &str)> = vec![("authorization", &auth)];
        h.extend(proofs.iter().map(|p| ("dpop", *p)));
        run(&config, Some(&cache), &replay, Q, &h, None, NOW)
    };
    let p1 = proof(&tok, "one");
    assert_eq!(call(&[&p1]).status, 200);
    let d = call(&[&p1]);
    assert_eq!((d.status, reason(&d)), (401, "dpop_replay"));
    let d = call(&[]);
    assert_eq!((d.status, reason(&d)), (401, "dpop_missing"));
    let d = call(&[&proof("some other token", "two")]);
    assert_eq!((d.status, reason(&d)), (401, "dpop_ath"));
    assert_eq!(call(&[&proof(&tok, "three")]).status, 200);
    assert_eq!(stats(&cache), (4, 1, 0), "the OpTok was verified once");
}

#[test]
fn mtls_binding_is_checked_on_every_request_even_on_a_hit() {
    let config = strict();
    let cache = Caches::default();
    let replay = MemoryReplayCache::new(180);
    let digest = [0xabu8; 32];
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let tok = optok(&claims_with(|c| {
        c.insert("cnf".into(), json!({"x5t#S256": b64(&digest)}));
    }));
    let auth = bearer(&tok);
    let call = |peer: Option<&str>| {
        run(
            &config,
            Some(&cache),
            &replay,
            Q,
            &[("authorization", &auth)],
            peer,
            NOW,
        )
    };
    assert_eq!(call(Some(&hex)).status, 200);
    assert_eq!(reason(&call(None)), "mtls_no_certificate");
    let other = "cd".repeat(32);
    assert_eq!(reason(&call(Some(&other))), "mtls_mismatch");
    assert_eq!(call(Some(&hex)).status, 200);
    assert_eq!(stats(&cache), (3, 1, 0));
}

#[test]
fn decisions_are_identical_with_and_without_the_cache_on_dpop_inputs() {
    // The plain decision tests compare every non-DPoP input already (common::decide_at);
    // here the DPoP ones, each side with its own replay cache.
    let config = strict();
    let cache = Caches::default();
    let (replay_a, replay_b) = (MemoryReplayCache::new(180), MemoryReplayCache::new(180));
    let bound = optok(&claims_with(|c| {
        c.insert("cnf".into(), json!({"jkt": jkt()}));
    }));
    let unbound = optok(&default_claims());
    let inputs: Vec<(String, Vec<String>)> = vec![
        (format!("DPoP {bound}"), vec![proof(&bound, "a")]),
        (format!("DPoP {bound}"), vec![proof(&bound, "a")]),
        (format!("Bearer {bound}"), vec![proof(&bound, "b")]),
        (format!("DPoP {bound}"), vec![]),
        (
            format!("DPoP {bound}"),
            vec![proof(&bound, "c"), proof(&bound, "d")],
        ),
        (format!("DPoP {unbound}"), vec![proof(&unbound, "e")]),
        (format!("Bearer {unbound}"), vec![]),
        (format!("DPoP {bound}"), vec![proof(&bound, "f")]),
    ];
    for (auth, proofs) in &inputs {
        let mut h: Vec<(&str, &str)> = vec![("authorization", auth)];
        h.extend(proofs.iter().map(|p| ("dpop", p.as_str())));
        let with = run(&config, Some(&cache), &replay_a, Q, &h, None, NOW);
        let without = run(&config, None, &replay_b, Q, &h, None, NOW);
        assert_same_decision(&with, &without);
    }
    assert!(stats(&cache).0 >= 4, "{:?}", cache.stats());
}

// ---------------------------------------------------------------------------------------
// Mint reuse.
// ---------------------------------------------------------------------------------------

fn reuse_config(seconds: u64) -> Config {
    let mut c = base_config();
    c["signing"]["reuseSeconds"] = json!(seconds);
    c["defaultPlan"] = json!("enterprise");
    config_from(c)
}

fn token_of(d: &Decision) -> String {
    assert_eq!(d.status, 200, "{}", d.body);
    body(d)["token"].as_str().unwrap().to_string()
}

#[test]
fn mint_reuse_hands_out_the_same_token_within_the_window() {
    let config = reuse_config(60);
    let cache = Caches::default();
    let tok = optok(&default_claims());
    let first = bearer_at(&config, &cache, &tok, NOW);
    let again = bearer_at(&config, &cache, &tok, NOW + 59);
    assert_eq!(token_of(&first), token_of(&again));
    let b = body(&again);
    assert_eq!(b["expires_in"], 300 - 59, "the remaining lifetime");
    assert_eq!(b["issued_at"], body(&first)["issued_at"]);
    let (a1, a2) = (first.audit.clone().unwrap(), again.audit.clone().unwrap());
    assert_eq!(a1.jti, a2.jti);
    assert_eq!(a2.exp, Some(NOW + 300));
    assert_eq!(stats(&cache).2, 1);
    let claims = verify_minted(&token_of(&again), SERVICE);
    assert_eq!(claims["exp"], NOW + 300);
    // At the end of the window a new token is minted.
    let later = bearer_at(&config, &cache, &tok, NOW + 60);
    assert_ne!(token_of(&later), token_of(&first));
    assert_eq!(body(&later)["expires_in"], 300);
}

#[test]
fn mint_reuse_needs_the_same_subject_binding_service_and_grant() {
    let config = reuse_config(60);
    let cache = Caches::default();
    let replay = MemoryReplayCache::new(180);
    let call = |token: &str, query: &str| {
        token_of(&run(
            &config,
            Some(&cache),
            &replay,
            query,
            &[("authorization", &bearer(token))],
            None,
            NOW,
        ))
    };
    let alice = optok(&default_claims());
    let base = call(&alice, Q);
    // Another OpTok of the same subject and binding: the same token (the key is the
    // subject, not the OpTok).
    let alice2 = optok(&claims_with(|c| {
        c.insert("jti".into(), json!("another"));
    }));
    assert_eq!(call(&alice2, Q), base);
    let bob = optok(&claims_with(|c| {
        c.insert("sub".into(), json!("bob"));
    }));
    assert_ne!(call(&bob, Q), base, "subject");
    let mtls = optok(&claims_with(|c| {
        c.insert("cnf".into(), json!({"x5t#S256": b64(&[7u8; 32])}));
    }));
    let hex = "07".repeat(32);
    let bound = token_of(&run(
        &config,
        Some(&cache),
        &replay,
        Q,
        &[("authorization", &bearer(&mtls))],
        Some(&hex),
        NOW,
    ));
    assert_ne!(bound, base, "binding");
    assert_ne!(
        call(
            &alice,
            "service=registry.example&scope=repository:stella-ops/public/base:pull,push"
        ),
        base,
        "granted access"
    );
    assert_ne!(
        call(
            &alice,
            "service=registry.example&scope=repository:stella-ops/public/other:pull"
        ),
        base,
        "repository"
    );
    // What is asked beyond the grant does not matter: the grant is the same.
    let mut c = base_config();
    c["signing"]["reuseSeconds"] = json!(60);
    let community = config_from(c);
    let grant_only = |q: &str| {
        token_of(&run(
            &community,
            Some(&cache),
            &replay,
            q,
            &[("authorization", &bearer(&alice))],
            None,
            NOW,
        ))
    };
    assert_eq!(
        grant_only(Q),
        grant_only("service=registry.example&scope=repository:stella-ops/public/base:pull,push")
    );
}

#[test]
fn mint_reuse_is_off_by_default_and_without_a_cache() {
    let tok = optok(&default_claims());
    let cache = Caches::default();
    let off = config_from(base_config());
    assert_eq!(off.signing.reuse_seconds, 0);
    assert_ne!(
        token_of(&bearer_at(&off, &cache, &tok, NOW)),
        token_of(&bearer_at(&off, &cache, &tok, NOW))
    );
    let on = reuse_config(60);
    let replay = MemoryReplayCache::new(180);
    let h = [("authorization", bearer(&tok))];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_ne!(
        token_of(&run(&on, None, &replay, Q, &h, None, NOW)),
        token_of(&run(&on, None, &replay, Q, &h, None, NOW))
    );
    assert_eq!(cache.len().1, 0);
}

#[test]
fn a_signing_key_change_is_never_served_a_reused_token() {
    let cache = Caches::default();
    let tok = optok(&default_claims());
    let rsa = reuse_config(60);
    let first = token_of(&bearer_at(&rsa, &cache, &tok, NOW));
    let mut ec = base_config();
    ec["signing"] =
        json!({"keyPem": signing_ec().pkcs8_pem, "algorithm": "ES256", "reuseSeconds": 60});
    ec["defaultPlan"] = json!("enterprise");
    let ec = config_from(ec);
    let second = token_of(&bearer_at(&ec, &cache, &tok, NOW));
    assert_ne!(first, second);
    let header = jsonwebtoken::decode_header(&second).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
}

#[test]
fn reuse_seconds_is_validated_and_overridable() {
    let mut c = base_config();
    c["signing"]["reuseSeconds"] = json!(151);
    let err = Config::from_value(c).unwrap_err();
    assert_eq!(err.field, "signing.reuseSeconds");
    assert!(err.reason.contains("half the lifetime"), "{err}");
    let mut c = base_config();
    c["signing"]["lifetimeSeconds"] = json!(600);
    c["signing"]["reuseSeconds"] = json!(300);
    assert_eq!(config_from(c).signing.reuse_seconds, 300);
    let bytes = base_config().to_string();
    let config = Config::load(
        bytes.as_bytes(),
        [("REGISTRY_TOKEN_SIGNING__REUSESECONDS", "30")],
    )
    .unwrap();
    assert_eq!(config.signing.reuse_seconds, 30);
}
