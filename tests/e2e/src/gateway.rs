//! Shared end-to-end helpers for the registry token gateway: test keys made with the
//! `openssl` CLI, a full filter configuration, the Envoy YAML **derived from
//! `envoy/quickstart.yaml`** (so the shipped configuration is what the tests run), starting
//! the gateway, minting OpToks and checking the registry tokens it mints.
//!
//! ```no_run
//! use registry_token_e2e::gateway::{
//!     filter_config, optok, start_gateway, token_path, verify_registry_token, ConfigForm,
//!     TestKeys,
//! };
//! use registry_token_e2e::EnvoyOptions;
//!
//! let keys = TestKeys::generate();
//! // `{{LISTEN_PORT}}` inside the configuration is filled in by the harness too.
//! let config = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
//! let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
//! let op = optok(&keys, |s| s.plan = Some("enterprise".into()));
//! let reply = envoy.get(
//!     &token_path("registry.example", &["repository:stella-ops/app:pull,push"]),
//!     &[("authorization", &format!("Bearer {op}"))],
//! );
//! assert_eq!(reply.status, 200);
//! let (_header, claims) =
//!     verify_registry_token(reply.json()["token"].as_str().unwrap(), &keys.signing_public_pem())
//!         .unwrap();
//! assert_eq!(claims["aud"], "registry.example");
//! ```
//!
//! Everything secret is generated per [`TestKeys`] in its own temporary directory, removed
//! when the value is dropped; nothing is committed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::authority::{AuthorityKey, OpTokSpec};
use crate::{percent_encode, repo_root, Envoy, EnvoyOptions};

/// `iss` the test Authority puts in OpToks (and the configuration expects).
pub const AUTHORITY_ISSUER: &str = "https://authority.example";
/// `aud` of OpToks.
pub const OPTOK_AUDIENCE: &str = "registry-token";
/// The only `service` [`filter_config`] allows.
pub const SERVICE: &str = "registry.example";
/// `iss` of the minted registry tokens (the filter's default, written out in the config).
pub const SIGNING_ISSUER: &str = "registry-token-service";
/// The licence [`filter_config`] revokes.
pub const REVOKED_LICENSE: &str = "lic-0042";
/// The environment variable carrying the signing key, as users pass it.
pub const KEYPEM_ENV: &str = "REGISTRY_TOKEN_SIGNING__KEYPEM";
/// Subject of the test certificates.
pub const CERT_SUBJECT: &str = "/CN=registry-token-test";

/// The shipped quick start configuration the gateway YAML is derived from.
pub fn quickstart_path() -> PathBuf {
    repo_root().join("envoy/quickstart.yaml")
}

// ---------------------------------------------------------------------------------------
// Keys.
// ---------------------------------------------------------------------------------------

/// Runs `openssl` with `args` in `dir`.
///
/// # Panics
/// When openssl cannot be started or fails (the message holds its stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl (install it: apt-get install openssl): {e}")
        });
    if !out.status.success() {
        panic!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Kind of a generated signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, minted with `RS256`.
    Rsa2048,
    /// EC P-256, minted with `ES256`.
    EcP256,
}

impl KeyKind {
    /// The `signing.algorithm` value for this key.
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyKind::Rsa2048 => "RS256",
            KeyKind::EcP256 => "ES256",
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyKind::Rsa2048 => jsonwebtoken::Algorithm::RS256,
            KeyKind::EcP256 => jsonwebtoken::Algorithm::ES256,
        }
    }

    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            KeyKind::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::EcP256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        }
    }
}

/// A signing key (PKCS#8 PEM) with its certificate, as files and as text.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// RSA 2048 or P-256.
    pub kind: KeyKind,
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8).
    pub key_pem: String,
    /// File holding [`SigningKey::key_pem`].
    pub key_path: PathBuf,
    /// The certificate for the key: self-signed, or signed by a [`TestCa`].
    pub cert_pem: String,
    /// File holding [`SigningKey::cert_pem`] (a registry `rootcertbundle` when self-signed).
    pub cert_path: PathBuf,
    /// `-----BEGIN PUBLIC KEY-----` (SPKI) of the key, for verifiers.
    pub public_pem: String,
    /// For a CA-signed leaf: leaf certificate then CA certificate (the
    /// `signing.certificateChainPem` value). For a self-signed key: the certificate alone.
    pub chain_pem: String,
    /// File holding [`SigningKey::chain_pem`].
    pub chain_path: PathBuf,
}

