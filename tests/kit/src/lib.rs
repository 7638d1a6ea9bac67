//! The test kit: what starts real processes for the end-to-end suites (`tests/e2e`) and
//! the bench, with nothing of the product in it (no crate of ours is a dependency).
//!
//! - [`envoy`]: the Envoy binary (`.venv`), the filter module, `{{NAME}}` templates,
//!   a process on free ports with its readiness, admin stats, log (dumped when a test
//!   fails) and stop;
//! - [`ledger`]: the issuance ledger's binary as a process, its `/metrics`, the Envoy
//!   cluster of one ledger or of several replicas;
//! - [`postgres`]: a throw-away PostgreSQL cluster and `psql` on it;
//! - [`ports`], [`template`], [`process`], [`http`]: free ports, templates, stopping
//!   children and reading `/proc`, one small HTTP GET.
//!
//! Every fallible call returns `Result<_, String>` with a message naming what to do (run
//! `make wasm`, set `ENVOY_BIN`, …); test code turns it into a panic, a bench into an
//! exit.

pub mod envoy;
pub mod http;
pub mod ledger;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod template;

use std::path::{Path, PathBuf};

pub use envoy::{envoy_bin, wasm_path, EnvoyOptions, EnvoyProcess};
pub use ledger::{ledger_bin, replicas_cluster_yaml, Ledger, LedgerOptions};
pub use ports::free_port;
pub use postgres::Postgres;
pub use process::{tail, terminate};
pub use template::{placeholders, render_template};

/// The repository root (this crate lives in `tests/kit/`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// A fresh temporary directory `/tmp/<prefix>XXXXXX`, removed when the value is dropped.
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))
}

/// Keeps `dir` (instead of removing it) when `E2E_KEEP_TMP` is set and the current
/// thread is panicking, and says so on stderr: what a failed test left behind, for a look.
pub fn keep_on_failure(dir: tempfile::TempDir) {
    if std::thread::panicking() && std::env::var_os("E2E_KEEP_TMP").is_some() {
        eprintln!("(E2E_KEEP_TMP: kept {})", dir.keep().display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tests/kit/Cargo.toml").is_file());
        assert!(envoy_bin().ends_with("envoy"));
        let dir = temp_dir("kit-test-").map_err(|e| e.to_string());
        assert!(dir.is_ok_and(|d| d.path().is_dir()));
    }
}
