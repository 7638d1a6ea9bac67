//! Tests of HostCrypto against a fake Envoy that decodes the protobuf and does what
//! BoringSSL would: arguments, ECDSA conversion, agreement with RustCrypto, errors, the probe.

use super::*;
use crate::token::keys::{testkeys, PublicKeyKind};
use crate::wire::testrng::Rng;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::cell::Cell;

// ---- A fake Envoy: decodes the protobuf and does what BoringSSL would -------------

#[derive(Default)]
struct FakeEnvoy {
    calls: Cell<usize>,
}

fn digest(hash: &str, text: &[u8]) -> Option<Vec<u8>> {
    match hash.to_ascii_lowercase().as_str() {
        "sha256" => Some(Sha256::digest(text).to_vec()),
        "sha384" => Some(Sha384::digest(text).to_vec()),
        "sha512" => Some(Sha512::digest(text).to_vec()),
        _ => None,
    }
}

fn pkcs1(hash: &str) -> Option<rsa::pkcs1v15::Pkcs1v15Sign> {
    match hash.to_ascii_lowercase().as_str() {
        "sha256" => Some(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha256>()),
        "sha384" => Some(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha384>()),
        "sha512" => Some(rsa::pkcs1v15::Pkcs1v15Sign::new::<Sha512>()),
        _ => None,
    }
}

impl FakeEnvoy {
    fn sign(&self, args: &[u8]) -> Result<Vec<u8>, String> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        use rsa::pkcs8::DecodePrivateKey;
        let args = SignArguments::decode(args).map_err(|_| "BadArgument".to_string())?;
        if args.private_key.is_empty() == args.private_key_pem.is_empty() {
            return Err("BadArgument".into());
        }
        let fail = |e: &str| {
            Ok(SignResult {
                result: false,
                signature: vec![],
                error: e.into(),
            }
            .encode())
        };
        let Some(hashed) = digest(&args.hash_function, &args.text) else {
            return fail(&format!("{} is not supported.", args.hash_function));
        };
        let signature = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&args.private_key) {
            k.sign(pkcs1(&args.hash_function).unwrap(), &hashed)
                .unwrap()
        } else if let Ok(k) =
            <p256::SecretKey as DecodePrivateKey>::from_pkcs8_der(&args.private_key)
        {
            let sk = p256::ecdsa::SigningKey::from(k);
            let sig: p256::ecdsa::Signature = sk.sign_prehash(&hashed).unwrap();
            sig.to_der().as_bytes().to_vec()
        } else {
            return Err("BadArgument".into());
        };
        Ok(SignResult {
            result: true,
            signature,
            error: String::new(),
        }
        .encode())
    }

    fn verify(&self, args: &[u8]) -> Result<Vec<u8>, String> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let args = VerifySignatureArguments::decode(args).map_err(|_| "BadArgument".to_string())?;
        if args.public_key.is_empty() == args.public_key_pem.is_empty() {
            return Err("BadArgument".into());
        }
        // Key import (EVP_parse_public_key); failure is BadArgument in Envoy.
        let key =
            PublicKey::from_spki_der(&args.public_key).map_err(|_| "BadArgument".to_string())?;
        let reply = |ok: bool, error: &str| {
            Ok(VerifySignatureResult {
                result: ok,
                error: error.into(),
            }
            .encode())
        };
        let Some(hashed) = digest(&args.hash_function, &args.text) else {
            return reply(false, &format!("{} is not supported.", args.hash_function));
        };
        let ok = match key.kind() {
            PublicKeyKind::Rsa(k) => k
                .verify(
                    pkcs1(&args.hash_function).unwrap(),
                    &hashed,
                    &args.signature,
                )
                .is_ok(),
            PublicKeyKind::P256(k) => p256::ecdsa::Signature::from_der(&args.signature)
                .map(|s| k.verify_prehash(&hashed, &s).is_ok())
                .unwrap_or(false),
            PublicKeyKind::P384(k) => p384::ecdsa::Signature::from_der(&args.signature)
                .map(|s| k.verify_prehash(&hashed, &s).is_ok())
                .unwrap_or(false),
            PublicKeyKind::Ed25519(_) => false,
        };
        if ok {
            reply(true, "")
        } else {
            reply(false, "Failed to verify digest. Error code: 0")
        }
    }
}

