//! Envoy's crypto foreign functions (`sign`, `verify_signature`), testable natively.
//!
//! The arguments and results are small protobuf messages (Envoy's
//! `source/extensions/common/wasm/ext/{sign,verify_signature}.proto`), encoded and decoded
//! by [`crate::wire::envoy_crypto`]. [`HostCrypto`] implements [`Crypto`] on top of any [`ForeignCall`]: the
//! glue crate passes one that calls `proxy_call_foreign_function`; tests pass a fake.
//!
//! Envoy's `verify_signature` does PKCS#1 v1.5 and ECDSA only, so PS* and EdDSA are
//! verified with [`RustCrypto`]. Envoy signs ECDSA in DER; JWS wants `r‖s`.

use p256::elliptic_curve::zeroize::Zeroizing;

use std::cell::RefCell;

use rand_core::RngCore;

use crate::token::crypto::rust::SeededRng;
use crate::token::crypto::{check_fit, Alg, Crypto, CryptoError, RustCrypto};
use crate::token::keys::{PrivateKey, PublicKey};
use crate::wire::der::{self, tag};
/// The messages, where they were before `wire::envoy_crypto` held them.
pub use crate::wire::envoy_crypto::{
    encode_sign_arguments, SignArguments, SignResult, VerifySignatureArguments,
    VerifySignatureResult,
};
/// A malformed message.
pub use crate::wire::protobuf::ProtoError;

/// Name of Envoy's signing foreign function.
pub const SIGN_FUNCTION: &str = "sign";
/// Name of Envoy's verification foreign function.
pub const VERIFY_FUNCTION: &str = "verify_signature";
/// The message [`probe`] signs.
pub const PROBE_MESSAGE: &[u8] = b"registry-token-filter host crypto probe";

// ---------------------------------------------------------------------------------------
// ECDSA signature encodings
// ---------------------------------------------------------------------------------------

/// DER `SEQUENCE { INTEGER r, INTEGER s }` → fixed-size `r‖s` (each `field_len` bytes,
/// left-padded). Strict DER; an integer longer than `field_len` → `BadSignature`.
pub fn ecdsa_der_to_raw(der_sig: &[u8], field_len: usize) -> Result<Vec<u8>, CryptoError> {
    // Our DER reader, not `ecdsa::Signature::from_der`: that also refuses r or s = 0 or
    // ≥ n (ecdsa_conversion_edge_values converts both), and the range-free
    // `ecdsa::der::Signature` keeps its r()/s() accessors crate-private.
    if field_len == 0 || field_len > 66 {
        return Err(CryptoError::BadSignature);
    }
    let bad = |_| CryptoError::BadSignature;
    let seq = der::parse_single(der_sig, tag::SEQUENCE).map_err(bad)?;
    let mut r = seq.reader();
    let r_tlv = r.read(tag::INTEGER).map_err(bad)?;
    let s_tlv = r.read(tag::INTEGER).map_err(bad)?;
    r.finish().map_err(bad)?;
    let mut out = vec![0u8; 2 * field_len];
    for (tlv, half) in [(r_tlv, 0usize), (s_tlv, 1usize)] {
        let magnitude = der::unsigned_integer(&tlv).map_err(bad)?;
        if magnitude.len() > field_len {
            return Err(CryptoError::BadSignature);
        }
        let end = (half + 1) * field_len;
        let start = end - magnitude.len();
        out.get_mut(start..end)
            .ok_or(CryptoError::BadSignature)?
            .copy_from_slice(magnitude);
    }
    Ok(out)
}

/// Fixed-size `r‖s` → DER `SEQUENCE { INTEGER r, INTEGER s }` (minimal integers, a zero
/// byte before a set high bit). The input must have an even, non-zero length ≤ 132.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    // Our DER writer, not `ecdsa::Signature::to_der`: that needs 0 < r, s < n (the edge
    // test encodes 0 and 0xff…), and `ecdsa::der::Signature::from_components` is private.
    if raw.is_empty() || raw.len() & 1 == 1 || raw.len() > 132 {
        return Err(CryptoError::BadSignature);
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 6);
    der::write_unsigned_integer(r, &mut body);
    der::write_unsigned_integer(s, &mut body);
    Ok(der::sequence(&body))
}

// ---------------------------------------------------------------------------------------
// HostCrypto
// ---------------------------------------------------------------------------------------

/// Calls a host foreign function by name with protobuf-encoded arguments.
pub trait ForeignCall {
    /// Call `function` with `args`; the result bytes, or the host's status as text.
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String>;
}

impl<T: ForeignCall + ?Sized> ForeignCall for &T {
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        (**self).call(function, args)
    }
}

/// [`Crypto`] through Envoy's `sign` and `verify_signature` foreign functions (BoringSSL).
/// PS* and EdDSA verification, and randomness, stay in Rust: random bytes come from a
/// CSPRNG of this value's own, seeded from the OS (WASI `random_get`, a hostcall) at its
/// first use, so a token's `jti` costs no hostcall. A clone draws a seed of its own.
pub struct HostCrypto<F: ForeignCall> {
    call: F,
    rng: RefCell<Option<SeededRng>>,
}

impl<F: ForeignCall + std::fmt::Debug> std::fmt::Debug for HostCrypto<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The generator's state is a secret: only whether it is seeded.
        let seeded = self.rng.try_borrow().map(|r| r.is_some()).ok();
        f.debug_struct("HostCrypto")
            .field("call", &self.call)
            .field("rng_seeded", &seeded)
            .finish()
    }
}

