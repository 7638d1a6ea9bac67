//! Test keys: the gateway's signing keys with their certificates (self-signed or under a
//! test CA), the test Authority's key, all made with the `openssl` CLI. Private keys are
//! generated once per test binary ([`fixture_key`]) and written into each test's own
//! temporary directory; certificates are made per test.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::Value;

use super::CERT_SUBJECT;
use crate::authority::AuthorityKey;

/// A private key (PKCS#8 PEM) of `kind` for `role`, made with `openssl genpkey` the first
/// time this binary asks for it and the same text afterwards: RSA generation would
/// otherwise dominate a test's set-up. The same role is the same key in every test of the
/// binary (each test runs its own Envoy, registry and Authority, so no test sees another's
/// keys); different roles are different keys, so a test that needs two keys names two
/// roles.
///
/// # Panics
/// When openssl is missing or fails.
pub fn fixture_key(kind: KeyKind, role: &str) -> String {
    type Pool = Mutex<HashMap<(KeyKind, String), Arc<OnceLock<String>>>>;
    static POOL: OnceLock<Pool> = OnceLock::new();
    let slot = POOL
        .get_or_init(Pool::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((kind, role.to_owned()))
        .or_default()
        .clone();
    slot.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-fixture-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(kind.genpkey_args());
        args.extend_from_slice(&["-out", "key.pem"]);
        openssl(dir.path(), &args);
        read(&dir.path().join("key.pem"))
    })
    .clone()
}

/// Writes a private key file readable by its owner only.
fn write_key(dir: &Path, file: &str, pem: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(file);
    fs::write(&path, pem).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
}

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

pub(super) fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Kind of a generated signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// A key (the binary's [`fixture_key`] of `kind` for `name`) and a fresh self-signed
    /// certificate (2 days) named `<name>.key.pem`, `<name>.crt.pem` in `dir`.
    pub fn self_signed(dir: &Path, name: &str, kind: KeyKind) -> SigningKey {
        let key_file = format!("{name}.key.pem");
        let cert_file = format!("{name}.crt.pem");
        write_key(dir, &key_file, &fixture_key(kind, name));
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
    /// An RSA-2048 CA named `<name>` in `dir` (`CN=<name>`, 2 days; the key is the
    /// binary's [`fixture_key`] for `ca/<name>`).
    pub fn generate(dir: &Path, name: &str) -> TestCa {
        let key_file = format!("{name}.key.pem");
        let cert_file = format!("{name}.crt.pem");
        write_key(
            dir,
            &key_file,
            &fixture_key(KeyKind::Rsa2048, &format!("ca/{name}")),
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

    /// A leaf signing key of `kind` named `<leaf_name>` (the binary's [`fixture_key`]) with a certificate
    /// (`CN=registry-token-test`, `CA:FALSE`, `digitalSignature`, 2 days) signed by this
    /// CA. Its [`SigningKey::chain_pem`] is leaf then CA.
    pub fn leaf(&self, leaf_name: &str, kind: KeyKind) -> SigningKey {
        let dir = &self.dir;
        let key_file = format!("{leaf_name}.key.pem");
        let csr_file = format!("{leaf_name}.csr.pem");
        let cert_file = format!("{leaf_name}.crt.pem");
        let ext_file = format!("{leaf_name}.ext");
        write_key(dir, &key_file, &fixture_key(kind, leaf_name));
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

/// Per-test keys in a temporary directory that is removed when this value is dropped: the
/// gateway's RSA-2048 signing key with a self-signed certificate, and the test
/// Authority's RSA key. The keys themselves are the binary's [`fixture_key`]s (`signing`,
/// `authority`): generated once, written into each test's directory.
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
    /// The signing key, a fresh certificate for it and the Authority key, in a new directory.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    pub fn generate() -> TestKeys {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-keys-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let signing = SigningKey::self_signed(dir.path(), "signing", KeyKind::Rsa2048);
        write_key(
            dir.path(),
            "authority.key.pem",
            &fixture_key(KeyKind::Rsa2048, "authority"),
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

    /// A further signing key of `kind` (the binary's [`fixture_key`] for `name`: a
    /// different name is a different key) with a self-signed certificate in this directory
    /// (`<name>.key.pem`, `<name>.crt.pem`); `name` must be new here, e.g. `"ec"`.
    pub fn extra_signing_key(&self, name: &str, kind: KeyKind) -> SigningKey {
        SigningKey::self_signed(self.dir(), name, kind)
    }

    /// An EC P-256 signing key (`ES256`) with a self-signed certificate, named `name`.
    pub fn ec_signing_key(&self, name: &str) -> SigningKey {
        self.extra_signing_key(name, KeyKind::EcP256)
    }

    /// A CA named `name` in this directory; make leaves with [`TestCa::leaf`].
    pub fn ca(&self, name: &str) -> TestCa {
        TestCa::generate(self.dir(), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn fixture_keys_are_made_once_per_role() {
        let a = fixture_key(KeyKind::EcP256, "fixture-test-a");
        assert!(a.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(fixture_key(KeyKind::EcP256, "fixture-test-a"), a);
        assert_ne!(fixture_key(KeyKind::EcP256, "fixture-test-b"), a);
        let one = TestKeys::generate();
        let two = TestKeys::generate();
        assert_ne!(one.dir(), two.dir());
        assert_eq!(one.signing_key_pem(), two.signing_key_pem());
        assert_eq!(one.authority_key_pem, two.authority_key_pem);
        assert_ne!(one.signing_key_pem(), one.authority_key_pem);
    }
}
