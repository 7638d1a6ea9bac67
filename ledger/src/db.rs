//! Storage: SQLite or PostgreSQL through sqlx's `Any` driver, with runtime queries only
//! (no database is needed to build). Both dialects accept `$N` placeholders.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use registry_token_ledger_wire::{Decision, Feed, Grant, Record, RevocationKind};

use crate::model::{Issuance, Revocation, ISSUANCE_COLUMNS};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Migrations, each in both dialects (kept equivalent; `tests/schema.rs` compares them).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[(
    1,
    "schema",
    include_str!("../migrations/sqlite/0001_schema.sql"),
    include_str!("../migrations/postgres/0001_schema.sql"),
)];

/// Rows per multi-row INSERT (19 parameters each: well under both databases' limits).
const INSERT_CHUNK: usize = 50;

/// The connection pool and its dialect.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Database errors, as one line for logs.
pub type DbError = sqlx::Error;

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

/// Filters of `GET /v1/issuances`.
#[derive(Debug, Clone, Default)]
pub struct IssuanceFilter {
    /// Exact subject.
    pub subject: Option<String>,
    /// Exact licence.
    pub license: Option<String>,
    /// Exact service.
    pub service: Option<String>,
    /// Repository named in a requested or granted scope.
    pub repository: Option<String>,
    /// The decision.
    pub decision: Option<Decision>,
    /// `time >= since`.
    pub since: Option<i64>,
    /// `time < until`.
    pub until: Option<i64>,
    /// Rows strictly after this (time, id) in the newest-first order.
    pub after: Option<(i64, String)>,
    /// Most rows.
    pub limit: i64,
}

/// Why a revocation could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// The same kind and value is already revoked (its id).
    Conflict(String),
    /// The database failed.
    Db(DbError),
}

impl From<DbError> for CreateError {
    fn from(e: DbError) -> Self {
        CreateError::Db(e)
    }
}

const SELECT_ISSUANCE: &str = "SELECT id, time, decision, reason, subject, client_id, plan, \
     license, tenant, service, requested, granted, iat, exp, kid, binding, \"grant\", \
     refresh_token_id, gateway, received_at FROM issuances";

const SELECT_REVOCATION: &str = "SELECT id, kind, value, reason, created_at, created_by, \
     deleted_at, deleted_by FROM revocations";

