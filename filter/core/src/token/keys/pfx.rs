//! PKCS#12 (PFX) decoding: password-protected signing key and certificates.
//!
//! The structure (ContentInfo, SafeContents, bags) and the order of the checks are here;
//! the password-based crypto (MAC, KDF, PBES2 and the legacy PBEs) is in `crypt`.
//!
//! Why not the `pkcs12`/`pkcs5` crates: `pkcs12` 0.1 has only types (pulling in `cms` and
//! `x509-cert`) and the KDF, no MAC check or decryption, and `pkcs5` lacks the PKCS#12 PBEs
//! of `-legacy` files; so the ASN.1 walk uses this crate's [`der`](crate::wire::der) reader and
//! the KDF (RFC 7292 Appendix B, 30 lines) is ours, in `crypt`; ciphers, HMAC, PBKDF2 are
//! RustCrypto's.
//!
//! [`decode`] takes the DER bytes of a `.pfx`/`.p12` file and its password and returns the
//! private key as DER PKCS#8 `PrivateKeyInfo` (what [`PrivateKey::from_pkcs8_der`] and
//! Envoy's `sign` take) and the X.509 certificates, leaf first. Supported, as OpenSSL writes
//! them:
//!
//! * OpenSSL 3 defaults: PBES2 (PBKDF2 with HMAC-SHA-256 or -SHA-1, AES-256-CBC, AES-128-CBC
//!   or DES-EDE3-CBC) for the key and certificates, MAC with HMAC-SHA-256 (or SHA-1);
//! * `-legacy`: pbeWithSHAAnd3-KeyTripleDES-CBC (also 2-key) for the key,
//!   pbeWithSHAAnd40BitRC2-CBC (also 128-bit) for the certificates, MAC with HMAC-SHA-1;
//! * shrouded (encrypted) and plain key bags, x509 certificate bags, nested SafeContents.
//!
//! SHA-384/512 (MAC or PRF) and AES-192 are left out on purpose: OpenSSL uses them only when
//! asked, and each costs the Wasm module about 10 KB ([`PfxError::UnsupportedAlgorithm`]).
//!
//! The MAC is verified before anything is decrypted, so a wrong password is
//! [`PfxError::WrongPassword`]. Files without a MAC (`-nomac`) or with a public-key
//! integrity mode are refused. Only DER is read (OpenSSL writes DER; BER with indefinite
//! lengths from some other tools is [`PfxError::Malformed`]). The input size and the total
//! KDF iterations are bounded so that a hostile file cannot pin the CPU.
//!
//! [`PrivateKey::from_pkcs8_der`]: crate::token::keys::PrivateKey::from_pkcs8_der

use std::fmt;

use p256::elliptic_curve::zeroize::Zeroizing;

use crate::token::keys::{PrivateKey, PublicKey};
use crate::wire::der::{self, tag, DerError, Tlv};

mod crypt;

use crypt::{decrypt, verify_mac, Budget, Passwords};

/// Largest PFX file accepted, in bytes.
pub const MAX_PFX_BYTES: usize = 64 * 1024;
/// Most key-derivation iterations one [`decode`] may spend, summed over the MAC check and
/// every decryption (an iteration being one hash of the PKCS#12 KDF or one HMAC pair of
/// PBKDF2, per output block). OpenSSL's default is 2048 per derivation.
pub const MAX_TOTAL_ITERATIONS: u64 = 10_000_000;
/// How deep `safeContentsBag`s may nest.
const MAX_NESTING: usize = 4;

/// What a PFX file holds.
pub struct Pfx {
    /// The private key as DER PKCS#8 `PrivateKeyInfo` (unencrypted), wiped on drop.
    pub private_key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// DER X.509 certificates: the one whose public key matches the private key first,
    /// then the others in file order. Empty when the file holds none.
    pub certificates_der: Vec<Vec<u8>>,
}

impl fmt::Debug for Pfx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pfx")
            .field("private_key_pkcs8_der", &"<redacted>")
            .field("certificates", &self.certificates_der.len())
            .finish()
    }
}

/// Why a PFX file could not be read. Display texts hold no key material or password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PfxError {
    /// Not a well-formed PFX; names the part that is wrong.
    Malformed(&'static str),
    /// The MAC does not verify under this password (or the verified contents do not
    /// decrypt under it).
    WrongPassword,
    /// The file holds no private key (e.g. `openssl pkcs12 -export -nokeys`).
    NoPrivateKey,
    /// An algorithm this decoder does not implement, as dotted OID text.
    UnsupportedAlgorithm(String),
    /// Larger than [`MAX_PFX_BYTES`] or needing more than [`MAX_TOTAL_ITERATIONS`].
    TooLarge,
}

