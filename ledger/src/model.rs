//! The service's own data: a stored issuance as the API and the CSV export return it, and
//! the revocations the security team manages. The record a gateway sends, its
//! vocabularies, limits and checks are the wire contract (`registry_token_ledger_wire`,
//! built by the filter's `registry_token_core::ledger::record`).

use std::borrow::Cow;

use registry_token_ledger_wire::{
    check_text, FieldError, Record, RevocationKind, MAX_REVOCATION_VALUE_BYTES, MAX_TEXT_BYTES,
};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// A stored issuance: the record as received, plus when the ledger stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The record (owning its text).
    pub record: Record<'static>,
    /// When the ledger stored it, unix seconds.
    pub received_at: u64,
}

/// Columns of `issuances` in the order the API, the CSV export and the inserts use.
pub const ISSUANCE_COLUMNS: [&str; 22] = [
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
    "issuer",
    "policy",
];

/// One value of an issuance row, as the API's JSON and the CSV export write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'r> {
    /// Text; absent is `null` (JSON) or empty (CSV).
    Text(Option<&'r str>),
    /// Unix seconds; absent is `null` or empty.
    Seconds(Option<u64>),
    /// Scopes: a JSON array, or one CSV field joined by spaces.
    Scopes(&'r [Cow<'static, str>]),
}

impl Issuance {
    /// The row's values, in [`ISSUANCE_COLUMNS`] order.
    pub fn cells(&self) -> [Cell<'_>; ISSUANCE_COLUMNS.len()] {
        fn t<'a>(v: &'a Option<Cow<'static, str>>) -> Cell<'a> {
            Cell::Text(v.as_deref())
        }
        let r = &self.record;
        [
            Cell::Text(Some(&r.id)),
            Cell::Seconds(Some(r.time)),
            Cell::Text(Some(r.decision.as_str())),
            t(&r.reason),
            t(&r.subject),
            t(&r.client_id),
            t(&r.plan),
            t(&r.license),
            t(&r.tenant),
            t(&r.service),
            Cell::Scopes(&r.requested),
            Cell::Scopes(&r.granted),
            Cell::Seconds(r.iat),
            Cell::Seconds(r.exp),
            t(&r.kid),
            t(&r.binding),
            Cell::Text(r.grant.map(|g| g.as_str())),
            t(&r.refresh_token_id),
            t(&r.gateway),
            Cell::Seconds(Some(self.received_at)),
            t(&r.issuer),
            t(&r.policy),
        ]
    }
}

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Text(v) => v.serialize(s),
            Cell::Seconds(v) => v.serialize(s),
            Cell::Scopes(v) => v.serialize(s),
        }
    }
}

/// Every column in [`ISSUANCE_COLUMNS`] order, absent values as `null` (unlike the
/// ingest record, which omits them).
impl Serialize for Issuance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(ISSUANCE_COLUMNS.len()))?;
        for (name, cell) in ISSUANCE_COLUMNS.iter().zip(self.cells()) {
            map.serialize_entry(name, &cell)?;
        }
        map.end()
    }
}

/// Body of `POST /v1/revocations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevocation {
    /// A [`RevocationKind`] word.
    pub kind: String,
    /// The revoked value.
    pub value: String,
    /// Why (required).
    pub reason: String,
}

impl NewRevocation {
    /// Checks kind, value and reason.
    pub fn validate(&self) -> Result<(), FieldError> {
        let Some(kind) = RevocationKind::from_word(&self.kind) else {
            return Err(FieldError::new("kind", RevocationKind::EXPECTED));
        };
        if self.value.trim() != self.value {
            return Err(FieldError::new(
                "value",
                "has leading or trailing whitespace",
            ));
        }
        check_text("value", &self.value, MAX_REVOCATION_VALUE_BYTES)?;
        if self.value.contains('#') && kind == RevocationKind::License {
            // The filter's plain-text list format treats `#` as a comment.
            return Err(FieldError::new("value", "a licence must not contain #"));
        }
        if self.reason.trim().is_empty() {
            return Err(FieldError::new("reason", "must not be empty"));
        }
        check_text("reason", &self.reason, MAX_TEXT_BYTES)?;
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

/// The repository a scope names, parsed as the filter parses scopes (`type[(class)]:
/// name:actions`: the type ends at the first `:`, the actions start after the last, so a
/// name may hold `host:port`): the name of a scope of type `repository` or
/// `repository(CLASS)` (CLASS of ASCII letters and digits), if not empty. Nothing else
/// names a repository, however much of one its text holds (`x","repository:a/b:pull`
/// names none). `GET /v1/issuances?repository=` matches these names exactly; the
/// migration `0002_issuance_repositories.sql` computes the same in SQL.
pub fn scope_repository(scope: &str) -> Option<&str> {
    let first = scope.find(':')?;
    let last = scope.rfind(':')?;
    let name = scope.get(first + 1..last).filter(|n| !n.is_empty())?;
    let class = |ty: &str| {
        ty.strip_prefix("repository(")
            .and_then(|rest| rest.strip_suffix(')'))
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric()))
    };
    let ty = &scope[..first];
    (ty == "repository" || class(ty)).then_some(name)
}

