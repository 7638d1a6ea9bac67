//! JOSE signature algorithms: the allow-list's vocabulary, and SHA-256.
//!
//! `none` and the HMAC algorithms are absent by construction: a token naming them never
//! parses to an [`Alg`], so no key can be chosen for it.

use std::fmt;

use sha2::{Digest, Sha256};

/// An asymmetric JWS algorithm. `none` and the HMAC algorithms are deliberately absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256, MGF1 SHA-256, salt length 32.
    Ps256,
    /// RSASSA-PSS with SHA-384, MGF1 SHA-384, salt length 48.
    Ps384,
    /// RSASSA-PSS with SHA-512, MGF1 SHA-512, salt length 64.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA; this crate supports the Ed25519 curve only.
    EdDsa,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// Parse an exact JOSE `alg` name (case-sensitive). `none`, `HS*` and anything
    /// unknown give `None`.
    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE name, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The hash name as Envoy's foreign functions spell it (`sha256`, `sha384`, `sha512`).
    /// EdDSA hashes internally (SHA-512).
    pub fn hash_name(self) -> &'static str {
        match self {
            Alg::Rs256 | Alg::Ps256 | Alg::Es256 => "sha256",
            Alg::Rs384 | Alg::Ps384 | Alg::Es384 => "sha384",
            Alg::Rs512 | Alg::Ps512 | Alg::EdDsa => "sha512",
        }
    }

    /// True for the RSA algorithms (RS* and PS*).
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
        )
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}
