//! `wire::query::parse_query` on arbitrary text, then `parse_scopes` on what it kept.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::policy::scope::parse_scopes;
use registry_token_core::wire::query::parse_query;

fuzz_target!(|data: &[u8]| {
    let Some(raw) = registry_token_fuzz::text(data) else {
        return;
    };
    match parse_query(raw) {
        Ok(q) => {
            let _ = parse_scopes(&q.scopes);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
