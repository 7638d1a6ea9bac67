//! HTTP routes.

use std::sync::Arc;

use axum::body::{to_bytes, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::auth::{secret_matches, Admin, AdminAuth, AdminError};
use crate::db::{self, CreateError, Db, IssuanceFilter};
use crate::metrics::Metrics;
use crate::model::{
    Issuance, NewRevocation, Record, ISSUANCE_COLUMNS, MAX_BATCH_BYTES, MAX_BATCH_RECORDS,
    MAX_TEXT_LEN, REVOCATION_KINDS,
};

/// Default page size of `GET /v1/issuances`.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size.
pub const MAX_LIMIT: i64 = 10_000;
/// Largest revocation request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;
/// Realm named in `WWW-Authenticate`.
const REALM: &str = "registry-token-ledger";

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
}

type Shared = Arc<AppState>;

/// A refusal: status, `{"error": …, "detail": …}` plus optional fields and headers.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
    extra: Map<String, Value>,
    www_authenticate: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
            extra: Map::new(),
            www_authenticate: None,
        }
    }

    fn bad(error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, detail)
    }

    fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    fn unauthorized(detail: &str, error_code: Option<&str>) -> ApiError {
        let mut challenge = format!("Bearer realm=\"{REALM}\"");
        if let Some(code) = error_code {
            let safe: String = detail
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .take(200)
                .collect();
            challenge.push_str(&format!(", error=\"{code}\", error_description=\"{safe}\""));
        }
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.www_authenticate = Some(challenge);
        e
    }

    fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("{context}: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.error.into()));
        body.insert("detail".into(), Value::String(self.detail));
        body.extend(self.extra);
        let mut resp = (self.status, Json(Value::Object(body))).into_response();
        if let Some(c) = self
            .www_authenticate
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// The router with every route and the request counter.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/ingest", post(ingest))
        .route("/v1/issuances", get(list_issuances))
        .route("/v1/issuances/{id}", get(get_issuance))
        .route(
            "/v1/revocations",
            post(create_revocation).get(list_revocations),
        )
        .route("/v1/revocations/feed", get(feed))
        .route("/v1/revocations/events", get(revocation_events))
        .route("/v1/revocations/{id}", delete(delete_revocation))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

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

async fn healthz(State(state): State<Shared>) -> Response {
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

async fn metrics(State(state): State<Shared>) -> Response {
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
        state.metrics.render(active),
    )
        .into_response()
}

fn gateway_auth(headers: &HeaderMap, secret: &str) -> Result<(), ApiError> {
    if secret_matches(headers, secret) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "a valid gateway secret is required",
            None,
        ))
    }
}

async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Admin, ApiError> {
    state.auth.verify(headers).await.map_err(|e| match e {
        AdminError::Missing => ApiError::unauthorized("an admin bearer token is required", None),
        AdminError::Invalid(why) => {
            tracing::info!("admin token refused: {why}");
            ApiError::unauthorized("the bearer token is not valid", Some("invalid_token"))
        }
        AdminError::Scope => {
            let scope = state.auth.scope();
            let mut e = ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token lacks the {scope} scope"),
            );
            e.www_authenticate = Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
            ));
            e
        }
        AdminError::KeysUnavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keys_unavailable",
            "the admin token keys could not be loaded yet",
        ),
    })
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    to_bytes(req.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        )
    })
}

// ---- ingest -----------------------------------------------------------------------------

async fn ingest(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    gateway_auth(req.headers(), &state.ingest_secret)?;
    let body = read_body(req, MAX_BATCH_BYTES).await?;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut top) = doc else {
        return Err(ApiError::bad(
            "invalid_batch",
            "the body must be {\"records\": [...]}",
        ));
    };
    if let Some(k) = top.keys().find(|k| k.as_str() != "records") {
        return Err(
            ApiError::bad("invalid_batch", format!("unknown field {k}")).with("field", json!(k))
        );
    }
    let Some(Value::Array(items)) = top.remove("records") else {
        return Err(ApiError::bad("invalid_batch", "records must be an array"));
    };
    if items.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::bad(
            "too_many_records",
            format!(
                "{} records, at most {MAX_BATCH_RECORDS} per batch",
                items.len()
            ),
        ));
    }
    let mut records = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let record = Record::from_value(item).map_err(|e| {
            ApiError::bad(
                "invalid_record",
                format!("records[{index}].{}: {}", e.field, e.message),
            )
            .with("index", json!(index))
            .with("field", json!(e.field))
        })?;
        records.push(record);
    }
    let now = db::now();
    let accepted = state
        .db
        .insert_batch(&records, now)
        .await
        .map_err(|e| ApiError::internal("storing the batch", e))?;
    let total = u64::try_from(records.len()).unwrap_or(u64::MAX);
    let duplicates = total.saturating_sub(accepted);
    let lag = records.iter().map(|r| r.time).max().map(|t| now - t);
    state.metrics.batch(accepted, duplicates, lag);
    tracing::debug!("batch: {accepted} stored, {duplicates} duplicates");
    Ok(Json(json!({"accepted": accepted, "duplicates": duplicates})).into_response())
}

