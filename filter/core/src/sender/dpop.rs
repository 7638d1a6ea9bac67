//! DPoP proof verification (RFC 9449 §4.3), stateless server nonces, and the replay
//! record format kept in Envoy shared data.
//!
//! The checks run in the order of `shared/INTEROP.md`; the first failure is returned with
//! its own reason label.

use std::fmt;

use serde_json::Value;

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

impl DpopError {
    /// Metric reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::Missing => "dpop_missing",
            DpopError::Multiple => "dpop_multiple",
            DpopError::Malformed(_) => "dpop_malformed",
            DpopError::Typ => "dpop_typ",
            DpopError::Alg => "dpop_alg",
            DpopError::Jwk(_) => "dpop_jwk",
            DpopError::Signature => "dpop_signature",
            DpopError::Claims(_) => "dpop_claims",
            DpopError::Htm => "dpop_htm",
            DpopError::Htu => "dpop_htu",
            DpopError::Iat => "dpop_iat",
            DpopError::Nonce => "dpop_nonce",
            DpopError::Replay => "dpop_replay",
            DpopError::ReplayUnavailable => "dpop_replay_unavailable",
            DpopError::Ath => "dpop_ath",
            DpopError::JktMismatch => "dpop_jkt_mismatch",
        }
    }
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

/// Accepts or refuses a proof's `jti`: true when it was not seen before (and is now
/// recorded), false on a replay.
pub trait ReplayCache {
    /// Records `key` (a digest of the key thumbprint and `jti`) seen at `now`.
    fn check_and_insert(&self, key: [u8; 16], now: u64) -> Result<bool, DpopError>;
}

/// A stateless nonce source: HMAC-SHA256 over a time step with a shared secret, so every
/// worker and every replica with the same secret agrees.
#[derive(Clone)]
pub struct NonceKey {
    secret: Vec<u8>,
    step_seconds: u64,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("step_seconds", &self.step_seconds)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(64 + message.len());
    inner.extend(block.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(message);
    let inner_hash = sha256(&inner);
    let mut outer = Vec::with_capacity(96);
    outer.extend(block.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&inner_hash);
    sha256(&outer)
}

impl NonceKey {
    /// A nonce key; `step_seconds` is how long one nonce stays current (it is accepted for
    /// one more step after that).
    pub fn new(secret: Vec<u8>, step_seconds: u64) -> NonceKey {
        NonceKey {
            secret,
            step_seconds: step_seconds.max(1),
        }
    }

    fn for_step(&self, step: u64) -> String {
        let mac = hmac_sha256(&self.secret, &step.to_be_bytes());
        let mut raw = Vec::with_capacity(8 + 16);
        raw.extend_from_slice(&step.to_be_bytes());
        raw.extend_from_slice(&mac[..16]);
        b64::url_encode(&raw)
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: u64) -> String {
        self.for_step(now / self.step_seconds)
    }

    /// Whether `nonce` is the current or the previous step's.
    pub fn is_fresh(&self, nonce: &str, now: u64) -> bool {
        let step = now / self.step_seconds;
        nonce == self.for_step(step) || (step > 0 && nonce == self.for_step(step - 1))
    }
}

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

/// Parses the proof's public JWK, refusing private members.
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
    PublicKey::from_jwk(jwk).map_err(|e| DpopError::Jwk(e.to_string()))
}

