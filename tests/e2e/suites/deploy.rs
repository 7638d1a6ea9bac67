//! Installable by an operator (issue 23): the artefacts of `make oci` and `make
//! ledger-image` and the Istio manifests of `deploy/`, with real parts.
//!
//! - The module's image (`tools/oci/wasm-image.sh`, what `make oci` runs): two builds give
//!   the same bytes; pushed with `skopeo --preserve-digests` to a real registry 2.8 and
//!   pulled back, it has the digest the build printed, in the "compat" shape istio-agent
//!   accepts.
//! - `deploy/istio/envoyfilter`: its extension configuration, pulled and verified as
//!   istio-agent does (the image's manifest digest against `sha256`; the module from the
//!   last `tar+gzip` layer's `plugin.wasm`; on a mismatch the deny-all RBAC filter of
//!   `FAIL_CLOSE`), handed to a real Envoy through file-based ECDS in the shape istiod
//!   sends, with the gateway's stats tags and stats matcher from `deploy/istio`: `POST
//!   /token` answers, a wrong digest denies everything, the right one serves again; the
//!   same configuration without `allow_on_headers_stop_iteration` (what a WasmPlugin
//!   gives) leaves `POST /token` unanswered. The dashboard's filter metrics are in
//!   Envoy's `/stats/prometheus`.
//! - `https://` modules: Envoy's own `remote` fetch with the `.wasm.sha256` of `make oci`
//!   serves; a wrong sha256 fails closed (503, nothing reaches the route).
//! - The ledger's image under podman: read-only root, user 65532, the data volume;
//!   ingest, search, revocation feed, its `/metrics` has the dashboard's ledger metrics,
//!   SIGTERM stops it cleanly and a new container finds the data.
//!
//! The manifests' rendering and schemas, and the dashboard against the code's metric
//! names and promtool, are `make deploy-check` (deploy/check/run.sh).

mod istio;
mod ledger_image;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use registry_token_e2e::clients::Podman;
use registry_token_e2e::dpop::DpopKey;
use registry_token_e2e::gateway::{bearer, optok, TestKeys, KEYPEM_ENV, SERVICE};
use registry_token_e2e::registry::{self, sha256_digest, Registry, SKOPEO_TIMEOUT};
use registry_token_e2e::{
    free_port, get, repo_root, try_request, try_wasm_path, Envoy, EnvoyOptions, Reply,
};
use serde_json::{json, Value};

use super::common::PULL;

/// The repository the module is pushed to, as in the manifests' example URL.
const MODULE_REPO: &str = "platform/registry-token-filter";
/// The ECDS resource (and HTTP filter) name: `<namespace>.<name>` of the EnvoyFilter.
const EXTENSION: &str = "istio-ingress.registry-token";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const INGEST: &str = "deploy-e2e-ingest-secret-0123456789abcdef0123";
const FEED: &str = "deploy-e2e-feed-secret-0123456789abcdef0123456";

