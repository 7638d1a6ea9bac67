//! One ingest record: its JSON form (serde) and the ledger's checks of its values
//! ([`Record::validate`]), which the filter's cleaning meets by construction.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::words::{BindingKind, Decision, Grant};
use crate::{MAX_ID_BYTES, MAX_SCOPES, MAX_SECONDS, MAX_TEXT_BYTES};

/// One decision of a gateway, as sent to `POST /v1/ingest` and stored in `issuances`.
///
/// Serialised in this field order with absent fields omitted: the bytes the filter has
/// always sent. Parsing refuses unknown fields and takes `jti` as an alias of `id` (so the
/// filter's audit line can be sent as it is). Text is borrowed where the writer has it
/// (the filter builds records without copying clean text); parsed records own theirs
/// (`Record<'static>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record<'a> {
    /// The minted token's `jti`, or a request id for a refusal. Unique: the idempotency key.
    #[serde(alias = "jti")]
    pub id: Cow<'a, str>,
    /// Decision time, unix seconds.
    #[serde(deserialize_with = "seconds")]
    pub time: u64,
    /// What was decided.
    pub decision: Decision,
    /// Reason label (`issued` on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    /// OpToken (or refresh token) subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Cow<'a, str>>,
    /// OpToken `client_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
    /// Plan applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Cow<'a, str>>,
    /// Tenant of the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Cow<'a, str>>,
    /// `stellaops:license` of the caller (several joined by a space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<Cow<'a, str>>,
    /// Requested registry `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Cow<'a, str>>,
    /// Requested scopes, `type:name:actions` (always sent, possibly empty).
    #[serde(default)]
    pub requested: Vec<Cow<'a, str>>,
    /// Granted scopes, `type:name:actions` (always sent, possibly empty).
    #[serde(default)]
    pub granted: Vec<Cow<'a, str>>,
    /// Minted token `iat`.
    #[serde(
        default,
        deserialize_with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<u64>,
    /// Minted token `exp`.
    #[serde(
        default,
        deserialize_with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub exp: Option<u64>,
    /// `kid` of the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<Cow<'a, str>>,
    /// Sender constraint: a [`BindingKind`] word, optionally followed by `:<thumbprint>`
    /// (the filter writes `jkt:<thumbprint>` or `x5t#S256:<thumbprint>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Cow<'a, str>>,
    /// How the token was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// Identifier of the refresh token used or issued (never the token itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_id: Option<Cow<'a, str>>,
    /// Gateway instance that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Cow<'a, str>>,
    /// The issuer that verified the caller's token (`authority.issuer` or an
    /// `issuers[].issuer`). Optional and last, so that older records parse unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Cow<'a, str>>,
    /// The trust policy that matched (`issuers[].policies[].name`), or `anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Cow<'a, str>>,
}

/// Why a record (or another input of the ledger) was refused: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON field name (or path, for a malformed document).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// `field` is wrong: `message`.
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The rule of every text the ledger takes: 1..=`max` bytes, no control character.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(FieldError::new(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(field, "holds a control character"));
    }
    Ok(())
}

fn check_opt(field: &str, value: &Option<Cow<'_, str>>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) => check_text(field, v, max),
        None => Ok(()),
    }
}

fn check_scopes(field: &str, scopes: &[Cow<'_, str>]) -> Result<(), FieldError> {
    if scopes.len() > MAX_SCOPES {
        return Err(FieldError::new(
            field,
            format!("more than {MAX_SCOPES} scopes"),
        ));
    }
    for s in scopes {
        check_text(field, s, MAX_TEXT_BYTES)?;
        if s.contains(' ') {
            return Err(FieldError::new(field, "a scope holds a space"));
        }
    }
    Ok(())
}

fn check_seconds(field: &str, value: Option<u64>) -> Result<(), FieldError> {
    match value {
        Some(v) if v > MAX_SECONDS => Err(FieldError::new(
            field,
            format!("must be unix seconds, at most {MAX_SECONDS}"),
        )),
        _ => Ok(()),
    }
}

impl Record<'_> {
    /// Checks the values' ranges and vocabularies (what parsing alone does not), naming
    /// the first offending field in field order.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_text("id", &self.id, MAX_ID_BYTES)?;
        check_seconds("time", Some(self.time))?;
        check_opt("reason", &self.reason, MAX_TEXT_BYTES)?;
        check_opt("subject", &self.subject, MAX_TEXT_BYTES)?;
        check_opt("client_id", &self.client_id, MAX_TEXT_BYTES)?;
        check_opt("plan", &self.plan, MAX_TEXT_BYTES)?;
        check_opt("license", &self.license, MAX_TEXT_BYTES)?;
        check_opt("tenant", &self.tenant, MAX_TEXT_BYTES)?;
        check_opt("service", &self.service, MAX_TEXT_BYTES)?;
        check_scopes("requested", &self.requested)?;
        check_scopes("granted", &self.granted)?;
        check_seconds("iat", self.iat)?;
        check_seconds("exp", self.exp)?;
        check_opt("kid", &self.kid, MAX_ID_BYTES)?;
        check_opt("binding", &self.binding, MAX_TEXT_BYTES)?;
        if let Some(b) = &self.binding {
            if BindingKind::of(b).is_none() {
                return Err(FieldError::new("binding", BindingKind::EXPECTED));
            }
        }
        check_opt("refresh_token_id", &self.refresh_token_id, MAX_ID_BYTES)?;
        check_opt("gateway", &self.gateway, MAX_TEXT_BYTES)?;
        check_opt("issuer", &self.issuer, MAX_TEXT_BYTES)?;
        check_opt("policy", &self.policy, MAX_TEXT_BYTES)?;
        Ok(())
    }

    /// The record as one line of JSON (never holding a raw newline: serde_json escapes
    /// control characters in strings); `None` only if serialisation failed.
    pub fn to_json(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }

    /// The same record owning its text.
    pub fn into_owned(self) -> Record<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        let own_opt = |c: Option<Cow<'_, str>>| c.map(own);
        Record {
            id: own(self.id),
            time: self.time,
            decision: self.decision,
            reason: own_opt(self.reason),
            subject: own_opt(self.subject),
            client_id: own_opt(self.client_id),
            plan: own_opt(self.plan),
            tenant: own_opt(self.tenant),
            license: own_opt(self.license),
            service: own_opt(self.service),
            requested: self.requested.into_iter().map(own).collect(),
            granted: self.granted.into_iter().map(own).collect(),
            iat: self.iat,
            exp: self.exp,
            kid: own_opt(self.kid),
            binding: own_opt(self.binding),
            grant: self.grant,
            refresh_token_id: own_opt(self.refresh_token_id),
            gateway: own_opt(self.gateway),
            issuer: own_opt(self.issuer),
            policy: own_opt(self.policy),
        }
    }
}

