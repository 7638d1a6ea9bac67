//! Native tests against the fake host, one module per topic (fetch, replay, ledger); this
//! file holds what they share: the configuration, the keys, a VM and its requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};

use registry_token_core::config::Config;
use registry_token_core::handler::{Decision, Outcome, Reason, RequestView};
use registry_token_core::remote::{self, SharedKeys};
use registry_token_core::sender::dpop::DpopError;
use registry_token_core::sender::replay::{
    replay_data_key, replay_epoch_slot, ReplayCache, ReplaySlot,
};
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::wire::url::HttpUrl;

use crate::fake::{FakeHost, World};
use crate::fetch::{Fetcher, Keys};
use crate::replay::SharedReplayCache;
use crate::state::State;

const T0: u64 = 1_800_000_000;
const METADATA: &str = "http://authority.test/.well-known/openid-configuration";
const ISSUER: &str = "https://authority.example";
const LIST: &str = "http://lists.test/revoked.json";

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

struct EcKey {
    pem: String,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = key.public_key().to_encoded_point(false);
    EcKey {
        pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                    "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
    }
}

fn signing() -> &'static EcKey {
    static K: OnceLock<EcKey> = OnceLock::new();
    K.get_or_init(|| ec_key("signing"))
}

fn authority_jwk() -> Value {
    static K: OnceLock<Value> = OnceLock::new();
    K.get_or_init(|| ec_key("authority").jwk).clone()
}

fn base_config() -> Value {
    json!({
        "authority": {
            "issuer": ISSUER,
            "audiences": ["registry-token"],
            "metadataUrl": METADATA,
            "cluster": "authority",
            "jwksRefreshSeconds": 300,
            "requireSenderConstraint": false
        },
        "signing": {"keyPem": signing().pem, "algorithm": "ES256"},
        "registry": {"realm": "https://gateway.example/token", "allowedServices": ["registry.example"]},
        "plans": [{"name": "community", "repositories": [{"pattern": "stella-ops/public/*"}]}],
        "defaultPlan": "community"
    })
}

fn config(edit: impl FnOnce(&mut Value)) -> Config {
    let mut v = base_config();
    edit(&mut v);
    Config::from_value(v).unwrap_or_else(|e| panic!("config refused: {e}"))
}

/// One VM: its host, its state and its fetch schedule.
struct Vm {
    host: FakeHost,
    state: State<FakeHost>,
    fetcher: Fetcher,
}

fn vm(world: &Rc<World>, n: usize, config: &Config) -> Vm {
    let host = world.vm(n);
    Vm {
        state: State::with_replay_capacity(host.clone(), config.clone(), Box::new(RustCrypto), 0),
        fetcher: Fetcher::new(config),
        host,
    }
}

impl Vm {
    fn tick(&mut self) {
        self.fetcher.tick(&self.host);
    }

    /// Answers the call `token` as the host would during `on_http_call_response`.
    fn answer(&mut self, token: u32, status: &str, body: &str) {
        self.host.answer_with(status, body.as_bytes());
        self.fetcher.on_response(&self.host, token, body.len());
    }

    fn keys(&self) -> Keys {
        self.state.keys(self.host.world.now())
    }

    fn token_request(&self, bearer: &str) -> Decision {
        let headers = bearer_headers(bearer);
        let view = token_view(&headers);
        self.state.decide(&view)
    }
}

/// The headers of a `/token` request presenting `bearer` as its Bearer OpToken.
fn bearer_headers(bearer: &str) -> Vec<(String, String)> {
    vec![("authorization".to_string(), format!("Bearer {bearer}"))]
}

/// A `GET /token` for a pull of `stella-ops/public/base` with `headers`, no certificate.
fn token_view(headers: &[(String, String)]) -> RequestView<'_> {
    RequestView {
        method: "GET",
        path: "/token?service=registry.example&scope=repository:stella-ops/public/base:pull",
        headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
        body: None,
    }
}

fn discovery() -> String {
    json!({"issuer": ISSUER, "jwks_uri": "http://authority.test/jwks.json"}).to_string()
}

fn jwks_with(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// The calls dispatched after the first `seen`.
fn new_calls(world: &World, seen: usize) -> Vec<crate::fake::Call> {
    world.calls().into_iter().skip(seen).collect()
}

/// Runs one full discovery → JWKS fetch from `v`, answering the JWKS with `jwks`.
fn full_fetch(v: &mut Vm, jwks: &str) {
    let seen = v.host.world.calls().len();
    v.tick();
    let calls = new_calls(&v.host.world, seen);
    assert_eq!(calls.len(), 1, "expected one metadata call: {calls:?}");
    assert_eq!(calls[0].path, "/.well-known/openid-configuration");
    v.answer(calls[0].token, "200", &discovery());
    let calls = new_calls(&v.host.world, seen + 1);
    assert_eq!(calls.len(), 1, "expected the JWKS call: {calls:?}");
    assert_eq!(calls[0].path, "/jwks.json");
    v.answer(calls[0].token, "200", jwks);
}

fn refused_with(decision: &Decision, reason: Reason, status: u16) {
    assert_eq!(decision.status, status, "{decision:?}");
    assert_eq!(decision.outcome, Outcome::Rejected(reason), "{decision:?}");
    let body: Value = serde_json::from_str(&decision.body).unwrap();
    assert_eq!(
        body["type"],
        format!("urn:registry-token-filter:error:{}", reason.label())
    );
    assert_eq!(
        decision.audit.as_ref().map(|a| a.reason),
        Some(reason.label())
    );
}

fn retry_after(decision: &Decision) -> Option<&str> {
    decision
        .headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .map(|(_, v)| v.as_str())
}

const SOME_JWT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImF1dGhvcml0eSJ9.e30.AAAA";

mod fetch;
mod guard;
mod ledger;
mod metrics;
mod replay;
mod request;
mod revocation;
mod stream;
