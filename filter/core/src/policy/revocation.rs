//! The remote revocation list: its forms, the sets the request path checks, and the
//! decision when the list is stale.
//!
//! Besides the inline lists (`revokedLicenses`, …), an optional list is fetched from a URL
//! through an Envoy cluster (once per process, on a period, kept in shared data, like the
//! JWKS). It comes as values (the ledger's value [`Feed`], a JSON array, plain text:
//! [`parse_lists`]) or as digests (the ledger's [`DigestFeed`], `?form=digests`); the
//! gateway keeps either as [`DigestLists`] ([`parse_remote`]), fixed-size digests in every
//! VM, and hashes the caller's identifiers only for the kinds the list holds. A failed
//! fetch keeps the last good list. Once the list is older than `maxStaleSeconds` (or was
//! never fetched), `onStale` decides: `refuseWhenStale` (the default) fails closed with 503
//! once no list was taken for `maxStaleSeconds` (since the last good one, or since the
//! gateway started), `refuse` also before the first list, `serve` never.

use std::collections::HashSet;
use std::fmt;

use registry_token_ledger_wire::MAX_FEED_DOCUMENT_BYTES;
use serde_json::{Map, Value};

/// The kinds of revocation (the ledger's vocabulary), which [`RevocationSet`] is asked by.
pub use registry_token_ledger_wire::RevocationKind;
#[cfg(doc)]
use registry_token_ledger_wire::{revocation_digest, DigestFeed, Feed};

mod digests;

use digests::digest_lists;
pub use digests::DigestLists;

/// Longest list document accepted, bytes, in any form: the ledger's digest feed at its
/// bound of active revocations fits ([`MAX_FEED_DOCUMENT_BYTES`], about 1.53 MiB).
pub const MAX_LIST_BYTES: usize = MAX_FEED_DOCUMENT_BYTES;
/// Longest licence identifier accepted in a list.
pub const MAX_LICENSE_LEN: usize = 256;

/// What to do when the remote list is stale or was never fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// Keep issuing with the inline list and the last good remote list (never refuse).
    Serve,
    /// Refuse every token request with 503 (fail closed) while no list fresher than
    /// `maxStaleSeconds` is known, including before the first one is taken.
    Refuse,
    /// Refuse with 503 once no list was taken for `maxStaleSeconds`, counted from the last
    /// good one or, before the first, from the gateway's start (which issues until then,
    /// as it always did before its first fetch). The default.
    RefuseWhenStale,
}

/// Revoked identifiers, by kind: answers whether one of the caller's is listed.
pub trait RevocationSet: fmt::Debug {
    /// Whether `value` is revoked as `kind`.
    fn contains(&self, kind: RevocationKind, value: &str) -> bool;
    /// Entries of `kind`.
    fn count(&self, kind: RevocationKind) -> usize;
}

/// Every revoked identifier the request path checks, from one source (the inline
/// configuration or a value list document).
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

    /// The set of `kind`.
    pub fn set(&self, kind: RevocationKind) -> &HashSet<String> {
        match kind {
            RevocationKind::License => &self.licenses,
            RevocationKind::Subject => &self.subjects,
            RevocationKind::RefreshToken => &self.refresh_tokens,
            RevocationKind::Tenant => &self.tenants,
        }
    }

    fn set_mut(&mut self, kind: RevocationKind) -> &mut HashSet<String> {
        match kind {
            RevocationKind::License => &mut self.licenses,
            RevocationKind::Subject => &mut self.subjects,
            RevocationKind::RefreshToken => &mut self.refresh_tokens,
            RevocationKind::Tenant => &mut self.tenants,
        }
    }

    /// The JSON object form (`{"revokedLicenses":[..],"revokedSubjects":[..],
    /// "revokedRefreshTokens":[..],"revokedTenants":[..]}`, sorted), which [`parse_lists`]
    /// reads back.
    pub fn to_document(&self) -> Value {
        let mut doc = Map::new();
        for kind in RevocationKind::ALL {
            let mut v: Vec<&String> = self.set(kind).iter().collect();
            v.sort();
            let list = v.into_iter().map(|s| Value::from(s.as_str())).collect();
            doc.insert(kind.feed_key().to_string(), Value::Array(list));
        }
        Value::Object(doc)
    }
}

