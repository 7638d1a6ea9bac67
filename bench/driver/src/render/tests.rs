//! The report rendered from a synthetic run: every section, the figures where they belong,
//! and the same sections, in the same order, as the committed `docs/PERFORMANCE.md`.

use std::collections::BTreeMap;

use super::{markdown, plot_link};
use crate::results::{
    Ceiling, Compared, ComparedScenario, Counters, Figures, Guard, HostcallPair, Ingest,
    IngestFigures, Latency, LedgerRows, Machine, Pair, PairSide, Pull, PullPair, Results,
    RevocationFeed, RunInfo, Soak, SoakSample, Speed, SweepPoint, FORMAT,
};
use crate::scenarios::{crypto_ceiling_of, scenarios, CRYPTO_CEILINGS};

/// Figures of `rate` tokens (or, `refusing`, 401s) per second over 10 s, the same in
/// each of 3 rounds, Envoy's counters agreeing, client p50/p99/p99.9 of 1000/2000/3000 µs
/// and a filter median and p99 of `filter` µs and 1.5 × that (none for the ceilings).
fn figures(rate: f64, refusing: bool, filter: Option<f64>) -> Figures {
    let n = (rate * 10.0) as u64;
    let status = if refusing { 401 } else { 200 };
    Figures {
        rounds: vec![rate; 3],
        elapsed: 10.0,
        statuses: BTreeMap::from([(status, n)]),
        transport_errors: 0,
        latency_us: Latency {
            p50: Some(1000),
            p99: Some(2000),
            p999: Some(3000),
        },
        filter_p50_us: filter,
        filter_p99_us: filter.map(|f| f * 1.5),
        counters: Some(Counters {
            issued: if refusing { 0 } else { n },
            rejected: if refusing { n } else { 0 },
            sampled: n,
            rejected_by_reason: if refusing {
                BTreeMap::from([("dpop_malformed".to_string(), n)])
            } else {
                BTreeMap::new()
            },
            optok_cache_hits: 0,
            optok_cache_misses: n,
            mint_reused: 0,
        }),
        refusals_as_expected: true,
        live_proofs: 0,
        ledger_rows: None,
    }
}

/// Each scenario's rate: every ceiling target met but `es256`'s (0.70).
fn rate_of(key: &str) -> f64 {
    match key {
        "rs256" => 900.0,
        "es256" => 700.0,
        "es256-ledger" => 650.0,
        "trust-3x100" => 665.0,
        "dpop-rs256" => 720.0,
        "dpop-es256" | "rules-10k-tenant" => 2500.0,
        "rules-10k" => 2300.0,
        "reuse" => 3000.0,
        "mtls" => 880.0,
        "password" => 870.0,
        "refresh" => 905.0,
        "hostile" => 6000.0,
        "cheap" => 7000.0,
        _ => 100.0,
    }
}

/// Each crypto ceiling's rate.
fn ceiling_rate(key: &str) -> f64 {
    match key {
        "crypto-rs" | "crypto-sign-rs" => 1000.0,
        "crypto-es" => 1000.0,
        "crypto-dpop-rs" => 800.0,
        "crypto-dpop-es" => 2600.0,
        _ => 900.0,
    }
}

/// A side-by-side pair of `base_us` and `test_us` of Envoy CPU per decision, 15,000
/// decisions each in 10 s, client p50 900 µs.
pub fn pair(base_us: u64, test_us: u64, ledger: bool) -> Pair {
    let side = |us: u64| PairSide {
        decisions: 15_000,
        cpu_ns: us * 1000 * 15_000,
        worker_ns: us * 990 * 15_000,
        seconds: 10.0,
        p50_us: Some(900),
    };
    Pair {
        base: side(base_us),
        test: side(test_us),
        ledger_rows: ledger.then_some(LedgerRows {
            rows: 15_000,
            decisions: 15_000,
        }),
    }
}

/// A pull pair at once over 0.25 s: `base` and `test` MiB, 100 and 120 ms of Envoy CPU
/// per 256 MiB (400 and 480 ms per GiB).
pub fn pull_pair(base: u64, test: u64) -> PullPair {
    let pull = |mib: u64, ms_per_256: u64| Pull {
        bytes: mib << 20,
        envoy_cpu_ns: ms_per_256 * 1_000_000 * mib / 256,
    };
    PullPair {
        seconds: 0.25,
        base: pull(base, 100),
        test: pull(test, 120),
    }
}

