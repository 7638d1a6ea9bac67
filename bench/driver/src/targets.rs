//! The targets of the edge-performance issue, each judged from a run's figures (a ratio
//! between figures of the same run), and the verdict of a run: whether it failed beyond
//! a target not met (a scenario that failed or whose counters disagree, a ledger that
//! lost a record).

use crate::render::fmt::{mib, us, usf};
use crate::results::{Figures, Results, Target};
use crate::stats::{median_added_us, median_pair, median_pull, paired_ratio};

/// Every grant at least this fraction of its in-Envoy crypto ceiling.
pub const CRYPTO_CEILING_TARGET: f64 = 0.85;
/// The gateway with the ledger on at least this fraction of without.
pub const LEDGER_ON_TARGET: f64 = 0.9;
/// A refused hostile proof costs at most this many cheap refusals (filter p99).
pub const HOSTILE_RATIO_LIMIT: f64 = 3.0;
/// A 10,000-rule catalogue at least this fraction of 10 rules.
pub const RULES_TARGET: f64 = 0.9;
/// p99 at half of the maximum rate, µs.
pub const P99_LIMIT_US: u32 = 5_000;
/// A large blob pull through the guard at least this fraction of the same pull without
/// the filter on `/v2` (issue 22).
pub const GUARD_PULL_TARGET: f64 = 0.95;
/// What the guard may add to a blob `GET` with a memoised token: Envoy CPU per request,
/// µs, against the same filter without the `guard` section. About ten hostcalls on this
/// machine (4–5 µs each); the guard's memoised path needs fewer (the request's headers
/// once, the clock, the identity headers).
pub const GUARD_ADDED_LIMIT_US: f64 = 50.0;
/// The filter module's size limit.
pub const WASM_LIMIT_BYTES: u64 = 1_500_000;
/// The scenarios held to [`CRYPTO_CEILING_TARGET`], in the report's order.
pub const CEILING_TARGETS: [&str; 7] = [
    "rs256",
    "password",
    "refresh",
    "dpop-rs256",
    "dpop-es256",
    "mtls",
    "es256",
];

impl Target {
    /// A target whose figures were not measured in this run (not met).
    pub fn not_measured(name: String) -> Target {
        Target {
            name,
            measured: "not measured".into(),
            pass: false,
        }
    }
}

/// Every target, judged from `r`'s figures.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    for key in CEILING_TARGETS {
        if let Some(target) = ceiling_target(r, key) {
            t.push(target);
        }
    }
    t.push(p99_target(r));
    t.push(rules_target(
        r,
        "rules-10k",
        "dpop-es256",
        "10,000 plan rules within 10% of 10 rules (DPoP, ES256 mint)",
    ));
    t.push(rules_target(
        r,
        "rules-10k-tenant",
        "dpop-es256",
        "10,000 `{tenant}` placeholder rules within 10% of 10 rules (DPoP, ES256 mint)",
    ));
    t.push(rules_target(
        r,
        "trust-3x100",
        "es256",
        "3 issuers and 100 trust policies within 10% of one Authority (ES256 mint)",
    ));
    t.push(ledger_target(r));
    t.push(hostile_target(r));
    t.push(memory_target(r));
    t.extend(guard_targets(r));
    let size = r.run.wasm_bytes;
    t.push(Target {
        name: "Wasm module ≤ 1.5 MB".into(),
        measured: format!("{size} bytes ({:.2} MB)", size as f64 / 1e6),
        pass: size > 0 && size <= WASM_LIMIT_BYTES,
    });
    t
}

/// Scenario `key` at least [`CRYPTO_CEILING_TARGET`] of its crypto ceiling; `None` when
/// the scenario was not part of the run.
fn ceiling_target(r: &Results, key: &str) -> Option<Target> {
    let sc = r.scenario_result(key)?;
    let name = format!("`{key}` ≥ {CRYPTO_CEILING_TARGET} × its in-Envoy crypto ceiling");
    Some(match (r.scenario(key), r.crypto_ceiling_of(sc)) {
        (Some(m), Some((ck, c))) => {
            let (ratio, rounds) = paired_ratio(m, c);
            Target {
                name,
                measured: format!(
                    "{:.0} tokens/s = {ratio:.2} × {:.0}/s (`{ck}`){}",
                    m.tokens_per_second(),
                    c.tokens_per_second(),
                    per_round(&rounds)
                ),
                pass: ratio >= CRYPTO_CEILING_TARGET,
            }
        }
        _ => Target::not_measured(name),
    })
}

