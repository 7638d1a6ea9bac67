//! Keys and JWS for the load generator: OpToks signed with the Authority's key and DPoP
//! proofs signed with per-OpTok P-256 keys, both through `ring` (fast enough to
//! pre-generate tens of thousands before a run).

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// base64url without padding.
pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The DER of every PEM block labelled `label` in `pem`.
pub fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let body: String = after[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = STANDARD.decode(body) {
            out.push(der);
        }
        rest = &after[stop + end.len()..];
    }
    out
}

/// PEM-encodes DER.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// The Authority's signing key (RSA → RS256, P-256 → ES256), PKCS#8 PEM.
pub struct AuthorityKey {
    signer: Signer,
    kid: String,
    rng: SystemRandom,
}

impl AuthorityKey {
    /// Loads a PKCS#8 PEM key; the `kid` is its RFC 7638 thumbprint (what `devtok jwks`
    /// and the bench JWKS publish) unless given.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<AuthorityKey, String> {
        let der = pem_blocks(pem, "PRIVATE KEY")
            .into_iter()
            .next()
            .ok_or("the Authority key must be a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")?;
        let rng = SystemRandom::new();
        let signer = match RsaKeyPair::from_pkcs8(&der) {
            Ok(k) => Signer::Rsa(k),
            Err(_) => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                    .map_err(|e| format!("not an RSA or P-256 PKCS#8 key: {e}"))?,
            ),
        };
        let kid = match kid {
            Some(k) => k,
            None => registry_token_core::token::keys::PrivateKey::from_pem(pem)
                .map_err(|e| e.to_string())?
                .public()
                .thumbprint()
                .to_string(),
        };
        Ok(AuthorityKey { signer, kid, rng })
    }

    /// The `kid` put in OpTok headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs claims into a compact JWS (`typ: at+jwt`).
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let alg = match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        };
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match &self.signer {
            Signer::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
                    .map_err(|_| "RSA signing failed".to_string())?;
                sig
            }
            Signer::Ec(k) => k
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| "ECDSA signing failed".to_string())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", b64(&sig)))
    }
}

/// A client's DPoP key (P-256) and the parts of its proofs that never change.
pub struct ProofKey {
    pair: EcdsaKeyPair,
    header_b64: String,
    jkt: String,
}

impl ProofKey {
    /// A fresh P-256 key.
    pub fn generate(rng: &SystemRandom) -> Result<ProofKey, String> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(|_| "P-256 key generation failed")?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng)
            .map_err(|e| format!("P-256 key: {e}"))?;
        let point = pair.public_key().as_ref();
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = b64(&sha256(canonical.as_bytes()));
        let header = json!({"typ": "dpop+jwt", "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y}});
        Ok(ProofKey {
            pair,
            header_b64: b64(header.to_string().as_bytes()),
            jkt,
        })
    }

    /// RFC 7638 thumbprint: the OpTok's `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for `GET htu` bound to `access_token` (by its `ath`), with a unique `jti`.
    pub fn proof(
        &self,
        rng: &SystemRandom,
        htu: &str,
        ath: &str,
        iat: u64,
    ) -> Result<String, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let jti = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let claims = json!({"jti": jti, "htm": "GET", "htu": htu, "iat": iat, "ath": ath});
        let input = format!("{}.{}", self.header_b64, b64(claims.to_string().as_bytes()));
        let sig = self
            .pair
            .sign(rng, input.as_bytes())
            .map_err(|_| "ECDSA signing failed")?;
        Ok(format!("{input}.{}", b64(sig.as_ref())))
    }
}

/// `ath`: base64url SHA-256 of the access token.
pub fn ath(token: &str) -> String {
    b64(&sha256(token.as_bytes()))
}

/// What an OpTok says.
#[derive(Debug, Clone)]
pub struct OpTokClaims {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `scope`.
    pub scope: String,
    /// `stellaops:plan`, if any.
    pub plan: Option<String>,
    /// Lifetime from now, seconds.
    pub ttl: u64,
}

impl Default for OpTokClaims {
    fn default() -> OpTokClaims {
        OpTokClaims {
            issuer: "https://authority.example".into(),
            audience: "registry-token".into(),
            scope: "registry.token.issue".into(),
            plan: None,
            ttl: 3600,
        }
    }
}

/// How an OpTok is bound.
#[derive(Debug, Clone)]
pub enum Binding {
    /// Not bound.
    None,
    /// `cnf.jkt`.
    Jkt(String),
    /// `cnf.x5t#S256`.
    X5t(String),
}

impl OpTokClaims {
    /// The claims of OpTok number `i` of a run.
    pub fn claims(&self, run: &str, i: usize, now: u64, binding: &Binding) -> Value {
        let mut c = json!({
            "iss": self.issuer, "aud": self.audience, "scope": self.scope,
            "sub": format!("load-{run}-{i}"), "client_id": "loadgen",
            "iat": now, "nbf": now, "exp": now + self.ttl,
            "jti": format!("optok-{run}-{i}"),
        });
        if let Some(p) = &self.plan {
            c["stellaops:plan"] = json!(p);
        }
        match binding {
            Binding::None => {}
            Binding::Jkt(j) => c["cnf"] = json!({"jkt": j}),
            Binding::X5t(x) => c["cnf"] = json!({"x5t#S256": x}),
        }
        c
    }
}

/// Unix time now, seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
