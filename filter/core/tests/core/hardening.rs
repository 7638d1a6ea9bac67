//! Hardening (fail closed on odd input, cheap checks before costly ones): the native side
//! of each defect, shown on the decision core. Proofs and OpToks are made with
//! `jsonwebtoken`'s primitives, not the filter's code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use registry_token_core::handler::{Decision, Outcome};
use registry_token_core::sender::dpop::{verify_proof, DpopError, ProofPolicy};
use registry_token_core::sender::replay::{MemoryReplayCache, ReplayCache};
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::{Crypto, CryptoError, RustCrypto};
use registry_token_core::token::keys::{PrivateKey, PublicKey};
use registry_token_core::wire::url::HttpUrl;
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

/// Counts signature verifications: the costly step a refused proof must not reach.
struct Counting {
    verifies: Cell<usize>,
}

impl Crypto for Counting {
    fn verify(&self, alg: Alg, key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.verifies.set(self.verifies.get() + 1);
        RustCrypto.verify(alg, key, msg, sig)
    }
    fn sign(&self, key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        RustCrypto.sign(key, msg)
    }
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.fill_random(buf)
    }
    fn name(&self) -> &'static str {
        "counting"
    }
}

fn ec_key() -> &'static EcFixture {
    authority_ec()
}

fn jkt(k: &EcFixture) -> String {
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        k.x, k.y
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

fn ath(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

fn sign_proof(header: &Value, claims: &Value, key: &EcFixture) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let ek = EncodingKey::from_ec_pem(key.pkcs8_pem.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &ek, Algorithm::ES256).unwrap();
    format!("{input}.{sig}")
}

fn header_for(key: &EcFixture) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256",
           "jwk": {"kty": "EC", "crv": "P-256", "x": key.x, "y": key.y}})
}

fn claims_for(token: &str, jti: &str) -> Value {
    json!({"jti": jti, "htm": "GET", "htu": REALM, "iat": NOW, "ath": ath(token)})
}

fn bound_optok() -> String {
    let mut c = default_claims();
    c["cnf"] = json!({"jkt": jkt(ec_key())});
    optok(&c)
}

/// Defect 1: a correctly signed proof with a wrong `ath` used to record its `jti`, so the
/// client's honest retry with the same `jti` was refused as a replay.
#[test]
fn a_refused_proof_does_not_use_up_its_jti() {
    let config = cfg_strict();
    let token = bound_optok();
    let auth = format!("DPoP {token}");
    let jti = "retry-after-a-wrong-ath";
    let mut wrong = claims_for(&token, jti);
    wrong["ath"] = json!(ath("some other token"));
    let bad = sign_proof(&header_for(ec_key()), &wrong, ec_key());
    let d = decide(&config, Q, &[("authorization", &auth), ("dpop", &bad)]);
    assert_eq!((d.status, reason(&d)), (401, "dpop_ath"), "{}", d.body);
    let good = sign_proof(&header_for(ec_key()), &claims_for(&token, jti), ec_key());
    let d = decide(&config, Q, &[("authorization", &auth), ("dpop", &good)]);
    assert_eq!(d.status, 200, "the honest retry must pass: {}", d.body);
    // And the accepted proof is now recorded.
    let d = decide(&config, Q, &[("authorization", &auth), ("dpop", &good)]);
    assert_eq!(reason(&d), "dpop_replay");
}

fn cfg_strict() -> registry_token_core::config::Config {
    let mut c = base_config();
    c["authority"]["requireSenderConstraint"] = json!(true);
    config_from(c)
}

/// A base64url string of `bytes` random-looking bytes with the top bit set.
fn big_modulus(bytes: usize) -> String {
    let mut n = vec![0xa5u8; bytes];
    n[0] = 0xc3;
    n[bytes - 1] |= 1;
    b64(&n)
}