impl RevocationSet for RevokedLists {
    fn contains(&self, kind: RevocationKind, value: &str) -> bool {
        self.set(kind).contains(value)
    }

    fn count(&self, kind: RevocationKind) -> usize {
        self.set(kind).len()
    }
}

/// Parses a value revocation list: a JSON object with any of `revokedLicenses`,
/// `revokedSubjects`, `revokedRefreshTokens`, `revokedTenants` (arrays of strings; at
/// least one present), a JSON array of strings (licences), or plain text with one licence
/// per line (`#` starts a comment). The digest form names no values and is refused here
/// (see [`parse_remote`]).
pub fn parse_lists(body: &[u8]) -> Result<RevokedLists, String> {
    match parse_document(body)? {
        Parsed::Values(lists) => Ok(lists),
        Parsed::Digests(_) => Err(
            "revocation list is the digest form (it names no values): give the value form \
             (the ledger's feed without ?form=digests)"
                .into(),
        ),
    }
}

/// Parses a remote revocation list in any form: the digest form (a JSON object with a
/// `digest` member, [`DigestFeed`]) or a value form ([`parse_lists`]), into the digests
/// the gateway keeps.
pub fn parse_remote(body: &[u8]) -> Result<DigestLists, String> {
    match parse_document(body)? {
        Parsed::Values(lists) => Ok(DigestLists::from_values(&lists)),
        Parsed::Digests(lists) => Ok(lists),
    }
}

/// A list document, by form.
enum Parsed {
    Values(RevokedLists),
    Digests(DigestLists),
}

