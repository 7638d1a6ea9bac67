//! The harness itself: the kit's Envoy (no wasm module needed: start, stats, templates,
//! options, refusal, stop) and the client guards against a plain registry 2.8 (dockerd,
//! containerd and podman each push a fresh image and pull it back, an image pushed by one
//! is pulled by the others, and no process, mount or directory is left behind, also when a
//! test panics). The client guards need root and `make apt-deps`.

use std::path::Path;
use std::time::{Duration, Instant};

use registry_token_e2e::clients::{mounts_under, podman_bin, Containerd, Dockerd, Podman, ProcId};
use registry_token_e2e::registry::Registry;
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

/// Manifest types a registry may answer with, for [`registry_digest`].
const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";

/// `Docker-Content-Digest` of `repo:tag` as the (plain) registry itself reports it.
fn registry_digest(registry: &Registry, repo: &str, tag: &str) -> String {
    let reply = registry_token_e2e::get(
        &format!("{}/v2/{repo}/manifests/{tag}", registry.url()),
        &[("accept", MANIFEST_ACCEPT)],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .header("docker-content-digest")
        .unwrap_or_else(|| panic!("no Docker-Content-Digest: {reply:?}"))
        .to_owned()
}

/// After the guard is gone: none of its processes alive, nothing mounted, no directory.
fn assert_cleaned_up(what: &str, procs: &[ProcId], dir: &Path) {
    for p in procs {
        assert!(!p.alive(), "{what}: process {} is still alive", p.pid);
    }
    assert!(
        mounts_under(dir).is_empty(),
        "{what}: still mounted: {:?}",
        mounts_under(dir)
    );
    assert!(!dir.exists(), "{what}: {} was not removed", dir.display());
}

#[test]
fn dockerd_pushes_and_pulls_through_a_plain_registry_and_leaves_nothing_behind() {
    let test_started = Instant::now();
    let registry = Registry::start_plain().unwrap_or_else(|e| panic!("{e}"));
    let mut docker = Dockerd::start(&[&registry.host()]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("dockerd answered after {:.2?}", docker.startup());
    let image = format!("{}/e2e/docker:v1", registry.host());
    let id = docker.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));

    let run = docker.push(&image);
    assert!(run.success, "{run}");
    eprintln!("docker push: {:.2?}", run.elapsed);
    let digests = docker.repo_digests(&image);
    let pushed = registry_digest(&registry, "e2e/docker", "v1");
    assert!(
        digests.iter().any(|d| d.ends_with(&format!("@{pushed}"))),
        "RepoDigests {digests:?} vs the registry's {pushed}"
    );

    let run = docker.rmi(&image);
    assert!(run.success, "{run}");
    assert!(docker.image_id(&image).is_err(), "rmi left the image");
    let run = docker.pull(&image);
    assert!(run.success, "{run}");
    eprintln!("docker pull: {:.2?}", run.elapsed);
    assert_eq!(docker.image_id(&image).unwrap_or_default(), id);

    // dockerd started its own containerd: both must go with the guard.
    let procs = docker.processes();
    assert!(procs.len() >= 2, "dockerd and its containerd: {procs:?}");
    assert!(procs.iter().all(ProcId::alive));
    let dir = docker.dir().to_path_buf();
    let stop = Instant::now();
    drop(docker);
    eprintln!("dockerd stopped in {:.2?}", stop.elapsed());
    assert_cleaned_up("dockerd", &procs, &dir);
    eprintln!("test took {:.2?}", test_started.elapsed());
}

