//! The report's section on guard mode (`--only guard`, issue 22): a registry 2.8 behind
//! the guard, behind the filter without it and behind plain Envoy, side by side.

use std::fmt::Write as _;

use super::fmt::{cell, us};
use super::out;
use crate::results::{Guard, Results};
use crate::stats::{median_added_us, median_pull};

/// Guard mode, when measured.
pub fn guard_section(o: &mut String, r: &Results) {
    let Some(outcome) = &r.guard else {
        return;
    };
    out!(o, "## Guard mode: the registry's route\n");
    let g = match outcome {
        Ok(g) => g,
        Err(e) => {
            out!(o, "Not measured: {}\n", cell(e));
            return;
        }
    };
    out!(
        o,
        "Three Envoys of one configuration (`bench/envoy/guard.yaml.in`, one worker each, \
         pinned to the same CPU): *guard* has the filter's `guard` section on `/v2`; *plain \
         Envoy* has the same configuration without it and the filter disabled on `/v2`; *the \
         filter without the guard* has neither the section nor anything disabled (the filter \
         passes every `/v2` request). Behind them, a registry 2.8 (Debian's `docker-registry`, \
         filesystem storage, token authentication trusting the filter's ES256 signing key) and \
         a stand-in answering small blobs (an Envoy `direct_response`), both on the load \
         generator's CPU: services of their own. One registry token from *guard*'s own \
         `/token` (ES256, tag rules in its `access` entry) serves every request; the guard \
         verifies it once, at its first use, and reads it from its memo afterwards.\n"
    );
    gets(o, r, g);
    pulls(o, g);
}

/// The memoised blob `GET`s, side by side.
fn gets(o: &mut String, r: &Results, g: &Guard) {
    out!(
        o,
        "**A blob `GET` with a memoised token**: `GET /v2/<name>/blobs/<digest>` of a {} bytes \
         blob, answered by the stand-in: registry 2.8 itself serves about 200 blob `GET`s a \
         second per core here (some 5 ms of CPU each), which would leave Envoy mostly idle and \
         its CPU per request mostly its idle work. In each round, through *guard* and plain \
         Envoy at once, then through *guard* and the filter without the `guard` section at once \
         (where the filter passes every `/v2` request), {} keep-alive connections each, for {} s \
         after {} s of warm-up. The filter's own histogram does not time the guard's route, so \
         its cost is read from Envoy: each Envoy's CPU (every thread, \
         `/proc/PID/task/*/schedstat`) divided by the requests it answered; *added* is \
         *guard*'s minus the other's. Against plain Envoy that is all guard mode costs (the \
         round trips into the Wasm VM for the request's headers, the answer's headers and its \
         body included); against the filter without the guard, the guard's own work. Client \
         latencies show the two Envoys sharing one CPU more than the guard.\n",
        g.small_bytes,
        r.run.connections,
        r.run.seconds,
        r.run.warmup_seconds
    );
    out!(
        o,
        "| round | against | Envoy CPU per request, against (worker) | guard (worker) | added | client p50, against · guard | requests/s at once, against · guard |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for (i, (plain, filter)) in g.gets.iter().zip(&g.gets_filter).enumerate() {
        for (p, against) in [
            (plain, "plain Envoy"),
            (filter, "the filter without the guard"),
        ] {
            match p {
                Ok(p) => out!(
                    o,
                    "| {} | {against} | {:.1} µs ({:.1}) | {:.1} µs ({:.1}) | {:+.1} µs | {} · {} | {:.0} · {:.0} |",
                    i + 1,
                    p.base.cpu_us_per_decision(),
                    p.base.worker_us_per_decision(),
                    p.test.cpu_us_per_decision(),
                    p.test.worker_us_per_decision(),
                    p.added_us(),
                    us(p.base.p50_us),
                    us(p.test.p50_us),
                    p.base.rate(),
                    p.test.rate()
                ),
                Err(e) => out!(
                    o,
                    "| {} | {against} | failed: {} | | | | |",
                    i + 1,
                    cell(e).replace('|', "/")
                ),
            }
        }
    }
    if let (Ok((_, whole, _)), Ok((_, own, _))) =
        (median_added_us(&g.gets), median_added_us(&g.gets_filter))
    {
        out!(
            o,
            "\nMedian rounds: the guard adds {whole:.1} µs of Envoy CPU per request to plain Envoy, \
             {own:.1} µs to the filter without it.\n"
        );
    } else {
        out!(o);
    }
}

/// The large blob's pulls, side by side.
fn pulls(o: &mut String, g: &Guard) {
    out!(
        o,
        "**A large blob pull**: {} MiB of random bytes from the registry, through *guard* and \
         plain Envoy at once (both requests sent together on fresh connections, each read to its last \
         byte), after one such untimed pair; compared over the window while both run, until \
         the first pull's last byte: each one's bytes by then (its throughput), and each \
         Envoy's CPU over the window per GiB it passed. Whatever slows the machine in that \
         window slows both.\n",
        g.blob_bytes >> 20
    );
    out!(
        o,
        "| pair | window | plain Envoy, MB/s | guard, MB/s | guard / plain | Envoy CPU per GiB, plain · guard |\n|---|---:|---:|---:|---:|---:|"
    );
    for (i, p) in g.pulls.iter().enumerate() {
        match p {
            Ok(p) => out!(
                o,
                "| {} | {:.2} s | {:.0} | {:.0} | {:.3} | {:.0} · {:.0} ms |",
                i + 1,
                p.seconds,
                p.mb_per_second(&p.base),
                p.mb_per_second(&p.test),
                p.ratio(),
                p.base.cpu_ms_per_gib(),
                p.test.cpu_ms_per_gib()
            ),
            Err(e) => out!(
                o,
                "| {} | failed: {} | | | | |",
                i + 1,
                cell(e).replace('|', "/")
            ),
        }
    }
    if let Ok((p, _)) = median_pull(&g.pulls) {
        out!(
            o,
            "\nMedian pair: {:.2} × plain Envoy's throughput.\n",
            p.ratio()
        );
    } else {
        out!(o);
    }
}
