//! The report's closing sections: where the time of a request goes, latency against
//! offered load, memory over a long run, how to reproduce.

use std::fmt::Write as _;

use super::fmt::{mib, us, usf};
use super::{out, PlotLink};
use crate::results::Results;

/// Per-request cost breakdown from this run's figures, and what it implies for the ratio
/// targets.
pub fn where_time_goes(o: &mut String, r: &Results) {
    let p50 = |k: &str| r.scenario(k).and_then(|m| m.filter_p50_us);
    let per = |k: &str| {
        r.scenario(k)
            .map(|m| m.tokens_per_second())
            .filter(|v| *v > 0.0)
            .map(|v| 1e6 / v)
    };
    let ceiling = r.ceiling.as_ref().map_or(0.0, |c| c.tokens_per_second());
    let speed = &r.speed;
    if ceiling <= 0.0 || speed.rsa_sign <= 0.0 {
        return;
    }
    let base = 1e6 / ceiling;
    let rsa_sign = 1e6 / speed.rsa_sign;
    let ec_sign = 1e6 / speed.ec_sign;
    let ec_verify = 1e6 / speed.ec_verify;
    out!(o, "## Where the time goes\n");
    out!(
        o,
        "Per request, one worker (µs; *filter* is the median of the filter's own histogram, \
         *per request* is 1 / throughput):\n"
    );
    out!(o, "| | µs |\n|---|---:|");
    out!(
        o,
        "| Envoy alone (`direct_response`), per request | {base:.0} |"
    );
    out!(o, "| OpenSSL RSA-2048 sign / ECDSA P-256 sign / P-256 verify | {rsa_sign:.0} / {ec_sign:.0} / {ec_verify:.0} |");
    for k in ["rs256", "es256", "dpop-rs256", "dpop-es256", "reuse"] {
        if let (Some(f), Some(p)) = (p50(k), per(k)) {
            out!(o, "| `{k}`: filter / per request | {f:.0} / {p:.0} |");
        }
    }
    if let (Some(rs), Some(es)) = (p50("rs256"), p50("es256")) {
        let host_rsa = rs - es + ec_sign;
        out!(
            o,
            "\nThe only difference between `rs256` and `es256` is the minting signature, so an \
             RS256 signature through Envoy's `sign` foreign function costs about {host_rsa:.0} µs \
             here ({:.1} × OpenSSL's {rsa_sign:.0} µs for the same operation). The foreign \
             function receives the key as DER on every call; the extra time is consistent with \
             the key being imported and its RSA precomputation redone per call (the filter \
             parses and converts its key once per VM, but the host API offers no key handle). \
             With one worker, RS256 minting is therefore bounded near {:.0} tokens/s = {:.2} × \
             OpenSSL's sign rate before anything else is done (the in-Envoy crypto ceilings \
             above measure exactly that), while OpenSSL alone would allow {:.0} µs per request \
             at 0.7 × its rate. Mint reuse (`reuse`) or ES256 minting are the levers that \
             exist inside the filter.",
            host_rsa / rsa_sign,
            1e6 / (host_rsa + base),
            (1e6 / (host_rsa + base)) / speed.rsa_sign,
            1e6 / (0.7 * speed.rsa_sign)
        );
    }
    let floor = base + ec_verify + ec_sign;
    out!(
        o,
        "\nThe DPoP ES256 path cannot avoid one P-256 verification (the proof) and one P-256 \
         signature (the token) per request: with Envoy's own per-request cost that is at least \
         {floor:.0} µs = {:.2} × the ceiling at OpenSSL speed, before any parsing, JSON or \
         host call, and {:.0} µs more for the RS256 verification of an OpToken the OpTok cache \
         has not seen. What the filter adds beyond Envoy alone shows as *per request* minus \
         *filter* minus {base:.0} µs above (the Wasm context, header and reply hostcalls).\n",
        base / floor,
        1e6 / speed.rsa_verify,
    );
    taken_apart(o);
}