/// Unix seconds as a database column (`BIGINT`): the wire's `u64`, at most
/// `MAX_SECONDS` once validated.
fn to_column(seconds: u64) -> Result<i64, DbError> {
    i64::try_from(seconds).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn decode_error(what: String) -> DbError {
    sqlx::Error::Decode(what.into())
}

fn issuance_from_row(row: &AnyRow) -> Result<Issuance, DbError> {
    let scopes = |col: &str| -> Result<Vec<Cow<'static, str>>, DbError> {
        let text: String = row.try_get(col)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let text = |col: &str| -> Result<Option<Cow<'static, str>>, DbError> {
        Ok(row.try_get::<Option<String>, _>(col)?.map(Cow::Owned))
    };
    let seconds = |col: &str| -> Result<Option<u64>, DbError> {
        row.try_get::<Option<i64>, _>(col)?
            .map(|v| u64::try_from(v).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    };
    let required = |col: &str| -> Result<u64, DbError> {
        seconds(col)?.ok_or_else(|| decode_error(format!("issuances.{col} is NULL")))
    };
    let decision: String = row.try_get("decision")?;
    let grant: Option<String> = row.try_get("grant")?;
    Ok(Issuance {
        record: Record {
            id: Cow::Owned(row.try_get("id")?),
            time: required("time")?,
            decision: Decision::from_word(&decision)
                .ok_or_else(|| decode_error(format!("issuances.decision {decision:?}")))?,
            reason: text("reason")?,
            subject: text("subject")?,
            client_id: text("client_id")?,
            plan: text("plan")?,
            license: text("license")?,
            tenant: text("tenant")?,
            service: text("service")?,
            requested: scopes("requested")?,
            granted: scopes("granted")?,
            iat: seconds("iat")?,
            exp: seconds("exp")?,
            kid: text("kid")?,
            binding: text("binding")?,
            grant: grant
                .map(|g| {
                    Grant::from_word(&g)
                        .ok_or_else(|| decode_error(format!("issuances.grant {g:?}")))
                })
                .transpose()?,
            refresh_token_id: text("refresh_token_id")?,
            gateway: text("gateway")?,
        },
        received_at: required("received_at")?,
    })
}

fn revocation_from_row(row: &AnyRow) -> Result<Revocation, DbError> {
    Ok(Revocation {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        value: row.try_get("value")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        deleted_at: row.try_get("deleted_at")?,
        deleted_by: row.try_get("deleted_by")?,
    })
}

/// A revocation change as recorded in `revocation_events`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevocationEvent {
    /// Event id.
    pub id: String,
    /// The revocation changed.
    pub revocation_id: String,
    /// `create` or `delete`.
    pub action: String,
    /// Kind of the revocation.
    pub kind: String,
    /// Value of the revocation.
    pub value: String,
    /// Admin `sub`.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

impl Db {
    /// Connects (creating a SQLite file if missing) and applies the migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, String> {
        sqlx::any::install_default_drivers();
        let (url, backend) = prepare_url(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
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

    /// Stores a batch in one transaction; records whose id is already stored (or repeated
    /// in the batch) are skipped. Returns how many were stored.
    pub async fn insert_batch(
        &self,
        records: &[Record<'_>],
        received_at: i64,
    ) -> Result<u64, DbError> {
        let mut seen = HashSet::with_capacity(records.len());
        let unique: Vec<&Record<'_>> = records
            .iter()
            .filter(|r| seen.insert(r.id.as_ref()))
            .collect();
        let columns: Vec<String> = ISSUANCE_COLUMNS
            .iter()
            .map(|c| {
                if *c == "grant" {
                    "\"grant\"".to_string()
                } else {
                    (*c).to_string()
                }
            })
            .collect();
        let per_row = columns.len();
        let mut tx = self.pool.begin().await?;
        let mut accepted = 0;
        for chunk in unique.chunks(INSERT_CHUNK) {
            let mut sql = format!("INSERT INTO issuances ({}) VALUES ", columns.join(", "));
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let params: Vec<String> = (1..=per_row)
                    .map(|j| format!("${}", i * per_row + j))
                    .collect();
                sql.push('(');
                sql.push_str(&params.join(", "));
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (id) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                let requested = serde_json::to_string(&r.requested)
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                let granted = serde_json::to_string(&r.granted)
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                let text = |v: &Option<Cow<'_, str>>| v.as_deref().map(str::to_string);
                let seconds = |v: Option<u64>| v.map(to_column).transpose();
                q = q
                    .bind(r.id.to_string())
                    .bind(to_column(r.time)?)
                    .bind(r.decision.as_str())
                    .bind(text(&r.reason))
                    .bind(text(&r.subject))
                    .bind(text(&r.client_id))
                    .bind(text(&r.plan))
                    .bind(text(&r.license))
                    .bind(text(&r.tenant))
                    .bind(text(&r.service))
                    .bind(requested)
                    .bind(granted)
                    .bind(seconds(r.iat)?)
                    .bind(seconds(r.exp)?)
                    .bind(text(&r.kid))
                    .bind(text(&r.binding))
                    .bind(r.grant.map(Grant::as_str))
                    .bind(text(&r.refresh_token_id))
                    .bind(text(&r.gateway))
                    .bind(received_at);
            }
            accepted += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(accepted)
    }

    /// Issuances matching `filter`, newest first (time DESC, id DESC).
    pub async fn issuances(&self, filter: &IssuanceFilter) -> Result<Vec<Issuance>, DbError> {
        // Parameters are numbered in the order they are pushed.
        enum Bind {
            Text(String),
            Int(i64),
        }
        fn param(b: Bind, binds: &mut Vec<Bind>) -> String {
            binds.push(b);
            format!("${}", binds.len())
        }
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let decision = filter.decision.map(|d| d.as_str().to_string());
        for (column, value) in [
            ("subject", &filter.subject),
            ("license", &filter.license),
            ("service", &filter.service),
            ("decision", &decision),
        ] {
            if let Some(v) = value {
                let p = param(Bind::Text(v.clone()), &mut binds);
                clauses.push(format!("{column} = {p}"));
            }
        }
        if let Some(repo) = &filter.repository {
            // Scopes are stored as a JSON array of strings: `"repository:NAME:` is where a
            // scope for NAME starts (a repository name holds no `:` nor `"`).
            let needle = format!("\"repository:{repo}:");
            let find = match self.backend {
                Backend::Sqlite => "instr",
                Backend::Postgres => "strpos",
            };
            let a = param(Bind::Text(needle.clone()), &mut binds);
            let b = param(Bind::Text(needle), &mut binds);
            clauses.push(format!(
                "({find}(requested, {a}) > 0 OR {find}(granted, {b}) > 0)"
            ));
        }
        if let Some(since) = filter.since {
            let p = param(Bind::Int(since), &mut binds);
            clauses.push(format!("time >= {p}"));
        }
        if let Some(until) = filter.until {
            let p = param(Bind::Int(until), &mut binds);
            clauses.push(format!("time < {p}"));
        }
        if let Some((time, id)) = &filter.after {
            let a = param(Bind::Int(*time), &mut binds);
            let b = param(Bind::Int(*time), &mut binds);
            let c = param(Bind::Text(id.clone()), &mut binds);
            clauses.push(format!("(time < {a} OR (time = {b} AND id < {c}))"));
        }
        let mut sql = SELECT_ISSUANCE.to_string();
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        let p = param(Bind::Int(filter.limit), &mut binds);
        sql.push_str(&format!(" ORDER BY time DESC, id DESC LIMIT {p}"));
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(issuance_from_row).collect()
    }

    /// One issuance by id.
    pub async fn issuance(&self, id: &str) -> Result<Option<Issuance>, DbError> {
        let sql = format!("{SELECT_ISSUANCE} WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(issuance_from_row).transpose()
    }

    /// Creates a revocation and its `create` event in one transaction.
    pub async fn create_revocation(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<Revocation, CreateError> {
        let id = random_id().map_err(|e| CreateError::Db(sqlx::Error::Protocol(e)))?;
        let event_id = random_id().map_err(|e| CreateError::Db(sqlx::Error::Protocol(e)))?;
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query(
            "SELECT id FROM revocations WHERE kind = $1 AND value = $2 AND deleted_at IS NULL",
        )
        .bind(kind.to_string())
        .bind(value.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Err(CreateError::Conflict(row.try_get("id")?));
        }
        let inserted = sqlx::query(
            "INSERT INTO revocations (id, kind, value, reason, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.clone())
        .bind(kind.to_string())
        .bind(value.to_string())
        .bind(reason.to_string())
        .bind(now)
        .bind(actor.to_string())
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            // A concurrent create of the same kind and value won the unique index.
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation())
            {
                return Err(CreateError::Conflict(String::new()));
            }
            return Err(e.into());
        }
        sqlx::query(
            "INSERT INTO revocation_events (id, revocation_id, action, kind, value, actor, reason, at) \
             VALUES ($1, $2, 'create', $3, $4, $5, $6, $7)",
        )
        .bind(event_id)
        .bind(id.clone())
        .bind(kind.to_string())
        .bind(value.to_string())
        .bind(actor.to_string())
        .bind(reason.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Revocation {
            id,
            kind: kind.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
            created_at: now,
            created_by: actor.to_string(),
            deleted_at: None,
            deleted_by: None,
        })
    }

    /// Revocations, newest first; deleted ones too when `all`.
    pub async fn revocations(&self, all: bool) -> Result<Vec<Revocation>, DbError> {
        let sql = if all {
            format!("{SELECT_REVOCATION} ORDER BY created_at DESC, id DESC")
        } else {
            format!(
                "{SELECT_REVOCATION} WHERE deleted_at IS NULL ORDER BY created_at DESC, id DESC"
            )
        };
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(revocation_from_row).collect()
    }

    /// Lifts an active revocation and records a `delete` event. `false`: no such active one.
    pub async fn delete_revocation(
        &self,
        id: &str,
        actor: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, DbError> {
        let event_id = random_id().map_err(sqlx::Error::Protocol)?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "{SELECT_REVOCATION} WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let rev = revocation_from_row(&row)?;
        let updated = sqlx::query(
            "UPDATE revocations SET deleted_at = $1, deleted_by = $2 \
             WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(actor.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO revocation_events (id, revocation_id, action, kind, value, actor, reason, at) \
             VALUES ($1, $2, 'delete', $3, $4, $5, $6, $7)",
        )
        .bind(event_id)
        .bind(id.to_string())
        .bind(rev.kind)
        .bind(rev.value)
        .bind(actor.to_string())
        .bind(reason.map(str::to_string))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The change history, newest first.
    pub async fn revocation_events(&self, limit: i64) -> Result<Vec<RevocationEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT id, revocation_id, action, kind, value, actor, reason, at \
             FROM revocation_events ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RevocationEvent {
                    id: r.try_get("id")?,
                    revocation_id: r.try_get("revocation_id")?,
                    action: r.try_get("action")?,
                    kind: r.try_get("kind")?,
                    value: r.try_get("value")?,
                    actor: r.try_get("actor")?,
                    reason: r.try_get("reason")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// The active revocations grouped by kind, each list sorted (`generated_at` left 0
    /// for the caller to set).
    pub async fn feed(&self) -> Result<Feed, DbError> {
        let rows = sqlx::query(
            "SELECT kind, value FROM revocations WHERE deleted_at IS NULL ORDER BY kind, value",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut feed = Feed::default();
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let value: String = row.try_get("value")?;
            if let Some(kind) = RevocationKind::from_word(&kind) {
                feed.list_mut(kind).push(value);
            }
        }
        for kind in RevocationKind::ALL {
            feed.list_mut(kind).sort();
        }
        Ok(feed)
    }

    /// How many revocations are active.
    pub async fn active_revocations(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM revocations WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        row.try_get("n")
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
}
