//! Storage: SQLite or PostgreSQL through sqlx's `Any` driver, with runtime queries only
//! (no database is needed to build). Both dialects accept `$N` placeholders. This module
//! connects and migrates; the tables' queries are in [`issuances`] (the gateways' records
//! and their search), [`revocations`] (the security team's list, its history, the feed)
//! and [`robots`] (robot credentials, whose deletion is a revocation).

use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Row, Transaction};

mod issuances;
mod revocations;
mod robots;

pub use issuances::IssuanceFilter;
pub use revocations::{BulkCreated, CreateError, RevocationEvent};
pub use robots::{DeleteRobotError, NewRobotError};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Migrations, each in both dialects (kept equivalent; `tests/schema.rs` compares them).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/sqlite/0001_schema.sql"),
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "issuance repositories",
        include_str!("../../migrations/sqlite/0002_issuance_repositories.sql"),
        include_str!("../../migrations/postgres/0002_issuance_repositories.sql"),
    ),
    (
        3,
        "revocation generation",
        include_str!("../../migrations/sqlite/0003_revocation_generation.sql"),
        include_str!("../../migrations/postgres/0003_revocation_generation.sql"),
    ),
    (
        4,
        "robots",
        include_str!("../../migrations/sqlite/0004_robots.sql"),
        include_str!("../../migrations/postgres/0004_robots.sql"),
    ),
    (
        5,
        "issuance issuer and policy",
        include_str!("../../migrations/sqlite/0005_issuance_issuer_policy.sql"),
        include_str!("../../migrations/postgres/0005_issuance_issuer_policy.sql"),
    ),
];

/// The connection pool and its dialect.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Database errors, as one line for logs.
pub type DbError = sqlx::Error;

/// How many times a write transaction that failed on a transient error (a lock it could
/// not get, a serialization failure) is run again before the error is answered.
const WRITE_RETRIES: u32 = 5;
/// The wait before the first retry; it doubles for each next one (10 ms .. 160 ms).
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(10);

/// Turns `sqlite://PATH` / `sqlite:PATH` into a URL that creates the file (and makes the
/// parent directory); other URLs pass unchanged.
fn prepare_url(url: &str) -> Result<(String, Backend), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_string(), Backend::Postgres));
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| "--database must start with sqlite: or postgres://".to_string())?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path == ":memory:" {
        return Err("--database: give a SQLite file path (sqlite://PATH)".into());
    }
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("--database: cannot create {}: {e}", parent.display()))?;
        }
    }
    let encoded = path
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    let query = match query {
        Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => q.to_string(),
        Some(q) if !q.is_empty() => format!("{q}&mode=rwc"),
        _ => "mode=rwc".to_string(),
    };
    Ok((format!("sqlite://{encoded}?{query}"), Backend::Sqlite))
}