fn yaml_file(rel: &str) -> Value {
    let path = repo_root().join(rel);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str::<serde_yaml::Value>(&text)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a command to completion; its stdout, or a panic with both outputs.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// What makes a build reproducible across runs, read once so that a commit landing
/// between two builds does not change the second.
struct Pin {
    revision: String,
    epoch: String,
}

fn pin() -> Pin {
    let git = |args: &[&str]| run(Command::new("git").current_dir(repo_root()).args(args));
    Pin {
        revision: git(&["rev-parse", "HEAD"]).trim().to_owned(),
        epoch: git(&["log", "-1", "--format=%ct"]).trim().to_owned(),
    }
}

/// `tools/oci/<script> input out` as `make oci` / `make ledger-image` run it; the digest
/// it printed last.
fn build_image(script: &str, input: &Path, out: &Path, pin: &Pin) -> String {
    let stdout = run(Command::new(repo_root().join("tools/oci").join(script))
        .arg(input)
        .arg(out)
        .env("REVISION", &pin.revision)
        .env("SOURCE_DATE_EPOCH", &pin.epoch));
    let digest = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{stdout}"
    );
    digest
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
                out.push((path.strip_prefix(dir).unwrap_or(&path).to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The module, published: built once, pushed to a real registry, pulled back.
struct Published {
    registry: Registry,
    /// The manifest digest the build printed.
    digest: String,
    tag: String,
    wasm: Vec<u8>,
    out: tempfile::TempDir,
}

impl Published {
    /// `oci://host/repository:tag`, the URL a WasmPlugin or the EnvoyFilter names.
    fn oci_uri(&self) -> String {
        format!("oci://{}/{MODULE_REPO}:{}", self.registry.host(), self.tag)
    }
}

fn publish() -> Published {
    let wasm_path = try_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let wasm = fs::read(&wasm_path).unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let digest = build_image("wasm-image.sh", &wasm_path, out.path(), &pin());
    let layout = out.path().join("registry-token-filter");
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("index.json: {e}"));
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_else(|| panic!("no tag in {index}"))
        .to_owned();
    let registry = Registry::start_plain().unwrap_or_else(|e| panic!("{e}"));
    let target = registry.docker_ref(MODULE_REPO, &tag);
    // What make oci-push runs (OCI_PUSH_ARGS=--dest-tls-verify=false for plain HTTP).
    let push = registry::skopeo(
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &target,
        ],
        SKOPEO_TIMEOUT,
    );
    assert!(push.success, "{push}");
    Published {
        registry,
        digest,
        tag,
        wasm,
        out,
    }
}

/// The manifest the registry serves for `reference` (`tag` or `sha256:…`): status, body.
fn registry_manifest(p: &Published, reference: &str) -> Reply {
    let url = format!(
        "{}/v2/{MODULE_REPO}/manifests/{reference}",
        p.registry.url()
    );
    try_request("GET", &url, &[("accept", registry::OCI_MANIFEST)], None)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn the_module_image_is_reproducible_and_comes_back_from_a_registry_with_its_digest() {
    let wasm_path = try_wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let pin = pin();
    let (a, b) = (
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    );
    let first = build_image("wasm-image.sh", &wasm_path, a.path(), &pin);
    let second = build_image("wasm-image.sh", &wasm_path, b.path(), &pin);
    assert_eq!(first, second, "two builds, two digests");
    assert!(
        tree(a.path()) == tree(b.path()),
        "two builds, different bytes"
    );

    let p = publish();
    assert_eq!(p.digest, first);
    let layout = p.out.path().join("registry-token-filter");
    let manifest: Value = serde_json::from_slice(&blob(&layout, &p.digest)).unwrap_or_default();
    assert_eq!(manifest["mediaType"], registry::OCI_MANIFEST, "{manifest}");
    let ann = &manifest["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.revision"],
        pin.revision.as_str(),
        "{manifest}"
    );
    assert_eq!(
        ann["org.opencontainers.image.version"],
        p.tag.as_str(),
        "{manifest}"
    );
    // The sha256 for https:// is the module's.
    let sums = fs::read_to_string(p.out.path().join("registry_token_filter.wasm.sha256"))
        .unwrap_or_default();
    assert_eq!(
        format!("sha256:{}", sums.split_whitespace().next().unwrap_or("")),
        sha256_digest(&p.wasm)
    );

    // Pulled back: the registry serves the very manifest, under the digest make oci printed.
    let reply = registry_manifest(&p, &p.tag);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(sha256_digest(reply.body.as_bytes()), p.digest);
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(p.digest.as_str())
    );
    let back = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pulled = agent_pull(&p, &p.digest.replace("sha256:", ""), back.path())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fs::read(pulled).unwrap_or_default() == p.wasm,
        "plugin.wasm is not the module"
    );
    // A wrong digest names nothing in the registry.
    let wrong = format!("sha256:{}", "0".repeat(64));
    assert_eq!(registry_manifest(&p, &wrong).status, 404);
    assert!(agent_pull(&p, &"0".repeat(64), back.path()).is_err());
}

/// What istio-agent does with an `oci://` module (pkg/wasm: the image's manifest digest
/// against the configured sha256, then the "compat" variant: the last layer,
/// `application/vnd.oci.image.layer.v1.tar+gzip`, holding `plugin.wasm`), against the real
/// registry. The module file, or why it refuses.
fn agent_pull(p: &Published, sha256: &str, dir: &Path) -> Result<PathBuf, String> {
    let reply = registry_manifest(p, &p.tag);
    if reply.status != 200 {
        return Err(format!("could not fetch manifest: {reply:?}"));
    }
    let actual = sha256_digest(reply.body.as_bytes());
    if !sha256.is_empty() && actual != format!("sha256:{sha256}") {
        return Err(format!(
            "module digest mismatch: want {sha256}, got {actual}"
        ));
    }
    let layout = dir.join("pulled");
    let copy = registry::skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/{MODULE_REPO}@{actual}", p.registry.host()),
            &format!("oci:{}:pulled", layout.display()),
        ],
        SKOPEO_TIMEOUT,
    );
    if !copy.success {
        return Err(copy.to_string());
    }
    let manifest: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
    let last = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .unwrap_or_default();
    if last["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip" {
        return Err(format!("not the compat variant: {manifest}"));
    }
    let layer = layout.join("blobs/sha256").join(
        last["digest"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("sha256:"),
    );
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(dir)
        .arg("plugin.wasm"));
    Ok(dir.join("plugin.wasm"))
}

/// `dashboard.py names` against the metrics in `exposition` whose names start with
/// `prefix` (the filter's or the ledger's half of the dashboard).
fn dashboard_names_in(exposition: &str, prefix: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("exposition.txt");
    let other = if prefix == "ledger_" {
        "registry_token_"
    } else {
        "ledger_"
    };
    // The other half is not running here: its names are taken as registered, so only
    // this half is checked against what the process exposes.
    let text: String = exposition.lines().map(|l| format!("{l}\n")).collect();
    fs::write(&file, format!("{text}{}", other_half(other))).unwrap_or_else(|e| panic!("{e}"));
    let root = repo_root();
    run(Command::new(root.join(".venv/bin/python3"))
        .arg(root.join("deploy/check/dashboard.py"))
        .args([
            "names",
            "deploy/grafana/registry-token.json",
            "--exposition",
        ])
        .arg(&file)
        .current_dir(&root));
}

/// The dashboard's names of the half not under test, as exposition lines.
fn other_half(prefix: &str) -> String {
    let dash = fs::read_to_string(repo_root().join("deploy/grafana/registry-token.json"))
        .unwrap_or_default();
    let mut names: Vec<String> = dash
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names.iter().map(|n| format!("{n} 0\n")).collect()
}