/// The repositories an issuance's requested and granted scopes name, each once, in order.
pub fn record_repositories<'r>(record: &'r Record<'_>) -> Vec<&'r str> {
    let mut names: Vec<&str> = Vec::new();
    for scope in record.requested.iter().chain(&record.granted) {
        if let Some(name) = scope_repository(scope) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use registry_token_ledger_wire::{Decision, Grant};
    use serde_json::json;

    #[test]
    fn repository_of_a_scope() {
        let named = [
            ("repository:team/app:pull,push", "team/app"),
            ("repository:team/app:", "team/app"),
            ("repository(plugin):team/app:pull", "team/app"),
            ("repository(P1):team/app:pull", "team/app"),
            (
                "repository:localhost:5000/team/app:pull",
                "localhost:5000/team/app",
            ),
            (
                "repository:x\",\"repository:a/b:pull",
                "x\",\"repository:a/b",
            ),
            ("repository:ünï/cødé:pull", "ünï/cødé"),
        ];
        for (scope, name) in named {
            assert_eq!(scope_repository(scope), Some(name), "{scope}");
        }
        for scope in [
            "registry:catalog:*",
            "x\",\"repository:a/b:pull",
            "\"repository:a/b:pull",
            "REPOSITORY:a/b:pull",
            "repository:a/b",
            "repository::pull",
            "repository",
            "repository():a/b:pull",
            "repository(a-b):a/b:pull",
            "repository(:a/b:pull",
            "repository(x)y:a/b:pull",
            ":a/b:pull",
            "x:repository:a/b:pull",
        ] {
            assert_eq!(scope_repository(scope), None, "{scope}");
        }
    }

    #[test]
    fn repositories_of_a_record() {
        let record: Record<'static> = serde_json::from_value(json!({
            "id": "a", "time": 1, "decision": "issued",
            "requested": ["repository:b:pull", "x\",\"repository:v/a:pull", "repository:a:push"],
            "granted": ["repository:a:pull", "repository(plugin):c:pull"]
        }))
        .unwrap();
        assert_eq!(record_repositories(&record), ["b", "a", "c"]);
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
        assert!(r("license", "a#b", "x").is_err());
        assert!(r("subject", "a#b", "x").is_ok());
        assert_eq!(
            r("LICENSE", "a", "x").unwrap_err().message,
            "must be license, subject, refreshToken or tenant"
        );
    }

    /// The API writes every column, in column order, absent ones as `null`.
    #[test]
    fn an_issuance_is_every_column_in_order() {
        let record: Record<'static> = serde_json::from_value(json!({
            "id": "a", "time": 10, "decision": "issued", "tenant": "t", "license": "l",
            "requested": ["repository:x:pull"], "grant": "get", "exp": 310
        }))
        .unwrap();
        assert_eq!(record.decision, Decision::Issued);
        assert_eq!(record.grant, Some(Grant::Get));
        let i = Issuance {
            record,
            received_at: 11,
        };
        let text = serde_json::to_string(&i).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"id":"a","time":10,"decision":"issued","reason":null,"subject":null,"#,
                r#""client_id":null,"plan":null,"license":"l","tenant":"t","service":null,"#,
                r#""requested":["repository:x:pull"],"granted":[],"iat":null,"exp":310,"#,
                r#""kid":null,"binding":null,"grant":"get","refresh_token_id":null,"#,
                r#""gateway":null,"received_at":11,"issuer":null,"policy":null}"#
            )
        );
    }
}
