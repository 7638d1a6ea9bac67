//! The audit record: one per `/token` decision, written to Envoy's log and to filter state
//! for access logs. Never holds the OpToken, a proof, the minted token or a key.

use crate::policy::scope::{self, Scope};

/// Longest raw scope kept in an audit record when the scope did not parse.
const MAX_AUDIT_SCOPE_CHARS: usize = 300;
/// Longest caller-supplied text (service, subject, client id, plan) kept in a record.
pub const MAX_AUDIT_FIELD_CHARS: usize = 256;

/// One structured audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    /// The decision's unique id for a refusal (random, drawn by the glue; a minted token's
    /// id is its `jti`): the issuance ledger's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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
    /// The caller's tenant (`authority.tenantClaim`), as presented, bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
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
    /// The caller's `stellaops:license` (several are joined by a space), once verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Plan applied (several, a union, joined by a space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The issuer that verified the caller's token (`authority.issuer` or an
    /// `issuers[].issuer`), once verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The trust policy that matched (`issuers[].policies[].name`), or `anonymous`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
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
    /// Minted token `iat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Minted token `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// `kid` of the key that signed the minted token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The gateway instance (`ledger.gateway`, else Envoy's node id), set by the glue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
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

    /// The record as one line of JSON that no log pipeline splits: every control
    /// character (C0, DEL, C1 such as U+0085) and U+2028/U+2029 is written as a `\uXXXX`
    /// escape, and caller-supplied text is bounded.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        if may_break_lines(&json) {
            escape_line_breakers(&json)
        } else {
            json
        }
    }
}

/// Whether `json` may hold a character [`escape_line_breakers`] rewrites: a byte scan
/// that over-approximates (any C0 byte, DEL, and every character starting with the bytes
/// 0xC2 or 0xE2, among them C1 and U+2028/U+2029), so that the usual all-ASCII record is
/// returned as written, without a character-by-character copy.
fn may_break_lines(json: &str) -> bool {
    json.bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == 0xc2 || b == 0xe2)
}

/// Escapes what serde_json leaves raw but line-oriented tools treat as a line end or
/// garbage. Such characters only occur inside JSON strings, where `\uXXXX` is valid.
pub fn escape_line_breakers(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Caller-supplied text as an audit field: at most [`MAX_AUDIT_FIELD_CHARS`] characters.
pub fn bounded(text: &str) -> String {
    text.chars().take(MAX_AUDIT_FIELD_CHARS).collect()
}

/// A scope as the audit record writes it: `type:name:actions`.
pub fn scope_text(s: &Scope) -> String {
    format!("{}:{}:{}", s.resource_type, s.name, s.actions.join(","))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_never_carry_raw_line_breakers_and_stay_json() {
        let nasty = "a\u{2028}b\u{2029}c\u{0085}d\u{0000}e\u{007f}f\ng\rh\u{001b}i\u{009b}j";
        let audit = Audit {
            service: Some(bounded(nasty)),
            requested: raw_scopes(&[nasty.to_string()]),
            subject: Some(nasty.to_string()),
            ..Audit::new(1)
        };
        let line = audit.to_line();
        assert!(
            line.chars()
                .all(|c| !c.is_control() && c != '\u{2028}' && c != '\u{2029}'),
            "{line:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["subject"], nasty, "escapes decode to the same text");
        assert!(
            line.contains("\\u2028") && line.contains("\\u0085"),
            "{line}"
        );
    }

    #[test]
    fn the_fast_path_misses_no_character_the_escape_rewrites() {
        let mut buf = [0u8; 4];
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let s = c.encode_utf8(&mut buf);
            if escape_line_breakers(s) != *s {
                assert!(may_break_lines(s), "{c:?}");
            }
        }
        assert!(!may_break_lines(r#"{"subject":"alice","time":1}"#));
    }

    #[test]
    fn caller_text_is_bounded() {
        assert_eq!(
            bounded(&"x".repeat(10_000)).chars().count(),
            MAX_AUDIT_FIELD_CHARS
        );
        assert_eq!(bounded("short"), "short");
    }
}
