//! proxy-wasm glue for the registry token filter: hostcalls only. Every decision is made by
//! `registry-token-core`; this crate gathers the request view, the clock, the crypto
//! implementation and the shared key set, and turns the decision into a local reply,
//! counters and a log line.
//!
//! Nothing here may panic: a panic traps the VM and every later request on that worker
//! fails. Hostcalls are used through their `Result`-returning forms.

mod host;
mod replay;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use registry_token_core::config::{Config, KeySource};
use registry_token_core::handler::cache::{CacheStats, Caches};
use registry_token_core::handler::{self, Decision, Outcome, Reason, RequestView, Route};
use registry_token_core::policy::revocation::{self, RemoteList};
use registry_token_core::remote::{self, FetchRecord, Lease, SharedKeys};
use registry_token_core::token::crypto::host::{self as hostproto, HostCrypto};
use registry_token_core::token::crypto::{Crypto, RustCrypto};
use registry_token_core::token::keys::KeySet;

/// Filter-state property holding the decision's audit record (as `wasm.<name>`).
pub const AUDIT_PROPERTY: &str = "registry_token_audit";
/// Name of the counter of minted tokens.
pub const ISSUED_METRIC: &str = "registry_token_issued_total";
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
/// DPoP proofs remembered per time slot across the process (16 bytes each).
/// Bounds shared memory to 3 slots × capacity × 16 bytes (48 MiB) and the sustained DPoP
/// rate of one Envoy process to capacity / `dpop.iatWindowSeconds` (≈ 17,000 proofs/s at
/// the default 60 s); beyond it proofs are refused with 503 (fail closed).
const REPLAY_CAPACITY: usize = 1024 * 1024;
/// Prefix of the per-reason rejection counters (`…​.reason.<label>`).
pub const REJECTED_METRIC_PREFIX: &str = "registry_token_rejected_total.reason.";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn now_unix() -> u64 {
    host::current_time()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Host wall clock in nanoseconds (0 when the host cannot answer).
fn now_nanos() -> u64 {
    host::current_time()
        .duration_since(UNIX_EPOCH)
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
    histogram: Option<u32>,
    memory: Option<u32>,
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
    /// Defines every counter series up front, one per [`Reason`] label included, so a
    /// dashboard or alert sees zeros before the first refusal.
    fn new() -> Metrics {
        let metrics = Metrics {
            histogram: define(MetricType::Histogram, DECISION_HISTOGRAM),
            memory: define(MetricType::Gauge, VM_MEMORY_GAUGE),
            ..Metrics::default()
        };
        let names = [
            ISSUED_METRIC.to_string(),
            OPTOK_CACHE_HITS.to_string(),
            OPTOK_CACHE_MISSES.to_string(),
            MINT_REUSED.to_string(),
        ]
        .into_iter()
        .chain(
            Reason::ALL
                .iter()
                .map(|r| format!("{REJECTED_METRIC_PREFIX}{}", r.label())),
        );
        for name in names {
            metrics.add(&name, 0);
        }
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
        for (name, delta) in [
            (
                OPTOK_CACHE_HITS,
                now.optok_hits.saturating_sub(seen.optok_hits),
            ),
            (
                OPTOK_CACHE_MISSES,
                now.optok_misses.saturating_sub(seen.optok_misses),
            ),
            (
                MINT_REUSED,
                now.mint_reused.saturating_sub(seen.mint_reused),
            ),
        ] {
            if delta > 0 {
                self.add(name, delta);
            }
        }
    }

    fn increment(&self, name: &str) {
        self.add(name, 1);
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
            Outcome::Issued => self.increment(ISSUED_METRIC),
            Outcome::Rejected(reason) => {
                self.increment(&format!("{REJECTED_METRIC_PREFIX}{}", reason.label()))
            }
            Outcome::Other => {}
        }
    }
}

/// The host's foreign functions.
struct EnvoyForeign;

