//! Who may call a route, and the query string, as axum extractors: a handler that takes
//! [`Admin`] runs only for a verified admin token, one that takes a [`Gateway`] only for
//! the gateway secret of its route; [`Params`] is the query as a list of pairs, a bad one
//! refused as `invalid_parameter`. Extractors run in argument order, so each handler
//! lists them in the order the checks are made.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::{ApiError, AppState, Shared, REALM};
use crate::auth::{secret_matches, AdminError};

use crate::auth::Admin;

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Admin, ApiError> {
        state
            .auth
            .verify(&parts.headers)
            .await
            .map_err(|e| refusal(state, e))
    }
}

/// The answer to an admin request that did not pass.
fn refusal(state: &AppState, e: AdminError) -> ApiError {
    match e {
        AdminError::Missing => ApiError::unauthorized("an admin bearer token is required", None),
        AdminError::Invalid(why) => {
            tracing::info!("admin token refused: {why}");
            ApiError::unauthorized("the bearer token is not valid", Some("invalid_token"))
        }
        AdminError::Critical => ApiError::unauthorized(
            "the token's header names critical extensions (crit), which the ledger does not support",
            Some("invalid_token"),
        ),
        AdminError::Scope => {
            let scope = state.auth.scope();
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token lacks the {scope} scope"),
            )
            .challenge(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
            ))
        }
        AdminError::KeysUnavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keys_unavailable",
            "the admin token keys could not be loaded yet",
        ),
    }
}

/// Which gateway secret a route takes.
pub trait GatewaySecret {
    /// The secret, from the state.
    fn secret(state: &AppState) -> &str;
}

/// The secret of `POST /v1/ingest`.
pub struct IngestSecret;

impl GatewaySecret for IngestSecret {
    fn secret(state: &AppState) -> &str {
        &state.ingest_secret
    }
}

/// The secret of `GET /v1/revocations/feed`.
pub struct FeedSecret;

impl GatewaySecret for FeedSecret {
    fn secret(state: &AppState) -> &str {
        &state.feed_secret
    }
}

/// A gateway that presented the secret `S` (`authorization: Bearer <secret>`, compared in
/// constant time); anything else is a 401 with a Bearer challenge.
pub struct Gateway<S>(PhantomData<S>);

impl<S: GatewaySecret> FromRequestParts<Shared> for Gateway<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if secret_matches(&parts.headers, S::secret(state)) {
            Ok(Gateway(PhantomData))
        } else {
            Err(ApiError::unauthorized(
                "a valid gateway secret is required",
                None,
            ))
        }
    }
}

/// The query string as `(name, value)` pairs, in order (repeats kept, for the handler to
/// refuse); a malformed one is a 400 `invalid_parameter`.
pub struct Params(pub Vec<(String, String)>);

impl<St: Send + Sync> FromRequestParts<St> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Params, ApiError> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::bad("invalid_parameter", e.body_text()))
    }
}
