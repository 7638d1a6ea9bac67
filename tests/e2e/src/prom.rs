//! Prometheus text exposition (Envoy's admin `/stats/prometheus`, a ledger's `/metrics`):
//! samples parsed with their labels, a series looked up by its exact label set, and the
//! filter's issued counter summed over its grants.

/// The `grant` labels of `registry_token_issued_total`.
pub const GRANTS: [&str; 3] = ["get", "password", "refresh_token"];

/// The Envoy stat name of the issued counter of `grant`.
pub fn issued_stat(grant: &str) -> String {
    format!("wasmcustom.registry_token_issued_total.grant.{grant}")
}

/// `registry_token_issued_total` summed over its `grant` series in Prometheus text `text`
/// (`None` when there is no series at all).
pub fn prom_issued(text: &str) -> Option<f64> {
    let values: Vec<f64> = prom_samples(text)
        .into_iter()
        .filter(|(name, _, _)| name == "registry_token_issued_total")
        .map(|(_, _, v)| v)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// One parsed sample line: metric name, labels (sorted by name), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Value of the series `metric_with_labels` (e.g.
/// `envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"}`) in
/// Prometheus text exposition `text`. The label set must match exactly (order does not
/// matter); a bare name matches only the series without labels.
pub fn prom_value(text: &str, metric_with_labels: &str) -> Option<f64> {
    let (want_name, mut want_labels) = parse_series(metric_with_labels.trim())?;
    want_labels.sort();
    text.lines()
        .filter_map(parse_sample)
        .find(|(name, labels, _)| *name == want_name && *labels == want_labels)
        .map(|(_, _, v)| v)
}

/// All samples of `text` (comments and blank lines skipped, unparsable lines ignored).
pub fn prom_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_sample).collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = find_label_end(line, open)?;
            (&line[..=close], &line[close + 1..])
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], &line[sp..])
        }
    };
    let (name, mut labels) = parse_series(series)?;
    labels.sort();
    let value = parse_prom_float(rest.split_whitespace().next()?)?;
    Some((name, labels, value))
}

/// Index of the `}` closing the label set opened at `open`, honouring quoted values.
fn find_label_end(s: &str, open: usize) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s[open..].char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '}' {
            return Some(open + i);
        }
    }
    None
}

/// Parses `name` or `name{a="x",b="y"}`.
fn parse_series(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some(open) = s.find('{') else {
        return (!s.is_empty()).then(|| (s.to_owned(), Vec::new()));
    };
    let name = s[..open].trim().to_owned();
    let close = find_label_end(s, open)?;
    let mut labels = Vec::new();
    let mut rest = &s[open + 1..close];
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let label = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let mut chars = rest.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else {
                value.push(c);
            }
        }
        rest = &rest[end? + 1..];
        labels.push((label, value));
    }
    Some((name, labels))
}

fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: &str = r#"# TYPE envoy_http_downstream_rq_completed counter
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="admin"} 3
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"} 7
# TYPE envoy_server_live gauge
envoy_server_live{} 1
envoy_server_uptime 12
weird{a="x\"}y",b="c\\d"} 1.5e3 1700000000000
envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="x",le="+Inf"} 0
nan_metric NaN
"#;

    #[test]
    fn prom_value_matches_exact_label_sets() {
        assert_eq!(
            prom_value(
                PROM,
                r#"envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"}"#
            ),
            Some(7.0)
        );
        assert_eq!(
            prom_value(
                PROM,
                r#"envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="admin"}"#
            ),
            Some(3.0)
        );
        assert_eq!(prom_value(PROM, "envoy_http_downstream_rq_completed"), None);
        assert_eq!(prom_value(PROM, "envoy_server_uptime"), Some(12.0));
        assert_eq!(prom_value(PROM, "envoy_server_live"), Some(1.0));
        assert_eq!(prom_value(PROM, "envoy_server_live{}"), Some(1.0));
        assert_eq!(
            prom_value(PROM, r#"weird{b="c\\d", a="x\"}y"}"#),
            Some(1500.0)
        );
        assert_eq!(
            prom_value(
                PROM,
                r#"envoy_cluster_upstream_cx_connect_ms_bucket{le="+Inf",envoy_cluster_name="x"}"#
            ),
            Some(0.0)
        );
        assert!(prom_value(PROM, "nan_metric").is_some_and(f64::is_nan));
        assert_eq!(prom_value(PROM, "missing"), None);
        assert_eq!(prom_samples(PROM).len(), 7);
    }
}
