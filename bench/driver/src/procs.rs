//! The processes a run starts, through the test kit (`registry-token-testkit`, the one
//! that starts the e2e suites' too): Envoy (a scenario's, a crypto ceiling's, the
//! `direct_response` ceiling's, the guard phase's), the ledger, and a throw-away
//! PostgreSQL cluster; and the guard phase's registry 2.8, which the kit does not have,
//! started here with the kit's ports, stop and log tail. The kit's processes are wrapped
//! here with their address as a load target of `registry_token_loadgen`, which makes the
//! load and reads Envoy's admin.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registry_token_loadgen::admin::Snapshot;
use registry_token_loadgen::http::{self, plain_target, Target};
use registry_token_loadgen::load::Mode;
use registry_token_testkit::process::read_lossy;
use registry_token_testkit::{
    free_port, render_template, tail, terminate, EnvoyOptions, EnvoyProcess, Ledger, LedgerOptions,
};
use serde_json::json;

pub use registry_token_testkit::process::pin_self;
pub use registry_token_testkit::Postgres;

use crate::measure::Ctx;
use crate::results::LedgerRows;
use crate::scenarios::{plugin_config, Scenario, ISSUER, LEDGER_CLUSTER, LEDGER_SECRET};
use crate::setup::Material;

const TOKEN_TEMPLATE: &str = include_str!("../../envoy/token.yaml.in");
const TLS_TEMPLATE: &str = include_str!("../../envoy/tls.yaml.in");
const CEILING_TEMPLATE: &str = include_str!("../../envoy/ceiling.yaml.in");
const PROBE_TEMPLATE: &str = include_str!("../../envoy/probe.yaml.in");
const GUARD_TEMPLATE: &str = include_str!("../../envoy/guard.yaml.in");

/// The `/v2` route's lines that turn the filter off there (the Envoy without the guard).
const V2_FILTER_OFF: &str = "                typed_per_filter_config:
                  registry_token:
                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true";

/// How long a bench Envoy gets to compile its module and become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running bench Envoy: the kit's process (its listener port, CPU time, memory and
/// stop, through `Deref`) and its admin as the load library reads it.
pub struct BenchEnvoy {
    process: EnvoyProcess,
    /// Its admin endpoint.
    pub admin: Target,
}

impl Deref for BenchEnvoy {
    type Target = EnvoyProcess;
    fn deref(&self) -> &EnvoyProcess {
        &self.process
    }
}

/// Starts Envoy `name` of the run: `template` rendered with `vars` (and the kit's ports),
/// its configuration and log as `<name>.yaml` and `<name>.log` in the work directory, one
/// worker pinned to Envoy's CPU, logging warnings.
fn start_envoy(
    ctx: &Ctx,
    name: &str,
    template: &str,
    vars: &[(&str, String)],
) -> Result<BenchEnvoy, String> {
    start_envoy_on(ctx, name, template, vars, ctx.envoy_cpu)
}

/// [`start_envoy`] pinned to `cpu` (when given) instead.
fn start_envoy_on(
    ctx: &Ctx,
    name: &str,
    template: &str,
    vars: &[(&str, String)],
    cpu: Option<usize>,
) -> Result<BenchEnvoy, String> {
    let mut opts = EnvoyOptions::new()
        .bin(&ctx.envoy)
        .work_dir(&ctx.work, name)
        .log_level("warn")
        .log_flush(None)
        .ready_timeout(READY_TIMEOUT);
    if let Some(cpu) = cpu {
        opts = opts.cpu(cpu);
    }
    for (var, value) in vars {
        opts = opts.var(var, value);
    }
    let process =
        EnvoyProcess::start(template, &opts).map_err(|e| format!("Envoy ({name}): {e}"))?;
    let admin = plain_target(&process.admin_url())?;
    Ok(BenchEnvoy { process, admin })
}

/// The Envoy of the `direct_response` ceiling: no filter, a 900-byte body.
pub fn start_ceiling_envoy(ctx: &Ctx) -> Result<BenchEnvoy, String> {
    start_envoy(
        ctx,
        "ceiling",
        CEILING_TEMPLATE,
        &[("BODY", "x".repeat(900))],
    )
}

/// The Envoy of an in-Envoy crypto ceiling: the probe module doing `ops` per request.
pub fn start_probe_envoy(
    ctx: &Ctx,
    m: &Material,
    probe: &Path,
    key: &str,
    ops: &[&str],
) -> Result<BenchEnvoy, String> {
    let config = json!({
        "ops": ops,
        "rsaKeyPem": m.signing_rs,
        "ecKeyPem": m.signing_es,
        "bodyBytes": 900
    });
    start_envoy(
        ctx,
        key,
        PROBE_TEMPLATE,
        &[
            ("WASM_PATH", probe.display().to_string()),
            ("PLUGIN_CONFIG", config.to_string()),
        ],
    )
}

