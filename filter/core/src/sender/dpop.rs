//! DPoP proof verification (RFC 9449 §4.3): every check of `shared/INTEROP.md`, run
//! cheapest first (see [`verify_proof`]); the first failure is returned as a [`DpopError`],
//! each with its own reason label.

use std::fmt;

use serde_json::Value;

use crate::sender::nonce::NonceKey;
use crate::sender::replay::ReplayCache;
use crate::token::alg::{sha256, Alg};
use crate::token::crypto::Crypto;
use crate::token::jws::Jws;
use crate::token::keys::PublicKey;
use crate::wire::b64;
use crate::wire::url::HttpUrl;

/// Members a public JWK must never carry.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// No `DPoP` header while the OpTok is DPoP-bound.
    Missing,
    /// More than one `DPoP` header, or one holding several values.
    Multiple,
    /// Not a compact JWS of JSON objects.
    Malformed(String),
    /// `typ` is not `dpop+jwt`.
    Typ,
    /// `alg` missing, symmetric, `none` or not allowed.
    Alg,
    /// `jwk` missing, not a public key, or of a type not fitting `alg`.
    Jwk(String),
    /// The signature does not verify with the `jwk`.
    Signature,
    /// A required claim (`jti`, `htm`, `htu`, `iat`) is missing or mistyped.
    Claims(String),
    /// `htm` differs from the request method.
    Htm,
    /// `htu` differs from the configured realm URL.
    Htu,
    /// `iat` outside the accepted window.
    Iat,
    /// Nonce missing or stale (nonce mode).
    Nonce,
    /// `jti` already seen inside the window.
    Replay,
    /// The replay cache could not record the proof (full or unavailable).
    ReplayUnavailable,
    /// `ath` missing or not the access token's hash.
    Ath,
    /// The key's thumbprint is not the OpTok's `cnf.jkt`.
    JktMismatch,
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpopError::Missing => write!(
                f,
                "the access token is DPoP-bound: a DPoP proof is required"
            ),
            DpopError::Multiple => {
                write!(f, "exactly one DPoP header holding one proof is allowed")
            }
            DpopError::Malformed(why) => write!(f, "the DPoP proof is malformed: {why}"),
            DpopError::Typ => write!(f, "the DPoP proof's typ must be dpop+jwt"),
            DpopError::Alg => write!(f, "the DPoP proof's algorithm is not accepted"),
            DpopError::Jwk(why) => write!(f, "the DPoP proof's jwk is not acceptable: {why}"),
            DpopError::Signature => write!(f, "the DPoP proof's signature is invalid"),
            DpopError::Claims(why) => write!(f, "the DPoP proof lacks a claim: {why}"),
            DpopError::Htm => write!(f, "the DPoP proof's htm does not match the request method"),
            DpopError::Htu => write!(
                f,
                "the DPoP proof's htu does not match the token endpoint URL"
            ),
            DpopError::Iat => write!(f, "the DPoP proof's iat is outside the accepted window"),
            DpopError::Nonce => write!(f, "a fresh DPoP server nonce is required"),
            DpopError::Replay => write!(f, "the DPoP proof was already used"),
            DpopError::ReplayUnavailable => {
                write!(
                    f,
                    "the DPoP replay cache cannot accept more proofs right now"
                )
            }
            DpopError::Ath => write!(f, "the DPoP proof's ath does not match the access token"),
            DpopError::JktMismatch => {
                write!(
                    f,
                    "the DPoP proof's key is not the one the access token is bound to"
                )
            }
        }
    }
}

impl std::error::Error for DpopError {}

/// What a proof must satisfy.
pub struct ProofPolicy<'a> {
    /// Accepted proof algorithms.
    pub algorithms: &'a [Alg],
    /// The configured public URL of the token endpoint.
    pub htu: &'a HttpUrl,
    /// `iat` must be within this many seconds of now, either side.
    pub iat_window_seconds: u64,
    /// Nonce mode, when configured.
    pub nonce: Option<&'a NonceKey>,
}

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof key.
    pub jkt: String,
}

/// Largest RSA proof key accepted: verifying with a bigger modulus (or a bigger exponent)
/// costs a worker time an attacker chooses.
pub const MAX_PROOF_RSA_BITS: usize = 4096;

