//! Refresh tokens: opaque to the holder and never verifiable by a registry.
//!
//! `rtr1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "rtr1.<claims>"))>`.
//! A MAC, not an AEAD: the claims (subject, plan, licence, binding, times, id) are the
//! holder's own facts and not secret from them; only their integrity matters, and
//! `hmac`/`sha2` are already linked. The `rtr1` prefix is not base64url of a JSON object,
//! so the string can never parse as a JWS, and the OpToken path refuses it by prefix.
//! The first configured secret seals, every one opens (rotation).

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::wire::b64;

/// The prefix of every refresh token of this realm.
pub const PREFIX: &str = "rtr1.";
/// Longest refresh token accepted, bytes.
pub const MAX_REFRESH_TOKEN_BYTES: usize = 4096;

/// What a refresh token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshClaims {
    /// The subject of the OpToken it came from.
    pub sub: String,
    /// The plan as resolved when it was issued (`stellaops:plan` or `defaultPlan`).
    pub plan: String,
    /// `stellaops:license`: every licence of the OpToken it came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lic: Vec<String>,
    /// The OpToken's `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// The `client_id` request parameter it was asked with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// `cnf.jkt` of the OpToken: a refresh grant needs a DPoP proof from that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// `cnf.x5t#S256` of the OpToken: a refresh grant needs that client certificate.
    #[serde(default, rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
    /// The OpToken's tenant (`authority.tenantClaim`), as presented. Absent in tokens
    /// sealed before tenants existed: those keep working, as a caller without a tenant
    /// (refused `missing_tenant` when `authority.requireTenant` is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ten: Option<String>,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Random id (128 bits, base64url): what `revokedRefreshTokens` lists.
    pub jti: String,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Not `rtr1.<claims>.<tag>` of base64url and JSON, or too long.
    Malformed,
    /// No configured secret opens it (forged, altered, or sealed by a retired secret).
    BadSeal,
    /// Past its `exp`.
    Expired,
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefreshError::Malformed => "the refresh token is not one this realm issued",
            RefreshError::BadSeal => "the refresh token does not verify",
            RefreshError::Expired => "the refresh token has expired",
        })
    }
}

impl std::error::Error for RefreshError {}

/// The sealing secrets: the first seals, all open.
#[derive(Clone)]
pub struct RefreshKeys {
    secrets: Vec<Vec<u8>>,
}

impl fmt::Debug for RefreshKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshKeys")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length")
}

/// Whether `token` has the refresh-token prefix (so it is never an OpToken).
pub fn is_refresh_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

impl RefreshKeys {
    /// Keys from the configured secrets (validated non-empty by the configuration).
    pub fn new(secrets: Vec<Vec<u8>>) -> RefreshKeys {
        RefreshKeys { secrets }
    }

    /// Seals `claims` with the first secret.
    pub fn seal(&self, claims: &RefreshClaims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let mut token = String::with_capacity(PREFIX.len() + json.len() * 4 / 3 + 48);
        token.push_str(PREFIX);
        token.push_str(&b64::url_encode(&json));
        let mut m = mac(self.secrets.first().map_or(&[][..], Vec::as_slice));
        m.update(token.as_bytes());
        let tag = m.finalize().into_bytes();
        token.push('.');
        token.push_str(&b64::url_encode(&tag));
        token
    }

    /// Opens a refresh token: shape, then the tag under each secret (constant-time
    /// comparison), then the claims and the expiry at `now`.
    pub fn open(&self, token: &str, now: u64) -> Result<RefreshClaims, RefreshError> {
        if token.len() > MAX_REFRESH_TOKEN_BYTES || !is_refresh_token(token) {
            return Err(RefreshError::Malformed);
        }
        let (sealed, tag) = token.rsplit_once('.').ok_or(RefreshError::Malformed)?;
        let payload = &sealed[PREFIX.len().min(sealed.len())..];
        if sealed.len() < PREFIX.len() || payload.contains('.') {
            return Err(RefreshError::Malformed);
        }
        let tag = b64::url_decode(tag)
            .ok()
            .filter(|t| t.len() == 32)
            .ok_or(RefreshError::Malformed)?;
        let json = b64::url_decode(payload).map_err(|_| RefreshError::Malformed)?;
        let opened = self.secrets.iter().any(|secret| {
            let mut m = mac(secret);
            m.update(sealed.as_bytes());
            m.verify_slice(&tag).is_ok()
        });
        if !opened {
            return Err(RefreshError::BadSeal);
        }
        let claims: RefreshClaims =
            serde_json::from_slice(&json).map_err(|_| RefreshError::Malformed)?;
        if now >= claims.exp {
            return Err(RefreshError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secrets: &[&str]) -> RefreshKeys {
        RefreshKeys::new(secrets.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    const A: &str = "a-secret-of-at-least-thirty-two-chars";
    const B: &str = "b-secret-of-at-least-thirty-two-chars";

    fn claims() -> RefreshClaims {
        RefreshClaims {
            sub: "alice".into(),
            plan: "community".into(),
            lic: vec!["lic-1".into()],
            azp: Some("cli".into()),
            cid: Some("docker".into()),
            jkt: None,
            x5t_s256: Some("x5t".into()),
            ten: Some("acme".into()),
            iat: 100,
            exp: 200,
            jti: "id-1".into(),
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let k = keys(&[A]);
        let t = k.seal(&claims());
        assert!(t.starts_with(PREFIX));
        assert_eq!(t.matches('.').count(), 2);
        assert_eq!(k.open(&t, 150), Ok(claims()));
        assert_eq!(k.open(&t, 199), Ok(claims()));
        assert_eq!(k.open(&t, 200), Err(RefreshError::Expired));
    }

    #[test]
    fn every_byte_flipped_is_refused() {
        let k = keys(&[A]);
        let t = k.seal(&claims());
        for i in 0..t.len() {
            for bit in [0x01u8, 0x02, 0x20] {
                let mut bytes = t.clone().into_bytes();
                bytes[i] ^= bit;
                let Ok(altered) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(k.open(&altered, 150).is_err(), "position {i} bit {bit}");
            }
        }
        assert!(k.open(&t[..t.len() - 1], 150).is_err());
        assert!(k.open(&format!("{t}A"), 150).is_err());
    }

    #[test]
    fn secrets_rotate() {
        let old = keys(&[A]);
        let rotated = keys(&[B, A]);
        let t_old = old.seal(&claims());
        let t_new = rotated.seal(&claims());
        assert_eq!(rotated.open(&t_old, 150), Ok(claims()));
        assert_eq!(rotated.open(&t_new, 150), Ok(claims()));
        assert_eq!(old.open(&t_new, 150), Err(RefreshError::BadSeal));
        assert_eq!(keys(&[B]).open(&t_old, 150), Err(RefreshError::BadSeal));
    }

    #[test]
    fn shapes_refused() {
        let k = keys(&[A]);
        for t in [
            "",
            "rtr1.",
            "rtr1..",
            "rtr1.a.b.c",
            "eyJ.eyJ.sig",
            "rtr2.e30.AAAA",
        ] {
            assert_eq!(k.open(t, 0), Err(RefreshError::Malformed), "{t}");
        }
        assert!(k.open(&"rtr1.".repeat(1000), 0).is_err());
        // The prefix never decodes as a JWS header.
        assert!(crate::token::jws::Jws::parse(&k.seal(&claims())).is_err());
        assert!(format!("{:?}", k).find(A).is_none());
    }
}
