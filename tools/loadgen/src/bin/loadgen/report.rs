//! What `loadgen` prints after the run: the client's answers and latency, the filter's
//! histogram, Envoy's counters, and the checks of Envoy's counters against the client.

use registry_token_loadgen::admin::{bucket_quantile, Snapshot};
use registry_token_loadgen::load::{Mode, RunResult, Workload};

fn fmt_us(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.1} ms", v / 1000.0),
        Some(v) => format!("{v:.0} µs"),
        None => "-".into(),
    }
}

/// Prints what the client and Envoy saw and the checks; whether every check held.
pub fn report(
    mode: Mode,
    result: &RunResult,
    workload: &Workload,
    before: &Snapshot,
    after: &Snapshot,
) -> bool {
    println!();
    print_client(mode, result, workload);
    let sampled = print_histogram(before, after);
    let rejected = rejected_deltas(before, after);
    let issued = after.issued() - before.issued();
    print_counters(issued, &rejected, result, before, after);
    let agree = checks(mode, result, issued, &rejected, sampled);
    if agree {
        println!("Envoy's counters agree with the load generator.");
    } else if mode.expected_refusals().is_some() {
        println!("Envoy's counters DISAGREE with the load generator (or an answer was not an expected refusal).");
    } else {
        println!("Envoy's counters DISAGREE with the load generator (or nothing was issued).");
    }
    agree
}

/// The client's answers, proofs signed live and latency.
fn print_client(mode: Mode, result: &RunResult, workload: &Workload) {
    let (responses, ok) = (result.responses(), result.ok());
    let non_ok = responses - ok;
    let others = if non_ok > 0 {
        let statuses: Vec<String> = result
            .statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(s, n)| format!("{n} × {s}"))
            .collect();
        format!(": {}", statuses.join(", "))
    } else {
        String::new()
    };
    println!(
        "client:   {responses} answers in {:.1} s ({:.0}/s): {:.0} tokens/s ({ok} × 200, {non_ok} other{others}), {} transport error(s)",
        result.elapsed,
        result.responses_per_second(),
        result.tokens_per_second(),
        result.transport_errors
    );
    if matches!(mode, Mode::Dpop | Mode::HostileDpop) && workload.live_proofs() > 0 {
        println!(
            "          {} DPoP proofs were signed during the run (pre-generated ones ran out)",
            workload.live_proofs()
        );
    }
    let q = |x: f64| result.quantile(x).map(f64::from);
    println!(
        "latency (client):  p50 {}   p99 {}   p99.9 {}   max {}",
        fmt_us(q(0.5)),
        fmt_us(q(0.99)),
        fmt_us(q(0.999)),
        fmt_us(result.latencies.last().map(|v| f64::from(*v)))
    );
}

/// The filter's own decision histogram over the run; returns its sample count.
fn print_histogram(before: &Snapshot, after: &Snapshot) -> u64 {
    let sampled = after.count.saturating_sub(before.count);
    let mean = (sampled > 0).then(|| (after.sum - before.sum) / sampled as f64);
    let quantile = |q| bucket_quantile(&before.buckets, &after.buckets, q);
    println!(
        "filter (Envoy histogram registry_token_decision_us, this run): {sampled} samples, mean {}, p50 {}, p99 {}, p99.9 {} (bucket-interpolated)",
        fmt_us(mean),
        fmt_us(quantile(0.5)),
        fmt_us(quantile(0.99)),
        fmt_us(quantile(0.999)),
    );
    if let Some((p50, p99, p999)) = after.quantiles {
        println!(
            "          Envoy's own quantiles since start: P50 {}, P99 {}, P99.9 {}",
            fmt_us(Some(p50)),
            fmt_us(Some(p99)),
            fmt_us(Some(p999))
        );
    }
    sampled
}

/// The refusal reasons counted during the run, with their counts (none at zero).
fn rejected_deltas(before: &Snapshot, after: &Snapshot) -> Vec<(String, u64)> {
    let rb = before.rejected();
    after
        .rejected()
        .into_iter()
        .map(|(r, v)| {
            let d = v - rb.get(&r).copied().unwrap_or(0);
            (r, d)
        })
        .filter(|(_, d)| *d > 0)
        .collect()
}

