//! Tables `issuances` and `issuance_repositories`: storing a gateway's batch (idempotent
//! on `id`, with the repositories each stored record's scopes name) and the search of
//! `GET /v1/issuances`.

use std::borrow::Cow;
use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::Row;

use registry_token_ledger_wire::{Decision, Grant, Record};

use super::{decode_error, to_column, Db, DbError};
use crate::model::{record_repositories, Issuance, ISSUANCE_COLUMNS};

/// Rows per multi-row INSERT (22 parameters each: well under both databases' limits).
const INSERT_CHUNK: usize = 50;
/// Rows per multi-row INSERT into `issuance_repositories` (3 parameters each).
const REPOSITORY_CHUNK: usize = 300;

/// Filters of `GET /v1/issuances`.
#[derive(Debug, Clone, Default)]
pub struct IssuanceFilter {
    /// Exact subject.
    pub subject: Option<String>,
    /// Exact licence.
    pub license: Option<String>,
    /// Exact service.
    pub service: Option<String>,
    /// Exact issuer (`issuers[].issuer`).
    pub issuer: Option<String>,
    /// Exact trust policy name (or `anonymous`).
    pub policy: Option<String>,
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

const ISSUANCE_FIELDS: &str = "id, time, decision, reason, subject, client_id, plan, \
     license, tenant, service, requested, granted, iat, exp, kid, binding, \"grant\", \
     refresh_token_id, gateway, received_at, issuer, policy";

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
            issuer: text("issuer")?,
            policy: text("policy")?,
        },
        received_at: required("received_at")?,
    })
}

impl Db {
    /// Stores a batch in one transaction; records whose id is already stored (or repeated
    /// in the batch) are skipped. Returns how many were stored. A transaction that failed on
    /// a transient error is run again (it is idempotent on `id`).
    pub async fn insert_batch(
        &self,
        records: &[Record<'_>],
        received_at: i64,
    ) -> Result<u64, DbError> {
        self.retrying("storing a batch", || {
            self.try_insert_batch(records, received_at)
        })
        .await
    }

    async fn try_insert_batch(
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
        let mut tx = self.begin_write().await?;
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
            sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
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
                    .bind(received_at)
                    .bind(text(&r.issuer))
                    .bind(text(&r.policy));
            }
            // Only the records stored now (not those already there) get their repositories.
            let stored: HashSet<String> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get("id"))
                .collect::<Result<_, _>>()?;
            accepted += u64::try_from(stored.len()).unwrap_or(u64::MAX);
            let named: Vec<(&str, i64, &str)> = chunk
                .iter()
                .filter(|r| stored.contains(r.id.as_ref()))
                .map(|r| {
                    let time = to_column(r.time)?;
                    Ok(record_repositories(r)
                        .into_iter()
                        .map(move |name| (name, time, r.id.as_ref())))
                })
                .collect::<Result<Vec<_>, DbError>>()?
                .into_iter()
                .flatten()
                .collect();
            for rows in named.chunks(REPOSITORY_CHUNK) {
                let values: Vec<String> = (0..rows.len())
                    .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                    .collect();
                let sql = format!(
                    "INSERT INTO issuance_repositories (repository, issuance_time, issuance_id) \
                     VALUES {} ON CONFLICT DO NOTHING",
                    values.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (name, time, id) in rows {
                    q = q.bind(name.to_string()).bind(*time).bind(id.to_string());
                }
                q.execute(&mut *tx).await?;
            }
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
            ("issuer", &filter.issuer),
            ("policy", &filter.policy),
            ("decision", &decision),
        ] {
            if let Some(v) = value {
                let p = param(Bind::Text(v.clone()), &mut binds);
                clauses.push(format!("{column} = {p}"));
            }
        }
        // With a repository, rows come from its index (`issuance_repositories`, whose
        // (repository, issuance_time, issuance_id) key serves the order and the cursor),
        // joined to their issuances; `time` and `id` are the copies in the index.
        let (from, time, id) = match &filter.repository {
            Some(repo) => {
                let p = param(Bind::Text(repo.clone()), &mut binds);
                clauses.insert(0, format!("repository = {p}"));
                (
                    "issuance_repositories JOIN issuances ON issuances.id = issuance_id",
                    "issuance_time",
                    "issuance_id",
                )
            }
            None => ("issuances", "time", "id"),
        };
        if let Some(since) = filter.since {
            let p = param(Bind::Int(since), &mut binds);
            clauses.push(format!("{time} >= {p}"));
        }
        if let Some(until) = filter.until {
            let p = param(Bind::Int(until), &mut binds);
            clauses.push(format!("{time} < {p}"));
        }
        if let Some((after_time, after_id)) = &filter.after {
            let a = param(Bind::Int(*after_time), &mut binds);
            let b = param(Bind::Int(*after_time), &mut binds);
            let c = param(Bind::Text(after_id.clone()), &mut binds);
            clauses.push(format!("({time} < {a} OR ({time} = {b} AND {id} < {c}))"));
        }
        let mut sql = format!("SELECT {ISSUANCE_FIELDS} FROM {from}");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        let p = param(Bind::Int(filter.limit), &mut binds);
        sql.push_str(&format!(" ORDER BY {time} DESC, {id} DESC LIMIT {p}"));
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
        let sql = format!("SELECT {ISSUANCE_FIELDS} FROM issuances WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(issuance_from_row).transpose()
    }
}
