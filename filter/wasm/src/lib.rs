//! proxy-wasm glue for the registry token filter: hostcalls only. Every decision is made by
//! `registry-token-core`; this crate gathers the request view, the clock, the crypto
//! implementation and the shared key set, and turns the decision into a local reply,
//! counters and a log line.
//!
//! Nothing here may panic: a panic traps the VM and every later request on that worker
//! fails. Hostcalls are used through their `Result`-returning forms.

pub mod envoy;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use registry_token_core::config::Config;
use registry_token_core::handler::cache::CacheStats;
use registry_token_core::handler::{
    self, Decision, Grant, Outcome, PeerCertificate, Reason, RequestView, Route,
};
use registry_token_core::token::crypto::host::{self as hostproto, HostCrypto};
use registry_token_core::token::crypto::{Crypto, RustCrypto};
use registry_token_core::wire::form::MAX_FORM_BYTES;
use registry_token_host::fetch::Fetcher;
use registry_token_host::ledger::{self, Shipper};
use registry_token_host::state::{self, State};

use envoy::{EnvoyForeign, EnvoyHost};

/// Filter-state property holding the decision's audit record (as `wasm.<name>`).
pub const AUDIT_PROPERTY: &str = "registry_token_audit";
/// Name of the counter of minted tokens (without its grant: see [`ISSUED_METRIC_PREFIX`]).
pub const ISSUED_METRIC: &str = "registry_token_issued_total";
/// Prefix of the per-grant issued counters (`…​.grant.<label>`, the label of
/// [`Grant::label`]); Envoy's `stats_tags` turns the suffix into the `grant` label.
pub const ISSUED_METRIC_PREFIX: &str = "registry_token_issued_total.grant.";
/// Histogram of the time the filter spends on one `/token` request, microseconds (from
/// the request headers to the local reply, measured with the host clock).
pub const DECISION_HISTOGRAM: &str = "registry_token_decision_us";
/// Gauge: the largest linear memory of the VMs serving requests, bytes.
pub const VM_MEMORY_GAUGE: &str = "registry_token_vm_memory_bytes";
/// Counters of the per-VM caches.
pub const OPTOK_CACHE_HITS: &str = "registry_token_optok_cache_hits_total";
/// OpToks verified because the cache could not answer.
pub const OPTOK_CACHE_MISSES: &str = "registry_token_optok_cache_misses_total";
/// Replies that reused a minted token (`signing.reuseSeconds`).
pub const MINT_REUSED: &str = "registry_token_mint_reused_total";
/// Records the ledger buffer could not take (`ledger.onBacklogFull: drop`), or that the
/// ledger refused as invalid.
pub const LEDGER_DROPPED: &str = "registry_token_ledger_dropped_total";
/// Gauge: records waiting in this Envoy process's ledger buffer.
pub const LEDGER_BACKLOG: &str = "registry_token_ledger_backlog";
/// Batches the ledger stored (2xx).
pub const LEDGER_BATCHES_SENT: &str = "registry_token_ledger_batches_sent_total";
/// Batch POSTs that failed (kept and retried), or were refused as invalid.
pub const LEDGER_BATCHES_FAILED: &str = "registry_token_ledger_batches_failed_total";
/// Records the ledger stored.
pub const LEDGER_RECORDS_SENT: &str = "registry_token_ledger_records_sent_total";
/// Prefix of the per-reason rejection counters (`…​.reason.<label>`).
pub const REJECTED_METRIC_PREFIX: &str = "registry_token_rejected_total.reason.";

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

/// Counters, defined lazily (one per reason label) and cached per VM; the decision
/// histogram and the memory gauge, defined at configure time.
#[derive(Default)]
struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
    /// The ids of the counters every request moves, looked up once at configure time
    /// (no name formatting nor map lookup per request): issued per [`Grant::ALL`].
    issued: Vec<Option<u32>>,
    /// Rejected per [`Reason::ALL`].
    rejected: Vec<Option<u32>>,
    /// OpTok cache hits, misses, mint reused.
    cache: [Option<u32>; 3],
    histogram: Option<u32>,
    memory: Option<u32>,
    backlog: Option<u32>,
    memory_seen: Cell<u64>,
    cache_seen: Cell<CacheStats>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match proxy_wasm::hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("registry-token-filter: cannot define metric {name}: {e:?}");
            None
        }
    }
}

