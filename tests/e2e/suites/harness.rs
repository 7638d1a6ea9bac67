//! Tests of the e2e harness itself: real Envoy, no wasm module needed.
//!
//! Run with `cargo test -p registry-token-e2e --test harness`.

use std::time::Duration;

use registry_token_e2e::{free_port, get, prom_value, repo_root, try_request, Envoy, EnvoyOptions};

fn smoke_yaml() -> String {
    let path = repo_root().join("tests/e2e/fixtures/harness-smoke.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn start(opts: EnvoyOptions) -> Envoy {
    Envoy::start(&smoke_yaml(), opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn direct_response_and_stats() {
    let envoy = start(EnvoyOptions::default());
    assert_ne!(envoy.listen_port(), envoy.admin_port());
    assert_eq!(
        envoy.base_url(),
        format!("http://127.0.0.1:{}", envoy.listen_port())
    );

    let reply = envoy.get("/hello", &[("x-test", "1")]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hi");
    assert_eq!(reply.header("Content-Length"), Some("2"));
    assert_eq!(reply.header("content-length"), Some("2"));
    assert!(reply.header("server").is_some_and(|s| s.contains("envoy")));

    // 4xx is a reply, not an error; repeated headers are kept in order; JSON bodies parse.
    let teapot = get(&format!("{}/teapot", envoy.base_url()), &[]);
    assert_eq!(teapot.status, 418);
    assert_eq!(teapot.header_all("X-Multi"), ["one", "two"]);
    assert_eq!(teapot.json()["error"], "teapot");
    let missing = envoy.get("/nope", &[]);
    assert_eq!(missing.status, 404);

    // Redirects are not followed.
    let redirect = envoy.get("/redirect", &[]);
    assert_eq!(redirect.status, 301);
    assert!(redirect
        .header("location")
        .is_some_and(|l| l.ends_with("/hello")));

    // Four requests went through the ingress listener.
    let completed = envoy.wait_counter(
        "http.ingress.downstream_rq_completed",
        4,
        Duration::from_secs(5),
    );
    assert_eq!(completed, 4);
    assert_eq!(envoy.counter("http.ingress.downstream_rq_completed"), 4);
    assert_eq!(envoy.counter("http.ingress.downstream_rq_2xx"), 1);
    assert_eq!(envoy.counter("http.ingress.downstream_rq_4xx"), 2);
    assert_eq!(envoy.counter("http.ingress.downstream_rq_3xx"), 1);
    // Exact names: a prefix of a stat name is not that stat.
    assert_eq!(envoy.try_counter("http.ingress.downstream_rq"), None);
    assert_eq!(envoy.try_counter("no.such.stat"), None);
    // Gauges too.
    assert_eq!(envoy.counter("server.state"), 0); // 0 = LIVE

    let prom = envoy.stats_prometheus();
    assert_eq!(
        prom_value(
            &prom,
            r#"envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        prom_value(
            &prom,
            r#"envoy_http_downstream_rq_xx{envoy_response_code_class="4",envoy_http_conn_manager_prefix="ingress"}"#
        ),
        Some(2.0)
    );

    // The log is flushed while Envoy runs.
    assert!(envoy.wait_for_log(Duration::from_secs(2), |l| l
        .contains("starting main dispatch loop")));
}

#[test]
#[should_panic(expected = "no stat named")]
fn counter_panics_on_unknown_stat() {
    let envoy = start(EnvoyOptions::default());
    envoy.counter("http.ingress.no_such_counter");
}

#[test]
fn invalid_config_is_refused_with_a_log() {
    let yaml = smoke_yaml().replace(
        "stat_prefix: ingress",
        "stat_prefix: ingress\n                bogus_field_for_harness_test: 1",
    );
    let log = Envoy::start_expect_failure(&yaml, EnvoyOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(log.contains("bogus_field_for_harness_test"), "{log}");

    // start() reports the same failure as an error carrying the log tail.
    let err = match Envoy::start(&yaml, EnvoyOptions::default()) {
        Ok(_) => panic!("Envoy accepted an invalid config"),
        Err(e) => e,
    };
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("bogus_field_for_harness_test"), "{err}");
}

#[test]
fn expect_failure_errors_when_envoy_gets_ready() {
    let err = Envoy::start_expect_failure(&smoke_yaml(), EnvoyOptions::default())
        .expect_err("a valid config must not count as a refusal");
    assert!(err.contains("became ready"), "{err}");
}

#[test]
fn template_vars_options_and_env() {
    // An extra placeholder: a second listener on a port chosen by the test.
    let extra_port = free_port();
    let yaml = smoke_yaml().replace(
        "  listeners:\n",
        "  listeners:\n\
         \x20   - name: extra\n\
         \x20     address:\n\
         \x20       socket_address: { address: 127.0.0.1, port_value: {{EXTRA_PORT}} }\n\
         \x20     filter_chains:\n\
         \x20       - filters:\n\
         \x20           - name: envoy.filters.network.http_connection_manager\n\
         \x20             typed_config:\n\
         \x20               \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n\
         \x20               stat_prefix: extra\n\
         \x20               route_config:\n\
         \x20                 virtual_hosts:\n\
         \x20                   - name: all\n\
         \x20                     domains: [\"*\"]\n\
         \x20                     routes:\n\
         \x20                       - match: { prefix: / }\n\
         \x20                         direct_response: { status: 200, body: { filename: \"{{TMPDIR}}/body.txt\" } }\n\
         \x20               http_filters:\n\
         \x20                 - name: envoy.filters.http.router\n\
         \x20                   typed_config:\n\
         \x20                     \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
    );

    // Missing variable: refused before Envoy even starts.
    let err = match Envoy::start(&yaml, EnvoyOptions::default()) {
        Ok(_) => panic!("unresolved placeholder accepted"),
        Err(e) => e,
    };
    assert!(err.contains("{{EXTRA_PORT}}"), "{err}");

    let envoy = Envoy::start(
        &yaml,
        EnvoyOptions::new()
            .concurrency(2)
            .var("EXTRA_PORT", extra_port)
            .file("body.txt", "from a file")
            .env("REGISTRY_TOKEN_HARNESS_TEST", "yes")
            .arg("--component-log-level")
            .arg("upstream:debug"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let reply = get(&format!("http://127.0.0.1:{extra_port}/x"), &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "from a file");
    assert!(envoy.dir().join("envoy.yaml").is_file());

    // --concurrency reached Envoy.
    let info = envoy.admin_get("/server_info").json();
    assert_eq!(info["command_line_options"]["concurrency"], 2, "{info}");
    assert_eq!(info["command_line_options"]["log_level"], "info", "{info}");
    // The environment variable reached the process.
    let pid = envoy.pid().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(environ
        .split(|&b| b == 0)
        .any(|kv| kv == b"REGISTRY_TOKEN_HARNESS_TEST=yes"));
}

#[test]
fn drop_stops_envoy() {
    let envoy = start(EnvoyOptions::default());
    let pid = envoy.pid().expect("running");
    let ready = format!("http://127.0.0.1:{}/ready", envoy.admin_port());
    assert_eq!(get(&ready, &[]).status, 200);
    drop(envoy);
    assert!(try_request("GET", &ready, &[], None).is_err());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn stop_is_graceful_and_idempotent() {
    let mut envoy = start(EnvoyOptions::default());
    assert!(envoy.is_running());
    let begin = std::time::Instant::now();
    envoy.stop();
    // SIGTERM suffices: well under the SIGKILL grace period.
    assert!(
        begin.elapsed() < Duration::from_secs(4),
        "{:?}",
        begin.elapsed()
    );
    assert!(!envoy.is_running());
    envoy.stop();
    assert!(envoy.wait_for_log(Duration::from_secs(1), |l| l.contains("SIGTERM")));
}
