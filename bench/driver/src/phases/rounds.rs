//! The alternating rounds: in each, the in-Envoy crypto ceilings (what each path's
//! signature work alone allows), the `/token` scenarios, the ledger's cost side by side
//! and `--compare-wasm`. Every figure is the median round ([`median_round`]), so that a
//! slow minute of this shared machine moves a ratio less.

use std::path::Path;

use crate::measure::{
    measure, plain_figures, print_line, run_plain, target_for, Load, WARMUP_SECONDS,
};
use crate::pair::{compare_pair, ledger_pair, print_pair};
use crate::procs::{
    fresh_sqlite, ledger_rows, start_bench_ledger, start_probe_envoy, start_token_envoy,
};
use crate::results::{Ceiling, Compared, ComparedScenario, Figures, Outcome, Pair, ScenarioResult};
use crate::scenarios::{scenario_path, scenarios, Scenario, CRYPTO_CEILINGS};
use crate::stats::median_round;
use crate::step;

use super::{display_relative, probe_module, Bench};

/// What the rounds measured, median rounds.
pub struct Rounds {
    /// The crypto ceilings.
    pub crypto: Vec<Ceiling>,
    /// The scenarios.
    pub scenarios: Vec<ScenarioResult>,
    /// Every round of the ledger's cost.
    pub ledger_pairs: Vec<Outcome<Pair>>,
    /// `--compare-wasm`.
    pub compared: Option<Compared>,
}

/// Every round; an error when the probe module is missing.
pub fn rounds(b: &Bench<'_>) -> Result<Rounds, String> {
    let s = b.s;
    let want_crypto = s.want("crypto") || CRYPTO_CEILINGS.iter().any(|(k, ..)| s.want(k));
    let probe = if want_crypto {
        Some(probe_module(s)?)
    } else {
        None
    };
    let mut crypto: Vec<(usize, Vec<Outcome<Figures>>)> = Vec::new();
    let mut measured: Vec<(Scenario, Vec<Outcome<Figures>>)> = Vec::new();
    let mut ledger_pairs = Vec::new();
    let mut compared: Vec<ComparedScenario> = s
        .compare
        .iter()
        .map(|k| ComparedScenario {
            key: k.to_string(),
            rounds: Vec::new(),
        })
        .collect();
    for round in 1..=s.rounds {
        let of_rounds = if s.rounds > 1 {
            format!(" (round {round} of {})", s.rounds)
        } else {
            String::new()
        };
        if let Some(probe) = &probe {
            step(&format!("in-Envoy crypto ceilings: the probe module, signature work only (sign/verify_signature){of_rounds}"));
            crypto_round(b, probe, &mut crypto);
        }
        if scenarios().iter().any(|sc| s.want(sc.key)) {
            step(&format!(
                "/token scenarios, {} s each after {WARMUP_SECONDS} s of warm-up, {} connections, closed loop{of_rounds}",
                s.seconds, s.connections
            ));
            scenario_round(b, &mut measured);
        }
        if s.want("es256-ledger") {
            step(&format!("the ledger's cost: `es256` and `es256-ledger` side by side on one CPU, {} s after {WARMUP_SECONDS} s of warm-up{of_rounds}", s.seconds));
            let r = ledger_pair(
                &b.ctx,
                &b.material,
                &b.pools,
                &s.ledger,
                b.client_cpu,
                s.seconds,
            );
            print_pair("ledger-pair", &r);
            ledger_pairs.push(r);
        }
        if let Some(old) = &s.compare_wasm {
            compare_round(b, old, &of_rounds, &mut compared);
        }
    }
    Ok(Rounds {
        crypto: crypto
            .into_iter()
            .map(|(i, all)| Ceiling {
                key: CRYPTO_CEILINGS[i].0.to_string(),
                work: CRYPTO_CEILINGS[i].2.to_string(),
                outcome: median_round(all),
            })
            .collect(),
        scenarios: measured
            .into_iter()
            .map(|(sc, all)| sc.result(median_round(all)))
            .collect(),
        ledger_pairs,
        compared: s.compare_wasm.as_deref().map(|old| Compared {
            wasm: display_relative(old),
            scenarios: compared,
        }),
    })
}

/// Adds `r` to the rounds of `key` (in first-seen order).
fn push<K: PartialEq, T>(all: &mut Vec<(K, Vec<T>)>, key: K, r: T) {
    match all.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => v.push(r),
        None => all.push((key, vec![r])),
    }
}

