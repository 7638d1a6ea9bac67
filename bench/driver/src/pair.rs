//! Two Envoys measured side by side ([`Pair`]): pinned to the same CPU and loaded at the
//! same time, each by its own connections, compared by CPU time per decision. Whatever
//! slows the machine in those seconds (this VM's CPU time moves ±20 % from one second to
//! the next) weighs on both alike; one after the other, the same two scenarios differ by
//! more than the costs compared here (0.82 and 1.11 in two rounds of one run). Used for
//! the ledger's cost (`es256` against `es256-ledger`) and for this build against another
//! (`--compare-wasm`), and for pairs of probe modules (the hostcalls part, [`probe_pair`]).

use std::path::Path;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use registry_token_loadgen::admin;
use registry_token_loadgen::load::{self, Mode, RunSpec, Workload};

use crate::measure::{plain_workload, settle, target_for, Ctx, WARMUP_SECONDS};
use crate::procs::{
    fresh_sqlite, ledger_rows, start_bench_ledger, start_probe_envoy, start_token_envoy_with,
    BenchEnvoy, BenchLedger,
};
use crate::results::{Outcome, Pair, PairSide};
use crate::scenarios::{scenario_as, scenario_path, Scenario, REALM};
use crate::setup::{Material, Pools};

/// One side of [`side_by_side`]: a scenario (under a key of its own: it names the Envoy's
/// files), the module, and the ledger its records go to.
pub struct SideSpec<'a> {
    /// The scenario.
    pub scenario: Scenario,
    /// The filter module.
    pub wasm: &'a Path,
    /// The ledger behind it.
    pub ledger: Option<&'a BenchLedger>,
}

/// The ledger's cost: `es256` against `es256-ledger` (its own fresh ledger), side by side.
pub fn ledger_pair(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    ledger_bin: &Path,
    ledger_cpu: Option<usize>,
    seconds: u64,
) -> Outcome<Pair> {
    let test = scenario_as("es256-ledger", "pair-es256-ledger")?;
    let db = fresh_sqlite(&ctx.work, test.key)?;
    let ledger = start_bench_ledger(ctx, m, ledger_bin, &db, ledger_cpu, true)?;
    let base = SideSpec {
        scenario: scenario_as("es256", "pair-es256")?,
        wasm: &ctx.wasm,
        ledger: None,
    };
    let test = SideSpec {
        scenario: test,
        wasm: &ctx.wasm,
        ledger: Some(&ledger),
    };
    side_by_side(ctx, m, pools, seconds, base, test)
}

/// This module (`test`) against the module `old` (`base`) on scenario `key`, side by side.
pub fn compare_pair(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    old: &Path,
    key: &str,
    seconds: u64,
) -> Outcome<Pair> {
    let base = SideSpec {
        scenario: scenario_as(key, "compare-old")?,
        wasm: old,
        ledger: None,
    };
    let test = SideSpec {
        scenario: scenario_as(key, "compare-new")?,
        wasm: &ctx.wasm,
        ledger: None,
    };
    side_by_side(ctx, m, pools, seconds, base, test)
}

/// One probe module's configuration: its key (a crypto ceiling's) and operations.
pub type ProbeSide<'a> = (&'a str, &'a [&'a str]);

