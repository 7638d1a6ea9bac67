//! Shared fixtures for the decision tests: keys generated once per test binary (never
//! committed), an Authority that signs OpToks with `jsonwebtoken` (independent of the
//! filter's code), and a configuration builder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry_token_core::config::Config;
use registry_token_core::handler::{self, Context, Decision, RequestView};
use registry_token_core::token::crypto::RustCrypto;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://authority.example";
pub const AUDIENCE: &str = "registry-token";
pub const SERVICE: &str = "registry.example";
pub const REALM: &str = "https://gateway.example/token";
pub const NOW: u64 = 1_800_000_000;

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// An RSA key in the forms the tests need.
pub struct RsaFixture {
    pub pkcs8_pem: String,
    pub pkcs1_pem: String,
    pub public: rsa::RsaPublicKey,
}

impl RsaFixture {
    fn generate() -> RsaFixture {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        RsaFixture {
            pkcs8_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            pkcs1_pem: key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
            public: key.to_public_key(),
        }
    }

    /// Public JWK with the given kid.
    pub fn jwk(&self, kid: &str) -> Value {
        json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&self.public.n().to_bytes_be()),
            "e": b64(&self.public.e().to_bytes_be()),
        })
    }
}

/// A P-256 key.
pub struct EcFixture {
    pub pkcs8_pem: String,
    pub sec1_pem: String,
    pub x: String,
    pub y: String,
}

impl EcFixture {
    /// A fresh random P-256 key.
    pub fn generate() -> EcFixture {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::EncodePrivateKey as _;
        let key = p256::SecretKey::random(&mut rand_core::OsRng);
        let point = key.public_key().to_encoded_point(false);
        EcFixture {
            pkcs8_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            sec1_pem: key.to_sec1_pem(LineEnding::LF).unwrap().to_string(),
            x: b64(point.x().unwrap()),
            y: b64(point.y().unwrap()),
        }
    }

    pub fn jwk(&self, kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": self.x, "y": self.y})
    }
}

pub fn signing_rsa() -> &'static RsaFixture {
    static K: OnceLock<RsaFixture> = OnceLock::new();
    K.get_or_init(RsaFixture::generate)
}

pub fn authority_rsa() -> &'static RsaFixture {
    static K: OnceLock<RsaFixture> = OnceLock::new();
    K.get_or_init(RsaFixture::generate)
}

pub fn other_rsa() -> &'static RsaFixture {
    static K: OnceLock<RsaFixture> = OnceLock::new();
    K.get_or_init(RsaFixture::generate)
}

pub fn authority_ec() -> &'static EcFixture {
    static K: OnceLock<EcFixture> = OnceLock::new();
    K.get_or_init(EcFixture::generate)
}

pub fn signing_ec() -> &'static EcFixture {
    static K: OnceLock<EcFixture> = OnceLock::new();
    K.get_or_init(EcFixture::generate)
}

/// The DPoP proof key: a P-256 key apart from the Authority's and the signing key.
pub fn proof_ec() -> &'static EcFixture {
    static K: OnceLock<EcFixture> = OnceLock::new();
    K.get_or_init(EcFixture::generate)
}

/// A second proof key, for proofs signed by a key other than the bound one.
pub fn other_proof_ec() -> &'static EcFixture {
    static K: OnceLock<EcFixture> = OnceLock::new();
    K.get_or_init(EcFixture::generate)
}

pub const AUTH_KID: &str = "authority-rsa";
pub const AUTH_EC_KID: &str = "authority-ec";

/// The base configuration as JSON (tests tweak it before building).
pub fn base_config() -> Value {
    json!({
        "authority": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": {"keys": [authority_rsa().jwk(AUTH_KID), authority_ec().jwk(AUTH_EC_KID)]},
            "requireSenderConstraint": false
        },
        "signing": { "keyPem": signing_rsa().pkcs8_pem },
        "registry": { "realm": REALM, "allowedServices": [SERVICE] },
        "plans": [
            {"name": "community", "repositories": [
                {"pattern": "stella-ops/public/*"}
            ]},
            {"name": "enterprise", "repositories": [
                {"pattern": "stella-ops/private/locked", "actions": ["pull"]},
                {"pattern": "stella-ops/**", "actions": ["pull", "push"]},
                {"type": "registry", "pattern": "catalog", "actions": ["*"]}
            ]},
            {"name": "admin", "repositories": [ {"pattern": "**", "actions": ["*"]} ]}
        ],
        "defaultPlan": "community",
        "revokedLicenses": ["lic-0042"]
    })
}

pub fn config_from(v: Value) -> Config {
    match Config::from_value(v) {
        Ok(c) => c,
        Err(e) => panic!("config refused: {e}"),
    }
}

pub fn default_claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
        "scope": "registry.token.issue openid",
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 600,
        "client_id": "cli"
    })
}

