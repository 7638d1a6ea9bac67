//! Sender constraints: DPoP proofs (RFC 9449) and mTLS-bound tokens (RFC 8705).
//! Proofs are signed with `jsonwebtoken`'s primitives, not the filter's code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use registry_token_core::handler::{Decision, Outcome};
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

fn jkt_of(k: &EcFixture) -> String {
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        k.x, k.y
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

fn ath(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn fresh_jti() -> String {
    format!(
        "jti-{}",
        JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Builds a proof from raw header and claims, signed ES256 with `key`.
fn sign_es256(header: &Value, claims: &Value, key: &EcFixture) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let ek = EncodingKey::from_ec_pem(key.pkcs8_pem.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &ek, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn proof_header(key: &EcFixture) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": key.x, "y": key.y}})
}

fn proof_claims(token: &str) -> Value {
    json!({"jti": fresh_jti(), "htm": "GET", "htu": REALM, "iat": NOW, "ath": ath(token)})
}

fn proof(token: &str) -> String {
    sign_es256(&proof_header(proof_ec()), &proof_claims(token), proof_ec())
}

fn bound_optok() -> String {
    let mut c = default_claims();
    c["cnf"] = json!({"jkt": jkt_of(proof_ec())});
    optok(&c)
}

fn strict_config() -> registry_token_core::config::Config {
    let mut c = base_config();
    c["authority"]["requireSenderConstraint"] = json!(true);
    config_from(c)
}

fn dpop_call(
    config: &registry_token_core::config::Config,
    token: &str,
    proofs: &[&str],
) -> Decision {
    let auth = format!("DPoP {token}");
    let mut headers: Vec<(&str, &str)> = vec![("authorization", &auth)];
    for p in proofs {
        headers.push(("dpop", p));
    }
    decide(config, Q, &headers)
}

fn assert_invalid_proof(d: &Decision, want: &str) {
    assert_eq!(d.status, 401, "{want}: {}", d.body);
    assert_eq!(reason(d), want);
    let challenge = header(d, "www-authenticate").unwrap();
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(
        challenge.contains("error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    assert!(challenge.contains("algs=\""), "{challenge}");
    assert!(challenge.contains("ES256"), "{challenge}");
}

#[test]
fn valid_proof_under_dpop_scheme_is_accepted_and_replay_refused() {
    let config = strict_config();
    let token = bound_optok();
    let p = proof(&token);
    let d = dpop_call(&config, &token, &[&p]);
    assert_eq!(d.status, 200, "{}", d.body);
    let audit = d.audit.unwrap();
    assert_eq!(
        audit.binding.unwrap(),
        format!("jkt:{}", jkt_of(proof_ec()))
    );
    let again = dpop_call(&config, &token, &[&p]);
    assert_invalid_proof(&again, "dpop_replay");
}

#[test]
fn bearer_scheme_with_a_dpop_header_is_accepted_as_the_runbook_shows() {
    let config = strict_config();
    let token = bound_optok();
    let p = proof(&token);
    let d = decide(
        &config,
        Q,
        &[("authorization", &bearer(&token)), ("dpop", &p)],
    );
    assert_eq!(d.status, 200, "{}", d.body);
}

#[test]
fn bound_token_without_a_proof_is_refused_under_every_scheme() {
    let config = strict_config();
    let token = bound_optok();
    assert_invalid_proof(
        &decide(&config, Q, &[("authorization", &bearer(&token))]),
        "dpop_missing",
    );
    assert_invalid_proof(&dpop_call(&config, &token, &[]), "dpop_missing");
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("u:{token}")
        )
    );
    assert_invalid_proof(
        &decide(&config, Q, &[("authorization", &basic)]),
        "dpop_missing",
    );
}

#[test]
fn dpop_scheme_with_an_unbound_token_is_refused() {
    let config = config_from(base_config());
    let token = optok(&default_claims());
    let d = dpop_call(&config, &token, &[&proof(&token)]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "dpop_unbound_token");
}

#[test]
fn each_check_violated_on_purpose() {
    let config = strict_config();
    let token = bound_optok();
    let k = proof_ec();
    let other = other_proof_ec();
    type Case = (&'static str, Box<dyn Fn() -> Vec<String>>);
    let t = token.clone();
    let cases: Vec<Case> = vec![
        (
            "dpop_typ",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h["typ"] = json!("JWT");
                    vec![sign_es256(&h, &proof_claims(&t), k)]
                }
            }),
        ),
        (
            "dpop_typ",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h.as_object_mut().unwrap().remove("typ");
                    vec![sign_es256(&h, &proof_claims(&t), k)]
                }
            }),
        ),
        (
            "dpop_alg",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h["alg"] = json!("none");
                    let p = sign_es256(&h, &proof_claims(&t), k);
                    let parts: Vec<&str> = p.split('.').collect();
                    vec![format!("{}.{}.", parts[0], parts[1])]
                }
            }),
        ),
        (
            "dpop_alg",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h["alg"] = json!("none");
                    vec![sign_es256(&h, &proof_claims(&t), k)]
                }
            }),
        ),
        (
            "dpop_alg",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h["alg"] = json!("HS256");
                    let input = format!(
                        "{}.{}",
                        b64(h.to_string().as_bytes()),
                        b64(proof_claims(&t).to_string().as_bytes())
                    );
                    let sig = jsonwebtoken::crypto::sign(
                        input.as_bytes(),
                        &EncodingKey::from_secret(h["jwk"].to_string().as_bytes()),
                        Algorithm::HS256,
                    )
                    .unwrap();
                    vec![format!("{input}.{sig}")]
                }
            }),
        ),
        (
            "dpop_jwk",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h["jwk"]["d"] = json!("AAAA");
                    vec![sign_es256(&h, &proof_claims(&t), k)]
                }
            }),
        ),
        (
            "dpop_jwk",
            Box::new({
                let t = t.clone();
                move || {
                    let mut h = proof_header(k);
                    h.as_object_mut().unwrap().remove("jwk");
                    vec![sign_es256(&h, &proof_claims(&t), k)]
                }
            }),
        ),
        (
            "dpop_signature",
            Box::new({
                let t = t.clone();
                move || {
                    // Header names key k, signed by another key.
                    vec![sign_es256(&proof_header(k), &proof_claims(&t), other)]
                }
            }),
        ),
        (
            "dpop_claims",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c.as_object_mut().unwrap().remove("jti");
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_claims",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c.as_object_mut().unwrap().remove("iat");
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_htm",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c["htm"] = json!("POST");
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_htu",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c["htu"] = json!("https://evil.example/token");
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_htu",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c["htu"] = json!("http://gateway.example/token");
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_iat",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c["iat"] = json!(NOW - 61);
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_iat",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c["iat"] = json!(NOW + 61);
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_ath",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c.as_object_mut().unwrap().remove("ath");
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_ath",
            Box::new({
                let t = t.clone();
                move || {
                    let mut c = proof_claims(&t);
                    c["ath"] = json!(ath("another token"));
                    vec![sign_es256(&proof_header(k), &c, k)]
                }
            }),
        ),
        (
            "dpop_jkt_mismatch",
            Box::new({
                let t = t.clone();
                move || vec![sign_es256(&proof_header(other), &proof_claims(&t), other)]
            }),
        ),
        (
            "dpop_multiple",
            Box::new({
                let t = t.clone();
                move || vec![proof(&t), proof(&t)]
            }),
        ),
        (
            "dpop_multiple",
            Box::new({
                let t = t.clone();
                move || vec![format!("{}, {}", proof(&t), proof(&t))]
            }),
        ),
        (
            "dpop_malformed",
            Box::new(|| vec!["not.a.proof".to_string()]),
        ),
    ];
    for (want, make) in cases {
        let proofs = make();
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let d = dpop_call(&config, &token, &refs);
        assert_invalid_proof(&d, want);
    }
}

