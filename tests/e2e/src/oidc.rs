//! A real Authority and real OAuth clients for the end-to-end tests: npm's `oidc-provider`
//! served over HTTPS by `tests/e2e/authority/authority.mjs`, and `tests/e2e/authority/client.mjs`,
//! which obtains OpToks with `oauth4webapi` and makes DPoP proofs with `dpop` / `jose`.
//! None of it shares code with the filter, so a passing test proves interoperability.
//!
//! Also here: a test PKI made with the `openssl` CLI ([`Pki`]), the TLS gateway rendered
//! from the shipped `envoy/gateway.yaml` ([`gateway_yaml`], [`start_tls_gateway`]), and
//! HTTPS requests with `curl` ([`https_request`]: client certificates, repeated headers,
//! one fresh connection per request).
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

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{free_port, percent_encode, repo_root, tail, Envoy, EnvoyOptions, Reply};

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
// PKI.
// ---------------------------------------------------------------------------------------

/// Runs `openssl` in `dir`.
///
/// # Panics
/// When openssl cannot start or fails.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
    if !out.status.success() {
        panic!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TLS client certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct ClientCert {
    /// PEM certificate.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, P-256).
    pub key_path: PathBuf,
    /// `CN=<name>`.
    pub subject_dn: String,
    /// base64url(SHA-256(DER)): the `cnf.x5t#S256` a token bound to it carries.
    pub x5t_s256: String,
}

/// A test PKI in a temporary directory (removed on drop): a CA, a server certificate for
/// [`SERVER_NAMES`] and `127.0.0.1` used by both the Authority and the gateway, client
/// certificates, and the gateway's registry-token signing key with a self-signed
/// certificate. Everything P-256 but the signing key (RSA 2048, RS256).
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA certificate (trusted for servers and client certificates alike).
    pub ca_cert: PathBuf,
    ca_key: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The gateway's signing key (PKCS#8 PEM), for `REGISTRY_TOKEN_SIGNING__KEYPEM`.
    pub signing_key_pem: String,
    /// Its self-signed certificate (a registry's `rootcertbundle`; the x5c chain).
    pub signing_cert: PathBuf,
    /// Its public key (SPKI PEM), to verify minted registry tokens.
    pub signing_public_pem: String,
}

