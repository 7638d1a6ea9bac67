//! The token exchange with a real registry (Debian's `docker-registry`, distribution 2.8)
//! and a real client (`skopeo`): the helpers every registry round trip here and in
//! `signing` uses (a gateway and a registry whose realm it is, push, pull, the registry's
//! own digest), a pull-only plan that pulls what an enterprise plan pushed but cannot
//! push, and `POST /token` answered from the form body (the OAuth2 password and refresh
//! grants; Envoy calls the body callback after a paused header callback only with
//! `allow_on_headers_stop_iteration: true`, which every shipped configuration has).

use std::collections::BTreeMap;

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, start_gateway, token_path, verify_registry_token, ConfigForm,
    TestKeys, KEYPEM_ENV, SERVICE,
};
use registry_token_e2e::registry::{
    self, creds, empty_oci_dir, oci_manifest_digest, oci_ref, OciImage, Registry, RegistryAuth,
    OCI_MANIFEST,
};
use registry_token_e2e::{post, prom_issued, prom_samples, try_request, Envoy, EnvoyOptions};
use serde_json::{json, Value};

use super::common::{token, PULL, REALM};

/// The registry's own view: `GET /v2/<repo>/manifests/<tag>` with a token from the
/// gateway, returning `Docker-Content-Digest`.
fn registry_digest(
    envoy: &Envoy,
    registry: &Registry,
    optok: &str,
    repo: &str,
    tag: &str,
    public_pem: &str,
) -> String {
    let (_, _, tok) = minted(envoy, optok, &format!("repository:{repo}:pull"), public_pem);
    let reply = registry_token_e2e::get(
        &format!("{}/v2/{repo}/manifests/{tag}", registry.url()),
        &[
            ("authorization", &format!("Bearer {tok}")),
            ("accept", OCI_MANIFEST),
        ],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .header("docker-content-digest")
        .unwrap_or_else(|| panic!("no Docker-Content-Digest: {reply:?}"))
        .to_owned()
}

/// Push with an enterprise OpTok, pull back into a fresh layout, compare digests (skopeo
/// with `--preserve-digests`, and the registry's own `Docker-Content-Digest`).
pub(crate) fn round_trip(envoy: &Envoy, registry: &Registry, keys: &TestKeys, public_pem: &str) {
    let repo = "stella-ops/private/app";
    let op = enterprise(keys);
    let issued_before = issued(envoy);
    let image = push(registry, &op, repo, "v1");
    assert_eq!(pull(registry, &op, repo, "v1"), image.manifest_digest);
    assert_eq!(
        registry_digest(envoy, registry, &op, repo, "v1", public_pem),
        image.manifest_digest
    );
    // Every token the registry accepted came from the filter.
    assert!(
        issued(envoy) > issued_before,
        "registry_token_issued_total did not move"
    );
}

/// An OpTok of the enterprise plan (pull and push of `stella-ops/**`).
pub(crate) fn enterprise(keys: &TestKeys) -> String {
    optok(keys, |s| s.plan = Some("enterprise".into()))
}

fn pull_only(keys: &TestKeys) -> String {
    optok(keys, |s| s.plan = Some("pullonly".into()))
}

/// Asks the gateway for a token directly and verifies it with `jsonwebtoken` against
/// `public_pem`: (header, claims, token).
pub(crate) fn minted(
    envoy: &Envoy,
    optok: &str,
    scope: &str,
    public_pem: &str,
) -> (Value, Value, String) {
    let reply = token(envoy, Some(&bearer(optok)), &[scope]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = reply.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {reply:?}"))
        .to_owned();
    let (header, claims) =
        verify_registry_token(&token, public_pem).unwrap_or_else(|e| panic!("{e}"));
    (header, claims, token)
}

/// The gateway with `config` (signing key `key_pem`) and a registry trusting
/// `root_certs_pem` whose realm is the gateway's `/token`.
pub(crate) fn exchange(
    keys: &TestKeys,
    config: &Value,
    key_pem: &str,
    root_certs_pem: &str,
) -> (Envoy, Registry) {
    let envoy = start_gateway(
        config,
        ConfigForm::StringValue,
        keys,
        EnvoyOptions::new().env(KEYPEM_ENV, key_pem),
    );
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, root_certs_pem))
        .unwrap_or_else(|e| panic!("{e}"));
    (envoy, registry)
}

/// Pushes a fresh image to `repo:tag` with `optok`, asserts success and returns it.
fn push(registry: &Registry, optok: &str, repo: &str, tag: &str) -> OciImage {
    let image = OciImage::build(tag);
    let run = registry::copy(
        &image.reference(),
        &registry.docker_ref(repo, tag),
        None,
        Some(&creds(optok)),
    );
    assert!(run.success, "push to {repo}:{tag} failed:\n{run}");
    image
}