/// Envoy's decision counters, the filter's caches and memory.
fn print_counters(
    issued: u64,
    rejected: &[(String, u64)],
    result: &RunResult,
    before: &Snapshot,
    after: &Snapshot,
) {
    let rejected_total: u64 = rejected.iter().map(|(_, d)| d).sum();
    let reasons = if rejected.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = rejected.iter().map(|(r, d)| format!("{r}: {d}")).collect();
        format!(" ({})", each.join(", "))
    };
    println!("Envoy counters (delta): issued {issued}, rejected {rejected_total}{reasons}");
    let d = |name: &str| after.value(name) - before.value(name);
    println!(
        "filter caches (delta): OpTok hits {}, misses {}; minted tokens reused {}; distinct tokens seen by the client {}",
        d("wasmcustom.registry_token_optok_cache_hits_total"),
        d("wasmcustom.registry_token_optok_cache_misses_total"),
        d("wasmcustom.registry_token_mint_reused_total"),
        result.distinct_tokens
    );
    let vm = after.value("wasmcustom.registry_token_vm_memory_bytes");
    println!(
        "memory: largest VM {:.1} MiB; Envoy allocated {:.1} MiB, heap {:.1} MiB",
        vm as f64 / 1048576.0,
        after.value("server.memory_allocated") as f64 / 1048576.0,
        after.value("server.memory_heap_size") as f64 / 1048576.0
    );
}

fn mark(good: bool) -> &'static str {
    if good {
        "ok  "
    } else {
        "FAIL"
    }
}

/// Envoy's counter deltas against the client's answers (and, in the refusing modes,
/// every answer an expected refusal), one line each; whether all held.
fn checks(
    mode: Mode,
    result: &RunResult,
    issued: u64,
    rejected: &[(String, u64)],
    sampled: u64,
) -> bool {
    let (responses, ok) = (result.responses(), result.ok());
    let rejected_total: u64 = rejected.iter().map(|(_, d)| d).sum();
    let checks = [
        ("issued == client 200s", issued, ok),
        (
            "rejected == client non-200s",
            rejected_total,
            responses - ok,
        ),
        ("histogram samples == client answers", sampled, responses),
    ];
    let mut agree = true;
    println!();
    for (what, envoy, client) in checks {
        let good = envoy == client;
        agree &= good;
        println!("  {} {what}: Envoy {envoy}, client {client}", mark(good));
    }
    if result.transport_errors > 0 {
        println!(
            "  note: {} request(s) got no answer; Envoy may have counted them",
            result.transport_errors
        );
    }
    if result.bad_bodies > 0 {
        println!(
            "  FAIL {} 200 answer(s) carried no token",
            result.bad_bodies
        );
        agree = false;
    }
    if let Some(expected) = mode.expected_refusals() {
        agree &= refusal_checks(expected, result, rejected);
    } else if ok == 0 {
        println!("  FAIL no token was issued: check --authority-key, --query and --realm against the gateway's configuration");
        agree = false;
    }
    agree
}

/// The refusing modes: every answer should be one of the `expected` refusals, counted as
/// such, not as errors.
fn refusal_checks(expected: &[&str], result: &RunResult, rejected: &[(String, u64)]) -> bool {
    let responses = result.responses();
    let refused = result.statuses.get(&401).copied().unwrap_or(0);
    let all_refused = refused == responses && responses > 0;
    println!(
        "  {} every answer a 401: {refused} of {responses}",
        mark(all_refused)
    );
    let unexpected: Vec<String> = rejected
        .iter()
        .filter(|(r, _)| !expected.contains(&r.as_str()))
        .map(|(r, d)| format!("{r}: {d}"))
        .collect();
    println!(
        "  {} refusal reasons within {}{}",
        mark(unexpected.is_empty()),
        expected.join(" / "),
        if unexpected.is_empty() {
            String::new()
        } else {
            format!(": unexpected {}", unexpected.join(", "))
        }
    );
    if refused != responses {
        println!("  (hint: a 401 dpop_htu or dpop_iat means --realm or the clock; any other refusal means the OpToks were not accepted: check --authority-key)");
    }
    all_refused && unexpected.is_empty()
}
