//! The registry-token signing key (RSA → RS256, P-256 → ES256) from PEM (PKCS#8, PKCS#1,
//! SEC1), with the DER PKCS#8 that Envoy's `sign` foreign function takes.

use std::fmt;

use p256::elliptic_curve::zeroize::Zeroizing;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

use super::*;
use crate::token::alg::Alg;
use crate::wire::der::{self, oid, tag};

// ---------------------------------------------------------------------------------------
// Private (signing) keys
// ---------------------------------------------------------------------------------------

/// The parsed key inside a [`PrivateKey`].
// One signing key per configuration: a few hundred bytes inline do not matter.
#[allow(clippy::large_enum_variant)]
pub enum PrivateKeyKind {
    /// RSA, 2048 to 8192 bits: signs RS256.
    Rsa(RsaPrivateKey),
    /// P-256: signs ES256.
    P256(p256::ecdsa::SigningKey),
}

/// The registry-token signing key. Its `Debug` shows only the algorithm and thumbprint;
/// the DER copy is wiped on drop.
pub struct PrivateKey {
    kind: PrivateKeyKind,
    public: PublicKey,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.alg().name())
            .field("thumbprint", &self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

impl Clone for PrivateKey {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            PrivateKeyKind::Rsa(k) => PrivateKeyKind::Rsa(k.clone()),
            PrivateKeyKind::P256(k) => PrivateKeyKind::P256(k.clone()),
        };
        PrivateKey {
            kind,
            public: self.public.clone(),
            pkcs8: self.pkcs8.clone(),
        }
    }
}

impl PrivateKey {
    /// Parse a PEM private key: PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`, RSA or
    /// P-256) or SEC1 (`EC PRIVATE KEY`, P-256). Other blocks (certificates, `EC
    /// PARAMETERS`) are ignored; exactly one private key block is required. Encrypted keys,
    /// RSA keys under 2048 bits and other curves are refused.
    pub fn from_pem(pem: &str) -> Result<PrivateKey, KeyError> {
        let blocks = pem_blocks(pem)?;
        let mut keys = blocks.iter().filter(|b| b.label.contains("PRIVATE KEY"));
        let block = keys
            .next()
            .ok_or_else(|| KeyError::NotFound("no private key block found in PEM".into()))?;
        if keys.next().is_some() {
            return Err(KeyError::Malformed(
                "PEM holds more than one private key".into(),
            ));
        }
        if block.encrypted {
            return Err(KeyError::Encrypted);
        }
        match block.label.as_str() {
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                let key = RsaPrivateKey::from_pkcs1_der(&block.der)
                    .map_err(|_| KeyError::Malformed("invalid PKCS#1 RSA private key".into()))?;
                PrivateKey::from_rsa(key)
            }
            "EC PRIVATE KEY" => PrivateKey::from_sec1_der(&block.der),
            "PRIVATE KEY" => PrivateKey::from_pkcs8_der(&block.der),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
            "OPENSSH PRIVATE KEY" => Err(KeyError::Unsupported(
                "OpenSSH key format; convert it to PKCS#8 (ssh-keygen -p -m PKCS8)".into(),
            )),
            other => Err(KeyError::Unsupported(format!(
                "PEM block {}",
                quoted(other)
            ))),
        }
    }

    /// Parse a DER PKCS#8 `PrivateKeyInfo` holding an RSA or P-256 key.
    pub fn from_pkcs8_der(der_bytes: &[u8]) -> Result<PrivateKey, KeyError> {
        let (algorithm, curve) = pkcs8_algorithm(der_bytes)?;
        if algorithm == oid::RSA_ENCRYPTION {
            use rsa::pkcs8::DecodePrivateKey;
            let key = RsaPrivateKey::from_pkcs8_der(der_bytes)
                .map_err(|_| KeyError::Malformed("invalid PKCS#8 RSA private key".into()))?;
            PrivateKey::from_rsa(key)
        } else if algorithm == oid::EC_PUBLIC_KEY {
            check_signing_curve(curve)?;
            use p256::pkcs8::DecodePrivateKey;
            let key = p256::SecretKey::from_pkcs8_der(der_bytes)
                .map_err(|_| KeyError::Malformed("invalid PKCS#8 P-256 private key".into()))?;
            PrivateKey::from_p256(p256::ecdsa::SigningKey::from(key))
        } else if algorithm == oid::ED25519 {
            Err(KeyError::Unsupported(
                "Ed25519 signing keys (use RSA or P-256)".into(),
            ))
        } else {
            Err(KeyError::Unsupported("private key algorithm".into()))
        }
    }

    /// Parse a DER SEC1 `ECPrivateKey` on P-256.
    pub fn from_sec1_der(der_bytes: &[u8]) -> Result<PrivateKey, KeyError> {
        // ECPrivateKey ::= SEQUENCE { version, privateKey OCTET STRING,
        //                             [0] parameters OPTIONAL, [1] publicKey OPTIONAL }
        let (scalar_len, curve) = (|| {
            let seq = der::parse_single(der_bytes, tag::SEQUENCE)?;
            let mut r = seq.reader();
            r.read(tag::INTEGER)?;
            let scalar_len = r.read(tag::OCTET_STRING)?.value.len();
            let curve = match r.read_optional(tag::CONTEXT_0)? {
                Some(params) => Some(der::parse_single(params.value, tag::OID)?.value),
                None => None,
            };
            Ok::<_, der::DerError>((scalar_len, curve))
        })()
        .map_err(|e| KeyError::Malformed(format!("invalid SEC1 EC private key: {e}")))?;
        match curve {
            Some(curve) => check_signing_curve(Some(curve))?,
            // Without parameters the curve shows only in the scalar's length.
            None if scalar_len == 32 => {}
            None => {
                return Err(KeyError::Unsupported(format!(
                    "EC private key of {} bits (use P-256 for ES256, or RSA)",
                    scalar_len * 8
                )))
            }
        }
        let key = p256::SecretKey::from_sec1_der(der_bytes)
            .map_err(|_| KeyError::Malformed("invalid SEC1 P-256 private key".into()))?;
        PrivateKey::from_p256(p256::ecdsa::SigningKey::from(key))
    }

    /// Wrap an RSA key (2048 to 8192 bits).
    pub fn from_rsa(key: RsaPrivateKey) -> Result<PrivateKey, KeyError> {
        use rsa::pkcs8::EncodePrivateKey;
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(KeyError::TooSmall(bits));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError::TooLarge(bits));
        }
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|_| KeyError::Malformed("RSA key cannot be encoded as PKCS#8".into()))?;
        let public = rsa_kind(&key.n().to_bytes_be(), &key.e().to_bytes_be())?;
        let public = PublicKey::from_kind(public).with_alg(Alg::Rs256)?;
        Ok(PrivateKey {
            kind: PrivateKeyKind::Rsa(key),
            public,
            pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
        })
    }

    /// Wrap a P-256 key.
    pub fn from_p256(key: p256::ecdsa::SigningKey) -> Result<PrivateKey, KeyError> {
        use p256::pkcs8::EncodePrivateKey;
        let pkcs8 = p256::SecretKey::from(key.as_nonzero_scalar())
            .to_pkcs8_der()
            .map_err(|_| KeyError::Malformed("P-256 key cannot be encoded as PKCS#8".into()))?;
        let public =
            PublicKey::from_kind(PublicKeyKind::P256(*key.verifying_key())).with_alg(Alg::Es256)?;
        Ok(PrivateKey {
            kind: PrivateKeyKind::P256(key),
            public,
            pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
        })
    }

    /// The signing algorithm: RS256 for RSA, ES256 for P-256.
    pub fn alg(&self) -> Alg {
        match self.kind {
            PrivateKeyKind::Rsa(_) => Alg::Rs256,
            PrivateKeyKind::P256(_) => Alg::Es256,
        }
    }

    /// The public half (its `alg` is [`PrivateKey::alg`], no `kid`).
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// DER PKCS#8 `PrivateKeyInfo`, as Envoy's `sign` foreign function takes it.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The parsed key.
    pub fn kind(&self) -> &PrivateKeyKind {
        &self.kind
    }

    /// Signature length in bytes: the modulus size for RSA, 64 for ES256.
    pub fn signature_len(&self) -> usize {
        match &self.kind {
            PrivateKeyKind::Rsa(k) => k.size(),
            PrivateKeyKind::P256(_) => 64,
        }
    }
}

