//! The audit record: one line per decision in Envoy's log with no secret in it, the same
//! record in an Envoy access log through filter state
//! (`%FILTER_STATE(wasm.registry_token_audit:PLAIN)%`, as `envoy/gateway.yaml` ships it),
//! and line breakers in request values escaped.

use std::time::{Duration, Instant};

use registry_token_e2e::authority::{now, OpTokSpec};
use registry_token_e2e::dpop::DpopKey;
use registry_token_e2e::gateway::{
    bearer, filter_config, optok, start_gateway, token_path, verify_registry_token, ConfigForm,
    GatewaySpec, TestKeys, REVOKED_LICENSE, SERVICE,
};
use registry_token_e2e::{Envoy, EnvoyOptions};
use serde_json::{json, Value};

use super::common::{LAG, PRIVATE_PUSH, PULL, REALM};
use super::optoken::Gateway;

const PUBLIC_PULL: &str = "repository:stella-ops/public/base:pull";

/// The prefix of the filter's audit lines in Envoy's log.
const AUDIT_PREFIX: &str = "registry-token-filter: audit ";

/// An OpTok from `spec` with further claims (e.g. `client_id`), signed by the test
/// Authority like [`optok`].
fn optok_with(keys: &TestKeys, spec: &OpTokSpec, extra: &[(&str, Value)]) -> String {
    let mut claims = spec.claims();
    if let Some(o) = claims.as_object_mut() {
        for (k, v) in extra {
            o.insert((*k).to_owned(), v.clone());
        }
    }
    keys.authority
        .sign(&claims, Some(keys.authority.kid()), Some("at+jwt"))
}

/// Every audit record in Envoy's log, parsed, in order.
fn audit_records(envoy: &Envoy) -> Vec<Value> {
    envoy
        .full_log()
        .lines()
        .filter_map(|l| l.split_once(AUDIT_PREFIX).map(|(_, json)| json))
        .map(|json| {
            serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("an audit line is not JSON ({e}): {json}"))
        })
        .collect()
}

