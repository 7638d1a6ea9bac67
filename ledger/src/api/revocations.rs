//! The security team's revocations (admin token): `POST /v1/revocations` (create),
//! `POST /v1/revocations/batch` (create many at once, all or none),
//! `GET /v1/revocations` (active, or `?all=true`), `DELETE /v1/revocations/{id}` (lift,
//! optional `?reason=`) and `GET /v1/revocations/events` (the audit trail).

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_token_ledger_wire::MAX_TEXT_BYTES;
use serde_json::json;

use super::extract::Params;
use super::{
    all_param, bad_param, json_object, no_store_json, ApiError, Shared, DEFAULT_LIMIT, MAX_LIMIT,
};
use crate::auth::Admin;
use crate::db::{self, CreateError};
use crate::model::NewRevocation;

/// Largest revocation request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// Largest batch of revocations, items.
pub const MAX_BATCH_REVOCATIONS: usize = 10_000;
/// Largest batch body, bytes.
const MAX_BATCH_BODY: usize = registry_token_ledger_wire::MAX_BATCH_BYTES;

/// The body of `POST /v1/revocations/batch`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRevocations {
    items: Vec<NewRevocation>,
}

/// `409 too_many_revocations`: `max` are active, the bound.
pub(super) fn too_many(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "too_many_revocations",
        format!(
            "{max} revocations would be active, more than this ledger keeps \
             (--max-revocations): lift some, or raise the bound"
        ),
    )
    .with("limit", json!(max))
}

/// Creates a revocation: `201` with it and its `Location`; `409 already_revoked` when the
/// same kind and value is active; `409 too_many_revocations` when `--max-revocations`
/// are active.
pub async fn create(
    State(state): State<Shared>,
    who: Admin,
    req: Request,
) -> Result<Response, ApiError> {
    let new: NewRevocation = json_object(req, MAX_ADMIN_BODY, "revocation").await?;
    new.validate().map_err(|e| {
        ApiError::bad("invalid_request", format!("{}: {}", e.field, e.message))
            .with("field", json!(e.field))
    })?;
    let created = state
        .db
        .create_revocation(
            &new.kind,
            &new.value,
            &new.reason,
            &who.subject,
            db::now(),
            state.max_revocations,
        )
        .await;
    match created {
        Ok(rev) => {
            tracing::info!(
                "revocation {} created by {}: {} {}",
                rev.id,
                who.subject,
                rev.kind,
                rev.value
            );
            let location = format!("/v1/revocations/{}", rev.id);
            let mut resp = (StatusCode::CREATED, Json(rev)).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Err(CreateError::Conflict(id)) => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "already_revoked",
                format!("{} {} is already revoked", new.kind, new.value),
            );
            if !id.is_empty() {
                e = e.with("id", json!(id));
            }
            Err(e)
        }
        Err(CreateError::TooMany(max)) => {
            tracing::warn!(
                "revocation refused: {max} revocations are active (--max-revocations): {} {}",
                new.kind,
                new.value
            );
            Err(too_many(max))
        }
        Err(CreateError::Db(e)) => Err(ApiError::internal("creating a revocation", e)),
    }
}

/// Creates many revocations at once (`{"items": [{kind, value, reason}, …]}`, at most
/// [`MAX_BATCH_REVOCATIONS`]), all or none: `201 {"created": N, "already_revoked": M}`
/// (items already active are counted, not refused); `400` naming the first bad item;
/// `409 too_many_revocations` when they would pass `--max-revocations`.
pub async fn create_batch(
    State(state): State<Shared>,
    who: Admin,
    req: Request,
) -> Result<Response, ApiError> {
    let new: NewRevocations = json_object(req, MAX_BATCH_BODY, "revocations").await?;
    if new.items.is_empty() || new.items.len() > MAX_BATCH_REVOCATIONS {
        return Err(ApiError::bad(
            "invalid_request",
            format!("items must hold 1..={MAX_BATCH_REVOCATIONS} revocations"),
        ));
    }
    for (i, item) in new.items.iter().enumerate() {
        item.validate().map_err(|e| {
            ApiError::bad(
                "invalid_request",
                format!("items[{i}].{}: {}", e.field, e.message),
            )
            .with("field", json!(e.field))
            .with("index", json!(i))
        })?;
    }
    let items: Vec<(String, String, String)> = new
        .items
        .into_iter()
        .map(|r| (r.kind, r.value, r.reason))
        .collect();
    match state
        .db
        .create_revocations(&items, &who.subject, db::now(), state.max_revocations)
        .await
    {
        Ok(done) => {
            tracing::info!(
                "{} revocation(s) created by {} in a batch of {} ({} already active)",
                done.created,
                who.subject,
                items.len(),
                done.already_revoked
            );
            Ok((StatusCode::CREATED, Json(done)).into_response())
        }
        Err(CreateError::TooMany(max)) => {
            tracing::warn!(
                "a batch of {} revocation(s) refused: more than {max} would be active",
                items.len()
            );
            Err(too_many(max))
        }
        Err(CreateError::Conflict(_)) => Err(ApiError::internal(
            "creating revocations",
            "unexpected conflict",
        )),
        Err(CreateError::Db(e)) => Err(ApiError::internal("creating revocations", e)),
    }
}

/// The active revocations, or all of them with `?all=true`.
pub async fn list(
    State(state): State<Shared>,
    _admin: Admin,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let all = all_param(params)?;
    let items = state
        .db
        .revocations(all)
        .await
        .map_err(|e| ApiError::internal("listing revocations", e))?;
    Ok(no_store_json(json!({"items": items})))
}

/// Lifts an active revocation (`204`; `404` if unknown or already lifted).
pub async fn lift(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: Admin,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let mut reason = None;
    for (name, value) in params {
        match name.as_str() {
            "reason" if !value.trim().is_empty() && value.len() <= MAX_TEXT_BYTES => {
                reason = Some(value)
            }
            "reason" => {
                return Err(bad_param(
                    "reason",
                    format!("reason must be 1..={MAX_TEXT_BYTES} bytes"),
                ))
            }
            _ => return Err(bad_param(&name, format!("unknown parameter {name}"))),
        }
    }
    let deleted = state
        .db
        .delete_revocation(&id, &who.subject, reason.as_deref(), db::now())
        .await
        .map_err(|e| ApiError::internal("deleting a revocation", e))?;
    if !deleted {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no active revocation with this id",
        ));
    }
    tracing::info!("revocation {id} lifted by {}", who.subject);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The change history, newest first (`?limit=`).
pub async fn events(
    State(state): State<Shared>,
    _admin: Admin,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in params {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad_param("limit", format!("limit must be within 1..={MAX_LIMIT}"))
                    })?
            }
            _ => return Err(bad_param(&name, format!("unknown parameter {name}"))),
        }
    }
    let items = state
        .db
        .revocation_events(limit)
        .await
        .map_err(|e| ApiError::internal("listing revocation events", e))?;
    Ok(no_store_json(json!({"items": items})))
}
