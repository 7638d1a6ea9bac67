//! `token::optok::UntrustedOpTok::parse` then `.verify(...)` with a fixed policy and key
//! set, twice: with `RustCrypto` (real signature checks on arbitrary signatures, RSA,
//! P-256 and Ed25519 keys) and with a crypto that accepts every signature, so the issuer,
//! audience, time, scope and `cnf` checks see arbitrary claims too.
//!
//! Input: either a whole compact JWS, or (first byte `{`) `header-json \n claims-json`
//! that the target encodes itself (signature `AAAA`), so the JSON is mutated directly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::token::optok::{OpTokPolicy, UntrustedOpTok};
use registry_token_fuzz::{b64url, key_set, AcceptAllCrypto, AUDIENCE, ISSUER, NOW};

fuzz_target!(|data: &[u8]| {
    let token = if data.first() == Some(&b'{') {
        let (h, c) = match data.iter().position(|b| *b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b""[..]),
        };
        format!("{}.{}.AAAA", b64url(h), b64url(c))
    } else {
        match registry_token_fuzz::text(data) {
            Some(t) => t.to_owned(),
            None => return,
        }
    };
    let audiences = vec![AUDIENCE.to_string(), "other".to_string()];
    let required = vec!["registry.token.issue".to_string()];
    let policy = OpTokPolicy {
        issuer: ISSUER,
        audiences: &audiences,
        required_scopes: &required,
        algorithms: &Alg::ALL,
        clock_skew_seconds: 60,
        tenant_claim: "stellaops:tenant",
    };
    let keys = key_set();
    if let Ok(untrusted) = UntrustedOpTok::parse(&token) {
        let _ = untrusted.clone().verify(&policy, keys, &RustCrypto, NOW);
        let _ = untrusted
            .clone()
            .verify(&policy, keys, &AcceptAllCrypto, NOW);
        let _ = untrusted.verify(&policy, keys, &AcceptAllCrypto, u64::MAX);
    }
});