impl Metrics {
    /// Defines every counter series up front, one per [`Grant`] and per [`Reason`] label, so a
    /// dashboard or alert sees zeros before the first refusal.
    fn new() -> Metrics {
        let mut metrics = Metrics {
            histogram: define(MetricType::Histogram, DECISION_HISTOGRAM),
            memory: define(MetricType::Gauge, VM_MEMORY_GAUGE),
            backlog: define(MetricType::Gauge, LEDGER_BACKLOG),
            ..Metrics::default()
        };
        let names = [
            OPTOK_CACHE_HITS.to_string(),
            OPTOK_CACHE_MISSES.to_string(),
            MINT_REUSED.to_string(),
            LEDGER_DROPPED.to_string(),
            LEDGER_BATCHES_SENT.to_string(),
            LEDGER_BATCHES_FAILED.to_string(),
            LEDGER_RECORDS_SENT.to_string(),
        ]
        .into_iter()
        .chain(
            Grant::ALL
                .iter()
                .map(|g| format!("{ISSUED_METRIC_PREFIX}{}", g.label())),
        )
        .chain(
            Reason::ALL
                .iter()
                .map(|r| format!("{REJECTED_METRIC_PREFIX}{}", r.label())),
        );
        for name in names {
            metrics.add(&name, 0);
        }
        let id = |m: &Metrics, name: &str| m.ids.borrow().get(name).copied();
        metrics.issued = Grant::ALL
            .iter()
            .map(|g| id(&metrics, &format!("{ISSUED_METRIC_PREFIX}{}", g.label())))
            .collect();
        metrics.rejected = Reason::ALL
            .iter()
            .map(|r| id(&metrics, &format!("{REJECTED_METRIC_PREFIX}{}", r.label())))
            .collect();
        metrics.cache = [
            id(&metrics, OPTOK_CACHE_HITS),
            id(&metrics, OPTOK_CACHE_MISSES),
            id(&metrics, MINT_REUSED),
        ];
        metrics
    }

    /// Records one decision time; the histogram's unit is the microsecond.
    fn record_decision(&self, started_ns: u64) {
        if let Some(id) = self.histogram {
            let micros = now_nanos().saturating_sub(started_ns) / 1_000;
            let _ = proxy_wasm::hostcalls::record_metric(id, micros);
        }
    }

    /// Raises the memory gauge to this VM's memory when it grew (a max over the VMs).
    fn note_memory(&self) {
        let Some(id) = self.memory else { return };
        let bytes = vm_memory_bytes();
        if bytes == self.memory_seen.get() {
            return;
        }
        self.memory_seen.set(bytes);
        let current = proxy_wasm::hostcalls::get_metric(id).unwrap_or(0);
        if bytes > current {
            let _ = proxy_wasm::hostcalls::record_metric(id, bytes);
        }
    }

    /// Adds the cache counts since the last call to the cache counters.
    fn note_cache(&self, now: CacheStats) {
        let seen = self.cache_seen.replace(now);
        let deltas = [
            now.optok_hits.saturating_sub(seen.optok_hits),
            now.optok_misses.saturating_sub(seen.optok_misses),
            now.mint_reused.saturating_sub(seen.mint_reused),
        ];
        for ((name, id), delta) in [OPTOK_CACHE_HITS, OPTOK_CACHE_MISSES, MINT_REUSED]
            .into_iter()
            .zip(self.cache)
            .zip(deltas)
        {
            if delta > 0 {
                self.add_known(id, delta, || name.to_string());
            }
        }
    }

    /// Sets the ledger backlog gauge.
    fn set_backlog(&self, records: u64) {
        if let Some(id) = self.backlog {
            let _ = proxy_wasm::hostcalls::record_metric(id, records);
        }
    }

    /// Counts what one ledger POST did.
    fn shipped(&self, shipped: ledger::Shipped) {
        match shipped {
            ledger::Shipped::Sent(n) => {
                self.increment(LEDGER_BATCHES_SENT);
                self.add(LEDGER_RECORDS_SENT, n);
            }
            ledger::Shipped::Failed => self.increment(LEDGER_BATCHES_FAILED),
            ledger::Shipped::Rejected(n) => {
                self.increment(LEDGER_BATCHES_FAILED);
                self.add(LEDGER_DROPPED, n);
            }
        }
    }

    fn increment(&self, name: &str) {
        self.add(name, 1);
    }

    /// [`Metrics::add`] with the id when it was looked up at configure time (by name, made
    /// only when it was not).
    fn add_known(&self, id: Option<u32>, delta: u64, name: impl FnOnce() -> String) {
        match id {
            Some(id) => {
                let _ =
                    proxy_wasm::hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(0));
            }
            None => self.add(&name(), delta),
        }
    }

    fn add(&self, name: &str, delta: u64) {
        let id = {
            let ids = self.ids.borrow();
            ids.get(name).copied()
        };
        let id = match id {
            Some(id) => id,
            None => match proxy_wasm::hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    self.ids.borrow_mut().insert(name.to_string(), id);
                    id
                }
                Err(e) => {
                    log::warn!("registry-token-filter: cannot define metric {name}: {e:?}");
                    return;
                }
            },
        };
        let _ = proxy_wasm::hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(0));
    }

    fn record(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Issued(grant) => {
                let id = Grant::ALL.iter().position(|g| g == grant);
                self.add_known(
                    id.and_then(|i| self.issued.get(i).copied().flatten()),
                    1,
                    || format!("{ISSUED_METRIC_PREFIX}{}", grant.label()),
                );
            }
            Outcome::Rejected(reason) => {
                let id = Reason::ALL.iter().position(|r| r == reason);
                self.add_known(
                    id.and_then(|i| self.rejected.get(i).copied().flatten()),
                    1,
                    || format!("{REJECTED_METRIC_PREFIX}{}", reason.label()),
                );
            }
            Outcome::Other => {}
        }
    }
}

