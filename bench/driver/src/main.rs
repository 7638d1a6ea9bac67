//! `make bench`: the whole comparison in one run on this machine, written to
//! `docs/PERFORMANCE.md` with a latency-against-offered-load plot.
//!
//! ```text
//! bench [--seconds 10] [--connections 8] [--soak 300] [--sweep-seconds 8]
//!       [--optoks 20000] [--out docs/PERFORMANCE.md] [--plot docs/performance-latency.png]
//!       [--work target/bench] [--envoy .venv/bin/envoy]
//!       [--wasm target/wasm32-wasip1/release/registry_token_filter.wasm] [--strict]
//!       [--probe target/wasm32-wasip1/release/registry_token_crypto_probe.wasm]
//!       [--only ceiling,crypto,rs256,es256,es256-ledger,dpop-rs256,dpop-es256,reuse,mtls,password,refresh,rules-10k,rules-10k-tenant,hostile,cheap,ingest,sweep,soak]
//!       [--ledger target/release/registry-token-ledger] [--rounds 3]
//!       [--compare-wasm OLD.wasm [--compare rs256,es256,dpop-es256]]
//! ```
//!
//! Envoy runs with `--concurrency 1` pinned to CPU 0, `openssl speed` on CPU 0 too, the
//! load generator on CPU 1. Every figure is measured in this run; every target is a ratio
//! between figures of this run, reported met or not met. `--strict` exits 1 when a target
//! is not met (the default only fails on errors and on counter disagreement).
//!
//! With `es256-ledger`, every round also measures the ledger's cost side by side: an
//! `es256` and an `es256-ledger` Envoy on the same CPU, loaded at once, compared by CPU
//! time per decision ([`Pair`]); the ledger target is that ratio, since two runs one
//! after the other differ by more than the ledger costs. `--compare-wasm` measures this
//! module against another build the same way, on the `--compare` scenarios.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_token_core::token::keys::pem_certificates;
use registry_token_core::token::keys::PrivateKey;
use registry_token_loadgen::admin::{self, bucket_quantile, Snapshot};
use registry_token_loadgen::args::Args;
use registry_token_loadgen::envoy::{pin_self, EnvoyProc};
use registry_token_loadgen::http::{self, Target};
use registry_token_loadgen::jose::{b64, sha256, AuthorityKey, OpTokClaims};
use registry_token_loadgen::ledger::{
    self as ledger_bench, postgres::Postgres, IngestResult, LedgerProc,
};
use registry_token_loadgen::load::{self, Mode, OpTokPool, RunResult, RunSpec, Workload};
use serde_json::{json, Value};

const ISSUER: &str = "https://authority.bench";
const AUDIENCE: &str = "registry-token";
const SERVICE: &str = "registry.bench";
const REALM: &str = "https://gateway.bench/token";
const WARMUP_SECONDS: u64 = 2;
/// OpToks cycled by the refusal scenarios (`hostile`, `cheap`): few enough that the OpTok
/// cache holds them all after the warm-up, so what differs is the proof alone.
const REFUSAL_OPTOKS: usize = 200;
/// Target: a refused hostile proof costs at most this many cheap refusals (filter p99).
const HOSTILE_RATIO_LIMIT: f64 = 3.0;
/// Rules in the ordinary catalogue; the big one has 10,000.
const BASE_RULES: usize = 10;
const BIG_RULES: usize = 10_000;
const WASM_LIMIT_BYTES: u64 = 1_500_000;

const TOKEN_TEMPLATE: &str = include_str!("../../envoy/token.yaml.in");
const TLS_TEMPLATE: &str = include_str!("../../envoy/tls.yaml.in");
const CEILING_TEMPLATE: &str = include_str!("../../envoy/ceiling.yaml.in");
const PROBE_TEMPLATE: &str = include_str!("../../envoy/probe.yaml.in");
/// Target: every grant at least this fraction of its in-Envoy crypto ceiling.
const CRYPTO_CEILING_TARGET: f64 = 0.85;
/// Target: the refresh grant at least this many times the password grant (RS256 mint).
const REFRESH_OVER_PASSWORD_TARGET: f64 = 1.5;
/// Target: the gateway with the ledger on at least this fraction of without.
const LEDGER_ON_TARGET: f64 = 0.9;
/// The gateways' ingest secret of the bench ledger (a bench-only value).
const LEDGER_SECRET: &str = "bench-ledger-ingest-secret-0123456789abcdef";
/// Ingest load: concurrent POSTs (gateways, each of which has one batch in flight at a
/// time) and records per batch (the filter's default `ledger.batchSize`).
const INGEST_CONNECTIONS: usize = 4;
const INGEST_BATCH: usize = 100;
/// The refresh-token secret of the `refresh` scenario (a bench-only value).
const REFRESH_SECRET: &str = "bench-refresh-token-secret-0123456789abcdef";

/// The in-Envoy crypto ceilings: the probe module (`bench/probe`) doing only the
/// signature work of a path through Envoy's `sign`/`verify_signature`, per request.
const CRYPTO_CEILINGS: [(&str, &[&str], &str); 6] = [
    (
        "crypto-rs",
        &["verify:RS256", "sign:RS256"],
        "verify RS256 (OpToken) + sign RS256 (token)",
    ),
    (
        "crypto-es",
        &["verify:RS256", "sign:ES256"],
        "verify RS256 (OpToken) + sign ES256 (token)",
    ),
    (
        "crypto-dpop-rs",
        &["verify:RS256", "verify:ES256", "sign:RS256"],
        "verify RS256 (OpToken) + verify ES256 (proof) + sign RS256 (token)",
    ),
    (
        "crypto-dpop-es",
        &["verify:RS256", "verify:ES256", "sign:ES256"],
        "verify RS256 (OpToken) + verify ES256 (proof) + sign ES256 (token)",
    ),
    (
        "crypto-sign-rs",
        &["sign:RS256"],
        "sign RS256 (token) only: the refresh grant (its HMAC is not signature work)",
    ),
    (
        "crypto-es-shared",
        &["verify:RS256", "sign:ES256", "shared:cas"],
        "`crypto-es` + one shared-data read and compare-and-swap write of 512 bytes (not a ceiling: what one such pair costs, as the ledger's append or the DPoP replay record does per request)",
    ),
];

/// CPUs seen before the bench pinned itself.
static CORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn step(msg: &str) {
    println!("\n==> {msg}");
}

// ---------------------------------------------------------------------------------------
// Setup: keys and certificates (openssl), the OpToks.
// ---------------------------------------------------------------------------------------

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

struct Material {
    authority: AuthorityKey,
    jwks: Value,
    signing_rs: String,
    signing_es: String,
    ca: String,
    client_cert: String,
    client_key: String,
    x5t: String,
}

fn make_material(work: &Path) -> Result<Material, String> {
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

// ---------------------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mint {
    Rs256,
    Es256,
}

#[derive(Clone)]
struct Scenario {
    key: &'static str,
    title: &'static str,
    mode: Mode,
    mint: Mint,
    reuse_seconds: u64,
    rules: usize,
    /// OpToks of the pool cycled through (0 = the whole pool).
    optoks: usize,
    /// A placeholder-heavy catalogue: every rule holds `{tenant}` (the tenant is the
    /// OpToks' `client_id`, `loadgen`, through `authority.tenantClaim`, so the shared
    /// OpTok pool needs no extra claim).
    tenant: bool,
    /// Every decision delivered to a real ledger (SQLite) through an Envoy cluster.
    ledger: bool,
}

/// The Envoy cluster of the bench ledger.
const LEDGER_CLUSTER: &str = "ledger";

/// The tenant every OpTok of the pool names (its `client_id`).
const BENCH_TENANT: &str = "loadgen";

fn scenarios() -> Vec<Scenario> {
    let s = |key, title, mode, mint, reuse_seconds, rules, optoks| Scenario {
        key,
        title,
        mode,
        mint,
        reuse_seconds,
        rules,
        optoks,
        tenant: false,
        ledger: false,
    };
    vec![
        s(
            "rs256",
            "RS256 mint (Bearer, unbound RS256 OpTok)",
            Mode::Bearer,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "es256",
            "ES256 mint (Bearer, unbound RS256 OpTok)",
            Mode::Bearer,
            Mint::Es256,
            0,
            BASE_RULES,
            0,
        ),
        Scenario {
            ledger: true,
            ..s(
                "es256-ledger",
                "ES256 mint (Bearer, unbound RS256 OpTok), ledger on: every decision delivered to the ledger (SQLite)",
                Mode::Bearer,
                Mint::Es256,
                0,
                BASE_RULES,
                0,
            )
        },
        s(
            "dpop-rs256",
            "DPoP-bound, RS256 mint (RS256 OpTok + ES256 proof + RS256 mint)",
            Mode::Dpop,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "dpop-es256",
            "DPoP-bound, ES256 mint (RS256 OpTok + ES256 proof + ES256 mint)",
            Mode::Dpop,
            Mint::Es256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "reuse",
            "DPoP-bound, RS256 mint, mint reuse on (reuseSeconds 60, 100 clients)",
            Mode::Dpop,
            Mint::Rs256,
            60,
            BASE_RULES,
            100,
        ),
        s(
            "mtls",
            "mTLS-bound, RS256 mint (TLS + client certificate)",
            Mode::Mtls,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "password",
            "OAuth2 password grant, RS256 mint (POST form, unbound RS256 OpTok as password)",
            Mode::Password,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "refresh",
            "OAuth2 refresh grant, RS256 mint (POST form, refresh token; no OpToken signature)",
            Mode::Refresh,
            Mint::Rs256,
            0,
            BASE_RULES,
            0,
        ),
        s(
            "rules-10k",
            "DPoP-bound, ES256 mint, 10,000-rule catalogue (last rule matches)",
            Mode::Dpop,
            Mint::Es256,
            0,
            BIG_RULES,
            0,
        ),
        Scenario {
            tenant: true,
            ..s(
                "rules-10k-tenant",
                "DPoP-bound, ES256 mint, 10,000 `{tenant}` rules (placeholder-heavy; last rule matches)",
                Mode::Dpop,
                Mint::Es256,
                0,
                BIG_RULES,
                0,
            )
        },
        s(
            "hostile",
            "hostile DPoP proofs, refused (8192-bit RSA jwk with 34-bit e / e = AQAB, PS512, garbage signature; ES256 by another key; wrong ath), 200 OpToks",
            Mode::HostileDpop,
            Mint::Es256,
            0,
            BASE_RULES,
            REFUSAL_OPTOKS,
        ),
        s(
            "cheap",
            "cheap refusal: `DPoP: x` (401 dpop_malformed), 200 OpToks",
            Mode::MalformedDpop,
            Mint::Es256,
            0,
            BASE_RULES,
            REFUSAL_OPTOKS,
        ),
    ]
}

fn request_path(rules: usize) -> String {
    format!(
        "/token?service={SERVICE}&scope=repository:bench/r{}/app:pull",
        rules - 1
    )
}

/// The request of a scenario: [`request_path`], or for the placeholder catalogue the
/// caller's own namespace under the last rule (an odd index).
fn scenario_path(sc: &Scenario) -> String {
    if !sc.tenant {
        return request_path(sc.rules);
    }
    let last = sc.rules - 1 - usize::from(sc.rules % 2 == 1);
    format!("/token?service={SERVICE}&scope=repository:tenants/{BENCH_TENANT}/r{last}/app:pull")
}

fn plugin_config(m: &Material, sc: &Scenario) -> Value {
    let (key, alg) = match sc.mint {
        Mint::Rs256 => (&m.signing_rs, "RS256"),
        Mint::Es256 => (&m.signing_es, "ES256"),
    };
    let rules: Vec<Value> = (0..sc.rules)
        .map(|i| {
            let pattern = match (sc.tenant, i % 2) {
                (false, _) => format!("bench/r{i}/*"),
                // Half behind a shared `tenants/{tenant}` prefix, half with the
                // placeholder under a distinct literal.
                (true, 0) => format!("bench/r{i}/{{tenant}}/*"),
                (true, _) => format!("tenants/{{tenant}}/r{i}/*"),
            };
            json!({"pattern": pattern, "actions": ["pull"]})
        })
        .collect();
    let mut authority = json!({
        "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": m.jwks,
        "requireSenderConstraint": matches!(sc.mode.binding(), Mode::Dpop | Mode::Mtls)
    });
    if sc.tenant {
        authority["tenantClaim"] = json!("client_id");
        authority["requireTenant"] = json!(true);
    }
    let mut config = json!({
        "authority": authority,
        "signing": {"keyPem": key, "algorithm": alg, "lifetimeSeconds": 300,
                    "reuseSeconds": sc.reuse_seconds},
        "registry": {"realm": REALM, "allowedServices": [SERVICE]},
        "plans": [{"name": "bench", "repositories": rules}],
        "defaultPlan": "bench"
    });
    if sc.ledger {
        config["ledger"] = json!({
            "cluster": LEDGER_CLUSTER,
            "headers": {"authorization": format!("Bearer {LEDGER_SECRET}")},
            "gateway": "bench"
        });
    }
    if sc.mode == Mode::Refresh {
        config["refreshTokens"] = json!({"lifetimeSeconds": 86_400, "secrets": [REFRESH_SECRET]});
    }
    config
}

