//! Shared fixtures of the `registry-token` tests: keys made by `openssl`, a plugin
//! configuration, requests, and runs of the built binary.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use registry_token_core::token::keys::PrivateKey;
use serde_json::{json, Value};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_registry-token"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `openssl args` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rsa,
    Ec,
}

/// A private key PEM of `kind` in `dir/name.pem` (a new key every call: tests compare
/// bundles of different keys).
pub fn key(dir: &Path, name: &str, kind: Kind) -> String {
    let file = format!("{name}.pem");
    match kind {
        Kind::Rsa => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &file,
            ],
        ),
        Kind::Ec => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &file,
            ],
        ),
    }
    fs::read_to_string(dir.join(file)).unwrap()
}

/// The public JWKS of a private key PEM.
pub fn jwks_of(pem: &str) -> Value {
    let key = PrivateKey::from_pem(pem).unwrap();
    json!({"keys": [key.public().to_jwk()]})
}

/// A test bed: a temporary directory with a signing key, an Authority key and a plugin
/// configuration file.
pub struct Bed {
    pub dir: tempfile::TempDir,
    pub signing_pem: String,
    pub kind: Kind,
    pub config: Value,
}

pub const SERVICE: &str = "registry.example";

impl Bed {
    pub fn new(kind: Kind) -> Bed {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-cli-")
            .tempdir()
            .unwrap();
        let signing_pem = key(dir.path(), "signing", kind);
        let authority_pem = key(dir.path(), "authority", Kind::Ec);
        let config = json!({
            "authority": {
                "issuer": "https://authority.example",
                "audiences": ["registry-token"],
                "jwks": jwks_of(&authority_pem),
                "requireSenderConstraint": false
            },
            "signing": {
                "issuer": "registry-token-service",
                "algorithm": if kind == Kind::Rsa { "RS256" } else { "ES256" },
                "keyPem": signing_pem
            },
            "registry": {"realm": "https://gateway.example/token", "allowedServices": [SERVICE]},
            "plans": [
                {"name": "community", "repositories": [
                    {"pattern": "stella-ops/public/*", "actions": ["pull"]}]},
                {"name": "enterprise", "repositories": [
                    {"pattern": "stella-ops/private/locked", "actions": ["pull"]},
                    {"pattern": "stella-ops/**", "actions": ["pull", "push"]}]}
            ],
            "defaultPlan": "community",
            "revokedLicenses": ["lic-0042"],
            "revokedSubjects": ["mallory"]
        });
        let bed = Bed {
            dir,
            signing_pem,
            kind,
            config,
        };
        bed.write_config();
        bed
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.json")
    }

    pub fn write_config(&self) {
        fs::write(self.config_path(), self.config.to_string()).unwrap();
    }

    /// Writes `request` to `name` and returns its path.
    pub fn request_file(&self, name: &str, request: &Value) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, request.to_string()).unwrap();
        p
    }

    /// `registry-token bundle --config <config.json> --request <req> --out <out>`.
    pub fn bundle(&self, request: &Value, out: &str) -> Output {
        let req = self.request_file(&format!("{out}.request.json"), request);
        run(
            &[
                "bundle",
                "--config",
                self.config_path().to_str().unwrap(),
                "--request",
                req.to_str().unwrap(),
                "--out",
                self.path(out).to_str().unwrap(),
            ],
            &[],
        )
    }

    /// A good bundle in `out`.
    pub fn good_bundle(&self, out: &str) -> PathBuf {
        let o = self.bundle(&request(), out);
        assert_ok(&o);
        self.path(out)
    }

    /// The trusted JWKS from `registry-token jwks`, written to `jwks.json`.
    pub fn jwks_file(&self) -> PathBuf {
        let o = run(
            &["jwks", "--config", self.config_path().to_str().unwrap()],
            &[],
        );
        assert_ok(&o);
        let p = self.path("jwks.json");
        fs::write(&p, &o.stdout).unwrap();
        p
    }

    /// `verify-bundle DIR --jwks <jwks.json> --at <AT>`.
    pub fn verify(&self, dir: &Path) -> Output {
        let jwks = self.jwks_file();
        run(
            &[
                "verify-bundle",
                dir.to_str().unwrap(),
                "--jwks",
                jwks.to_str().unwrap(),
                "--at",
                AT,
            ],
            &[],
        )
    }
}

/// A time inside [`request`]'s window.
pub const AT: &str = "2099-01-05T00:00:00Z";

/// A good request: two tokens under `enterprise`.
pub fn request() -> Value {
    json!({
        "bundle": "mirror-eu-2099-01",
        "service": SERVICE,
        "subject": "mirror-eu-1",
        "plan": "enterprise",
        "license": "lic-0001",
        "notBefore": "2099-01-01T00:00:00Z",
        "notAfter": "2099-01-20T00:00:00Z",
        "tokens": [
            {"name": "base", "scopes": ["repository:stella-ops/public/base:pull"]},
            {"name": "tools", "scopes": [
                "repository:stella-ops/private/tools:pull",
                "repository:stella-ops/private/locked:pull"]}
        ]
    })
}

/// Runs the binary with `args`, the environment cleared of `REGISTRY_TOKEN_*` and `env`
/// added.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_TOKEN_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Asserts a failure with exit 1 whose stderr holds every one of `needles`.
pub fn assert_fails(o: &Output, needles: &[&str]) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    let e = stderr(o);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
}

/// Every file under `dir`, relative path → bytes, sorted.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Copies a bundle folder (flat: files and `tokens/`).
pub fn copy_bundle(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("tokens")).unwrap();
    for (rel, bytes) in files(from) {
        fs::write(to.join(rel), bytes).unwrap();
    }
}
