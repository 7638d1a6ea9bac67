//! The filter's metrics: their names, the series defined up front (one per grant and per
//! refusal reason, so that a dashboard sees zeros before the first refusal), and which
//! counter a decision, a cache delta or a ledger POST moves; written against the host's
//! [`Stats`] so that it runs natively against the fake host in tests.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use registry_token_core::handler::cache::CacheStats;
use registry_token_core::handler::{Grant, Outcome, Reason};

use crate::fetch::ListStatus;
use crate::host::{MetricKind, Stats};
use crate::ledger::Shipped;

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
/// Gauge: seconds since the remote revocation list in force was fetched (0 until one is).
pub const REVOCATION_AGE: &str = "registry_token_revocation_age_seconds";
/// Gauge: 1 while the remote revocation list was never fetched or is older than
/// `revocation.maxStaleSeconds` (`onStale` applies: `refuse` answers 503), else 0.
pub const REVOCATION_STALE: &str = "registry_token_revocation_stale";
/// Gauge: entries of the remote revocation list in force.
pub const REVOCATION_ENTRIES: &str = "registry_token_revocation_entries";
/// Gauge: 1 while the last fetch of the remote revocation list failed (unreachable, an
/// error status, too large, malformed: the Envoy log says which), else 0.
pub const REVOCATION_FAILING: &str = "registry_token_revocation_refresh_failing";
/// Histogram: microseconds a VM took to take a new remote revocation list (read from
/// shared data and parsed into digests), once per VM and new list.
pub const REVOCATION_LOAD: &str = "registry_token_revocation_load_us";
/// Prefix of the per-reason rejection counters (`…​.reason.<label>`).
pub const REJECTED_METRIC_PREFIX: &str = "registry_token_rejected_total.reason.";

/// Counters, defined lazily (one per reason label) and cached per VM; the decision
/// histogram and the memory gauge, defined at configure time. Generic over the host's
/// [`Stats`] so that which series a decision moves is tested natively.
pub struct Metrics<S> {
    stats: S,
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
    /// [`REVOCATION_AGE`], [`REVOCATION_STALE`], [`REVOCATION_ENTRIES`],
    /// [`REVOCATION_FAILING`], [`REVOCATION_LOAD`].
    revocation: [Option<u32>; 5],
    memory_seen: Cell<u64>,
    cache_seen: Cell<CacheStats>,
}

fn define(stats: &impl Stats, kind: MetricKind, name: &str) -> Option<u32> {
    match stats.define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("registry-token-filter: cannot define metric {name}: {e}");
            None
        }
    }
}

impl<S: Stats> Metrics<S> {
    /// Defines every counter series up front, one per [`Grant`] and per [`Reason`] label, so a
    /// dashboard or alert sees zeros before the first refusal.
    pub fn new(stats: S) -> Metrics<S> {
        let mut metrics = Metrics {
            histogram: define(&stats, MetricKind::Histogram, DECISION_HISTOGRAM),
            memory: define(&stats, MetricKind::Gauge, VM_MEMORY_GAUGE),
            backlog: define(&stats, MetricKind::Gauge, LEDGER_BACKLOG),
            revocation: [
                define(&stats, MetricKind::Gauge, REVOCATION_AGE),
                define(&stats, MetricKind::Gauge, REVOCATION_STALE),
                define(&stats, MetricKind::Gauge, REVOCATION_ENTRIES),
                define(&stats, MetricKind::Gauge, REVOCATION_FAILING),
                define(&stats, MetricKind::Histogram, REVOCATION_LOAD),
            ],
            stats,
            ids: RefCell::default(),
            issued: Vec::new(),
            rejected: Vec::new(),
            cache: [None; 3],
            memory_seen: Cell::new(0),
            cache_seen: Cell::new(CacheStats::default()),
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
        let id = |m: &Metrics<S>, name: &str| m.ids.borrow().get(name).copied();
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

    /// Records one decision time; the histogram's unit is the microsecond. `now_ns` (the
    /// host clock in nanoseconds) is read only when the histogram exists.
    pub fn record_decision(&self, started_ns: u64, now_ns: impl FnOnce() -> u64) {
        if let Some(id) = self.histogram {
            let micros = now_ns().saturating_sub(started_ns) / 1_000;
            self.stats.record_metric(id, micros);
        }
    }

    /// Raises the memory gauge to `bytes`, this VM's linear memory, when it grew (a max
    /// over the VMs).
    pub fn note_memory(&self, bytes: u64) {
        let Some(id) = self.memory else { return };
        if bytes == self.memory_seen.get() {
            return;
        }
        self.memory_seen.set(bytes);
        let current = self.stats.get_metric(id);
        if bytes > current {
            self.stats.record_metric(id, bytes);
        }
    }

    /// Adds the cache counts since the last call to the cache counters.
    pub fn note_cache(&self, now: CacheStats) {
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
    pub fn set_backlog(&self, records: u64) {
        if let Some(id) = self.backlog {
            self.stats.record_metric(id, records);
        }
    }

    /// Sets the revocation list's gauges from this VM's view at `now`, and records the
    /// time it took to take a new list.
    pub fn note_revocation(&self, status: &ListStatus, now: u64) {
        let [age, stale, entries, failing, load] = self.revocation;
        let values = [
            (age, status.fetched_at.map_or(0, |t| now.saturating_sub(t))),
            (stale, u64::from(status.stale)),
            (entries, status.entries as u64),
            (failing, u64::from(status.failing)),
        ];
        for (id, value) in values {
            if let Some(id) = id {
                self.stats.record_metric(id, value);
            }
        }
        if let (Some(id), Some(us)) = (load, status.loaded_us) {
            self.stats.record_metric(id, us);
        }
    }

    /// Counts what one ledger POST did.
    pub fn shipped(&self, shipped: Shipped) {
        match shipped {
            Shipped::Sent(n) => {
                self.increment(LEDGER_BATCHES_SENT);
                self.add(LEDGER_RECORDS_SENT, n);
            }
            Shipped::Failed => self.increment(LEDGER_BATCHES_FAILED),
            Shipped::Rejected(n) => {
                self.increment(LEDGER_BATCHES_FAILED);
                self.add(LEDGER_DROPPED, n);
            }
        }
    }

    /// Adds one to the counter `name` (defined on first use when it was not).
    pub fn increment(&self, name: &str) {
        self.add(name, 1);
    }

    /// [`Metrics::add`] with the id when it was looked up at configure time (by name, made
    /// only when it was not).
    fn add_known(&self, id: Option<u32>, delta: u64, name: impl FnOnce() -> String) {
        match id {
            Some(id) => self
                .stats
                .increment_metric(id, i64::try_from(delta).unwrap_or(0)),
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
            None => match self.stats.define_metric(MetricKind::Counter, name) {
                Ok(id) => {
                    self.ids.borrow_mut().insert(name.to_string(), id);
                    id
                }
                Err(e) => {
                    log::warn!("registry-token-filter: cannot define metric {name}: {e}");
                    return;
                }
            },
        };
        self.stats
            .increment_metric(id, i64::try_from(delta).unwrap_or(0));
    }

    /// Counts a decision on its grant's issued counter or its reason's rejected counter.
    pub fn record(&self, outcome: &Outcome) {
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