fn migrator(backend: Backend) -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(version, description, sqlite, postgres)| {
            let sql = match backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A random identifier, 32 hex digits.
pub fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("random: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Unix seconds as a database column (`BIGINT`): the wire's `u64`, at most
/// `MAX_SECONDS` once validated.
fn to_column(seconds: u64) -> Result<i64, DbError> {
    i64::try_from(seconds).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn decode_error(what: String) -> DbError {
    sqlx::Error::Decode(what.into())
}

impl Db {
    /// Connects (creating a SQLite file if missing) and applies the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, String> {
        sqlx::any::install_default_drivers();
        let (url, backend) = prepare_url(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // A connection still inside a transaction when it is handed out (its rollback
            // was flushed when it came back, so this is a leak) is closed, not reused.
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    use sqlx::Database;
                    type Manager = <Any as Database>::TransactionManager;
                    let depth = <Manager as sqlx::TransactionManager>::get_transaction_depth(conn);
                    if depth > 0 {
                        tracing::warn!("closing a pooled connection left in a transaction");
                    }
                    Ok(depth == 0)
                })
            })
            .connect(&url)
            .await
            .map_err(|e| format!("database {}: {e}", crate::config::redact_url(&url)))?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|e| format!("database: {e}"))?;
        }
        migrator(backend)
            .run(&pool)
            .await
            .map_err(|e| format!("database migrations: {e}"))?;
        Ok(Db { pool, backend })
    }

    /// The dialect.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A cheap round trip.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Begins a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write
    /// lock is taken first (waiting for another writer up to the busy timeout, 5 s), so a
    /// transaction that reads before it writes never has to upgrade a read lock, which
    /// SQLite refuses at once under WAL ("database is locked") whatever the busy timeout.
    /// On PostgreSQL an ordinary `BEGIN` (READ COMMITTED): the writes are single
    /// conditional statements that the unique index of active revocations arbitrates.
    ///
    /// The `BEGIN` runs in a task of its own: sqlx 0.8 leaves a custom `BEGIN` open on the
    /// pooled connection, with no `Transaction` to roll it back, when the caller is
    /// cancelled between the statement and its check (a gateway that timed out closes the
    /// connection and axum drops the handler). That connection then refused every later
    /// `begin_with` and kept SQLite's write lock. Spawned, the `BEGIN` always completes and
    /// its `Transaction` is dropped (rolled back) if nobody is left to take it.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, DbError> {
        match self.backend {
            Backend::Sqlite => {
                let pool = self.pool.clone();
                tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
                    .await
                    .map_err(|e| sqlx::Error::Protocol(format!("BEGIN task: {e}")))?
            }
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Whether `e` is worth running the transaction again for: SQLite's BUSY or LOCKED
    /// (any extended code of them), PostgreSQL's serialization failure or deadlock.
    fn is_transient(&self, e: &DbError) -> bool {
        let Some(code) = e.as_database_error().and_then(|d| d.code()) else {
            return false;
        };
        match self.backend {
            Backend::Sqlite => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
            Backend::Postgres => matches!(code.as_ref(), "40001" | "40P01"),
        }
    }

    /// Runs `attempt` (one whole write transaction) and, while it fails with a transient
    /// error, again, at most [`WRITE_RETRIES`] more times with a doubling wait. Every
    /// attempt must be a complete transaction, so a failed one changed nothing.
    pub(crate) async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let mut wait = FIRST_RETRY_WAIT;
        for retry in 1..=WRITE_RETRIES {
            match attempt().await {
                Err(e) if self.is_transient(&e) => {
                    tracing::warn!("{what}: {e}; retry {retry} of {WRITE_RETRIES}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                done => return done,
            }
        }
        attempt().await
    }

    /// Column names of a table, sorted (to compare the two dialects' schemas).
    pub async fn columns(&self, table: &str) -> Result<Vec<String>, DbError> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT name AS c FROM pragma_table_info($1)",
            Backend::Postgres => {
                "SELECT CAST(column_name AS TEXT) AS c FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let rows = sqlx::query(sql)
            .bind(table.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut names = rows
            .iter()
            .map(|r| r.try_get::<String, _>("c"))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        let dir = std::env::temp_dir().join(format!("ledger-url-{}", std::process::id()));
        let path = dir.join("sub/x.db");
        let (url, b) = prepare_url(&format!("sqlite://{}", path.display())).unwrap();
        assert_eq!(b, Backend::Sqlite);
        assert_eq!(url, format!("sqlite://{}?mode=rwc", path.display()));
        assert!(dir.join("sub").is_dir());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(prepare_url("sqlite::memory:").is_err());
        let (pg, b) = prepare_url("postgres://u@h/db").unwrap();
        assert_eq!((pg.as_str(), b), ("postgres://u@h/db", Backend::Postgres));
    }

    /// A write that meets another writer's lock past the busy timeout is run again, and
    /// succeeds once the lock is gone; an error that is not a lock is answered at once.
    #[tokio::test]
    async fn a_locked_write_is_retried() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let db = Db::connect(&url, 1).await.unwrap();
        // The pool's one connection gives up on a lock at once (the default waits 5 s).
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&db.pool)
            .await
            .unwrap();
        let other = Db::connect(&url, 1).await.unwrap();
        let holder = other.begin_write().await.unwrap();
        let err = db.begin_write().await.unwrap_err();
        assert!(db.is_transient(&err), "{err}");

        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            holder.rollback().await.unwrap();
        });
        let insert = |id: &'static str, decision: &'static str| {
            let db = &db;
            async move {
                let mut tx = db.begin_write().await?;
                sqlx::query(
                    "INSERT INTO issuances (id, time, decision, received_at) \
                     VALUES ($1, 1, $2, 1)",
                )
                .bind(id)
                .bind(decision)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
        };
        let attempts = AtomicU32::new(0);
        db.retrying("test", || {
            attempts.fetch_add(1, Ordering::Relaxed);
            insert("a", "issued")
        })
        .await
        .unwrap();
        assert!(attempts.load(Ordering::Relaxed) > 1, "retried");
        release.await.unwrap();

        let attempts = AtomicU32::new(0);
        let refused = db
            .retrying("test", || {
                attempts.fetch_add(1, Ordering::Relaxed);
                insert("b", "maybe")
            })
            .await
            .unwrap_err();
        assert!(!db.is_transient(&refused), "{refused}");
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "not retried");
    }

    /// A write whose caller goes away at any point of its `BEGIN` (a gateway that timed
    /// out and closed the connection) leaves no transaction behind: the next writes on the
    /// same pool still begin, write and commit (sqlx could keep a cancelled custom `BEGIN`
    /// open on a pooled connection, which then refused every later `begin_with` and held
    /// SQLite's write lock).
    #[tokio::test]
    async fn a_cancelled_begin_leaves_no_transaction_behind() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        for round in 0..400u64 {
            // Give up after a few polls: the cancel lands anywhere inside the BEGIN.
            let polls = round % 8;
            {
                let mut begin = std::pin::pin!(db.begin_write());
                for _ in 0..polls {
                    if futures_poll_once(begin.as_mut()).await.is_some() {
                        break; // finished: its transaction is dropped, rolled back
                    }
                    tokio::task::yield_now().await;
                }
            } // the unfinished BEGIN is dropped here
            let id = format!("r{round}");
            let mut tx = tokio::time::timeout(Duration::from_secs(5), db.begin_write())
                .await
                .expect("a later BEGIN is not blocked")
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            sqlx::query(
                "INSERT INTO issuances (id, time, decision, received_at) VALUES ($1, 1, 'issued', 1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM issuances")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(rows, 400);
    }

    /// Polls `f` once; `Some` when it finished.
    async fn futures_poll_once<F: Future + ?Sized>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let mut f = Some(f);
        std::future::poll_fn(move |cx| {
            let f = f.take().expect("polled once");
            std::task::Poll::Ready(match f.poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
