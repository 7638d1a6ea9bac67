//! Compact JWS parsing, OpTok verification and registry token minting.
//!
//! Algorithm confusion is ruled out by construction: the `alg` header must be on the
//! configured allow-list (never `none`, never HS*), the key is chosen by `kid` among keys
//! whose type fits that `alg`, and [`crate::token::crypto::Crypto::verify`] refuses a key that does
//! not fit.

use std::fmt;

use serde_json::{Map, Value};

use crate::token::crypto::{Alg, Crypto};
use crate::token::keys::{KeySet, PrivateKey};
use crate::wire::b64;

/// Longest compact JWS accepted (OpToks and DPoP proofs), bytes.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Why a JWT was refused. Each maps to a metric reason label.
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
}

impl JwtError {
    /// The metric reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed_token",
            JwtError::DisallowedAlg(_) => "disallowed_alg",
            JwtError::UnknownKey => "unknown_key",
            JwtError::BadSignature => "bad_signature",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::IssuedInFuture => "issued_in_future",
            JwtError::InsufficientScope(_) => "insufficient_scope",
        }
    }
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

/// What an OpTok must satisfy.
#[derive(Debug, Clone)]
pub struct OpTokPolicy<'a> {
    /// Expected `iss`.
    pub issuer: &'a str,
    /// Accepted audiences (any one).
    pub audiences: &'a [String],
    /// Required scopes (all).
    pub required_scopes: &'a [String],
    /// Accepted algorithms.
    pub algorithms: &'a [Alg],
    /// Skew allowed on `exp`, `nbf`, `iat`.
    pub clock_skew_seconds: u64,
}

/// The verified claims of an OpTok that the decision uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpTok {
    /// `sub` (else `client_id`, else empty).
    pub subject: String,
    /// `exp`.
    pub expires_at: u64,
    /// `cnf.jkt`, if DPoP-bound.
    pub jkt: Option<String>,
    /// `cnf.x5t#S256`, if certificate-bound.
    pub x5t_s256: Option<String>,
    /// `stellaops:plan`.
    pub plan: Option<String>,
    /// `stellaops:license`.
    pub license: Option<String>,
    /// `client_id` (or `azp`).
    pub client_id: Option<String>,
}

/// Reads a NumericDate claim (integer or float seconds).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            if let Some(n) = v.as_u64() {
                Ok(Some(n))
            } else if let Some(f) = v.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
                // Truncation is the RFC 7519 reading of a fractional NumericDate.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(f as u64))
            } else {
                Err(JwtError::Malformed(format!("{name} is not a NumericDate")))
            }
        }
    }
}

