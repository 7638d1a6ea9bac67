//! What a run needs before it measures: throw-away keys and certificates (openssl), the
//! OpTok pools, `openssl speed` on Envoy's CPU, and a description of the machine.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use registry_token_core::token::keys::{pem_certificates, PrivateKey};
use registry_token_loadgen::jose::{b64, sha256, AuthorityKey, OpTokClaims};
use registry_token_loadgen::load::{Mode, OpTokPool};
use serde_json::{json, Value};

use crate::results::{Machine, Speed};
use crate::scenarios::{AUDIENCE, ISSUER, REFRESH_SECRET};

/// Runs `openssl` with `args`; its stderr on failure.
fn openssl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The run's keys and certificates (made once under the work directory, reused after).
pub struct Material {
    /// The Authority's key, signing the OpToks.
    pub authority: AuthorityKey,
    /// Its public key as a JWKS.
    pub jwks: Value,
    /// The filter's RS256 minting key, PEM.
    pub signing_rs: String,
    /// The filter's ES256 minting key, PEM.
    pub signing_es: String,
    /// The CA of the TLS listener and the client certificate.
    pub ca: String,
    /// The mTLS client certificate, PEM.
    pub client_cert: String,
    /// Its key.
    pub client_key: String,
    /// Its thumbprint (`cnf.x5t#S256`).
    pub x5t: String,
}