impl SigningKey {
    /// Generates a key and a self-signed certificate (2 days) named `<name>.key.pem`,
    /// `<name>.crt.pem` in `dir`.
    pub fn self_signed(dir: &Path, name: &str, kind: KeyKind) -> SigningKey {
        let key_file = format!("{name}.key.pem");
        let cert_file = format!("{name}.crt.pem");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(kind.genpkey_args());
        args.extend_from_slice(&["-out", &key_file]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key_file,
                "-days",
                "2",
                "-subj",
                CERT_SUBJECT,
                "-out",
                &cert_file,
            ],
        );
        Self::load(dir, name, kind, None)
    }

    fn load(dir: &Path, name: &str, kind: KeyKind, ca_cert_pem: Option<&str>) -> SigningKey {
        let key_path = dir.join(format!("{name}.key.pem"));
        let cert_path = dir.join(format!("{name}.crt.pem"));
        let key_pem = read(&key_path);
        let cert_pem = read(&cert_path);
        let public_pem = openssl(dir, &["pkey", "-in", &format!("{name}.key.pem"), "-pubout"]);
        let chain_pem = match ca_cert_pem {
            Some(ca) => format!("{}{}", ensure_nl(&cert_pem), ensure_nl(ca)),
            None => cert_pem.clone(),
        };
        let chain_path = dir.join(format!("{name}.chain.pem"));
        fs::write(&chain_path, &chain_pem)
            .unwrap_or_else(|e| panic!("{}: {e}", chain_path.display()));
        SigningKey {
            kind,
            key_pem,
            key_path,
            cert_pem,
            cert_path,
            public_pem,
            chain_pem,
            chain_path,
        }
    }

    /// The `signing.algorithm` for this key.
    pub fn algorithm(&self) -> &'static str {
        self.kind.algorithm()
    }
}

fn ensure_nl(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_owned()
    } else {
        format!("{s}\n")
    }
}

/// A test certificate authority (self-signed, `CA:TRUE`), for "stable CA" set-ups: the
/// registry trusts the CA ([`TestCa::cert_path`] as `rootcertbundle`) and the gateway's
/// leaf keys can rotate under it.
#[derive(Clone, Debug)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    /// The CA certificate.
    pub cert_pem: String,
    /// File holding [`TestCa::cert_pem`].
    pub cert_path: PathBuf,
    /// The CA private key file.
    pub key_path: PathBuf,
}

impl TestCa {
    /// Generates an RSA-2048 CA named `<name>` in `dir` (`CN=<name>`, 2 days).
    pub fn generate(dir: &Path, name: &str) -> TestCa {
        let key_file = format!("{name}.key.pem");
        let cert_file = format!("{name}.crt.pem");
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key_file,
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key_file,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &cert_file,
            ],
        );
        TestCa {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            cert_pem: read(&dir.join(&cert_file)),
            cert_path: dir.join(cert_file),
            key_path: dir.join(key_file),
        }
    }

    /// Generates a leaf signing key of `kind` named `<leaf_name>` with a certificate
    /// (`CN=registry-token-test`, `CA:FALSE`, `digitalSignature`, 2 days) signed by this
    /// CA. Its [`SigningKey::chain_pem`] is leaf then CA.
    pub fn leaf(&self, leaf_name: &str, kind: KeyKind) -> SigningKey {
        let dir = &self.dir;
        let key_file = format!("{leaf_name}.key.pem");
        let csr_file = format!("{leaf_name}.csr.pem");
        let cert_file = format!("{leaf_name}.crt.pem");
        let ext_file = format!("{leaf_name}.ext");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(kind.genpkey_args());
        args.extend_from_slice(&["-out", &key_file]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key_file,
                "-subj",
                CERT_SUBJECT,
                "-out",
                &csr_file,
            ],
        );
        fs::write(
            dir.join(&ext_file),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )
        .unwrap_or_else(|e| panic!("{ext_file}: {e}"));
        let serial = format!("0x{:016x}", random_u64());
        let ca_cert = format!("{}.crt.pem", self.name);
        let ca_key = format!("{}.key.pem", self.name);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr_file,
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
                &cert_file,
            ],
        );
        SigningKey::load(dir, leaf_name, kind, Some(&self.cert_pem))
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    u64::from_le_bytes(b) >> 1
}

/// Per-test keys, generated with the `openssl` CLI in a temporary directory that is
/// removed when this value is dropped: the gateway's RSA-2048 signing key with a
/// self-signed certificate, and the test Authority's RSA key.
pub struct TestKeys {
    dir: tempfile::TempDir,
    /// The gateway's signing key (RSA 2048, PKCS#8) and its self-signed certificate
    /// (`openssl req -x509 -days 2 -subj /CN=registry-token-test`).
    pub signing: SigningKey,
    /// The Authority that mints OpToks (RSA 2048, `RS256`).
    pub authority: AuthorityKey,
    /// The Authority's private key PEM.
    pub authority_key_pem: String,
    /// File holding [`TestKeys::authority_key_pem`].
    pub authority_key_path: PathBuf,
}

