//! The whole scenario against a SQLite file in a temporary directory.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: the ledger creates it and the file.
    let db = dir.path().join("nested/ledger.db");
    crate::scenario::run(&format!("sqlite://{}", db.display())).await;
    assert!(db.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let client = reqwest::Client::new();
    let batch = serde_json::json!({"records": [{"id": "keep-1", "time": 5, "decision": "rejected", "reason": "no_token"}]});
    {
        let s = crate::harness::Server::start(&url);
        let r = client
            .post(s.url("/v1/ingest"))
            .bearer_auth(crate::harness::INGEST_SECRET)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let s = crate::harness::Server::start(&url);
    let r = client
        .post(s.url("/v1/ingest"))
        .bearer_auth(crate::harness::INGEST_SECRET)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"accepted": 0, "duplicates": 1}));
    let r = client
        .get(s.url("/v1/issuances/keep-1"))
        .bearer_auth(crate::harness::admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_from_a_jwks_url() {
    use axum::routing::get;
    let jwks = serde_json::json!({"keys": [crate::harness::admin_key().jwk]});
    let app = axum::Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("l.db").display());
    let url = format!("http://{addr}/jwks");
    let s = crate::harness::Server::start_with(&db, &["--jwks-url", &url], dir);
    let client = reqwest::Client::new();
    let ok = client
        .get(s.url("/v1/revocations"))
        .bearer_auth(crate::harness::admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let rogue = crate::harness::token_with(
        crate::harness::rogue_key(),
        jsonwebtoken::Algorithm::RS256,
        serde_json::json!({}),
    );
    let refused = client
        .get(s.url("/v1/revocations"))
        .bearer_auth(rogue)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        crate::harness::Server::start(&format!("sqlite://{}", dir.path().join("l.db").display()));
    let client = reqwest::Client::new();
    let long = "s".repeat(1000);
    let big = |n: usize, prefix: &str| {
        let records: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "id": format!("{prefix}-{i}"), "time": 1, "decision": "issued",
                    "subject": long, "reason": long, "gateway": long,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "records": records })).unwrap()
    };
    // 1,000 records of about 3 KB: over axum's default 2 MB, under the 4 MiB bound.
    let body = big(1000, "a");
    assert!(body.len() > 5 * 512 * 1024 && body.len() < 4 * 1024 * 1024);
    let r = client
        .post(s.url("/v1/ingest"))
        .bearer_auth(crate::harness::INGEST_SECRET)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"accepted": 1000, "duplicates": 0}));
    // Over 4 MiB: 413, with the JSON problem body.
    let body = format!(
        "{{\"records\": [], \"pad\": \"{}\"}}",
        "p".repeat(4 * 1024 * 1024)
    );
    let r = client
        .post(s.url("/v1/ingest"))
        .bearer_auth(crate::harness::INGEST_SECRET)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "too_large");
}
