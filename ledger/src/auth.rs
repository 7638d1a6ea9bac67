//! Who may call what: gateways by shared secret, the security team by admin JWT.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};

use crate::config::{Config, JwksSource};

/// Largest JWKS document accepted, bytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Least time between two fetches caused by an unknown `kid`.
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// The token of an `authorization: Bearer …` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Compares the presented bearer secret with the expected one in constant time (both are
/// hashed first, so neither the content nor the length leaks through timing).
pub fn secret_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = bearer(headers) else {
        return false;
    };
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// An admin caller that passed every check.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The token's `sub`: recorded as who made a change.
    pub subject: String,
}

/// Why an admin request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No bearer token: 401.
    Missing,
    /// A token that does not verify: 401 `invalid_token`.
    Invalid(String),
    /// A token whose header names critical extensions (`crit`), which the ledger does not
    /// understand (RFC 7515 §4.1.11): 401 `invalid_token`, saying so.
    Critical,
    /// A valid token without the admin scope: 403 `insufficient_scope`.
    Scope,
    /// No keys could be loaded yet: 503.
    KeysUnavailable,
}

/// Verifies admin JWTs against a JWKS.
pub struct AdminAuth {
    issuer: String,
    audience: Option<String>,
    scope: String,
    skew: u64,
    source: JwksSource,
    keys: RwLock<Option<Arc<JwkSet>>>,
    last_fetch: Mutex<Option<Instant>>,
    client: reqwest::Client,
}

/// Parses and checks a JWKS document: at least one key usable with RS256, PS256 or ES256.
pub fn parse_jwks(body: &[u8]) -> Result<JwkSet, String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no keys array")?;
    // One key this library cannot read (another algorithm, an encryption key) must not
    // make the whole set unusable: such keys are skipped.
    let keys: Vec<Jwk> = entries
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| k.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter(|k| !algorithms_of(k).is_empty())
        .collect();
    if keys.is_empty() {
        return Err("JWKS holds no RSA or P-256 signature key".into());
    }
    Ok(JwkSet { keys })
}

/// The allowed algorithms a key can verify (RS256/PS256 for RSA, ES256 for P-256), narrowed
/// by its `alg` when it has one.
fn algorithms_of(jwk: &Jwk) -> Vec<Algorithm> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        _ => vec![],
    };
    match jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok())
    {
        Some(alg) => family.into_iter().filter(|a| *a == alg).collect(),
        None if jwk.common.key_algorithm.is_some() => vec![],
        None => family,
    }
}

/// Refuses a token whose JOSE header has a `crit` member, whatever its value: it names
/// extensions a verifier must understand, and the ledger understands none (RFC 7515
/// §4.1.11). `jsonwebtoken`'s `Header` has no `crit` and ignores it, so the header is read
/// here as well; a header that is not base64url JSON is refused as malformed.
fn refuse_critical_extensions(token: &str) -> Result<(), AdminError> {
    let malformed = || AdminError::Invalid("malformed token header".into());
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if header.get("crit").is_some() {
        return Err(AdminError::Critical);
    }
    Ok(())
}

