//! The issuer and trust policy of each record (issue 21 #7, migration 0005): stored, read
//! back, exported and searched, on each database; records without them (one-Authority
//! gateways, and rows stored before the migration) read back as null.

use reqwest::Client;
use serde_json::{json, Value};

use crate::harness::*;

const GITHUB: &str = "https://token.actions.githubusercontent.com";

async fn get(c: &Client, s: &Server, path: &str) -> (u16, Value) {
    let r = c
        .get(s.url(path))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn run(database: &str) {
    let s = Server::start(database);
    let c = Client::new();
    let t = now() - 100;
    let records = json!({"records": [
        {"id": "gh-1", "time": t, "decision": "issued", "reason": "issued",
         "subject": "github:acme/app@refs/heads/main", "issuer": GITHUB, "policy": "main-branch"},
        {"id": "gh-2", "time": t + 1, "decision": "rejected", "reason": "no_trust_policy",
         "issuer": GITHUB},
        {"id": "anon-1", "time": t + 2, "decision": "issued", "reason": "issued",
         "policy": "anonymous"},
        {"id": "plain-1", "time": t + 3, "decision": "issued", "reason": "issued",
         "subject": "alice"},
    ]});
    let r = c
        .post(s.url("/v1/ingest"))
        .bearer_auth(INGEST_SECRET)
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (st, one) = get(&c, &s, "/v1/issuances/gh-1").await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(
        (one["issuer"].as_str(), one["policy"].as_str()),
        (Some(GITHUB), Some("main-branch"))
    );
    let (_, plain) = get(&c, &s, "/v1/issuances/plain-1").await;
    assert!(
        plain["issuer"].is_null() && plain["policy"].is_null(),
        "{plain}"
    );

    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, by_issuer) = get(&c, &s, &format!("/v1/issuances?issuer={GITHUB}")).await;
    assert_eq!(st, 200, "{by_issuer}");
    assert_eq!(ids(&by_issuer), ["gh-2", "gh-1"]);
    let (_, by_policy) = get(&c, &s, "/v1/issuances?policy=anonymous").await;
    assert_eq!(ids(&by_policy), ["anon-1"]);
    let (_, both) = get(
        &c,
        &s,
        &format!("/v1/issuances?issuer={GITHUB}&policy=main-branch&decision=issued"),
    )
    .await;
    assert_eq!(ids(&both), ["gh-1"]);
    let (st, e) = get(&c, &s, "/v1/issuances?policy=").await;
    assert_eq!((st, e["parameter"].as_str()), (400, Some("policy")), "{e}");

    let r = c
        .get(s.url("/v1/issuances?policy=main-branch"))
        .bearer_auth(admin_token())
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let csv = r.text().await.unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(header.ends_with(",received_at,issuer,policy"), "{header}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("gh-1,") && row.ends_with(&format!(",{GITHUB},main-branch")),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_policy_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    run(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_policy_on_postgresql() {
    let pg = crate::postgres::start();
    run(&pg.url).await;
}
