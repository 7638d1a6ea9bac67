//! `bench compare OLD.json NEW.json`: every figure both runs measured, side by side, with
//! the ratio new / old, and the targets of each.

use std::fmt::Write as _;

use crate::render::out;
use crate::results::{Figures, Results};
use crate::stats::{median_added_us, median_pair, median_pull, ratio};
use crate::targets::targets;

/// One compared figure: its name, the old and new values, and whether more is better.
struct Row {
    name: String,
    old: f64,
    new: f64,
    unit: &'static str,
    higher_is_better: bool,
}

/// The figures of one run by name (rates, latencies, ratios), in report order.
fn figures(r: &Results) -> Vec<(String, f64, &'static str, bool)> {
    let mut out = Vec::new();
    let mut rate = |name: String, m: &Figures, refusing: bool| {
        let v = if refusing {
            m.responses_per_second()
        } else {
            m.tokens_per_second()
        };
        out.push((name.clone(), v, "/s", true));
        for (q, v) in [
            ("filter p50", m.filter_p50_us),
            ("filter p99", m.filter_p99_us),
        ] {
            if let Some(v) = v {
                out.push((format!("{name} {q}"), v, "µs", false));
            }
        }
        if let Some(v) = m.latency_us.p99 {
            out.push((format!("{name} p99"), f64::from(v), "µs", false));
        }
    };
    if let Some(c) = &r.ceiling {
        rate("`direct_response` ceiling".into(), c, false);
    }
    for c in &r.crypto {
        if let Ok(m) = &c.outcome {
            rate(format!("`{}`", c.key), m, false);
        }
    }
    for s in &r.scenarios {
        if let Ok(m) = &s.outcome {
            rate(format!("`{}`", s.key), m, s.refusing);
        }
    }
    if let Ok((p, ..)) = median_pair(&r.ledger_pairs) {
        out.push(("ledger on / off, side by side".into(), p.ratio(), "×", true));
    }
    for i in &r.ingest {
        if let Ok(f) = &i.outcome {
            out.push((
                format!("ingest {}", i.database),
                f.records_per_second,
                "records/s",
                true,
            ));
        }
    }
    for p in &r.sweep {
        if let Some(v) = p.figures.latency_us.p99 {
            out.push((
                format!("sweep p99 at {:.0}% of max", p.fraction * 100.0),
                f64::from(v),
                "µs",
                false,
            ));
        }
    }
    if let Some(Ok(f)) = &r.revocation_feed {
        let n = f.entries;
        for (name, v, unit, higher) in [
            (
                format!("revocation feed at {n}: digest form"),
                f.digest_bytes as f64,
                "bytes",
                false,
            ),
            (
                format!("revocation feed at {n}: first build"),
                f.build_ms,
                "ms",
                false,
            ),
            (
                format!("revocation feed at {n}: served"),
                f.serve_p50_us as f64,
                "µs",
                false,
            ),
            (
                format!("revocation feed at {n}: `/token`"),
                f.tokens_per_second,
                "/s",
                true,
            ),
            (
                format!("revocation feed at {n}: VM memory"),
                f.vm_memory_bytes as f64,
                "bytes",
                false,
            ),
        ] {
            out.push((name, v, unit, higher));
        }
        if let Some(v) = f.gateway_load_us {
            out.push((
                format!("revocation feed at {n}: a worker takes it"),
                v,
                "µs",
                false,
            ));
        }
        if let Some(v) = f.filter_p50_us {
            out.push((
                format!("revocation feed at {n}: filter p50"),
                v,
                "µs",
                false,
            ));
        }
    }
    if let Some(Ok(g)) = &r.guard {
        for (against, rounds) in [("plain Envoy", &g.gets), ("the filter", &g.gets_filter)] {
            if let Ok((_, added, _)) = median_added_us(rounds) {
                out.push((
                    format!("guard: Envoy CPU added per memoised GET, against {against}"),
                    added,
                    "µs",
                    false,
                ));
            }
        }
        if let Ok((p, _)) = median_pull(&g.pulls) {
            out.push((
                "guard: pull throughput / without".into(),
                p.ratio(),
                "×",
                true,
            ));
        }
    }
    if let Some(Ok(pairs)) = &r.hostcalls {
        for p in pairs {
            if let Ok((_, added, _)) = median_added_us(&p.rounds) {
                out.push((
                    format!("hostcalls: Envoy CPU `{}` adds to `{}`", p.test, p.base),
                    added,
                    "µs",
                    false,
                ));
            }
        }
    }
    let s = &r.speed;
    for (name, v) in [
        ("OpenSSL RSA-2048 sign", s.rsa_sign),
        ("OpenSSL ECDSA P-256 sign", s.ec_sign),
        ("OpenSSL ECDSA P-256 verify", s.ec_verify),
    ] {
        out.push((name.into(), v, "/s", true));
    }
    out.push((
        "Wasm module".into(),
        r.run.wasm_bytes as f64,
        "bytes",
        false,
    ));
    out
}

