//! `GET /healthz` (the database answers) and `GET /metrics` (Prometheus text), both
//! without authentication.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Shared;

/// `200 {"status":"ok"}` when the database answers, else `503`.
pub async fn healthz(State(state): State<Shared>) -> Response {
    match state.db.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!("health check: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "detail": "database unreachable"})),
            )
                .into_response()
        }
    }
}

/// The counters, and the active revocations read from the database now.
pub async fn metrics(State(state): State<Shared>) -> Response {
    let active = match state.db.active_revocations().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("metrics: active revocations: {e}");
            None
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(active, state.max_revocations),
    )
        .into_response()
}
