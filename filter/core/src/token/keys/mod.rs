//! Public keys (JWK, SPKI), the signing key (PEM), JWKS key sets and certificates.
//!
//! * [`PublicKey`]: a parsed verification key with its DER SubjectPublicKeyInfo, its
//!   RFC 7638 thumbprint (computed once), optional `kid` and optional JWK `alg`.
//! * [`PrivateKey`]: the registry-token signing key (RSA → RS256, P-256 → ES256), with the
//!   DER PKCS#8 that Envoy's `sign` foreign function takes.
//! * [`KeySet`]: a JWKS (`{"keys":[…]}`) with lookup by `kid` and algorithm.
//! * [`pem_certificates`] / [`certificate_spki`]: certificates for `x5c` and its checks.
//! * [`UnpaddedEcKid`]: an EC signing key whose `kid` distribution 3.x derives otherwise.
//!
//! Error messages ([`KeyError`]) never contain key material and quote untrusted strings
//! only escaped and truncated.

use std::fmt;

use serde_json::Value;

use crate::token::alg::Alg;

/// RSA keys below this many modulus bits are refused.
pub const MIN_RSA_BITS: usize = 2048;
/// RSA keys above this many modulus bits are refused (bounds verification cost).
pub const MAX_RSA_BITS: usize = 8192;
/// Longest base64url JWK member accepted (an 8192-bit modulus needs 1366 characters).
const MAX_MEMBER_CHARS: usize = 2048;
/// JWK members that carry private or symmetric key material.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a key could not be used. Display texts are safe to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Structurally invalid input (bad JSON shape, base64, DER, point not on curve, …).
    Malformed(String),
    /// A JWK carries a private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`).
    PrivateMember(&'static str),
    /// A symmetric (`kty: oct`) JWK.
    Symmetric,
    /// A key type, curve or algorithm this crate does not support.
    Unsupported(String),
    /// A JWK whose `use` is not `sig`.
    WrongUse(String),
    /// An RSA key smaller than [`MIN_RSA_BITS`].
    TooSmall(usize),
    /// An RSA key larger than [`MAX_RSA_BITS`].
    TooLarge(usize),
    /// An encrypted private key (PKCS#8 `ENCRYPTED PRIVATE KEY` or a `Proc-Type` header).
    Encrypted,
    /// The input holds nothing of the expected kind.
    NotFound(String),
}

impl KeyError {
    /// True for errors that only concern one key of a JWKS: [`KeySet::from_jwks`] skips
    /// such keys. Private or symmetric key material makes the whole set an error.
    pub fn is_skippable(&self) -> bool {
        !matches!(self, KeyError::PrivateMember(_) | KeyError::Symmetric)
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Malformed(msg) => write!(f, "malformed key: {msg}"),
            KeyError::PrivateMember(m) => {
                write!(
                    f,
                    "JWK contains private key member \"{m}\"; only public keys are allowed"
                )
            }
            KeyError::Symmetric => f.write_str("symmetric (kty \"oct\") keys are not allowed"),
            KeyError::Unsupported(msg) => write!(f, "unsupported key: {msg}"),
            KeyError::WrongUse(u) => write!(f, "JWK \"use\" is {u}, expected \"sig\""),
            KeyError::TooSmall(bits) => write!(
                f,
                "RSA key of {bits} bits is too small (minimum {MIN_RSA_BITS})"
            ),
            KeyError::TooLarge(bits) => write!(
                f,
                "RSA key of {bits} bits is too large (maximum {MAX_RSA_BITS})"
            ),
            KeyError::Encrypted => f.write_str(
                "encrypted private keys are not supported; decrypt it first \
                 (openssl pkcs8 -topk8 -nocrypt)",
            ),
            KeyError::NotFound(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for KeyError {}

/// Quote an untrusted string for an error message: escaped, at most 40 characters.
fn quoted(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    format!("\"{out}\"")
}
mod distribution;
mod pem;
pub mod pfx;
mod private;
mod public;

pub use distribution::*;
pub use pem::*;
pub use private::*;
pub use public::*;

// ---------------------------------------------------------------------------------------
// Key sets
// ---------------------------------------------------------------------------------------

/// A set of verification keys, usually from a JWKS document.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
    skipped: usize,
    skip_reasons: Vec<String>,
}

impl KeySet {
    /// Parse a JWKS `{"keys":[…]}`. Keys of unsupported types or curves, `use: enc` keys
    /// and otherwise invalid keys are skipped (see [`KeySet::skipped`] and
    /// [`KeySet::skip_reasons`]); a key with private members or a symmetric key makes the
    /// whole set an error, as does a document that is not an object with a `keys` array.
    pub fn from_jwks(jwks: &Value) -> Result<KeySet, KeyError> {
        let entries = jwks
            .as_object()
            .ok_or_else(|| KeyError::Malformed("JWKS is not a JSON object".into()))?
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeyError::Malformed("JWKS has no \"keys\" array".into()))?;
        let mut set = KeySet::default();
        for (index, entry) in entries.iter().enumerate() {
            match PublicKey::from_jwk(entry) {
                Ok(key) => set.keys.push(key),
                Err(e) if e.is_skippable() => {
                    set.skipped += 1;
                    let kid = entry
                        .get("kid")
                        .and_then(Value::as_str)
                        .map(|k| format!(" (kid {})", quoted(k)))
                        .unwrap_or_default();
                    set.skip_reasons.push(format!("key {index}{kid}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(set)
    }

    /// A set holding exactly these keys.
    pub fn from_keys(keys: Vec<PublicKey>) -> KeySet {
        KeySet {
            keys,
            skipped: 0,
            skip_reasons: Vec::new(),
        }
    }

    /// Keys that may verify a token with this `kid` (if any) and `alg`: with a kid, the
    /// keys whose kid matches and that fit `alg`; without, all keys that fit `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Alg) -> Vec<&PublicKey> {
        self.keys
            .iter()
            .filter(|k| k.fits(alg))
            .filter(|k| kid.is_none() || k.kid() == kid)
            .collect()
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable keys.
    pub fn iter(&self) -> std::slice::Iter<'_, PublicKey> {
        self.keys.iter()
    }

    /// True when some key has this kid.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Number of JWKS entries skipped.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Why each skipped entry was skipped (safe to log).
    pub fn skip_reasons(&self) -> &[String] {
        &self.skip_reasons
    }

    /// The set as a JWKS document.
    pub fn to_jwks(&self) -> Value {
        serde_json::json!({ "keys": self.keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
    }
}

impl<'a> IntoIterator for &'a KeySet {
    type Item = &'a PublicKey;
    type IntoIter = std::slice::Iter<'a, PublicKey>;
    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter()
    }
}

#[cfg(test)]
pub(crate) mod testkeys;

#[cfg(test)]
mod tests;
