//! Tokens: algorithms, keys, the crypto implementations (pure Rust and Envoy's host
//! functions), compact JWS, OpToken verification, the `access` claim entry, registry token
//! minting and the opaque refresh tokens; which of several issuers verifies a token.

pub mod access;
pub mod alg;
pub mod crypto;
pub mod issuers;
pub mod jws;
pub mod keys;
pub mod mint;
pub mod optok;
pub mod refresh;
