//! HTTP routes, one module per resource: [`ingest`] (gateways' batches), [`issuances`]
//! (search and export), [`revocations`] (the security team's list and its history),
//! [`feed`] (the gateways' revocation document) and [`health`] (`/healthz`, `/metrics`).
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
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;

/// The router with every route and the request counter.
pub fn router(state: Shared) -> Router {
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

/// A JSON answer that no cache may keep (every answer of this API is about live data).
fn no_store_json(body: impl serde::Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