/// Defect 1: every refused proof is refused before any signature work, and leaves the
/// replay record untouched. The 8192-bit RSA key with a 34-bit exponent under PS512 used
/// to cost ~18 ms of VM time; now it costs the same as a malformed header.
#[test]
fn hostile_and_wrong_proofs_never_reach_the_signature_or_the_replay_record() {
    let token = bound_optok();
    let realm = HttpUrl::parse(REALM, true).unwrap();
    let algorithms = [Alg::Es256, Alg::Rs256, Alg::Ps512];
    let policy = ProofPolicy {
        algorithms: &algorithms,
        htu: &realm,
        iat_window_seconds: 60,
        nonce: None,
    };
    let expected_jkt = jkt(ec_key());
    let other = signing_ec();
    let garbage_sig = b64(&[7u8; 1024]);
    let rsa_header = |n: String, e: &str| json!({"typ": "dpop+jwt", "alg": "PS512", "jwk": {"kty": "RSA", "n": n, "e": e}});
    let unsigned = |h: &Value, c: &Value| {
        format!(
            "{}.{}.{garbage_sig}",
            b64(h.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        )
    };
    let claims = claims_for(&token, "hostile");
    let mut wrong_htu = claims.clone();
    wrong_htu["htu"] = json!("https://elsewhere.example/token");
    let mut old_iat = claims.clone();
    old_iat["iat"] = json!(NOW - 3600);
    let mut wrong_ath = claims.clone();
    wrong_ath["ath"] = json!(ath("another token"));
    let mut wrong_htm = claims.clone();
    wrong_htm["htm"] = json!("POST");
    let cases: Vec<(&str, String, DpopError)> = vec![
        (
            "8192-bit RSA key, 34-bit exponent, PS512",
            unsigned(
                &rsa_header(big_modulus(1024), &b64(&[0x02, 0, 0, 0, 1])),
                &claims,
            ),
            DpopError::Jwk(String::new()),
        ),
        (
            "8192-bit RSA key, e = 65537",
            unsigned(&rsa_header(big_modulus(1024), "AQAB"), &claims),
            DpopError::Jwk(String::new()),
        ),
        (
            "4104-bit RSA key",
            unsigned(&rsa_header(big_modulus(513), "AQAB"), &claims),
            DpopError::Jwk(String::new()),
        ),
        (
            "a valid key that is not the bound one",
            sign_proof(&header_for(other), &claims, other),
            DpopError::JktMismatch,
        ),
        (
            "wrong htu (signed)",
            sign_proof(&header_for(ec_key()), &wrong_htu, ec_key()),
            DpopError::Htu,
        ),
        (
            "wrong htm (signed)",
            sign_proof(&header_for(ec_key()), &wrong_htm, ec_key()),
            DpopError::Htm,
        ),
        (
            "stale iat (signed)",
            sign_proof(&header_for(ec_key()), &old_iat, ec_key()),
            DpopError::Iat,
        ),
        (
            "wrong ath (signed)",
            sign_proof(&header_for(ec_key()), &wrong_ath, ec_key()),
            DpopError::Ath,
        ),
    ];
    let replay = MemoryReplayCache::new(180);
    for (what, proof, want) in cases {
        let crypto = Counting {
            verifies: Cell::new(0),
        };
        let err = verify_proof(
            &[&proof],
            "GET",
            &token,
            &expected_jkt,
            &policy,
            &crypto,
            &replay,
            NOW,
        )
        .expect_err(what);
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(&want),
            "{what}: {err}"
        );
        assert_eq!(crypto.verifies.get(), 0, "{what}: no signature work");
    }
    // Nothing was recorded: the honest proof with the same jti passes, once.
    let crypto = Counting {
        verifies: Cell::new(0),
    };
    let honest = sign_proof(&header_for(ec_key()), &claims, ec_key());
    let call = |c: &Counting| {
        verify_proof(
            &[&honest],
            "GET",
            &token,
            &expected_jkt,
            &policy,
            c,
            &replay,
            NOW,
        )
    };
    assert!(call(&crypto).is_ok());
    assert_eq!(crypto.verifies.get(), 1);
    assert_eq!(call(&crypto), Err(DpopError::Replay));
    // The record was untouched by the refusals: only the honest proof is in it.
    assert!(replay.check_and_insert([0; 16], NOW, NOW).unwrap());
}

/// Defect 2: claims of the wrong type used to be read as absent, which failed open.
#[test]
fn mistyped_claims_fail_closed() {
    let mut c = base_config();
    c["revokedLicenses"] = json!(["lic-0042"]);
    c["authority"]["requireSenderConstraint"] = json!(false);
    let config = config_from(c);
    let call = |claims: &Value| decide(&config, Q, &[("authorization", &bearer(&optok(claims)))]);
    let with = |name: &str, value: Value| {
        let mut c = default_claims();
        c[name] = value;
        c
    };
    // Licences: a list is checked entry by entry; other types are refused.
    let d = call(&with("stellaops:license", json!(["lic-0001", "lic-0042"])));
    assert_eq!((d.status, reason(&d)), (403, "license_revoked"));
    let d = call(&with("stellaops:license", json!(["lic-0001", "lic-0002"])));
    assert_eq!(d.status, 200, "{}", d.body);
    for bad in [
        json!(42),
        json!({"id": "lic-0042"}),
        json!(["lic-0001", 42]),
        json!(null),
    ] {
        let d = call(&with("stellaops:license", bad.clone()));
        assert_eq!((d.status, reason(&d)), (401, "invalid_claim"), "{bad}");
    }
    // Plan: a list is refused, not mapped to the default plan.
    for bad in [json!(["enterprise"]), json!(7), json!(null)] {
        let d = call(&with("stellaops:plan", bad.clone()));
        assert_eq!((d.status, reason(&d)), (401, "invalid_claim"), "{bad}");
    }
    // cnf: an unsupported confirmation method or a mistyped member is not "unbound".
    for bad in [
        json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
        json!({"jkt": 7}),
        json!({"jkt": ""}),
        json!({"x5t#S256": ["a"]}),
        json!({"kid": "k1"}),
    ] {
        let d = call(&with("cnf", bad.clone()));
        assert_eq!((d.status, reason(&d)), (401, "invalid_claim"), "{bad}");
    }
    let d = call(&with("cnf", json!("jkt")));
    assert_eq!((d.status, reason(&d)), (401, "malformed_token"));
    // client_id of the wrong type.
    let d = call(&with("client_id", json!(["cli"])));
    assert_eq!((d.status, reason(&d)), (401, "invalid_claim"));
    // The honest OpToken still passes.
    let d = call(&default_claims());
    assert_eq!(d.status, 200, "{}", d.body);
}
