//! The processes a run starts: Envoy (a scenario's, a crypto ceiling's, the
//! `direct_response` ceiling's), the ledger, and a throw-away PostgreSQL cluster. Every use
//! of `registry_token_loadgen`'s process helpers goes through this one module, so that
//! moving to the shared test kit (`tests/kit`) later changes this file alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use registry_token_loadgen::admin::Snapshot;
use serde_json::json;

pub use registry_token_loadgen::envoy::{pin_self, EnvoyProc};
pub use registry_token_loadgen::ledger::postgres::Postgres;
pub use registry_token_loadgen::ledger::LedgerProc;

use crate::measure::Ctx;
use crate::results::LedgerRows;
use crate::scenarios::{plugin_config, Scenario, ISSUER, LEDGER_CLUSTER, LEDGER_SECRET};
use crate::setup::Material;
use registry_token_loadgen::load::Mode;

const TOKEN_TEMPLATE: &str = include_str!("../../envoy/token.yaml.in");
const TLS_TEMPLATE: &str = include_str!("../../envoy/tls.yaml.in");
const CEILING_TEMPLATE: &str = include_str!("../../envoy/ceiling.yaml.in");
const PROBE_TEMPLATE: &str = include_str!("../../envoy/probe.yaml.in");

/// The Envoy of the `direct_response` ceiling: no filter, a 900-byte body.
pub fn start_ceiling_envoy(ctx: &Ctx) -> Result<EnvoyProc, String> {
    EnvoyProc::start(
        &ctx.envoy,
        &ctx.work,
        "ceiling",
        CEILING_TEMPLATE,
        &[("BODY", "x".repeat(900))],
        ctx.envoy_cpu,
    )
}

/// The Envoy of an in-Envoy crypto ceiling: the probe module doing `ops` per request.
pub fn start_probe_envoy(
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

/// The Envoy of a scenario; `ledger`: the ledger its records go to.
pub fn start_token_envoy(
    ctx: &Ctx,
    m: &Material,
    sc: &Scenario,
    ledger: Option<&LedgerProc>,
) -> Result<EnvoyProc, String> {
    start_token_envoy_with(ctx, m, sc, ledger, &ctx.wasm)
}

/// [`start_token_envoy`] with the module `wasm`.
pub fn start_token_envoy_with(
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

/// The ledger on `database`, trusting the bench Authority's keys, on `cpu` (`yield_cpu`:
/// at the lowest priority there, see [`LedgerProc::start`]).
pub fn start_bench_ledger(
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
/// `after`; returns its rows and those decisions.
pub fn ledger_rows(l: &LedgerProc, after: &Snapshot) -> Result<LedgerRows, String> {
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