impl hostproto::ForeignCall for EnvoyForeign {
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        match proxy_wasm::hostcalls::call_foreign_function(function, Some(args)) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Ok(Vec::new()),
            Err(status) => Err(format!("foreign function {function}: {status:?}")),
        }
    }
}

/// The remote revocation list and when it was fetched.
type RevokedList = (HashSet<String>, u64);

/// This VM's parsed copy of a document one VM fetched into shared data for the whole
/// process (the JWKS, the revocation list); re-parsed only when the shared CAS changes.
struct SharedCopy<T> {
    shared: SharedKeys,
    cas: Option<u32>,
    value: Option<Rc<T>>,
}

impl<T> SharedCopy<T> {
    fn new(shared: SharedKeys) -> RefCell<SharedCopy<T>> {
        RefCell::new(SharedCopy {
            shared,
            cas: None,
            value: None,
        })
    }

    /// The current value: the cached one while the CAS is unchanged, else `parse` of the
    /// shared record; the last good value when the record is missing or unusable.
    fn current(&mut self, parse: impl FnOnce(&FetchRecord) -> Option<T>) -> Option<Rc<T>> {
        let Ok((bytes, cas)) = proxy_wasm::hostcalls::get_shared_data(&self.shared.document) else {
            return self.value.clone();
        };
        if cas.is_some() && cas == self.cas && self.value.is_some() {
            return self.value.clone();
        }
        if let Some(v) = bytes
            .as_deref()
            .and_then(FetchRecord::from_bytes)
            .and_then(|r| parse(&r))
        {
            self.value = Some(Rc::new(v));
            self.cas = cas;
        }
        self.value.clone()
    }
}

/// Everything built at configure time.
struct State {
    config: Config,
    crypto: Box<dyn Crypto>,
    metrics: Metrics,
    remote: Option<RefCell<SharedCopy<KeySet>>>,
    inline_keys: Option<Rc<KeySet>>,
    replay: replay::SharedReplayCache,
    caches: Caches,
    revocation: Option<RefCell<SharedCopy<RevokedList>>>,
}

impl State {
    /// The current Authority keys: inline, or the last good remote set from shared data.
    fn keys(&self) -> Option<Rc<KeySet>> {
        if let Some(k) = &self.inline_keys {
            return Some(k.clone());
        }
        self.remote.as_ref()?.borrow_mut().current(|record| {
            if record.document.is_null() {
                return None;
            }
            record
                .key_set()
                .map_err(|e| log::warn!("registry-token-filter: shared JWKS unusable: {e}"))
                .ok()
        })
    }

    /// The last good remote revocation list (set, fetch time), if one is configured and
    /// was ever fetched.
    fn revocation_list(&self) -> Option<Rc<RevokedList>> {
        self.revocation.as_ref()?.borrow_mut().current(|record| {
            let items = record.document.as_array()?;
            let set = items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            Some((set, record.fetched_at))
        })
    }

    fn note_unknown_kid(&self) {
        if let Some(remote) = &self.remote {
            let key = remote.borrow().shared.wanted.clone();
            let _ = proxy_wasm::hostcalls::set_shared_data(
                &key,
                Some(now_unix().to_string().as_bytes()),
                None,
            );
        }
    }
}

/// What an in-flight fetch is waiting for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    Discovery,
    Jwks,
    Revocation,
}

impl Pending {
    fn what(self) -> &'static str {
        match self {
            Pending::Discovery => "metadata",
            Pending::Jwks => "JWKS",
            Pending::Revocation => "revocation list",
        }
    }
}

#[derive(Default)]
struct Root {
    state: Option<Rc<State>>,
    pending: HashMap<u32, Pending>,
    crypto_logged: bool,
}

