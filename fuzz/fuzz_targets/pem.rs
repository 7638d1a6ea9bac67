//! PEM and certificate parsing: `PrivateKey::from_pem`, `PublicKey::from_pem`,
//! `pem_certificates` on arbitrary text; `certificate_spki` and `PublicKey::from_spki_der`
//! on arbitrary bytes (the base64 body of the first block when the input is PEM, else the
//! input itself).
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::token::keys::{certificate_spki, pem_certificates, PrivateKey, PublicKey};

fuzz_target!(|data: &[u8]| {
    if let Some(text) = registry_token_fuzz::text(data) {
        if let Ok(key) = PrivateKey::from_pem(text) {
            let _ = key.public().thumbprint();
            let _ = key.signature_len();
        }
        let _ = PublicKey::from_pem(text);
        if let Ok(certs) = pem_certificates(text) {
            for c in &certs {
                certificate_spki(c).expect("pem_certificates checked every certificate");
            }
        }
    }
    if let Ok(spki) = certificate_spki(data) {
        let _ = PublicKey::from_spki_der(&spki);
    }
    let _ = PublicKey::from_spki_der(data);
    let _ = PrivateKey::from_pkcs8_der(data);
    let _ = PrivateKey::from_sec1_der(data);
});