/// The filter's own work per request taken apart, before and after the cuts of the
/// ES256 issue (not this run: measured on 7 December 2026 on this machine, each figure
/// with the command that gives it again).
fn taken_apart(o: &mut String) {
    out!(
        o,
        "### The filter's own work, taken apart\n\n\
         Not this run: measured on 7 December 2026, before (`fe622ff`) and after the cuts of \
         the ES256 issue, each with the command that repeats it. **The decision core**, \
         instructions per request counted by callgrind (`bench/cost/stages.sh [CHECKOUT]`: \
         the bench's requests through the core, signatures accepted unchecked, SHA-256 in \
         its portable code as in the module), and its time under Node's V8 warm \
         (`node bench/cost/run.mjs`, median of three runs):\n"
    );
    out!(
        o,
        "| stage | `es256` before | after | `dpop-es256` before | after | what changed |\n\
         |---|---:|---:|---:|---:|---|\n\
         | credentials | 8.8k | 8.8k | 8.9k | 8.8k | |\n\
         | OpToken | 81.3k | 39.7k | 90.7k | 44.3k | the OpTok memo keyed by a SipHash-2-4 of the token under a per-VM secret, each entry keeping its verification context, not by a SHA-256 of the token and another of both: no SHA-256 of an unbound OpToken |\n\
         | sender (DPoP) | - | - | 75.6k | 106.0k | the OpToken's SHA-256 is now taken here, for `ath` only (+40k); the proof key's point encoded once and its thumbprint written directly (−8k); the realm's own `htu` spelling recognised without parsing (−4k) |\n\
         | mint and reply | 28.7k | 28.7k | 31.8k | 30.8k | |\n\
         | audit line | 10.6k | 10.6k | 12.0k | 12.0k | |\n\
         | the whole decision | 132.6k | 90.9k | 221.8k | 204.8k | −31 % and −8 % |\n\
         | under V8, warm | 13.7 µs | 11.2 µs | 24.4 µs | 23.3 µs | |\n"
    );
    out!(
        o,
        "Around the core, the glue makes two hostcalls fewer per request: the decision's \
         clock is the one read when the headers arrived (a request answered in that \
         callback), and a token's `jti` comes from a per-VM CSPRNG seeded once (no WASI \
         `random_get` per request); the DPoP replay record is searched and extended in the \
         bytes shared data returns (no entry list decoded and encoded again). *This module \
         against another build* above (`--compare-wasm`) gives what all of it buys in Envoy. \
         After the run of 7 December (module 1,500,704 bytes, over the 1.5 MB target by 704), \
         commit `031f26c` folded the key's thumbprint input and SPKI into one function: \
         1,499,487 bytes, side by side with the module measured 1.00 and 0.99 (`es256`), \
         1.00 and 1.00 (`dpop-es256`) of its decisions per CPU second.\n"
    );
    out!(
        o,
        "**In Envoy**, a CPU profile of the worker (`perf record -e cpu-clock -p PID` while a \
         scenario runs; Envoy's binary has no symbols, the Wasm code shows as `[JIT]`), per \
         request: `dpop-es256` before the cuts 309 µs (3,240 tokens/s): Wasm code 61 µs, \
         Envoy 215 µs, kernel 25 µs, libc 7 µs; its probe `crypto-dpop-es` 197 µs: Wasm \
         5 µs, Envoy 169 µs, kernel 19 µs. After the cuts `dpop-es256` 278 µs: Wasm 54 µs; \
         `es256` 192 µs: Wasm 35 µs, Envoy 131 µs, kernel 21 µs. The filter's Wasm code runs \
         about three times as long in Envoy as the same work warm under Node's V8 (35 µs \
         against 11 µs and a little glue): between two requests, Envoy's own work (HTTP, \
         BoringSSL, the kernel's sockets) evicts its code and data from the CPU caches.\n"
    );
    out!(
        o,
        "**Envoy's share and the 0.85 targets.** What the filter's hostcalls other than its \
         signatures cost Envoy is measured in *Hostcalls: Envoy's share* below: about 16 µs \
         per request for an `es256` request's ten, about 20 µs with the DPoP replay record's \
         read and compare-and-swap (on 7 December, three runs of three rounds: 12.2–18.5 \
         and 15.9–23.0 µs; about 1.5 µs per hostcall, 5 µs for the shared-data pair). A filter doing \
         no computation at all would therefore reach about 0.90 of `crypto-es` and 0.91 of \
         `crypto-dpop-es`; the 0.85 targets leave its Wasm code about 10 µs (`es256`) and \
         20 µs (`dpop-es256`) of Envoy CPU per request, against the 35 µs and 54 µs it \
         takes (the probe's module takes 3–5 µs of them). Meeting them needs the \
         module's own execution cut by about two thirds \
         (for instance JSON without `serde_json::Value` and without allocation on the \
         path, and the per-request glue folded into fewer callbacks), not hostcalls: \
         a cut of every hostcall the filter can avoid (the cache counters, the filter-state \
         copy of the audit line) saves at most 4 µs.\n"
    );
}

/// Latency against offered load: the plot and its table.
pub fn sweep(o: &mut String, r: &Results, plot: &PlotLink) {
    out!(o, "## Latency against offered load\n");
    if r.sweep.is_empty() {
        out!(o, "Not measured (the `dpop-rs256` scenario failed).\n");
        return;
    }
    out!(
        o,
        "`dpop-rs256` (the target-1 path), open loop: requests are sent at the offered rate \
         whatever the answers do, and latency counts from the intended send time, so queueing \
         shows. {} s per point, {} connections.\n",
        r.run.sweep_seconds,
        r.run.connections
    );
    match plot {
        Ok(link) => out!(o, "![latency against offered load]({link})\n"),
        Err(e) => out!(o, "(plot not produced: {e})\n"),
    }
    out!(o, "| offered | of max | achieved | p50 | p99 | p99.9 | filter p99 |\n|---:|---:|---:|---:|---:|---:|---:|");
    for p in &r.sweep {
        let m = &p.figures;
        out!(
            o,
            "| {:.0}/s | {:.0}% | {:.0}/s | {} | {} | {} | {} |",
            p.offered,
            p.fraction * 100.0,
            m.tokens_per_second(),
            us(m.latency_us.p50),
            us(m.latency_us.p99),
            us(m.latency_us.p999),
            usf(m.filter_p99_us)
        );
    }
    out!(o);
}

