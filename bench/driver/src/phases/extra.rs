//! The phases after the rounds: the ledger's sustained ingest per database, latency
//! against offered load (`dpop-rs256`, open loop), and memory over a long run at full
//! load (`dpop-es256`).

use std::time::Duration;

use registry_token_loadgen::admin;
use registry_token_loadgen::ledger::ingest_load;
use registry_token_loadgen::load::{self, Mode, RunSpec, Workload};

use crate::measure::{measure, settle, target_for, Load, Measured, WARMUP_SECONDS};
use crate::procs::{fresh_sqlite, start_bench_ledger, start_token_envoy, BenchEnvoy, Postgres};
use crate::render::fmt::mib;
use crate::results::{Ingest, IngestFigures, Outcome, Soak, SoakSample, SweepPoint};
use crate::scenarios::{request_path, scenario, BASE_RULES, LEDGER_SECRET, REALM};
use crate::step;

use super::Bench;

/// Ingest load: concurrent POSTs (gateways, each of which has one batch in flight at a
/// time).
pub const INGEST_CONNECTIONS: usize = 4;
/// Records per batch (the filter's default `ledger.batchSize`).
pub const INGEST_BATCH: usize = 100;
/// The sweep's points, as fractions of the maximum rate.
const SWEEP_FRACTIONS: [f64; 7] = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1];

/// The ledger's sustained ingest rate on each database, when asked for.
pub fn ingest(b: &Bench<'_>) -> Vec<Ingest> {
    let mut out = Vec::new();
    if !b.s.want("ingest") {
        return out;
    }
    step(&format!(
        "ledger ingest: {INGEST_CONNECTIONS} connections POST batches of {INGEST_BATCH} records, {} s after {WARMUP_SECONDS} s of warm-up",
        b.s.seconds
    ));
    for db in ["SQLite", "PostgreSQL"] {
        let r = ingest_once(b, db);
        match &r {
            Ok(i) => println!(
                "    {db:<12} {:>8.0} records/s  batch p50 {} µs  p99 {} µs | failed batches {} | rows {} for {} acknowledged",
                i.records_per_second,
                i.batch_p50_us.unwrap_or(0),
                i.batch_p99_us.unwrap_or(0),
                i.failed,
                i.rows,
                i.acknowledged
            ),
            Err(e) => println!("    {db:<12} FAILED: {e}"),
        }
        out.push(Ingest {
            database: db.to_string(),
            outcome: r,
        });
    }
    out
}

/// One database's ingest run: a fresh database, the ledger on Envoy's CPU, warm-up, run.
fn ingest_once(b: &Bench<'_>, db: &str) -> Outcome<IngestFigures> {
    // Declared first, dropped last: the cluster outlives its ledger.
    let mut pg: Option<Postgres> = None;
    let url = if db == "SQLite" {
        fresh_sqlite(&b.ctx.work, "ingest")?
    } else {
        let p = Postgres::try_start(true)?;
        let url = p.url.clone();
        pg = Some(p);
        url
    };
    let l = start_bench_ledger(
        &b.ctx,
        &b.material,
        &b.s.ledger,
        &url,
        b.ctx.envoy_cpu,
        false,
    )?;
    let run = |name: &str, secs: u64| {
        ingest_load(
            &l.target,
            LEDGER_SECRET,
            &format!("{name}-{db}-{}", std::process::id()),
            INGEST_CONNECTIONS,
            INGEST_BATCH,
            Duration::from_secs(secs),
        )
    };
    let warm = run("warm", WARMUP_SECONDS);
    let result = run("run", b.s.seconds);
    let rows = l.ingested()?;
    drop(l);
    drop(pg);
    Ok(IngestFigures {
        records_per_second: result.records_per_second(),
        batches_per_second: if result.elapsed > 0.0 {
            result.batches as f64 / result.elapsed
        } else {
            0.0
        },
        batch_p50_us: result.quantile(0.5),
        batch_p99_us: result.quantile(0.99),
        failed: result.failed,
        first_error: result.first_error.clone(),
        rows,
        acknowledged: warm.records + result.records,
    })
}

