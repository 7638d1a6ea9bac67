//! Envoy's crypto foreign functions (`sign`, `verify_signature`), testable natively.
//!
//! The arguments and results are small protobuf messages (Envoy's
//! `source/extensions/common/wasm/ext/{sign,verify_signature}.proto`), encoded and decoded
//! here by hand. [`HostCrypto`] implements [`Crypto`] on top of any [`ForeignCall`]: the
//! glue crate passes one that calls `proxy_call_foreign_function`; tests pass a fake.
//!
//! Envoy's `verify_signature` does PKCS#1 v1.5 and ECDSA only, so PS* and EdDSA are
//! verified with [`RustCrypto`]. Envoy signs ECDSA in DER; JWS wants `r‖s`.

use std::fmt;

use p256::elliptic_curve::zeroize::Zeroizing;

use crate::token::crypto::{check_fit, os_random, Alg, Crypto, CryptoError, RustCrypto};
use crate::token::keys::{PrivateKey, PublicKey};
use crate::wire::der::{self, tag};

/// Name of Envoy's signing foreign function.
pub const SIGN_FUNCTION: &str = "sign";
/// Name of Envoy's verification foreign function.
pub const VERIFY_FUNCTION: &str = "verify_signature";
/// The message [`probe`] signs.
pub const PROBE_MESSAGE: &[u8] = b"registry-token-filter host crypto probe";

// ---------------------------------------------------------------------------------------
// Protobuf wire format
// ---------------------------------------------------------------------------------------

/// A malformed protobuf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoError(pub &'static str);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed protobuf: {}", self.0)
    }
}

impl std::error::Error for ProtoError {}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(field: u32, wire: u8, out: &mut Vec<u8>) {
    put_varint((u64::from(field) << 3) | u64::from(wire), out);
}

/// A length-delimited field; omitted when empty (proto3 default).
fn put_bytes(field: u32, data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    put_key(field, WIRE_LEN, out);
    put_varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// A bool field; omitted when false (proto3 default).
fn put_bool(field: u32, value: bool, out: &mut Vec<u8>) {
    if value {
        put_key(field, WIRE_VARINT, out);
        out.push(1);
    }
}

/// One decoded field value.
enum FieldValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width values are skipped by every message here.
    Fixed,
}

struct FieldReader<'a> {
    rest: &'a [u8],
}

impl<'a> FieldReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        FieldReader { rest: data }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(ProtoError("truncated varint"))?;
            self.rest = rest;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return Err(ProtoError("varint overflows 64 bits"));
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError("varint too long"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ProtoError> {
        if len > self.rest.len() {
            return Err(ProtoError("field exceeds message"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// The next (field number, value), or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u64, FieldValue<'a>)>, ProtoError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > 0x1fff_ffff {
            return Err(ProtoError("invalid field number"));
        }
        let value = match (key & 7) as u8 {
            WIRE_VARINT => FieldValue::Varint(self.varint()?),
            WIRE_FIXED64 => {
                self.take(8)?;
                FieldValue::Fixed
            }
            WIRE_LEN => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| ProtoError("length too large"))?;
                FieldValue::Bytes(self.take(len)?)
            }
            WIRE_FIXED32 => {
                self.take(4)?;
                FieldValue::Fixed
            }
            _ => return Err(ProtoError("unsupported wire type")),
        };
        Ok(Some((field, value)))
    }
}

fn expect_bytes<'a>(value: FieldValue<'a>) -> Result<&'a [u8], ProtoError> {
    match value {
        FieldValue::Bytes(b) => Ok(b),
        _ => Err(ProtoError("wrong wire type for a bytes field")),
    }
}

fn expect_string(value: FieldValue<'_>) -> Result<String, ProtoError> {
    let bytes = expect_bytes(value)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError("string is not UTF-8"))
}

/// Error strings from the host: invalid UTF-8 is replaced rather than refused.
fn expect_lossy_string(value: FieldValue<'_>) -> Result<String, ProtoError> {
    Ok(String::from_utf8_lossy(expect_bytes(value)?).into_owned())
}

fn expect_bool(value: FieldValue<'_>) -> Result<bool, ProtoError> {
    match value {
        FieldValue::Varint(v) => Ok(v != 0),
        _ => Err(ProtoError("wrong wire type for a bool field")),
    }
}

/// `SignArguments` (argument of the `sign` foreign function). `Debug` hides the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SignArguments {
    /// 1: `sha256`, `sha384`, `sha512`, …
    pub hash_function: String,
    /// 2: DER PKCS#8 private key.
    pub private_key: Vec<u8>,
    /// 3: the data to sign.
    pub text: Vec<u8>,
    /// 4: PEM private key (alternative to 2; Envoy refuses both at once).
    pub private_key_pem: String,
}

impl fmt::Debug for SignArguments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignArguments")
            .field("hash_function", &self.hash_function)
            .field(
                "private_key",
                &format_args!("<{} bytes>", self.private_key.len()),
            )
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field(
                "private_key_pem",
                &format_args!("<{} bytes>", self.private_key_pem.len()),
            )
            .finish()
    }
}