#[test]
fn containerd_pushes_and_pulls_through_a_plain_registry_and_leaves_nothing_behind() {
    let test_started = Instant::now();
    let registry = Registry::start_plain().unwrap_or_else(|e| panic!("{e}"));
    let mut ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("containerd answered after {:.2?}", ctrd.startup());
    let image = format!("{}/e2e/ctr:v1", registry.host());
    let digest = ctrd.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));

    let run = ctrd.push(&image, None);
    assert!(run.success, "{run}");
    eprintln!("ctr push: {:.2?}", run.elapsed);
    assert_eq!(registry_digest(&registry, "e2e/ctr", "v1"), digest);

    let run = ctrd.rm(&image);
    assert!(run.success, "{run}");
    assert_eq!(ctrd.image_digest(&image), None);
    let run = ctrd.pull(&image, None);
    assert!(run.success, "{run}");
    eprintln!("ctr pull: {:.2?}", run.elapsed);
    assert_eq!(ctrd.image_digest(&image), Some(digest));

    let procs = ctrd.processes();
    assert!(!procs.is_empty());
    let dir = ctrd.dir().to_path_buf();
    let stop = Instant::now();
    drop(ctrd);
    eprintln!("containerd stopped in {:.2?}", stop.elapsed());
    assert_cleaned_up("containerd", &procs, &dir);
    eprintln!("test took {:.2?}", test_started.elapsed());
}

#[test]
fn podman_pushes_and_pulls_through_a_plain_registry() {
    assert!(
        podman_bin().is_file(),
        "podman is not installed: run `make apt-deps` (a missing client is a failure, not a skip)"
    );
    let test_started = Instant::now();
    let registry = Registry::start_plain().unwrap_or_else(|e| panic!("{e}"));
    let podman = Podman::new().unwrap_or_else(|e| panic!("{e}"));
    let image = format!("{}/e2e/podman:v1", registry.host());
    let id = podman.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
    let run = podman.push(&image);
    assert!(run.success, "{run}");
    registry_digest(&registry, "e2e/podman", "v1");
    let run = podman.rmi(&image);
    assert!(run.success, "{run}");
    let run = podman.pull(&image);
    assert!(run.success, "{run}");
    assert_eq!(podman.image_id(&image).unwrap_or_default(), id);
    let dir = podman.dir().to_path_buf();
    drop(podman);
    assert_cleaned_up("podman", &[], &dir);
    eprintln!("test took {:.2?}", test_started.elapsed());
}

#[test]
fn an_image_pushed_by_one_client_is_pulled_by_the_others() {
    let registry = Registry::start_plain().unwrap_or_else(|e| panic!("{e}"));
    let docker = Dockerd::start(&[&registry.host()]).unwrap_or_else(|e| panic!("{e}"));
    let ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
    let from_docker = format!("{}/e2e/cross-docker:v1", registry.host());
    let from_ctr = format!("{}/e2e/cross-ctr:v1", registry.host());
    docker
        .import_tiny(&from_docker)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = docker.push(&from_docker);
    assert!(run.success, "{run}");
    let ctr_digest = ctrd
        .import_tiny(&from_ctr)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = ctrd.push(&from_ctr, None);
    assert!(run.success, "{run}");

    let run = ctrd.pull(&from_docker, None);
    assert!(run.success, "{run}");
    assert_eq!(
        ctrd.image_digest(&from_docker),
        Some(registry_digest(&registry, "e2e/cross-docker", "v1"))
    );
    let run = docker.pull(&from_ctr);
    assert!(run.success, "{run}");
    assert!(
        docker
            .repo_digests(&from_ctr)
            .iter()
            .any(|d| d.ends_with(&format!("@{ctr_digest}"))),
        "{:?}",
        docker.repo_digests(&from_ctr)
    );
}

#[test]
fn daemons_are_stopped_and_removed_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let mut docker = Dockerd::start(&[]).unwrap_or_else(|e| panic!("{e}"));
        let mut ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
        let mut procs = docker.processes();
        procs.extend(ctrd.processes());
        let _ = tx.send((procs, docker.dir().to_path_buf(), ctrd.dir().to_path_buf()));
        panic!("a deliberate failure with dockerd and containerd running");
    })
    .join();
    assert!(outcome.is_err(), "the thread should have panicked");
    let (procs, docker_dir, ctrd_dir) = rx.recv().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        procs.len() >= 3,
        "dockerd, its containerd, containerd: {procs:?}"
    );
    assert_cleaned_up("dockerd", &procs, &docker_dir);
    assert_cleaned_up("containerd", &[], &ctrd_dir);
}
