//! One measurement: a load against a listener, warmed up, then measured, with Envoy's
//! counters read before and after (once its histograms have merged every answer), and
//! reduced to [`Figures`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_token_loadgen::admin::{self, bucket_quantile, Snapshot};
use registry_token_loadgen::http::{self, Target};
use registry_token_loadgen::load::{self, Mode, OpTokPool, RunResult, RunSpec, Workload};

use crate::results::{Counters, Figures, Latency, LedgerRows};
use crate::scenarios::{request_path, BASE_RULES, REALM};
use crate::setup::Material;

/// Seconds of warm-up before every measurement.
pub const WARMUP_SECONDS: u64 = 2;

/// What every measurement of a run shares.
pub struct Ctx {
    /// The Envoy binary.
    pub envoy: PathBuf,
    /// The filter module.
    pub wasm: PathBuf,
    /// Where configurations, logs, keys and databases go.
    pub work: PathBuf,
    /// The CPU Envoy is pinned to.
    pub envoy_cpu: Option<usize>,
    /// Keep-alive connections per load.
    pub connections: usize,
}

/// One measured load, as the load generator and Envoy's admin saw it.
#[derive(Clone, Default)]
pub struct Measured {
    /// What the load generator saw.
    pub result: RunResult,
    /// Envoy's counters before the measured part.
    pub before: Snapshot,
    /// And after it.
    pub after: Snapshot,
    /// Proofs signed during the run.
    pub live_proofs: u64,
    /// With the ledger on: its rows against the decisions.
    pub ledger_rows: Option<LedgerRows>,
}

/// The client-side latency quantiles of a run.
pub fn latency(r: &RunResult) -> Latency {
    Latency {
        p50: r.quantile(0.5),
        p99: r.quantile(0.99),
        p999: r.quantile(0.999),
    }
}

/// A load without the filter's counters (the ceilings).
pub fn plain_figures(r: &RunResult) -> Figures {
    Figures {
        elapsed: r.elapsed,
        statuses: r.statuses.clone(),
        transport_errors: r.transport_errors,
        latency_us: latency(r),
        refusals_as_expected: true,
        ..Figures::default()
    }
}

impl Measured {
    fn d(&self, name: &str) -> u64 {
        self.after
            .value(name)
            .saturating_sub(self.before.value(name))
    }

    /// For a refusing mode: every answer a 401 with one of the expected reasons.
    fn refusals_as_expected(&self, mode: Mode) -> bool {
        let Some(expected) = mode.expected_refusals() else {
            return true;
        };
        let r = &self.result;
        let before = self.before.rejected();
        r.responses() > 0
            && r.statuses.get(&401).copied().unwrap_or(0) == r.responses()
            && r.transport_errors == 0
            && self.after.rejected().into_iter().all(|(k, v)| {
                v == before.get(&k).copied().unwrap_or(0) || expected.contains(&k.as_str())
            })
    }

    /// The filter's counters over the run.
    fn counters(&self) -> Counters {
        let (a, b) = (&self.after, &self.before);
        let before = b.rejected();
        Counters {
            issued: a.issued().saturating_sub(b.issued()),
            rejected: a.rejected_total().saturating_sub(b.rejected_total()),
            sampled: a.count.saturating_sub(b.count),
            rejected_by_reason: a
                .rejected()
                .into_iter()
                .filter_map(|(k, v)| {
                    let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
                    (d > 0).then_some((k, d))
                })
                .collect(),
            optok_cache_hits: self.d("wasmcustom.registry_token_optok_cache_hits_total"),
            optok_cache_misses: self.d("wasmcustom.registry_token_optok_cache_misses_total"),
            mint_reused: self.d("wasmcustom.registry_token_mint_reused_total"),
        }
    }

    /// The figures of this run in `mode`.
    pub fn figures(&self, mode: Mode) -> Figures {
        Figures {
            filter_p50_us: bucket_quantile(&self.before.buckets, &self.after.buckets, 0.5),
            filter_p99_us: bucket_quantile(&self.before.buckets, &self.after.buckets, 0.99),
            counters: Some(self.counters()),
            refusals_as_expected: self.refusals_as_expected(mode),
            live_proofs: self.live_proofs,
            ledger_rows: self.ledger_rows,
            ..plain_figures(&self.result)
        }
    }
}

/// The load target of a listener on `port` (TLS with the client certificate for mTLS).
pub fn target_for(m: &Material, port: u16, mode: Mode) -> Result<Target, String> {
    let mut t = http::plain_target(&format!("http://127.0.0.1:{port}"))?;
    if mode == Mode::Mtls {
        let config = http::tls_config(&m.ca, Some((&m.client_cert, &m.client_key)))?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1".to_string())
            .map_err(|e| e.to_string())?;
        t.tls = Some((config, name));
    }
    Ok(t)
}