/// Waits until there are at least `n` audit records; returns them all.
fn wait_audit(envoy: &Envoy, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + LAG;
    loop {
        let records = audit_records(envoy);
        if records.len() >= n || Instant::now() >= deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct AuditCase {
    name: &'static str,
    optok: String,
    proof: Option<String>,
    scopes: Vec<&'static str>,
    status: u16,
    /// The record's members that must have exactly these values (besides `time`, `jti`
    /// and `exp`, checked separately); every other member of [`AUDIT_FIELDS`] must be
    /// absent.
    expect: Value,
}

/// Every member an audit record may have.
const AUDIT_FIELDS: [&str; 21] = [
    "id",
    "time",
    "decision",
    "reason",
    "grant",
    "subject",
    "client_id",
    "tenant",
    "request_client_id",
    "refresh_token_id",
    "binding",
    "license",
    "plan",
    "service",
    "requested",
    "granted",
    "jti",
    "iat",
    "exp",
    "kid",
    "gateway",
];

/// One audit line per decision (issued, plan_denied, expired, license_revoked,
/// malformed_scope), with the right values, and nothing secret anywhere in Envoy's log:
/// no OpTok, no DPoP proof, no minted token, no JWT at all (`eyJ`), no PEM.
#[test]
fn one_audit_line_per_decision_and_no_secret_in_the_log() {
    let keys = TestKeys::generate();
    let envoy = start_gateway(
        &filter_config(&keys, REALM),
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new(),
    );
    let realm = format!("{}/token", envoy.base_url());
    let dpop = DpopKey::generate(&keys, "dpop");

    let issued_op = optok_with(
        &keys,
        &OpTokSpec {
            subject: "alice".into(),
            plan: Some("enterprise".into()),
            jkt: Some(dpop.jkt.clone()),
            ..OpTokSpec::default()
        },
        &[("client_id", json!("ci-pipeline"))],
    );
    let issued_proof = dpop.proof("GET", &realm, &issued_op);
    let cases = vec![
        AuditCase {
            name: "issued",
            proof: Some(issued_proof),
            optok: issued_op,
            scopes: vec![PRIVATE_PUSH, PUBLIC_PULL],
            status: 200,
            expect: json!({
                "decision": "issued",
                "reason": "issued",
                "subject": "alice",
                "client_id": "ci-pipeline",
                "binding": format!("jkt:{}", dpop.jkt),
                "plan": "enterprise",
                "service": SERVICE,
                "requested": [
                    "repository:stella-ops/private/app:pull,push",
                    "repository:stella-ops/public/base:pull"
                ],
                "granted": [
                    "repository:stella-ops/private/app:pull,push",
                    "repository:stella-ops/public/base:pull"
                ],
            }),
        },
        AuditCase {
            name: "plan_denied",
            optok: optok_with(
                &keys,
                &OpTokSpec {
                    subject: "bob".into(),
                    ..OpTokSpec::default()
                },
                &[("client_id", json!("laptop"))],
            ),
            proof: None,
            scopes: vec!["repository:stella-ops/private/app:push"],
            status: 403,
            expect: json!({
                "decision": "rejected",
                "reason": "plan_denied",
                "subject": "bob",
                "client_id": "laptop",
                "plan": "community",
                "service": SERVICE,
                "requested": ["repository:stella-ops/private/app:push"],
                "granted": [],
            }),
        },
        AuditCase {
            name: "expired",
            optok: optok(&keys, |s| {
                s.subject = "carol".into();
                s.plan = Some("enterprise".into());
                s.time_offset = -3600;
            }),
            proof: None,
            scopes: vec![PUBLIC_PULL],
            status: 401,
            // The OpTok did not verify: none of its claims is trusted, so no subject.
            expect: json!({
                "decision": "rejected",
                "reason": "expired",
                "service": SERVICE,
                "requested": [PUBLIC_PULL],
                "granted": [],
            }),
        },
        AuditCase {
            name: "license_revoked",
            optok: optok(&keys, |s| {
                s.subject = "dave".into();
                s.plan = Some("enterprise".into());
                s.license = Some(REVOKED_LICENSE.into());
            }),
            proof: None,
            scopes: vec![PUBLIC_PULL],
            status: 403,
            // The licence is checked before the plan.
            expect: json!({
                "decision": "rejected",
                "reason": "license_revoked",
                "subject": "dave",
                "license": REVOKED_LICENSE,
                "service": SERVICE,
                "requested": [PUBLIC_PULL],
                "granted": [],
            }),
        },
        AuditCase {
            name: "malformed_scope",
            optok: optok(&keys, |s| s.subject = "erin".into()),
            proof: None,
            scopes: vec!["repository:Stella-Ops/UPPER:pull"],
            status: 400,
            expect: json!({
                "decision": "rejected",
                "reason": "malformed_scope",
                "service": SERVICE,
                // What was asked is kept even when it does not parse.
                "requested": ["repository:Stella-Ops/UPPER:pull"],
                "granted": [],
            }),
        },
    ];

    let mut minted = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let t0 = now();
        let path = token_path(SERVICE, &case.scopes);
        let reply = match &case.proof {
            Some(p) => envoy.get(
                &path,
                &[
                    ("authorization", &format!("DPoP {}", case.optok)),
                    ("dpop", p),
                ],
            ),
            None => envoy.get(
                &path,
                &[("authorization", &format!("Bearer {}", case.optok))],
            ),
        };
        let t1 = now();
        assert_eq!(reply.status, case.status, "{}: {reply:?}", case.name);
        let records = wait_audit(&envoy, i + 1);
        assert_eq!(
            records.len(),
            i + 1,
            "{}: one audit line per decision, got {records:#?}",
            case.name
        );
        let record = &records[i];
        let obj = record
            .as_object()
            .unwrap_or_else(|| panic!("{}: not an object: {record}", case.name));
        for member in obj.keys() {
            assert!(
                AUDIT_FIELDS.contains(&member.as_str()),
                "{}: unexpected member {member:?} in {record}",
                case.name
            );
        }
        let time = record["time"].as_i64().unwrap_or(0);
        assert!(
            (t0 - 1..=t1 + 1).contains(&time),
            "{}: time {time} not in {t0}..={t1}",
            case.name
        );
        let expect = case.expect.as_object().cloned().unwrap_or_default();
        // Every case here is a GET: when the grant is recorded, it is that one.
        if let Some(grant) = record.get("grant") {
            assert_eq!(grant, "get", "{}: {record}", case.name);
        }
        for field in AUDIT_FIELDS {
            if matches!(
                field,
                "time" | "jti" | "exp" | "grant" | "id" | "iat" | "kid" | "gateway"
            ) {
                continue;
            }
            assert_eq!(
                record.get(field),
                expect.get(field),
                "{}: audit member {field:?} in {record}",
                case.name
            );
        }
        if case.status == 200 {
            let token = reply.json()["token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token: {}", reply.body))
                .to_owned();
            let (header, claims) = verify_registry_token(&token, &keys.signing_public_pem())
                .unwrap_or_else(|e| panic!("minted token: {e}"));
            assert_eq!(record["jti"], claims["jti"], "{record} vs {claims}");
            assert_eq!(record["exp"], claims["exp"], "{record} vs {claims}");
            assert_eq!(record["iat"], claims["iat"], "{record} vs {claims}");
            assert!(record.get("id").is_none(), "the jti is the id: {record}");
            assert_eq!(record["kid"], header["kid"], "{record} vs {header}");
            minted.push(token);
        } else {
            assert!(
                record["id"].as_str().is_some_and(|id| id.len() >= 16),
                "{}: a refusal has a request id: {record}",
                case.name
            );
            assert!(
                record.get("jti").is_none()
                    && record.get("exp").is_none()
                    && record.get("iat").is_none()
                    && record.get("kid").is_none(),
                "{}: a refusal mints nothing: {record}",
                case.name
            );
        }
    }
    assert_eq!(minted.len(), 1);
    // No late extra line.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(audit_records(&envoy).len(), cases.len());

    // Nothing secret anywhere in what Envoy wrote.
    let log = envoy.full_log();
    let mut secrets: Vec<(String, String)> = Vec::new();
    for case in &cases {
        secrets.push((format!("{} OpTok", case.name), case.optok.clone()));
        if let Some(p) = &case.proof {
            secrets.push((format!("{} DPoP proof", case.name), p.clone()));
        }
    }
    for t in &minted {
        secrets.push(("minted token".into(), t.clone()));
    }
    let mut jwt_parts = Vec::new();
    for (what, jwt) in &secrets {
        // Each part (a signature alone would be enough to spot a leak).
        for (i, part) in jwt.split('.').enumerate() {
            jwt_parts.push((format!("{what} part {i}"), part.to_owned()));
        }
    }
    secrets.extend(jwt_parts);
    for pem in [
        keys.signing_key_pem(),
        keys.authority_key_pem.as_str(),
        dpop.key_pem.as_str(),
    ] {
        // Any line of the key's base64 body.
        for line in pem.lines().filter(|l| !l.starts_with("-----")).take(3) {
            secrets.push(("a private key line".into(), line.to_owned()));
        }
    }
    for (what, secret) in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{what} appears in Envoy's log"
        );
    }
    assert!(!log.contains("-----BEGIN"), "a PEM appears in Envoy's log");
    assert!(
        !log.contains("eyJ"),
        "something like a JWT appears in Envoy's log"
    );
}

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

