//! Remote documents (the JWKS, the revocation list): discovery parsing, the shared-data
//! records that every worker of the process reads, and the schedule that decides when one
//! VM fetches for all.
//!
//! Shared data is process-wide per `vm_id` with compare-and-swap and no expiry. One key
//! holds the last good document ([`FetchRecord`]); another holds the fetch lease
//! ([`Lease`]), taken with CAS so that one VM of the process fetches while the others
//! wait; a third holds the time of the last "unknown kid" request for an early refresh.
//! A revocation list, which can be large, is kept under a fourth key
//! ([`SharedKeys::list`]) and its record holds only a [`ListSummary`]: every VM reads the
//! record on every tick and request, and the list itself only when its tag changed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::token::keys::KeySet;
use crate::wire::url::HttpUrl;

/// Shared-data key prefix; the metadata URL follows so two configurations never collide.
pub const SHARED_PREFIX: &str = "registry-token-filter/v1/";
/// Lease duration: a fetcher that vanished is replaced after this long.
pub const LEASE_SECONDS: u64 = 15;
/// Smallest interval between two fetches triggered by unknown `kid`s.
pub const UNKNOWN_KID_MIN_INTERVAL_SECONDS: u64 = 30;
/// Retry interval while no JWKS has ever been fetched, or after a failure.
pub const RETRY_SECONDS: u64 = 5;
/// Largest discovery document or JWKS accepted, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Shared-data key names for one metadata URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    /// The last good document.
    pub document: String,
    /// The fetch lease.
    pub lease: String,
    /// The last unknown-kid request.
    pub wanted: String,
    /// A revocation list's document (its record holds a [`ListSummary`]).
    pub list: String,
}

impl SharedKeys {
    /// Keys for a URL.
    pub fn for_url(url: &HttpUrl) -> SharedKeys {
        let base = format!("{SHARED_PREFIX}{}{}", url.as_string(), url.query);
        SharedKeys {
            document: format!("{base}#document"),
            lease: format!("{base}#lease"),
            wanted: format!("{base}#wanted"),
            list: format!("{base}#list"),
        }
    }
}

/// The last good copy of a fetched document (the JWKS, or the revocation list as a JSON
/// array) with its fetch time and the last attempt's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// When the document was fetched (Unix seconds).
    pub fetched_at: u64,
    /// The document; `null` while nothing was ever fetched.
    pub document: Value,
    /// When the last attempt (good or bad) ended.
    #[serde(default)]
    pub attempted_at: u64,
    /// The last attempt's error, if it failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last successful fetch held no usable key: the Authority withdrew its keys, and
    /// nothing (not even an older document) is trusted until it publishes one again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
}

impl FetchRecord {
    /// Serialized form for shared data.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the shared-data bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<FetchRecord> {
        serde_json::from_slice(bytes).ok()
    }

    /// The parsed key set.
    pub fn key_set(&self) -> Result<KeySet, String> {
        KeySet::from_jwks(&self.document).map_err(|e| e.to_string())
    }

    /// Whether the last successful fetch is older than `max_stale_seconds` at `now`
    /// (never, while nothing was ever fetched).
    pub fn stale(&self, now: u64, max_stale_seconds: u64) -> bool {
        !self.document.is_null() && now.saturating_sub(self.fetched_at) > max_stale_seconds
    }
}

/// What the record of a revocation list holds as its `document`: the list itself is under
/// [`SharedKeys::list`] (the digest form), named by its tag. Read and written by hand (no
/// serde derive: its code for `Value` would grow the module for three fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSummary {
    /// [`list_tag`] of the list's bytes: a VM re-reads the list only when it changes.
    pub tag: String,
    /// Entries of the list.
    pub entries: u64,
    /// Bytes of the list as kept.
    pub bytes: u64,
}

impl ListSummary {
    /// The summary in a record's `document`, if it is one (an older module kept the list
    /// itself there).
    pub fn from_document(document: &Value) -> Option<ListSummary> {
        Some(ListSummary {
            tag: document.get("tag")?.as_str()?.to_string(),
            entries: document.get("entries")?.as_u64()?,
            bytes: document.get("bytes")?.as_u64()?,
        })
    }

    /// The record's `document`: `{"tag": …, "entries": …, "bytes": …}`.
    pub fn to_document(&self) -> Value {
        let mut doc = serde_json::Map::new();
        doc.insert("tag".into(), Value::from(self.tag.as_str()));
        doc.insert("entries".into(), Value::from(self.entries));
        doc.insert("bytes".into(), Value::from(self.bytes));
        Value::Object(doc)
    }
}

/// The tag of a kept list: base64url of the first 96 bits of its SHA-256.
pub fn list_tag(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    crate::wire::b64::url_encode(&digest[..12])
}

/// A fetch lease: the VM holding it fetches until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Expiry (Unix seconds).
    pub until: u64,
}

impl Lease {
    /// Serialized form.
    pub fn to_bytes(self) -> Vec<u8> {
        self.until.to_string().into_bytes()
    }