/// Waits until the admin accounts for `responses` answers (histograms merge at the 1 s
/// stats flush), then returns the snapshot.
pub fn settle(admin: &Target, before: &Snapshot, responses: u64) -> Result<Snapshot, String> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let s = admin::snapshot(admin)?;
        let counted = s.issued() + s.rejected_total() - (before.issued() + before.rejected_total());
        if (counted >= responses && s.count.saturating_sub(before.count) >= responses)
            || Instant::now() > deadline
        {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A load of a `/token` listener.
pub struct Load<'a> {
    /// The listener.
    pub target: &'a Target,
    /// Its Envoy's admin.
    pub admin: &'a Target,
    /// How the requests ask.
    pub mode: Mode,
    /// The OpToks.
    pub pool: Arc<OpTokPool>,
    /// OpToks of the pool cycled through (0 = all).
    pub use_optoks: usize,
    /// The request path and query.
    pub path: &'a str,
    /// Seconds measured.
    pub seconds: u64,
    /// Offered rate (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// The rate to pre-generate DPoP proofs for.
    pub expect_rate: u64,
    /// Warm up first.
    pub warmup: bool,
}

/// Measures `l`: warm-up (when asked), then `l.seconds`, with Envoy's counters around
/// the measured part.
pub fn measure(ctx: &Ctx, l: Load<'_>) -> Result<Measured, String> {
    let used = if l.use_optoks == 0 {
        l.pool.len()
    } else {
        l.use_optoks
    };
    let total = l.seconds + if l.warmup { WARMUP_SECONDS } else { 0 };
    let workload = Workload::with_mode(
        l.mode,
        l.pool,
        used,
        "127.0.0.1",
        l.path,
        REALM,
        total,
        l.expect_rate,
    )?;
    let mut spec = RunSpec {
        target: l.target.clone(),
        connections: ctx.connections,
        duration: Duration::from_secs(WARMUP_SECONDS),
        rate: None,
        progress: false,
        max_requests: 20_000_000,
    };
    // The histogram merges at the stats flush: the baseline must account for every
    // warm-up answer, or the warm-up's last samples would land in this run's delta.
    let snap0 = admin::snapshot(l.admin)?;
    let before = if l.warmup {
        let warm = load::run(&spec, &workload);
        settle(l.admin, &snap0, warm.responses())?
    } else {
        snap0
    };
    spec.duration = Duration::from_secs(l.seconds);
    spec.rate = l.rate;
    let result = load::run(&spec, &workload);
    let after = settle(l.admin, &before, result.responses())?;
    Ok(Measured {
        live_proofs: workload.live_proofs(),
        result,
        before,
        after,
        ledger_rows: None,
    })
}

/// A closed-loop run of Bearer GETs against a listener that answers without the filter
/// (the `direct_response` and crypto ceilings): warm-up, then `seconds` measured.
pub fn run_plain(
    ctx: &Ctx,
    material: &Material,
    port: u16,
    pool: Arc<OpTokPool>,
    seconds: u64,
) -> Result<RunResult, String> {
    let target = target_for(material, port, Mode::Bearer)?;
    let workload = plain_workload(pool)?;
    let spec = |d| RunSpec {
        target: target.clone(),
        connections: ctx.connections,
        duration: Duration::from_secs(d),
        rate: None,
        progress: false,
        max_requests: 50_000_000,
    };
    load::run(&spec(WARMUP_SECONDS), &workload);
    Ok(load::run(&spec(seconds), &workload))
}

/// The requests of [`run_plain`]: Bearer GETs of a `/token` path, cycling over every
/// OpToken of `pool` (a Bearer pool).
pub fn plain_workload(pool: Arc<OpTokPool>) -> Result<Workload, String> {
    let used = pool.len();
    Workload::new(
        pool,
        used,
        "127.0.0.1",
        &request_path(BASE_RULES),
        REALM,
        1,
        0,
    )
}

/// One measurement's line on the console.
pub fn print_line(name: &str, refusing: bool, m: &Figures) {
    let (rate, unit) = if refusing {
        (m.responses_per_second(), "refusals/s")
    } else {
        (m.tokens_per_second(), "tokens/s")
    };
    let l = &m.latency_us;
    println!(
        "    {name:<12} {rate:>8.0} {unit}  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs | filter p50 {:>6.0} µs p99 {:>6.0} µs | non-200 {} | errors {} | counters {}",
        l.p50.unwrap_or(0),
        l.p99.unwrap_or(0),
        l.p999.unwrap_or(0),
        m.filter_p50_us.unwrap_or(0.0),
        m.filter_p99_us.unwrap_or(0.0),
        m.non_ok(),
        m.transport_errors,
        if m.agrees() { "agree" } else { "DISAGREE" }
    );
}
