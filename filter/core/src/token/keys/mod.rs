//! Public keys (JWK, SPKI), the signing key (PEM), JWKS key sets and certificates.
//!
//! * [`PublicKey`]: a parsed verification key with its DER SubjectPublicKeyInfo, its
//!   RFC 7638 thumbprint (computed once), optional `kid` and optional JWK `alg`.
//! * [`PrivateKey`]: the registry-token signing key (RSA → RS256, P-256 → ES256), with the
//!   DER PKCS#8 that Envoy's `sign` foreign function takes.
//! * [`KeySet`]: a JWKS (`{"keys":[…]}`) with lookup by `kid` and algorithm.
//! * [`pem_certificates`] / [`certificate_spki`]: certificates for `x5c` and its checks.
//!
//! Error messages ([`KeyError`]) never contain key material and quote untrusted strings
//! only escaped and truncated.

use std::fmt;

use serde_json::Value;

use crate::token::alg::Alg;

/// RSA keys below this many modulus bits are refused.
pub const MIN_RSA_BITS: usize = 2048;
/// RSA keys above this many modulus bits are refused (bounds verification cost).
pub const MAX_RSA_BITS: usize = 8192;
/// Longest base64url JWK member accepted (an 8192-bit modulus needs 1366 characters).
const MAX_MEMBER_CHARS: usize = 2048;
/// JWK members that carry private or symmetric key material.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a key could not be used. Display texts are safe to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Structurally invalid input (bad JSON shape, base64, DER, point not on curve, …).
    Malformed(String),
    /// A JWK carries a private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`).
    PrivateMember(&'static str),
    /// A symmetric (`kty: oct`) JWK.
    Symmetric,
    /// A key type, curve or algorithm this crate does not support.
    Unsupported(String),
    /// A JWK whose `use` is not `sig`.
    WrongUse(String),
    /// An RSA key smaller than [`MIN_RSA_BITS`].
    TooSmall(usize),
    /// An RSA key larger than [`MAX_RSA_BITS`].
    TooLarge(usize),
    /// An encrypted private key (PKCS#8 `ENCRYPTED PRIVATE KEY` or a `Proc-Type` header).
    Encrypted,
    /// The input holds nothing of the expected kind.
    NotFound(String),
}

impl KeyError {
    /// True for errors that only concern one key of a JWKS: [`KeySet::from_jwks`] skips
    /// such keys. Private or symmetric key material makes the whole set an error.
    pub fn is_skippable(&self) -> bool {
        !matches!(self, KeyError::PrivateMember(_) | KeyError::Symmetric)
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Malformed(msg) => write!(f, "malformed key: {msg}"),
            KeyError::PrivateMember(m) => {
                write!(
                    f,
                    "JWK contains private key member \"{m}\"; only public keys are allowed"
                )
            }
            KeyError::Symmetric => f.write_str("symmetric (kty \"oct\") keys are not allowed"),
            KeyError::Unsupported(msg) => write!(f, "unsupported key: {msg}"),
            KeyError::WrongUse(u) => write!(f, "JWK \"use\" is {u}, expected \"sig\""),
            KeyError::TooSmall(bits) => write!(
                f,
                "RSA key of {bits} bits is too small (minimum {MIN_RSA_BITS})"
            ),
            KeyError::TooLarge(bits) => write!(
                f,
                "RSA key of {bits} bits is too large (maximum {MAX_RSA_BITS})"
            ),
            KeyError::Encrypted => f.write_str(
                "encrypted private keys are not supported; decrypt it first \
                 (openssl pkcs8 -topk8 -nocrypt)",
            ),
            KeyError::NotFound(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for KeyError {}

/// Quote an untrusted string for an error message: escaped, at most 40 characters.
fn quoted(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    format!("\"{out}\"")
}
mod pem;
pub mod pfx;
mod private;
mod public;

pub use pem::*;
pub use private::*;
pub use public::*;

// ---------------------------------------------------------------------------------------
// Key sets
// ---------------------------------------------------------------------------------------

/// A set of verification keys, usually from a JWKS document.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
    skipped: usize,
    skip_reasons: Vec<String>,
}

impl KeySet {
    /// Parse a JWKS `{"keys":[…]}`. Keys of unsupported types or curves, `use: enc` keys
    /// and otherwise invalid keys are skipped (see [`KeySet::skipped`] and
    /// [`KeySet::skip_reasons`]); a key with private members or a symmetric key makes the
    /// whole set an error, as does a document that is not an object with a `keys` array.
    pub fn from_jwks(jwks: &Value) -> Result<KeySet, KeyError> {
        let entries = jwks
            .as_object()
            .ok_or_else(|| KeyError::Malformed("JWKS is not a JSON object".into()))?
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeyError::Malformed("JWKS has no \"keys\" array".into()))?;
        let mut set = KeySet::default();
        for (index, entry) in entries.iter().enumerate() {
            match PublicKey::from_jwk(entry) {
                Ok(key) => set.keys.push(key),
                Err(e) if e.is_skippable() => {
                    set.skipped += 1;
                    let kid = entry
                        .get("kid")
                        .and_then(Value::as_str)
                        .map(|k| format!(" (kid {})", quoted(k)))
                        .unwrap_or_default();
                    set.skip_reasons.push(format!("key {index}{kid}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(set)
    }

    /// A set holding exactly these keys.
    pub fn from_keys(keys: Vec<PublicKey>) -> KeySet {
        KeySet {
            keys,
            skipped: 0,
            skip_reasons: Vec::new(),
        }
    }

    /// Keys that may verify a token with this `kid` (if any) and `alg`: with a kid, the
    /// keys whose kid matches and that fit `alg`; without, all keys that fit `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Alg) -> Vec<&PublicKey> {
        self.keys
            .iter()
            .filter(|k| k.fits(alg))
            .filter(|k| kid.is_none() || k.kid() == kid)
            .collect()
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable keys.
    pub fn iter(&self) -> std::slice::Iter<'_, PublicKey> {
        self.keys.iter()
    }

    /// True when some key has this kid.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Number of JWKS entries skipped.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Why each skipped entry was skipped (safe to log).
    pub fn skip_reasons(&self) -> &[String] {
        &self.skip_reasons
    }

    /// The set as a JWKS document.
    pub fn to_jwks(&self) -> Value {
        serde_json::json!({ "keys": self.keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
    }
}

impl<'a> IntoIterator for &'a KeySet {
    type Item = &'a PublicKey;
    type IntoIter = std::slice::Iter<'a, PublicKey>;
    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter()
    }
}

// ---------------------------------------------------------------------------------------
// Test keys, shared by this crate's tests
// ---------------------------------------------------------------------------------------

/// Keys generated at test time (never committed). One RSA-2048 key per test binary.
#[cfg(test)]
pub(crate) mod testkeys {
    use super::*;
    use crate::wire::b64;
    use rsa::RsaPrivateKey;
    use std::sync::OnceLock;

    /// The RSA-2048 test key, generated once per test binary.
    pub(crate) fn rsa2048() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap())
    }

    /// [`rsa2048`] as a [`PrivateKey`].
    pub(crate) fn rsa_private() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::from_rsa(rsa2048().clone()).unwrap())
    }

    /// A valid-looking 2048-bit RSA public key with no known private key: a random odd
    /// modulus with the top bit set. Signatures never verify under it.
    pub(crate) fn unrelated_rsa_public() -> PublicKey {
        let mut n = [0u8; 256];
        getrandom::getrandom(&mut n).unwrap();
        n[0] |= 0x80;
        n[255] |= 1;
        PublicKey::from_jwk(&serde_json::json!({
            "kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"
        }))
        .unwrap()
    }

    pub(crate) fn p256_signing() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)
    }

