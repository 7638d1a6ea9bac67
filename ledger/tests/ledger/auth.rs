//! Admin tokens the ledger must refuse beyond the scenario's cases (issue 25): a token
//! without `aud` when `--audience` is set, and a token whose header names critical
//! extensions (`crit`, RFC 7515 §4.1.11). Against the real binary on SQLite (the database
//! plays no part).

use jsonwebtoken::Algorithm;
use reqwest::Client;
use serde_json::{json, Value};

use crate::harness::*;

const AUDIENCE: &str = "https://ledger.test";

/// The status and body of `GET /v1/revocations` with `token`.
async fn get_with(c: &Client, s: &Server, token: &str) -> (u16, Value) {
    let resp = c
        .get(s.url("/v1/revocations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("l.db").display())
}

/// With `--audience`, `aud` is required: a string equal to it or an array holding it.
/// Before issue 25 a token without `aud` (or with an `aud` of the wrong type) was an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audience_makes_aud_required() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_args(&sqlite(&dir), &["--audience", AUDIENCE]);
    let c = Client::new();
    let cases = [
        ("aud equal", json!({"aud": AUDIENCE}), 200),
        (
            "aud array holding it",
            json!({"aud": ["other", AUDIENCE]}),
            200,
        ),
        ("aud wrong", json!({"aud": "https://other.test"}), 401),
        ("aud array without it", json!({"aud": ["other"]}), 401),
        ("no aud", json!({}), 401),
        ("aud null", json!({"aud": null}), 401),
        ("aud a number", json!({"aud": 5}), 401),
        ("aud an object", json!({"aud": {"x": AUDIENCE}}), 401),
        ("aud an empty array", json!({"aud": []}), 401),
        (
            "aud an array with a number",
            json!({"aud": [AUDIENCE, 5]}),
            401,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, claims, want) in cases {
        let token = token_with(admin_key(), Algorithm::RS256, claims);
        let (status, body) = get_with(&c, &s, &token).await;
        if status != want {
            wrong.push(format!("{name}: {status} (want {want}) {body}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Without --audience, aud is not checked (as documented).
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&sqlite(&dir));
    for claims in [json!({}), json!({"aud": "anything"})] {
        let token = token_with(admin_key(), Algorithm::RS256, claims);
        assert_eq!(get_with(&c, &s, &token).await.0, 200);
    }
}
