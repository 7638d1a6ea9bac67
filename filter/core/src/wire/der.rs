//! Minimal DER reader and writer.
//!
//! Just enough ASN.1 DER for the token filter: walking an X.509 certificate down to its
//! SubjectPublicKeyInfo, reading a SubjectPublicKeyInfo's algorithm and key, and converting
//! ECDSA signatures between DER (`SEQUENCE { INTEGER r, INTEGER s }`) and JWS `r‖s`.
//!
//! Every read is bounds-checked and returns [`DerError`] on malformed input; nothing here
//! panics on untrusted bytes. Only single-byte tags and definite, minimally encoded lengths
//! (strict DER) are accepted.

use std::fmt;

/// Universal tags used by this crate.
pub mod tag {
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// SEQUENCE (constructed)
    pub const SEQUENCE: u8 = 0x30;
    /// SET (constructed)
    pub const SET: u8 = 0x31;
    /// `[0]` EXPLICIT (context-specific, constructed), e.g. an X.509 certificate's version.
    pub const CONTEXT_0: u8 = 0xa0;
    /// `[1]` EXPLICIT (context-specific, constructed).
    pub const CONTEXT_1: u8 = 0xa1;
}

/// DER contents (without tag and length) of the object identifiers this crate needs.
pub mod oid {
    /// rsaEncryption, 1.2.840.113549.1.1.1
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// id-ecPublicKey, 1.2.840.10045.2.1
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 / secp256r1 (P-256), 1.2.840.10045.3.1.7
    pub const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp384r1 (P-384), 1.3.132.0.34
    pub const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// secp521r1 (P-521), 1.3.132.0.35
    pub const SECP521R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// id-Ed25519, 1.3.101.112
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// id-Ed448, 1.3.101.113
    pub const ED448: &[u8] = &[0x2b, 0x65, 0x71];
    /// id-RSASSA-PSS, 1.2.840.113549.1.1.10
    pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
}

/// A malformed or unsupported DER input. The message names the problem, never the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerError(pub &'static str);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DER: {}", self.0)
    }
}

impl std::error::Error for DerError {}

/// One decoded tag-length-value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The (single-byte) tag.
    pub tag: u8,
    /// The contents octets.
    pub value: &'a [u8],
    /// The whole encoding: tag, length and contents.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over this TLV's contents (for constructed types such as SEQUENCE).
    pub fn reader(&self) -> Reader<'a> {
        Reader::new(self.value)
    }
}

/// A cursor over a sequence of DER TLVs.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { rest: data }
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next TLV, if any, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Read the next TLV, whatever its tag.
    pub fn read_any(&mut self) -> Result<Tlv<'a>, DerError> {
        let data = self.rest;
        let (&tag, after_tag) = data
            .split_first()
            .ok_or(DerError("unexpected end of data"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not supported"));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DerError("missing length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else if first == 0x80 {
            return Err(DerError("indefinite length is not DER"));
        } else {
            let count = usize::from(first & 0x7f);
            if count > 4 {
                return Err(DerError("length too large"));
            }
            let (len_bytes, rest) =
                split_at_checked(after_len, count).ok_or(DerError("truncated length"))?;
            if len_bytes.first() == Some(&0) {
                return Err(DerError("non-minimal length"));
            }
            let mut len = 0usize;
            for &b in len_bytes {
                len = len
                    .checked_mul(256)
                    .and_then(|l| l.checked_add(usize::from(b)))
                    .ok_or(DerError("length too large"))?;
            }
            if len < 0x80 {
                return Err(DerError("non-minimal length"));
            }
            after_len = rest;
            len
        };
        let (value, rest) =
            split_at_checked(after_len, len).ok_or(DerError("length exceeds data"))?;
        let header_len = data.len() - after_len.len();
        let raw = data
            .get(..header_len + len)
            .ok_or(DerError("length exceeds data"))?;
        self.rest = rest;
        Ok(Tlv { tag, value, raw })
    }

    /// Read the next TLV and require its tag.
    pub fn read(&mut self, expected: u8) -> Result<Tlv<'a>, DerError> {
        let tlv = self.read_any()?;
        if tlv.tag != expected {
            return Err(DerError("unexpected tag"));
        }
        Ok(tlv)
    }

    /// Read the next TLV only if it has tag `expected`.
    pub fn read_optional(&mut self, expected: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(expected) {
            self.read(expected).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Require that nothing is left.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError("trailing data"))
        }
    }
}

