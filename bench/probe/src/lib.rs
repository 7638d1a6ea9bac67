//! The in-Envoy crypto ceiling of `make bench` (docs/PERFORMANCE.md).
//!
//! A /token path costs, at least, its signature work: verifying the OpToken (RS256),
//! verifying the DPoP proof (ES256), signing the registry token (RS256 or ES256). Through
//! Envoy's `sign`/`verify_signature` foreign functions each call imports the key again
//! (BoringSSL), which costs more than the signature itself for RSA. This module does only
//! that work, per request, with the filter's own [`HostCrypto`], then answers a fixed body
//! of the size of a token reply: its rate is the ceiling the filter's rate is compared to.
//!
//! Plugin configuration (JSON): `{"ops": ["verify:RS256", "verify:ES256", "sign:RS256"],
//! "rsaKeyPem": "…", "ecKeyPem": "…", "bodyBytes": 900}`. The messages are the size of a
//! JWS signing input (700 bytes); the signatures to verify are made once at configure
//! time. Any failure answers 500 (the bench counts non-200 answers).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::host::{ForeignCall, HostCrypto};
use registry_token_core::token::crypto::Crypto;
use registry_token_core::token::keys::{PrivateKey, PublicKey};
use serde_json::Value;

/// Bytes of the message signed and verified (about a JWS signing input).
const MESSAGE_BYTES: usize = 700;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

struct EnvoyForeign;

impl ForeignCall for EnvoyForeign {
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match proxy_wasm::hostcalls::call_foreign_function(function, Some(args)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Ok(Vec::new()),
            Err(status) => Err(format!("foreign function {function}: {status:?}")),
        }
    }
}

/// The shared-data key of `shared:cas`.
const SHARED_KEY: &str = "registry-token-probe/shared";

/// One piece of signature work.
enum Op {
    Verify {
        alg: Alg,
        key: Box<PublicKey>,
        signature: Vec<u8>,
    },
    Sign(Box<PrivateKey>),
    /// `shared:cas`: one shared-data read and one compare-and-swap write of a 512-byte
    /// value (what the ledger's append and the DPoP replay record do per request).
    SharedCas,
    /// `shared:get`: the read alone.
    SharedGet,
    /// `shared:set`: an unconditional write alone.
    SharedSet,
    /// `host:<call>`: one of the filter's other per-request hostcalls, to weigh it against
    /// the ceiling (see [`HostOp`]).
    Host(HostOp),
}

/// The filter's per-request hostcalls other than crypto and shared data.
#[derive(Clone, Copy)]
enum HostOp {
    /// `host:headers`: every request header (the filter's request view).
    Headers,
    /// `host:header`: one request header (`:path`).
    Header,
    /// `host:property`: `connection.sha256_peer_certificate_digest` (mTLS binding).
    Property,
    /// `host:set-property`: a 700-byte filter-state value (the audit record).
    SetProperty,
    /// `host:log`: an info line of 700 bytes (the audit line).
    Log,
    /// `host:time`: the host clock.
    Time,
    /// `host:counter`: one counter increment.
    Counter,
    /// `host:histogram`: one histogram sample.
    Histogram,
    /// `host:random`: 16 random bytes (the token's `jti`).
    Random,
}

struct Work {
    ops: Vec<Op>,
    counter: Option<u32>,
    histogram: Option<u32>,
    message: Vec<u8>,
    body: String,
}

impl Work {
    fn run(&self, crypto: &HostCrypto<EnvoyForeign>) -> Result<(), String> {
        for op in &self.ops {
            match op {
                Op::Verify {
                    alg,
                    key,
                    signature,
                } => crypto
                    .verify(*alg, key, &self.message, signature)
                    .map_err(|e| e.to_string())?,
                Op::Sign(key) => {
                    crypto.sign(key, &self.message).map_err(|e| e.to_string())?;
                }
                Op::SharedGet => {
                    proxy_wasm::hostcalls::get_shared_data(SHARED_KEY)
                        .map_err(|s| format!("get_shared_data: {s:?}"))?;
                }
                Op::SharedSet => {
                    proxy_wasm::hostcalls::set_shared_data(
                        SHARED_KEY,
                        Some(&self.message[..512.min(self.message.len())]),
                        None,
                    )
                    .map_err(|s| format!("set_shared_data: {s:?}"))?;
                }
                Op::Host(op) => self.host(*op)?,
                Op::SharedCas => {
                    let (_, cas) = proxy_wasm::hostcalls::get_shared_data(SHARED_KEY)
                        .map_err(|s| format!("get_shared_data: {s:?}"))?;
                    proxy_wasm::hostcalls::set_shared_data(
                        SHARED_KEY,
                        Some(&self.message[..512.min(self.message.len())]),
                        cas,
                    )
                    .map_err(|s| format!("set_shared_data: {s:?}"))?;
                }
            }
        }
        Ok(())
    }
}

