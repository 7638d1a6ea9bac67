//! Compact JWS (RFC 7515): splitting and decoding, the `alg` allow-list, signature
//! verification against a key set. Shared by OpTokens ([`crate::token::optok`]) and DPoP
//! proofs ([`crate::sender::dpop`]).

use std::fmt;

use serde_json::{Map, Value};

use crate::token::alg::Alg;
use crate::token::crypto::Crypto;
use crate::token::keys::KeySet;
use crate::wire::b64;

/// Longest compact JWS accepted (OpToks and DPoP proofs), bytes.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Why a JWT was refused. Each maps to its own [`crate::handler::Reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON objects, or too long.
    Malformed(String),
    /// `alg` missing, `none`, HS*, or not on the allow-list.
    DisallowedAlg(String),
    /// No key with this `kid` (or, without `kid`, none fits the `alg`).
    UnknownKey,
    /// Signature did not verify with any candidate key.
    BadSignature,
    /// `iss` differs from the configured issuer.
    WrongIssuer,
    /// `aud` holds none of the configured audiences.
    WrongAudience,
    /// `exp` missing or past (beyond the skew).
    Expired,
    /// `nbf` in the future (beyond the skew).
    NotYetValid,
    /// `iat` in the future (beyond the skew).
    IssuedInFuture,
    /// A required scope is missing.
    InsufficientScope(String),
    /// A claim the decision relies on has the wrong type, or `cnf` names a confirmation
    /// method this filter does not support.
    InvalidClaim(String),
    /// `sub` is missing or empty.
    MissingSubject,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed(why) => write!(f, "the token is malformed: {why}"),
            JwtError::DisallowedAlg(alg) => {
                write!(f, "the token's algorithm {alg:?} is not accepted")
            }
            JwtError::UnknownKey => write!(f, "the token's signing key is not known"),
            JwtError::BadSignature => write!(f, "the token's signature is invalid"),
            JwtError::WrongIssuer => write!(f, "the token was not issued by the Authority"),
            JwtError::WrongAudience => write!(f, "the token is not meant for this service"),
            JwtError::Expired => write!(f, "the token has expired"),
            JwtError::NotYetValid => write!(f, "the token is not valid yet"),
            JwtError::IssuedInFuture => write!(f, "the token was issued in the future"),
            JwtError::InsufficientScope(s) => write!(f, "the token lacks the scope {s:?}"),
            JwtError::InvalidClaim(c) => write!(f, "the token's claim {c} is not acceptable"),
            JwtError::MissingSubject => write!(f, "the token has no subject (sub)"),
        }
    }
}

impl std::error::Error for JwtError {}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug, Clone)]
pub struct Jws<'a> {
    /// `header.payload`, the signing input.
    pub signing_input: &'a str,
    /// Decoded protected header.
    pub header: Map<String, Value>,
    /// Decoded claims.
    pub claims: Map<String, Value>,
    /// Decoded signature.
    pub signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    /// Splits and decodes a compact JWS. Does not verify anything but syntax.
    pub fn parse(token: &'a str) -> Result<Jws<'a>, JwtError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(JwtError::Malformed(format!(
                "longer than {MAX_JWT_BYTES} bytes"
            )));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or_else(|| JwtError::Malformed("bad structure".into()))?;
        let header = decode_object(h, "header")?;
        let claims = decode_object(p, "payload")?;
        let signature = b64::url_decode(s)
            .map_err(|_| JwtError::Malformed("the signature is not base64url".into()))?;
        // An empty signature is syntactically valid (`alg: none` tokens have one); it is
        // refused by the algorithm allow-list and never verifies.
        Ok(Jws {
            signing_input,
            header,
            claims,
            signature,
        })
    }

    /// The `alg` header, checked against the allow-list.
    pub fn alg(&self, allowed: &[Alg]) -> Result<Alg, JwtError> {
        let name = self
            .header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| JwtError::DisallowedAlg("(missing)".into()))?;
        match Alg::parse(name) {
            Some(alg) if allowed.contains(&alg) => Ok(alg),
            _ => Err(JwtError::DisallowedAlg(name.chars().take(16).collect())),
        }
    }

    /// A string header.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = b64::url_decode(part)
        .map_err(|_| JwtError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JwtError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
        Err(_) => Err(JwtError::Malformed(format!("the {what} is not JSON"))),
    }
}

/// Verifies the signature of `jws` with a key from `keys`.
pub fn verify_signature(
    jws: &Jws<'_>,
    alg: Alg,
    keys: &KeySet,
    crypto: &dyn Crypto,
) -> Result<(), JwtError> {
    let kid = jws.header_str("kid");
    let candidates = keys.candidates(kid, alg);
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    for key in candidates {
        if crypto
            .verify(alg, key, jws.signing_input.as_bytes(), &jws.signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(JwtError::BadSignature)
}