fn split_at_checked(data: &[u8], mid: usize) -> Option<(&[u8], &[u8])> {
    if mid <= data.len() {
        Some(data.split_at(mid))
    } else {
        None
    }
}

/// Parse `data` as exactly one TLV with tag `expected`, with nothing after it.
pub fn parse_single(data: &[u8], expected: u8) -> Result<Tlv<'_>, DerError> {
    let mut reader = Reader::new(data);
    let tlv = reader.read(expected)?;
    reader.finish()?;
    Ok(tlv)
}

/// The magnitude of a non-negative DER INTEGER: its contents without the sign-padding zero.
/// Rejects empty, negative and non-minimally encoded integers. Zero gives an empty slice.
pub fn unsigned_integer<'a>(tlv: &Tlv<'a>) -> Result<&'a [u8], DerError> {
    if tlv.tag != tag::INTEGER {
        return Err(DerError("expected INTEGER"));
    }
    match tlv.value {
        [] => Err(DerError("empty INTEGER")),
        [first, ..] if first & 0x80 != 0 => Err(DerError("negative INTEGER")),
        [0] => Ok(&[]),
        [0, rest @ ..] => match rest.first() {
            Some(b) if b & 0x80 != 0 => Ok(rest),
            _ => Err(DerError("non-minimal INTEGER")),
        },
        value => Ok(value),
    }
}

/// Append a DER length.
pub fn write_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        // Fits in one byte by the test above.
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// Append a TLV.
pub fn write_tlv(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    write_length(value.len(), out);
    out.extend_from_slice(value);
}

/// Append a non-negative INTEGER given as unsigned big-endian bytes (leading zeros allowed):
/// leading zeros are stripped and a zero byte is added when the high bit is set.
pub fn write_unsigned_integer(magnitude: &[u8], out: &mut Vec<u8>) {
    let skip = magnitude.iter().take_while(|&&b| b == 0).count();
    let digits = magnitude.get(skip..).unwrap_or_default();
    let mut value = Vec::with_capacity(digits.len() + 1);
    match digits.first() {
        None => value.push(0),
        Some(&b) if b & 0x80 != 0 => {
            value.push(0);
            value.extend_from_slice(digits);
        }
        Some(_) => value.extend_from_slice(digits),
    }
    write_tlv(tag::INTEGER, &value, out);
}

/// A SEQUENCE wrapping already-encoded contents.
pub fn sequence(contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    write_tlv(tag::SEQUENCE, contents, &mut out);
    out
}

/// The algorithm OID contents, optional parameters TLV and public key bytes of a
/// SubjectPublicKeyInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpkiParts<'a> {
    /// Contents of the algorithm OBJECT IDENTIFIER.
    pub algorithm: &'a [u8],
    /// The algorithm parameters, if present (a curve OID for EC, NULL for RSA).
    pub parameters: Option<Tlv<'a>>,
    /// The subjectPublicKey BIT STRING contents, without the unused-bits byte.
    pub public_key: &'a [u8],
}

