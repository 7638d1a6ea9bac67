//! The whole scenario against a real PostgreSQL 15 started for the test (it fails, never
//! skips, when PostgreSQL cannot start).

use registry_token_ledger::db::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_on_postgres() {
    let pg = crate::postgres::start();
    crate::scenario::run(&pg.url).await;

    // Same live schema as SQLite: table and column names.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Db::connect(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        1,
    )
    .await
    .unwrap();
    let postgres = Db::connect(&pg.url, 1).await.unwrap();
    for table in [
        "issuances",
        "issuance_repositories",
        "revocations",
        "revocation_events",
    ] {
        let a = sqlite.columns(table).await.unwrap();
        let b = postgres.columns(table).await.unwrap();
        assert!(!a.is_empty(), "{table}");
        assert_eq!(a, b, "columns of {table}");
    }
    postgres.close().await;
    sqlite.close().await;
}
