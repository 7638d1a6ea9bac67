//! Metrics: the filter counts what it does in Prometheus (issued by grant, rejected by
//! reason, each refusal once), and a real Prometheus (Debian's package) scrapes the
//! counters and loads the shipped alert rules.

use std::time::Duration;

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, start_gateway, token_path, ConfigForm, GatewaySpec, TestKeys,
    KEYPEM_ENV, SERVICE,
};
use registry_token_e2e::prometheus::{promtool, scrape_config, Prometheus};
use registry_token_e2e::{prom_samples, prom_value, repo_root, Envoy, EnvoyOptions};
use serde_json::Value;

use super::common::{token, COUNTER_WAIT, LAG, PRIVATE_PUSH, REALM};
use super::config::{COMMUNITY_PULL, JWKS_ENV};
use super::operations::assert_refused;

/// Issued and rejected requests are counted exactly, under the names and the `reason`
/// label quickstart's `stats_tags` produce; without that block there is no label.
#[test]
fn prometheus_counts_issued_and_rejected_tokens_by_reason() {
    let keys = TestKeys::generate();
    let config = filter_config(&keys, REALM);
    let envoy = start_gateway(
        &config,
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new().concurrency(2),
    );
    let community = bearer(&optok(&keys, |_| {}));
    let enterprise = bearer(&optok(&keys, |s| s.plan = Some("enterprise".into())));
    let send = |auth: Option<&str>, scopes: &[&str], want: u16| {
        let reply = token(&envoy, auth, scopes);
        assert_eq!(reply.status, want, "{scopes:?}: {reply:?}");
    };
    send(Some(&community), &[COMMUNITY_PULL], 200);
    send(
        Some(&community),
        &["repository:stella-ops/public/other:pull"],
        200,
    );
    send(Some(&enterprise), &[PRIVATE_PUSH], 200);
    send(Some(&community), &[PRIVATE_PUSH], 403);
    send(
        Some(&community),
        &["repository:stella-ops/private/x:pull"],
        403,
    );
    send(None, &[COMMUNITY_PULL], 401);
    send(Some(&community), &["repository:Stella/UPPER:pull"], 400);
    // Not counted: endpoints other than /token.
    assert_eq!(envoy.get("/healthz", &[]).status, 200);
    assert_eq!(envoy.get("/v2/", &[]).status, 404);

    let expected = [
        ("wasmcustom.registry_token_issued_total.grant.get", 3),
        (
            "wasmcustom.registry_token_rejected_total.reason.plan_denied",
            2,
        ),
        (
            "wasmcustom.registry_token_rejected_total.reason.missing_credentials",
            1,
        ),
        (
            "wasmcustom.registry_token_rejected_total.reason.malformed_scope",
            1,
        ),
    ];
    for (name, n) in expected {
        assert_eq!(envoy.wait_counter(name, n, COUNTER_WAIT), n, "{name}");
    }
    let prom = envoy.stats_prometheus();
    assert_eq!(
        prom_value(&prom, r#"registry_token_issued_total{grant="get"}"#),
        Some(3.0),
        "{prom}"
    );
    // Every grant's series exists from configure time, each labelled.
    for grant in ["password", "refresh_token"] {
        assert_eq!(
            prom_value(
                &prom,
                &format!(r#"registry_token_issued_total{{grant="{grant}"}}"#)
            ),
            Some(0.0),
            "{grant}: {prom}"
        );
    }
    assert_eq!(prom_value(&prom, "registry_token_issued_total"), None);
    for (reason, n) in [
        ("plan_denied", 2.0),
        ("missing_credentials", 1.0),
        ("malformed_scope", 1.0),
    ] {
        assert_eq!(
            prom_value(
                &prom,
                &format!(r#"registry_token_rejected_total{{reason="{reason}"}}"#)
            ),
            Some(n),
            "{reason}"
        );
    }
    // Every reason's series exists from configure time (alerts see zeros), each labelled:
    // no unlabelled rejection total.
    let reason_series = prom_samples(&prom)
        .into_iter()
        .filter(|(name, _, _)| name == "registry_token_rejected_total")
        .count();
    assert!(
        reason_series >= 40,
        "a series per reason, found {reason_series}: {prom}"
    );
    // Exactly these series of the two counters moved (no other reason counted).
    let mut series: Vec<String> = prom_samples(&prom)
        .into_iter()
        .filter(|(name, _, v)| {
            (name == "registry_token_issued_total" || name == "registry_token_rejected_total")
                && *v != 0.0
        })
        .map(|(name, labels, v)| format!("{name}{labels:?}={v}"))
        .collect();
    series.sort();
    assert_eq!(
        series,
        [
            r#"registry_token_issued_total[("grant", "get")]=3"#,
            r#"registry_token_rejected_total[("reason", "malformed_scope")]=1"#,
            r#"registry_token_rejected_total[("reason", "missing_credentials")]=1"#,
            r#"registry_token_rejected_total[("reason", "plan_denied")]=2"#,
        ],
        "{prom}"
    );
    drop(envoy);

    // Control: the same gateway without quickstart's stats_config has no reason or grant
    // label.
    let yaml = GatewaySpec::new(&config).yaml();
    let start = yaml
        .find("stats_config:")
        .unwrap_or_else(|| panic!("no stats_config: {yaml}"));
    let end = start
        + yaml[start..]
            .find("\nadmin:")
            .unwrap_or_else(|| panic!("{yaml}"));
    let untagged = format!("{}{}", &yaml[..start], &yaml[end + 1..]);
    let mut opts = EnvoyOptions::new().env(KEYPEM_ENV, keys.signing_key_pem());
    opts = opts.env(JWKS_ENV, "");
    let envoy = Envoy::start(&untagged, opts).unwrap_or_else(|e| panic!("{e}"));
    let reply = token(&envoy, Some(&community), &[PRIVATE_PUSH]);
    assert_eq!(reply.status, 403);
    envoy.wait_counter(
        "wasmcustom.registry_token_rejected_total.reason.plan_denied",
        1,
        COUNTER_WAIT,
    );
    let prom = envoy.stats_prometheus();
    assert!(
        prom_samples(&prom).iter().all(|(name, labels, _)| !(name
            .starts_with("registry_token_rejected_total")
            && labels.iter().any(|(l, _)| l == "reason"))),
        "a reason label without stats_tags:\n{prom}"
    );
    assert!(
        prom_samples(&prom).iter().all(|(name, labels, _)| !(name
            .starts_with("registry_token_issued_total")
            && labels.iter().any(|(l, _)| l == "grant"))),
        "a grant label without stats_tags:\n{prom}"
    );
    assert!(prom.contains("plan_denied"), "{prom}");
}

/// The alerts of `deploy/prometheus/registry-token.rules.yaml`.
const ALERTS: [&str; 9] = [
    "RegistryTokenAlarm",
    "RegistryTokenClientNoise",
    "RegistryTokenIssuanceDropped",
    "RegistryTokenLedgerDropping",
    "RegistryTokenLedgerRevocationsNearBound",
    "RegistryTokenNothingIssued",
    "RegistryTokenRejections",
    "RegistryTokenRevocationListStale",
    "RegistryTokenRevocationRefreshFailing",
];

/// How long Prometheus (1 s scrape and evaluation) may take to see a change.
const PROM_WAIT: Duration = Duration::from_secs(30);

fn rules_path() -> std::path::PathBuf {
    repo_root().join("deploy/prometheus/registry-token.rules.yaml")
}

/// `promtool check rules` passes on the shipped rules; a real Prometheus scraping Envoy's
/// admin `/stats/prometheus` every second sees `registry_token_issued_total` and
/// `registry_token_rejected_total{reason="plan_denied"}` by their exact names with the
/// values this test caused, loads the rules file (its nine alerts listed by
/// `/api/v1/rules`), and `RegistryTokenRejections` fires for `plan_denied`.
#[test]
fn prometheus_scrapes_the_counters_and_loads_the_rules() {
    let rules = rules_path();
    let (ok, out) = promtool(
        &repo_root(),
        &["check", "rules", &rules.display().to_string()],
    );
    assert!(ok, "promtool check rules failed:\n{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out}"
    );

    let keys = TestKeys::generate();
    let envoy = start_gateway(
        &filter_config(&keys, REALM),
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new(),
    );
    let prom = Prometheus::start(&scrape_config(
        &format!("127.0.0.1:{}", envoy.admin_port()),
        "/stats/prometheus",
        std::slice::from_ref(&rules),
    ))
    .unwrap_or_else(|e| panic!("{e}"));

    // The rules file is loaded: five alerting rules, healthy.
    let data = prom
        .wait_api("/api/v1/rules", PROM_WAIT, |d| {
            d["groups"].as_array().is_some_and(|g| !g.is_empty())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut alerts: Vec<String> = Vec::new();
    for group in data["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            assert_eq!(rule["type"], "alerting", "{rule}");
            assert_ne!(rule["health"], "err", "{rule}");
            alerts.push(rule["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    alerts.sort();
    assert_eq!(alerts, ALERTS, "{data}");

    // Prometheus scrapes Envoy.
    prom.wait_api("/api/v1/targets", PROM_WAIT, |d| {
        d["activeTargets"]
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["health"] == "up")
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let enterprise = optok(&keys, |s| s.plan = Some("enterprise".into()));
    let community = optok(&keys, |_| {});
    const ISSUED: u32 = 3;
    for _ in 0..ISSUED {
        let r = envoy.get(
            &token_path(SERVICE, &[PRIVATE_PUSH]),
            &[("authorization", &format!("Bearer {enterprise}"))],
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    let deny = || {
        let r = envoy.get(
            &token_path(SERVICE, &[PRIVATE_PUSH]),
            &[("authorization", &format!("Bearer {community}"))],
        );
        assert_refused(&r, 403, "plan_denied", "community push");
    };
    deny();
    envoy.wait_counter(
        "wasmcustom.registry_token_issued_total.grant.get",
        u64::from(ISSUED),
        LAG,
    );

    let issued = r#"registry_token_issued_total{grant="get"}"#;
    let denied = r#"registry_token_rejected_total{reason="plan_denied"}"#;
    prom.wait_value(issued, f64::from(ISSUED), PROM_WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    prom.wait_value(denied, 1.0, PROM_WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Exactly those names, no prefix, no other label than the scrape's and `grant` or
    // `reason`.
    for (query, labels) in [
        (issued, vec!["__name__", "grant", "instance", "job"]),
        (denied, vec!["__name__", "instance", "job", "reason"]),
    ] {
        let result = prom.query(query).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(result.len(), 1, "{query}: {result:?}");
        let metric = &result[0]["metric"];
        let mut got: Vec<&str> = metric
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, labels, "{query}: {metric}");
        assert_eq!(metric["job"], "envoy");
    }
    // No other reason was counted.
    let reasons = prom
        .query("registry_token_rejected_total")
        .unwrap_or_else(|e| panic!("{e}"));
    let nonzero: Vec<&Value> = reasons
        .iter()
        .filter(|s| s["value"][1].as_str() != Some("0"))
        .collect();
    assert_eq!(nonzero.len(), 1, "{reasons:?}");

    // A second refusal once Prometheus has the first: the rejection alert fires for
    // plan_denied (increase over 5 minutes > 0, no `for`).
    deny();
    prom.wait_value(denied, 2.0, PROM_WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let firing = prom
        .wait_api("/api/v1/alerts", PROM_WAIT, |d| {
            d["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["labels"]["alertname"] == "RegistryTokenRejections"
                        && x["labels"]["reason"] == "plan_denied"
                        && x["state"] == "firing"
                })
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let alert = firing["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["labels"]["alertname"] == "RegistryTokenRejections")
        .cloned()
        .unwrap_or_default();
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"], "Registry tokens refused (plan_denied)",
        "{alert}"
    );
}