/// Split a DER SubjectPublicKeyInfo into its parts (exactly one SEQUENCE, nothing after).
pub fn spki_parts(spki: &[u8]) -> Result<SpkiParts<'_>, DerError> {
    let outer = parse_single(spki, tag::SEQUENCE)?;
    let mut seq = outer.reader();
    let alg = seq.read(tag::SEQUENCE)?;
    let bits = seq.read(tag::BIT_STRING)?;
    seq.finish()?;
    let mut alg_reader = alg.reader();
    let algorithm = alg_reader.read(tag::OID)?.value;
    let parameters = if alg_reader.is_empty() {
        None
    } else {
        Some(alg_reader.read_any()?)
    };
    alg_reader.finish()?;
    let public_key = match bits.value.split_first() {
        Some((0, key)) => key,
        Some(_) => return Err(DerError("public key BIT STRING has unused bits")),
        None => return Err(DerError("empty BIT STRING")),
    };
    Ok(SpkiParts {
        algorithm,
        parameters,
        public_key,
    })
}

/// The full DER SubjectPublicKeyInfo (tag, length and contents) of an X.509 certificate.
pub fn certificate_spki(cert: &[u8]) -> Result<&[u8], DerError> {
    let certificate = parse_single(cert, tag::SEQUENCE)?;
    let mut cert_reader = certificate.reader();
    let tbs = cert_reader.read(tag::SEQUENCE)?;
    // signatureAlgorithm and signatureValue must follow.
    cert_reader.read(tag::SEQUENCE)?;
    cert_reader.read(tag::BIT_STRING)?;
    cert_reader.finish()?;

    let mut tbs_reader = tbs.reader();
    tbs_reader.read_optional(tag::CONTEXT_0)?; // version
    tbs_reader.read(tag::INTEGER)?; // serialNumber
    tbs_reader.read(tag::SEQUENCE)?; // signature
    tbs_reader.read(tag::SEQUENCE)?; // issuer
    tbs_reader.read(tag::SEQUENCE)?; // validity
    tbs_reader.read(tag::SEQUENCE)?; // subject
    let spki = tbs_reader.read(tag::SEQUENCE)?; // subjectPublicKeyInfo
    Ok(spki.raw)
}