    /// Parses shared-data bytes (garbage counts as expired).
    pub fn from_bytes(bytes: &[u8]) -> Lease {
        let until = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Lease { until }
    }

    /// Whether the lease is still held at `now`.
    pub fn held(self, now: u64) -> bool {
        now < self.until
    }
}

/// Whether a fetch is due at `now`.
///
/// - Nothing fetched yet: every [`RETRY_SECONDS`] (measured from the last attempt).
/// - Last attempt failed: retry every [`RETRY_SECONDS`], keep serving the last good set.
/// - Keys withdrawn (the last fetch held no usable key): retry every [`RETRY_SECONDS`],
///   so that keys published again are picked up quickly.
/// - Otherwise: when `refresh_seconds` have passed since the last good fetch, or when an
///   unknown `kid` was seen after the last fetch and [`UNKNOWN_KID_MIN_INTERVAL_SECONDS`]
///   have passed since it.
pub fn fetch_due(
    now: u64,
    record: Option<&FetchRecord>,
    refresh_seconds: u64,
    unknown_kid_at: Option<u64>,
) -> bool {
    let Some(r) = record else {
        return true;
    };
    if r.last_error.is_some() || r.document.is_null() || r.withdrawn {
        return now >= r.attempted_at.saturating_add(RETRY_SECONDS);
    }
    if now >= r.fetched_at.saturating_add(refresh_seconds) {
        return true;
    }
    match unknown_kid_at {
        Some(t) if t >= r.fetched_at => {
            now >= r
                .fetched_at
                .max(r.attempted_at)
                .saturating_add(UNKNOWN_KID_MIN_INTERVAL_SECONDS)
        }
        _ => false,
    }
}

/// Reads `jwks_uri` from an OIDC / OAuth 2.0 authorization server metadata document and
/// checks that its `issuer` is the configured one (OIDC Discovery §4.3, RFC 8414 §3.3).
pub fn parse_discovery(body: &[u8], expected_issuer: &str) -> Result<HttpUrl, String> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "metadata document larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("metadata is not JSON: {e}"))?;
    let issuer = doc
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("metadata has no issuer")?;
    if issuer != expected_issuer {
        return Err(format!(
            "metadata issuer {issuer:?} differs from authority.issuer {expected_issuer:?}"
        ));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("metadata has no jwks_uri")?;
    HttpUrl::parse_keeping_query(uri).map_err(|e| format!("jwks_uri {e}"))
}

/// Parses and checks a fetched JWKS document. An error means the fetch failed (not JSON,
/// no `keys` array, a malformed key): the last good set stays. A well-formed document
/// whose set is empty (`{"keys":[]}`, or only keys this filter cannot use) is a
/// successful fetch in which the Authority withdrew its keys: the caller records that
/// instead of keeping the last good set.
pub fn parse_jwks(body: &[u8]) -> Result<(Value, KeySet), String> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("JWKS larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let set = KeySet::from_jwks(&doc).map_err(|e| format!("JWKS refused: {e}"))?;
    Ok((doc, set))
}

