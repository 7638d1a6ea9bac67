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

/// Every revoked identifier the request path checks, from one source (the inline
/// configuration or the remote list document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedLists {
    /// `stellaops:license` values (`revokedLicenses`).
    pub licenses: HashSet<String>,
    /// Subjects (`sub`) refused whatever their credential (`revokedSubjects`).
    pub subjects: HashSet<String>,
    /// Refresh-token ids (`revokedRefreshTokens`).
    pub refresh_tokens: HashSet<String>,
    /// Tenants (the OpToken's `authority.tenantClaim`, or the refresh token's tenant)
    /// refused (`revokedTenants`).
    pub tenants: HashSet<String>,
}

impl RevokedLists {
    /// Total number of entries.
    pub fn len(&self) -> usize {
        self.licenses.len() + self.subjects.len() + self.refresh_tokens.len() + self.tenants.len()
    }

    /// No entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON object form (`{"revokedLicenses":[..],"revokedSubjects":[..],
    /// "revokedRefreshTokens":[..],"revokedTenants":[..]}`, sorted), which [`parse_lists`] reads back: the glue
    /// can keep the list in shared data in this form.
    pub fn to_document(&self) -> Value {
        let sorted = |set: &HashSet<String>| {
            let mut v: Vec<&String> = set.iter().collect();
            v.sort();
            Value::from(
                v.into_iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect::<Vec<_>>(),
            )
        };
        serde_json::json!({
            "revokedLicenses": sorted(&self.licenses),
            "revokedSubjects": sorted(&self.subjects),
            "revokedRefreshTokens": sorted(&self.refresh_tokens),
            "revokedTenants": sorted(&self.tenants),
        })
    }
}

/// The keys of the object form, in the order of [`RevokedLists`]' fields.
const LIST_KEYS: [&str; 4] = [
    "revokedLicenses",
    "revokedSubjects",
    "revokedRefreshTokens",
    "revokedTenants",
];

/// Parses a revocation list: a JSON object with any of `revokedLicenses`,
/// `revokedSubjects`, `revokedRefreshTokens`, `revokedTenants` (arrays of strings; at
/// least one present), a
/// JSON array of strings (licences), or plain text with one licence per line (`#` starts
/// a comment).
pub fn parse_lists(body: &[u8]) -> Result<RevokedLists, String> {
    if body.len() > MAX_LIST_BYTES {
        return Err(format!(
            "revocation list larger than {MAX_LIST_BYTES} bytes"
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| "revocation list is not UTF-8".to_string())?;
    let trimmed = text.trim_start();
    let mut lists = RevokedLists::default();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("revocation list is not JSON: {e}"))?;
        match &doc {
            Value::Array(a) => lists.licenses = entries(a)?,
            Value::Object(o) => {
                if !LIST_KEYS.iter().any(|k| o.contains_key(*k)) {
                    return Err(
                        "revocation list object has none of revokedLicenses, revokedSubjects, revokedRefreshTokens, revokedTenants"
                            .into(),
                    );
                }
                let sets = [
                    &mut lists.licenses,
                    &mut lists.subjects,
                    &mut lists.refresh_tokens,
                    &mut lists.tenants,
                ];
                for (key, set) in LIST_KEYS.iter().zip(sets) {
                    if let Some(v) = o.get(*key) {
                        let a = v
                            .as_array()
                            .ok_or_else(|| format!("revocation list {key} is not an array"))?;
                        *set = entries(a)?;
                    }
                }
            }
            _ => return Err("revocation list is neither an array nor an object".into()),
        }
    } else {
        let lines: Vec<Value> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(Value::from)
            .collect();
        lists.licenses = entries(&lines)?;
    }
    Ok(lists)
}

/// The licences of a revocation list (see [`parse_lists`] for all three sets).
pub fn parse_list(body: &[u8]) -> Result<HashSet<String>, String> {
    parse_lists(body).map(|l| l.licenses)
}

