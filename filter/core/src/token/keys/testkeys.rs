//! Keys generated at test time (never committed), shared by this crate's tests: one
//! RSA-2048 key per test binary, fresh EC and Ed25519 keys, and the JWK fixtures the key
//! tests build on (RFC 7638's example key, member edits).

use super::*;
use crate::wire::b64;
use rsa::RsaPrivateKey;
use serde_json::json;
use std::sync::OnceLock;

/// The RSA-2048 test key, generated once per test binary.
pub(crate) fn rsa2048() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap())
}

/// [`rsa2048`] as a [`PrivateKey`].
pub(crate) fn rsa_private() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from_rsa(rsa2048().clone()).unwrap())
}

/// A valid-looking 2048-bit RSA public key with no known private key: a random odd
/// modulus with the top bit set. Signatures never verify under it.
pub(crate) fn unrelated_rsa_public() -> PublicKey {
    let mut n = [0u8; 256];
    getrandom::getrandom(&mut n).unwrap();
    n[0] |= 0x80;
    n[255] |= 1;
    PublicKey::from_jwk(&serde_json::json!({
        "kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"
    }))
    .unwrap()
}

pub(crate) fn p256_signing() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)
}

pub(crate) fn p256_private() -> PrivateKey {
    PrivateKey::from_p256(p256_signing()).unwrap()
}

pub(crate) fn p384_signing() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::random(&mut rand_core::OsRng)
}

pub(crate) fn ed25519_signing() -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// RFC 7638 §3.1's example key.
pub(crate) fn rfc7638_jwk() -> Value {
    json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    })
}

/// A fresh P-256 signing key and its public JWK (no `kid`, no `alg`).
pub(crate) fn p256_jwk() -> (p256::ecdsa::SigningKey, Value) {
    let sk = p256_signing();
    let point = sk.verifying_key().to_encoded_point(false);
    let jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64::url_encode(point.x().unwrap()),
        "y": b64::url_encode(point.y().unwrap()),
    });
    (sk, jwk)
}

/// `jwk` with member `name` set to `value`.
pub(crate) fn with(mut jwk: Value, name: &str, value: Value) -> Value {
    jwk.as_object_mut().unwrap().insert(name.into(), value);
    jwk
}

/// `jwk` without member `name`.
pub(crate) fn without(mut jwk: Value, name: &str) -> Value {
    jwk.as_object_mut().unwrap().remove(name);
    jwk
}
