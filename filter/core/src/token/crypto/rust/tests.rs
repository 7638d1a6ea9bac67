//! Tests of RustCrypto: signatures checked against jsonwebtoken both ways, key fit,
//! algorithm names, wrong keys and garbage signatures, randomness.

use super::*;
use crate::token::alg::sha256;
use crate::token::keys::testkeys;
use crate::token::keys::PrivateKey;
use crate::wire::b64;
use crate::wire::der::testutil::XorShift;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use std::collections::HashSet;

fn jwt_alg(alg: Alg) -> Algorithm {
    match alg {
        Alg::Rs256 => Algorithm::RS256,
        Alg::Rs384 => Algorithm::RS384,
        Alg::Rs512 => Algorithm::RS512,
        Alg::Ps256 => Algorithm::PS256,
        Alg::Ps384 => Algorithm::PS384,
        Alg::Ps512 => Algorithm::PS512,
        Alg::Es256 => Algorithm::ES256,
        Alg::Es384 => Algorithm::ES384,
        Alg::EdDsa => Algorithm::EdDSA,
    }
}

/// Split a compact JWS into (signing input, signature bytes).
fn split_jws(token: &str) -> (String, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    (input.to_string(), b64::url_decode(sig).unwrap())
}

fn jws_input(alg: Alg) -> String {
    let header = serde_json::json!({"alg": alg.name(), "typ": "JWT"});
    let claims = serde_json::json!({"sub": "alice", "aud": "registry", "n": 42});
    format!(
        "{}.{}",
        b64::url_encode(header.to_string().as_bytes()),
        b64::url_encode(claims.to_string().as_bytes())
    )
}

fn tamper(data: &[u8], i: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    let i = i % v.len();
    v[i] ^= 0x01;
    v
}

#[test]
fn alg_names_roundtrip() {
    let names: HashSet<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(names.len(), 9);
    for alg in Alg::ALL {
        assert_eq!(Alg::parse(alg.name()), Some(alg));
        assert_eq!(alg.to_string(), alg.name());
    }
}

#[test]
fn alg_parse_rejects_others() {
    for name in [
        "none", "None", "NONE", "HS256", "HS384", "HS512", "rs256", "Rs256", "RS256 ", " RS256",
        "ES512", "EdDSA\0", "eddsa", "ED25519", "Ed25519", "ES256K", "RSA-OAEP", "", "PS1024",
    ] {
        assert_eq!(Alg::parse(name), None, "{name:?}");
    }
}

#[test]
fn alg_hash_names() {
    assert_eq!(Alg::Rs256.hash_name(), "sha256");
    assert_eq!(Alg::Es384.hash_name(), "sha384");
    assert_eq!(Alg::Ps512.hash_name(), "sha512");
    assert!(Alg::Ps256.is_rsa() && Alg::Rs512.is_rsa());
    assert!(!Alg::Es256.is_rsa() && !Alg::EdDsa.is_rsa());
}

