//! base64url without padding (JOSE) and standard base64 helpers.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// base64url, no padding (RFC 7515 §2).
pub fn url_encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url decode: no padding, no whitespace, URL-safe alphabet only.
pub fn url_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Standard base64 with padding (x5c, Basic credentials).
pub fn std_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Standard base64 with padding.
pub fn std_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_roundtrip_and_strictness() {
        assert_eq!(url_encode(b"\xfb\xff"), "-_8");
        assert_eq!(url_decode("-_8").unwrap(), b"\xfb\xff");
        assert!(url_decode("-_8=").is_err());
        assert!(url_decode("+/8").is_err());
        assert!(url_decode("a b").is_err());
    }
}
