//! A real Authority and real OAuth clients for the end-to-end tests: npm's `oidc-provider`
//! served over HTTPS by `tests/e2e/authority/authority.mjs`, and `tests/e2e/authority/client.mjs`,
//! which obtains OpToks with `oauth4webapi` and makes DPoP proofs with `dpop` / `jose`.
//! None of it shares code with the filter, so a passing test proves interoperability.
//!
//! Also here: a test PKI made with the `openssl` CLI ([`Pki`], in `pki`), the TLS gateway
//! rendered from the shipped `envoy/gateway.yaml` ([`gateway_yaml`], [`start_tls_gateway`])
//! and HTTPS requests with `curl` ([`https_request`]: client certificates, repeated
//! headers, one fresh connection per request), in `tls`.
//!
//! ```no_run
//! use registry_token_e2e::oidc::{self, Authority, Pki};
//! use registry_token_e2e::EnvoyOptions;
//!
//! let pki = Pki::generate();
//! let authority = Authority::start(&pki).unwrap_or_else(|e| panic!("{e}"));
//! let gateway = oidc::start_tls_gateway(&pki, &authority, EnvoyOptions::new().concurrency(2));
//! let grant = authority.dpop_token();
//! let realm = oidc::realm(&gateway);
//! let proof = oidc::proof(&grant, &realm, "GET", None);
//! let reply = oidc::https_get(
//!     &pki,
//!     &gateway,
//!     &oidc::token_query(&["repository:stella-ops/public/base:pull"]),
//!     &[("authorization", &format!("DPoP {}", grant.access_token)), ("dpop", &proof)],
//!     None,
//! );
//! assert_eq!(reply.status, 200);
//! ```
//!
//! `make authority-deps` installs the node modules (`npm ci` in `tests/e2e/authority`).

mod pki;
mod tls;

pub use pki::{ClientCert, Pki};
pub use tls::{
    gateway_yaml, gateway_yaml_path, https_get, https_request, realm, start_tls_gateway,
    start_tls_gateway_no_wait, token_query,
};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use pki::random_secret;

use crate::{free_port, repo_root, tail, Envoy};

/// The resource indicator the Authority issues OpToks for: their `aud`.
pub const RESOURCE: &str = "urn:registry-token";
/// The scope the filter requires.
pub const SCOPE: &str = "registry.token.issue";
/// The registry `service` allowed by `envoy/gateway.yaml`.
pub const SERVICE: &str = "registry.example";
/// The DPoP client (client_secret_basic, `dpop_bound_access_tokens`), plan `community`.
pub const DPOP_CLIENT: &str = "dpop-client";
/// The mTLS client (`tls_client_auth` with [`MTLS_CLIENT_DN`], certificate-bound tokens),
/// plan `enterprise`, licence `lic-0001`.
pub const MTLS_CLIENT: &str = "mtls-client";
/// Subject of the certificate [`MTLS_CLIENT`] authenticates with.
pub const MTLS_CLIENT_DN: &str = "CN=registry-e2e-client";
/// Host names in the test server certificate (besides `IP:127.0.0.1`): the Authority
/// cluster in `envoy/gateway.yaml` checks `authority.example`.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "authority.example", "gateway.example"];
/// How long [`Authority::start`] waits for the ready line.
pub const AUTHORITY_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`start_tls_gateway`] waits for the filter's first JWKS fetch.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------
// Node.
// ---------------------------------------------------------------------------------------

/// `tests/e2e/authority`.
pub fn authority_dir() -> PathBuf {
    repo_root().join("tests/e2e/authority")
}

/// The node binary: `$NODE`, else `node` on the PATH.
pub fn node_bin() -> PathBuf {
    match std::env::var_os("NODE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("node"),
    }
}

/// Errors unless `tests/e2e/authority/node_modules` holds the pinned packages.
pub fn check_node_modules() -> Result<(), String> {
    let dir = authority_dir();
    for module in ["oidc-provider", "oauth4webapi", "dpop", "jose"] {
        if !dir
            .join("node_modules")
            .join(module)
            .join("package.json")
            .is_file()
        {
            return Err(format!(
                "{}/node_modules/{module} is missing: run `make authority-deps` \
                 (npm ci in tests/e2e/authority) first",
                dir.display()
            ));
        }
    }
    Ok(())
}