impl ForeignCall for FakeEnvoy {
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        self.calls.set(self.calls.get() + 1);
        match function {
            SIGN_FUNCTION => self.sign(args),
            VERIFY_FUNCTION => self.verify(args),
            _ => Err("NotFound".into()),
        }
    }
}

/// A host without the functions, or one that answers garbage.
struct Broken(fn(&str, &[u8]) -> Result<Vec<u8>, String>);
impl ForeignCall for Broken {
    fn call(&self, function: &str, args: &[u8]) -> Result<Vec<u8>, String> {
        (self.0)(function, args)
    }
}

// ---- ECDSA DER <-> raw ---------------------------------------------------------------

#[test]
fn ecdsa_conversion_matches_p256_on_many_signatures() {
    use p256::ecdsa::signature::Signer;
    let sk = testkeys::p256_signing();
    let mut saw_short = false;
    let mut saw_padded = false;
    for i in 0u32..600 {
        let sig: p256::ecdsa::Signature = sk.sign(&i.to_be_bytes());
        let raw = sig.to_bytes().to_vec();
        let der_theirs = sig.to_der().as_bytes().to_vec();
        let der_ours = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der_ours, der_theirs, "signature {i}");
        assert_eq!(ecdsa_der_to_raw(&der_theirs, 32).unwrap(), raw);
        saw_short |= raw[0] == 0 || raw[32] == 0;
        saw_padded |= raw[0] & 0x80 != 0 || raw[32] & 0x80 != 0;
    }
    assert!(saw_padded);
    // With 600 signatures, a leading zero byte in r or s is very likely (p ≈ 0.99).
    let _ = saw_short;
}

#[test]
fn ecdsa_conversion_matches_p384() {
    use p384::ecdsa::signature::Signer;
    let sk = testkeys::p384_signing();
    for i in 0u32..200 {
        let sig: p384::ecdsa::Signature = sk.sign(&i.to_be_bytes());
        let raw = sig.to_bytes().to_vec();
        let der_theirs = sig.to_der().as_bytes().to_vec();
        assert_eq!(ecdsa_raw_to_der(&raw).unwrap(), der_theirs);
        assert_eq!(ecdsa_der_to_raw(&der_theirs, 48).unwrap(), raw);
    }
}