/// The audit line must not be split by a caller's text: U+2028, U+2029, U+0085 and C0
/// controls in `service` land escaped in Envoy's log.
#[test]
fn audit_lines_escape_line_breakers() {
    let g = Gateway::start(|_| {});
    let token = optok(&g.keys, |_| {});
    let nasty = "%E2%80%A8x%E2%80%A9y%C2%85z%01w%7F";
    let path = format!("/token?service=evil{nasty}&scope={PULL}");
    g.refused(
        "a service with line breakers",
        &path,
        &[("authorization", &bearer(&token))],
        403,
        "unknown_service",
    );
    // Envoy flushes its log file on an interval: wait for the record to land.
    let landed = g
        .envoy
        .wait_for_log(std::time::Duration::from_secs(30), |log| {
            log.lines()
                .any(|l| l.contains("audit {") && l.contains("evil"))
        });
    assert!(
        landed,
        "no audit line for the request:\n{}",
        g.envoy.full_log()
    );
    let log = g.envoy.full_log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("audit {") && l.contains("evil"))
        .collect();
    assert_eq!(audit.len(), 1, "one audit line for the request:\n{log}");
    for bad in ['\u{2028}', '\u{2029}', '\u{0085}', '\u{0001}', '\u{007f}'] {
        assert!(!log.contains(bad), "raw {bad:?} in Envoy's log");
    }
    assert!(
        audit[0].contains("\\u2028") && audit[0].contains("\\u0085"),
        "{}",
        audit[0]
    );
    g.assert_no_trap();
}
