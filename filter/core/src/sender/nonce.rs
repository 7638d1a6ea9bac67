//! Stateless DPoP server nonces (RFC 9449 §8): HMAC-SHA256 over a time step with a shared
//! secret, so every worker and every replica with the same secret agrees.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::b64;

/// A stateless nonce source: the current step's nonce is handed out, it and the previous
/// step's are accepted.
#[derive(Clone)]
pub struct NonceKey {
    secret: Vec<u8>,
    step_seconds: u64,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("step_seconds", &self.step_seconds)
            .finish_non_exhaustive()
    }
}
/// HMAC-SHA256 (RFC 2104), from the `hmac` crate already linked through `ecdsa`'s RFC 6979.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // `new_from_slice` accepts keys of any length for HMAC; the error arm is unreachable.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0u8; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl NonceKey {
    /// A nonce key; `step_seconds` is how long one nonce stays current (it is accepted for
    /// one more step after that).
    pub fn new(secret: Vec<u8>, step_seconds: u64) -> NonceKey {
        NonceKey {
            secret,
            step_seconds: step_seconds.max(1),
        }
    }

    fn for_step(&self, step: u64) -> String {
        let mac = hmac_sha256(&self.secret, &step.to_be_bytes());
        let mut raw = Vec::with_capacity(8 + 16);
        raw.extend_from_slice(&step.to_be_bytes());
        raw.extend_from_slice(&mac[..16]);
        b64::url_encode(&raw)
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: u64) -> String {
        self.for_step(now / self.step_seconds)
    }

    /// Whether `nonce` is the current or the previous step's.
    pub fn is_fresh(&self, nonce: &str, now: u64) -> bool {
        let step = now / self.step_seconds;
        nonce == self.for_step(step) || (step > 0 && nonce == self.for_step(step - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn nonces_are_fresh_for_two_steps() {
        let key = NonceKey::new(vec![7; 32], 10);
        let n = key.current(100);
        assert!(key.is_fresh(&n, 100) && key.is_fresh(&n, 119));
        assert!(!key.is_fresh(&n, 120));
        assert!(!NonceKey::new(vec![8; 32], 10).is_fresh(&n, 100));
    }
}
