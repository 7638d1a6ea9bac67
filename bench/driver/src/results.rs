//! The results of a run as data: every measured figure, every round and every target,
//! written to `performance-results.json` beside the report. The report
//! (`docs/PERFORMANCE.md`) is rendered from this alone ([`crate::render`]), so it can be
//! rendered again (`bench render`) or two runs compared (`bench compare`) without
//! measuring anything.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The version of this file's layout; a reader refuses any other.
pub const FORMAT: u32 = 1;

/// A figure that was measured, or why not (`{"Ok": …}` or `{"Err": "…"}` in the file).
pub type Outcome<T> = Result<T, String>;

/// One whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// [`FORMAT`].
    pub format: u32,
    /// What ran, where, with which settings.
    pub run: RunInfo,
    /// `openssl speed` on Envoy's CPU.
    pub speed: Speed,
    /// Envoy's `direct_response` ceiling (no filter); `None` when not measured.
    pub ceiling: Option<Figures>,
    /// The in-Envoy crypto ceilings (the probe module), median rounds.
    pub crypto: Vec<Ceiling>,
    /// The `/token` scenarios, median rounds.
    pub scenarios: Vec<ScenarioResult>,
    /// Every round of the ledger's cost measured side by side (`es256` against
    /// `es256-ledger`).
    pub ledger_pairs: Vec<Outcome<Pair>>,
    /// `--compare-wasm`: this module against another build, side by side.
    pub compared: Option<Compared>,
    /// The ledger's sustained ingest, per database.
    pub ingest: Vec<Ingest>,
    /// The revocation list at 50,000 entries (`--only revocation-feed`); `None` when not
    /// measured (and in results files from before it).
    #[serde(default)]
    pub revocation_feed: Option<Outcome<RevocationFeed>>,
    /// Guard mode on the registry's route (`--only guard`); `None` when not measured (and
    /// in results files from before it).
    #[serde(default)]
    pub guard: Option<Outcome<Guard>>,
    /// The hostcalls part (`--only hostcalls`): pairs of probe modules side by side;
    /// `None` when not measured (and in results files from before it).
    #[serde(default)]
    pub hostcalls: Option<Outcome<Vec<HostcallPair>>>,
    /// Latency against offered load (`dpop-rs256`, open loop).
    pub sweep: Vec<SweepPoint>,
    /// The memory run.
    pub soak: Soak,
    /// The targets as judged at the end of the run (the report judges them again from the
    /// figures, so a changed target shows in a re-rendered report).
    pub targets: Vec<Target>,
}

/// What ran, where, with which settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// When the run ended, `2026-11-29 07:27 UTC`.
    pub date: String,
    /// The command (`BENCH_COMMAND`, or `bench` and its arguments).
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// `/proc/loadavg` at the start.
    pub load_at_start: String,
    /// `envoy --version`, first line.
    pub envoy_version: String,
    /// `openssl version`.
    pub openssl_version: String,
    /// The CPU Envoy (and `openssl speed`) was pinned to.
    pub envoy_cpu: Option<usize>,
    /// The CPU the load generator was pinned to.
    pub client_cpu: Option<usize>,
    /// Seconds measured per scenario.
    pub seconds: u64,
    /// Warm-up seconds before each measurement.
    pub warmup_seconds: u64,
    /// Keep-alive connections per load.
    pub connections: usize,
    /// Seconds of the memory run.
    pub soak: u64,
    /// Seconds per point of the latency sweep.
    pub sweep_seconds: u64,
    /// Distinct OpToks per binding kind.
    pub optoks: usize,
    /// `openssl speed -seconds`.
    pub speed_seconds: u64,
    /// Alternating rounds of ceilings and scenarios.
    pub rounds: u64,
    /// Wall time of the whole run.
    pub elapsed_seconds: f64,
    /// Size of the filter module.
    pub wasm_bytes: u64,
}

