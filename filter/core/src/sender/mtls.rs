//! Certificate-bound access tokens (RFC 8705): `cnf.x5t#S256` against the client
//! certificate Envoy saw on the connection.

use crate::wire::b64;

/// The base64url SHA-256 of a certificate given as Envoy's lowercase hex digest, i.e. the
/// `x5t#S256` it must match. `None` when the digest is not 64 hex characters.
pub fn x5t_from_hex_digest(hex: &str) -> Option<String> {
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = Vec::with_capacity(32);
    for i in (0..64).step_by(2) {
        let pair = hex.get(i..i + 2)?;
        bytes.push(u8::from_str_radix(pair, 16).ok()?);
    }
    Some(b64::url_encode(&bytes))
}