fn node_command(script: &str) -> Command {
    if let Err(e) = check_node_modules() {
        panic!("{e}");
    }
    let mut cmd = Command::new(node_bin());
    cmd.arg(authority_dir().join(script))
        .current_dir(authority_dir())
        .stdin(Stdio::null());
    cmd
}

/// Runs `client.mjs` with `args` and parses its JSON output.
///
/// # Panics
/// When node cannot start, the script fails (its stderr is in the message) or prints
/// something else than JSON.
pub fn client(args: &[&str]) -> Value {
    let out = node_command("client.mjs")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", node_bin().display()));
    if !out.status.success() {
        panic!(
            "client.mjs {} failed ({}): {}",
            args.first().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client.mjs printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

// ---------------------------------------------------------------------------------------
// The Authority.
// ---------------------------------------------------------------------------------------

/// An OpTok obtained from the Authority by `client.mjs token`.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The OpTok.
    pub access_token: String,
    /// `token_type` (`DPoP` or `Bearer`).
    pub token_type: String,
    /// The OpTok's JOSE header.
    pub header: Value,
    /// The OpTok's claims.
    pub claims: Value,
    /// The DPoP private key (JWK), for DPoP-bound OpToks.
    pub dpop_jwk: Option<Value>,
    /// Its RFC 7638 thumbprint, as computed by the `dpop` library.
    pub dpop_jkt: Option<String>,
}

impl Grant {
    fn from_json(v: &Value) -> Grant {
        let s = |name: &str| v[name].as_str().map(str::to_owned);
        Grant {
            access_token: s("access_token").unwrap_or_else(|| panic!("no access_token in {v}")),
            token_type: s("token_type").unwrap_or_default(),
            header: v["header"].clone(),
            claims: v["claims"].clone(),
            dpop_jwk: v.get("dpop_jwk").cloned(),
            dpop_jkt: s("dpop_jkt"),
        }
    }

    /// The DPoP private JWK as JSON text.
    ///
    /// # Panics
    /// When the grant is not DPoP-bound.
    pub fn jwk_text(&self) -> String {
        match &self.dpop_jwk {
            Some(j) => j.to_string(),
            None => panic!("the grant has no DPoP key"),
        }
    }
}

/// The running Authority (`authority.mjs`). Dropping it stops the process; when dropped
/// during a panic it prints its log.
pub struct Authority {
    child: Option<Child>,
    port: u16,
    issuer: String,
    dir: tempfile::TempDir,
    log_path: PathBuf,
    ca_cert: PathBuf,
    dpop_secret: String,
}

impl Authority {
    /// Starts the Authority on a free port with the server certificate of `pki`, trusting
    /// its CA for client certificates, with the two clients [`DPOP_CLIENT`] (a random
    /// secret) and [`MTLS_CLIENT`]; waits for its ready line.
    pub fn start(pki: &Pki) -> Result<Authority, String> {
        let secret = random_secret();
        let clients = json!([
            {
                "client_id": DPOP_CLIENT,
                "client_secret": secret,
                "token_endpoint_auth_method": "client_secret_basic",
                "dpop_bound_access_tokens": true,
                "claims": {"stellaops:plan": "community"}
            },
            {
                "client_id": MTLS_CLIENT,
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": MTLS_CLIENT_DN,
                "tls_client_certificate_bound_access_tokens": true,
                "claims": {"stellaops:plan": "enterprise", "stellaops:license": "lic-0001"}
            }
        ]);
        Self::start_with(pki, &clients, secret)
    }

    /// Starts the Authority with the given client list (see `authority.mjs`);
    /// `dpop_secret` is what [`Authority::dpop_token`] authenticates [`DPOP_CLIENT`] with.
    pub fn start_with(
        pki: &Pki,
        clients: &Value,
        dpop_secret: String,
    ) -> Result<Authority, String> {
        check_node_modules()?;
        let dir = tempfile::Builder::new()
            .prefix("registry-token-authority-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let clients_path = dir.path().join("clients.json");
        fs::write(&clients_path, clients.to_string())
            .map_err(|e| format!("{}: {e}", clients_path.display()))?;
        let log_path = dir.path().join("authority.log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let port = free_port();
        let issuer = format!("https://127.0.0.1:{port}");
        let child = node_command("authority.mjs")
            .arg("--port")
            .arg(port.to_string())
            .arg("--issuer")
            .arg(&issuer)
            .arg("--tls-cert")
            .arg(&pki.server_cert)
            .arg("--tls-key")
            .arg(&pki.server_key)
            .arg("--client-ca")
            .arg(&pki.ca_cert)
            .arg("--clients")
            .arg(&clients_path)
            .arg("--resource")
            .arg(RESOURCE)
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", node_bin().display()))?;
        let mut authority = Authority {
            child: Some(child),
            port,
            issuer,
            dir,
            log_path,
            ca_cert: pki.ca_cert.clone(),
            dpop_secret,
        };
        let deadline = Instant::now() + AUTHORITY_READY_TIMEOUT;
        loop {
            if authority.log().contains("\"ready\":true") {
                return Ok(authority);
            }
            let exited = authority
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "the Authority exited ({status}) before it was ready:\n{}",
                    authority.log()
                ));
            }
            if Instant::now() >= deadline {
                let log = authority.log();
                authority.stop();
                return Err(format!(
                    "the Authority was not ready within {AUTHORITY_READY_TIMEOUT:?}:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its issuer, `https://127.0.0.1:<port>` (the filter's `authority.issuer`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The discovery document URL (the filter's `authority.metadataUrl`).
    pub fn metadata_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log so far (one JSON line per request and grant).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Stops the process (SIGTERM, then SIGKILL after 3 s). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, Duration::from_secs(3));
        }
    }

    /// A DPoP-bound OpTok for [`DPOP_CLIENT`]: `client.mjs token --dpop` (oauth4webapi,
    /// a fresh ES256 key, a DPoP proof on the token request).
    pub fn dpop_token(&self) -> Grant {
        let ca = self.ca_cert.display().to_string();
        Grant::from_json(&client(&[
            "token",
            "--issuer",
            &self.issuer,
            "--client-id",
            DPOP_CLIENT,
            "--client-secret",
            &self.dpop_secret,
            "--dpop",
            "--ca",
            &ca,
            "--resource",
            RESOURCE,
            "--scope",
            SCOPE,
        ]))
    }

    /// A certificate-bound OpTok for [`MTLS_CLIENT`], requested over a TLS connection
    /// presenting `cert` (which also authenticates the client: `tls_client_auth`).
    pub fn mtls_token(&self, cert: &ClientCert) -> Grant {
        Grant::from_json(&self.mtls_token_json(cert).unwrap_or_else(|e| panic!("{e}")))
    }

    /// [`Authority::mtls_token`] returning the client's failure instead of panicking.
    pub fn mtls_token_json(&self, cert: &ClientCert) -> Result<Value, String> {
        let ca = self.ca_cert.display().to_string();
        let crt = cert.cert_path.display().to_string();
        let key = cert.key_path.display().to_string();
        let out = node_command("client.mjs")
            .args([
                "token",
                "--issuer",
                &self.issuer,
                "--client-id",
                MTLS_CLIENT,
                "--cert",
                &crt,
                "--key",
                &key,
                "--ca",
                &ca,
                "--resource",
                RESOURCE,
                "--scope",
                SCOPE,
            ])
            .output()
            .map_err(|e| format!("cannot run node: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "client.mjs token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("client.mjs output: {e}"))
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "\n===== Authority ({}) — test failed =====\n{}===== end of Authority log =====",
                self.issuer,
                tail(&self.log(), 100)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// DPoP proofs from the standard libraries.
// ---------------------------------------------------------------------------------------

/// One DPoP proof by `dpop`'s `generateProof` for `htm htu`, with `ath` of the grant's
/// OpTok and `nonce` when given.
pub fn proof(grant: &Grant, htu: &str, htm: &str, nonce: Option<&str>) -> String {
    proofs(grant, htu, htm, nonce, 1).remove(0)
}

/// `count` distinct proofs (one node run).
pub fn proofs(
    grant: &Grant,
    htu: &str,
    htm: &str,
    nonce: Option<&str>,
    count: usize,
) -> Vec<String> {
    let jwk = grant.jwk_text();
    let count_text = count.to_string();
    let mut args = vec![
        "proof",
        "--jwk",
        &jwk,
        "--htu",
        htu,
        "--htm",
        htm,
        "--token",
        &grant.access_token,
        "--count",
        &count_text,
    ];
    if let Some(n) = nonce {
        args.extend(["--nonce", n]);
    }
    let out = client(&args);
    let list: Vec<String> = out
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(list.len(), count, "client.mjs proof printed {out}");
    list
}

/// The proofs of `client.mjs variants`: `valid` and one per violated check (`typ_jwt`,
/// `alg_none`, `alg_hs256`, `jwk_private`, `htm_post`, `htu_other_host`, `ath_wrong`, …),
/// built with `jose`.
pub fn proof_variants(grant: &Grant, htu: &str, nonce: Option<&str>) -> BTreeMap<String, String> {
    let jwk = grant.jwk_text();
    let mut args = vec![
        "variants",
        "--jwk",
        &jwk,
        "--htu",
        htu,
        "--token",
        &grant.access_token,
    ];
    if let Some(n) = nonce {
        args.extend(["--nonce", n]);
    }
    let out = client(&args);
    out.as_object()
        .unwrap_or_else(|| panic!("client.mjs variants printed {out}"))
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Counters.
// ---------------------------------------------------------------------------------------

/// `registry_token_rejected_total{reason=…}` by reason, from `/stats/prometheus`.
pub fn rejected_by_reason(envoy: &Envoy) -> BTreeMap<String, u64> {
    let text = envoy.stats_prometheus();
    crate::prom_samples(&text)
        .into_iter()
        .filter(|(name, _, _)| name == "registry_token_rejected_total")
        .filter_map(|(_, labels, v)| {
            let reason = labels
                .iter()
                .find(|(k, _)| k == "reason")
                .map(|(_, r)| r.clone())?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some((reason, v as u64))
        })
        .collect()
}

/// What grew between two [`rejected_by_reason`] snapshots.
pub fn rejected_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Per-worker accepted connections of the gateway listener
/// (`listener.127.0.0.1_<port>.worker_<n>.downstream_cx_total`), `workers` entries.
pub fn worker_connections(envoy: &Envoy, workers: usize) -> Vec<u64> {
    (0..workers)
        .map(|n| {
            envoy
                .try_counter(&format!(
                    "listener.127.0.0.1_{}.worker_{n}.downstream_cx_total",
                    envoy.listen_port()
                ))
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::tls::parse_curl_output;
    use super::*;

    #[test]
    fn curl_output_parses() {
        let raw =
            b"HTTP/2 401 \r\nwww-authenticate: DPoP error=\"x\"\r\nDPoP-Nonce: n1\r\n\r\n{\"a\":1}";
        let r = parse_curl_output(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 401);
        assert_eq!(r.header("dpop-nonce"), Some("n1"));
        assert_eq!(r.header("WWW-Authenticate"), Some("DPoP error=\"x\""));
        assert_eq!(r.json()["a"], 1);
        assert!(parse_curl_output(b"garbage").is_err());
    }

    #[test]
    fn deltas() {
        let before: BTreeMap<String, u64> = [("a".to_owned(), 1), ("b".to_owned(), 2)].into();
        let after: BTreeMap<String, u64> = [
            ("a".to_owned(), 1),
            ("b".to_owned(), 3),
            ("c".to_owned(), 1),
        ]
        .into();
        let d = rejected_delta(&before, &after);
        assert_eq!(d, [("b".to_owned(), 1), ("c".to_owned(), 1)].into());
    }
}
