//! The audit record: one per `/token` decision, written to Envoy's log and to filter state
//! for access logs. Never holds the OpToken, a proof, the minted token or a key.

use crate::policy::scope::{self, Scope};

/// Longest raw scope kept in an audit record when the scope did not parse.
const MAX_AUDIT_SCOPE_CHARS: usize = 300;

/// One structured audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    /// Unix time of the decision.
    pub time: u64,
    /// `issued` or `rejected`.
    pub decision: &'static str,
    /// Reason label (`issued` on success).
    pub reason: &'static str,
    /// `get`, `password` or `refresh_token`, once known.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub grant: &'static str,
    /// OpTok (or refresh token) subject, once verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// OpTok `client_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The `client_id` request parameter (query or form), bounded, control characters
    /// removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_client_id: Option<String>,
    /// The refresh token's id: the one presented (refresh grant) or the one issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_id: Option<String>,
    /// `jkt:<thumbprint>` or `x5t#S256:<thumbprint>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// Plan applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Requested `service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Requested scopes, `type:name:actions`.
    pub requested: Vec<String>,
    /// Granted scopes, `type:name:actions`.
    pub granted: Vec<String>,
    /// Minted token `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Minted token `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl Audit {
    /// An empty record of a decision at `now` (rejected until the token is minted).
    pub fn new(now: u64) -> Audit {
        Audit {
            time: now,
            decision: "rejected",
            reason: "",
            ..Audit::default()
        }
    }
}

/// A scope as the audit record writes it: `type:name:actions`.
pub fn scope_text(s: &Scope) -> String {
    format!("{}:{}:{}", s.resource_type, s.name, s.actions.join(","))
}

/// A free-form request parameter as the audit record keeps it: bounded, no control
/// characters.
pub fn bounded_text(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(MAX_AUDIT_SCOPE_CHARS)
        .collect()
}

/// Who asked for what, even when it did not parse: the raw parameters, bounded and
/// stripped of control characters.
pub fn raw_scopes(raw: &[String]) -> Vec<String> {
    raw.iter()
        .take(scope::MAX_SCOPES)
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(MAX_AUDIT_SCOPE_CHARS)
                .collect()
        })
        .collect()
}
