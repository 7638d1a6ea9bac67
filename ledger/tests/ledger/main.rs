//! The ledger's integration tests, one binary (admin keys are made once for all of them):
//! the CLI's one-line errors ([`cli`]), the two migration dialects ([`schema`]), the whole
//! HTTP scenario against SQLite ([`sqlite`]) and a throw-away PostgreSQL 15
//! ([`postgresql`]), and the wire contract between the filter and the ledger ([`wire`]:
//! every record the filter can emit is accepted, and docs/LEDGER.md's examples parse).

// Test harness code (helpers outside #[test] functions) may panic on a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
/// The throw-away PostgreSQL 15 cluster of the test kit: a test fails, never skips, when it
/// cannot start.
mod postgres {
    pub use registry_token_testkit::postgres::Postgres;

    /// A cluster for one test (`fsync` off: nothing here survives a crash anyway).
    pub fn start() -> Postgres {
        Postgres::try_start(false).unwrap_or_else(|e| panic!("{e}"))
    }
}
mod scenario;

mod auth;
mod cli;
mod concurrency;
mod csv;
mod postgresql;
mod repository;
mod robots;
mod scale;
mod schema;
mod sqlite;
mod trust;
mod wire;
