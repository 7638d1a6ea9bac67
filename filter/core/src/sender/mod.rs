//! Sender constraints: DPoP proofs (RFC 9449) with nonces and the replay record, and
//! certificate-bound tokens (RFC 8705).

pub mod dpop;
pub mod mtls;
pub mod nonce;
pub mod replay;
