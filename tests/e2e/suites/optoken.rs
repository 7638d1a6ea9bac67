//! Adversarial inputs against the real Envoy: forged, mistyped, oversized and replayed.
//! Each case asserts the status and the reason label, that its counter moved by one, and
//! that the next honest request still gets a token; at the end, Envoy's log shows no panic
//! and no Wasm trap (a trap would fail every later request on that worker).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use registry_token_e2e::authority::{now, OpTokSpec};
use registry_token_e2e::dpop::{ath, DpopKey};
use registry_token_e2e::gateway::{
    bearer, filter_config, gateway_failure, optok, start_gateway, token_path, ConfigForm, TestKeys,
    REVOKED_LICENSE, SERVICE,
};
use registry_token_e2e::{prom_samples, Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

const REALM: &str = "http://127.0.0.1:{{LISTEN_PORT}}/token";
const PULL: &str = "repository:stella-ops/public/base:pull";

fn counter(envoy: &Envoy, reason: &str) -> f64 {
    prom_samples(&envoy.stats_prometheus())
        .into_iter()
        .filter(|(name, labels, _)| {
            name == "registry_token_rejected_total"
                && labels.iter().any(|(l, v)| l == "reason" && v == reason)
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn problem_type(reply: &Reply) -> String {
    reply
        .try_json()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct Gateway {
    envoy: Envoy,
    keys: TestKeys,
    realm: String,
}

impl Gateway {
    fn start(f: impl FnOnce(&mut Value)) -> Gateway {
        let keys = TestKeys::generate();
        let mut config = filter_config(&keys, REALM);
        f(&mut config);
        let envoy = start_gateway(
            &config,
            ConfigForm::StringValue,
            &keys,
            EnvoyOptions::new().concurrency(2),
        );
        let realm = format!("{}/token", envoy.base_url());
        Gateway { envoy, keys, realm }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.envoy.get(path, headers)
    }

    /// The request is refused with `status` and `reason`, counted once; then an honest
    /// request gets a token.
    fn refused(&self, what: &str, path: &str, headers: &[(&str, &str)], status: u16, reason: &str) {
        let before = counter(&self.envoy, reason);
        let reply = self.get(path, headers);
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert_eq!(
            problem_type(&reply),
            format!("urn:registry-token-filter:error:{reason}"),
            "{what}: {reply:?}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while counter(&self.envoy, reason) < before + 1.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(
            counter(&self.envoy, reason),
            before + 1.0,
            "{what}: counted once"
        );
        self.honest(what);
    }

    fn honest(&self, after: &str) {
        let token = optok(&self.keys, |_| {});
        let reply = self.get(
            &token_path(SERVICE, &[PULL]),
            &[("authorization", &bearer(&token))],
        );
        assert_eq!(
            reply.status, 200,
            "an honest request after {after}: {reply:?}"
        );
    }

    fn assert_no_trap(&self) {
        let log = self.envoy.full_log();
        for bad in [
            "panicked",
            "wasm trap",
            "Wasm VM failed",
            "unreachable",
            "Function: proxy_on",
        ] {
            assert!(!log.contains(bad), "Envoy's log shows {bad:?}:\n{log}");
        }
    }
}

fn optok_claims(g: &Gateway, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = OpTokSpec::default().claims();
    f(claims.as_object_mut().unwrap());
    g.keys
        .authority
        .sign(&claims, Some(g.keys.authority.kid()), Some("at+jwt"))
}

/// What a case does to the claims, the status and the reason it must get.
type ClaimCase = (
    &'static str,
    Box<dyn Fn(&mut serde_json::Map<String, Value>)>,
    u16,
    &'static str,
);

#[test]
fn mistyped_claims_are_refused_not_read_as_absent() {
    let g = Gateway::start(|_| {});
    let path = token_path(SERVICE, &[PULL]);
    let cases: Vec<ClaimCase> = vec![
        (
            "licence as a list holding the revoked one",
            Box::new(|c| {
                c.insert(
                    "stellaops:license".into(),
                    json!(["lic-0001", REVOKED_LICENSE]),
                );
            }),
            403,
            "license_revoked",
        ),
        (
            "licence as a number",
            Box::new(|c| {
                c.insert("stellaops:license".into(), json!(42));
            }),
            401,
            "invalid_claim",
        ),
        (
            "cnf with an unsupported jwk confirmation",
            Box::new(|c| {
                c.insert(
                    "cnf".into(),
                    json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
                );
            }),
            401,
            "invalid_claim",
        ),
        (
            "cnf.jkt as a number",
            Box::new(|c| {
                c.insert("cnf".into(), json!({"jkt": 7}));
            }),
            401,
            "invalid_claim",
        ),
        (
            "no sub",
            Box::new(|c| {
                c.remove("sub");
                c.insert("client_id".into(), json!("cli"));
            }),
            401,
            "missing_subject",
        ),
        (
            "plan as a list",
            Box::new(|c| {
                c.insert("stellaops:plan".into(), json!(["enterprise"]));
            }),
            401,
            "invalid_claim",
        ),
    ];
    for (what, f, status, reason) in cases {
        let token = optok_claims(&g, f);
        g.refused(
            what,
            &path,
            &[("authorization", &bearer(&token))],
            status,
            reason,
        );
    }
    // A list of licences none of which is revoked passes.
    let token = optok_claims(&g, |c| {
        c.insert("stellaops:license".into(), json!(["lic-0001", "lic-0002"]));
    });
    assert_eq!(
        g.get(&path, &[("authorization", &bearer(&token))]).status,
        200
    );
    g.assert_no_trap();
}

#[test]
fn hostile_and_failed_dpop_proofs() {
    let g = Gateway::start(|c| {
        c["authority"]["requireSenderConstraint"] = json!(true);
    });
    let path = token_path(SERVICE, &[PULL]);
    let dpop = DpopKey::generate(&g.keys, "client");
    let op = optok(&g.keys, |s| s.jkt = Some(dpop.jkt.clone()));
    let auth = format!("DPoP {op}");

    // An 8192-bit RSA proof key with a 34-bit exponent, PS512, a garbage signature: used
    // to cost ~18 ms of signature work; now refused on the key before any.
    let mut n = vec![0xa5u8; 1024];
    n[0] = 0xc3;
    let header = json!({"typ": "dpop+jwt", "alg": "PS512",
        "jwk": {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode([2u8, 0, 0, 0, 1])}});
    let claims =
        json!({"jti": "hostile", "htm": "GET", "htu": g.realm, "iat": now(), "ath": ath(&op)});
    let hostile = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 1024])
    );
    let honest_dpop = |after: &str| {
        let proof = dpop.proof("GET", &g.realm, &op);
        let r = g.get(&path, &[("authorization", &auth), ("dpop", &proof)]);
        assert_eq!(r.status, 200, "an honest proof after {after}: {r:?}");
    };
    for _ in 0..3 {
        let before = counter(&g.envoy, "dpop_jwk");
        let r = g.get(&path, &[("authorization", &auth), ("dpop", &hostile)]);
        assert_eq!(
            (r.status, problem_type(&r).as_str()),
            (401, "urn:registry-token-filter:error:dpop_jwk"),
            "{r:?}"
        );
        assert!(counter(&g.envoy, "dpop_jwk") >= before + 1.0);
        honest_dpop("a hostile proof");
    }

    // A correctly signed proof with a wrong ath is refused; the honest retry with the
    // same jti is accepted (the refusal did not use the jti up); replaying it is not.
    let jti = "retry-with-the-same-jti";
    let wrong = dpop.proof_with("GET", &g.realm, &op, |c| {
        c["jti"] = json!(jti);
        c["ath"] = json!(ath("another token"));
    });
    let before = counter(&g.envoy, "dpop_ath");
    let r = g.get(&path, &[("authorization", &auth), ("dpop", &wrong)]);
    assert_eq!(
        problem_type(&r),
        "urn:registry-token-filter:error:dpop_ath",
        "{r:?}"
    );
    assert_eq!(counter(&g.envoy, "dpop_ath"), before + 1.0);
    let retry = dpop.proof_with("GET", &g.realm, &op, |c| c["jti"] = json!(jti));
    let r = g.get(&path, &[("authorization", &auth), ("dpop", &retry)]);
    assert_eq!(r.status, 200, "the honest retry with the same jti: {r:?}");
    let r = g.get(&path, &[("authorization", &auth), ("dpop", &retry)]);
    assert_eq!(
        problem_type(&r),
        "urn:registry-token-filter:error:dpop_replay",
        "{r:?}"
    );

    // A valid proof from another key than the bound one.
    let other = DpopKey::generate(&g.keys, "other");
    let r = g.get(
        &path,
        &[
            ("authorization", &auth),
            ("dpop", &other.proof("GET", &g.realm, &op)),
        ],
    );
    assert_eq!(
        problem_type(&r),
        "urn:registry-token-filter:error:dpop_jkt_mismatch",
        "{r:?}"
    );
    honest_dpop("a proof from another key");
    g.assert_no_trap();
}

#[test]
fn oversized_and_malformed_inputs() {
    let g = Gateway::start(|_| {});
    let token = optok(&g.keys, |_| {});
    let auth = bearer(&token);
    let many: Vec<String> = (0..40).map(|i| format!("repository:r{i}:pull")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    g.refused(
        "40 scopes",
        &token_path(SERVICE, &many),
        &[("authorization", &auth)],
        400,
        "malformed_scope",
    );
    let long_query = format!("/token?service={SERVICE}&pad={}", "a".repeat(9000));
    g.refused(
        "a 9 KB query",
        &long_query,
        &[("authorization", &auth)],
        400,
        "malformed_request",
    );
    g.refused(
        "bad percent-encoding",
        "/token?service=%zz",
        &[("authorization", &auth)],
        400,
        "malformed_request",
    );
    let huge = format!("Bearer {}", "A".repeat(20_000));
    g.refused(
        "a 20 KB token",
        &token_path(SERVICE, &[PULL]),
        &[("authorization", &huge)],
        401,
        "malformed_credentials",
    );
    let basic = format!("Basic {}", STANDARD.encode("user-without-colon"));
    g.refused(
        "Basic without a colon",
        &token_path(SERVICE, &[PULL]),
        &[("authorization", &basic)],
        401,
        "malformed_credentials",
    );
    // Tamper the signature's first character (the last one carries padding bits).
    let (input, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{input}.{flipped}{}", &sig[1..]);
    g.refused(
        "a forged signature",
        &token_path(SERVICE, &[PULL]),
        &[("authorization", &bearer(&forged))],
        401,
        "bad_signature",
    );
    let name = format!("repository:{}:pull", "a".repeat(300));
    g.refused(
        "a 300-character repository name",
        &token_path(SERVICE, &[&name]),
        &[("authorization", &auth)],
        400,
        "malformed_scope",
    );
    g.assert_no_trap();
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

#[test]
fn a_configuration_without_allowed_services_is_refused() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["registry"]
        .as_object_mut()
        .unwrap()
        .remove("allowedServices");
    let log = gateway_failure(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    assert!(log.contains("registry.allowedServices"), "{log}");
    config["registry"]["allowedServices"] = json!([]);
    let log = gateway_failure(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    assert!(log.contains("registry.allowedServices"), "{log}");
}

/// No plan at all (no `stellaops:plan`, no `defaultPlan`) and a plan not in the catalogue
/// are two refusals with their own labels (both 403); a token naming a real plan still
/// gets one.
#[test]
fn missing_and_unknown_plans_have_their_own_reasons() {
    let g = Gateway::start(|c| {
        c.as_object_mut().map(|o| o.remove("defaultPlan"));
    });
    let path = token_path(SERVICE, &[PULL]);
    for (plan, reason) in [(None, "missing_plan"), (Some("platinum"), "unknown_plan")] {
        let before = counter(&g.envoy, reason);
        let token = optok(&g.keys, |s| s.plan = plan.map(str::to_owned));
        let reply = g.get(&path, &[("authorization", &bearer(&token))]);
        assert_eq!(reply.status, 403, "{reason}: {reply:?}");
        assert_eq!(
            problem_type(&reply),
            format!("urn:registry-token-filter:error:{reason}"),
            "{reply:?}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while counter(&g.envoy, reason) < before + 1.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(
            counter(&g.envoy, reason),
            before + 1.0,
            "{reason} counted once"
        );
    }
    let token = optok(&g.keys, |s| s.plan = Some("community".into()));
    let reply = g.get(&path, &[("authorization", &bearer(&token))]);
    assert_eq!(reply.status, 200, "{reply:?}");
    g.assert_no_trap();
}