/// `n` refresh tokens for the `refresh` scenario, sealed with the core's own code under
/// [`REFRESH_SECRET`] (what the filter hands out on `offline_token=true`), each a
/// distinct subject of plan `bench`.
fn refresh_tokens(n: usize) -> Vec<String> {
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

/// The Envoy of an in-Envoy crypto ceiling: the probe module doing `ops` per request.
fn start_probe_envoy(
    ctx: &Ctx,
    m: &Material,
    probe: &Path,
    key: &str,
    ops: &[&str],
) -> Result<EnvoyProc, String> {
    let config = json!({
        "ops": ops,
        "rsaKeyPem": m.signing_rs,
        "ecKeyPem": m.signing_es,
        "bodyBytes": 900
    });
    EnvoyProc::start(
        &ctx.envoy,
        &ctx.work,
        key,
        PROBE_TEMPLATE,
        &[
            ("WASM_PATH", probe.display().to_string()),
            ("PLUGIN_CONFIG", config.to_string()),
        ],
        ctx.envoy_cpu,
    )
}

/// The crypto ceiling a scenario is compared to (none for mint reuse and refusals).
fn crypto_ceiling_of(sc: &Scenario) -> Option<&'static str> {
    if sc.reuse_seconds > 0 || sc.mode.expected_refusals().is_some() {
        return None;
    }
    Some(match (sc.mode, sc.mint) {
        (Mode::Refresh, Mint::Rs256) => "crypto-sign-rs",
        (Mode::Dpop, Mint::Rs256) => "crypto-dpop-rs",
        (Mode::Dpop, Mint::Es256) => "crypto-dpop-es",
        (_, Mint::Rs256) => "crypto-rs",
        (_, Mint::Es256) => "crypto-es",
    })
}

struct Pools {
    bearer: Arc<OpTokPool>,
    dpop: Arc<OpTokPool>,
    mtls: Arc<OpTokPool>,
    refresh: Arc<OpTokPool>,
}

impl Pools {
    fn get(&self, mode: Mode) -> Arc<OpTokPool> {
        match mode.binding() {
            Mode::Bearer => self.bearer.clone(),
            Mode::Mtls => self.mtls.clone(),
            Mode::Refresh => self.refresh.clone(),
            _ => self.dpop.clone(),
        }
    }
}

/// The round of median throughput (the upper one of an even count), carrying every
/// round's rate; the first error when a round failed.
fn median_round(all: Vec<Result<Measured, String>>) -> Result<Measured, String> {
    let mut ok = Vec::with_capacity(all.len());
    for r in all {
        ok.push(r?);
    }
    let rates: Vec<f64> = ok.iter().map(|m| m.result.tokens_per_second()).collect();
    // A round whose ledger missed a decision (or held one twice) speaks for all of them.
    let ledger_miss = ok
        .iter()
        .filter_map(|m| m.ledger_rows)
        .find(|(rows, decisions)| rows != decisions);
    ok.sort_by(|a, b| {
        a.result
            .tokens_per_second()
            .total_cmp(&b.result.tokens_per_second())
    });
    let mid = ok.len() / 2;
    let mut m = ok.into_iter().nth(mid).ok_or("no round was measured")?;
    m.rounds = rates;
    if ledger_miss.is_some() {
        m.ledger_rows = ledger_miss;
    }
    Ok(m)
}

/// What one measured run gave.
#[derive(Clone, Default)]
struct Measured {
    /// Every round's rate (answers or tokens per second), in the order measured; this run
    /// is the median one.
    rounds: Vec<f64>,
    result: RunResult,
    before: Snapshot,
    after: Snapshot,
    live_proofs: u64,
    /// With the ledger on: its rows, and the decisions Envoy counted (warm-up included).
    ledger_rows: Option<(u64, u64)>,
}

impl Measured {
    fn d(&self, name: &str) -> u64 {
        self.after
            .value(name)
            .saturating_sub(self.before.value(name))
    }
    fn issued(&self) -> u64 {
        self.after.issued().saturating_sub(self.before.issued())
    }
    fn rejected(&self) -> u64 {
        self.after
            .rejected_total()
            .saturating_sub(self.before.rejected_total())
    }
    fn sampled(&self) -> u64 {
        self.after.count.saturating_sub(self.before.count)
    }
    fn filter_q(&self, q: f64) -> Option<f64> {
        bucket_quantile(&self.before.buckets, &self.after.buckets, q)
    }
    /// For a refusing mode: every answer a 401 with one of the expected reasons.
    fn refusals_as_expected(&self, mode: Mode) -> bool {
        let Some(expected) = mode.expected_refusals() else {
            return true;
        };
        let r = &self.result;
        let before = self.before.rejected();
        r.responses() > 0
            && r.statuses.get(&401).copied().unwrap_or(0) == r.responses()
            && r.transport_errors == 0
            && self.after.rejected().into_iter().all(|(k, v)| {
                v == before.get(&k).copied().unwrap_or(0) || expected.contains(&k.as_str())
            })
    }
    fn agrees(&self) -> bool {
        let r = &self.result;
        self.issued() == r.ok()
            && self.rejected() == r.responses() - r.ok()
            && self.sampled() == r.responses()
    }
    /// Non-200 answers with the filter's reasons, e.g. `12 (dpop_replay_unavailable: 12)`.
    fn non_ok(&self) -> String {
        let r = &self.result;
        let n = r.responses() - r.ok() + r.transport_errors;
        let before = self.before.rejected();
        let reasons: Vec<String> = self
            .after
            .rejected()
            .into_iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
                (d > 0).then(|| format!("{k}: {d}"))
            })
            .collect();
        if reasons.is_empty() {
            n.to_string()
        } else {
            format!("{n} ({})", reasons.join(", "))
        }
    }

    fn hit_rate(&self) -> Option<f64> {
        let h = self.d("wasmcustom.registry_token_optok_cache_hits_total");
        let m = self.d("wasmcustom.registry_token_optok_cache_misses_total");
        (h + m > 0).then(|| h as f64 / (h + m) as f64)
    }
    fn reuse_rate(&self) -> Option<f64> {
        let ok = self.result.ok();
        (ok > 0).then(|| self.d("wasmcustom.registry_token_mint_reused_total") as f64 / ok as f64)
    }
}

struct Ctx {
    envoy: PathBuf,
    wasm: PathBuf,
    work: PathBuf,
    envoy_cpu: Option<usize>,
    connections: usize,
}

fn target_for(ctx: &Ctx, m: &Material, port: u16, mode: Mode) -> Result<Target, String> {
    let mut t = http::plain_target(&format!("http://127.0.0.1:{port}"))?;
    if mode == Mode::Mtls {
        let config = http::tls_config(&m.ca, Some((&m.client_cert, &m.client_key)))?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1".to_string())
            .map_err(|e| e.to_string())?;
        t.tls = Some((config, name));
    }
    let _ = ctx;
    Ok(t)
}

/// A new SQLite database URL under the work directory (any older file removed).
fn fresh_sqlite(work: &Path, name: &str) -> Result<String, String> {
    let file = work.join(format!("ledger-{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", file.display()));
        if f.exists() {
            std::fs::remove_file(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    Ok(format!("sqlite://{}", file.display()))
}

/// The ledger on `database`, trusting the bench Authority's keys, on `cpu` (`yield_cpu`:
/// at the lowest priority there, see [`LedgerProc::start`]).
fn start_bench_ledger(
    ctx: &Ctx,
    m: &Material,
    bin: &Path,
    database: &str,
    cpu: Option<usize>,
    yield_cpu: bool,
) -> Result<LedgerProc, String> {
    let bin = std::fs::canonicalize(bin).map_err(|e| {
        format!(
            "{}: {e} (cargo build --release -p registry-token-ledger)",
            bin.display()
        )
    })?;
    let jwks = ctx.work.join("ledger-jwks.json");
    std::fs::write(&jwks, m.jwks.to_string()).map_err(|e| format!("{}: {e}", jwks.display()))?;
    LedgerProc::start(&bin, database, ISSUER, &jwks, LEDGER_SECRET, cpu, yield_cpu)
}

/// Waits (at most 30 s) until the ledger holds a row per decision Envoy counted by
/// `after`; returns (rows, decisions).
fn ledger_rows(l: &LedgerProc, after: &Snapshot) -> Result<(u64, u64), String> {
    let decisions = after.issued() + after.rejected_total();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = l.ingested()?;
        if rows >= decisions || Instant::now() > deadline {
            return Ok((rows, decisions));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Two Envoys measured side by side: pinned to the same CPU and loaded at the same time,
/// each by its own connections, compared by CPU time per decision. Whatever slows the
/// machine in those seconds (this VM's CPU time moves ±20 % from one second to the next)
/// weighs on both alike; one after the other, the same two scenarios differ by more than
/// the costs compared here (0.82 and 1.11 in two rounds of one run). Used for the ledger's
/// cost (`es256` against `es256-ledger`) and for this build against another
/// (`--compare-wasm`).
#[derive(Clone, Copy, Default)]
struct Pair {
    base: PairSide,
    test: PairSide,
    /// With a ledger behind `test`: its rows, and the decisions that Envoy counted.
    ledger_rows: Option<(u64, u64)>,
}

#[derive(Clone, Copy, Default)]
struct PairSide {
    decisions: u64,
    /// CPU time of every thread of the Envoy process over the run.
    cpu_ns: u64,
    /// The part of it its worker ran (the rest: the main thread, mostly).
    worker_ns: u64,
    seconds: f64,
}

impl PairSide {
    fn cpu_us_per_decision(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.decisions.max(1) as f64
    }
    fn worker_us_per_decision(&self) -> f64 {
        self.worker_ns as f64 / 1e3 / self.decisions.max(1) as f64
    }
    fn rate(&self) -> f64 {
        self.decisions as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

impl Pair {
    /// Decisions per CPU second of `test`, against `base`.
    fn ratio(&self) -> f64 {
        let test = self.test.cpu_us_per_decision();
        if test > 0.0 {
            self.base.cpu_us_per_decision() / test
        } else {
            0.0
        }
    }

    /// Whether the ledger (if any) held one row per decision.
    fn whole(&self) -> bool {
        self.ledger_rows
            .is_none_or(|(rows, decisions)| rows == decisions)
    }
}

/// The median of side-by-side rounds (by ratio; the upper one of an even count), the
/// rounds' ratios as text (empty for one round), and whether every round's ledger held
/// one row per decision; the first error when a round failed.
fn median_pair(rounds: &[Result<Pair, String>]) -> Result<(Pair, String, bool), String> {
    let mut pairs = Vec::new();
    for p in rounds {
        pairs.push(p.clone()?);
    }
    let text = ratios_text(&pairs.iter().map(Pair::ratio).collect::<Vec<_>>());
    let whole = pairs.iter().all(Pair::whole);
    pairs.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let median = *pairs.get(pairs.len() / 2).ok_or("no round was measured")?;
    Ok((median, text, whole))
}

/// Every round of one side-by-side measurement.
type PairRounds = Vec<Result<Pair, String>>;

/// One side of [`side_by_side`]: a scenario (under a key of its own: it names the Envoy's
/// files), the module, and the ledger its records go to.
struct SideSpec<'a> {
    scenario: Scenario,
    wasm: &'a Path,
    ledger: Option<&'a LedgerProc>,
}

/// Scenario `key` under the name `renamed`.
fn scenario_as(key: &str, renamed: &'static str) -> Result<Scenario, String> {
    scenarios()
        .into_iter()
        .find(|s| s.key == key)
        .map(|s| Scenario { key: renamed, ..s })
        .ok_or_else(|| format!("no scenario {key}"))
}

/// The ledger's cost: `es256` against `es256-ledger` (its own fresh ledger), side by side.
fn ledger_pair(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    ledger_bin: &Path,
    ledger_cpu: Option<usize>,
    seconds: u64,
) -> Result<Pair, String> {
    let test = scenario_as("es256-ledger", "pair-es256-ledger")?;
    let db = fresh_sqlite(&ctx.work, test.key)?;
    let ledger = start_bench_ledger(ctx, m, ledger_bin, &db, ledger_cpu, true)?;
    let base = SideSpec {
        scenario: scenario_as("es256", "pair-es256")?,
        wasm: &ctx.wasm,
        ledger: None,
    };
    let test = SideSpec {
        scenario: test,
        wasm: &ctx.wasm,
        ledger: Some(&ledger),
    };
    side_by_side(ctx, m, pools, seconds, base, test)
}

/// This module (`test`) against the module `old` (`base`) on scenario `key`, side by side.
fn compare_pair(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    old: &Path,
    key: &str,
    seconds: u64,
) -> Result<Pair, String> {
    let base = SideSpec {
        scenario: scenario_as(key, "compare-old")?,
        wasm: old,
        ledger: None,
    };
    let test = SideSpec {
        scenario: scenario_as(key, "compare-new")?,
        wasm: &ctx.wasm,
        ledger: None,
    };
    side_by_side(ctx, m, pools, seconds, base, test)
}

/// One side-by-side round's line.
fn print_pair(label: &str, r: &Result<Pair, String>) {
    match r {
        Ok(p) => println!(
            "    {label:<15} {:.0} vs {:.0} µs of Envoy CPU per decision (worker {:.0} vs {:.0}; {:.0} and {:.0} tokens/s at once) = {:.2}{}",
            p.base.cpu_us_per_decision(),
            p.test.cpu_us_per_decision(),
            p.base.worker_us_per_decision(),
            p.test.worker_us_per_decision(),
            p.base.rate(),
            p.test.rate(),
            p.ratio(),
            p.ledger_rows.map_or(String::new(), |(rows, decisions)| format!(
                " | ledger rows {rows} for {decisions} decisions"
            ))
        ),
        Err(e) => println!("    {label:<15} FAILED: {e}"),
    }
}

/// Measures a [`Pair`]: both Envoys warmed up at once, then loaded at once for
/// `seconds`. With a ledger behind `test`, each Envoy's CPU is read when the ledger holds
/// the records of every decision before that point, so the shipping of the measured
/// decisions is inside the window and none of the warm-up's is.
fn side_by_side(
    ctx: &Ctx,
    m: &Material,
    pools: &Pools,
    seconds: u64,
    base: SideSpec<'_>,
    test: SideSpec<'_>,
) -> Result<Pair, String> {
    let ledger = test.ledger;
    let mut envoys = Vec::new();
    for side in [&base, &test] {
        envoys.push(start_token_envoy_with(
            ctx,
            m,
            &side.scenario,
            side.ledger,
            side.wasm,
        )?);
    }
    let sides = [&base.scenario, &test.scenario];
    let mut specs = Vec::new();
    let mut workloads = Vec::new();
    for (e, sc) in envoys.iter().zip(sides) {
        specs.push(RunSpec {
            target: target_for(ctx, m, e.port, sc.mode)?,
            connections: ctx.connections,
            duration: Duration::from_secs(WARMUP_SECONDS),
            rate: None,
            progress: false,
            max_requests: 20_000_000,
        });
        let pool = pools.get(sc.mode);
        let used = pool.len();
        workloads.push(Workload::with_mode(
            sc.mode,
            pool,
            used,
            "127.0.0.1",
            &scenario_path(sc),
            REALM,
            seconds + WARMUP_SECONDS,
            4000,
        )?);
    }
    // `test`'s counters from before the warm-up, so that `settle` can wait for its answers.
    let snap0 = admin::snapshot(&envoys[1].admin)?;
    let warm_answers = std::sync::Mutex::new([0u64; 2]);
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        let loads: Vec<_> = (0..2)
            .map(|i| {
                let (specs, workloads, warm_answers, barrier) =
                    (&specs, &workloads, &warm_answers, &barrier);
                s.spawn(move || {
                    let warm = load::run(&specs[i], &workloads[i]);
                    if let Ok(mut w) = warm_answers.lock() {
                        w[i] = warm.responses();
                    }
                    barrier.wait(); // warm-ups over
                    barrier.wait(); // start marks taken
                    let spec = RunSpec {
                        duration: Duration::from_secs(seconds),
                        ..specs[i].clone()
                    };
                    let r = load::run(&spec, &workloads[i]);
                    (r.responses(), r.ok())
                })
            })
            .collect();
        barrier.wait();
        // With a ledger: the start mark once it holds the warm-up's records (every
        // answer counted first, so that the count to wait for is known).
        let marks = (|| -> Result<Vec<(u64, u64)>, String> {
            if let Some(ledger) = ledger {
                let warm = warm_answers.lock().map_err(|e| e.to_string())?[1];
                ledger_rows(ledger, &settle(&envoys[1].admin, &snap0, warm)?)?;
            }
            envoys.iter().map(EnvoyProc::cpu_ns).collect()
        })();
        // Released whatever happened, so that the load threads end.
        barrier.wait();
        let started = Instant::now();
        let runs: Vec<(u64, u64)> = loads
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0)))
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        let marks = marks?;
        // Both sides issue tokens: a side that refused would be measured cheap.
        for ((responses, ok), side) in runs.iter().zip(sides) {
            if responses != ok || *ok == 0 {
                return Err(format!(
                    "{}: {ok} of {responses} answers were 200s",
                    side.key
                ));
            }
        }
        // With a ledger: the end mark once it holds the record of every decision Envoy
        // counted.
        let ledger_rows = match ledger {
            Some(ledger) => {
                let total = warm_answers.lock().map_err(|e| e.to_string())?[1] + runs[1].0;
                Some(ledger_rows(
                    ledger,
                    &settle(&envoys[1].admin, &snap0, total)?,
                )?)
            }
            None => None,
        };
        let mut measured = [PairSide::default(); 2];
        for (i, (e, mark)) in envoys.iter().zip(&marks).enumerate() {
            let cpu = e.cpu_ns()?;
            measured[i] = PairSide {
                // Every answer a 200 (above): one decision each.
                decisions: runs[i].0,
                cpu_ns: cpu.0.saturating_sub(mark.0),
                worker_ns: cpu.1.saturating_sub(mark.1),
                seconds,
            };
        }
        Ok(Pair {
            base: measured[0],
            test: measured[1],
            ledger_rows,
        })
    })
}