impl fmt::Display for PfxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PfxError::Malformed(what) => write!(f, "malformed PKCS#12 file: {what}"),
            PfxError::WrongPassword => {
                write!(f, "PKCS#12 integrity check failed: wrong password")
            }
            PfxError::NoPrivateKey => write!(f, "PKCS#12 file holds no private key"),
            PfxError::UnsupportedAlgorithm(oid) => {
                write!(f, "PKCS#12 file uses an unsupported algorithm ({oid})")
            }
            PfxError::TooLarge => write!(
                f,
                "PKCS#12 file too large (over {MAX_PFX_BYTES} bytes or {MAX_TOTAL_ITERATIONS} key-derivation iterations)"
            ),
        }
    }
}

impl std::error::Error for PfxError {}

impl From<DerError> for PfxError {
    fn from(e: DerError) -> Self {
        PfxError::Malformed(e.0)
    }
}

/// Object identifiers (DER contents) used here.
mod oid {
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    pub const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    pub const KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
    ];
    pub const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    pub const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    pub const SAFE_CONTENTS_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x06,
    ];
    pub const X509_CERTIFICATE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    pub const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    pub const HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
    pub const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    pub const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
    pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    pub const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
    pub const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
    pub const PBE_SHA1_2DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x04];
    pub const PBE_SHA1_RC2_128: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x05];
    pub const PBE_SHA1_RC2_40: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
}

/// Decode a DER PKCS#12 file protected by `password` (UTF-8; empty for `-passout pass:`).
///
/// Exactly one private key is required ([`PfxError::NoPrivateKey`] if there is none).
/// Certificate bags of other types, CRL, secret and unknown bags, and bag attributes
/// (friendlyName, localKeyId) are ignored.
pub fn decode(pfx_der: &[u8], password: &str) -> Result<Pfx, PfxError> {
    if pfx_der.len() > MAX_PFX_BYTES {
        return Err(PfxError::TooLarge);
    }
    // PFX ::= SEQUENCE { version INTEGER {v3(3)}, authSafe ContentInfo, macData MacData OPTIONAL }
    let pfx = der::parse_single(pfx_der, tag::SEQUENCE)?;
    let mut r = pfx.reader();
    if r.read(tag::INTEGER)?.value != [3] {
        return Err(PfxError::Malformed("version is not 3"));
    }
    let auth_safe = r.read(tag::SEQUENCE)?;
    let mac_data = r.read_optional(tag::SEQUENCE)?;
    r.finish()?;

    let (content_type, content) = content_info(&auth_safe)?;
    if content_type != oid::DATA {
        // signedData: public-key integrity mode.
        return Err(PfxError::UnsupportedAlgorithm(oid_text(content_type)));
    }
    let auth_safe_bytes = der::parse_single(content, tag::OCTET_STRING)?.value;
    let mac_data = mac_data.ok_or(PfxError::Malformed(
        "no MAC: files without integrity protection are refused",
    ))?;

    let mut budget = Budget(MAX_TOTAL_ITERATIONS);
    let passwords = Passwords::new(password);
    let bmp_password = verify_mac(&mac_data, auth_safe_bytes, &passwords, &mut budget)?;
    let passwords = Passwords {
        utf8: password.as_bytes(),
        bmp: bmp_password,
    };

    // AuthenticatedSafe ::= SEQUENCE OF ContentInfo
    let mut found = Found::default();
    let mut infos = der::parse_single(auth_safe_bytes, tag::SEQUENCE)?.reader();
    while !infos.is_empty() {
        let info = infos.read(tag::SEQUENCE)?;
        let (content_type, content) = content_info(&info)?;
        if content_type == oid::DATA {
            let safe = der::parse_single(content, tag::OCTET_STRING)?;
            safe_contents(safe.value, &passwords, &mut budget, &mut found, 0)?;
        } else if content_type == oid::ENCRYPTED_DATA {
            let plain = encrypted_data(content, &passwords, &mut budget)?;
            safe_contents(&plain, &passwords, &mut budget, &mut found, 0)?;
        } else {
            // envelopedData: public-key privacy mode.
            return Err(PfxError::UnsupportedAlgorithm(oid_text(content_type)));
        }
    }

    let key = found.key.ok_or(PfxError::NoPrivateKey)?;
    let certificates_der = order_leaf_first(&key, found.certs);
    Ok(Pfx {
        private_key_pkcs8_der: key,
        certificates_der,
    })
}

/// Put the first certificate whose public key is that of `pkcs8_der` (a DER PKCS#8
/// `PrivateKeyInfo`) in front, keeping the others in order. Unchanged if none matches.
pub fn order_leaf_first(pkcs8_der: &[u8], mut certs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    if let Some(i) = certs.iter().position(|c| key_matches(pkcs8_der, c)) {
        let leaf = certs.remove(i);
        certs.insert(0, leaf);
    }
    certs
}

