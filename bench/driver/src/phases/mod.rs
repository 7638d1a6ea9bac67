//! A whole run, phase by phase: setup (keys, OpToks, `openssl speed`), the
//! `direct_response` ceiling, the alternating rounds of crypto ceilings and `/token`
//! scenarios (with the side-by-side measurements), the hostcalls' weight (pairs of probe
//! modules side by side), the ledger's ingest, the revocation feed, guard mode on the
//! registry's route, the latency sweep and the memory run; gathered into [`Results`].

mod extra;
mod guard;
mod hostcalls;
mod revocation;
mod rounds;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use extra::{INGEST_BATCH, INGEST_CONNECTIONS};

use crate::cli::Settings;
use crate::measure::{plain_figures, run_plain, Ctx, WARMUP_SECONDS};
use crate::procs::{pin_self, start_ceiling_envoy};
use crate::results::{Figures, Results, RunInfo, FORMAT};
use crate::setup::{self, make_material, openssl_speed, Material, Pools};
use crate::step;

/// What every phase of a run shares.
pub struct Bench<'a> {
    /// The settings.
    pub s: &'a Settings,
    /// The measurement context.
    pub ctx: Ctx,
    /// Keys and certificates.
    pub material: Material,
    /// The OpToks.
    pub pools: Pools,
    /// The CPU of the load generator (and of the ledger behind a scenario).
    pub client_cpu: Option<usize>,
}

/// Runs every phase `s` asks for; an error when the run cannot go on (setup, the
/// `direct_response` ceiling). A phase that fails later is recorded as failed.
pub fn run(s: &Settings) -> Result<Results, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = Command::new("taskset").arg("-V").output().is_ok();
    let (envoy_cpu, client_cpu) = if cores >= 2 && taskset {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    step("keys, certificates and OpToks");
    let material = make_material(&s.work)?;
    if let Some(c) = client_cpu {
        pin_self(c);
    }
    let t = Instant::now();
    let optoks = s.optoks_needed();
    let pools = Pools::generate(&material, optoks)?;
    println!(
        "    3 × {} distinct RS256 OpToks (unbound, DPoP-bound, mTLS-bound) in {:.1} s",
        optoks,
        t.elapsed().as_secs_f64()
    );
    let b = Bench {
        s,
        ctx: Ctx {
            envoy: s.envoy.clone(),
            wasm: s.wasm.clone(),
            work: s.work.clone(),
            envoy_cpu,
            connections: s.connections,
        },
        material,
        pools,
        client_cpu,
    };

    step(&format!(
        "openssl speed -seconds {} rsa2048 ecdsap256",
        s.speed_seconds
    ));
    let speed = openssl_speed(envoy_cpu, s.speed_seconds)?;
    println!("{}", speed.output);
    let ceiling = ceiling(&b)?;
    let rounds = rounds::rounds(&b)?;
    let hostcalls = hostcalls::hostcalls(&b);
    let ingest = extra::ingest(&b);
    let revocation_feed = revocation::revocation_feed(&b);
    let guard = guard::guard(&b);
    let max_rate = rounds
        .scenarios
        .iter()
        .find(|r| r.key == "dpop-rs256")
        .and_then(|r| r.outcome.as_ref().ok())
        .map_or(0.0, Figures::tokens_per_second);
    let sweep = extra::sweep(&b, max_rate)?;
    let soak = extra::soak(&b)?;

    let mut results = Results {
        format: FORMAT,
        run: RunInfo {
            date: setup::now(),
            command: s.command.clone(),
            machine: setup::machine(cores),
            load_at_start,
            envoy_version: setup::envoy_version(&s.envoy),
            openssl_version: setup::openssl_version(),
            envoy_cpu,
            client_cpu,
            seconds: s.seconds,
            warmup_seconds: WARMUP_SECONDS,
            connections: s.connections,
            soak: s.soak,
            sweep_seconds: s.sweep_seconds,
            optoks: s.optoks,
            speed_seconds: s.speed_seconds,
            rounds: s.rounds,
            elapsed_seconds: started.elapsed().as_secs_f64(),
            wasm_bytes: std::fs::metadata(&s.wasm).map(|m| m.len()).unwrap_or(0),
        },
        speed,
        ceiling,
        crypto: rounds.crypto,
        scenarios: rounds.scenarios,
        ledger_pairs: rounds.ledger_pairs,
        compared: rounds.compared,
        ingest,
        revocation_feed,
        guard,
        hostcalls,
        sweep,
        soak,
        targets: Vec::new(),
    };
    results.targets = crate::targets::targets(&results);
    Ok(results)
}

/// Envoy's `direct_response` ceiling (no filter), when asked for.
fn ceiling(b: &Bench<'_>) -> Result<Option<Figures>, String> {
    if !b.s.want("ceiling") {
        return Ok(None);
    }
    step("ceiling: Envoy direct_response, no filter");
    let e = start_ceiling_envoy(&b.ctx)?;
    let result = run_plain(
        &b.ctx,
        &b.material,
        e.listen_port(),
        b.pools.bearer.clone(),
        b.s.seconds,
    )?;
    let m = plain_figures(&result);
    println!(
        "    ceiling      {:>8.0} answers/s  p50 {} µs  p99 {} µs",
        m.tokens_per_second(),
        m.latency_us.p50.unwrap_or(0),
        m.latency_us.p99.unwrap_or(0)
    );
    Ok(Some(m))
}

/// The probe module (`--probe`), absolute; an error saying how to build it when missing.
fn probe_module(s: &Settings) -> Result<PathBuf, String> {
    std::fs::canonicalize(&s.probe).map_err(|e| {
        format!(
            "{}: {e} (cargo build --release --target wasm32-wasip1 -p registry-token-crypto-probe)",
            s.probe.display()
        )
    })
}

/// The other build's module as the report names it: relative to the working directory
/// when inside it.
pub fn display_relative(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|d| p.strip_prefix(d).ok())
        .unwrap_or(p)
        .display()
        .to_string()
}