/// One database's ingest run.
struct Ingest {
    result: IngestResult,
    /// Records in 2xx batches, warm-up included.
    acknowledged: u64,
    /// `ledger_ingested_records_total` afterwards.
    rows: u64,
}

/// The Envoy of a scenario; `ledger`: the ledger its records go to.
fn start_token_envoy(
    ctx: &Ctx,
    m: &Material,
    sc: &Scenario,
    ledger: Option<&LedgerProc>,
) -> Result<EnvoyProc, String> {
    start_token_envoy_with(ctx, m, sc, ledger, &ctx.wasm)
}

/// [`start_token_envoy`] with the module `wasm`.
fn start_token_envoy_with(
    ctx: &Ctx,
    m: &Material,
    sc: &Scenario,
    ledger: Option<&LedgerProc>,
    wasm: &Path,
) -> Result<EnvoyProc, String> {
    let clusters = match ledger {
        Some(l) => format!("  clusters:\n{}", l.cluster_yaml(LEDGER_CLUSTER)),
        None => String::new(),
    };
    let tls = if sc.mode == Mode::Mtls {
        TLS_TEMPLATE.replace("{{DIR}}", &ctx.work.display().to_string())
    } else {
        String::new()
    };
    EnvoyProc::start(
        &ctx.envoy,
        &ctx.work,
        sc.key,
        TOKEN_TEMPLATE,
        &[
            ("WASM_PATH", wasm.display().to_string()),
            ("PLUGIN_CONFIG", plugin_config(m, sc).to_string()),
            ("TRANSPORT_SOCKET", tls),
            ("CLUSTERS", clusters),
        ],
        ctx.envoy_cpu,
    )
}

/// Waits until the admin accounts for `responses` answers (histograms merge at the 1 s
/// stats flush), then returns the snapshot.
fn settle(admin: &Target, before: &Snapshot, responses: u64) -> Result<Snapshot, String> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let s = admin::snapshot(admin)?;
        let counted = s.issued() + s.rejected_total() - (before.issued() + before.rejected_total());
        if (counted >= responses && s.count.saturating_sub(before.count) >= responses)
            || Instant::now() > deadline
        {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    ctx: &Ctx,
    mode: Mode,
    target: &Target,
    admin_t: &Target,
    pool: Arc<OpTokPool>,
    use_optoks: usize,
    path: &str,
    seconds: u64,
    rate: Option<f64>,
    expect_rate: u64,
    warmup: bool,
) -> Result<Measured, String> {
    let used = if use_optoks == 0 {
        pool.len()
    } else {
        use_optoks
    };
    let total = seconds + if warmup { WARMUP_SECONDS } else { 0 };
    let workload = Workload::with_mode(
        mode,
        pool,
        used,
        "127.0.0.1",
        path,
        REALM,
        total,
        expect_rate,
    )?;
    let mut spec = RunSpec {
        target: target.clone(),
        connections: ctx.connections,
        duration: Duration::from_secs(WARMUP_SECONDS),
        rate: None,
        progress: false,
        max_requests: 20_000_000,
    };
    // The histogram merges at the stats flush: the baseline must account for every
    // warm-up answer, or the warm-up's last samples would land in this run's delta.
    let snap0 = admin::snapshot(admin_t)?;
    let before = if warmup {
        let warm = load::run(&spec, &workload);
        settle(admin_t, &snap0, warm.responses())?
    } else {
        snap0
    };
    spec.duration = Duration::from_secs(seconds);
    spec.rate = rate;
    let result = load::run(&spec, &workload);
    let after = settle(admin_t, &before, result.responses())?;
    Ok(Measured {
        live_proofs: workload.live_proofs(),
        result,
        before,
        after,
        ledger_rows: None,
        rounds: Vec::new(),
    })
}

/// A closed-loop run of Bearer GETs against a listener that answers without the filter
/// (the `direct_response` and crypto ceilings): warm-up, then `seconds` measured.
fn run_plain(
    ctx: &Ctx,
    material: &Material,
    port: u16,
    pool: Arc<OpTokPool>,
    seconds: u64,
) -> Result<RunResult, String> {
    let target = target_for(ctx, material, port, Mode::Bearer)?;
    let used = pool.len();
    let workload = Workload::new(
        pool,
        used,
        "127.0.0.1",
        &request_path(BASE_RULES),
        REALM,
        1,
        0,
    )?;
    let spec = |d| RunSpec {
        target: target.clone(),
        connections: ctx.connections,
        duration: Duration::from_secs(d),
        rate: None,
        progress: false,
        max_requests: 50_000_000,
    };
    load::run(&spec(WARMUP_SECONDS), &workload);
    Ok(load::run(&spec(seconds), &workload))
}

fn print_line(name: &str, mode: Mode, m: &Measured) {
    let r = &m.result;
    let (rate, unit) = if mode.expected_refusals().is_some() {
        (r.responses_per_second(), "refusals/s")
    } else {
        (r.tokens_per_second(), "tokens/s")
    };
    println!(
        "    {name:<12} {rate:>8.0} {unit}  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs | filter p50 {:>6.0} µs p99 {:>6.0} µs | non-200 {} | errors {} | counters {}",
        r.quantile(0.5).unwrap_or(0),
        r.quantile(0.99).unwrap_or(0),
        r.quantile(0.999).unwrap_or(0),
        m.filter_q(0.5).unwrap_or(0.0),
        m.filter_q(0.99).unwrap_or(0.0),
        m.non_ok(),
        r.transport_errors,
        if m.agrees() { "agree" } else { "DISAGREE" }
    );
}

// ---------------------------------------------------------------------------------------
// openssl speed.
// ---------------------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct Speed {
    rsa_sign: f64,
    rsa_verify: f64,
    ec_sign: f64,
    ec_verify: f64,
}

fn openssl_speed(cpu: Option<usize>, seconds: u64) -> Result<(Speed, String), String> {
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
    Ok((s, summary.join("\n")))
}

// ---------------------------------------------------------------------------------------
// Main.
// ---------------------------------------------------------------------------------------

struct SweepPoint {
    fraction: f64,
    offered: f64,
    m: Measured,
}

