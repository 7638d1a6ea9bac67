//! `registry-token bundle`: determinism, the configuration forms and environment overrides,
//! the policy, and every refusal leaving no file behind.

use std::fs;

use crate::common::*;
use registry_token_core::token::jws::Jws;
use serde_json::{json, Value};

fn manifest(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn claims(dir: &std::path::Path, name: &str) -> serde_json::Map<String, Value> {
    let text = fs::read_to_string(dir.join(format!("tokens/{name}.jwt"))).unwrap();
    Jws::parse(&text).unwrap().claims
}

fn header(dir: &std::path::Path, name: &str) -> serde_json::Map<String, Value> {
    let text = fs::read_to_string(dir.join(format!("tokens/{name}.jwt"))).unwrap();
    Jws::parse(&text).unwrap().header
}

fn deterministic(kind: Kind) {
    let bed = Bed::new(kind);
    let a = bed.good_bundle("a");
    let b = bed.good_bundle("b");
    let fa = files(&a);
    assert_eq!(
        fa.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        [
            "manifest.json",
            "manifest.jws",
            "tokens/base.jwt",
            "tokens/tools.jwt"
        ]
    );
    assert_eq!(fa, files(&b), "two runs must give byte-identical bundles");
    let o = bed.verify(&a);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains("base  repository:stella-ops/public/base:pull  expires 2099-01-20T00:00:00Z"),
        "{out}"
    );
    // The plan's first rule wins: locked is pull only, and asked for pull it is granted.
    assert!(out.contains("tools  repository:stella-ops/private/tools:pull repository:stella-ops/private/locked:pull"), "{out}");
}

#[test]
fn rs256_bundles_are_byte_identical_and_verify() {
    deterministic(Kind::Rsa);
}

#[test]
fn es256_bundles_are_byte_identical_and_verify() {
    deterministic(Kind::Ec);
}

#[test]
fn tokens_carry_the_window_and_the_gateway_header() {
    let bed = Bed::new(Kind::Rsa);
    let dir = bed.good_bundle("out");
    let m = manifest(&dir);
    let c = claims(&dir, "base");
    assert_eq!(c["nbf"], json!(4_070_908_800_u64)); // 2099-01-01T00:00:00Z
    assert_eq!(c["iat"], c["nbf"]);
    assert_eq!(c["exp"], json!(4_072_550_400_u64)); // 2099-01-20T00:00:00Z
    assert_eq!(c["aud"], json!(SERVICE));
    assert_eq!(c["sub"], json!("mirror-eu-1"));
    assert_eq!(c["iss"], json!("registry-token-service"));
    assert_eq!(c["jti"], m["tokens"][0]["jti"]);
    assert_eq!(c["access"], m["tokens"][0]["access"]);
    let h = header(&dir, "base");
    assert_eq!(h["alg"], json!("RS256"));
    assert_eq!(h["kid"], m["kid"]);
    assert!(!h.contains_key("x5c"));
    // The manifest: the request's fields, canonical bytes.
    assert_eq!(m["bundle"], json!("mirror-eu-2099-01"));
    assert_eq!(m["license"], json!("lic-0001"));
    assert_eq!(m["plan"], json!("enterprise"));
    assert_eq!(m["notBefore"], json!("2099-01-01T00:00:00Z"));
    assert_eq!(m["tokens"][1]["file"], json!("tokens/tools.jwt"));
    assert_eq!(
        m["tokens"][1]["requested"],
        json!([
            "repository:stella-ops/private/tools:pull",
            "repository:stella-ops/private/locked:pull"
        ])
    );
    let text = fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(!text.contains(' ') && !text.contains('\n'), "{text}");
    assert_eq!(registry_token_cli::canonical::to_string(&m), text);
    let jws = fs::read_to_string(dir.join("manifest.jws")).unwrap();
    assert_eq!(jws.split('.').nth(1), Some(""), "detached: {jws}");
    // Bearer secrets: the folders 0700, the files 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("tokens")), 0o700);
    assert_eq!(mode(&dir.join("tokens/base.jwt")), 0o600);
    assert_eq!(mode(&dir.join("manifest.json")), 0o600);
    // Two tokens never share a jti.
    assert_ne!(m["tokens"][0]["jti"], m["tokens"][1]["jti"]);
}