/// The machine a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// `/proc/cpuinfo`'s model name.
    pub cpu: String,
    /// CPUs available to the bench before it pinned itself.
    pub cores: usize,
    /// `MemTotal`, KiB.
    pub memory_kib: Option<u64>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
}

/// `openssl speed` on one core.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Speed {
    /// RSA-2048 signatures per second.
    pub rsa_sign: f64,
    /// RSA-2048 verifications per second.
    pub rsa_verify: f64,
    /// ECDSA P-256 signatures per second.
    pub ec_sign: f64,
    /// ECDSA P-256 verifications per second.
    pub ec_verify: f64,
    /// Its summary lines.
    pub output: String,
}

/// One measured load (the median round when there were rounds): what the load generator
/// saw and, for the `/token` listeners, what Envoy's counters said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Every round's rate (answers or tokens per second), in the order measured; these
    /// figures are the median round's.
    pub rounds: Vec<f64>,
    /// Seconds from the first send to the last answer (open loop: the offered period).
    pub elapsed: f64,
    /// Answers per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    pub transport_errors: u64,
    /// Client-side latency, µs.
    pub latency_us: Latency,
    /// The filter's own decision time (histogram `registry_token_decision_us`), µs,
    /// median.
    pub filter_p50_us: Option<f64>,
    /// The same, p99.
    pub filter_p99_us: Option<f64>,
    /// The filter's counters over the run (`None` where there is no filter).
    pub counters: Option<Counters>,
    /// For a refusing mode: every answer a 401 with one of the expected reasons (always
    /// true for the modes that mint).
    pub refusals_as_expected: bool,
    /// DPoP proofs signed during the run (beyond the pre-generated ones).
    pub live_proofs: u64,
    /// With the ledger on: its rows, and the decisions Envoy counted (warm-up included).
    pub ledger_rows: Option<LedgerRows>,
}

/// Client-side latency quantiles, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<u32>,
    /// 99th percentile.
    pub p99: Option<u32>,
    /// 99.9th percentile.
    pub p999: Option<u32>,
}

/// The filter's counters over one run (deltas).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// `registry_token_issued_total`.
    pub issued: u64,
    /// `registry_token_rejected_total`.
    pub rejected: u64,
    /// Samples of the decision histogram.
    pub sampled: u64,
    /// Refusals per reason (reasons that moved only).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// OpTok cache hits.
    pub optok_cache_hits: u64,
    /// OpTok cache misses.
    pub optok_cache_misses: u64,
    /// Minted tokens reused.
    pub mint_reused: u64,
}

/// A ledger's rows against the decisions that should be in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRows {
    /// Rows the ledger holds.
    pub rows: u64,
    /// Decisions Envoy counted.
    pub decisions: u64,
}

impl LedgerRows {
    /// One row per decision.
    pub fn whole(&self) -> bool {
        self.rows == self.decisions
    }
}

impl Figures {
    /// All answers.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// 200 answers.
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    /// Tokens (200 answers) per second.
    pub fn tokens_per_second(&self) -> f64 {
        per_second(self.ok(), self.elapsed)
    }

    /// Answers per second, any status.
    pub fn responses_per_second(&self) -> f64 {
        per_second(self.responses(), self.elapsed)
    }

    /// Tokens Envoy counted as issued.
    pub fn issued(&self) -> u64 {
        self.counters.as_ref().map_or(0, |c| c.issued)
    }

    /// Envoy's counters say what the load generator saw: as many issued as 200s, as many
    /// refused as the other answers, a histogram sample per answer.
    pub fn agrees(&self) -> bool {
        self.counters.as_ref().is_some_and(|c| {
            c.issued == self.ok()
                && c.rejected == self.responses() - self.ok()
                && c.sampled == self.responses()
        })
    }

