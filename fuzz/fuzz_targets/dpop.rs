//! The DPoP header path: `sender::dpop::verify_proof` with arbitrary header strings
//! (one per input line), `RustCrypto` and a `MemoryReplayCache`, with and without a
//! server nonce. Signature failures are expected; panics are not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::sender::dpop::{verify_proof, ProofPolicy};
use registry_token_core::sender::nonce::NonceKey;
use registry_token_core::sender::replay::MemoryReplayCache;
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::wire::url::HttpUrl;
use registry_token_fuzz::{ec_key, NOW, REALM};

fuzz_target!(|data: &[u8]| {
    let Some(raw) = registry_token_fuzz::text(data) else {
        return;
    };
    let headers: Vec<&str> = if raw.is_empty() {
        Vec::new()
    } else {
        raw.split('\n').collect()
    };
    let Ok(htu) = HttpUrl::parse(REALM, false) else {
        return;
    };
    let nonce_key = NonceKey::new(b"fuzz-nonce-secret".to_vec(), 30);
    let jkt = ec_key().public().thumbprint();
    for nonce in [None, Some(&nonce_key)] {
        let policy = ProofPolicy {
            algorithms: &Alg::ALL,
            htu: &htu,
            iat_window_seconds: 60,
            nonce,
        };
        let replay = MemoryReplayCache::new(120);
        let _ = verify_proof(
            &headers,
            "GET",
            "access-token",
            jkt,
            &policy,
            &RustCrypto,
            &replay,
            NOW,
        );
    }
});
