//! The decision core's own cost per `/token` request, natively, without the signature work:
//! what the filter adds beyond the in-Envoy crypto ceiling (docs/PERFORMANCE.md), before
//! the Wasm runtime's factor. The bench scenarios' configuration and requests (10 rules,
//! RS256 OpToks, each used once, through the per-VM caches; ES256 DPoP proofs), with a
//! [`Crypto`] that accepts every signature and signs with fixed bytes, so only parsing,
//! JSON, checks, policy, the minted token, the reply and the audit line remain.
//!
//! ```text
//! cargo run --release -p registry-token-cost -- [es256|dpop-es256|password|refresh [requests]]
//! cargo build --release -p registry-token-cost --target wasm32-wasip1
//! node bench/cost/run.mjs target/wasm32-wasip1/release/registry-token-cost.wasm dpop-es256
//! ```
//!
//! The Wasm build under Node's V8 (the runtime Envoy embeds) shows the factor natively
//! compiled code hides. A native profile: `perf record -g target/release/registry-token-cost
//! dpop-es256 200000`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use registry_token_core::config::{Config, KeySource};
use registry_token_core::handler::cache::Caches;
use registry_token_core::handler::{self, Context, RequestView};
use registry_token_core::policy::revocation::RemoteList;
use registry_token_core::sender::dpop::DpopError;
use registry_token_core::sender::replay::ReplayCache;
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::{Crypto, CryptoError};
use registry_token_core::token::keys::{PrivateKey, PublicKey};
use registry_token_core::token::refresh::{RefreshClaims, RefreshKeys};

const ISSUER: &str = "https://authority.bench";
const AUDIENCE: &str = "registry-token";
const SERVICE: &str = "registry.bench";
const REALM: &str = "https://gateway.bench/token";
const ROUNDS: usize = 7;
const SECRET: &str = "bench-refresh-token-secret-0123456789abcdef";
/// The Authority's RSA-2048 modulus (a public key only: with [`NoCrypto`] no signature is
/// checked, so no private key is needed).
const AUTHORITY_N: &str = "wNieaJ-Jkzg-PPmH44uh5utyD35862_3TMOkT6A4jsNrNzoKdW41FMIUWZZEehBU2JzEdABt9yeRCMCFeHUXSNzqMnt01ViE08SRAujScwcHlI21jifGk9YJE1n8RG1Ch92fHjxytRNmQc41L9bUR8Gm3OAbPI-DHQmkJc6h7HQIQuDudHul02WNMcXwa2ChBqZ7sbCmr7iK00Xt0KOCUdyw2leAjzrfqgJDjRTgNiJDwqa9-nmfUpHF0QnJYahvUBe88C1w8_WmCAtZQIheZzhzAYZMqpBnEWVgQKWGoS161GnZRksR9Hav3NcXxW7-Pzfw1Pts1jd4VK7ykepoUw";

/// Accepts every signature; signs with fixed bytes of the key's signature length.
struct NoCrypto;

impl Crypto for NoCrypto {
    fn verify(&self, _: Alg, _: &PublicKey, _: &[u8], _: &[u8]) -> Result<(), CryptoError> {
        Ok(())
    }
    fn sign(&self, key: &PrivateKey, _: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(vec![7; key.signature_len()])
    }
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(1);
        let n = N.fetch_add(1, Ordering::Relaxed).to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = n[i % 8] ^ (i as u8);
        }
        Ok(())
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

/// A replay record without expiry (the tests' `MemoryReplayCache` sweeps on every insert,
/// which would dominate here; the filter's is in Envoy shared data).
#[derive(Default)]
struct Replay(std::cell::RefCell<std::collections::HashSet<[u8; 16]>>);