/// Verifies a DPoP proof for `method` on the configured `htu`, bound to `access_token`,
/// and, when `expected_jkt` is set, to that key. `headers` are all `DPoP` header values.
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
    // 1. One DPoP header holding one JWT.
    let proof = match headers {
        [] => return Err(DpopError::Missing),
        [one] => one.trim(),
        _ => return Err(DpopError::Multiple),
    };
    if proof.contains(',') || proof.contains(char::is_whitespace) {
        return Err(DpopError::Multiple);
    }
    let jws = Jws::parse(proof).map_err(|e| DpopError::Malformed(e.to_string()))?;
    // 2. typ.
    if jws.header_str("typ") != Some("dpop+jwt") {
        return Err(DpopError::Typ);
    }
    // 3. alg: asymmetric and allowed.
    let alg = jws.alg(policy.algorithms).map_err(|_| DpopError::Alg)?;
    // 4. jwk: public only, fits alg, verifies the signature.
    let key = proof_key(&jws.header)?;
    if !key.fits(alg) {
        return Err(DpopError::Jwk(format!(
            "a {} key cannot sign {}",
            key.key_type_name(),
            alg.name()
        )));
    }
    crypto
        .verify(alg, &key, jws.signing_input.as_bytes(), &jws.signature)
        .map_err(|_| DpopError::Signature)?;
    // 5. Required claims.
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
    // 6. htm.
    if htm != method {
        return Err(DpopError::Htm);
    }
    // 7. htu, normalized, query and fragment ignored.
    match HttpUrl::parse(htu, true) {
        Ok(u) if u == *policy.htu => {}
        _ => return Err(DpopError::Htu),
    }
    // 8. iat window, or the server nonce.
    if now.abs_diff(iat) > policy.iat_window_seconds {
        return Err(DpopError::Iat);
    }
    if let Some(nonce_key) = policy.nonce {
        match jws.claim_str("nonce") {
            Some(n) if nonce_key.is_fresh(n, now) => {}
            _ => return Err(DpopError::Nonce),
        }
    }
    // 9. Replay.
    let mut material = Vec::with_capacity(key.thumbprint().len() + 1 + jti.len());
    material.extend_from_slice(key.thumbprint().as_bytes());
    material.push(0);
    material.extend_from_slice(jti.as_bytes());
    let digest = sha256(&material);
    let mut replay_key = [0u8; 16];
    replay_key.copy_from_slice(&digest[..16]);
    // The entry is keyed by the proof key's thumbprint too, so a proof made with some
    // other key can never burn the jti of the key an OpTok is bound to.
    if !replay.check_and_insert(replay_key, now)? {
        return Err(DpopError::Replay);
    }
    // 10. ath.
    let expected_ath = b64::url_encode(&sha256(access_token.as_bytes()));
    if jws.claim_str("ath") != Some(expected_ath.as_str()) {
        return Err(DpopError::Ath);
    }
    // 11. The key is the one the OpTok is bound to.
    if key.thumbprint() != expected_jkt {
        return Err(DpopError::JktMismatch);
    }
    Ok(VerifiedProof {
        jkt: key.thumbprint().to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// Replay records in shared data.
// ---------------------------------------------------------------------------------------

/// Number of shards the replay entries are spread over (each a shared-data key).
/// Many small shards keep each compare-and-swap copy small (a shard slot holds about
/// rate × window / shards entries) and contention between workers low.
pub const REPLAY_SHARDS: usize = 1024;
/// Time slots kept per shard: a proof accepted at `now` with `iat ≤ now + window` could be
/// replayed until `now + 2·window`, so entries live for three slots of `window` seconds.
pub const REPLAY_SLOTS: u64 = 3;

/// One shard's slot: the epoch it belongs to and the 16-byte entries seen in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySlot {
    /// `now / window` when the slot was written.
    pub epoch: u64,
    /// Entries.
    pub entries: Vec<[u8; 16]>,
}

impl ReplaySlot {
    /// Decodes shared-data bytes (garbage = empty slot of epoch 0).
    pub fn decode(bytes: &[u8]) -> ReplaySlot {
        let Some((head, rest)) = bytes.split_first_chunk::<8>() else {
            return ReplaySlot {
                epoch: 0,
                entries: Vec::new(),
            };
        };
        let entries = rest
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .collect();
        ReplaySlot {
            epoch: u64::from_be_bytes(*head),
            entries,
        }
    }

    /// Encodes for shared data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.entries.len());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(e);
        }
        out
    }

    /// Whether the slot is still live at epoch `current`.
    pub fn live(&self, current: u64) -> bool {
        self.epoch + REPLAY_SLOTS > current
    }
}

/// Shard index of an entry.
pub fn replay_shard(key: &[u8; 16]) -> usize {
    usize::from(u16::from_be_bytes([key[0], key[1]])) % REPLAY_SHARDS
}

/// Shared-data key of (shard, slot).
pub fn replay_data_key(prefix: &str, shard: usize, slot: u64) -> String {
    format!("{prefix}dpop-replay/{shard}/{slot}")
}