// ---- issuances --------------------------------------------------------------------------

/// Encodes the position after a row: base64url of `time:id`.
pub fn encode_cursor(time: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time}:{id}"))
}

/// Decodes [`encode_cursor`]'s output.
pub fn decode_cursor(cursor: &str) -> Result<(i64, String), String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| "cursor is not base64url".to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "cursor is not UTF-8".to_string())?;
    let (time, id) = text.split_once(':').ok_or("cursor is malformed")?;
    let time: i64 = time
        .parse()
        .map_err(|_| "cursor is malformed".to_string())?;
    if time < 0 || id.is_empty() {
        return Err("cursor is malformed".into());
    }
    Ok((time, id.to_string()))
}

fn rfc3339(name: &str, value: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            ApiError::bad(
                "invalid_parameter",
                format!("{name} must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z"),
            )
            .with("parameter", json!(name))
        })
}

fn bad_param(name: &str, detail: impl Into<String>) -> ApiError {
    ApiError::bad("invalid_parameter", detail).with("parameter", json!(name))
}

fn parse_filter(params: Vec<(String, String)>) -> Result<IssuanceFilter, ApiError> {
    let mut f = IssuanceFilter {
        limit: DEFAULT_LIMIT,
        ..IssuanceFilter::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in params {
        if seen.contains(&name) {
            return Err(bad_param(&name, format!("{name} is given twice")));
        }
        seen.push(name.clone());
        let text = |v: String| -> Result<Option<String>, ApiError> {
            if v.is_empty() || v.len() > MAX_TEXT_LEN {
                return Err(bad_param(
                    &name,
                    format!("{name} must be 1..={MAX_TEXT_LEN} bytes"),
                ));
            }
            Ok(Some(v))
        };
        match name.as_str() {
            "subject" => f.subject = text(value)?,
            "license" => f.license = text(value)?,
            "service" => f.service = text(value)?,
            "repository" => {
                if value.contains([':', '"', '\\']) || value.chars().any(char::is_control) {
                    return Err(bad_param(&name, "repository must be a repository name"));
                }
                f.repository = text(value)?;
            }
            "decision" => {
                if value != "issued" && value != "rejected" {
                    return Err(bad_param(&name, "decision must be issued or rejected"));
                }
                f.decision = Some(value);
            }
            "since" => f.since = Some(rfc3339(&name, &value)?),
            "until" => f.until = Some(rfc3339(&name, &value)?),
            "limit" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| bad_param(&name, "limit must be an integer"))?;
                if !(1..=MAX_LIMIT).contains(&n) {
                    return Err(bad_param(
                        &name,
                        format!("limit must be within 1..={MAX_LIMIT}"),
                    ));
                }
                f.limit = n;
            }
            "cursor" => {
                f.after = Some(decode_cursor(&value).map_err(|e| {
                    ApiError::bad("invalid_cursor", e).with("parameter", json!("cursor"))
                })?)
            }
            _ => return Err(bad_param(&name, format!("unknown parameter {name}"))),
        }
    }
    Ok(f)
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',').any(|m| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("text/csv")
            })
        })
}

/// One CSV field, quoted per RFC 4180 when needed.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// The issuances as CSV: a header row, CRLF line ends; scopes joined by spaces.
pub fn to_csv(items: &[Issuance]) -> String {
    let mut out = ISSUANCE_COLUMNS.join(",");
    out.push_str("\r\n");
    for i in items {
        let r = &i.record;
        let opt = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
        let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let fields = [
            csv_field(&r.id),
            r.time.to_string(),
            csv_field(&r.decision),
            opt(&r.reason),
            opt(&r.subject),
            opt(&r.client_id),
            opt(&r.plan),
            opt(&r.license),
            opt(&r.tenant),
            opt(&r.service),
            csv_field(&r.requested.join(" ")),
            csv_field(&r.granted.join(" ")),
            num(r.iat),
            num(r.exp),
            opt(&r.kid),
            opt(&r.binding),
            opt(&r.grant),
            opt(&r.refresh_token_id),
            opt(&r.gateway),
            i.received_at.to_string(),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_response(items: &[Issuance], next: Option<&str>) -> Response {
    let mut resp = (
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        to_csv(items),
    )
        .into_response();
    if let Some(v) = next.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert("x-next-cursor", v);
    }
    resp
}

async fn list_issuances(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &headers).await?;
    let Query(params) = query.map_err(|e| ApiError::bad("invalid_parameter", e.body_text()))?;
    let mut filter = parse_filter(params)?;
    let limit = filter.limit;
    filter.limit = limit + 1;
    let mut items = state
        .db
        .issuances(&filter)
        .await
        .map_err(|e| ApiError::internal("querying issuances", e))?;
    let more = i64::try_from(items.len()).unwrap_or(i64::MAX) > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        items
            .last()
            .map(|i| encode_cursor(i.record.time, &i.record.id))
    } else {
        None
    };
    if wants_csv(&headers) {
        return Ok(csv_response(&items, next.as_deref()));
    }
    Ok(no_store_json(json!({"items": items, "next_cursor": next})))
}

