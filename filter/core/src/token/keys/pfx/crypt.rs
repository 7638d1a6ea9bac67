//! The password-based crypto of PKCS#12: the password's two encodings, the MAC check,
//! PBES2 and the legacy PBEs, and the PKCS#12 KDF (RFC 7292 Appendix B, ours: see the
//! parent module for why) with the iteration budget that bounds them all.

use cbc::cipher::{BlockCipher, BlockDecryptMut, InnerIvInit, KeyInit};
use hmac::{Mac, SimpleHmac};
use p256::elliptic_curve::zeroize::Zeroizing;
use sha2::digest::core_api::BlockSizeUser;
use sha2::digest::Digest;

use super::{algorithm_identifier, oid, oid_text, PfxError, MAX_TOTAL_ITERATIONS};
use crate::wire::der::{self, tag, Tlv};

/// The two encodings of the password: UTF-8 for PBES2, and the NUL-terminated UTF-16BE
/// (BMPString) of the PKCS#12 KDF.
pub(super) struct Passwords<'a> {
    pub(super) utf8: &'a [u8],
    pub(super) bmp: Zeroizing<Vec<u8>>,
}

impl<'a> Passwords<'a> {
    pub(super) fn new(password: &'a str) -> Self {
        let mut bmp = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
        for unit in password.encode_utf16().chain([0]) {
            bmp.extend_from_slice(&unit.to_be_bytes());
        }
        Passwords {
            utf8: password.as_bytes(),
            bmp,
        }
    }
}

// ---------------------------------------------------------------------------------------
// MAC
// ---------------------------------------------------------------------------------------