impl Root {
    fn build(&mut self, bytes: &[u8]) -> Result<State, String> {
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
        let (inline_keys, remote) = match &config.authority.keys {
            KeySource::Inline(set) => (Some(Rc::new(set.clone())), None),
            KeySource::Remote { metadata_url, .. } => (
                None,
                Some(SharedCopy::new(SharedKeys::for_url(metadata_url))),
            ),
        };
        let replay = replay::SharedReplayCache::new(
            remote::SHARED_PREFIX,
            config.dpop.iat_window_seconds,
            REPLAY_CAPACITY,
        );
        let revocation = config
            .revocation
            .as_ref()
            .map(|r| SharedCopy::new(SharedKeys::for_url(&r.url)));
        Ok(State {
            config,
            crypto,
            metrics: Metrics::new(),
            remote,
            inline_keys,
            replay,
            caches: Caches::default(),
            revocation,
        })
    }

    /// Takes the fetch lease with compare-and-swap; true when this VM should fetch now.
    /// (Envoy treats CAS 0 as "no check", so the key is created first when missing and
    /// only then contended for with its real CAS.)
    fn take_lease(shared: &SharedKeys, now: u64) -> bool {
        let Ok((mut bytes, mut cas)) = proxy_wasm::hostcalls::get_shared_data(&shared.lease) else {
            return false;
        };
        if cas.is_none() {
            let _ = proxy_wasm::hostcalls::set_shared_data(
                &shared.lease,
                Some(&Lease { until: 0 }.to_bytes()),
                None,
            );
            match proxy_wasm::hostcalls::get_shared_data(&shared.lease) {
                Ok((b, Some(c))) => {
                    bytes = b;
                    cas = Some(c);
                }
                _ => return false,
            }
        }
        if let Some(b) = bytes {
            if Lease::from_bytes(&b).held(now) {
                return false;
            }
        }
        let lease = Lease {
            until: now + remote::LEASE_SECONDS,
        };
        proxy_wasm::hostcalls::set_shared_data(&shared.lease, Some(&lease.to_bytes()), cas).is_ok()
    }

    fn release_lease(shared: &SharedKeys) {
        let _ = proxy_wasm::hostcalls::set_shared_data(
            &shared.lease,
            Some(&Lease { until: 0 }.to_bytes()),
            None,
        );
    }

    fn read_record(shared: &SharedKeys) -> Option<FetchRecord> {
        let (bytes, _) = proxy_wasm::hostcalls::get_shared_data(&shared.document).ok()?;
        bytes.as_deref().and_then(FetchRecord::from_bytes)
    }

    /// Records a failed attempt, keeping the last good document.
    fn record_failure(&self, shared: &SharedKeys, what: Pending, why: &str) {
        let now = now_unix();
        log::warn!(
            "registry-token-filter: {} refresh failed (the last good copy stays in use): {why}",
            what.what()
        );
        let mut record = Self::read_record(shared).unwrap_or(FetchRecord {
            fetched_at: 0,
            document: serde_json::Value::Null,
            attempted_at: 0,
            last_error: None,
        });
        record.attempted_at = now;
        record.last_error = Some(why.chars().take(200).collect());
        let _ = proxy_wasm::hostcalls::set_shared_data(
            &shared.document,
            Some(&record.to_bytes()),
            None,
        );
        Self::release_lease(shared);
    }

