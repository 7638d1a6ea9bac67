//! `POST /token` through the real Envoy: the OAuth2 password and refresh grants, answered
//! from the form body. Envoy 1.40's Wasm host calls the body callback after a paused header
//! callback only with `allow_on_headers_stop_iteration: true` in the filter's Wasm config
//! (every shipped configuration has it); before that, every POST hung until the client gave
//! up (no answer, nothing counted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, start_gateway, token_path, ConfigForm, TestKeys, SERVICE,
};
use registry_token_e2e::{post, try_request, EnvoyOptions};
use serde_json::json;

const REALM: &str = "http://127.0.0.1:{{LISTEN_PORT}}/token";
const PULL: &str = "repository:stella-ops/public/base:pull";
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