// ---------------------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Found {
    key: Option<Zeroizing<Vec<u8>>>,
    certs: Vec<Vec<u8>>,
}

impl Found {
    fn add_key(&mut self, pkcs8: Zeroizing<Vec<u8>>) -> Result<(), PfxError> {
        // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING, … }
        let mut r = der::parse_single(&pkcs8, tag::SEQUENCE)?.reader();
        r.read(tag::INTEGER)?;
        r.read(tag::SEQUENCE)?;
        r.read(tag::OCTET_STRING)?;
        if self.key.is_some() {
            return Err(PfxError::Malformed("more than one private key"));
        }
        self.key = Some(pkcs8);
        Ok(())
    }
}

/// ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }: the type and the
/// inner TLV's encoding.
fn content_info<'a>(info: &Tlv<'a>) -> Result<(&'a [u8], &'a [u8]), PfxError> {
    let mut r = info.reader();
    let content_type = r.read(tag::OID)?.value;
    let content = r.read(tag::CONTEXT_0)?;
    r.finish()?;
    Ok((content_type, content.value))
}

/// EncryptedData ::= SEQUENCE { version, EncryptedContentInfo ::= SEQUENCE { contentType,
/// contentEncryptionAlgorithm, encryptedContent [0] IMPLICIT OCTET STRING } }
fn encrypted_data(
    content: &[u8],
    passwords: &Passwords<'_>,
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, PfxError> {
    let mut r = der::parse_single(content, tag::SEQUENCE)?.reader();
    r.read(tag::INTEGER)?;
    let eci = r.read(tag::SEQUENCE)?;
    r.finish()?;
    let mut e = eci.reader();
    if e.read(tag::OID)?.value != oid::DATA {
        return Err(PfxError::Malformed("encrypted content is not data"));
    }
    let algorithm = e.read(tag::SEQUENCE)?;
    // [0] IMPLICIT OCTET STRING, primitive in DER.
    let ciphertext = e.read(0x80)?;
    e.finish()?;
    decrypt(&algorithm, ciphertext.value, passwords, budget)
}

/// SafeContents ::= SEQUENCE OF SafeBag; SafeBag ::= SEQUENCE { bagId OID,
/// bagValue [0] EXPLICIT ANY, bagAttributes SET OF Attribute OPTIONAL }
fn safe_contents(
    data: &[u8],
    passwords: &Passwords<'_>,
    budget: &mut Budget,
    found: &mut Found,
    depth: usize,
) -> Result<(), PfxError> {
    if depth > MAX_NESTING {
        return Err(PfxError::Malformed("SafeContents nested too deeply"));
    }
    let mut bags = der::parse_single(data, tag::SEQUENCE)?.reader();
    while !bags.is_empty() {
        let mut bag = bags.read(tag::SEQUENCE)?.reader();
        let bag_id = bag.read(tag::OID)?.value;
        let value = bag.read(tag::CONTEXT_0)?.value;
        bag.read_optional(tag::SET)?;
        bag.finish()?;
        if bag_id == oid::KEY_BAG {
            let key = der::parse_single(value, tag::SEQUENCE)?;
            found.add_key(Zeroizing::new(key.raw.to_vec()))?;
        } else if bag_id == oid::SHROUDED_KEY_BAG {
            // EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }
            let mut epki = der::parse_single(value, tag::SEQUENCE)?.reader();
            let algorithm = epki.read(tag::SEQUENCE)?;
            let ciphertext = epki.read(tag::OCTET_STRING)?;
            epki.finish()?;
            let key = decrypt(&algorithm, ciphertext.value, passwords, budget)?;
            found.add_key(key)?;
        } else if bag_id == oid::CERT_BAG {
            // CertBag ::= SEQUENCE { certId OID, certValue [0] EXPLICIT OCTET STRING }
            let mut cert_bag = der::parse_single(value, tag::SEQUENCE)?.reader();
            let cert_type = cert_bag.read(tag::OID)?.value;
            let cert_value = cert_bag.read(tag::CONTEXT_0)?;
            cert_bag.finish()?;
            if cert_type == oid::X509_CERTIFICATE {
                let cert = der::parse_single(cert_value.value, tag::OCTET_STRING)?.value;
                der::certificate_spki(cert)
                    .map_err(|_| PfxError::Malformed("invalid X.509 certificate"))?;
                found.certs.push(cert.to_vec());
            }
        } else if bag_id == oid::SAFE_CONTENTS_BAG {
            let inner = der::parse_single(value, tag::SEQUENCE)?;
            safe_contents(inner.raw, passwords, budget, found, depth + 1)?;
        }
        // crlBag, secretBag and unknown bags are skipped.
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
fn algorithm_identifier<'a>(t: &Tlv<'a>) -> Result<(&'a [u8], Option<Tlv<'a>>), PfxError> {
    let mut r = t.reader();
    let alg = r.read(tag::OID)?.value;
    let params = if r.is_empty() {
        None
    } else {
        Some(r.read_any()?)
    };
    r.finish()?;
    Ok((alg, params))
}

/// Dotted text of an OID's DER contents, for error messages.
fn oid_text(oid: &[u8]) -> String {
    if oid.is_empty() || oid.len() > 32 {
        return "invalid OID".into();
    }
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        if value > u64::MAX >> 7 {
            return "invalid OID".into();
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    if oid.last().is_some_and(|b| b & 0x80 != 0) {
        return "invalid OID".into();
    }
    let mut text = String::new();
    for (i, arc) in arcs.iter().enumerate() {
        if i == 0 {
            let (first, second) = match *arc {
                a if a < 40 => (0, a),
                a if a < 80 => (1, a - 40),
                a => (2, a - 80),
            };
            text.push_str(&format!("{first}.{second}"));
        } else {
            text.push_str(&format!(".{arc}"));
        }
    }
    text
}

/// Whether the certificate's public key is the public half of the PKCS#8 private key.
fn key_matches(pkcs8: &[u8], cert: &[u8]) -> bool {
    let Ok(spki) = der::certificate_spki(cert) else {
        return false;
    };
    match der_key_matches(pkcs8, spki) {
        Ok(Some(same)) => same,
        // No public key in the private key's encoding: derive it (RSA and P-256 only).
        _ => match (
            PrivateKey::from_pkcs8_der(pkcs8),
            PublicKey::from_spki_der(spki),
        ) {
            (Ok(private), Ok(public)) => private.public().same_key(&public),
            _ => false,
        },
    }
}

/// Compare by encoding: RSA modulus and exponent, or the EC point that SEC1 keys usually
/// carry. `None` when the private key's encoding does not settle it.
fn der_key_matches(pkcs8: &[u8], spki: &[u8]) -> Result<Option<bool>, DerError> {
    let spki = der::spki_parts(spki)?;
    let mut r = der::parse_single(pkcs8, tag::SEQUENCE)?.reader();
    r.read(tag::INTEGER)?;
    let alg = r.read(tag::SEQUENCE)?;
    let private_key = r.read(tag::OCTET_STRING)?.value;
    let mut a = alg.reader();
    if a.read(tag::OID)?.value != spki.algorithm {
        return Ok(Some(false));
    }
    if spki.algorithm == der::oid::RSA_ENCRYPTION {
        // RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, … }
        // RSAPublicKey ::= SEQUENCE { modulus, publicExponent }
        let mut k = der::parse_single(private_key, tag::SEQUENCE)?.reader();
        k.read(tag::INTEGER)?;
        let (n, e) = (k.read(tag::INTEGER)?, k.read(tag::INTEGER)?);
        let mut p = der::parse_single(spki.public_key, tag::SEQUENCE)?.reader();
        let (pn, pe) = (p.read(tag::INTEGER)?, p.read(tag::INTEGER)?);
        return Ok(Some(n.raw == pn.raw && e.raw == pe.raw));
    }
    if spki.algorithm == der::oid::EC_PUBLIC_KEY {
        let curve = a.read_optional(tag::OID)?;
        if curve.map(|c| c.raw) != spki.parameters.map(|p| p.raw) {
            return Ok(Some(false));
        }
        // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL,
        //                             [1] publicKey BIT STRING OPTIONAL }
        let mut k = der::parse_single(private_key, tag::SEQUENCE)?.reader();
        k.read(tag::INTEGER)?;
        k.read(tag::OCTET_STRING)?;
        k.read_optional(tag::CONTEXT_0)?;
        if let Some(public) = k.read_optional(tag::CONTEXT_1)? {
            let bits = der::parse_single(public.value, tag::BIT_STRING)?;
            return Ok(Some(bits.value.get(1..) == Some(spki.public_key)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_text_dotted() {
        assert_eq!(oid_text(oid::PBES2), "1.2.840.113549.1.5.13");
        assert_eq!(oid_text(oid::SHA256), "2.16.840.1.101.3.4.2.1");
        assert_eq!(oid_text(oid::SHA1), "1.3.14.3.2.26");
        assert_eq!(oid_text(&[]), "invalid OID");
        assert_eq!(oid_text(&[0x2a, 0x86]), "invalid OID");
    }
}
