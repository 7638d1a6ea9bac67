//! `wire::url::HttpUrl::parse` (with and without queries) and `parse_keeping_query` on
//! arbitrary text. Invariant: normalization is idempotent (`parse(as_string(u)) == u`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::wire::url::HttpUrl;

fuzz_target!(|data: &[u8]| {
    let Some(raw) = registry_token_fuzz::text(data) else {
        return;
    };
    for allow_query in [false, true] {
        if let Ok(u) = HttpUrl::parse(raw, allow_query) {
            let text = u.as_string();
            let again = HttpUrl::parse(&text, false);
            assert_eq!(
                again.as_ref(),
                Ok(&u),
                "{raw:?} normalizes to {text:?}, which parses differently"
            );
            let _ = u.path_and_query();
        }
    }
    if let Ok(u) = HttpUrl::parse_keeping_query(raw) {
        let _ = u.path_and_query();
    }
});