#[test]
fn ecdsa_conversion_edge_values() {
    // Leading zeros in r, high bit in s.
    let mut raw = vec![0u8; 64];
    raw[31] = 5;
    raw[32] = 0x80;
    raw[63] = 1;
    let der_sig = ecdsa_raw_to_der(&raw).unwrap();
    assert_eq!(&der_sig[..5], &[0x30, 0x26, 0x02, 0x01, 0x05]);
    assert_eq!(&der_sig[5..8], &[0x02, 0x21, 0x00]);
    assert_eq!(ecdsa_der_to_raw(&der_sig, 32).unwrap(), raw);
    // All zeros encode as INTEGER 0 and come back.
    let zeros = vec![0u8; 64];
    let der_sig = ecdsa_raw_to_der(&zeros).unwrap();
    assert_eq!(der_sig, [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
    assert_eq!(ecdsa_der_to_raw(&der_sig, 32).unwrap(), zeros);
    // All 0xff.
    let ff = vec![0xffu8; 96];
    assert_eq!(
        ecdsa_der_to_raw(&ecdsa_raw_to_der(&ff).unwrap(), 48).unwrap(),
        ff
    );
}

#[test]
fn ecdsa_conversion_rejects() {
    assert!(ecdsa_raw_to_der(&[]).is_err());
    assert!(ecdsa_raw_to_der(&[0; 63]).is_err());
    assert!(ecdsa_raw_to_der(&[0; 134]).is_err());
    let good = ecdsa_raw_to_der(&[0x11; 64]).unwrap();
    // Too long for the field.
    assert!(ecdsa_der_to_raw(&good, 31).is_err());
    assert!(ecdsa_der_to_raw(&good, 0).is_err());
    // Trailing data, truncated, wrong outer tag.
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(ecdsa_der_to_raw(&trailing, 32).is_err());
    assert!(ecdsa_der_to_raw(&good[..good.len() - 1], 32).is_err());
    let mut wrong = good.clone();
    wrong[0] = 0x31;
    assert!(ecdsa_der_to_raw(&wrong, 32).is_err());
    // Negative and non-minimal integers.
    assert!(ecdsa_der_to_raw(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01], 32).is_err());
    assert!(ecdsa_der_to_raw(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01], 32).is_err());
    // Three integers.
    assert!(ecdsa_der_to_raw(
        &[0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        32
    )
    .is_err());
}

#[test]
fn ecdsa_conversion_garbage_never_panics() {
    let mut rng = Rng::new(77);
    for _ in 0..20_000 {
        let len = rng.below(80) as usize;
        let mut data = rng.bytes(len);
        if !data.is_empty() && rng.below(2) == 0 {
            data[0] = 0x30;
        }
        let _ = ecdsa_der_to_raw(&data, 32);
        let _ = ecdsa_der_to_raw(&data, 48);
        let _ = ecdsa_raw_to_der(&data);
    }
}

// ---- HostCrypto vs RustCrypto ----------------------------------------------------------

fn rsa_any() -> PublicKey {
    let mut jwk = testkeys::rsa_private().public().to_jwk();
    jwk.as_object_mut().unwrap().remove("alg");
    PublicKey::from_jwk(&jwk).unwrap()
}

fn p384_pair() -> (p384::ecdsa::SigningKey, PublicKey) {
    let sk = testkeys::p384_signing();
    let der = p384::pkcs8::EncodePublicKey::to_public_key_der(sk.verifying_key()).unwrap();
    let public = PublicKey::from_spki_der(der.as_bytes()).unwrap();
    (sk, public)
}

/// Valid signature under `alg` for `msg`, made with the crates directly.
fn external_sig(alg: Alg, msg: &[u8], p384: &p384::ecdsa::SigningKey) -> Vec<u8> {
    use p384::ecdsa::signature::Signer;
    let rsa_key = testkeys::rsa2048();
    match alg {
        Alg::Rs256 | Alg::Rs384 | Alg::Rs512 => {
            let h = digest(alg.hash_name(), msg).unwrap();
            rsa_key.sign(pkcs1(alg.hash_name()).unwrap(), &h).unwrap()
        }
        Alg::Es384 => {
            let s: p384::ecdsa::Signature = p384.sign(msg);
            s.to_bytes().to_vec()
        }
        _ => unreachable!(),
    }
}

/// Both implementations must reach the same decision: Ok, or the same error kind.
fn same_decision(alg: Alg, key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let host = HostCrypto::new(FakeEnvoy::default());
    let a = RustCrypto.verify(alg, key, msg, sig);
    let b = host.verify(alg, key, msg, sig);
    assert_eq!(a.is_ok(), b.is_ok(), "{alg}: rust {a:?} vs host {b:?}");
    if let (Err(x), Err(y)) = (&a, &b) {
        assert_eq!(
            std::mem::discriminant(x),
            std::mem::discriminant(y),
            "{alg}"
        );
    }
    a.is_ok()
}

#[test]
fn host_and_rust_agree_rsa() {
    let key = rsa_any();
    let wrong = testkeys::unrelated_rsa_public();
    let p384 = p384_pair();
    for alg in [Alg::Rs256, Alg::Rs384, Alg::Rs512] {
        let msg = format!("header.payload.{alg}");
        let sig = external_sig(alg, msg.as_bytes(), &p384.0);
        assert!(
            same_decision(alg, &key, msg.as_bytes(), &sig),
            "{alg} valid"
        );
        assert!(!same_decision(alg, &key, b"tampered", &sig));
        for i in [0, 100, 255] {
            let mut bad = sig.clone();
            bad[i] ^= 0x40;
            assert!(!same_decision(alg, &key, msg.as_bytes(), &bad));
        }
        assert!(!same_decision(alg, &key, msg.as_bytes(), &sig[1..]));
        assert!(!same_decision(alg, &key, msg.as_bytes(), &[]));
        assert!(!same_decision(alg, &wrong, msg.as_bytes(), &sig));
        // Alg mismatch: another RS hash, and EC algs on an RSA key.
        let other = if alg == Alg::Rs256 {
            Alg::Rs512
        } else {
            Alg::Rs256
        };
        assert!(!same_decision(other, &key, msg.as_bytes(), &sig));
        assert!(!same_decision(Alg::Es256, &key, msg.as_bytes(), &sig));
        assert!(!same_decision(Alg::EdDsa, &key, msg.as_bytes(), &sig));
    }
    // A key restricted to RS256 by its JWK refuses RS384 in both.
    let rs256_only = testkeys::rsa_private().public();
    let msg = b"m";
    let sig = external_sig(Alg::Rs384, msg, &p384.0);
    assert!(!same_decision(Alg::Rs384, rs256_only, msg, &sig));
}

#[test]
fn host_and_rust_agree_ecdsa() {
    let (p384_sk, p384_key) = p384_pair();
    for round in 0..20 {
        let key = testkeys::p256_private();
        let other = testkeys::p256_private();
        let msg = format!("es256 message {round}");
        let sig = RustCrypto.sign(&key, msg.as_bytes()).unwrap();
        let public = key.public();
        assert!(same_decision(Alg::Es256, public, msg.as_bytes(), &sig));
        assert!(!same_decision(Alg::Es256, public, b"x", &sig));
        let mut bad = sig.clone();
        bad[round % 64] ^= 1;
        assert!(!same_decision(Alg::Es256, public, msg.as_bytes(), &bad));
        assert!(!same_decision(
            Alg::Es256,
            other.public(),
            msg.as_bytes(),
            &sig
        ));
        assert!(!same_decision(
            Alg::Es256,
            public,
            msg.as_bytes(),
            &sig[..63]
        ));
        assert!(!same_decision(Alg::Es256, public, msg.as_bytes(), &[0; 64]));
        assert!(!same_decision(
            Alg::Es256,
            public,
            msg.as_bytes(),
            &[0xff; 64]
        ));
        assert!(!same_decision(Alg::Es384, public, msg.as_bytes(), &sig));
        assert!(!same_decision(Alg::Rs256, public, msg.as_bytes(), &sig));

        let sig384 = external_sig(Alg::Es384, msg.as_bytes(), &p384_sk);
        assert!(same_decision(
            Alg::Es384,
            &p384_key,
            msg.as_bytes(),
            &sig384
        ));
        assert!(!same_decision(Alg::Es384, &p384_key, b"x", &sig384));
        let mut bad = sig384.clone();
        bad[95 - round] ^= 0x10;
        assert!(!same_decision(Alg::Es384, &p384_key, msg.as_bytes(), &bad));
        assert!(!same_decision(
            Alg::Es384,
            &p384_key,
            msg.as_bytes(),
            &sig384[..64]
        ));
        assert!(!same_decision(
            Alg::Es256,
            &p384_key,
            msg.as_bytes(),
            &sig384
        ));
    }
}

#[test]
fn host_delegates_pss_and_eddsa_to_rust() {
    let fake = FakeEnvoy::default();
    let host = HostCrypto::new(&fake);
    let ek = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        jsonwebtoken::EncodingKey::from_rsa_der(
            testkeys::rsa2048().to_pkcs1_der().unwrap().as_bytes(),
        )
    };
    let sig = crate::wire::b64::url_decode(
        &jsonwebtoken::crypto::sign(b"m", &ek, jsonwebtoken::Algorithm::PS256).unwrap(),
    )
    .unwrap();
    host.verify(Alg::Ps256, &rsa_any(), b"m", &sig).unwrap();
    assert!(host.verify(Alg::Ps256, &rsa_any(), b"n", &sig).is_err());
    let ed = testkeys::ed25519_signing();
    let edkey = PublicKey::from_jwk(&serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": crate::wire::b64::url_encode(ed.verifying_key().as_bytes())
        }))
        .unwrap();
    let edsig = ed25519_dalek::Signer::sign(&ed, b"m").to_bytes();
    host.verify(Alg::EdDsa, &edkey, b"m", &edsig).unwrap();
    assert!(host.verify(Alg::EdDsa, &edkey, b"n", &edsig).is_err());
    assert_eq!(fake.calls.get(), 0, "PS256/EdDSA must not call the host");
}

