//! PEM blocks (RFC 7468) and certificates: the `x5c` chain and its public keys.

use p256::elliptic_curve::zeroize::Zeroizing;

use super::*;
use crate::wire::b64;
use crate::wire::der::{self};

// ---------------------------------------------------------------------------------------
// PEM
// ---------------------------------------------------------------------------------------

pub(super) struct PemBlock {
    pub(super) label: String,
    pub(super) encrypted: bool,
    pub(super) der: Zeroizing<Vec<u8>>,
}

/// Every `-----BEGIN X-----` … `-----END X-----` block, in order. Text outside blocks is
/// ignored (RFC 7468 explanatory text); RFC 1421 headers inside a block are skipped, and a
/// `Proc-Type: 4,ENCRYPTED` header marks the block encrypted.
pub(super) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = rest.get(start + BEGIN.len()..).unwrap_or_default();
        let label_end = after_begin
            .find(DASHES)
            .ok_or_else(|| KeyError::Malformed("unterminated PEM BEGIN line".into()))?;
        let label = after_begin.get(..label_end).unwrap_or_default();
        if label.len() > 64 || label.contains(['\n', '\r']) {
            return Err(KeyError::Malformed("invalid PEM label".into()));
        }
        let body_start = after_begin
            .get(label_end + DASHES.len()..)
            .unwrap_or_default();
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start.find(&end_marker).ok_or_else(|| {
            KeyError::Malformed(format!("PEM block {} has no END line", quoted(label)))
        })?;
        let body = body_start.get(..body_end).unwrap_or_default();
        let mut encrypted = false;
        let mut b64text = Zeroizing::new(String::with_capacity(body.len()));
        for line in body.lines() {
            if line.contains(':') {
                if line.contains("ENCRYPTED") {
                    encrypted = true;
                }
                continue;
            }
            b64text.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
        let der = if encrypted {
            Zeroizing::new(Vec::new())
        } else {
            Zeroizing::new(b64::std_decode(&b64text).map_err(|_| {
                KeyError::Malformed(format!("PEM block {} is not valid base64", quoted(label)))
            })?)
        };
        blocks.push(PemBlock {
            label: label.to_string(),
            encrypted,
            der,
        });
        rest = body_start
            .get(body_end + end_marker.len()..)
            .unwrap_or_default();
    }
    Ok(blocks)
}

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

/// The DER of every `CERTIFICATE` block of a PEM text, in order (for `x5c`, leaf first).
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, KeyError> {
    let certs: Vec<Vec<u8>> = pem_blocks(pem)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| b.der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(KeyError::NotFound(
            "no CERTIFICATE block found in PEM".into(),
        ));
    }
    for cert in &certs {
        certificate_spki(cert)?;
    }
    Ok(certs)
}

/// The DER SubjectPublicKeyInfo of an X.509 certificate, as encoded in the certificate.
/// Compare keys with `PublicKey::from_spki_der(..)?.same_key(..)` rather than bytes.
pub fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, KeyError> {
    der::certificate_spki(cert_der)
        .map(<[u8]>::to_vec)
        .map_err(|e| KeyError::Malformed(format!("invalid X.509 certificate: {e}")))
}