#[test]
fn sha256_known_answer() {
    assert_eq!(
        b64::url_encode(&sha256(b"abc")),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
}

#[test]
fn error_display() {
    assert_eq!(
        CryptoError::BadSignature.to_string(),
        "signature verification failed"
    );
    assert!(CryptoError::Host("x".into()).to_string().contains('x'));
    assert!(CryptoError::Rng.to_string().contains("random"));
    let e: Box<dyn std::error::Error> = Box::new(CryptoError::BadKey("k".into()));
    assert!(e.to_string().contains("unusable key"));
}

#[test]
fn fill_random_differs() {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    RustCrypto.fill_random(&mut a).unwrap();
    RustCrypto.fill_random(&mut b).unwrap();
    assert_ne!(a, b);
    RustCrypto.fill_random(&mut []).unwrap();
    assert_eq!(RustCrypto.name(), "rust");
}

#[test]
fn seeded_rng_streams() {
    let mut r = SeededRng::from_os().unwrap();
    let mut a = [0u8; 100];
    r.fill_bytes(&mut a);
    let mut b = [0u8; 100];
    r.try_fill_bytes(&mut b).unwrap();
    assert_ne!(a, b);
    assert_ne!(r.next_u64(), r.next_u64());
    let mut other = SeededRng::from_os().unwrap();
    assert_ne!(other.next_u32() as u64 | (other.next_u32() as u64) << 32, 0);
}

// ---- RustCrypto signs, jsonwebtoken verifies -----------------------------------

#[test]
fn rs256_signed_by_rustcrypto_verifies_with_jsonwebtoken() {
    let key = testkeys::rsa_private();
    assert_eq!(key.alg(), Alg::Rs256);
    let input = jws_input(Alg::Rs256);
    let sig = RustCrypto.sign(key, input.as_bytes()).unwrap();
    assert_eq!(sig.len(), 256);
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public().to_jwk()).unwrap();
    let dk = DecodingKey::from_jwk(&jwk).unwrap();
    assert!(jsonwebtoken::crypto::verify(
        &b64::url_encode(&sig),
        input.as_bytes(),
        &dk,
        Algorithm::RS256
    )
    .unwrap());
    // The full token also decodes.
    let token = format!("{input}.{}", b64::url_encode(&sig));
    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).unwrap();
    assert_eq!(data.claims["sub"], "alice");
    // And RustCrypto agrees with itself; a tampered input fails in both.
    RustCrypto
        .verify(Alg::Rs256, key.public(), input.as_bytes(), &sig)
        .unwrap();
    let bad = format!("{input}x");
    assert!(!jsonwebtoken::crypto::verify(
        &b64::url_encode(&sig),
        bad.as_bytes(),
        &dk,
        Algorithm::RS256
    )
    .unwrap());
}

#[test]
fn rs256_signatures_are_deterministic_despite_blinding() {
    // PKCS#1 v1.5 is deterministic; blinding must not change the result.
    let key = testkeys::rsa_private();
    let a = RustCrypto.sign(key, b"same message").unwrap();
    let b = RustCrypto.sign(key, b"same message").unwrap();
    assert_eq!(a, b);
}

#[test]
fn es256_signed_by_rustcrypto_verifies_with_jsonwebtoken() {
    for _ in 0..8 {
        let key = testkeys::p256_private();
        assert_eq!(key.alg(), Alg::Es256);
        let input = jws_input(Alg::Es256);
        let sig = RustCrypto.sign(&key, input.as_bytes()).unwrap();
        assert_eq!(sig.len(), 64);
        let jwk = key.public().to_jwk();
        let dk =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        assert!(jsonwebtoken::crypto::verify(
            &b64::url_encode(&sig),
            input.as_bytes(),
            &dk,
            Algorithm::ES256
        )
        .unwrap());
        assert!(!jsonwebtoken::crypto::verify(
            &b64::url_encode(&tamper(&sig, 5)),
            input.as_bytes(),
            &dk,
            Algorithm::ES256
        )
        .unwrap_or(false));
    }
}

// ---- jsonwebtoken signs, RustCrypto verifies -----------------------------------

fn check_external(alg: Alg, ek: &EncodingKey, public: &PublicKey) {
    let input = jws_input(alg);
    let sig_b64 = jsonwebtoken::crypto::sign(input.as_bytes(), ek, jwt_alg(alg)).unwrap();
    let sig = b64::url_decode(&sig_b64).unwrap();
    RustCrypto
        .verify(alg, public, input.as_bytes(), &sig)
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
    // Tampered message, tampered signature.
    assert_eq!(
        RustCrypto.verify(alg, public, format!("{input}.").as_bytes(), &sig),
        Err(CryptoError::BadSignature),
        "{alg}"
    );
    for i in [0, sig.len() / 2, sig.len() - 1] {
        assert_eq!(
            RustCrypto.verify(alg, public, input.as_bytes(), &tamper(&sig, i)),
            Err(CryptoError::BadSignature),
            "{alg} byte {i}"
        );
    }
    // Truncated and extended signatures.
    assert!(RustCrypto
        .verify(alg, public, input.as_bytes(), &sig[..sig.len() - 1])
        .is_err());
    let mut longer = sig.clone();
    longer.push(0);
    assert!(RustCrypto
        .verify(alg, public, input.as_bytes(), &longer)
        .is_err());
    assert!(RustCrypto
        .verify(alg, public, input.as_bytes(), &[])
        .is_err());
    // Every other algorithm is refused for this key, even with a valid signature.
    for other in Alg::ALL {
        if other != alg && !(alg.is_rsa() && other.is_rsa()) {
            assert!(
                matches!(
                    RustCrypto.verify(other, public, input.as_bytes(), &sig),
                    Err(CryptoError::BadKey(_))
                ),
                "{alg} key accepted {other}"
            );
        }
    }
    // A full token via split_jws, for good measure.
    let header = jsonwebtoken::Header::new(jwt_alg(alg));
    let token = jsonwebtoken::encode(&header, &serde_json::json!({"a": 1}), ek).unwrap();
    let (signing_input, sig) = split_jws(&token);
    RustCrypto
        .verify(alg, public, signing_input.as_bytes(), &sig)
        .unwrap();
}

