//! OpToken verification. A token is an [`UntrustedOpTok`] (split and decoded, nothing
//! believed) until [`UntrustedOpTok::verify`] has checked the algorithm, the signature,
//! `iss`, `aud`, the times and the scopes; only then does it become a [`VerifiedOpTok`],
//! the only type the later stages accept.
//!
//! Algorithm confusion is ruled out by construction: the `alg` header must be on the
//! configured allow-list (never `none`, never HS*), the key is chosen by `kid` among keys
//! whose type fits that `alg`, and [`crate::token::crypto::Crypto::verify`] refuses a key
//! that does not fit.

use serde_json::{Map, Value};

use crate::token::alg::Alg;
use crate::token::crypto::Crypto;
use crate::token::jws::{verify_signature, Jws, JwtError};
use crate::token::keys::KeySet;

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
    /// The claim naming the caller's tenant (`authority.tenantClaim`).
    pub tenant_claim: &'a str,
}

/// The verified claims of an OpTok that the decision uses.
///
/// Only [`UntrustedOpTok::verify`] makes one: the fields are private, so no other code
/// (in this crate or outside it) can write a value that claims to be verified. A clone is
/// as verified as its original; the per-VM memo (`handler::cache`) hands out clones.
///
/// ```compile_fail,E0451
/// // Outside `token::optok`, a verified token cannot be written by hand.
/// let forged = registry_token_core::token::optok::VerifiedOpTok {
///     subject: "admin".into(),
///     expires_at: u64::MAX,
///     jkt: None,
///     x5t_s256: None,
///     plan: None,
///     licenses: Vec::new(),
///     client_id: None,
///     tenant: None,
///     claims: Vec::new(),
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOpTok {
    subject: String,
    expires_at: u64,
    jkt: Option<String>,
    x5t_s256: Option<String>,
    plan: Option<String>,
    licenses: Vec<String>,
    client_id: Option<String>,
    tenant: Option<String>,
    claims: Vec<(String, Claim)>,
}

/// A claim kept for the trust policies (`issuers[].policies`), read once at verification:
/// a string, a list of strings, or anything else (kept as `Other`, so that a policy that
/// reads it fails closed instead of treating it as absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A JSON string.
    Str(String),
    /// A JSON array of at most [`MAX_LIST_CLAIM_ITEMS`] strings.
    List(Vec<String>),
    /// Present with another type (number, boolean, object, `null`, a longer list, a list
    /// holding a non-string).
    Other,
}

/// Most items a list claim kept for the trust policies may hold (`groups`, …).
pub const MAX_LIST_CLAIM_ITEMS: usize = 64;

impl Claim {
    fn of(value: &Value) -> Claim {
        match value {
            Value::String(s) => Claim::Str(s.clone()),
            Value::Array(items) if items.len() <= MAX_LIST_CLAIM_ITEMS => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .map_or(Claim::Other, Claim::List),
            _ => Claim::Other,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Claim::Str(s) => s.capacity(),
            Claim::List(l) => l
                .iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum(),
            Claim::Other => 0,
        }
    }
}