/// Parses the proof's public JWK, refusing private members and costly RSA keys (more than
/// [`MAX_PROOF_RSA_BITS`], or an exponent other than 65537).
fn proof_key(header: &serde_json::Map<String, Value>) -> Result<PublicKey, DpopError> {
    let jwk = header
        .get("jwk")
        .ok_or_else(|| DpopError::Jwk("missing".into()))?;
    let obj = jwk
        .as_object()
        .ok_or_else(|| DpopError::Jwk("not an object".into()))?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(DpopError::Jwk(format!("holds the private member {m:?}")));
    }
    if obj.get("kty").and_then(Value::as_str) == Some("RSA") {
        // Checked on the text before any big number is built: "AQAB" is 65537.
        if obj.get("e").and_then(Value::as_str) != Some("AQAB") {
            return Err(DpopError::Jwk(
                "an RSA proof key must have e = 65537".into(),
            ));
        }
        let n_chars = obj.get("n").and_then(Value::as_str).map_or(0, str::len);
        if n_chars > MAX_PROOF_RSA_BITS.div_ceil(6) + 1 {
            return Err(DpopError::Jwk(format!(
                "an RSA proof key may have at most {MAX_PROOF_RSA_BITS} bits"
            )));
        }
    }
    let key = PublicKey::from_jwk(jwk).map_err(|e| DpopError::Jwk(e.to_string()))?;
    if key.bits() > MAX_PROOF_RSA_BITS && key.key_type_name() == "RSA" {
        return Err(DpopError::Jwk(format!(
            "an RSA proof key may have at most {MAX_PROOF_RSA_BITS} bits"
        )));
    }
    Ok(key)
}

/// Verifies a DPoP proof for `method` on the configured `htu`, bound to `access_token`
/// and to the key `expected_jkt`. `headers` are all `DPoP` header values.
///
/// The checks run cheapest first, so a hostile proof costs no more than a cheap refusal:
/// shape, `typ`, `alg`, the key (bounded) and its thumbprint against `cnf.jkt`, the claims,
/// `htm`, `htu`, `iat`, nonce, `ath`; only then the signature. The `jti` is recorded last,
/// once everything has passed, so a refused proof never uses up its `jti` nor fills the
/// replay record.
#[allow(clippy::too_many_arguments)]
pub fn verify_proof(
    headers: &[&str],
    method: &str,
    access_token: &str,
    expected_jkt: &str,
    policy: &ProofPolicy<'_>,
    crypto: &dyn Crypto,
    replay: &dyn ReplayCache,
    now: u64,
) -> Result<VerifiedProof, DpopError> {
    // One DPoP header holding one JWT.
    let proof = match headers {
        [] => return Err(DpopError::Missing),
        [one] => one.trim(),
        _ => return Err(DpopError::Multiple),
    };
    if proof.contains(',') || proof.contains(char::is_whitespace) {
        return Err(DpopError::Multiple);
    }
    let jws = Jws::parse(proof).map_err(|e| DpopError::Malformed(e.to_string()))?;
    if jws.header_str("typ") != Some("dpop+jwt") {
        return Err(DpopError::Typ);
    }
    // alg: asymmetric and allowed.
    let alg = jws.alg(policy.algorithms).map_err(|_| DpopError::Alg)?;
    // jwk: public only, bounded, fits alg, and the key the OpTok is bound to.
    let key = proof_key(&jws.header)?;
    if !key.fits(alg) {
        return Err(DpopError::Jwk(format!(
            "a {} key cannot sign {}",
            key.key_type_name(),
            alg.name()
        )));
    }
    if key.thumbprint() != expected_jkt {
        return Err(DpopError::JktMismatch);
    }
    // Required claims.
    let jti = jws
        .claim_str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| DpopError::Claims("jti".into()))?;
    let htm = jws
        .claim_str("htm")
        .ok_or_else(|| DpopError::Claims("htm".into()))?;
    let htu = jws
        .claim_str("htu")
        .ok_or_else(|| DpopError::Claims("htu".into()))?;
    let iat = jws
        .claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or_else(|| DpopError::Claims("iat".into()))?;
    if htm != method {
        return Err(DpopError::Htm);
    }
    // htu, normalized, query and fragment ignored.
    if !policy.htu.matches(htu) {
        return Err(DpopError::Htu);
    }
    // iat window, or the server nonce.
    if now.abs_diff(iat) > policy.iat_window_seconds {
        return Err(DpopError::Iat);
    }
    if let Some(nonce_key) = policy.nonce {
        match jws.claim_str("nonce") {
            Some(n) if nonce_key.is_fresh(n, now) => {}
            _ => return Err(DpopError::Nonce),
        }
    }
    // The access token's SHA-256, only once every cheaper check has passed.
    let expected_ath = b64::url_encode(&sha256(access_token.as_bytes()));
    if jws.claim_str("ath") != Some(expected_ath.as_str()) {
        return Err(DpopError::Ath);
    }
    // The costly part, once everything cheap has passed.
    crypto
        .verify(alg, &key, jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|_| DpopError::Signature)?;
    // Replay, last: only a proof that passed every check is recorded. The entry is keyed
    // by the proof key's thumbprint too, so a proof made with some other key can never
    // burn the jti of the key an OpTok is bound to.
    let mut material = Vec::with_capacity(key.thumbprint().len() + 1 + jti.len());
    material.extend_from_slice(key.thumbprint().as_bytes());
    material.push(0);
    material.extend_from_slice(jti.as_bytes());
    let digest = sha256(&material);
    let mut replay_key = [0u8; 16];
    replay_key.copy_from_slice(&digest[..16]);
    if !replay.check_and_insert(replay_key, iat, now)? {
        return Err(DpopError::Replay);
    }
    Ok(VerifiedProof {
        jkt: key.thumbprint().to_string(),
    })
}