/// Checks `exp` (required), `nbf` and `iat` against `now` with `skew`.
pub fn check_times(claims: &Map<String, Value>, now: u64, skew: u64) -> Result<u64, JwtError> {
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::Expired)?;
    if now >= exp.saturating_add(skew) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > now.saturating_add(skew) {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(claims, "iat")? {
        if iat > now.saturating_add(skew) {
            return Err(JwtError::IssuedInFuture);
        }
    }
    Ok(exp)
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

/// Verifies an OpTok completely: syntax, algorithm, signature, issuer, audience, times,
/// scopes. Returns the claims the decision needs.
pub fn verify_optok(
    token: &str,
    policy: &OpTokPolicy<'_>,
    keys: &KeySet,
    crypto: &dyn Crypto,
    now: u64,
) -> Result<OpTok, JwtError> {
    let jws = Jws::parse(token)?;
    if let Some(typ) = jws.header_str("typ") {
        // RFC 9068 access tokens say `at+jwt`; plain `JWT` is common. A DPoP proof must
        // never pass as an OpTok.
        if typ.eq_ignore_ascii_case("dpop+jwt") {
            return Err(JwtError::Malformed(
                "a DPoP proof is not an access token".into(),
            ));
        }
    }
    if jws.header.contains_key("crit") {
        return Err(JwtError::Malformed("unsupported crit header".into()));
    }
    let alg = jws.alg(policy.algorithms)?;
    verify_signature(&jws, alg, keys, crypto)?;
    let claims = &jws.claims;
    if jws.claim_str("iss") != Some(policy.issuer) {
        return Err(JwtError::WrongIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => policy.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| policy.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::WrongAudience);
    }
    let expires_at = check_times(claims, now, policy.clock_skew_seconds)?;
    let granted: Vec<&str> = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        (_, Some(Value::Array(list))) => list.iter().filter_map(Value::as_str).collect(),
        (_, Some(Value::String(s))) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        _ => Vec::new(),
    };
    for required in policy.required_scopes {
        if !granted.contains(&required.as_str()) {
            return Err(JwtError::InsufficientScope(required.clone()));
        }
    }
    let cnf = claims.get("cnf").and_then(Value::as_object);
    let cnf_str = |name: &str| {
        cnf.and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(c) = claims.get("cnf") {
        if !c.is_object() {
            return Err(JwtError::Malformed("cnf is not an object".into()));
        }
    }
    let client_id = jws
        .claim_str("client_id")
        .or_else(|| jws.claim_str("azp"))
        .map(str::to_string);
    Ok(OpTok {
        subject: jws
            .claim_str("sub")
            .map(str::to_string)
            .or_else(|| client_id.clone())
            .unwrap_or_default(),
        expires_at,
        jkt: cnf_str("jkt"),
        x5t_s256: cnf_str("x5t#S256"),
        plan: jws.claim_str("stellaops:plan").map(str::to_string),
        license: jws.claim_str("stellaops:license").map(str::to_string),
        client_id,
    })
}

/// Everything a minted registry token says.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `aud` (the `service`), a string as registry 2.8 requires.
    pub audience: &'a str,
    /// `access` claim entries.
    pub access: &'a [crate::policy::scope::Scope],
    /// `iat` and `nbf`.
    pub now: u64,
    /// `exp - iat`.
    pub lifetime_seconds: u64,
    /// `kid` header.
    pub kid: &'a str,
    /// `x5c` header.
    pub x5c: Option<&'a [String]>,
    /// `jti`: 128 random bits, base64url.
    pub jti: &'a str,
}

/// Signs a registry token. The header carries `alg`, `typ`, `kid` and, when set, `x5c`.
pub fn mint(
    req: &MintRequest<'_>,
    key: &PrivateKey,
    crypto: &dyn Crypto,
) -> Result<String, crate::token::crypto::CryptoError> {
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(key.alg().name()));
    header.insert("typ".into(), Value::from("JWT"));
    header.insert("kid".into(), Value::from(req.kid));
    if let Some(chain) = req.x5c {
        header.insert(
            "x5c".into(),
            Value::Array(chain.iter().map(|c| Value::from(c.as_str())).collect()),
        );
    }
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(req.issuer));
    claims.insert("sub".into(), Value::from(req.subject));
    claims.insert("aud".into(), Value::from(req.audience));
    claims.insert(
        "exp".into(),
        Value::from(req.now.saturating_add(req.lifetime_seconds)),
    );
    claims.insert("nbf".into(), Value::from(req.now));
    claims.insert("iat".into(), Value::from(req.now));
    claims.insert("jti".into(), Value::from(req.jti));
    claims.insert(
        "access".into(),
        serde_json::to_value(req.access).unwrap_or(Value::Array(Vec::new())),
    );
    let header_json = Value::Object(header).to_string();
    let claims_json = Value::Object(claims).to_string();
    let mut token = String::with_capacity(1024);
    token.push_str(&b64::url_encode(header_json.as_bytes()));
    token.push('.');
    token.push_str(&b64::url_encode(claims_json.as_bytes()));
    let signature = crypto.sign(key, token.as_bytes())?;
    token.push('.');
    token.push_str(&b64::url_encode(&signature));
    Ok(token)
}

/// A fresh `jti`: 128 random bits, base64url.
pub fn new_jti(crypto: &dyn Crypto) -> Result<String, crate::token::crypto::CryptoError> {
    let mut bytes = [0u8; 16];
    crypto.fill_random(&mut bytes)?;
    Ok(b64::url_encode(&bytes))
}

/// RFC 3339 UTC timestamp (`2026-11-23T11:17:48Z`) of a Unix time.
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}
