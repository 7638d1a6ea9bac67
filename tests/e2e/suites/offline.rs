//! Offline Kit token bundles end to end with real parts and no gateway: `registry-token
//! bundle` mints from the gateway's own configuration, the real registry 2.8 (trusting the
//! signing certificate) accepts the bundled tokens, and `skopeo copy
//! --src-registry-token` pulls with one; the bundled access is what the registry enforces
//! (no push with a pull token, no other repository); `verify-bundle` passes on the bundle
//! and fails once a token is changed. The test builds `registry-token` with cargo unless
//! `REGISTRY_TOKEN_CLI` names the binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use registry_token_e2e::gateway::{
    decode_unverified, filter_config, TestKeys, KEYPEM_ENV, SERVICE,
};
use registry_token_e2e::registry::{
    self, empty_oci_dir, oci_manifest_digest, oci_ref, OciImage, Registry, RegistryAuth,
    SKOPEO_TIMEOUT,
};
use serde_json::{json, Value};

/// No gateway runs: the registry's challenge names a realm nobody answers.
const DEAD_REALM: &str = "http://127.0.0.1:9/token";

const REPO: &str = "stella-ops/public/app";

/// The `registry-token` binary: `$REGISTRY_TOKEN_CLI`, else built here with cargo (a no-op
/// when up to date) into this workspace's target directory.
pub(super) fn cli() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_TOKEN_CLI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "registry-token-cli",
            "--bin",
            "registry-token",
        ])
        .current_dir(registry_token_e2e::repo_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(status.success(), "cargo build -p registry-token-cli failed");
    // <target>/debug/deps/offline-<hash> → <target>/debug/registry-token
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("registry-token"))
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    assert!(bin.is_file(), "{} not built", bin.display());
    bin
}

fn cli_run(bin: &Path, args: &[&str], keys: &TestKeys) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_TOKEN_") {
            cmd.env_remove(k);
        }
    }
    // The signing key from the environment, as the gateway gets it.
    cmd.env(KEYPEM_ENV, keys.signing_key_pem());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// RFC 3339 UTC of a Unix time (days-to-civil), independent of the code under test.
fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

struct Bed {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Bed {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, v: &Value) -> String {
        let p = self.path(rel);
        fs::write(&p, v.to_string()).unwrap_or_else(|e| panic!("{e}"));
        p.display().to_string()
    }

    /// Mints a bundle into `out`; returns `tokens/<name>.jwt` of each token.
    fn bundle(&self, keys: &TestKeys, config: &str, request: &Value, out: &str) -> Output {
        let req = self.write(&format!("{out}.request.json"), request);
        let out = self.path(out).display().to_string();
        cli_run(
            &self.bin,
            &[
                "bundle",
                "--config",
                config,
                "--request",
                &req,
                "--out",
                &out,
            ],
            keys,
        )
    }

    fn token(&self, out: &str, name: &str) -> String {
        fs::read_to_string(self.path(out).join(format!("tokens/{name}.jwt")))
            .unwrap_or_else(|e| panic!("{out}/tokens/{name}.jwt: {e}"))
    }
}

fn request(bundle: &str, plan: &str, tokens: Value) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "bundle": bundle,
        "service": SERVICE,
        "subject": "mirror-eu-1",
        "plan": plan,
        "notBefore": rfc3339(now - 60),
        "notAfter": rfc3339(now + 86_400),
        "tokens": tokens
    })
}

