//! The remote licence revocation list, end to end: a list server written here, fetched by
//! the filter through an Envoy cluster, once per process, on a period, with no restart.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, ConfigForm, GatewaySpec, TestKeys,
};
use registry_token_e2e::{Envoy, EnvoyOptions};
use serde_json::json;

/// Serves the list at any path; `None` answers 503.
struct ListServer {
    port: u16,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ListServer {
    fn start(body: Option<&str>) -> ListServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = Arc::new(Mutex::new(body.map(str::to_string)));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, h, s) = (body.clone(), hits.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                h.fetch_add(1, Ordering::SeqCst);
                let current = b.lock().map(|g| g.clone()).unwrap_or(None);
                let reply = match current {
                    Some(text) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    ),
                    None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                };
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        ListServer {
            port,
            body,
            hits,
            stop,
        }
    }

    fn set(&self, body: Option<&str>) {
        *self.body.lock().expect("lock") = body.map(str::to_string);
    }

    fn cluster_yaml(&self) -> String {
        format!(
            "- name: licensing\n  type: STATIC\n  connect_timeout: 1s\n  load_assignment:\n    \
             cluster_name: licensing\n    endpoints:\n    - lb_endpoints:\n      - endpoint:\n          \
             address:\n            socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            self.port
        )
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn gateway(keys: &TestKeys, server: &ListServer, on_stale: &str, max_stale: u64) -> Envoy {
    let mut cfg = filter_config(keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
    cfg["revocation"] = json!({
        "url": format!("http://127.0.0.1:{}/revoked.json?tenant=a", server.port),
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
    let fetches_before = server.hits.load(Ordering::SeqCst);
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
    let fetched = server.hits.load(Ordering::SeqCst) - fetches_before;
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
