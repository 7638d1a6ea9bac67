//! A test PKI made with the `openssl` CLI: a CA trusted for servers and clients, a
//! server certificate for the Authority and the TLS gateway, client certificates (issued
//! or self-signed) and the gateway's signing key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::SERVER_NAMES;

/// The files [`Pki::generate`] copies into every PKI.
const BASE_FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "signing.key",
    "signing.crt",
];

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
    /// A PKI in a new temporary directory: the CA, the server certificate and the signing
    /// key with its certificate, made once per test binary (RSA generation would dominate
    /// a test's set-up) and copied here; client certificates are made per PKI.
    ///
    /// # Panics
    /// When openssl is missing or fails.
    pub fn generate() -> Pki {
        /// The files of a fresh PKI and the signing key's public key.
        type Base = (Vec<(&'static str, Vec<u8>)>, String);
        static BASE: OnceLock<Base> = OnceLock::new();
        let (files, signing_public_pem) = BASE.get_or_init(|| {
            let fresh = Pki::fresh();
            let files = BASE_FILES
                .iter()
                .map(|f| {
                    let path = fresh.dir().join(f);
                    let bytes =
                        fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    (*f, bytes)
                })
                .collect();
            (files, fresh.signing_public_pem.clone())
        });
        let dir = tempfile::Builder::new()
            .prefix("registry-token-pki-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        for (name, bytes) in files {
            let path = dir.path().join(name);
            fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let d = dir.path();
        Pki {
            ca_cert: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            signing_key_pem: read(&d.join("signing.key")),
            signing_cert: d.join("signing.crt"),
            signing_public_pem: signing_public_pem.clone(),
            dir,
        }
    }

    /// Generates the CA, the server certificate and the signing key in a new directory.
    fn fresh() -> Pki {
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn random_secret() -> String {
    let mut b = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex(&b)
}