/// Two probe Envoys (`bench/probe`, the module `probe`) side by side: `base` and `test`,
/// each started as `pair-<key>` and loaded as the crypto ceilings are (Bearer GETs of the
/// bearer pool, which the probe answers 200 whatever they hold); a decision of the
/// [`Pair`] is an answer.
pub fn probe_pair(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    probe: &Path,
    [base, test]: [ProbeSide<'_>; 2],
    seconds: u64,
) -> Outcome<Pair> {
    let names = [base.0, test.0].map(|k| format!("pair-{k}"));
    let mut envoys = Vec::new();
    for (name, (_, ops)) in names.iter().zip([base, test]) {
        envoys.push(start_probe_envoy(ctx, m, probe, name, ops)?);
    }
    let workload = plain_workload(pools.bearer.clone())?;
    let specs = envoys
        .iter()
        .map(|e| {
            Ok(RunSpec {
                target: target_for(m, e.listen_port(), Mode::Bearer)?,
                connections: ctx.connections,
                duration: Duration::from_secs(WARMUP_SECONDS),
                rate: None,
                progress: false,
                max_requests: 50_000_000,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let running = |i: usize| Running {
        key: &names[i],
        envoy: &envoys[i],
        spec: &specs[i],
        workload: &workload,
    };
    measure_sides([running(0), running(1)], seconds, None)
        .map_err(|e| format!("{e} (see {}/pair-*.log)", ctx.work.display()))
}

/// One round of a [`probe_pair`]: what `test` adds to `base`.
pub fn print_added(label: &str, r: &Outcome<Pair>) {
    match r {
        Ok(p) => println!(
            "    {label:<20} {:+.1} µs of Envoy CPU per request: {:.1} vs {:.1} (worker {:.1} vs {:.1}; {:.0} and {:.0} answers/s at once)",
            p.added_us(),
            p.base.cpu_us_per_decision(),
            p.test.cpu_us_per_decision(),
            p.base.worker_us_per_decision(),
            p.test.worker_us_per_decision(),
            p.base.rate(),
            p.test.rate(),
        ),
        Err(e) => println!("    {label:<20} FAILED: {e}"),
    }
}

/// One side-by-side round's line.
pub fn print_pair(label: &str, r: &Outcome<Pair>) {
    match r {
        Ok(p) => println!(
            "    {label:<15} {:.0} vs {:.0} µs of Envoy CPU per decision (worker {:.0} vs {:.0}; {:.0} and {:.0} tokens/s at once) = {:.2}{}",
            p.base.cpu_us_per_decision(),
            p.test.cpu_us_per_decision(),
            p.base.worker_us_per_decision(),
            p.test.worker_us_per_decision(),
            p.base.rate(),
            p.test.rate(),
            p.ratio(),
            p.ledger_rows.map_or(String::new(), |l| format!(
                " | ledger rows {} for {} decisions",
                l.rows, l.decisions
            ))
        ),
        Err(e) => println!("    {label:<15} FAILED: {e}"),
    }
}

/// Each side's Envoy, its warm-up run and the workload of the whole run.
fn prepare(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    seconds: u64,
    sides: [&SideSpec<'_>; 2],
) -> Result<Vec<(BenchEnvoy, RunSpec, Workload)>, String> {
    let mut out = Vec::new();
    for side in sides {
        let sc = &side.scenario;
        let e = start_token_envoy_with(ctx, m, sc, side.ledger, side.wasm)?;
        let spec = RunSpec {
            target: target_for(m, e.listen_port(), sc.mode)?,
            connections: ctx.connections,
            duration: Duration::from_secs(WARMUP_SECONDS),
            rate: None,
            progress: false,
            max_requests: 20_000_000,
        };
        let pool = pools.get(sc.mode);
        let used = pool.len();
        let workload = Workload::with_mode(
            sc.mode,
            pool,
            used,
            "127.0.0.1",
            &scenario_path(sc),
            REALM,
            seconds + WARMUP_SECONDS,
            4000,
        )?;
        out.push((e, spec, workload));
    }
    Ok(out)
}

/// Measures a [`Pair`] of `base` and `test` started here: see [`measure_sides`].
pub fn side_by_side(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    seconds: u64,
    base: SideSpec<'_>,
    test: SideSpec<'_>,
) -> Outcome<Pair> {
    let sides = prepare(ctx, m, pools, seconds, [&base, &test])?;
    let running: Vec<Running<'_>> = sides
        .iter()
        .zip([base.scenario.key, test.scenario.key])
        .map(|((envoy, spec, workload), key)| Running {
            key,
            envoy,
            spec,
            workload,
        })
        .collect();
    let [b, t] = <[Running<'_>; 2]>::try_from(running).map_err(|_| "two sides")?;
    measure_sides([b, t], seconds, test.ledger)
}

/// One side of [`measure_sides`], already running: its Envoy, the load's spec (lasting the
/// warm-up) and its requests, named `key` in messages.
pub struct Running<'a> {
    /// Its name.
    pub key: &'a str,
    /// Its Envoy.
    pub envoy: &'a BenchEnvoy,
    /// The load: target, connections, the warm-up's duration.
    pub spec: &'a RunSpec,
    /// The requests (enough for the warm-up and `seconds`).
    pub workload: &'a Workload,
}

/// Measures a [`Pair`]: both Envoys warmed up at once, then loaded at once for
/// `seconds`; every answer must be a 200. With a ledger behind `test`, each Envoy's CPU is
/// read when the ledger holds the records of every decision before that point, so the
/// shipping of the measured decisions is inside the window and none of the warm-up's is.
pub fn measure_sides(
    [base, test]: [Running<'_>; 2],
    seconds: u64,
    ledger: Option<&BenchLedger>,
) -> Outcome<Pair> {
    let keys = [base.key, test.key];
    let envoys = [base.envoy, test.envoy];
    let loads_of = [(base.spec, base.workload), (test.spec, test.workload)];
    // `test`'s counters from before the warm-up, so that `settle` can wait for its answers.
    let snap0 = admin::snapshot(&envoys[1].admin)?;
    let warm_answers = Mutex::new([0u64; 2]);
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        let loads: Vec<_> = loads_of
            .iter()
            .enumerate()
            .map(|(i, (spec, workload))| {
                let (warm_answers, barrier) = (&warm_answers, &barrier);
                s.spawn(move || {
                    let warm = load::run(spec, workload);
                    if let Ok(mut w) = warm_answers.lock() {
                        w[i] = warm.responses();
                    }
                    barrier.wait(); // warm-ups over
                    barrier.wait(); // start marks taken
                    let spec = RunSpec {
                        duration: Duration::from_secs(seconds),
                        ..(*spec).clone()
                    };
                    let r = load::run(&spec, workload);
                    (r.responses(), r.ok(), r.quantile(0.5))
                })
            })
            .collect();
        barrier.wait();
        // With a ledger: the start mark once it holds the warm-up's records (every
        // answer counted first, so that the count to wait for is known).
        let marks = (|| -> Result<Vec<(u64, u64)>, String> {
            if let Some(ledger) = ledger {
                let warm = warm_answers.lock().map_err(|e| e.to_string())?[1];
                ledger_rows(ledger, &settle(&envoys[1].admin, &snap0, warm)?)?;
            }
            envoys.iter().map(|e| e.cpu_ns()).collect()
        })();
        // Released whatever happened, so that the load threads end.
        barrier.wait();
        let started = Instant::now();
        let runs: Vec<(u64, u64, Option<u32>)> = loads
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0, None)))
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        let marks = marks?;
        // Both sides answer 200s: a side that refused would be measured cheap.
        for ((responses, ok, _), key) in runs.iter().zip(keys) {
            if responses != ok || *ok == 0 {
                return Err(format!("{key}: {ok} of {responses} answers were 200s"));
            }
        }
        // With a ledger: the end mark once it holds the record of every decision Envoy
        // counted.
        let ledger_rows = match ledger {
            Some(ledger) => {
                let total = warm_answers.lock().map_err(|e| e.to_string())?[1] + runs[1].0;
                Some(ledger_rows(
                    ledger,
                    &settle(&envoys[1].admin, &snap0, total)?,
                )?)
            }
            None => None,
        };
        let mut measured = [PairSide::default(); 2];
        for (i, (e, mark)) in envoys.iter().zip(&marks).enumerate() {
            let cpu = e.cpu_ns()?;
            measured[i] = PairSide {
                // Every answer a 200 (above): one decision each.
                decisions: runs[i].0,
                cpu_ns: cpu.0.saturating_sub(mark.0),
                worker_ns: cpu.1.saturating_sub(mark.1),
                seconds,
                p50_us: runs[i].2,
            };
        }
        Ok(Pair {
            base: measured[0],
            test: measured[1],
            ledger_rows,
        })
    })
}
