//! What the configuration warns about at configure time: the distribution 3.x `kid`
//! advisory for an EC signing key with a leading zero coordinate, unless tokens carry
//! `x5c`.

use serde_json::{json, Value};

use super::Config;
use crate::token::keys::testkeys::{fake_cert_pem, p256_of_scalar, rsa_private};

fn pem_of(d: u16) -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let key = p256::SecretKey::from(p256_of_scalar(d).as_nonzero_scalar());
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

fn config(signing: Value) -> Config {
    Config::from_value(json!({
        "authority": {
            "issuer": "https://authority.example",
            "audiences": ["registry-token"],
            "jwks": {"keys": [rsa_private().public().to_jwk()]},
            "requireSenderConstraint": false
        },
        "signing": signing,
        "registry": {"realm": "https://gateway.example/token", "allowedServices": ["registry.example"]},
        "plans": [{"name": "community", "repositories": [{"pattern": "stella-ops/public/*"}]}],
        "defaultPlan": "community"
    }))
    .unwrap_or_else(|e| panic!("config refused: {e}"))
}

fn kid_warnings(c: &Config) -> Vec<String> {
    c.warnings()
        .into_iter()
        .filter(|w| w.contains("distribution 3.x"))
        .collect()
}

#[test]
fn an_ec_key_with_a_leading_zero_coordinate_is_warned_about_once() {
    // 43·G: its y starts with a zero byte.
    let c = config(json!({"keyPem": pem_of(43), "algorithm": "ES256"}));
    let warnings = kid_warnings(&c);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    let advisory = c.signing.key.distribution3_kid_advisory().unwrap();
    for needed in [
        "EC point's y coordinate starts with a zero byte",
        "signing.certificateChainPem",
        "auth.token.jwks",
        "another signing key",
        "docs/DEPLOY.md",
        "distribution 2.8",
        &advisory.unpadded,
        &advisory.rfc7638,
        &c.signing.kid,
    ] {
        assert!(w.contains(needed), "{needed:?} missing from {w}");
    }
    assert!(!w.contains('\n'), "one log line: {w}");
    // An explicit kid is the one named as sent.
    let c = config(json!({"keyPem": pem_of(379), "algorithm": "ES256", "keyId": "k-2026"}));
    let w = kid_warnings(&c).concat();
    assert!(w.contains("EC point's x coordinate starts"), "{w}");
    assert!(w.contains("this realm sends kid \"k-2026\""), "{w}");
}

#[test]
fn x5c_other_keys_and_rsa_need_no_warning() {
    let cert = fake_cert_pem(p256_of_scalar(43).verifying_key());
    let with_x5c = config(json!({"keyPem": pem_of(43), "algorithm": "ES256",
                                 "certificateChainPem": cert}));
    assert!(with_x5c.signing.x5c.is_some());
    assert!(with_x5c.warnings().is_empty(), "{:?}", with_x5c.warnings());
    let plain = config(json!({"keyPem": pem_of(1), "algorithm": "ES256"}));
    assert!(plain.warnings().is_empty(), "{:?}", plain.warnings());
    let pem = {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        crate::token::keys::testkeys::rsa2048()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string()
    };
    assert!(config(json!({"keyPem": pem})).warnings().is_empty());
}
