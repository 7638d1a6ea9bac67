//! The processes a run starts, all through the test kit (`registry-token-testkit`, the one
//! that starts the e2e suites' too): Envoy (a scenario's, a crypto ceiling's, the
//! `direct_response` ceiling's), the ledger, and a throw-away PostgreSQL cluster. The kit's
//! processes are wrapped here with their address as a load target of
//! `registry_token_loadgen`, which makes the load and reads Envoy's admin.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use registry_token_loadgen::admin::Snapshot;
use registry_token_loadgen::http::{plain_target, Target};
use registry_token_loadgen::load::Mode;
use registry_token_testkit::{render_template, EnvoyOptions, EnvoyProcess, Ledger, LedgerOptions};
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
    let mut opts = EnvoyOptions::new()
        .bin(&ctx.envoy)
        .work_dir(&ctx.work, name)
        .log_level("warn")
        .log_flush(None)
        .ready_timeout(READY_TIMEOUT);
    if let Some(cpu) = ctx.envoy_cpu {
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