struct SoakSample {
    t: u64,
    vm: u64,
    allocated: u64,
    heap: u64,
    rss: u64,
    tokens_per_second: f64,
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

fn main() {
    let args =
        Args::parse(std::env::args().skip(1), &["strict", "help"]).unwrap_or_else(|e| die(&e));
    if args.has("help") {
        println!("see the header of tools/loadgen/src/bin/bench.rs; make bench BENCH_ARGS=\"--seconds 3 --soak 20\" for a smoke run");
        return;
    }
    let known = [
        "seconds",
        "connections",
        "soak",
        "sweep-seconds",
        "optoks",
        "out",
        "plot",
        "work",
        "envoy",
        "wasm",
        "strict",
        "help",
        "speed-seconds",
        "only",
        "probe",
        "ledger",
        "rounds",
        "compare-wasm",
        "compare",
    ];
    let unknown = args.unknown(&known);
    if !unknown.is_empty() {
        die(&format!("unknown flag(s): --{}", unknown.join(", --")));
    }
    let num = |name: &str, d: u64| -> u64 { args.num(name, d).unwrap_or_else(|e| die(&e)) };
    let seconds = num("seconds", 10).clamp(1, 600);
    let connections = num("connections", 8).clamp(1, 256) as usize;
    let soak = num("soak", 300).min(3600);
    let sweep_seconds = num("sweep-seconds", 8).clamp(1, 120);
    let optoks = num("optoks", 20_000).clamp(100, 200_000) as usize;
    let speed_seconds = num("speed-seconds", 3).clamp(1, 10);
    let rounds = num("rounds", 3).clamp(1, 9);
    // --only ceiling,dpop-es256,sweep,soak: a part of the run (the report marks the rest
    // not measured).
    let only: Option<Vec<String>> = args
        .opt("only")
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect());
    let want = |key: &str| only.as_ref().is_none_or(|l| l.iter().any(|k| k == key));
    let out_path = PathBuf::from(args.str("out", "docs/PERFORMANCE.md"));
    let plot_path = PathBuf::from(args.str("plot", "docs/performance-latency.png"));
    let work = PathBuf::from(args.str("work", "target/bench"));
    let envoy = PathBuf::from(args.str("envoy", ".venv/bin/envoy"));
    let wasm = PathBuf::from(args.str(
        "wasm",
        "target/wasm32-wasip1/release/registry_token_filter.wasm",
    ));
    let probe = PathBuf::from(args.str(
        "probe",
        "target/wasm32-wasip1/release/registry_token_crypto_probe.wasm",
    ));
    let ledger_bin = PathBuf::from(args.str("ledger", "target/release/registry-token-ledger"));
    // --compare-wasm OLD.wasm [--compare rs256,es256,dpop-es256]: this module against
    // another build, side by side, on those scenarios (ledger-less ones).
    let compare_wasm = args.opt("compare-wasm").map(|p| {
        std::fs::canonicalize(&p).unwrap_or_else(|e| die(&format!("--compare-wasm {p}: {e}")))
    });
    let mut compared: Vec<(&'static str, PairRounds)> = Vec::new();
    if compare_wasm.is_some() {
        for key in args.str("compare", "rs256,es256,dpop-es256").split(',') {
            match scenarios()
                .into_iter()
                .find(|s| s.key == key.trim() && !s.ledger)
            {
                Some(sc) => compared.push((sc.key, Vec::new())),
                None => die(&format!(
                    "--compare: {key} is not a scenario without the ledger"
                )),
            }
        }
    }
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| {
        format!(
            "bench {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        )
    });
    std::fs::create_dir_all(&work).unwrap_or_else(|e| die(&format!("{}: {e}", work.display())));
    let wasm = std::fs::canonicalize(&wasm)
        .unwrap_or_else(|e| die(&format!("{}: {e} (run make wasm)", wasm.display())));
    let work = std::fs::canonicalize(&work).unwrap_or_else(|e| die(&e.to_string()));
    if !envoy.is_file() {
        die(&format!("{} not found (make envoy)", envoy.display()));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    CORES.store(cpus, std::sync::atomic::Ordering::Relaxed);
    let taskset = Command::new("taskset").arg("-V").output().is_ok();
    let (envoy_cpu, client_cpu) = if cpus >= 2 && taskset {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    step("keys, certificates and OpToks");
    let material = make_material(&work).unwrap_or_else(|e| die(&e));
    if let Some(c) = client_cpu {
        pin_self(c);
    }
    let claims = OpTokClaims {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        ttl: 4 * 3600,
        ..OpTokClaims::default()
    };
    let t = Instant::now();
    let gen = |mode| {
        Arc::new(
            OpTokPool::generate(
                &material.authority,
                &claims,
                mode,
                optoks,
                Some(&material.x5t),
            )
            .unwrap_or_else(|e| die(&e)),
        )
    };
    let pools = Pools {
        bearer: gen(Mode::Bearer),
        dpop: gen(Mode::Dpop),
        mtls: gen(Mode::Mtls),
        refresh: Arc::new(OpTokPool::from_tokens(
            Mode::Refresh,
            refresh_tokens(optoks),
        )),
    };
    println!(
        "    3 × {optoks} distinct RS256 OpToks (unbound, DPoP-bound, mTLS-bound) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ctx = Ctx {
        envoy: envoy.clone(),
        wasm: wasm.clone(),
        work: work.clone(),
        envoy_cpu,
        connections,
    };

    step(&format!(
        "openssl speed -seconds {speed_seconds} rsa2048 ecdsap256"
    ));
    let (speed, speed_text) = openssl_speed(envoy_cpu, speed_seconds).unwrap_or_else(|e| die(&e));
    println!("{speed_text}");

    let body = "x".repeat(900);
    if want("ceiling") {
        step("ceiling: Envoy direct_response, no filter");
    }
    let ceiling = (|| -> Result<Measured, String> {
        if !want("ceiling") {
            return Ok(Measured::default());
        }
        let e = EnvoyProc::start(
            &envoy,
            &work,
            "ceiling",
            CEILING_TEMPLATE,
            &[("BODY", body.clone())],
            envoy_cpu,
        )?;
        let result = run_plain(&ctx, &material, e.port, pools.bearer.clone(), seconds)?;
        Ok(Measured {
            result,
            ..Measured::default()
        })
    })()
    .unwrap_or_else(|e| die(&e));
    if want("ceiling") {
        println!(
            "    ceiling      {:>8.0} answers/s  p50 {} µs  p99 {} µs",
            ceiling.result.tokens_per_second(),
            ceiling.result.quantile(0.5).unwrap_or(0),
            ceiling.result.quantile(0.99).unwrap_or(0)
        );
    }

    // The in-Envoy crypto ceilings (what each path's signature work alone allows) and the
    // /token scenarios, in `rounds` alternating rounds: every figure below is the median
    // round, so that a slow minute of this shared machine moves a ratio less.
    let mut crypto_rounds: Vec<(&'static str, Vec<Result<Measured, String>>)> = Vec::new();
    let mut scenario_rounds: Vec<(Scenario, Vec<Result<Measured, String>>)> = Vec::new();
    let mut ledger_pairs: PairRounds = Vec::new();
    let want_crypto = want("crypto") || CRYPTO_CEILINGS.iter().any(|(k, ..)| want(k));
    let probe = if want_crypto {
        Some(std::fs::canonicalize(&probe).unwrap_or_else(|e| {
            die(&format!(
                "{}: {e} (cargo build --release --target wasm32-wasip1 -p registry-token-crypto-probe)",
                probe.display()
            ))
        }))
    } else {
        None
    };
    for round in 1..=rounds {
        let of_rounds = if rounds > 1 {
            format!(" (round {round} of {rounds})")
        } else {
            String::new()
        };
        if let Some(probe) = &probe {
            step(&format!("in-Envoy crypto ceilings: the probe module, signature work only (sign/verify_signature){of_rounds}"));
            for (key, ops, _) in CRYPTO_CEILINGS {
                if !want("crypto") && !want(key) {
                    continue;
                }
                let r = (|| -> Result<Measured, String> {
                    let e = start_probe_envoy(&ctx, &material, probe, key, ops)?;
                    let result = run_plain(&ctx, &material, e.port, pools.bearer.clone(), seconds)?;
                    if result.ok() < result.responses() {
                        return Err(format!(
                            "the probe answered {} of {} requests with an error (see {}/{key}.log)",
                            result.responses() - result.ok(),
                            result.responses(),
                            ctx.work.display()
                        ));
                    }
                    Ok(Measured {
                        result,
                        ..Measured::default()
                    })
                })();
                match &r {
                    Ok(m) => println!(
                        "    {key:<15} {:>8.0} answers/s  p50 {} µs  p99 {} µs",
                        m.result.tokens_per_second(),
                        m.result.quantile(0.5).unwrap_or(0),
                        m.result.quantile(0.99).unwrap_or(0)
                    ),
                    Err(e) => println!("    {key:<15} FAILED: {e}"),
                }
                match crypto_rounds.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, all)) => all.push(r),
                    None => crypto_rounds.push((key, vec![r])),
                }
            }
        }

        step(&format!("/token scenarios, {seconds} s each after {WARMUP_SECONDS} s of warm-up, {connections} connections, closed loop{of_rounds}"));
        for sc in scenarios().into_iter().filter(|s| want(s.key)) {
            let r = (|| -> Result<Measured, String> {
                // The ledger on the load generator's CPU, at the lowest priority there: a
                // service of its own (elsewhere in production), neither the gateway's work nor
                // a thief of the load generator's time.
                let ledger = if sc.ledger {
                    let db = fresh_sqlite(&ctx.work, sc.key)?;
                    Some(start_bench_ledger(
                        &ctx,
                        &material,
                        &ledger_bin,
                        &db,
                        client_cpu,
                        true,
                    )?)
                } else {
                    None
                };
                let e = start_token_envoy(&ctx, &material, &sc, ledger.as_ref())?;
                let target = target_for(&ctx, &material, e.port, sc.mode)?;
                let mut m = measure(
                    &ctx,
                    sc.mode,
                    &target,
                    &e.admin,
                    pools.get(sc.mode),
                    sc.optoks,
                    &scenario_path(&sc),
                    seconds,
                    None,
                    4000,
                    true,
                )?;
                if let Some(l) = &ledger {
                    m.ledger_rows = Some(ledger_rows(l, &m.after)?);
                }
                Ok(m)
            })();
            match &r {
                Ok(m) => {
                    print_line(sc.key, sc.mode, m);
                    if let Some((rows, decisions)) = m.ledger_rows {
                        println!(
                            "    {:<12} ledger rows {rows} for {decisions} decisions Envoy counted",
                            ""
                        );
                    }
                    if !m.refusals_as_expected(sc.mode) {
                        println!(
                            "    {:<12} UNEXPECTED answers: not every one a 401 {:?}",
                            sc.key,
                            sc.mode.expected_refusals().unwrap_or_default()
                        );
                    }
                }
                Err(e) => println!("    {:<12} FAILED: {e}", sc.key),
            }
            match scenario_rounds.iter_mut().find(|(s, _)| s.key == sc.key) {
                Some((_, all)) => all.push(r),
                None => scenario_rounds.push((sc, vec![r])),
            }
        }
        if want("es256-ledger") {
            step(&format!("the ledger's cost: `es256` and `es256-ledger` side by side on one CPU, {seconds} s after {WARMUP_SECONDS} s of warm-up{of_rounds}"));
            let r = ledger_pair(&ctx, &material, &pools, &ledger_bin, client_cpu, seconds);
            print_pair("ledger-pair", &r);
            ledger_pairs.push(r);
        }
        if let Some(old) = &compare_wasm {
            step(&format!(
                "this module against {}, side by side on one CPU, {seconds} s after {WARMUP_SECONDS} s of warm-up{of_rounds}",
                old.display()
            ));
            for (key, rounds) in compared.iter_mut() {
                let r = compare_pair(&ctx, &material, &pools, old, key, seconds);
                print_pair(key, &r);
                rounds.push(r);
            }
        }
    }
    let crypto: Vec<(&'static str, Result<Measured, String>)> = crypto_rounds
        .into_iter()
        .map(|(k, all)| (k, median_round(all)))
        .collect();
    let results: Vec<(Scenario, Result<Measured, String>)> = scenario_rounds
        .into_iter()
        .map(|(sc, all)| (sc, median_round(all)))
        .collect();
    // The ledger's sustained ingest rate on each database.
    let mut ingest: Vec<(&'static str, Result<Ingest, String>)> = Vec::new();
    if want("ingest") {
        step(&format!(
            "ledger ingest: {INGEST_CONNECTIONS} connections POST batches of {INGEST_BATCH} records, {seconds} s after {WARMUP_SECONDS} s of warm-up"
        ));
        for db in ["SQLite", "PostgreSQL"] {
            let r = (|| -> Result<Ingest, String> {
                // Declared first, dropped last: the cluster outlives its ledger.
                let mut pg: Option<Postgres> = None;
                let url = if db == "SQLite" {
                    fresh_sqlite(&ctx.work, "ingest")?
                } else {
                    let p = Postgres::try_start(true)?;
                    let url = p.url.clone();
                    pg = Some(p);
                    url
                };
                let l = start_bench_ledger(&ctx, &material, &ledger_bin, &url, envoy_cpu, false)?;
                let run = |name: &str, secs: u64| {
                    ledger_bench::ingest_load(
                        &l.target,
                        LEDGER_SECRET,
                        &format!("{name}-{db}-{}", std::process::id()),
                        INGEST_CONNECTIONS,
                        INGEST_BATCH,
                        Duration::from_secs(secs),
                    )
                };
                let warm = run("warm", WARMUP_SECONDS);
                let result = run("run", seconds);
                let rows = l.ingested()?;
                drop(l);
                drop(pg);
                Ok(Ingest {
                    acknowledged: warm.records + result.records,
                    rows,
                    result,
                })
            })();
            match &r {
                Ok(i) => println!(
                    "    {db:<12} {:>8.0} records/s  batch p50 {} µs  p99 {} µs | failed batches {} | rows {} for {} acknowledged",
                    i.result.records_per_second(),
                    i.result.quantile(0.5).unwrap_or(0),
                    i.result.quantile(0.99).unwrap_or(0),
                    i.result.failed,
                    i.rows,
                    i.acknowledged
                ),
                Err(e) => println!("    {db:<12} FAILED: {e}"),
            }
            ingest.push((db, r));
        }
    }

    let get = |k: &str| -> Option<&Measured> {
        results
            .iter()
            .find(|(s, _)| s.key == k)
            .and_then(|(_, r)| r.as_ref().ok())
    };

    // Latency against offered load, on the target-1 path.
    let dpop_rs = scenarios()
        .into_iter()
        .find(|s| s.key == "dpop-rs256")
        .unwrap_or_else(|| die("no dpop-rs256"));
    let max_rate = get("dpop-rs256").map_or(0.0, |m| m.result.tokens_per_second());
    let mut sweep: Vec<SweepPoint> = Vec::new();
    if max_rate > 0.0 && want("sweep") {
        step(&format!("latency against offered load (dpop-rs256, open loop, {sweep_seconds} s per point, max {max_rate:.0}/s)"));
        let r = (|| -> Result<(), String> {
            let e = start_token_envoy(&ctx, &material, &dpop_rs, None)?;
            let target = target_for(&ctx, &material, e.port, Mode::Dpop)?;
            for (i, fraction) in [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1]
                .into_iter()
                .enumerate()
            {
                let offered = (max_rate * fraction).max(1.0);
                let m = measure(
                    &ctx,
                    Mode::Dpop,
                    &target,
                    &e.admin,
                    pools.dpop.clone(),
                    0,
                    &request_path(BASE_RULES),
                    sweep_seconds,
                    Some(offered),
                    offered.ceil() as u64,
                    i == 0,
                )?;
                println!(
                    "    {:>4.0}% {:>7.0}/s offered → {:>7.0}/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs",
                    fraction * 100.0,
                    offered,
                    m.result.tokens_per_second(),
                    m.result.quantile(0.5).unwrap_or(0),
                    m.result.quantile(0.99).unwrap_or(0),
                    m.result.quantile(0.999).unwrap_or(0)
                );
                sweep.push(SweepPoint {
                    fraction,
                    offered,
                    m,
                });
            }
            Ok(())
        })();
        if let Err(e) = r {
            println!("    sweep FAILED: {e}");
        }
    }

    // Memory over a long run at full load.
    let mut soak_samples: Vec<SoakSample> = Vec::new();
    let mut soak_result: Option<Measured> = None;
    if soak > 0 && want("soak") {
        step(&format!(
            "memory: dpop-es256 at full load for {soak} s (proofs signed on the fly)"
        ));
        let sc = scenarios()
            .into_iter()
            .find(|s| s.key == "dpop-es256")
            .unwrap_or_else(|| die("no dpop-es256"));
        let r = (|| -> Result<(), String> {
            let e = start_token_envoy(&ctx, &material, &sc, None)?;
            let target = target_for(&ctx, &material, e.port, Mode::Dpop)?;
            let workload = Workload::new(
                pools.dpop.clone(),
                0,
                "127.0.0.1",
                &request_path(BASE_RULES),
                REALM,
                soak,
                0,
            )?;
            let interval = (soak / 30).clamp(1, 10);
            let before = admin::snapshot(&e.admin)?;
            let sample = |t: u64, tps: f64| -> Result<SoakSample, String> {
                let s = admin::snapshot(&e.admin)?;
                Ok(SoakSample {
                    t,
                    vm: s.value("wasmcustom.registry_token_vm_memory_bytes"),
                    allocated: s.value("server.memory_allocated"),
                    heap: s.value("server.memory_heap_size"),
                    rss: e.rss_bytes().unwrap_or(0),
                    tokens_per_second: tps,
                })
            };
            soak_samples.push(sample(0, 0.0)?);
            let mut total = Measured {
                before: before.clone(),
                ..Measured::default()
            };
            let mut t = 0;
            while t < soak {
                let d = interval.min(soak - t);
                let spec = RunSpec {
                    target: target.clone(),
                    connections,
                    duration: Duration::from_secs(d),
                    rate: None,
                    progress: false,
                    max_requests: 50_000_000,
                };
                let r = load::run(&spec, &workload);
                t += d;
                let tps = r.tokens_per_second();
                total.result.latencies.extend(r.latencies);
                for (k, v) in r.statuses {
                    *total.result.statuses.entry(k).or_insert(0) += v;
                }
                total.result.transport_errors += r.transport_errors;
                total.result.elapsed += r.elapsed;
                let s = sample(t, tps)?;
                println!(
                    "    {:>5} s  {:>7.0} tokens/s  VM {:>6.2} MiB  allocated {:>7.2} MiB  heap {:>7.2} MiB  RSS {:>7.2} MiB",
                    t, tps, mib(s.vm), mib(s.allocated), mib(s.heap), mib(s.rss)
                );
                soak_samples.push(s);
            }
            total.result.latencies.sort_unstable();
            total.after = settle(&e.admin, &before, total.result.responses())?;
            total.live_proofs = workload.live_proofs();
            soak_result = Some(total);
            Ok(())
        })();
        if let Err(e) = r {
            println!("    soak FAILED: {e}");
        }
    }

    // ----- the report -----
    let wasm_size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let report = Report {
        command,
        seconds,
        connections,
        soak,
        sweep_seconds,
        optoks,
        speed_seconds,
        speed,
        speed_text,
        ceiling,
        crypto: &crypto,
        results: &results,
        ledger_pairs: &ledger_pairs,
        compared: compare_wasm.as_deref().map(|p| (p, compared.as_slice())),
        ingest: &ingest,
        sweep: &sweep,
        soak_samples: &soak_samples,
        soak_result: soak_result.as_ref(),
        wasm_size,
        envoy: &envoy,
        envoy_cpu,
        client_cpu,
        load_at_start,
        elapsed: started.elapsed(),
        plot_path: &plot_path,
        out_path: &out_path,
    };
    let plotted = plot(&work, &plot_path, &sweep);
    let (text, targets) = report.render(plotted.as_ref().err());
    std::fs::write(&out_path, &text)
        .unwrap_or_else(|e| die(&format!("{}: {e}", out_path.display())));
    step(&format!("targets (written to {})", out_path.display()));
    let mut met = 0;
    for t in &targets {
        println!(
            "    {} {} — {}",
            if t.pass { "MET    " } else { "NOT MET" },
            t.name,
            t.measured
        );
        met += usize::from(t.pass);
    }
    println!("    {met} of {} targets met", targets.len());
    if let Err(e) = &plotted {
        println!("    plot not written: {e}");
    } else {
        println!("    plot: {}", plot_path.display());
    }
    let disagree = results.iter().any(|(sc, r)| {
        r.as_ref()
            .map_or(true, |m| !m.agrees() || !m.refusals_as_expected(sc.mode))
    });
    let lost = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.ledger_rows)
        .any(|(rows, decisions)| rows != decisions)
        || ledger_pairs.iter().any(|p| {
            p.as_ref()
                .map_or(true, |p| !p.whole() || p.ledger_rows.is_none())
        })
        || ingest
            .iter()
            .any(|(_, r)| r.as_ref().map_or(true, |i| i.rows != i.acknowledged));
    if lost {
        println!("    the ledger's rows differ from the decisions or records it acknowledged (or an ingest run failed)");
        std::process::exit(1);
    }
    if disagree {
        println!("    some scenario failed or its Envoy counters disagree with the load generator");
        std::process::exit(1);
    }
    if args.has("strict") && met < targets.len() {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Plot and report.
// ---------------------------------------------------------------------------------------

fn plot(work: &Path, png: &Path, sweep: &[SweepPoint]) -> Result<(), String> {
    if sweep.is_empty() {
        return Err("no sweep data".into());
    }
    let mut dat = String::from("# offered achieved p50_ms p99_ms p999_ms filter_p99_ms\n");
    for p in sweep {
        let r = &p.m.result;
        let ms = |q| f64::from(r.quantile(q).unwrap_or(0)) / 1000.0;
        let _ = writeln!(
            dat,
            "{:.0} {:.0} {:.3} {:.3} {:.3} {:.3}",
            p.offered,
            r.tokens_per_second(),
            ms(0.5),
            ms(0.99),
            ms(0.999),
            p.m.filter_q(0.99).unwrap_or(0.0) / 1000.0
        );
    }
    let dat_path = work.join("sweep.dat");
    std::fs::write(&dat_path, dat).map_err(|e| e.to_string())?;
    let half = sweep
        .iter()
        .find(|p| (p.fraction - 0.5).abs() < 1e-9)
        .map_or(0.0, |p| p.offered);
    let script = format!(
        "set terminal pngcairo size 900,560 font 'DejaVu Sans,10'\n\
         set output '{png}'\n\
         set title 'registry-token-filter: /token latency against offered load (DPoP-bound, RS256 mint, 1 Envoy worker)'\n\
         set xlabel 'offered load (requests/s, open loop)'\n\
         set ylabel 'latency (ms, client side, from the intended send time)'\n\
         set logscale y\n\
         set grid\n\
         set key right bottom box opaque\n\
         set arrow from {half},graph 0 to {half},graph 1 nohead dt 2 lc rgb '#888888'\n\
         set label 'half of max' at {half},graph 0.04 offset 0.5,0 tc rgb '#666666'\n\
         set arrow from graph 0,first 5 to graph 1,first 5 nohead dt 3 lc rgb '#cc0000'\n\
         set label 'p99 target 5 ms' at graph 0.01,first 5 offset 0,0.7 tc rgb '#cc0000'\n\
         plot '{dat}' using 1:3 with linespoints lw 2 title 'p50', \
              '{dat}' using 1:4 with linespoints lw 2 title 'p99', \
              '{dat}' using 1:5 with linespoints lw 2 title 'p99.9', \
              '{dat}' using 1:6 with linespoints lw 1 dt 2 title 'p99 inside the filter (Envoy histogram)'\n",
        png = png.display(),
        dat = dat_path.display(),
    );
    let gp = work.join("sweep.gp");
    std::fs::write(&gp, script).map_err(|e| e.to_string())?;
    let out = Command::new("gnuplot")
        .arg(&gp)
        .output()
        .map_err(|e| format!("gnuplot: {e} (make bench installs gnuplot-nox)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("gnuplot: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

struct Target_ {
    name: String,
    measured: String,
    pass: bool,
}

impl Target_ {
    /// A target whose figures were not measured in this run (not met).
    fn not_measured(name: String) -> Target_ {
        Target_ {
            name,
            measured: "not measured".into(),
            pass: false,
        }
    }
}

struct Report<'a> {
    command: String,
    seconds: u64,
    connections: usize,
    soak: u64,
    sweep_seconds: u64,
    optoks: usize,
    speed_seconds: u64,
    speed: Speed,
    speed_text: String,
    ceiling: Measured,
    crypto: &'a [(&'static str, Result<Measured, String>)],
    results: &'a [(Scenario, Result<Measured, String>)],
    /// Every round's side-by-side measurement of the ledger's cost.
    ledger_pairs: &'a [Result<Pair, String>],
    /// `--compare-wasm`: the other module, and every round of each scenario compared.
    compared: Option<(&'a Path, &'a [(&'static str, PairRounds)])>,
    ingest: &'a [(&'static str, Result<Ingest, String>)],
    sweep: &'a [SweepPoint],
    soak_samples: &'a [SoakSample],
    soak_result: Option<&'a Measured>,
    wasm_size: u64,
    envoy: &'a Path,
    envoy_cpu: Option<usize>,
    client_cpu: Option<usize>,
    load_at_start: String,
    elapsed: Duration,
    plot_path: &'a Path,
    out_path: &'a Path,
}

/// The ratio `a / b` of two figures measured in the same rounds: the median of the
/// per-round ratios (each scenario against what was measured a few minutes from it, so a
/// slow stretch of the machine weighs on both sides), with those ratios as text
/// (`0.81 · 0.98 · 0.97`; empty for a single round). Without rounds on both sides: the
/// ratio of the two runs.
fn paired_ratio(a: &Measured, b: &Measured) -> (f64, String) {
    if a.rounds.len() >= 2 && a.rounds.len() == b.rounds.len() {
        let mut r: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(x, y)| if *y > 0.0 { x / y } else { 0.0 })
            .collect();
        let text = ratios_text(&r);
        r.sort_by(f64::total_cmp);
        return (r[r.len() / 2], text);
    }
    let (x, y) = (a.result.tokens_per_second(), b.result.tokens_per_second());
    (if y > 0.0 { x / y } else { 0.0 }, String::new())
}

/// The rounds of a side-by-side measurement as a table; `names`: what `base` and `test`
/// are called in the headers.
fn pair_table(o: &mut String, (base, test): (&str, &str), rounds: &[Result<Pair, String>]) {
    let _ = writeln!(
        o,
        "| round | Envoy CPU per decision, {base} (worker) | {test} (worker) | tokens/s at once, {base} · {test} | {test} / {base} | ledger rows / decisions |\n|---|---:|---:|---:|---:|---|"
    );
    for (i, p) in rounds.iter().enumerate() {
        let _ = match p {
            Ok(p) => writeln!(
                o,
                "| {} | {:.0} µs ({:.0}) | {:.0} µs ({:.0}) | {:.0} · {:.0} | {:.2} | {} |",
                i + 1,
                p.base.cpu_us_per_decision(),
                p.base.worker_us_per_decision(),
                p.test.cpu_us_per_decision(),
                p.test.worker_us_per_decision(),
                p.base.rate(),
                p.test.rate(),
                p.ratio(),
                p.ledger_rows
                    .map_or("-".to_string(), |(r, d)| format!("{r} / {d}"))
            ),
            Err(e) => writeln!(
                o,
                "| {} | failed: {} | | | | |",
                i + 1,
                e.lines().next().unwrap_or("").replace('|', "/")
            ),
        };
    }
    let _ = writeln!(o);
}

/// Per-round ratios as `0.81 · 0.98 · 0.97` (empty for a single round).
fn ratios_text(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    ratios
        .iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `; per round …` for a target line (empty without rounds).
fn per_round(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("; per round {text}")
    }
}

/// Every round's rate, `a · b · c` (empty for a single round).
fn rounds_text(m: &Measured) -> String {
    if m.rounds.len() < 2 {
        return String::new();
    }
    m.rounds
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

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

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn us(x: Option<u32>) -> String {
    x.map_or("-".into(), |v| {
        if v >= 10_000 {
            format!("{:.1} ms", f64::from(v) / 1000.0)
        } else {
            format!("{v} µs")
        }
    })
}

fn usf(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0} µs"))
}

impl Report<'_> {
    fn get(&self, key: &str) -> Option<&Measured> {
        self.results
            .iter()
            .find(|(s, _)| s.key == key)
            .and_then(|(_, r)| r.as_ref().ok())
    }

    fn targets(&self) -> Vec<Target_> {
        let mut t = Vec::new();
        for key in [
            "rs256",
            "password",
            "refresh",
            "dpop-rs256",
            "dpop-es256",
            "mtls",
            "es256",
        ] {
            let Some((sc, _)) = self.results.iter().find(|(s, _)| s.key == key) else {
                continue;
            };
            let name = format!("`{key}` ≥ {CRYPTO_CEILING_TARGET} × its in-Envoy crypto ceiling");
            t.push(match (self.get(key), self.crypto_ceiling(sc)) {
                (Some(m), Some((ck, c))) => {
                    let (ratio, rounds) = paired_ratio(m, c);
                    Target_ {
                        name,
                        measured: format!(
                            "{:.0} tokens/s = {ratio:.2} × {:.0}/s (`{ck}`){}",
                            m.result.tokens_per_second(),
                            c.result.tokens_per_second(),
                            per_round(&rounds)
                        ),
                        pass: ratio >= CRYPTO_CEILING_TARGET,
                    }
                }
                _ => Target_::not_measured(name),
            });
        }
        let name = format!(
            "refresh grant ≥ {REFRESH_OVER_PASSWORD_TARGET} × the password grant (RS256 mint)"
        );
        t.push(match (self.get("refresh"), self.get("password")) {
            (Some(r), Some(p)) if p.result.tokens_per_second() > 0.0 => {
                let (ratio, rounds) = paired_ratio(r, p);
                Target_ {
                    name,
                    measured: format!(
                        "{:.0} vs {:.0} tokens/s = {ratio:.2}×{}",
                        r.result.tokens_per_second(),
                        p.result.tokens_per_second(),
                        per_round(&rounds)
                    ),
                    pass: ratio >= REFRESH_OVER_PASSWORD_TARGET,
                }
            }
            _ => Target_::not_measured(name),
        });
        let half = self.sweep.iter().find(|p| (p.fraction - 0.5).abs() < 1e-9);
        let name = "p99 ≤ 5 ms at half of the maximum rate (DPoP, RS256 mint)".to_string();
        t.push(match half {
            Some(p) => {
                let p99 = p.m.result.quantile(0.99).unwrap_or(u32::MAX);
                Target_ {
                    name,
                    measured: format!("p99 {} at {:.0}/s offered", us(Some(p99)), p.offered),
                    pass: p99 <= 5_000,
                }
            }
            None => Target_::not_measured(name),
        });
        t.push(self.rules_target(
            "rules-10k",
            "10,000 plan rules within 10% of 10 rules (DPoP, ES256 mint)",
        ));
        t.push(self.rules_target(
            "rules-10k-tenant",
            "10,000 `{tenant}` placeholder rules within 10% of 10 rules (DPoP, ES256 mint)",
        ));
        t.push(self.ledger_target());
        t.push(self.hostile_target());
        t.push(self.memory_target());
        t.push(Target_ {
            name: "Wasm module ≤ 1.5 MB".into(),
            measured: format!(
                "{} bytes ({:.2} MB)",
                self.wasm_size,
                self.wasm_size as f64 / 1e6
            ),
            pass: self.wasm_size > 0 && self.wasm_size <= WASM_LIMIT_BYTES,
        });
        t
    }

    /// A 10,000-rule scenario within 10% of the same path with 10 rules (`dpop-es256`).
    fn rules_target(&self, key: &str, name: &str) -> Target_ {
        let name = name.to_string();
        match (self.get(key), self.get("dpop-es256")) {
            (Some(big), Some(small)) => {
                let (ratio, rounds) = paired_ratio(big, small);
                Target_ {
                    name,
                    measured: format!(
                        "{:.0} vs {:.0} tokens/s = {ratio:.2}{} (filter medians {} vs {})",
                        big.result.tokens_per_second(),
                        small.result.tokens_per_second(),
                        per_round(&rounds),
                        usf(big.filter_q(0.5)),
                        usf(small.filter_q(0.5))
                    ),
                    pass: ratio >= 0.9,
                }
            }
            _ => Target_::not_measured(name),
        }
    }

    /// The side-by-side rounds of the ledger's cost ([`median_pair`]); `None` when not
    /// measured.
    fn ledger_pair(&self) -> Option<Result<(Pair, String, bool), String>> {
        (!self.ledger_pairs.is_empty()).then(|| median_pair(self.ledger_pairs))
    }

    /// The gateway with the ledger on against without (side by side), every decision in
    /// the ledger (side by side and in `es256-ledger`).
    fn ledger_target(&self) -> Target_ {
        let name = format!(
            "ledger on ≥ {LEDGER_ON_TARGET} × off: decisions per CPU second of the whole Envoy, `es256-ledger` against `es256` side by side; every decision in the ledger"
        );
        let sequential = self
            .get("es256-ledger")
            .map(|m| m.ledger_rows.unwrap_or((0, u64::MAX)));
        match self.ledger_pair() {
            Some(Ok((p, rounds, whole))) => {
                let (rows, decisions) = p.ledger_rows.unwrap_or((0, u64::MAX));
                let ratio = p.ratio();
                let sequential_whole = sequential.is_none_or(|(r, d)| r == d);
                Target_ {
                    name,
                    measured: format!(
                        "{:.0} vs {:.0} µs of Envoy CPU per decision = {ratio:.2}{}; ledger rows {rows} for {decisions} decisions{}{}",
                        p.test.cpu_us_per_decision(),
                        p.base.cpu_us_per_decision(),
                        per_round(&rounds),
                        if whole { "" } else { " (a round missed some)" },
                        match sequential {
                            Some((r, d)) => format!(", {r} for {d} in `es256-ledger`"),
                            None => String::new(),
                        }
                    ),
                    pass: ratio >= LEDGER_ON_TARGET && whole && sequential_whole,
                }
            }
            Some(Err(e)) => Target_ {
                name,
                measured: format!("failed: {e}"),
                pass: false,
            },
            None => Target_::not_measured(name),
        }
    }

    /// `--compare-wasm`: this module against another build, side by side.
    fn compare_section(&self, o: &mut String) {
        let Some((old, compared)) = self.compared else {
            return;
        };
        let _ = writeln!(
            o,
            "## This module against another build, side by side\n\n\
             `--compare-wasm {}`: for each scenario, an Envoy with that module (*old*) and one with \
             this run's module (*new*), pinned to the same CPU and loaded at the same time, {} \
             connections each, for {} s after {WARMUP_SECONDS} s of warm-up, once per round; each \
             Envoy's CPU is the time all its threads ran, divided by the decisions it counted (as \
             for the ledger's cost above). *new / old* above 1 means this module does more \
             decisions per CPU second.\n",
            std::env::current_dir()
                .ok()
                .and_then(|d| old.strip_prefix(d).ok())
                .unwrap_or(old)
                .display(),
            self.connections,
            self.seconds
        );
        for (key, rounds) in compared {
            match median_pair(rounds) {
                Ok((median, text, _)) => {
                    let _ = writeln!(
                        o,
                        "`{key}`: new / old {:.2} in the median round{}.\n",
                        median.ratio(),
                        if text.is_empty() {
                            String::new()
                        } else {
                            format!(" (rounds: {text})")
                        }
                    );
                }
                Err(e) => {
                    let _ = writeln!(o, "`{key}`: failed: {e}\n");
                }
            }
            pair_table(o, ("old", "new"), rounds);
        }
    }

    /// The ledger: the gateway with it on, and its sustained ingest rate per database.
    fn ledger_section(&self, o: &mut String) {
        let on = self.get("es256-ledger");
        if on.is_none() && self.ingest.is_empty() && self.ledger_pairs.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "## The issuance ledger
"
        );
        if let (Some(on), Some(off)) = (on, self.get("es256")) {
            let (a, b) = (
                on.result.tokens_per_second(),
                off.result.tokens_per_second(),
            );
            let (rows, decisions) = on.ledger_rows.unwrap_or((0, 0));
            let (ratio, rounds) = paired_ratio(on, off);
            let rounds = if rounds.is_empty() {
                rounds
            } else {
                format!(": {rounds}")
            };
            let _ = writeln!(
                o,
                "`es256-ledger` is `es256` with the filter's `ledger` section on (defaults: batches of 100, \
                 flushed every second, a 10,000-record buffer) and a real ledger (the release binary, SQLite, \
                 pinned to the load generator's CPU at `nice 19`: a service of its own, neither the gateway's work nor a thief of the load generator's time) behind an \
                 Envoy cluster: {a:.0} against {b:.0} tokens/s (median rounds), {ratio:.2} × without (median of the \
                 rounds' ratios{rounds}); afterwards the ledger held {rows} rows for the {decisions} decisions Envoy \
                 counted (warm-up included; every round checked){}. Measured one after the other, this ratio also \
                 carries the machine's drift between the two runs (one scenario's rate moves by ±20 % from one second \
                 to the next here) and the ledger process's use of the load generator's CPU.\n",
                if rows == decisions { "" } else { ": NOT one row per decision" }
            );
        }
        match self.ledger_pair() {
            Some(Ok((median, _, _))) => {
                let _ = writeln!(
                    o,
                    "**The ledger's cost, side by side** (the target's figure): an `es256` Envoy and an \
                     `es256-ledger` Envoy (its own ledger, as above) pinned to the same CPU and loaded at the same \
                     time, {} connections each, for {} s after {WARMUP_SECONDS} s of warm-up, once per round. Each \
                     Envoy's CPU is the time every one of its threads ran (`/proc/PID/task/*/schedstat`: the \
                     worker, and the main thread that also ships ledger batches), read when the ledger holds the \
                     record of every decision before the mark, so the measured decisions' shipping is inside the \
                     window; divided by the decisions that Envoy counted. Whatever slows the machine in those \
                     seconds weighs on both alike (two identical `es256` Envoys measured this way differed by at \
                     most 1 %: 1.01 · 1.00 · 1.01). The figure is decisions per CPU second with the ledger on \
                     against off, {:.2} in the median round:\n",
                    self.connections, self.seconds, median.ratio()
                );
                pair_table(o, ("off", "on"), self.ledger_pairs);
            }
            Some(Err(e)) => {
                let _ = writeln!(
                    o,
                    "The side-by-side measurement of the ledger's cost failed: {e}\n"
                );
            }
            None => {}
        }
        if self.ingest.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "Sustained ingest: {INGEST_CONNECTIONS} keep-alive connections (as {INGEST_CONNECTIONS} gateways, each with \
             one batch in flight) POST batches of {INGEST_BATCH} new records (`POST /v1/ingest`, the gateways' \
             secret, records shaped like the filter's) in a closed loop for {} s after {WARMUP_SECONDS} s of \
             warm-up. The ledger (release build) is pinned to the CPU Envoy used, the load to the other; \
             PostgreSQL 15 (a throw-away cluster, unix socket, default `fsync` and `synchronous_commit`) is \
             not pinned. SQLite: WAL, as the ledger opens it. *rows* is the ledger's \
             `ledger_ingested_records_total` afterwards, *acknowledged* the records of every 2xx batch \
             (warm-up included): equal means nothing lost and nothing counted twice.\n",
            self.seconds
        );
        let _ = writeln!(
            o,
            "| database | records/s | batches/s | batch p50 | batch p99 | failed batches | rows / acknowledged |\n|---|---:|---:|---:|---:|---:|---|"
        );
        for (db, r) in self.ingest {
            match r {
                Ok(i) => {
                    let r = &i.result;
                    let _ = writeln!(
                        o,
                        "| {db} | {:.0} | {:.0} | {} | {} | {}{} | {} / {}{} |",
                        r.records_per_second(),
                        if r.elapsed > 0.0 {
                            r.batches as f64 / r.elapsed
                        } else {
                            0.0
                        },
                        us(r.quantile(0.5)),
                        us(r.quantile(0.99)),
                        r.failed,
                        r.first_error.as_ref().map_or(String::new(), |e| format!(
                            " (first: {})",
                            e.lines().next().unwrap_or("")
                        )),
                        i.rows,
                        i.acknowledged,
                        if i.rows == i.acknowledged {
                            ""
                        } else {
                            " **differ**"
                        }
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        o,
                        "| {db} | not measured: {} | | | | | |",
                        e.lines().next().unwrap_or("")
                    );
                }
            }
        }
        let fastest = self
            .results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|m| m.result.tokens_per_second())
            .fold(0.0, f64::max);
        if fastest > 0.0 {
            let _ = writeln!(
                o,
                "\nFor scale: the fastest `/token` scenario of this run issued {fastest:.0} tokens/s on one Envoy worker.\n"
            );
        } else {
            let _ = writeln!(o);
        }
    }