async fn get_issuance(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&state, &headers).await?;
    let item = state
        .db
        .issuance(&id)
        .await
        .map_err(|e| ApiError::internal("reading an issuance", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no issuance with this id",
            )
        })?;
    if wants_csv(&headers) {
        return Ok(csv_response(std::slice::from_ref(&item), None));
    }
    Ok(no_store_json(item))
}

// ---- revocations ------------------------------------------------------------------------

async fn create_revocation(
    State(state): State<Shared>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = admin(&state, req.headers()).await?;
    let body = read_body(req, MAX_ADMIN_BODY).await?;
    // Parsed as a value first: serde would also accept a struct as a JSON array.
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("invalid_request", format!("the body is not JSON: {e}")))?;
    if !doc.is_object() {
        return Err(ApiError::bad(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    let new: NewRevocation = serde_json::from_value(doc)
        .map_err(|e| ApiError::bad("invalid_request", format!("invalid revocation: {e}")))?;
    new.validate().map_err(|e| {
        ApiError::bad("invalid_request", format!("{}: {}", e.field, e.message))
            .with("field", json!(e.field))
    })?;
    let created = state
        .db
        .create_revocation(&new.kind, &new.value, &new.reason, &who.subject, db::now())
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
        Err(CreateError::Db(e)) => Err(ApiError::internal("creating a revocation", e)),
    }
}

async fn list_revocations(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &headers).await?;
    let Query(params) = query.map_err(|e| ApiError::bad("invalid_parameter", e.body_text()))?;
    let mut all = false;
    for (name, value) in params {
        match (name.as_str(), value.as_str()) {
            ("all", "true") => all = true,
            ("all", "false") => all = false,
            ("all", _) => return Err(bad_param("all", "all must be true or false")),
            _ => return Err(bad_param(&name, format!("unknown parameter {name}"))),
        }
    }
    let items = state
        .db
        .revocations(all)
        .await
        .map_err(|e| ApiError::internal("listing revocations", e))?;
    Ok(no_store_json(json!({"items": items})))
}

async fn delete_revocation(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let who = admin(&state, &headers).await?;
    let Query(params) = query.map_err(|e| ApiError::bad("invalid_parameter", e.body_text()))?;
    let mut reason = None;
    for (name, value) in params {
        match name.as_str() {
            "reason" if !value.trim().is_empty() && value.len() <= MAX_TEXT_LEN => {
                reason = Some(value)
            }
            "reason" => {
                return Err(bad_param(
                    "reason",
                    format!("reason must be 1..={MAX_TEXT_LEN} bytes"),
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

async fn revocation_events(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&state, &headers).await?;
    let Query(params) = query.map_err(|e| ApiError::bad("invalid_parameter", e.body_text()))?;
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

/// A JSON answer that no cache may keep (every answer of this API is about live data).
fn no_store_json(body: impl serde::Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn feed(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    gateway_auth(&headers, &state.feed_secret)?;
    let feed = state
        .db
        .feed()
        .await
        .map_err(|e| ApiError::internal("reading the revocation feed", e))?;
    let mut doc = Map::new();
    for (kind, key) in REVOCATION_KINDS {
        let values = feed
            .lists
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        doc.insert(key.to_string(), json!(values));
    }
    doc.insert("generatedAt".into(), json!(db::now()));
    Ok(no_store_json(Value::Object(doc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = encode_cursor(1700000000, "a:b");
        assert_eq!(decode_cursor(&c).unwrap(), (1700000000, "a:b".to_string()));
        assert!(decode_cursor("!!!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x:y")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("12")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("12:")).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("-1:a")).is_err());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn filter_parameters() {
        let p = |q: &[(&str, &str)]| {
            parse_filter(
                q.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        };
        assert_eq!(p(&[]).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(
            p(&[("since", "1970-01-01T00:01:00Z")]).unwrap().since,
            Some(60)
        );
        assert!(p(&[("since", "yesterday")]).is_err());
        assert!(p(&[("limit", "0")]).is_err());
        assert!(p(&[("limit", "10001")]).is_err());
        assert!(p(&[("decision", "maybe")]).is_err());
        assert!(p(&[("colour", "red")]).is_err());
        assert!(p(&[("subject", "a"), ("subject", "b")]).is_err());
        assert!(p(&[("repository", "a:b")]).is_err());
    }
}