impl TestKeys {
    /// Generates the signing key, its certificate and the Authority key.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    pub fn generate() -> TestKeys {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-keys-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let signing = SigningKey::self_signed(dir.path(), "signing", KeyKind::Rsa2048);
        openssl(
            dir.path(),
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "authority.key.pem",
            ],
        );
        let authority_key_path = dir.path().join("authority.key.pem");
        let authority_key_pem = read(&authority_key_path);
        let authority = AuthorityKey::from_pem(&authority_key_pem)
            .unwrap_or_else(|e| panic!("authority key: {e}"));
        TestKeys {
            dir,
            signing,
            authority,
            authority_key_pem,
            authority_key_path,
        }
    }

    /// The directory holding every generated file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The signing key PEM (PKCS#8), the value of `REGISTRY_TOKEN_SIGNING__KEYPEM`.
    pub fn signing_key_pem(&self) -> &str {
        &self.signing.key_pem
    }

    /// The signing key file.
    pub fn signing_key_path(&self) -> &Path {
        &self.signing.key_path
    }

    /// The signing key's self-signed certificate PEM.
    pub fn signing_cert_pem(&self) -> &str {
        &self.signing.cert_pem
    }

    /// The signing certificate file: a registry's `auth.token.rootcertbundle`.
    pub fn signing_cert_path(&self) -> &Path {
        &self.signing.cert_path
    }

    /// The signing key's public key (SPKI PEM), for [`verify_registry_token`].
    pub fn signing_public_pem(&self) -> String {
        self.signing.public_pem.clone()
    }

    /// The Authority's JWKS (public key only), as inlined by [`filter_config`].
    pub fn authority_jwks(&self) -> Value {
        self.authority.jwks()
    }

    /// Generates a further signing key of `kind` with a self-signed certificate in this
    /// directory (`<name>.key.pem`, `<name>.crt.pem`); `name` must be new, e.g. `"ec"`.
    pub fn extra_signing_key(&self, name: &str, kind: KeyKind) -> SigningKey {
        SigningKey::self_signed(self.dir(), name, kind)
    }

    /// An EC P-256 signing key (`ES256`) with a self-signed certificate, named `name`.
    pub fn ec_signing_key(&self, name: &str) -> SigningKey {
        self.extra_signing_key(name, KeyKind::EcP256)
    }

    /// A new CA named `name` in this directory; make leaves with [`TestCa::leaf`].
    pub fn ca(&self, name: &str) -> TestCa {
        TestCa::generate(self.dir(), name)
    }
}

// ---------------------------------------------------------------------------------------
// Configuration.
// ---------------------------------------------------------------------------------------

/// A full valid filter configuration like quickstart's: issuer
/// `https://authority.example`, audience `registry-token`, the Authority key inline as
/// JWKS, `requireSenderConstraint: false`, plans `community` (`stella-ops/public/*` pull),
/// `enterprise` (`stella-ops/**` pull+push, `registry:catalog:*`) and `pullonly` (`**`
/// pull), `defaultPlan: community`, `revokedLicenses: [lic-0042]`, `allowedServices:
/// [registry.example]`, `lifetimeSeconds: 300`.
///
/// It has **no `signing.keyPem`**: [`start_gateway`] passes the key in
/// `REGISTRY_TOKEN_SIGNING__KEYPEM`, as users do. `realm` may hold `{{LISTEN_PORT}}`
/// (e.g. `http://127.0.0.1:{{LISTEN_PORT}}/token`); the filter answers on its path.
/// Adjust fields with `config["signing"]["lifetimeSeconds"] = json!(120)` and the like.
pub fn filter_config(keys: &TestKeys, realm: &str) -> Value {
    json!({
        "authority": {
            "issuer": AUTHORITY_ISSUER,
            "audiences": [OPTOK_AUDIENCE],
            "requiredScopes": ["registry.token.issue"],
            "jwks": keys.authority_jwks(),
            "clockSkewSeconds": 60,
            "requireSenderConstraint": false
        },
        "signing": {
            "issuer": SIGNING_ISSUER,
            "algorithm": "RS256",
            "lifetimeSeconds": 300
        },
        "registry": {
            "realm": realm,
            "allowedServices": [SERVICE]
        },
        "plans": [
            {
                "name": "community",
                "repositories": [
                    { "pattern": "stella-ops/public/*", "actions": ["pull"] }
                ]
            },
            {
                "name": "enterprise",
                "repositories": [
                    { "pattern": "stella-ops/**", "actions": ["pull", "push"] },
                    { "type": "registry", "pattern": "catalog", "actions": ["*"] }
                ]
            },
            {
                "name": "pullonly",
                "repositories": [
                    { "pattern": "**", "actions": ["pull"] }
                ]
            }
        ],
        "defaultPlan": "community",
        "revokedLicenses": [REVOKED_LICENSE]
    })
}