/// p99 at half of the maximum rate of the sweep.
fn p99_target(r: &Results) -> Target {
    let name = "p99 ≤ 5 ms at half of the maximum rate (DPoP, RS256 mint)".to_string();
    match half_of_max(r) {
        Some(p) => {
            let p99 = p.figures.latency_us.p99.unwrap_or(u32::MAX);
            Target {
                name,
                measured: format!("p99 {} at {:.0}/s offered", us(Some(p99)), p.offered),
                pass: p99 <= P99_LIMIT_US,
            }
        }
        None => Target::not_measured(name),
    }
}

/// The sweep point at half of the maximum rate.
pub fn half_of_max(r: &Results) -> Option<&crate::results::SweepPoint> {
    r.sweep.iter().find(|p| (p.fraction - 0.5).abs() < 1e-9)
}

/// Scenario `key` within 10% of scenario `base`, the same path and signature work (10,000
/// rules against 10, trust policies against one Authority).
fn rules_target(r: &Results, key: &str, base: &str, name: &str) -> Target {
    let name = name.to_string();
    match (r.scenario(key), r.scenario(base)) {
        (Some(big), Some(small)) => {
            let (ratio, rounds) = paired_ratio(big, small);
            Target {
                name,
                measured: format!(
                    "{:.0} vs {:.0} tokens/s = {ratio:.2}{} (filter medians {} vs {})",
                    big.tokens_per_second(),
                    small.tokens_per_second(),
                    per_round(&rounds),
                    usf(big.filter_p50_us),
                    usf(small.filter_p50_us)
                ),
                pass: ratio >= RULES_TARGET,
            }
        }
        _ => Target::not_measured(name),
    }
}

/// The gateway with the ledger on against without (side by side), every decision in the
/// ledger (side by side and in `es256-ledger`).
fn ledger_target(r: &Results) -> Target {
    let name = format!(
        "ledger on ≥ {LEDGER_ON_TARGET} × off: decisions per CPU second of the whole Envoy, `es256-ledger` against `es256` side by side; every decision in the ledger"
    );
    let sequential = r.scenario("es256-ledger").map(|m| {
        m.ledger_rows
            .map_or((0, u64::MAX), |l| (l.rows, l.decisions))
    });
    if r.ledger_pairs.is_empty() {
        return Target::not_measured(name);
    }
    match median_pair(&r.ledger_pairs) {
        Ok((p, rounds, whole)) => {
            let (rows, decisions) = p
                .ledger_rows
                .map_or((0, u64::MAX), |l| (l.rows, l.decisions));
            let ratio = p.ratio();
            let sequential_whole = sequential.is_none_or(|(r, d)| r == d);
            Target {
                name,
                measured: format!(
                    "{:.0} vs {:.0} µs of Envoy CPU per decision = {ratio:.2}{}; ledger rows {rows} for {decisions} decisions{}{}",
                    p.test.cpu_us_per_decision(),
                    p.base.cpu_us_per_decision(),
                    per_round(&rounds),
                    if whole { "" } else { " (a round missed some)" },
                    match sequential {
                        Some((r, d)) => format!(", {r} for {d} in `es256-ledger`"),
                        None => String::new(),
                    }
                ),
                pass: ratio >= LEDGER_ON_TARGET && whole && sequential_whole,
            }
        }
        Err(e) => Target {
            name,
            measured: format!("failed: {e}"),
            pass: false,
        },
    }
}

/// Hostile over cheap refusals, filter p99 and p50, when both were measured.
pub fn hostile_ratio(r: &Results) -> Option<(f64, f64)> {
    let (h, c) = (r.scenario("hostile")?, r.scenario("cheap")?);
    let q = |h: Option<f64>, c: Option<f64>| match (h, c) {
        (Some(h), Some(c)) if c > 0.0 => Some(h / c),
        _ => None,
    };
    Some((
        q(h.filter_p99_us, c.filter_p99_us)?,
        q(h.filter_p50_us, c.filter_p50_us)?,
    ))
}

