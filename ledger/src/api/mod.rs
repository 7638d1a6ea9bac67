//! HTTP routes, one module per resource: [`ingest`] (gateways' batches), [`issuances`]
//! (search and export), [`revocations`] (the security team's list and its history),
//! [`feed`] (the gateways' revocation document), [`robots`] (robot credentials and the
//! robot issuer's public keys) and [`health`] (`/healthz`, `/metrics`).
//! Who may call what is checked by the extractors of [`extract`]; every refusal is an
//! [`ApiError`].

use std::sync::Arc;

use axum::body::{to_bytes, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use registry_token_ledger_wire::{FEED_PATH, INGEST_PATH};
use serde_json::json;

use crate::auth::AdminAuth;
use crate::db::Db;
use crate::metrics::Metrics;

mod error;
pub mod extract;
pub mod feed;
pub mod health;
pub mod ingest;
pub mod issuances;
pub mod revocations;
pub mod robots;

pub use error::ApiError;
pub(crate) use error::REALM;
pub use issuances::{csv_field, decode_cursor, encode_cursor, to_csv};

/// Default page size of `GET /v1/issuances` (and of the revocation events).
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size.
pub const MAX_LIMIT: i64 = 10_000;

/// What every handler shares.
pub struct AppState {
    /// Storage.
    pub db: Db,
    /// Admin token verification.
    pub auth: Arc<AdminAuth>,
    /// Gateway ingest secret.
    pub ingest_secret: String,
    /// Gateway feed secret.
    pub feed_secret: String,
    /// Counters.
    pub metrics: Metrics,
    /// Most active revocations (`--max-revocations`).
    pub max_revocations: usize,
    /// The digest feed as last built, with the generation it was built at.
    pub digest_feed: feed::DigestFeedCache,
    /// The robot token signer (`--robot-key-file`), if robots are on.
    pub robots: Option<Arc<crate::robots::RobotSigner>>,
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;

/// The router with every route and the request counter.
pub fn router(state: Shared) -> Router {
    let well_known = state
        .robots
        .as_ref()
        .map(|r| robots::issuer_path(&r.issuer))
        .unwrap_or_default();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route(INGEST_PATH, post(ingest::ingest))
        .route("/v1/issuances", get(issuances::list))
        .route("/v1/issuances/{id}", get(issuances::one))
        .route(
            "/v1/revocations",
            post(revocations::create).get(revocations::list),
        )
        .route("/v1/revocations/batch", post(revocations::create_batch))
        .route(FEED_PATH, get(feed::feed))
        .route("/v1/revocations/events", get(revocations::events))
        .route("/v1/revocations/{id}", delete(revocations::lift))
        .route("/v1/robots", post(robots::create).get(robots::list))
        .route("/v1/robots/{id}", get(robots::one).delete(robots::delete))
        .route(
            &format!("{well_known}/.well-known/openid-configuration"),
            get(robots::openid_configuration),
        )
        .route(
            &format!("{well_known}/.well-known/jwks.json"),
            get(robots::jwks),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Counts every answer by route template and status (`ledger_http_requests_total`).
async fn count_requests(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    state.metrics.http(&route, resp.status().as_u16());
    resp
}

/// The body, at most `limit` bytes (else 413 `too_large`).
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    to_bytes(req.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        )
    })
}

/// A 400 `invalid_parameter` naming the query parameter.
fn bad_param(name: &str, detail: impl Into<String>) -> ApiError {
    ApiError::bad("invalid_parameter", detail).with("parameter", json!(name))
}

/// The one query parameter of a list with history: `all` (`true`: deleted items too).
fn all_param(params: Vec<(String, String)>) -> Result<bool, ApiError> {
    let mut all = false;
    for (name, value) in params {
        match (name.as_str(), value.as_str()) {
            ("all", "true") => all = true,
            ("all", "false") => all = false,
            ("all", _) => return Err(bad_param("all", "all must be true or false")),
            _ => return Err(bad_param(&name, format!("unknown parameter {name}"))),
        }
    }
    Ok(all)
}

/// A JSON answer that no cache may keep (every answer of this API is about live data).
fn no_store_json(body: impl serde::Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The request's body, at most `max` bytes, as a JSON object read into `T` (`what` names
/// it in the error). Parsed as a value first: serde would also accept a struct as a JSON
/// array.
pub(crate) async fn json_object<T: serde::de::DeserializeOwned>(
    req: Request,
    max: usize,
    what: &str,
) -> Result<T, ApiError> {
    let body = read_body(req, max).await?;
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("invalid_request", format!("the body is not JSON: {e}")))?;
    if !doc.is_object() {
        return Err(ApiError::bad(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(doc)
        .map_err(|e| ApiError::bad("invalid_request", format!("invalid {what}: {e}")))
}
