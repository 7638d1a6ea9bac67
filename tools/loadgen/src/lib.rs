//! Load generator (`make load`) and the load library of the benchmark driver
//! (`bench/driver`, `make bench`) for the registry token filter: requests and their
//! OpToks, the load engine, Envoy's admin, and the Envoy and ledger processes. Everything
//! here talks to loopback addresses only.

pub mod admin;
pub mod args;
pub mod envoy;
pub mod http;
pub mod jose;
pub mod ledger;
pub mod load;
