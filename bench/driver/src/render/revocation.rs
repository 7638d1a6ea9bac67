//! The report's section on the revocation list at 50,000 entries (`--only
//! revocation-feed`): the ledger's feed in its two forms and a gateway taking it.

use std::fmt::Write as _;

use super::fmt::{cell, mib, usf};
use super::out;
use crate::results::Results;

/// The revocation list at scale, when measured.
pub fn revocation_section(o: &mut String, r: &Results) {
    let Some(outcome) = &r.revocation_feed else {
        return;
    };
    out!(o, "## A revocation list of 50,000 entries\n");
    let f = match outcome {
        Ok(f) => f,
        Err(e) => {
            out!(o, "Not measured: {}\n", cell(e));
            return;
        }
    };
    out!(
        o,
        "{} revocations (10,000 licences, the rest subjects) created through the ledger's \
         `POST /v1/revocations/batch` (release binary, SQLite, on the load generator's CPU) in \
         {:.1} s; then the gateways' feed, and an `es256` gateway (one worker) fetching the \
         digest form every 10 s and answering `/token` with it in force for {} s after {} s \
         of warm-up, every caller's subject and licence looked up in it (none listed).\n",
        f.entries,
        f.fill_seconds,
        r.run.seconds,
        r.run.warmup_seconds
    );
    out!(o, "| figure | value |\n|---|---:|");
    out!(
        o,
        "| digest feed (`?form=digests`), bytes | {} ({:.2} MiB; gateways take at most 1,604,096) |",
        f.digest_bytes,
        mib(f.digest_bytes)
    );
    out!(
        o,
        "| value feed, bytes | {} ({:.2} MiB) |",
        f.value_bytes,
        mib(f.value_bytes)
    );
    out!(
        o,
        "| the ledger builds the digest feed (first request after a change) | {:.0} ms |",
        f.build_ms
    );
    out!(
        o,
        "| the ledger serves it unchanged (median of 20) | {} µs |",
        f.serve_p50_us
    );
    out!(
        o,
        "| the ledger serves the value feed (built every time) | {:.0} ms |",
        f.value_serve_ms
    );
    out!(
        o,
        "| a gateway worker takes the list (`registry_token_revocation_load_us`, mean of {}) | {} |",
        f.gateway_loads,
        usf(f.gateway_load_us)
    );
    let es256 = r.scenario("es256");
    out!(
        o,
        "| `/token` with the list in force | {:.0} tokens/s{} |",
        f.tokens_per_second,
        es256.map_or(String::new(), |e| format!(
            " (`es256` without: {:.0})",
            e.tokens_per_second()
        ))
    );
    out!(
        o,
        "| filter decision time with it, p50 / p99 | {} / {}{} |",
        usf(f.filter_p50_us),
        usf(f.filter_p99_us),
        es256.map_or(String::new(), |e| format!(
            " (`es256` without: {} / {})",
            usf(e.filter_p50_us),
            usf(e.filter_p99_us)
        ))
    );
    out!(
        o,
        "| VM linear memory with it | {:.2} MiB |",
        mib(f.vm_memory_bytes)
    );
    out!(
        o,
        "| non-200 answers; stale gauge | {}; {} |\n",
        f.non_ok,
        if f.stale { "**1**" } else { "0" }
    );
}
