//! The proxy-wasm binding of the registry token filter (built to
//! `registry_token_filter.wasm`): the module's entry point, the root context (configure,
//! tick, HTTP call answers), the stream context (`/token`, `/healthz`, the JWKS) and the
//! Envoy implementation of the host traits ([`envoy`]). Hostcalls only: every decision is
//! `registry-token-core`'s, and what needs a host (the fetch schedule, the ledger buffer and
//! shipper, the replay record, the counters) is `registry-token-host`'s, tested natively
//! there with a fake host.
//!
//! Nothing here may panic: a panic traps the VM and every later request on that worker
//! fails. Hostcalls are used through their `Result`-returning forms.

pub mod envoy;
mod guard;

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use registry_token_core::config::Config;
use registry_token_core::handler::{self, Decision, PeerCertificate, RequestView, Route};
use registry_token_core::token::crypto::host::{self as hostproto, HostCrypto};
use registry_token_core::token::crypto::{Crypto, RustCrypto};
use registry_token_host::fetch::Fetcher;
use registry_token_host::guard::GuardStream;
use registry_token_host::host::Clock;
use registry_token_host::ledger::{self, Shipper};
use registry_token_host::metrics::{Metrics, LEDGER_DROPPED};
use registry_token_host::request::{self, LogGate, TokenRequestHead};
use registry_token_host::state::{self, State};
use registry_token_host::stream::{Step, StreamState};

use envoy::{EnvoyForeign, EnvoyHost};

/// Filter-state property holding the decision's audit record (as `wasm.<name>`).
pub const AUDIT_PROPERTY: &str = "registry_token_audit";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Host wall clock in nanoseconds, for the decision histogram only (0 when the host
/// cannot answer; decisions read the clock through [`registry_token_host::host::Clock`]).
fn now_nanos() -> u64 {
    envoy::current_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This VM's linear memory, bytes.
fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size(0) as u64).saturating_mul(65_536)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// Everything a configuration builds: the decision state and this VM's counters.
struct Filter {
    state: State<EnvoyHost>,
    metrics: Metrics<EnvoyHost>,
    log_gate: LogGate,
}

/// The root context (one per VM): builds the [`Filter`] at configure time and drives the
/// fetch schedule and the ledger shipper from its ticks and HTTP call answers.
#[derive(Default)]
struct Root {
    filter: Option<Rc<Filter>>,
    fetcher: Option<Fetcher>,
    shipper: Option<Shipper>,
    crypto_logged: bool,
}

impl Root {
    fn build(&mut self, bytes: &[u8]) -> Result<(Filter, Fetcher, Option<Shipper>), String> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(registry_token_core::config::ENV_PREFIX))
            .collect();
        let config = Config::load(bytes, env).map_err(|e| e.to_string())?;
        if !self.crypto_logged {
            for warning in config.warnings() {
                log::warn!("registry-token-filter: {warning}");
            }
        }
        let crypto: Box<dyn Crypto> = match hostproto::probe(&EnvoyForeign, &config.signing.key) {
            Ok(()) => {
                if !self.crypto_logged {
                    log::info!("registry-token-filter: crypto: host (Envoy foreign functions sign/verify_signature)");
                }
                Box::new(HostCrypto::new(EnvoyForeign))
            }
            Err(why) => {
                if !self.crypto_logged {
                    log::info!("registry-token-filter: crypto: pure Rust (host signing unavailable: {why})");
                }
                Box::new(RustCrypto)
            }
        };
        self.crypto_logged = true;
        let fetcher = Fetcher::new(&config);
        let mut state = State::new(EnvoyHost, config, crypto);
        if state.gateway.is_none() {
            // `ledger.gateway` unset: Envoy's node id, when it has one.
            state.gateway = envoy::property_string(&["node", "id"]).filter(|id| !id.is_empty());
        }
        let shipper = match (state.ledger_buffer(), &state.config.ledger) {
            (Some(buffer), Some(l)) => Some(Shipper::new(buffer.clone(), l)),
            _ => None,
        };
        let filter = Filter {
            state,
            metrics: Metrics::new(EnvoyHost),
            log_gate: LogGate::default(),
        };
        Ok((filter, fetcher, shipper))
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(shipper) = self.shipper.as_mut() {
            if let Some(shipped) = shipper.on_response(&EnvoyHost, token_id, body_size) {
                if let Some(filter) = &self.filter {
                    filter.metrics.shipped(shipped);
                }
                if matches!(shipped, ledger::Shipped::Sent(_)) {
                    // Drain a backlog at the ledger's pace, not the tick's.
                    self.flush();
                }
                return;
            }
        }
        if let Some(fetcher) = self.fetcher.as_mut() {
            fetcher.on_response(&EnvoyHost, token_id, body_size);
        }
    }
}