fn hostile_target(r: &Results) -> Target {
    let name = format!(
        "refused hostile proofs cost ≤ {HOSTILE_RATIO_LIMIT:.0}× a cheap refusal (filter p99)"
    );
    let (Some(h), Some(c), Some((p99, p50))) =
        (r.scenario("hostile"), r.scenario("cheap"), hostile_ratio(r))
    else {
        return Target::not_measured(name);
    };
    let expected = h.refusals_as_expected && c.refusals_as_expected;
    Target {
        name,
        measured: format!(
            "filter p99 {} vs {} = {p99:.2}× (p50 {} vs {} = {p50:.2}×){}",
            usf(h.filter_p99_us),
            usf(c.filter_p99_us),
            usf(h.filter_p50_us),
            usf(c.filter_p50_us),
            if expected {
                ""
            } else {
                "; NOT every answer was an expected 401"
            }
        ),
        pass: expected && p99 <= HOSTILE_RATIO_LIMIT,
    }
}

/// No growth over the last third of the memory run (which must last at least 300 s).
fn memory_target(r: &Results) -> Target {
    let soak = r.run.soak;
    let name =
        format!("Memory: no growth over a {soak}-second run at full load (VM memory reported)");
    let s = &r.soak.samples;
    if s.len() < 3 {
        return Target::not_measured(name);
    }
    // Reference: the first sample at or after two thirds of the run. Every structure is
    // bounded but some fill first: the OpTok cache (10,000 entries) within seconds, the
    // DPoP replay record in shared data over its three 60-second slots (180 s).
    let ref_t = soak * 2 / 3;
    let (Some(first), Some(last)) = (s.iter().find(|x| x.t >= ref_t && x.t > 0), s.last()) else {
        return Target::not_measured(name);
    };
    let slack = |b: u64| b as f64 * 1.05 + 2.0 * 1_048_576.0;
    let vm_ok = last.vm <= first.vm;
    let rss_ok = (last.rss as f64) <= slack(first.rss);
    let alloc_ok = (last.allocated as f64) <= slack(first.allocated);
    Target {
        name,
        measured: format!(
            "from {} s to {} s: VM {:.2} → {:.2} MiB, Envoy allocated {:.2} → {:.2} MiB, RSS {:.1} → {:.1} MiB",
            first.t,
            last.t,
            mib(first.vm),
            mib(last.vm),
            mib(first.allocated),
            mib(last.allocated),
            mib(first.rss),
            mib(last.rss)
        ),
        pass: vm_ok && rss_ok && alloc_ok && soak >= 300,
    }
}

/// Guard mode's two targets: what the guard adds to a memoised blob `GET` (Envoy CPU,
/// against the filter without it; against plain Envoy reported beside), and a large blob
/// pull's throughput against plain Envoy.
fn guard_targets(r: &Results) -> [Target; 2] {
    let get = format!(
        "guard: a blob GET with a memoised registry token costs ≤ {GUARD_ADDED_LIMIT_US:.0} µs of Envoy CPU more than through the filter without the guard (side by side)"
    );
    let pull = format!(
        "guard: a large blob pull through the guard ≥ {GUARD_PULL_TARGET} × through Envoy without the filter on /v2 (MB/s, both at once, median pair)"
    );
    let g = match &r.guard {
        None => return [Target::not_measured(get), Target::not_measured(pull)],
        Some(Err(e)) => {
            let failed = |name| Target {
                name,
                measured: format!("failed: {}", e.lines().next().unwrap_or("")),
                pass: false,
            };
            return [failed(get), failed(pull)];
        }
        Some(Ok(g)) => g,
    };
    let get = match median_added_us(&g.gets_filter) {
        Ok((p, added, rounds)) => Target {
            name: get,
            measured: format!(
                "{added:+.1} µs: {:.1} vs {:.1} µs per request{}; {}",
                p.test.cpu_us_per_decision(),
                p.base.cpu_us_per_decision(),
                per_round(&rounds),
                match median_added_us(&g.gets) {
                    Ok((_, whole, _)) => format!("{whole:+.1} µs against plain Envoy"),
                    Err(e) => format!("against plain Envoy: failed: {e}"),
                }
            ),
            pass: added <= GUARD_ADDED_LIMIT_US,
        },
        Err(e) => Target {
            name: get,
            measured: format!("failed: {e}"),
            pass: false,
        },
    };
    let pull = match median_pull(&g.pulls) {
        Ok((p, pairs)) => Target {
            name: pull,
            measured: format!(
                "{} MiB: {:.0} vs {:.0} MB/s = {:.2}{}; Envoy CPU {:.0} vs {:.0} ms per GiB",
                g.blob_bytes >> 20,
                p.mb_per_second(&p.test),
                p.mb_per_second(&p.base),
                p.ratio(),
                if pairs.is_empty() {
                    String::new()
                } else {
                    format!("; per pair {pairs}")
                },
                p.test.cpu_ms_per_gib(),
                p.base.cpu_ms_per_gib()
            ),
            pass: p.ratio() >= GUARD_PULL_TARGET,
        },
        Err(e) => Target {
            name: pull,
            measured: format!("failed: {e}"),
            pass: false,
        },
    };
    [get, pull]
}

