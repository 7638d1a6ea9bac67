//! Property tests for the parsers (the `proptest` half of the fuzzing; the `fuzz/` crate
//! is the libFuzzer half, see docs/FUZZING.md). A panic in a parser traps the Wasm VM and
//! fails every later request on that worker, so every property here starts with "never
//! panics"; where a parser has an inverse, valid input must round-trip.
//!
//! Case counts are bounded (see `cases`) so the whole file runs in a few seconds inside
//! `cargo test -p registry-token-core`. `PROPTEST_CASES=N` overrides them for a longer run.
//!
//! A POST form-body parser (issue in progress) belongs here too: a never-panics property
//! on arbitrary bodies and a round trip like `query_round_trips`, plus a target in
//! `fuzz/fuzz_targets/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Number, Value};

use registry_token_core::config::Config;
use registry_token_core::policy::scope::{parse_scope, parse_scopes, Scope, MAX_SCOPES};
use registry_token_core::sender::dpop::{verify_proof, ProofPolicy};
use registry_token_core::sender::replay::MemoryReplayCache;
use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::token::jws::Jws;
use registry_token_core::token::keys::{
    certificate_spki, pem_certificates, KeySet, PrivateKey, PublicKey,
};
use registry_token_core::token::optok::{OpTokPolicy, UntrustedOpTok};
use registry_token_core::wire::der::{self, tag, Reader};
use registry_token_core::wire::query::{parse_query, TokenQuery};
use registry_token_core::wire::structpb::{decode_struct, encode_struct};
use registry_token_core::wire::url::HttpUrl;

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Text biased towards the characters the parsers care about.
fn parser_text(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop_oneof![
        vec(proptest::sample::select(chars), 0..max).prop_map(|v| v.into_iter().collect()),
        any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------------------

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, space as `+`,
/// everything else `%XX` (mixed case hex, as clients differ).
fn form_encode(s: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

fn token_query() -> impl Strategy<Value = TokenQuery> {
    let value = || proptest::option::of("\\PC{1,24}");
    (
        value(),
        vec("\\PC{0,24}", 0..4),
        value(),
        value(),
        any::<bool>(),
    )
        .prop_map(
            |(service, scopes, account, client_id, offline_token)| TokenQuery {
                service,
                scopes,
                account,
                client_id,
                offline_token,
            },
        )
}

fn encode_query(q: &TokenQuery, upper: bool, noise: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = Vec::new();
    let mut add = |name: &str, value: &str| {
        pairs.push(format!(
            "{}={}",
            form_encode(name, upper),
            form_encode(value, upper)
        ))
    };
    if let Some(s) = &q.service {
        add("service", s);
    }
    for s in &q.scopes {
        add("scope", s);
    }
    if let Some(a) = &q.account {
        add("account", a);
    }
    if let Some(c) = &q.client_id {
        add("client_id", c);
    }
    if q.offline_token {
        add("offline_token", "true");
    }
    for (n, v) in noise {
        add(n, v);
    }
    pairs.join("&")
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn query_never_panics(raw in parser_text("=&%+;scopeservice:/,0123456789abcdefABCDEF\u{e9}", 64)) {
        if let Ok(q) = parse_query(&raw) {
            let _ = parse_scopes(&q.scopes);
        }
    }

    #[test]
    fn query_round_trips(
        q in token_query(),
        upper in any::<bool>(),
        // Unknown parameters are ignored (names that cannot collide with known ones).
        noise in vec(("x[a-z_]{0,6}", "\\PC{0,8}"), 0..3),
    ) {
        let raw = encode_query(&q, upper, &noise);
        prop_assert_eq!(parse_query(&raw), Ok(q), "query {:?}", raw);
    }
}

// ---------------------------------------------------------------------------------------
// Scopes
// ---------------------------------------------------------------------------------------

fn path_component() -> impl Strategy<Value = String> {
    vec(
        (
            "[a-z0-9]{1,4}",
            prop_oneof![Just("."), Just("_"), Just("__"), Just("-"), Just("--")],
        ),
        0..3,
    )
    .prop_flat_map(|parts| {
        "[a-z0-9]{1,4}".prop_map(move |last| {
            let mut s = String::new();
            for (alnum, sep) in &parts {
                s.push_str(alnum);
                s.push_str(sep);
            }
            s.push_str(&last);
            s
        })
    })
}

fn scope() -> impl Strategy<Value = Scope> {
    let repo_name = (
        proptest::option::of(("[a-z0-9]{1,5}\\.[a-z]{2,4}", proptest::option::of(1u16..))),
        vec(path_component(), 1..4),
    )
        .prop_map(|(host, comps)| {
            let mut name = String::new();
            if let Some((h, port)) = host {
                name.push_str(&h);
                if let Some(p) = port {
                    name.push_str(&format!(":{p}"));
                }
                name.push('/');
            }
            let mut comps = comps;
            if name.is_empty() && comps.len() > 1 {
                // Docker reads a first component holding `.` as a registry host.
                comps[0] = comps[0].replace('.', "-");
            }
            name.push_str(&comps.join("/"));
            name
        });
    let actions = vec(prop_oneof![Just("*".to_string()), "[a-z]{1,6}"], 1..4).prop_map(|mut a| {
        let mut seen = Vec::new();
        a.retain(|x| {
            let new = !seen.contains(x);
            seen.push(x.clone());
            new
        });
        a
    });
    prop_oneof![
        (repo_name, actions.clone()).prop_map(|(name, actions)| Scope {
            resource_type: "repository".into(),
            name,
            actions,
        }),
        actions.clone().prop_map(|actions| Scope {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions,
        }),
        ("[a-z0-9]{1,8}", "[!-~&&[^ ]]{1,20}", actions)
            .prop_filter("other types", |(t, _, _)| t != "repository"
                && t != "registry")
            .prop_map(|(resource_type, name, actions)| Scope {
                resource_type,
                name,
                actions,
            }),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn scope_never_panics(raw in parser_text("repositoy(ABC)123:/._-,* gtcl\u{0}\u{e9}", 48)) {
        if let Ok(s) = parse_scope(&raw) {
            prop_assert_eq!(parse_scope(&s.to_string()), Ok(s));
        }
        if let Ok(list) = parse_scopes(raw.split('\n')) {
            prop_assert!(list.len() <= MAX_SCOPES);
        }
    }

    #[test]
    fn scope_display_round_trips(s in scope()) {
        prop_assert_eq!(parse_scope(&s.to_string()), Ok(s.clone()), "{}", s);
    }

    #[test]
    fn scope_list_round_trips(list in vec(scope(), 0..8)) {
        // What parse_scopes returns is merged; displaying and parsing it again is stable.
        let text: Vec<String> = list.iter().map(Scope::to_string).collect();
        let merged = parse_scopes([text.join(" ")]).expect("valid scopes");
        let again: Vec<String> = merged.iter().map(Scope::to_string).collect();
        prop_assert_eq!(parse_scopes(&again), Ok(merged));
    }
}

// ---------------------------------------------------------------------------------------
// google.protobuf.Struct
// ---------------------------------------------------------------------------------------

/// JSON values `decode_struct` gives back unchanged: integers within ±2^53, floats that
/// are not integral there (those come back as integers) and finite.
fn json_value() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite, non-integral or beyond 2^53", |f| {
                f.is_finite() && (f.fract() != 0.0 || f.abs() > 9_007_199_254_740_992.0)
            })
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap_or_else(|| 0.into()))),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        "\\PC{0,12}".prop_map(Value::String),
        number,
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn structpb_round_trips(m in btree_map("\\PC{0,8}", json_value(), 0..6)) {
        let v = Value::Object(m.into_iter().collect());
        let bytes = encode_struct(&v).expect("encodes");
        prop_assert_eq!(decode_struct(&bytes), Ok(v));
    }

    #[test]
    fn structpb_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(v) = decode_struct(&bytes) {
            let again = encode_struct(&v).expect("a decoded Struct encodes");
            prop_assert_eq!(decode_struct(&again), Ok(v));
        }
    }

    #[test]
    fn structpb_mutated_never_panics(
        m in btree_map("[a-z]{0,4}", json_value(), 1..4),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_struct(&Value::Object(m.into_iter().collect())).expect("encodes");
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let _ = decode_struct(&bytes);
    }
}

