//! Load generator (`make load`) and the load library of the benchmark driver
//! (`bench/driver`, `make bench`) for the registry token filter: requests and their
//! OpToks, the load engine, Envoy's admin, and the ledger's ingest load. It starts no
//! process: the gateway is already running (`make run`), and the bench starts its Envoys,
//! ledgers and PostgreSQL through the test kit (`registry-token-testkit`). Everything here
//! talks to loopback addresses only.

pub mod admin;
pub mod http;
pub mod jose;
pub mod ledger;
pub mod load;
