//! Tokens: algorithms, keys, the crypto implementations (pure Rust and Envoy's host
//! functions), compact JWS, OpToken verification and registry token minting.

pub mod alg;
pub mod crypto;
pub mod jws;
pub mod keys;
pub mod mint;
pub mod optok;