// ---------------------------------------------------------------------------------------
// DER
// ---------------------------------------------------------------------------------------

fn walk(mut r: Reader<'_>, depth: usize) {
    while depth < 16 && !r.is_empty() {
        let Ok(tlv) = r.read_any() else { return };
        if tlv.tag & 0x20 != 0 {
            walk(tlv.reader(), depth + 1);
        }
        let _ = der::unsigned_integer(&tlv);
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn der_never_panics(bytes in vec(any::<u8>(), 0..128)) {
        walk(Reader::new(&bytes), 0);
        let _ = der::spki_parts(&bytes);
        let _ = der::certificate_spki(&bytes);
        let _ = PublicKey::from_spki_der(&bytes);
        let _ = certificate_spki(&bytes);
    }

    #[test]
    fn der_tlv_round_trips(t in any::<u8>().prop_filter("single-byte tag", |t| t & 0x1f != 0x1f),
                           value in vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        der::write_tlv(t, &value, &mut out);
        let tlv = der::parse_single(&out, t).expect("own encoding parses");
        prop_assert_eq!(tlv.value, &value[..]);
        prop_assert_eq!(tlv.raw, &out[..]);
    }

    #[test]
    fn der_unsigned_integer_round_trips(magnitude in vec(any::<u8>(), 0..40)) {
        let mut out = Vec::new();
        der::write_unsigned_integer(&magnitude, &mut out);
        let tlv = der::parse_single(&out, tag::INTEGER).expect("own encoding parses");
        let stripped: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
        prop_assert_eq!(der::unsigned_integer(&tlv), Ok(&stripped[..]));
    }
}

// ---------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn url_never_panics_and_normalizes_idempotently(
        prefix in prop_oneof![Just(""), Just("http://"), Just("https://"), Just("HTTPS://")],
        rest in parser_text("ab.-_~:[]@/?#%2eE0fF9 .. ./+\u{e9}", 40),
    ) {
        let raw = format!("{prefix}{rest}");
        for allow_query in [false, true] {
            if let Ok(u) = HttpUrl::parse(&raw, allow_query) {
                let again = HttpUrl::parse(&u.as_string(), false);
                prop_assert!(again.is_ok(), "{:?} normalizes to {:?}, refused", raw, u.as_string());
                prop_assert_eq!(again, Ok(u.clone()), "{:?}", raw);
                let _ = u.path_and_query();
            }
        }
        let _ = HttpUrl::parse_keeping_query(&raw);
    }
}

