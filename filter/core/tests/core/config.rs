//! Configuration: parse, env overrides, validation errors that name the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use registry_token_core::config::{apply_env_overrides, env_name, Config, KeySource};
use serde_json::{json, Value};

fn refused(v: Value) -> String {
    match Config::from_value(v) {
        Ok(_) => panic!("config accepted but should be refused"),
        Err(e) => e.to_string(),
    }
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut c = base_config();
    f(&mut c);
    c
}

#[test]
fn base_config_is_valid_with_defaults() {
    let c = config_from(base_config());
    assert_eq!(c.signing.lifetime_seconds, 300);
    assert_eq!(c.signing.issuer, "registry-token-service");
    assert_eq!(c.authority.required_scopes, vec!["registry.token.issue"]);
    assert_eq!(c.authority.clock_skew_seconds, 60);
    assert_eq!(c.registry.realm.path, "/token");
    assert!(matches!(c.authority.keys, KeySource::Inline(_)));
    assert!(c.signing.x5c.is_none());
}

#[test]
fn sender_constraint_defaults_to_required() {
    let c = config_from(with(|c| {
        c["authority"]
            .as_object_mut()
            .unwrap()
            .remove("requireSenderConstraint");
    }));
    assert!(c.authority.require_sender_constraint);
}

#[test]
fn unknown_fields_are_errors_naming_the_path() {
    let e = refused(with(|c| c["signing"]["lifetime"] = json!(10)));
    assert!(e.contains("signing"), "{e}");
    assert!(e.contains("lifetime"), "{e}");
    let e = refused(with(|c| c["extra"] = json!(true)));
    assert!(e.contains("extra"), "{e}");
    let e = refused(with(|c| {
        c["plans"][0]["repositories"][0]["actoins"] = json!(["pull"])
    }));
    assert!(e.contains("plans[0].repositories[0]"), "{e}");
    assert!(e.contains("actoins"), "{e}");
}

#[test]
fn wrong_types_name_the_field() {
    let e = refused(with(|c| c["signing"]["lifetimeSeconds"] = json!("300")));
    assert!(e.contains("signing.lifetimeSeconds"), "{e}");
    let e = refused(with(|c| {
        c["authority"]["audiences"] = json!("registry-token")
    }));
    assert!(e.contains("authority.audiences"), "{e}");
}

#[test]
fn missing_required_fields() {
    let e = refused(with(|c| {
        c["authority"].as_object_mut().unwrap().remove("issuer");
    }));
    assert!(e.contains("authority") && e.contains("issuer"), "{e}");
    let e = refused(with(|c| {
        c["signing"].as_object_mut().unwrap().remove("keyPem");
    }));
    assert!(e.contains("signing.keyPem"), "{e}");
    assert!(e.contains("REGISTRY_TOKEN_SIGNING__KEYPEM"), "{e}");
    let e = refused(with(|c| {
        c.as_object_mut().unwrap().remove("registry");
    }));
    assert!(e.contains("registry"), "{e}");
}

#[test]
fn bad_pem_names_signing_key_pem() {
    for pem in [
        "not a pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let e = refused(with(|c| c["signing"]["keyPem"] = json!(pem)));
        assert!(e.contains("signing.keyPem"), "{e}");
        assert!(!e.contains("AAAA"), "never echo key material: {e}");
    }
}

#[test]
fn every_supported_key_encoding_loads() {
    for (pem, alg) in [
        (signing_rsa().pkcs8_pem.clone(), "RS256"),
        (signing_rsa().pkcs1_pem.clone(), "RS256"),
        (signing_ec().pkcs8_pem.clone(), "ES256"),
        (signing_ec().sec1_pem.clone(), "ES256"),
    ] {
        let c = config_from(with(|c| {
            c["signing"] = json!({"keyPem": pem, "algorithm": alg})
        }));
        assert_eq!(c.signing.key.alg().name(), alg);
    }
}

#[test]
fn algorithm_must_fit_the_key() {
    let e = refused(with(|c| c["signing"]["algorithm"] = json!("ES256")));
    assert!(e.contains("signing.algorithm"), "{e}");
    let e = refused(with(|c| {
        c["signing"] = json!({"keyPem": signing_ec().pkcs8_pem})
    }));
    assert!(
        e.contains("signing.algorithm"),
        "an EC key with the RS256 default: {e}"
    );
    let e = refused(with(|c| c["signing"]["algorithm"] = json!("HS256")));
    assert!(e.contains("signing.algorithm"), "{e}");
}