/// One round of the crypto ceilings asked for.
fn crypto_round(b: &Bench<'_>, probe: &Path, all: &mut Vec<(usize, Vec<Outcome<Figures>>)>) {
    for (i, (key, ops, _)) in CRYPTO_CEILINGS.iter().enumerate() {
        if !b.s.want("crypto") && !b.s.want(key) {
            continue;
        }
        let r = (|| -> Outcome<Figures> {
            let e = start_probe_envoy(&b.ctx, &b.material, probe, key, ops)?;
            let result = run_plain(
                &b.ctx,
                &b.material,
                e.listen_port(),
                b.pools.bearer.clone(),
                b.s.seconds,
            )?;
            if result.ok() < result.responses() {
                return Err(format!(
                    "the probe answered {} of {} requests with an error (see {}/{key}.log)",
                    result.responses() - result.ok(),
                    result.responses(),
                    b.ctx.work.display()
                ));
            }
            Ok(plain_figures(&result))
        })();
        match &r {
            Ok(m) => println!(
                "    {key:<15} {:>8.0} answers/s  p50 {} µs  p99 {} µs",
                m.tokens_per_second(),
                m.latency_us.p50.unwrap_or(0),
                m.latency_us.p99.unwrap_or(0)
            ),
            Err(e) => println!("    {key:<15} FAILED: {e}"),
        }
        push(all, i, r);
    }
}

/// One scenario measured once: its own Envoy (and ledger), warm-up, the run.
fn scenario_once(b: &Bench<'_>, sc: &Scenario) -> Outcome<Figures> {
    // The ledger on the load generator's CPU, at the lowest priority there: a service of
    // its own (elsewhere in production), neither the gateway's work nor a thief of the
    // load generator's time.
    let ledger = if sc.ledger {
        let db = fresh_sqlite(&b.ctx.work, sc.key)?;
        Some(start_bench_ledger(
            &b.ctx,
            &b.material,
            &b.s.ledger,
            &db,
            b.client_cpu,
            true,
        )?)
    } else {
        None
    };
    let e = start_token_envoy(&b.ctx, &b.material, sc, ledger.as_ref())?;
    let target = target_for(&b.material, e.listen_port(), sc.mode)?;
    let mut m = measure(
        &b.ctx,
        Load {
            target: &target,
            admin: &e.admin,
            mode: sc.mode,
            pool: b.pools.get(sc.mode),
            use_optoks: sc.optoks,
            path: &scenario_path(sc),
            seconds: b.s.seconds,
            rate: None,
            expect_rate: 4000,
            warmup: true,
        },
    )?;
    if let Some(l) = &ledger {
        m.ledger_rows = Some(ledger_rows(l, &m.after)?);
    }
    Ok(m.figures(sc.mode))
}

/// One round of the scenarios asked for.
fn scenario_round(b: &Bench<'_>, all: &mut Vec<(Scenario, Vec<Outcome<Figures>>)>) {
    for sc in scenarios().into_iter().filter(|s| b.s.want(s.key)) {
        let r = scenario_once(b, &sc);
        let refusing = sc.mode.expected_refusals();
        match &r {
            Ok(m) => {
                print_line(sc.key, refusing.is_some(), m);
                if let Some(l) = m.ledger_rows {
                    println!(
                        "    {:<12} ledger rows {} for {} decisions Envoy counted",
                        "", l.rows, l.decisions
                    );
                }
                if !m.refusals_as_expected {
                    println!(
                        "    {:<12} UNEXPECTED answers: not every one a 401 {:?}",
                        sc.key,
                        refusing.unwrap_or_default()
                    );
                }
            }
            Err(e) => println!("    {:<12} FAILED: {e}", sc.key),
        }
        match all.iter_mut().find(|(s, _)| s.key == sc.key) {
            Some((_, v)) => v.push(r),
            None => all.push((sc, vec![r])),
        }
    }
}

/// One round of `--compare-wasm`.
fn compare_round(b: &Bench<'_>, old: &Path, of_rounds: &str, all: &mut [ComparedScenario]) {
    step(&format!(
        "this module against {}, side by side on one CPU, {} s after {WARMUP_SECONDS} s of warm-up{of_rounds}",
        old.display(),
        b.s.seconds
    ));
    for c in all.iter_mut() {
        let r = compare_pair(&b.ctx, &b.material, &b.pools, old, &c.key, b.s.seconds);
        print_pair(&c.key, &r);
        c.rounds.push(r);
    }
}