impl AdminAuth {
    /// Loads the keys (a file must load; a URL that fails is retried later).
    pub async fn new(config: &Config) -> Result<Arc<AdminAuth>, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let auth = Arc::new(AdminAuth {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            scope: config.admin_scope.clone(),
            skew: config.clock_skew_seconds,
            source: config.jwks.clone(),
            keys: RwLock::new(None),
            last_fetch: Mutex::new(None),
            client,
        });
        match &auth.source {
            JwksSource::File(path) => {
                let body = std::fs::read(path)
                    .map_err(|e| format!("--jwks-file {}: {e}", path.display()))?;
                let set = parse_jwks(&body)
                    .map_err(|e| format!("--jwks-file {}: {e}", path.display()))?;
                *auth.keys.write().await = Some(Arc::new(set));
            }
            JwksSource::Url { refresh, .. } => {
                if let Err(e) = auth.fetch().await {
                    tracing::warn!("JWKS fetch failed (retried): {e}");
                }
                let period = Duration::from_secs(*refresh);
                let weak = Arc::downgrade(&auth);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(period).await;
                        let Some(auth) = weak.upgrade() else { break };
                        if let Err(e) = auth.fetch().await {
                            tracing::warn!("JWKS refresh failed, keeping the last keys: {e}");
                        }
                    }
                });
            }
        }
        Ok(auth)
    }

    async fn fetch(&self) -> Result<(), String> {
        let JwksSource::Url { url, .. } = &self.source else {
            return Ok(());
        };
        *self.last_fetch.lock().await = Some(Instant::now());
        let resp = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        let set = parse_jwks(&body)?;
        *self.keys.write().await = Some(Arc::new(set));
        tracing::info!("JWKS loaded from {url}");
        Ok(())
    }

    /// Fetches again for an unknown `kid`, at most once per [`MIN_REFETCH`].
    async fn refetch_for_unknown_kid(&self) -> bool {
        if !matches!(self.source, JwksSource::Url { .. }) {
            return false;
        }
        {
            let last = self.last_fetch.lock().await;
            if last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
                return false;
            }
        }
        self.fetch().await.is_ok()
    }

    /// Checks an admin request's bearer token.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<Admin, AdminError> {
        let token = bearer(headers).ok_or(AdminError::Missing)?;
        refuse_critical_extensions(token)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AdminError::Invalid(format!("malformed token: {e}")))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::PS256
        ) {
            return Err(AdminError::Invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let mut keys = self.keys.read().await.clone();
        let has_kid = |set: &JwkSet| match &header.kid {
            Some(kid) => set
                .keys
                .iter()
                .any(|k| k.common.key_id.as_deref() == Some(kid)),
            None => true,
        };
        let known = match keys.as_deref() {
            Some(set) => has_kid(set),
            None => false,
        };
        if !known && self.refetch_for_unknown_kid().await {
            keys = self.keys.read().await.clone();
        }
        let keys = keys.ok_or(AdminError::KeysUnavailable)?;
        let candidates: Vec<&Jwk> = keys
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .filter(|k| algorithms_of(k).contains(&header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AdminError::Invalid(
                "no key for the token's kid and alg".into(),
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.skew;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        // jsonwebtoken checks `aud` only when the token has one (a missing or mistyped
        // `aud` passes) unless it is a required claim: with an audience configured, it is.
        let mut required = vec!["exp", "iss", "sub"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        let mut last_error = String::new();
        for jwk in candidates {
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(k) => k,
                Err(e) => {
                    last_error = format!("unusable key: {e}");
                    continue;
                }
            };
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => return self.authorize(&data.claims),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(AdminError::Invalid(last_error))
    }

    fn authorize(&self, claims: &Value) -> Result<Admin, AdminError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AdminError::Invalid("sub is not a non-empty string".into()))?;
        let mut scopes: Vec<&str> = Vec::new();
        if let Some(s) = claims.get("scope").and_then(Value::as_str) {
            scopes.extend(s.split(' ').filter(|s| !s.is_empty()));
        }
        if let Some(a) = claims.get("scp").and_then(Value::as_array) {
            scopes.extend(a.iter().filter_map(Value::as_str));
        }
        if !scopes.contains(&self.scope.as_str()) {
            return Err(AdminError::Scope);
        }
        Ok(Admin {
            subject: subject.to_string(),
        })
    }

    /// The scope an admin token must carry.
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn shared_secret() {
        let mut h = HeaderMap::new();
        assert!(!secret_matches(&h, "s"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s"));
        assert!(secret_matches(&h, "s"));
        assert!(!secret_matches(&h, "t"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  s "),
        );
        assert!(secret_matches(&h, "s"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s"));
        assert!(!secret_matches(&h, "s"));
    }

    #[test]
    fn crit_in_the_header_is_refused() {
        let token = |header: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header));
        let check = |header: &str| refuse_critical_extensions(&token(header));
        assert_eq!(check(r#"{"alg":"RS256"}"#), Ok(()));
        assert_eq!(
            check(r#"{"alg":"RS256","crit":["x"],"x":1}"#),
            Err(AdminError::Critical)
        );
        assert_eq!(
            check(r#"{"alg":"RS256","crit":null}"#),
            Err(AdminError::Critical)
        );
        assert!(matches!(check("not json"), Err(AdminError::Invalid(_))));
        assert!(matches!(
            refuse_critical_extensions("!!.e30.sig"),
            Err(AdminError::Invalid(_))
        ));
    }

    #[test]
    fn jwks_needs_a_usable_key() {
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"nope").is_err());
        let oct = br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#;
        assert!(parse_jwks(oct).is_err());
    }
}
