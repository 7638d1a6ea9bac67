//! Robot tokens end to end (issue 21 #4): the real ledger with a robot signing key, a
//! gateway (real Envoy) trusting the ledger as an issuer through its discovery document
//! (`metadataUrl` + the ledger's cluster) with a robots policy (`plansClaim: plans`,
//! `rulesClaim: registry_rules`), its revocation list the ledger's feed and its records
//! going to the ledger, and registry 2.8 behind it. A robot created through
//! `POST /v1/robots` logs dockerd in (`docker login -u <robot> --password-stdin`) and
//! pulls; a push outside its own rules is refused, and so is one inside its rules but
//! outside its plan (a push inside both works); its last use shows in `GET /v1/robots`;
//! after `DELETE /v1/robots/{id}` docker is refused within one `revocation.refreshSeconds`.
//!
//! Needs root and `make apt-deps` (dockerd), and the ledger binary (`make e2e` builds it);
//! `--nocapture` prints the timings.

use std::path::Path;
use std::time::{Duration, Instant};

use registry_token_e2e::authority::AuthorityKey;
use registry_token_e2e::clients::Dockerd;
use registry_token_e2e::gateway::{
    bearer, filter_config, fixture_key, optok, ConfigForm, GatewaySpec, KeyKind, TestKeys, SERVICE,
};
use registry_token_e2e::registry::{Registry, RegistryAuth};
use registry_token_e2e::{free_port, request, Envoy, EnvoyOptions};
use registry_token_testkit::{Ledger, LedgerOptions};
use serde_json::{json, Value};

use super::common::{within, LAG, REALM};
use super::tenants::push;
use super::trust::{reason, token};

const INGEST_SECRET: &str = "robots-e2e-ingest-secret-0123456789abcdef0123";
const FEED_SECRET: &str = "robots-e2e-feed-secret-0123456789abcdef012345";
/// `revocation.refreshSeconds` (the smallest allowed).
const REFRESH: Duration = Duration::from_secs(10);
const CLUSTER: &str = "ledger_robots";

struct Setup {
    keys: TestKeys,
    ledger: Ledger,
    envoy: Envoy,
    registry: Registry,
    _dir: tempfile::TempDir,
}

