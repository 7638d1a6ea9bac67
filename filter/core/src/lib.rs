//! Decision core of the registry token filter.
//!
//! Everything that decides anything lives here, with no proxy-wasm dependency, so it is
//! tested natively. The glue crate (`registry-token-filter`) gathers a [`handler::RequestView`],
//! supplies a clock, a [`crypto::Crypto`] implementation and the current key set, and turns
//! the returned [`handler::Decision`] into hostcalls.

pub mod b64;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod der;
pub mod dpop;
pub mod handler;
pub mod hostproto;
pub mod jwt;
pub mod keys;
pub mod pfx;
pub mod plan;
pub mod query;
pub mod remote;
pub mod revocation;
pub mod scope;
pub mod structpb;
pub mod url;