/// Guard mode: the guard adds 12 · 9 · 15 µs per GET to plain Envoy (median 12), 8 · 9 · 6
/// to the filter without it (median 8); its pulls are 0.98 · 0.96 · 1.02 of plain Envoy's
/// (median 0.98).
pub fn synthetic_guard() -> Guard {
    Guard {
        blob_bytes: 256 << 20,
        small_bytes: 4096,
        gets: vec![
            Ok(pair(60, 72, false)),
            Ok(pair(61, 70, false)),
            Ok(pair(60, 75, false)),
        ],
        gets_filter: vec![
            Ok(pair(70, 78, false)),
            Ok(pair(71, 80, false)),
            Ok(pair(70, 76, false)),
        ],
        pulls: vec![
            Ok(pull_pair(256, 250)),
            Ok(pull_pair(256, 246)),
            Ok(pull_pair(250, 256)),
        ],
    }
}

/// The hostcalls part: `crypto-es-host` adds 11 · 13 · 9 µs to `crypto-es` (median 11, over
/// 200 µs), `crypto-dpop-es-host` 18 · 21 · 16 to `crypto-dpop-es` (median 18, over 300).
pub fn synthetic_hostcalls() -> Vec<HostcallPair> {
    let of = |base: &str, test: &str, base_us: u64, tests: [u64; 3]| HostcallPair {
        base: base.into(),
        test: test.into(),
        work: format!("`{base}` + hostcalls"),
        rounds: tests.iter().map(|t| Ok(pair(base_us, *t, false))).collect(),
    };
    vec![
        of("crypto-es", "crypto-es-host", 200, [211, 213, 209]),
        of(
            "crypto-dpop-es",
            "crypto-dpop-es-host",
            300,
            [318, 321, 316],
        ),
    ]
}

/// A whole run made up: every part measured, every target but `es256`'s met.
pub fn synthetic() -> Results {
    let scenarios = scenarios()
        .into_iter()
        .map(|sc| {
            let refusing = sc.mode.expected_refusals().is_some();
            let filter = Some(if sc.key == "hostile" { 60.0 } else { 40.0 });
            let mut f = figures(rate_of(sc.key), refusing, filter);
            if sc.ledger {
                f.ledger_rows = Some(LedgerRows {
                    rows: 6500,
                    decisions: 6500,
                });
            }
            assert!(crypto_ceiling_of(&sc).is_none() || !refusing);
            sc.result(Ok(f))
        })
        .collect();
    let crypto = CRYPTO_CEILINGS
        .iter()
        .map(|(key, _, work)| Ceiling {
            key: key.to_string(),
            work: work.to_string(),
            outcome: Ok(figures(ceiling_rate(key), false, None)),
        })
        .collect();
    let sweep = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1]
        .into_iter()
        .map(|fraction| SweepPoint {
            fraction,
            offered: 720.0 * fraction,
            figures: Figures {
                latency_us: Latency {
                    p50: Some(1500),
                    p99: Some(if fraction < 1.0 { 2300 } else { 220_000 }),
                    p999: Some(250_000),
                },
                ..figures(720.0 * fraction, false, Some(1300.0))
            },
        })
        .collect();
    let soak = Soak {
        samples: (0..=10)
            .map(|i| SoakSample {
                t: i * 30,
                vm: if i == 0 { 0 } else { 1_245_184 },
                allocated: 26 << 20,
                heap: 58 << 20,
                rss: 131 << 20,
                tokens_per_second: if i == 0 { 0.0 } else { 3000.0 },
            })
            .collect(),
        result: Some(figures(3044.0, false, Some(250.0))),
    };
    Results {
        format: FORMAT,
        run: RunInfo {
            date: "2026-11-29 07:27 UTC".into(),
            command: "make bench".into(),
            machine: Machine {
                cpu: "AMD EPYC".into(),
                cores: 2,
                memory_kib: Some(24_641_536),
                kernel: "6.18.44".into(),
            },
            load_at_start: "0.56 0.82 1.01 1/123 4567".into(),
            envoy_version: "envoy version: 1.40.0".into(),
            openssl_version: "OpenSSL 3.0.22".into(),
            envoy_cpu: Some(0),
            client_cpu: Some(1),
            seconds: 10,
            warmup_seconds: 2,
            connections: 8,
            soak: 300,
            sweep_seconds: 8,
            optoks: 20_000,
            speed_seconds: 3,
            rounds: 3,
            elapsed_seconds: 1586.0,
            wasm_bytes: 1_472_180,
        },
        speed: Speed {
            rsa_sign: 1327.0,
            rsa_verify: 43_276.0,
            ec_sign: 32_961.0,
            ec_verify: 13_170.0,
            output: "rsa 2048 bits 0.000753s 0.000023s 1327.0 43276.0".into(),
        },
        ceiling: Some(figures(16_182.0, false, None)),
        crypto,
        scenarios,
        ledger_pairs: vec![
            Ok(pair(323, 340, true)),
            Ok(pair(323, 348, true)),
            Ok(pair(320, 337, true)),
        ],
        compared: Some(Compared {
            wasm: "target/old.wasm".into(),
            scenarios: vec![ComparedScenario {
                key: "es256".into(),
                rounds: vec![
                    Ok(pair(310, 288, false)),
                    Err("Envoy (compare-old) exited".into()),
                ],
            }],
        }),
        ingest: vec![
            Ingest {
                database: "SQLite".into(),
                outcome: Ok(IngestFigures {
                    records_per_second: 6241.0,
                    batches_per_second: 62.0,
                    batch_p50_us: Some(32_500),
                    batch_p99_us: Some(857_900),
                    failed: 0,
                    first_error: None,
                    rows: 79_800,
                    acknowledged: 79_800,
                }),
            },
            Ingest {
                database: "PostgreSQL".into(),
                outcome: Err("initdb not found\nmore".into()),
            },
        ],
        revocation_feed: Some(Ok(RevocationFeed {
            entries: 50_000,
            fill_seconds: 6.5,
            digest_bytes: 800_135,
            value_bytes: 1_720_090,
            build_ms: 180.0,
            serve_p50_us: 900,
            value_serve_ms: 150.0,
            gateway_load_us: Some(1100.0),
            gateway_loads: 2,
            vm_memory_bytes: 3 << 20,
            stale: false,
            tokens_per_second: 690.0,
            filter_p50_us: Some(41.0),
            filter_p99_us: Some(61.0),
            non_ok: 0,
        })),
        guard: Some(Ok(synthetic_guard())),
        hostcalls: Some(Ok(synthetic_hostcalls())),
        sweep,
        soak,
        targets: Vec::new(),
    }
}