/// The Envoy of a scenario; `ledger`: the ledger its records go to.
pub fn start_token_envoy(
    ctx: &Ctx,
    m: &Material,
    sc: &Scenario,
    ledger: Option<&BenchLedger>,
) -> Result<BenchEnvoy, String> {
    start_token_envoy_with(ctx, m, sc, ledger, &ctx.wasm)
}

/// [`start_token_envoy`] with the module `wasm`.
pub fn start_token_envoy_with(
    ctx: &Ctx,
    m: &Material,
    sc: &Scenario,
    ledger: Option<&BenchLedger>,
    wasm: &Path,
) -> Result<BenchEnvoy, String> {
    let clusters = match ledger {
        Some(l) => format!("  clusters:\n{}", l.cluster_yaml(LEDGER_CLUSTER, 2)),
        None => String::new(),
    };
    let tls = if sc.mode == Mode::Mtls {
        render_template(TLS_TEMPLATE, &[("DIR", ctx.work.display().to_string())])?
    } else {
        String::new()
    };
    start_envoy(
        ctx,
        sc.key,
        TOKEN_TEMPLATE,
        &[
            ("WASM_PATH", wasm.display().to_string()),
            ("PLUGIN_CONFIG", plugin_config(m, sc).to_string()),
            ("TRANSPORT_SOCKET", tls),
            ("CLUSTERS", clusters),
        ],
    )
}

/// A plain-HTTP `/token` Envoy `name` with the filter configuration `config` (the run's
/// module) and, when given, the ledger's cluster.
pub fn start_token_envoy_config(
    ctx: &Ctx,
    name: &str,
    config: &serde_json::Value,
    ledger: Option<&BenchLedger>,
) -> Result<BenchEnvoy, String> {
    let clusters = match ledger {
        Some(l) => format!("  clusters:\n{}", l.cluster_yaml(LEDGER_CLUSTER, 2)),
        None => String::new(),
    };
    start_envoy(
        ctx,
        name,
        TOKEN_TEMPLATE,
        &[
            ("WASM_PATH", ctx.wasm.display().to_string()),
            ("PLUGIN_CONFIG", config.to_string()),
            ("TRANSPORT_SOCKET", String::new()),
            ("CLUSTERS", clusters),
        ],
    )
}

/// The guard phase's stand-in for a registry answering a small blob: an Envoy answering
/// every request with a 200 of `bytes` bytes (the `direct_response` ceiling's
/// configuration), pinned to `cpu` when given.
pub fn start_stand_in(ctx: &Ctx, bytes: usize, cpu: Option<usize>) -> Result<BenchEnvoy, String> {
    start_envoy_on(
        ctx,
        "guard-stand-in",
        CEILING_TEMPLATE,
        &[("BODY", "x".repeat(bytes))],
        cpu,
    )
}

/// An Envoy `name` in front of the registry on `registry_port` and of the stand-in on
/// `stand_in_port` (requests with `Host: blob-stand-in`), `bench/envoy/guard.yaml.in`:
/// the filter with the configuration `config` (the run's module) answers `/token`; on the
/// `/v2` routes it runs when `filter_on_v2` (the guard, when `config` has its section) and
/// is disabled otherwise.
pub fn start_guard_envoy(
    ctx: &Ctx,
    name: &str,
    config: &serde_json::Value,
    [registry_port, stand_in_port]: [u16; 2],
    filter_on_v2: bool,
) -> Result<BenchEnvoy, String> {
    start_envoy(
        ctx,
        name,
        GUARD_TEMPLATE,
        &[
            ("WASM_PATH", ctx.wasm.display().to_string()),
            ("PLUGIN_CONFIG", config.to_string()),
            ("REGISTRY_PORT", registry_port.to_string()),
            ("STAND_IN_PORT", stand_in_port.to_string()),
            (
                "V2_FILTER",
                if filter_on_v2 { "" } else { V2_FILTER_OFF }.to_string(),
            ),
        ],
    )
}

/// How long the registry gets to answer `GET /v2/`.
const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The registry binary: `$DOCKER_REGISTRY_BIN`, else `/usr/bin/docker-registry` (as the
/// end-to-end suites find it).
pub fn registry_bin() -> PathBuf {
    match std::env::var_os("DOCKER_REGISTRY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/bin/docker-registry"),
    }
}

/// How the registry trusts tokens.
pub struct RegistryAuth<'a> {
    /// `auth.token.realm` (only shown to clients in its challenges).
    pub realm: &'a str,
    /// `auth.token.service`: the tokens' `aud`.
    pub service: &'a str,
    /// `auth.token.issuer`: the tokens' `iss`.
    pub issuer: &'a str,
    /// The signing key's certificate (PEM).
    pub cert_pem: &'a str,
}

/// The guard phase's registry, running: Debian's `docker-registry` (distribution 2.8) with
/// token authentication trusting the bench's signing key (its self-signed certificate as
/// `auth.token.rootcertbundle`; the tokens name it by a libtrust `kid`), filesystem
/// storage under the work directory (removed when it stops), no access log, pinned to a
/// CPU when asked; stopped on drop. The test kit has no registry (the e2e suites' own is
/// theirs), so this one is started here with the kit's ports, stop and log tail.
pub struct BenchRegistry {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Its address as a load target.
    pub target: Target,
}

