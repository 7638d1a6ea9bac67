//! The records a gateway sends, their validation, and the rows the API returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most records in one ingest batch.
pub const MAX_BATCH_RECORDS: usize = 1_000;
/// Largest ingest body, bytes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Longest identifier (`id`, `kid`, `refresh_token_id`, …) accepted.
pub const MAX_ID_LEN: usize = 256;
/// Longest free-text field (`subject`, `reason`, a scope, …) accepted.
pub const MAX_TEXT_LEN: usize = 1024;
/// Most scopes in `requested` or `granted`.
pub const MAX_SCOPES: usize = 64;

/// One decision of a gateway, as sent to `POST /v1/ingest` and stored in `issuances`.
///
/// Field names follow the filter's audit record (`filter/core/src/handler.rs::Audit`) where it
/// has them; `jti` is accepted as an alias of `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The minted token's `jti`, or a request id for a refusal. Unique: the idempotency key.
    #[serde(alias = "jti")]
    pub id: String,
    /// Decision time, unix seconds.
    pub time: i64,
    /// `issued` or `rejected`.
    pub decision: String,
    /// Reason label (`issued` on success).
    #[serde(default)]
    pub reason: Option<String>,
    /// OpTok subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// OpTok `client_id`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Plan applied.
    #[serde(default)]
    pub plan: Option<String>,
    /// `stellaops:license` of the caller.
    #[serde(default)]
    pub license: Option<String>,
    /// Tenant of the caller.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Requested registry `service`.
    #[serde(default)]
    pub service: Option<String>,
    /// Requested scopes, `type:name:actions`.
    #[serde(default)]
    pub requested: Vec<String>,
    /// Granted scopes, `type:name:actions`.
    #[serde(default)]
    pub granted: Vec<String>,
    /// Minted token `iat`.
    #[serde(default)]
    pub iat: Option<i64>,
    /// Minted token `exp`.
    #[serde(default)]
    pub exp: Option<i64>,
    /// `kid` of the signing key.
    #[serde(default)]
    pub kid: Option<String>,
    /// Sender constraint: `jkt`, `x5t#S256` or `none`, optionally followed by `:<thumbprint>`
    /// (the filter's audit record writes `jkt:<thumbprint>`).
    #[serde(default)]
    pub binding: Option<String>,
    /// How the token was asked for: `get`, `password` or `refresh_token`.
    #[serde(default)]
    pub grant: Option<String>,
    /// Identifier of the refresh token used or issued (never the token itself).
    #[serde(default)]
    pub refresh_token_id: Option<String>,
    /// Gateway instance that decided.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// Why a record was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON field name (or path, for a malformed document).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(err(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(err(field, "holds a control character"));
    }
    Ok(())
}

fn check_opt(field: &str, value: &Option<String>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) => check_text(field, v, max),
        None => Ok(()),
    }
}

fn check_scopes(field: &str, scopes: &[String]) -> Result<(), FieldError> {
    if scopes.len() > MAX_SCOPES {
        return Err(err(field, format!("more than {MAX_SCOPES} scopes")));
    }
    for s in scopes {
        check_text(field, s, MAX_TEXT_LEN)?;
        if s.contains(' ') {
            return Err(err(field, "a scope holds a space"));
        }
    }
    Ok(())
}

impl Record {
    /// Parses one record of a batch, naming the offending field.
    pub fn from_value(value: Value) -> Result<Record, FieldError> {
        // serde would also take a struct from a JSON array, by position.
        if !value.is_object() {
            return Err(err(".", "a record must be a JSON object"));
        }
        let record: Record = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde names the missing or unknown field in the message, not the path.
            let field = if path == "." {
                field_in_message(&inner).unwrap_or_else(|| ".".to_string())
            } else {
                path
            };
            FieldError {
                field,
                message: inner,
            }
        })?;
        record.validate()?;
        Ok(record)
    }

    /// Checks the values' ranges and vocabularies.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_text("id", &self.id, MAX_ID_LEN)?;
        if self.time < 0 {
            return Err(err("time", "must be unix seconds, not negative"));
        }
        if self.decision != "issued" && self.decision != "rejected" {
            return Err(err("decision", "must be issued or rejected"));
        }
        check_opt("reason", &self.reason, MAX_TEXT_LEN)?;
        check_opt("subject", &self.subject, MAX_TEXT_LEN)?;
        check_opt("client_id", &self.client_id, MAX_TEXT_LEN)?;
        check_opt("plan", &self.plan, MAX_TEXT_LEN)?;
        check_opt("license", &self.license, MAX_TEXT_LEN)?;
        check_opt("tenant", &self.tenant, MAX_TEXT_LEN)?;
        check_opt("service", &self.service, MAX_TEXT_LEN)?;
        check_scopes("requested", &self.requested)?;
        check_scopes("granted", &self.granted)?;
        if self.iat.is_some_and(|v| v < 0) {
            return Err(err("iat", "must be unix seconds, not negative"));
        }
        if self.exp.is_some_and(|v| v < 0) {
            return Err(err("exp", "must be unix seconds, not negative"));
        }
        check_opt("kid", &self.kid, MAX_ID_LEN)?;
        check_opt("binding", &self.binding, MAX_TEXT_LEN)?;
        if let Some(b) = &self.binding {
            let kind = b.split(':').next().unwrap_or("");
            if !matches!(kind, "jkt" | "x5t#S256" | "none") {
                return Err(err(
                    "binding",
                    "must be jkt, x5t#S256 or none (optionally :thumbprint)",
                ));
            }
        }
        if let Some(g) = &self.grant {
            if !matches!(g.as_str(), "get" | "password" | "refresh_token") {
                return Err(err("grant", "must be get, password or refresh_token"));
            }
        }
        check_opt("refresh_token_id", &self.refresh_token_id, MAX_ID_LEN)?;
        check_opt("gateway", &self.gateway, MAX_TEXT_LEN)?;
        Ok(())
    }
}

