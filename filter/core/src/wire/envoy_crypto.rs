//! Envoy's crypto foreign-function messages (`sign`, `verify_signature`), as bytes.
//!
//! From Envoy's `source/extensions/common/wasm/ext/{sign,verify_signature}.proto`, encoded
//! and decoded with [`super::protobuf`]: proto3 defaults are omitted when encoding, unknown
//! fields are skipped when decoding (groups are refused), a known field with the wrong
//! wire type is an error. Keys and signatures are plain bytes here; what they mean is
//! `crate::token::crypto::host`'s business.

use std::fmt;

use super::protobuf::{put_bytes, put_tag, ProtoError, Reader, Tag, WT_LEN, WT_VARINT};

/// A length-delimited field; omitted when empty (proto3 default).
fn put_nonempty(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if !data.is_empty() {
        put_bytes(out, field, data);
    }
}

/// A bool field; omitted when false (proto3 default).
fn put_bool(out: &mut Vec<u8>, field: u32, value: bool) {
    if value {
        put_tag(out, field, WT_VARINT);
        out.push(1);
    }
}

/// Reads every field of `data`: `known` reads the value of a field it knows and returns
/// `true`; the others are skipped.
fn for_each_field<'a>(
    data: &'a [u8],
    mut known: impl FnMut(&mut Reader<'a>, &Tag) -> Result<bool, ProtoError>,
) -> Result<(), ProtoError> {
    let mut r = Reader::new(data);
    while !r.at_end() {
        let tag = r.tag()?;
        if !known(&mut r, &tag)? {
            r.skip_flat(&tag)?;
        }
    }
    Ok(())
}

fn bytes_field(r: &mut Reader<'_>, tag: &Tag, name: &'static str) -> Result<Vec<u8>, ProtoError> {
    tag.expect(name, WT_LEN)?;
    Ok(r.len_delimited(name)?.bytes().to_vec())
}

fn string_field(r: &mut Reader<'_>, tag: &Tag, name: &'static str) -> Result<String, ProtoError> {
    tag.expect(name, WT_LEN)?;
    r.string(name)
}

/// Error strings from the host: invalid UTF-8 is replaced rather than refused.
fn lossy_field(r: &mut Reader<'_>, tag: &Tag, name: &'static str) -> Result<String, ProtoError> {
    tag.expect(name, WT_LEN)?;
    Ok(String::from_utf8_lossy(r.len_delimited(name)?.bytes()).into_owned())
}

/// Any non-zero varint is true.
fn bool_field(r: &mut Reader<'_>, tag: &Tag, name: &'static str) -> Result<bool, ProtoError> {
    tag.expect(name, WT_VARINT)?;
    Ok(r.varint(name)? != 0)
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
    put_nonempty(&mut out, 1, hash_function.as_bytes());
    put_nonempty(&mut out, 2, private_key_der);
    put_nonempty(&mut out, 3, text);
    out
}

impl SignArguments {
    /// Protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = encode_sign_arguments(&self.hash_function, &self.private_key, &self.text);
        put_nonempty(&mut out, 4, self.private_key_pem.as_bytes());
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = SignArguments::default();
        for_each_field(data, |r, tag| {
            match tag.field {
                1 => msg.hash_function = string_field(r, tag, "SignArguments.hash_function")?,
                2 => msg.private_key = bytes_field(r, tag, "SignArguments.private_key")?,
                3 => msg.text = bytes_field(r, tag, "SignArguments.text")?,
                4 => msg.private_key_pem = string_field(r, tag, "SignArguments.private_key_pem")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
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
        put_bool(&mut out, 1, self.result);
        put_nonempty(&mut out, 2, &self.signature);
        put_nonempty(&mut out, 3, self.error.as_bytes());
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = SignResult::default();
        for_each_field(data, |r, tag| {
            match tag.field {
                1 => msg.result = bool_field(r, tag, "SignResult.result")?,
                2 => msg.signature = bytes_field(r, tag, "SignResult.signature")?,
                3 => msg.error = lossy_field(r, tag, "SignResult.error")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
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
        put_nonempty(&mut out, 1, self.hash_function.as_bytes());
        put_nonempty(&mut out, 2, &self.public_key);
        put_nonempty(&mut out, 3, &self.signature);
        put_nonempty(&mut out, 4, &self.text);
        put_nonempty(&mut out, 5, self.public_key_pem.as_bytes());
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = VerifySignatureArguments::default();
        for_each_field(data, |r, tag| {
            match tag.field {
                1 => {
                    msg.hash_function =
                        string_field(r, tag, "VerifySignatureArguments.hash_function")?
                }
                2 => msg.public_key = bytes_field(r, tag, "VerifySignatureArguments.public_key")?,
                3 => msg.signature = bytes_field(r, tag, "VerifySignatureArguments.signature")?,
                4 => msg.text = bytes_field(r, tag, "VerifySignatureArguments.text")?,
                5 => {
                    msg.public_key_pem =
                        string_field(r, tag, "VerifySignatureArguments.public_key_pem")?
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
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
        put_bool(&mut out, 1, self.result);
        put_nonempty(&mut out, 2, self.error.as_bytes());
        out
    }

    /// Protobuf decoding; unknown fields are skipped.
    pub fn decode(data: &[u8]) -> Result<Self, ProtoError> {
        let mut msg = VerifySignatureResult::default();
        for_each_field(data, |r, tag| {
            match tag.field {
                1 => msg.result = bool_field(r, tag, "VerifySignatureResult.result")?,
                2 => msg.error = lossy_field(r, tag, "VerifySignatureResult.error")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protobuf::{put_varint, WT_FIXED32, WT_FIXED64};
    use crate::wire::testrng::Rng;

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
        put_tag(&mut data, 9, WT_VARINT);
        put_varint(&mut data, 12345);
        put_tag(&mut data, 10, WT_FIXED64);
        data.extend([0; 8]);
        put_tag(&mut data, 11, WT_FIXED32);
        data.extend([0; 4]);
        put_bytes(&mut data, 12, b"ignored");
        data.extend(
            SignResult {
                result: true,
                signature: vec![1, 2, 3],
                error: String::new(),
            }
            .encode(),
        );
        put_bytes(&mut data, 99, b"trailing unknown");
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
        let mut rng = Rng::new(1234);
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
}