#[test]
fn host_sign_rsa_matches_rust() {
    let fake = FakeEnvoy::default();
    let host = HostCrypto::new(&fake);
    let key = testkeys::rsa_private();
    let a = host.sign(key, b"payload").unwrap();
    let b = RustCrypto.sign(key, b"payload").unwrap();
    assert_eq!(a, b, "PKCS#1 v1.5 is deterministic");
    assert_eq!(fake.calls.get(), 1);
    RustCrypto
        .verify(Alg::Rs256, key.public(), b"payload", &a)
        .unwrap();
}

#[test]
fn host_sign_es256_gives_raw_signatures() {
    let fake = FakeEnvoy::default();
    let host = HostCrypto::new(&fake);
    for i in 0..30 {
        let key = testkeys::p256_private();
        let msg = format!("msg {i}");
        let sig = host.sign(&key, msg.as_bytes()).unwrap();
        assert_eq!(sig.len(), 64);
        RustCrypto
            .verify(Alg::Es256, key.public(), msg.as_bytes(), &sig)
            .unwrap();
        host.verify(Alg::Es256, key.public(), msg.as_bytes(), &sig)
            .unwrap();
    }
    assert_eq!(host.name(), "envoy");
    let mut buf = [0u8; 16];
    host.fill_random(&mut buf).unwrap();
    assert_ne!(buf, [0; 16]);
}

