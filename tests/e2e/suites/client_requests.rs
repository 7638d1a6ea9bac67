//! What the real clients send to a token realm: `docker` (dockerd 20.10), `ctr`
//! (containerd 1.6) and `podman` 4.3 log in, push and pull against a registry 2.8 whose
//! realm is a [`CaptureRealm`] minting tokens the registry accepts; the requests are
//! recorded and asserted: the ground truth for the gateway's `GET /token` and `POST
//! /token`. Needs root and `make apt-deps`; `--nocapture` prints the realm transcripts.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use registry_token_e2e::clients::{
    podman_bin, CaptureRealm, Containerd, Dockerd, Podman, RealmRequest, RealmSettings,
};
use registry_token_e2e::gateway::{TestKeys, SERVICE};
use registry_token_e2e::registry::{Registry, RegistryAuth};
use serde_json::Value;

const USER: &str = "alice";

const PASSWORD: &str = "correct-horse-battery";

fn settings(refresh_token: Option<&str>) -> RealmSettings {
    RealmSettings {
        user: USER.to_owned(),
        password: PASSWORD.to_owned(),
        refresh_token: refresh_token.map(str::to_owned),
        expires_in: 300,
    }
}

/// A capture realm signing with fresh test keys, and a registry trusting them.
fn realm_and_registry(refresh_token: Option<&str>) -> (TestKeys, CaptureRealm, Registry) {
    let keys = TestKeys::generate();
    let realm = CaptureRealm::start(
        keys.signing_key_pem(),
        keys.signing_cert_pem(),
        settings(refresh_token),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::start(&RegistryAuth::new(&realm.url(), keys.signing_cert_pem()))
        .unwrap_or_else(|e| panic!("{e}"));
    (keys, realm, registry)
}

fn show(label: &str, realm: &CaptureRealm) {
    eprintln!(
        "===== {label}: what reached the realm =====\n{}",
        realm.transcript()
    );
}

/// `type:name:actions` with the actions sorted (clients differ in their order: docker
/// asks `push,pull`, containerd and podman `pull,push`).
fn normalized(scope: &str) -> String {
    match scope.rsplit_once(':') {
        Some((head, actions)) => {
            let mut a: Vec<&str> = actions.split(',').collect();
            a.sort_unstable();
            format!("{head}:{}", a.join(","))
        }
        None => scope.to_owned(),
    }
}

/// Every scope of a request (repeated `scope` query parameters and space-joined `scope`
/// form fields alike), normalized.
fn scopes(req: &RealmRequest) -> Vec<String> {
    let form: Vec<&str> = req
        .form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    req.query_all("scope")
        .into_iter()
        .chain(form)
        .flat_map(|s| s.split(' '))
        .filter(|s| !s.is_empty())
        .map(normalized)
        .collect()
}

fn assert_basic(req: &RealmRequest) {
    assert_eq!(
        req.basic(),
        Some((USER.to_owned(), PASSWORD.to_owned())),
        "{}",
        req.redacted()
    );
}

#[test]
fn what_docker_sends_to_the_realm_for_login_push_and_pull() {
    let (_keys, realm, registry) = realm_and_registry(None);
    let docker = Dockerd::start(&[&registry.host()]).unwrap_or_else(|e| panic!("{e}"));
    let host = registry.host();

    // A wrong password: the daemon's call is refused, the CLI fails.
    let run = docker.login(&host, USER, "wrong");
    assert!(!run.success, "{run}");
    realm.clear();

    let run = docker.login(&host, USER, PASSWORD);
    assert!(run.success, "{run}");
    show("docker login", &realm);
    let reqs = realm.requests();
    assert_eq!(reqs.len(), 1, "{}", realm.transcript());
    let login = &reqs[0];
    assert_eq!(login.method, "GET");
    assert_eq!(login.path, "/token");
    assert_eq!(login.query_param("account"), Some(USER));
    assert_eq!(login.query_param("client_id"), Some("docker"));
    assert_eq!(login.query_param("offline_token"), Some("true"));
    assert_eq!(login.query_param("service"), Some(SERVICE));
    assert!(login.query_all("scope").is_empty(), "{}", login.redacted());
    assert_basic(login);
    let config = docker.config_json().unwrap_or(Value::Null);
    let auth = &config["auths"][&host];
    assert!(auth["auth"].is_string(), "{config}");
    assert!(auth.get("identitytoken").is_none(), "{config}");

    let image = format!("{host}/e2e/docker:v1");
    docker.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
    realm.clear();
    let run = docker.push(&image);
    assert!(run.success, "{run}");
    show("docker push", &realm);
    let reqs = realm.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.method, "GET", "{}", r.redacted());
        assert_eq!(r.query_param("account"), Some(USER));
        assert_eq!(r.query_param("service"), Some(SERVICE));
        assert_basic(r);
    }
    assert!(
        reqs.iter()
            .any(|r| scopes(r) == ["repository:e2e/docker:pull,push"]),
        "{}",
        realm.transcript()
    );

    let run = docker.rmi(&image);
    assert!(run.success, "{run}");
    realm.clear();
    let run = docker.pull(&image);
    assert!(run.success, "{run}");
    show("docker pull", &realm);
    let reqs = realm.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.method, "GET", "{}", r.redacted());
        assert_eq!(scopes(r), ["repository:e2e/docker:pull"]);
        assert_basic(r);
    }
}