fn entries(list: &[Value]) -> Result<HashSet<String>, String> {
    let mut set = HashSet::with_capacity(list.len());
    for v in list {
        let item = v
            .as_str()
            .ok_or_else(|| "revocation list holds a non-string entry".to_string())?;
        if item.is_empty() || item.len() > MAX_LICENSE_LEN || item.chars().any(char::is_control) {
            return Err("revocation list holds an empty, overlong or binary entry".into());
        }
        set.insert(item.to_string());
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
        /// Revoked licences, subjects and refresh-token ids.
        lists: &'a RevokedLists,
        /// Fetch time, Unix seconds.
        fetched_at: u64,
    },
}

/// What is checked against the lists: the caller's identifiers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identifiers<'a> {
    /// `stellaops:license`: every one listed (none, one, or several).
    pub licenses: &'a [String],
    /// The subject.
    pub subject: Option<&'a str>,
    /// The id of the refresh token presented (refresh grant only).
    pub refresh_token_id: Option<&'a str>,
    /// The caller's tenant, as presented (compared exactly, valid or not).
    pub tenant: Option<&'a str>,
}

/// Which list revoked the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The licence.
    License,
    /// The subject.
    Subject,
    /// The refresh token's id.
    RefreshToken,
    /// The tenant.
    Tenant,
}

/// The outcome of the revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Not revoked (as far as is known).
    Clear,
    /// Revoked.
    Revoked(Revoked),
    /// The list is stale and the policy is to refuse: 503.
    ListUnavailable,
}

fn revoked_by(lists: &RevokedLists, ids: &Identifiers<'_>) -> Option<Revoked> {
    let hit = |set: &HashSet<String>, id: Option<&str>| id.is_some_and(|i| set.contains(i));
    if hit(&lists.refresh_tokens, ids.refresh_token_id) {
        Some(Revoked::RefreshToken)
    } else if hit(&lists.subjects, ids.subject) {
        Some(Revoked::Subject)
    } else if hit(&lists.tenants, ids.tenant) {
        Some(Revoked::Tenant)
    } else if ids.licenses.iter().any(|l| lists.licenses.contains(l)) {
        Some(Revoked::License)
    } else {
        None
    }
}

