//! Robots (admin token): `POST /v1/robots` (create; the token is in this answer only),
//! `GET /v1/robots` (not deleted, or `?all=true`, each with its last use),
//! `GET /v1/robots/{id}` and `DELETE /v1/robots/{id}` (deletes it and revokes its
//! subject); and, with no token, the robot issuer's `/.well-known/openid-configuration`
//! and `/.well-known/jwks.json` under the issuer URL's path, which the gateways fetch to
//! check robot tokens. Without `--robot-key-file` every robot route answers
//! `404 robots_disabled`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::extract::Params;
use super::{all_param, json_object, no_store_json, ApiError, Shared};
use crate::auth::Admin;
use crate::db::{self, DeleteRobotError, NewRobotError};
use crate::robots::{NewRobot, RobotSigner};

/// Largest `POST /v1/robots` body.
const MAX_ROBOT_BODY: usize = 64 * 1024;

/// The signer, or `404 robots_disabled`.
fn signer(state: &Shared) -> Result<&Arc<RobotSigner>, ApiError> {
    state.robots.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "robots_disabled",
            "this ledger issues no robot tokens: start it with --robot-key-file, \
             --robot-issuer and --robot-audience",
        )
    })
}

/// The issuer URL's path, without a trailing `/` (`""` for `https://ledger.example`):
/// the prefix of the well-known documents.
pub fn issuer_path(issuer: &str) -> String {
    let after_scheme = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

/// Creates a robot: `201` with it, its `token` (shown here only) and its `Location`;
/// `409 name_taken` when a robot of that name is not deleted.
pub async fn create(
    State(state): State<Shared>,
    who: Admin,
    req: Request,
) -> Result<Response, ApiError> {
    let signer = signer(&state)?.clone();
    let new: NewRobot = json_object(req, MAX_ROBOT_BODY, "robot").await?;
    let days = new.validate(signer.max_days).map_err(|e| {
        ApiError::bad("invalid_request", format!("{}: {}", e.field, e.message))
            .with("field", json!(e.field))
    })?;
    let now = db::now();
    let created = state
        .db
        .create_robot(
            &new.name,
            new.tenant.as_deref(),
            &new.plans,
            &new.repositories,
            &who.subject,
            now,
            days,
        )
        .await;
    let robot = match created {
        Ok(r) => r,
        Err(NewRobotError::NameTaken(id)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "name_taken",
                format!("a robot named {} exists; delete it first", new.name),
            )
            .with("id", json!(id)))
        }
        Err(NewRobotError::Db(e)) => return Err(ApiError::internal("creating a robot", e)),
    };
    let token = signer.sign(&signer.claims(&robot, now));
    tracing::info!(
        "robot {} ({}) created by {}, expires at {}",
        robot.id,
        robot.name,
        who.subject,
        robot.expires_at
    );
    let mut body = json!(robot);
    if let Some(map) = body.as_object_mut() {
        map.insert("subject".into(), json!(robot.subject()));
        map.insert("token".into(), json!(token));
    }
    let mut resp = (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/robots/{}", robot.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The robots not deleted, or all with `?all=true`, newest first, each with `lastUsed`.
pub async fn list(
    State(state): State<Shared>,
    _admin: Admin,
    Params(params): Params,
) -> Result<Response, ApiError> {
    signer(&state)?;
    let all = all_param(params)?;
    let items = state
        .db
        .robots(all)
        .await
        .map_err(|e| ApiError::internal("listing robots", e))?;
    Ok(no_store_json(json!({"items": items})))
}

/// One robot, deleted or not (`404` if unknown).
pub async fn one(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    signer(&state)?;
    match state.db.robot(&id).await {
        Ok(Some(robot)) => Ok(no_store_json(robot)),
        Ok(None) => Err(not_found()),
        Err(e) => Err(ApiError::internal("reading a robot", e)),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no robot with this id that is not deleted",
    )
}

/// Deletes a robot and revokes its subject: `200` with the robot as it now is; `404` if
/// unknown or deleted; `409 too_many_revocations` when the revocation list is full (the
/// robot is kept).
pub async fn delete(
    State(state): State<Shared>,
    Path(id): Path<String>,
    who: Admin,
) -> Result<Response, ApiError> {
    signer(&state)?;
    match state
        .db
        .delete_robot(&id, &who.subject, db::now(), state.max_revocations)
        .await
    {
        Ok(robot) => {
            tracing::info!(
                "robot {id} ({}) deleted by {}; subject {} revoked",
                robot.name,
                who.subject,
                robot.subject()
            );
            Ok(no_store_json(robot))
        }
        Err(DeleteRobotError::NotFound) => Err(not_found()),
        Err(DeleteRobotError::TooManyRevocations(max)) => Err(super::revocations::too_many(max)),
        Err(DeleteRobotError::Db(e)) => Err(ApiError::internal("deleting a robot", e)),
    }
}

/// The robot issuer's discovery document (`issuer`, `jwks_uri`), as OIDC discovery.
pub async fn openid_configuration(State(state): State<Shared>) -> Result<Response, ApiError> {
    let signer = signer(&state)?;
    let issuer = signer.issuer.trim_end_matches('/');
    Ok(public_json(json!({
        "issuer": signer.issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["ES256"],
    })))
}

/// The robot issuer's public keys.
pub async fn jwks(State(state): State<Shared>) -> Result<Response, ApiError> {
    Ok(public_json(signer(&state)?.jwks()))
}

/// Public key material: cacheable for five minutes.
fn public_json(body: serde_json::Value) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::issuer_path;

    #[test]
    fn well_known_documents_live_under_the_issuer_path() {
        assert_eq!(issuer_path("https://ledger.example"), "");
        assert_eq!(issuer_path("https://ledger.example/"), "");
        assert_eq!(issuer_path("https://l.example/robots"), "/robots");
        assert_eq!(issuer_path("https://l.example/a/b/"), "/a/b");
        assert_eq!(issuer_path("http://127.0.0.1:8086"), "");
    }
}
