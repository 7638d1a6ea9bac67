//! `GET /v1/revocations/feed`: the active revocations as the wire's [`Feed`], for
//! gateways (their feed secret).

use axum::extract::State;
use axum::response::Response;
use registry_token_ledger_wire::Feed;

use super::extract::{FeedSecret, Gateway};
use super::{no_store_json, ApiError, Shared};
use crate::db;

/// The feed document, `generatedAt` now.
pub async fn feed(
    State(state): State<Shared>,
    _gateway: Gateway<FeedSecret>,
) -> Result<Response, ApiError> {
    let feed: Feed = state
        .db
        .feed()
        .await
        .map_err(|e| ApiError::internal("reading the revocation feed", e))?;
    let feed = Feed {
        generated_at: u64::try_from(db::now()).unwrap_or(0),
        ..feed
    };
    Ok(no_store_json(feed))
}