    pub(crate) fn p256_private() -> PrivateKey {
        PrivateKey::from_p256(p256_signing()).unwrap()
    }

    pub(crate) fn p384_signing() -> p384::ecdsa::SigningKey {
        p384::ecdsa::SigningKey::random(&mut rand_core::OsRng)
    }

    pub(crate) fn ed25519_signing() -> ed25519_dalek::SigningKey {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).unwrap();
        ed25519_dalek::SigningKey::from_bytes(&seed)
    }
}

#[cfg(test)]
mod tests {
    use super::testkeys;
    use super::*;
    use crate::token::alg::sha256;
    use crate::wire::b64;
    use crate::wire::der::{self, oid, tag};

    use crate::wire::der::testutil::XorShift;
    use rsa::RsaPrivateKey;
    use serde_json::json;
    use serde_json::Map;

    /// RFC 7638 §3.1's example key.
    fn rfc7638_jwk() -> Value {
        json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        })
    }

    fn p256_jwk() -> (p256::ecdsa::SigningKey, Value) {
        let sk = testkeys::p256_signing();
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": b64::url_encode(point.x().unwrap()),
            "y": b64::url_encode(point.y().unwrap()),
        });
        (sk, jwk)
    }

    fn with(mut jwk: Value, name: &str, value: Value) -> Value {
        jwk.as_object_mut().unwrap().insert(name.into(), value);
        jwk
    }

    fn without(mut jwk: Value, name: &str) -> Value {
        jwk.as_object_mut().unwrap().remove(name);
        jwk
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        let key = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.kid(), Some("2011-04-29"));
        assert_eq!(key.alg(), Some(Alg::Rs256));
        assert_eq!(key.key_type_name(), "RSA");
        assert_eq!(key.bits(), 2048);
        // kid, alg and use do not change the thumbprint.
        let bare = PublicKey::from_jwk(&without(without(rfc7638_jwk(), "kid"), "alg")).unwrap();
        assert_eq!(bare.thumbprint(), key.thumbprint());
        assert!(bare.same_key(&key));
    }

    #[test]
    fn ec_thumbprint_matches_manual_computation() {
        let (_, jwk) = p256_jwk();
        let key = PublicKey::from_jwk(&jwk).unwrap();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            key.thumbprint(),
            b64::url_encode(&sha256(canonical.as_bytes()))
        );
    }

    #[test]
    fn ed25519_thumbprint_rfc8037_example() {
        // RFC 8037 §A.3.
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert!(key.fits(Alg::EdDsa));
        assert!(!key.fits(Alg::Es256));
    }

    #[test]
    fn rfc8037_signature_verifies() {
        use crate::token::crypto::{Crypto, RustCrypto};
        // RFC 8037 §A.4: the JWS over "Example of Ed25519 signing".
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let key = PublicKey::from_jwk(&jwk).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = b64::url_decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg").unwrap();
        RustCrypto
            .verify(Alg::EdDsa, &key, input.as_bytes(), &sig)
            .unwrap();
        assert!(RustCrypto.verify(Alg::EdDsa, &key, b"other", &sig).is_err());
    }

    #[test]
    fn rsa_jwk_roundtrip() {
        let key = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        let jwk = key.to_jwk();
        assert_eq!(jwk["n"], rfc7638_jwk()["n"]);
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kid"], "2011-04-29");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        for m in PRIVATE_MEMBERS {
            assert!(jwk.get(m).is_none());
        }
        let again = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
        assert_eq!(again.spki_der(), key.spki_der());
    }

    #[test]
    fn rsa_jwk_without_alg_has_no_alg() {
        let key = PublicKey::from_jwk(&without(rfc7638_jwk(), "alg")).unwrap();
        assert!(key.to_jwk().get("alg").is_none());
        for alg in Alg::ALL {
            assert_eq!(key.fits(alg), alg.is_rsa());
        }
    }

    #[test]
    fn jwk_alg_restricts_fits() {
        let key = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        for alg in Alg::ALL {
            assert_eq!(key.fits(alg), alg == Alg::Rs256, "{alg}");
        }
        let ps = PublicKey::from_jwk(&with(rfc7638_jwk(), "alg", json!("PS384"))).unwrap();
        assert!(ps.fits(Alg::Ps384) && !ps.fits(Alg::Rs256));
    }

    #[test]
    fn jwk_alg_must_fit_key_type_and_be_known() {
        assert!(matches!(
            PublicKey::from_jwk(&with(rfc7638_jwk(), "alg", json!("ES256"))),
            Err(KeyError::Malformed(_))
        ));
        for alg in ["none", "HS256", "RSA-OAEP", "rs256"] {
            assert!(matches!(
                PublicKey::from_jwk(&with(rfc7638_jwk(), "alg", json!(alg))),
                Err(KeyError::Unsupported(_))
            ));
        }
        assert!(matches!(
            PublicKey::from_jwk(&with(rfc7638_jwk(), "alg", json!(1))),
            Err(KeyError::Malformed(_))
        ));
        let (_, ec) = p256_jwk();
        assert!(PublicKey::from_jwk(&with(ec.clone(), "alg", json!("ES384"))).is_err());
        assert!(PublicKey::from_jwk(&with(ec, "alg", json!("ES256"))).is_ok());
    }

    #[test]
    fn private_members_rejected() {
        for member in PRIVATE_MEMBERS {
            let jwk = with(rfc7638_jwk(), member, json!("AQAB"));
            assert_eq!(
                PublicKey::from_jwk(&jwk).unwrap_err(),
                KeyError::PrivateMember(member)
            );
            let (_, ec) = p256_jwk();
            assert!(matches!(
                PublicKey::from_jwk(&with(ec, member, json!(""))),
                Err(KeyError::PrivateMember(_))
            ));
        }
        // Even a null-valued private member.
        assert!(matches!(
            PublicKey::from_jwk(&with(rfc7638_jwk(), "d", Value::Null)),
            Err(KeyError::PrivateMember("d"))
        ));
    }

    #[test]
    fn symmetric_rejected() {
        assert_eq!(
            PublicKey::from_jwk(&json!({"kty": "oct"})).unwrap_err(),
            KeyError::Symmetric
        );
        assert!(matches!(
            PublicKey::from_jwk(&json!({"kty": "oct", "k": "c2VjcmV0"})),
            Err(KeyError::PrivateMember("k"))
        ));
    }

    #[test]
    fn use_member() {
        assert!(PublicKey::from_jwk(&with(rfc7638_jwk(), "use", json!("sig"))).is_ok());
        assert!(matches!(
            PublicKey::from_jwk(&with(rfc7638_jwk(), "use", json!("enc"))),
            Err(KeyError::WrongUse(_))
        ));
        assert!(matches!(
            PublicKey::from_jwk(&with(rfc7638_jwk(), "use", json!("SIG"))),
            Err(KeyError::WrongUse(_))
        ));
        assert!(matches!(
            PublicKey::from_jwk(&with(rfc7638_jwk(), "use", json!(true))),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn small_rsa_rejected() {
        let mut n = vec![0xffu8; 128];
        n[127] = 0xfb;
        let jwk = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
        assert_eq!(
            PublicKey::from_jwk(&jwk).unwrap_err(),
            KeyError::TooSmall(1024)
        );
        // 2047 bits.
        let mut n = vec![0xffu8; 256];
        n[0] = 0x7f;
        let jwk = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
        assert_eq!(
            PublicKey::from_jwk(&jwk).unwrap_err(),
            KeyError::TooSmall(2047)
        );
        // Exactly 2048 and 4096 bits are fine.
        for len in [256usize, 512] {
            let n = vec![0xffu8; len];
            let jwk = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
            assert_eq!(PublicKey::from_jwk(&jwk).unwrap().bits(), len * 8);
        }
        let n = vec![0xffu8; 1025];
        let jwk = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
        assert!(PublicKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn rsa_bad_exponents_and_moduli() {
        let n = b64::url_encode(&[0xffu8; 256]);
        for e in ["AQ", "Ag", "AAAA", "AQAA"] {
            // 1, 2 (even), 0, 65536 (even)
            let jwk = json!({"kty": "RSA", "n": n, "e": e});
            assert!(PublicKey::from_jwk(&jwk).is_err(), "e={e}");
        }
        let even = b64::url_encode(&[0xfeu8; 256]);
        assert!(PublicKey::from_jwk(&json!({"kty": "RSA", "n": even, "e": "AQAB"})).is_err());
        // Leading zero octets are tolerated and canonicalised.
        let mut padded = vec![0u8];
        padded.extend([0xffu8; 256]);
        let a =
            PublicKey::from_jwk(&json!({"kty": "RSA", "n": b64::url_encode(&padded), "e": "AQAB"}))
                .unwrap();
        let b = PublicKey::from_jwk(&json!({"kty": "RSA", "n": n, "e": "AQAB"})).unwrap();
        assert_eq!(a.thumbprint(), b.thumbprint());
    }

    #[test]
    fn strict_base64url() {
        let good = rfc7638_jwk();
        let n = good["n"].as_str().unwrap().to_string();
        for bad_n in [
            format!("{n}="),
            n.replace('-', "+"),
            n.replace('_', "/"),
            format!("{} ", n),
            format!("{}\n{}", &n[..10], &n[10..]),
            String::new(),
        ] {
            assert!(PublicKey::from_jwk(&with(good.clone(), "n", json!(bad_n))).is_err());
        }
        // Non-canonical trailing bits: "AQAB" is canonical, "AQAC" is not for 3 bytes? It is
        // (4 chars = 3 bytes). "AQE" decodes to 2 bytes; "AQF" has non-zero trailing bits.
        assert!(b64::url_decode("AQF").is_err());
        assert!(PublicKey::from_jwk(&with(good, "e", json!("AQF"))).is_err());
    }

    #[test]
    fn missing_and_mistyped_members() {
        assert!(PublicKey::from_jwk(&json!({})).is_err());
        assert!(PublicKey::from_jwk(&json!({"kty": 1})).is_err());
        assert!(PublicKey::from_jwk(&without(rfc7638_jwk(), "n")).is_err());
        assert!(PublicKey::from_jwk(&without(rfc7638_jwk(), "e")).is_err());
        assert!(PublicKey::from_jwk(&with(rfc7638_jwk(), "n", json!(5))).is_err());
        assert!(PublicKey::from_jwk(&with(rfc7638_jwk(), "kid", json!(5))).is_err());
        assert!(PublicKey::from_jwk(&json!([1, 2])).is_err());
        assert!(PublicKey::from_jwk(&json!("RSA")).is_err());
        assert!(PublicKey::from_jwk(&Value::Null).is_err());
        let (_, ec) = p256_jwk();
        assert!(PublicKey::from_jwk(&without(ec.clone(), "crv")).is_err());
        assert!(PublicKey::from_jwk(&without(ec.clone(), "y")).is_err());
        assert!(PublicKey::from_jwk(&without(ec, "x")).is_err());
    }

    #[test]
    fn unsupported_types_and_curves() {
        let (_, ec) = p256_jwk();
        for (kty, crv) in [
            ("EC", "P-521"),
            ("EC", "secp256k1"),
            ("OKP", "X25519"),
            ("OKP", "Ed448"),
        ] {
            let jwk = with(with(ec.clone(), "kty", json!(kty)), "crv", json!(crv));
            assert!(
                matches!(PublicKey::from_jwk(&jwk), Err(KeyError::Unsupported(_))),
                "{crv}"
            );
        }
        assert!(matches!(
            PublicKey::from_jwk(&json!({"kty": "DSA"})),
            Err(KeyError::Unsupported(_))
        ));
    }

    #[test]
    fn ec_point_must_be_on_curve() {
        let (_, jwk) = p256_jwk();
        let mut y = b64::url_decode(jwk["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        let bad = with(jwk.clone(), "y", json!(b64::url_encode(&y)));
        assert!(matches!(
            PublicKey::from_jwk(&bad),
            Err(KeyError::Malformed(_))
        ));
        // Wrong coordinate length (leading byte dropped or added).
        let x = b64::url_decode(jwk["x"].as_str().unwrap()).unwrap();
        let short = with(jwk.clone(), "x", json!(b64::url_encode(&x[1..])));
        assert!(PublicKey::from_jwk(&short).is_err());
        let mut long = vec![0u8];
        long.extend(&x);
        assert!(
            PublicKey::from_jwk(&with(jwk.clone(), "x", json!(b64::url_encode(&long)))).is_err()
        );
        // All-zero point.
        let zero = b64::url_encode(&[0u8; 32]);
        assert!(PublicKey::from_jwk(&with(with(jwk, "x", json!(zero)), "y", json!(zero))).is_err());
    }

    #[test]
    fn p384_jwk() {
        let sk = testkeys::p384_signing();
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = json!({"kty": "EC", "crv": "P-384",
            "x": b64::url_encode(point.x().unwrap()), "y": b64::url_encode(point.y().unwrap())});
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.key_type_name(), "EC P-384");
        assert!(key.fits(Alg::Es384) && !key.fits(Alg::Es256));
        assert_eq!(key.to_jwk()["alg"], "ES384");
        assert_eq!(key.bits(), 384);
        // 32-byte coordinates for P-384 are refused.
        let p256 = with(p256_jwk().1, "crv", json!("P-384"));
        assert!(PublicKey::from_jwk(&p256).is_err());
    }

    #[test]
    fn ed25519_weak_and_invalid_keys() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64::url_encode(&identity)});
        assert!(PublicKey::from_jwk(&jwk).is_err());
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64::url_encode(&[1u8; 31])});
        assert!(PublicKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn spki_matches_crate_encodings() {
        use p256::pkcs8::EncodePublicKey;
        let rsa_pub = testkeys::rsa2048().to_public_key();
        let key = testkeys::rsa_private().public();
        assert_eq!(
            key.spki_der(),
            rsa::pkcs8::EncodePublicKey::to_public_key_der(&rsa_pub)
                .unwrap()
                .as_bytes()
        );
        for from_crate in [
            testkeys::p256_signing().verifying_key().to_public_key_der(),
            testkeys::p384_signing().verifying_key().to_public_key_der(),
            testkeys::ed25519_signing()
                .verifying_key()
                .to_public_key_der(),
        ] {
            let from_crate = from_crate.unwrap();
            let key = PublicKey::from_spki_der(from_crate.as_bytes()).unwrap();
            assert_eq!(key.spki_der(), from_crate.as_bytes());
        }
    }

    #[test]
    fn spki_and_jwk_agree() {
        let (sk, jwk) = p256_jwk();
        let a = PublicKey::from_jwk(&jwk).unwrap();
        let der = p256::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
        let b = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(a.thumbprint(), b.thumbprint());
        assert_eq!(a.libtrust_kid(), b.libtrust_kid());
        let rsa_key = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        let again = PublicKey::from_spki_der(rsa_key.spki_der()).unwrap();
        assert_eq!(again.thumbprint(), rsa_key.thumbprint());
        assert_eq!(again.kid(), None);
        assert_eq!(again.alg(), None);
    }

    #[test]
    fn spki_compressed_point_is_canonicalised() {
        let sk = testkeys::p256_signing();
        let compressed = sk.verifying_key().to_encoded_point(true);
        let mut curve = Vec::new();
        der::write_tlv(tag::OID, oid::PRIME256V1, &mut curve);
        let spki = der::encode_spki(oid::EC_PUBLIC_KEY, Some(&curve), compressed.as_bytes());
        let key = PublicKey::from_spki_der(&spki).unwrap();
        let expected = p256::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
        assert_eq!(key.spki_der(), expected.as_bytes());
    }

    #[test]
    fn spki_rejections() {
        let ed = der::encode_spki(oid::ED448, None, &[0; 57]);
        assert!(matches!(
            PublicKey::from_spki_der(&ed),
            Err(KeyError::Unsupported(_))
        ));
        let mut curve = Vec::new();
        der::write_tlv(tag::OID, oid::SECP521R1, &mut curve);
        let p521 = der::encode_spki(oid::EC_PUBLIC_KEY, Some(&curve), &[4; 133]);
        assert!(matches!(
            PublicKey::from_spki_der(&p521),
            Err(KeyError::Unsupported(_))
        ));
        let no_curve = der::encode_spki(oid::EC_PUBLIC_KEY, None, &[4; 65]);
        assert!(PublicKey::from_spki_der(&no_curve).is_err());
        let pss = der::encode_spki(oid::RSASSA_PSS, None, &[0; 10]);
        assert!(matches!(
            PublicKey::from_spki_der(&pss),
            Err(KeyError::Unsupported(_))
        ));
        // RSA with non-NULL parameters.
        let key = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        let parts = der::spki_parts(key.spki_der()).unwrap();
        let mut params = Vec::new();
        der::write_tlv(tag::OID, oid::ED25519, &mut params);
        let odd = der::encode_spki(oid::RSA_ENCRYPTION, Some(&params), parts.public_key);
        assert!(PublicKey::from_spki_der(&odd).is_err());
        // RSA without parameters is tolerated and canonicalised.
        let bare = der::encode_spki(oid::RSA_ENCRYPTION, None, parts.public_key);
        assert_eq!(
            PublicKey::from_spki_der(&bare).unwrap().spki_der(),
            key.spki_der()
        );
        // Small RSA via SPKI.
        let mut body = Vec::new();
        der::write_unsigned_integer(&[0xff; 128], &mut body);
        der::write_unsigned_integer(&[1, 0, 1], &mut body);
        let small = der::encode_spki(oid::RSA_ENCRYPTION, Some(&[5, 0]), &der::sequence(&body));
        assert!(matches!(
            PublicKey::from_spki_der(&small),
            Err(KeyError::TooSmall(_))
        ));
        // Ed25519 with parameters.
        let ed = der::encode_spki(oid::ED25519, Some(&[5, 0]), &[9; 32]);
        assert!(PublicKey::from_spki_der(&ed).is_err());
    }

    #[test]
    fn base32_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_nopad(input.as_bytes()), expected);
        }
    }

    #[test]
    fn libtrust_kid_shape_and_value() {
        let key = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        let kid = key.libtrust_kid();
        let groups: Vec<&str> = kid.split(':').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 4
            && g.chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))));
        let digest = sha256(key.spki_der());
        assert_eq!(kid.replace(':', ""), base32_nopad(&digest[..30]));
    }

    #[test]
    fn libtrust_kid_known_vector() {
        // An Ed25519 key's SPKI is fixed-layout: 12-byte prefix + 32-byte key. For the
        // all-0x3b RFC 8037 key, compute the expected kid independently of PublicKey.
        let x = b64::url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend(&x);
        let key =
            PublicKey::from_jwk(&json!({"kty":"OKP","crv":"Ed25519","x": b64::url_encode(&x)}))
                .unwrap();
        assert_eq!(key.spki_der(), &spki[..]);
        let expected: String = base32_nopad(&sha256(&spki)[..30])
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(key.libtrust_kid(), expected);
    }

    #[test]
    fn with_kid_and_to_jwk() {
        let (_, jwk) = p256_jwk();
        let key = PublicKey::from_jwk(&jwk).unwrap().with_kid("k1".into());
        assert_eq!(key.kid(), Some("k1"));
        let out = key.to_jwk();
        assert_eq!(out["kid"], "k1");
        assert_eq!(out["alg"], "ES256");
        assert_eq!(out["use"], "sig");
        assert_eq!(out["crv"], "P-256");
        assert_eq!(out["x"], jwk["x"]);
        assert_eq!(out["y"], jwk["y"]);
        assert!(out.get("d").is_none());
        let debug = format!("{key:?}");
        assert!(debug.contains(key.thumbprint()));
        assert!(key.clone().with_alg(Alg::Rs256).is_err());
    }

    #[test]
    fn error_messages_do_not_echo_values() {
        let secretish = "AAAA-very-secret-looking-value-that-must-not-appear-AAAA";
        let cases = [
            with(rfc7638_jwk(), "n", json!(format!("{secretish}!"))),
            with(rfc7638_jwk(), "e", json!(format!("{secretish}="))),
            json!({"kty":"EC","crv":"P-256","x":secretish,"y":secretish}),
        ];
        for jwk in cases {
            let msg = PublicKey::from_jwk(&jwk).unwrap_err().to_string();
            assert!(!msg.contains("secret"), "{msg}");
        }
        // Untrusted names are escaped and truncated.
        let msg = PublicKey::from_jwk(&json!({"kty": format!("x\n{}", "y".repeat(100))}))
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\n') && msg.len() < 120, "{msg}");
    }

    // ---- KeySet -------------------------------------------------------------------

    #[test]
    fn keyset_candidates() {
        let (_, ec) = p256_jwk();
        let jwks = json!({"keys": [
            rfc7638_jwk(),
            with(without(rfc7638_jwk(), "alg"), "kid", json!("rsa-any")),
            with(ec.clone(), "kid", json!("ec1")),
            ec,
        ]});
        let set = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(set.len(), 4);
        assert!(!set.is_empty());
        assert_eq!(set.skipped(), 0);
        assert!(set.contains_kid("ec1") && set.contains_kid("2011-04-29"));
        assert!(!set.contains_kid("nope"));
        assert_eq!(set.candidates(Some("2011-04-29"), Alg::Rs256).len(), 1);
        assert_eq!(set.candidates(Some("2011-04-29"), Alg::Ps256).len(), 0);
        assert_eq!(set.candidates(Some("rsa-any"), Alg::Ps256).len(), 1);
        assert_eq!(set.candidates(None, Alg::Rs256).len(), 2);
        assert_eq!(set.candidates(None, Alg::Rs512).len(), 1);
        assert_eq!(set.candidates(None, Alg::Es256).len(), 2);
        assert_eq!(set.candidates(Some("ec1"), Alg::Es256).len(), 1);
        assert_eq!(set.candidates(Some("ec1"), Alg::Rs256).len(), 0);
        assert_eq!(set.candidates(Some("unknown"), Alg::Es256).len(), 0);
        assert_eq!(set.candidates(None, Alg::EdDsa).len(), 0);
        assert_eq!(set.iter().count(), 4);
        assert_eq!((&set).into_iter().count(), 4);
        let back = KeySet::from_jwks(&set.to_jwks()).unwrap();
        assert_eq!(back.len(), 4);
    }

    #[test]
    fn keyset_skips_unsupported_and_enc() {
        let (_, ec) = p256_jwk();
        let jwks = json!({"keys": [
            rfc7638_jwk(),
            with(rfc7638_jwk(), "use", json!("enc")),
            with(with(ec.clone(), "crv", json!("P-521")), "kid", json!("p521")),
            {"kty": "OKP", "crv": "X25519", "x": "AAAA"},
            {"kty": "EC-HSM"},
            "not an object",
            with(ec, "kid", json!("ok")),
        ]});
        let set = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.skipped(), 5);
        assert_eq!(set.skip_reasons().len(), 5);
        assert!(set.skip_reasons()[1].contains("p521"));
    }

    #[test]
    fn keyset_private_members_fail_whole_set() {
        let jwks = json!({"keys": [rfc7638_jwk(), with(rfc7638_jwk(), "d", json!("AQAB"))]});
        assert!(matches!(
            KeySet::from_jwks(&jwks),
            Err(KeyError::PrivateMember("d"))
        ));
        let jwks = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(KeySet::from_jwks(&jwks).is_err());
        let jwks = json!({"keys": [{"kty": "oct"}]});
        assert_eq!(KeySet::from_jwks(&jwks).unwrap_err(), KeyError::Symmetric);
    }

    #[test]
    fn keyset_shape_errors() {
        for doc in [
            json!([]),
            json!({}),
            json!({"keys": {}}),
            json!({"keys": "x"}),
            json!(null),
        ] {
            assert!(KeySet::from_jwks(&doc).is_err(), "{doc}");
        }
        let empty = KeySet::from_jwks(&json!({"keys": []})).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
    }

    #[test]
    fn keyset_from_keys() {
        let k = PublicKey::from_jwk(&rfc7638_jwk()).unwrap();
        let set = KeySet::from_keys(vec![k]);
        assert_eq!(set.candidates(Some("2011-04-29"), Alg::Rs256).len(), 1);
        assert_eq!(set.skipped(), 0);
    }

    // ---- Private keys -------------------------------------------------------------

    #[test]
    fn rsa_private_key_formats() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let rsa_key = testkeys::rsa2048();
        let pkcs1 = rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap();
        let pkcs8 = rsa_key.to_pkcs8_pem(LineEnding::CRLF).unwrap();
        let a = PrivateKey::from_pem(&pkcs1).unwrap();
        let b = PrivateKey::from_pem(&pkcs8).unwrap();
        assert_eq!(a.alg(), Alg::Rs256);
        assert_eq!(a.public().thumbprint(), b.public().thumbprint());
        assert_eq!(a.pkcs8_der(), b.pkcs8_der());
        assert_eq!(a.signature_len(), 256);
        assert_eq!(a.public().alg(), Some(Alg::Rs256));
        // pkcs8_der is a PKCS#8 that the rsa crate reads back to the same key.
        let back = PrivateKey::from_pkcs8_der(a.pkcs8_der()).unwrap();
        assert_eq!(back.public().thumbprint(), a.public().thumbprint());
        assert!(matches!(a.kind(), PrivateKeyKind::Rsa(_)));
        let debug = format!("{a:?}");
        assert!(debug.contains("RS256") && !debug.contains("MII"));
    }

    #[test]
    fn p256_private_key_formats() {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let sk = testkeys::p256_signing();
        let secret = p256::SecretKey::from(sk.as_nonzero_scalar());
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        let a = PrivateKey::from_pem(&pkcs8).unwrap();
        let b = PrivateKey::from_pem(&sec1).unwrap();
        assert_eq!(a.alg(), Alg::Es256);
        assert_eq!(a.public().thumbprint(), b.public().thumbprint());
        assert_eq!(a.signature_len(), 64);
        // `openssl ecparam -genkey` output: EC PARAMETERS block, then the key.
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            sec1.as_str()
        );
        let c = PrivateKey::from_pem(&with_params).unwrap();
        assert_eq!(c.public().thumbprint(), a.public().thumbprint());
        let back = PrivateKey::from_pkcs8_der(a.pkcs8_der()).unwrap();
        assert_eq!(back.public().thumbprint(), a.public().thumbprint());
        let expected = p256::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
        assert_eq!(a.public().spki_der(), expected.as_bytes());
    }

    #[test]
    fn key_with_certificate_bundle() {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let sk = testkeys::p256_signing();
        let pem = p256::SecretKey::from(sk.as_nonzero_scalar())
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        let cert = fake_cert_pem(sk.verifying_key());
        let bundle = format!("{cert}\n{}", &*pem);
        let key = PrivateKey::from_pem(&bundle).unwrap();
        let certs = pem_certificates(&bundle).unwrap();
        assert_eq!(certs.len(), 1);
        let cert_key = PublicKey::from_spki_der(&certificate_spki(&certs[0]).unwrap()).unwrap();
        assert!(cert_key.same_key(key.public()));
        assert!(PublicKey::from_pem(&bundle).unwrap().same_key(key.public()));
    }

    #[test]
    fn two_private_keys_refused() {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let a = p256::SecretKey::from(testkeys::p256_signing().as_nonzero_scalar())
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        let b = p256::SecretKey::from(testkeys::p256_signing().as_nonzero_scalar())
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        assert!(PrivateKey::from_pem(&format!("{}{}", &*a, &*b)).is_err());
    }

    #[test]
    fn encrypted_keys_refused() {
        let pkcs8 = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(pkcs8).unwrap_err(),
            KeyError::Encrypted
        );
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(legacy).unwrap_err(),
            KeyError::Encrypted
        );
        assert!(KeyError::Encrypted.to_string().contains("encrypted"));
    }

    #[test]
    fn small_rsa_private_key_refused() {
        use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
        let small = RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        let pem = small.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(
            PrivateKey::from_pem(&pem).unwrap_err(),
            KeyError::TooSmall(1024)
        );
        assert!(PrivateKey::from_rsa(small).is_err());
    }

    #[test]
    fn other_curves_and_types_refused() {
        use p384::pkcs8::{EncodePrivateKey, LineEnding};
        let secret = p384::SecretKey::from(testkeys::p384_signing().as_nonzero_scalar());
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&pkcs8),
            Err(KeyError::Unsupported(_))
        ));
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        let e = PrivateKey::from_pem(&sec1);
        assert!(matches!(e, Err(KeyError::Unsupported(_))), "{e:?}");
        let ed = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(
            &testkeys::ed25519_signing(),
            LineEnding::LF,
        )
        .unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&ed),
            Err(KeyError::Unsupported(_))
        ));
        let ssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(matches!(
            PrivateKey::from_pem(ssh),
            Err(KeyError::Unsupported(_))
        ));
    }

    #[test]
    fn pem_errors() {
        assert!(matches!(
            PrivateKey::from_pem(""),
            Err(KeyError::NotFound(_))
        ));
        assert!(matches!(
            PrivateKey::from_pem("just some text"),
            Err(KeyError::NotFound(_))
        ));
        let unterminated = "-----BEGIN PRIVATE KEY-----\nAAAA\n";
        assert!(matches!(
            PrivateKey::from_pem(unterminated),
            Err(KeyError::Malformed(_))
        ));
        let mismatched = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(PrivateKey::from_pem(mismatched).is_err());
        let bad_b64 = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        assert!(PrivateKey::from_pem(bad_b64).is_err());
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(PrivateKey::from_pem(garbage).is_err());
        let no_label_end = "-----BEGIN PRIVATE KEY\nAAAA";
        assert!(PrivateKey::from_pem(no_label_end).is_err());
    }

    #[test]
    fn private_key_errors_never_echo_material() {
        use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
        let pem = testkeys::rsa2048().to_pkcs1_pem(LineEnding::LF).unwrap();
        let body: String = pem.lines().nth(3).unwrap().to_string();
        // Corrupt the base64 in the middle of the key.
        let corrupted = pem.replacen(&body, &format!("{}#{}", &body[..10], &body[11..]), 1);
        let msg = PrivateKey::from_pem(&corrupted).unwrap_err().to_string();
        assert!(!msg.contains(&body[..10]), "{msg}");
        // Corrupt the DER (valid base64).
        let mut der = testkeys::rsa2048()
            .to_pkcs1_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        der[100] ^= 0xff;
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            b64::std_encode(&der)
        );
        let msg = PrivateKey::from_pem(&pem).unwrap_err().to_string();
        assert!(!msg.contains("MII"), "{msg}");
    }

    #[test]
    fn pem_single_line_and_crlf() {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let sk = testkeys::p256_signing();
        let der = p256::SecretKey::from(sk.as_nonzero_scalar())
            .to_pkcs8_der()
            .unwrap();
        let one_line = format!(
            "-----BEGIN PRIVATE KEY-----{}-----END PRIVATE KEY-----",
            b64::std_encode(der.as_bytes())
        );
        assert!(PrivateKey::from_pem(&one_line).is_ok());
        let crlf = p256::SecretKey::from(sk.as_nonzero_scalar())
            .to_pkcs8_pem(LineEnding::CRLF)
            .unwrap();
        assert!(PrivateKey::from_pem(&crlf).is_ok());
        let indented = crlf
            .lines()
            .map(|l| format!("   {l}  "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(PrivateKey::from_pem(&indented).is_ok());
    }

    #[test]
    fn pkcs8_der_is_readable_by_the_crates_and_clone_keeps_it() {
        use p256::pkcs8::DecodePrivateKey;
        let ec = testkeys::p256_private();
        let back = p256::SecretKey::from_pkcs8_der(ec.pkcs8_der()).unwrap();
        let PrivateKeyKind::P256(sk) = ec.kind() else {
            panic!("not P-256")
        };
        assert_eq!(back.to_bytes(), sk.to_bytes());
        let copy = ec.clone();
        assert_eq!(copy.pkcs8_der(), ec.pkcs8_der());
        assert_eq!(copy.public().thumbprint(), ec.public().thumbprint());
        let rsa_key = testkeys::rsa_private();
        let back =
            <RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(rsa_key.pkcs8_der())
                .unwrap();
        assert_eq!(&back, testkeys::rsa2048());
    }

    #[test]
    fn kid_lookup_needs_a_kid_on_the_key() {
        let set = KeySet::from_jwks(&json!({"keys": [without(rfc7638_jwk(), "kid")]})).unwrap();
        assert_eq!(set.candidates(None, Alg::Rs256).len(), 1);
        assert!(set.candidates(Some("2011-04-29"), Alg::Rs256).is_empty());
        assert!(!set.contains_kid("2011-04-29"));
    }

    // ---- Certificates ---------------------------------------------------------------

    /// A structurally valid (unsigned) certificate holding `key`, as PEM.
    fn fake_cert_pem(key: &p256::ecdsa::VerifyingKey) -> String {
        let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(key).unwrap();
        let mut tbs = Vec::new();
        let mut version = Vec::new();
        der::write_unsigned_integer(&[2], &mut version);
        der::write_tlv(tag::CONTEXT_0, &version, &mut tbs);
        der::write_unsigned_integer(&[0x01, 0x02, 0x03], &mut tbs);
        let mut alg = Vec::new();
        der::write_tlv(
            tag::OID,
            &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
            &mut alg,
        );
        der::write_tlv(tag::SEQUENCE, &alg, &mut tbs);
        let mut name = Vec::new();
        let mut atv = Vec::new();
        der::write_tlv(tag::OID, &[0x55, 0x04, 0x03], &mut atv);
        der::write_tlv(0x0c, b"test", &mut atv);
        let mut rdn = Vec::new();
        der::write_tlv(tag::SEQUENCE, &atv, &mut rdn);
        der::write_tlv(tag::SET, &rdn, &mut name);
        der::write_tlv(tag::SEQUENCE, &name, &mut tbs);
        let mut validity = Vec::new();
        der::write_tlv(0x17, b"250101000000Z", &mut validity);
        der::write_tlv(0x17, b"350101000000Z", &mut validity);
        der::write_tlv(tag::SEQUENCE, &validity, &mut tbs);
        der::write_tlv(tag::SEQUENCE, &name, &mut tbs);
        tbs.extend_from_slice(spki.as_bytes());
        let mut cert = Vec::new();
        der::write_tlv(tag::SEQUENCE, &tbs, &mut cert);
        der::write_tlv(tag::SEQUENCE, &alg, &mut cert);
        der::write_tlv(tag::BIT_STRING, &[0, 0x30, 0x00], &mut cert);
        let cert = der::sequence(&cert);
        let b64text = b64::std_encode(&cert);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64text.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    #[test]
    fn certificate_chain_order_and_spki() {
        let k1 = testkeys::p256_signing();
        let k2 = testkeys::p256_signing();
        let pem = format!(
            "leaf:\n{}intermediate:\n{}",
            fake_cert_pem(k1.verifying_key()),
            fake_cert_pem(k2.verifying_key())
        );
        let certs = pem_certificates(&pem).unwrap();
        assert_eq!(certs.len(), 2);
        let spki1 = certificate_spki(&certs[0]).unwrap();
        let spki2 = certificate_spki(&certs[1]).unwrap();
        assert_eq!(
            spki1,
            p256::pkcs8::EncodePublicKey::to_public_key_der(k1.verifying_key())
                .unwrap()
                .as_bytes()
        );
        assert_eq!(
            spki2,
            p256::pkcs8::EncodePublicKey::to_public_key_der(k2.verifying_key())
                .unwrap()
                .as_bytes()
        );
    }

    #[test]
    fn certificate_errors() {
        assert!(matches!(pem_certificates(""), Err(KeyError::NotFound(_))));
        let only_key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            pem_certificates(only_key),
            Err(KeyError::NotFound(_))
        ));
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(pem_certificates(junk).is_err());
        assert!(certificate_spki(&[]).is_err());
        assert!(certificate_spki(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn public_key_from_pem() {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let sk = testkeys::p256_signing();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let key = PublicKey::from_pem(&pem).unwrap();
        assert!(key.fits(Alg::Es256));
        assert!(matches!(
            PublicKey::from_pem("nothing"),
            Err(KeyError::NotFound(_))
        ));
    }

    // ---- Garbage ------------------------------------------------------------------------

    #[test]
    fn garbage_jwk_values_never_panic() {
        let mut rng = XorShift(7);
        let members = ["kty", "n", "e", "crv", "x", "y", "alg", "use", "kid"];
        let ktys = ["RSA", "EC", "OKP", "oct", "??"];
        let crvs = ["P-256", "P-384", "Ed25519", "X"];
        for _ in 0..3000 {
            let mut obj = Map::new();
            obj.insert("kty".into(), json!(ktys[rng.below(5) as usize]));
            obj.insert("crv".into(), json!(crvs[rng.below(4) as usize]));
            for m in &members[1..] {
                if rng.below(4) == 0 {
                    continue;
                }
                let len = rng.below(600) as usize;
                let value = match rng.below(5) {
                    0 => json!(b64::url_encode(&rng.bytes(len))),
                    1 => {
                        let n = [32usize, 48, 256][rng.below(3) as usize];
                        json!(b64::url_encode(&rng.bytes(n)))
                    }
                    2 => json!(String::from_utf8_lossy(&rng.bytes(len % 40)).to_string()),
                    3 => json!(rng.next()),
                    _ => Value::Null,
                };
                obj.insert((*m).into(), value);
            }
            let v = Value::Object(obj);
            let _ = PublicKey::from_jwk(&v);
            let _ = KeySet::from_jwks(&json!({"keys": [v]}));
        }
    }

    #[test]
    fn garbage_der_and_pem_never_panic() {
        let mut rng = XorShift(99);
        let valid = testkeys::rsa_private().pkcs8_der().to_vec();
        let valid_spki = testkeys::rsa_private().public().spki_der().to_vec();
        for i in 0..1500 {
            let data = if i % 2 == 0 {
                let n = rng.below(200) as usize;
                rng.bytes(n)
            } else {
                let mut v = if i % 4 == 1 {
                    valid.clone()
                } else {
                    valid_spki.clone()
                };
                let pos = rng.below(v.len() as u64) as usize;
                v[pos] ^= (rng.next() as u8) | 1;
                v
            };
            let _ = PublicKey::from_spki_der(&data);
            let _ = PrivateKey::from_pkcs8_der(&data);
            let _ = PrivateKey::from_sec1_der(&data);
            let _ = certificate_spki(&data);
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                b64::std_encode(&data)
            );
            let _ = PrivateKey::from_pem(&pem);
            let text = String::from_utf8_lossy(&data).to_string();
            let _ = PrivateKey::from_pem(&text);
            let _ = pem_certificates(&text);
        }
    }
}