/// Encode a SubjectPublicKeyInfo from its parts.
pub fn encode_spki(algorithm: &[u8], parameters: Option<&[u8]>, public_key: &[u8]) -> Vec<u8> {
    let mut alg = Vec::new();
    write_tlv(tag::OID, algorithm, &mut alg);
    if let Some(params) = parameters {
        alg.extend_from_slice(params);
    }
    let mut body = Vec::new();
    write_tlv(tag::SEQUENCE, &alg, &mut body);
    let mut bits = Vec::with_capacity(public_key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(public_key);
    write_tlv(tag::BIT_STRING, &bits, &mut body);
    sequence(&body)
}

/// Helpers shared by this crate's tests.
#[cfg(test)]
pub(crate) mod testutil {
    /// A small deterministic generator for garbage inputs (xorshift64).
    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testutil::XorShift;

    #[test]
    fn short_and_long_lengths() {
        let mut out = Vec::new();
        write_tlv(tag::OCTET_STRING, &[7; 5], &mut out);
        assert_eq!(out[..2], [0x04, 0x05]);
        let tlv = parse_single(&out, tag::OCTET_STRING).unwrap();
        assert_eq!(tlv.value, &[7; 5]);
        assert_eq!(tlv.raw, &out[..]);

        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 100_000] {
            let value = vec![0xab; len];
            let mut out = Vec::new();
            write_tlv(tag::OCTET_STRING, &value, &mut out);
            let tlv = parse_single(&out, tag::OCTET_STRING).unwrap();
            assert_eq!(tlv.value.len(), len);
            assert_eq!(tlv.raw.len(), out.len());
        }
    }

    #[test]
    fn length_encodings() {
        let mut out = Vec::new();
        write_length(0x80, &mut out);
        assert_eq!(out, [0x81, 0x80]);
        out.clear();
        write_length(0x1234, &mut out);
        assert_eq!(out, [0x82, 0x12, 0x34]);
    }

    #[test]
    fn rejects_non_der_lengths() {
        // Indefinite length.
        assert!(parse_single(&[0x30, 0x80, 0x00, 0x00], tag::SEQUENCE).is_err());
        // Long form for a short length.
        assert!(parse_single(&[0x04, 0x81, 0x01, 0xff], tag::OCTET_STRING).is_err());
        // Leading zero in the long form.
        let mut data = vec![0x04, 0x82, 0x00, 0x80];
        data.extend(vec![0; 0x80]);
        assert!(parse_single(&data, tag::OCTET_STRING).is_err());
        // Too many length bytes.
        assert!(parse_single(&[0x04, 0x85, 1, 0, 0, 0, 0], tag::OCTET_STRING).is_err());
        // Length beyond the data.
        assert!(parse_single(&[0x04, 0x05, 1, 2], tag::OCTET_STRING).is_err());
        assert!(parse_single(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff], tag::OCTET_STRING).is_err());
        // Trailing data.
        assert!(parse_single(&[0x05, 0x00, 0x00], tag::NULL).is_err());
        // Wrong tag, multi-byte tag, empty.
        assert!(parse_single(&[0x05, 0x00], tag::SEQUENCE).is_err());
        assert!(parse_single(&[0x1f, 0x01, 0x00], 0x1f).is_err());
        assert!(parse_single(&[], tag::NULL).is_err());
        assert!(parse_single(&[0x05], tag::NULL).is_err());
    }

    #[test]
    fn integers_roundtrip() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[0x02, 0x01, 0x00]),
            (&[0, 0], &[0x02, 0x01, 0x00]),
            (&[0x01], &[0x02, 0x01, 0x01]),
            (&[0x7f], &[0x02, 0x01, 0x7f]),
            (&[0x80], &[0x02, 0x02, 0x00, 0x80]),
            (&[0x00, 0x00, 0xff, 0x01], &[0x02, 0x03, 0x00, 0xff, 0x01]),
            (&[0x00, 0x12], &[0x02, 0x01, 0x12]),
        ];
        for (magnitude, der) in cases {
            let mut out = Vec::new();
            write_unsigned_integer(magnitude, &mut out);
            assert_eq!(&out[..], *der, "encoding {magnitude:?}");
            let tlv = parse_single(der, tag::INTEGER).unwrap();
            let back = unsigned_integer(&tlv).unwrap();
            let skip = magnitude.iter().take_while(|&&b| b == 0).count();
            assert_eq!(back, &magnitude[skip..]);
        }
    }

    #[test]
    fn long_integer_uses_long_form_length() {
        let magnitude = vec![0xffu8; 256];
        let mut out = Vec::new();
        write_unsigned_integer(&magnitude, &mut out);
        assert_eq!(&out[..5], &[0x02, 0x82, 0x01, 0x01, 0x00]);
        let tlv = parse_single(&out, tag::INTEGER).unwrap();
        assert_eq!(unsigned_integer(&tlv).unwrap(), &magnitude[..]);
    }

    #[test]
    fn rejects_bad_integers() {
        for der in [
            &[0x02, 0x00][..],
            &[0x02, 0x01, 0x80],
            &[0x02, 0x02, 0x00, 0x01],
            &[0x02, 0x02, 0xff, 0x80],
        ] {
            let tlv = parse_single(der, tag::INTEGER).unwrap();
            assert!(unsigned_integer(&tlv).is_err(), "{der:?}");
        }
        let tlv = parse_single(&[0x04, 0x01, 0x01], tag::OCTET_STRING).unwrap();
        assert!(unsigned_integer(&tlv).is_err());
    }

    #[test]
    fn nested_reader() {
        let mut inner = Vec::new();
        write_unsigned_integer(&[5], &mut inner);
        write_tlv(tag::NULL, &[], &mut inner);
        let seq = sequence(&inner);
        let tlv = parse_single(&seq, tag::SEQUENCE).unwrap();
        let mut r = tlv.reader();
        assert_eq!(r.peek_tag(), Some(tag::INTEGER));
        assert!(r.read_optional(tag::CONTEXT_0).unwrap().is_none());
        assert_eq!(r.read(tag::INTEGER).unwrap().value, &[5]);
        assert!(r.finish().is_err());
        assert_eq!(r.read(tag::NULL).unwrap().value, &[] as &[u8]);
        assert!(r.finish().is_ok());
        assert!(r.read_any().is_err());
    }

    #[test]
    fn spki_roundtrip() {
        let key = [4u8; 65];
        let mut params = Vec::new();
        write_tlv(tag::OID, oid::PRIME256V1, &mut params);
        let spki = encode_spki(oid::EC_PUBLIC_KEY, Some(&params), &key);
        let parts = spki_parts(&spki).unwrap();
        assert_eq!(parts.algorithm, oid::EC_PUBLIC_KEY);
        assert_eq!(parts.parameters.unwrap().value, oid::PRIME256V1);
        assert_eq!(parts.public_key, &key[..]);

        let spki = encode_spki(oid::ED25519, None, &[9; 32]);
        let parts = spki_parts(&spki).unwrap();
        assert_eq!(parts.algorithm, oid::ED25519);
        assert!(parts.parameters.is_none());
    }

    #[test]
    fn spki_rejects_unused_bits_and_trailing() {
        let mut spki = encode_spki(oid::ED25519, None, &[9; 32]);
        // The BIT STRING's unused-bits byte is right after its tag and length.
        let pos = spki.len() - 33;
        spki[pos] = 1;
        assert!(spki_parts(&spki).is_err());
        let mut spki = encode_spki(oid::ED25519, None, &[9; 32]);
        spki.push(0);
        assert!(spki_parts(&spki).is_err());
    }

    fn fake_certificate(version: bool) -> (Vec<u8>, Vec<u8>) {
        let spki = encode_spki(oid::ED25519, None, &[3; 32]);
        let mut tbs = Vec::new();
        if version {
            let mut v = Vec::new();
            write_unsigned_integer(&[2], &mut v);
            write_tlv(tag::CONTEXT_0, &v, &mut tbs);
        }
        write_unsigned_integer(&[0x81, 0x22], &mut tbs);
        let mut alg = Vec::new();
        write_tlv(tag::OID, oid::ED25519, &mut alg);
        write_tlv(tag::SEQUENCE, &alg, &mut tbs);
        write_tlv(tag::SEQUENCE, &[], &mut tbs); // issuer
        write_tlv(tag::SEQUENCE, &[], &mut tbs); // validity
        write_tlv(tag::SEQUENCE, &[], &mut tbs); // subject
        tbs.extend_from_slice(&spki);
        write_tlv(tag::CONTEXT_1, &[], &mut tbs); // extensions-ish
        let mut cert = Vec::new();
        write_tlv(tag::SEQUENCE, &tbs, &mut cert);
        write_tlv(tag::SEQUENCE, &alg, &mut cert);
        write_tlv(tag::BIT_STRING, &[0, 1, 2, 3], &mut cert);
        (sequence(&cert), spki)
    }

    #[test]
    fn certificate_walk() {
        for version in [true, false] {
            let (cert, spki) = fake_certificate(version);
            assert_eq!(certificate_spki(&cert).unwrap(), &spki[..]);
        }
        let (cert, _) = fake_certificate(true);
        for cut in 0..cert.len() {
            assert!(certificate_spki(&cert[..cut]).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let len = (rng.next() % 96) as usize;
            let mut data = rng.bytes(len);
            if i % 3 == 0 && !data.is_empty() {
                data[0] = tag::SEQUENCE;
            }
            let _ = parse_single(&data, tag::SEQUENCE);
            let _ = spki_parts(&data);
            let _ = certificate_spki(&data);
            let mut r = Reader::new(&data);
            while let Ok(tlv) = r.read_any() {
                let _ = unsigned_integer(&tlv);
                let mut inner = tlv.reader();
                while inner.read_any().is_ok() {}
            }
        }
        // Mutations of a valid certificate.
        let (cert, _) = fake_certificate(true);
        for i in 0..cert.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut c = cert.clone();
                c[i] ^= flip;
                let _ = certificate_spki(&c);
            }
        }
    }
}