/// How the configuration is written in the Envoy YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigForm {
    /// `google.protobuf.StringValue` holding the JSON text (quickstart's form).
    StringValue,
    /// `google.protobuf.Struct` written as native block YAML; Envoy hands the filter the
    /// serialized protobuf Struct.
    Struct,
}

/// The Envoy YAML of a gateway, derived from `envoy/quickstart.yaml`: see [`GatewaySpec`].
#[derive(Clone, Debug)]
pub struct GatewaySpec {
    /// The filter configuration.
    pub config: Value,
    /// How it is written.
    pub form: ConfigForm,
    /// YAML sequence items (`- name: …`, written at column 0) appended under
    /// `static_resources.clusters`.
    pub extra_clusters: String,
    /// Names added to `vm_config.environment_variables.host_env_keys` (after quickstart's
    /// own; duplicates are skipped).
    pub host_env_keys: Vec<String>,
    /// `vm_config.environment_variables.key_values` (fixed values written in the YAML).
    pub key_values: Vec<(String, String)>,
}

impl GatewaySpec {
    /// A spec for `config` in [`ConfigForm::StringValue`], nothing extra.
    pub fn new(config: &Value) -> GatewaySpec {
        GatewaySpec {
            config: config.clone(),
            form: ConfigForm::StringValue,
            extra_clusters: String::new(),
            host_env_keys: Vec::new(),
            key_values: Vec::new(),
        }
    }

    /// Sets the form.
    pub fn form(mut self, form: ConfigForm) -> Self {
        self.form = form;
        self
    }

    /// Sets the extra clusters (see [`GatewaySpec::extra_clusters`]).
    pub fn extra_clusters(mut self, yaml: &str) -> Self {
        yaml.clone_into(&mut self.extra_clusters);
        self
    }

    /// Adds a name to `host_env_keys`.
    pub fn host_env_key(mut self, name: &str) -> Self {
        self.host_env_keys.push(name.to_owned());
        self
    }