#[test]
fn htu_is_compared_after_normalization_and_without_query() {
    let config = strict_config();
    let token = bound_optok();
    for htu in [
        "HTTPS://Gateway.EXAMPLE:443/token",
        "https://gateway.example/token?x=1",
        "https://gateway.example/./token#f",
    ] {
        let mut c = proof_claims(&token);
        c["htu"] = json!(htu);
        let p = sign_es256(&proof_header(proof_ec()), &c, proof_ec());
        let d = dpop_call(&config, &token, &[&p]);
        assert_eq!(d.status, 200, "{htu}: {}", d.body);
    }
}

#[test]
fn iat_window_is_configurable() {
    let mut c = base_config();
    c["authority"]["requireSenderConstraint"] = json!(true);
    c["dpop"] = json!({"iatWindowSeconds": 5});
    let config = config_from(c);
    let token = bound_optok();
    let mut claims = proof_claims(&token);
    claims["iat"] = json!(NOW - 6);
    let d = dpop_call(
        &config,
        &token,
        &[&sign_es256(&proof_header(proof_ec()), &claims, proof_ec())],
    );
    assert_invalid_proof(&d, "dpop_iat");
    claims["iat"] = json!(NOW - 5);
    claims["jti"] = json!(fresh_jti());
    let d = dpop_call(
        &config,
        &token,
        &[&sign_es256(&proof_header(proof_ec()), &claims, proof_ec())],
    );
    assert_eq!(d.status, 200, "{}", d.body);
}