fn rsa_encoding_key() -> EncodingKey {
    let der = testkeys::rsa2048().to_pkcs1_der().unwrap();
    EncodingKey::from_rsa_der(der.as_bytes())
}

#[test]
fn jsonwebtoken_rs256_rs384_rs512_verify() {
    let ek = rsa_encoding_key();
    let public = testkeys::rsa_private().public().clone();
    // The signing key's public half carries alg RS256; a JWKS key without alg fits all.
    let jwk = {
        let mut j = public.to_jwk();
        j.as_object_mut().unwrap().remove("alg");
        j
    };
    let any_rsa = PublicKey::from_jwk(&jwk).unwrap();
    for alg in [Alg::Rs256, Alg::Rs384, Alg::Rs512] {
        check_external(alg, &ek, &any_rsa);
    }
}

#[test]
fn jsonwebtoken_ps256_ps384_ps512_verify() {
    let ek = rsa_encoding_key();
    let mut jwk = testkeys::rsa_private().public().to_jwk();
    jwk.as_object_mut().unwrap().remove("alg");
    let any_rsa = PublicKey::from_jwk(&jwk).unwrap();
    for alg in [Alg::Ps256, Alg::Ps384, Alg::Ps512] {
        check_external(alg, &ek, &any_rsa);
    }
}

#[test]
fn pkcs1_signature_does_not_pass_as_pss_and_back() {
    let key = testkeys::rsa_private();
    let mut jwk = key.public().to_jwk();
    jwk.as_object_mut().unwrap().remove("alg");
    let any_rsa = PublicKey::from_jwk(&jwk).unwrap();
    let sig = RustCrypto.sign(key, b"m").unwrap();
    for alg in [Alg::Ps256, Alg::Rs384, Alg::Rs512] {
        assert_eq!(
            RustCrypto.verify(alg, &any_rsa, b"m", &sig),
            Err(CryptoError::BadSignature)
        );
    }
    let ek = rsa_encoding_key();
    let pss = jsonwebtoken::crypto::sign(b"m", &ek, Algorithm::PS256).unwrap();
    let pss = b64::url_decode(&pss).unwrap();
    assert_eq!(
        RustCrypto.verify(Alg::Rs256, &any_rsa, b"m", &pss),
        Err(CryptoError::BadSignature)
    );
    RustCrypto.verify(Alg::Ps256, &any_rsa, b"m", &pss).unwrap();
}

#[test]
fn jsonwebtoken_es256_verify() {
    for _ in 0..4 {
        let sk = testkeys::p256_signing();
        let der = p256::SecretKey::from(sk.as_nonzero_scalar())
            .to_pkcs8_der()
            .unwrap();
        let ek = EncodingKey::from_ec_der(der.as_bytes());
        let public = PublicKey::from_spki_der(
            &p256::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key())
                .unwrap()
                .into_vec(),
        )
        .unwrap();
        check_external(Alg::Es256, &ek, &public);
    }
}

#[test]
fn jsonwebtoken_es384_verify() {
    for _ in 0..3 {
        let sk = testkeys::p384_signing();
        let der = p384::SecretKey::from(sk.as_nonzero_scalar())
            .to_pkcs8_der()
            .unwrap();
        let ek = EncodingKey::from_ec_der(der.as_bytes());
        let public = PublicKey::from_spki_der(
            &p384::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key())
                .unwrap()
                .into_vec(),
        )
        .unwrap();
        check_external(Alg::Es384, &ek, &public);
    }
}