    /// Non-200 answers with the filter's reasons, e.g. `12 (dpop_replay_unavailable: 12)`.
    pub fn non_ok(&self) -> String {
        let n = self.responses() - self.ok() + self.transport_errors;
        let reasons: Vec<String> = self
            .counters
            .iter()
            .flat_map(|c| &c.rejected_by_reason)
            .map(|(k, d)| format!("{k}: {d}"))
            .collect();
        if reasons.is_empty() {
            n.to_string()
        } else {
            format!("{n} ({})", reasons.join(", "))
        }
    }

    /// OpTok cache hits over lookups.
    pub fn hit_rate(&self) -> Option<f64> {
        let c = self.counters.as_ref()?;
        let (h, m) = (c.optok_cache_hits, c.optok_cache_misses);
        (h + m > 0).then(|| h as f64 / (h + m) as f64)
    }

    /// Reused tokens over 200 answers.
    pub fn reuse_rate(&self) -> Option<f64> {
        let ok = self.ok();
        let reused = self.counters.as_ref().map_or(0, |c| c.mint_reused);
        (ok > 0).then(|| reused as f64 / ok as f64)
    }
}

fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// One in-Envoy crypto ceiling.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceiling {
    /// `crypto-rs`, …
    pub key: String,
    /// The signature work per request.
    pub work: String,
    /// Its median round.
    pub outcome: Outcome<Figures>,
}

/// One `/token` scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// `rs256`, …
    pub key: String,
    /// What it does.
    pub title: String,
    /// The load generator's mode (`bearer`, `dpop`, …).
    pub mode: String,
    /// Every answer should be a refusal (`hostile`, `cheap`).
    pub refusing: bool,
    /// The crypto ceiling it is compared to.
    pub ceiling: Option<String>,
    /// Its median round.
    pub outcome: Outcome<Figures>,
}

/// Two Envoys measured side by side: pinned to the same CPU and loaded at the same time,
/// each by its own connections, compared by CPU time per decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The reference (ledger off; the other build).
    pub base: PairSide,
    /// What is measured against it (ledger on; this build).
    pub test: PairSide,
    /// With a ledger behind `test`: its rows, and the decisions that Envoy counted.
    pub ledger_rows: Option<LedgerRows>,
}

/// One Envoy of a [`Pair`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PairSide {
    /// Decisions (every answer a 200).
    pub decisions: u64,
    /// CPU time of every thread of the Envoy process over the run.
    pub cpu_ns: u64,
    /// The part of it its worker ran (the rest: the main thread, mostly).
    pub worker_ns: u64,
    /// Seconds of the run.
    pub seconds: f64,
    /// Client-side latency, µs, median (absent from results files before it).
    #[serde(default)]
    pub p50_us: Option<u32>,
}

impl PairSide {
    /// CPU µs of the whole process per decision.
    pub fn cpu_us_per_decision(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.decisions.max(1) as f64
    }

    /// CPU µs of the worker per decision.
    pub fn worker_us_per_decision(&self) -> f64 {
        self.worker_ns as f64 / 1e3 / self.decisions.max(1) as f64
    }

    /// Decisions per second.
    pub fn rate(&self) -> f64 {
        self.decisions as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

impl Pair {
    /// Decisions per CPU second of `test`, against `base`.
    pub fn ratio(&self) -> f64 {
        let test = self.test.cpu_us_per_decision();
        if test > 0.0 {
            self.base.cpu_us_per_decision() / test
        } else {
            0.0
        }
    }

    /// Envoy CPU per decision of `test` minus `base`, µs: what `test` adds per request.
    pub fn added_us(&self) -> f64 {
        self.test.cpu_us_per_decision() - self.base.cpu_us_per_decision()
    }

    /// Whether the ledger (if any) held one row per decision.
    pub fn whole(&self) -> bool {
        self.ledger_rows.is_none_or(|l| l.whole())
    }
}

/// `--compare-wasm`: this module against another build.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Compared {
    /// The other module, relative to the working directory when inside it.
    pub wasm: String,
    /// Every round of each scenario compared.
    pub scenarios: Vec<ComparedScenario>,
}

/// One scenario of `--compare-wasm`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComparedScenario {
    /// The scenario.
    pub key: String,
    /// Every round: old (`base`) against new (`test`).
    pub rounds: Vec<Outcome<Pair>>,
}

