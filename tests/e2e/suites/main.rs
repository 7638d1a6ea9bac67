//! The end-to-end suites: one test binary, one module per rule they check (the rows of
//! docs/DESIGN.md's "Where each rule is tested"), each starting the real parts it needs
//! (Envoy with the filter, registry 2.8, skopeo and the container clients, the
//! `oidc-provider` Authority, the ledger, PostgreSQL, Prometheus) through the harness
//! library and the test kit.
//!
//! `make e2e` runs them all (`make wasm`, the ledger binary and the Debian packages first):
//! `cargo test -p registry-token-e2e -- --test-threads 2`. One topic:
//! `cargo test -p registry-token-e2e --test e2e -- sender::`; one test by its name. Every
//! test starts its own processes on free ports in its own directories; nothing depends on
//! another test, on the working directory or on the order.

mod audit;
mod caches;
mod client_requests;
mod clients;
mod common;
mod config;
mod deploy;
mod exchange;
mod fleet;
mod guard;
mod harness;
mod jwks;
mod ledger;
mod metrics;
mod offline;
mod operations;
mod optoken;
mod replay;
mod revocation;
mod robots;
mod sender;
mod signing;
mod tenants;
mod trust;
mod workloads;