/// Random bytes without a hostcall each: one seed per value (drawn at first use), a
/// stream that never repeats a 16-byte draw here, and a clone that seeds itself.
#[test]
fn host_random_is_a_seeded_stream_of_its_own_per_clone() {
    #[derive(Clone, Debug)]
    struct NoCalls;
    impl ForeignCall for NoCalls {
        fn call(&self, function: &str, _: &[u8]) -> Result<Vec<u8>, String> {
            Err(format!("{function}: randomness must not call the host"))
        }
    }
    let host = HostCrypto::new(NoCalls);
    assert!(format!("{host:?}").contains("rng_seeded: Some(false)"));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let mut buf = [0u8; 16];
        host.fill_random(&mut buf).unwrap();
        assert!(seen.insert(buf), "a 16-byte draw repeated");
    }
    assert!(format!("{host:?}").contains("rng_seeded: Some(true)"));
    let clone = host.clone();
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    host.fill_random(&mut a).unwrap();
    clone.fill_random(&mut b).unwrap();
    assert_ne!(a, b, "a clone must not continue the same stream");
    // A clone made before the first draw seeds itself too.
    let fresh = HostCrypto::new(NoCalls);
    let early = fresh.clone();
    fresh.fill_random(&mut a).unwrap();
    early.fill_random(&mut b).unwrap();
    assert_ne!(a, b);
}

#[test]
fn host_errors_map_to_host() {
    let key = testkeys::p256_private();
    let missing = HostCrypto::new(Broken(|_, _| Err("NotFound".into())));
    assert!(matches!(
        missing.sign(&key, b"m"),
        Err(CryptoError::Host(_))
    ));
    let sig = RustCrypto.sign(&key, b"m").unwrap();
    assert!(matches!(
        missing.verify(Alg::Es256, key.public(), b"m", &sig),
        Err(CryptoError::Host(_))
    ));
    // Alg mismatch is caught before the host is called.
    assert!(matches!(
        missing.verify(Alg::Rs256, key.public(), b"m", &sig),
        Err(CryptoError::BadKey(_))
    ));
    // Wrong ECDSA length is caught before the host is called.
    assert_eq!(
        missing.verify(Alg::Es256, key.public(), b"m", &sig[..60]),
        Err(CryptoError::BadSignature)
    );

    let garbage = HostCrypto::new(Broken(|_, _| Ok(vec![0xff, 0xff, 0xff])));
    assert!(matches!(
        garbage.sign(&key, b"m"),
        Err(CryptoError::Host(_))
    ));
    assert!(matches!(
        garbage.verify(Alg::Es256, key.public(), b"m", &sig),
        Err(CryptoError::Host(_))
    ));

    let refuses = HostCrypto::new(Broken(|f, _| {
        Ok(if f == SIGN_FUNCTION {
            SignResult {
                result: false,
                signature: vec![],
                error: "sha256 is not supported.".into(),
            }
            .encode()
        } else {
            VerifySignatureResult {
                result: false,
                error: "Failed to initialize digest verify.".into(),
            }
            .encode()
        })
    }));
    match refuses.sign(&key, b"m") {
        Err(CryptoError::Host(msg)) => assert!(msg.contains("not supported")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refuses.verify(Alg::Es256, key.public(), b"m", &sig),
        Err(CryptoError::Host(_))
    ));

    // "Success" with a malformed EC signature, or a short RSA signature.
    let bad_sig = HostCrypto::new(Broken(|_, _| {
        Ok(SignResult {
            result: true,
            signature: vec![0x30, 0x00],
            error: String::new(),
        }
        .encode())
    }));
    assert!(matches!(
        bad_sig.sign(&key, b"m"),
        Err(CryptoError::Host(_))
    ));
    assert!(matches!(
        bad_sig.sign(testkeys::rsa_private(), b"m"),
        Err(CryptoError::Host(_))
    ));
    // result=false with no message → BadSignature for verify.
    let silent = HostCrypto::new(Broken(|_, _| Ok(Vec::new())));
    assert_eq!(
        silent.verify(Alg::Es256, key.public(), b"m", &sig),
        Err(CryptoError::BadSignature)
    );
    assert!(matches!(silent.sign(&key, b"m"), Err(CryptoError::Host(_))));
}

