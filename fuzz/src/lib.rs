//! Fixtures shared by the fuzz targets: keys generated at start-up (never committed), a
//! fixed OpTok policy, and a `Crypto` that accepts every signature so the fuzzer can reach
//! the checks that follow signature verification.

use std::sync::OnceLock;

use base64::Engine;
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::{Crypto, CryptoError, RustCrypto};
use registry_token_core::token::keys::{KeySet, PrivateKey, PublicKey};
use serde_json::{json, Value};

pub const ISSUER: &str = "https://authority.fuzz";
pub const AUDIENCE: &str = "registry-token";
pub const NOW: u64 = 1_700_000_000;
pub const REALM: &str = "https://gateway.fuzz/token";

/// The input as UTF-8, or `None` (most parsers take `&str`).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A P-256 signing key from a fixed scalar: deterministic, nothing secret.
pub fn ec_key() -> &'static PrivateKey {
    static K: OnceLock<PrivateKey> = OnceLock::new();
    K.get_or_init(|| {
        let secret = p256::SecretKey::from_slice(&[0x42; 32]).expect("fixed scalar");
        PrivateKey::from_p256(p256::ecdsa::SigningKey::from(secret)).expect("P-256 key")
    })
}

/// An RSA-2048 key generated once per process (the RSA verify path with arbitrary
/// signatures and `n`-sized inputs).
pub fn rsa_key() -> &'static PrivateKey {
    static K: OnceLock<PrivateKey> = OnceLock::new();
    K.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("RSA key");
        PrivateKey::from_rsa(key).expect("RSA key")
    })
}

/// An Ed25519 public key from a fixed seed.
pub fn ed_public() -> PublicKey {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk.verifying_key().as_bytes());
    PublicKey::from_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x})).expect("Ed25519 JWK")
}

/// The fixed verification key set: P-256 (`kid` fuzz-ec), RSA (`fuzz-rsa`), Ed25519
/// (`fuzz-ed`) and the P-256 key again without a kid.
pub fn key_set() -> &'static KeySet {
    static S: OnceLock<KeySet> = OnceLock::new();
    S.get_or_init(|| {
        KeySet::from_keys(vec![
            ec_key().public().clone().with_kid("fuzz-ec".into()),
            rsa_key().public().clone().with_kid("fuzz-rsa".into()),
            ed_public().with_kid("fuzz-ed".into()),
            ec_key().public().clone(),
        ])
    })
}

/// The P-256 key as a PKCS#8 PEM (for configurations built by the targets).
pub fn ec_key_pem() -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ec_key().pkcs8_der());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// Signs `header.claims` (both base64url-encoded here) with the P-256 key: a JWS whose
/// signature verifies, so everything after the signature check is reachable.
pub fn sign_es256(header: &Value, claims_b64: &str) -> String {
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(header).unwrap_or_default());
    let input = format!("{h}.{claims_b64}");
    let sig = RustCrypto
        .sign(ec_key(), input.as_bytes())
        .unwrap_or_default();
    let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    format!("{input}.{s}")
}

pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Accepts every signature whose `alg` fits the key (the fit check is the real one).
pub struct AcceptAllCrypto;

impl Crypto for AcceptAllCrypto {
    fn verify(
        &self,
        alg: Alg,
        key: &PublicKey,
        _msg: &[u8],
        _sig: &[u8],
    ) -> Result<(), CryptoError> {
        if key.fits(alg) {
            Ok(())
        } else {
            Err(CryptoError::BadKey("does not fit".into()))
        }
    }
    fn sign(&self, key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        RustCrypto.sign(key, msg)
    }
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        RustCrypto.fill_random(buf)
    }
    fn name(&self) -> &'static str {
        "accept-all"
    }
}
