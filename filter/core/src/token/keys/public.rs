//! Verification keys: JWK and SPKI parsing, RFC 7638 thumbprints, libtrust key ids, the
//! fit between a key and an `alg`.

use std::fmt;

use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};

use super::*;
use crate::token::alg::{sha256, Alg};
use crate::wire::b64;
use crate::wire::der::{self, oid, tag};

// ---------------------------------------------------------------------------------------
// Public keys
// ---------------------------------------------------------------------------------------

/// The parsed key inside a [`PublicKey`].
#[derive(Clone, Debug)]
pub enum PublicKeyKind {
    /// RSA, 2048 to 8192 bits.
    Rsa(RsaPublicKey),
    /// ECDSA on P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKeyKind {
    /// True when `alg` is defined for this key type.
    pub fn allows(&self, alg: Alg) -> bool {
        match self {
            PublicKeyKind::Rsa(_) => alg.is_rsa(),
            PublicKeyKind::P256(_) => alg == Alg::Es256,
            PublicKeyKind::P384(_) => alg == Alg::Es384,
            PublicKeyKind::Ed25519(_) => alg == Alg::EdDsa,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            PublicKeyKind::Rsa(_) => "RSA",
            PublicKeyKind::P256(_) => "EC P-256",
            PublicKeyKind::P384(_) => "EC P-384",
            PublicKeyKind::Ed25519(_) => "Ed25519",
        }
    }

    /// The only algorithm for single-algorithm key types.
    fn implied_alg(&self) -> Option<Alg> {
        match self {
            PublicKeyKind::Rsa(_) => None,
            PublicKeyKind::P256(_) => Some(Alg::Es256),
            PublicKeyKind::P384(_) => Some(Alg::Es384),
            PublicKeyKind::Ed25519(_) => Some(Alg::EdDsa),
        }
    }

    /// The RFC 7638 required members, in lexicographic order, base64url values.
    fn jwk_members(&self) -> Vec<(&'static str, String)> {
        match self {
            PublicKeyKind::Rsa(k) => vec![
                ("e", b64::url_encode(&k.e().to_bytes_be())),
                ("kty", "RSA".into()),
                ("n", b64::url_encode(&k.n().to_bytes_be())),
            ],
            PublicKeyKind::P256(k) => {
                let point = k.to_encoded_point(false);
                ec_members(
                    "P-256",
                    point.x().map(|v| &v[..]),
                    point.y().map(|v| &v[..]),
                )
            }
            PublicKeyKind::P384(k) => {
                let point = k.to_encoded_point(false);
                ec_members(
                    "P-384",
                    point.x().map(|v| &v[..]),
                    point.y().map(|v| &v[..]),
                )
            }
            PublicKeyKind::Ed25519(k) => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", b64::url_encode(k.as_bytes())),
            ],
        }
    }

    /// The RFC 7638 thumbprint input and the DER SubjectPublicKeyInfo, encoded as Go's
    /// `x509.MarshalPKIXPublicKey` does (RSA with NULL parameters, EC uncompressed with a
    /// named curve). An EC point is encoded once for both (each encoding leaves the
    /// curve's internal form again).
    fn canonical_and_spki(&self) -> (String, Vec<u8>) {
        let rsa_or_okp = |spki: Vec<u8>| {
            let mut canonical = String::with_capacity(512);
            canonical.push('{');
            for (i, (name, value)) in self.jwk_members().iter().enumerate() {
                if i > 0 {
                    canonical.push(',');
                }
                push_member(&mut canonical, name, value);
            }
            canonical.push('}');
            (canonical, spki)
        };
        match self {
            PublicKeyKind::Rsa(k) => {
                let mut body = Vec::new();
                der::write_unsigned_integer(&k.n().to_bytes_be(), &mut body);
                der::write_unsigned_integer(&k.e().to_bytes_be(), &mut body);
                let rsa_public_key = der::sequence(&body);
                rsa_or_okp(der::encode_spki(
                    oid::RSA_ENCRYPTION,
                    Some(&[tag::NULL, 0]),
                    &rsa_public_key,
                ))
            }
            PublicKeyKind::P256(k) => {
                let point = k.to_encoded_point(false);
                ec_canonical_and_spki("P-256", oid::PRIME256V1, point.as_bytes())
            }
            PublicKeyKind::P384(k) => {
                let point = k.to_encoded_point(false);
                ec_canonical_and_spki("P-384", oid::SECP384R1, point.as_bytes())
            }
            PublicKeyKind::Ed25519(k) => {
                rsa_or_okp(der::encode_spki(oid::ED25519, None, k.as_bytes()))
            }
        }
    }
}