/// An in-process replay cache (native tests and single-VM hosts).
#[derive(Debug, Default)]
pub struct MemoryReplayCache {
    seen: std::cell::RefCell<std::collections::HashMap<[u8; 16], u64>>,
    /// Entries older than this many seconds are dropped.
    pub ttl_seconds: u64,
}

impl MemoryReplayCache {
    /// A cache remembering entries for `ttl_seconds`.
    pub fn new(ttl_seconds: u64) -> MemoryReplayCache {
        MemoryReplayCache {
            seen: Default::default(),
            ttl_seconds,
        }
    }
}

impl ReplayCache for MemoryReplayCache {
    fn check_and_insert(&self, key: [u8; 16], now: u64) -> Result<bool, DpopError> {
        let mut seen = self.seen.borrow_mut();
        seen.retain(|_, t| now < t.saturating_add(self.ttl_seconds));
        if seen.contains_key(&key) {
            return Ok(false);
        }
        seen.insert(key, now);
        Ok(true)
    }
}

/// The base64url SHA-256 of a certificate given as Envoy's lowercase hex digest, i.e. the
/// `x5t#S256` it must match. `None` when the digest is not 64 hex characters.
pub fn x5t_from_hex_digest(hex: &str) -> Option<String> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = Vec::with_capacity(32);
    for i in (0..64).step_by(2) {
        let pair = hex.get(i..i + 2)?;
        bytes.push(u8::from_str_radix(pair, 16).ok()?);
    }
    Some(b64::url_encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_slot_roundtrip_and_garbage() {
        let slot = ReplaySlot {
            epoch: 42,
            entries: vec![[1u8; 16], [2u8; 16]],
        };
        assert_eq!(ReplaySlot::decode(&slot.encode()), slot);
        assert_eq!(ReplaySlot::decode(b"short").entries.len(), 0);
        // A trailing partial entry is ignored, never a panic.
        let mut bytes = slot.encode();
        bytes.extend_from_slice(&[9u8; 5]);
        assert_eq!(ReplaySlot::decode(&bytes).entries.len(), 2);
    }

    #[test]
    fn replay_slots_live_for_three_windows() {
        let slot = ReplaySlot {
            epoch: 10,
            entries: Vec::new(),
        };
        assert!(slot.live(10));
        assert!(slot.live(12));
        assert!(!slot.live(13));
    }

    #[test]
    fn replay_keys_spread_over_shards() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..=u16::MAX {
            let mut k = [0u8; 16];
            k[..2].copy_from_slice(&i.to_be_bytes());
            let shard = replay_shard(&k);
            assert!(shard < REPLAY_SHARDS);
            seen.insert(shard);
        }
        assert_eq!(seen.len(), REPLAY_SHARDS);
        assert_eq!(replay_data_key("p/", 3, 1), "p/dpop-replay/3/1");
    }

    #[test]
    fn memory_cache_remembers_then_forgets() {
        let c = MemoryReplayCache::new(10);
        assert!(c.check_and_insert([7; 16], 100).unwrap());
        assert!(!c.check_and_insert([7; 16], 105).unwrap());
        assert!(c.check_and_insert([8; 16], 105).unwrap());
        assert!(c.check_and_insert([7; 16], 111).unwrap());
    }

    #[test]
    fn every_error_has_a_distinct_dpop_reason() {
        let all = [
            DpopError::Missing,
            DpopError::Multiple,
            DpopError::Malformed(String::new()),
            DpopError::Typ,
            DpopError::Alg,
            DpopError::Jwk(String::new()),
            DpopError::Signature,
            DpopError::Claims(String::new()),
            DpopError::Htm,
            DpopError::Htu,
            DpopError::Iat,
            DpopError::Nonce,
            DpopError::Replay,
            DpopError::ReplayUnavailable,
            DpopError::Ath,
            DpopError::JktMismatch,
        ];
        let reasons: std::collections::HashSet<&str> = all.iter().map(DpopError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        assert!(reasons.iter().all(|r| r.starts_with("dpop_")));
        assert!(all.iter().all(|e| !e.to_string().is_empty()));
    }
}
