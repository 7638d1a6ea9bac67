//! The statistics of rounds: the median round of a measurement, the paired ratio of two
//! measurements taken in the same rounds, the median of side-by-side rounds. Pure
//! functions of the figures.

use crate::results::{Figures, LedgerRows, Outcome, Pair, PullPair};

/// The upper median of `items` by `key` (the upper one of an even count); `None` when
/// empty.
pub fn upper_median<T>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = items.len() / 2;
    items.into_iter().nth(mid)
}

/// The round of median throughput, carrying every round's rate in the order measured;
/// the first error when a round failed. A round whose ledger missed a decision (or held
/// one twice) speaks for all of them: its ledger rows replace the median round's.
pub fn median_round(all: Vec<Outcome<Figures>>) -> Outcome<Figures> {
    let ok = all.into_iter().collect::<Result<Vec<_>, _>>()?;
    let rates: Vec<f64> = ok.iter().map(Figures::tokens_per_second).collect();
    let ledger_miss: Option<LedgerRows> =
        ok.iter().filter_map(|m| m.ledger_rows).find(|l| !l.whole());
    let mut m = upper_median(ok, Figures::tokens_per_second).ok_or("no round was measured")?;
    m.rounds = rates;
    if ledger_miss.is_some() {
        m.ledger_rows = ledger_miss;
    }
    Ok(m)
}

/// The ratio `a / b` of two figures measured in the same rounds: the median of the
/// per-round ratios (each scenario against what was measured a few minutes from it, so a
/// slow stretch of the machine weighs on both sides), with those ratios as text
/// (`0.81 · 0.98 · 0.97`; empty for a single round). Without rounds on both sides: the
/// ratio of the two runs.
pub fn paired_ratio(a: &Figures, b: &Figures) -> (f64, String) {
    if a.rounds.len() >= 2 && a.rounds.len() == b.rounds.len() {
        let r: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(x, y)| ratio(*x, *y))
            .collect();
        let text = ratios_text(&r);
        return (upper_median(r, |x| *x).unwrap_or(0.0), text);
    }
    (
        ratio(a.tokens_per_second(), b.tokens_per_second()),
        String::new(),
    )
}

/// `x / y`, 0 when `y` is not positive.
pub fn ratio(x: f64, y: f64) -> f64 {
    if y > 0.0 {
        x / y
    } else {
        0.0
    }
}

/// The median of side-by-side rounds (by ratio; the upper one of an even count), the
/// rounds' ratios as text (empty for one round), and whether every round's ledger held
/// one row per decision; the first error when a round failed.
pub fn median_pair(rounds: &[Outcome<Pair>]) -> Outcome<(Pair, String, bool)> {
    let pairs = rounds.iter().cloned().collect::<Result<Vec<_>, _>>()?;
    let text = ratios_text(&pairs.iter().map(Pair::ratio).collect::<Vec<_>>());
    let whole = pairs.iter().all(Pair::whole);
    let median = upper_median(pairs, Pair::ratio).ok_or("no round was measured")?;
    Ok((median, text, whole))
}

/// The guard's side-by-side GET rounds: the Envoy CPU per request the guard adds
/// ([`Pair::added_us`]), the upper median over the rounds, and every round's as text
/// (`12 · 14 · 13`, empty for one round); the first error when a round failed.
pub fn median_added_us(rounds: &[Outcome<Pair>]) -> Outcome<(Pair, f64, String)> {
    let pairs = rounds.iter().cloned().collect::<Result<Vec<_>, _>>()?;
    let text = if pairs.len() < 2 {
        String::new()
    } else {
        join(pairs.iter().map(|p| format!("{:.1}", p.added_us())))
    };
    let median = upper_median(pairs, Pair::added_us).ok_or("no round was measured")?;
    Ok((median, median.added_us(), text))
}