#[test]
fn dpop_algorithm_allow_list() {
    let mut c = base_config();
    c["dpop"] = json!({"algorithms": ["EdDSA"]});
    let config = config_from(c);
    let token = bound_optok();
    let d = dpop_call(&config, &token, &[&proof(&token)]);
    assert_eq!(d.status, 401);
    assert_eq!(reason(&d), "dpop_alg");
    assert!(header(&d, "www-authenticate")
        .unwrap()
        .contains("algs=\"EdDSA\""));
}

#[test]
fn rsa_proof_keys_work_too() {
    let config = strict_config();
    let rsa_key = other_rsa();
    use rsa::traits::PublicKeyParts;
    let n = b64(&rsa_key.public.n().to_bytes_be());
    let e = b64(&rsa_key.public.e().to_bytes_be());
    let jkt = b64(&Sha256::digest(
        format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes(),
    ));
    let mut claims = default_claims();
    claims["cnf"] = json!({"jkt": jkt});
    let token = optok(&claims);
    let header = json!({"typ": "dpop+jwt", "alg": "PS256", "jwk": {"kty": "RSA", "n": n, "e": e}});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(proof_claims(&token).to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_rsa_pem(rsa_key.pkcs8_pem.as_bytes()).unwrap(),
        Algorithm::PS256,
    )
    .unwrap();
    let d = dpop_call(&config, &token, &[&format!("{input}.{sig}")]);
    assert_eq!(d.status, 200, "{}", d.body);
}

fn nonce_config() -> registry_token_core::config::Config {
    let mut c = base_config();
    c["authority"]["requireSenderConstraint"] = json!(true);
    c["dpop"] =
        json!({"nonceSecret": "0123456789abcdef0123456789abcdef-test", "nonceStepSeconds": 60});
    config_from(c)
}