#[test]
fn default_plan_must_name_a_plan() {
    let e = refused(with(|c| c["defaultPlan"] = json!("gold")));
    assert!(e.contains("defaultPlan"), "{e}");
    assert!(e.contains("gold"), "{e}");
}

#[test]
fn plan_errors_name_the_rule() {
    let e = refused(with(|c| {
        c["plans"][1]["repositories"][1]["pattern"] = json!("stella-ops/a**")
    }));
    assert!(e.contains("plans[1].repositories[1].pattern"), "{e}");
    let e = refused(with(|c| {
        c["plans"][0]["repositories"][0]["actions"] = json!(["pul"])
    }));
    assert!(e.contains("plans[0].repositories[0].actions"), "{e}");
}

#[test]
fn lifetime_is_bounded() {
    for bad in [0, 59, 3601, 86400] {
        let e = refused(with(|c| c["signing"]["lifetimeSeconds"] = json!(bad)));
        assert!(e.contains("signing.lifetimeSeconds"), "{e}");
    }
    for good in [60, 300, 3600] {
        config_from(with(|c| c["signing"]["lifetimeSeconds"] = json!(good)));
    }
}

#[test]
fn key_source_rules() {
    let e = refused(with(|c| {
        c["authority"]["metadataUrl"] =
            json!("https://authority.example/.well-known/openid-configuration")
    }));
    assert!(e.contains("authority.jwks"), "both set: {e}");
    let e = refused(with(|c| {
        c["authority"].as_object_mut().unwrap().remove("jwks");
    }));
    assert!(e.contains("authority.jwks"), "none set: {e}");
    let e = refused(with(|c| {
        c["authority"].as_object_mut().unwrap().remove("jwks");
        c["authority"]["metadataUrl"] =
            json!("https://authority.example/.well-known/openid-configuration");
    }));
    assert!(e.contains("authority.cluster"), "{e}");
    let c = config_from(with(|c| {
        c["authority"].as_object_mut().unwrap().remove("jwks");
        c["authority"]["metadataUrl"] =
            json!("https://authority.example/.well-known/openid-configuration");
        c["authority"]["cluster"] = json!("authority");
    }));
    match c.authority.keys {
        KeySource::Remote {
            cluster,
            refresh_seconds,
            metadata_url,
            ..
        } => {
            assert_eq!(cluster, "authority");
            assert_eq!(refresh_seconds, 300);
            assert_eq!(metadata_url.host, "authority.example");
        }
        KeySource::Inline(_) => panic!("expected remote"),
    }
    let e = refused(with(|c| c["authority"]["jwks"] = json!({"keys": []})));
    assert!(e.contains("authority.jwks"), "{e}");
    let e = refused(with(|c| {
        c["authority"]["jwks"]["keys"][0]["d"] = json!("AAAA")
    }));
    assert!(
        e.contains("authority.jwks"),
        "a private JWK must be refused: {e}"
    );
}

#[test]
fn realm_must_be_an_absolute_http_url() {
    for bad in ["/token", "ftp://x/token", "https://x/token?a=b", ""] {
        let e = refused(with(|c| c["registry"]["realm"] = json!(bad)));
        assert!(e.contains("registry.realm"), "{bad}: {e}");
    }
}

#[test]
fn kid_format_and_key_id() {
    let e = refused(with(|c| c["signing"]["kidFormat"] = json!("x5t")));
    assert!(e.contains("signing.kidFormat"), "{e}");
    let e = refused(with(|c| c["signing"]["keyId"] = json!("")));
    assert!(e.contains("signing.keyId"), "{e}");
}

#[test]
fn skew_and_algorithms_are_validated() {
    let e = refused(with(|c| c["authority"]["clockSkewSeconds"] = json!(301)));
    assert!(e.contains("authority.clockSkewSeconds"), "{e}");
    let e = refused(with(|c| {
        c["authority"]["algorithms"] = json!(["RS256", "HS256"])
    }));
    assert!(e.contains("authority.algorithms[1]"), "{e}");
    let e = refused(with(|c| c["authority"]["algorithms"] = json!(["none"])));
    assert!(e.contains("authority.algorithms[0]"), "{e}");
    let e = refused(with(|c| c["authority"]["audiences"] = json!([])));
    assert!(e.contains("authority.audiences"), "{e}");
}

