//! The report: `docs/PERFORMANCE.md` rendered from a run's [`Results`] alone (and the
//! gnuplot latency plot, [`plot`]), so that `bench render` writes the same report again
//! from a results file without measuring anything.

pub mod fmt;
mod guard;
mod hostcalls;
mod ledger;
mod notes;
pub mod plot;
mod revocation;
mod tables;

use std::fmt::Write as _;
use std::path::Path;

use crate::results::{Results, Target};
use crate::targets::targets;
use fmt::us;

/// Where the latency plot is, for the report: the link (relative to the report), or why
/// it was not produced.
pub type PlotLink = Result<String, String>;

/// The link from the report `out` to the plot `png`: relative when beside or under the
/// report's folder.
pub fn plot_link(out: &Path, png: &Path) -> String {
    png.strip_prefix(out.parent().unwrap_or(Path::new("")))
        .unwrap_or(png)
        .display()
        .to_string()
}

/// Writes the plot of `r`'s sweep to `png` (when there is a sweep), then the report to
/// `out` (making their folders); returns the targets judged and the plot's outcome.
pub fn write_report(
    r: &Results,
    out: &Path,
    png: &Path,
) -> Result<(Vec<Target>, PlotLink), String> {
    for dir in [out.parent(), png.parent()].into_iter().flatten() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    let plotted = plot::plot(png, &r.sweep).map(|()| plot_link(out, png));
    let (text, targets) = markdown(r, &plotted);
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok((targets, plotted))
}

/// The report, and the targets it judged.
pub fn markdown(r: &Results, plot: &PlotLink) -> (String, Vec<Target>) {
    let targets = targets(r);
    let mut o = String::new();
    head(&mut o, r);
    run_table(&mut o, r);
    target_table(&mut o, &targets);
    baselines(&mut o, r);
    tables::crypto_ceilings(&mut o, r);
    tables::scenarios(&mut o, r);
    ledger::ledger_section(&mut o, r);
    revocation::revocation_section(&mut o, r);
    guard::guard_section(&mut o, r);
    ledger::compare_section(&mut o, r);
    tables::refusals(&mut o, r);
    notes::where_time_goes(&mut o, r);
    hostcalls::hostcalls_section(&mut o, r);
    notes::sweep(&mut o, r, plot);
    notes::memory(&mut o, r);
    notes::reproduce(&mut o);
    (o, targets)
}

/// `writeln!` into the report (a `String`, which cannot fail).
macro_rules! out {
    ($o:expr) => {{
        let _ = writeln!($o);
    }};
    ($o:expr, $($arg:tt)*) => {{
        let _ = writeln!($o, $($arg)*);
    }};
}
pub(crate) use out;

fn head(o: &mut String, r: &Results) {
    let run = &r.run;
    out!(o, "# Performance\n");
    out!(
        o,
        "Written by `make bench` (`bench/driver`, bin `bench`) from its results file \
         (`performance-results.json` beside this one; `bench render` writes this file again \
         from it); the figures below are the last run's, all measured in that one run on the \
         machine described. Targets are the ones of the edge-performance issue, each a ratio \
         between figures of this run. Benchmarks, not tests: nothing here is asserted by \
         `make test`.\n"
    );
    let short = run.seconds < 10 || run.soak < 300;
    if short {
        out!(
            o,
            "> **This was a short run** ({} s per scenario, {} s memory run): figures are \
             indicative only and the memory target cannot be met by a run shorter than \
             5 minutes. Run `make bench` with the defaults for the real figures.\n",
            run.seconds,
            run.soak
        );
    }
}

fn run_table(o: &mut String, r: &Results) {
    let run = &r.run;
    let m = &run.machine;
    let mem = m.memory_kib.map_or("unknown".into(), |kb| {
        format!("{:.1} GiB", kb as f64 / 1_048_576.0)
    });
    out!(o, "## Run\n");
    out!(o, "| | |\n|---|---|");
    out!(o, "| date | {} |", run.date);
    out!(o, "| command | `{}` |", run.command);
    out!(
        o,
        "| machine | {}, {} cores, {mem}, Linux {} |",
        m.cpu,
        m.cores,
        m.kernel
    );
    out!(
        o,
        "| load average at start | {} |",
        run.load_at_start
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    out!(
        o,
        "| Envoy | `{}`, `--concurrency 1`, V8 runtime, log level warn |",
        run.envoy_version
    );
    out!(o, "| OpenSSL | {} |", run.openssl_version);
    out!(
        o,
        "| placement | {} |",
        match (run.envoy_cpu, run.client_cpu) {
            (Some(e), Some(c)) => format!("Envoy and `openssl speed` pinned to CPU {e}, the load generator to CPU {c} (`taskset`)"),
            _ => "not pinned (fewer than 2 CPUs or no taskset): Envoy and the load generator share the CPUs".into(),
        }
    );
    out!(
        o,
        "| load | {} keep-alive connections, closed loop, {} s per scenario after {} s of warm-up; every OpToken distinct ({} per binding kind, RS256, each used once before any reuse) unless said; DPoP proofs ES256, pre-generated, one per request |",
        run.connections, run.seconds, run.warmup_seconds, run.optoks
    );
    out!(
        o,
        "| duration of the whole run | {:.0} s |",
        run.elapsed_seconds
    );
    out!(o, "| wasm module | {} bytes |\n", run.wasm_bytes);
}

fn target_table(o: &mut String, targets: &[Target]) {
    out!(o, "## Targets\n");
    out!(o, "| target | measured | result |\n|---|---|---|");
    for t in targets {
        out!(
            o,
            "| {} | {} | **{}** |",
            t.name,
            t.measured,
            if t.pass { "met" } else { "not met" }
        );
    }
    out!(o);
}

fn baselines(o: &mut String, r: &Results) {
    let (s, secs) = (&r.speed, r.run.speed_seconds);
    out!(o, "## Baselines (same run)\n");
    out!(o, "| | per second | |\n|---|---:|---|");
    out!(
        o,
        "| OpenSSL RSA-2048 sign | {:.0} | `openssl speed -seconds {secs} rsa2048`, one core |",
        s.rsa_sign
    );
    out!(o, "| OpenSSL RSA-2048 verify | {:.0} | |", s.rsa_verify);
    out!(
        o,
        "| OpenSSL ECDSA P-256 sign | {:.0} | `openssl speed -seconds {secs} ecdsap256` |",
        s.ec_sign
    );
    out!(o, "| OpenSSL ECDSA P-256 verify | {:.0} | |", s.ec_verify);
    let c = r.ceiling.clone().unwrap_or_default();
    out!(
        o,
        "| Envoy `direct_response` ceiling | {:.0} | same listener, no filter, 900-byte body; p50 {}, p99 {}; the load generator, on one core, may be what limits this figure |\n",
        c.tokens_per_second(),
        us(c.latency_us.p50),
        us(c.latency_us.p99)
    );
    out!(
        o,
        "<details><summary>openssl speed output</summary>\n\n```\n{}\n```\n</details>\n",
        s.output
    );
}

#[cfg(test)]
pub(crate) mod tests;
