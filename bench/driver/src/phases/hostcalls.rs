//! The hostcalls part (`--only hostcalls`): what the filter's hostcalls other than its
//! signature work cost Envoy per request. For each of [`HOSTCALL_PAIRS`], two probe
//! Envoys side by side on one CPU ([`probe_pair`]): `base` does a path's signature work
//! alone, `test` the same and the hostcalls the filter makes besides (its headers, the
//! clock, random bytes, metrics, the audit as filter state; for DPoP the replay record's
//! shared data too). What `test` adds per request is Envoy's share of those hostcalls,
//! the filter's own compute aside; once per round, its median round reported.

use crate::pair::{print_added, probe_pair};
use crate::results::{HostcallPair, Outcome};
use crate::scenarios::{probe_ops, HOSTCALL_PAIRS};
use crate::step;

use super::{probe_module, Bench};

/// Every pair, every round, when asked for (`None` otherwise); an error when the probe
/// module is missing.
pub fn hostcalls(b: &Bench<'_>) -> Option<Outcome<Vec<HostcallPair>>> {
    b.s.want("hostcalls").then(|| measure(b))
}

fn measure(b: &Bench<'_>) -> Outcome<Vec<HostcallPair>> {
    let probe = probe_module(b.s)?;
    let mut pairs = Vec::new();
    for (base, test) in HOSTCALL_PAIRS {
        let (base_ops, _) = probe_ops(base).ok_or(format!("no probe {base}"))?;
        let (test_ops, work) = probe_ops(test).ok_or(format!("no probe {test}"))?;
        pairs.push((
            [(base, base_ops), (test, test_ops)],
            HostcallPair {
                base: base.to_string(),
                test: test.to_string(),
                work: work.to_string(),
                rounds: Vec::new(),
            },
        ));
    }
    let s = b.s;
    for round in 1..=s.rounds {
        step(&format!(
            "hostcalls: Envoy's share, probe modules side by side on one CPU, {} s after {} s of warm-up{}",
            s.seconds,
            crate::measure::WARMUP_SECONDS,
            if s.rounds > 1 {
                format!(" (round {round} of {})", s.rounds)
            } else {
                String::new()
            }
        ));
        for (sides, pair) in &mut pairs {
            let r = probe_pair(&b.ctx, &b.material, &b.pools, &probe, *sides, s.seconds);
            print_added(&format!("{} − {}", pair.test, pair.base), &r);
            pair.rounds.push(r);
        }
    }
    Ok(pairs.into_iter().map(|(_, p)| p).collect())
}