    /// Adds a `key_values` entry.
    pub fn key_value(mut self, name: &str, value: &str) -> Self {
        self.key_values.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Renders the Envoy YAML template (placeholders `{{LISTEN_PORT}}`, `{{ADMIN_PORT}}`,
    /// `{{WASM_PATH}}` left for [`Envoy::start`]).
    ///
    /// # Panics
    /// When `envoy/quickstart.yaml` no longer has the shape this derivation relies on
    /// (listener port 8085, admin port 9901, the wasm file name, one `configuration:`
    /// block, `host_env_keys:`); the message says what is missing.
    pub fn yaml(&self) -> String {
        let quickstart = read(&quickstart_path());
        derive_gateway_yaml(&quickstart, self)
    }

    /// The names of every variable the gateway's VM may receive from Envoy's environment:
    /// quickstart's `host_env_keys` plus [`GatewaySpec::host_env_keys`].
    pub fn all_host_env_keys(&self) -> Vec<String> {
        let mut keys = quickstart_host_env_keys(&read(&quickstart_path()));
        for k in &self.host_env_keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        keys
    }

    /// Starts the gateway: see [`start_gateway`].
    pub fn start(&self, keys: &TestKeys, opts: EnvoyOptions) -> Envoy {
        let (spec, opts) = self.with_env(keys, opts);
        let yaml = spec.yaml();
        Envoy::start(&yaml, opts).unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
    }

    /// Starts the gateway expecting Envoy to refuse it: see [`gateway_failure`].
    pub fn failure(&self, keys: &TestKeys, opts: EnvoyOptions) -> String {
        let (spec, opts) = self.with_env(keys, opts);
        let yaml = spec.yaml();
        Envoy::start_expect_failure(&yaml, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Adds the signing key variable, lists every `REGISTRY_TOKEN_*` of `opts.env` in
    /// `host_env_keys`, and blanks the listed variables the caller did not set (an empty
    /// value counts as unset) so that nothing leaks in from the test runner's environment.
    fn with_env(&self, keys: &TestKeys, mut opts: EnvoyOptions) -> (GatewaySpec, EnvoyOptions) {
        let mut spec = self.clone();
        if !opts.env.iter().any(|(k, _)| k == KEYPEM_ENV) {
            opts.env
                .push((KEYPEM_ENV.to_owned(), keys.signing_key_pem().to_owned()));
        }
        for (k, _) in &opts.env {
            if k.starts_with("REGISTRY_TOKEN_") && !spec.host_env_keys.contains(k) {
                spec.host_env_keys.push(k.clone());
            }
        }
        for k in spec.all_host_env_keys() {
            if !opts.env.iter().any(|(n, _)| *n == k) {
                opts.env.push((k, String::new()));
            }
        }
        (spec, opts)
    }
}

/// The Envoy YAML of a gateway: `envoy/quickstart.yaml` with the listener port
/// (`8085` → `{{LISTEN_PORT}}`), the admin port (`9901` → `{{ADMIN_PORT}}`), the wasm
/// file (→ `{{WASM_PATH}}`) and the `configuration:` block (→ `filter_config` in `form`)
/// replaced, and `extra_clusters` (YAML sequence items at column 0, may be empty) under
/// `static_resources.clusters`. `host_env_keys` stays quickstart's
/// (`REGISTRY_TOKEN_SIGNING__KEYPEM`, `REGISTRY_TOKEN_AUTHORITY__JWKS`); use
/// [`GatewaySpec`] for more keys or `key_values`. [`start_gateway`] adds every
/// `REGISTRY_TOKEN_*` of `EnvoyOptions::env` to `host_env_keys` by itself; when you
/// start the YAML with [`Envoy::start`] directly, pass `REGISTRY_TOKEN_SIGNING__KEYPEM` in
/// `EnvoyOptions::env` yourself (the configuration has no key).
pub fn gateway_yaml(filter_config: &Value, form: ConfigForm, extra_clusters: &str) -> String {
    GatewaySpec::new(filter_config)
        .form(form)
        .extra_clusters(extra_clusters)
        .yaml()
}

/// Starts the gateway from [`gateway_yaml`]`(filter_config, form, "")` and waits until it
/// is ready. Sets `REGISTRY_TOKEN_SIGNING__KEYPEM` to `keys`' signing key unless
/// `opts.env` already has it, adds every `REGISTRY_TOKEN_*` of `opts.env` to
/// `host_env_keys`, and sets the other listed variables to "" (unset for the filter) so
/// the test runner's environment cannot leak in.
///
/// # Panics
/// When Envoy does not get ready (the message holds the log tail).
pub fn start_gateway(
    filter_config: &Value,
    form: ConfigForm,
    keys: &TestKeys,
    opts: EnvoyOptions,
) -> Envoy {
    GatewaySpec::new(filter_config).form(form).start(keys, opts)
}

/// Like [`start_gateway`] for a configuration Envoy must refuse: returns Envoy's log.
///
/// # Panics
/// When Envoy starts (becomes ready) with it.
pub fn gateway_failure(
    filter_config: &Value,
    form: ConfigForm,
    keys: &TestKeys,
    opts: EnvoyOptions,
) -> String {
    GatewaySpec::new(filter_config)
        .form(form)
        .failure(keys, opts)
}

/// Lines of `log` holding `registry-token-filter: configuration refused:`.
pub fn refusal_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("registry-token-filter: configuration refused:"))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// YAML derivation.
// ---------------------------------------------------------------------------------------

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    let n = text.matches(from).count();
    if n != 1 {
        panic!(
            "envoy/quickstart.yaml: expected exactly one {from:?}, found {n}; \
             update tests/e2e/src/gateway.rs to the new shape of the file"
        );
    }
    text.replacen(from, to, 1)
}

/// quickstart's `host_env_keys` list items.
fn quickstart_host_env_keys(quickstart: &str) -> Vec<String> {
    let lines: Vec<&str> = quickstart.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim() == "host_env_keys:") else {
        return Vec::new();
    };
    let ind = indent_of(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| indent_of(l) >= ind && l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().to_owned())
        .collect()
}

/// quickstart with only the ports and the wasm file templated.
fn template_quickstart(quickstart: &str) -> String {
    let text = replace_once(
        quickstart,
        "port_value: 8085",
        "port_value: {{LISTEN_PORT}}",
    );
    let text = replace_once(&text, "port_value: 9901", "port_value: {{ADMIN_PORT}}");
    replace_once(
        &text,
        "target/wasm32-wasip1/release/registry_token_filter.wasm",
        "{{WASM_PATH}}",
    )
}

/// `envoy/quickstart.yaml` exactly as shipped, configuration included, with only the
/// listener port, the admin port and the wasm file templated (`{{LISTEN_PORT}}`,
/// `{{ADMIN_PORT}}`, `{{WASM_PATH}}`). Its configuration needs
/// `REGISTRY_TOKEN_SIGNING__KEYPEM` and `REGISTRY_TOKEN_AUTHORITY__JWKS`, as `make run`
/// passes them; its realm is `http://localhost:8085/token`, its service
/// `registry.localhost`.
pub fn quickstart_yaml() -> String {
    template_quickstart(&read(&quickstart_path()))
}

/// The filter configuration shipped in `envoy/quickstart.yaml` (the JSON of its
/// `StringValue`), parsed.
///
/// # Panics
/// When the file has no `value: |` block under `configuration:` or it is not JSON.
pub fn quickstart_filter_config() -> Value {
    let text = read(&quickstart_path());
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "configuration:")
        .and_then(|c| {
            lines[c..]
                .iter()
                .position(|l| l.trim() == "value: |")
                .map(|v| c + v)
        })
        .unwrap_or_else(|| panic!("envoy/quickstart.yaml: no configuration value: | block"));
    let ind = indent_of(lines[start]);
    let json: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > ind)
        .copied()
        .collect();
    serde_json::from_str(&json.join("\n"))
        .unwrap_or_else(|e| panic!("envoy/quickstart.yaml: the configuration is not JSON: {e}"))
}