/// Pulls `repo:tag` with `optok` into a fresh OCI layout and returns its manifest digest.
fn pull(registry: &Registry, optok: &str, repo: &str, tag: &str) -> String {
    let dir = empty_oci_dir();
    let run = registry::copy(
        &registry.docker_ref(repo, tag),
        &oci_ref(dir.path(), tag),
        Some(&creds(optok)),
        None,
    );
    assert!(run.success, "pull of {repo}:{tag} failed:\n{run}");
    oci_manifest_digest(dir.path(), tag).unwrap_or_else(|e| panic!("{e}"))
}

/// `registry_token_issued_total`, every grant together.
pub(crate) fn issued(envoy: &Envoy) -> f64 {
    prom_issued(&envoy.stats_prometheus()).unwrap_or(0.0)
}

#[test]
fn a_pull_only_plan_pulls_but_cannot_push() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    let (envoy, registry) = exchange(
        &keys,
        &config,
        keys.signing_key_pem(),
        keys.signing_cert_pem(),
    );
    let public = keys.signing_public_pem();
    let repo = "stella-ops/private/base";
    let image = push(&registry, &enterprise(&keys), repo, "v1");

    let ro = pull_only(&keys);
    // The realm grants what was asked ∩ the plan: pull only.
    let (_, claims, _) = minted(
        &envoy,
        &ro,
        &format!("repository:{repo}:pull,push"),
        &public,
    );
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": repo, "actions": ["pull"]}])
    );

    let rejected_before = rejected(&envoy);
    let issued_before = issued(&envoy);
    let refused = OciImage::build("v2");
    let run = registry::copy(
        &refused.reference(),
        &registry.docker_ref(repo, "v2"),
        None,
        Some(&creds(&ro)),
    );
    assert!(!run.success, "a pull-only plan pushed:\n{run}");
    let err = run.stderr.to_lowercase();
    assert!(
        err.contains("denied") || err.contains("unauthorized"),
        "skopeo's error names neither denied nor unauthorized:\n{run}"
    );
    eprintln!("pull-only push refused as expected: {}", run.stderr.trim());
    // The realm granted (pull only) and refused nothing: the registry enforced the grant.
    assert!(
        issued(&envoy) > issued_before,
        "no token issued for the push"
    );
    assert_eq!(rejected(&envoy), rejected_before);

    assert_eq!(pull(&registry, &ro, repo, "v1"), image.manifest_digest);

    // Nothing of the refused push was tagged.
    let (_, _, tok) = minted(
        &envoy,
        &enterprise(&keys),
        &format!("repository:{repo}:pull"),
        &public,
    );
    let tags = registry_token_e2e::get(
        &format!("{}/v2/{repo}/tags/list", registry.url()),
        &[("authorization", &format!("Bearer {tok}"))],
    );
    assert_eq!(tags.status, 200, "{tags:?}");
    assert_eq!(tags.json()["tags"], json!(["v1"]), "{tags:?}");
}

/// `registry_token_rejected_total` by `reason` label.
pub(crate) fn rejected(envoy: &Envoy) -> BTreeMap<String, f64> {
    prom_samples(&envoy.stats_prometheus())
        .into_iter()
        .filter(|(name, _, _)| name == "registry_token_rejected_total")
        .map(|(_, labels, v)| {
            let reason = labels
                .iter()
                .find(|(l, _)| l == "reason")
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            (reason, v)
        })
        .collect()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[test]
fn password_and_refresh_grants_are_answered_from_the_body() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["refreshTokens"] = json!({
        "lifetimeSeconds": 3600,
        "secrets": ["an-e2e-refresh-token-secret-of-32-chars-or-more"]
    });
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let url = format!("{}/token", envoy.base_url());
    let op = optok(&keys, |_| {});

    // The password grant (containerd), with a refresh token asked for.
    let body = format!(
        "grant_type=password&username=dev-user&password={op}&service={SERVICE}\
         &scope={}&client_id=containerd-client&access_type=offline",
        PULL.replace(':', "%3A").replace('/', "%2F")
    );
    let reply = try_request("POST", &url, &[FORM], Some(body.as_bytes()))
        .unwrap_or_else(|e| panic!("the password grant got no answer: {e}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = reply.json();
    assert!(answer["access_token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    let refresh = answer["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // The refresh grant (the Docker daemon after docker login).
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&scope={PULL}&client_id=docker"
    );
    let reply = post(&url, &[FORM], body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.json()["access_token"].is_string());

    // An error is RFC 6749 JSON, and the next honest requests still pass.
    let reply = post(&url, &[FORM], b"grant_type=client_credentials");
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
    let reply = envoy.get(
        &token_path(SERVICE, &[PULL]),
        &[("authorization", &bearer(&op))],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = post(&url, &[FORM], body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    // Other POSTs are not held: they reach the route (quickstart's 404).
    let reply = post(&format!("{}/v2/", envoy.base_url()), &[FORM], b"x=1");
    assert_eq!(reply.status, 404, "{reply:?}");
}