#[test]
fn the_certificate_chain_goes_into_x5c() {
    let mut bed = Bed::new(Kind::Rsa);
    openssl(
        bed.dir.path(),
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "signing.pem",
            "-days",
            "2",
            "-subj",
            "/CN=t",
            "-out",
            "cert.pem",
        ],
    );
    let cert = fs::read_to_string(bed.path("cert.pem")).unwrap();
    bed.config["signing"]["certificateChainPem"] = json!(cert);
    bed.write_config();
    let dir = bed.good_bundle("out");
    let h = header(&dir, "base");
    assert_eq!(h["x5c"].as_array().map(Vec::len), Some(1));
    let jws = fs::read_to_string(dir.join("manifest.jws")).unwrap();
    let jh: Value = serde_json::from_slice(
        &registry_token_core::wire::b64::url_decode(jws.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(jh["x5c"], h["x5c"]);
    assert_ok(&bed.verify(&dir));
}

#[test]
fn a_different_input_changes_the_bytes() {
    let bed = Bed::new(Kind::Rsa);
    let base = bed.good_bundle("base");
    type Change = Box<dyn Fn(&mut Value)>;
    let changes: Vec<(&str, Change)> = vec![
        ("subject", Box::new(|r| r["subject"] = json!("mirror-eu-2"))),
        (
            "notAfter",
            Box::new(|r| r["notAfter"] = json!("2099-01-19T00:00:00Z")),
        ),
        ("bundle", Box::new(|r| r["bundle"] = json!("other"))),
        ("license", Box::new(|r| r["license"] = json!("lic-0002"))),
    ];
    for (i, (what, change)) in changes.iter().enumerate() {
        let mut r = request();
        change(&mut r);
        let out = format!("changed{i}");
        assert_ok(&bed.bundle(&r, &out));
        let dir = bed.path(&out);
        for f in ["manifest.json", "manifest.jws", "tokens/base.jwt"] {
            assert_ne!(
                fs::read(base.join(f)).unwrap(),
                fs::read(dir.join(f)).unwrap(),
                "{what} changed but {f} did not"
            );
        }
        assert_ne!(
            claims(&base, "base")["jti"],
            claims(&dir, "base")["jti"],
            "{what}"
        );
    }
    // Another key: other signatures and kid.
    let other = Bed::new(Kind::Rsa);
    let dir = other.good_bundle("other");
    assert_ne!(
        fs::read(base.join("manifest.jws")).unwrap(),
        fs::read(dir.join("manifest.jws")).unwrap()
    );
}

fn quickstart_request() -> Value {
    let mut r = request();
    r["service"] = json!("registry.localhost");
    r["plan"] = json!("community");
    r["tokens"] = json!([{"name": "base", "scopes": ["repository:stella-ops/public/base:pull"]}]);
    r
}

#[test]
fn envoy_quickstart_yaml_with_its_environment() {
    let bed = Bed::new(Kind::Rsa);
    let quickstart = repo_root().join("envoy/quickstart.yaml");
    let req = bed.request_file("req.json", &quickstart_request());
    let jwks = bed.config["authority"]["jwks"].to_string();
    let args = |out: &str| {
        vec![
            "bundle".to_string(),
            "--config".into(),
            quickstart.display().to_string(),
            "--request".into(),
            req.display().to_string(),
            "--out".into(),
            bed.path(out).display().to_string(),
        ]
    };
    let argv = args("q1");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    // Without the key (quickstart has none in the file) the configuration is refused,
    // naming the field and its variable.
    let o = run(&argv, &[("REGISTRY_TOKEN_AUTHORITY__JWKS", &jwks)]);
    assert_fails(&o, &["signing.keyPem", "REGISTRY_TOKEN_SIGNING__KEYPEM"]);
    assert!(!bed.path("q1").exists());
    // With the two host_env_keys quickstart lists, it mints; a variable the filter would not
    // see (not in host_env_keys) is not applied, and said so.
    let o = run(
        &argv,
        &[
            ("REGISTRY_TOKEN_SIGNING__KEYPEM", &bed.signing_pem),
            ("REGISTRY_TOKEN_AUTHORITY__JWKS", &jwks),
            ("REGISTRY_TOKEN_OFFLINE__MAXLIFETIMESECONDS", "60"),
        ],
    );
    assert_ok(&o);
    assert!(
        stderr(&o).contains("REGISTRY_TOKEN_OFFLINE__MAXLIFETIMESECONDS is set but not passed"),
        "{}",
        stderr(&o)
    );
    let h = header(&bed.path("q1"), "base");
    let kid = registry_token_core::token::keys::PrivateKey::from_pem(&bed.signing_pem)
        .unwrap()
        .public()
        .thumbprint()
        .to_string();
    assert_eq!(h["kid"], json!(kid));
    // verify-bundle --config with the same environment.
    let o = run(
        &[
            "verify-bundle",
            bed.path("q1").to_str().unwrap(),
            "--config",
            quickstart.to_str().unwrap(),
            "--at",
            AT,
        ],
        &[
            ("REGISTRY_TOKEN_SIGNING__KEYPEM", &bed.signing_pem),
            ("REGISTRY_TOKEN_AUTHORITY__JWKS", &jwks),
        ],
    );
    assert_ok(&o);
}

#[test]
fn envoy_gateway_yaml_struct_form() {
    let bed = Bed::new(Kind::Rsa);
    let gateway = repo_root().join("envoy/gateway.yaml");
    let mut r = quickstart_request();
    r["service"] = json!("registry.example");
    let req = bed.request_file("req.json", &r);
    let out = bed.path("g");
    let o = run(
        &[
            "bundle",
            "--config",
            gateway.to_str().unwrap(),
            "--request",
            req.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[("REGISTRY_TOKEN_SIGNING__KEYPEM", &bed.signing_pem)],
    );
    assert_ok(&o);
    assert_eq!(claims(&out, "base")["aud"], json!("registry.example"));
}

#[test]
fn the_same_configuration_as_yaml_struct_and_string_value_gives_the_same_bundle() {
    let bed = Bed::new(Kind::Rsa);
    let plugin_yaml = serde_yaml::to_string(&bed.config).unwrap();
    let string_value = format!(
        "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n          http_filters:\n          - typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n              config:\n                root_id: registry_token\n                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: {}\n",
        Value::String(bed.config.to_string())
    );
    let struct_form = format!(
        "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n          http_filters:\n          - typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n              config:\n                root_id: registry_token\n                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.Struct\n                  value: {}\n",
        bed.config
    );
    let req = bed.request_file("req.json", &request());
    let reference = files(&bed.good_bundle("ref"));
    for (i, text) in [plugin_yaml, string_value, struct_form].iter().enumerate() {
        let cfg = bed.path(&format!("cfg{i}.yaml"));
        fs::write(&cfg, text).unwrap();
        let out = bed.path(&format!("out{i}"));
        let o = run(
            &[
                "bundle",
                "--config",
                cfg.to_str().unwrap(),
                "--request",
                req.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert_ok(&o);
        assert_eq!(files(&out), reference, "form {i}");
    }
}

#[test]
fn env_overrides_apply_to_a_plugin_configuration_alone() {
    let bed = Bed::new(Kind::Rsa);
    let req = bed.request_file("req.json", &request());
    let out = bed.path("o");
    let config = bed.config_path();
    let args = [
        "bundle",
        "--config",
        config.to_str().unwrap(),
        "--request",
        req.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = run(
        &args,
        &[("REGISTRY_TOKEN_OFFLINE__MAXLIFETIMESECONDS", "86400")],
    );
    assert_fails(&o, &["notAfter", "offline.maxLifetimeSeconds (86400 s)"]);
    assert!(!out.exists());
    let o = run(
        &args,
        &[("REGISTRY_TOKEN_SIGNING__ISSUER", "offline-issuer")],
    );
    assert_ok(&o);
    assert_eq!(claims(&out, "base")["iss"], json!("offline-issuer"));
    fs::remove_dir_all(&out).unwrap();
    let o = run(&args, &[("REGISTRY_TOKEN_NOPE", "1")]);
    assert_fails(&o, &["REGISTRY_TOKEN_NOPE"]);
}

/// Runs a bundle for `r` in a fresh `out`; asserts it fails naming `needles` and that
/// nothing was written (no `out`, no temporary folder).
fn refused(bed: &Bed, r: &Value, needles: &[&str]) {
    let before: Vec<String> = fs::read_dir(bed.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".request.json"))
        .collect();
    let o = bed.bundle(r, "refused");
    assert_fails(&o, needles);
    assert!(
        !bed.path("refused").exists(),
        "a refused bundle left its folder"
    );
    let after: Vec<String> = fs::read_dir(bed.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".request.json"))
        .collect();
    assert_eq!(before, after, "a refused bundle left files");
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut r = request();
    f(&mut r);
    r
}

#[test]
fn each_policy_refusal_names_its_field_and_writes_nothing() {
    let bed = Bed::new(Kind::Rsa);
    refused(
        &bed,
        &with(|r| r["tokens"][0]["scopes"] = json!(["repository:other/thing:pull"])),
        &["tokens[0]", "grants none"],
    );
    refused(
        &bed,
        &with(|r| r["license"] = json!("lic-0042")),
        &["field license", "revoked"],
    );
    refused(
        &bed,
        &with(|r| r["subject"] = json!("mallory")),
        &["field subject", "revoked"],
    );
    refused(
        &bed,
        &with(|r| r["plan"] = json!("platinum")),
        &["field plan", "platinum"],
    );
    refused(
        &bed,
        &with(|r| r["notAfter"] = json!("2099-02-01T00:00:01Z")),
        &["field notAfter", "offline.maxLifetimeSeconds (2592000 s)"],
    );
    refused(
        &bed,
        &with(|r| {
            r["tokens"][1]["scopes"][1] = json!("repository:stella-ops/private/tools:pull,push")
        }),
        &["tokens[1].scopes[1]", "\"push\"", "offline.allowedActions"],
    );
    refused(
        &bed,
        &with(|r| r["tokens"][0]["scopes"] = json!(["repository:stella-ops/public/base:*"])),
        &["tokens[0].scopes[0]", "offline.allowedActions"],
    );
    refused(
        &bed,
        &with(|r| r["service"] = json!("other.example")),
        &["field service", "allowedServices"],
    );
    refused(&bed, &with(|r| r["extra"] = json!(1)), &["extra"]);
    refused(
        &bed,
        &with(|r| r["tokens"][0]["scope"] = json!([])),
        &["tokens[0]", "scope"],
    );
    refused(
        &bed,
        &with(|r| {
            r.as_object_mut().unwrap().remove("notBefore");
        }),
        &["notBefore"],
    );
    refused(
        &bed,
        &with(|r| r["tenant"] = json!("Acme/../x")),
        &["field tenant"],
    );
    refused(
        &bed,
        &with(|r| r["tokens"][1]["name"] = json!("BASE")),
        &["tokens[1].name", "already"],
    );
    refused(
        &bed,
        &with(|r| r["tokens"][0]["name"] = json!("../x")),
        &["tokens[0].name"],
    );
    refused(&bed, &with(|r| r["tokens"] = json!([])), &["field tokens"]);
    refused(
        &bed,
        &with(|r| r["tokens"][0]["scopes"] = json!(["repository:UPPER:pull"])),
        &["tokens[0].scopes[0]"],
    );
    refused(
        &bed,
        &with(|r| r["notBefore"] = json!("2099-01-01")),
        &["field notBefore", "RFC 3339"],
    );
    refused(
        &bed,
        &with(|r| r["notAfter"] = json!("2098-12-31T00:00:00Z")),
        &["field notAfter", "after notBefore"],
    );
    refused(
        &bed,
        &with(|r| {
            r["notBefore"] = json!("2001-01-01T00:00:00Z");
            r["notAfter"] = json!("2001-01-02T00:00:00Z");
        }),
        &["field notAfter", "already past"],
    );
}

#[test]
fn offline_limits_come_from_the_configuration() {
    let mut bed = Bed::new(Kind::Rsa);
    bed.config["offline"] =
        json!({"allowedActions": ["pull", "push"], "maxLifetimeSeconds": 31_536_000});
    bed.write_config();
    let r = with(|r| {
        r["notAfter"] = json!("2099-06-01T00:00:00Z");
        r["tokens"][1]["scopes"] = json!([
            "repository:stella-ops/private/tools:pull,push",
            "repository:stella-ops/private/locked:pull,push"
        ]);
    });
    let o = bed.bundle(&r, "push");
    assert_ok(&o);
    let m = manifest(&bed.path("push"));
    // asked ∩ allowed, first rule wins: locked stays pull only.
    assert_eq!(
        m["tokens"][1]["access"],
        json!([
            {"type": "repository", "name": "stella-ops/private/tools", "actions": ["pull", "push"]},
            {"type": "repository", "name": "stella-ops/private/locked", "actions": ["pull"]}
        ])
    );
    // A bad offline section is a configuration error naming the field.
    bed.config["offline"] = json!({"allowedActions": ["fetch"]});
    bed.write_config();
    refused(&bed, &request(), &["offline.allowedActions[0]"]);
}

#[test]
fn an_existing_non_empty_out_is_refused_and_left_alone() {
    let bed = Bed::new(Kind::Rsa);
    let dir = bed.good_bundle("out");
    let before = files(&dir);
    let o = bed.bundle(&request(), "out");
    assert_fails(&o, &["--out", "not empty"]);
    assert_eq!(files(&dir), before);
    // An empty folder is used.
    fs::create_dir(bed.path("empty")).unwrap();
    assert_ok(&bed.bundle(&request(), "empty"));
    assert_eq!(files(&bed.path("empty")), before);
    // A file is not a folder.
    fs::write(bed.path("file"), b"x").unwrap();
    assert_fails(&bed.bundle(&request(), "file"), &["not a directory"]);
}

#[test]
fn a_remote_revocation_list_is_checked_when_given() {
    let mut bed = Bed::new(Kind::Rsa);
    let list = bed.path("revoked.json");
    fs::write(&list, r#"{"revokedLicenses": ["lic-0001"]}"#).unwrap();
    let req = bed.request_file("req.json", &request());
    let out = bed.path("o");
    let config = bed.config_path();
    let base = |extra: &[&str]| {
        let mut v = vec![
            "bundle",
            "--config",
            config.to_str().unwrap(),
            "--request",
            req.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        run(&v, &[])
    };
    assert_fails(
        &base(&["--revocation-list", list.to_str().unwrap()]),
        &["field license", "revoked"],
    );
    assert!(!out.exists());
    // The digest form, as the gateways fetch it (?form=digests), refuses the same.
    use registry_token_core::policy::revocation::{parse_lists, DigestLists};
    let values = parse_lists(br#"{"revokedLicenses": ["lic-0001"]}"#).unwrap();
    let digests = DigestLists::from_values(&values).to_feed(1);
    let digest_list = bed.path("revoked-digests.json");
    fs::write(&digest_list, serde_json::to_vec(&digests).unwrap()).unwrap();
    assert_fails(
        &base(&["--revocation-list", digest_list.to_str().unwrap()]),
        &["field license", "revoked"],
    );
    assert!(!out.exists());
    let other = DigestLists::from_values(&parse_lists(br#"["lic-0002"]"#).unwrap()).to_feed(1);
    fs::write(&digest_list, serde_json::to_vec(&other).unwrap()).unwrap();
    assert_ok(&base(&["--revocation-list", digest_list.to_str().unwrap()]));
    fs::remove_dir_all(&out).unwrap();
    // Configured with onStale: refuse and not given → refused; with serve → a warning.
    bed.config["revocation"] =
        json!({"url": "https://lic.example/revoked.json", "cluster": "lic", "onStale": "refuse"});
    bed.write_config();
    assert_fails(&base(&[]), &["revocation", "--revocation-list"]);
    bed.config["revocation"]["onStale"] = json!("serve");
    bed.write_config();
    let o = base(&[]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains("only the inline lists were checked"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tenant_placeholders_grant_only_the_tenants_namespace() {
    let mut bed = Bed::new(Kind::Rsa);
    bed.config["plans"] = json!([{"name": "tenants", "repositories": [
        {"pattern": "tenants/{tenant}/**", "actions": ["pull"]},
        {"pattern": "users/{sub}/*", "actions": ["pull"]}]}]);
    bed.config["defaultPlan"] = json!("tenants");
    bed.config["revokedTenants"] = json!(["evil"]);
    bed.write_config();
    let r = |tenant: &str| {
        let mut r = request();
        r["plan"] = json!("tenants");
        r["tenant"] = json!(tenant);
        r["tokens"] = json!([{"name": "t", "scopes": [
            "repository:tenants/acme/app:pull", "repository:tenants/other/app:pull",
            "repository:users/mirror-eu-1/x:pull"]}]);
        r
    };
    assert_ok(&bed.bundle(&r("acme"), "acme"));
    let m = serde_json::from_slice::<Value>(&fs::read(bed.path("acme/manifest.json")).unwrap())
        .unwrap();
    assert_eq!(
        m["tokens"][0]["access"],
        json!([
        {"type": "repository", "name": "tenants/acme/app", "actions": ["pull"]},
        {"type": "repository", "name": "users/mirror-eu-1/x", "actions": ["pull"]}])
    );
    assert_eq!(claims(&bed.path("acme"), "t")["tenant"], json!("acme"));
    assert_ok(&bed.verify(&bed.path("acme")));
    let o = bed.bundle(&r("evil"), "evil");
    assert_fails(&o, &["field tenant", "revoked"]);
}
