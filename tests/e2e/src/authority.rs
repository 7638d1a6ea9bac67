//! A development / test Authority: loads a PEM key, publishes its JWKS, mints OpToks.
//!
//! Tokens are signed with the `jsonwebtoken` crate, an implementation independent of the
//! filter's own code, so a test that passes proves interoperability, not self-agreement.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// An RSA or P-256 Authority key.
pub struct AuthorityKey {
    pem: String,
    jwk: Value,
    alg: Algorithm,
    kid: String,
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

impl AuthorityKey {
    /// Loads a PKCS#1 / PKCS#8 RSA or PKCS#8 / SEC1 P-256 private key.
    pub fn from_pem(pem: &str) -> Result<AuthorityKey, String> {
        let rsa_key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem));
        let (jwk, alg, canonical) = if let Ok(k) = rsa_key {
            let n = b64(&k.n().to_bytes_be());
            let e = b64(&k.e().to_bytes_be());
            let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            (
                json!({"kty": "RSA", "n": n, "e": e}),
                Algorithm::RS256,
                canonical,
            )
        } else {
            let k = p256::SecretKey::from_pkcs8_pem(pem)
                .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
                .map_err(|_| "not an RSA or P-256 private key".to_string())?;
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &k.public_key(),
                false,
            );
            let x = b64(point.x().ok_or("no x")?);
            let y = b64(point.y().ok_or("no y")?);
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                Algorithm::ES256,
                canonical,
            )
        };
        let kid = b64(&Sha256::digest(canonical.as_bytes()));
        let mut jwk = jwk;
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), json!(kid));
            o.insert("use".into(), json!("sig"));
            o.insert(
                "alg".into(),
                json!(if alg == Algorithm::RS256 {
                    "RS256"
                } else {
                    "ES256"
                }),
            );
        }
        Ok(AuthorityKey {
            pem: pem.to_string(),
            jwk,
            alg,
            kid,
        })
    }

    /// Reads the key from a file.
    pub fn from_file(path: &std::path::Path) -> Result<AuthorityKey, String> {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        AuthorityKey::from_pem(&pem)
    }

    /// The key id (its RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// A JWKS holding this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs arbitrary claims with this key (`kid` and `typ` headers as given).
    pub fn sign(&self, claims: &Value, kid: Option<&str>, typ: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        header.typ = typ.map(str::to_string);
        let key = match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(self.pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(self.pem.as_bytes()),
        };
        match key.and_then(|k| jsonwebtoken::encode(&header, claims, &k)) {
            Ok(t) => t,
            Err(e) => format!("signing-failed:{e}"),
        }
    }
}

/// Claims of a development OpTok.
#[derive(Debug, Clone)]
pub struct OpTokSpec {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `sub`.
    pub subject: String,
    /// `scope` (space-separated).
    pub scope: String,
    /// `stellaops:plan`.
    pub plan: Option<String>,
    /// `stellaops:license`.
    pub license: Option<String>,
    /// `cnf.jkt`.
    pub jkt: Option<String>,
    /// `cnf.x5t#S256`.
    pub x5t_s256: Option<String>,
    /// Lifetime in seconds.
    pub ttl: i64,
    /// Offset added to `iat`/`nbf`/`exp` (negative = in the past).
    pub time_offset: i64,
}

impl Default for OpTokSpec {
    fn default() -> Self {
        OpTokSpec {
            issuer: "https://authority.example".into(),
            audience: "registry-token".into(),
            subject: "dev-user".into(),
            scope: "registry.token.issue".into(),
            plan: None,
            license: None,
            jkt: None,
            x5t_s256: None,
            ttl: 600,
            time_offset: 0,
        }
    }
}

/// Unix time now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl OpTokSpec {
    /// The claims object.
    pub fn claims(&self) -> Value {
        let t = now() + self.time_offset;
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("aud".into(), json!(self.audience));
        c.insert("sub".into(), json!(self.subject));
        c.insert("scope".into(), json!(self.scope));
        c.insert("iat".into(), json!(t));
        c.insert("nbf".into(), json!(t));
        c.insert("exp".into(), json!(t + self.ttl));
        c.insert("jti".into(), json!(format!("optok-{}-{}", t, self.subject)));
        if let Some(p) = &self.plan {
            c.insert("stellaops:plan".into(), json!(p));
        }
        if let Some(l) = &self.license {
            c.insert("stellaops:license".into(), json!(l));
        }
        let mut cnf = Map::new();
        if let Some(j) = &self.jkt {
            cnf.insert("jkt".into(), json!(j));
        }
        if let Some(x) = &self.x5t_s256 {
            cnf.insert("x5t#S256".into(), json!(x));
        }
        if !cnf.is_empty() {
            c.insert("cnf".into(), Value::Object(cnf));
        }
        Value::Object(c)
    }

    /// Mints the OpTok with `key`.
    pub fn mint(&self, key: &AuthorityKey) -> String {
        key.sign(&self.claims(), Some(key.kid()), Some("at+jwt"))
    }
}