/// The `## ` headings of a report, in order.
fn headings(md: &str) -> Vec<&str> {
    md.lines().filter(|l| l.starts_with("## ")).collect()
}

#[test]
fn every_section_with_its_figures() {
    let r = synthetic();
    let (md, targets) = markdown(&r, &Ok("performance-latency.png".into()));
    assert_eq!(
        headings(&md),
        [
            "## Run",
            "## Targets",
            "## Baselines (same run)",
            "## In-Envoy crypto ceilings (same run)",
            "## `/token` scenarios (one Envoy worker each)",
            "## The issuance ledger",
            "## A revocation list of 50,000 entries",
            "## Guard mode: the registry's route",
            "## This module against another build, side by side",
            "## Refused DPoP proofs: hostile against cheap",
            "## Where the time goes",
            "## Hostcalls: Envoy's share",
            "## Latency against offered load",
            "## Memory",
            "## How to read and reproduce",
        ]
    );
    assert!(md.starts_with("# Performance\n"));
    assert!(!md.contains("This was a short run"));
    assert_eq!(targets.len(), 17);
    assert_eq!(md.matches("| **met** |").count(), 16, "{md}");
    assert_eq!(md.matches("| **not met** |").count(), 1);
    for expected in [
        "| date | 2026-11-29 07:27 UTC |",
        "| command | `make bench` |",
        "| machine | AMD EPYC, 2 cores, 23.5 GiB, Linux 6.18.44 |",
        "| load average at start | 0.56 0.82 1.01 |",
        "| duration of the whole run | 1586 s |",
        "| `rs256` ≥ 0.85 × its in-Envoy crypto ceiling | 900 tokens/s = 0.90 × 1000/s (`crypto-rs`); per round 0.90 · 0.90 · 0.90 | **met** |",
        "| `es256` ≥ 0.85 × its in-Envoy crypto ceiling | 700 tokens/s = 0.70 × 1000/s (`crypto-es`); per round 0.70 · 0.70 · 0.70 | **not met** |",
        "| OpenSSL RSA-2048 sign | 1327 | `openssl speed -seconds 3 rsa2048`, one core |",
        "| Envoy `direct_response` ceiling | 16182 |",
        "| `crypto-rs` | verify RS256 (OpToken) + sign RS256 (token) | 1000 | 1000 · 1000 · 1000 | 1000 µs | 2000 µs |",
        "| `rs256` RS256 mint (Bearer, unbound RS256 OpTok) | 900 | 900 · 900 · 900 | 0.90 | 0.68 | 0.06 | 1000 µs | 2000 µs | 3000 µs | 40 µs | 60 µs | 0% | 0% | 0 | agree (9000 issued) |",
        "| 2 | 323 µs (320) | 348 µs (345) | 1500 · 1500 | 0.93 | 15000 / 15000 |",
        "against off, 0.95 in the median round",
        "`es256`: failed: Envoy (compare-old) exited",
        "| 2 | failed: Envoy (compare-old) exited | | | | |",
        "| SQLite | 6241 | 62 | 32.5 ms | 857.9 ms | 0 | 79800 / 79800 |",
        "| PostgreSQL | not measured: initdb not found | | | | | |",
        "| digest feed (`?form=digests`), bytes | 800135 (0.76 MiB; gateways take at most 1,604,096) |",
        "| a gateway worker takes the list (`registry_token_revocation_load_us`, mean of 2) | 1100 µs |",
        "| `/token` with the list in force | 690 tokens/s (`es256` without: 700) |",
        "| filter decision time with it, p50 / p99 | 41 µs / 61 µs (`es256` without: 40 µs / 60 µs) |",
        "| guard: a blob GET with a memoised registry token costs ≤ 50 µs of Envoy CPU more than through the filter without the guard (side by side) | +8.0 µs: 78.0 vs 70.0 µs per request; per round 8.0 · 9.0 · 6.0; +12.0 µs against plain Envoy | **met** |",
        "| guard: a large blob pull through the guard ≥ 0.95 × through Envoy without the filter on /v2 (MB/s, both at once, median pair) | 256 MiB: 1049 vs 1074 MB/s = 0.98; per pair 0.98 · 0.96 · 1.02; Envoy CPU 480 vs 400 ms per GiB | **met** |",
        "(where the filter passes every `/v2` request), 8 keep-alive connections each, for 10 s after 2 s of warm-up.",
        "| 1 | plain Envoy | 60.0 µs (59.4) | 72.0 µs (71.3) | +12.0 µs | 900 µs · 900 µs | 1500 · 1500 |",
        "| 3 | the filter without the guard | 70.0 µs (69.3) | 76.0 µs (75.2) | +6.0 µs | 900 µs · 900 µs | 1500 · 1500 |",
        "Median rounds: the guard adds 12.0 µs of Envoy CPU per request to plain Envoy, 8.0 µs to the filter without it.",
        "**A large blob pull**: 256 MiB of random bytes",
        "| 1 | 0.25 s | 1074 | 1049 | 0.977 | 400 · 480 ms |",
        "| 3 | 0.25 s | 1049 | 1074 | 1.024 | 400 · 480 ms |",
        "Median pair: 0.98 × plain Envoy's throughput.",
        "| `hostile` | 6000 | 1000 µs | 2000 µs | 60 µs | 90 µs | 60000 (dpop_malformed: 60000) | yes, counters agree |",
        "hostile / cheap: filter p99 1.50×, filter p50 1.50× (target: p99 ≤ 3×).",
        "| Envoy alone (`direct_response`), per request | 62 |",
        "![latency against offered load](performance-latency.png)",
        "| 360/s | 50% | 360/s | 1500 µs | 2300 µs | 250.0 ms | 1950 µs |",
        "| 300 | 3000 | 1.19 MiB | 26.00 MiB | 58.00 MiB | 131.0 MiB |",
        "30440 tokens in 10 s (3044/s), p99 2000 µs, non-200 0, transport errors 0; Envoy counters agree.",
    ] {
        assert!(md.contains(expected), "missing {expected:?} in\n{md}");
    }
    assert!(
        !md.contains("refresh grant ≥"),
        "the old refresh/password target is gone"
    );
}

