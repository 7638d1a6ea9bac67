//! Keys generated at test time (never committed), shared by this crate's tests: one
//! RSA-2048 key per test binary, fresh EC and Ed25519 keys, P-256 keys of small known
//! scalars, the JWK fixtures the key tests build on (RFC 7638's example key, member edits)
//! and an unsigned certificate for a P-256 key.

use super::*;
use crate::wire::b64;
use crate::wire::der::{self, tag};
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

/// The P-256 key whose scalar is `d` (its public point is `d`·G, a known value).
pub(crate) fn p256_of_scalar(d: u16) -> p256::ecdsa::SigningKey {
    let mut scalar = [0u8; 32];
    scalar[30..].copy_from_slice(&d.to_be_bytes());
    p256::ecdsa::SigningKey::from_bytes(&scalar.into()).unwrap()
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

/// A structurally valid (unsigned) certificate holding `key`, as PEM.
pub(crate) fn fake_cert_pem(key: &p256::ecdsa::VerifyingKey) -> String {
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(key).unwrap();
    let mut tbs = Vec::new();
    let mut version = Vec::new();
    der::write_unsigned_integer(&[2], &mut version);
    der::write_tlv(tag::CONTEXT_0, &version, &mut tbs);
    der::write_unsigned_integer(&[0x01, 0x02, 0x03], &mut tbs);
    let mut alg = Vec::new();
    der::write_tlv(
        tag::OID,
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        &mut alg,
    );
    der::write_tlv(tag::SEQUENCE, &alg, &mut tbs);
    let mut name = Vec::new();
    let mut atv = Vec::new();
    der::write_tlv(tag::OID, &[0x55, 0x04, 0x03], &mut atv);
    der::write_tlv(0x0c, b"test", &mut atv);
    let mut rdn = Vec::new();
    der::write_tlv(tag::SEQUENCE, &atv, &mut rdn);
    der::write_tlv(tag::SET, &rdn, &mut name);
    der::write_tlv(tag::SEQUENCE, &name, &mut tbs);
    let mut validity = Vec::new();
    der::write_tlv(0x17, b"250101000000Z", &mut validity);
    der::write_tlv(0x17, b"350101000000Z", &mut validity);
    der::write_tlv(tag::SEQUENCE, &validity, &mut tbs);
    der::write_tlv(tag::SEQUENCE, &name, &mut tbs);
    tbs.extend_from_slice(spki.as_bytes());
    let mut cert = Vec::new();
    der::write_tlv(tag::SEQUENCE, &tbs, &mut cert);
    der::write_tlv(tag::SEQUENCE, &alg, &mut cert);
    der::write_tlv(tag::BIT_STRING, &[0, 0x30, 0x00], &mut cert);
    let cert = der::sequence(&cert);
    let b64text = b64::std_encode(&cert);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