/// `skopeo copy` with bearer tokens instead of credentials.
fn copy_with_tokens(
    src: &str,
    dst: &str,
    src_token: Option<&str>,
    dest_token: Option<&str>,
) -> registry::SkopeoRun {
    let mut args = vec![
        "copy",
        "--preserve-digests",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    if let Some(t) = src_token {
        args.extend(["--src-registry-token", t]);
    }
    if let Some(t) = dest_token {
        args.extend(["--dest-registry-token", t]);
    }
    args.extend([src, dst]);
    registry::skopeo(&args, SKOPEO_TIMEOUT)
}

#[test]
fn a_bundled_token_pulls_from_registry_2_8_with_no_gateway() {
    let keys = TestKeys::generate();
    let bed = Bed {
        dir: tempfile::Builder::new()
            .prefix("registry-token-offline-")
            .tempdir()
            .unwrap_or_else(|e| panic!("{e}")),
        bin: cli(),
    };
    // The gateway's configuration (the test harness's, as for the exchange suite), with the
    // registry 2.8 key lookup: the libtrust kid for the pull bundle.
    let mut pull_config = filter_config(&keys, DEAD_REALM);
    pull_config["signing"]["kidFormat"] = json!("libtrust");
    let pull_config = bed.write("pull-config.json", &pull_config);
    // The operator's push configuration: push allowed in bundles, x5c in the header.
    let mut push_config = filter_config(&keys, DEAD_REALM);
    push_config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    push_config["offline"] =
        json!({"allowedActions": ["pull", "push"], "maxLifetimeSeconds": 86_460});
    let push_config = bed.write("push-config.json", &push_config);

    let registry = Registry::start(&RegistryAuth::new(DEAD_REALM, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));

    // Push with a token minted by the CLI for push.
    let o = bed.bundle(
        &keys,
        &push_config,
        &request(
            "push",
            "enterprise",
            json!([{"name": "push", "scopes": [format!("repository:{REPO}:pull,push")]}]),
        ),
        "push",
    );
    assert!(o.status.success(), "{}", show(&o));
    let push_token = bed.token("push", "push");
    let (header, _) = decode_unverified(&push_token).unwrap_or_else(|e| panic!("{e}"));
    assert!(header["x5c"].is_array(), "{header}");
    let image = OciImage::build("v1");
    let run = copy_with_tokens(
        &image.reference(),
        &registry.docker_ref(REPO, "v1"),
        None,
        Some(&push_token),
    );
    assert!(run.success, "push with the bundled push token: {run}");

    // The pull bundle, under the default offline limits (pull only).
    let o = bed.bundle(
        &keys,
        &pull_config,
        &request(
            "mirror",
            "community",
            json!([
                {"name": "app", "scopes": [format!("repository:{REPO}:pull")]},
                {"name": "other", "scopes": ["repository:stella-ops/public/other:pull"]}
            ]),
        ),
        "mirror",
    );
    assert!(o.status.success(), "{}", show(&o));
    let mirror = bed.path("mirror").display().to_string();
    let jwks = run_ok(&bed.bin, &["jwks", "--config", &pull_config], &keys);
    let jwks_path = bed.path("jwks.json");
    fs::write(&jwks_path, &jwks.stdout).unwrap_or_else(|e| panic!("{e}"));
    let jwks_path = jwks_path.display().to_string();
    let v = run_ok(
        &bed.bin,
        &["verify-bundle", &mirror, "--jwks", &jwks_path],
        &keys,
    );
    let listing = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(
        listing.contains(&format!("app  repository:{REPO}:pull  expires ")),
        "{listing}"
    );

    let app = bed.token("mirror", "app");
    let (header, claims) = decode_unverified(&app).unwrap_or_else(|e| panic!("{e}"));
    assert!(header.get("x5c").is_none(), "{header}");
    assert_eq!(claims["aud"], json!(SERVICE));

    // skopeo pulls with the bundled token, digest preserved.
    let dest = empty_oci_dir();
    let run = copy_with_tokens(
        &registry.docker_ref(REPO, "v1"),
        &oci_ref(dest.path(), "v1"),
        Some(&app),
        None,
    );
    assert!(run.success, "pull with the bundled token: {run}");
    assert_eq!(
        oci_manifest_digest(dest.path(), "v1").unwrap_or_else(|e| panic!("{e}")),
        image.manifest_digest
    );
    let dir_dest = bed.path("pulled-dir");
    let dir_ref = format!("dir:{}", dir_dest.display());
    let run = copy_with_tokens(&registry.docker_ref(REPO, "v1"), &dir_ref, Some(&app), None);
    assert!(run.success, "pull into dir: with the bundled token: {run}");
    assert!(dir_dest.join("manifest.json").is_file());

    // The registry enforces the bundled access: no push with the pull token, and the token
    // for another repository does not pull this one.
    let image2 = OciImage::build("v2");
    let run = copy_with_tokens(
        &image2.reference(),
        &registry.docker_ref(REPO, "v2"),
        None,
        Some(&app),
    );
    assert!(
        refused_by_registry(&run),
        "a pull-only bundled token pushed: {run}"
    );
    let other = bed.token("mirror", "other");
    let dest2 = empty_oci_dir();
    let run = copy_with_tokens(
        &registry.docker_ref(REPO, "v1"),
        &oci_ref(dest2.path(), "v1"),
        Some(&other),
        None,
    );
    assert!(
        !run.success,
        "a token for another repository pulled {REPO}: {run}"
    );
    // A changed token fails verify-bundle (and the registry).
    let mut bytes = app.clone().into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap_or_default();
    fs::write(bed.path("mirror").join("tokens/app.jwt"), &tampered)
        .unwrap_or_else(|e| panic!("{e}"));
    let o = cli_run(
        &bed.bin,
        &["verify-bundle", &mirror, "--jwks", &jwks_path],
        &keys,
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tokens/app.jwt"),
        "{}",
        show(&o)
    );
    let dest3 = empty_oci_dir();
    let run = copy_with_tokens(
        &registry.docker_ref(REPO, "v1"),
        &oci_ref(dest3.path(), "v1"),
        Some(&tampered),
        None,
    );
    assert!(
        refused_by_registry(&run),
        "the registry accepted a changed token: {run}"
    );

    // The push bundle is refused under the default limits (pull only), and nothing written.
    let o = bed.bundle(
        &keys,
        &pull_config,
        &request(
            "push2",
            "enterprise",
            json!([{"name": "push", "scopes": [format!("repository:{REPO}:pull,push")]}]),
        ),
        "push2",
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("offline.allowedActions"),
        "{}",
        show(&o)
    );
    assert!(!bed.path("push2").exists());
    drop(registry);
}

/// A skopeo failure caused by the registry refusing the token (401/403), not by anything
/// else.
fn refused_by_registry(run: &registry::SkopeoRun) -> bool {
    let e = run.stderr.to_lowercase();
    !run.success
        && !run.timed_out
        && (e.contains("unauthorized")
            || e.contains("denied")
            || e.contains("401")
            || e.contains("403"))
}

fn run_ok(bin: &Path, args: &[&str], keys: &TestKeys) -> Output {
    let o = cli_run(bin, args, keys);
    assert!(o.status.success(), "{args:?}: {}", show(&o));
    o
}