fn derive_gateway_yaml(quickstart: &str, spec: &GatewaySpec) -> String {
    let text = template_quickstart(quickstart);
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 64);
    let mut i = 0;
    let mut seen_config = false;
    let mut seen_env = false;
    let mut seen_static = false;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if trimmed == "configuration:" {
            if seen_config {
                panic!("envoy/quickstart.yaml: more than one configuration: block");
            }
            seen_config = true;
            let ind = indent_of(line);
            let mut end = i + 1;
            while end < lines.len() && (lines[end].trim().is_empty() || indent_of(lines[end]) > ind)
            {
                end += 1;
            }
            // Keep blank lines that follow the block.
            while end > i + 1 && lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            out.push(line.to_owned());
            out.extend(configuration_block(&spec.config, spec.form, ind + 2));
            i = end;
            continue;
        }
        if trimmed == "host_env_keys:" {
            seen_env = true;
            let ind = indent_of(line);
            out.push(line.to_owned());
            let mut j = i + 1;
            let mut listed = Vec::new();
            let mut item_prefix = format!("{}- ", " ".repeat(ind));
            while j < lines.len()
                && indent_of(lines[j]) >= ind
                && lines[j].trim_start().starts_with("- ")
            {
                item_prefix = format!("{}- ", " ".repeat(indent_of(lines[j])));
                listed.push(lines[j].trim_start()[2..].trim().to_owned());
                out.push(lines[j].to_owned());
                j += 1;
            }
            for k in &spec.host_env_keys {
                if !listed.contains(k) {
                    listed.push(k.clone());
                    out.push(format!("{item_prefix}{k}"));
                }
            }
            if !spec.key_values.is_empty() {
                out.push(format!("{}key_values:", " ".repeat(ind)));
                for (k, v) in &spec.key_values {
                    out.push(format!(
                        "{}{}: {}",
                        " ".repeat(ind + 2),
                        k,
                        Value::String(v.clone())
                    ));
                }
            }
            i = j;
            continue;
        }
        out.push(line.to_owned());
        let has_clusters = text.contains("\n  clusters:");
        let opens_clusters = if has_clusters {
            line == "  clusters:"
        } else {
            trimmed == "static_resources:" && indent_of(line) == 0
        };
        if trimmed == "static_resources:" && indent_of(line) == 0 {
            seen_static = true;
        }
        if opens_clusters && !spec.extra_clusters.trim().is_empty() {
            if !has_clusters {
                out.push("  clusters:".to_owned());
            }
            for l in spec.extra_clusters.lines() {
                if l.trim().is_empty() {
                    out.push(String::new());
                } else {
                    out.push(format!("  {l}"));
                }
            }
        }
        i += 1;
    }
    if !seen_config || !seen_env || !seen_static {
        panic!(
            "envoy/quickstart.yaml: expected a configuration: block ({seen_config}), \
             host_env_keys: ({seen_env}) and static_resources: ({seen_static}); update \
             tests/e2e/src/gateway.rs to the new shape of the file"
        );
    }
    let mut yaml = out.join("\n");
    yaml.push('\n');
    yaml
}

/// The lines under `configuration:` at indentation `ind`.
fn configuration_block(config: &Value, form: ConfigForm, ind: usize) -> Vec<String> {
    let pad = " ".repeat(ind);
    let mut out = Vec::new();
    match form {
        ConfigForm::StringValue => {
            out.push(format!(
                "{pad}\"@type\": type.googleapis.com/google.protobuf.StringValue"
            ));
            out.push(format!("{pad}value: |"));
            let pretty = serde_json::to_string_pretty(config)
                .unwrap_or_else(|e| panic!("configuration to JSON: {e}"));
            for l in pretty.lines() {
                out.push(format!("{pad}  {l}"));
            }
        }
        ConfigForm::Struct => {
            out.push(format!(
                "{pad}\"@type\": type.googleapis.com/google.protobuf.Struct"
            ));
            out.push(format!("{pad}value:"));
            let mut body = String::new();
            yaml_mapping(config, ind + 2, &mut body);
            out.extend(body.lines().map(str::to_owned));
        }
    }
    out
}