fn parse_document(body: &[u8]) -> Result<Parsed, String> {
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
        match doc {
            Value::Array(a) => lists.licenses = entries(&a)?,
            Value::Object(o) if o.contains_key("digest") => {
                return digest_lists(&o).map(Parsed::Digests)
            }
            Value::Object(o) => {
                if !RevocationKind::ALL
                    .iter()
                    .any(|k| o.contains_key(k.feed_key()))
                {
                    return Err(
                        "revocation list object has none of revokedLicenses, revokedSubjects, revokedRefreshTokens, revokedTenants"
                            .into(),
                    );
                }
                for kind in RevocationKind::ALL {
                    let key = kind.feed_key();
                    if let Some(v) = o.get(key) {
                        let a = v
                            .as_array()
                            .ok_or_else(|| format!("revocation list {key} is not an array"))?;
                        *lists.set_mut(kind) = entries(a)?;
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
    Ok(Parsed::Values(lists))
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
    /// Configured, never fetched successfully (and no start time to count from: never
    /// stale; `refuse` refuses).
    NeverFetched,
    /// Configured, not fetched successfully since the gateway started at `since` (Unix
    /// seconds): stale `maxStaleSeconds` after it.
    NotYetFetched {
        /// When this gateway started.
        since: u64,
    },
    /// The last good list and when it was fetched.
    Known {
        /// Revoked licences, subjects, refresh-token ids and tenants ([`DigestLists`] in
        /// the gateway, [`RevokedLists`] where the values are at hand).
        lists: &'a dyn RevocationSet,
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
    /// The list was never fetched, or is older than `maxStaleSeconds`, and the policy is
    /// to refuse: 503 ([`unavailable_is_stale`] tells the two apart).
    ListUnavailable,
}

/// Whether a [`Revocation::ListUnavailable`] of `remote` under `on_stale` is a stale list
/// (`revocation_stale`: none taken for `maxStaleSeconds`) rather than one not fetched yet
/// (`revocation_unavailable`, `refuse` before the first list).
pub fn unavailable_is_stale(remote: RemoteList<'_>, on_stale: OnStale) -> bool {
    match remote {
        RemoteList::Known { .. } => true,
        RemoteList::NotYetFetched { .. } => on_stale == OnStale::RefuseWhenStale,
        RemoteList::NotConfigured | RemoteList::NeverFetched => false,
    }
}

fn revoked_by(lists: &dyn RevocationSet, ids: &Identifiers<'_>) -> Option<Revoked> {
    let hit = |kind, id: Option<&str>| id.is_some_and(|i| lists.contains(kind, i));
    if hit(RevocationKind::RefreshToken, ids.refresh_token_id) {
        Some(Revoked::RefreshToken)
    } else if hit(RevocationKind::Subject, ids.subject) {
        Some(Revoked::Subject)
    } else if hit(RevocationKind::Tenant, ids.tenant) {
        Some(Revoked::Tenant)
    } else if ids
        .licenses
        .iter()
        .any(|l| lists.contains(RevocationKind::License, l))
    {
        Some(Revoked::License)
    } else {
        None
    }
}

/// Whether a list fetched at `fetched_at` is past `max_stale_seconds` at `now`.
pub fn is_stale(fetched_at: u64, max_stale_seconds: u64, now: u64) -> bool {
    now > fetched_at.saturating_add(max_stale_seconds)
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
    let refuse_if = |unavailable: bool| {
        if unavailable {
            Revocation::ListUnavailable
        } else {
            Revocation::Clear
        }
    };
    match remote {
        RemoteList::NotConfigured => Revocation::Clear,
        RemoteList::NeverFetched => refuse_if(on_stale == OnStale::Refuse),
        RemoteList::NotYetFetched { since } => match on_stale {
            OnStale::Refuse => Revocation::ListUnavailable,
            OnStale::Serve => Revocation::Clear,
            OnStale::RefuseWhenStale => refuse_if(is_stale(since, max_stale_seconds, now)),
        },
        RemoteList::Known { lists, fetched_at } => {
            if let Some(r) = revoked_by(lists, ids) {
                return Revocation::Revoked(r);
            }
            refuse_if(on_stale != OnStale::Serve && is_stale(fetched_at, max_stale_seconds, now))
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
    fn refuse_when_stale_counts_from_the_start_before_the_first_list() {
        let inline = RevokedLists::default();
        let starting = RemoteList::NotYetFetched { since: 100 };
        let at = |on_stale, now| check(&lic(Some("y")), &inline, starting, 600, on_stale, now);
        // The default issues before the first list, for maxStaleSeconds from the start.
        assert_eq!(at(OnStale::RefuseWhenStale, 700), Revocation::Clear);
        assert_eq!(
            at(OnStale::RefuseWhenStale, 701),
            Revocation::ListUnavailable
        );
        assert!(unavailable_is_stale(starting, OnStale::RefuseWhenStale));
        // refuse refuses at once (not fetched yet), serve never.
        assert_eq!(at(OnStale::Refuse, 100), Revocation::ListUnavailable);
        assert!(!unavailable_is_stale(starting, OnStale::Refuse));
        assert_eq!(at(OnStale::Serve, 1_000_000), Revocation::Clear);
        // A list past maxStaleSeconds: refused by both refusing policies, as stale.
        let remote = licences(&["x"]);
        let known = RemoteList::Known {
            lists: &remote,
            fetched_at: 100,
        };
        for on_stale in [OnStale::Refuse, OnStale::RefuseWhenStale] {
            let c = |now| check(&lic(Some("y")), &inline, known, 600, on_stale, now);
            assert_eq!(c(700), Revocation::Clear);
            assert_eq!(c(701), Revocation::ListUnavailable);
            assert!(unavailable_is_stale(known, on_stale));
        }
        // Without a start time (the CLI), only refuse refuses.
        let never = |on_stale| {
            check(
                &lic(Some("y")),
                &inline,
                RemoteList::NeverFetched,
                600,
                on_stale,
                9_999,
            )
        };
        assert_eq!(never(OnStale::RefuseWhenStale), Revocation::Clear);
        assert_eq!(never(OnStale::Refuse), Revocation::ListUnavailable);
        assert!(!unavailable_is_stale(
            RemoteList::NeverFetched,
            OnStale::Refuse
        ));
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
