//! The remote licence revocation list: its format, and the decision when it is stale.
//!
//! Besides the inline `revokedLicenses`, an optional list is fetched from a URL through an
//! Envoy cluster (once per process, on a period, kept in shared data, like the JWKS). A
//! failed fetch keeps the last good list. Once the list is older than `maxStaleSeconds`
//! (or was never fetched), `onStale` decides: `serve` keeps issuing with what is known,
//! `refuse` fails closed with 503.

use std::collections::HashSet;

use serde_json::Value;

/// Longest list document accepted, bytes.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;
/// Longest licence identifier accepted in a list.
pub const MAX_LICENSE_LEN: usize = 256;

/// What to do when the remote list is stale or was never fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// Keep issuing with the inline list and the last good remote list.
    Serve,
    /// Refuse every token request with 503 (fail closed).
    Refuse,
}

/// Parses a revocation list: a JSON object `{"revokedLicenses": [..]}`, a JSON array of
/// strings, or plain text with one licence per line (`#` starts a comment).
pub fn parse_list(body: &[u8]) -> Result<HashSet<String>, String> {
    if body.len() > MAX_LIST_BYTES {
        return Err(format!(
            "revocation list larger than {MAX_LIST_BYTES} bytes"
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "revocation list is not UTF-8".to_string())?;
    let trimmed = text.trim_start();
    let items: Vec<String> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("revocation list is not JSON: {e}"))?;
        let list = match &doc {
            Value::Array(a) => a,
            Value::Object(o) => o
                .get("revokedLicenses")
                .and_then(Value::as_array)
                .ok_or("revocation list object has no revokedLicenses array")?,
            _ => return Err("revocation list is neither an array nor an object".into()),
        };
        list.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "revocation list holds a non-string entry".to_string())
            })
            .collect::<Result<_, _>>()?
    } else {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let mut set = HashSet::with_capacity(items.len());
    for item in items {
        if item.is_empty() || item.len() > MAX_LICENSE_LEN || item.chars().any(char::is_control) {
            return Err("revocation list holds an empty, overlong or binary entry".into());
        }
        set.insert(item);
    }
    Ok(set)
}

/// The remote list as the request path sees it.
#[derive(Debug, Clone, Copy)]
pub enum RemoteList<'a> {
    /// No remote list is configured.
    NotConfigured,
    /// Configured, never fetched successfully.
    NeverFetched,
    /// The last good list and when it was fetched.
    Known {
        /// Revoked licences.
        licenses: &'a HashSet<String>,
        /// Fetch time, Unix seconds.
        fetched_at: u64,
    },
}

/// The outcome of the revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Not revoked (as far as is known).
    Clear,
    /// Revoked: 403.
    Revoked,
    /// The list is stale and the policy is to refuse: 503.
    ListUnavailable,
}

/// Decides whether `license` may be served.
pub fn check(
    license: Option<&str>,
    inline: &HashSet<String>,
    remote: RemoteList<'_>,
    max_stale_seconds: u64,
    on_stale: OnStale,
    now: u64,
) -> Revocation {
    if license.is_some_and(|l| inline.contains(l)) {
        return Revocation::Revoked;
    }
    match remote {
        RemoteList::NotConfigured => Revocation::Clear,
        RemoteList::NeverFetched => match on_stale {
            OnStale::Refuse => Revocation::ListUnavailable,
            OnStale::Serve => Revocation::Clear,
        },
        RemoteList::Known {
            licenses,
            fetched_at,
        } => {
            if license.is_some_and(|l| licenses.contains(l)) {
                return Revocation::Revoked;
            }
            let stale = now > fetched_at.saturating_add(max_stale_seconds);
            if stale && on_stale == OnStale::Refuse {
                Revocation::ListUnavailable
            } else {
                Revocation::Clear
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_three_formats() {
        assert_eq!(
            parse_list(br#"{"revokedLicenses":["a","b"]}"#).unwrap(),
            set(&["a", "b"])
        );
        assert_eq!(parse_list(br#"["a"]"#).unwrap(), set(&["a"]));
        assert_eq!(
            parse_list(b"# comment\na\n  b  # trailing\n\n").unwrap(),
            set(&["a", "b"])
        );
        assert!(parse_list(b"").unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_lists() {
        assert!(parse_list(br#"{"other":[]}"#).is_err());
        assert!(parse_list(br#"[1]"#).is_err());
        assert!(parse_list(br#"{"revokedLicenses":[""]}"#).is_err());
        assert!(parse_list(b"\xff\xfe").is_err());
        assert!(parse_list(br#"{"revokedLicenses":"#).is_err());
        assert!(parse_list(&vec![b'a'; MAX_LIST_BYTES + 1]).is_err());
        let long = format!("[\"{}\"]", "x".repeat(MAX_LICENSE_LEN + 1));
        assert!(parse_list(long.as_bytes()).is_err());
    }

    #[test]
    fn inline_and_remote_lists_both_revoke() {
        let inline = set(&["lic-1"]);
        let remote = set(&["lic-2"]);
        let known = RemoteList::Known {
            licenses: &remote,
            fetched_at: 100,
        };
        for (lic, want) in [
            (Some("lic-1"), Revocation::Revoked),
            (Some("lic-2"), Revocation::Revoked),
            (Some("lic-3"), Revocation::Clear),
            (None, Revocation::Clear),
        ] {
            assert_eq!(check(lic, &inline, known, 600, OnStale::Serve, 200), want);
        }
    }

    #[test]
    fn stale_list_policy() {
        let inline = HashSet::new();
        let remote = set(&["x"]);
        let known = RemoteList::Known {
            licenses: &remote,
            fetched_at: 100,
        };
        assert_eq!(
            check(Some("y"), &inline, known, 600, OnStale::Refuse, 700),
            Revocation::Clear
        );
        assert_eq!(
            check(Some("y"), &inline, known, 600, OnStale::Refuse, 701),
            Revocation::ListUnavailable
        );
        assert_eq!(
            check(Some("y"), &inline, known, 600, OnStale::Serve, 10_000),
            Revocation::Clear
        );
        // A revoked licence stays revoked even when the list is stale.
        assert_eq!(
            check(Some("x"), &inline, known, 600, OnStale::Serve, 10_000),
            Revocation::Revoked
        );
        assert_eq!(
            check(
                Some("y"),
                &inline,
                RemoteList::NeverFetched,
                600,
                OnStale::Refuse,
                0
            ),
            Revocation::ListUnavailable
        );
        assert_eq!(
            check(
                Some("y"),
                &inline,
                RemoteList::NeverFetched,
                600,
                OnStale::Serve,
                0
            ),
            Revocation::Clear
        );
    }
}