/// Latency against offered load on the target-1 path, up to 110 % of `max_rate` (the
/// closed-loop `dpop-rs256` rate); empty when that was not measured.
pub fn sweep(b: &Bench<'_>, max_rate: f64) -> Result<Vec<SweepPoint>, String> {
    let sc = scenario("dpop-rs256")?;
    let mut points = Vec::new();
    if max_rate <= 0.0 || !b.s.want("sweep") {
        return Ok(points);
    }
    let secs = b.s.sweep_seconds;
    step(&format!("latency against offered load (dpop-rs256, open loop, {secs} s per point, max {max_rate:.0}/s)"));
    let r = (|| -> Result<(), String> {
        let e = start_token_envoy(&b.ctx, &b.material, &sc, None)?;
        let target = target_for(&b.material, e.listen_port(), Mode::Dpop)?;
        for (i, fraction) in SWEEP_FRACTIONS.into_iter().enumerate() {
            let offered = (max_rate * fraction).max(1.0);
            let m = measure(
                &b.ctx,
                Load {
                    target: &target,
                    admin: &e.admin,
                    mode: Mode::Dpop,
                    pool: b.pools.dpop.clone(),
                    use_optoks: 0,
                    path: &request_path(BASE_RULES),
                    seconds: secs,
                    rate: Some(offered),
                    expect_rate: offered.ceil() as u64,
                    warmup: i == 0,
                },
            )?;
            let figures = m.figures(Mode::Dpop);
            let l = &figures.latency_us;
            println!(
                "    {:>4.0}% {:>7.0}/s offered → {:>7.0}/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs",
                fraction * 100.0,
                offered,
                figures.tokens_per_second(),
                l.p50.unwrap_or(0),
                l.p99.unwrap_or(0),
                l.p999.unwrap_or(0)
            );
            points.push(SweepPoint {
                fraction,
                offered,
                figures,
            });
        }
        Ok(())
    })();
    if let Err(e) = r {
        println!("    sweep FAILED: {e}");
    }
    Ok(points)
}

/// Memory over a long run at full load, every proof signed on the fly.
pub fn soak(b: &Bench<'_>) -> Result<Soak, String> {
    let sc = scenario("dpop-es256")?;
    let mut soak = Soak::default();
    let secs = b.s.soak;
    if secs == 0 || !b.s.want("soak") {
        return Ok(soak);
    }
    step(&format!(
        "memory: dpop-es256 at full load for {secs} s (proofs signed on the fly)"
    ));
    let r = (|| -> Result<(), String> {
        let e = start_token_envoy(&b.ctx, &b.material, &sc, None)?;
        let target = target_for(&b.material, e.listen_port(), Mode::Dpop)?;
        let workload = Workload::new(
            b.pools.dpop.clone(),
            0,
            "127.0.0.1",
            &request_path(BASE_RULES),
            REALM,
            secs,
            0,
        )?;
        let interval = (secs / 30).clamp(1, 10);
        let before = admin::snapshot(&e.admin)?;
        soak.samples.push(sample(&e, 0, 0.0)?);
        let mut total = Measured {
            before: before.clone(),
            ..Measured::default()
        };
        let mut t = 0;
        while t < secs {
            let d = interval.min(secs - t);
            let spec = RunSpec {
                target: target.clone(),
                connections: b.ctx.connections,
                duration: Duration::from_secs(d),
                rate: None,
                progress: false,
                max_requests: 50_000_000,
            };
            let r = load::run(&spec, &workload);
            t += d;
            let tps = r.tokens_per_second();
            total.result.latencies.extend(r.latencies);
            for (k, v) in r.statuses {
                *total.result.statuses.entry(k).or_insert(0) += v;
            }
            total.result.transport_errors += r.transport_errors;
            total.result.elapsed += r.elapsed;
            let s = sample(&e, t, tps)?;
            println!(
                "    {:>5} s  {:>7.0} tokens/s  VM {:>6.2} MiB  allocated {:>7.2} MiB  heap {:>7.2} MiB  RSS {:>7.2} MiB",
                t, tps, mib(s.vm), mib(s.allocated), mib(s.heap), mib(s.rss)
            );
            soak.samples.push(s);
        }
        total.result.latencies.sort_unstable();
        total.after = settle(&e.admin, &before, total.result.responses())?;
        total.live_proofs = workload.live_proofs();
        soak.result = Some(total.figures(Mode::Dpop));
        Ok(())
    })();
    if let Err(e) = r {
        println!("    soak FAILED: {e}");
    }
    Ok(soak)
}

/// One memory reading of Envoy `e`, `t` seconds in.
fn sample(e: &BenchEnvoy, t: u64, tokens_per_second: f64) -> Result<SoakSample, String> {
    let s = admin::snapshot(&e.admin)?;
    Ok(SoakSample {
        t,
        vm: s.value("wasmcustom.registry_token_vm_memory_bytes"),
        allocated: s.value("server.memory_allocated"),
        heap: s.value("server.memory_heap_size"),
        rss: e.rss_bytes().unwrap_or(0),
        tokens_per_second,
    })
}
