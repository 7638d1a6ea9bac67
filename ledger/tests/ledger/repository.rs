//! `?repository=NAME` matches whole repository names of parsed scopes (issue 25): a
//! refused request whose scope text merely contains `"repository:victim/app:` (say
//! `x","repository:victim/app:pull`) is not found under `victim/app`, while every record
//! whose requested or granted scopes name it is. Against the real ledger on SQLite and on
//! PostgreSQL, for records ingested after the change and for rows that were stored before
//! it (the migration's backfill must index them exactly as ingest does).

use reqwest::Client;
use serde_json::{json, Value};
use sqlx::{AnyPool, Row};

use crate::harness::*;

const VICTIM: &str = "victim/app";

/// The records: `honest-*` name `victim/app` in a scope, `polluted-*` only hold its text,
/// `other-*` name other repositories with awkward names.
fn records(base: i64) -> Vec<Value> {
    let rec = |id: &str, t: i64, decision: &str, requested: Value, granted: Value| {
        json!({"id": id, "time": base + t, "decision": decision, "reason": "r",
               "requested": requested, "granted": granted})
    };
    vec![
        rec(
            "honest-1",
            1,
            "issued",
            json!([
                "repository:victim/app:pull,push",
                "repository:victim/app:pull"
            ]),
            json!(["repository:victim/app:pull"]),
        ),
        rec(
            "honest-2",
            2,
            "rejected",
            json!(["repository:other/x:pull", "repository:victim/app:push"]),
            json!([]),
        ),
        rec(
            "honest-3",
            3,
            "rejected",
            json!(["repository(plugin):victim/app:pull"]),
            json!([]),
        ),
        rec(
            "honest-4",
            3,
            "rejected",
            json!(["repository:victim/app:"]),
            json!([]),
        ),
        rec(
            "polluted-1",
            4,
            "rejected",
            json!(["x\",\"repository:victim/app:pull"]),
            json!([]),
        ),
        rec(
            "polluted-2",
            5,
            "rejected",
            json!([
                "repository:x\",\"repository:victim/app:pull",
                "\"repository:victim/app:pull",
                "REPOSITORY:victim/app:pull",
                "repository:victim/app",
                "repository(:victim/app:pull",
                "repository():victim/app:pull",
                "repository(a-b):victim/app:pull",
                "repository:victim/app/sub:pull",
                "repository:victim:app:pull",
                ":victim/app:pull",
                "repository::pull",
            ]),
            json!(["registry:catalog:*", "x:repository:victim/app:pull"]),
        ),
        json!({"id": "polluted-3", "time": base + 6, "decision": "rejected",
               "subject": "repository:victim/app:pull", "service": "\"repository:victim/app:",
               "requested": []}),
        rec(
            "other-1",
            7,
            "issued",
            json!([
                "repository:localhost:5000/team/app:pull",
                "repository:ünï/cødé:pull",
                "repository:a%b_c:pull"
            ]),
            json!(["repository:a%b_c:pull"]),
        ),
    ]
}

/// The ids of every page of `/v1/issuances` with these parameters, newest first.
async fn search(c: &Client, s: &Server, params: &[(&str, &str)], limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let limit = limit.to_string();
        let mut query: Vec<(&str, &str)> = params.to_vec();
        query.push(("limit", &limit));
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let resp = c
            .get(s.url("/v1/issuances"))
            .query(&query)
            .bearer_auth(admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{query:?}");
        let body: Value = resp.json().await.unwrap();
        for item in body["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

/// Every search the test makes, with the ids it must find.
async fn check_searches(c: &Client, s: &Server, since: &str) {
    let honest = ["honest-4", "honest-3", "honest-2", "honest-1"];
    for limit in [1, 2, 100] {
        let got = search(c, s, &[("repository", VICTIM)], limit).await;
        assert_eq!(got, honest, "repository={VICTIM}, limit {limit}");
    }
    let got = search(
        c,
        s,
        &[("repository", VICTIM), ("decision", "rejected")],
        100,
    )
    .await;
    assert_eq!(got, ["honest-4", "honest-3", "honest-2"]);
    let got = search(c, s, &[("repository", VICTIM), ("since", since)], 100).await;
    assert_eq!(got, ["honest-4", "honest-3"]);
    for (name, want) in [
        ("other/x", vec!["honest-2"]),
        ("a%b_c", vec!["other-1"]),
        ("a_b_c", vec![]),
        ("ünï/cødé", vec!["other-1"]),
        ("victim", vec![]),
        ("victim/app/sub", vec!["polluted-2"]),
    ] {
        let got = search(c, s, &[("repository", name)], 100).await;
        assert_eq!(got, want, "repository={name}");
    }
}

/// The rows of `issuance_repositories`, sorted.
async fn index_rows(database: &str) -> Vec<(String, i64, String)> {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(database).await.unwrap();
    let rows = sqlx::query(
        "SELECT repository, issuance_time, issuance_id FROM issuance_repositories \
         ORDER BY repository, issuance_time, issuance_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| {
            (
                r.get::<String, _>("repository"),
                r.get::<i64, _>("issuance_time"),
                r.get::<String, _>("issuance_id"),
            )
        })
        .collect()
}

/// Puts the database back to how it was before the repository index: its table dropped
/// and its migration forgotten, the issuances kept.
async fn forget_the_index(database: &str) {
    let pool = AnyPool::connect(database).await.unwrap();
    sqlx::query("DROP TABLE issuance_repositories")
        .execute(&pool)
        .await
        .unwrap();
    let forgotten = sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 2")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(forgotten.rows_affected(), 1);
    pool.close().await;
}

async fn repository_search(database: &str) {
    let c = Client::new();
    let base = now() - 1000;
    let since = time::OffsetDateTime::from_unix_timestamp(base + 3)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let ingested = {
        let s = Server::start(database);
        let resp = c
            .post(s.url("/v1/ingest"))
            .bearer_auth(INGEST_SECRET)
            .json(&json!({ "records": records(base) }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        check_searches(&c, &s, &since).await;
        index_rows(database).await
    };
    // One row per record and repository it names, whatever the scopes' order and
    // repeats, with the record's time.
    let times: Vec<(String, i64)> = records(base)
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["time"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64, String)> = [
        ("a%b_c", "other-1"),
        ("localhost:5000/team/app", "other-1"),
        ("other/x", "honest-2"),
        ("victim/app", "honest-1"),
        ("victim/app", "honest-2"),
        ("victim/app", "honest-3"),
        ("victim/app", "honest-4"),
        ("victim/app/sub", "polluted-2"),
        ("victim:app", "polluted-2"),
        ("x\",\"repository:victim/app", "polluted-2"),
        ("ünï/cødé", "other-1"),
    ]
    .iter()
    .map(|(repo, id)| {
        let time = times.iter().find(|(i, _)| i == id).unwrap().1;
        (repo.to_string(), time, id.to_string())
    })
    .collect();
    assert_eq!(ingested, want, "rows written at ingest");

    // Rows stored before the index existed: the migration indexes them as ingest does.
    forget_the_index(database).await;
    let s = Server::start(database);
    assert_eq!(index_rows(database).await, ingested, "the backfill");
    check_searches(&c, &s, &since).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_search_matches_whole_names_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    repository_search(&format!("sqlite://{}", dir.path().join("l.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_search_matches_whole_names_on_postgres() {
    let pg = crate::postgres::start();
    repository_search(&pg.url).await;
}