/// The algorithm OID and optional curve OID of a DER PKCS#8 PrivateKeyInfo.
pub(super) fn pkcs8_algorithm(der_bytes: &[u8]) -> Result<(&[u8], Option<&[u8]>), KeyError> {
    (|| {
        let seq = der::parse_single(der_bytes, tag::SEQUENCE)?;
        let mut r = seq.reader();
        r.read(tag::INTEGER)?;
        let alg = r.read(tag::SEQUENCE)?;
        let mut a = alg.reader();
        let algorithm = a.read(tag::OID)?.value;
        let curve = a.read_optional(tag::OID)?.map(|t| t.value);
        Ok::<_, der::DerError>((algorithm, curve))
    })()
    .map_err(|e| KeyError::Malformed(format!("invalid PKCS#8: {e}")))
}

pub(super) fn check_signing_curve(curve: Option<&[u8]>) -> Result<(), KeyError> {
    match curve {
        Some(c) if c == oid::PRIME256V1 => Ok(()),
        Some(c) if c == oid::SECP384R1 => Err(KeyError::Unsupported(
            "P-384 signing keys (use P-256 for ES256, or RSA)".into(),
        )),
        Some(c) if c == oid::SECP521R1 => Err(KeyError::Unsupported(
            "P-521 signing keys (use P-256 for ES256, or RSA)".into(),
        )),
        Some(_) => Err(KeyError::Unsupported(
            "EC curve (use P-256 for ES256, or RSA)".into(),
        )),
        None => Err(KeyError::Malformed("EC key without a named curve".into())),
    }
}
