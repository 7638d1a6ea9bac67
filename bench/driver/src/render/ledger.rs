//! The report's side-by-side sections: the issuance ledger (its cost, measured side by
//! side, and its sustained ingest) and `--compare-wasm` (this module against another
//! build).

use std::fmt::Write as _;

use super::fmt::{cell, us};
use super::out;
use crate::results::{Ingest, Outcome, Pair, Results};
use crate::stats::{median_pair, paired_ratio};

/// The ledger: the gateway with it on, its cost side by side, its ingest per database.
pub fn ledger_section(o: &mut String, r: &Results) {
    let on = r.scenario("es256-ledger");
    if on.is_none() && r.ingest.is_empty() && r.ledger_pairs.is_empty() {
        return;
    }
    out!(o, "## The issuance ledger\n");
    if let (Some(on), Some(off)) = (on, r.scenario("es256")) {
        let (a, b) = (on.tokens_per_second(), off.tokens_per_second());
        let (rows, decisions) = on.ledger_rows.map_or((0, 0), |l| (l.rows, l.decisions));
        let (ratio, rounds) = paired_ratio(on, off);
        let rounds = if rounds.is_empty() {
            rounds
        } else {
            format!(": {rounds}")
        };
        out!(
            o,
            "`es256-ledger` is `es256` with the filter's `ledger` section on (defaults: batches of 100, \
             flushed every second, a 10,000-record buffer) and a real ledger (the release binary, SQLite, \
             pinned to the load generator's CPU at `nice 19`: a service of its own, neither the gateway's work nor a thief of the load generator's time) behind an \
             Envoy cluster: {a:.0} against {b:.0} tokens/s (median rounds), {ratio:.2} × without (median of the \
             rounds' ratios{rounds}); afterwards the ledger held {rows} rows for the {decisions} decisions Envoy \
             counted (warm-up included; every round checked){}. Measured one after the other, this ratio also \
             carries the machine's drift between the two runs (one scenario's rate moves by ±20 % from one second \
             to the next here) and the ledger process's use of the load generator's CPU.\n",
            if rows == decisions { "" } else { ": NOT one row per decision" }
        );
    }
    if !r.ledger_pairs.is_empty() {
        match median_pair(&r.ledger_pairs) {
            Ok((median, _, _)) => {
                out!(
                    o,
                    "**The ledger's cost, side by side** (the target's figure): an `es256` Envoy and an \
                     `es256-ledger` Envoy (its own ledger, as above) pinned to the same CPU and loaded at the same \
                     time, {} connections each, for {} s after {} s of warm-up, once per round. Each \
                     Envoy's CPU is the time every one of its threads ran (`/proc/PID/task/*/schedstat`: the \
                     worker, and the main thread that also ships ledger batches), read when the ledger holds the \
                     record of every decision before the mark, so the measured decisions' shipping is inside the \
                     window; divided by the decisions that Envoy counted. Whatever slows the machine in those \
                     seconds weighs on both alike (two identical `es256` Envoys measured this way differed by at \
                     most 1 %: 1.01 · 1.00 · 1.01). The figure is decisions per CPU second with the ledger on \
                     against off, {:.2} in the median round:\n",
                    r.run.connections,
                    r.run.seconds,
                    r.run.warmup_seconds,
                    median.ratio()
                );
                pair_table(o, ("off", "on"), &r.ledger_pairs);
            }
            Err(e) => out!(
                o,
                "The side-by-side measurement of the ledger's cost failed: {e}\n"
            ),
        }
    }
    ingest(o, r);
}