/// The `:authority` and `:path` (query included) for an HTTP call to `url` through a
/// cluster.
pub fn call_target(url: &HttpUrl) -> (String, String) {
    let authority = match url.port {
        Some(p) => format!("{}:{p}", url.host),
        None => url.host.clone(),
    };
    (authority, url.path_and_query())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good(fetched_at: u64) -> FetchRecord {
        FetchRecord {
            fetched_at,
            document: json!({"keys": []}),
            attempted_at: fetched_at,
            last_error: None,
            withdrawn: false,
        }
    }

    #[test]
    fn nothing_fetched_is_always_due() {
        assert!(fetch_due(0, None, 300, None));
        assert!(fetch_due(1_000, None, 300, Some(5)));
    }

    #[test]
    fn periodic_refresh() {
        let r = good(1_000);
        assert!(!fetch_due(1_000, Some(&r), 300, None));
        assert!(!fetch_due(1_299, Some(&r), 300, None));
        assert!(fetch_due(1_300, Some(&r), 300, None));
    }

    #[test]
    fn unknown_kid_refresh_is_rate_limited() {
        let r = good(1_000);
        // Seen after the fetch: due once the minimum interval has passed.
        assert!(!fetch_due(1_010, Some(&r), 300, Some(1_005)));
        assert!(fetch_due(1_030, Some(&r), 300, Some(1_005)));
        // Seen before the last fetch: already answered by it.
        assert!(!fetch_due(1_100, Some(&r), 300, Some(999)));
    }

    #[test]
    fn failures_retry_and_keep_the_last_good_set() {
        let mut r = good(1_000);
        r.attempted_at = 1_400;
        r.last_error = Some("HTTP 503".into());
        assert!(!fetch_due(1_404, Some(&r), 300, None));
        assert!(fetch_due(1_405, Some(&r), 300, None));
        let bytes = r.to_bytes();
        let back = FetchRecord::from_bytes(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.document, json!({"keys": []}));
    }

    #[test]
    fn never_fetched_but_failed_retries() {
        let r = FetchRecord {
            fetched_at: 0,
            document: Value::Null,
            attempted_at: 50,
            last_error: Some("down".into()),
            withdrawn: false,
        };
        assert!(!fetch_due(54, Some(&r), 300, None));
        assert!(fetch_due(55, Some(&r), 300, None));
    }

    #[test]
    fn lease_encoding_and_expiry() {
        let l = Lease { until: 120 };
        assert_eq!(Lease::from_bytes(&l.to_bytes()), l);
        assert!(l.held(119));
        assert!(!l.held(120));
        assert!(!Lease::from_bytes(b"garbage").held(0));
    }

    #[test]
    fn discovery_checks_the_issuer_and_reads_jwks_uri() {
        let doc = json!({"issuer": "https://a.example", "jwks_uri": "https://a.example/jwks?x=1"});
        let url = parse_discovery(doc.to_string().as_bytes(), "https://a.example").unwrap();
        assert_eq!(url.as_string(), "https://a.example/jwks");
        assert_eq!(
            call_target(&url),
            ("a.example".to_string(), "/jwks?x=1".to_string())
        );
        assert!(
            parse_discovery(doc.to_string().as_bytes(), "https://b.example")
                .unwrap_err()
                .contains("differs")
        );
        assert!(parse_discovery(b"{}", "https://a.example").is_err());
        assert!(parse_discovery(b"not json", "https://a.example").is_err());
        let no_jwks = json!({"issuer": "https://a.example"});
        assert!(
            parse_discovery(no_jwks.to_string().as_bytes(), "https://a.example")
                .unwrap_err()
                .contains("jwks_uri")
        );
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(parse_discovery(&big, "https://a.example").is_err());
    }

    #[test]
    fn call_target_keeps_non_default_ports() {
        let url = HttpUrl::parse(
            "http://127.0.0.1:8443/.well-known/openid-configuration",
            false,
        )
        .unwrap();
        assert_eq!(
            call_target(&url),
            (
                "127.0.0.1:8443".to_string(),
                "/.well-known/openid-configuration".to_string()
            )
        );
    }

    #[test]
    fn an_empty_or_unusable_jwks_is_a_good_fetch_of_no_key() {
        // Fetched fine, nothing usable: the Authority withdrew its keys (not a failure).
        let (_, set) = parse_jwks(br#"{"keys": []}"#).unwrap();
        assert!(set.is_empty());
        let unusable = br#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#;
        let (_, set) = parse_jwks(unusable).unwrap();
        assert!(set.is_empty());
        // Not a JWKS at all, or one publishing a secret: the fetch failed.
        assert!(parse_jwks(br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#).is_err());
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"nope").is_err());
        assert!(parse_jwks(br#"{"nokeys": 1}"#).is_err());
    }

    #[test]
    fn withdrawn_keys_are_fetched_again_every_retry_interval() {
        let mut r = good(1_000);
        r.withdrawn = true;
        assert!(!fetch_due(1_004, Some(&r), 300, None));
        assert!(fetch_due(1_005, Some(&r), 300, None));
        let back = FetchRecord::from_bytes(&r.to_bytes()).unwrap();
        assert!(back.withdrawn);
        // Older records (no field) read as not withdrawn.
        let old = br#"{"fetched_at":5,"document":{"keys":[]},"attempted_at":5}"#;
        assert!(!FetchRecord::from_bytes(old).unwrap().withdrawn);
    }

    #[test]
    fn staleness_counts_from_the_last_good_fetch() {
        let mut r = good(1_000);
        r.attempted_at = 1_090;
        r.last_error = Some("down".into());
        assert!(!r.stale(1_060, 60));
        assert!(r.stale(1_061, 60));
        let never = FetchRecord {
            fetched_at: 0,
            document: Value::Null,
            attempted_at: 50,
            last_error: Some("down".into()),
            withdrawn: false,
        };
        assert!(!never.stale(1_000_000, 60));
    }

    #[test]
    fn a_list_summary_is_told_from_a_kept_list() {
        let summary = ListSummary {
            tag: list_tag(b"{}"),
            entries: 3,
            bytes: 2,
        };
        assert_eq!(summary.tag.len(), 16);
        assert_ne!(summary.tag, list_tag(b"{ }"));
        let doc = summary.to_document();
        assert_eq!(doc, json!({"tag": summary.tag, "entries": 3, "bytes": 2}));
        assert_eq!(ListSummary::from_document(&doc), Some(summary));
        assert_eq!(
            ListSummary::from_document(&json!({"revokedLicenses": []})),
            None
        );
    }

    #[test]
    fn shared_keys_differ_per_metadata_url() {
        let a = SharedKeys::for_url(&HttpUrl::parse("https://a.example/m", false).unwrap());
        let b = SharedKeys::for_url(&HttpUrl::parse("https://b.example/m", false).unwrap());
        assert_ne!(a.document, b.document);
        assert_ne!(a.lease, a.document);
        assert_ne!(a.list, a.document);
        assert!(a.document.starts_with(SHARED_PREFIX));
    }
}