/// Memory over the long run.
pub fn memory(o: &mut String, r: &Results) {
    out!(o, "## Memory\n");
    let samples = &r.soak.samples;
    if samples.is_empty() {
        out!(o, "Not measured (`--soak 0`).\n");
        return;
    }
    out!(
        o,
        "`dpop-es256` at full load (closed loop) for {} s; every DPoP proof new (signed on \
         the fly by the load generator), OpTokens cycled over {} distinct ones (when more than the \
         OpTok cache holds, 10,000, it is full and evicting throughout). *VM* is the \
         filter's gauge `registry_token_vm_memory_bytes` (the Wasm linear memory of the VM \
         serving requests); *allocated*/*heap* are Envoy's `server.memory_allocated` / \
         `server.memory_heap_size`; *RSS* is the Envoy process's. The memory target is judged \
         on the last third of the run: the DPoP replay record (Envoy shared data, three \
         60-second slots of at most 1,048,576 proofs each over 1,024 shards, 16 bytes per proof) \
         grows during the first 180 s by design and is rewritten in place after that. That \
         record also bounds the sustained DPoP rate of one Envoy process to about \
         1,048,576 / 60 ≈ 17,476 proofs/s: \
         above it, proofs are refused with 503 `dpop_replay_unavailable` (fail closed), which \
         the non-200 count below shows when the load exceeds it.\n",
        r.run.soak,
        r.run.optoks
    );
    out!(
        o,
        "| t (s) | tokens/s | VM | allocated | heap | RSS |\n|---:|---:|---:|---:|---:|---:|"
    );
    let n = samples.len();
    for (i, s) in samples.iter().enumerate() {
        // Keep the table short: about 12 rows.
        if n > 14 && i != 0 && i != n - 1 && i % n.div_ceil(12) != 0 {
            continue;
        }
        out!(
            o,
            "| {} | {:.0} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.1} MiB |",
            s.t,
            s.tokens_per_second,
            mib(s.vm),
            mib(s.allocated),
            mib(s.heap),
            mib(s.rss)
        );
    }
    if let Some(m) = &r.soak.result {
        out!(
            o,
            "\n{} tokens in {:.0} s ({:.0}/s), p99 {}, non-200 {}, transport errors {}; Envoy counters {}.\n",
            m.ok(),
            m.elapsed,
            m.tokens_per_second(),
            us(m.latency_us.p99),
            m.non_ok(),
            m.transport_errors,
            if m.agrees() { "agree" } else { "DISAGREE" }
        );
    }
}

/// How to read and reproduce.
pub fn reproduce(o: &mut String) {
    out!(o, "## How to read and reproduce\n");
    out!(
        o,
        "- `make bench` (defaults: `--seconds 10 --connections 8 --soak 300 --sweep-seconds 8 --optoks 20000 --rounds 3`, about 25 minutes); \
         `make bench BENCH_ARGS=\"--seconds 3 --soak 30 --sweep-seconds 3 --optoks 3000 --rounds 1\"` for a quick look. \
         It installs what it needs (gnuplot-nox), builds the module and the load generator, makes throw-away keys under `target/bench/`, \
         and overwrites this file, `docs/performance-latency.png` and `docs/performance-results.json` (every figure, round and target of the run; \
         `target/release/bench --help` lists the options).\n\
         - `make bench BENCH_ARGS=\"--only guard\"` measures guard mode alone (about 2 minutes; `docker-registry` from `make apt-deps`): \
         its two targets, the others marked not measured (add `--out target/bench/guard.md` to leave this file alone); `--guard-mib` sets the pulled blob's size (default 256).\n\
         - `make bench BENCH_ARGS=\"--only hostcalls\"` measures the hostcalls' weight alone (pairs of probe modules side by side, about 2 minutes), \
         the rest marked not measured (add `--out target/bench/hostcalls.md` to leave this file alone).\n\
         - `target/release/bench render` writes this file again from `docs/performance-results.json` without measuring anything; \
         `target/release/bench compare OLD.json NEW.json` lists the ratio of every figure two runs both measured.\n\
         - The machine must be otherwise idle: the load generator shares it with Envoy, and other work on it lowers every figure.\n\
         - `make load` drives a running gateway (`make run`) the same way and checks Envoy's counters against what it saw.\n\
         - Scenario configurations: `bench/envoy/*.yaml.in`, filled in by the bench (plugin configuration in `bench/driver/src/scenarios.rs`)."
    );
}
