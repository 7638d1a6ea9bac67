//! End-to-end harness: the real Envoy with the filter (started by the test kit,
//! `registry-token-testkit`), HTTP to it and its stats, and the other real parts the
//! suites need — a registry, an Authority, container clients, Prometheus — each in its
//! module. On a failing test the logs of what it started are dumped.
//!
//! Modelled on coraza-proxy-wasm's e2e harness.
//!
//! ```no_run
//! use registry_token_e2e::{Envoy, EnvoyOptions};
//!
//! let yaml = std::fs::read_to_string(registry_token_e2e::repo_root().join("tests/e2e/fixtures/harness-smoke.yaml"))
//!     .unwrap();
//! let envoy = Envoy::start(&yaml, EnvoyOptions::default()).unwrap_or_else(|e| panic!("{e}"));
//! let reply = envoy.get("/hello", &[]);
//! assert_eq!(reply.status, 200);
//! assert!(envoy.counter("http.ingress.downstream_rq_completed") >= 1);
//! ```
//!
//! Config templates use `{{LISTEN_PORT}}`, `{{ADMIN_PORT}}` (both allocated by the kit),
//! `{{WASM_PATH}}` (resolved only when used, see [`wasm_path`]), `{{TMPDIR}}` (the
//! per-instance temporary directory, holding [`EnvoyOptions::files`]) and any `{{NAME}}`
//! given in [`EnvoyOptions::vars`]. A placeholder left unresolved is an error.

pub mod authority;
pub mod clients;
#[cfg(test)]
mod design;
pub mod dpop;
pub mod envoy;
pub mod gateway;
pub mod guard;
pub mod http;
pub mod list_server;
pub mod oidc;
pub mod prom;
pub mod prometheus;
pub mod registry;

use std::path::PathBuf;

pub use envoy::Envoy;
pub use http::{get, percent_encode, post, request, try_request, Reply};
pub use prom::{issued_stat, prom_issued, prom_samples, prom_value, Sample, GRANTS};
pub use registry_token_testkit::envoy::{
    envoy_bin, stat_from_json, FAILURE_TIMEOUT, LOG_TAIL_LINES, READY_TIMEOUT, STOP_GRACE,
};
pub use registry_token_testkit::{
    placeholders, render_template, repo_root, tail, terminate, EnvoyOptions,
};

/// The filter module: see [`try_wasm_path`].
///
/// # Panics
/// When the file does not exist, with a message saying to run `make wasm`.
pub fn wasm_path() -> PathBuf {
    match try_wasm_path() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The filter module: `$REGISTRY_TOKEN_WASM`, else
/// `<root>/target/wasm32-wasip1/release/registry_token_filter.wasm`; an error saying to
/// run `make wasm` when it does not exist.
pub fn try_wasm_path() -> Result<PathBuf, String> {
    registry_token_testkit::wasm_path()
}

/// A free TCP port on 127.0.0.1, never the same twice in this process (see
/// [`registry_token_testkit::free_port`]).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    match registry_token_testkit::free_port() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_wasm_says_to_run_make_wasm() {
        // Only this test touches REGISTRY_TOKEN_WASM in this binary.
        std::env::set_var(
            "REGISTRY_TOKEN_WASM",
            "/nonexistent/registry_token_filter.wasm",
        );
        let err = try_wasm_path().unwrap_err();
        let spawn_err = match Envoy::start(
            "admin: {address: {socket_address: {port_value: {{ADMIN_PORT}}}}}\n# {{WASM_PATH}}\n",
            EnvoyOptions::default(),
        ) {
            Ok(_) => panic!("started without a wasm module"),
            Err(e) => e,
        };
        std::env::remove_var("REGISTRY_TOKEN_WASM");
        assert!(err.contains("make wasm"), "{err}");
        assert!(err.contains("/nonexistent/"), "{err}");
        assert!(spawn_err.contains("make wasm"), "{spawn_err}");
        let panic = std::panic::catch_unwind(|| {
            std::env::set_var("REGISTRY_TOKEN_WASM", "/nonexistent/x.wasm");
            let r = wasm_path();
            std::env::remove_var("REGISTRY_TOKEN_WASM");
            r
        });
        std::env::remove_var("REGISTRY_TOKEN_WASM");
        assert!(panic.is_err());
    }

    #[test]
    fn paths() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tests/e2e/Cargo.toml").is_file());
        assert!(envoy_bin().ends_with("envoy"));
    }
}
