//! The report's measurement tables: the in-Envoy crypto ceilings, the `/token` scenarios,
//! the refused DPoP proofs.

use std::fmt::Write as _;

use super::fmt::{cell, pct, us, usf};
use super::out;
use crate::results::{Results, ScenarioResult};
use crate::stats::{paired_ratio, rounds_text};
use crate::targets::{hostile_ratio, HOSTILE_RATIO_LIMIT};

/// The table of in-Envoy crypto ceilings.
pub fn crypto_ceilings(o: &mut String, r: &Results) {
    if r.crypto.is_empty() {
        return;
    }
    out!(o, "## In-Envoy crypto ceilings (same run)\n");
    out!(
        o,
        "The probe module (`bench/probe`) does only the signature work of a path, per \
         request, through Envoy's own `sign`/`verify_signature` foreign functions (the \
         filter's `HostCrypto`, 700-byte messages, signatures to verify made at configure \
         time), then answers a 900-byte body: no parsing, no JSON, no policy. Envoy imports \
         the key on every call, so for RSA this is well below OpenSSL's own rate; it is the \
         ceiling the filter's paths are compared to (*× crypto ceiling* below).\n"
    );
    out!(
        o,
        "| ceiling | work per request | answers/s | rounds | p50 | p99 |\n|---|---|---:|---|---:|---:|"
    );
    for c in &r.crypto {
        let (key, what) = (&c.key, &c.work);
        match &c.outcome {
            Ok(m) => out!(
                o,
                "| `{key}` | {what} | {:.0} | {} | {} | {} |",
                m.tokens_per_second(),
                rounds_text(m),
                us(m.latency_us.p50),
                us(m.latency_us.p99)
            ),
            Err(e) => out!(o, "| `{key}` | {what} | not measured: {} | | | |", cell(e)),
        }
    }
    out!(o);
}

/// The table of `/token` scenarios that mint.
pub fn scenarios(o: &mut String, r: &Results) {
    out!(o, "## `/token` scenarios (one Envoy worker each)\n");
    out!(
        o,
        "| scenario | tokens/s | rounds | × crypto ceiling | × RSA sign/s | × ceiling | p50 | p99 | p99.9 | filter p50 | filter p99 | OpTok cache hits | mint reused | non-200 | Envoy counters |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let ceiling = r.ceiling.as_ref().map_or(0.0, |c| c.tokens_per_second());
    for sc in r.scenarios.iter().filter(|s| !s.refusing) {
        scenario_row(o, r, sc, ceiling);
    }
    out!(
        o,
        "\nLatencies are client-side (send to full answer, over loopback); *filter* columns come \
         from the filter's own histogram `registry_token_decision_us` (time from the request \
         headers to the local reply inside the Wasm VM, Envoy host clock), interpolated in its \
         buckets. *rounds* lists the rate of every round in the order measured (ceilings and \
         scenarios alternate round by round); each row is the median round. *× crypto ceiling*, \
         like every target that compares two figures, is the median of the per-round ratios \
         (a scenario against its ceiling measured minutes from it in the same round), listed \
         in *Targets*. *OpTok cache hits* and *mint reused* come from the filter's counters. The \
         `reuse` scenario cycles 100 clients (OpTokens) so tokens are reused; the others use \
         every OpToken once, so the OpTok cache cannot help them (a hit rate above 0 means the \
         pool was exhausted and reused).\n"
    );
}

fn scenario_row(o: &mut String, r: &Results, sc: &ScenarioResult, ceiling: f64) {
    let m = match &sc.outcome {
        Ok(m) => m,
        Err(e) => {
            out!(
                o,
                "| `{}` {} | not measured: {} | | | | | | | | | | | | | |",
                sc.key,
                sc.title,
                cell(e)
            );
            return;
        }
    };
    let v = m.tokens_per_second();
    let counters = if m.agrees() {
        format!("agree ({} issued)", m.issued())
    } else {
        let c = m.counters.clone().unwrap_or_default();
        format!(
            "DISAGREE: issued {} / client {}, rejected {} / client {}, samples {} / client {}",
            c.issued,
            m.ok(),
            c.rejected,
            m.responses() - m.ok(),
            c.sampled,
            m.responses()
        )
    };
    let l = &m.latency_us;
    out!(
        o,
        "| `{}` {} | {:.0} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        sc.key,
        sc.title,
        v,
        rounds_text(m),
        r.crypto_ceiling_of(sc)
            .map_or("-".into(), |(_, c)| format!("{:.2}", paired_ratio(m, c).0)),
        v / r.speed.rsa_sign,
        if ceiling > 0.0 { v / ceiling } else { 0.0 },
        us(l.p50),
        us(l.p99),
        us(l.p999),
        usf(m.filter_p50_us),
        usf(m.filter_p99_us),
        pct(m.hit_rate()),
        pct(m.reuse_rate()),
        m.non_ok(),
        counters
    );
}

/// The refusal scenarios: hostile proofs against the cheapest refusal.
pub fn refusals(o: &mut String, r: &Results) {
    let rows: Vec<_> = r
        .scenarios
        .iter()
        .filter(|s| s.refusing)
        .filter_map(|s| s.outcome.as_ref().ok().map(|m| (s, m)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out!(o, "## Refused DPoP proofs: hostile against cheap\n");
    out!(
        o,
        "Every request carries a valid DPoP-bound OpToken ({} of them, cycled, \
         so the OpTok cache holds them all after the warm-up) and a proof that must be \
         refused. `hostile` rotates over: {}. `cheap` sends `DPoP: x`. The figure that \
         matters is the filter's own time (histogram `registry_token_decision_us`, this \
         run's delta), not the client's; its p99 shows any of the four kinds, each a \
         quarter of the requests.\n",
        crate::scenarios::REFUSAL_OPTOKS,
        registry_token_loadgen::load::HOSTILE_KINDS
            .iter()
            .enumerate()
            .map(|(i, k)| format!("({}) {k}", char::from(b'a' + i as u8)))
            .collect::<Vec<_>>()
            .join("; ")
    );
    out!(
        o,
        "| scenario | refusals/s | p50 | p99 | filter p50 | filter p99 | refusals (reason: count) | as expected |\n|---|---:|---:|---:|---:|---:|---|---|"
    );
    for (sc, m) in rows {
        out!(
            o,
            "| `{}` | {:.0} | {} | {} | {} | {} | {} | {} |",
            sc.key,
            m.responses_per_second(),
            us(m.latency_us.p50),
            us(m.latency_us.p99),
            usf(m.filter_p50_us),
            usf(m.filter_p99_us),
            m.non_ok(),
            if m.refusals_as_expected && m.agrees() {
                "yes, counters agree"
            } else {
                "NO"
            }
        );
    }
    if let Some((p99, p50)) = hostile_ratio(r) {
        out!(
            o,
            "\nhostile / cheap: filter p99 {p99:.2}×, filter p50 {p50:.2}× (target: p99 ≤ {HOSTILE_RATIO_LIMIT:.0}×).\n"
        );
    } else {
        out!(o);
    }
}