/// A scalar, or an array/object that can be written in flow style on one line (JSON is
/// valid YAML flow).
fn is_flow(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
        Value::Object(o) => o.is_empty(),
        _ => true,
    }
}

/// Writes `v` as native block YAML. Keys and strings are JSON-quoted, which YAML reads as
/// double-quoted scalars with the same escapes.
fn to_block_yaml(v: &Value, ind: usize, out: &mut String) {
    match v {
        Value::Object(_) => yaml_mapping(v, ind, out),
        Value::Array(items) => {
            for item in items {
                if is_flow(item) {
                    out.push_str(&format!("{}- {}\n", " ".repeat(ind), item));
                } else {
                    let mut inner = String::new();
                    to_block_yaml(item, ind + 2, &mut inner);
                    // The first line's indentation becomes "- ".
                    let first_pad = " ".repeat(ind + 2);
                    let inner = inner.strip_prefix(&first_pad).unwrap_or(&inner);
                    out.push_str(&format!("{}- {}", " ".repeat(ind), inner));
                }
            }
        }
        other => out.push_str(&format!("{}{}\n", " ".repeat(ind), other)),
    }
}

fn yaml_mapping(v: &Value, ind: usize, out: &mut String) {
    let Value::Object(map) = v else {
        to_block_yaml(v, ind, out);
        return;
    };
    for (k, val) in map {
        let key = Value::String(k.clone());
        if is_flow(val) {
            out.push_str(&format!("{}{}: {}\n", " ".repeat(ind), key, val));
        } else {
            out.push_str(&format!("{}{}:\n", " ".repeat(ind), key));
            to_block_yaml(val, ind + 2, out);
        }
    }
}

// ---------------------------------------------------------------------------------------
// OpToks, requests and minted tokens.
// ---------------------------------------------------------------------------------------

/// An OpTok from the test Authority: [`OpTokSpec::default`] (issuer, audience, subject
/// `dev-user`, scope `registry.token.issue`, 600 s) changed by `f`, signed with `keys`'
/// Authority key (`RS256`, `kid` = its thumbprint).
pub fn optok(keys: &TestKeys, f: impl FnOnce(&mut OpTokSpec)) -> String {
    let mut spec = OpTokSpec::default();
    f(&mut spec);
    spec.mint(&keys.authority)
}

/// The `Authorization` value `Bearer <optok>`.
pub fn bearer(optok: &str) -> String {
    format!("Bearer {optok}")
}

/// `/token?service=<service>&scope=<scope>&scope=…`, percent-encoded.
pub fn token_path(service: &str, scopes: &[&str]) -> String {
    token_path_at("/token", service, scopes)
}

/// Like [`token_path`] for a realm path other than `/token`.
pub fn token_path_at(realm_path: &str, service: &str, scopes: &[&str]) -> String {
    let mut p = format!("{realm_path}?service={}", percent_encode(service));
    for s in scopes {
        p.push_str("&scope=");
        p.push_str(&percent_encode(s));
    }
    p
}

/// Splits a JWT and decodes its header and claims **without verifying** it.
pub fn decode_unverified(token: &str) -> Result<(Value, Value), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not a compact JWS: {token:?}"));
    };
    let dec = |s: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("JSON: {e}"))
    };
    Ok((dec(h)?, dec(c)?))
}