/// Makes (or reuses) the keys and certificates under `work`.
pub fn make_material(work: &Path) -> Result<Material, String> {
    let p = |n: &str| work.join(n).display().to_string();
    for (name, args) in [
        (
            "authority.pem",
            vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            "signing-rs.pem",
            vec!["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        ),
        (
            "signing-es.pem",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "ca.key",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "server.key",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
        (
            "client.key",
            vec!["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        ),
    ] {
        if !work.join(name).is_file() {
            let mut a = vec!["genpkey"];
            a.extend(args.iter());
            let out = p(name);
            a.extend(["-out", out.as_str()]);
            openssl(&a)?;
        }
    }
    if !work.join("client.crt").is_file() {
        make_certificates(work)?;
    }
    let read = |n: &str| std::fs::read_to_string(work.join(n)).map_err(|e| format!("{n}: {e}"));
    let authority_pem = read("authority.pem")?;
    let public = PrivateKey::from_pem(&authority_pem)
        .map_err(|e| e.to_string())?
        .public()
        .clone();
    let kid = public.thumbprint().to_string();
    let jwks = json!({"keys": [public.with_kid(kid.clone()).to_jwk()]});
    let client_cert = read("client.crt")?;
    let der = pem_certificates(&client_cert)
        .map_err(|e| format!("client.crt: {e}"))?
        .into_iter()
        .next()
        .ok_or("client.crt holds no certificate")?;
    Ok(Material {
        authority: AuthorityKey::from_pem(&authority_pem, Some(kid))?,
        jwks,
        signing_rs: read("signing-rs.pem")?,
        signing_es: read("signing-es.pem")?,
        ca: read("ca.crt")?,
        client_key: read("client.key")?,
        client_cert,
        x5t: b64(&sha256(&der)),
    })
}

/// A CA, and the TLS listener's and the mTLS client's certificates it signs, under `work`
/// (their keys made before).
fn make_certificates(work: &Path) -> Result<(), String> {
    let p = |n: &str| work.join(n).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("ca.key"),
        "-subj",
        "/CN=registry-token bench CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        &p("ca.crt"),
    ])?;
    for (who, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        std::fs::write(work.join(format!("{who}.ext")), ext).map_err(|e| e.to_string())?;
        openssl(&[
            "req", "-new", "-key", &p(&format!("{who}.key")), "-subj",
            &format!("/CN=bench-{who}"), "-out", &p(&format!("{who}.csr")),
        ])?;
        openssl(&[
            "x509", "-req", "-in", &p(&format!("{who}.csr")), "-CA", &p("ca.crt"),
            "-CAkey", &p("ca.key"), "-CAcreateserial", "-days", "30", "-extfile",
            &p(&format!("{who}.ext")), "-out", &p(&format!("{who}.crt")),
        ])?;
    }
    Ok(())
}

/// A self-signed certificate of the ES256 signing key (`signing-es.pem`, made by
/// [`make_material`]), made afresh as `signing-es.crt`: what a registry 2.8 is given as
/// `auth.token.rootcertbundle` to trust the tokens the filter mints with that key.
pub fn signing_certificate(work: &Path) -> Result<String, String> {
    let p = |n: &str| work.join(n).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("signing-es.pem"),
        "-subj",
        "/CN=registry-token bench signing key",
        "-days",
        "30",
        "-out",
        &p("signing-es.crt"),
    ])?;
    std::fs::read_to_string(work.join("signing-es.crt")).map_err(|e| format!("signing-es.crt: {e}"))
}

/// `n` refresh tokens for the `refresh` scenario, sealed with the core's own code under
/// [`REFRESH_SECRET`] (what the filter hands out on `offline_token=true`), each a
/// distinct subject of plan `bench`.
pub fn refresh_tokens(n: usize) -> Vec<String> {
    use registry_token_core::token::refresh::{RefreshClaims, RefreshKeys};
    let keys = RefreshKeys::new(vec![REFRESH_SECRET.as_bytes().to_vec()]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run = now ^ u64::from(std::process::id());
    (0..n)
        .map(|i| {
            keys.seal(&RefreshClaims {
                sub: format!("bench-{run:x}-{i}"),
                plan: "bench".into(),
                lic: Vec::new(),
                azp: None,
                cid: Some("bench".into()),
                jkt: None,
                x5t_s256: None,
                ten: None,
                iat: now,
                exp: now + 86_400,
                jti: b64(&sha256(format!("{run}-{i}").as_bytes())[..16]),
            })
        })
        .collect()
}

/// The OpTok pools, one per binding kind, and the refresh tokens.
pub struct Pools {
    /// Unbound OpToks.
    pub bearer: Arc<OpTokPool>,
    /// DPoP-bound OpToks and their proof keys.
    pub dpop: Arc<OpTokPool>,
    /// Certificate-bound OpToks.
    pub mtls: Arc<OpTokPool>,
    /// Refresh tokens.
    pub refresh: Arc<OpTokPool>,
}

impl Pools {
    /// `n` distinct RS256 OpToks of each binding kind, and `n` refresh tokens.
    pub fn generate(m: &Material, n: usize) -> Result<Pools, String> {
        let claims = OpTokClaims {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            ttl: 4 * 3600,
            ..OpTokClaims::default()
        };
        let gen =
            |mode| OpTokPool::generate(&m.authority, &claims, mode, n, Some(&m.x5t)).map(Arc::new);
        Ok(Pools {
            bearer: gen(Mode::Bearer)?,
            dpop: gen(Mode::Dpop)?,
            mtls: gen(Mode::Mtls)?,
            refresh: Arc::new(OpTokPool::from_tokens(Mode::Refresh, refresh_tokens(n))),
        })
    }

    /// The pool of `mode`'s binding.
    pub fn get(&self, mode: Mode) -> Arc<OpTokPool> {
        match mode.binding() {
            Mode::Bearer => self.bearer.clone(),
            Mode::Mtls => self.mtls.clone(),
            Mode::Refresh => self.refresh.clone(),
            _ => self.dpop.clone(),
        }
    }
}

/// `openssl speed` of RSA-2048 and ECDSA P-256 for `seconds`, on `cpu` when given.
pub fn openssl_speed(cpu: Option<usize>, seconds: u64) -> Result<Speed, String> {
    let secs = seconds.to_string();
    let mut cmd = match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string(), "openssl"]);
            cmd
        }
        None => Command::new("openssl"),
    };
    let out = cmd
        .args(["speed", "-seconds", &secs, "rsa2048", "ecdsap256"])
        .output()
        .map_err(|e| format!("openssl speed: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut s = Speed::default();
    for line in text.lines() {
        let nums: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok())
            .collect();
        if line.trim_start().starts_with("rsa 2048 bits") && nums.len() >= 3 {
            s.rsa_sign = nums[nums.len() - 2];
            s.rsa_verify = nums[nums.len() - 1];
        } else if line.contains("ecdsa (nistp256)") && nums.len() >= 3 {
            s.ec_sign = nums[nums.len() - 2];
            s.ec_verify = nums[nums.len() - 1];
        }
    }
    if s.rsa_sign <= 0.0 || s.ec_sign <= 0.0 {
        return Err(format!("cannot read openssl speed's output:\n{text}"));
    }
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("rsa 2048 bits") || l.contains("nistp256") || l.contains("sign/s"))
        .collect();
    s.output = summary.join("\n");
    Ok(s)
}

/// The first non-empty line of what `cmd` prints.
fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The machine: CPU model, `cores` (counted before the bench pinned itself), memory,
/// kernel.
pub fn machine(cores: usize) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Machine {
        cpu,
        cores,
        memory_kib,
        kernel: kernel.trim().to_string(),
    }
}

/// `envoy --version`'s first line.
pub fn envoy_version(envoy: &Path) -> String {
    first_line(Command::new(envoy).arg("--version"))
}

/// `openssl version`.
pub fn openssl_version() -> String {
    first_line(Command::new("openssl").arg("version"))
}

/// Now, `2026-11-29 07:27 UTC`.
pub fn now() -> String {
    first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
}
