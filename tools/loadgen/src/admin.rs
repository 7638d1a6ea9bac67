//! What Envoy's admin says about the filter: its counters (`/stats?format=json`), its
//! decision histogram (cumulative buckets from `/stats/prometheus`, Envoy's own quantiles
//! from the JSON) and the process memory gauges.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::http::{get, Target};

/// Stat name prefix of the filter's metrics.
pub const PREFIX: &str = "wasmcustom.registry_token_";
/// Prefix of the per-grant issued counters (`…grant.get`, `…grant.password`,
/// `…grant.refresh_token`).
pub const ISSUED: &str = "wasmcustom.registry_token_issued_total.grant.";
/// Prefix of the per-reason rejection counters.
pub const REJECTED: &str = "wasmcustom.registry_token_rejected_total.reason.";
/// The decision histogram.
pub const HISTOGRAM: &str = "wasmcustom.registry_token_decision_us";

/// One reading of the admin endpoint.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every counter and gauge whose name starts with [`PREFIX`] or `server.memory`.
    pub values: BTreeMap<String, u64>,
    /// Cumulative histogram buckets (upper bound µs, count), `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Histogram sample count.
    pub count: u64,
    /// Histogram sample sum, µs.
    pub sum: f64,
    /// Envoy's own cumulative quantiles (P50, P99, P99.9), µs.
    pub quantiles: Option<(f64, f64, f64)>,
}

impl Snapshot {
    /// A named value (0 when absent).
    pub fn value(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// `registry_token_issued_total`, every grant together.
    pub fn issued(&self) -> u64 {
        self.issued_by_grant().values().sum()
    }

    /// `registry_token_issued_total` per grant label.
    pub fn issued_by_grant(&self) -> BTreeMap<String, u64> {
        self.values
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(ISSUED).map(|g| (g.to_string(), *v)))
            .collect()
    }

    /// Rejections per reason label.
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.values
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(REJECTED).map(|r| (r.to_string(), *v)))
            .collect()
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected().values().sum()
    }
}

/// Reads a snapshot.
pub fn snapshot(admin: &Target) -> Result<Snapshot, String> {
    let (status, body) = get(
        admin,
        "/stats?format=json&filter=%5E(wasmcustom%5C.registry_token_%7Cserver%5C.memory)",
    )?;
    if status != 200 {
        return Err(format!("admin /stats answered {status}: {body}"));
    }
    let doc: Value = serde_json::from_str(&body).map_err(|e| format!("admin /stats JSON: {e}"))?;
    let mut snap = Snapshot::default();
    for s in doc["stats"].as_array().into_iter().flatten() {
        if let (Some(name), Some(v)) = (s["name"].as_str(), s["value"].as_u64()) {
            snap.values.insert(name.to_string(), v);
        }
        if let Some(h) = s.get("histograms") {
            snap.quantiles = envoy_quantiles(h, HISTOGRAM);
        }
    }
    let (status, prom) = get(admin, "/stats/prometheus?filter=registry_token_decision_us")?;
    if status != 200 {
        return Err(format!("admin /stats/prometheus answered {status}"));
    }
    parse_prometheus(&prom, &mut snap);
    Ok(snap)
}

fn envoy_quantiles(h: &Value, name: &str) -> Option<(f64, f64, f64)> {
    let supported: Vec<f64> = h["supported_quantiles"]
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let entry = h["computed_quantiles"]
        .as_array()?
        .iter()
        .find(|q| q["name"].as_str() == Some(name))?;
    let values = entry["values"].as_array()?;
    let at = |q: f64| -> Option<f64> {
        let i = supported.iter().position(|s| (s - q).abs() < 1e-9)?;
        values.get(i)?["cumulative"].as_f64()
    };
    Some((at(50.0)?, at(99.0)?, at(99.9)?))
}

/// Fills the histogram fields from Prometheus text.
pub fn parse_prometheus(text: &str, snap: &mut Snapshot) {
    let base = "registry_token_decision_us";
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        // Envoy drops the `wasmcustom` namespace in the Prometheus names (some versions
        // keep it as a `wasmcustom_` prefix).
        let series = series.strip_prefix("wasmcustom_").unwrap_or(series);
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if let Some(rest) = series.strip_prefix(&format!("{base}_bucket")) {
            let le = rest
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(|s| {
                    if s == "+Inf" {
                        f64::INFINITY
                    } else {
                        s.parse().unwrap_or(f64::NAN)
                    }
                });
            if let Some(le) = le.filter(|l| !l.is_nan()) {
                snap.buckets.push((le, v as u64));
            }
        } else if series.starts_with(&format!("{base}_count")) {
            snap.count = v as u64;
        } else if series.starts_with(&format!("{base}_sum")) {
            snap.sum = v;
        }
    }
    snap.buckets
        .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
}

/// Quantile `q` (0..1) of the samples between two cumulative bucket readings, linearly
/// interpolated inside the bucket (the last finite bound when it falls in `+Inf`).
pub fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0, |(_, c)| *c);
            (*le, c.saturating_sub(b))
        })
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut prev_le = 0.0;
    let mut prev_c = 0u64;
    for (le, c) in &delta {
        if (*c as f64) >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let in_bucket = (*c - prev_c) as f64;
            let frac = if in_bucket > 0.0 {
                (rank - prev_c as f64) / in_bucket
            } else {
                1.0
            };
            return Some(prev_le + (le - prev_le) * frac.clamp(0.0, 1.0));
        }
        prev_le = *le;
        prev_c = *c;
    }
    Some(prev_le)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_histogram_and_quantiles() {
        let text = "# TYPE registry_token_decision_us histogram\n\
registry_token_decision_us_bucket{le=\"100\"} 10\n\
wasmcustom_registry_token_decision_us_bucket{le=\"200\"} 90\n\
wasmcustom_registry_token_decision_us_bucket{le=\"+Inf\"} 100\n\
wasmcustom_registry_token_decision_us_sum{} 15000\n\
wasmcustom_registry_token_decision_us_count{} 100\n";
        let mut s = Snapshot::default();
        parse_prometheus(text, &mut s);
        assert_eq!(s.count, 100);
        assert_eq!(s.buckets.len(), 3);
        let p50 = bucket_quantile(&[], &s.buckets, 0.5).unwrap();
        assert!((p50 - 150.0).abs() < 1e-9, "{p50}");
        assert_eq!(bucket_quantile(&[], &s.buckets, 0.99), Some(200.0));
        let before = vec![(100.0, 10), (200.0, 10), (f64::INFINITY, 10)];
        let p = bucket_quantile(&before, &s.buckets, 0.5).unwrap();
        assert!((p - 156.25).abs() < 1e-9, "{p}");
        assert_eq!(bucket_quantile(&s.buckets, &s.buckets, 0.5), None);
    }
}