/// One pair of the hostcalls part: two probe modules (`bench/probe`) side by side on one
/// CPU, `test` doing `base`'s signature work and the filter's other hostcalls; what `test`
/// adds ([`Pair::added_us`]) is what those hostcalls cost Envoy per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostcallPair {
    /// The base probe's key (`crypto-es`).
    pub base: String,
    /// The test probe's key (`crypto-es-host`).
    pub test: String,
    /// What the test probe does per request.
    pub work: String,
    /// Every round: `base` against `test`.
    pub rounds: Vec<Outcome<Pair>>,
}

/// The ledger's sustained ingest on one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ingest {
    /// `SQLite` or `PostgreSQL`.
    pub database: String,
    /// What the run gave.
    pub outcome: Outcome<IngestFigures>,
}

/// One ingest run's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestFigures {
    /// Records stored per second.
    pub records_per_second: f64,
    /// Batches answered 2xx per second.
    pub batches_per_second: f64,
    /// Batch latency, µs, median.
    pub batch_p50_us: Option<u32>,
    /// Batch latency, µs, p99.
    pub batch_p99_us: Option<u32>,
    /// Batches answered otherwise, or not at all.
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// `ledger_ingested_records_total` afterwards.
    pub rows: u64,
    /// Records in 2xx batches, warm-up included.
    pub acknowledged: u64,
}

/// The revocation list at 50,000 entries: the ledger's feed and a gateway taking it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Active revocations (subjects and licences).
    pub entries: u64,
    /// Seconds to create them through `POST /v1/revocations/batch`.
    pub fill_seconds: f64,
    /// Bytes of `GET /v1/revocations/feed?form=digests`.
    pub digest_bytes: u64,
    /// Bytes of the value form (`GET /v1/revocations/feed`).
    pub value_bytes: u64,
    /// The first digest feed after the change, built from the database: ms (client side).
    pub build_ms: f64,
    /// The digest feed served from memory: µs, median of the warm requests.
    pub serve_p50_us: u64,
    /// The value form, built from the database on every request: ms.
    pub value_serve_ms: f64,
    /// A gateway worker's time to take the list (read from shared data, parsed into
    /// digests), µs: the mean of the filter's histogram `registry_token_revocation_load_us`.
    pub gateway_load_us: Option<f64>,
    /// Samples of that histogram (one per VM that took it).
    pub gateway_loads: u64,
    /// `registry_token_vm_memory_bytes` after the `/token` run with the list in force.
    pub vm_memory_bytes: u64,
    /// The gateway's stale gauge when it had taken the list (should be false).
    pub stale: bool,
    /// `/token` (es256's load) with the list in force: tokens per second.
    pub tokens_per_second: f64,
    /// The filter's decision time then, µs, median.
    pub filter_p50_us: Option<f64>,
    /// The same, p99.
    pub filter_p99_us: Option<f64>,
    /// Answers other than 200, and transport errors.
    pub non_ok: u64,
}

/// Guard mode (issue 22): Envoys of one configuration in front of a registry 2.8 (and of a
/// stand-in answering small blobs): with the filter's `guard` section on `/v2` (`test` of
/// every pair), with the filter off there (plain Envoy), and with the filter there but no
/// `guard` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    /// Bytes of the large blob pulled.
    pub blob_bytes: u64,
    /// Bytes of the small blob of the request load.
    pub small_bytes: u64,
    /// Every round's small-blob GETs, one registry token (memoised by the guard), side by
    /// side with plain Envoy: a [`Pair`] whose decisions are requests.
    pub gets: Vec<Outcome<Pair>>,
    /// The same, side by side with the filter without the `guard` section: the guard's own
    /// part of the cost.
    pub gets_filter: Vec<Outcome<Pair>>,
    /// Every pair of large-blob pulls side by side, in the order measured.
    pub pulls: Vec<Outcome<PullPair>>,
}

