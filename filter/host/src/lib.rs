//! The host-driven logic of the registry token filter, written against small host traits
//! ([`host::SharedData`], [`host::HttpCalls`], [`host::Clock`], [`host::Stats`]) instead of
//! proxy-wasm: what one configuration builds and the `/token` decision against shared state
//! ([`state`]), the remote documents' fetch schedule ([`fetch`]), the issuance ledger's
//! buffer and shipper ([`ledger`]), the DPoP replay record ([`replay`]) in Envoy shared
//! data, the counters ([`metrics`]), the request path's host-independent pieces
//! ([`request`]) and what the stream context does at each end of a request ([`stream`]).
//!
//! Every decision is `registry-token-core`'s; this crate adds what needs a host (shared
//! data, HTTP calls, a clock) and runs natively against a fake host in its tests. The
//! proxy-wasm binding (`registry-token-filter`, built to `registry_token_filter.wasm`)
//! implements the traits with hostcalls and drives these types from its contexts.
//!
//! Nothing here may panic: in the module a panic traps the VM and every later request on
//! that worker fails.

#[cfg(test)]
mod fake;
pub mod fetch;
pub mod guard;
pub mod host;
pub mod ledger;
pub mod metrics;
pub mod replay;
pub mod request;
pub mod state;
pub mod stream;
#[cfg(test)]
mod tests;
