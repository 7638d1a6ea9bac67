//! Test harness: the real ledger binary on an ephemeral port, and admin keys made once
//! per test binary (`OnceLock`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

pub const INGEST_SECRET: &str = "ingest-secret-0123456789abcdef-0123456789";
pub const FEED_SECRET: &str = "feed-secret-0123456789abcdef-0123456789xyz";
pub const ISSUER: &str = "https://idp.test";
pub const ADMIN_SCOPE: &str = "registry.token.admin";
pub const BIN: &str = env!("CARGO_BIN_EXE_registry-token-ledger");

/// An RSA key pair for signing admin tokens.
pub struct TestKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

fn make_key(kid: &str) -> TestKey {
    let mut rng = rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM");
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key");
    let jwk = json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    });
    TestKey {
        kid: kid.to_string(),
        encoding,
        jwk,
    }
}

/// The key in the ledger's JWKS.
pub fn admin_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| make_key("admin-1"))
}

/// A P-256 key in the ledger's JWKS, for ES256.
pub fn ec_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::EncodePrivateKey as _;
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM");
        let point = secret.public_key().to_encoded_point(false);
        TestKey {
            kid: "admin-ec".to_string(),
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("encoding key"),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": "admin-ec", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
                "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
            }),
        }
    })
}

/// A key the ledger does not know (same kid, to prove the signature is checked).
pub fn rogue_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| make_key("admin-1"))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `claims` (merged over valid defaults) with `key` as RS256 (or `alg`).
pub fn token_with(key: &TestKey, alg: Algorithm, claims: Value) -> String {
    let mut base = json!({
        "iss": ISSUER,
        "sub": "security-alice",
        "iat": now(),
        "exp": now() + 300,
        "scope": format!("openid {ADMIN_SCOPE}"),
    });
    if let (Some(b), Some(c)) = (base.as_object_mut(), claims.as_object()) {
        for (k, v) in c {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    let mut header = Header::new(alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &base, &key.encoding).expect("sign")
}

/// A valid admin token.
pub fn admin_token() -> String {
    token_with(admin_key(), Algorithm::RS256, json!({}))
}

/// The ledger binary, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary against `database` and waits for its `listening on` line.
    pub fn start(database: &str) -> Server {
        Server::start_args(database, &[])
    }

    /// The same with more arguments (e.g. `--audience A`), the admin keys in a JWKS file.
    pub fn start_args(database: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            json!({"keys": [admin_key().jwk, ec_key().jwk]}).to_string(),
        )
        .unwrap();
        let jwks = jwks.to_string_lossy().into_owned();
        let mut args = vec!["--jwks-file", jwks.as_str()];
        args.extend_from_slice(extra);
        Server::start_with(database, &args, dir)
    }

    /// Starts the binary with `keys_args` (`--jwks-file F` or `--jwks-url U`, and any
    /// other argument).
    pub fn start_with(database: &str, keys_args: &[&str], dir: tempfile::TempDir) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--issuer",
                ISSUER,
            ])
            .args(keys_args)
            .env("LEDGER_INGEST_SECRET", INGEST_SECRET)
            .env("LEDGER_FEED_SECRET", FEED_SECRET)
            .env("LEDGER_LOG", "warn")
            .env_remove("LEDGER_ADMIN_SCOPE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the ledger binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("the ledger did not start ({status:?})");
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            base: format!("http://{addr}"),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}
