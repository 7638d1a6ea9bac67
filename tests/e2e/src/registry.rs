//! A real Docker registry and a real client for the end-to-end exchange tests: Debian's
//! `docker-registry` (distribution 2.8) with token authentication pointing at the gateway,
//! a tiny OCI image layout built here (no network, no daemon), and `skopeo` to push and
//! pull it with the OpTok as the Basic password, as `docker login` users do.
//!
//! ```no_run
//! use registry_token_e2e::registry::{self, OciImage, Registry, RegistryAuth};
//!
//! # let realm = String::new(); let signing_cert_pem = String::new(); let optok = "";
//! let registry = Registry::start(&RegistryAuth::new(&realm, &signing_cert_pem))
//!     .unwrap_or_else(|e| panic!("{e}"));
//! let image = OciImage::build("v1");
//! let run = registry::copy(
//!     &image.reference(),
//!     &registry.docker_ref("stella-ops/private/app", "v1"),
//!     None,
//!     Some(&registry::creds(optok)),
//! );
//! assert!(run.success, "{run}");
//! ```
//!
//! `make apt-deps` installs `docker-registry` and `skopeo`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::gateway::{SERVICE, SIGNING_ISSUER};
use crate::{free_port, tail, try_request, LOG_TAIL_LINES, STOP_GRACE};

/// How long [`Registry::start`] waits for `GET /v2/` to answer 401.
pub const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of one `skopeo` run (it is killed after this long).
pub const SKOPEO_TIMEOUT: Duration = Duration::from_secs(90);
/// The user name skopeo sends with the OpTok (the filter ignores it).
pub const CREDS_USER: &str = "dev-user";

// ---------------------------------------------------------------------------------------
// Binaries.
// ---------------------------------------------------------------------------------------

/// `$env` when set and not empty, else `default`.
pub(crate) fn bin_from(env: &str, default: &str) -> PathBuf {
    match std::env::var_os(env) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(default),
    }
}

/// The registry binary: `$DOCKER_REGISTRY_BIN`, else `/usr/bin/docker-registry`.
pub fn registry_bin() -> PathBuf {
    bin_from("DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry")
}

