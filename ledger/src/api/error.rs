//! Every refusal of the API: a status and a JSON problem body `{"error": …, "detail": …}`
//! (sometimes with `field`, `index`, `parameter` or `id`), `Cache-Control: no-store`, and
//! a `WWW-Authenticate` challenge on 401 and 403.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

/// Realm named in `WWW-Authenticate`.
pub(crate) const REALM: &str = "registry-token-ledger";

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
    /// `status` with the `error` code and `detail` sentence.
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
            extra: Map::new(),
            www_authenticate: None,
        }
    }

    /// A 400.
    pub(crate) fn bad(error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, detail)
    }

    /// The same with one more body field.
    pub(crate) fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// The same with a `WWW-Authenticate` challenge.
    pub(crate) fn challenge(mut self, challenge: String) -> ApiError {
        self.www_authenticate = Some(challenge);
        self
    }

    /// A 401 with a Bearer challenge (naming `error_code` and the detail when given).
    pub(crate) fn unauthorized(detail: &str, error_code: Option<&str>) -> ApiError {
        let mut challenge = format!("Bearer realm=\"{REALM}\"");
        if let Some(code) = error_code {
            let safe: String = detail
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .take(200)
                .collect();
            challenge.push_str(&format!(", error=\"{code}\", error_description=\"{safe}\""));
        }
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).challenge(challenge)
    }

    /// A 500, logged with its cause; the body names only what failed.
    pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!("{context}: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        self.error
    }

    /// The `detail` sentence of the body.
    pub fn detail(&self) -> &str {
        &self.detail
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