    /// Stores a good document for every VM of the process and releases the lease.
    fn record_success(shared: &SharedKeys, document: serde_json::Value) {
        let now = now_unix();
        let record = FetchRecord {
            fetched_at: now,
            document,
            attempted_at: now,
            last_error: None,
        };
        let _ = proxy_wasm::hostcalls::set_shared_data(
            &shared.document,
            Some(&record.to_bytes()),
            None,
        );
        Self::release_lease(shared);
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        url: &registry_token_core::wire::url::HttpUrl,
        what: Pending,
    ) -> Result<(), String> {
        let (authority, path) = remote::call_target(url);
        let token = proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            vec![
                (":method", "GET"),
                (":path", &path),
                (":authority", &authority),
                (":scheme", &url.scheme),
                ("accept", "application/json"),
                ("user-agent", "registry-token-filter"),
            ],
            None,
            vec![],
            Duration::from_secs(5),
        )
        .map_err(|s| format!("dispatch to cluster {cluster:?} failed: {s:?}"))?;
        self.pending.insert(token, what);
        Ok(())
    }

    fn in_flight(&self, kinds: &[Pending]) -> bool {
        self.pending.values().any(|p| kinds.contains(p))
    }

    /// On every tick: starts the JWKS and revocation-list fetches that are due, when this
    /// VM takes their process-wide lease.
    fn maybe_fetch(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let now = now_unix();
        if let (
            KeySource::Remote {
                metadata_url,
                cluster,
                refresh_seconds,
                ..
            },
            Some(remote_keys),
        ) = (&state.config.authority.keys, &state.remote)
        {
            let shared = remote_keys.borrow().shared.clone();
            let record = Self::read_record(&shared);
            let wanted = proxy_wasm::hostcalls::get_shared_data(&shared.wanted)
                .ok()
                .and_then(|(b, _)| b)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok());
            if !self.in_flight(&[Pending::Discovery, Pending::Jwks])
                && remote::fetch_due(now, record.as_ref(), *refresh_seconds, wanted)
                && Self::take_lease(&shared, now)
            {
                if let Err(why) = self.dispatch(cluster, metadata_url, Pending::Discovery) {
                    self.record_failure(&shared, Pending::Discovery, &why);
                }
            }
        }
        if let (Some(cfg), Some(remote_list)) = (&state.config.revocation, &state.revocation) {
            let shared = remote_list.borrow().shared.clone();
            let record = Self::read_record(&shared);
            if !self.in_flight(&[Pending::Revocation])
                && remote::fetch_due(now, record.as_ref(), cfg.refresh_seconds, None)
                && Self::take_lease(&shared, now)
            {
                if let Err(why) = self.dispatch(&cfg.cluster, &cfg.url, Pending::Revocation) {
                    self.record_failure(&shared, Pending::Revocation, &why);
                }
            }
        }
    }

    fn on_fetch_response(&mut self, token_id: u32, body_size: usize) {
        let Some(what) = self.pending.remove(&token_id) else {
            return;
        };
        let Some(state) = self.state.clone() else {
            return;
        };
        let shared = match what {
            Pending::Discovery | Pending::Jwks => {
                state.remote.as_ref().map(|r| r.borrow().shared.clone())
            }
            Pending::Revocation => state.revocation.as_ref().map(|r| r.borrow().shared.clone()),
        };
        let Some(shared) = shared else {
            return;
        };
        let status = proxy_wasm::hostcalls::get_map_value(
            proxy_wasm::types::MapType::HttpCallResponseHeaders,
            ":status",
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        if status != "200" {
            let why = format!("{} fetch answered HTTP {status}", what.what());
            self.record_failure(&shared, what, &why);
            return;
        }
        let limit = match what {
            Pending::Revocation => revocation::MAX_LIST_BYTES,
            _ => remote::MAX_DOCUMENT_BYTES,
        };
        let body = proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::HttpCallResponseBody,
            0,
            body_size.min(limit + 1),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        match what {
            Pending::Discovery => {
                let KeySource::Remote { cluster, .. } = &state.config.authority.keys else {
                    return;
                };
                match remote::parse_discovery(&body, &state.config.authority.issuer) {
                    Ok(jwks_uri) => {
                        if let Err(why) = self.dispatch(cluster, &jwks_uri, Pending::Jwks) {
                            self.record_failure(&shared, what, &why);
                        }
                    }
                    Err(why) => self.record_failure(&shared, what, &why),
                }
            }
            Pending::Jwks => match remote::parse_jwks(&body) {
                Ok((doc, set)) => {
                    Self::record_success(&shared, doc);
                    log::info!(
                        "registry-token-filter: JWKS refreshed: {} usable key(s)",
                        set.len()
                    );
                }
                Err(why) => self.record_failure(&shared, what, &why),
            },
            Pending::Revocation => match revocation::parse_list(&body) {
                Ok(list) => {
                    let count = list.len();
                    let mut sorted: Vec<String> = list.into_iter().collect();
                    sorted.sort();
                    Self::record_success(
                        &shared,
                        serde_json::Value::Array(
                            sorted.into_iter().map(serde_json::Value::String).collect(),
                        ),
                    );
                    log::info!(
                        "registry-token-filter: revocation list refreshed: {count} licence(s)"
                    );
                }
                Err(why) => self.record_failure(&shared, what, &why),
            },
        }
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
        self.on_fetch_response(token_id, body_size);
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
            Ok(state) => {
                let remote = matches!(state.config.authority.keys, KeySource::Remote { .. })
                    || state.config.revocation.is_some();
                self.state = Some(Rc::new(state));
                if remote {
                    // The first fetch happens on the first tick, not here: Envoy also runs
                    // on_configure in a short-lived VM that validates the configuration and
                    // is destroyed before any HTTP call answers, which would strand the
                    // process-wide fetch lease until it expires.
                    let _ = proxy_wasm::hostcalls::set_tick_period(Duration::from_secs(1));
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
        self.maybe_fetch();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    state: Option<Rc<State>>,
}

impl Stream {
    fn reply(&self, decision: &Decision) {
        let headers: Vec<(&str, &str)> = decision
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        host::send_local_response(decision.status, &headers, decision.body.as_bytes());
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let path = host::request_header(":path").unwrap_or_default();
        let path_only = path.split(['?', '#']).next().unwrap_or("");
        match handler::route(&state.config, path_only) {
            Route::PassThrough => Action::Continue,
            Route::Healthz => {
                self.reply(&handler::healthz());
                Action::Pause
            }
            Route::Jwks => {
                self.reply(&handler::jwks(&state.config));
                Action::Pause
            }
            Route::Token => {
                let started = now_nanos();
                let headers = host::request_headers();
                let method = host::request_header(":method").unwrap_or_default();
                let digest =
                    host::property_string(&["connection", "sha256_peer_certificate_digest"]);
                let view = RequestView {
                    method: &method,
                    path: &path,
                    headers: &headers,
                    peer_certificate_sha256_hex: digest.as_deref().filter(|d| !d.is_empty()),
                };
                let keys = state.keys();
                let revoked = state.revocation_list();
                let revocation = match (&state.config.revocation, &revoked) {
                    (None, _) => RemoteList::NotConfigured,
                    (Some(_), None) => RemoteList::NeverFetched,
                    (Some(_), Some(list)) => RemoteList::Known {
                        licenses: &list.0,
                        fetched_at: list.1,
                    },
                };
                let ctx = handler::Context {
                    config: &state.config,
                    keys: keys.as_deref().into(),
                    crypto: state.crypto.as_ref(),
                    now: now_unix(),
                    replay: &state.replay,
                    cache: Some(&state.caches),
                    revocation,
                };
                let decision = handler::handle_token(&view, &ctx);
                if decision.unknown_kid {
                    state.note_unknown_kid();
                }
                state.metrics.record(&decision.outcome);
                if let Some(audit) = &decision.audit {
                    let line = audit.to_line();
                    log::info!("registry-token-filter: audit {line}");
                    // Filter state `wasm.registry_token_audit`, so an access log can carry
                    // the record: %FILTER_STATE(wasm.registry_token_audit:PLAIN)%.
                    let _ = proxy_wasm::hostcalls::set_property(
                        vec![AUDIT_PROPERTY],
                        Some(line.as_bytes()),
                    );
                }
                self.reply(&decision);
                state.metrics.record_decision(started);
                state.metrics.note_cache(state.caches.stats());
                state.metrics.note_memory();
                Action::Pause
            }
        }
    }
}