#[test]
fn jsonwebtoken_eddsa_verify() {
    for _ in 0..4 {
        let sk = testkeys::ed25519_signing();
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&sk).unwrap();
        let ek = EncodingKey::from_ed_der(der.as_bytes());
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": b64::url_encode(sk.verifying_key().as_bytes()),
        });
        let public = PublicKey::from_jwk(&jwk).unwrap();
        check_external(Alg::EdDsa, &ek, &public);
    }
}

#[test]
fn jwk_alg_restricts_verification() {
    let ek = rsa_encoding_key();
    let mut jwk = testkeys::rsa_private().public().to_jwk();
    jwk["alg"] = "PS256".into();
    let pss_only = PublicKey::from_jwk(&jwk).unwrap();
    let sig =
        b64::url_decode(&jsonwebtoken::crypto::sign(b"m", &ek, Algorithm::PS256).unwrap()).unwrap();
    RustCrypto
        .verify(Alg::Ps256, &pss_only, b"m", &sig)
        .unwrap();
    let rs =
        b64::url_decode(&jsonwebtoken::crypto::sign(b"m", &ek, Algorithm::RS256).unwrap()).unwrap();
    assert!(matches!(
        RustCrypto.verify(Alg::Rs256, &pss_only, b"m", &rs),
        Err(CryptoError::BadKey(_))
    ));
}

#[test]
fn wrong_key_is_bad_signature() {
    let key = testkeys::rsa_private();
    let sig = RustCrypto.sign(key, b"m").unwrap();
    let other = testkeys::unrelated_rsa_public();
    assert_eq!(
        RustCrypto.verify(Alg::Rs256, &other, b"m", &sig),
        Err(CryptoError::BadSignature)
    );
    let a = testkeys::p256_private();
    let b = testkeys::p256_private();
    let sig = RustCrypto.sign(&a, b"m").unwrap();
    assert_eq!(
        RustCrypto.verify(Alg::Es256, b.public(), b"m", &sig),
        Err(CryptoError::BadSignature)
    );
    RustCrypto
        .verify(Alg::Es256, a.public(), b"m", &sig)
        .unwrap();
}

#[test]
fn ecdsa_wrong_lengths_are_bad_signature() {
    let key = testkeys::p256_private();
    let sig = RustCrypto.sign(&key, b"m").unwrap();
    for len in [0usize, 1, 32, 63, 65, 70, 72, 96, 128] {
        let mut s = sig.clone();
        s.resize(len, 0);
        if len == 64 {
            continue;
        }
        assert_eq!(
            RustCrypto.verify(Alg::Es256, key.public(), b"m", &s),
            Err(CryptoError::BadSignature),
            "len {len}"
        );
    }
    // A DER signature is not accepted in place of r‖s.
    let der = p256::ecdsa::Signature::from_slice(&sig).unwrap().to_der();
    assert_eq!(
        RustCrypto.verify(Alg::Es256, key.public(), b"m", der.as_bytes()),
        Err(CryptoError::BadSignature)
    );
    // Zero r or s.
    let zeros = [0u8; 64];
    assert_eq!(
        RustCrypto.verify(Alg::Es256, key.public(), b"m", &zeros),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn garbage_signatures_never_panic() {
    let rsa_key = testkeys::rsa_private().public().clone();
    let p256_key = testkeys::p256_private().public().clone();
    let sk384 = testkeys::p384_signing();
    let p384_key = PublicKey::from_spki_der(
        &p384::pkcs8::EncodePublicKey::to_public_key_der(sk384.verifying_key())
            .unwrap()
            .into_vec(),
    )
    .unwrap();
    let ed = testkeys::ed25519_signing();
    let ed_key = PublicKey::from_jwk(&serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": b64::url_encode(ed.verifying_key().as_bytes())
    }))
    .unwrap();
    let keys = [rsa_key, p256_key, p384_key, ed_key];
    let mut rng = XorShift(42);
    for i in 0..400 {
        let len = match i % 4 {
            0 => 64,
            1 => 96,
            2 => 256,
            _ => rng.below(300) as usize,
        };
        let sig = rng.bytes(len);
        for key in &keys {
            for alg in Alg::ALL {
                assert!(RustCrypto.verify(alg, key, b"msg", &sig).is_err());
            }
        }
    }
    // All 0xff (>= n / >= order) too.
    for key in &keys {
        for alg in Alg::ALL {
            for len in [64, 96, 256] {
                assert!(RustCrypto
                    .verify(alg, key, b"msg", &vec![0xff; len])
                    .is_err());
            }
        }
    }
}