#[test]
fn what_docker_sends_once_login_handed_it_a_refresh_token() {
    let refresh = "rt-capture-0123456789";
    let (_keys, realm, registry) = realm_and_registry(Some(refresh));
    let docker = Dockerd::start(&[&registry.host()]).unwrap_or_else(|e| panic!("{e}"));
    let host = registry.host();
    let run = docker.login(&host, USER, PASSWORD);
    assert!(run.success, "{run}");
    show("docker login (the realm hands out a refresh token)", &realm);
    let config = docker.config_json().unwrap_or(Value::Null);
    // The CLI keeps the user name and drops the password.
    assert_eq!(
        config["auths"][&host]["auth"].as_str(),
        Some(STANDARD.encode(format!("{USER}:")).as_str()),
        "{config}"
    );
    assert_eq!(
        config["auths"][&host]["identitytoken"].as_str(),
        Some(refresh),
        "{config}"
    );

    let image = format!("{host}/e2e/refresh:v1");
    docker.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
    realm.clear();
    let run = docker.push(&image);
    assert!(run.success, "{run}");
    show("docker push with an identity token", &realm);
    let reqs = realm.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.method, "POST", "{}", r.redacted());
        assert_eq!(r.path, "/token");
        assert_eq!(r.form_field("grant_type"), Some("refresh_token"));
        assert_eq!(r.form_field("client_id"), Some("docker"));
        assert_eq!(r.form_field("refresh_token"), Some(refresh));
        assert_eq!(r.form_field("service"), Some(SERVICE));
        assert!(r.header("authorization").is_none(), "{}", r.redacted());
    }
    assert!(
        reqs.iter()
            .any(|r| scopes(r) == ["repository:e2e/refresh:pull,push"]),
        "{}",
        realm.transcript()
    );
}

#[test]
fn what_containerd_sends_to_the_realm_for_push_and_pull() {
    let (_keys, realm, registry) = realm_and_registry(None);
    let ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
    let image = format!("{}/e2e/ctr:v1", registry.host());
    let digest = ctrd.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));

    let run = ctrd.push(&image, Some((USER, PASSWORD)));
    assert!(run.success, "{run}");
    show("ctr images push", &realm);
    let reqs = realm.requests();
    let first = reqs
        .first()
        .unwrap_or_else(|| panic!("ctr push never reached the realm"));
    assert_eq!(first.method, "POST", "{}", realm.transcript());
    assert_eq!(first.path, "/token");
    assert_eq!(first.form_field("grant_type"), Some("password"));
    assert_eq!(first.form_field("username"), Some(USER));
    assert_eq!(first.form_field("password"), Some(PASSWORD));
    assert_eq!(first.form_field("client_id"), Some("containerd-client"));
    assert_eq!(first.form_field("service"), Some(SERVICE));
    assert!(
        reqs.iter()
            .any(|r| scopes(r).contains(&"repository:e2e/ctr:pull,push".to_owned())),
        "{}",
        realm.transcript()
    );
    assert!(reqs.iter().all(|r| r.method == "POST"));

    let run = ctrd.rm(&image);
    assert!(run.success, "{run}");
    realm.clear();
    let run = ctrd.pull(&image, Some((USER, PASSWORD)));
    assert!(run.success, "{run}");
    show("ctr images pull", &realm);
    assert_eq!(ctrd.image_digest(&image), Some(digest));
    let reqs = realm.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.method, "POST", "{}", r.redacted());
        assert_eq!(r.form_field("grant_type"), Some("password"));
        assert_eq!(scopes(r), ["repository:e2e/ctr:pull"]);
    }

    // Without credentials containerd sends a plain GET, which this realm refuses.
    let run = ctrd.rm(&image);
    assert!(run.success, "{run}");
    realm.clear();
    let run = ctrd.pull(&image, None);
    assert!(!run.success, "{run}");
    show("ctr images pull without credentials", &realm);
    let reqs = realm.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter()
            .all(|r| r.method == "GET" && r.header("authorization").is_none()),
        "{}",
        realm.transcript()
    );
}

#[test]
fn what_podman_sends_to_the_realm_for_login_push_and_pull() {
    assert!(
        podman_bin().is_file(),
        "podman is not installed: run `make apt-deps` (a missing client is a failure, not a skip)"
    );
    let (_keys, realm, registry) = realm_and_registry(None);
    let podman = Podman::new().unwrap_or_else(|e| panic!("{e}"));
    let host = registry.host();
    let run = podman.login(&host, USER, PASSWORD);
    assert!(run.success, "{run}");
    show("podman login", &realm);
    let auth = podman.auth_json().unwrap_or(Value::Null);
    assert!(auth["auths"][&host]["auth"].is_string(), "{auth}");
    for r in &realm.requests() {
        assert_eq!(r.method, "GET", "{}", r.redacted());
        assert_basic(r);
    }

    let image = format!("{host}/e2e/podman:v1");
    podman.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
    realm.clear();
    let run = podman.push(&image);
    assert!(run.success, "{run}");
    show("podman push", &realm);
    let reqs = realm.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.method, "GET", "{}", r.redacted());
        assert_eq!(r.query_param("account"), Some(USER));
        assert_basic(r);
    }
    assert!(
        reqs.iter()
            .any(|r| scopes(r).contains(&"repository:e2e/podman:pull,push".to_owned())),
        "{}",
        realm.transcript()
    );

    let run = podman.rmi(&image);
    assert!(run.success, "{run}");
    realm.clear();
    let run = podman.pull(&image);
    assert!(run.success, "{run}");
    show("podman pull", &realm);
    for r in &realm.requests() {
        assert_eq!(r.method, "GET", "{}", r.redacted());
        assert_basic(r);
    }
}