impl VerifiedOpTok {
    /// A claim kept at verification (the names passed to
    /// [`UntrustedOpTok::verify_keeping`]); `None` when the token does not carry it.
    pub fn claim(&self, name: &str) -> Option<&Claim> {
        self.claims.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// `sub`: a non-empty string (required).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `exp`.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// `cnf.jkt`, if DPoP-bound.
    pub fn jkt(&self) -> Option<&str> {
        self.jkt.as_deref()
    }

    /// `cnf.x5t#S256`, if certificate-bound.
    pub fn x5t_s256(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }

    /// `stellaops:plan`.
    pub fn plan(&self) -> Option<&str> {
        self.plan.as_deref()
    }

    /// `stellaops:license`: one string, or a list of strings (every one is checked).
    pub fn licenses(&self) -> &[String] {
        &self.licenses
    }

    /// `client_id` (or `azp`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The tenant claim (`authority.tenantClaim`), as presented: a string, not yet
    /// checked against the repository-name grammar (the policy stage does that).
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The bytes its strings hold on the heap (their capacities), for the memo's budget.
    pub(crate) fn heap_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        self.subject.capacity()
            + opt(&self.jkt)
            + opt(&self.x5t_s256)
            + opt(&self.plan)
            + opt(&self.client_id)
            + opt(&self.tenant)
            + self
                .claims
                .iter()
                .map(|(n, c)| {
                    n.capacity() + c.heap_bytes() + std::mem::size_of::<(String, Claim)>()
                })
                .sum::<usize>()
            + self
                .licenses
                .iter()
                .map(|l| l.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
    }
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

/// An OpTok split and decoded: its header and claims are not to be believed yet.
#[derive(Debug, Clone)]
pub struct UntrustedOpTok<'a> {
    jws: Jws<'a>,
}

impl<'a> UntrustedOpTok<'a> {
    /// Splits and decodes `token`, refusing what can never be an access token (a DPoP
    /// proof, a `crit` header) before any key is looked at.
    pub fn parse(token: &'a str) -> Result<UntrustedOpTok<'a>, JwtError> {
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
        Ok(UntrustedOpTok { jws })
    }

    /// The `iss` claim as written (a string), not yet believed: what chooses the issuer
    /// whose keys and rules verify the token (`token::issuers`).
    pub fn issuer(&self) -> Option<&str> {
        self.jws.claim_str("iss")
    }

    /// Checks algorithm, signature, issuer, audience, times and scopes, in that order.
    pub fn verify(
        self,
        policy: &OpTokPolicy<'_>,
        keys: &KeySet,
        crypto: &dyn Crypto,
        now: u64,
    ) -> Result<VerifiedOpTok, JwtError> {
        self.verify_keeping(policy, &[], keys, crypto, now)
    }

    /// [`UntrustedOpTok::verify`], keeping the claims named in `keep` (those a trust
    /// policy reads) in the verified token, typed as [`Claim`]s.
    pub fn verify_keeping(
        self,
        policy: &OpTokPolicy<'_>,
        keep: &[String],
        keys: &KeySet,
        crypto: &dyn Crypto,
        now: u64,
    ) -> Result<VerifiedOpTok, JwtError> {
        let jws = self.jws;
        let alg: Alg = jws.alg(policy.algorithms)?;
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
        // A claim the decision relies on that is present with the wrong type fails
        // closed: read as absent, it would skip a check (licence, binding) or fall back to
        // a default (plan, subject).
        let (jkt, x5t_s256) = confirmation(claims.get("cnf"))?;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => return Err(JwtError::MissingSubject),
            Some(_) => return Err(JwtError::InvalidClaim("sub".into())),
        };
        let plan = match claims.get("stellaops:plan") {
            None => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return Err(JwtError::InvalidClaim("stellaops:plan".into())),
        };
        let licenses = match claims.get("stellaops:license") {
            None => Vec::new(),
            Some(Value::String(l)) => vec![l.clone()],
            Some(Value::Array(list)) if list.len() <= MAX_LICENSES => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| JwtError::InvalidClaim("stellaops:license".into()))?,
            Some(_) => return Err(JwtError::InvalidClaim("stellaops:license".into())),
        };
        let tenant = match claims.get(policy.tenant_claim) {
            None => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(JwtError::InvalidClaim(policy.tenant_claim.to_string())),
        };
        let client_id = match (claims.get("client_id"), claims.get("azp")) {
            (Some(Value::String(c)), _) | (None, Some(Value::String(c))) => Some(c.clone()),
            (None, None) => None,
            (Some(_), _) => return Err(JwtError::InvalidClaim("client_id".into())),
            (None, Some(_)) => return Err(JwtError::InvalidClaim("azp".into())),
        };
        let kept = keep
            .iter()
            .filter_map(|name| claims.get(name).map(|v| (name.clone(), Claim::of(v))))
            .collect();
        Ok(VerifiedOpTok {
            subject,
            expires_at,
            jkt,
            x5t_s256,
            plan,
            licenses,
            client_id,
            tenant,
            claims: kept,
        })
    }
}

/// Most licences one OpTok may list in `stellaops:license`.
pub const MAX_LICENSES: usize = 32;

/// The confirmation methods of `cnf` (RFC 7800): `jkt` (RFC 9449) and `x5t#S256`
/// (RFC 8705), each a string. Any other member (a `jwk`, a `kid`, …) is a binding this
/// filter cannot check, so the OpTok is refused rather than treated as unbound.
fn confirmation(cnf: Option<&Value>) -> Result<(Option<String>, Option<String>), JwtError> {
    let Some(cnf) = cnf else {
        return Ok((None, None));
    };
    let Some(members) = cnf.as_object() else {
        return Err(JwtError::Malformed("cnf is not an object".into()));
    };
    let (mut jkt, mut x5t) = (None, None);
    for (name, value) in members {
        let slot = match name.as_str() {
            "jkt" => &mut jkt,
            "x5t#S256" => &mut x5t,
            _ => {
                return Err(JwtError::InvalidClaim(
                    "cnf (unsupported confirmation method)".into(),
                ))
            }
        };
        match value {
            Value::String(s) if !s.is_empty() => *slot = Some(s.clone()),
            _ => return Err(JwtError::InvalidClaim(format!("cnf.{name}"))),
        }
    }
    Ok((jkt, x5t))
}

/// Verifies an OpTok completely: [`UntrustedOpTok::parse`] then [`UntrustedOpTok::verify`].
pub fn verify_optok(
    token: &str,
    policy: &OpTokPolicy<'_>,
    keys: &KeySet,
    crypto: &dyn Crypto,
    now: u64,
) -> Result<VerifiedOpTok, JwtError> {
    UntrustedOpTok::parse(token)?.verify(policy, keys, crypto, now)
}