/// `; per round …` for a target line (empty without rounds).
pub fn per_round(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("; per round {text}")
    }
}

/// What went wrong in a run beyond the targets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// A ledger's rows differ from the decisions or records it acknowledged, or a ledger
    /// measurement failed.
    pub ledger_lost: bool,
    /// A scenario failed, or its Envoy counters disagree with the load generator, or a
    /// refusing scenario got other answers.
    pub disagree: bool,
}

/// The run's [`Verdict`].
pub fn verdict(r: &Results) -> Verdict {
    let disagree = r.scenarios.iter().any(|s| {
        s.outcome
            .as_ref()
            .map_or(true, |m: &Figures| !m.agrees() || !m.refusals_as_expected)
    });
    let ledger_lost = r
        .scenarios
        .iter()
        .filter_map(|s| s.outcome.as_ref().ok()?.ledger_rows)
        .any(|l| !l.whole())
        || r.ledger_pairs.iter().any(|p| {
            p.as_ref()
                .map_or(true, |p| !p.whole() || p.ledger_rows.is_none())
        })
        || r.ingest.iter().any(|i| {
            i.outcome
                .as_ref()
                .map_or(true, |i| i.rows != i.acknowledged)
        });
    Verdict {
        ledger_lost,
        disagree,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::synthetic;
    use crate::results::{LedgerRows, SoakSample};

    fn find<'a>(t: &'a [Target], prefix: &str) -> &'a Target {
        t.iter()
            .find(|t| t.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no target {prefix}"))
    }

    #[test]
    fn the_synthetic_run_meets_what_it_was_made_to() {
        let r = synthetic();
        let t = targets(&r);
        assert_eq!(
            t.len(),
            17,
            "7 ceilings, p99, 2 rules, trust, ledger, hostile, memory, size, 2 guard"
        );
        let trust = find(&t, "3 issuers and 100 trust policies");
        assert!(trust.pass, "{trust:?}");
        assert!(
            trust.measured.starts_with("665 vs 700 tokens/s = 0.95"),
            "{trust:?}"
        );
        let rs = find(&t, "`rs256`");
        assert!(rs.pass, "{rs:?}");
        assert_eq!(
            rs.measured,
            "900 tokens/s = 0.90 × 1000/s (`crypto-rs`); per round 0.90 · 0.90 · 0.90"
        );
        let es = find(&t, "`es256`");
        assert!(!es.pass, "0.70 of its ceiling: {es:?}");
        assert!(find(&t, "`refresh`")
            .measured
            .contains("(`crypto-sign-rs`)"));
        assert!(find(&t, "p99").pass);
        assert!(find(&t, "10,000 plan rules").pass);
        assert!(find(&t, "ledger on").pass);
        assert!(find(&t, "refused hostile").pass);
        assert!(find(&t, "Memory").pass);
        assert!(find(&t, "Wasm module").pass);
        assert!(find(&t, "guard: a blob GET").pass);
        assert!(find(&t, "guard: a large blob pull").pass);
    }

    #[test]
    fn guard_targets_hold_the_median_to_the_limits() {
        use crate::render::tests::{pull_pair, synthetic_guard};
        let with = |f: &dyn Fn(&mut crate::results::Guard)| {
            let mut r = synthetic();
            let mut g = synthetic_guard();
            f(&mut g);
            r.guard = Some(Ok(g));
            targets(&r)
        };
        // Pulls at 0.94 · 0.96 · 0.90 of without: the median pair (0.94) misses 0.95.
        let t = with(&|g| {
            g.pulls = vec![
                Ok(pull_pair(100, 94)),
                Ok(pull_pair(100, 96)),
                Ok(pull_pair(100, 90)),
            ]
        });
        let pull = find(&t, "guard: a large blob pull");
        assert!(!pull.pass, "{pull:?}");
        assert!(
            pull.measured
                .contains("= 0.94; per pair 0.94 · 0.96 · 0.90"),
            "{pull:?}"
        );
        // One round adding 80 µs does not decide; two over the limit do.
        let rounds = |tests: [u64; 3]| {
            move |g: &mut crate::results::Guard| {
                g.gets_filter = tests
                    .iter()
                    .map(|t| Ok(crate::render::tests::pair(60, *t, false)))
                    .collect()
            }
        };
        assert!(find(&with(&rounds([70, 140, 72])), "guard: a blob GET").pass);
        let get = with(&rounds([115, 140, 72]));
        let get = find(&get, "guard: a blob GET");
        assert!(!get.pass, "{get:?}");
        assert!(
            get.measured.starts_with("+55.0 µs: 115.0 vs 60.0 µs"),
            "{get:?}"
        );
        let mut r = synthetic();
        r.guard = None;
        let t = targets(&r);
        assert_eq!(find(&t, "guard: a blob GET").measured, "not measured");
        assert!(!find(&t, "guard: a large blob pull").pass);
    }

    #[test]
    fn no_refresh_over_password_target() {
        // Issue 24: the probe's ceilings allow about 1.04× at most; refresh is held to
        // its own ceiling instead.
        let t = targets(&synthetic());
        assert!(!t.iter().any(|t| t.name.contains("password grant")));
        assert!(find(&t, "`refresh` ≥ 0.85 × its in-Envoy crypto ceiling").pass);
    }

    #[test]
    fn what_was_not_measured_is_not_met() {
        let mut r = synthetic();
        r.crypto.clear();
        r.sweep.clear();
        r.ledger_pairs.clear();
        r.soak.samples.truncate(2);
        let t = targets(&r);
        for prefix in ["`rs256`", "p99", "ledger on", "Memory"] {
            let x = find(&t, prefix);
            assert_eq!((x.measured.as_str(), x.pass), ("not measured", false));
        }
        r.scenarios.retain(|s| s.key != "mtls");
        assert!(!targets(&r).iter().any(|t| t.name.starts_with("`mtls`")));
    }

    #[test]
    fn memory_growth_in_the_last_third_fails() {
        let mut r = synthetic();
        if let Some(last) = r.soak.samples.last_mut() {
            *last = SoakSample {
                vm: last.vm + 65_536,
                ..*last
            };
        }
        assert!(!find(&targets(&r), "Memory").pass);
        let mut short = synthetic();
        short.run.soak = 200;
        assert!(!find(&targets(&short), "Memory").pass, "shorter than 300 s");
    }

    #[test]
    fn verdict_catches_lost_records_and_disagreement() {
        // The synthetic run's PostgreSQL ingest failed: that fails the run too.
        assert!(verdict(&synthetic()).ledger_lost);
        let mut r = synthetic();
        r.ingest.truncate(1);
        assert_eq!(verdict(&r), Verdict::default());
        let mut lost = r.clone();
        if let Some(Ok(p)) = lost.ledger_pairs.first_mut() {
            p.ledger_rows = Some(LedgerRows {
                rows: 1,
                decisions: 2,
            });
        }
        assert!(verdict(&lost).ledger_lost);
        assert!(!find(&targets(&lost), "ledger on").pass);
        let mut failed = r.clone();
        failed.scenarios[0].outcome = Err("Envoy did not start".into());
        assert!(verdict(&failed).disagree);
    }
}
