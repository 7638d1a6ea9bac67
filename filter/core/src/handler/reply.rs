//! Replies: RFC 7807 problems (with the Docker `errors` array and an RFC 6750 or RFC 9449
//! challenge) built from a [`Denial`], the token reply, `/healthz` and `/jwks`.

use serde_json::json;

use super::audit::Audit;
use super::reason::Reason;
use super::{Decision, Outcome};
use crate::config::Config;

/// Seconds a client is asked to wait on a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// A refusal: a [`Reason`] (which fixes status and codes) and what to tell the caller.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Why.
    pub reason: Reason,
    /// Human detail (safe to show: no secrets).
    pub detail: String,
    /// Extra headers (`DPoP-Nonce`, …).
    pub extra_headers: Vec<(String, String)>,
    /// A complete `WWW-Authenticate` value replacing the default Bearer challenge (DPoP).
    pub challenge: Option<String>,
}

impl Denial {
    /// A denial for `reason` with `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Denial {
        Denial {
            reason,
            detail: detail.into(),
            extra_headers: Vec::new(),
            challenge: None,
        }
    }
}

/// Escapes a value for an RFC 7235 quoted-string.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds the reply for a denial; the audit record (if any) is marked rejected.
pub fn deny(config: &Config, denial: Denial, audit: Option<Audit>) -> Decision {
    let reason = denial.reason;
    let status = reason.status();
    let body = json!({
        "type": format!("urn:registry-token-filter:error:{}", reason.label()),
        "title": reason.title(),
        "status": status,
        "detail": denial.detail,
        "errors": [{"code": reason.docker_code(), "message": denial.detail}],
    });
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/problem+json".to_string(),
        ),
        ("cache-control".to_string(), "no-store".to_string()),
    ];
    if let Some(challenge) = denial.challenge {
        headers.push(("www-authenticate".into(), challenge));
    } else if status == 401 || status == 403 {
        let mut challenge = format!("Bearer realm={}", quoted(&config.registry.realm_text));
        if let Some(code) = reason.oauth_error() {
            challenge.push_str(&format!(
                ", error={}, error_description={}",
                quoted(code),
                quoted(&denial.detail)
            ));
        }
        // The `scope` attribute names what the OpTok lacks; only meaningful when the
        // refusal is about the OpTok's scopes (not a plan or licence decision).
        if reason == Reason::InsufficientScope {
            challenge.push_str(&format!(
                ", scope={}",
                quoted(&config.authority.required_scopes.join(" "))
            ));
        }
        headers.push(("www-authenticate".into(), challenge));
    }
    if reason.retry_after() {
        headers.push(("retry-after".into(), RETRY_AFTER_SECONDS.to_string()));
    }
    headers.extend(denial.extra_headers);
    rejected(reason, status, headers, body.to_string(), audit)
}

/// Builds the reply for a denial of `POST /token`: an RFC 6749 §5.2 error (`error`,
/// `error_description`) with the status [`Reason::token_endpoint_error`] gives, plus the
/// problem and Docker fields of [`deny`]. No `WWW-Authenticate`: no `POST` refusal is a
/// 401 (RFC 6749 reserves that for client authentication, which is not used).
pub fn deny_form(denial: Denial, audit: Option<Audit>) -> Decision {
    let reason = denial.reason;
    let (status, error) = reason.token_endpoint_error();
    let body = json!({
        "error": error,
        "error_description": denial.detail,
        "type": format!("urn:registry-token-filter:error:{}", reason.label()),
        "title": status_title(status),
        "status": status,
        "detail": denial.detail,
        "errors": [{"code": reason.docker_code(), "message": denial.detail}],
    });
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
        ("pragma".to_string(), "no-cache".to_string()),
    ];
    if status == 503 {
        headers.push(("retry-after".into(), RETRY_AFTER_SECONDS.to_string()));
    }
    headers.extend(denial.extra_headers);
    rejected(reason, status, headers, body.to_string(), audit)
}

fn status_title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A refusal's decision; the audit record (if any) is marked rejected with its reason.
fn rejected(
    reason: Reason,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    mut audit: Option<Audit>,
) -> Decision {
    if let Some(a) = audit.as_mut() {
        a.decision = "rejected";
        a.reason = reason.label();
    }
    Decision {
        status,
        headers,
        body,
        outcome: Outcome::Rejected(reason),
        audit,
        unknown_kid: false,
    }
}

/// The liveness reply.
pub fn healthz() -> Decision {
    Decision {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: json!({"status": "ok"}).to_string(),
        outcome: Outcome::Other,
        audit: None,
        unknown_kid: false,
    }
}

/// The JWKS of the minting keys (active first, then the published ones).
pub fn jwks(config: &Config) -> Decision {
    Decision {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/jwk-set+json".into()),
            ("cache-control".into(), "public, max-age=300".into()),
        ],
        body: config.signing.jwks.to_string(),
        outcome: Outcome::Other,
        audit: None,
        unknown_kid: false,
    }
}