/// Found by `fuzz/fuzz_targets/url.rs`: normalizing a path that ended in three or more
/// slashes removed only one, so the normalized URL normalized again to something else
/// (`https://h/a///` → `https://h/a//` → `https://h/a/`). Fixed in `wire::url`: empty
/// segments are kept, as RFC 3986 §5.2.4 says.
#[test]
fn url_normalization_is_idempotent() {
    for raw in ["https://h/a///", "https://h/a/b////", "https://h//////"] {
        let once = HttpUrl::parse(raw, false).expect("valid URL");
        let twice = HttpUrl::parse(&once.as_string(), false).expect("normalized URL");
        assert_eq!(twice, once, "{raw}");
    }
}

// ---------------------------------------------------------------------------------------
// Tokens, keys, PEM
// ---------------------------------------------------------------------------------------

fn ed25519_key_set() -> KeySet {
    let key = PublicKey::from_jwk(&json!({"kty": "OKP", "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
    .expect("Ed25519 JWK")
    .with_kid("k".into());
    KeySet::from_keys(vec![key])
}

fn json_object_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        btree_map(
            prop_oneof![
                Just("alg".to_string()),
                Just("typ".to_string()),
                Just("kid".to_string()),
                Just("crit".to_string()),
                Just("jwk".to_string()),
                Just("iss".to_string()),
                Just("aud".to_string()),
                Just("exp".to_string()),
                Just("nbf".to_string()),
                Just("iat".to_string()),
                Just("scope".to_string()),
                Just("scp".to_string()),
                Just("cnf".to_string()),
                "[a-z]{1,4}",
            ],
            json_value(),
            0..6
        )
        .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
        vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn jws_and_optok_never_panic(
        h in json_object_text(),
        c in json_object_text(),
        sig in vec(any::<u8>(), 0..80),
        raw in parser_text("abcAZ09-_.=+/", 64),
    ) {
        let keys = ed25519_key_set();
        let audiences = vec!["aud".to_string()];
        let policy = OpTokPolicy {
            issuer: "iss",
            audiences: &audiences,
            required_scopes: &[],
            algorithms: &Alg::ALL,
            clock_skew_seconds: 60,
            tenant_claim: "stellaops:tenant",
        };
        let token = format!("{}.{}.{}", b64url(&h), b64url(&c), b64url(&sig));
        for t in [token.as_str(), raw.as_str()] {
            if let Ok(jws) = Jws::parse(t) {
                let _ = jws.alg(&Alg::ALL);
            }
            if let Ok(u) = UntrustedOpTok::parse(t) {
                let _ = u.verify(&policy, &keys, &RustCrypto, 1_700_000_000);
            }
        }
    }

    #[test]
    fn jwk_never_panics(
        kty in prop_oneof![Just("RSA".to_string()), Just("EC".to_string()), Just("OKP".to_string()), Just("oct".to_string()), "[A-Z]{0,3}"],
        crv in prop_oneof![Just("P-256".to_string()), Just("P-384".to_string()), Just("Ed25519".to_string()), "[A-Z0-9-]{0,6}"],
        members in btree_map(
            prop_oneof![Just("n"), Just("e"), Just("x"), Just("y"), Just("alg"), Just("use"), Just("kid"), Just("d")],
            prop_oneof![
                vec(any::<u8>(), 0..70).prop_map(|b| json!(b64url(&b))),
                json_value(),
            ],
            0..5,
        ),
    ) {
        let mut jwk = json!({"kty": kty, "crv": crv});
        for (k, v) in members {
            jwk[k] = v;
        }
        if let Ok(key) = PublicKey::from_jwk(&jwk) {
            let back = PublicKey::from_jwk(&key.to_jwk()).expect("re-exported JWK parses");
            prop_assert!(back.same_key(&key));
        }
        let _ = KeySet::from_jwks(&json!({"keys": [jwk.clone(), jwk]}));
    }

    #[test]
    fn pem_never_panics(
        parts in vec(prop_oneof![
            Just("-----BEGIN ".to_string()), Just("-----END ".to_string()), Just("-----".to_string()),
            Just("PRIVATE KEY".to_string()), Just("EC PRIVATE KEY".to_string()),
            Just("RSA PRIVATE KEY".to_string()), Just("CERTIFICATE".to_string()),
            Just("PUBLIC KEY".to_string()), Just("\n".to_string()), Just("Proc-Type: 4,ENCRYPTED\n".to_string()),
            vec(any::<u8>(), 0..48).prop_map(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(b)
            }),
            "\\PC{0,6}",
        ], 0..12),
    ) {
        let text = parts.concat();
        let _ = PrivateKey::from_pem(&text);
        let _ = PublicKey::from_pem(&text);
        let _ = pem_certificates(&text);
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and the DPoP header
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn config_load_never_panics(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..200),
            json_value().prop_map(|v| serde_json::to_vec(&json!({"authority": v.clone(), "registry": v, "plans": []})).unwrap_or_default()),
            btree_map("[a-z]{1,6}", json_value(), 0..4)
                .prop_map(|m| encode_struct(&Value::Object(m.into_iter().collect())).unwrap_or_default()),
        ],
        env in vec((prop_oneof![
            Just("REGISTRY_TOKEN_AUTHORITY__AUDIENCES".to_string()),
            Just("REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS".to_string()),
            Just("REGISTRY_TOKEN_PLANS".to_string()),
            Just("REGISTRY_TOKEN_DPOP__ALGORITHMS".to_string()),
            "REGISTRY_TOKEN_[A-Z_]{0,12}",
        ], "\\PC{0,16}"), 0..3),
    ) {
        let _ = Config::load(&bytes, env);
    }

    #[test]
    fn dpop_headers_never_panic(
        headers in vec(prop_oneof![
            (json_object_text(), json_object_text(), vec(any::<u8>(), 0..64))
                .prop_map(|(h, c, s)| format!("{}.{}.{}", b64url(&h), b64url(&c), b64url(&s))),
            parser_text("abcAZ09-_., \t", 40),
        ], 0..3),
    ) {
        let htu = HttpUrl::parse("https://gateway.test/token", false).expect("realm");
        let policy = ProofPolicy {
            algorithms: &Alg::ALL,
            htu: &htu,
            iat_window_seconds: 60,
            nonce: None,
        };
        let replay = MemoryReplayCache::new(120);
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let _ = verify_proof(&refs, "GET", "tok", "jkt", &policy, &RustCrypto, &replay, 1_700_000_000);
    }
}
