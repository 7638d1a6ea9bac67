//! The ledger's image (`make ledger-image`) under podman: reproducible, user 65532,
//! read-only root, the data volume; ingest, search, revocation feed, `/metrics`; SIGTERM
//! stops it cleanly and a new container finds the data.

use super::*;

/// A podman container of the ledger image, removed (with its volume) when dropped.
struct Container<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.podman.podman(&["rm", "-f", "-t", "5", &self.name]);
    }
}

#[test]
fn the_ledger_image_runs_under_podman_ingest_search_feed_and_a_clean_stop() {
    let bin = std::env::var_os("LEDGER_STATIC_BIN").map_or_else(
        || repo_root().join("target/x86_64-unknown-linux-musl/release/registry-token-ledger"),
        PathBuf::from,
    );
    assert!(
        bin.is_file(),
        "{} not found: run make ledger-image",
        bin.display()
    );
    let pin = pin();
    let (a, b) = (
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    );
    let digest = build_image("ledger-image.sh", &bin, a.path(), &pin);
    assert_eq!(
        build_image("ledger-image.sh", &bin, b.path(), &pin),
        digest,
        "two builds, two digests"
    );
    let layout = a.path().join("registry-token-ledger");

    let podman = Podman::new().unwrap_or_else(|e| panic!("{e}"));
    // Into podman's store under a name (podman pull of an oci: path names the image
    // after the path), digest kept.
    let image = "localhost/registry-token-ledger:deploy-e2e";
    let storage = format!(
        "containers-storage:[vfs@{}+{}]{image}",
        podman.dir().join("root").display(),
        podman.dir().join("run").display()
    );
    let copy = registry::skopeo(
        &[
            "copy",
            "--preserve-digests",
            &format!("oci:{}", layout.display()),
            &storage,
        ],
        SKOPEO_TIMEOUT,
    );
    assert!(copy.success, "{copy}");
    let inspect = podman.podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Digest}} {{.Config.User}}",
        image,
    ]);
    assert_eq!(
        inspect.stdout.trim(),
        format!("{digest} 65532:65532"),
        "{inspect}"
    );

    let keys = TestKeys::generate();
    let config = podman.dir().join("ledger-config");
    fs::create_dir_all(&config).unwrap_or_else(|e| panic!("{e}"));
    fs::write(config.join("jwks.json"), keys.authority_jwks().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let volume = format!("ledger-data-{port}");
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let start = |name: &str| {
        let run = podman.podman(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--read-only",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "-v",
            &format!("{}:/config:ro", config.display()),
            "-v",
            &format!("{volume}:/data"),
            "-e",
            &format!("LEDGER_LISTEN=127.0.0.1:{port}"),
            "-e",
            "LEDGER_ISSUER=https://authority.example",
            "-e",
            "LEDGER_JWKS_FILE=/config/jwks.json",
            "-e",
            &format!("LEDGER_INGEST_SECRET={INGEST}"),
            "-e",
            &format!("LEDGER_FEED_SECRET={FEED}"),
            image,
        ]);
        assert!(run.success, "{run}");
        let container = Container {
            podman: &podman,
            name: name.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while try_request("GET", &url("/healthz"), &[], None).map(|r| r.status) != Ok(200) {
            assert!(
                Instant::now() < deadline,
                "{}",
                podman.podman(&["logs", name])
            );
            thread::sleep(Duration::from_millis(200));
        }
        container
    };
    let first = start(&format!("ledger-{port}"));
    let _volume_cleanup = VolumeGuard {
        podman: &podman,
        name: volume.clone(),
    };

    // The process: user 65532, the root read-only, the database in the volume.
    let pid = podman.podman(&[
        "inspect",
        "--format",
        "{{.State.Pid}} {{.HostConfig.ReadonlyRootfs}}",
        &first.name,
    ]);
    let (pid, ro) = pid.stdout.trim().split_once(' ').unwrap_or_default();
    assert_eq!(ro, "true");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65532")),
        "{status}"
    );

    let ingest = json!({"records": [
        {"id": "deploy-e2e-1", "time": 1_767_225_600, "decision": "issued", "reason": "issued",
         "subject": "alice", "service": SERVICE, "granted": [PULL], "grant": "password", "gateway": "gw-1"},
        {"id": "deploy-e2e-2", "time": 1_767_225_601, "decision": "rejected", "reason": "license_revoked",
         "subject": "bob"}]});
    let reply = try_request(
        "POST",
        &url("/v1/ingest"),
        &[
            ("authorization", &bearer(INGEST)),
            ("content-type", "application/json"),
        ],
        Some(ingest.to_string().as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.json()["accepted"], 2, "{reply:?}");
    let admin = optok(&keys, |s| {
        s.subject = "security-team".into();
        s.scope = "registry.token.admin".into();
    });
    let admin = bearer(&admin);
    let search = || {
        get(
            &url("/v1/issuances?subject=alice"),
            &[("authorization", &admin)],
        )
    };
    let found = search();
    assert_eq!(found.json()["items"][0]["id"], "deploy-e2e-1", "{found:?}");
    let reply = try_request(
        "POST",
        &url("/v1/revocations"),
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        Some(br#"{"kind":"license","value":"lic-deploy","reason":"e2e"}"#),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 201, "{reply:?}");
    let feed = get(
        &url("/v1/revocations/feed"),
        &[("authorization", &bearer(FEED))],
    );
    assert_eq!(feed.status, 200, "{feed:?}");
    assert!(feed.body.contains("lic-deploy"), "{feed:?}");
    let metrics = get(&url("/metrics"), &[]);
    assert!(
        metrics.body.contains("ledger_ingested_records_total 2"),
        "{metrics:?}"
    );
    dashboard_names_in(&metrics.body, "ledger_");

    // SIGTERM (podman stop): a clean exit, well before the 20 s after which podman kills.
    let started = Instant::now();
    let stop = podman.podman(&["stop", "-t", "20", &first.name]);
    assert!(stop.success, "{stop}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    let exit = podman.podman(&["inspect", "--format", "{{.State.ExitCode}}", &first.name]);
    assert_eq!(
        exit.stdout.trim(),
        "0",
        "{}",
        podman.podman(&["logs", &first.name])
    );
    drop(first);

    // A new container on the same volume finds what the first stored.
    let second = start(&format!("ledger-{port}-b"));
    assert_eq!(search().json()["items"][0]["id"], "deploy-e2e-1");
    drop(second);
}

/// Removes a podman volume when dropped.
struct VolumeGuard<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for VolumeGuard<'_> {
    fn drop(&mut self) {
        let _ = self.podman.podman(&["volume", "rm", "-f", &self.name]);
    }
}