/// The large blob pulled through both Envoys at once (the two requests sent together),
/// measured over the window while both pulls ran: until the first one's last byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PullPair {
    /// Seconds from the requests to the first pull's last byte.
    pub seconds: f64,
    /// Through the Envoy without the filter on `/v2`.
    pub base: Pull,
    /// Through the guard.
    pub test: Pull,
}

/// One of the two pulls, over the window of its [`PullPair`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pull {
    /// Bytes of the body read (the whole blob for the pull that ended first).
    pub bytes: u64,
    /// CPU time of every thread of that Envoy, ns.
    pub envoy_cpu_ns: u64,
}

impl Pull {
    /// Envoy CPU per GiB pulled, ms.
    pub fn cpu_ms_per_gib(&self) -> f64 {
        if self.bytes == 0 {
            return 0.0;
        }
        self.envoy_cpu_ns as f64 / 1e6 / (self.bytes as f64 / 1_073_741_824.0)
    }
}

impl PullPair {
    /// The throughput of `side` (one of this pair's), MB (10^6 bytes) per second.
    pub fn mb_per_second(&self, side: &Pull) -> f64 {
        per_second(side.bytes, self.seconds) / 1e6
    }

    /// Throughput through the guard against without, at the same time.
    pub fn ratio(&self) -> f64 {
        crate::stats::ratio(self.test.bytes as f64, self.base.bytes as f64)
    }
}

/// One point of the latency sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Of the maximum rate.
    pub fraction: f64,
    /// Offered requests per second.
    pub offered: f64,
    /// What was measured.
    pub figures: Figures,
}

/// The memory run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Soak {
    /// Readings over time, the first at 0 s.
    pub samples: Vec<SoakSample>,
    /// The whole run's load, when it completed.
    pub result: Option<Figures>,
}

/// One reading of the memory run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakSample {
    /// Seconds into the run.
    pub t: u64,
    /// The filter's gauge `registry_token_vm_memory_bytes`.
    pub vm: u64,
    /// Envoy's `server.memory_allocated`.
    pub allocated: u64,
    /// Envoy's `server.memory_heap_size`.
    pub heap: u64,
    /// The Envoy process's resident set.
    pub rss: u64,
    /// Tokens per second over the last interval.
    pub tokens_per_second: f64,
}

/// One target of the edge-performance issue, judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// What it asks.
    pub name: String,
    /// What was measured.
    pub measured: String,
    /// Met.
    pub pass: bool,
}

impl Results {
    /// A scenario's median round, when it was measured.
    pub fn scenario(&self, key: &str) -> Option<&Figures> {
        self.scenario_result(key)
            .and_then(|s| s.outcome.as_ref().ok())
    }

