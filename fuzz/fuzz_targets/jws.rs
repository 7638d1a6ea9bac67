//! `token::jws::Jws::parse` on arbitrary text, then the header accessors.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::token::alg::Alg;
use registry_token_core::token::jws::Jws;

fuzz_target!(|data: &[u8]| {
    let Some(raw) = registry_token_fuzz::text(data) else {
        return;
    };
    match Jws::parse(raw) {
        Ok(jws) => {
            let _ = jws.alg(&Alg::ALL);
            let _ = jws.alg(&[]);
            let _ = jws.header_str("kid");
            let _ = jws.claim_str("sub");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