#[test]
fn host_receives_expected_arguments() {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, Vec<u8>)>> = Mutex::new(Vec::new());
    let recorder = Broken(|f, args| {
        SEEN.lock().unwrap().push((f.to_string(), args.to_vec()));
        FakeEnvoy::default().call(f, args)
    });
    let host = HostCrypto::new(recorder);
    let key = testkeys::p256_private();
    let sig = host.sign(&key, b"text").unwrap();
    host.verify(Alg::Es256, key.public(), b"text", &sig)
        .unwrap();
    let rsa_key = testkeys::rsa_private();
    let rsig = host.sign(rsa_key, b"text").unwrap();
    host.verify(Alg::Rs256, rsa_key.public(), b"text", &rsig)
        .unwrap();
    let seen = SEEN.lock().unwrap();
    let mine: Vec<_> = seen.iter().rev().take(4).rev().collect();
    assert_eq!(mine[0].0, "sign");
    let a = SignArguments::decode(&mine[0].1).unwrap();
    assert_eq!(a.hash_function, "sha256");
    assert_eq!(a.private_key, key.pkcs8_der());
    assert_eq!(a.text, b"text");
    assert!(a.private_key_pem.is_empty());
    assert_eq!(mine[1].0, "verify_signature");
    let v = VerifySignatureArguments::decode(&mine[1].1).unwrap();
    assert_eq!(v.hash_function, "sha256");
    assert_eq!(v.public_key, key.public().spki_der());
    assert_eq!(v.signature, ecdsa_raw_to_der(&sig).unwrap());
    assert_eq!(v.text, b"text");
    let v = VerifySignatureArguments::decode(&mine[3].1).unwrap();
    assert_eq!(v.signature, rsig);
    assert_eq!(v.public_key, rsa_key.public().spki_der());
}

#[test]
fn probe_accepts_a_working_host() {
    let fake = FakeEnvoy::default();
    probe(&fake, testkeys::rsa_private()).unwrap();
    probe(&fake, &testkeys::p256_private()).unwrap();
    assert_eq!(fake.calls.get(), 6);
}

#[test]
fn probe_rejects_broken_hosts() {
    let key = testkeys::p256_private();
    let missing = Broken(|_, _| Err("NotFound".into()));
    assert!(probe(&missing, &key).unwrap_err().contains("signing"));
    // A host that signs garbage.
    let garbage_signer = Broken(|f, args| {
        if f == SIGN_FUNCTION {
            let mut raw = [0x42u8; 64];
            raw[0] = 0x01;
            Ok(SignResult {
                result: true,
                signature: ecdsa_raw_to_der(&raw).unwrap(),
                error: String::new(),
            }
            .encode())
        } else {
            FakeEnvoy::default().call(f, args)
        }
    });
    assert!(probe(&garbage_signer, &key).unwrap_err().contains("Rust"));
    // A host whose verify says yes to everything.
    let yes_man = Broken(|f, args| {
        if f == VERIFY_FUNCTION {
            Ok(VerifySignatureResult {
                result: true,
                error: String::new(),
            }
            .encode())
        } else {
            FakeEnvoy::default().call(f, args)
        }
    });
    assert!(probe(&yes_man, &key).unwrap_err().contains("tampered"));
    // A host without verify_signature.
    let no_verify = Broken(|f, args| {
        if f == VERIFY_FUNCTION {
            Err("NotFound".into())
        } else {
            FakeEnvoy::default().call(f, args)
        }
    });
    assert!(probe(&no_verify, &key)
        .unwrap_err()
        .contains("verification"));
}