/// The skopeo binary: `$SKOPEO_BIN`, else `/usr/bin/skopeo`.
pub fn skopeo_bin() -> PathBuf {
    bin_from("SKOPEO_BIN", "/usr/bin/skopeo")
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex(&b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The registry.
// ---------------------------------------------------------------------------------------

/// The `auth.token` section of the registry configuration.
#[derive(Clone, Debug)]
pub struct RegistryAuth {
    /// `auth.token.realm`: the gateway's token URL (`http://127.0.0.1:<port>/token`).
    pub realm: String,
    /// `auth.token.service` (the minted token's `aud`); default [`SERVICE`].
    pub service: String,
    /// `auth.token.issuer` (the minted token's `iss`); default [`SIGNING_ISSUER`].
    pub issuer: String,
    /// Contents of the `auth.token.rootcertbundle` file (PEM certificates).
    pub root_certs_pem: String,
}

impl RegistryAuth {
    /// `realm` and the root certificates, with the service and issuer the gateway's test
    /// configuration uses.
    pub fn new(realm: &str, root_certs_pem: &str) -> RegistryAuth {
        RegistryAuth {
            realm: realm.to_owned(),
            service: SERVICE.to_owned(),
            issuer: SIGNING_ISSUER.to_owned(),
            root_certs_pem: root_certs_pem.to_owned(),
        }
    }
}

fn yaml_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// A running `docker-registry serve` on 127.0.0.1 with filesystem storage in a temporary
/// directory and token authentication ([`Registry::start`]) or none
/// ([`Registry::start_plain`]). Dropping it stops the process; when dropped during a panic
/// it prints the tail of its log.
pub struct Registry {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    port: u16,
    log_path: PathBuf,
}

impl Registry {
    /// Writes the configuration and the root certificate bundle, starts the registry and
    /// waits (up to [`REGISTRY_READY_TIMEOUT`]) until `GET /v2/` answers 401 with a
    /// `Bearer` challenge naming `auth.realm`. Errors carry the registry's log.
    pub fn start(auth: &RegistryAuth) -> Result<Registry, String> {
        Self::start_with(Some(auth), free_port())
    }

    /// [`Registry::start`] on a given port of 127.0.0.1 (one from [`free_port`]): for a
    /// registry behind the gateway, whose Envoy cluster names the port before the
    /// registry, which needs the gateway's realm, can start.
    pub fn start_on(auth: &RegistryAuth, port: u16) -> Result<Registry, String> {
        Self::start_with(Some(auth), port)
    }

    /// A registry without any authentication (no `auth` section): every client may pull
    /// and push. Ready when `GET /v2/` answers 200. For checking the client harnesses
    /// themselves (`clients.rs`) before a realm is involved.
    pub fn start_plain() -> Result<Registry, String> {
        Self::start_with(None, free_port())
    }

    fn start_with(auth: Option<&RegistryAuth>, port: u16) -> Result<Registry, String> {
        let bin = registry_bin();
        if !bin.is_file() {
            return Err(format!(
                "{} not found: install Debian's docker-registry (make apt-deps) or set \
                 DOCKER_REGISTRY_BIN",
                bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("registry-token-registry-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).map_err(|e| format!("{}: {e}", storage.display()))?;
        let auth_section = match auth {
            Some(auth) => {
                let roots = dir.path().join("rootcerts.pem");
                fs::write(&roots, &auth.root_certs_pem)
                    .map_err(|e| format!("{}: {e}", roots.display()))?;
                format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
                     issuer: {issuer}\n    rootcertbundle: {roots}\n",
                    realm = yaml_str(&auth.realm),
                    service = yaml_str(&auth.service),
                    issuer = yaml_str(&auth.issuer),
                    roots = yaml_str(&roots.display().to_string()),
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n\
             {auth_section}",
            storage = yaml_str(&storage.display().to_string()),
            secret = random_hex(16),
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, &config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log_path = dir.path().join("registry.log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // distribution reads REGISTRY_<SECTION>_<FIELD> overrides from its environment;
        // keep the runner's (e.g. the gateway's REGISTRY_TOKEN_*) out of it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(&k);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut registry = Registry {
            child: Some(child),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            port,
            log_path,
        };
        let deadline = Instant::now() + REGISTRY_READY_TIMEOUT;
        let url = format!("{}/v2/", registry.url());
        loop {
            if let Some(status) = registry
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "docker-registry exited ({status}) before answering\n{}",
                    registry.report()
                ));
            }
            if let Ok(reply) = try_request("GET", &url, &[], None) {
                let challenge = reply.header("www-authenticate").unwrap_or("").to_owned();
                let expected = match auth {
                    Some(auth) => {
                        if reply.status == 401
                            && challenge.contains(&format!("realm=\"{}\"", auth.realm))
                        {
                            return Ok(registry);
                        }
                        format!("401 with a Bearer challenge for {}", auth.realm)
                    }
                    None if reply.status == 200 => return Ok(registry),
                    None => "200 (no authentication)".to_owned(),
                };
                let report = registry.report();
                registry.stop();
                return Err(format!(
                    "GET {url} answered {} with WWW-Authenticate {challenge:?}, expected \
                     {expected}\n{report}",
                    reply.status
                ));
            }
            if Instant::now() >= deadline {
                let report = registry.report();
                registry.stop();
                return Err(format!(
                    "docker-registry did not answer within {REGISTRY_READY_TIMEOUT:?}\n{report}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the registry host in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// `docker://127.0.0.1:<port>/<repo>:<tag>` for skopeo.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.host())
    }

    /// The temporary directory (configuration, storage, log).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The registry's log (stdout and stderr) as it is now.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Stops the process (SIGTERM, then SIGKILL). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, STOP_GRACE);
        }
    }

    fn report(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of the registry log ({}) ---\n{}",
            self.log_path.display(),
            tail(&self.log(), LOG_TAIL_LINES)
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "\n===== docker-registry (127.0.0.1:{}) — test failed =====\n{}\n===== end of registry log =====",
                self.port,
                self.report()
            );
            if std::env::var_os("E2E_KEEP_TMP").is_some() {
                if let Some(dir) = self.dir.take() {
                    eprintln!("(E2E_KEEP_TMP: kept {})", dir.keep().display());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A tiny OCI image layout.
// ---------------------------------------------------------------------------------------

/// One ustar archive holding regular files (mode 0644, mtime 0), with the two zero blocks
/// at the end.
pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        // width-1 octal digits, NUL-terminated.
        let text = format!("{value:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
        field[text.len()] = 0;
    }
    let mut out = Vec::new();
    for (name, data) in files {
        assert!(name.len() < 100, "tar: name {name:?} too long");
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 0);
        h[148..156].fill(b' ');
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// CRC-32 (IEEE, reflected), as gzip needs it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member (RFC 1952) of `data` using stored (uncompressed) deflate blocks:
/// the bytes are gzip to every reader, with no compression library needed.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65_535).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i == last));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in a temporary
/// directory: one gzip layer holding a file with random content (so every image is new
/// to every registry and to skopeo's blob cache), its config and its manifest.
pub struct OciImage {
    dir: tempfile::TempDir,
    /// The tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// `sha256:…` of the config blob.
    pub config_digest: String,
    /// `sha256:…` of the (gzip) layer blob.
    pub layer_digest: String,
}

/// The OCI manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

impl OciImage {
    /// Builds the layout with one image tagged `tag`.
    ///
    /// # Panics
    /// When the temporary directory cannot be written.
    pub fn build(tag: &str) -> OciImage {
        let dir = empty_oci_dir();
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("{}: {e}", blobs.display()));
        let put = |data: &[u8]| -> String {
            let digest = sha256_digest(data);
            let file = blobs.join(digest.trim_start_matches("sha256:"));
            fs::write(&file, data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            digest
        };
        let nonce = random_hex(16);
        let content = format!("registry-token-filter end-to-end image {nonce}\n");
        let layer_tar = tar(&[("hello.txt", content.as_bytes())]);
        let layer = gzip_stored(&layer_tar);
        let layer_digest = put(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"org.example.nonce": nonce}},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer_tar)]},
            "history": [{"created_by": "registry-token-e2e"}]
        }))
        .unwrap_or_default();
        let config_digest = put(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len()
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer.len()
            }]
        }))
        .unwrap_or_default();
        let manifest_digest = put(&manifest);
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag}
            }]
        });
        let index_path = dir.path().join("index.json");
        fs::write(&index_path, index.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", index_path.display()));
        OciImage {
            dir,
            tag: tag.to_owned(),
            manifest_digest,
            config_digest,
            layer_digest,
        }
    }

    /// The layout directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `oci:<dir>:<tag>` for skopeo.
    pub fn reference(&self) -> String {
        oci_ref(self.path(), &self.tag)
    }
}

