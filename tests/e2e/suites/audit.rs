//! The audit record reaches an Envoy access log through filter state
//! (`%FILTER_STATE(wasm.registry_token_audit:PLAIN)%`, as envoy/gateway.yaml ships it).

use std::time::{Duration, Instant};

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, ConfigForm, GatewaySpec, TestKeys,
};
use registry_token_e2e::EnvoyOptions;
use serde_json::Value;

#[test]
fn access_log_carries_one_audit_record_per_decision_and_no_secret() {
    let keys = TestKeys::generate();
    let cfg = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
    let yaml = GatewaySpec::new(&cfg).form(ConfigForm::StringValue).yaml();
    let access_log = r#"          stat_prefix: registry_token
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "{{TMPDIR}}/access.log"
              log_format:
                json_format:
                  status: "%RESPONSE_CODE%"
                  path: "%REQ(:PATH)%"
                  audit: "%FILTER_STATE(wasm.registry_token_audit:PLAIN)%"
"#;
    assert!(
        yaml.contains("          stat_prefix: registry_token\n"),
        "quickstart shape changed"
    );
    let yaml = yaml.replacen("          stat_prefix: registry_token\n", access_log, 1);
    // The rendered YAML lists REGISTRY_TOKEN_SIGNING__KEYPEM in host_env_keys.
    let mut opts = EnvoyOptions::new();
    opts.env.push((
        "REGISTRY_TOKEN_SIGNING__KEYPEM".to_string(),
        keys.signing_key_pem().to_string(),
    ));
    let envoy = registry_token_e2e::Envoy::start(&yaml, opts).expect("envoy starts");
    let ok = optok(&keys, |s| s.subject = "alice".into());
    let issued = envoy.get(
        &token_path(
            "registry.example",
            &["repository:stella-ops/public/base:pull"],
        ),
        &[("authorization", &bearer(&ok))],
    );
    assert_eq!(issued.status, 200, "{}", issued.body);
    let denied = envoy.get(
        &token_path("registry.example", &["repository:other/thing:push"]),
        &[("authorization", &bearer(&ok))],
    );
    assert_eq!(denied.status, 403);
    assert_eq!(envoy.get("/healthz", &[]).status, 200);
    let path = envoy.dir().join("access.log");
    let start = Instant::now();
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 3 || start.elapsed() > Duration::from_secs(15) {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(lines.len(), 3, "{lines:?}");
    let token = issued.json()["token"].as_str().expect("token").to_string();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        !text.contains(&ok),
        "the OpTok must not reach the access log"
    );
    assert!(
        !text.contains(&token),
        "the minted token must not reach the access log"
    );
    let audit = |v: &Value| -> Value {
        serde_json::from_str(v["audit"].as_str().expect("audit string")).expect("audit JSON")
    };
    let a = audit(&lines[0]);
    assert_eq!(a["decision"], "issued");
    assert_eq!(a["subject"], "alice");
    assert_eq!(a["plan"], "community");
    assert_eq!(a["service"], "registry.example");
    assert_eq!(a["granted"][0], "repository:stella-ops/public/base:pull");
    let (_, claims) = registry_token_e2e::gateway::decode_unverified(&token).expect("jwt");
    assert_eq!(a["jti"], claims["jti"]);
    assert_eq!(a["exp"], claims["exp"]);
    let b = audit(&lines[1]);
    assert_eq!(b["decision"], "rejected");
    assert_eq!(b["reason"], "plan_denied");
    assert_eq!(b["requested"][0], "repository:other/thing:push");
    assert!(b.get("jti").is_none());
    // Requests that are not token decisions carry no record.
    assert_eq!(lines[2]["path"], "/healthz");
    assert!(
        lines[2]["audit"].is_null() || lines[2]["audit"] == "-",
        "{}",
        lines[2]
    );
}
