//! `policy::scope::parse_scope` / `parse_scopes` on arbitrary text. Invariant: a parsed
//! scope displays as text that parses back to the same scope.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::policy::scope::{parse_scope, parse_scopes, validate_repository_name};

fuzz_target!(|data: &[u8]| {
    let Some(raw) = registry_token_fuzz::text(data) else {
        return;
    };
    match parse_scope(raw) {
        Ok(s) => {
            let again = parse_scope(&s.to_string());
            assert_eq!(
                again.as_ref(),
                Ok(&s),
                "display of {s:?} does not parse back"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // Several parameter values (one per line), each space-separated scopes.
    match parse_scopes(raw.split('\n')) {
        Ok(list) => {
            for s in &list {
                assert_eq!(parse_scope(&s.to_string()).as_ref(), Ok(s));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = validate_repository_name(raw);
});