/// Encode `SignArguments` from borrowed parts (no copy of the key outside the result).
pub fn encode_sign_arguments(hash_function: &str, private_key_der: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(private_key_der.len() + text.len() + 24);
    put_bytes(1, hash_function.as_bytes(), &mut out);
    put_bytes(2, private_key_der, &mut out);
    put_bytes(3, text, &mut out);
    out
}

impl SignArguments {
    /// Protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = encode_sign_arguments(&self.hash_function, &self.private_key, &self.text);
        put_bytes(4, self.private_key_pem.as_bytes(), &mut out);
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = SignArguments::default();
        let mut r = FieldReader::new(data);
        while let Some((field, value)) = r.next_field()? {
            match field {
                1 => msg.hash_function = expect_string(value)?,
                2 => msg.private_key = expect_bytes(value)?.to_vec(),
                3 => msg.text = expect_bytes(value)?.to_vec(),
                4 => msg.private_key_pem = expect_string(value)?,
                _ => {}
            }
        }
        Ok(msg)
    }
}

/// `SignResult` (result of the `sign` foreign function).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignResult {
    /// 1: true on success.
    pub result: bool,
    /// 2: the signature (PKCS#1 v1.5 for RSA, DER ECDSA for EC).
    pub signature: Vec<u8>,
    /// 3: the error, when `result` is false.
    pub error: String,
}

impl SignResult {
    /// Protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.signature.len() + self.error.len() + 8);
        put_bool(1, self.result, &mut out);
        put_bytes(2, &self.signature, &mut out);
        put_bytes(3, self.error.as_bytes(), &mut out);
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = SignResult::default();
        let mut r = FieldReader::new(data);
        while let Some((field, value)) = r.next_field()? {
            match field {
                1 => msg.result = expect_bool(value)?,
                2 => msg.signature = expect_bytes(value)?.to_vec(),
                3 => msg.error = expect_lossy_string(value)?,
                _ => {}
            }
        }
        Ok(msg)
    }
}

/// `VerifySignatureArguments` (argument of the `verify_signature` foreign function).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifySignatureArguments {
    /// 1: `sha256`, `sha384`, `sha512`, …
    pub hash_function: String,
    /// 2: DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// 3: the signature (PKCS#1 v1.5 or DER ECDSA).
    pub signature: Vec<u8>,
    /// 4: the signed data.
    pub text: Vec<u8>,
    /// 5: PEM public key (alternative to 2; Envoy refuses both at once).
    pub public_key_pem: String,
}

impl VerifySignatureArguments {
    /// Protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.public_key.len() + self.signature.len() + self.text.len() + 32);
        put_bytes(1, self.hash_function.as_bytes(), &mut out);
        put_bytes(2, &self.public_key, &mut out);
        put_bytes(3, &self.signature, &mut out);
        put_bytes(4, &self.text, &mut out);
        put_bytes(5, self.public_key_pem.as_bytes(), &mut out);
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = VerifySignatureArguments::default();
        let mut r = FieldReader::new(data);
        while let Some((field, value)) = r.next_field()? {
            match field {
                1 => msg.hash_function = expect_string(value)?,
                2 => msg.public_key = expect_bytes(value)?.to_vec(),
                3 => msg.signature = expect_bytes(value)?.to_vec(),
                4 => msg.text = expect_bytes(value)?.to_vec(),
                5 => msg.public_key_pem = expect_string(value)?,
                _ => {}
            }
        }
        Ok(msg)
    }
}

/// `VerifySignatureResult` (result of the `verify_signature` foreign function).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifySignatureResult {
    /// 1: true when the signature verifies.
    pub result: bool,
    /// 2: the error, when `result` is false.
    pub error: String,
}

impl VerifySignatureResult {
    /// Protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.error.len() + 6);
        put_bool(1, self.result, &mut out);
        put_bytes(2, self.error.as_bytes(), &mut out);
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = VerifySignatureResult::default();
        let mut r = FieldReader::new(data);
        while let Some((field, value)) = r.next_field()? {
            match field {
                1 => msg.result = expect_bool(value)?,
                2 => msg.error = expect_lossy_string(value)?,
                _ => {}
            }
        }
        Ok(msg)
    }
}

// ---------------------------------------------------------------------------------------
// ECDSA signature encodings
// ---------------------------------------------------------------------------------------

