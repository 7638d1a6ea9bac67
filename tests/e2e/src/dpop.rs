//! DPoP (RFC 9449) proofs for the tests, made with `jsonwebtoken`, independently of the
//! filter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::authority::{now, AuthorityKey};
use crate::gateway::TestKeys;

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `ath` of an access token: base64url(SHA-256(token)).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// A client's DPoP key: EC P-256, made with openssl.
pub struct DpopKey {
    /// The private key, PEM.
    pub key_pem: String,
    /// The public JWK (`kty`, `crv`, `x`, `y`).
    pub public_jwk: Value,
    /// RFC 7638 thumbprint of the public key: the OpTok's `cnf.jkt`.
    pub jkt: String,
}

impl DpopKey {
    pub fn generate(keys: &TestKeys, name: &str) -> DpopKey {
        let key = keys.ec_signing_key(name);
        let loaded = AuthorityKey::from_pem(&key.key_pem).unwrap_or_else(|e| panic!("{e}"));
        let jwk = loaded.jwk();
        let public_jwk =
            json!({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]});
        // The thumbprint, computed here from the canonical members (RFC 7638 §3.2).
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            jwk["x"], jwk["y"]
        );
        let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(
            jkt,
            loaded.kid(),
            "two computations of the thumbprint differ"
        );
        DpopKey {
            key_pem: key.key_pem,
            public_jwk,
            jkt,
        }
    }

    /// A fresh proof (`typ: dpop+jwt`, `ES256`, `jwk`; `jti`, `htm`, `htu`, `iat`, `ath`).
    pub fn proof(&self, htm: &str, htu: &str, access_token: &str) -> String {
        self.proof_with(htm, htu, access_token, |_| {})
    }

    /// A proof whose claims `f` changes first (e.g. a chosen `jti`, a wrong `ath`).
    pub fn proof_with(
        &self,
        htm: &str,
        htu: &str,
        access_token: &str,
        f: impl FnOnce(&mut Value),
    ) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("dpop+jwt".to_owned());
        header.jwk =
            Some(serde_json::from_value(self.public_jwk.clone()).unwrap_or_else(|e| panic!("{e}")));
        let mut claims = json!({
            "jti": random_hex(16),
            "htm": htm,
            "htu": htu,
            "iat": now(),
            "ath": ath(access_token),
        });
        f(&mut claims);
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("DPoP key: {e}"));
        jsonwebtoken::encode(&header, &claims, &key).unwrap_or_else(|e| panic!("DPoP proof: {e}"))
    }
}
