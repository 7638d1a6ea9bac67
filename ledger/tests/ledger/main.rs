//! The ledger's integration tests, one binary (admin keys are made once for all of them):
//! the CLI's one-line errors ([`cli`]), the two migration dialects ([`schema`]), the whole
//! HTTP scenario against SQLite ([`sqlite`]) and a throw-away PostgreSQL 15
//! ([`postgresql`]), and the wire contract between the filter and the ledger ([`wire`]:
//! every record the filter can emit is accepted, and docs/LEDGER.md's examples parse).

// Test harness code (helpers outside #[test] functions) may panic on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
/// The throw-away PostgreSQL cluster; also included by `tests/tests/ledger.rs` and
/// `tools/loadgen`, so it stays at this path.
#[path = "../common/postgres.rs"]
mod postgres;
mod scenario;

mod auth;
mod cli;
mod concurrency;
mod csv;
mod postgresql;
mod repository;
mod schema;
mod sqlite;
mod wire;