/// Everything a configuration builds: the decision state and this VM's counters.
struct Filter {
    state: State<EnvoyHost>,
    metrics: Metrics,
    log_gate: LogGate,
}

/// Whether Envoy logs this module's info lines, asked of the host at most once a second
/// (Envoy's level can change at runtime through its admin `/logging`): at the default
/// `warn` the audit line is not handed to a host that would drop it (a hostcall per
/// request saved).
#[derive(Default)]
struct LogGate {
    /// Host time (ns) of the last question; 0: never asked.
    asked_ns: Cell<u64>,
    info: Cell<bool>,
}

impl LogGate {
    const RECHECK_NS: u64 = 1_000_000_000;

    fn info_enabled(&self, now_ns: u64) -> bool {
        let asked = self.asked_ns.get();
        if asked == 0 || now_ns.saturating_sub(asked) >= Self::RECHECK_NS || now_ns < asked {
            // A host that cannot say gets the line (as before the gate existed).
            let info = proxy_wasm::hostcalls::get_log_level()
                .map_or(true, |level| level as u32 <= LogLevel::Info as u32);
            self.info.set(info);
            self.asked_ns.set(now_ns.max(1));
        }
        self.info.get()
    }
}

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
            metrics: Metrics::new(),
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
                let remote = fetcher.needed();
                let tick = match &filter.state.config.ledger {
                    // Often enough that a record waits about flushMillis, not a second more.
                    Some(l) => Some(Duration::from_millis((l.flush_millis / 2).clamp(25, 1000))),
                    None => remote.then_some(Duration::from_secs(1)),
                };
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
        self.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            waiting: None,
            filter: self.filter.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    filter: Option<Rc<Filter>>,
    /// A `POST /token` waiting for its body.
    waiting: Option<TokenRequestHead>,
}

/// What a token request's headers said, kept while its body arrives.
struct TokenRequestHead {
    started: u64,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Stream {
    fn reply(&self, decision: &Decision) {
        let headers: Vec<(&str, &str)> = decision
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        envoy::send_local_response(decision.status, &headers, decision.body.as_bytes());
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
        let (decision, recorded) = state.decide_recorded(&view);
        if recorded == state::Recorded::Dropped {
            metrics.increment(LEDGER_DROPPED);
        }
        metrics.record(&decision.outcome);
        if let Some(audit) = &decision.audit {
            let line = audit.to_line();
            if filter.log_gate.info_enabled(head.started) {
                log::info!("registry-token-filter: audit {line}");
            }
            // Filter state `wasm.registry_token_audit`, so an access log can carry the
            // record: %FILTER_STATE(wasm.registry_token_audit:PLAIN)%.
            let _ =
                proxy_wasm::hostcalls::set_property(vec![AUDIT_PROPERTY], Some(line.as_bytes()));
        }
        self.reply(&decision);
        metrics.record_decision(head.started);
        metrics.note_cache(state.caches.stats());
        metrics.note_memory();
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(filter) = self.filter.clone() else {
            return Action::Continue;
        };
        let path = envoy::request_header(":path").unwrap_or_default();
        let path_only = path.split(['?', '#']).next().unwrap_or("");
        match handler::route(&filter.state.config, path_only) {
            Route::PassThrough => Action::Continue,
            Route::Healthz => {
                self.reply(&handler::healthz());
                Action::Pause
            }
            Route::Jwks => {
                self.reply(&handler::jwks(&filter.state.config));
                Action::Pause
            }
            Route::Token => {
                let started = now_nanos();
                // One hostcall for every header; `:method` is among them.
                let headers = envoy::request_headers();
                let method = headers
                    .iter()
                    .find(|(k, _)| k == ":method")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let head = TokenRequestHead {
                    started,
                    method,
                    path,
                    headers,
                };
                if head.method.eq_ignore_ascii_case("POST") && !end_of_stream {
                    // The OAuth2 form comes in the body: wait for it (bounded below).
                    self.waiting = Some(head);
                } else {
                    self.answer(&filter, &head, None);
                }
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(filter) = self.filter.clone() else {
            return Action::Continue;
        };
        if self.waiting.is_none() {
            return Action::Continue;
        }
        // One byte over the bound is enough for the core to answer 413: no need to wait
        // for (or hold) more.
        let limit = MAX_FORM_BYTES + 1;
        if !end_of_stream && body_size < limit {
            return Action::Pause;
        }
        let body = proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::HttpRequestBody,
            0,
            body_size.min(limit),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        if let Some(head) = self.waiting.take() {
            self.answer(&filter, &head, Some(&body));
        }
        Action::Pause
    }
}
