//! `config::Config::load` on arbitrary bytes (JSON or a serialized protobuf Struct), with
//! environment overrides.
//!
//! Input: `config-bytes [0x00 env-text]`. Every `@SIGNING_KEY_PEM@` in the configuration
//! bytes is replaced by a P-256 PKCS#8 PEM (JSON-escaped) generated at start-up, so seeds
//! hold no key and still reach validation. `env-text` is `NAME=VALUE` lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_token_core::config::Config;

const PLACEHOLDER: &[u8] = b"@SIGNING_KEY_PEM@";

fn escaped_pem() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let quoted = serde_json::to_string(&registry_token_fuzz::ec_key_pem()).unwrap_or_default();
        quoted.trim_matches('"').as_bytes().to_vec()
    })
}

fn substitute(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(PLACEHOLDER) {
            out.extend_from_slice(escaped_pem());
            i += PLACEHOLDER.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (config, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let config = substitute(config);
    let env_text = String::from_utf8_lossy(env);
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Config::load(&config, env) {
        Ok(c) => {
            let _ = format!("{c:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