/// Verifies a minted registry token with the independent `jsonwebtoken` crate against
/// `public_pem` (SPKI `PUBLIC KEY` PEM, RSA or P-256; the algorithm is taken from the
/// key type), checking the signature, `exp` and `nbf` (no leeway on `nbf`, 5 s on `exp`);
/// `aud` and `iss` are left to the caller. Returns the header and claims as JSON.
pub fn verify_registry_token(token: &str, public_pem: &str) -> Result<(Value, Value), String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let (header, _) = decode_unverified(token)?;
    let (alg, key) = match header["alg"].as_str() {
        Some("RS256") => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(public_pem.as_bytes()),
        ),
        Some("ES256") => (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(public_pem.as_bytes()),
        ),
        other => return Err(format!("unexpected alg {other:?}")),
    };
    let key = key.map_err(|e| format!("public key: {e}"))?;
    let mut validation = Validation::new(alg);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("jsonwebtoken rejects the token: {e}"))?;
    Ok((header, data.claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GatewaySpec {
        GatewaySpec::new(&json!({
            "a": {"b": [1, "x"], "c": {}, "d": []},
            "plans": [{"name": "p", "repositories": [{"pattern": "s/*", "actions": ["pull"]}]}],
            "e": "quote \" and \n newline"
        }))
    }

    #[test]
    fn derivation_templates_ports_wasm_and_configuration() {
        let yaml = spec()
            .extra_clusters("- name: extra\n  type: STATIC\n")
            .host_env_key("REGISTRY_TOKEN_X")
            .key_value("REGISTRY_TOKEN_Y", "1 2")
            .yaml();
        for needle in [
            "port_value: {{LISTEN_PORT}}",
            "port_value: {{ADMIN_PORT}}",
            "filename: {{WASM_PATH}}",
            "  clusters:\n  - name: extra\n    type: STATIC\n",
            "- REGISTRY_TOKEN_SIGNING__KEYPEM\n",
            "- REGISTRY_TOKEN_X\n",
            "key_values:\n",
            "REGISTRY_TOKEN_Y: \"1 2\"\n",
            "google.protobuf.StringValue",
        ] {
            assert!(yaml.contains(needle), "{needle:?} not in\n{yaml}");
        }
        assert!(
            !yaml.contains("port_value: 8085") && !yaml.contains("port_value: 9901"),
            "{yaml}"
        );
        assert!(
            !yaml.contains("stella-ops/public/*"),
            "quickstart's config left:\n{yaml}"
        );
        assert!(yaml.contains("stats_config:"), "{yaml}");
    }

    #[test]
    fn struct_form_is_block_yaml() {
        let yaml = spec().form(ConfigForm::Struct).yaml();
        let start = yaml.find("google.protobuf.Struct").unwrap_or(0);
        let block: String = yaml[start..]
            .lines()
            .skip(1)
            .take(12)
            .collect::<Vec<_>>()
            .join("\n");
        let pad = " ".repeat(indent_of(block.lines().next().unwrap_or("")));
        let want = [
            "value:",
            "  \"a\":",
            "    \"b\": [1,\"x\"]",
            "    \"c\": {}",
            "    \"d\": []",
            "  \"e\": \"quote \\\" and \\n newline\"",
            "  \"plans\":",
            "    - \"name\": \"p\"",
            "      \"repositories\":",
            "        - \"actions\": [\"pull\"]",
            "          \"pattern\": \"s/*\"",
        ]
        .iter()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n");
        assert!(block.starts_with(&want), "got:\n{block}\nwant:\n{want}");
    }

    #[test]
    fn keys_ca_and_leaves() {
        let keys = TestKeys::generate();
        assert!(keys
            .signing_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(keys
            .signing_cert_pem()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(keys
            .signing_public_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(keys.signing.chain_pem, keys.signing.cert_pem);
        assert_eq!(keys.authority_jwks()["keys"][0]["kty"], "RSA");
        let subject = openssl(
            keys.dir(),
            &["x509", "-in", "signing.crt.pem", "-noout", "-subject"],
        );
        assert!(subject.contains("CN = registry-token-test"), "{subject}");

        let ec = keys.ec_signing_key("ec");
        assert_eq!(ec.algorithm(), "ES256");
        assert!(ec.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

        let ca = keys.ca("test-ca");
        for (name, kind) in [("leaf-rsa", KeyKind::Rsa2048), ("leaf-ec", KeyKind::EcP256)] {
            let leaf = ca.leaf(name, kind);
            assert_eq!(leaf.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
            assert!(leaf.chain_pem.starts_with(&leaf.cert_pem));
            assert!(leaf.chain_pem.ends_with(&ca.cert_pem));
            let ok = openssl(
                keys.dir(),
                &[
                    "verify",
                    "-CAfile",
                    "test-ca.crt.pem",
                    &format!("{name}.crt.pem"),
                ],
            );
            assert!(ok.contains(": OK"), "{ok}");
            // The leaf certificate holds the leaf key.
            let cert_pub = openssl(
                keys.dir(),
                &[
                    "x509",
                    "-in",
                    &format!("{name}.crt.pem"),
                    "-noout",
                    "-pubkey",
                ],
            );
            assert_eq!(cert_pub, leaf.public_pem);
        }
    }

    #[test]
    fn quickstart_configuration_parses() {
        let c = quickstart_filter_config();
        assert_eq!(c["defaultPlan"], "community");
        assert!(quickstart_yaml().contains("port_value: {{LISTEN_PORT}}"));
        let keys = quickstart_host_env_keys(&read(&quickstart_path()));
        assert!(keys.iter().any(|k| k == KEYPEM_ENV), "{keys:?}");
    }
}
