//! Tests of public keys: JWK parsing and its refusals, RFC 7638 thumbprints, SPKI, the
//! libtrust `kid`, and error messages that never echo key material.

use super::*;
use crate::token::alg::sha256;
use crate::wire::b64;
use crate::wire::der::{self, oid, tag};

use serde_json::json;

use crate::token::keys::testkeys::{self, p256_jwk, rfc7638_jwk, with, without};

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
    let sig = b64::url_decode(
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
    )
    .unwrap();
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
    let a = PublicKey::from_jwk(&json!({"kty": "RSA", "n": b64::url_encode(&padded), "e": "AQAB"}))
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
    assert!(PublicKey::from_jwk(&with(jwk.clone(), "x", json!(b64::url_encode(&long)))).is_err());
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
    let key = PublicKey::from_jwk(&json!({"kty":"OKP","crv":"Ed25519","x": b64::url_encode(&x)}))
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