/// Unix seconds as the ledger reads them: a non-negative integer that fits its signed
/// 64-bit column. The messages are the ones the ledger gave when it read an `i64`.
struct Seconds(u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("i64")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                if v <= MAX_SECONDS {
                    Ok(Seconds(v))
                } else {
                    Err(E::invalid_value(Unexpected::Unsigned(v), &self))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom("must be unix seconds, not negative"))
            }
        }
        d.deserialize_i64(V)
    }
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Seconds::deserialize(d).map(|s| s.0)
}

fn optional_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Seconds>::deserialize(d)?.map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> Result<Record<'static>, String> {
        let r: Record<'static> = serde_json::from_value(v).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| e.to_string())?;
        Ok(r)
    }

    /// The bytes `filter/core/src/ledger.rs` pins for the same record.
    #[test]
    fn a_full_record_serialises_to_the_filter_bytes_and_back() {
        let text = concat!(
            r#"{"id":"jti-1","time":1700000000,"decision":"issued","reason":"issued","#,
            r#""subject":"alice","client_id":"cli","plan":"gold","tenant":"acme","#,
            r#""license":"lic-1 lic-2","service":"registry.example","#,
            r#""requested":["repository:a/b:pull,push"],"granted":["repository:a/b:pull"],"#,
            r#""iat":1700000000,"exp":1700000300,"kid":"k1","binding":"jkt:abc","#,
            r#""grant":"refresh_token","refresh_token_id":"rt-1","gateway":"gw-1"}"#
        );
        let r: Record<'static> = serde_json::from_str(text).unwrap();
        r.validate().unwrap();
        assert_eq!(r.grant, Some(Grant::RefreshToken));
        assert_eq!(r.to_json().as_deref(), Some(text));
        let minimal =
            r#"{"id":"req-2","time":5,"decision":"rejected","requested":[],"granted":[]}"#;
        let r: Record<'static> = serde_json::from_str(minimal).unwrap();
        assert_eq!(r.to_json().as_deref(), Some(minimal));
    }

    #[test]
    fn jti_is_an_alias_and_lists_default_to_empty() {
        let r = parse(json!({"jti": "abc", "time": 10, "decision": "issued",
            "binding": "x5t#S256:0123", "exp": 310}))
        .unwrap();
        assert_eq!(r.id, "abc");
        assert!(r.requested.is_empty() && r.granted.is_empty());
        assert_eq!(r.exp, Some(310));
        assert_eq!(r.clone().into_owned(), r);
    }

    #[test]
    fn refusals_say_what_the_ledger_always_said() {
        let base = || json!({"id": "a", "time": 1, "decision": "issued"});
        let with = |k: &str, v: Value| {
            let mut r = base();
            r[k] = v;
            parse(r).unwrap_err()
        };
        assert_eq!(
            with("time", json!(-5)),
            "must be unix seconds, not negative"
        );
        assert_eq!(with("iat", json!(-1)), "must be unix seconds, not negative");
        assert_eq!(
            with("time", json!(9_223_372_036_854_775_808u64)),
            "invalid value: integer `9223372036854775808`, expected i64"
        );
        assert_eq!(
            with("exp", json!("soon")),
            "invalid type: string \"soon\", expected i64"
        );
        assert_eq!(with("decision", json!("granted")), Decision::EXPECTED);
        assert_eq!(with("grant", json!("implicit")), Grant::EXPECTED);
        assert_eq!(
            with("binding", json!("mtls")),
            format!("binding: {}", BindingKind::EXPECTED)
        );
        assert_eq!(with("id", json!("")), "id: must not be empty");
        assert_eq!(
            with("id", json!("x".repeat(257))),
            "id: longer than 256 bytes"
        );
        assert_eq!(
            with("subject", json!("a\nb")),
            "subject: holds a control character"
        );
        assert_eq!(
            with("requested", json!(["a b"])),
            "requested: a scope holds a space"
        );
        assert_eq!(
            with("granted", json!(vec!["s"; 65])),
            "granted: more than 64 scopes"
        );
        assert!(with("token", json!("t")).starts_with("unknown field `token`"));
        assert!(parse(json!({"time": 1, "decision": "issued"}))
            .unwrap_err()
            .starts_with("missing field `id`"));
        // Built in code rather than parsed: the range is still checked.
        let mut r = parse(base()).unwrap();
        r.time = u64::MAX;
        assert_eq!(r.validate().unwrap_err().field, "time");
    }
}
