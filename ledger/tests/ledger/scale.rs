//! A revocation list at scale (issue 25 #4), against the real ledger binary: the bound of
//! active revocations (`--max-revocations`) is a clear `409 too_many_revocations`, exact
//! under concurrent creates on SQLite and PostgreSQL; the batch create; and the digest
//! feed (`?form=digests`), which the filter's parser reads, built once per change.

use std::sync::Arc;

use registry_token_core::policy::revocation::{
    parse_lists, parse_remote, DigestLists, RevocationKind, RevocationSet,
};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::harness::*;

async fn create(c: &Client, s: &Server, kind: &str, value: &str) -> (u16, Value) {
    let r = c
        .post(s.url("/v1/revocations"))
        .bearer_auth(admin_token())
        .json(&json!({"kind": kind, "value": value, "reason": "scale"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn batch(c: &Client, s: &Server, items: Value) -> (u16, Value) {
    let r = c
        .post(s.url("/v1/revocations/batch"))
        .bearer_auth(admin_token())
        .json(&json!({ "items": items }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_feed(c: &Client, s: &Server, query: &str) -> (u16, Vec<u8>) {
    let r = c
        .get(s.url(&format!("/v1/revocations/feed{query}")))
        .bearer_auth(FEED_SECRET)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

async fn active(c: &Client, s: &Server) -> usize {
    let r = c
        .get(s.url("/v1/revocations"))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["items"].as_array().unwrap().len()
}

fn items(kind: &str, values: impl IntoIterator<Item = String>) -> Value {
    values
        .into_iter()
        .map(|v| json!({"kind": kind, "value": v, "reason": "bulk"}))
        .collect()
}

fn too_many(status: u16, body: &Value, limit: usize) {
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "too_many_revocations", "{body}");
    assert_eq!(body["limit"], json!(limit), "{body}");
    assert!(body.get("id").is_none(), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--max-revocations"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_of_active_revocations_is_a_clear_409() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let s = Server::start_args(&url, &["--max-revocations", "3"]);
    let c = Client::new();
    let mut ids = Vec::new();
    for v in ["lic-1", "lic-2", "lic-3"] {
        let (st, body) = create(&c, &s, "license", v).await;
        assert_eq!(st, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (st, body) = create(&c, &s, "subject", "mallory").await;
    too_many(st, &body, 3);
    // An active value is still told as such, with its id.
    let (st, body) = create(&c, &s, "license", "lic-2").await;
    assert_eq!((st, &body["error"]), (409, &json!("already_revoked")));
    assert_eq!(body["id"], json!(ids[1]));
    let (st, body) = batch(&c, &s, items("subject", ["mallory".to_string()])).await;
    too_many(st, &body, 3);
    assert_eq!(active(&c, &s).await, 3, "nothing stored");
    // Lifting one makes room; a batch counts what was active already.
    let r = c
        .delete(s.url(&format!("/v1/revocations/{}", ids[0])))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (st, body) = batch(
        &c,
        &s,
        json!([{"kind": "subject", "value": "mallory", "reason": "r"},
               {"kind": "license", "value": "lic-2", "reason": "r"}]),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body, json!({"created": 1, "already_revoked": 1}));
    assert_eq!(active(&c, &s).await, 3);
    let metrics = c.get(s.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("ledger_active_revocations 3\n"), "{text}");
    assert!(text.contains("ledger_max_revocations 3\n"), "{text}");
    // A bad item refuses the whole batch, naming it.
    let (st, body) = batch(
        &c,
        &s,
        json!([{"kind": "tenant", "value": "ok", "reason": "r"},
               {"kind": "tenant", "value": " padded", "reason": "r"}]),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        (&body["index"], &body["field"]),
        (&json!(1), &json!("value"))
    );
    let (st, _) = batch(&c, &s, json!([])).await;
    assert_eq!(st, 400);
}

/// Concurrent creates of distinct values never pass the bound: exactly `max` are `201`.
async fn concurrent_creates_stop_at_the_bound(database: &str) {
    let s = Server::start_args(database, &["--max-revocations", "10"]);
    let c = Client::new();
    let n = 30;
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, barrier, url) = (c.clone(), barrier.clone(), s.url("/v1/revocations"));
            let token = admin_token();
            tokio::spawn(async move {
                barrier.wait().await;
                let r = c
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"kind": "subject", "value": format!("s-{i}"), "reason": "race"}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => created += 1,
            _ => too_many(status, &body, 10),
        }
    }
    assert_eq!(created, 10);
    assert_eq!(active(&c, &s).await, 10);
    let (_, feed) = get_feed(&c, &s, "?form=digests").await;
    assert_eq!(parse_remote(&feed).unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_stop_at_the_bound_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_creates_stop_at_the_bound(&format!(
        "sqlite://{}",
        dir.path().join("l.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_stop_at_the_bound_on_postgres() {
    let pg = crate::postgres::start();
    concurrent_creates_stop_at_the_bound(&pg.url).await;
}

/// 20,000 revocations through the batch path: the digest feed is what the filter reads
/// (the same digests as the value feed), a few bytes an entry, and built once per change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_feed_is_read_by_the_filter_and_built_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let s = Server::start(&url);
    let c = Client::new();
    for chunk in 0..2 {
        let values = (0..10_000).map(|i| format!("subject-{:05}", chunk * 10_000 + i));
        let (st, body) = batch(&c, &s, items("subject", values)).await;
        assert_eq!(st, 201, "{body}");
        assert_eq!(body["created"], 10_000);
    }
    let (st, _) = create(&c, &s, "license", "lic-9").await;
    assert_eq!(st, 201);
    let (st, digests) = get_feed(&c, &s, "?form=digests").await;
    assert_eq!(st, 200);
    assert!(digests.len() < 20_001 * 16 + 300, "{} bytes", digests.len());
    let lists = parse_remote(&digests).unwrap();
    assert_eq!(lists.len(), 20_001);
    assert!(lists.contains(RevocationKind::Subject, "subject-19999"));
    assert!(lists.contains(RevocationKind::License, "lic-9"));
    assert!(!lists.contains(RevocationKind::Subject, "lic-9"));
    // The value feed, as the filter's value parser reads it, gives the same digests.
    let (_, values) = get_feed(&c, &s, "").await;
    assert_eq!(
        DigestLists::from_values(&parse_lists(&values).unwrap()),
        lists
    );
    let (_, values) = get_feed(&c, &s, "?form=values").await;
    assert_eq!(parse_lists(&values).unwrap().len(), 20_001);
    // Unchanged: the same bytes (built once: the same generatedAt).
    let (_, again) = get_feed(&c, &s, "?form=digests").await;
    assert_eq!(again, digests);
    // A create and a lift each change it.
    let (_, body) = create(&c, &s, "tenant", "acme").await;
    let (_, after_create) = get_feed(&c, &s, "?form=digests").await;
    assert!(parse_remote(&after_create)
        .unwrap()
        .contains(RevocationKind::Tenant, "acme"));
    let r = c
        .delete(s.url(&format!("/v1/revocations/{}", body["id"].as_str().unwrap())))
        .bearer_auth(admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, after_lift) = get_feed(&c, &s, "?form=digests").await;
    let lifted = parse_remote(&after_lift).unwrap();
    assert!(!lifted.contains(RevocationKind::Tenant, "acme"));
    assert_eq!(lifted, lists);
    // Refusals.
    let (st, body) = get_feed(&c, &s, "?form=compact").await;
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    let r = c
        .get(s.url("/v1/revocations/feed?form=digests"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// docs/LEDGER.md's digest feed example is the digest form of its value feed example.
#[test]
fn the_documented_digest_feed_is_the_value_feeds_digest_form() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LEDGER.md")).unwrap();
    let line = |prefix: &str| {
        doc.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix}"))[2..]
            .to_string()
    };
    let values: registry_token_ledger_wire::Feed =
        serde_json::from_str(&line("# {\"generatedAt\"")).unwrap();
    let digests = line("# {\"digest\"");
    let want = registry_token_ledger_wire::DigestFeed::from_feed(&values);
    assert_eq!(serde_json::to_string(&want).unwrap(), digests);
    assert_eq!(
        parse_remote(digests.as_bytes()).unwrap(),
        DigestLists::from_values(&parse_lists(line("# {\"generatedAt\"").as_bytes()).unwrap())
    );
}