#[test]
fn env_names_follow_the_contract() {
    assert_eq!(
        env_name("signing.lifetimeSeconds"),
        "REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS"
    );
    assert_eq!(env_name("signing.keyPem"), "REGISTRY_TOKEN_SIGNING__KEYPEM");
    assert_eq!(env_name("defaultPlan"), "REGISTRY_TOKEN_DEFAULTPLAN");
}

#[test]
fn env_overrides_win_over_the_file() {
    let mut v = base_config();
    v["signing"].as_object_mut().unwrap().remove("keyPem");
    let env = vec![
        (
            "REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS".to_string(),
            "120".to_string(),
        ),
        (
            "REGISTRY_TOKEN_SIGNING__KEYPEM".to_string(),
            signing_rsa().pkcs1_pem.clone(),
        ),
        (
            "REGISTRY_TOKEN_REVOKEDLICENSES".to_string(),
            "a, b".to_string(),
        ),
        (
            "REGISTRY_TOKEN_AUTHORITY__REQUIRESENDERCONSTRAINT".to_string(),
            "true".to_string(),
        ),
        (
            "REGISTRY_TOKEN_AUTHORITY__AUDIENCES".to_string(),
            "[\"x\",\"y\"]".to_string(),
        ),
        (
            "REGISTRY_TOKEN_DEFAULTPLAN".to_string(),
            "enterprise".to_string(),
        ),
        ("REGISTRY_TOKEN_SIGNING__KEYID".to_string(), String::new()),
        ("PATH".to_string(), "/bin".to_string()),
    ];
    let applied = apply_env_overrides(&mut v, env).unwrap();
    assert_eq!(applied.len(), 6, "{applied:?}");
    let c = config_from(v);
    assert_eq!(c.signing.lifetime_seconds, 120);
    assert!(c.revoked.licenses.contains("a") && c.revoked.licenses.contains("b"));
    assert!(c.authority.require_sender_constraint);
    assert_eq!(c.authority.audiences, vec!["x", "y"]);
    assert_eq!(c.default_plan.as_deref(), Some("enterprise"));
}

#[test]
fn env_override_creates_a_missing_section_and_is_still_validated() {
    let mut v = base_config();
    apply_env_overrides(&mut v, [("REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS", "5")]).unwrap();
    let e = refused(v);
    assert!(e.contains("signing.lifetimeSeconds"), "{e}");
}