    /// The in-Envoy crypto ceiling of a scenario: its key and rate, when measured.
    /// The crypto ceiling of a scenario, when it was measured (and answered at all).
    fn crypto_ceiling(&self, sc: &Scenario) -> Option<(&'static str, &Measured)> {
        let key = crypto_ceiling_of(sc)?;
        self.crypto
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(k, r)| r.as_ref().ok().map(|m| (*k, m)))
            .filter(|(_, m)| m.result.tokens_per_second() > 0.0)
    }

    /// The table of in-Envoy crypto ceilings.
    fn crypto_ceilings(&self, o: &mut String) {
        if self.crypto.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "## In-Envoy crypto ceilings (same run)
"
        );
        let _ = writeln!(
            o,
            "The probe module (`bench/probe`) does only the signature work of a path, per \
             request, through Envoy's own `sign`/`verify_signature` foreign functions (the \
             filter's `HostCrypto`, 700-byte messages, signatures to verify made at configure \
             time), then answers a 900-byte body: no parsing, no JSON, no policy. Envoy imports \
             the key on every call, so for RSA this is well below OpenSSL's own rate; it is the \
             ceiling the filter's paths are compared to (*× crypto ceiling* below).\n"
        );
        let _ = writeln!(
            o,
            "| ceiling | work per request | answers/s | rounds | p50 | p99 |\n|---|---|---:|---|---:|---:|"
        );
        for (key, _, what) in CRYPTO_CEILINGS {
            match self.crypto.iter().find(|(k, _)| *k == key).map(|(_, r)| r) {
                Some(Ok(m)) => {
                    let r = &m.result;
                    let _ = writeln!(
                        o,
                        "| `{key}` | {what} | {:.0} | {} | {} | {} |",
                        r.tokens_per_second(),
                        rounds_text(m),
                        us(r.quantile(0.5)),
                        us(r.quantile(0.99))
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(
                        o,
                        "| `{key}` | {what} | not measured: {} | | | |",
                        e.lines().next().unwrap_or("")
                    );
                }
                None => {}
            }
        }
        let _ = writeln!(o);
    }

    /// The scenario `key`'s mode and measurement, when it was measured.
    fn get_with_mode(&self, key: &str) -> Option<(Mode, &Measured)> {
        self.results
            .iter()
            .find(|(s, _)| s.key == key)
            .and_then(|(s, r)| r.as_ref().ok().map(|m| (s.mode, m)))
    }

    /// Hostile over cheap refusals, filter p99 (and p50), when both were measured.
    fn hostile_ratio(&self) -> Option<(f64, f64)> {
        let (_, h) = self.get_with_mode("hostile")?;
        let (_, c) = self.get_with_mode("cheap")?;
        let r = |q| match (h.filter_q(q), c.filter_q(q)) {
            (Some(h), Some(c)) if c > 0.0 => Some(h / c),
            _ => None,
        };
        Some((r(0.99)?, r(0.5)?))
    }

    fn hostile_target(&self) -> Target_ {
        let name = format!(
            "refused hostile proofs cost ≤ {HOSTILE_RATIO_LIMIT:.0}× a cheap refusal (filter p99)"
        );
        let (Some((hm, h)), Some((cm, c)), Some((p99, p50))) = (
            self.get_with_mode("hostile"),
            self.get_with_mode("cheap"),
            self.hostile_ratio(),
        ) else {
            return Target_::not_measured(name);
        };
        let expected = h.refusals_as_expected(hm) && c.refusals_as_expected(cm);
        Target_ {
            name,
            measured: format!(
                "filter p99 {} vs {} = {p99:.2}× (p50 {} vs {} = {p50:.2}×){}",
                usf(h.filter_q(0.99)),
                usf(c.filter_q(0.99)),
                usf(h.filter_q(0.5)),
                usf(c.filter_q(0.5)),
                if expected {
                    ""
                } else {
                    "; NOT every answer was an expected 401"
                }
            ),
            pass: expected && p99 <= HOSTILE_RATIO_LIMIT,
        }
    }

    /// The refusal scenarios: hostile proofs against the cheapest refusal.
    fn refusals(&self, o: &mut String) {
        let rows: Vec<(&Scenario, &Measured)> = self
            .results
            .iter()
            .filter(|(s, _)| s.mode.expected_refusals().is_some())
            .filter_map(|(s, r)| r.as_ref().ok().map(|m| (s, m)))
            .collect();
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(o, "## Refused DPoP proofs: hostile against cheap\n");
        let _ = writeln!(
            o,
            "Every request carries a valid DPoP-bound OpToken ({REFUSAL_OPTOKS} of them, cycled, \
             so the OpTok cache holds them all after the warm-up) and a proof that must be \
             refused. `hostile` rotates over: {}. `cheap` sends `DPoP: x`. The figure that \
             matters is the filter's own time (histogram `registry_token_decision_us`, this \
             run's delta), not the client's; its p99 shows any of the four kinds, each a \
             quarter of the requests.\n",
            registry_token_loadgen::load::HOSTILE_KINDS
                .iter()
                .enumerate()
                .map(|(i, k)| format!("({}) {k}", (b'a' + i as u8) as char))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let _ = writeln!(
            o,
            "| scenario | refusals/s | p50 | p99 | filter p50 | filter p99 | refusals (reason: count) | as expected |\n|---|---:|---:|---:|---:|---:|---|---|"
        );
        for (sc, m) in rows {
            let r = &m.result;
            let _ = writeln!(
                o,
                "| `{}` | {:.0} | {} | {} | {} | {} | {} | {} |",
                sc.key,
                r.responses_per_second(),
                us(r.quantile(0.5)),
                us(r.quantile(0.99)),
                usf(m.filter_q(0.5)),
                usf(m.filter_q(0.99)),
                m.non_ok(),
                if m.refusals_as_expected(sc.mode) && m.agrees() {
                    "yes, counters agree"
                } else {
                    "NO"
                }
            );
        }
        if let Some((p99, p50)) = self.hostile_ratio() {
            let _ = writeln!(
                o,
                "\nhostile / cheap: filter p99 {p99:.2}×, filter p50 {p50:.2}× (target: p99 ≤ {HOSTILE_RATIO_LIMIT:.0}×).\n"
            );
        } else {
            let _ = writeln!(o);
        }
    }

    fn memory_target(&self) -> Target_ {
        let name = format!(
            "Memory: no growth over a {}-second run at full load (VM memory reported)",
            self.soak
        );
        let s = self.soak_samples;
        if s.len() < 3 {
            return Target_::not_measured(name);
        }
        // Reference: the first sample at or after two thirds of the run. Every structure is
        // bounded but some fill first: the OpTok cache (10,000 entries) within seconds, the
        // DPoP replay record in shared data over its three 60-second slots (180 s).
        let ref_t = self.soak * 2 / 3;
        let Some(r) = s.iter().find(|x| x.t >= ref_t && x.t > 0) else {
            return Target_::not_measured(name);
        };
        let Some(last) = s.last() else {
            return Target_::not_measured(name);
        };
        let vm_ok = last.vm <= r.vm;
        let rss_ok = (last.rss as f64) <= r.rss as f64 * 1.05 + 2.0 * 1_048_576.0;
        let alloc_ok = (last.allocated as f64) <= r.allocated as f64 * 1.05 + 2.0 * 1_048_576.0;
        Target_ {
            name,
            measured: format!(
                "from {} s to {} s: VM {:.2} → {:.2} MiB, Envoy allocated {:.2} → {:.2} MiB, RSS {:.1} → {:.1} MiB",
                r.t, last.t, mib(r.vm), mib(last.vm), mib(r.allocated), mib(last.allocated), mib(r.rss), mib(last.rss)
            ),
            pass: vm_ok && rss_ok && alloc_ok && self.soak >= 300,
        }
    }

    /// Per-request cost breakdown from this run's figures, and what it implies for the
    /// ratio targets.
    fn where_time_goes(&self, o: &mut String) {
        let p50 = |k: &str| self.get(k).and_then(|m| m.filter_q(0.5));
        let per = |k: &str| {
            self.get(k)
                .map(|m| m.result.tokens_per_second())
                .filter(|v| *v > 0.0)
                .map(|v| 1e6 / v)
        };
        let ceiling = self.ceiling.result.tokens_per_second();
        if ceiling <= 0.0 || self.speed.rsa_sign <= 0.0 {
            return;
        }
        let base = 1e6 / ceiling;
        let rsa_sign = 1e6 / self.speed.rsa_sign;
        let ec_sign = 1e6 / self.speed.ec_sign;
        let ec_verify = 1e6 / self.speed.ec_verify;
        let _ = writeln!(o, "## Where the time goes\n");
        let _ = writeln!(
            o,
            "Per request, one worker (µs; *filter* is the median of the filter's own histogram, \
             *per request* is 1 / throughput):\n"
        );
        let _ = writeln!(o, "| | µs |\n|---|---:|");
        let _ = writeln!(
            o,
            "| Envoy alone (`direct_response`), per request | {base:.0} |"
        );
        let _ = writeln!(o, "| OpenSSL RSA-2048 sign / ECDSA P-256 sign / P-256 verify | {rsa_sign:.0} / {ec_sign:.0} / {ec_verify:.0} |");
        for k in ["rs256", "es256", "dpop-rs256", "dpop-es256", "reuse"] {
            if let (Some(f), Some(p)) = (p50(k), per(k)) {
                let _ = writeln!(o, "| `{k}`: filter / per request | {f:.0} / {p:.0} |");
            }
        }
        if let (Some(rs), Some(es)) = (p50("rs256"), p50("es256")) {
            let host_rsa = rs - es + ec_sign;
            let _ = writeln!(
                o,
                "\nThe only difference between `rs256` and `es256` is the minting signature, so an \
                 RS256 signature through Envoy's `sign` foreign function costs about {host_rsa:.0} µs \
                 here ({:.1} × OpenSSL's {rsa_sign:.0} µs for the same operation). The foreign \
                 function receives the key as DER on every call; the extra time is consistent with \
                 the key being imported and its RSA precomputation redone per call (the filter \
                 parses and converts its key once per VM, but the host API offers no key handle). \
                 With one worker, RS256 minting is therefore bounded near {:.0} tokens/s = {:.2} × \
                 OpenSSL's sign rate before anything else is done (the in-Envoy crypto ceilings \
                 above measure exactly that), while OpenSSL alone would allow {:.0} µs per request \
                 at 0.7 × its rate. Mint reuse (`reuse`) or ES256 minting are the levers that \
                 exist inside the filter.",
                host_rsa / rsa_sign,
                1e6 / (host_rsa + base),
                (1e6 / (host_rsa + base)) / self.speed.rsa_sign,
                1e6 / (0.7 * self.speed.rsa_sign)
            );
        }
        let floor = base + ec_verify + ec_sign;
        let _ = writeln!(
            o,
            "\nThe DPoP ES256 path cannot avoid one P-256 verification (the proof) and one P-256 \
             signature (the token) per request: with Envoy's own per-request cost that is at least \
             {floor:.0} µs = {:.2} × the ceiling at OpenSSL speed, before any parsing, JSON or \
             host call, and {:.0} µs more for the RS256 verification of an OpToken the OpTok cache \
             has not seen. What the filter adds beyond Envoy alone shows as *per request* minus \
             *filter* minus {base:.0} µs above (the Wasm context, header and reply hostcalls).\n",
            base / floor,
            1e6 / self.speed.rsa_verify,
        );
        let _ = writeln!(
            o,
            "One `es256` request taken apart (not this run: measured once, 29 November 2026, with a \
             build that timed each step with the host clock and added the sums to counters; worker \
             CPU 347 µs per request at 2,820 tokens/s): the two signature calls through Envoy \
             105 µs; the decision's own work outside them 57 µs (the same decision repeated at \
             once, its code and data still in the CPU caches and the OpTok cache bypassed, 32 µs: \
             running between Envoy's own work costs about 25 µs of cold caches); reading the \
             request 13 µs (`:method` 3, all headers 5, the client-certificate property 4); the \
             audit 12 µs (counter 2, the line 4, Envoy's log 2, filter state 4); the local reply \
             5 µs; the rest, about 155 µs, is Envoy's own HTTP and Wasm-context work, which the \
             probe pays as well. Since then `:method` comes from the header list, the certificate \
             property is read only for a certificate-bound credential, and the audit line goes to \
             Envoy's log only when its level shows info lines (about 9 µs less). For comparison the \
             core's decision costs 11.5 µs natively and 22–26 µs under Node's V8 \
             (`bench/cost`). 0.85 of the `crypto-es` ceiling leaves the filter about 40 µs of its \
             own per request; `bench/probe`'s `host:` operations weigh single hostcalls the same \
             way as its crypto.\n"
        );
    }

    fn render(&self, plot_error: Option<&String>) -> (String, Vec<Target_>) {
        let targets = self.targets();
        let mut o = String::new();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = CORES.load(std::sync::atomic::Ordering::Relaxed);
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
            })
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or("unknown".into(), |kb| {
                format!("{:.1} GiB", kb as f64 / 1_048_576.0)
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let envoy_version = first_line(Command::new(self.envoy).arg("--version"));
        let openssl_version = first_line(Command::new("openssl").arg("version"));
        let now = first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
        let short = self.seconds < 10 || (self.soak > 0 && self.soak < 300) || self.soak == 0;

        let _ = writeln!(o, "# Performance\n");
        let _ = writeln!(
            o,
            "Written by `make bench` (`tools/loadgen`, bin `bench`); the figures below are the \
             last run's, all measured in that one run on the machine described. Targets are the \
             ones of the edge-performance issue, each a ratio between figures of this run. \
             Benchmarks, not tests: nothing here is asserted by `make test`.\n"
        );
        if short {
            let _ = writeln!(
                o,
                "> **This was a short run** ({} s per scenario, {} s memory run): figures are \
                 indicative only and the memory target cannot be met by a run shorter than \
                 5 minutes. Run `make bench` with the defaults for the real figures.\n",
                self.seconds, self.soak
            );
        }
        let _ = writeln!(o, "## Run\n");
        let _ = writeln!(o, "| | |\n|---|---|");
        let _ = writeln!(o, "| date | {now} |");
        let _ = writeln!(o, "| command | `{}` |", self.command);
        let _ = writeln!(
            o,
            "| machine | {cpu}, {cores} cores, {mem}, Linux {} |",
            kernel.trim()
        );
        let _ = writeln!(
            o,
            "| load average at start | {} |",
            self.load_at_start
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            o,
            "| Envoy | `{envoy_version}`, `--concurrency 1`, V8 runtime, log level warn |"
        );
        let _ = writeln!(o, "| OpenSSL | {openssl_version} |");
        let _ = writeln!(
            o,
            "| placement | {} |",
            match (self.envoy_cpu, self.client_cpu) {
                (Some(e), Some(c)) => format!("Envoy and `openssl speed` pinned to CPU {e}, the load generator to CPU {c} (`taskset`)"),
                _ => "not pinned (fewer than 2 CPUs or no taskset): Envoy and the load generator share the CPUs".into(),
            }
        );
        let _ = writeln!(
            o,
            "| load | {} keep-alive connections, closed loop, {} s per scenario after {} s of warm-up; every OpToken distinct ({} per binding kind, RS256, each used once before any reuse) unless said; DPoP proofs ES256, pre-generated, one per request |",
            self.connections, self.seconds, WARMUP_SECONDS, self.optoks
        );
        let _ = writeln!(
            o,
            "| duration of the whole run | {:.0} s |",
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(o, "| wasm module | {} bytes |\n", self.wasm_size);

        let _ = writeln!(o, "## Targets\n");
        let _ = writeln!(o, "| target | measured | result |\n|---|---|---|");
        for t in &targets {
            let _ = writeln!(
                o,
                "| {} | {} | **{}** |",
                t.name,
                t.measured,
                if t.pass { "met" } else { "not met" }
            );
        }
        let _ = writeln!(o);

        let _ = writeln!(o, "## Baselines (same run)\n");
        let _ = writeln!(o, "| | per second | |\n|---|---:|---|");
        let _ = writeln!(
            o,
            "| OpenSSL RSA-2048 sign | {:.0} | `openssl speed -seconds {} rsa2048`, one core |",
            self.speed.rsa_sign, self.speed_seconds
        );
        let _ = writeln!(
            o,
            "| OpenSSL RSA-2048 verify | {:.0} | |",
            self.speed.rsa_verify
        );
        let _ = writeln!(
            o,
            "| OpenSSL ECDSA P-256 sign | {:.0} | `openssl speed -seconds {} ecdsap256` |",
            self.speed.ec_sign, self.speed_seconds
        );
        let _ = writeln!(
            o,
            "| OpenSSL ECDSA P-256 verify | {:.0} | |",
            self.speed.ec_verify
        );
        let c = &self.ceiling.result;
        let _ = writeln!(
            o,
            "| Envoy `direct_response` ceiling | {:.0} | same listener, no filter, 900-byte body; p50 {}, p99 {}; the load generator, on one core, may be what limits this figure |\n",
            c.tokens_per_second(), us(c.quantile(0.5)), us(c.quantile(0.99))
        );
        let _ = writeln!(
            o,
            "<details><summary>openssl speed output</summary>\n\n```\n{}\n```\n</details>\n",
            self.speed_text
        );

        self.crypto_ceilings(&mut o);
        let _ = writeln!(o, "## `/token` scenarios (one Envoy worker each)\n");
        let _ = writeln!(
            o,
            "| scenario | tokens/s | rounds | × crypto ceiling | × RSA sign/s | × ceiling | p50 | p99 | p99.9 | filter p50 | filter p99 | OpTok cache hits | mint reused | non-200 | Envoy counters |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        let ceiling = c.tokens_per_second();
        for (sc, r) in self
            .results
            .iter()
            .filter(|(s, _)| s.mode.expected_refusals().is_none())
        {
            match r {
                Ok(m) => {
                    let r = &m.result;
                    let v = r.tokens_per_second();
                    let _ = writeln!(
                        o,
                        "| `{}` {} | {:.0} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        sc.key, sc.title, v, rounds_text(m),
                        self.crypto_ceiling(sc).map_or("-".into(), |(_, c)| format!("{:.2}", paired_ratio(m, c).0)),
                        v / self.speed.rsa_sign,
                        if ceiling > 0.0 { v / ceiling } else { 0.0 },
                        us(r.quantile(0.5)), us(r.quantile(0.99)), us(r.quantile(0.999)),
                        usf(m.filter_q(0.5)), usf(m.filter_q(0.99)),
                        pct(m.hit_rate()), pct(m.reuse_rate()),
                        m.non_ok(),
                        if m.agrees() { format!("agree ({} issued)", m.issued()) } else {
                            format!("DISAGREE: issued {} / client {}, rejected {} / client {}, samples {} / client {}", m.issued(), r.ok(), m.rejected(), r.responses() - r.ok(), m.sampled(), r.responses())
                        }
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        o,
                        "| `{}` {} | not measured: {} | | | | | | | | | | | | | |",
                        sc.key,
                        sc.title,
                        e.lines().next().unwrap_or("")
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            "\nLatencies are client-side (send to full answer, over loopback); *filter* columns come \
             from the filter's own histogram `registry_token_decision_us` (time from the request \
             headers to the local reply inside the Wasm VM, Envoy host clock), interpolated in its \
             buckets. *rounds* lists the rate of every round in the order measured (ceilings and \
             scenarios alternate round by round); each row is the median round. *× crypto ceiling*, \
             like every target that compares two figures, is the median of the per-round ratios \
             (a scenario against its ceiling measured minutes from it in the same round), listed \
             in *Targets*. *OpTok cache hits* and *mint reused* come from the filter's counters. The \
             `reuse` scenario cycles 100 clients (OpTokens) so tokens are reused; the others use \
             every OpToken once, so the OpTok cache cannot help them (a hit rate above 0 means the \
             pool was exhausted and reused).\n"
        );

        self.ledger_section(&mut o);
        self.compare_section(&mut o);
        self.refusals(&mut o);
        self.where_time_goes(&mut o);
        let _ = writeln!(o, "## Latency against offered load\n");
        if self.sweep.is_empty() {
            let _ = writeln!(o, "Not measured (the `dpop-rs256` scenario failed).\n");
        } else {
            let _ = writeln!(
                o,
                "`dpop-rs256` (the target-1 path), open loop: requests are sent at the offered rate \
                 whatever the answers do, and latency counts from the intended send time, so queueing \
                 shows. {} s per point, {} connections.\n",
                self.sweep_seconds, self.connections
            );
            match plot_error {
                None => {
                    let rel = self
                        .plot_path
                        .strip_prefix(self.out_path.parent().unwrap_or(Path::new("")))
                        .unwrap_or(self.plot_path);
                    let _ = writeln!(o, "![latency against offered load]({})\n", rel.display());
                }
                Some(e) => {
                    let _ = writeln!(o, "(plot not produced: {e})\n");
                }
            }
            let _ = writeln!(o, "| offered | of max | achieved | p50 | p99 | p99.9 | filter p99 |\n|---:|---:|---:|---:|---:|---:|---:|");
            for p in self.sweep {
                let r = &p.m.result;
                let _ = writeln!(
                    o,
                    "| {:.0}/s | {:.0}% | {:.0}/s | {} | {} | {} | {} |",
                    p.offered,
                    p.fraction * 100.0,
                    r.tokens_per_second(),
                    us(r.quantile(0.5)),
                    us(r.quantile(0.99)),
                    us(r.quantile(0.999)),
                    usf(p.m.filter_q(0.99))
                );
            }
            let _ = writeln!(o);
        }

        let _ = writeln!(o, "## Memory\n");
        if self.soak_samples.is_empty() {
            let _ = writeln!(o, "Not measured (`--soak 0`).\n");
        } else {
            let _ = writeln!(
                o,
                "`dpop-es256` at full load (closed loop) for {} s; every DPoP proof new (signed on \
                 the fly by the load generator), OpTokens cycled over {} distinct ones (when more than the \
                 OpTok cache holds, 10,000, it is full and evicting throughout). *VM* is the \
                 filter's gauge `registry_token_vm_memory_bytes` (the Wasm linear memory of the VM \
                 serving requests); *allocated*/*heap* are Envoy's `server.memory_allocated` / \
                 `server.memory_heap_size`; *RSS* is the Envoy process's. The memory target is judged \
                 on the last third of the run: the DPoP replay record (Envoy shared data, three \
                 60-second slots of at most 1,048,576 proofs each over 1,024 shards, 16 bytes per proof) \
                 grows during the first 180 s by design and is rewritten in place after that. That \
                 record also bounds the sustained DPoP rate of one Envoy process to about \
                 1,048,576 / 60 ≈ 17,476 proofs/s: \
                 above it, proofs are refused with 503 `dpop_replay_unavailable` (fail closed), which \
                 the non-200 count below shows when the load exceeds it.\n",
                self.soak, self.optoks
            );
            let _ = writeln!(o, "| t (s) | tokens/s | VM | allocated | heap | RSS |\n|---:|---:|---:|---:|---:|---:|");
            let n = self.soak_samples.len();
            for (i, s) in self.soak_samples.iter().enumerate() {
                // Keep the table short: about 12 rows.
                if n > 14 && i != 0 && i != n - 1 && i % n.div_ceil(12) != 0 {
                    continue;
                }
                let _ = writeln!(
                    o,
                    "| {} | {:.0} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.1} MiB |",
                    s.t,
                    s.tokens_per_second,
                    mib(s.vm),
                    mib(s.allocated),
                    mib(s.heap),
                    mib(s.rss)
                );
            }
            if let Some(m) = self.soak_result {
                let _ = writeln!(
                    o,
                    "\n{} tokens in {:.0} s ({:.0}/s), p99 {}, non-200 {}, transport errors {}; Envoy counters {}.\n",
                    m.result.ok(), m.result.elapsed, m.result.tokens_per_second(), us(m.result.quantile(0.99)),
                    m.non_ok(), m.result.transport_errors,
                    if m.agrees() { "agree" } else { "DISAGREE" }
                );
            }
        }

        let _ = writeln!(o, "## How to read and reproduce\n");
        let _ = writeln!(
            o,
            "- `make bench` (defaults: `--seconds 10 --connections 8 --soak 300 --sweep-seconds 8 --optoks 20000 --rounds 3`, about 25 minutes); \
             `make bench BENCH_ARGS=\"--seconds 3 --soak 30 --sweep-seconds 3 --optoks 3000 --rounds 1\"` for a quick look. \
             It installs what it needs (gnuplot-nox), builds the module and the load generator, makes throw-away keys under `target/bench/`, \
             and overwrites this file and `docs/performance-latency.png`.\n\
             - The machine must be otherwise idle: the load generator shares it with Envoy, and other work on it lowers every figure.\n\
             - `make load` drives a running gateway (`make run`) the same way and checks Envoy's counters against what it saw.\n\
             - Scenario configurations: `bench/envoy/*.yaml.in`, filled in by the bench (plugin configuration in `tools/loadgen/src/bin/bench.rs`)."
        );
        (o, targets)
    }
}
