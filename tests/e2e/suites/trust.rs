//! Trust policies end to end, with real Envoy, registry 2.8 and skopeo: a
//! GitHub-Actions-shaped ID token from a second issuer (its own key set, GitHub's claim
//! names) for `acme/app` on `refs/heads/main` pushes to the repository its policy maps to
//! (`{tenant}/*` with the tenant `{repository_owner}`); the same token from another ref
//! or owner is refused 403 `no_trust_policy` (and skopeo's push fails); a token of an
//! issuer that is not configured, or whose `iss` differs by a trailing slash, is 401
//! `unknown_issuer`; the two issuers sharing a `kid` never verify each other's tokens.
//! With `anonymous` on, skopeo pulls a public repository without credentials and cannot
//! push to it. A user in two groups (`plansClaim: groups`) gets the union of both plans
//! and no more. The same policy with a real second issuer: oidc-provider started with
//! GitHub's claim names. dockerd and the kubelet's credential provider: `workloads`.

use registry_token_e2e::authority::{AuthorityKey, OpTokSpec};
use registry_token_e2e::gateway::{
    bearer, filter_config, fixture_key, optok, start_gateway, token_path, verify_registry_token,
    ConfigForm, KeyKind, TestKeys, SERVICE,
};
use registry_token_e2e::registry::{self, Registry, RegistryAuth};
use registry_token_e2e::{Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

use super::common::REALM;
use super::tenants::{pull, push};

pub(super) const GITHUB: &str = "https://token.actions.githubusercontent.com";

pub(super) fn reason(reply: &Reply) -> String {
    reply.json()["type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("urn:registry-token-filter:error:")
        .to_owned()
}

pub(super) fn token(envoy: &Envoy, bearer_token: &str, scopes: &[&str]) -> Reply {
    envoy.get(
        &token_path(SERVICE, scopes),
        &[("authorization", &bearer(bearer_token))],
    )
}

/// A GitHub Actions ID token's claims (the names GitHub uses).
pub(super) fn github_claims(iss: &str, repository: &str, git_ref: &str) -> Value {
    let now = registry_token_e2e::authority::now();
    let owner = repository.split('/').next().unwrap_or("");
    json!({
        "iss": iss, "aud": SERVICE, "jti": format!("gh-{now}-{git_ref}"),
        "sub": format!("repo:{repository}:ref:{git_ref}"),
        "repository": repository, "repository_owner": owner, "ref": git_ref,
        "workflow": "release", "event_name": "push", "runner_environment": "github-hosted",
        "iat": now - 5, "nbf": now - 5, "exp": now + 300,
    })
}

/// The gateway configuration: the test Authority as `authority`, GitHub as an issuer
/// whose key carries the Authority's `kid`, the `ci` plan, registry 2.8's `x5c`.
pub(super) fn trust_config(keys: &TestKeys, github: &AuthorityKey) -> Value {
    let mut config = filter_config(keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    if let Some(plans) = config["plans"].as_array_mut() {
        plans.push(json!({"name": "ci", "repositories": [{"pattern": "{tenant}/*", "actions": ["pull", "push"]}]}));
    }
    let mut jwk = github.jwk();
    jwk["kid"] = json!(keys.authority.kid());
    config["issuers"] = json!([{
        "issuer": GITHUB,
        "audiences": [SERVICE],
        "jwks": {"keys": [jwk]},
        "requiredScopes": [],
        "requireSenderConstraint": false,
        "algorithms": ["RS256"],
        "policies": [{
            "name": "acme-main",
            "claims": {"repository_owner": "acme", "ref": "refs/heads/main"},
            "subject": "github:{repository}@{ref}",
            "tenant": "{repository_owner}",
            "plans": ["ci"]
        }]
    }]);
    config
}

#[test]
fn a_github_actions_token_pushes_where_its_policy_maps_and_nowhere_else() {
    let keys = TestKeys::generate();
    let github = AuthorityKey::from_pem(&fixture_key(KeyKind::Rsa2048, "github"))
        .unwrap_or_else(|e| panic!("{e}"));
    let shared_kid = keys.authority.kid().to_owned();
    let envoy = start_gateway(
        &trust_config(&keys, &github),
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new(),
    );
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    let main = github.sign(
        &github_claims(GITHUB, "acme/app", "refs/heads/main"),
        Some(&shared_kid),
        Some("JWT"),
    );

    // The main branch of acme/app pushes acme/app with skopeo, and pulls it back.
    let image = push(&registry, &main, "acme/app", "v1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pull(&registry, &main, "acme/app", "v1"),
        image.manifest_digest
    );
    let reply = token(&envoy, &main, &["repository:acme/app:pull,push"]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let (_, claims) = verify_registry_token(
        reply.json()["token"].as_str().unwrap_or(""),
        &keys.signing_public_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sub"], "github:acme/app@refs/heads/main");
    assert_eq!(claims["tenant"], "acme");
    // Not another owner's repository.
    let Err(err) = push(&registry, &main, "globex/app", "v1") else {
        panic!("acme's token pushed to globex");
    };
    assert!(!err.is_empty());

    // Another ref, another owner: 403 no_trust_policy, and skopeo cannot push.
    for (repo, git_ref) in [
        ("acme/app", "refs/heads/dev"),
        ("globex/app", "refs/heads/main"),
    ] {
        let other = github.sign(
            &github_claims(GITHUB, repo, git_ref),
            Some(&shared_kid),
            Some("JWT"),
        );
        let reply = token(&envoy, &other, &["repository:acme/app:pull,push"]);
        assert_eq!(reply.status, 403, "{repo} {git_ref}: {reply:?}");
        assert_eq!(reason(&reply), "no_trust_policy");
        assert!(push(&registry, &other, "acme/app", "v2").is_err());
    }

    // An issuer that is not configured, or GitHub's with a trailing slash: 401.
    for iss in [
        "https://gitlab.example",
        "https://token.actions.githubusercontent.com/",
    ] {
        let t = github.sign(
            &github_claims(iss, "acme/app", "refs/heads/main"),
            Some(&shared_kid),
            Some("JWT"),
        );
        let reply = token(&envoy, &t, &["repository:acme/app:pull"]);
        assert_eq!(reply.status, 401, "{iss}: {reply:?}");
        assert_eq!(reason(&reply), "unknown_issuer");
    }

    // Same kid, other keys: neither issuer verifies the other's token.
    let forged = keys.authority.sign(
        &github_claims(GITHUB, "acme/app", "refs/heads/main"),
        Some(&shared_kid),
        Some("JWT"),
    );
    assert_eq!(
        reason(&token(&envoy, &forged, &["repository:acme/app:pull"])),
        "bad_signature"
    );
    let spec = OpTokSpec {
        plan: Some("enterprise".into()),
        ..OpTokSpec::default()
    };
    let mut as_authority = spec.claims();
    as_authority["sub"] = json!("mallory");
    let forged = github.sign(&as_authority, Some(&shared_kid), Some("at+jwt"));
    assert_eq!(reason(&token(&envoy, &forged, &[])), "bad_signature");
    // The Authority's own tokens still work beside the issuer.
    let own = optok(&keys, |s| s.plan = Some("enterprise".into()));
    assert_eq!(
        token(&envoy, &own, &["repository:stella-ops/x:push"]).status,
        200
    );

    // The audit names the issuer and the policy.
    assert!(
        envoy.wait_for_log(std::time::Duration::from_secs(10), |log| log.lines().any(
            |l| {
                l.contains("registry-token-filter: audit")
                    && l.contains(r#""issuer":"https://token.actions.githubusercontent.com""#)
                    && l.contains(r#""policy":"acme-main""#)
                    && l.contains(r#""decision":"issued""#)
            }
        )),
        "no audit line naming the issuer and the policy"
    );
}

#[test]
fn anonymous_skopeo_pulls_a_public_repository_and_cannot_push() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    // `community` allows `stella-ops/public/*` pull only.
    config["anonymous"] = json!({"plan": "community"});
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    let publisher = optok(&keys, |s| s.plan = Some("enterprise".into()));
    let image = push(&registry, &publisher, "stella-ops/public/base", "v1")
        .unwrap_or_else(|e| panic!("{e}"));
    push(&registry, &publisher, "stella-ops/private/app", "v1").unwrap_or_else(|e| panic!("{e}"));

    // No credentials at all: skopeo pulls the public image.
    let dir = registry::empty_oci_dir();
    let run = registry::copy(
        &registry.docker_ref("stella-ops/public/base", "v1"),
        &registry::oci_ref(dir.path(), "v1"),
        None,
        None,
    );
    assert!(run.success, "anonymous pull failed:\n{run}");
    assert_eq!(
        registry::oci_manifest_digest(dir.path(), "v1").unwrap_or_else(|e| panic!("{e}")),
        image.manifest_digest
    );
    // ...and cannot push to it, nor pull a private repository.
    let fresh = registry::OciImage::build("v2");
    let run = registry::copy(
        &fresh.reference(),
        &registry.docker_ref("stella-ops/public/base", "v2"),
        None,
        None,
    );
    assert!(!run.success, "an anonymous push succeeded");
    let dir = registry::empty_oci_dir();
    let run = registry::copy(
        &registry.docker_ref("stella-ops/private/app", "v1"),
        &registry::oci_ref(dir.path(), "v1"),
        None,
        None,
    );
    assert!(
        !run.success,
        "an anonymous pull of a private repository succeeded"
    );
    // What the realm answered: a pull-only token, and 401 for the private repository.
    let reply = envoy.get(
        &token_path(SERVICE, &["repository:stella-ops/public/base:pull,push"]),
        &[],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let (_, claims) = verify_registry_token(
        reply.json()["token"].as_str().unwrap_or(""),
        &keys.signing_public_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]));
    let reply = envoy.get(
        &token_path(SERVICE, &["repository:stella-ops/private/app:pull"]),
        &[],
    );
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reason(&reply), "missing_credentials");
    // Credentials go on as ever.
    assert!(pull(&registry, &publisher, "stella-ops/private/app", "v1").starts_with("sha256:"));
}

/// The identity provider of the group test and its plans: `team-a` pushes and pulls
/// `apps/alpha/*`, `team-b` pulls `apps/beta/*`, `seed` (an OpToken's plan) fills both.
const IDP: &str = "https://idp.example";

fn groups_token(idp: &AuthorityKey, groups: &[&str]) -> String {
    let now = registry_token_e2e::authority::now();
    idp.sign(
        &json!({
            "iss": IDP, "aud": SERVICE, "sub": "alice", "org": "acme", "groups": groups,
            "iat": now - 5, "nbf": now - 5, "exp": now + 300,
        }),
        Some(idp.kid()),
        Some("JWT"),
    )
}

/// The actions the realm granted on `repo` for one scope (empty when refused).
fn granted(envoy: &Envoy, keys: &TestKeys, bearer_token: &str, repo: &str) -> Value {
    let reply = token(
        envoy,
        bearer_token,
        &[&format!("repository:{repo}:pull,push")],
    );
    if reply.status != 200 {
        return json!({"status": reply.status, "reason": reason(&reply)});
    }
    let (_, claims) = verify_registry_token(
        reply.json()["token"].as_str().unwrap_or(""),
        &keys.signing_public_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    claims["access"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == repo))
        .map_or(json!([]), |e| e["actions"].clone())
}

#[test]
fn a_user_in_two_groups_gets_the_union_of_both_plans_and_no_more() {
    let keys = TestKeys::generate();
    let idp = AuthorityKey::from_pem(&fixture_key(KeyKind::Rsa2048, "idp"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    if let Some(plans) = config["plans"].as_array_mut() {
        plans.extend([
            json!({"name": "team-a", "repositories": [{"pattern": "apps/alpha/*", "actions": ["pull", "push"]}]}),
            json!({"name": "team-b", "repositories": [{"pattern": "apps/beta/*", "actions": ["pull"]}]}),
            json!({"name": "seed", "repositories": [{"pattern": "apps/**", "actions": ["pull", "push"]}]}),
        ]);
    }
    config["issuers"] = json!([{
        "issuer": IDP, "audiences": [SERVICE], "jwks": idp.jwks(),
        "requiredScopes": [], "requireSenderConstraint": false, "algorithms": ["RS256"],
        "policies": [{
            "name": "acme-staff", "claims": {"org": "acme"},
            "subject": "idp:{sub}", "plansClaim": "groups"
        }]
    }]);
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    let seed = optok(&keys, |s| s.plan = Some("seed".into()));
    for repo in ["apps/beta/x", "apps/gamma/x"] {
        push(&registry, &seed, repo, "v1").unwrap_or_else(|e| panic!("{e}"));
    }
    // `staff` names no plan; `enterprise` is a plan but not one of alice's groups.
    let alice = groups_token(&idp, &["team-a", "team-b", "staff"]);

    // What the realm grants, scope by scope: team-a's rule, team-b's rule, nothing else.
    assert_eq!(
        granted(&envoy, &keys, &alice, "apps/alpha/x"),
        json!(["pull", "push"])
    );
    assert_eq!(
        granted(&envoy, &keys, &alice, "apps/beta/x"),
        json!(["pull"])
    );
    let denied = json!({"status": 403, "reason": "plan_denied"});
    for repo in ["apps/gamma/x", "stella-ops/private/app"] {
        assert_eq!(granted(&envoy, &keys, &alice, repo), denied, "{repo}");
    }
    // One group alone gets its own plan only.
    let only_a = groups_token(&idp, &["team-a"]);
    assert_eq!(granted(&envoy, &keys, &only_a, "apps/beta/x"), denied);
    // All at once: one token holding exactly the union.
    let reply = token(
        &envoy,
        &alice,
        &[
            "repository:apps/alpha/x:pull,push",
            "repository:apps/beta/x:pull,push",
            "repository:apps/gamma/x:pull,push",
        ],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let (_, claims) = verify_registry_token(
        reply.json()["token"].as_str().unwrap_or(""),
        &keys.signing_public_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sub"], "idp:alice");
    let mut access: Vec<String> = claims["access"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{}:{}", e["name"], e["actions"]))
                .collect()
        })
        .unwrap_or_default();
    access.sort();
    assert_eq!(
        access,
        [
            r#""apps/alpha/x":["pull","push"]"#,
            r#""apps/beta/x":["pull"]"#
        ],
        "{claims}"
    );

    // The same through skopeo: push alpha (A), pull beta (B); push beta, pull gamma fail.
    let image = push(&registry, &alice, "apps/alpha/x", "v1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pull(&registry, &alice, "apps/alpha/x", "v1"),
        image.manifest_digest
    );
    assert!(pull(&registry, &alice, "apps/beta/x", "v1").starts_with("sha256:"));
    assert!(
        push(&registry, &alice, "apps/beta/x", "v2").is_err(),
        "alice pushed to beta"
    );
    let dir = registry::empty_oci_dir();
    let run = registry::copy(
        &registry.docker_ref("apps/gamma/x", "v1"),
        &registry::oci_ref(dir.path(), "v1"),
        Some(&registry::creds(&alice)),
        None,
    );
    assert!(!run.success, "alice pulled gamma:\n{run}");
}

/// Hostile claims through real Envoy: each refused with its own reason, none issues a
/// token, and the next honest request still succeeds.
#[test]
fn hostile_claims_are_refused_with_their_reason_and_widen_nothing() {
    let keys = TestKeys::generate();
    let github = AuthorityKey::from_pem(&fixture_key(KeyKind::Rsa2048, "github"))
        .unwrap_or_else(|e| panic!("{e}"));
    let kid = keys.authority.kid().to_owned();
    let mut config = trust_config(&keys, &github);
    // A second policy whose tenant comes from a claim no condition pins.
    if let Some(policies) = config["issuers"][0]["policies"].as_array_mut() {
        policies.push(json!({
            "name": "any-owner-main",
            "claims": {"ref": "refs/heads/main"},
            "tenant": "{repository_owner}",
            "plans": ["ci"]
        }));
    }
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let ask = |claims: &Value| {
        let t = github.sign(claims, Some(&kid), Some("JWT"));
        token(&envoy, &t, &["repository:acme/app:pull,push"])
    };
    let honest = github_claims(GITHUB, "acme/app", "refs/heads/main");
    let with = |name: &str, value: Value| {
        let mut c = honest.clone();
        c[name] = value;
        c
    };
    let long = "a".repeat(300);
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            "owner of the wrong type".into(),
            with("repository_owner", json!(123)),
            401,
            "invalid_claim",
        ),
        (
            "ref of the wrong type".into(),
            with("ref", json!(["refs/heads/main"])),
            401,
            "invalid_claim",
        ),
        (
            "a subject template fed ..".into(),
            with("repository", json!("acme/../globex")),
            401,
            "invalid_claim",
        ),
        (
            "a subject template fed %2F".into(),
            with("repository", json!("acme%2Fglobex")),
            401,
            "invalid_claim",
        ),
        (
            "a subject template fed 300 bytes".into(),
            with("repository", json!(long)),
            401,
            "invalid_claim",
        ),
        (
            "a subject template fed nothing".into(),
            with("repository", json!("")),
            401,
            "invalid_claim",
        ),
        (
            "a tenant fed /".into(),
            with("repository_owner", json!("acme/globex")),
            401,
            "invalid_claim",
        ),
        (
            "a tenant fed ..".into(),
            with("repository_owner", json!("..")),
            401,
            "invalid_claim",
        ),
        (
            "a tenant fed *".into(),
            with("repository_owner", json!("*")),
            401,
            "invalid_claim",
        ),
        (
            "a tenant fed a placeholder".into(),
            with("repository_owner", json!("{sub}")),
            401,
            "invalid_claim",
        ),
        (
            "an iss in another case".into(),
            with("iss", json!("https://Token.actions.githubusercontent.com")),
            401,
            "unknown_issuer",
        ),
        (
            "no iss".into(),
            with("iss", Value::Null),
            401,
            "unknown_issuer",
        ),
        (
            "a ref no policy names".into(),
            with("ref", json!("refs/heads/main2")),
            403,
            "no_trust_policy",
        ),
    ];
    for (what, claims, status, label) in cases {
        let reply = ask(&claims);
        assert_eq!(
            (reply.status, reason(&reply).as_str()),
            (status, label),
            "{what}: {reply:?}"
        );
        assert!(
            reply.json()["token"].is_null(),
            "{what}: a token was issued"
        );
        // The next honest request still succeeds.
        assert_eq!(ask(&honest).status, 200, "after {what}");
    }
    // The second policy with an honest owner: its own namespace only.
    let other = with("repository_owner", json!("globex"));
    let t = github.sign(&other, Some(&kid), Some("JWT"));
    let reply = token(
        &envoy,
        &t,
        &["repository:globex/app:push", "repository:acme/app:push"],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let (_, claims) = verify_registry_token(
        reply.json()["token"].as_str().unwrap_or(""),
        &keys.signing_public_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["tenant"], "globex");
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "globex/app", "actions": ["push"]}]),
        "nothing outside its tenant"
    );
}

/// The second issuer is a real one: the test Authority (npm `oidc-provider`) started as a
/// GitHub-shaped issuer, its clients carrying GitHub's claim names (`repository`,
/// `repository_owner`, `ref`, …, added by its `extraTokenClaims`), tokens obtained with
/// the `client_credentials` grant by `client.mjs` and its keys published at its `jwks_uri`.
/// The main branch's token pushes with skopeo and with dockerd (`docker login`, `push`)
/// where the policy maps it; the dev branch's is refused `no_trust_policy`.
#[test]
fn a_github_shaped_token_from_oidc_provider_pushes_where_its_policy_maps() {
    use registry_token_e2e::oidc::{self, https_request, Authority, Pki, RESOURCE};
    let pki = Pki::generate();
    let secret = "github-shaped-client-secret-0123456789";
    let client = |id: &str, git_ref: &str| {
        json!({
            "client_id": id, "client_secret": secret,
            "token_endpoint_auth_method": "client_secret_basic",
            "claims": {
                "repository": "acme/app", "repository_owner": "acme", "ref": git_ref,
                "workflow": "release", "event_name": "push",
                "runner_environment": "github-hosted"
            }
        })
    };
    let clients = json!([
        client("acme-app-main", "refs/heads/main"),
        client("acme-app-dev", "refs/heads/dev")
    ]);
    let github =
        Authority::start_with(&pki, &clients, secret.to_owned()).unwrap_or_else(|e| panic!("{e}"));
    // Its published keys, found through its discovery document.
    let get_json = |url: &str| -> Value {
        let reply = https_request("GET", url, &[], &pki.ca_cert, None)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(reply.status, 200, "{url}: {reply:?}");
        reply.json()
    };
    let discovery = get_json(&github.metadata_url());
    let jwks = get_json(discovery["jwks_uri"].as_str().unwrap_or(""));

    let keys = TestKeys::generate();
    let mut config = trust_config(
        &keys,
        &AuthorityKey::from_pem(&fixture_key(KeyKind::Rsa2048, "github"))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    config["issuers"][0]["issuer"] = json!(github.issuer());
    config["issuers"][0]["audiences"] = json!([RESOURCE]);
    config["issuers"][0]["jwks"] = jwks;
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));

    let grant = |id: &str| -> String {
        let issuer = github.issuer().to_owned();
        let ca = pki.ca_cert.display().to_string();
        let out = oidc::client(&[
            "token",
            "--issuer",
            &issuer,
            "--client-id",
            id,
            "--client-secret",
            secret,
            "--ca",
            &ca,
        ]);
        assert_eq!(out["claims"]["iss"], github.issuer(), "{out}");
        assert_eq!(
            out["claims"]["ref"]
                .as_str()
                .map(|r| r.starts_with("refs/heads/")),
            Some(true),
            "{out}"
        );
        out["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    let main = grant("acme-app-main");
    let image = push(&registry, &main, "acme/app", "v1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pull(&registry, &main, "acme/app", "v1"),
        image.manifest_digest
    );
    let reply = token(&envoy, &main, &["repository:acme/app:push"]);
    let (_, claims) = verify_registry_token(
        reply.json()["token"].as_str().unwrap_or(""),
        &keys.signing_public_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sub"], "github:acme/app@refs/heads/main");
    // The same token logs dockerd in and pushes (what the workflow's `docker login` does).
    let host = registry.host();
    let docker =
        registry_token_e2e::clients::Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    let run = docker.login(&host, "github", &main);
    assert!(run.success, "{run}");
    let tagged = format!("{host}/acme/app:v3");
    docker
        .import_tiny(&tagged)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = docker.push(&tagged);
    assert!(run.success, "{run}");

    let dev = grant("acme-app-dev");
    let reply = token(&envoy, &dev, &["repository:acme/app:push"]);
    assert_eq!(
        (reply.status, reason(&reply).as_str()),
        (403, "no_trust_policy"),
        "{reply:?}"
    );
    assert!(push(&registry, &dev, "acme/app", "v2").is_err());
    let run = docker.login(&host, "github", &dev);
    assert!(
        !run.success,
        "the dev branch's token logged dockerd in: {run}"
    );
}
