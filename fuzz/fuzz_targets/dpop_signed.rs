//! `sender::dpop::verify_proof` on proofs whose signature verifies, so the claim checks
//! (`jti`, `htm`, `htu`, `iat`, nonce, replay, `ath`, `jkt`) see arbitrary input.
//!
//! Input: `header-json \n claims`. The header gets `typ`, `alg` (ES256) and `jwk` (the
//! fixed P-256 key) when it lacks them; the claims bytes are used as they are, after
//! replacing `@ATH@` with the access token hash and `@NONCE@` with the current nonce.
//! The result is signed with the P-256 key and checked with `RustCrypto`, twice (the
//! second time is a replay).
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::sender::dpop::{verify_proof, ProofPolicy};
use registry_token_core::sender::nonce::NonceKey;
use registry_token_core::sender::replay::MemoryReplayCache;
use registry_token_core::token::alg::{sha256, Alg};
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::wire::url::HttpUrl;
use registry_token_fuzz::{b64url, ec_key, sign_es256, NOW, REALM};
use serde_json::{json, Value};

const ACCESS_TOKEN: &str = "access-token";

fuzz_target!(|data: &[u8]| {
    let (h, c) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let mut header: Value = serde_json::from_slice(h).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut header {
        map.entry("typ").or_insert_with(|| json!("dpop+jwt"));
        map.entry("alg").or_insert_with(|| json!("ES256"));
        map.entry("jwk")
            .or_insert_with(|| ec_key().public().to_jwk());
    }
    let nonce_key = NonceKey::new(b"fuzz-nonce-secret".to_vec(), 30);
    let ath = b64url(&sha256(ACCESS_TOKEN.as_bytes()));
    let claims = String::from_utf8_lossy(c)
        .replace("@ATH@", &ath)
        .replace("@NONCE@", &nonce_key.current(NOW));
    let proof = sign_es256(&header, &b64url(claims.as_bytes()));
    let Ok(htu) = HttpUrl::parse(REALM, false) else {
        return;
    };
    let jkt = ec_key().public().thumbprint();
    let nonce = if data.len() % 2 == 1 {
        Some(&nonce_key)
    } else {
        None
    };
    let policy = ProofPolicy {
        algorithms: &Alg::ALL,
        htu: &htu,
        iat_window_seconds: 60,
        nonce,
    };
    let replay = MemoryReplayCache::new(120);
    for _ in 0..2 {
        let _ = verify_proof(
            &[&proof],
            "POST",
            ACCESS_TOKEN,
            jkt,
            &policy,
            &RustCrypto,
            &replay,
            NOW,
        );
    }
});