/// Decides whether the caller may be served: inline lists first, then the remote list
/// (a revoked entry stays revoked even when the list is stale).
pub fn check(
    ids: &Identifiers<'_>,
    inline: &RevokedLists,
    remote: RemoteList<'_>,
    max_stale_seconds: u64,
    on_stale: OnStale,
    now: u64,
) -> Revocation {
    if let Some(r) = revoked_by(inline, ids) {
        return Revocation::Revoked(r);
    }
    match remote {
        RemoteList::NotConfigured => Revocation::Clear,
        RemoteList::NeverFetched => match on_stale {
            OnStale::Refuse => Revocation::ListUnavailable,
            OnStale::Serve => Revocation::Clear,
        },
        RemoteList::Known { lists, fetched_at } => {
            if let Some(r) = revoked_by(lists, ids) {
                return Revocation::Revoked(r);
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

    /// A licence list of none or one (leaked: test-only, small).
    fn licenses(license: Option<&str>) -> &'static [String] {
        Box::leak(
            license
                .map(|l| vec![l.to_string()])
                .unwrap_or_default()
                .into_boxed_slice(),
        )
    }

    fn lic(license: Option<&str>) -> Identifiers<'static> {
        Identifiers {
            licenses: licenses(license),
            ..Identifiers::default()
        }
    }

    #[test]
    fn parses_all_three_sets_and_round_trips() {
        let doc = br#"{"revokedSubjects":["bob"],"revokedRefreshTokens":["rt-1","rt-2"]}"#;
        let lists = parse_lists(doc).unwrap();
        assert!(lists.licenses.is_empty());
        assert_eq!(lists.subjects, set(&["bob"]));
        assert_eq!(lists.refresh_tokens, set(&["rt-1", "rt-2"]));
        assert_eq!(lists.len(), 3);
        let again = parse_lists(lists.to_document().to_string().as_bytes()).unwrap();
        assert_eq!(again, lists);
        assert!(parse_lists(br#"{"revokedSubjects":"bob"}"#).is_err());
        assert!(parse_lists(br#"{"revokedSubjects":[""]}"#).is_err());
    }

    #[test]
    fn each_identifier_is_checked_against_its_own_set() {
        let lists = RevokedLists {
            licenses: set(&["L"]),
            subjects: set(&["S"]),
            refresh_tokens: set(&["R"]),
            tenants: set(&["T"]),
        };
        let none = RevokedLists::default();
        let ids = |license, subject, refresh_token_id| Identifiers {
            licenses: licenses(license),
            subject,
            refresh_token_id,
            tenant: None,
        };
        let tenant = |t| Identifiers {
            tenant: Some(t),
            ..Identifiers::default()
        };
        for (who, want) in [
            (
                ids(Some("L"), Some("x"), None),
                Revocation::Revoked(Revoked::License),
            ),
            (
                ids(None, Some("S"), None),
                Revocation::Revoked(Revoked::Subject),
            ),
            (
                ids(None, None, Some("R")),
                Revocation::Revoked(Revoked::RefreshToken),
            ),
            (ids(Some("S"), Some("L"), Some("x")), Revocation::Clear),
            (tenant("T"), Revocation::Revoked(Revoked::Tenant)),
            // Exact comparison: no case folding, no prefix.
            (tenant("t"), Revocation::Clear),
            (tenant("T2"), Revocation::Clear),
            (ids(None, Some("T"), Some("T")), Revocation::Clear),
        ] {
            assert_eq!(
                check(
                    &who,
                    &lists,
                    RemoteList::NotConfigured,
                    1,
                    OnStale::Serve,
                    0
                ),
                want
            );
            let remote = RemoteList::Known {
                lists: &lists,
                fetched_at: 0,
            };
            assert_eq!(check(&who, &none, remote, 1, OnStale::Serve, 0), want);
        }
    }

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Lists revoking only these licences.
    fn licences(l: &[&str]) -> RevokedLists {
        RevokedLists {
            licenses: set(l),
            ..RevokedLists::default()
        }
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
        let inline = RevokedLists {
            licenses: set(&["lic-1"]),
            ..RevokedLists::default()
        };
        let remote = licences(&["lic-2"]);
        let known = RemoteList::Known {
            lists: &remote,
            fetched_at: 100,
        };
        for (l, want) in [
            (Some("lic-1"), Revocation::Revoked(Revoked::License)),
            (Some("lic-2"), Revocation::Revoked(Revoked::License)),
            (Some("lic-3"), Revocation::Clear),
            (None, Revocation::Clear),
        ] {
            assert_eq!(
                check(&lic(l), &inline, known, 600, OnStale::Serve, 200),
                want
            );
        }
    }

    #[test]
    fn stale_list_policy() {
        let inline = RevokedLists::default();
        let remote = licences(&["x"]);
        let known = RemoteList::Known {
            lists: &remote,
            fetched_at: 100,
        };
        assert_eq!(
            check(&lic(Some("y")), &inline, known, 600, OnStale::Refuse, 700),
            Revocation::Clear
        );
        assert_eq!(
            check(&lic(Some("y")), &inline, known, 600, OnStale::Refuse, 701),
            Revocation::ListUnavailable
        );
        assert_eq!(
            check(&lic(Some("y")), &inline, known, 600, OnStale::Serve, 10_000),
            Revocation::Clear
        );
        // A revoked licence stays revoked even when the list is stale.
        assert_eq!(
            check(&lic(Some("x")), &inline, known, 600, OnStale::Serve, 10_000),
            Revocation::Revoked(Revoked::License)
        );
        assert_eq!(
            check(
                &lic(Some("y")),
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
                &lic(Some("y")),
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