impl Root {
    /// Starts a ledger POST when one is due, counts a failed dispatch, updates the
    /// backlog gauge.
    fn flush(&mut self) {
        let (Some(shipper), Some(filter)) = (self.shipper.as_mut(), self.filter.as_ref()) else {
            return;
        };
        if let Some(shipped) = shipper.tick(&EnvoyHost) {
            filter.metrics.shipped(shipped);
        }
        filter
            .metrics
            .set_backlog(shipper.buffer().backlog(&EnvoyHost));
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(b)) => b,
            _ => Vec::new(),
        };
        match self.build(&bytes) {
            Ok((filter, fetcher, shipper)) => {
                let tick = request::tick_period(&filter.state.config, fetcher.needed());
                self.filter = Some(Rc::new(filter));
                self.fetcher = Some(fetcher);
                self.shipper = shipper;
                if let Some(period) = tick {
                    // The first fetch (and ledger POST) happens on the first tick, not
                    // here: Envoy also runs on_configure in a short-lived VM that
                    // validates the configuration and is destroyed before any HTTP call
                    // answers, which would strand the process-wide lease until it expires.
                    let _ = proxy_wasm::hostcalls::set_tick_period(period);
                }
                true
            }
            Err(e) => {
                log::error!("registry-token-filter: configuration refused: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(fetcher) = self.fetcher.as_mut() {
            fetcher.tick(&EnvoyHost);
        }
        // The revocation list's gauges; a new list is taken here, before a request needs it.
        if let (Some(filter), Ok(now)) = (&self.filter, EnvoyHost.now_unix()) {
            if let Some(status) = filter.state.revocation_status(now) {
                filter.metrics.note_revocation(&status, now);
            }
        }
        self.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            filter: self.filter.clone(),
            state: StreamState::default(),
            guard: GuardStream::default(),
            guarded: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The stream context (one per request): answers `/token`, `/healthz` and the JWKS with
/// a local reply, lets everything else through. When each end of a request is decided,
/// and that nothing the filter owns ever continues, is [`StreamState`]'s.
struct Stream {
    filter: Option<Rc<Filter>>,
    /// Where the request stands (waiting for a `POST /token` body, answered, not ours).
    state: StreamState,
    /// Where a request on the registry's route stands (guard mode).
    guard: GuardStream,
    /// A guarded request's method, path and authority.
    guarded: Option<guard::Guarded>,
}

impl Stream {
    fn reply(&self, decision: &Decision) {
        let headers = request::reply_headers(decision);
        envoy::send_local_response(decision.status, &headers, decision.body.as_bytes());
    }

    /// Does what a [`Step`] says: an answer is decided (with at most the bytes of the
    /// body it names), replied, then the request is held.
    fn run(&self, step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Pause => Action::Pause,
            Step::Answer { head, body } => {
                if let Some(filter) = &self.filter {
                    let body = body.map(|limit| {
                        proxy_wasm::hostcalls::get_buffer(
                            proxy_wasm::types::BufferType::HttpRequestBody,
                            0,
                            limit,
                        )
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                    });
                    self.answer(filter, &head, body.as_deref());
                }
                Action::Pause
            }
        }
    }

    /// Decides a token request, counts, audits and replies.
    fn answer(&self, filter: &Filter, head: &TokenRequestHead, body: Option<&[u8]>) {
        let (state, metrics) = (&filter.state, &filter.metrics);
        let view = RequestView {
            method: &head.method,
            path: &head.path,
            headers: &head.headers,
            peer_certificate: PeerCertificate::Lookup(&|| {
                envoy::property_string(&["connection", "sha256_peer_certificate_digest"])
            }),
            body,
        };
        // Answered in the headers' own callback: the time read when they arrived is the
        // decision's (one clock hostcall fewer); after a body, the clock is read again.
        let at = (body.is_none() && head.started != 0).then(|| Duration::from_nanos(head.started));
        let (decision, recorded) = state.decide_recorded_at(&view, at);
        if recorded == state::Recorded::Dropped {
            metrics.increment(LEDGER_DROPPED);
        }
        metrics.record(&decision.outcome);
        if let Some(audit) = &decision.audit {
            let line = audit.to_line();
            if filter
                .log_gate
                .info_enabled(head.started, envoy::info_logged)
            {
                log::info!("registry-token-filter: audit {line}");
            }
            // Filter state `wasm.registry_token_audit`, so an access log can carry the
            // record: %FILTER_STATE(wasm.registry_token_audit:PLAIN)%.
            let _ =
                proxy_wasm::hostcalls::set_property(vec![AUDIT_PROPERTY], Some(line.as_bytes()));
        }
        self.reply(&decision);
        metrics.record_decision(head.started, now_nanos);
        metrics.note_cache(state.caches.stats());
        metrics.note_memory(vm_memory_bytes());
    }
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        // The only call a stream makes: an immutable tag's HEAD.
        self.on_head_answer(token_id);
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(filter) = self.filter.clone() else {
            return Action::Continue;
        };
        let path = envoy::request_header(":path").unwrap_or_default();
        match handler::route(&filter.state.config, request::path_only(&path)) {
            Route::PassThrough => Action::Continue,
            Route::Healthz => {
                self.reply(&handler::healthz());
                self.state.on_local_reply();
                Action::Pause
            }
            Route::Jwks => {
                self.reply(&handler::jwks(&filter.state.config));
                self.state.on_local_reply();
                Action::Pause
            }
            Route::Registry => self.on_registry_headers(&filter, path, end_of_stream),
            Route::Token => {
                let started = now_nanos();
                // One hostcall for every header; `:method` is among them.
                let head = TokenRequestHead::new(started, path, envoy::request_headers());
                // A POST's OAuth2 form comes in the body: it waits for the body's end (or
                // the trailers), bounded by request::BODY_LIMIT.
                let step = self.state.on_token_headers(head, end_of_stream);
                self.run(step)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.guarded.is_some() {
            let action = self.guard.on_request_body(body_size, end_of_stream);
            return self.run_guard(action);
        }
        let step = self.state.on_body(body_size, end_of_stream);
        self.run(step)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.guarded.is_some() {
            // The body's size matters only to a manifest being waited for: never copy a
            // passing request's body to count it.
            let size = if self.guard.waits_for_manifest() {
                envoy::body(proxy_wasm::types::BufferType::HttpRequestBody, usize::MAX)
                    .map_or(0, |b| b.len())
            } else {
                0
            };
            let action = self.guard.on_request_trailers(size);
            return self.run_guard(action);
        }
        // The trailers end the request (HTTP/2 DATA then trailers, HTTP/1.1 chunked with
        // enable_trailers): a waiting POST is decided with the body gathered so far.
        let step = self.state.on_trailers();
        self.run(step)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.guarded.is_none() {
            return Action::Continue;
        }
        let status = envoy::response_header(":status").and_then(|s| s.parse().ok());
        match self.guard.on_response_headers(status) {
            registry_token_host::guard::GuardAction::Pause => {
                // The catalogue is rewritten: its length changes.
                envoy::remove_response_header("content-length");
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.guarded.is_none() {
            return Action::Continue;
        }
        let action = self.guard.on_response_body(body_size, end_of_stream);
        self.run_guard(action)
    }
}
