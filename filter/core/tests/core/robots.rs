//! Robot tokens of the ledger through the whole decision: an ES256 token of the ledger's
//! issuer, trusted by a policy with `plansClaim: plans` and `rulesClaim: registry_rules`,
//! gets what its plans grant narrowed to its own rules (first matching rule), never more;
//! a token without the rules claim, or with a mistyped or hostile one, is refused
//! `invalid_claim`. Tokens are signed by `jsonwebtoken`.

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry_token_core::config::Config;
use registry_token_core::handler::{Decision, Outcome};
use serde_json::{json, Value};

use crate::common::*;

const LEDGER: &str = "https://ledger.example/robots";
const KID: &str = "ledger-robots";

fn ledger_key() -> &'static EcFixture {
    static KEY: OnceLock<EcFixture> = OnceLock::new();
    KEY.get_or_init(EcFixture::generate)
}

fn config(f: impl FnOnce(&mut Value)) -> Config {
    let mut c = base_config();
    c["plans"].as_array_mut().unwrap().push(json!(
        {"name": "builds", "repositories": [
            {"pattern": "acme/locked", "actions": ["pull"]},
            {"pattern": "acme/**", "actions": ["pull", "push"]}
        ]}
    ));
    c["issuers"] = json!([{
        "issuer": LEDGER,
        "audiences": [SERVICE],
        "jwks": {"keys": [ledger_key().jwk(KID)]},
        "requiredScopes": ["registry.token.issue"],
        "requireSenderConstraint": false,
        "algorithms": ["ES256"],
        "policies": [{
            "name": "robots",
            "claims": {"sub": "robot:*"},
            "tenant": "{stellaops:tenant}",
            "plansClaim": "plans",
            "rulesClaim": "registry_rules"
        }]
    }]);
    f(&mut c);
    config_from(c)
}

