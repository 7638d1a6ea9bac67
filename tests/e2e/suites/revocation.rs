//! The remote licence revocation list, end to end: a list server written here, fetched by
//! the filter through an Envoy cluster, once per process, on a period, with no restart;
//! fail closed while the list was never fetched.

use std::thread;
use std::time::{Duration, Instant};

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, ConfigForm, GatewaySpec, TestKeys,
};
use registry_token_e2e::list_server::ListServer;
use registry_token_e2e::{Envoy, EnvoyOptions};
use serde_json::json;

fn gateway(keys: &TestKeys, server: &ListServer, on_stale: &str, max_stale: u64) -> Envoy {
    let mut cfg = filter_config(keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
    cfg["revocation"] = json!({
        "url": format!("http://127.0.0.1:{}/revoked.json?tenant=a", server.port()),
        "cluster": "licensing",
        "refreshSeconds": 10,
        "maxStaleSeconds": max_stale,
        "onStale": on_stale,
    });
    GatewaySpec::new(&cfg)
        .form(ConfigForm::StringValue)
        .extra_clusters(&server.cluster_yaml())
        .start(keys, EnvoyOptions::new().concurrency(2))
}

fn status_for(envoy: &Envoy, keys: &TestKeys, license: &str) -> (u16, String) {
    let tok = optok(keys, |s| s.license = Some(license.to_string()));
    let r = envoy.get(
        &token_path(
            "registry.example",
            &["repository:stella-ops/public/base:pull"],
        ),
        &[("authorization", &bearer(&tok))],
    );
    (r.status, r.body)
}

fn wait_for(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn a_licence_added_to_the_remote_list_is_refused_within_one_refresh_period() {
    let keys = TestKeys::generate();
    let server = ListServer::start(Some(r#"{"revokedLicenses": ["lic-old"]}"#));
    let envoy = gateway(&keys, &server, "serve", 3600);
    assert!(
        wait_for(Duration::from_secs(10), || status_for(
            &envoy, &keys, "lic-old"
        )
        .0 == 403),
        "the first list was never applied"
    );
    assert_eq!(status_for(&envoy, &keys, "lic-new").0, 200);
    let fetches_before = server.hits();
    server.set(Some(r#"{"revokedLicenses": ["lic-old", "lic-new"]}"#));
    let changed = Instant::now();
    // One refresh period (10 s), plus the 1 s tick and slack for a loaded 2-core CI box.
    let refused = wait_for(Duration::from_secs(15), || {
        status_for(&envoy, &keys, "lic-new").0 == 403
    });
    assert!(
        refused,
        "lic-new was not refused within a refresh period (10 s) plus slack ({:?})",
        changed.elapsed()
    );
    let (status, body) = status_for(&envoy, &keys, "lic-new");
    assert_eq!(status, 403);
    assert!(body.contains("license_revoked"), "{body}");
    // One process-wide fetch per period, not one per worker: with 2 workers and the main
    // thread, at most a couple of fetches happened in the ~10 s since.
    let fetched = server.hits() - fetches_before;
    assert!(
        (1..=3).contains(&fetched),
        "{fetched} fetches in one period"
    );
    // The list server goes down: the last good list stays in force (onStale: serve).
    server.set(None);
    thread::sleep(Duration::from_secs(11));
    assert_eq!(status_for(&envoy, &keys, "lic-new").0, 403);
    assert_eq!(status_for(&envoy, &keys, "lic-other").0, 200);
    assert!(envoy.log().contains("revocation list refresh failed"));
    assert!(
        envoy
            .stats_prometheus()
            .contains("registry_token_rejected_total{reason=\"license_revoked\"}"),
        "the refusals are counted"
    );
}

#[test]
fn fail_closed_while_the_list_was_never_fetched() {
    let keys = TestKeys::generate();
    let server = ListServer::start(None);
    let envoy = gateway(&keys, &server, "refuse", 10);
    let (status, body) = status_for(&envoy, &keys, "lic-any");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("revocation_unavailable"), "{body}");
    server.set(Some("lic-bad\n# comments and plain lines work too\n"));
    assert!(
        wait_for(Duration::from_secs(15), || status_for(
            &envoy, &keys, "lic-any"
        )
        .0 == 200),
        "the gateway did not recover once the list was reachable"
    );
    assert_eq!(status_for(&envoy, &keys, "lic-bad").0, 403);
}
