//! Admin tokens the ledger must refuse beyond the scenario's cases (issue 25): a token
//! without `aud` when `--audience` is set, and a token whose header names critical
//! extensions (`crit`, RFC 7515 §4.1.11). Against the real binary on SQLite (the database
//! plays no part).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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

/// Signs `claims` (over valid defaults) with the RSA admin key under a header of our own:
/// `jsonwebtoken`'s `Header` has no `crit`.
fn token_with_header(header: Value) -> String {
    let claims = json!({
        "iss": ISSUER, "sub": "security-alice", "iat": now(), "exp": now() + 300,
        "scope": ADMIN_SCOPE,
    });
    let alg = match header["alg"].as_str().unwrap() {
        "ES256" => Algorithm::ES256,
        "PS256" => Algorithm::PS256,
        _ => Algorithm::RS256,
    };
    let key = if alg == Algorithm::ES256 {
        ec_key()
    } else {
        admin_key()
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, alg).unwrap();
    format!("{input}.{signature}")
}

/// A header naming critical extensions (`crit`, RFC 7515 §4.1.11) is refused: the ledger
/// understands none. Before issue 25 the header's `crit` was ignored and these were admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_crit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&sqlite(&dir));
    let c = Client::new();
    let ext = "urn:example:must-understand";
    let cases = [
        (
            "no crit (the control)",
            json!({"alg": "RS256", "typ": "JWT", "kid": "admin-1", ext: true}),
            200,
        ),
        (
            "crit naming an extension",
            json!({"alg": "RS256", "typ": "JWT", "kid": "admin-1", "crit": [ext], ext: true}),
            401,
        ),
        (
            "crit naming exp",
            json!({"alg": "RS256", "kid": "admin-1", "crit": ["exp"], "exp": 1}),
            401,
        ),
        (
            "crit empty",
            json!({"alg": "RS256", "kid": "admin-1", "crit": []}),
            401,
        ),
        (
            "crit not an array",
            json!({"alg": "RS256", "kid": "admin-1", "crit": ext, ext: true}),
            401,
        ),
        (
            "crit null",
            json!({"alg": "RS256", "kid": "admin-1", "crit": null}),
            401,
        ),
        (
            "crit on PS256",
            json!({"alg": "PS256", "kid": "admin-1", "crit": [ext], ext: true}),
            401,
        ),
        (
            "crit on ES256",
            json!({"alg": "ES256", "kid": "admin-ec", "crit": [ext], ext: true}),
            401,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, header, want) in cases {
        let (status, body) = get_with(&c, &s, &token_with_header(header)).await;
        if status != want {
            wrong.push(format!("{name}: {status} (want {want}) {body}"));
        } else if want == 401 {
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("crit"), "{name}: a clear error: {body}");
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
