//! `token::keys::PublicKey::from_jwk` and `KeySet::from_jwks` on arbitrary JSON.
//! Invariants: an accepted key re-exports (`to_jwk`, SPKI DER) to the same key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::token::keys::{KeySet, PublicKey};
use serde_json::{json, Value};

fn check_key(key: &PublicKey) {
    let _ = key.thumbprint();
    let _ = key.libtrust_kid();
    let _ = key.bits();
    let back = PublicKey::from_jwk(&key.to_jwk()).expect("to_jwk of an accepted key parses");
    assert!(back.same_key(key), "to_jwk round trip changed the key");
    let spki = PublicKey::from_spki_der(key.spki_der()).expect("SPKI of an accepted key parses");
    assert!(spki.same_key(key), "SPKI round trip changed the key");
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(key) = PublicKey::from_jwk(&v) {
        check_key(&key);
    }
    for doc in [v.clone(), json!({ "keys": [v] })] {
        match KeySet::from_jwks(&doc) {
            Ok(set) => {
                for key in &set {
                    check_key(key);
                }
                let _ = set.skip_reasons();
                let again = KeySet::from_jwks(&set.to_jwks()).expect("to_jwks parses");
                assert_eq!(again.len(), set.len());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
