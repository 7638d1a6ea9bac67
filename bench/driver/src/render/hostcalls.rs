//! The report's section on the hostcalls part (`--only hostcalls`): what the filter's
//! hostcalls other than its signature work cost Envoy per request, from pairs of probe
//! modules measured side by side.

use std::fmt::Write as _;

use super::fmt::cell;
use super::out;
use crate::results::Results;
use crate::stats::median_added_us;

/// The hostcalls part: one table of its pairs, or why it was not measured.
pub fn hostcalls_section(o: &mut String, r: &Results) {
    out!(o, "## Hostcalls: Envoy's share\n");
    let pairs = match &r.hostcalls {
        None => {
            out!(
                o,
                "Not measured in this run (`--only hostcalls` measures it alone).\n"
            );
            return;
        }
        Some(Err(e)) => {
            out!(o, "Not measured: {}\n", cell(e));
            return;
        }
        Some(Ok(pairs)) => pairs,
    };
    out!(
        o,
        "Pairs of probe Envoys (`bench/probe`, as the crypto ceilings) pinned to the same CPU \
         and loaded at the same time, {} connections each, for {} s after {} s of warm-up, \
         once per round: the first of a pair does a path's signature work alone, the second \
         the same and the hostcalls the filter makes besides (listed below the table). \
         *added* is the second's Envoy CPU per request (every thread, \
         `/proc/PID/task/*/schedstat`, over the answers) minus the first's: what those \
         hostcalls cost on Envoy's side (the host's work, copying in and out of the Wasm \
         VM included), the filter's own computation around them aside. Whatever slows the \
         machine in those seconds weighs on both alike.\n",
        r.run.connections,
        r.run.seconds,
        r.run.warmup_seconds
    );
    out!(
        o,
        "| pair | added per round | median added | Envoy CPU per request in the median round, first · second |\n|---|---|---:|---:|"
    );
    for p in pairs {
        let rounds: Vec<String> = p
            .rounds
            .iter()
            .map(|r| match r {
                Ok(r) => format!("{:+.1} µs", r.added_us()),
                Err(_) => "failed".into(),
            })
            .collect();
        let (median, cpu) = match median_added_us(&p.rounds) {
            Ok((m, added, _)) => (
                format!("**{added:+.1} µs**"),
                format!(
                    "{:.1} · {:.1} µs",
                    m.base.cpu_us_per_decision(),
                    m.test.cpu_us_per_decision()
                ),
            ),
            Err(e) => (
                format!("failed: {}", cell(&e).replace('|', "/")),
                "-".into(),
            ),
        };
        out!(
            o,
            "| `{}` → `{}` | {} | {median} | {cpu} |",
            p.base,
            p.test,
            rounds.join(" · ")
        );
    }
    out!(o);
    for p in pairs {
        out!(o, "- `{}`: {}", p.test, p.work);
    }
    out!(o);
}
