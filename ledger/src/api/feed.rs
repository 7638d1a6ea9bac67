//! `GET /v1/revocations/feed`: the active revocations for gateways (their feed secret), as
//! the wire's value [`Feed`] or, with `?form=digests`, as its [`DigestFeed`] (what the
//! shipped gateway configurations fetch: 16 characters an entry whatever the value's
//! length). The digest form is built once per revocation generation and served from
//! memory until a create or lift moves the generation on.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use registry_token_ledger_wire::{DigestFeed, Feed};
use tokio::sync::Mutex;

use super::extract::{FeedSecret, Gateway, Params};
use super::{bad_param, no_store_json, ApiError, Shared};
use crate::db;

/// The digest feed as last built: its generation and its bytes.
#[derive(Debug, Default)]
pub struct DigestFeedCache(Mutex<Option<(i64, Bytes)>>);

/// Which document is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Values,
    Digests,
}

/// The feed document. `?form=values` (the default) or `?form=digests`; other parameters
/// are ignored (a gateway's URL may carry its own).
pub async fn feed(
    State(state): State<Shared>,
    _gateway: Gateway<FeedSecret>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let mut form = Form::Values;
    for (name, value) in params {
        if name == "form" {
            form = match value.as_str() {
                "values" => Form::Values,
                "digests" => Form::Digests,
                _ => return Err(bad_param("form", "form must be values or digests")),
            };
        }
    }
    match form {
        Form::Values => {
            let feed = read_feed(&state).await?;
            Ok(no_store_json(feed))
        }
        Form::Digests => {
            let body = digest_feed(&state).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body,
            )
                .into_response())
        }
    }
}

/// The active revocations, `generatedAt` now.
async fn read_feed(state: &Shared) -> Result<Feed, ApiError> {
    let feed = state
        .db
        .feed()
        .await
        .map_err(|e| ApiError::internal("reading the revocation feed", e))?;
    Ok(Feed {
        generated_at: u64::try_from(db::now()).unwrap_or(0),
        ..feed
    })
}

/// The digest feed's bytes: the cached ones while the generation is unchanged, else built
/// from the database (one build at a time; `generatedAt` is when it was built). The
/// generation is read before the rows, so a write in between makes the next request
/// build again rather than serve it stale.
async fn digest_feed(state: &Shared) -> Result<Bytes, ApiError> {
    let generation = state
        .db
        .revocation_generation()
        .await
        .map_err(|e| ApiError::internal("reading the revocation generation", e))?;
    let mut cache = state.digest_feed.0.lock().await;
    if let Some((built, body)) = cache.as_ref() {
        if *built == generation {
            return Ok(body.clone());
        }
    }
    let started = std::time::Instant::now();
    let feed = read_feed(state).await?;
    let digests = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&DigestFeed::from_feed(&feed)).map(|b| (b, feed_len(&feed)))
    })
    .await
    .map_err(|e| ApiError::internal("building the digest feed", e))?
    .map_err(|e| ApiError::internal("writing the digest feed", e))?;
    let (bytes, entries) = digests;
    tracing::info!(
        "digest feed of generation {generation}: {entries} revocation(s), {} bytes, built in {} ms",
        bytes.len(),
        started.elapsed().as_millis()
    );
    let body = Bytes::from(bytes);
    *cache = Some((generation, body.clone()));
    Ok(body)
}

fn feed_len(feed: &Feed) -> usize {
    registry_token_ledger_wire::RevocationKind::ALL
        .iter()
        .map(|k| feed.list(*k).len())
        .sum()
}