impl Pki {
    /// Generates the CA, the server certificate and the signing key.
    ///
    /// # Panics
    /// When openssl is missing or fails.
    pub fn generate() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-pki-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=registry-token e2e CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let mut pki = Pki {
            ca_cert: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            signing_key_pem: String::new(),
            signing_cert: d.join("signing.crt"),
            signing_public_pem: String::new(),
            dir,
        };
        let sans: Vec<String> = SERVER_NAMES
            .iter()
            .map(|n| format!("DNS:{n}"))
            .chain(["IP:127.0.0.1".to_owned()])
            .collect();
        pki.issue(
            "server",
            "/CN=localhost",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        );
        openssl(
            pki.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "signing.key",
                "-out",
                "signing.crt",
                "-days",
                "2",
                "-subj",
                "/CN=registry-token-signing",
            ],
        );
        pki.signing_key_pem = read(&pki.dir.path().join("signing.key"));
        pki.signing_public_pem = String::from_utf8_lossy(&openssl(
            pki.dir.path(),
            &["pkey", "-in", "signing.key", "-pubout"],
        ))
        .into_owned();
        pki
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues `<name>.crt` / `<name>.key` under the CA with the extensions `ext`.
    fn issue(&self, name: &str, subject: &str, ext: &str) {
        let d = self.dir.path();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let ext_file = format!("{name}.ext");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
        );
        write(
            &d.join(&ext_file),
            &format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"
            ),
        );
        let ca_cert = self.ca_cert.display().to_string();
        let ca_key = self.ca_key.display().to_string();
        let serial = format!("0x{}", &hex(&Sha256::digest(name.as_bytes()))[..16]);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &ext_file,
                "-out",
                &crt,
            ],
        );
    }

    /// A client certificate `CN=<cn>` issued by the CA (`clientAuth`), stored as
    /// `<file>.crt` / `<file>.key`.
    pub fn client_cert(&self, file: &str, cn: &str) -> ClientCert {
        self.issue(file, &format!("/CN={cn}"), "extendedKeyUsage=clientAuth\n");
        self.client_files(file, cn)
    }

    /// A self-signed client certificate `CN=<cn>` that no CA vouches for.
    pub fn self_signed_client_cert(&self, file: &str, cn: &str) -> ClientCert {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "extendedKeyUsage=clientAuth",
            ],
        );
        self.client_files(file, cn)
    }

    fn client_files(&self, file: &str, cn: &str) -> ClientCert {
        let d = self.dir.path();
        let cert_path = d.join(format!("{file}.crt"));
        let der = openssl(
            d,
            &["x509", "-in", &format!("{file}.crt"), "-outform", "DER"],
        );
        ClientCert {
            key_path: d.join(format!("{file}.key")),
            cert_path,
            subject_dn: format!("CN={cn}"),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
        }
    }

    /// A containers/image certificate directory for `cert` (`skopeo --dest-cert-dir` /
    /// `--src-cert-dir`, or `/etc/containers/certs.d/<host:port>/`): `client.cert` and
    /// `client.key` (the client certificate, presented on every TLS connection of that
    /// registry client, the token realm's included) and `ca.crt` (a trusted CA). Made
    /// under this PKI's directory as `<name>/`.
    pub fn cert_dir(&self, name: &str, cert: Option<&ClientCert>) -> PathBuf {
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let copy = |from: &Path, to: &str| {
            fs::copy(from, dir.join(to)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        };
        copy(&self.ca_cert, "ca.crt");
        if let Some(c) = cert {
            copy(&c.cert_path, "client.cert");
            copy(&c.key_path, "client.key");
        }
        dir
    }

    /// Files for [`EnvoyOptions::file`] under `tls/`: what `envoy/gateway.yaml` names
    /// `/etc/envoy/tls/{gateway.crt,gateway.key,client-ca.crt,authority-ca.crt}`.
    pub fn gateway_files(&self) -> Vec<(String, Vec<u8>)> {
        [
            ("tls/gateway.crt", &self.server_cert),
            ("tls/gateway.key", &self.server_key),
            ("tls/client-ca.crt", &self.ca_cert),
            ("tls/authority-ca.crt", &self.ca_cert),
        ]
        .iter()
        .map(|(name, path)| {
            let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            ((*name).to_owned(), bytes)
        })
        .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_secret() -> String {
    let mut b = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex(&b)
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
// The TLS gateway: envoy/gateway.yaml as shipped, with its placeholders substituted.
// ---------------------------------------------------------------------------------------

/// The shipped TLS example.
pub fn gateway_yaml_path() -> PathBuf {
    repo_root().join("envoy/gateway.yaml")
}

/// Replaces `from` by `to`, requiring exactly `count` occurrences (so an edit of the
/// shipped file that the tests would silently stop covering fails loudly).
fn substitute(text: &str, from: &str, to: &str, count: usize) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, count,
        "envoy/gateway.yaml holds {from:?} {found} time(s), tests/e2e/src/oidc.rs expects {count}: \
         update gateway_yaml() to the file's new shape"
    );
    text.replace(from, to)
}

/// `envoy/gateway.yaml` with only what a user replaces substituted, for the harness:
/// ports (`{{LISTEN_PORT}}`, `{{ADMIN_PORT}}`, listener on 127.0.0.1), the wasm file
/// (`{{WASM_PATH}}`), the certificate directory (`{{TMPDIR}}/tls/`, see
/// [`Pki::gateway_files`]), the realm (`https://127.0.0.1:{{LISTEN_PORT}}/token`), the
/// Authority (issuer and metadata URL of `authority`, the cluster a STATIC
/// `127.0.0.1:<port>`). The filter configuration, TLS settings, access log and stats tags
/// are the shipped ones.
pub fn gateway_yaml(authority: &Authority) -> String {
    let text = fs::read_to_string(gateway_yaml_path())
        .unwrap_or_else(|e| panic!("{}: {e}", gateway_yaml_path().display()));
    let t = substitute(&text, "/etc/envoy/tls/", "{{TMPDIR}}/tls/", 5);
    let t = substitute(
        &t,
        "/etc/envoy/registry_token_filter.wasm",
        "{{WASM_PATH}}",
        2,
    );
    let t = substitute(&t, "port_value: 8443", "port_value: {{LISTEN_PORT}}", 1);
    let t = substitute(&t, "port_value: 9901", "port_value: {{ADMIN_PORT}}", 1);
    let t = substitute(&t, "address: 0.0.0.0", "address: 127.0.0.1", 1);
    let t = substitute(
        &t,
        "https://gateway.example/token",
        "https://127.0.0.1:{{LISTEN_PORT}}/token",
        2,
    );
    let t = substitute(&t, "https://authority.example", authority.issuer(), 2);
    let t = substitute(
        &t,
        "{ address: authority.example, port_value: 443 }",
        &format!("{{ address: 127.0.0.1, port_value: {} }}", authority.port()),
        1,
    );
    substitute(&t, "type: LOGICAL_DNS", "type: STATIC", 1)
}

/// Starts Envoy with [`gateway_yaml`], the PKI's files, the signing key in
/// `REGISTRY_TOKEN_SIGNING__KEYPEM`, and `opts` (add
/// `.env("REGISTRY_TOKEN_DPOP__NONCESECRET", …)` for nonce mode); waits until the filter
/// has fetched the Authority's keys (log line `JWKS refreshed`, up to [`JWKS_TIMEOUT`]).
///
/// # Panics
/// When Envoy does not start or never gets the keys.
pub fn start_tls_gateway(pki: &Pki, authority: &Authority, opts: EnvoyOptions) -> Envoy {
    let envoy = start_tls_gateway_no_wait(pki, authority, opts);
    if !envoy.wait_for_log(JWKS_TIMEOUT, |l| l.contains("JWKS refreshed")) {
        panic!(
            "the filter did not fetch the Authority's JWKS within {JWKS_TIMEOUT:?}; \
             Authority log:\n{}",
            authority.log()
        );
    }
    envoy
}

/// [`start_tls_gateway`] without waiting for the JWKS.
pub fn start_tls_gateway_no_wait(pki: &Pki, authority: &Authority, opts: EnvoyOptions) -> Envoy {
    let mut opts = opts.env("REGISTRY_TOKEN_SIGNING__KEYPEM", &pki.signing_key_pem);
    for (name, bytes) in pki.gateway_files() {
        opts = opts.file(&name, bytes);
    }
    Envoy::start(&gateway_yaml(authority), opts).unwrap_or_else(|e| panic!("{e}"))
}

/// The realm (DPoP `htu`) of a gateway from [`start_tls_gateway`].
pub fn realm(envoy: &Envoy) -> String {
    format!("https://127.0.0.1:{}/token", envoy.listen_port())
}

/// `/token?service=registry.example&scope=…`.
pub fn token_query(scopes: &[&str]) -> String {
    let mut p = format!("/token?service={}", percent_encode(SERVICE));
    for s in scopes {
        p.push_str("&scope=");
        p.push_str(&percent_encode(s));
    }
    p
}

// ---------------------------------------------------------------------------------------
// HTTPS with curl.
// ---------------------------------------------------------------------------------------

/// Sends one request with `curl` over a new TLS connection, trusting `ca`, presenting
/// `client` when given. Headers are sent as given, repeats included. 4xx/5xx are a
/// [`Reply`]; errors are transport failures (curl's exit status and message).
pub fn https_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    ca: &Path,
    client: Option<&ClientCert>,
) -> Result<Reply, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "15", "-X", method, "--cacert"])
        .arg(ca);
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(&c.cert_path)
            .arg("--key")
            .arg(&c.key_path);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(url).stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run curl (apt-get install curl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {method} {url}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ));
    }
    parse_curl_output(&out.stdout)
}

/// Parses `curl -i` output: the status line, headers, a blank line, the body.
fn parse_curl_output(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("curl output without a header block: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `GET <gateway><path_and_query>` with curl (see [`https_request`]).
///
/// # Panics
/// On transport failures.
pub fn https_get(
    pki: &Pki,
    envoy: &Envoy,
    path_and_query: &str,
    headers: &[(&str, &str)],
    client: Option<&ClientCert>,
) -> Reply {
    let url = format!("https://127.0.0.1:{}{path_and_query}", envoy.listen_port());
    https_request("GET", &url, headers, &pki.ca_cert, client).unwrap_or_else(|e| panic!("{e}"))
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
