//! Registry token minting: the header (`alg`, `typ`, `kid`, `x5c`) and the claims registry
//! 2.8 and 3.x check (`iss`, `sub`, `aud` as a string, `exp`, `nbf`, `iat`, `jti`,
//! `access`) and the caller's `tenant` when it has a valid one, signed by the configured key through [`Crypto`].

use serde_json::{Map, Value};

use crate::token::crypto::Crypto;
use crate::token::keys::PrivateKey;
use crate::wire::b64;

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
    /// `tenant` claim, only when set (a valid tenant of the caller).
    pub tenant: Option<&'a str>,
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
    if let Some(tenant) = req.tenant {
        claims.insert("tenant".into(), Value::from(tenant));
    }
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