/// A new empty temporary directory with an `oci-layout` file (skopeo fills it in).
///
/// # Panics
/// When the directory cannot be created.
pub fn empty_oci_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("registry-token-oci-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let layout = dir.path().join("oci-layout");
    fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap_or_else(|e| panic!("{}: {e}", layout.display()));
    dir
}

/// `oci:<dir>:<tag>`.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// The manifest digest tagged `tag` in the OCI layout `dir` (from its `index.json`).
pub fn oci_manifest_digest(dir: &Path, tag: &str) -> Result<String, String> {
    let path = dir.join("index.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let index: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no manifest tagged {tag:?} in {}: {text}", path.display()))
}

// ---------------------------------------------------------------------------------------
// skopeo.
// ---------------------------------------------------------------------------------------

/// One finished (or killed) skopeo run.
#[derive(Clone, Debug)]
pub struct SkopeoRun {
    /// The command line, with credentials masked.
    pub command: String,
    /// Exit code (None when killed by a signal, e.g. on timeout).
    pub code: Option<i32>,
    /// Exit status 0.
    pub success: bool,
    /// Killed because it ran longer than its timeout.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (skopeo's error messages).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl fmt::Display for SkopeoRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → exit {:?}{} in {:.1?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// `user:<optok>`: skopeo's `--src-creds` / `--dest-creds` value. skopeo sends it to the
/// realm as HTTP Basic; the filter takes the password as the OpTok.
pub fn creds(optok: &str) -> String {
    format!("{CREDS_USER}:{optok}")
}

/// Runs `skopeo <args>` with a fresh accept-anything signature policy and an empty auth
/// file (nothing from the host's configuration), killing it after `timeout`.
///
/// # Panics
/// When skopeo cannot be started.
pub fn skopeo(args: &[&str], timeout: Duration) -> SkopeoRun {
    let bin = skopeo_bin();
    let dir = tempfile::Builder::new()
        .prefix("registry-token-skopeo-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let policy = dir.path().join("policy.json");
    let _ = fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    );
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = fs::File::create(&out_path).unwrap_or_else(|e| panic!("{e}"));
    let err = fs::File::create(&err_path).unwrap_or_else(|e| panic!("{e}"));
    let mut full: Vec<String> = vec![
        "--policy".into(),
        policy.display().to_string(),
        "--command-timeout".into(),
        format!("{}s", timeout.as_secs().max(1)),
    ];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    let masked: Vec<String> = full
        .iter()
        .map(|a| match a.split_once(':') {
            Some((user, secret)) if user == CREDS_USER && secret.len() > 12 => {
                format!("{user}:{}…", &secret[..12])
            }
            _ => a.clone(),
        })
        .collect();
    let command = format!("{} {}", bin.display(), masked.join(" "));
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .args(&full)
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .env("REGISTRY_AUTH_FILE", dir.path().join("auth.json"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (install skopeo: make apt-deps): {e}",
                bin.display()
            )
        });
    // A little beyond skopeo's own --command-timeout, so that it can say why it stopped.
    let deadline = started + timeout + Duration::from_secs(5);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                crate::terminate(&mut child, Duration::from_secs(2));
                break child.try_wait().ok().flatten();
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let code = status.and_then(|s| s.code());
    SkopeoRun {
        command,
        code,
        success: !timed_out && code == Some(0),
        timed_out,
        stdout: read_lossy(&out_path),
        stderr: read_lossy(&err_path),
        elapsed: started.elapsed(),
    }
}