/// Pulls the field name out of serde's "missing field `x`" / "unknown field `x`" messages.
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// A stored issuance as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    /// See [`Record`]; every field of the record, plus `received_at`.
    #[serde(flatten)]
    pub record: Record,
    /// When the ledger stored it, unix seconds.
    pub received_at: i64,
}

/// Columns of `issuances` in the order the API and the CSV export use.
pub const ISSUANCE_COLUMNS: [&str; 20] = [
    "id",
    "time",
    "decision",
    "reason",
    "subject",
    "client_id",
    "plan",
    "license",
    "tenant",
    "service",
    "requested",
    "granted",
    "iat",
    "exp",
    "kid",
    "binding",
    "grant",
    "refresh_token_id",
    "gateway",
    "received_at",
];

/// Revocation kinds and the feed key each one fills.
pub const REVOCATION_KINDS: [(&str, &str); 4] = [
    ("license", "revokedLicenses"),
    ("subject", "revokedSubjects"),
    ("refreshToken", "revokedRefreshTokens"),
    ("tenant", "revokedTenants"),
];

/// Longest revocation value (the filter refuses longer licence entries).
pub const MAX_REVOCATION_VALUE: usize = 256;

/// Body of `POST /v1/revocations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    /// `license`, `subject`, `refreshToken` or `tenant`.
    pub kind: String,
    /// The revoked value.
    pub value: String,
    /// Why (required).
    pub reason: String,
}

impl NewRevocation {
    /// Checks kind, value and reason.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !REVOCATION_KINDS.iter().any(|(k, _)| *k == self.kind) {
            return Err(err(
                "kind",
                "must be license, subject, refreshToken or tenant",
            ));
        }
        if self.value.trim() != self.value {
            return Err(err("value", "has leading or trailing whitespace"));
        }
        check_text("value", &self.value, MAX_REVOCATION_VALUE)?;
        if self.value.contains('#') && self.kind == "license" {
            // The filter's plain-text list format treats `#` as a comment.
            return Err(err("value", "a licence must not contain #"));
        }
        if self.reason.trim().is_empty() {
            return Err(err("reason", "must not be empty"));
        }
        check_text("reason", &self.reason, MAX_TEXT_LEN)?;
        Ok(())
    }
}

/// A revocation as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Identifier (random).
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Revoked value.
    pub value: String,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Admin `sub`.
    pub created_by: String,
    /// Unix seconds, when lifted.
    pub deleted_at: Option<i64>,
    /// Admin `sub` who lifted it.
    pub deleted_by: Option<String>,
}

/// Returns the repository name of a scope `repository:NAME:ACTIONS` (a repository name holds
/// no `:`; the registry host is not part of it).
pub fn scope_repository(scope: &str) -> Option<&str> {
    let rest = scope.strip_prefix("repository:")?;
    let end = rest.find(':')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_filter_audit_record() {
        let r = Record::from_value(json!({
            "jti": "abc", "time": 10, "decision": "issued", "reason": "issued",
            "subject": "alice", "binding": "jkt:0123", "requested": ["repository:a/b:pull"],
            "granted": ["repository:a/b:pull"], "exp": 310
        }))
        .unwrap();
        assert_eq!(r.id, "abc");
        assert_eq!(r.binding.as_deref(), Some("jkt:0123"));
    }

    #[test]
    fn names_the_bad_field() {
        let bad = |v: Value| Record::from_value(v).unwrap_err().field;
        assert_eq!(bad(json!({"time": 1, "decision": "issued"})), "id");
        assert_eq!(bad(json!({"id": "a", "decision": "issued"})), "time");
        assert_eq!(bad(json!({"id": "a", "time": 1})), "decision");
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "maybe"})),
            "decision"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": "x", "decision": "issued"})),
            "time"
        );
        assert_eq!(
            bad(json!({"id": "", "time": 1, "decision": "issued"})),
            "id"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "token": "x"})),
            "token"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "grant": "implicit"})),
            "grant"
        );
        assert_eq!(
            bad(json!({"id": "a", "time": 1, "decision": "issued", "requested": [1]})),
            "requested[0]"
        );
        assert_eq!(bad(json!(["a", 1, "issued"])), ".");
    }

    #[test]
    fn repository_of_a_scope() {
        assert_eq!(
            scope_repository("repository:team/app:pull,push"),
            Some("team/app")
        );
        assert_eq!(scope_repository("registry:catalog:*"), None);
    }

    #[test]
    fn revocation_input() {
        let r = |k: &str, v: &str, why: &str| {
            NewRevocation {
                kind: k.into(),
                value: v.into(),
                reason: why.into(),
            }
            .validate()
        };
        assert!(r("license", "lic-1", "fraud").is_ok());
        assert!(r("licence", "lic-1", "fraud").is_err());
        assert!(r("license", "", "fraud").is_err());
        assert!(r("license", &"x".repeat(257), "fraud").is_err());
        assert!(r("license", "lic-1", " ").is_err());
        assert!(r("subject", "a\nb", "x").is_err());
    }
}