/// The ledger (SQLite, robots on: a P-256 key, `iss` under its own address), then the
/// gateway trusting it as an issuer, and registry 2.8.
fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TestKeys::generate();
    let jwks = dir.path().join("admin-jwks.json");
    std::fs::write(&jwks, keys.authority_jwks().to_string()).expect("write jwks");
    let robot_key = dir.path().join("robot.pem");
    std::fs::write(&robot_key, fixture_key(KeyKind::EcP256, "ledger-robots")).expect("key");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}/robots");
    let database = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = Ledger::start(
        LedgerOptions::new(&database, "https://authority.example", &jwks)
            .port(port)
            .ingest_secret(INGEST_SECRET)
            .feed_secret(FEED_SECRET)
            .env_remove("LEDGER_ADMIN_SCOPE")
            .env("LEDGER_ROBOT_KEY_FILE", &path(&robot_key))
            .env("LEDGER_ROBOT_ISSUER", &issuer)
            .env("LEDGER_ROBOT_AUDIENCE", SERVICE),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    if let Some(plans) = config["plans"].as_array_mut() {
        // The robots' plan: acme's repositories, acme/locked read-only.
        plans.push(json!({"name": "builds", "repositories": [
            {"pattern": "acme/locked", "actions": ["pull"]},
            {"pattern": "acme/**", "actions": ["pull", "push"]}
        ]}));
        // The publisher that seeds the registry.
        plans.push(json!({"name": "publisher", "repositories": [
            {"pattern": "**", "actions": ["pull", "push"]}
        ]}));
    }
    config["issuers"] = json!([{
        "issuer": issuer,
        "audiences": [SERVICE],
        "metadataUrl": format!("{issuer}/.well-known/openid-configuration"),
        "cluster": CLUSTER,
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
    config["ledger"] = json!({
        "cluster": CLUSTER,
        "authority": format!("127.0.0.1:{port}"),
        "flushMillis": 200,
        "gateway": "gw-robots"
    });
    config["revocation"] = json!({
        "url": ledger.url("/v1/revocations/feed"),
        "cluster": CLUSTER,
        "refreshSeconds": REFRESH.as_secs()
    });
    let envoy = GatewaySpec::new(&config)
        .form(ConfigForm::StringValue)
        .extra_clusters(&ledger.cluster_yaml(CLUSTER, 0))
        .start(
            &keys,
            EnvoyOptions::new()
                .env(
                    "REGISTRY_TOKEN_LEDGER__HEADERS__AUTHORIZATION",
                    &format!("Bearer {INGEST_SECRET}"),
                )
                .env(
                    "REGISTRY_TOKEN_REVOCATION__HEADERS__AUTHORIZATION",
                    &format!("Bearer {FEED_SECRET}"),
                ),
        );
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        keys,
        ledger,
        envoy,
        registry,
        _dir: dir,
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The security team's token for the ledger's API.
fn admin(keys: &TestKeys) -> String {
    optok(keys, |s| {
        s.subject = "security-team".into();
        s.scope = "registry.token.admin".into();
    })
}

fn admin_call(s: &Setup, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = bearer(&admin(&s.keys));
    let text = body.map(Value::to_string);
    let reply = request(
        method,
        &s.ledger.url(path),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        text.as_deref().map(str::as_bytes),
    );
    (reply.status, reply.try_json().unwrap_or(Value::Null))
}

#[test]
fn a_robot_logs_docker_in_pulls_within_its_rules_and_is_refused_once_deleted() {
    let started = Instant::now();
    let s = setup();
    let host = s.registry.host();
    // dockerd starts while the registry is seeded and the robot made.
    let docker = std::thread::spawn({
        let host = host.clone();
        move || Dockerd::start(&[&host])
    });
    let publisher = optok(&s.keys, |o| o.plan = Some("publisher".into()));
    push(&s.registry, &publisher, "acme/app", "v1").unwrap_or_else(|e| panic!("{e}"));

    let (status, created) = admin_call(
        &s,
        "POST",
        "/v1/robots",
        Some(&json!({
            "name": "ci-pull", "tenant": "acme", "plans": ["builds"],
            "repositories": [
                {"pattern": "acme/app", "actions": ["pull"]},
                {"pattern": "acme/tools", "actions": ["pull", "push"]},
                {"pattern": "acme/locked", "actions": ["pull", "push"]}
            ],
            "expiresInDays": 1
        })),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let robot = created["token"].as_str().unwrap_or_default().to_owned();

    // The gateway fetches the ledger's discovery and keys on its own schedule.
    let ready = within(LAG, || {
        token(&s.envoy, &robot, &["repository:acme/app:pull"]).status == 200
    });
    assert!(ready.is_some(), "the robot was never issued a token");
    // Its own rules cut what the plan would give: pull only on acme/app; a push inside
    // its rules but outside its plan (acme/locked) is refused too.
    let reply = token(&s.envoy, &robot, &["repository:acme/app:pull,push"]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let granted = reply.json()["token"].as_str().map(|t| {
        registry_token_e2e::gateway::decode_unverified(t)
            .map(|(_, c)| c["access"].clone())
            .unwrap_or(Value::Null)
    });
    assert_eq!(
        granted,
        Some(json!([{"type": "repository", "name": "acme/app", "actions": ["pull"]}]))
    );
    for scope in ["repository:acme/app:push", "repository:acme/locked:push"] {
        let reply = token(&s.envoy, &robot, &[scope]);
        assert_eq!(
            (reply.status, reason(&reply)),
            (403, "plan_denied".into()),
            "{scope}"
        );
    }

    // A token of the ledger's key without its rules (a forged or older robot token): the
    // plans alone are never granted.
    let ledger_key = AuthorityKey::from_pem(&fixture_key(KeyKind::EcP256, "ledger-robots"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (header, mut claims) =
        registry_token_e2e::gateway::decode_unverified(&robot).unwrap_or_else(|e| panic!("{e}"));
    let kid = header["kid"].as_str().map(str::to_owned);
    if let Some(c) = claims.as_object_mut() {
        c.remove("registry_rules");
    }
    let bare = ledger_key.sign(&claims, kid.as_deref(), Some("JWT"));
    let reply = token(&s.envoy, &bare, &["repository:acme/app:pull"]);
    assert_eq!(
        (reply.status, reason(&reply)),
        (401, "invalid_claim".into()),
        "{reply:?}"
    );

    let mut docker = docker
        .join()
        .unwrap_or_else(|_| panic!("dockerd thread"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("dockerd started in {:.2?}", docker.startup());
    let run = docker.login(&host, "ci-pull", &robot);
    assert!(run.success, "{run}");
    let app = format!("{host}/acme/app:v1");
    let run = docker.pull(&app);
    assert!(run.success, "{run}");
    // A push outside its rules (acme/app is pull only), one inside its rules but outside
    // its plan (acme/locked), and one inside both (acme/tools).
    for (image, allowed) in [
        (format!("{host}/acme/app:v2"), false),
        (format!("{host}/acme/locked:v1"), false),
        (format!("{host}/acme/tools:v1"), true),
    ] {
        let run = docker.tag(&app, &image);
        assert!(run.success, "{run}");
        let run = docker.push(&image);
        assert_eq!(run.success, allowed, "{image}: {run}");
    }

    // Its last use, from the ledger's own records of what the gateway issued.
    let last_used = within(LAG, || {
        let (status, list) = admin_call(&s, "GET", "/v1/robots", None);
        assert_eq!(status, 200, "{list}");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["id"] == id.as_str() && r["lastUsed"].as_i64().is_some())
    });
    assert!(last_used.is_some(), "GET /v1/robots shows no lastUsed");

    // Deleted: refused within one refresh period (docker, and the realm: subject_revoked).
    let (status, body) = admin_call(&s, "DELETE", &format!("/v1/robots/{id}"), None);
    assert!((200..300).contains(&status), "{status} {body}");
    let mut last = String::new();
    let refused = within(REFRESH + LAG, || {
        let _ = docker.rmi(&app);
        let run = docker.pull(&app);
        last = run.to_string();
        !run.success
    });
    let took = refused.unwrap_or_else(|| panic!("docker still pulls after the delete:\n{last}"));
    eprintln!("docker refused {took:.2?} after the delete");
    assert!(took <= REFRESH + LAG, "{took:?}");
    let reply = token(&s.envoy, &robot, &["repository:acme/app:pull"]);
    assert_eq!(
        (reply.status, reason(&reply)),
        (403, "subject_revoked".into())
    );
    docker.stop();
    eprintln!("test took {:.2?}", started.elapsed());
}