pub(super) fn ec_members(
    crv: &'static str,
    x: Option<&[u8]>,
    y: Option<&[u8]>,
) -> Vec<(&'static str, String)> {
    vec![
        ("crv", crv.into()),
        ("kty", "EC".into()),
        ("x", x.map(b64::url_encode).unwrap_or_default()),
        ("y", y.map(b64::url_encode).unwrap_or_default()),
    ]
}

/// `"name":"value"`, appended.
fn push_member(out: &mut String, name: &str, value: &str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":\"");
    out.push_str(value);
    out.push('"');
}

/// An EC key's RFC 7638 thumbprint input and its DER SPKI, both from its uncompressed
/// SEC1 point (`0x04‖x‖y`, coordinates of equal length).
fn ec_canonical_and_spki(crv: &str, curve_oid: &[u8], point: &[u8]) -> (String, Vec<u8>) {
    let coords = point.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    let mut canonical = String::with_capacity(40 + 2 * (x.len() * 4).div_ceil(3));
    canonical.push('{');
    push_member(&mut canonical, "crv", crv);
    canonical.push(',');
    push_member(&mut canonical, "kty", "EC");
    canonical.push(',');
    push_member(&mut canonical, "x", &b64::url_encode(x));
    canonical.push(',');
    push_member(&mut canonical, "y", &b64::url_encode(y));
    canonical.push('}');
    let mut curve = Vec::with_capacity(2 + curve_oid.len());
    der::write_tlv(tag::OID, curve_oid, &mut curve);
    (
        canonical,
        der::encode_spki(oid::EC_PUBLIC_KEY, Some(&curve), point),
    )
}