/// Check MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER
/// DEFAULT 1 } over the AuthenticatedSafe bytes. Returns the BMP password encoding that
/// verified: for an empty password, OpenSSL has written both `00 00` and nothing.
pub(super) fn verify_mac(
    mac_data: &Tlv<'_>,
    auth_safe: &[u8],
    passwords: &Passwords<'_>,
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, PfxError> {
    let mut r = mac_data.reader();
    let digest_info = r.read(tag::SEQUENCE)?;
    let salt = r.read(tag::OCTET_STRING)?.value;
    let iterations = match r.read_optional(tag::INTEGER)? {
        Some(t) => iteration_count(&t)?,
        None => 1,
    };
    r.finish()?;
    let mut d = digest_info.reader();
    let (digest_alg, params) = algorithm_identifier(&d.read(tag::SEQUENCE)?)?;
    if params.is_some_and(|p| p.tag != tag::NULL || !p.value.is_empty()) {
        return Err(PfxError::Malformed("MAC digest parameters"));
    }
    let expected = d.read(tag::OCTET_STRING)?.value;
    d.finish()?;

    let mut candidates = vec![passwords.bmp.clone()];
    if passwords.utf8.is_empty() {
        candidates.push(Zeroizing::new(Vec::new()));
    }
    for bmp in candidates {
        let ok = match digest_alg {
            a if a == oid::SHA1 => {
                mac_matches::<sha1::Sha1>(&bmp, salt, iterations, auth_safe, expected, budget)?
            }
            a if a == oid::SHA256 => {
                mac_matches::<sha2::Sha256>(&bmp, salt, iterations, auth_safe, expected, budget)?
            }
            other => return Err(PfxError::UnsupportedAlgorithm(oid_text(other))),
        };
        if ok {
            return Ok(bmp);
        }
    }
    Err(PfxError::WrongPassword)
}

fn mac_matches<D: Digest + BlockSizeUser + Clone>(
    bmp_password: &[u8],
    salt: &[u8],
    iterations: u64,
    data: &[u8],
    expected: &[u8],
    budget: &mut Budget,
) -> Result<bool, PfxError> {
    let out_len = <D as Digest>::output_size();
    let key = pkcs12_kdf::<D>(bmp_password, salt, 3, iterations, out_len, budget)?;
    let mut mac = <SimpleHmac<D> as KeyInit>::new_from_slice(&key)
        .map_err(|_| PfxError::Malformed("MAC key"))?;
    mac.update(data);
    // Constant-time comparison.
    Ok(mac.verify_slice(expected).is_ok())
}

// ---------------------------------------------------------------------------------------
// Decryption
// ---------------------------------------------------------------------------------------

/// Decrypt `ciphertext` under the password-based scheme of `algorithm`.
pub(super) fn decrypt(
    algorithm: &Tlv<'_>,
    ciphertext: &[u8],
    passwords: &Passwords<'_>,
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, PfxError> {
    let (alg, params) = algorithm_identifier(algorithm)?;
    if alg == oid::PBES2 {
        return pbes2(params, ciphertext, passwords.utf8, budget);
    }
    // pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER }
    let legacy = [
        oid::PBE_SHA1_3DES,
        oid::PBE_SHA1_2DES,
        oid::PBE_SHA1_RC2_128,
        oid::PBE_SHA1_RC2_40,
    ];
    if !legacy.contains(&alg) {
        return Err(PfxError::UnsupportedAlgorithm(oid_text(alg)));
    }
    let params = params.ok_or(PfxError::Malformed("PBE parameters missing"))?;
    let mut p = der::parse_single(params.raw, tag::SEQUENCE)?.reader();
    let salt = p.read(tag::OCTET_STRING)?.value;
    let iterations = iteration_count(&p.read(tag::INTEGER)?)?;
    p.finish()?;
    let bmp = &passwords.bmp;
    let kdf = |id: u8, len: usize, budget: &mut Budget| {
        pkcs12_kdf::<sha1::Sha1>(bmp, salt, id, iterations, len, budget)
    };
    if alg == oid::PBE_SHA1_3DES || alg == oid::PBE_SHA1_2DES {
        let key_len = if alg == oid::PBE_SHA1_3DES { 24 } else { 16 };
        let key = kdf(1, key_len, budget)?;
        let iv = kdf(2, 8, budget)?;
        if alg == oid::PBE_SHA1_3DES {
            cbc_decrypt(new_cipher::<des::TdesEde3>(&key)?, &iv, ciphertext)
        } else {
            cbc_decrypt(new_cipher::<des::TdesEde2>(&key)?, &iv, ciphertext)
        }
    } else {
        let key_len = if alg == oid::PBE_SHA1_RC2_128 { 16 } else { 5 };
        let key = kdf(1, key_len, budget)?;
        let iv = kdf(2, 8, budget)?;
        let cipher = rc2::Rc2::new_with_eff_key_len(&key, key_len * 8);
        cbc_decrypt(cipher, &iv, ciphertext)
    }
}

/// PBES2-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier (PBKDF2),
/// encryptionScheme AlgorithmIdentifier }; PBKDF2-params ::= SEQUENCE { salt OCTET STRING,
/// iterationCount INTEGER, keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT
/// hmacWithSHA1 }
fn pbes2(
    params: Option<Tlv<'_>>,
    ciphertext: &[u8],
    password: &[u8],
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, PfxError> {
    let params = params.ok_or(PfxError::Malformed("PBES2 parameters missing"))?;
    let mut p = der::parse_single(params.raw, tag::SEQUENCE)?.reader();
    let (kdf, kdf_params) = algorithm_identifier(&p.read(tag::SEQUENCE)?)?;
    let (scheme, scheme_params) = algorithm_identifier(&p.read(tag::SEQUENCE)?)?;
    p.finish()?;
    if kdf != oid::PBKDF2 {
        return Err(PfxError::UnsupportedAlgorithm(oid_text(kdf)));
    }
    let kdf_params = kdf_params.ok_or(PfxError::Malformed("PBKDF2 parameters missing"))?;
    let mut k = der::parse_single(kdf_params.raw, tag::SEQUENCE)?.reader();
    let salt = k.read(tag::OCTET_STRING)?.value;
    let iterations = iteration_count(&k.read(tag::INTEGER)?)?;
    let key_length = k.read_optional(tag::INTEGER)?;
    let prf = match k.read_optional(tag::SEQUENCE)? {
        Some(t) => algorithm_identifier(&t)?.0,
        None => oid::HMAC_SHA1,
    };
    k.finish()?;

    let (key_len, block_len) = match scheme {
        s if s == oid::AES128_CBC => (16, 16),
        s if s == oid::AES256_CBC => (32, 16),
        s if s == oid::DES_EDE3_CBC => (24, 8),
        other => return Err(PfxError::UnsupportedAlgorithm(oid_text(other))),
    };
    if let Some(len) = key_length {
        if der::unsigned_integer(&len)? != [key_len as u8] {
            return Err(PfxError::Malformed(
                "PBKDF2 key length does not fit the cipher",
            ));
        }
    }
    let iv = scheme_params
        .filter(|t| t.tag == tag::OCTET_STRING && t.value.len() == block_len)
        .ok_or(PfxError::Malformed("cipher IV"))?
        .value;

    let mut key = Zeroizing::new(vec![0u8; key_len]);
    let rounds = u32::try_from(iterations).map_err(|_| PfxError::TooLarge)?;
    let hash_len: usize = match prf {
        p if p == oid::HMAC_SHA1 => 20,
        p if p == oid::HMAC_SHA256 => 32,
        other => return Err(PfxError::UnsupportedAlgorithm(oid_text(other))),
    };
    budget.spend(iterations * key_len.div_ceil(hash_len) as u64)?;
    match prf {
        p if p == oid::HMAC_SHA1 => {
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, rounds, &mut key)
        }
        _ => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, rounds, &mut key),
    }

    match scheme {
        s if s == oid::AES128_CBC => cbc_decrypt(new_cipher::<aes::Aes128>(&key)?, iv, ciphertext),
        s if s == oid::AES256_CBC => cbc_decrypt(new_cipher::<aes::Aes256>(&key)?, iv, ciphertext),
        _ => cbc_decrypt(new_cipher::<des::TdesEde3>(&key)?, iv, ciphertext),
    }
}

fn new_cipher<C: KeyInit>(key: &[u8]) -> Result<C, PfxError> {
    C::new_from_slice(key).map_err(|_| PfxError::Malformed("cipher key length"))
}

/// CBC-decrypt and strip PKCS#7 padding. Bad padding after a verified MAC means the
/// contents were encrypted under another password.
fn cbc_decrypt<C: BlockCipher + BlockDecryptMut>(
    cipher: C,
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PfxError> {
    let block = C::block_size();
    if ciphertext.is_empty() || ciphertext.len().checked_rem(block) != Some(0) {
        return Err(PfxError::Malformed("ciphertext length"));
    }
    let decryptor = cbc::Decryptor::<C>::inner_iv_slice_init(cipher, iv)
        .map_err(|_| PfxError::Malformed("cipher IV"))?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = decryptor
        .decrypt_padded_mut::<cbc::cipher::block_padding::Pkcs7>(&mut buf)
        .map_err(|_| PfxError::WrongPassword)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

// ---------------------------------------------------------------------------------------
// Key derivation
// ---------------------------------------------------------------------------------------

/// Iterations left for this decode.
pub(super) struct Budget(pub(super) u64);

impl Budget {
    fn spend(&mut self, iterations: u64) -> Result<(), PfxError> {
        self.0 = self.0.checked_sub(iterations).ok_or(PfxError::TooLarge)?;
        Ok(())
    }
}

/// A positive iteration count; anything over the whole budget is [`PfxError::TooLarge`].
fn iteration_count(t: &Tlv<'_>) -> Result<u64, PfxError> {
    let digits = der::unsigned_integer(t)?;
    if digits.len() > 8 {
        return Err(PfxError::TooLarge);
    }
    let n = digits.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
    match n {
        0 => Err(PfxError::Malformed("zero iteration count")),
        n if n > MAX_TOTAL_ITERATIONS => Err(PfxError::TooLarge),
        n => Ok(n),
    }
}

/// The PKCS#12 key derivation of RFC 7292 Appendix B.2 (`id` 1: key, 2: IV, 3: MAC key).
fn pkcs12_kdf<D: Digest + BlockSizeUser>(
    bmp_password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u64,
    out_len: usize,
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, PfxError> {
    let v = D::block_size();
    let u = <D as Digest>::output_size();
    budget.spend(iterations * out_len.div_ceil(u) as u64)?;
    // S and P: salt and password repeated to a multiple of v bytes (empty stays empty).
    fn stretch(src: &[u8], v: usize) -> impl Iterator<Item = u8> + '_ {
        src.iter().copied().cycle().take(src.len().div_ceil(v) * v)
    }
    let mut i_block: Zeroizing<Vec<u8>> =
        Zeroizing::new(stretch(salt, v).chain(stretch(bmp_password, v)).collect());
    let diversifier = vec![id; v];
    let mut out = Zeroizing::new(Vec::with_capacity(out_len));
    loop {
        let mut a = D::new()
            .chain_update(&diversifier)
            .chain_update(&*i_block)
            .finalize();
        for _ in 1..iterations {
            a = D::digest(&a);
        }
        let take = u.min(out_len - out.len());
        out.extend_from_slice(a.get(..take).unwrap_or_default());
        if out.len() >= out_len {
            return Ok(out);
        }
        // I_j = (I_j + B + 1) mod 2^(8v), with B = A repeated to v bytes.
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for chunk in i_block.chunks_mut(v) {
            let mut carry = 1u16;
            for (x, y) in chunk.iter_mut().zip(&b).rev() {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_rfc7292_vectors() {
        // Test vectors from the PKCS#12 KDF (as used by OpenSSL's test suite):
        // password "smeg", salt 0A58CF64530D823F, 1 iteration, SHA-1.
        let password = Passwords::new("smeg");
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let mut budget = Budget(100);
        let key = pkcs12_kdf::<sha1::Sha1>(&password.bmp, &salt, 1, 1, 24, &mut budget).unwrap();
        assert_eq!(
            key.as_slice(),
            [
                0x8a, 0xaa, 0xe6, 0x29, 0x7b, 0x6c, 0xb0, 0x46, 0x42, 0xab, 0x5b, 0x07, 0x78, 0x51,
                0x28, 0x4e, 0xb7, 0x12, 0x8f, 0x1a, 0x2a, 0x7f, 0xbc, 0xa3
            ]
        );
        let iv = pkcs12_kdf::<sha1::Sha1>(&password.bmp, &salt, 2, 1, 8, &mut budget).unwrap();
        assert_eq!(
            iv.as_slice(),
            [0x79, 0x99, 0x3d, 0xfe, 0x04, 0x8d, 0x3b, 0x76]
        );
        assert_eq!(budget.0, 100 - 2 - 1);
    }

    #[test]
    fn budget_refuses_overspending() {
        let mut budget = Budget(10);
        assert_eq!(
            pkcs12_kdf::<sha1::Sha1>(&[0, 0], &[1], 3, 11, 20, &mut budget).unwrap_err(),
            PfxError::TooLarge
        );
    }
}
