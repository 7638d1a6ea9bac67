//! Table `robots`: the robot credentials the security team created (never their tokens),
//! their last use (from `issuances`), and their deletion, which revokes the robot's
//! subject in the same transaction so the gateways refuse it from the next feed.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::revocations::{bump_generation, count_active, insert_event, insert_if_inactive};
use super::{random_id, Db, DbError};
use crate::robots::{Robot, RobotRule, SUBJECT_PREFIX};

/// Why a robot could not be created.
#[derive(Debug)]
pub enum NewRobotError {
    /// A robot of that name exists (not deleted): its id.
    NameTaken(String),
    /// The database failed.
    Db(DbError),
}

impl From<DbError> for NewRobotError {
    fn from(e: DbError) -> Self {
        NewRobotError::Db(e)
    }
}

/// Why a robot could not be deleted.
#[derive(Debug)]
pub enum DeleteRobotError {
    /// No robot with that id, or it is deleted already.
    NotFound,
    /// Revoking it would pass the bound of active revocations (the bound).
    TooManyRevocations(usize),
    /// The database failed.
    Db(DbError),
}

impl From<DbError> for DeleteRobotError {
    fn from(e: DbError) -> Self {
        DeleteRobotError::Db(e)
    }
}

/// The robot columns, and its last use: the newest issued record of its subject.
const SELECT_ROBOT: &str = "SELECT r.id, r.name, r.tenant, r.plans, r.repositories, \
     r.created_at, r.created_by, r.expires_at, r.deleted_at, r.deleted_by, \
     (SELECT MAX(i.time) FROM issuances i \
      WHERE i.subject = 'robot:' || r.id AND i.decision = 'issued') AS last_used \
     FROM robots r";

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, name: &str) -> Result<T, DbError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn robot_from_row(row: &AnyRow) -> Result<Robot, DbError> {
    Ok(Robot {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tenant: row.try_get("tenant")?,
        plans: json_column(row, "plans")?,
        repositories: json_column::<Vec<RobotRule>>(row, "repositories")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        expires_at: row.try_get("expires_at")?,
        deleted_at: row.try_get("deleted_at")?,
        deleted_by: row.try_get("deleted_by")?,
        last_used: row.try_get("last_used")?,
    })
}

impl Db {
    /// Stores a new robot (`id` and timestamps filled in from `now` and `days`); refused
    /// when a robot of that name is not deleted.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_robot(
        &self,
        name: &str,
        tenant: Option<&str>,
        plans: &[String],
        repositories: &[RobotRule],
        actor: &str,
        now: i64,
        days: u32,
    ) -> Result<Robot, NewRobotError> {
        let robot = Robot {
            id: random_id().map_err(sqlx::Error::Protocol)?,
            name: name.to_string(),
            tenant: tenant.map(str::to_string),
            plans: plans.to_vec(),
            repositories: repositories.to_vec(),
            created_at: now,
            created_by: actor.to_string(),
            expires_at: now.saturating_add(i64::from(days) * 86_400),
            deleted_at: None,
            deleted_by: None,
            last_used: None,
        };
        let plans = to_json(&robot.plans)?;
        let rules = to_json(&robot.repositories)?;
        let inserted = self
            .retrying("creating a robot", || async {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO robots (id, name, tenant, plans, repositories, created_at, \
                     created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (name) WHERE deleted_at IS NULL DO NOTHING RETURNING id",
                )
                .bind(robot.id.clone())
                .bind(robot.name.clone())
                .bind(robot.tenant.clone())
                .bind(plans.clone())
                .bind(rules.clone())
                .bind(robot.created_at)
                .bind(robot.created_by.clone())
                .bind(robot.expires_at)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row.is_some())
            })
            .await?;
        if inserted {
            return Ok(robot);
        }
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM robots WHERE name = $1 AND deleted_at IS NULL")
                .bind(name.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Err(NewRobotError::NameTaken(id.unwrap_or_default()))
    }

    /// The robots not deleted (or all with `all`), newest first, with their last use.
    pub async fn robots(&self, all: bool) -> Result<Vec<Robot>, DbError> {
        let filter = if all {
            ""
        } else {
            " WHERE r.deleted_at IS NULL"
        };
        let sql = format!("{SELECT_ROBOT}{filter} ORDER BY r.created_at DESC, r.id DESC");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(robot_from_row).collect()
    }

    /// One robot, deleted or not.
    pub async fn robot(&self, id: &str) -> Result<Option<Robot>, DbError> {
        let sql = format!("{SELECT_ROBOT} WHERE r.id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(robot_from_row).transpose()
    }

    /// Deletes a robot and revokes its subject (`robot:<id>`) in one transaction, so
    /// either both happen or neither; the revocation is refused, and the robot kept, when
    /// `max_active` revocations are active.
    pub async fn delete_robot(
        &self,
        id: &str,
        actor: &str,
        now: i64,
        max_active: usize,
    ) -> Result<Robot, DeleteRobotError> {
        let done = self
            .retrying("deleting a robot", || async {
                let mut tx = self.begin_write().await?;
                bump_generation(&mut tx).await?;
                let found = sqlx::query(
                    "UPDATE robots SET deleted_at = $1, deleted_by = $2 \
                     WHERE id = $3 AND deleted_at IS NULL RETURNING name",
                )
                .bind(now)
                .bind(actor.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = found else {
                    tx.rollback().await?;
                    return Ok(Err(DeleteRobotError::NotFound));
                };
                let name: String = row.try_get("name")?;
                let subject = format!("{SUBJECT_PREFIX}{id}");
                // A subject revoked already (by hand) needs no room in the list.
                let revoked = sqlx::query(
                    "SELECT id FROM revocations \
                     WHERE kind = 'subject' AND value = $1 AND deleted_at IS NULL",
                )
                .bind(subject.clone())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                if !revoked
                    && usize::try_from(count_active(&mut tx).await?).unwrap_or(usize::MAX)
                        >= max_active
                {
                    tx.rollback().await?;
                    return Ok(Err(DeleteRobotError::TooManyRevocations(max_active)));
                }
                let reason = format!("robot {name} deleted");
                let rev = random_id().map_err(sqlx::Error::Protocol)?;
                if insert_if_inactive(&mut tx, &rev, "subject", &subject, &reason, actor, now)
                    .await?
                {
                    insert_event(
                        &mut tx, "create", &rev, "subject", &subject, actor, None, now,
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(Ok(()))
            })
            .await?;
        done?;
        self.robot(id).await?.ok_or(DeleteRobotError::NotFound)
    }
}

/// JSON text of a column value.
fn to_json<T: serde::Serialize>(v: &T) -> Result<String, DbError> {
    serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}