impl BenchRegistry {
    /// Starts `docker-registry serve` in `dir` (made afresh) on a free port, pinned to
    /// `cpu` when given; waits until `GET /v2/` answers 401.
    pub fn start(
        dir: &Path,
        auth: &RegistryAuth<'_>,
        cpu: Option<usize>,
    ) -> Result<BenchRegistry, String> {
        let bin = registry_bin();
        if !bin.is_file() {
            return Err(format!(
                "{} not found: install Debian's docker-registry (make apt-deps) or set DOCKER_REGISTRY_BIN",
                bin.display()
            ));
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).map_err(|e| format!("{}: {e}", storage.display()))?;
        let roots = dir.join("rootcerts.pem");
        std::fs::write(&roots, auth.cert_pem).map_err(|e| format!("{}: {e}", roots.display()))?;
        let port = free_port()?;
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  relativeurls: true\n  secret: bench-registry-secret\n\
             auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    \
             rootcertbundle: {roots}\n",
            storage = q(&storage.display().to_string()),
            realm = q(auth.realm),
            service = q(auth.service),
            issuer = q(auth.issuer),
            roots = q(&roots.display().to_string()),
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string()]).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .arg(&config_path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // distribution reads REGISTRY_<SECTION>_<FIELD> overrides from its environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(&k);
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut r = BenchRegistry {
            child,
            dir: dir.to_path_buf(),
            port,
            target: plain_target(&format!("http://127.0.0.1:{port}"))?,
        };
        let deadline = Instant::now() + REGISTRY_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                return Err(format!(
                    "docker-registry exited ({status}):\n{}",
                    r.log_tail()
                ));
            }
            if let Ok((401, _)) = http::get(&r.target, "/v2/") {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "docker-registry did not answer GET /v2/ with 401 in {} s:\n{}",
                    REGISTRY_READY_TIMEOUT.as_secs(),
                    r.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&read_lossy(&self.dir.join("registry.log")), 20)
    }
}

impl Drop for BenchRegistry {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
        // The blobs are throw-away (and large).
        let _ = std::fs::remove_dir_all(self.dir.join("storage"));
    }
}

/// A running bench ledger: the kit's process (its port, its Envoy cluster, killed on
/// drop, through `Deref`) and its address as a load target.
pub struct BenchLedger {
    process: Ledger,
    /// Its HTTP address, for the ingest load.
    pub target: Target,
}

impl Deref for BenchLedger {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.process
    }
}

impl BenchLedger {
    /// `ledger_ingested_records_total` from its `/metrics`: rows newly stored.
    pub fn ingested(&self) -> Result<u64, String> {
        self.process
            .metric("ledger_ingested_records_total")?
            .ok_or_else(|| "ledger /metrics has no ledger_ingested_records_total".into())
    }
}

/// A new SQLite database URL under the work directory (any older file removed).
pub fn fresh_sqlite(work: &Path, name: &str) -> Result<String, String> {
    let file = work.join(format!("ledger-{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", file.display()));
        if f.exists() {
            std::fs::remove_file(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    Ok(format!("sqlite://{}", file.display()))
}

/// The ledger on `database`, trusting the bench Authority's keys, accepting the bench
/// gateway's ingest secret; pinned to `cpu` when given, at the lowest CPU priority there
/// (`nice -n 19`) when `yield_cpu`. Waits until it listens.
pub fn start_bench_ledger(
    ctx: &Ctx,
    m: &Material,
    bin: &Path,
    database: &str,
    cpu: Option<usize>,
    yield_cpu: bool,
) -> Result<BenchLedger, String> {
    let bin = std::fs::canonicalize(bin).map_err(|e| {
        format!(
            "{}: {e} (cargo build --release -p registry-token-ledger)",
            bin.display()
        )
    })?;
    let jwks = ctx.work.join("ledger-jwks.json");
    std::fs::write(&jwks, m.jwks.to_string()).map_err(|e| format!("{}: {e}", jwks.display()))?;
    let mut opts = LedgerOptions::new(database, ISSUER, &jwks)
        .bin(bin)
        .ingest_secret(LEDGER_SECRET)
        .nice(yield_cpu);
    if let Some(cpu) = cpu {
        opts = opts.cpu(cpu);
    }
    let process = Ledger::start(opts)?;
    let target = plain_target(&process.url(""))?;
    Ok(BenchLedger { process, target })
}

/// Waits (at most 30 s) until the ledger holds a row per decision Envoy counted by
/// `after`; returns its rows and those decisions.
pub fn ledger_rows(l: &BenchLedger, after: &Snapshot) -> Result<LedgerRows, String> {
    let decisions = after.issued() + after.rejected_total();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = l.ingested()?;
        if rows >= decisions || Instant::now() > deadline {
            return Ok(LedgerRows { rows, decisions });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