#[test]
fn env_override_errors_name_the_variable() {
    let mut v = base_config();
    let e = apply_env_overrides(&mut v, [("REGISTRY_TOKEN_SIGNING__LIFETIME", "5")]).unwrap_err();
    assert!(
        e.to_string().contains("REGISTRY_TOKEN_SIGNING__LIFETIME"),
        "{e}"
    );
    let e = apply_env_overrides(
        &mut v,
        [("REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS", "soon")],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("REGISTRY_TOKEN_SIGNING__LIFETIMESECONDS"),
        "{e}"
    );
    assert!(e.to_string().contains("signing.lifetimeSeconds"), "{e}");
    let e = apply_env_overrides(
        &mut v,
        [("REGISTRY_TOKEN_AUTHORITY__REQUIRESENDERCONSTRAINT", "maybe")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("true or false"), "{e}");
}

#[test]
fn load_accepts_json_and_struct_bytes_identically() {
    let v = base_config();
    let json_bytes = v.to_string().into_bytes();
    let struct_bytes = registry_token_core::wire::structpb::encode_struct(&v).unwrap();
    let a = Config::load(&json_bytes, Vec::<(String, String)>::new()).unwrap();
    let b = Config::load(&struct_bytes, Vec::<(String, String)>::new()).unwrap();
    assert_eq!(a.signing.kid, b.signing.kid);
    assert_eq!(a.signing.lifetime_seconds, b.signing.lifetime_seconds);
    assert_eq!(a.authority.audiences, b.authority.audiences);
    assert_eq!(a.default_plan, b.default_plan);
    assert_eq!(a.revoked, b.revoked);
    let e = Config::load(b"", Vec::<(String, String)>::new()).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = Config::load(b"{not json", Vec::<(String, String)>::new()).unwrap_err();
    assert!(e.to_string().contains("JSON"), "{e}");
    let e = Config::load(b"\xff\xff\xff", Vec::<(String, String)>::new()).unwrap_err();
    assert!(e.to_string().contains("Struct"), "{e}");
}

fn openssl_cert(key_pem: &str, extra: &[&str]) -> String {
    let dir =
        std::env::temp_dir().join(format!("rtf-cert-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k.pem");
    std::fs::write(&key, key_pem).unwrap();
    let cert = dir.join("c.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=registry-token-test",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(extra)
        .status()
        .expect("openssl is needed by this test (make test installs it)");
    assert!(status.success());
    let pem = std::fs::read_to_string(&cert).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    pem
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn certificate_chain_becomes_x5c_and_must_match_the_key() {
    let cert = openssl_cert(&signing_rsa().pkcs8_pem, &[]);
    let c = config_from(with(|c| c["signing"]["certificateChainPem"] = json!(cert)));
    let x5c = c.signing.x5c.clone().unwrap();
    assert_eq!(x5c.len(), 1);
    let der_b64: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(x5c[0], der_b64);
    let other = openssl_cert(&other_rsa().pkcs8_pem, &[]);
    let e = refused(with(|c| c["signing"]["certificateChainPem"] = json!(other)));
    assert!(e.contains("signing.certificateChainPem"), "{e}");
    let e = refused(with(|c| {
        c["signing"]["certificateChainPem"] = json!("garbage")
    }));
    assert!(e.contains("signing.certificateChainPem"), "{e}");
}

#[test]
fn published_keys_are_served_with_the_active_key_first() {
    use rsa::pkcs8::EncodePublicKey;
    let other_pem = other_rsa()
        .public
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let c = config_from(with(|c| {
        c["signing"]["publishedKeys"] =
            json!([{"pem": other_pem}, {"pem": signing_ec_public_pem(), "keyId": "next"}]);
    }));
    let keys = c.signing.jwks["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0]["kid"], c.signing.kid.as_str());
    assert_eq!(keys[2]["kid"], "next");
    for k in &keys {
        assert!(k.get("d").is_none(), "public members only");
    }
    let d = registry_token_core::handler::jwks(&c);
    assert_eq!(d.status, 200);
    let body: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["keys"].as_array().unwrap().len(), 3);
    // The active key's JWK verifies tokens the filter mints (independent verifier).
    let set = registry_token_core::token::keys::KeySet::from_jwks(&body).unwrap();
    assert_eq!(set.len(), 3);
    let e = refused(with(|c| {
        c["signing"]["publishedKeys"] = json!([{"pem": "nope"}]);
    }));
    assert!(e.contains("signing.publishedKeys[0].pem"), "{e}");
    let e = refused(with(|c| {
        c["signing"]["keyId"] = json!("same");
        c["signing"]["publishedKeys"] = json!([{"pem": other_pem, "keyId": "same"}]);
    }));
    assert!(e.contains("signing.publishedKeys[0].keyId"), "{e}");
}

fn signing_ec_public_pem() -> String {
    use p256::pkcs8::DecodePrivateKey;
    use p256::pkcs8::EncodePublicKey;
    let k = p256::SecretKey::from_pkcs8_pem(&signing_ec().pkcs8_pem).unwrap();
    k.public_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
}

#[test]
fn realm_must_not_shadow_the_other_endpoints() {
    for path in ["/healthz", "/jwks"] {
        let e = refused(with(|c| {
            c["registry"]["realm"] = json!(format!("https://gateway.example{path}"))
        }));
        assert!(e.contains("registry.realm"), "{e}");
        assert!(e.contains(path), "{e}");
    }
}

/// Hardening: `registry.allowedServices` is required and never empty; `["*"]` is the only
/// way to accept any service, alone, and it is warned about.
#[test]
fn allowed_services_are_required() {
    let e = refused(with(|c| {
        c["registry"]
            .as_object_mut()
            .unwrap()
            .remove("allowedServices");
    }));
    assert!(e.contains("registry.allowedServices:"), "{e}");
    assert!(e.contains("required"), "{e}");
    let e = refused(with(|c| c["registry"]["allowedServices"] = json!([])));
    assert!(e.contains("registry.allowedServices:"), "{e}");
    let e = refused(with(|c| {
        c["registry"]["allowedServices"] = json!(["*", "registry.example"])
    }));
    assert!(e.contains("registry.allowedServices:"), "{e}");
    let star = config_from(with(|c| c["registry"]["allowedServices"] = json!(["*"])));
    assert!(star.registry.any_service);
    assert!(star.warnings()[0].contains("allowedServices"));
    assert!(config_from(base_config()).warnings().is_empty());
}

#[test]
fn offline_defaults_to_thirty_days_of_pull() {
    let c = config_from(base_config());
    assert_eq!(c.offline.max_lifetime_seconds, 2_592_000);
    assert_eq!(c.offline.allowed_actions, vec!["pull"]);
    assert!(c.offline.allows("pull"));
    assert!(!c.offline.allows("push"));
    let c = config_from(with(
        |c| {
            c["offline"] =
                json!({"maxLifetimeSeconds": 86400, "allowedActions": ["pull", "push", "pull"]})
        },
    ));
    assert_eq!(c.offline.max_lifetime_seconds, 86_400);
    assert_eq!(c.offline.allowed_actions, vec!["pull", "push"]);
    assert!(c.offline.allows("push") && !c.offline.allows("delete"));
    let c = config_from(with(|c| c["offline"] = json!({"allowedActions": ["*"]})));
    assert!(c.offline.allows("delete"));
    assert_eq!(c.offline.max_lifetime_seconds, 2_592_000);
}

#[test]
fn offline_fields_are_bounded_and_named() {
    for bad in [json!(59), json!(31_536_001), json!(0)] {
        let e = refused(with(|c| c["offline"] = json!({"maxLifetimeSeconds": bad})));
        assert!(e.contains("offline.maxLifetimeSeconds"), "{e}");
    }
    let e = refused(with(|c| c["offline"] = json!({"allowedActions": []})));
    assert!(e.contains("offline.allowedActions"), "{e}");
    let e = refused(with(|c| {
        c["offline"] = json!({"allowedActions": ["pull", "PUSH"]})
    }));
    assert!(e.contains("offline.allowedActions[1]"), "{e}");
    let e = refused(with(|c| c["offline"] = json!({"maxLifetime": 60})));
    assert!(e.contains("offline") && e.contains("maxLifetime"), "{e}");
}

#[test]
fn offline_env_overrides() {
    let mut v = base_config();
    apply_env_overrides(
        &mut v,
        [
            (env_name("offline.maxLifetimeSeconds"), "3600"),
            (env_name("offline.allowedActions"), "pull, push"),
        ],
    )
    .unwrap();
    assert_eq!(
        env_name("offline.maxLifetimeSeconds"),
        "REGISTRY_TOKEN_OFFLINE__MAXLIFETIMESECONDS"
    );
    let c = config_from(v);
    assert_eq!(c.offline.max_lifetime_seconds, 3600);
    assert_eq!(c.offline.allowed_actions, vec!["pull", "push"]);
    let mut v = base_config();
    let e = apply_env_overrides(
        &mut v,
        [(env_name("offline.maxLifetimeSeconds"), "a month")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("offline.maxLifetimeSeconds"), "{e}");
}

fn ledger_section() -> Value {
    json!({"cluster": "ledger"})
}

#[test]
fn ledger_defaults_and_bounds() {
    use registry_token_core::config::OnBacklogFull;
    let c = config_from(with(|c| c["ledger"] = ledger_section()));
    let l = c.ledger.expect("ledger configured");
    assert_eq!(l.path, "/v1/ingest");
    assert_eq!(l.authority, "ledger");
    assert_eq!(l.batch_size, 100);
    assert_eq!(l.flush_millis, 1000);
    assert_eq!(l.buffer_records, 10_000);
    assert_eq!(l.on_backlog_full, OnBacklogFull::Drop);
    assert_eq!(
        (
            l.timeout_millis,
            l.initial_backoff_millis,
            l.max_backoff_millis
        ),
        (5000, 500, 30_000)
    );
    assert!(l.gateway.is_none() && l.headers.is_empty());
    assert!(config_from(base_config()).ledger.is_none());

    let c = config_from(with(|c| {
        c["ledger"] = json!({"cluster": "ledger", "batchSize": 3, "bufferRecords": 7,
                             "onBacklogFull": "refuse", "headers": {"Authorization": "Bearer x"},
                             "gateway": "gw-1", "authority": "ledger.internal:8086"})
    }));
    let l = c.ledger.unwrap();
    assert_eq!(l.buffer_records, 9, "rounded up to a multiple of batchSize");
    assert_eq!(l.on_backlog_full, OnBacklogFull::Refuse);
    assert_eq!(
        l.headers,
        vec![("authorization".to_string(), "Bearer x".to_string())]
    );

    for (edit, field) in [
        (json!({"cluster": ""}), "ledger.cluster"),
        (json!({"cluster": "l", "batchSize": 0}), "ledger.batchSize"),
        (
            json!({"cluster": "l", "batchSize": 1001}),
            "ledger.batchSize",
        ),
        (
            json!({"cluster": "l", "batchSize": 10, "bufferRecords": 5}),
            "ledger.bufferRecords",
        ),
        (
            json!({"cluster": "l", "flushMillis": 10}),
            "ledger.flushMillis",
        ),
        (
            json!({"cluster": "l", "onBacklogFull": "block"}),
            "ledger.onBacklogFull",
        ),
        (json!({"cluster": "l", "path": "v1/ingest"}), "ledger.path"),
        (
            json!({"cluster": "l", "initialBackoffMillis": 5000, "maxBackoffMillis": 100}),
            "ledger.maxBackoffMillis",
        ),
        (
            json!({"cluster": "l", "headers": {"content-length": "1"}}),
            "ledger.headers.content-length",
        ),
        (
            json!({"cluster": "l", "headers": {"x-a": "b\r\nx-evil: 1"}}),
            "ledger.headers.x-a",
        ),
        (
            json!({"cluster": "l", "headers": {"bad name": "v"}}),
            "ledger.headers.bad name",
        ),
        (json!({"cluster": "l", "gateway": " "}), "ledger.gateway"),
        (json!({"cluster": "l", "batchsize": 5}), "batchsize"),
    ] {
        let e = refused(with(|c| c["ledger"] = edit.clone()));
        assert!(e.contains(field), "{edit}: {e}");
    }
}

#[test]
fn ledger_and_revocation_headers_come_from_the_environment() {
    let mut v = with(|c| {
        c["ledger"] = json!({"cluster": "ledger", "headers": {"Authorization": "from-file"}});
        c["revocation"] = json!({"url": "http://ledger/v1/revocations/feed", "cluster": "ledger"});
    });
    let applied = apply_env_overrides(
        &mut v,
        [
            (
                "REGISTRY_TOKEN_LEDGER__HEADERS__AUTHORIZATION",
                "Bearer ingest-secret",
            ),
            ("REGISTRY_TOKEN_LEDGER__HEADERS__X_TENANT_HINT", "eu"),
            (
                "REGISTRY_TOKEN_REVOCATION__HEADERS__AUTHORIZATION",
                "Bearer feed-secret",
            ),
            ("REGISTRY_TOKEN_LEDGER__BUFFERRECORDS", "500"),
        ],
    )
    .unwrap();
    assert_eq!(applied.len(), 4);
    let c = config_from(v);
    let l = c.ledger.unwrap();
    assert_eq!(
        l.headers,
        vec![
            (
                "authorization".to_string(),
                "Bearer ingest-secret".to_string()
            ),
            ("x-tenant-hint".to_string(), "eu".to_string()),
        ],
        "the environment replaces the file's header of the same name"
    );
    assert_eq!(l.buffer_records, 500);
    assert_eq!(
        c.revocation.unwrap().headers,
        vec![(
            "authorization".to_string(),
            "Bearer feed-secret".to_string()
        )]
    );
    assert_eq!(env_name("ledger.headers"), "REGISTRY_TOKEN_LEDGER__HEADERS");
    // A bare `…__HEADERS` is not a header.
    let mut v = base_config();
    let e = apply_env_overrides(&mut v, [("REGISTRY_TOKEN_LEDGER__HEADERS__", "x")]).unwrap_err();
    assert!(e.to_string().contains("unknown"), "{e}");
}