/// DER `SEQUENCE { INTEGER r, INTEGER s }` → fixed-size `r‖s` (each `field_len` bytes,
/// left-padded). Strict DER; an integer longer than `field_len` → `BadSignature`.
pub fn ecdsa_der_to_raw(der_sig: &[u8], field_len: usize) -> Result<Vec<u8>, CryptoError> {
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
/// PS* and EdDSA verification, and randomness, stay in Rust.
#[derive(Clone, Debug)]
pub struct HostCrypto<F: ForeignCall> {
    call: F,
}

impl<F: ForeignCall> HostCrypto<F> {
    /// Wrap a foreign-function caller.
    pub fn new(call: F) -> Self {
        HostCrypto { call }
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
        os_random(buf)
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
mod tests {
    use super::*;
    use crate::token::keys::{testkeys, PublicKeyKind};
    use crate::wire::der::testutil::XorShift;
    use sha2::{Digest, Sha256, Sha384, Sha512};
    use std::cell::Cell;

    // ---- A fake Envoy: decodes the protobuf and does what BoringSSL would -------------

    #[derive(Default)]
    struct FakeEnvoy {
        calls: Cell<usize>,
    }

    fn digest(hash: &str, text: &[u8]) -> Option<Vec<u8>> {
        match hash.to_ascii_lowercase().as_str() {
            "sha256" => Some(Sha256::digest(text).to_vec()),
            "sha384" => Some(Sha384::digest(text).to_vec()),
            "sha512" => Some(Sha512::digest(text).to_vec()),
            _ => None,
        }
    }

    fn pkcs1(hash: &str) -> Option<rsa::pkcs1v15::Pkcs1v15Sign> {
        match hash.to_ascii_lowercase().as_str() {
            "sha256" => Some(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>()),
            "sha384" => Some(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha384>()),
            "sha512" => Some(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha512>()),
            _ => None,
        }
    }

    impl FakeEnvoy {
        fn sign(&self, args: &[u8]) -> Result<Vec<u8>, String> {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            use rsa::pkcs8::DecodePrivateKey;
            let args = SignArguments::decode(args).map_err(|_| "BadArgument".to_string())?;
            if args.private_key.is_empty() == args.private_key_pem.is_empty() {
                return Err("BadArgument".into());
            }
            let fail = |e: &str| {
                Ok(SignResult {
                    result: false,
                    signature: vec![],
                    error: e.into(),
                }
                .encode())
            };
            let Some(hashed) = digest(&args.hash_function, &args.text) else {
                return fail(&format!("{} is not supported.", args.hash_function));
            };
            let signature = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&args.private_key) {
                k.sign(pkcs1(&args.hash_function).unwrap(), &hashed)
                    .unwrap()
            } else if let Ok(k) =
                <p256::SecretKey as DecodePrivateKey>::from_pkcs8_der(&args.private_key)
            {
                let sk = p256::ecdsa::SigningKey::from(k);
                let sig: p256::ecdsa::Signature = sk.sign_prehash(&hashed).unwrap();
                sig.to_der().as_bytes().to_vec()
            } else {
                return Err("BadArgument".into());
            };
            Ok(SignResult {
                result: true,
                signature,
                error: String::new(),
            }
            .encode())
        }

        fn verify(&self, args: &[u8]) -> Result<Vec<u8>, String> {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let args =
                VerifySignatureArguments::decode(args).map_err(|_| "BadArgument".to_string())?;
            if args.public_key.is_empty() == args.public_key_pem.is_empty() {
                return Err("BadArgument".into());
            }
            // Key import (EVP_parse_public_key); failure is BadArgument in Envoy.
            let key = PublicKey::from_spki_der(&args.public_key)
                .map_err(|_| "BadArgument".to_string())?;
            let reply = |ok: bool, error: &str| {
                Ok(VerifySignatureResult {
                    result: ok,
                    error: error.into(),
                }
                .encode())
            };
            let Some(hashed) = digest(&args.hash_function, &args.text) else {
                return reply(false, &format!("{} is not supported.", args.hash_function));
            };
            let ok = match key.kind() {
                PublicKeyKind::Rsa(k) => k
                    .verify(
                        pkcs1(&args.hash_function).unwrap(),
                        &hashed,
                        &args.signature,
                    )
                    .is_ok(),
                PublicKeyKind::P256(k) => p256::ecdsa::Signature::from_der(&args.signature)
                    .map(|s| k.verify_prehash(&hashed, &s).is_ok())
                    .unwrap_or(false),
                PublicKeyKind::P384(k) => p384::ecdsa::Signature::from_der(&args.signature)
                    .map(|s| k.verify_prehash(&hashed, &s).is_ok())
                    .unwrap_or(false),
                PublicKeyKind::Ed25519(_) => false,
            };
            if ok {
                reply(true, "")
            } else {
                reply(false, "Failed to verify digest. Error code: 0")
            }
        }
    }

    impl ForeignCall for FakeEnvoy {
        fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
            self.calls.set(self.calls.get() + 1);
            match function {
                SIGN_FUNCTION => self.sign(args),
                VERIFY_FUNCTION => self.verify(args),
                _ => Err("NotFound".into()),
            }
        }
    }

    /// A host without the functions, or one that answers garbage.
    struct Broken(fn(&str, &[u8]) -> Result<Vec<u8>, String>);
    impl ForeignCall for Broken {
        fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
            (self.0)(function, args)
        }
    }

    // ---- Protobuf --------------------------------------------------------------------

    #[test]
    fn varint_encoding() {
        for (value, bytes) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(value, &mut out);
            assert_eq!(out, bytes);
            assert_eq!(FieldReader::new(&bytes).varint().unwrap(), value);
        }
        // 11 bytes, and a 10th byte above 1.
        assert!(FieldReader::new(&[0xff; 11]).varint().is_err());
        assert!(
            FieldReader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(FieldReader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn sign_arguments_known_bytes() {
        let args = SignArguments {
            hash_function: "sha256".into(),
            private_key: vec![1, 2],
            text: b"hi".to_vec(),
            private_key_pem: String::new(),
        };
        let bytes = args.encode();
        assert_eq!(
            bytes,
            [
                &[0x0a, 0x06][..],
                b"sha256",
                &[0x12, 0x02, 1, 2],
                &[0x1a, 0x02],
                b"hi"
            ]
            .concat()
        );
        assert_eq!(SignArguments::decode(&bytes).unwrap(), args);
        assert_eq!(encode_sign_arguments("sha256", &[1, 2], b"hi"), bytes);
        let dbg = format!("{args:?}");
        assert!(dbg.contains("<2 bytes>") && !dbg.contains("[1, 2]"));
    }

    #[test]
    fn messages_roundtrip() {
        let sign_args = SignArguments {
            hash_function: "sha384".into(),
            private_key: vec![9; 300],
            text: vec![7; 200],
            private_key_pem: "-----BEGIN-----".into(),
        };
        assert_eq!(
            SignArguments::decode(&sign_args.encode()).unwrap(),
            sign_args
        );
        let sign_result = SignResult {
            result: true,
            signature: vec![1; 256],
            error: String::new(),
        };
        assert_eq!(
            SignResult::decode(&sign_result.encode()).unwrap(),
            sign_result
        );
        let verify_args = VerifySignatureArguments {
            hash_function: "sha512".into(),
            public_key: vec![3; 294],
            signature: vec![4; 512],
            text: vec![5; 1000],
            public_key_pem: "pem".into(),
        };
        assert_eq!(
            VerifySignatureArguments::decode(&verify_args.encode()).unwrap(),
            verify_args
        );
        let verify_result = VerifySignatureResult {
            result: false,
            error: "Failed to verify digest. Error code: 0".into(),
        };
        assert_eq!(
            VerifySignatureResult::decode(&verify_result.encode()).unwrap(),
            verify_result
        );
        // Defaults encode to nothing and decode from nothing.
        assert!(VerifySignatureResult::default().encode().is_empty());
        assert_eq!(
            VerifySignatureResult::decode(&[]).unwrap(),
            VerifySignatureResult::default()
        );
    }

    #[test]
    fn verify_result_known_bytes() {
        let ok = VerifySignatureResult {
            result: true,
            error: String::new(),
        };
        assert_eq!(ok.encode(), [0x08, 0x01]);
        let bad =
            VerifySignatureResult::decode(&[0x08, 0x00, 0x12, 0x03, b'e', b'r', b'r']).unwrap();
        assert!(!bad.result);
        assert_eq!(bad.error, "err");
        // A non-canonical bool (varint 2) is true.
        assert!(VerifySignatureResult::decode(&[0x08, 0x02]).unwrap().result);
    }

    #[test]
    fn decoders_skip_unknown_fields() {
        let mut data = Vec::new();
        put_key(9, WIRE_VARINT, &mut data);
        put_varint(12345, &mut data);
        put_key(10, WIRE_FIXED64, &mut data);
        data.extend([0; 8]);
        put_key(11, WIRE_FIXED32, &mut data);
        data.extend([0; 4]);
        put_bytes(12, b"ignored", &mut data);
        data.extend(
            SignResult {
                result: true,
                signature: vec![1, 2, 3],
                error: String::new(),
            }
            .encode(),
        );
        put_bytes(99, b"trailing unknown", &mut data);
        let r = SignResult::decode(&data).unwrap();
        assert!(r.result);
        assert_eq!(r.signature, [1, 2, 3]);
        let v = VerifySignatureResult::decode(&data).unwrap();
        assert!(v.result);
        assert_eq!(v.error.as_bytes(), [1, 2, 3]);
    }

    #[test]
    fn decoders_reject_malformed() {
        // Truncated length-delimited field.
        assert!(SignResult::decode(&[0x12, 0x05, 1, 2]).is_err());
        // Wrong wire type for known fields.
        assert!(SignResult::decode(&[0x10, 0x01]).is_err()); // field 2 as varint
        assert!(SignResult::decode(&[0x0a, 0x00]).is_err()); // field 1 as bytes
                                                             // Group wire types and field 0.
        assert!(SignResult::decode(&[0x0b]).is_err());
        assert!(SignResult::decode(&[0x0c]).is_err());
        assert!(SignResult::decode(&[0x00, 0x00]).is_err());
        // Truncated fixed fields.
        assert!(SignResult::decode(&[0x49, 0, 0]).is_err());
        assert!(SignResult::decode(&[0x4d, 0]).is_err());
        // Invalid UTF-8 in a string argument; lossy in a result's error.
        assert!(SignArguments::decode(&[0x0a, 0x01, 0xff]).is_err());
        assert_eq!(
            SignResult::decode(&[0x1a, 0x01, 0xff]).unwrap().error,
            "\u{fffd}"
        );
        // Huge length.
        assert!(VerifySignatureResult::decode(&[
            0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
        ])
        .is_err());
    }

    #[test]
    fn decoders_never_panic_on_garbage() {
        let mut rng = XorShift(1234);
        let valid = VerifySignatureArguments {
            hash_function: "sha256".into(),
            public_key: vec![1; 20],
            signature: vec![2; 20],
            text: vec![3; 20],
            public_key_pem: String::new(),
        }
        .encode();
        for i in 0..20_000 {
            let data = if i % 2 == 0 {
                let n = rng.below(64) as usize;
                rng.bytes(n)
            } else {
                let mut v = valid.clone();
                let pos = rng.below(v.len() as u64) as usize;
                v[pos] = rng.next() as u8;
                v.truncate(rng.below(v.len() as u64 + 1) as usize);
                v
            };
            let _ = SignArguments::decode(&data);
            let _ = SignResult::decode(&data);
            let _ = VerifySignatureArguments::decode(&data);
            let _ = VerifySignatureResult::decode(&data);
        }
    }

    // ---- ECDSA DER <-> raw ---------------------------------------------------------------

    #[test]
    fn ecdsa_conversion_matches_p256_on_many_signatures() {
        use p256::ecdsa::signature::Signer;
        let sk = testkeys::p256_signing();
        let mut saw_short = false;
        let mut saw_padded = false;
        for i in 0u32..600 {
            let sig: p256::ecdsa::Signature = sk.sign(&i.to_be_bytes());
            let raw = sig.to_bytes().to_vec();
            let der_theirs = sig.to_der().as_bytes().to_vec();
            let der_ours = ecdsa_raw_to_der(&raw).unwrap();
            assert_eq!(der_ours, der_theirs, "signature {i}");
            assert_eq!(ecdsa_der_to_raw(&der_theirs, 32).unwrap(), raw);
            saw_short |= raw[0] == 0 || raw[32] == 0;
            saw_padded |= raw[0] & 0x80 != 0 || raw[32] & 0x80 != 0;
        }
        assert!(saw_padded);
        // With 600 signatures, a leading zero byte in r or s is very likely (p ≈ 0.99).
        let _ = saw_short;
    }

    #[test]
    fn ecdsa_conversion_matches_p384() {
        use p384::ecdsa::signature::Signer;
        let sk = testkeys::p384_signing();
        for i in 0u32..200 {
            let sig: p384::ecdsa::Signature = sk.sign(&i.to_be_bytes());
            let raw = sig.to_bytes().to_vec();
            let der_theirs = sig.to_der().as_bytes().to_vec();
            assert_eq!(ecdsa_raw_to_der(&raw).unwrap(), der_theirs);
            assert_eq!(ecdsa_der_to_raw(&der_theirs, 48).unwrap(), raw);
        }
    }

    #[test]
    fn ecdsa_conversion_edge_values() {
        // Leading zeros in r, high bit in s.
        let mut raw = vec![0u8; 64];
        raw[31] = 5;
        raw[32] = 0x80;
        raw[63] = 1;
        let der_sig = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der_sig[..5], &[0x30, 0x26, 0x02, 0x01, 0x05]);
        assert_eq!(&der_sig[5..8], &[0x02, 0x21, 0x00]);
        assert_eq!(ecdsa_der_to_raw(&der_sig, 32).unwrap(), raw);
        // All zeros encode as INTEGER 0 and come back.
        let zeros = vec![0u8; 64];
        let der_sig = ecdsa_raw_to_der(&zeros).unwrap();
        assert_eq!(der_sig, [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
        assert_eq!(ecdsa_der_to_raw(&der_sig, 32).unwrap(), zeros);
        // All 0xff.
        let ff = vec![0xffu8; 96];
        assert_eq!(
            ecdsa_der_to_raw(&ecdsa_raw_to_der(&ff).unwrap(), 48).unwrap(),
            ff
        );
    }

    #[test]
    fn ecdsa_conversion_rejects() {
        assert!(ecdsa_raw_to_der(&[]).is_err());
        assert!(ecdsa_raw_to_der(&[0; 63]).is_err());
        assert!(ecdsa_raw_to_der(&[0; 134]).is_err());
        let good = ecdsa_raw_to_der(&[0x11; 64]).unwrap();
        // Too long for the field.
        assert!(ecdsa_der_to_raw(&good, 31).is_err());
        assert!(ecdsa_der_to_raw(&good, 0).is_err());
        // Trailing data, truncated, wrong outer tag.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(ecdsa_der_to_raw(&trailing, 32).is_err());
        assert!(ecdsa_der_to_raw(&good[..good.len() - 1], 32).is_err());
        let mut wrong = good.clone();
        wrong[0] = 0x31;
        assert!(ecdsa_der_to_raw(&wrong, 32).is_err());
        // Negative and non-minimal integers.
        assert!(ecdsa_der_to_raw(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01], 32).is_err());
        assert!(
            ecdsa_der_to_raw(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01], 32).is_err()
        );
        // Three integers.
        assert!(ecdsa_der_to_raw(
            &[0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            32
        )
        .is_err());
    }

    #[test]
    fn ecdsa_conversion_garbage_never_panics() {
        let mut rng = XorShift(77);
        for _ in 0..20_000 {
            let len = rng.below(80) as usize;
            let mut data = rng.bytes(len);
            if !data.is_empty() && rng.below(2) == 0 {
                data[0] = 0x30;
            }
            let _ = ecdsa_der_to_raw(&data, 32);
            let _ = ecdsa_der_to_raw(&data, 48);
            let _ = ecdsa_raw_to_der(&data);
        }
    }

    // ---- HostCrypto vs RustCrypto ----------------------------------------------------------

    fn rsa_any() -> PublicKey {
        let mut jwk = testkeys::rsa_private().public().to_jwk();
        jwk.as_object_mut().unwrap().remove("alg");
        PublicKey::from_jwk(&jwk).unwrap()
    }

    fn p384_pair() -> (p384::ecdsa::SigningKey, PublicKey) {
        let sk = testkeys::p384_signing();
        let der = p384::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
        let public = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        (sk, public)
    }

    /// Valid signature under `alg` for `msg`, made with the crates directly.
    fn external_sig(alg: Alg, msg: &[u8], p384: &p384::ecdsa::SigningKey) -> Vec<u8> {
        use p384::ecdsa::signature::Signer;
        let rsa_key = testkeys::rsa2048();
        match alg {
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 => {
                let h = digest(alg.hash_name(), msg).unwrap();
                rsa_key.sign(pkcs1(alg.hash_name()).unwrap(), &h).unwrap()
            }
            Alg::Es384 => {
                let s: p384::ecdsa::Signature = p384.sign(msg);
                s.to_bytes().to_vec()
            }
            _ => unreachable!(),
        }
    }

    /// Both implementations must reach the same decision: Ok, or the same error kind.
    fn same_decision(alg: Alg, key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
        let host = HostCrypto::new(FakeEnvoy::default());
        let a = RustCrypto.verify(alg, key, msg, sig);
        let b = host.verify(alg, key, msg, sig);
        assert_eq!(a.is_ok(), b.is_ok(), "{alg}: rust {a:?} vs host {b:?}");
        if let (Err(x), Err(y)) = (&a, &b) {
            assert_eq!(
                std::mem::discriminant(x),
                std::mem::discriminant(y),
                "{alg}"
            );
        }
        a.is_ok()
    }

    #[test]
    fn host_and_rust_agree_rsa() {
        let key = rsa_any();
        let wrong = testkeys::unrelated_rsa_public();
        let p384 = p384_pair();
        for alg in [Alg::Rs256, Alg::Rs384, Alg::Rs512] {
            let msg = format!("header.payload.{alg}");
            let sig = external_sig(alg, msg.as_bytes(), &p384.0);
            assert!(
                same_decision(alg, &key, msg.as_bytes(), &sig),
                "{alg} valid"
            );
            assert!(!same_decision(alg, &key, b"tampered", &sig));
            for i in [0, 100, 255] {
                let mut bad = sig.clone();
                bad[i] ^= 0x40;
                assert!(!same_decision(alg, &key, msg.as_bytes(), &bad));
            }
            assert!(!same_decision(alg, &key, msg.as_bytes(), &sig[1..]));
            assert!(!same_decision(alg, &key, msg.as_bytes(), &[]));
            assert!(!same_decision(alg, &wrong, msg.as_bytes(), &sig));
            // Alg mismatch: another RS hash, and EC algs on an RSA key.
            let other = if alg == Alg::Rs256 {
                Alg::Rs512
            } else {
                Alg::Rs256
            };
            assert!(!same_decision(other, &key, msg.as_bytes(), &sig));
            assert!(!same_decision(Alg::Es256, &key, msg.as_bytes(), &sig));
            assert!(!same_decision(Alg::EdDsa, &key, msg.as_bytes(), &sig));
        }
        // A key restricted to RS256 by its JWK refuses RS384 in both.
        let rs256_only = testkeys::rsa_private().public();
        let msg = b"m";
        let sig = external_sig(Alg::Rs384, msg, &p384.0);
        assert!(!same_decision(Alg::Rs384, rs256_only, msg, &sig));
    }

    #[test]
    fn host_and_rust_agree_ecdsa() {
        let (p384_sk, p384_key) = p384_pair();
        for round in 0..20 {
            let key = testkeys::p256_private();
            let other = testkeys::p256_private();
            let msg = format!("es256 message {round}");
            let sig = RustCrypto.sign(&key, msg.as_bytes()).unwrap();
            let public = key.public();
            assert!(same_decision(Alg::Es256, public, msg.as_bytes(), &sig));
            assert!(!same_decision(Alg::Es256, public, b"x", &sig));
            let mut bad = sig.clone();
            bad[round % 64] ^= 1;
            assert!(!same_decision(Alg::Es256, public, msg.as_bytes(), &bad));
            assert!(!same_decision(
                Alg::Es256,
                other.public(),
                msg.as_bytes(),
                &sig
            ));
            assert!(!same_decision(
                Alg::Es256,
                public,
                msg.as_bytes(),
                &sig[..63]
            ));
            assert!(!same_decision(Alg::Es256, public, msg.as_bytes(), &[0; 64]));
            assert!(!same_decision(
                Alg::Es256,
                public,
                msg.as_bytes(),
                &[0xff; 64]
            ));
            assert!(!same_decision(Alg::Es384, public, msg.as_bytes(), &sig));
            assert!(!same_decision(Alg::Rs256, public, msg.as_bytes(), &sig));

            let sig384 = external_sig(Alg::Es384, msg.as_bytes(), &p384_sk);
            assert!(same_decision(
                Alg::Es384,
                &p384_key,
                msg.as_bytes(),
                &sig384
            ));
            assert!(!same_decision(Alg::Es384, &p384_key, b"x", &sig384));
            let mut bad = sig384.clone();
            bad[95 - round] ^= 0x10;
            assert!(!same_decision(Alg::Es384, &p384_key, msg.as_bytes(), &bad));
            assert!(!same_decision(
                Alg::Es384,
                &p384_key,
                msg.as_bytes(),
                &sig384[..64]
            ));
            assert!(!same_decision(
                Alg::Es256,
                &p384_key,
                msg.as_bytes(),
                &sig384
            ));
        }
    }

    #[test]
    fn host_delegates_pss_and_eddsa_to_rust() {
        let fake = FakeEnvoy::default();
        let host = HostCrypto::new(&fake);
        let ek = {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            jsonwebtoken::EncodingKey::from_rsa_der(
                testkeys::rsa2048().to_pkcs1_der().unwrap().as_bytes(),
            )
        };
        let sig = crate::wire::b64::url_decode(
            &jsonwebtoken::crypto::sign(b"m", &ek, jsonwebtoken::Algorithm::PS256).unwrap(),
        )
        .unwrap();
        host.verify(Alg::Ps256, &rsa_any(), b"m", &sig).unwrap();
        assert!(host.verify(Alg::Ps256, &rsa_any(), b"n", &sig).is_err());
        let ed = testkeys::ed25519_signing();
        let edkey = PublicKey::from_jwk(&serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": crate::wire::b64::url_encode(ed.verifying_key().as_bytes())
        }))
        .unwrap();
        let edsig = ed25519_dalek::Signer::sign(&ed, b"m").to_bytes();
        host.verify(Alg::EdDsa, &edkey, b"m", &edsig).unwrap();
        assert!(host.verify(Alg::EdDsa, &edkey, b"n", &edsig).is_err());
        assert_eq!(fake.calls.get(), 0, "PS256/EdDSA must not call the host");
    }

    #[test]
    fn host_sign_rsa_matches_rust() {
        let fake = FakeEnvoy::default();
        let host = HostCrypto::new(&fake);
        let key = testkeys::rsa_private();
        let a = host.sign(key, b"payload").unwrap();
        let b = RustCrypto.sign(key, b"payload").unwrap();
        assert_eq!(a, b, "PKCS#1 v1.5 is deterministic");
        assert_eq!(fake.calls.get(), 1);
        RustCrypto
            .verify(Alg::Rs256, key.public(), b"payload", &a)
            .unwrap();
    }

    #[test]
    fn host_sign_es256_gives_raw_signatures() {
        let fake = FakeEnvoy::default();
        let host = HostCrypto::new(&fake);
        for i in 0..30 {
            let key = testkeys::p256_private();
            let msg = format!("msg {i}");
            let sig = host.sign(&key, msg.as_bytes()).unwrap();
            assert_eq!(sig.len(), 64);
            RustCrypto
                .verify(Alg::Es256, key.public(), msg.as_bytes(), &sig)
                .unwrap();
            host.verify(Alg::Es256, key.public(), msg.as_bytes(), &sig)
                .unwrap();
        }
        assert_eq!(host.name(), "envoy");
        let mut buf = [0u8; 16];
        host.fill_random(&mut buf).unwrap();
        assert_ne!(buf, [0; 16]);
    }

    #[test]
    fn host_errors_map_to_host() {
        let key = testkeys::p256_private();
        let missing = HostCrypto::new(Broken(|_, _| Err("NotFound".into())));
        assert!(matches!(
            missing.sign(&key, b"m"),
            Err(CryptoError::Host(_))
        ));
        let sig = RustCrypto.sign(&key, b"m").unwrap();
        assert!(matches!(
            missing.verify(Alg::Es256, key.public(), b"m", &sig),
            Err(CryptoError::Host(_))
        ));
        // Alg mismatch is caught before the host is called.
        assert!(matches!(
            missing.verify(Alg::Rs256, key.public(), b"m", &sig),
            Err(CryptoError::BadKey(_))
        ));
        // Wrong ECDSA length is caught before the host is called.
        assert_eq!(
            missing.verify(Alg::Es256, key.public(), b"m", &sig[..60]),
            Err(CryptoError::BadSignature)
        );

        let garbage = HostCrypto::new(Broken(|_, _| Ok(vec![0xff, 0xff, 0xff])));
        assert!(matches!(
            garbage.sign(&key, b"m"),
            Err(CryptoError::Host(_))
        ));
        assert!(matches!(
            garbage.verify(Alg::Es256, key.public(), b"m", &sig),
            Err(CryptoError::Host(_))
        ));

        let refuses = HostCrypto::new(Broken(|f, _| {
            Ok(if f == SIGN_FUNCTION {
                SignResult {
                    result: false,
                    signature: vec![],
                    error: "sha256 is not supported.".into(),
                }
                .encode()
            } else {
                VerifySignatureResult {
                    result: false,
                    error: "Failed to initialize digest verify.".into(),
                }
                .encode()
            })
        }));
        match refuses.sign(&key, b"m") {
            Err(CryptoError::Host(msg)) => assert!(msg.contains("not supported")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refuses.verify(Alg::Es256, key.public(), b"m", &sig),
            Err(CryptoError::Host(_))
        ));

        // "Success" with a malformed EC signature, or a short RSA signature.
        let bad_sig = HostCrypto::new(Broken(|_, _| {
            Ok(SignResult {
                result: true,
                signature: vec![0x30, 0x00],
                error: String::new(),
            }
            .encode())
        }));
        assert!(matches!(
            bad_sig.sign(&key, b"m"),
            Err(CryptoError::Host(_))
        ));
        assert!(matches!(
            bad_sig.sign(testkeys::rsa_private(), b"m"),
            Err(CryptoError::Host(_))
        ));
        // result=false with no message → BadSignature for verify.
        let silent = HostCrypto::new(Broken(|_, _| Ok(Vec::new())));
        assert_eq!(
            silent.verify(Alg::Es256, key.public(), b"m", &sig),
            Err(CryptoError::BadSignature)
        );
        assert!(matches!(silent.sign(&key, b"m"), Err(CryptoError::Host(_))));
    }

    #[test]
    fn host_receives_expected_arguments() {
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<(String, Vec<u8>)>> = Mutex::new(Vec::new());
        let recorder = Broken(|f, args| {
            SEEN.lock().unwrap().push((f.to_string(), args.to_vec()));
            FakeEnvoy::default().call(f, args)
        });
        let host = HostCrypto::new(recorder);
        let key = testkeys::p256_private();
        let sig = host.sign(&key, b"text").unwrap();
        host.verify(Alg::Es256, key.public(), b"text", &sig)
            .unwrap();
        let rsa_key = testkeys::rsa_private();
        let rsig = host.sign(rsa_key, b"text").unwrap();
        host.verify(Alg::Rs256, rsa_key.public(), b"text", &rsig)
            .unwrap();
        let seen = SEEN.lock().unwrap();
        let mine: Vec<_> = seen.iter().rev().take(4).rev().collect();
        assert_eq!(mine[0].0, "sign");
        let a = SignArguments::decode(&mine[0].1).unwrap();
        assert_eq!(a.hash_function, "sha256");
        assert_eq!(a.private_key, key.pkcs8_der());
        assert_eq!(a.text, b"text");
        assert!(a.private_key_pem.is_empty());
        assert_eq!(mine[1].0, "verify_signature");
        let v = VerifySignatureArguments::decode(&mine[1].1).unwrap();
        assert_eq!(v.hash_function, "sha256");
        assert_eq!(v.public_key, key.public().spki_der());
        assert_eq!(v.signature, ecdsa_raw_to_der(&sig).unwrap());
        assert_eq!(v.text, b"text");
        let v = VerifySignatureArguments::decode(&mine[3].1).unwrap();
        assert_eq!(v.signature, rsig);
        assert_eq!(v.public_key, rsa_key.public().spki_der());
    }

    #[test]
    fn probe_accepts_a_working_host() {
        let fake = FakeEnvoy::default();
        probe(&fake, testkeys::rsa_private()).unwrap();
        probe(&fake, &testkeys::p256_private()).unwrap();
        assert_eq!(fake.calls.get(), 6);
    }

    #[test]
    fn probe_rejects_broken_hosts() {
        let key = testkeys::p256_private();
        let missing = Broken(|_, _| Err("NotFound".into()));
        assert!(probe(&missing, &key).unwrap_err().contains("signing"));
        // A host that signs garbage.
        let garbage_signer = Broken(|f, args| {
            if f == SIGN_FUNCTION {
                let mut raw = [0x42u8; 64];
                raw[0] = 0x01;
                Ok(SignResult {
                    result: true,
                    signature: ecdsa_raw_to_der(&raw).unwrap(),
                    error: String::new(),
                }
                .encode())
            } else {
                FakeEnvoy::default().call(f, args)
            }
        });
        assert!(probe(&garbage_signer, &key).unwrap_err().contains("Rust"));
        // A host whose verify says yes to everything.
        let yes_man = Broken(|f, args| {
            if f == VERIFY_FUNCTION {
                Ok(VerifySignatureResult {
                    result: true,
                    error: String::new(),
                }
                .encode())
            } else {
                FakeEnvoy::default().call(f, args)
            }
        });
        assert!(probe(&yes_man, &key).unwrap_err().contains("tampered"));
        // A host without verify_signature.
        let no_verify = Broken(|f, args| {
            if f == VERIFY_FUNCTION {
                Err("NotFound".into())
            } else {
                FakeEnvoy::default().call(f, args)
            }
        });
        assert!(probe(&no_verify, &key)
            .unwrap_err()
            .contains("verification"));
    }
}