fn robot(rules: Value) -> String {
    let mut claims = json!({
        "iss": LEDGER, "aud": SERVICE, "sub": "robot:0123abcd",
        "scope": "registry.token.issue", "plans": ["builds"],
        "stellaops:tenant": "acme", "robot": {"name": "ci"},
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600, "jti": "0123abcd",
    });
    if !rules.is_null() {
        claims["registry_rules"] = rules;
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KID.into());
    let key = EncodingKey::from_ec_pem(ledger_key().pkcs8_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn get(config: &Config, scopes: &[&str], token: &str) -> Decision {
    let mut q = format!("service={SERVICE}");
    for s in scopes {
        q.push_str("&scope=");
        q.push_str(s);
    }
    decide(config, &q, &[("authorization", &bearer(token))])
}

fn label(d: &Decision) -> &'static str {
    match d.outcome {
        Outcome::Rejected(r) => r.label(),
        Outcome::Issued(_) => "issued",
        Outcome::Other => "other",
    }
}

fn access(d: &Decision) -> Value {
    assert_eq!(d.status, 200, "{}", d.body);
    verify_minted(body(d)["token"].as_str().unwrap(), SERVICE)["access"].clone()
}

#[test]
fn a_robot_gets_its_plans_grant_narrowed_to_its_own_rules() {
    let c = config(|_| {});
    let t = robot(json!([
        "repository:acme/app/*:pull",
        "repository:acme/tools:pull,push"
    ]));
    // Its rules allow pull only: a push is cut, a pull granted.
    let d = get(&c, &["repository:acme/app/web:pull,push"], &t);
    assert_eq!(
        access(&d),
        json!([{"type": "repository", "name": "acme/app/web", "actions": ["pull"]}])
    );
    let audit = d.audit.as_ref().unwrap();
    assert_eq!(audit.policy.as_deref(), Some("robots"));
    assert_eq!(audit.granted, ["repository:acme/app/web:pull"]);
    // A push outside its own rules (the plan would allow it): refused.
    let d = get(&c, &["repository:acme/app/web:push"], &t);
    assert_eq!((d.status, label(&d)), (403, "plan_denied"), "{}", d.body);
    assert!(d.body.contains("own rules"), "{}", d.body);
    let d = get(&c, &["repository:acme/other:pull"], &t);
    assert_eq!(label(&d), "plan_denied");
    // Inside its rules and its plan: pull and push.
    let d = get(&c, &["repository:acme/tools:pull,push"], &t);
    assert_eq!(access(&d)[0]["actions"], json!(["pull", "push"]));
    // `*` asked: the plan's `*` becomes the rule's actions.
    let before = caches().with(|c| c.rules_hits());
    let d = get(&c, &["repository:acme/app/web:*"], &t);
    assert_eq!(access(&d)[0]["actions"], json!(["pull"]));
    // The same rules came from the per-VM memo, not compiled again.
    assert!(caches().with(|c| c.rules_hits()) > before);
}

#[test]
fn a_robots_rules_never_widen_its_plans() {
    let c = config(|_| {});
    // Rules that allow everything: exactly the plan's grant.
    let t = robot(json!(["repository:**:*"]));
    let d = get(&c, &["repository:acme/locked:pull,push"], &t);
    assert_eq!(access(&d)[0]["actions"], json!(["pull"]));
    let d = get(&c, &["repository:globex/app:pull"], &t);
    assert_eq!(label(&d), "plan_denied");
    let d = get(&c, &["registry:catalog:*"], &t);
    assert_eq!(label(&d), "plan_denied");
    // Inside its rules but outside its plan: refused.
    let t = robot(json!(["repository:acme/**:pull,push"]));
    let d = get(&c, &["repository:acme/locked:push"], &t);
    assert_eq!(label(&d), "plan_denied");
}

#[test]
fn a_robot_token_without_good_rules_is_refused() {
    let c = config(|_| {});
    let many: Vec<String> = (0..65)
        .map(|i| format!("repository:acme/r{i}:pull"))
        .collect();
    for rules in [
        Value::Null,
        json!("repository:acme/**:pull"),
        json!([]),
        json!(many),
        json!([1]),
        json!({"acme/**": "pull"}),
        json!(["repository:acme/../x:pull"]),
        json!(["repository:{tenant}/*:pull"]),
        json!(["repository:acme/%2F:pull"]),
        json!(["repository:acme/app"]),
        json!(["repository:acme/app:pull", "blob:acme/app:pull"]),
    ] {
        let d = get(&c, &["repository:acme/app:pull"], &robot(rules.clone()));
        assert_eq!(
            (d.status, label(&d)),
            (401, "invalid_claim"),
            "{rules}: {}",
            d.body
        );
        assert!(d.body.contains("registry_rules"), "{rules}: {}", d.body);
    }
    // The same token under a policy without rulesClaim is given its plans' grant.
    let c = config(|c| {
        let p = &mut c["issuers"][0]["policies"][0];
        p.as_object_mut().unwrap().remove("rulesClaim");
    });
    let d = get(&c, &["repository:acme/app:pull,push"], &robot(Value::Null));
    assert_eq!(access(&d)[0]["actions"], json!(["pull", "push"]));
}

#[test]
fn rules_claim_is_validated_with_the_configuration() {
    for (claim, why) in [("", "not a claim name"), ("plans", "read as plans")] {
        let mut c = base_config();
        c["plans"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "builds", "repositories": []}));
        c["issuers"] = json!([{
            "issuer": LEDGER, "audiences": [SERVICE],
            "jwks": {"keys": [ledger_key().jwk(KID)]}, "algorithms": ["ES256"],
            "policies": [{"name": "robots", "claims": {"sub": "robot:*"},
                "plansClaim": "plans", "rulesClaim": claim}]
        }]);
        let e = Config::from_value(c).map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("issuers[0].policies[0].rulesClaim") && e.contains(why),
            "{claim:?}: {e}"
        );
    }
}