/// A verification key: parsed key, DER SPKI, RFC 7638 thumbprint, optional `kid` and
/// optional `alg` restriction (from the JWK).
#[derive(Clone)]
pub struct PublicKey {
    kind: PublicKeyKind,
    spki: Vec<u8>,
    thumbprint: String,
    kid: Option<String>,
    alg: Option<Alg>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("type", &self.kind.type_name())
            .field("thumbprint", &self.thumbprint)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl PublicKey {
    pub(super) fn from_kind(kind: PublicKeyKind) -> PublicKey {
        // Names and values are ASCII without quotes or backslashes: no escaping needed.
        let (canonical, spki) = kind.canonical_and_spki();
        let thumbprint = b64::url_encode(&sha256(canonical.as_bytes()));
        PublicKey {
            kind,
            spki,
            thumbprint,
            kid: None,
            alg: None,
        }
    }

    /// Parse a public JWK (RFC 7517/7518): `kty` `RSA` (2048–8192 bits), `EC` (`P-256`,
    /// `P-384`, point on the curve) or `OKP` (`Ed25519`). Private members, `kty: oct`,
    /// a `use` other than `sig`, non-canonical base64url and an `alg` that does not fit the
    /// key are refused. `kid` and `alg` are kept.
    pub fn from_jwk(jwk: &Value) -> Result<PublicKey, KeyError> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| KeyError::Malformed("JWK is not a JSON object".into()))?;
        if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|m| obj.contains_key(*m)) {
            return Err(KeyError::PrivateMember(member));
        }
        let kty = required_str(obj, "kty")?;
        if kty == "oct" {
            return Err(KeyError::Symmetric);
        }
        match obj.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(Value::String(u)) => return Err(KeyError::WrongUse(quoted(u))),
            Some(_) => return Err(KeyError::Malformed("JWK \"use\" is not a string".into())),
        }
        let alg = match obj.get("alg") {
            None => None,
            Some(Value::String(name)) => Some(
                Alg::parse(name)
                    .ok_or_else(|| KeyError::Unsupported(format!("JWK alg {}", quoted(name))))?,
            ),
            Some(_) => return Err(KeyError::Malformed("JWK \"alg\" is not a string".into())),
        };
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(KeyError::Malformed("JWK \"kid\" is not a string".into())),
        };
        let kind = match kty {
            "RSA" => {
                let n = member_bytes(obj, "n")?;
                let e = member_bytes(obj, "e")?;
                rsa_kind(&n, &e)?
            }
            "EC" => {
                let crv = required_str(obj, "crv")?;
                let len = match crv {
                    "P-256" => 32,
                    "P-384" => 48,
                    other => {
                        return Err(KeyError::Unsupported(format!("EC curve {}", quoted(other))))
                    }
                };
                let x = member_bytes(obj, "x")?;
                let y = member_bytes(obj, "y")?;
                if x.len() != len || y.len() != len {
                    return Err(KeyError::Malformed(format!(
                        "{crv} coordinates must be {len} bytes"
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                ec_kind(crv, &point)?
            }
            "OKP" => {
                let crv = required_str(obj, "crv")?;
                if crv != "Ed25519" {
                    return Err(KeyError::Unsupported(format!("OKP curve {}", quoted(crv))));
                }
                ed25519_kind(&member_bytes(obj, "x")?)?
            }
            other => return Err(KeyError::Unsupported(format!("kty {}", quoted(other)))),
        };
        if let Some(alg) = alg {
            if !kind.allows(alg) {
                return Err(KeyError::Malformed(format!(
                    "JWK alg {} does not fit a {} key",
                    alg.name(),
                    kind.type_name()
                )));
            }
        }
        let mut key = PublicKey::from_kind(kind);
        key.kid = kid;
        key.alg = alg;
        Ok(key)
    }

    /// Parse a DER SubjectPublicKeyInfo (RSA, EC P-256/P-384, Ed25519). The stored DER is
    /// the canonical re-encoding (RSA with NULL parameters, uncompressed EC point).
    pub fn from_spki_der(spki: &[u8]) -> Result<PublicKey, KeyError> {
        let parts = der::spki_parts(spki).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let kind = match parts.algorithm {
            a if a == oid::RSA_ENCRYPTION => {
                match parts.parameters {
                    None => {}
                    Some(p) if p.tag == tag::NULL && p.value.is_empty() => {}
                    Some(_) => {
                        return Err(KeyError::Malformed(
                            "RSA key parameters must be NULL".into(),
                        ))
                    }
                }
                let seq = der::parse_single(parts.public_key, tag::SEQUENCE)
                    .map_err(|e| KeyError::Malformed(e.to_string()))?;
                let mut r = seq.reader();
                let fields = (|| {
                    let n = r.read(tag::INTEGER)?;
                    let e = r.read(tag::INTEGER)?;
                    r.finish()?;
                    Ok::<_, der::DerError>((der::unsigned_integer(&n)?, der::unsigned_integer(&e)?))
                })();
                let (n, e) = fields.map_err(|e| KeyError::Malformed(e.to_string()))?;
                rsa_kind(n, e)?
            }
            a if a == oid::EC_PUBLIC_KEY => {
                let curve = match parts.parameters {
                    Some(p) if p.tag == tag::OID => p.value,
                    _ => return Err(KeyError::Malformed("EC key without a named curve".into())),
                };
                if curve == oid::PRIME256V1 {
                    ec_kind("P-256", parts.public_key)?
                } else if curve == oid::SECP384R1 {
                    ec_kind("P-384", parts.public_key)?
                } else if curve == oid::SECP521R1 {
                    return Err(KeyError::Unsupported("EC curve P-521".into()));
                } else {
                    return Err(KeyError::Unsupported("EC curve".into()));
                }
            }
            a if a == oid::ED25519 => {
                if parts.parameters.is_some() {
                    return Err(KeyError::Malformed(
                        "Ed25519 key must not have parameters".into(),
                    ));
                }
                ed25519_kind(parts.public_key)?
            }
            a if a == oid::RSASSA_PSS => {
                return Err(KeyError::Unsupported(
                    "RSASSA-PSS-only keys (use an rsaEncryption key)".into(),
                ))
            }
            a if a == oid::ED448 => return Err(KeyError::Unsupported("Ed448".into())),
            _ => return Err(KeyError::Unsupported("public key algorithm".into())),
        };
        Ok(PublicKey::from_kind(kind))
    }

    /// Parse the first `PUBLIC KEY` (SPKI) or `CERTIFICATE` block of a PEM text.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        for block in pem_blocks(pem)? {
            match block.label.as_str() {
                "PUBLIC KEY" => return PublicKey::from_spki_der(&block.der),
                "CERTIFICATE" => return PublicKey::from_spki_der(&certificate_spki(&block.der)?),
                _ => {}
            }
        }
        Err(KeyError::NotFound(
            "no PUBLIC KEY or CERTIFICATE block found in PEM".into(),
        ))
    }

    /// True when this key may verify `alg`: the key type allows it and, if the JWK carried
    /// an `alg`, it is that one.
    pub fn fits(&self, alg: Alg) -> bool {
        self.kind.allows(alg) && (self.alg.is_none() || self.alg == Some(alg))
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// This key with `kid` set.
    pub fn with_kid(mut self, kid: String) -> Self {
        self.kid = Some(kid);
        self
    }

    /// The JWK `alg` restriction, if any.
    pub fn alg(&self) -> Option<Alg> {
        self.alg
    }

    /// This key restricted to `alg`; refused when `alg` does not fit the key type.
    pub fn with_alg(mut self, alg: Alg) -> Result<Self, KeyError> {
        if !self.kind.allows(alg) {
            return Err(KeyError::Malformed(format!(
                "alg {} does not fit a {} key",
                alg.name(),
                self.kind.type_name()
            )));
        }
        self.alg = Some(alg);
        Ok(self)
    }

    /// The canonical DER SubjectPublicKeyInfo (what Envoy's `verify_signature` takes).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The libtrust key ID (Docker distribution 2.x): SHA-256 of the DER SPKI, first 30
    /// bytes, base32 (RFC 4648, no padding), 12 groups of 4 characters joined by `:`.
    pub fn libtrust_kid(&self) -> String {
        let digest = sha256(&self.spki);
        let encoded = base32_nopad(digest.get(..30).unwrap_or(&digest));
        let mut out = String::with_capacity(59);
        for (i, c) in encoded.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(':');
            }
            out.push(c);
        }
        out
    }

    /// The public JWK: required members, `kid` if set, `use: sig`, and `alg` when known
    /// (the JWK's own, or the only one for EC and Ed25519 keys).
    pub fn to_jwk(&self) -> Value {
        let mut map = Map::new();
        for (name, value) in self.kind.jwk_members() {
            map.insert(name.into(), Value::String(value));
        }
        if let Some(kid) = &self.kid {
            map.insert("kid".into(), Value::String(kid.clone()));
        }
        map.insert("use".into(), Value::String("sig".into()));
        if let Some(alg) = self.alg.or_else(|| self.kind.implied_alg()) {
            map.insert("alg".into(), Value::String(alg.name().into()));
        }
        Value::Object(map)
    }

    /// The parsed key.
    pub fn kind(&self) -> &PublicKeyKind {
        &self.kind
    }

    /// `RSA`, `EC P-256`, `EC P-384` or `Ed25519`.
    pub fn key_type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// RSA modulus size in bits; the curve size for EC keys, 256 for Ed25519.
    pub fn bits(&self) -> usize {
        match &self.kind {
            PublicKeyKind::Rsa(k) => k.n().bits(),
            PublicKeyKind::P256(_) | PublicKeyKind::Ed25519(_) => 256,
            PublicKeyKind::P384(_) => 384,
        }
    }

    /// True when both hold the same key (equal thumbprints), whatever their kid or alg.
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.thumbprint == other.thumbprint
    }
}

