//! JOSE signature algorithms and the [`Crypto`] abstraction.
//!
//! [`Crypto`] is what the decision core uses to verify OpTok and DPoP signatures, to sign
//! registry tokens and to draw random bytes. [`RustCrypto`] implements it purely in Rust
//! (natively, and inside the VM when the host has no crypto foreign functions);
//! [`crate::token::crypto::host::HostCrypto`] implements it with Envoy's `sign`/`verify_signature`.
//!
//! Signatures are in JWS encoding (RFC 7518 §3): RSASSA-PKCS1-v1_5 and RSASSA-PSS bytes
//! (PSS with salt length = hash length), ECDSA as the fixed-size concatenation `r‖s`
//! (64 bytes for P-256, 96 for P-384), Ed25519 as its 64-byte signature.

pub mod host;
pub mod rust;

use std::fmt;

pub use crate::token::alg::{sha256, Alg};
use crate::token::keys::{PrivateKey, PublicKey};
pub use rust::RustCrypto;

/// A failed cryptographic operation. Messages never contain key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// The key cannot be used for this operation (including an `alg` that does not fit it).
    BadKey(String),
    /// The signature does not verify (or is malformed).
    BadSignature,
    /// The operation or algorithm is not supported by this implementation.
    Unsupported(String),
    /// The host (Envoy foreign function) reported an error.
    Host(String),
    /// No random bytes could be obtained.
    Rng,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::BadKey(msg) => write!(f, "unusable key: {msg}"),
            CryptoError::BadSignature => f.write_str("signature verification failed"),
            CryptoError::Unsupported(msg) => write!(f, "unsupported: {msg}"),
            CryptoError::Host(msg) => write!(f, "host crypto error: {msg}"),
            CryptoError::Rng => f.write_str("random number generator failed"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// Signature verification, signing and randomness.
pub trait Crypto {
    /// Verify a JWS signature `sig` over `msg` with `key` under `alg`. Returns `Err` when
    /// `alg` does not fit the key (see [`PublicKey::fits`]) or the signature is wrong.
    fn verify(&self, alg: Alg, key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError>;

    /// Sign `msg` with `key` under the key's algorithm ([`PrivateKey::alg`]): RS256 for
    /// RSA, ES256 (`r‖s`) for P-256.
    fn sign(&self, key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError>;

    /// Fill `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError>;

    /// A short name for logs (`rust`, `envoy`).
    fn name(&self) -> &'static str;
}

/// `Ok` when `alg` may be used with `key`; the error names both, never key material.
pub(crate) fn check_fit(alg: Alg, key: &PublicKey) -> Result<(), CryptoError> {
    if key.fits(alg) {
        Ok(())
    } else {
        Err(CryptoError::BadKey(format!(
            "{} does not fit a {} key",
            alg.name(),
            key.key_type_name()
        )))
    }
}
