//! OpToken checks against the real Envoy: forged, mistyped, oversized and malformed
//! inputs, missing and unknown plans, and the refusals of the token exchange with their
//! status and reason. Each case asserts the status and the reason label, that its counter
//! moved by exactly one, and that the next honest request still gets a token; at the end,
//! Envoy's log shows no panic and no Wasm trap (a trap would fail every later request on
//! that worker). [`Gateway`] here is the gateway those checks (and the DPoP and audit
//! ones in `sender` and `audit`) run against.

use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use registry_token_e2e::authority::OpTokSpec;
use registry_token_e2e::gateway::{
    bearer, filter_config, openssl, optok, start_gateway, token_path, ConfigForm, TestKeys,
    REVOKED_LICENSE, SERVICE,
};
use registry_token_e2e::{prom_samples, Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

use super::common::{problem_type, token, COUNTER_WAIT, PULL, REALM};
use super::exchange::{issued, rejected};

/// `registry_token_rejected_total{reason}` now.
pub(crate) fn counter(envoy: &Envoy, reason: &str) -> f64 {
    prom_samples(&envoy.stats_prometheus())
        .into_iter()
        .filter(|(name, labels, _)| {
            name == "registry_token_rejected_total"
                && labels.iter().any(|(l, v)| l == "reason" && v == reason)
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// A gateway (2 workers) on [`filter_config`] changed by the test, and what
/// [`Gateway::refused`] needs to check a refusal end to end.
pub(crate) struct Gateway {
    pub(crate) envoy: Envoy,
    pub(crate) keys: TestKeys,
    pub(crate) realm: String,
}

impl Gateway {
    /// Starts the gateway on [`filter_config`] changed by `f`.
    pub(crate) fn start(f: impl FnOnce(&mut Value)) -> Gateway {
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

    /// `GET path` on the gateway.
    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.envoy.get(path, headers)
    }

    /// The request is refused with `status` and `reason`, counted once; then an honest
    /// request gets a token.
    pub(crate) fn refused(
        &self,
        what: &str,
        path: &str,
        headers: &[(&str, &str)],
        status: u16,
        reason: &str,
    ) {
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

    /// An honest request (a valid OpTok, a public pull) gets a token.
    pub(crate) fn honest(&self, after: &str) {
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

    /// Envoy's log shows no panic and no Wasm trap.
    pub(crate) fn assert_no_trap(&self) {
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

/// Sends the request, checks status and problem type, then waits until
/// `registry_token_rejected_total{reason}` moved by one and checks that nothing else in the
/// two counters moved.
fn expect_refusal(
    envoy: &Envoy,
    authorization: Option<&str>,
    scopes: &[&str],
    status: u16,
    reason: &str,
) -> Reply {
    let before = rejected(envoy);
    let issued_before = issued(envoy);
    let reply = token(envoy, authorization, scopes);
    assert_eq!(reply.status, status, "{reason}: {reply:?}");
    assert_eq!(
        reply.json()["type"],
        format!("urn:registry-token-filter:error:{reason}"),
        "{reply:?}"
    );
    let mut want = before.clone();
    *want.entry(reason.to_owned()).or_insert(0.0) += 1.0;
    let deadline = Instant::now() + COUNTER_WAIT;
    let mut after = rejected(envoy);
    while after.get(reason) != want.get(reason) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        after = rejected(envoy);
    }
    assert_eq!(
        after, want,
        "{reason}: the rejection counters moved wrongly"
    );
    assert_eq!(issued(envoy), issued_before, "{reason}: a token was issued");
    reply
}

fn unsigned_none(claims: &Value, kid: &str) -> String {
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn refusals_answer_the_right_status_and_count_once_each() {
    let keys = TestKeys::generate();
    let envoy = start_gateway(
        &filter_config(&keys, REALM),
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new(),
    );
    let pull = "repository:stella-ops/public/base:pull";
    let kid = keys.authority.kid().to_owned();

    let reply = expect_refusal(&envoy, None, &[pull], 401, "missing_credentials");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{}/token\"", envoy.base_url())),
        "{reply:?}"
    );

    let good = bearer(&optok(&keys, |_| {}));
    expect_refusal(
        &envoy,
        Some(&good),
        &["repository:Stella/UPPER:pull"],
        400,
        "malformed_scope",
    );
    expect_refusal(&envoy, Some(&good), &["nonsense"], 400, "malformed_scope");

    let revoked = bearer(&optok(&keys, |s| {
        s.license = Some(REVOKED_LICENSE.into());
    }));
    expect_refusal(&envoy, Some(&revoked), &[pull], 403, "license_revoked");

    let expired = optok(&keys, |s| s.time_offset = -3600);
    let wrong_iss = optok(&keys, |s| s.issuer = "https://evil.example".into());
    let wrong_aud = optok(&keys, |s| s.audience = "someone-else".into());
    let none = unsigned_none(&OpTokSpec::default().claims(), &kid);
    // HS256 keyed with the Authority's public key: the classic algorithm confusion.
    let public_pem = openssl(
        keys.dir(),
        &[
            "pkey",
            "-in",
            &keys.authority_key_path.display().to_string(),
            "-pubout",
        ],
    );
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    hs_header.typ = Some("at+jwt".into());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &OpTokSpec::default().claims(),
        &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    for (what, tok, reason) in [
        ("expired", expired, "expired"),
        ("wrong issuer", wrong_iss, "wrong_issuer"),
        ("wrong audience", wrong_aud, "wrong_audience"),
        ("alg none", none, "disallowed_alg"),
        ("HS256 with the public key", hs256, "disallowed_alg"),
    ] {
        let reply = expect_refusal(&envoy, Some(&bearer(&tok)), &[pull], 401, reason);
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=") && challenge.contains("invalid_token"),
            "{what}: {reply:?}"
        );
    }
    // And the good OpTok still works.
    assert_eq!(token(&envoy, Some(&good), &[pull]).status, 200);
}