/// Signs claims with the Authority's RSA key via jsonwebtoken.
pub fn sign_rsa(claims: &Value, alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_rsa_pem(authority_rsa().pkcs8_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

pub fn sign_ec(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_ec_pem(authority_ec().pkcs8_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

pub fn optok(claims: &Value) -> String {
    sign_rsa(claims, Algorithm::RS256, Some(AUTH_KID))
}

/// Runs the decision on a GET with the given query and headers.
pub fn decide(config: &Config, query: &str, headers: &[(&str, &str)]) -> Decision {
    decide_at(config, "GET", query, headers, None, NOW)
}

pub fn decide_at(
    config: &Config,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    peer_cert: Option<&str>,
    now: u64,
) -> Decision {
    decide_full(config, method, query, headers, peer_cert, None, now)
}

/// Runs the decision on a `POST /token` with a form body (content type added).
pub fn decide_post(
    config: &Config,
    form: &str,
    headers: &[(&str, &str)],
    peer_cert: Option<&str>,
    now: u64,
) -> Decision {
    let mut all = vec![(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    all.extend_from_slice(headers);
    decide_full(
        config,
        "POST",
        "",
        &all,
        peer_cert,
        Some(form.as_bytes()),
        now,
    )
}

pub fn decide_full(
    config: &Config,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    peer_cert: Option<&str>,
    body: Option<&[u8]>,
    now: u64,
) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let path = if query.is_empty() {
        "/token".to_string()
    } else {
        format!("/token?{query}")
    };
    let view = RequestView {
        method,
        path: &path,
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(peer_cert),
        body,
    };
    let keys = match &config.authority.keys {
        registry_token_core::config::KeySource::Inline(k) => Some(k),
        _ => None,
    };
    let crypto = RustCrypto;
    let run = |cache: Option<&registry_token_core::handler::cache::Caches>| {
        let ctx = Context {
            config,
            keys: keys.into(),
            crypto: &crypto,
            now,
            replay: replay_cache(),
            cache,
            revocation: registry_token_core::policy::revocation::RemoteList::NotConfigured,
        };
        handler::handle_token(&view, &ctx)
    };
    // Every decision goes through the per-thread caches (sound across configurations:
    // entries are keyed by the policy and the key set). Requests that touch no per-request
    // state (no DPoP proof, no mint reuse) are also decided without the cache, and once
    // more through it (a hit when the first run verified the OpToken): all three must
    // agree, which checks the caches on every decision test input.
    let cached = caches().with(|c| run(Some(c)));
    if view.header_values("dpop").next().is_none() && config.signing.reuse_seconds == 0 {
        let plain = run(None);
        assert_same_decision(&cached, &plain);
        let again = caches().with(|c| run(Some(c)));
        assert_same_decision(&cached, &again);
    }
    cached
}

/// The per-thread caches [`decide_at`] uses.
pub fn caches() -> &'static std::thread::LocalKey<registry_token_core::handler::cache::Caches> {
    thread_local! {
        static CACHES: registry_token_core::handler::cache::Caches =
            registry_token_core::handler::cache::Caches::default();
    }
    &CACHES
}

/// The claims of a compact JWS, unchecked.
pub fn jws_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        let part = parts.next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    (next(), next())
}

/// Two decisions equal but for the minted token's random `jti` (and so its signature).
pub fn assert_same_decision(a: &Decision, b: &Decision) {
    assert_eq!(a.status, b.status, "{} / {}", a.body, b.body);
    assert_eq!(a.outcome, b.outcome);
    assert_eq!(a.unknown_kid, b.unknown_kid);
    assert_eq!(a.headers, b.headers);
    let strip = |d: &Decision| {
        d.audit.clone().map(|mut x| {
            x.jti = x.jti.map(|_| "-".to_string());
            x.refresh_token_id = x.refresh_token_id.map(|_| "-".to_string());
            x
        })
    };
    assert_eq!(strip(a), strip(b));
    if a.status == 200 {
        let (mut ba, mut bb) = (body(a), body(b));
        let ta = jws_parts(ba["token"].as_str().unwrap());
        let tb = jws_parts(bb["token"].as_str().unwrap());
        assert_eq!(ta.0, tb.0, "minted headers");
        let (mut ca, mut cb) = (ta.1, tb.1);
        ca["jti"] = Value::Null;
        cb["jti"] = Value::Null;
        // A refresh token issued with it has a random id too (`rtid`).
        if a.audit
            .as_ref()
            .is_some_and(|x| x.refresh_token_id.is_some())
            && ca.get("rtid").is_some()
        {
            ca["rtid"] = Value::Null;
            cb["rtid"] = Value::Null;
        }
        assert_eq!(ca, cb, "minted claims");
        for b in [&mut ba, &mut bb] {
            b["token"] = Value::Null;
            b["access_token"] = Value::Null;
            if b.get("refresh_token").is_some() {
                b["refresh_token"] = Value::Null;
            }
        }
        assert_eq!(ba, bb);
    } else {
        assert_eq!(a.body, b.body);
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn body(d: &Decision) -> Value {
    serde_json::from_str(&d.body).unwrap()
}

pub fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
    d.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes a minted token's claims (after checking it with jsonwebtoken, independently).
pub fn verify_minted(token: &str, service: &str) -> Value {
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        &b64(&signing_rsa().public.n().to_bytes_be()),
        &b64(&signing_rsa().public.e().to_bytes_be()),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
    v.set_audience(&[service]);
    v.set_issuer(&["registry-token-service"]);
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

/// One replay cache per test thread, so replays across calls in a test are caught.
pub fn replay_cache() -> &'static registry_token_core::sender::replay::MemoryReplayCache {
    thread_local! {
        static CACHE: &'static registry_token_core::sender::replay::MemoryReplayCache =
            Box::leak(Box::new(registry_token_core::sender::replay::MemoryReplayCache::new(180)));
    }
    CACHE.with(|c| *c)
}
