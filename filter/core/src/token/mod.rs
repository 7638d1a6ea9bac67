//! Tokens: algorithms, keys, the crypto implementations (pure Rust and Envoy's host
//! functions), compact JWS, OpToken verification and registry token minting.

pub mod crypto;
pub mod jws;
pub mod keys;
