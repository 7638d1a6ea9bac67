//! CI and Kubernetes workload identities with the container engines, through real Envoy
//! and registry 2.8 (issue 21): a GitHub-Actions-shaped ID token (the test's own signer as
//! GitHub's issuer, GitHub's claim names, as in `trust`) logs dockerd in with
//! `docker login --password-stdin` and pushes to the repository its policy maps to; no
//! refresh token is stored and another owner's repository is refused. A
//! Kubernetes-service-account-shaped token (the test's key as the cluster's issuer) goes
//! through `registry-token credential-provider` as the kubelet's
//! `CredentialProviderRequest`, and `ctr --user` pulls with the answer's credentials
//! through a `system:serviceaccount:ci:*` trust policy; another namespace's service
//! account is refused 403 `no_trust_policy`. With `anonymous` on, dockerd pulls a public
//! repository without logging in, and nothing else; with it off, it cannot.
//!
//! Needs root and `make apt-deps` (dockerd, containerd); `--nocapture` prints timings.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use registry_token_e2e::authority::{now, AuthorityKey};
use registry_token_e2e::clients::{Containerd, Dockerd};
use registry_token_e2e::gateway::{
    filter_config, fixture_key, optok, start_gateway, ConfigForm, KeyKind, TestKeys, SERVICE,
};
use registry_token_e2e::oidc::{rejected_by_reason, rejected_delta};
use registry_token_e2e::registry::{Registry, RegistryAuth};
use registry_token_e2e::{Envoy, EnvoyOptions};
use serde_json::{json, Value};

use super::common::REALM;
use super::offline::cli;
use super::tenants::push;
use super::trust::{github_claims, reason, token, trust_config, GITHUB};

/// The gateway (`config`) and a registry 2.8 trusting its signing certificate.
fn gateway(config: &Value, keys: &TestKeys) -> (Envoy, Registry) {
    let envoy = start_gateway(config, ConfigForm::StringValue, keys, EnvoyOptions::new());
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    (envoy, registry)
}

#[test]
fn a_github_actions_token_logs_dockerd_in_and_pushes_where_its_policy_maps() {
    let started = Instant::now();
    let keys = TestKeys::generate();
    let github = AuthorityKey::from_pem(&fixture_key(KeyKind::Rsa2048, "github"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = trust_config(&keys, &github);
    // Refresh tokens on, as for `docker login` with OpTokens: workloads must not get one.
    config["refreshTokens"] = json!({
        "lifetimeSeconds": 3600,
        "secrets": ["workloads-e2e-refresh-secret-0123456789abcdef"],
    });
    let (envoy, registry) = gateway(&config, &keys);
    let host = registry.host();
    let docker = Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("dockerd started in {:.2?}", docker.startup());
    let id_token = github.sign(
        &github_claims(GITHUB, "acme/app", "refs/heads/main"),
        Some(keys.authority.kid()),
        Some("JWT"),
    );

    // What the workflow runs: the ID token as the password, any user name.
    let run = docker.login(&host, "github", &id_token);
    assert!(run.success, "{run}");
    // A workload caller never gets a refresh token: docker keeps the short-lived token.
    let config = docker.config_json().unwrap_or(Value::Null);
    assert!(
        config["auths"][&host]["identitytoken"].is_null(),
        "a refresh token was stored: {config}"
    );
    let image = format!("{host}/acme/app:v1");
    docker.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
    let run = docker.push(&image);
    assert!(run.success, "{run}");
    let pushed = docker.repo_digests(&image);
    assert!(!pushed.is_empty(), "no digest after the push");
    let run = docker.rmi(&image);
    assert!(run.success, "{run}");
    let run = docker.pull(&image);
    assert!(run.success, "{run}");
    assert_eq!(docker.repo_digests(&image), pushed);

    // Not another owner's repository: the realm grants nothing there, the push fails.
    let rejected_before = rejected_by_reason(&envoy);
    let other = format!("{host}/globex/app:v1");
    let run = docker.tag(&image, &other);
    assert!(run.success, "{run}");
    let run = docker.push(&other);
    assert!(!run.success, "acme's token pushed to globex: {run}");
    // The same job on another branch: docker login itself is refused.
    let dev = github.sign(
        &github_claims(GITHUB, "acme/app", "refs/heads/dev"),
        Some(keys.authority.kid()),
        Some("JWT"),
    );
    let run = docker.login(&host, "github", &dev);
    assert!(!run.success, "a dev-branch token logged in: {run}");
    let rejected = rejected_delta(&rejected_before, &rejected_by_reason(&envoy));
    assert!(
        rejected.get("no_trust_policy").copied().unwrap_or(0) >= 1,
        "{rejected:?}"
    );
    eprintln!("test took {:.2?}", started.elapsed());
}

/// The cluster's service-account issuer (`--service-account-issuer`).
const K8S: &str = "https://kubernetes.default.svc.cluster.local";

/// A projected service-account token's claims (audience-bound, ten minutes).
fn service_account_claims(namespace: &str, account: &str) -> Value {
    let now = now();
    json!({
        "iss": K8S, "aud": [SERVICE], "sub": format!("system:serviceaccount:{namespace}:{account}"),
        "iat": now, "nbf": now, "exp": now + 600, "jti": format!("sa-{namespace}-{account}-{now}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": account, "uid": "5b0f2c4e-0000-4000-8000-000000000001"},
            "pod": {"name": "builder-7d9f", "uid": "5b0f2c4e-0000-4000-8000-000000000002"},
            "node": {"name": "node-1", "uid": "5b0f2c4e-0000-4000-8000-000000000003"},
        },
    })
}

/// `registry-token credential-provider` fed the kubelet's request for `image` with
/// `token`, as deploy/kubelet/credential-provider-config.yaml runs it: its answer.
fn credential_provider(image: &str, token: &str) -> Value {
    let request = json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": {},
    });
    let mut child = Command::new(cli())
        .args(["credential-provider", "--max-cache-seconds", "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run registry-token: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "credential-provider: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("its answer: {e}"))
}