/// The pull pair of median ratio (guard against without; the upper one of an even count)
/// and every pair's ratio as text; the first error when a pull failed.
pub fn median_pull(pulls: &[Outcome<PullPair>]) -> Outcome<(PullPair, String)> {
    let pairs = pulls.iter().cloned().collect::<Result<Vec<_>, _>>()?;
    let text = ratios_text(&pairs.iter().map(PullPair::ratio).collect::<Vec<_>>());
    let median = upper_median(pairs, PullPair::ratio).ok_or("no pull was measured")?;
    Ok((median, text))
}

/// Per-round ratios as `0.81 · 0.98 · 0.97` (empty for a single round).
pub fn ratios_text(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    join(ratios.iter().map(|x| format!("{x:.2}")))
}

/// Every round's rate, `a · b · c` (empty for a single round).
pub fn rounds_text(m: &Figures) -> String {
    if m.rounds.len() < 2 {
        return String::new();
    }
    join(m.rounds.iter().map(|r| format!("{r:.0}")))
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(" · ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::results::PairSide;

    /// Figures of `ok` tokens in 1 s, with the given rounds.
    fn at(ok: u64, rounds: &[f64]) -> Figures {
        Figures {
            rounds: rounds.to_vec(),
            elapsed: 1.0,
            statuses: BTreeMap::from([(200, ok)]),
            ..Figures::default()
        }
    }

    fn pair(base_cpu: u64, test_cpu: u64, rows: Option<(u64, u64)>) -> Pair {
        let side = |cpu_ns| PairSide {
            decisions: 1000,
            cpu_ns,
            worker_ns: cpu_ns,
            seconds: 1.0,
            p50_us: None,
        };
        Pair {
            base: side(base_cpu),
            test: side(test_cpu),
            ledger_rows: rows.map(|(rows, decisions)| LedgerRows { rows, decisions }),
        }
    }

    #[test]
    fn upper_median_takes_the_upper_of_an_even_count() {
        assert_eq!(upper_median(vec![3.0, 1.0, 2.0], |x| *x), Some(2.0));
        assert_eq!(upper_median(vec![4.0, 1.0, 3.0, 2.0], |x| *x), Some(3.0));
        assert_eq!(upper_median(Vec::<f64>::new(), |x| *x), None);
    }

    #[test]
    fn median_round_keeps_every_rate_in_order() {
        let m = median_round(vec![Ok(at(300, &[])), Ok(at(100, &[])), Ok(at(200, &[]))])
            .expect("median");
        assert_eq!(m.ok(), 200);
        assert_eq!(m.rounds, vec![300.0, 100.0, 200.0]);
        assert!(median_round(vec![Ok(at(1, &[])), Err("boom".into())]).is_err());
        assert!(median_round(Vec::new()).is_err());
    }

    #[test]
    fn a_ledger_miss_in_any_round_speaks_for_all() {
        let with = |ok, rows, decisions| Figures {
            ledger_rows: Some(LedgerRows { rows, decisions }),
            ..at(ok, &[])
        };
        let m = median_round(vec![
            Ok(with(100, 5, 6)),
            Ok(with(200, 9, 9)),
            Ok(with(300, 7, 7)),
        ])
        .expect("median");
        assert_eq!(m.ok(), 200);
        assert_eq!(
            m.ledger_rows,
            Some(LedgerRows {
                rows: 5,
                decisions: 6
            })
        );
    }

    #[test]
    fn paired_ratio_is_the_median_of_the_rounds_ratios() {
        // Rounds 0.5, 1.0, 2.0: the median is 1.0, while the median rounds' ratio
        // (the figures' own rates) would be 0.5.
        let a = at(10, &[10.0, 20.0, 40.0]);
        let b = at(20, &[20.0, 20.0, 20.0]);
        let (r, text) = paired_ratio(&a, &b);
        assert_eq!(r, 1.0);
        assert_eq!(text, "0.50 · 1.00 · 2.00");
        // One round (or rounds that do not match): the ratio of the two figures.
        let (r, text) = paired_ratio(&at(10, &[10.0]), &at(20, &[20.0]));
        assert_eq!((r, text.as_str()), (0.5, ""));
        assert_eq!(paired_ratio(&at(10, &[1.0, 2.0]), &at(20, &[])).0, 0.5);
        assert_eq!(paired_ratio(&at(10, &[]), &at(0, &[])).0, 0.0);
        assert_eq!(
            paired_ratio(&at(1, &[1.0, 1.0]), &at(1, &[0.0, 1.0])).1,
            "0.00 · 1.00"
        );
    }

    #[test]
    fn median_pair_by_ratio() {
        let rounds = vec![
            Ok(pair(300, 400, Some((10, 10)))),
            Ok(pair(300, 300, Some((10, 10)))),
            Ok(pair(300, 600, Some((9, 10)))),
        ];
        let (median, text, whole) = median_pair(&rounds).expect("median");
        assert!((median.ratio() - 0.75).abs() < 1e-12);
        assert_eq!(text, "0.75 · 1.00 · 0.50");
        assert!(!whole, "one round's ledger missed a record");
        let (_, text, whole) = median_pair(&rounds[..1]).expect("one round");
        assert_eq!((text.as_str(), whole), ("", true));
        assert!(median_pair(&[Ok(pair(1, 1, None)), Err("x".into())]).is_err());
        assert!(median_pair(&[]).is_err());
    }

    #[test]
    fn the_guard_adds_the_median_rounds_cpu() {
        // 1000 requests a side: 300 µs of CPU per request without, 312 / 330 / 305 with.
        let rounds = vec![
            Ok(pair(300_000_000, 312_000_000, None)),
            Ok(pair(300_000_000, 330_000_000, None)),
            Ok(pair(300_000_000, 305_000_000, None)),
        ];
        let (median, added, text) = median_added_us(&rounds).expect("median");
        assert!((added - 12.0).abs() < 1e-9, "{added}");
        assert_eq!(median.test.cpu_ns, 312_000_000);
        assert_eq!(text, "12.0 · 30.0 · 5.0");
        assert_eq!(median_added_us(&rounds[..1]).expect("one").2, "");
        assert!(median_added_us(&[rounds[0].clone(), Err("x".into())]).is_err());
        assert!(median_added_us(&[]).is_err());
    }

    #[test]
    fn the_median_pull_by_ratio() {
        use crate::results::Pull;
        // In 0.5 s, 256 MiB through one Envoy and `test` MiB through the guard.
        let pp = |test: u64| PullPair {
            seconds: 0.5,
            base: Pull {
                bytes: 256 << 20,
                envoy_cpu_ns: 100_000_000,
            },
            test: Pull {
                bytes: test << 20,
                envoy_cpu_ns: 100_000_000,
            },
        };
        let pulls = vec![Ok(pp(128)), Ok(pp(256)), Ok(pp(205))];
        let (median, text) = median_pull(&pulls).expect("median");
        assert!((median.ratio() - 205.0 / 256.0).abs() < 1e-9);
        assert_eq!(text, "0.50 · 1.00 · 0.80");
        assert!((median.mb_per_second(&median.base) - 536.870_912).abs() < 1e-6);
        assert!((median.base.cpu_ms_per_gib() - 400.0).abs() < 1e-9);
        assert!(median_pull(&[Ok(pp(1)), Err("cut short".into())]).is_err());
        assert!(median_pull(&[]).is_err());
    }

    #[test]
    fn texts() {
        assert_eq!(ratios_text(&[0.9]), "");
        assert_eq!(ratios_text(&[0.914, 1.0]), "0.91 · 1.00");
        assert_eq!(rounds_text(&at(1, &[912.4, 907.6])), "912 · 908");
        assert_eq!(rounds_text(&at(1, &[912.0])), "");
    }
}