/// The comparison as Markdown.
pub fn compare(old: &Results, new: &Results) -> String {
    let mut o = String::new();
    out!(o, "# bench compare\n");
    out!(o, "| | old | new |\n|---|---|---|");
    out!(o, "| date | {} | {} |", old.run.date, new.run.date);
    out!(
        o,
        "| command | `{}` | `{}` |",
        old.run.command,
        new.run.command
    );
    out!(
        o,
        "| machine | {}, {} cores | {}, {} cores |\n",
        old.run.machine.cpu,
        old.run.machine.cores,
        new.run.machine.cpu,
        new.run.machine.cores
    );
    let new_figures = figures(new);
    let rows: Vec<Row> = figures(old)
        .into_iter()
        .filter_map(|(name, old, unit, higher_is_better)| {
            let (_, new, ..) = new_figures.iter().find(|(n, ..)| *n == name)?;
            Some(Row {
                name,
                old,
                new: *new,
                unit,
                higher_is_better,
            })
        })
        .collect();
    out!(o, "## Figures both runs measured\n");
    out!(o, "*new / old* above 1 is more of the figure: better for rates, worse for latencies and sizes.\n");
    out!(
        o,
        "| figure | old | new | new / old | |\n|---|---:|---:|---:|---|"
    );
    for r in &rows {
        let (x, mark) = if r.old > 0.0 {
            let x = ratio(r.new, r.old);
            let mark = if (x - 1.0).abs() < 0.005 {
                ""
            } else if (x > 1.0) == r.higher_is_better {
                " better"
            } else {
                " worse"
            };
            (format!("{x:.2}"), mark)
        } else {
            ("-".to_string(), "")
        };
        out!(
            o,
            "| {} | {} {} | {} {} | {x} |{mark} |",
            r.name,
            num(r.old),
            r.unit,
            num(r.new),
            r.unit
        );
    }
    out!(o, "\n## Targets\n");
    out!(o, "| target | old | new |\n|---|---|---|");
    let (old_t, new_t) = (targets(old), targets(new));
    for t in &new_t {
        let before = old_t
            .iter()
            .find(|o| o.name == t.name)
            .map_or("-", |o| met(o.pass));
        out!(o, "| {} | {before} | {} |", t.name, met(t.pass));
    }
    for t in old_t
        .iter()
        .filter(|o| !new_t.iter().any(|n| n.name == o.name))
    {
        out!(o, "| {} | {} | - |", t.name, met(t.pass));
    }
    let count = |t: &[crate::results::Target]| t.iter().filter(|t| t.pass).count();
    out!(
        o,
        "\n{} of {} targets met before, {} of {} now.",
        count(&old_t),
        old_t.len(),
        count(&new_t),
        new_t.len()
    );
    o
}

fn met(pass: bool) -> &'static str {
    if pass {
        "met"
    } else {
        "not met"
    }
}

/// A figure: whole numbers from 100 on, two decimals below.
fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::synthetic;

    #[test]
    fn ratios_of_what_both_measured() {
        let old = synthetic();
        let mut new = synthetic();
        // `rs256` 10 % faster; `mtls` not measured in the new run.
        if let Some(s) = new.scenarios.iter_mut().find(|s| s.key == "rs256") {
            if let Ok(m) = s.outcome.as_mut() {
                m.elapsed /= 1.1;
                m.rounds.iter_mut().for_each(|r| *r *= 1.1);
            }
        }
        new.scenarios.retain(|s| s.key != "mtls");
        let text = compare(&old, &new);
        assert!(
            text.contains("| `rs256` | 900 /s | 990 /s | 1.10 | better |"),
            "{text}"
        );
        assert!(
            text.contains("| `es256` | 700 /s | 700 /s | 1.00 | |"),
            "{text}"
        );
        assert!(!text.contains("| `mtls` |"), "{text}");
        assert!(
            text.contains("| `hostile` filter p99 | 90.00 µs | 90.00 µs | 1.00 | |"),
            "{text}"
        );
        assert!(text.contains("| ledger on / off, side by side | 0.95 × | 0.95 × | 1.00 | |"));
        assert!(
            text.contains("| `mtls` ≥ 0.85 × its in-Envoy crypto ceiling"),
            "old targets listed"
        );
        assert!(text.contains("of 17 targets met before"), "{text}");
        assert!(
            text.contains(
                "| guard: Envoy CPU added per memoised GET, against the filter | 8.00 µs | 8.00 µs | 1.00 | |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| guard: pull throughput / without | 0.98 × | 0.98 × | 1.00 | |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| hostcalls: Envoy CPU `crypto-es-host` adds to `crypto-es` | 11.00 µs | 11.00 µs | 1.00 | |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| revocation feed at 50000: digest form | 800135 bytes |"),
            "the revocation list's figures are compared: {text}"
        );
    }
}
