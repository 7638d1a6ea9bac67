//! Robots against each database: create (the token verifies with the published key and
//! carries the robot), list with last use, delete (its subject in the gateways' feed), and
//! every bad request refused with the field it names; a ledger without a robot key answers
//! `404 robots_disabled`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

const ROBOT_ISSUER: &str = "https://ledger.test/robots";
const ROBOT_AUDIENCE: &str = "registry-gateways";

/// A ledger on `database` with a fresh robot key.
fn start(database: &str) -> (Server, tempfile::TempDir) {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let keys = tempfile::tempdir().unwrap();
    let pem = p256::SecretKey::random(&mut rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
    let key = keys.path().join("robot.pem");
    std::fs::write(&key, pem.as_bytes()).unwrap();
    let key = key.to_string_lossy().into_owned();
    let s = Server::start_args(
        database,
        &[
            "--robot-key-file",
            &key,
            "--robot-issuer",
            ROBOT_ISSUER,
            "--robot-audience",
            ROBOT_AUDIENCE,
            "--robot-max-days",
            "60",
            "--max-revocations",
            "3",
        ],
    );
    (s, keys)
}

async fn call(
    c: &Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = c.request(method, url).bearer_auth(admin_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ci_pull(name: &str) -> Value {
    json!({
        "name": name, "tenant": "acme", "plans": ["community", "ci"],
        "repositories": [{"pattern": "acme/app/*", "actions": ["pull"]}],
        "expiresInDays": 7,
    })
}

pub async fn run(database: &str) {
    let (s, _keys) = start(database);
    let c = Client::new();
    let post = |body: Value| call(&c, reqwest::Method::POST, s.url("/v1/robots"), Some(body));

    // The published keys, found through discovery under the issuer's path.
    let disco: Value = c
        .get(s.url("/robots/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], ROBOT_ISSUER);
    assert_eq!(
        disco["jwks_uri"],
        "https://ledger.test/robots/.well-known/jwks.json"
    );
    let jwks: jsonwebtoken::jwk::JwkSet = c
        .get(s.url("/robots/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks.keys.len(), 1);

    // Create: the token is ES256 under the published key and carries the robot.
    let t0 = now();
    let (status, created) = post(ci_pull("ci-pull")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(created["subject"], format!("robot:{id}"));
    let token = created["token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[ROBOT_ISSUER]);
    v.set_audience(&[ROBOT_AUDIENCE]);
    let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the robot token verifies")
        .claims;
    assert_eq!(claims["sub"], format!("robot:{id}"));
    assert_eq!(claims["scope"], "registry.token.issue");
    assert_eq!(claims["plans"], json!(["community", "ci"]));
    assert_eq!(claims["stellaops:tenant"], "acme");
    assert_eq!(claims["robot"]["name"], "ci-pull");
    assert_eq!(
        claims["registry_rules"],
        json!(["repository:acme/app/*:pull"])
    );
    assert_eq!(claims["robot"], json!({"name": "ci-pull"}));
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        (t0 + 7 * 86_400..=now() + 7 * 86_400).contains(&exp),
        "{exp}"
    );
    // A token signed by another key under the same kid does not verify.
    let mut tampered = token.rsplit_once('.').unwrap().0.to_string();
    tampered.push_str(".AAAA");
    assert!(
        jsonwebtoken::decode::<Value>(&tampered, &DecodingKey::from_jwk(jwk).unwrap(), &v).is_err()
    );

    // The token is not kept: not in the list, not in the robot.
    let (status, list) = call(&c, reqwest::Method::GET, s.url("/v1/robots"), None).await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].get("token").is_none() && items[0]["lastUsed"].is_null());
    assert!(!list.to_string().contains(token));

    // Last use: the newest token a gateway issued to its subject.
    let records = json!({"records": [
        {"id": "robot-use-1", "time": t0 - 50, "decision": "issued", "reason": "issued",
         "subject": format!("robot:{id}")},
        {"id": "robot-use-2", "time": t0 - 20, "decision": "issued", "reason": "issued",
         "subject": format!("robot:{id}")},
        {"id": "robot-use-3", "time": t0 - 5, "decision": "rejected", "reason": "plan_denied",
         "subject": format!("robot:{id}")},
    ]});
    let r = c
        .post(s.url("/v1/ingest"))
        .bearer_auth(INGEST_SECRET)
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, one) = call(
        &c,
        reqwest::Method::GET,
        s.url(&format!("/v1/robots/{id}")),
        None,
    )
    .await;
    assert_eq!(one["lastUsed"], t0 - 20, "{one}");

    // One active robot per name.
    let (status, taken) = post(ci_pull("ci-pull")).await;
    assert_eq!(
        (status.as_u16(), taken["error"].as_str()),
        (409, Some("name_taken"))
    );
    assert_eq!(taken["id"], id.as_str());

    // Bad requests name their field, and store nothing.
    for (body, field) in [
        (
            json!({"name": "Bad Name", "plans": ["p"], "repositories": [{"pattern": "a", "actions": ["pull"]}]}),
            "name",
        ),
        (
            json!({"name": "x", "plans": [], "repositories": [{"pattern": "a", "actions": ["pull"]}]}),
            "plans",
        ),
        (
            json!({"name": "x", "plans": ["p"], "repositories": [{"pattern": "a/../b", "actions": ["pull"]}]}),
            "repositories[0].pattern",
        ),
        (
            json!({"name": "x", "plans": ["p"], "repositories": [{"pattern": "a", "actions": ["pull"]}], "expiresInDays": 61}),
            "expiresInDays",
        ),
    ] {
        let (status, e) = post(body).await;
        assert_eq!(
            (status.as_u16(), e["field"].as_str()),
            (400, Some(field)),
            "{e}"
        );
    }
    let (status, e) =
        post(json!({"name": "x", "plans": ["p"], "repositories": [], "token": "mine"})).await;
    assert_eq!(
        (status.as_u16(), e["error"].as_str()),
        (400, Some("invalid_request")),
        "{e}"
    );
    let (status, e) = post(json!(["not", "an", "object"])).await;
    assert_eq!(status, 400, "{e}");
    let r = c
        .post(s.url("/v1/robots"))
        .json(&ci_pull("y"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no admin token");
    let (_, list) = call(&c, reqwest::Method::GET, s.url("/v1/robots"), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Delete: its subject is revoked in the gateways' feed, in the same step.
    let (status, deleted) = call(
        &c,
        reqwest::Method::DELETE,
        s.url(&format!("/v1/robots/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deletedBy"], "security-alice");
    let feed: Value = c
        .get(s.url("/v1/revocations/feed"))
        .bearer_auth(FEED_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        feed["revokedSubjects"],
        json!([format!("robot:{id}")]),
        "{feed}"
    );
    let (status, _) = call(
        &c,
        reqwest::Method::DELETE,
        s.url(&format!("/v1/robots/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 404, "deleted once");
    let (_, list) = call(&c, reqwest::Method::GET, s.url("/v1/robots"), None).await;
    assert_eq!(list["items"], json!([]));
    let (_, all) = call(&c, reqwest::Method::GET, s.url("/v1/robots?all=true"), None).await;
    assert_eq!(all["items"][0]["id"], id.as_str());

    // The name is free again; the new robot is another subject, not revoked.
    let (status, again) = post(ci_pull("ci-pull")).await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["id"], id.as_str());

    // A full revocation list keeps the robot rather than delete it unrevoked.
    for v in ["a", "b"] {
        let (status, r) = call(
            &c,
            reqwest::Method::POST,
            s.url("/v1/revocations"),
            Some(json!({"kind": "subject", "value": v, "reason": "fill"})),
        )
        .await;
        assert_eq!(status, 201, "{r}");
    }
    let again_id = again["id"].as_str().unwrap();
    let (status, e) = call(
        &c,
        reqwest::Method::DELETE,
        s.url(&format!("/v1/robots/{again_id}")),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), e["error"].as_str()),
        (409, Some("too_many_revocations"))
    );
    let (_, one) = call(
        &c,
        reqwest::Method::GET,
        s.url(&format!("/v1/robots/{again_id}")),
        None,
    )
    .await;
    assert!(one["deletedAt"].is_null(), "{one}");

    // A subject revoked already by hand needs no room: with the list still full, deleting
    // that robot goes through (its revocation is the one in the list).
    let (status, listed) = call(&c, reqwest::Method::GET, s.url("/v1/revocations"), None).await;
    assert_eq!(status, 200, "{listed}");
    let b_id = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "b")
        .and_then(|i| i["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, r) = call(
        &c,
        reqwest::Method::DELETE,
        s.url(&format!("/v1/revocations/{b_id}?reason=room")),
        None,
    )
    .await;
    assert_eq!(status, 204, "{r}");
    let (status, r) = call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/revocations"),
        Some(json!({"kind": "subject", "value": format!("robot:{again_id}"), "reason": "by hand"})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let (status, gone) = call(
        &c,
        reqwest::Method::DELETE,
        s.url(&format!("/v1/robots/{again_id}")),
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "the list is full but holds this robot's subject: {gone}"
    );
    assert!(gone["deletedAt"].is_number(), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    run(&format!("sqlite://{}", dir.path().join("r.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_on_postgresql() {
    let pg = crate::postgres::start();
    run(&pg.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_robot_key_robots_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&format!("sqlite://{}", dir.path().join("o.db").display()));
    let c = Client::new();
    for (method, path) in [
        (reqwest::Method::POST, "/v1/robots"),
        (reqwest::Method::GET, "/v1/robots"),
        (reqwest::Method::DELETE, "/v1/robots/x"),
        (reqwest::Method::GET, "/.well-known/jwks.json"),
    ] {
        let (status, e) = call(&c, method, s.url(path), Some(ci_pull("z"))).await;
        assert_eq!(
            (status.as_u16(), e["error"].as_str()),
            (404, Some("robots_disabled")),
            "{path}"
        );
    }
}