#[test]
fn hostcalls_section_has_the_median_added_and_every_round() {
    let r = synthetic();
    let (md, _) = markdown(&r, &Ok("performance-latency.png".into()));
    let at = md
        .find("## Hostcalls: Envoy's share\n")
        .expect("the section");
    let section = &md[at..md[at..].find("\n## Latency").map_or(md.len(), |e| at + e)];
    for expected in [
        "8 connections each, for 10 s after 2 s of warm-up",
        "| pair | added per round | median added | Envoy CPU per request in the median round, first · second |",
        "| `crypto-es` → `crypto-es-host` | +11.0 µs · +13.0 µs · +9.0 µs | **+11.0 µs** | 200.0 · 211.0 µs |",
        "| `crypto-dpop-es` → `crypto-dpop-es-host` | +18.0 µs · +21.0 µs · +16.0 µs | **+18.0 µs** | 300.0 · 318.0 µs |",
        "- `crypto-dpop-es-host`: `crypto-dpop-es` + hostcalls",
    ] {
        assert!(section.contains(expected), "missing {expected:?} in\n{section}");
    }
    // Absent (not asked for, or a results file from before the part): said so.
    let mut absent = synthetic();
    absent.hostcalls = None;
    let (md, _) = markdown(&absent, &Err("no plot".into()));
    assert!(md.contains(
        "## Hostcalls: Envoy's share\n\nNot measured in this run (`--only hostcalls` measures it alone).\n"
    ));
    assert!(!md.contains("median added"));
    // Failed as a whole, or in one round.
    let mut failed = synthetic();
    failed.hostcalls = Some(Err("probe.wasm: not found\nmore".into()));
    let (md, _) = markdown(&failed, &Err("no plot".into()));
    assert!(md.contains("## Hostcalls: Envoy's share\n\nNot measured: probe.wasm: not found\n"));
    let mut one_failed = synthetic();
    if let Some(Ok(pairs)) = one_failed.hostcalls.as_mut() {
        pairs[0].rounds[1] = Err("pair-crypto-es: 0 of 9 answers were 200s | x".into());
    }
    let (md, _) = markdown(&one_failed, &Err("no plot".into()));
    assert!(md.contains(
        "| `crypto-es` → `crypto-es-host` | +11.0 µs · failed · +9.0 µs | failed: pair-crypto-es: 0 of 9 answers were 200s / x | - |"
    ), "{md}");
    assert!(md.contains("| **+18.0 µs** | 300.0 · 318.0 µs |"));
}

