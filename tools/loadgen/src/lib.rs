//! Load generator (`make load`) and benchmark driver (`make bench`) for the registry token
//! filter. Everything here talks to loopback addresses only.

pub mod admin;
pub mod args;
pub mod envoy;
pub mod http;
pub mod jose;
pub mod ledger;
pub mod load;