/// The ledger's sustained ingest rate per database.
fn ingest(o: &mut String, r: &Results) {
    if r.ingest.is_empty() {
        return;
    }
    out!(
        o,
        "Sustained ingest: {c} keep-alive connections (as {c} gateways, each with \
         one batch in flight) POST batches of {b} new records (`POST /v1/ingest`, the gateways' \
         secret, records shaped like the filter's) in a closed loop for {} s after {} s of \
         warm-up. The ledger (release build) is pinned to the CPU Envoy used, the load to the other; \
         PostgreSQL 15 (a throw-away cluster, unix socket, default `fsync` and `synchronous_commit`) is \
         not pinned. SQLite: WAL, as the ledger opens it. *rows* is the ledger's \
         `ledger_ingested_records_total` afterwards, *acknowledged* the records of every 2xx batch \
         (warm-up included): equal means nothing lost and nothing counted twice.\n",
        r.run.seconds,
        r.run.warmup_seconds,
        c = crate::phases::INGEST_CONNECTIONS,
        b = crate::phases::INGEST_BATCH,
    );
    out!(
        o,
        "| database | records/s | batches/s | batch p50 | batch p99 | failed batches | rows / acknowledged |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for Ingest { database, outcome } in &r.ingest {
        match outcome {
            Ok(i) => out!(
                o,
                "| {database} | {:.0} | {:.0} | {} | {} | {}{} | {} / {}{} |",
                i.records_per_second,
                i.batches_per_second,
                us(i.batch_p50_us),
                us(i.batch_p99_us),
                i.failed,
                i.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {})", cell(e))),
                i.rows,
                i.acknowledged,
                if i.rows == i.acknowledged {
                    ""
                } else {
                    " **differ**"
                }
            ),
            Err(e) => out!(o, "| {database} | not measured: {} | | | | | |", cell(e)),
        }
    }
    let fastest = r
        .scenarios
        .iter()
        .filter_map(|s| s.outcome.as_ref().ok())
        .map(|m| m.tokens_per_second())
        .fold(0.0, f64::max);
    if fastest > 0.0 {
        out!(
            o,
            "\nFor scale: the fastest `/token` scenario of this run issued {fastest:.0} tokens/s on one Envoy worker.\n"
        );
    } else {
        out!(o);
    }
}

/// `--compare-wasm`: this module against another build, side by side.
pub fn compare_section(o: &mut String, r: &Results) {
    let Some(compared) = &r.compared else {
        return;
    };
    out!(
        o,
        "## This module against another build, side by side\n\n\
         `--compare-wasm {}`: for each scenario, an Envoy with that module (*old*) and one with \
         this run's module (*new*), pinned to the same CPU and loaded at the same time, {} \
         connections each, for {} s after {} s of warm-up, once per round; each \
         Envoy's CPU is the time all its threads ran, divided by the decisions it counted (as \
         for the ledger's cost above). *new / old* above 1 means this module does more \
         decisions per CPU second.\n",
        compared.wasm,
        r.run.connections,
        r.run.seconds,
        r.run.warmup_seconds
    );
    for sc in &compared.scenarios {
        let key = &sc.key;
        match median_pair(&sc.rounds) {
            Ok((median, text, _)) => out!(
                o,
                "`{key}`: new / old {:.2} in the median round{}.\n",
                median.ratio(),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(" (rounds: {text})")
                }
            ),
            Err(e) => out!(o, "`{key}`: failed: {e}\n"),
        }
        pair_table(o, ("old", "new"), &sc.rounds);
    }
}

/// The rounds of a side-by-side measurement as a table; `names`: what `base` and `test`
/// are called in the headers.
fn pair_table(o: &mut String, (base, test): (&str, &str), rounds: &[Outcome<Pair>]) {
    out!(
        o,
        "| round | Envoy CPU per decision, {base} (worker) | {test} (worker) | tokens/s at once, {base} · {test} | {test} / {base} | ledger rows / decisions |\n|---|---:|---:|---:|---:|---|"
    );
    for (i, p) in rounds.iter().enumerate() {
        match p {
            Ok(p) => out!(
                o,
                "| {} | {:.0} µs ({:.0}) | {:.0} µs ({:.0}) | {:.0} · {:.0} | {:.2} | {} |",
                i + 1,
                p.base.cpu_us_per_decision(),
                p.base.worker_us_per_decision(),
                p.test.cpu_us_per_decision(),
                p.test.worker_us_per_decision(),
                p.base.rate(),
                p.test.rate(),
                p.ratio(),
                p.ledger_rows
                    .map_or("-".to_string(), |l| format!("{} / {}", l.rows, l.decisions))
            ),
            Err(e) => out!(
                o,
                "| {} | failed: {} | | | | |",
                i + 1,
                cell(e).replace('|', "/")
            ),
        }
    }
    out!(o);
}