#[test]
fn missing_parts_say_so() {
    let mut r = synthetic();
    r.run.seconds = 2;
    r.run.soak = 10;
    r.sweep.clear();
    r.soak = Soak::default();
    r.compared = None;
    r.ingest.clear();
    r.ledger_pairs.clear();
    r.scenarios.retain(|s| s.key != "es256-ledger");
    r.revocation_feed = None;
    r.guard = None;
    let (md, _) = markdown(&r, &Err("no sweep data".into()));
    assert!(md.contains("> **This was a short run** (2 s per scenario, 10 s memory run)"));
    assert!(md.contains("Not measured (the `dpop-rs256` scenario failed)."));
    assert!(md.contains("Not measured (`--soak 0`)."));
    assert!(!md.contains("## The issuance ledger"));
    assert!(!md.contains("## This module against another build"));
    assert!(!md.contains("## A revocation list"));
    assert!(!md.contains("## Guard mode"));
    let mut failed = synthetic();
    failed.revocation_feed = Some(Err("the gateway did not take the list\nmore".into()));
    let (md, _) = markdown(&failed, &Err("no plot".into()));
    assert!(md.contains("## A revocation list of 50,000 entries\n\nNot measured: the gateway did not take the list\n"));
    failed.guard = Some(Err("docker-registry exited (1):\nlog".into()));
    let (md, _) = markdown(&failed, &Err("no plot".into()));
    assert!(md.contains(
        "## Guard mode: the registry's route\n\nNot measured: docker-registry exited (1):\n"
    ));
    assert!(md.contains("| failed: docker-registry exited (1): | **not met** |"));
    let mut one_failed = synthetic();
    if let Some(Ok(g)) = one_failed.guard.as_mut() {
        g.pulls.push(Err("GET /v2/…: body cut short".into()));
    }
    let (md, _) = markdown(&one_failed, &Err("no plot".into()));
    assert!(md.contains("| 4 | failed: GET /v2/…: body cut short | | | | |"));
    assert!(md.contains("| failed: GET /v2/…: body cut short | **not met** |"));
    assert!(!md.contains("Median pair:"));
    let (md, _) = markdown(&synthetic(), &Err("gnuplot: not found".into()));
    assert!(md.contains("(plot not produced: gnuplot: not found)"));
}

#[test]
fn the_committed_report_has_these_sections_in_this_order() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/PERFORMANCE.md"
    ))
    .expect("docs/PERFORMANCE.md");
    let (md, _) = markdown(&synthetic(), &Ok("performance-latency.png".into()));
    let ours = headings(&md);
    // Every section of the committed report, in the renderer's order (a run without
    // --compare-wasm or the ledger has fewer).
    let mut at = 0;
    for h in headings(&committed) {
        let i = ours[at..]
            .iter()
            .position(|o| *o == h)
            .unwrap_or_else(|| panic!("{h:?} is not rendered (or out of order)"));
        at += i + 1;
    }
}

#[test]
fn plot_links_are_relative_to_the_report() {
    use std::path::Path;
    assert_eq!(
        plot_link(
            Path::new("docs/PERFORMANCE.md"),
            Path::new("docs/performance-latency.png")
        ),
        "performance-latency.png"
    );
    assert_eq!(
        plot_link(Path::new("/tmp/q/P.md"), Path::new("/elsewhere/p.png")),
        "/elsewhere/p.png"
    );
}