#[test]
fn fits_matrix() {
    let rsa_key = testkeys::unrelated_rsa_public();
    let p256_key = testkeys::p256_private().public().clone();
    for alg in Alg::ALL {
        assert_eq!(rsa_key.fits(alg), alg.is_rsa(), "{alg}");
        assert_eq!(p256_key.fits(alg), alg == Alg::Es256, "{alg}");
    }
    assert!(check_fit(Alg::Es256, &rsa_key)
        .unwrap_err()
        .to_string()
        .contains("ES256"));
}

#[test]
fn to_jwk_is_accepted_by_jsonwebtoken_for_every_key_type() {
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    // ES256: RustCrypto signs a whole token, jsonwebtoken decodes it with our JWK.
    let key = testkeys::p256_private();
    let input = jws_input(Alg::Es256);
    let sig = RustCrypto.sign(&key, input.as_bytes()).unwrap();
    let token = format!("{input}.{}", b64::url_encode(&sig));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public().to_jwk()).unwrap();
    let dk = DecodingKey::from_jwk(&jwk).unwrap();
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).unwrap();
    assert_eq!(data.claims["n"], 42);
    // EdDSA: jsonwebtoken signs, our JWK goes back through jsonwebtoken's parser.
    let sk = testkeys::ed25519_signing();
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&sk).unwrap();
    let ek = EncodingKey::from_ed_der(der.as_bytes());
    let public = PublicKey::from_jwk(&serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": b64::url_encode(sk.verifying_key().as_bytes())
    }))
    .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(public.to_jwk()).unwrap();
    let dk = DecodingKey::from_jwk(&jwk).unwrap();
    let sig = jsonwebtoken::crypto::sign(b"m", &ek, Algorithm::EdDSA).unwrap();
    assert!(jsonwebtoken::crypto::verify(&sig, b"m", &dk, Algorithm::EdDSA).unwrap());
    RustCrypto
        .verify(Alg::EdDsa, &public, b"m", &b64::url_decode(&sig).unwrap())
        .unwrap();
}

#[test]
fn keyset_candidate_verifies_token() {
    // The flow the token checker uses: JWKS → candidates(kid, alg) → verify.
    let key = testkeys::rsa_private();
    let jwk = key.public().clone().with_kid("signer".into()).to_jwk();
    let set = crate::token::keys::KeySet::from_jwks(&serde_json::json!({"keys": [jwk]})).unwrap();
    let input = jws_input(Alg::Rs256);
    let sig = RustCrypto.sign(key, input.as_bytes()).unwrap();
    let candidates = set.candidates(Some("signer"), Alg::Rs256);
    assert_eq!(candidates.len(), 1);
    assert!(candidates.iter().any(|k| RustCrypto
        .verify(Alg::Rs256, k, input.as_bytes(), &sig)
        .is_ok()));
    assert!(set.candidates(Some("signer"), Alg::Ps256).is_empty());
    assert!(set.candidates(Some("other"), Alg::Rs256).is_empty());
}

#[test]
fn private_key_from_pem_signs_like_the_crate() {
    // Signature from a PKCS#8-loaded RSA key equals one made directly with rsa.
    let pem = testkeys::rsa2048()
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let key = PrivateKey::from_pem(&pem).unwrap();
    let ours = RustCrypto.sign(&key, b"hello").unwrap();
    let theirs = testkeys::rsa2048()
        .sign(
            rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(b"hello"),
        )
        .unwrap();
    assert_eq!(ours, theirs);
}