impl<F: ForeignCall + Clone> Clone for HostCrypto<F> {
    fn clone(&self) -> Self {
        // Never the same stream twice: the clone seeds itself when first used.
        HostCrypto::new(self.call.clone())
    }
}

impl<F: ForeignCall> HostCrypto<F> {
    /// Wrap a foreign-function caller.
    pub fn new(call: F) -> Self {
        HostCrypto {
            call,
            rng: RefCell::new(None),
        }
    }

    /// The wrapped caller.
    pub fn foreign(&self) -> &F {
        &self.call
    }

    fn host_verify(
        &self,
        hash: &str,
        key: &PublicKey,
        sig: &[u8],
        msg: &[u8],
    ) -> Result<(), CryptoError> {
        let args = VerifySignatureArguments {
            hash_function: hash.into(),
            public_key: key.spki_der().to_vec(),
            signature: sig.to_vec(),
            text: msg.to_vec(),
            public_key_pem: String::new(),
        };
        let reply = self
            .call
            .call(VERIFY_FUNCTION, &args.encode())
            .map_err(|e| CryptoError::Host(format!("{VERIFY_FUNCTION}: {e}")))?;
        let result = VerifySignatureResult::decode(&reply)
            .map_err(|e| CryptoError::Host(format!("{VERIFY_FUNCTION}: {e}")))?;
        if result.result {
            Ok(())
        } else if result.error.is_empty() || result.error.starts_with("Failed to verify digest") {
            // BoringSSL's EVP_DigestVerify said no: a wrong signature.
            Err(CryptoError::BadSignature)
        } else {
            Err(CryptoError::Host(format!(
                "{VERIFY_FUNCTION}: {}",
                result.error
            )))
        }
    }
}

impl<F: ForeignCall> Crypto for HostCrypto<F> {
    fn verify(&self, alg: Alg, key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        check_fit(alg, key)?;
        match alg {
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 => {
                self.host_verify(alg.hash_name(), key, sig, msg)
            }
            Alg::Es256 | Alg::Es384 => {
                let expected = if alg == Alg::Es256 { 64 } else { 96 };
                if sig.len() != expected {
                    return Err(CryptoError::BadSignature);
                }
                let der_sig = ecdsa_raw_to_der(sig)?;
                self.host_verify(alg.hash_name(), key, &der_sig, msg)
            }
            Alg::Ps256 | Alg::Ps384 | Alg::Ps512 | Alg::EdDsa => {
                RustCrypto.verify(alg, key, msg, sig)
            }
        }
    }

    fn sign(&self, key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let alg = key.alg();
        let args = Zeroizing::new(encode_sign_arguments(alg.hash_name(), key.pkcs8_der(), msg));
        let reply = self
            .call
            .call(SIGN_FUNCTION, &args)
            .map_err(|e| CryptoError::Host(format!("{SIGN_FUNCTION}: {e}")))?;
        let result = SignResult::decode(&reply)
            .map_err(|e| CryptoError::Host(format!("{SIGN_FUNCTION}: {e}")))?;
        if !result.result {
            let why = if result.error.is_empty() {
                "refused without an error message".to_string()
            } else {
                result.error
            };
            return Err(CryptoError::Host(format!("{SIGN_FUNCTION}: {why}")));
        }
        match alg {
            Alg::Es256 => ecdsa_der_to_raw(&result.signature, 32).map_err(|_| {
                CryptoError::Host(format!("{SIGN_FUNCTION}: malformed ECDSA signature"))
            }),
            _ => {
                if result.signature.len() != key.signature_len() {
                    return Err(CryptoError::Host(format!(
                        "{SIGN_FUNCTION}: RSA signature of unexpected length"
                    )));
                }
                Ok(result.signature)
            }
        }
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let mut rng = self.rng.try_borrow_mut().map_err(|_| CryptoError::Rng)?;
        if rng.is_none() {
            // Seeded at first use, not at construction: a VM made by copying another's
            // memory never shares its stream (the seed is drawn after the copy).
            *rng = Some(SeededRng::from_os()?);
        }
        rng.as_mut().ok_or(CryptoError::Rng)?.fill_bytes(buf);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "envoy"
    }
}

/// Check once (at configure time) that the host's crypto works with `key`: sign
/// [`PROBE_MESSAGE`] through the host, verify it with [`RustCrypto`], then make sure the
/// host's `verify_signature` accepts it and refuses a tampered message. `Err` explains
/// why the pure-Rust path should be used instead.
pub fn probe<F: ForeignCall>(call: &F, key: &PrivateKey) -> Result<(), String> {
    let host = HostCrypto::new(call);
    let sig = host
        .sign(key, PROBE_MESSAGE)
        .map_err(|e| format!("host signing failed: {e}"))?;
    RustCrypto
        .verify(key.alg(), key.public(), PROBE_MESSAGE, &sig)
        .map_err(|e| format!("host signature does not verify in Rust: {e}"))?;
    host.verify(key.alg(), key.public(), PROBE_MESSAGE, &sig)
        .map_err(|e| format!("host verification failed: {e}"))?;
    match host.verify(key.alg(), key.public(), b"tampered probe message", &sig) {
        Err(CryptoError::BadSignature) => Ok(()),
        Ok(()) => Err("host verification accepted a tampered message".into()),
        Err(e) => Err(format!(
            "host verification of a tampered message failed oddly: {e}"
        )),
    }
}

#[cfg(test)]
mod tests;