    /// A scenario's entry, measured or not.
    pub fn scenario_result(&self, key: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|s| s.key == key)
    }

    /// The crypto ceiling `key`, when it was measured and answered at all.
    pub fn crypto(&self, key: &str) -> Option<&Figures> {
        self.crypto
            .iter()
            .find(|c| c.key == key)
            .and_then(|c| c.outcome.as_ref().ok())
            .filter(|m| m.tokens_per_second() > 0.0)
    }

    /// The crypto ceiling of a scenario: its key and figures, when measured.
    pub fn crypto_ceiling_of(&self, sc: &ScenarioResult) -> Option<(&str, &Figures)> {
        let key = sc.ceiling.as_deref()?;
        let c = self.crypto.iter().find(|c| c.key == key)?;
        Some((c.key.as_str(), self.crypto(key)?))
    }

    /// Reads a results file.
    pub fn read(path: &Path) -> Result<Results, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let r: Results =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if r.format != FORMAT {
            return Err(format!(
                "{}: results format {}, this bench reads {FORMAT}",
                path.display(),
                r.format
            ));
        }
        Ok(r)
    }

    /// Writes it, pretty-printed.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(ok: u64, other: u64) -> Figures {
        Figures {
            elapsed: 10.0,
            statuses: BTreeMap::from([(200, ok), (401, other)]),
            counters: Some(Counters {
                issued: ok,
                rejected: other,
                sampled: ok + other,
                rejected_by_reason: BTreeMap::from([("dpop_ath".to_string(), other)]),
                optok_cache_hits: 1,
                optok_cache_misses: 3,
                mint_reused: ok / 2,
            }),
            ..Figures::default()
        }
    }

    #[test]
    fn figures_rates_and_counters() {
        let f = figures(100, 20);
        assert_eq!(f.tokens_per_second(), 10.0);
        assert_eq!(f.responses_per_second(), 12.0);
        assert!(f.agrees());
        assert_eq!(f.non_ok(), "20 (dpop_ath: 20)");
        assert_eq!(f.hit_rate(), Some(0.25));
        assert_eq!(f.reuse_rate(), Some(0.5));
        let mut off = f.clone();
        if let Some(c) = off.counters.as_mut() {
            c.sampled -= 1;
        }
        assert!(!off.agrees());
        assert!(!Figures::default().agrees(), "no counters, no agreement");
    }

    #[test]
    fn pair_ratio_is_decisions_per_cpu_second() {
        let side = |decisions, cpu_ns| PairSide {
            decisions,
            cpu_ns,
            worker_ns: cpu_ns / 2,
            seconds: 10.0,
            p50_us: None,
        };
        let p = Pair {
            base: side(1000, 300_000_000),
            test: side(1000, 400_000_000),
            ledger_rows: Some(LedgerRows {
                rows: 999,
                decisions: 1000,
            }),
        };
        assert!((p.ratio() - 0.75).abs() < 1e-12);
        assert_eq!(p.base.cpu_us_per_decision(), 300.0);
        assert_eq!(p.base.worker_us_per_decision(), 150.0);
        assert_eq!(p.test.rate(), 100.0);
        assert!(!p.whole());
        assert_eq!(Pair::default().ratio(), 0.0);
    }

    #[test]
    fn results_survive_the_file() {
        let r = Results {
            format: FORMAT,
            scenarios: vec![ScenarioResult {
                key: "rs256".into(),
                title: "t".into(),
                mode: "bearer".into(),
                refusing: false,
                ceiling: Some("crypto-rs".into()),
                outcome: Ok(figures(5, 1)),
            }],
            ledger_pairs: vec![Err("no ledger".into())],
            hostcalls: Some(Ok(vec![HostcallPair {
                base: "crypto-es".into(),
                test: "crypto-es-host".into(),
                work: "w".into(),
                rounds: vec![Ok(Pair::default()), Err("failed".into())],
            }])),
            ..Results::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        r.write(&path).expect("write");
        let back = Results::read(&path).expect("read");
        assert_eq!(back.scenario("rs256"), r.scenario("rs256"));
        assert_eq!(back.ledger_pairs, r.ledger_pairs);
        assert_eq!(back.hostcalls, r.hostcalls);
        let text = std::fs::read_to_string(&path).expect("text");
        // A file from before the hostcalls part (and the guard, the revocation feed).
        let mut old: serde_json::Value = serde_json::from_str(&text).expect("json");
        for key in ["hostcalls", "guard", "revocation_feed"] {
            assert!(old.as_object_mut().and_then(|o| o.remove(key)).is_some());
        }
        std::fs::write(&path, old.to_string()).expect("w");
        let back = Results::read(&path).expect("a file without them");
        assert!(back.hostcalls.is_none() && back.guard.is_none());
        r.write(&path).expect("write");
        assert!(text.contains("\"Err\": \"no ledger\""), "{text}");
        std::fs::write(&path, text.replace("\"format\": 1", "\"format\": 9")).expect("w");
        assert!(Results::read(&path).is_err(), "another format is refused");
    }
}