pub(super) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, KeyError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(KeyError::Malformed(format!(
            "JWK \"{name}\" is not a string"
        ))),
        None => Err(KeyError::Malformed(format!("JWK has no \"{name}\""))),
    }
}

/// A required base64url member, strictly decoded (no padding, canonical trailing bits).
pub(super) fn member_bytes(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = required_str(obj, name)?;
    if text.is_empty() || text.len() > MAX_MEMBER_CHARS {
        return Err(KeyError::Malformed(format!(
            "JWK \"{name}\" has an invalid length"
        )));
    }
    b64::url_decode(text)
        .map_err(|_| KeyError::Malformed(format!("JWK \"{name}\" is not base64url")))
}

pub(super) fn rsa_kind(n: &[u8], e: &[u8]) -> Result<PublicKeyKind, KeyError> {
    let n = BigUint::from_bytes_be(n);
    let bits = n.bits();
    if bits < MIN_RSA_BITS {
        return Err(KeyError::TooSmall(bits));
    }
    if bits > MAX_RSA_BITS {
        return Err(KeyError::TooLarge(bits));
    }
    let e = BigUint::from_bytes_be(e);
    RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
        .map(PublicKeyKind::Rsa)
        .map_err(|_| KeyError::Malformed("invalid RSA public key (modulus or exponent)".into()))
}

pub(super) fn ec_kind(crv: &str, sec1: &[u8]) -> Result<PublicKeyKind, KeyError> {
    let bad = |_| KeyError::Malformed(format!("{crv} point is not on the curve"));
    match crv {
        "P-256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .map(PublicKeyKind::P256)
            .map_err(bad),
        "P-384" => p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .map(PublicKeyKind::P384)
            .map_err(bad),
        _ => Err(KeyError::Unsupported("EC curve".into())),
    }
}

pub(super) fn ed25519_kind(bytes: &[u8]) -> Result<PublicKeyKind, KeyError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError::Malformed("Ed25519 key must be 32 bytes".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KeyError::Malformed("Ed25519 key is not a valid point".into()))?;
    if key.is_weak() {
        return Err(KeyError::Malformed("Ed25519 key has small order".into()));
    }
    Ok(PublicKeyKind::Ed25519(key))
}

/// RFC 4648 base32, upper case, without padding.
pub(super) fn base32_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            let index = ((buffer >> bits) & 0x1f) as usize;
            out.push(char::from(ALPHABET[index % 32]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        let index = ((buffer << (5 - bits)) & 0x1f) as usize;
        out.push(char::from(ALPHABET[index % 32]));
    }
    out
}

#[cfg(test)]
mod tests;
