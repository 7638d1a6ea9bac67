//! The pure-Rust [`Crypto`] implementation (`rsa` with blinding, `p256`, `p384`,
//! `ed25519-dalek`, `sha2`): natively, and inside the VM when the host has no crypto
//! foreign functions.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::{check_fit, Crypto, CryptoError};
use crate::token::alg::Alg;
use crate::token::keys::{PrivateKey, PrivateKeyKind, PublicKey, PublicKeyKind};

/// The pure-Rust implementation (`rsa`, `p256`, `p384`, `ed25519-dalek`, `sha2`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl Crypto for RustCrypto {
    fn verify(&self, alg: Alg, key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        use rsa::pkcs1v15::Pkcs1v15Sign;
        use rsa::pss::Pss;

        check_fit(alg, key)?;
        fn bad<E>(_: E) -> CryptoError {
            CryptoError::BadSignature
        }
        match (key.kind(), alg) {
            (PublicKeyKind::Rsa(k), Alg::Rs256) => k
                .verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig)
                .map_err(bad),
            (PublicKeyKind::Rsa(k), Alg::Rs384) => k
                .verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg), sig)
                .map_err(bad),
            (PublicKeyKind::Rsa(k), Alg::Rs512) => k
                .verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg), sig)
                .map_err(bad),
            (PublicKeyKind::Rsa(k), Alg::Ps256) => k
                .verify(Pss::new::<Sha256>(), &Sha256::digest(msg), sig)
                .map_err(bad),
            (PublicKeyKind::Rsa(k), Alg::Ps384) => k
                .verify(Pss::new::<Sha384>(), &Sha384::digest(msg), sig)
                .map_err(bad),
            (PublicKeyKind::Rsa(k), Alg::Ps512) => k
                .verify(Pss::new::<Sha512>(), &Sha512::digest(msg), sig)
                .map_err(bad),
            (PublicKeyKind::P256(k), Alg::Es256) => {
                use p256::ecdsa::signature::Verifier;
                let sig = p256::ecdsa::Signature::from_slice(sig).map_err(bad)?;
                k.verify(msg, &sig).map_err(bad)
            }
            (PublicKeyKind::P384(k), Alg::Es384) => {
                use p384::ecdsa::signature::Verifier;
                let sig = p384::ecdsa::Signature::from_slice(sig).map_err(bad)?;
                k.verify(msg, &sig).map_err(bad)
            }
            (PublicKeyKind::Ed25519(k), Alg::EdDsa) => {
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(bad)?;
                k.verify_strict(msg, &sig).map_err(bad)
            }
            // check_fit rejected every other combination already.
            _ => Err(CryptoError::BadKey(format!(
                "{} does not fit a {} key",
                alg.name(),
                key.key_type_name()
            ))),
        }
    }

    fn sign(&self, key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match key.kind() {
            PrivateKeyKind::Rsa(k) => {
                // Blinding stays on (RUSTSEC-2023-0071): sign_with_rng blinds the private
                // operation with randomness from the host's CSPRNG.
                let mut rng = SeededRng::from_os()?;
                k.sign_with_rng(
                    &mut rng,
                    rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(msg),
                )
                .map_err(|_| CryptoError::BadKey("RSA signing failed".into()))
            }
            PrivateKeyKind::P256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k
                    .try_sign(msg)
                    .map_err(|_| CryptoError::BadKey("ECDSA signing failed".into()))?;
                Ok(sig.to_bytes().to_vec())
            }
        }
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        os_random(buf)
    }

    fn name(&self) -> &'static str {
        "rust"
    }
}

/// Random bytes from the operating system (WASI `random_get` inside the VM).
pub(crate) fn os_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|_| CryptoError::Rng)
}

/// A CSPRNG that cannot fail after construction: SHA-256 in counter mode over a 32-byte
/// seed drawn from the OS. `rand_core::OsRng::fill_bytes` panics when the OS source fails;
/// this one fails once, up front, with [`CryptoError::Rng`] instead. Used for RSA blinding.
pub(crate) struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRng {
    pub(crate) fn from_os() -> Result<SeededRng, CryptoError> {
        let mut seed = [0u8; 32];
        os_random(&mut seed)?;
        Ok(SeededRng {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        })
    }

    fn refill(&mut self) {
        let mut h = Sha256::new();
        h.update(b"registry-token-filter rng");
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        self.block = h.finalize().into();
        self.counter = self.counter.wrapping_add(1);
        self.used = 0;
    }
}

impl Drop for SeededRng {
    fn drop(&mut self) {
        self.seed = [0; 32];
        self.block = [0; 32];
        // Keep the wipe from being optimised away.
        std::hint::black_box(&self.seed);
        std::hint::black_box(&self.block);
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest.iter_mut() {
            if self.used >= self.block.len() {
                self.refill();
            }
            if let Some(b) = self.block.get(self.used) {
                *byte = *b;
            }
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}

#[cfg(test)]
mod tests;