/// `skopeo copy --preserve-digests --src-tls-verify=false --dest-tls-verify=false
/// [--src-creds C] [--dest-creds C] <src> <dst>` with [`SKOPEO_TIMEOUT`]. `--preserve-digests`
/// makes skopeo fail rather than alter the manifest, so the digest must survive the trip.
pub fn copy(src: &str, dst: &str, src_creds: Option<&str>, dest_creds: Option<&str>) -> SkopeoRun {
    copy_with_timeout(src, dst, src_creds, dest_creds, SKOPEO_TIMEOUT)
}

/// [`copy`] with another timeout.
pub fn copy_with_timeout(
    src: &str,
    dst: &str,
    src_creds: Option<&str>,
    dest_creds: Option<&str>,
    timeout: Duration,
) -> SkopeoRun {
    let mut args = vec![
        "copy",
        "--preserve-digests",
        "--retry-times",
        "0",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    match src_creds {
        Some(c) => args.extend(["--src-creds", c]),
        None => args.push("--src-no-creds"),
    }
    match dest_creds {
        Some(c) => args.extend(["--dest-creds", c]),
        None => args.push("--dest-no-creds"),
    }
    args.extend([src, dst]);
    skopeo(&args, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_gzip_match_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let gz = gzip_stored(b"hello");
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(gz.len(), 10 + 5 + 5 + 8);
        // A block boundary: two stored blocks, the last one final.
        let big = vec![7u8; 70_000];
        let gz = gzip_stored(&big);
        assert_eq!(gz[10], 0);
        assert_eq!(gz[10 + 5 + 65_535], 1);
    }

    #[test]
    fn tar_headers_are_checksummed_ustar() {
        let t = tar(&[("a.txt", b"xyz")]);
        assert_eq!(t.len(), 512 + 512 + 1024);
        assert_eq!(&t[257..262], b"ustar");
        let mut h = t[..512].to_vec();
        let stored = std::str::from_utf8(&h[148..154]).unwrap_or("").to_owned();
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(&stored, 8).ok(), Some(sum));
        assert_eq!(&t[512..515], b"xyz");
    }

    #[test]
    fn oci_layout_digests_are_right() {
        let image = OciImage::build("v1");
        let digest = oci_manifest_digest(image.path(), "v1").unwrap_or_default();
        assert_eq!(digest, image.manifest_digest);
        for d in [
            &image.manifest_digest,
            &image.config_digest,
            &image.layer_digest,
        ] {
            let file = image
                .path()
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:"));
            let data = fs::read(&file).unwrap_or_default();
            assert_eq!(&sha256_digest(&data), d);
        }
        assert!(oci_manifest_digest(image.path(), "v2").is_err());
        assert!(image.reference().starts_with("oci:/"));
    }
}