#[test]
fn a_service_account_token_through_the_credential_provider_pulls_with_ctr() {
    let started = Instant::now();
    let keys = TestKeys::generate();
    let cluster = AuthorityKey::from_pem(&fixture_key(KeyKind::Rsa2048, "k8s"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    if let Some(plans) = config["plans"].as_array_mut() {
        plans.push(json!({"name": "ci-pull", "repositories": [{"pattern": "stella-ops/private/*", "actions": ["pull"]}]}));
    }
    config["issuers"] = json!([{
        "issuer": K8S, "audiences": [SERVICE], "jwks": cluster.jwks(),
        "requiredScopes": [], "requireSenderConstraint": false, "algorithms": ["RS256"],
        "clockSkewSeconds": 30,
        "policies": [{
            "name": "ci-builders",
            "claims": {"sub": "system:serviceaccount:ci:*"},
            "subject": "k8s:{sub}",
            "plans": ["ci-pull"]
        }]
    }]);
    let (envoy, registry) = gateway(&config, &keys);
    let host = registry.host();
    let publisher = optok(&keys, |s| s.plan = Some("enterprise".into()));
    let pushed = push(&registry, &publisher, "stella-ops/private/app", "v1")
        .unwrap_or_else(|e| panic!("{e}"));
    let ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("containerd started in {:.2?}", ctrd.startup());
    let image = format!("{host}/stella-ops/private/app:v1");

    // The kubelet's request for the pod of service account ci/builder.
    let sa_token = cluster.sign(
        &service_account_claims("ci", "builder"),
        Some(cluster.kid()),
        Some("JWT"),
    );
    let answer = credential_provider(&image, &sa_token);
    assert_eq!(answer["kind"], "CredentialProviderResponse", "{answer}");
    let auth = &answer["auth"][&host];
    let (user, password) = (
        auth["username"].as_str().unwrap_or_default(),
        auth["password"].as_str().unwrap_or_default(),
    );
    assert!(!user.is_empty() && !password.is_empty(), "{answer}");
    // The kubelet hands the runtime exactly that: ctr --user U:P.
    let issued_before = envoy.issued_by("password");
    let run = ctrd.pull(&image, Some((user, password)));
    assert!(run.success, "{run}");
    assert_eq!(ctrd.image_digest(&image), Some(pushed.manifest_digest));
    assert!(
        envoy.issued_by("password") > issued_before,
        "not the POST password grant"
    );
    // It pulls, it does not push (a new tag: the manifest must be written).
    let v2 = format!("{host}/stella-ops/private/app:v2");
    let run = ctrd.tag(&image, &v2);
    assert!(run.success, "{run}");
    let run = ctrd.push(&v2, Some((user, password)));
    assert!(!run.success, "a ci-pull service account pushed: {run}");

    // A pod of another namespace's service account: the provider answers (it verifies
    // nothing), the gateway refuses it 403 no_trust_policy and ctr cannot pull.
    let wrong = cluster.sign(
        &service_account_claims("default", "default"),
        Some(cluster.kid()),
        Some("JWT"),
    );
    let answer = credential_provider(&image, &wrong);
    let auth = &answer["auth"][&host];
    let (user, password) = (
        auth["username"].as_str().unwrap_or_default(),
        auth["password"].as_str().unwrap_or_default(),
    );
    assert_eq!(password, wrong, "{answer}");
    let run = ctrd.rm(&image);
    assert!(run.success, "{run}");
    let rejected_before = rejected_by_reason(&envoy);
    let run = ctrd.pull(&image, Some((user, password)));
    assert!(!run.success, "default/default pulled: {run}");
    let rejected = rejected_delta(&rejected_before, &rejected_by_reason(&envoy));
    assert!(
        rejected.get("no_trust_policy").copied().unwrap_or(0) >= 1,
        "{rejected:?}"
    );
    let reply = token(&envoy, &wrong, &["repository:stella-ops/private/app:pull"]);
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(reason(&reply), "no_trust_policy");
    eprintln!("test took {:.2?}", started.elapsed());
}

/// `anonymous: {plan: community}`: dockerd, never logged in, pulls a public repository;
/// it cannot push there, nor pull a private one; with the policy off, the same pull is
/// refused (the realm answers 401 and docker has nothing to answer with).
#[test]
fn anonymous_docker_pulls_a_public_repository_and_nothing_else() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    config["anonymous"] = json!({"plan": "community"});
    let (envoy, registry) = gateway(&config, &keys);
    let publisher = optok(&keys, |s| s.plan = Some("enterprise".into()));
    push(&registry, &publisher, "stella-ops/public/base", "v1").unwrap_or_else(|e| panic!("{e}"));
    push(&registry, &publisher, "stella-ops/private/app", "v1").unwrap_or_else(|e| panic!("{e}"));
    let host = registry.host();
    let docker = Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        docker
            .config_json()
            .is_none_or(|c| c["auths"][&host].is_null()),
        "not logged in"
    );

    let public = format!("{host}/stella-ops/public/base:v1");
    let run = docker.pull(&public);
    assert!(run.success, "anonymous docker pull failed: {run}");
    let run = docker.tag(&public, &format!("{host}/stella-ops/public/base:v2"));
    assert!(run.success, "{run}");
    let run = docker.push(&format!("{host}/stella-ops/public/base:v2"));
    assert!(!run.success, "an anonymous docker push succeeded: {run}");
    let run = docker.pull(&format!("{host}/stella-ops/private/app:v1"));
    assert!(
        !run.success,
        "an anonymous pull of a private repository succeeded: {run}"
    );
    drop(envoy);

    // The policy off: the same pull is refused.
    config
        .as_object_mut()
        .map(|c| c.remove("anonymous"))
        .unwrap_or_else(|| panic!("a config object"));
    let (off, registry) = gateway(&config, &keys);
    push(&registry, &publisher, "stella-ops/public/base", "v1").unwrap_or_else(|e| panic!("{e}"));
    let host = registry.host();
    let docker = Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    let run = docker.pull(&format!("{host}/stella-ops/public/base:v1"));
    assert!(
        !run.success,
        "a pull without credentials succeeded with anonymous off: {run}"
    );
    let reply = off.get(
        &registry_token_e2e::gateway::token_path(
            SERVICE,
            &["repository:stella-ops/public/base:pull"],
        ),
        &[],
    );
    assert_eq!(
        (reply.status, reason(&reply).as_str()),
        (401, "missing_credentials"),
        "{reply:?}"
    );
}
