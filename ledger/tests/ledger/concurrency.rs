//! Concurrent revocation writes (issue 25): many security-team clients at once, against the
//! real ledger on SQLite and on PostgreSQL. Every answer is one the API documents (`201`,
//! `409` for a create; `204`, `404` for a delete; never a 5xx) and the stored state is
//! exactly what the answers said: every `201` is active and in the feed until a `204`
//! lifts it, and the audit trail has one event per `201` and per `204`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use reqwest::Client;
use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::harness::*;

/// Rounds of the whole sequence.
const ROUNDS: usize = 4;
/// Concurrent requests of each kind in a step.
const N: usize = 10;

const KINDS: [(&str, &str); 4] = [
    ("license", "revokedLicenses"),
    ("subject", "revokedSubjects"),
    ("refreshToken", "revokedRefreshTokens"),
    ("tenant", "revokedTenants"),
];

/// One request of a concurrent step.
#[derive(Clone)]
enum Op {
    /// `POST /v1/revocations` of this kind and value.
    Create(&'static str, String),
    /// `DELETE /v1/revocations/{id}`.
    Lift(String),
    /// `POST /v1/ingest` of this many fresh records.
    Ingest(String, usize),
}

/// What the ledger answered to an [`Op`].
struct Answer {
    op: Op,
    status: u16,
    body: Value,
}

/// Sends every op at once (released together by a barrier) and returns the answers in
/// the ops' order.
async fn all_at_once(c: &Client, s: &Server, token: &str, ops: Vec<Op>) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(ops.len()));
    let tasks: Vec<_> = ops
        .into_iter()
        .map(|op| {
            let (c, barrier, token) = (c.clone(), barrier.clone(), token.to_string());
            let req = match &op {
                Op::Create(kind, value) => c
                    .post(s.url("/v1/revocations"))
                    .bearer_auth(&token)
                    .json(&json!({"kind": kind, "value": value, "reason": "race"})),
                Op::Lift(id) => c
                    .delete(s.url(&format!("/v1/revocations/{id}?reason=race")))
                    .bearer_auth(&token),
                Op::Ingest(prefix, n) => {
                    let records: Vec<Value> = (0..*n)
                        .map(|i| {
                            json!({"id": format!("{prefix}-{i}"), "time": now(),
                                   "decision": "rejected", "reason": "no_token"})
                        })
                        .collect();
                    c.post(s.url("/v1/ingest"))
                        .bearer_auth(INGEST_SECRET)
                        .json(&json!({ "records": records }))
                }
            };
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body = resp.json().await.unwrap_or(Value::Null);
                Answer { op, status, body }
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

fn is_create(op: &Op) -> bool {
    matches!(op, Op::Create(..))
}

fn is_lift(op: &Op) -> bool {
    matches!(op, Op::Lift(_))
}

/// The statuses of the answers to the ops `which` picks, in order.
fn statuses(answers: &[Answer], which: fn(&Op) -> bool) -> Vec<u16> {
    answers
        .iter()
        .filter(|a| which(&a.op))
        .map(|a| a.status)
        .collect()
}

/// What the answers say is stored: active revocations by id, and events.
#[derive(Default)]
struct Model {
    active: BTreeMap<String, (&'static str, String)>,
    creates: usize,
    deletes: usize,
    ingested: usize,
}

impl Model {
    /// Applies the answers, checking each is a documented one for its op and the state.
    fn apply(&mut self, answers: &[Answer]) {
        for a in answers {
            let Answer { op, status, body } = a;
            match (op, status) {
                (Op::Create(kind, value), 201) => {
                    let id = body["id"].as_str().unwrap().to_string();
                    assert_eq!(body["value"], json!(value), "{body}");
                    let clash = self.active.values().any(|(k, v)| k == kind && v == value);
                    assert!(!clash, "201 for {kind} {value}, already active");
                    self.active.insert(id, (kind, value.clone()));
                    self.creates += 1;
                }
                (Op::Create(kind, value), 409) => {
                    assert_eq!(body["error"], "already_revoked", "{body}");
                    // The 409 names the active revocation; it may be one created in the
                    // same step (answers are applied in request order, not in time).
                    let id = body["id"].as_str().unwrap_or_default();
                    let named = answers.iter().any(|b| {
                        b.status == 201 && b.body["id"] == json!(id) && b.body["value"] == *value
                    }) || self.active.get(id) == Some(&(*kind, value.clone()));
                    assert!(named, "409 for {kind} {value} names {id:?}: {body}");
                }
                (Op::Lift(id), 204) => {
                    assert!(self.active.remove(id).is_some(), "204 for {id}, not active");
                    self.deletes += 1;
                }
                (Op::Lift(_), 404) => assert_eq!(body["error"], "not_found", "{body}"),
                (Op::Ingest(_, n), 200) => {
                    assert_eq!(body, &json!({"accepted": n, "duplicates": 0}));
                    self.ingested += n;
                }
                (_, status) => panic!("undocumented answer {status}: {body}"),
            }
        }
    }

    /// The ledger's stored state is the model's: the active list, the feed, the events.
    async fn check(&self, c: &Client, s: &Server, token: &str, what: &str) {
        let get = |path: &str| {
            let req = c.get(s.url(path)).bearer_auth(token);
            async move {
                let resp = req.send().await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()
            }
        };
        let active = get("/v1/revocations").await;
        let ids: BTreeSet<&str> = active["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        let want: BTreeSet<&str> = self.active.keys().map(String::as_str).collect();
        assert_eq!(ids, want, "{what}: active revocations");

        let feed: Value = c
            .get(s.url("/v1/revocations/feed"))
            .bearer_auth(FEED_SECRET)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (kind, key) in KINDS {
            let mut want: Vec<&str> = self
                .active
                .values()
                .filter(|(k, _)| *k == kind)
                .map(|(_, v)| v.as_str())
                .collect();
            want.sort_unstable();
            assert_eq!(feed[key], json!(want), "{what}: feed {key}");
        }

        let events = get("/v1/revocations/events?limit=10000").await;
        let events = events["items"].as_array().unwrap();
        let count = |action: &str| events.iter().filter(|e| e["action"] == action).count();
        assert_eq!(count("create"), self.creates, "{what}: create events");
        assert_eq!(count("delete"), self.deletes, "{what}: delete events");
    }
}

async fn revocation_writes_race(database: &str) {
    let s = Server::start(database);
    let c = Client::new();
    let token = admin_token();
    let mut model = Model::default();
    for round in 0..ROUNDS {
        // N creates of distinct values: each is new, so each is a 201.
        let ops = (0..N)
            .map(|i| Op::Create(KINDS[i % 4].0, format!("v-{round}-{i}")))
            .collect();
        let answers = all_at_once(&c, &s, &token, ops).await;
        assert_eq!(statuses(&answers, is_create), [201; N], "round {round}");
        model.apply(&answers);
        model
            .check(&c, &s, &token, &format!("round {round}, creates"))
            .await;

        // Their N lifts, N creates of one value and two ingest batches, all at once.
        let mut ops: Vec<Op> = model.active.keys().map(|id| Op::Lift(id.clone())).collect();
        ops.extend((0..N).map(|_| Op::Create("license", format!("same-{round}"))));
        ops.push(Op::Ingest(format!("a-{round}"), 50));
        ops.push(Op::Ingest(format!("b-{round}"), 50));
        let answers = all_at_once(&c, &s, &token, ops).await;
        assert_eq!(statuses(&answers, is_lift), [204; N], "round {round}");
        let won = statuses(&answers, is_create)
            .iter()
            .filter(|s| **s == 201)
            .count();
        assert_eq!(won, 1, "round {round}: one create of the same value wins");
        model.apply(&answers);
        model
            .check(&c, &s, &token, &format!("round {round}, mixed"))
            .await;

        // N lifts of that one revocation (one wins) and N more distinct creates.
        assert_eq!(model.active.len(), 1);
        let same = model.active.keys().next().unwrap().clone();
        let mut ops: Vec<Op> = (0..N).map(|_| Op::Lift(same.clone())).collect();
        ops.extend((0..N).map(|i| Op::Create(KINDS[i % 4].0, format!("w-{round}-{i}"))));
        let answers = all_at_once(&c, &s, &token, ops).await;
        assert_eq!(statuses(&answers, is_create), [201; N], "round {round}");
        let lifted = statuses(&answers, is_lift)
            .iter()
            .filter(|s| **s == 204)
            .count();
        assert_eq!(lifted, 1, "round {round}: one lift of the same id wins");
        model.apply(&answers);
        model
            .check(&c, &s, &token, &format!("round {round}, lifts"))
            .await;

        // Lift what is left, all at once.
        let ops = model.active.keys().map(|id| Op::Lift(id.clone())).collect();
        let answers = all_at_once(&c, &s, &token, ops).await;
        assert_eq!(statuses(&answers, is_lift), [204; N], "round {round}");
        model.apply(&answers);
        model
            .check(&c, &s, &token, &format!("round {round}, end"))
            .await;
    }
    assert!(model.active.is_empty());
    // The batches stored alongside are all there.
    let all: Value = c
        .get(s.url("/v1/issuances?limit=10000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), model.ingested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocation_writes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    revocation_writes_race(&format!("sqlite://{}", dir.path().join("l.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocation_writes_on_postgres() {
    let pg = crate::postgres::start();
    revocation_writes_race(&pg.url).await;
}
