//! The remote licence revocation list, end to end: a list server written here, fetched by
//! the filter through an Envoy cluster, once per process, on a period, with no restart;
//! fail closed while the list was never fetched; and a list of 50,000 revocations from
//! the real ledger's digest feed, enforced within one refresh period.

use std::thread;
use std::time::{Duration, Instant};

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, ConfigForm, GatewaySpec, TestKeys,
};
use registry_token_e2e::list_server::ListServer;
use registry_token_e2e::{get, post, Envoy, EnvoyOptions};
use registry_token_testkit::{Ledger, LedgerOptions};
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

// ---------------------------------------------------------------------------------------
// Issue 25 #4: a revocation list at scale, through the real ledger.
// ---------------------------------------------------------------------------------------

const SCALE_FEED_SECRET: &str = "e2e-scale-feed-secret-0123456789abcdef0123";
const SCALE_ADMIN_SCOPE: &str = "registry.token.admin";
/// Revocations made in bulk before the last one (`POST /v1/revocations/batch`).
const SCALE_BULK: usize = 49_999;
/// The gateway's `revocation.refreshSeconds`.
const SCALE_REFRESH: u64 = 10;

/// A subject of the bulk (about as long as a real one).
fn scale_subject(i: usize) -> String {
    format!("user-{i:06}@tenant.example")
}

fn subject_status(envoy: &Envoy, keys: &TestKeys, subject: &str) -> (u16, String) {
    let tok = optok(keys, |s| s.subject = subject.to_string());
    let r = envoy.get(
        &token_path(
            "registry.example",
            &["repository:stella-ops/public/base:pull"],
        ),
        &[("authorization", &bearer(&tok))],
    );
    (r.status, r.body)
}

/// 50,000 revocations on the real ledger (SQLite): 49,999 through the batch API, then one
/// more through `POST /v1/revocations`; the gateway (real Envoy, the built module, two
/// workers) fetches the ledger's digest feed (`?form=digests`, under 1 MiB where the value
/// form is past it) and refuses the subject revoked last within one refresh period, while
/// an unrevoked subject still gets a token. Before issue 25 #4 the gateway refused the
/// list ("larger than 1048576 bytes") and kept issuing to every revoked subject.
#[test]
fn a_feed_of_50_000_revocations_is_enforced_within_one_refresh_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TestKeys::generate();
    let jwks = dir.path().join("admin-jwks.json");
    std::fs::write(&jwks, keys.authority_jwks().to_string()).expect("write jwks");
    let database = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let opts = LedgerOptions::new(&database, "https://authority.example", &jwks)
        .ingest_secret("e2e-scale-ingest-secret-0123456789abcdef0123")
        .feed_secret(SCALE_FEED_SECRET)
        .env_remove("LEDGER_ADMIN_SCOPE");
    let ledger = Ledger::start(opts).unwrap_or_else(|e| panic!("{e}"));
    let admin = bearer(&optok(&keys, |s| {
        s.subject = "security-team".into();
        s.scope = SCALE_ADMIN_SCOPE.into();
    }));
    let json_headers = [
        ("authorization", admin.as_str()),
        ("content-type", "application/json"),
    ];

    // The bulk, through the API's batch path (10,000 a request).
    let started = Instant::now();
    for chunk in (0..SCALE_BULK).collect::<Vec<_>>().chunks(10_000) {
        let items: Vec<_> = chunk
            .iter()
            .map(|i| json!({"kind": "subject", "value": scale_subject(*i), "reason": "bulk"}))
            .collect();
        let body = json!({ "items": items }).to_string();
        let r = post(
            &ledger.url("/v1/revocations/batch"),
            &json_headers,
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    eprintln!(
        "{SCALE_BULK} revocations through the batch API in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let feed_auth = format!("Bearer {SCALE_FEED_SECRET}");
    let digests = get(
        &ledger.url("/v1/revocations/feed?form=digests"),
        &[("authorization", &feed_auth)],
    );
    let values = get(
        &ledger.url("/v1/revocations/feed"),
        &[("authorization", &feed_auth)],
    );
    assert_eq!((digests.status, values.status), (200, 200));
    eprintln!(
        "feed at {SCALE_BULK}: digest form {} bytes, value form {} bytes",
        digests.body.len(),
        values.body.len()
    );
    assert!(digests.body.len() < 1024 * 1024, "{}", digests.body.len());
    assert!(values.body.len() > 1024 * 1024, "{}", values.body.len());

    // The gateway: the shipped form of the revocation section (the digest feed, the
    // default onStale: refuse), the feed secret from the environment.
    let mut cfg = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
    cfg["revocation"] = json!({
        "url": ledger.url("/v1/revocations/feed?form=digests"),
        "cluster": "ledger_scale",
        "refreshSeconds": SCALE_REFRESH,
    });
    let envoy = GatewaySpec::new(&cfg)
        .form(ConfigForm::StringValue)
        .extra_clusters(&ledger.cluster_yaml("ledger_scale", 0))
        .start(
            &keys,
            EnvoyOptions::new().concurrency(2).env(
                "REGISTRY_TOKEN_REVOCATION__HEADERS__AUTHORIZATION",
                &feed_auth,
            ),
        );
    let bulk_enforced = wait_for(Duration::from_secs(30), || {
        subject_status(&envoy, &keys, &scale_subject(31_337)).0 == 403
    });
    assert!(
        bulk_enforced,
        "the bulk list was never enforced: {:?}\n{}",
        subject_status(&envoy, &keys, &scale_subject(31_337)),
        envoy.log()
    );
    assert_eq!(subject_status(&envoy, &keys, "alice").0, 200);

    // The last revocation, through POST /v1/revocations: refused within one refresh period.
    let last = "user-last@tenant.example";
    assert_eq!(subject_status(&envoy, &keys, last).0, 200);
    let body = json!({"kind": "subject", "value": last, "reason": "revoked last"}).to_string();
    let r = post(
        &ledger.url("/v1/revocations"),
        &json_headers,
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let revoked = Instant::now();
    let refused = wait_for(Duration::from_secs(SCALE_REFRESH + 10), || {
        subject_status(&envoy, &keys, last).0 == 403
    });
    let took = revoked.elapsed();
    eprintln!("the subject revoked last was refused {took:?} after its revocation");
    assert!(refused, "never refused:\n{}", envoy.log());
    // Within one refresh period: the list is fetched 2 s early so that the 1 s tick and
    // whole-second times fall inside it.
    assert!(
        took <= Duration::from_secs(SCALE_REFRESH),
        "refused only after {took:?}"
    );
    let (status, body) = subject_status(&envoy, &keys, last);
    assert_eq!(status, 403);
    assert!(body.contains("subject_revoked"), "{body}");
    assert_eq!(subject_status(&envoy, &keys, "alice").0, 200);
    assert_eq!(subject_status(&envoy, &keys, &scale_subject(0)).0, 403);
    // What the gateway holds, as its gauges say it (set on the next tick).
    let entries = "wasmcustom.registry_token_revocation_entries";
    assert!(
        wait_for(Duration::from_secs(3), || envoy.counter(entries)
            == (SCALE_BULK + 1) as u64),
        "{entries} is {}",
        envoy.counter(entries)
    );
    assert_eq!(
        envoy.counter("wasmcustom.registry_token_revocation_stale"),
        0
    );
    assert_eq!(
        envoy.counter("wasmcustom.registry_token_revocation_refresh_failing"),
        0
    );
    assert!(!envoy.log().contains("revocation list refresh failed"));
}
