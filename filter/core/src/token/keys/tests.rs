//! Tests of key sets (JWKS), private keys (PEM and DER, refusals), certificates, and
//! garbage that must never panic.

use super::*;
use crate::wire::b64;

use crate::wire::der::testutil::XorShift;
use rsa::RsaPrivateKey;
use serde_json::json;
use serde_json::Map;

use crate::token::keys::testkeys::{self, fake_cert_pem, p256_jwk, rfc7638_jwk, with, without};

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
    let back = <RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(rsa_key.pkcs8_der())
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