impl Work {
    fn host(&self, op: HostOp) -> Result<(), String> {
        use proxy_wasm::hostcalls as h;
        fn err(what: &'static str) -> impl Fn(proxy_wasm::types::Status) -> String {
            move |s| format!("{what}: {s:?}")
        }
        match op {
            HostOp::Headers => {
                h::get_map(proxy_wasm::types::MapType::HttpRequestHeaders)
                    .map_err(err("get_map"))?;
            }
            HostOp::Header => {
                h::get_map_value(proxy_wasm::types::MapType::HttpRequestHeaders, ":path")
                    .map_err(err("get_map_value"))?;
            }
            HostOp::Property => {
                h::get_property(vec!["connection", "sha256_peer_certificate_digest"])
                    .map_err(err("get_property"))?;
            }
            HostOp::SetProperty => {
                h::set_property(vec!["probe_audit"], Some(&self.message))
                    .map_err(err("set_property"))?;
            }
            HostOp::Log => {
                let line = String::from_utf8_lossy(&self.message);
                h::log(LogLevel::Info, &line).map_err(err("log"))?;
            }
            HostOp::Time => {
                h::get_current_time().map_err(err("get_current_time"))?;
            }
            HostOp::Counter => {
                if let Some(id) = self.counter {
                    h::increment_metric(id, 1).map_err(err("increment_metric"))?;
                }
            }
            HostOp::Histogram => {
                if let Some(id) = self.histogram {
                    h::record_metric(id, 170).map_err(err("record_metric"))?;
                }
            }
            HostOp::Random => {
                let mut buf = [0u8; 16];
                getrandom::getrandom(&mut buf).map_err(|e| format!("random: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Builds the work from the plugin configuration.
fn configure(config: &[u8], crypto: &HostCrypto<EnvoyForeign>) -> Result<Work, String> {
    let v: Value = serde_json::from_slice(config).map_err(|e| format!("configuration: {e}"))?;
    let pem = |name: &str| -> Result<PrivateKey, String> {
        let text = v[name]
            .as_str()
            .ok_or_else(|| format!("{name} is missing"))?;
        PrivateKey::from_pem(text).map_err(|e| format!("{name}: {e}"))
    };
    let message: Vec<u8> = (0..MESSAGE_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let mut ops = Vec::new();
    for op in v["ops"].as_array().ok_or("ops is missing")? {
        let op = op.as_str().ok_or("ops: strings")?;
        let shared = match op {
            "shared:cas" => Some(Op::SharedCas),
            "shared:get" => Some(Op::SharedGet),
            "shared:set" => Some(Op::SharedSet),
            _ => None,
        };
        if let Some(shared) = shared {
            ops.push(shared);
            continue;
        }
        if let Some(call) = op.strip_prefix("host:") {
            ops.push(Op::Host(match call {
                "headers" => HostOp::Headers,
                "header" => HostOp::Header,
                "property" => HostOp::Property,
                "set-property" => HostOp::SetProperty,
                "log" => HostOp::Log,
                "time" => HostOp::Time,
                "counter" => HostOp::Counter,
                "histogram" => HostOp::Histogram,
                "random" => HostOp::Random,
                _ => return Err(format!("ops: unknown {op:?}")),
            }));
            continue;
        }
        let key = match op.rsplit(':').next() {
            Some("RS256") => pem("rsaKeyPem")?,
            Some("ES256") => pem("ecKeyPem")?,
            _ => return Err(format!("ops: {op:?} is not verify|sign:RS256|ES256")),
        };
        if op.starts_with("verify:") {
            let signature = crypto
                .sign(&key, &message)
                .map_err(|e| format!("{op}: {e}"))?;
            ops.push(Op::Verify {
                alg: key.alg(),
                key: Box::new(key.public().clone()),
                signature,
            });
        } else if op.starts_with("sign:") {
            ops.push(Op::Sign(Box::new(key)));
        } else {
            return Err(format!("ops: {op:?} is not verify|sign:RS256|ES256"));
        }
    }
    let body_bytes = v["bodyBytes"].as_u64().unwrap_or(900);
    let body = "x".repeat(usize::try_from(body_bytes).unwrap_or(900));
    let counter = proxy_wasm::hostcalls::define_metric(
        proxy_wasm::types::MetricType::Counter,
        "probe_counter_total",
    )
    .ok();
    let histogram = proxy_wasm::hostcalls::define_metric(
        proxy_wasm::types::MetricType::Histogram,
        "probe_histogram_us",
    )
    .ok();
    Ok(Work {
        ops,
        counter,
        histogram,
        message,
        body,
    })
}

#[derive(Default)]
struct Root {
    work: Option<Rc<Work>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match configure(&config, &HostCrypto::new(EnvoyForeign)) {
            Ok(work) => {
                self.work = Some(Rc::new(work));
                true
            }
            Err(e) => {
                log::error!("crypto probe: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            work: self.work.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    work: Option<Rc<Work>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        let crypto = HostCrypto::new(EnvoyForeign);
        let (status, body) = match &self.work {
            Some(work) => match work.run(&crypto) {
                Ok(()) => (200, work.body.as_str()),
                Err(e) => {
                    log::error!("crypto probe: {e}");
                    (500, "crypto failed\n")
                }
            },
            None => (500, "not configured\n"),
        };
        self.send_http_response(
            status,
            vec![("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        Action::Pause
    }
}
