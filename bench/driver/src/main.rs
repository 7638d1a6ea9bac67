//! `make bench`: the whole performance comparison of the registry token filter in one run
//! on this machine. Its figures go to a results file (`docs/performance-results.json`),
//! from which the report (`docs/PERFORMANCE.md`) and the latency plot are rendered.
//!
//! ```text
//! bench [OPTIONS]                          run (bench --help lists the options)
//! bench render [RESULTS.json] [--out FILE] the report again from a results file
//! bench compare OLD.json NEW.json          two runs side by side: new / old per figure
//! ```
//!
//! Envoy runs with `--concurrency 1` pinned to CPU 0, `openssl speed` on CPU 0 too, the
//! load generator on CPU 1. Every figure is measured in this run; every target is a ratio
//! between figures of this run, reported met or not met. `--strict` exits 1 when a target
//! is not met (the default only fails on errors and on counter disagreement).
//!
//! With `es256-ledger`, every round also measures the ledger's cost side by side: an
//! `es256` and an `es256-ledger` Envoy on the same CPU, loaded at once, compared by CPU
//! time per decision ([`pair`]); the ledger target is that ratio, since two runs one
//! after the other differ by more than the ledger costs. `--compare-wasm` measures this
//! module against another build the same way, on the `--compare` scenarios. Guard mode
//! (`--only guard`) puts a registry 2.8 behind the guard, behind the filter without it and
//! behind plain Envoy, side by side: the Envoy CPU a memoised blob `GET` costs on each,
//! and a large blob pull's throughput through the guard and plain Envoy.
//!
//! Modules: [`cli`] (options), [`setup`] (keys, OpToks, the machine), [`procs`] (Envoy,
//! ledger, PostgreSQL, the guard phase's registry 2.8), [`registry`] (its raw API),
//! [`scenarios`], [`measure`] and [`pair`] (one measurement), [`phases`] (the run),
//! [`stats`] (rounds, medians, paired ratios), [`targets`], [`results`] (the data),
//! [`render`] (Markdown and plot), [`compare`].

mod cli;
mod compare;
mod measure;
mod pair;
mod phases;
mod procs;
mod registry;
mod render;
mod results;
mod scenarios;
mod setup;
mod stats;
mod targets;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use cli::{beside, Cli, Command, CompareArgs, RenderArgs, RunArgs};
use results::{Results, Target};
use targets::verdict;

/// Exit status of a usage or setup error.
const SETUP_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Some(Command::Render(a)) => render(a),
        Some(Command::Compare(a)) => compare(a),
        None => run(cli.run),
    };
    done.unwrap_or_else(|e| {
        eprintln!("bench: {e}");
        ExitCode::from(SETUP_ERROR)
    })
}

/// A phase's heading on the console.
pub fn step(msg: &str) {
    println!("\n==> {msg}");
}

/// The whole run: measure, write the results, render the report from them.
fn run(args: RunArgs) -> Result<ExitCode, String> {
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| {
        format!(
            "bench {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        )
    });
    let mut s = args.settings(command)?;
    cli::resolve(&mut s)?;
    let results = phases::run(&s)?;
    results.write(&s.results)?;
    let (targets, plotted) = render::write_report(&results, &s.out, &s.plot)?;
    step(&format!(
        "targets (written to {}; figures in {})",
        s.out.display(),
        s.results.display()
    ));
    let met = print_targets(&targets);
    match &plotted {
        Err(e) => println!("    plot not written: {e}"),
        Ok(_) => println!("    plot: {}", s.plot.display()),
    }
    let v = verdict(&results);
    if v.ledger_lost {
        println!("    the ledger's rows differ from the decisions or records it acknowledged (or an ingest run failed)");
        return Ok(ExitCode::FAILURE);
    }
    if v.disagree {
        println!("    some scenario failed or its Envoy counters disagree with the load generator");
        return Ok(ExitCode::FAILURE);
    }
    if s.strict && met < targets.len() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Lists the targets; returns how many were met.
fn print_targets(targets: &[Target]) -> usize {
    let mut met = 0;
    for t in targets {
        println!(
            "    {} {} — {}",
            if t.pass { "MET    " } else { "NOT MET" },
            t.name,
            t.measured
        );
        met += usize::from(t.pass);
    }
    println!("    {met} of {} targets met", targets.len());
    met
}

/// `bench render`: the report (and the plot) again from a results file.
fn render(a: RenderArgs) -> Result<ExitCode, String> {
    let results = Results::read(&a.results)?;
    let plot = a
        .plot
        .unwrap_or_else(|| beside(&a.out, "performance-latency.png"));
    let (targets, plotted) = render::write_report(&results, &a.out, &plot)?;
    println!("{} written from {}", a.out.display(), a.results.display());
    print_targets(&targets);
    if let Err(e) = plotted {
        println!("    plot not written: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench compare`: two results files side by side, to stdout.
fn compare(a: CompareArgs) -> Result<ExitCode, String> {
    let read = |p: &Path| Results::read(p);
    print!("{}", compare::compare(&read(&a.old)?, &read(&a.new)?));
    Ok(ExitCode::SUCCESS)
}
