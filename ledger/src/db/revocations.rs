//! Tables `revocations` and `revocation_events`: the security team's revocations, their
//! history, and the feed the gateways fetch; `revocation_generation`, the counter every
//! create and lift moves (taken first by each, so writes are ordered and the bound on
//! active revocations holds; the digest feed is rebuilt only when it moved).

use sqlx::any::AnyRow;
use sqlx::Row;

use registry_token_ledger_wire::{Feed, RevocationKind};

use super::{random_id, Db, DbError, WRITE_RETRIES};
use crate::model::Revocation;

/// Why a revocation could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// The same kind and value is already revoked (its id).
    Conflict(String),
    /// As many revocations as the bound allows are active (the bound).
    TooMany(usize),
    /// The database failed.
    Db(DbError),
}

impl From<DbError> for CreateError {
    fn from(e: DbError) -> Self {
        CreateError::Db(e)
    }
}

/// What one create transaction found.
enum Created {
    /// Stored, with its event.
    New(Revocation),
    /// The same kind and value is active: its id.
    Active(String),
    /// The same kind and value was active at the insert and lifted before the look-up.
    Lifted,
    /// The bound of active revocations is reached.
    TooMany,
}

/// Moves the generation on, taking its row (the first write of every create and lift).
pub(super) async fn bump_generation(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE revocation_generation SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How many revocations are active.
pub(super) async fn count_active(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
) -> Result<i64, DbError> {
    sqlx::query("SELECT COUNT(*) AS n FROM revocations WHERE deleted_at IS NULL")
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")
}

/// Inserts revocation `id` unless (kind, value) is active already: one conditional
/// statement against the unique index of active revocations. Whether it was inserted.
pub(super) async fn insert_if_inactive(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    kind: &str,
    value: &str,
    reason: &str,
    actor: &str,
    now: i64,
) -> Result<bool, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO revocations (id, kind, value, reason, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (kind, value) WHERE deleted_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(id.to_string())
    .bind(kind.to_string())
    .bind(value.to_string())
    .bind(reason.to_string())
    .bind(now)
    .bind(actor.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(inserted.is_some())
}

/// Records a `create` or `delete` of revocation `revocation_id` in `revocation_events`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    action: &str,
    revocation_id: &str,
    kind: &str,
    value: &str,
    actor: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO revocation_events (id, revocation_id, action, kind, value, actor, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(random_id().map_err(sqlx::Error::Protocol)?)
    .bind(revocation_id.to_string())
    .bind(action.to_string())
    .bind(kind.to_string())
    .bind(value.to_string())
    .bind(actor.to_string())
    .bind(reason.map(str::to_string))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const SELECT_REVOCATION: &str = "SELECT id, kind, value, reason, created_at, created_by, \
     deleted_at, deleted_by FROM revocations";

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

/// What a batch of creates did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BulkCreated {
    /// Revocations stored.
    pub created: usize,
    /// Items whose kind and value were active already (or repeated in the batch).
    pub already_revoked: usize,
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
    /// Creates a revocation and its `create` event in one transaction: `Conflict` with the
    /// active one's id when the same kind and value is active, `TooMany` when `max_active`
    /// revocations are active already. Safe under any concurrency on both databases: the
    /// generation row is taken first, so creates are ordered and the count is exact; the
    /// insert is conditional on the unique index of active revocations (`ON CONFLICT … DO
    /// NOTHING`), so two creates of one value make one row and one `409`.
    pub async fn create_revocation(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
        now: i64,
        max_active: usize,
    ) -> Result<Revocation, CreateError> {
        for _ in 0..=WRITE_RETRIES {
            let outcome = self
                .retrying("creating a revocation", || {
                    self.try_create_revocation(kind, value, reason, actor, now, max_active)
                })
                .await?;
            match outcome {
                Created::New(rev) => return Ok(rev),
                Created::Active(id) => return Err(CreateError::Conflict(id)),
                Created::TooMany => return Err(CreateError::TooMany(max_active)),
                // The active one was lifted between our insert and our look-up: try again.
                Created::Lifted => continue,
            }
        }
        Err(CreateError::Db(sqlx::Error::Protocol(format!(
            "{kind} {value} was lifted under each of {} attempts to revoke it",
            WRITE_RETRIES + 1
        ))))
    }

    async fn try_create_revocation(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
        now: i64,
        max_active: usize,
    ) -> Result<Created, DbError> {
        let id = random_id().map_err(sqlx::Error::Protocol)?;
        let mut tx = self.begin_write().await?;
        bump_generation(&mut tx).await?;
        let active = count_active(&mut tx).await?;
        if usize::try_from(active).unwrap_or(usize::MAX) >= max_active {
            // Full; the same value already active is still told as such.
            let existing = sqlx::query(
                "SELECT id FROM revocations WHERE kind = $1 AND value = $2 AND deleted_at IS NULL",
            )
            .bind(kind.to_string())
            .bind(value.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return match existing {
                Some(row) => Ok(Created::Active(row.try_get("id")?)),
                None => Ok(Created::TooMany),
            };
        }
        if !insert_if_inactive(&mut tx, &id, kind, value, reason, actor, now).await? {
            let existing = sqlx::query(
                "SELECT id FROM revocations WHERE kind = $1 AND value = $2 AND deleted_at IS NULL",
            )
            .bind(kind.to_string())
            .bind(value.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return match existing {
                Some(row) => Ok(Created::Active(row.try_get("id")?)),
                None => Ok(Created::Lifted),
            };
        }
        insert_event(
            &mut tx,
            "create",
            &id,
            kind,
            value,
            actor,
            Some(reason),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Created::New(Revocation {
            id,
            kind: kind.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
            created_at: now,
            created_by: actor.to_string(),
            deleted_at: None,
            deleted_by: None,
        }))
    }

    /// Creates the revocations of `items` (kind, value, reason; validated by the caller) that
    /// are not active yet, each with its `create` event, in one transaction: all or none.
    /// `TooMany` (nothing stored) when they would make more than `max_active` active.
    pub async fn create_revocations(
        &self,
        items: &[(String, String, String)],
        actor: &str,
        now: i64,
        max_active: usize,
    ) -> Result<BulkCreated, CreateError> {
        let outcome = self
            .retrying("creating revocations", || {
                self.try_create_revocations(items, actor, now, max_active)
            })
            .await?;
        outcome.ok_or(CreateError::TooMany(max_active))
    }

    async fn try_create_revocations(
        &self,
        items: &[(String, String, String)],
        actor: &str,
        now: i64,
        max_active: usize,
    ) -> Result<Option<BulkCreated>, DbError> {
        let mut tx = self.begin_write().await?;
        bump_generation(&mut tx).await?;
        let active = count_active(&mut tx).await?;
        let mut created = 0usize;
        for (kind, value, reason) in items {
            let id = random_id().map_err(sqlx::Error::Protocol)?;
            if !insert_if_inactive(&mut tx, &id, kind, value, reason, actor, now).await? {
                continue;
            }
            created += 1;
            insert_event(
                &mut tx,
                "create",
                &id,
                kind,
                value,
                actor,
                Some(reason),
                now,
            )
            .await?;
        }
        if usize::try_from(active)
            .unwrap_or(usize::MAX)
            .saturating_add(created)
            > max_active
        {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(BulkCreated {
            created,
            already_revoked: items.len() - created,
        }))
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

    /// Lifts an active revocation and records a `delete` event in one transaction.
    /// `false`: no such active one. The lift is one conditional `UPDATE … WHERE deleted_at
    /// IS NULL`, so of concurrent lifts of one id exactly one is `true`.
    pub async fn delete_revocation(
        &self,
        id: &str,
        actor: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, DbError> {
        self.retrying("lifting a revocation", || {
            self.try_delete_revocation(id, actor, reason, now)
        })
        .await
    }

    async fn try_delete_revocation(
        &self,
        id: &str,
        actor: &str,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        bump_generation(&mut tx).await?;
        let lifted = sqlx::query(
            "UPDATE revocations SET deleted_at = $1, deleted_by = $2 \
             WHERE id = $3 AND deleted_at IS NULL RETURNING kind, value",
        )
        .bind(now)
        .bind(actor.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = lifted else {
            tx.rollback().await?;
            return Ok(false);
        };
        let kind: String = row.try_get("kind")?;
        let value: String = row.try_get("value")?;
        insert_event(&mut tx, "delete", id, &kind, &value, actor, reason, now).await?;
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

    /// The revocation generation: it moves on every create and lift.
    pub async fn revocation_generation(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT generation FROM revocation_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        row.try_get("generation")
    }

    /// How many revocations are active.
    pub async fn active_revocations(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM revocations WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        row.try_get("n")
    }
}