impl ReplayCache for Replay {
    fn check_and_insert(&self, key: [u8; 16], _: u64, _: u64) -> Result<bool, DpopError> {
        Ok(self.0.borrow_mut().insert(key))
    }
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn jws(header: &Value, claims: &Value, sig_len: usize) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(&vec![0x5a; sig_len])
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut scenario = args.next().unwrap_or_else(|| "es256".into());
    // `parts-<scenario>`: the building blocks of the path one by one.
    let parts = scenario.starts_with("parts-");
    if parts {
        scenario = scenario["parts-".len()..].to_string();
    }
    let n: usize = args.next().map_or(50_000, |s| s.parse().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let signing = p256::SecretKey::random(&mut rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string();
    let proof_key = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = proof_key.public_key().to_encoded_point(false);
    let (x, y) = (b64(point.x().unwrap()), b64(point.y().unwrap()));
    let jkt = b64(&Sha256::digest(
        format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes(),
    ));
    let dpop = scenario.starts_with("dpop");
    let rules: Vec<Value> = (0..10)
        .map(|i| json!({"pattern": format!("bench/r{i}/*"), "actions": ["pull"]}))
        .collect();
    let mut config = json!({
        "authority": {"issuer": ISSUER, "audiences": [AUDIENCE], "requireSenderConstraint": dpop,
            "jwks": {"keys": [{"kty": "RSA", "kid": "authority", "alg": "RS256",
                "n": AUTHORITY_N, "e": "AQAB"}]}},
        "signing": {"keyPem": signing, "algorithm": "ES256", "lifetimeSeconds": 300},
        "registry": {"realm": REALM, "allowedServices": [SERVICE]},
        "plans": [{"name": "bench", "repositories": rules}],
        "defaultPlan": "bench"
    });
    if scenario == "refresh" {
        config["refreshTokens"] = json!({"lifetimeSeconds": 86_400, "secrets": [SECRET]});
    }
    let config = Config::from_value(config).unwrap();
    let KeySource::Inline(keys) = &config.authority.keys else {
        panic!("inline keys")
    };

    let path = format!("/token?service={SERVICE}&scope=repository:bench/r5/app:pull");
    let requests: Vec<Req> = (0..n)
        .map(|i| {
            let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "scope": "registry.token.issue",
                "sub": format!("load-run-{i}"), "client_id": "loadgen",
                "iat": now, "nbf": now, "exp": now + 3600, "jti": format!("optok-run-{i}")});
            if dpop {
                claims["cnf"] = json!({ "jkt": jkt });
            }
            let optok = jws(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": "authority"}),
                &claims,
                256,
            );
            let mut headers = vec![
                ("host".to_string(), "127.0.0.1".to_string()),
                (":method".to_string(), "GET".to_string()),
            ];
            match scenario.as_str() {
                "password" | "refresh" => {
                    let grant = if scenario == "password" {
                        format!("grant_type=password&username=bench&password={optok}")
                    } else {
                        let rt = RefreshKeys::new(vec![SECRET.as_bytes().to_vec()]).seal(
                            &RefreshClaims {
                                sub: format!("bench-{i}"),
                                plan: "bench".into(),
                                lic: Vec::new(),
                                azp: None,
                                cid: Some("bench".into()),
                                jkt: None,
                                x5t_s256: None,
                                ten: None,
                                iat: now,
                                exp: now + 86_400,
                                jti: format!("rt-{i}"),
                            },
                        );
                        format!("grant_type=refresh_token&refresh_token={rt}")
                    };
                    headers.push((
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ));
                    let body = format!(
                        "{grant}&client_id=bench&service={SERVICE}&scope=repository:bench/r5/app:pull"
                    );
                    ("POST".to_string(), "/token".to_string(), headers, Some(body.into_bytes()))
                }
                _ => {
                    headers.push(("authorization".into(), format!("Bearer {optok}")));
                    if dpop {
                        let ath = b64(&Sha256::digest(optok.as_bytes()));
                        let proof = jws(
                            &json!({"typ": "dpop+jwt", "alg": "ES256",
                                "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y}}),
                            &json!({"jti": format!("proof-{i}"), "htm": "GET", "htu": REALM,
                                "iat": now, "ath": ath}),
                            64,
                        );
                        headers.push(("dpop".into(), proof));
                    }
                    ("GET".to_string(), path.clone(), headers, None)
                }
            }
        })
        .collect();

    if parts {
        return time_parts(&config, keys, &requests, &caches_policy_of(&config), now);
    }
    // Rounds over the same requests, each with fresh caches and replay record (as a new
    // VM would have): the fastest and the median round, so that the runtime's tier-up and
    // a noisy machine weigh less.
    let mut rounds = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..ROUNDS {
        let caches = Caches::default();
        let replay = Replay::default();
        let ctx = Context {
            config: &config,
            keys: Some(keys).into(),
            crypto: &NoCrypto,
            now,
            replay: &replay,
            cache: Some(&caches),
            revocation: RemoteList::NotConfigured,
        };
        bytes = 0;
        let started = Instant::now();
        for (method, path, headers, body) in &requests {
            let view = RequestView {
                method,
                path,
                headers,
                peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
                body: body.as_deref(),
            };
            let decision = handler::handle_token(&view, &ctx);
            assert_eq!(decision.status, 200, "{}", decision.body);
            // What the glue does with it: the audit line (log and filter state).
            let line = decision
                .audit
                .as_ref()
                .map(|a| a.to_line())
                .unwrap_or_default();
            bytes += decision.body.len() + line.len();
        }
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    rounds.sort_by(f64::total_cmp);
    println!(
        "{scenario}: {n} requests × {ROUNDS} rounds, {:.2} µs per request (median round {:.2}) without signature work ({} bytes out per request)",
        rounds[0],
        rounds[ROUNDS / 2],
        bytes / n
    );
}

fn caches_policy_of(config: &Config) -> Vec<Alg> {
    config.authority.algorithms.clone()
}

/// Times `f` over every request, µs per call.
fn each<T>(what: &str, requests: &[Req], mut f: impl FnMut(&Req) -> T) {
    let started = Instant::now();
    for r in requests {
        std::hint::black_box(f(r));
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / requests.len() as f64;
    println!("  {what:<44} {per:>8.2} µs");
}

type Req = (String, String, Vec<(String, String)>, Option<Vec<u8>>);

fn bearer(r: &Req) -> &str {
    r.2.iter()
        .find(|(k, _)| k == "authorization")
        .map_or("", |(_, v)| &v["Bearer ".len()..])
}

fn time_parts(
    config: &Config,
    keys: &registry_token_core::token::keys::KeySet,
    requests: &[Req],
    algorithms: &[Alg],
    now: u64,
) {
    use registry_token_core::handler::cache;
    use registry_token_core::token::jws::Jws;
    use registry_token_core::token::optok::{self, OpTokPolicy};
    let policy = OpTokPolicy {
        issuer: &config.authority.issuer,
        audiences: &config.authority.audiences,
        required_scopes: &config.authority.required_scopes,
        algorithms,
        clock_skew_seconds: config.authority.clock_skew_seconds,
        tenant_claim: &config.authority.tenant_claim,
    };
    println!("parts ({} requests):", requests.len());
    each("Jws::parse(OpToken)", requests, |r| {
        Jws::parse(bearer(r)).map(|j| j.claims.len())
    });
    each("verify_optok (no signature work)", requests, |r| {
        optok::verify_optok(bearer(r), &policy, keys, &NoCrypto, now).is_ok()
    });
    each("cache::verification_context", requests, |_| {
        cache::verification_context(&policy, keys)
    });
    each("sha256(OpToken)", requests, |r| {
        registry_token_core::token::alg::sha256(bearer(r).as_bytes())
    });
    each("b64 url_encode(sha256)", requests, |r| {
        registry_token_core::wire::b64::url_encode(bearer(r).as_bytes())
    });
    let proofs: Vec<&str> = requests
        .iter()
        .filter_map(|r| {
            r.2.iter()
                .find(|(k, _)| k == "dpop")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    if !proofs.is_empty() {
        each("Jws::parse(proof)", requests, |r| {
            let p = r.2.iter().find(|(k, _)| k == "dpop").map_or("", |(_, v)| v);
            Jws::parse(p).map(|j| j.claims.len())
        });
        let jwk = Jws::parse(proofs[0]).unwrap().header["jwk"].clone();
        each("PublicKey::from_jwk(proof jwk, P-256)", requests, |_| {
            PublicKey::from_jwk(&jwk).map(|k| k.bits())
        });
    }
    let caches = Caches::default();
    let replay = Replay::default();
    let ctx = Context {
        config,
        keys: Some(keys).into(),
        crypto: &NoCrypto,
        now,
        replay: &replay,
        cache: Some(&caches),
        revocation: RemoteList::NotConfigured,
    };
    let mut decisions = Vec::with_capacity(requests.len());
    each("handle_token (everything)", requests, |r| {
        let view = RequestView {
            method: &r.0,
            path: &r.1,
            headers: &r.2,
            peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
            body: r.3.as_deref(),
        };
        decisions.push(handler::handle_token(&view, &ctx));
    });
    let mut i = 0;
    each("Audit::to_line", requests, |_| {
        i += 1;
        decisions[i - 1].audit.as_ref().map(|a| a.to_line())
    });
    let access =
        registry_token_core::policy::scope::parse_scope("repository:bench/r5/app:pull").unwrap();
    let access = [access];
    each("mint::mint (no signature work)", requests, |_| {
        registry_token_core::token::mint::mint(
            &registry_token_core::token::mint::MintRequest {
                issuer: &config.signing.issuer,
                subject: "load-run-1",
                audience: SERVICE,
                access: &access,
                now,
                lifetime_seconds: 300,
                kid: &config.signing.kid,
                x5c: None,
                jti: "AAAAAAAAAAAAAAAAAAAAAA",
                tenant: None,
                extra: registry_token_core::token::mint::Extra {
                    plan: Some("load"),
                    ..Default::default()
                },
            },
            &config.signing.key,
            &NoCrypto,
        )
    });
    each("new_jti", requests, |_| {
        registry_token_core::token::mint::new_jti(&NoCrypto)
    });
}