#[test]
fn nonce_mode_asks_for_a_nonce_then_accepts_it() {
    let config = nonce_config();
    let token = bound_optok();
    let d = dpop_call(&config, &token, &[&proof(&token)]);
    assert_eq!(d.status, 401, "{}", d.body);
    assert_eq!(reason(&d), "dpop_nonce");
    let challenge = header(&d, "www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    let nonce = header(&d, "dpop-nonce").unwrap().to_string();
    let mut claims = proof_claims(&token);
    claims["nonce"] = json!(nonce);
    let d = dpop_call(
        &config,
        &token,
        &[&sign_es256(&proof_header(proof_ec()), &claims, proof_ec())],
    );
    assert_eq!(d.status, 200, "{}", d.body);
    assert!(
        header(&d, "dpop-nonce").is_some(),
        "a fresh nonce comes with the token"
    );
}

#[test]
fn nonces_are_stateless_shared_and_expire() {
    use registry_token_core::sender::nonce::NonceKey;
    let a = NonceKey::new(b"shared-secret-shared-secret-1234".to_vec(), 60);
    let b = NonceKey::new(b"shared-secret-shared-secret-1234".to_vec(), 60);
    let other = NonceKey::new(b"another-secret-another-secret-12".to_vec(), 60);
    let n = a.current(NOW);
    assert!(
        b.is_fresh(&n, NOW),
        "another worker or replica with the same secret agrees"
    );
    assert!(
        b.is_fresh(&n, NOW + 60),
        "the previous step is still accepted"
    );
    assert!(!b.is_fresh(&n, NOW + 180), "two steps later it is stale");
    assert!(!other.is_fresh(&n, NOW));
    assert!(!a.is_fresh("garbage", NOW));
}

#[test]
fn stale_nonce_is_refused_with_a_new_one() {
    let config = nonce_config();
    let token = bound_optok();
    let old = match &config.dpop.nonce {
        Some(k) => k.current(NOW - 600),
        None => unreachable!(),
    };
    let mut claims = proof_claims(&token);
    claims["nonce"] = json!(old);
    let d = dpop_call(
        &config,
        &token,
        &[&sign_es256(&proof_header(proof_ec()), &claims, proof_ec())],
    );
    assert_eq!(reason(&d), "dpop_nonce");
    assert_ne!(header(&d, "dpop-nonce").unwrap(), old);
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    let mac =
        registry_token_core::sender::nonce::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

// ---- mTLS (RFC 8705) ----

fn cert_digest_hex(seed: &str) -> String {
    Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn x5t(hex: &str) -> String {
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    b64(&bytes)
}

fn mtls_optok(hex: &str) -> String {
    let mut c = default_claims();
    c["cnf"] = json!({"x5t#S256": x5t(hex)});
    optok(&c)
}

#[test]
fn certificate_bound_token_needs_that_certificate() {
    let config = strict_config();
    let cert = cert_digest_hex("client-cert-der");
    let token = mtls_optok(&cert);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("u:{token}")
        )
    );
    for auth in [bearer(&token), basic] {
        let d = decide_at(
            &config,
            "GET",
            Q,
            &[("authorization", &auth)],
            Some(&cert),
            NOW,
        );
        assert_eq!(d.status, 200, "{}", d.body);
        assert_eq!(
            d.audit.unwrap().binding.unwrap(),
            format!("x5t#S256:{}", x5t(&cert))
        );
        let other = cert_digest_hex("another-cert");
        let d = decide_at(
            &config,
            "GET",
            Q,
            &[("authorization", &auth)],
            Some(&other),
            NOW,
        );
        assert_eq!(d.status, 401);
        assert_eq!(reason(&d), "mtls_mismatch");
        let d = decide_at(&config, "GET", Q, &[("authorization", &auth)], None, NOW);
        assert_eq!(d.status, 401);
        assert_eq!(reason(&d), "mtls_no_certificate");
        let d = decide_at(
            &config,
            "GET",
            Q,
            &[("authorization", &auth)],
            Some("zz"),
            NOW,
        );
        assert_eq!(reason(&d), "mtls_no_certificate");
    }
}

/// The glue hands the certificate digest as a lookup (a hostcall): asked only when the
/// credential is certificate-bound, and its answer is what the binding is checked against.
#[test]
fn peer_certificate_is_looked_up_only_for_certificate_bound_credentials() {
    use registry_token_core::handler::{self, Context, PeerCertificate, RequestView};
    let config = strict_config();
    let cert = cert_digest_hex("client-cert-der");
    let keys = match &config.authority.keys {
        registry_token_core::config::KeySource::Inline(k) => Some(k),
        _ => None,
    };
    let crypto = registry_token_core::token::crypto::RustCrypto;
    let decide = |token: &str, answer: Option<&str>| {
        let asked = std::cell::Cell::new(0);
        let lookup = || {
            asked.set(asked.get() + 1);
            answer.map(str::to_string)
        };
        let headers = vec![("authorization".to_string(), bearer(token))];
        let path = format!("/token?{Q}");
        let view = RequestView {
            method: "GET",
            path: &path,
            headers: &headers,
            peer_certificate: PeerCertificate::Lookup(&lookup),
            body: None,
        };
        let ctx = Context {
            config: &config,
            keys: keys.into(),
            crypto: &crypto,
            now: NOW,
            replay: replay_cache(),
            cache: None,
            revocation: registry_token_core::policy::revocation::RemoteList::NotConfigured,
        };
        let d = handler::handle_token(&view, &ctx);
        (d, asked.get())
    };
    let bound = mtls_optok(&cert);
    let (d, asked) = decide(&bound, Some(&cert));
    assert_eq!((d.status, asked), (200, 1), "{}", d.body);
    let (d, asked) = decide(&bound, Some(&cert_digest_hex("another-cert")));
    assert_eq!((reason(&d), asked), ("mtls_mismatch", 1));
    let (d, asked) = decide(&bound, Some(""));
    assert_eq!((reason(&d), asked), ("mtls_no_certificate", 1));
    let (d, asked) = decide(&bound, None);
    assert_eq!((reason(&d), asked), ("mtls_no_certificate", 1));
    // An unbound credential never needs the certificate (here refused for that, as the
    // configuration requires a sender constraint).
    let (d, asked) = decide(&optok(&default_claims()), Some(&cert));
    assert_eq!((reason(&d), asked), ("unbound_token", 0), "{}", d.body);
}

#[test]
fn x5t_conversion_from_envoy_hex() {
    use registry_token_core::sender::mtls::x5t_from_hex_digest;
    let hex = cert_digest_hex("x");
    assert_eq!(x5t_from_hex_digest(&hex).unwrap(), x5t(&hex));
    assert!(x5t_from_hex_digest("abc").is_none());
    assert!(x5t_from_hex_digest(&"g".repeat(64)).is_none());
}
