//! The remote documents one VM fetches for the whole process (the Authority's JWKS through
//! discovery, the revocation list), written against the [`Host`] traits.
//!
//! - [`Fetcher`] (one per VM and configuration, driven by the root context's tick and its
//!   HTTP call answers): decides when a fetch is due ([`remote::fetch_due`]), takes the
//!   process-wide lease with compare-and-swap so that one VM fetches, chains discovery →
//!   JWKS, and writes a [`FetchRecord`] to shared data: the new document on success, the
//!   last good one with the error on failure, and a withdrawal when the Authority answers
//!   with a JWKS holding no usable key. A revocation list, in any form, is kept in its
//!   digest form under its own key; its record holds a [`ListSummary`].
//! - [`JwksCopy`] and [`ListCopy`] (read on the request path and, for the list, on every
//!   tick): this VM's parsed copy of the shared record, re-parsed only when its CAS
//!   changes; the list itself is read only when its tag changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use registry_token_core::config::{Config, KeySource};
use registry_token_core::policy::revocation::{self, DigestLists, OnStale};
use registry_token_core::remote::{self, FetchRecord, Lease, ListSummary, SharedKeys};
use registry_token_core::token::keys::KeySet;
use registry_token_core::wire::url::HttpUrl;

use crate::host::{Clock, Host, HttpCalls, SharedData};

/// How much earlier than `revocation.refreshSeconds` after the last fetch the list is
/// fetched again: the tick (1 s at most), whole-second times (1 s) and a worker's look at
/// the shared list (once a second) fall inside the period, so an entry added to the list
/// is enforced within `refreshSeconds` of being added (while a fetch takes under half a
/// second).
pub const LIST_REFRESH_LEAD_SECONDS: u64 = 3;

/// Timeout of one metadata, JWKS or revocation-list call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What an in-flight call is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The discovery (metadata) document of issuer `n` (0: `authority`, `i + 1`:
    /// `issuers[i]`).
    Discovery(usize),
    /// The JWKS named by the discovery document of issuer `n`.
    Jwks(usize),
    /// The revocation list.
    Revocation,
}

impl Pending {
    fn what(self) -> &'static str {
        match self {
            Pending::Discovery(_) => "metadata",
            Pending::Jwks(_) => "JWKS",
            Pending::Revocation => "revocation list",
        }
    }
}

/// A remote document to keep fresh.
#[derive(Debug, Clone)]
struct Target {
    shared: SharedKeys,
    url: HttpUrl,
    cluster: String,
    refresh_seconds: u64,
    headers: Vec<(String, String)>,
    /// A revocation list's `maxStaleSeconds` and `onStale` (for the failure log).
    stale: Option<(u64, OnStale)>,
    /// The issuer a discovery document must name (JWKS targets).
    issuer: String,
}

/// The fetch schedule of one VM for one configuration.
#[derive(Debug)]
pub struct Fetcher {
    /// Remote key sources by issuer index (0: `authority`, `i + 1`: `issuers[i]`): one
    /// fetch per issuer per process, each under its own shared-data keys.
    jwks: Vec<Option<Target>>,
    revocation: Option<Target>,
    pending: HashMap<u32, Pending>,
}

/// The remote key source of one issuer, as a fetch target.
fn jwks_target(issuer: &str, keys: &KeySource) -> Option<Target> {
    match keys {
        KeySource::Inline(_) => None,
        KeySource::Remote {
            metadata_url,
            cluster,
            refresh_seconds,
            ..
        } => Some(Target {
            shared: SharedKeys::for_url(metadata_url),
            url: metadata_url.clone(),
            cluster: cluster.clone(),
            refresh_seconds: *refresh_seconds,
            headers: Vec::new(),
            stale: None,
            issuer: issuer.to_string(),
        }),
    }
}

impl Fetcher {
    /// The schedule for `config`. Touches no host state: the first fetch happens on the
    /// first tick (Envoy also configures a short-lived VM that validates the configuration
    /// and is destroyed before any call answers, which would strand the lease).
    pub fn new(config: &Config) -> Fetcher {
        let jwks = std::iter::once(jwks_target(
            &config.authority.issuer,
            &config.authority.keys,
        ))
        .chain(
            config
                .issuers
                .iter()
                .map(|i| jwks_target(&i.checks.issuer, &i.checks.keys)),
        )
        .collect();
        let revocation = config.revocation.as_ref().map(|r| Target {
            shared: SharedKeys::for_url(&r.url),
            url: r.url.clone(),
            cluster: r.cluster.clone(),
            refresh_seconds: r.refresh_seconds,
            headers: r.headers.clone(),
            stale: Some((r.max_stale_seconds, r.on_stale)),
            issuer: String::new(),
        });
        Fetcher {
            jwks,
            revocation,
            pending: HashMap::new(),
        }
    }

    /// Whether anything is fetched at all (the root context then asks for ticks).
    pub fn needed(&self) -> bool {
        self.jwks.iter().any(Option::is_some) || self.revocation.is_some()
    }

    fn in_flight(&self, kinds: &[Pending]) -> bool {
        self.pending.values().any(|p| kinds.contains(p))
    }

    /// On every tick: starts the fetches that are due, when this VM takes their
    /// process-wide lease.
    pub fn tick(&mut self, host: &impl Host) {
        let now = match host.now_unix() {
            Ok(now) => now,
            Err(why) => {
                log::warn!("registry-token-filter: no fetch this tick: {why}");
                return;
            }
        };
        for (n, target) in self.jwks.clone().into_iter().enumerate() {
            let Some(target) = target else {
                continue;
            };
            let wanted = host
                .get_shared(&target.shared.wanted)
                .ok()
                .and_then(|(b, _)| b)
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok());
            let record = read_record(host, &target.shared);
            if !self.in_flight(&[Pending::Discovery(n), Pending::Jwks(n)])
                && remote::fetch_due(now, record.as_ref(), target.refresh_seconds, wanted)
                && take_lease(host, &target.shared, now)
            {
                if let Err(why) = self.dispatch(host, &target, &target.url, Pending::Discovery(n)) {
                    record_failure(host, &target, Pending::Discovery(n), &why, now);
                }
            }
        }
        if let Some(target) = self.revocation.clone() {
            let record = read_record(host, &target.shared);
            if !self.in_flight(&[Pending::Revocation])
                && remote::fetch_due(
                    now,
                    record.as_ref(),
                    target
                        .refresh_seconds
                        .saturating_sub(LIST_REFRESH_LEAD_SECONDS),
                    None,
                )
                && take_lease(host, &target.shared, now)
            {
                if let Err(why) = self.dispatch(host, &target, &target.url, Pending::Revocation) {
                    record_failure(host, &target, Pending::Revocation, &why, now);
                }
            }
        }
    }

    fn dispatch(
        &mut self,
        host: &impl HttpCalls,
        target: &Target,
        url: &HttpUrl,
        what: Pending,
    ) -> Result<(), String> {
        let (authority, path) = remote::call_target(url);
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", &path),
            (":authority", &authority),
            (":scheme", &url.scheme),
            ("accept", "application/json"),
            ("user-agent", "registry-token-filter"),
        ];
        // `revocation.headers` (e.g. the ledger feed's secret), never on the JWKS calls.
        headers.extend(target.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let token = host.dispatch(&target.cluster, &headers, None, CALL_TIMEOUT)?;
        self.pending.insert(token, what);
        Ok(())
    }

    /// An HTTP call answered (`on_http_call_response`).
    pub fn on_response(&mut self, host: &impl Host, token_id: u32, body_size: usize) {
        let Some(what) = self.pending.remove(&token_id) else {
            return;
        };
        let target = match what {
            Pending::Discovery(n) | Pending::Jwks(n) => self.jwks.get(n).cloned().flatten(),
            Pending::Revocation => self.revocation.clone(),
        };
        let Some(target) = target else {
            return;
        };
        let shared = &target.shared;
        let now = match host.now_unix() {
            Ok(now) => now,
            Err(why) => {
                // Without a time the record cannot be written: drop the answer and let the
                // next tick try again.
                log::warn!(
                    "registry-token-filter: {} answer dropped: {why}",
                    what.what()
                );
                release_lease(host, shared);
                return;
            }
        };
        let limit = match what {
            Pending::Revocation => revocation::MAX_LIST_BYTES,
            _ => remote::MAX_DOCUMENT_BYTES,
        };
        let (status, body) = host.call_response(body_size, limit + 1);
        if status != "200" {
            let why = format!("{} fetch answered HTTP {status}", what.what());
            record_failure(host, &target, what, &why, now);
            return;
        }
        match what {
            Pending::Discovery(n) => match remote::parse_discovery(&body, &target.issuer) {
                Ok(jwks_uri) => {
                    if let Err(why) = self.dispatch(host, &target, &jwks_uri, Pending::Jwks(n)) {
                        record_failure(host, &target, what, &why, now);
                    }
                }
                Err(why) => record_failure(host, &target, what, &why, now),
            },
            Pending::Jwks(_) => match remote::parse_jwks(&body) {
                Ok((doc, set)) if set.is_empty() => {
                    log::warn!(
                        "registry-token-filter: the Authority withdrew its keys: the JWKS \
                         holds no usable key ({} skipped); every OpToken is refused until \
                         it publishes one",
                        set.skipped()
                    );
                    record_success(host, shared, doc, true, now);
                }
                Ok((doc, set)) => {
                    record_success(host, shared, doc, false, now);
                    log::info!(
                        "registry-token-filter: JWKS refreshed: {} usable key(s)",
                        set.len()
                    );
                }
                Err(why) => record_failure(host, &target, what, &why, now),
            },
            Pending::Revocation => {
                let started = host.now().ok();
                match revocation::parse_remote(&body) {
                    Ok(lists) => {
                        let took = elapsed_us(host, started);
                        if let Err(why) = keep_list(host, shared, &lists, now) {
                            record_failure(host, &target, what, &why, now);
                            return;
                        }
                        log::info!(
                            "registry-token-filter: revocation list refreshed: {} entries, {} \
                             byte(s) taken in {took} µs",
                            lists.len(),
                            body.len()
                        );
                    }
                    Err(why) => record_failure(host, &target, what, &why, now),
                }
            }
        }
    }
}

/// Takes the fetch lease with compare-and-swap; true when this VM should fetch now.
/// (Envoy treats CAS 0 as "no check", so the key is created first when missing and only
/// then contended for with its real CAS.)
fn take_lease(host: &impl SharedData, shared: &SharedKeys, now: u64) -> bool {
    let Ok((mut bytes, mut cas)) = host.get_shared(&shared.lease) else {
        return false;
    };
    if cas.is_none() {
        let _ = host.set_shared(&shared.lease, &Lease { until: 0 }.to_bytes(), None);
        match host.get_shared(&shared.lease) {
            Ok((b, Some(c))) => {
                bytes = b;
                cas = Some(c);
            }
            _ => return false,
        }
    }
    if let Some(b) = bytes {
        if Lease::from_bytes(&b).held(now) {
            return false;
        }
    }
    let lease = Lease {
        until: now + remote::LEASE_SECONDS,
    };
    host.set_shared(&shared.lease, &lease.to_bytes(), cas)
        .is_ok()
}

fn release_lease(host: &impl SharedData, shared: &SharedKeys) {
    let _ = host.set_shared(&shared.lease, &Lease { until: 0 }.to_bytes(), None);
}

fn read_record(host: &impl SharedData, shared: &SharedKeys) -> Option<FetchRecord> {
    let (bytes, _) = host.get_shared(&shared.document).ok()?;
    bytes.as_deref().and_then(FetchRecord::from_bytes)
}

/// Microseconds since `started` on the host clock (0 when it cannot say). Integer only: a
/// float formatted into a log line would link the float printer into the module.
fn elapsed_us(host: &impl Clock, started: Option<Duration>) -> u64 {
    match (started, host.now()) {
        (Some(a), Ok(b)) => u64::try_from(b.saturating_sub(a).as_micros()).unwrap_or(u64::MAX),
        _ => 0,
    }
}

/// Stores a fetched revocation list for every VM of the process: its digest form under
/// the list key (only when it changed), then the record with its [`ListSummary`].
fn keep_list(
    host: &impl SharedData,
    shared: &SharedKeys,
    lists: &DigestLists,
    now: u64,
) -> Result<(), String> {
    let kept = serde_json::to_vec(&lists.to_feed(0)).map_err(|e| e.to_string())?;
    let summary = ListSummary {
        tag: remote::list_tag(&kept),
        entries: lists.len() as u64,
        bytes: kept.len() as u64,
    };
    let unchanged = read_record(host, shared)
        .and_then(|r| ListSummary::from_document(&r.document))
        .is_some_and(|old| old.tag == summary.tag);
    if !unchanged {
        host.set_shared(&shared.list, &kept, None)
            .map_err(|e| format!("the list could not be kept in shared data: {e:?}"))?;
    }
    record_success(host, shared, summary.to_document(), false, now);
    Ok(())
}

/// Records a failed attempt, keeping the last good document (and a withdrawal).
fn record_failure(host: &impl SharedData, target: &Target, what: Pending, why: &str, now: u64) {
    let shared = &target.shared;
    let previous = read_record(host, shared);
    let in_use = match (target.stale, previous.as_ref()) {
        (Some((max_stale, on_stale)), Some(r)) if !r.document.is_null() => {
            let age = now.saturating_sub(r.fetched_at);
            if !revocation::is_stale(r.fetched_at, max_stale, now) {
                format!("the last good copy, {age} s old, stays in use up to revocation.maxStaleSeconds ({max_stale} s)")
            } else if on_stale != OnStale::Serve {
                format!("the last good copy is {age} s old, past revocation.maxStaleSeconds ({max_stale} s): /token refuses with revocation_stale")
            } else {
                format!("the last good copy is {age} s old, past revocation.maxStaleSeconds ({max_stale} s), and stays in use (onStale: serve)")
            }
        }
        (Some((_, OnStale::Refuse)), _) => {
            "no list was ever taken: /token refuses with revocation_unavailable".to_string()
        }
        (Some((_, OnStale::Serve)), _) => {
            "no list was ever taken: tokens are issued without it (onStale: serve)".to_string()
        }
        (Some((max_stale, OnStale::RefuseWhenStale)), _) => format!(
            "no list was ever taken: tokens are issued without it up to revocation.maxStaleSeconds \
             ({max_stale} s) after the start, then refused with revocation_stale"
        ),
        (None, _) => "the last good copy stays in use".to_string(),
    };
    log::warn!(
        "registry-token-filter: {} refresh failed ({in_use}): {why}",
        what.what()
    );
    let mut record = previous.unwrap_or(FetchRecord {
        fetched_at: 0,
        document: serde_json::Value::Null,
        attempted_at: 0,
        last_error: None,
        withdrawn: false,
    });
    record.attempted_at = now;
    record.last_error = Some(why.chars().take(200).collect());
    let _ = host.set_shared(&shared.document, &record.to_bytes(), None);
    release_lease(host, shared);
}

/// Stores a fetched document for every VM of the process and releases the lease.
fn record_success(
    host: &impl SharedData,
    shared: &SharedKeys,
    document: serde_json::Value,
    withdrawn: bool,
    now: u64,
) {
    let record = FetchRecord {
        fetched_at: now,
        document,
        attempted_at: now,
        last_error: None,
        withdrawn,
    };
    let _ = host.set_shared(&shared.document, &record.to_bytes(), None);
    release_lease(host, shared);
}

/// The Authority's keys as this VM knows them (owned form of
/// [`registry_token_core::handler::AuthorityKeys`]).
#[derive(Debug, Clone)]
pub enum Keys {
    /// Keys to verify with.
    Known(Rc<KeySet>),
    /// Never fetched.
    NotFetched,
    /// The last successful fetch held no usable key.
    Withdrawn,
    /// No successful fetch for longer than `authority.jwksMaxStaleSeconds`.
    Stale,
}

impl Keys {
    /// The owned form the handler's [`registry_token_core::handler::KeyLookup`] answers.
    pub fn into_issuer_keys(self) -> registry_token_core::handler::IssuerKeys {
        use registry_token_core::handler::IssuerKeys;
        match self {
            Keys::Known(k) => IssuerKeys::Known(k),
            Keys::NotFetched => IssuerKeys::NotFetched,
            Keys::Withdrawn => IssuerKeys::Withdrawn,
            Keys::Stale => IssuerKeys::Stale,
        }
    }

    /// The borrowed form the handler takes.
    pub fn as_authority_keys(&self) -> registry_token_core::handler::AuthorityKeys<'_> {
        use registry_token_core::handler::AuthorityKeys;
        match self {
            Keys::Known(k) => AuthorityKeys::Known(k),
            Keys::NotFetched => AuthorityKeys::NotFetched,
            Keys::Withdrawn => AuthorityKeys::Withdrawn,
            Keys::Stale => AuthorityKeys::Stale,
        }
    }
}

/// What the shared JWKS record said when last parsed.
#[derive(Debug, Clone)]
enum Published {
    Keys(Rc<KeySet>),
    Withdrawn,
}

/// This VM's parsed copy of a shared record.
#[derive(Debug)]
struct Copy<T> {
    shared: SharedKeys,
    cas: Option<u32>,
    value: Option<T>,
}

impl<T: Clone> Copy<T> {
    fn new(shared: SharedKeys) -> RefCell<Copy<T>> {
        RefCell::new(Copy {
            shared,
            cas: None,
            value: None,
        })
    }

    /// The current value: the cached one while the CAS is unchanged, else `parse` of the
    /// shared record; the last value when the record is missing or unusable.
    fn current(
        &mut self,
        host: &impl SharedData,
        parse: impl FnOnce(&FetchRecord) -> Option<T>,
    ) -> Option<T> {
        let Ok((bytes, cas)) = host.get_shared(&self.shared.document) else {
            return self.value.clone();
        };
        if cas.is_some() && cas == self.cas && self.value.is_some() {
            return self.value.clone();
        }
        if let Some(v) = bytes
            .as_deref()
            .and_then(FetchRecord::from_bytes)
            .and_then(|r| parse(&r))
        {
            self.value = Some(v);
            self.cas = cas;
        }
        self.value.clone()
    }
}

/// The remote JWKS as this VM reads it from shared data.
#[derive(Debug)]
pub struct JwksCopy {
    copy: RefCell<Copy<(Published, u64)>>,
    max_stale_seconds: u64,
}

impl JwksCopy {
    /// The copy for the Authority's remote key source (`None` for inline keys).
    pub fn new(config: &Config) -> Option<JwksCopy> {
        JwksCopy::for_source(&config.authority.keys)
    }

    /// The copy for a remote key source (`None` for inline keys).
    pub fn for_source(keys: &KeySource) -> Option<JwksCopy> {
        match keys {
            KeySource::Inline(_) => None,
            KeySource::Remote {
                metadata_url,
                max_stale_seconds,
                ..
            } => Some(JwksCopy {
                copy: Copy::new(SharedKeys::for_url(metadata_url)),
                max_stale_seconds: *max_stale_seconds,
            }),
        }
    }

    /// The keys at `now`: the last good set, unless the Authority withdrew its keys or no
    /// fetch succeeded for `authority.jwksMaxStaleSeconds`.
    pub fn current(&self, host: &impl SharedData, now: u64) -> Keys {
        let value = self.copy.borrow_mut().current(host, |record| {
            if record.document.is_null() {
                return None;
            }
            if record.withdrawn {
                return Some((Published::Withdrawn, record.fetched_at));
            }
            match record.key_set() {
                Ok(set) if set.is_empty() => Some((Published::Withdrawn, record.fetched_at)),
                Ok(set) => Some((Published::Keys(Rc::new(set)), record.fetched_at)),
                Err(e) => {
                    log::warn!("registry-token-filter: shared JWKS unusable: {e}");
                    None
                }
            }
        });
        match value {
            None => Keys::NotFetched,
            Some((_, fetched_at)) if now.saturating_sub(fetched_at) > self.max_stale_seconds => {
                Keys::Stale
            }
            Some((Published::Withdrawn, _)) => Keys::Withdrawn,
            Some((Published::Keys(k), _)) => Keys::Known(k),
        }
    }

    /// Asks for an early refresh (rate-limited by the schedule): an OpTok named a `kid`
    /// the set lacks.
    pub fn note_unknown_kid(&self, host: &impl SharedData, now: u64) {
        let key = self.copy.borrow().shared.wanted.clone();
        let _ = host.set_shared(&key, now.to_string().as_bytes(), None);
    }
}

/// The remote revocation lists (digests) and when they were fetched.
pub type RevokedList = (Rc<DigestLists>, u64);

/// The remote revocation list as this VM knows it, for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListStatus {
    /// When the list in force was fetched (`None`: never).
    pub fetched_at: Option<u64>,
    /// Its entries.
    pub entries: usize,
    /// Never fetched, or older than `revocation.maxStaleSeconds`: `onStale` applies.
    pub stale: bool,
    /// The last fetch attempt failed (not reachable, an error status, refused).
    pub failing: bool,
    /// How long this VM took to take the last new list (read and parse), microseconds,
    /// once per new list.
    pub loaded_us: Option<u64>,
}

/// This VM's copy of the shared list.
#[derive(Debug, Default)]
struct ListState {
    /// CAS of the record last read.
    cas: Option<u32>,
    /// Tag of the list held.
    tag: Option<String>,
    lists: Option<Rc<DigestLists>>,
    fetched_at: u64,
    failing: bool,
    loaded_us: Option<u64>,
}

/// The remote revocation list as this VM reads it from shared data: the small record at
/// most once a second (a shared-data read costs a request about 5 µs: the host calls into
/// the module's allocator), the list only when its tag changed.
#[derive(Debug)]
pub struct ListCopy {
    shared: SharedKeys,
    max_stale_seconds: u64,
    state: RefCell<ListState>,
    /// When this VM first looked at the list (its first tick or request, about when it
    /// was configured): before the first list, staleness counts from here.
    started_at: std::cell::Cell<Option<u64>>,
    /// The second the record was last read in.
    read_at: std::cell::Cell<Option<u64>>,
}

impl ListCopy {
    /// The copy for a configured list (`None` without one).
    pub fn new(config: &Config) -> Option<ListCopy> {
        config.revocation.as_ref().map(|r| ListCopy {
            shared: SharedKeys::for_url(&r.url),
            max_stale_seconds: r.max_stale_seconds,
            state: RefCell::default(),
            started_at: std::cell::Cell::new(None),
            read_at: std::cell::Cell::new(None),
        })
    }

    /// When this VM started, for a list not fetched yet (the first `now` asked about).
    pub fn started_at(&self, now: u64) -> u64 {
        match self.started_at.get() {
            Some(t) => t,
            None => {
                self.started_at.set(Some(now));
                now
            }
        }
    }

    /// The last good list (digests, fetch time) at `now`, if it was ever fetched: the
    /// shared record is read at most once per second of `now`.
    pub fn current(&self, host: &(impl SharedData + Clock), now: u64) -> Option<RevokedList> {
        let mut st = self.state.borrow_mut();
        let held = |st: &ListState| st.lists.clone().map(|l| (l, st.fetched_at));
        if self.read_at.replace(Some(now)) == Some(now) {
            return held(&st);
        }
        let Ok((bytes, cas)) = host.get_shared(&self.shared.document) else {
            return held(&st);
        };
        if cas.is_some() && cas == st.cas {
            return held(&st);
        }
        let Some(record) = bytes.as_deref().and_then(FetchRecord::from_bytes) else {
            return held(&st);
        };
        st.cas = cas;
        st.failing = record.last_error.is_some();
        if record.document.is_null() {
            return held(&st);
        }
        let (tag, list) = match ListSummary::from_document(&record.document) {
            Some(summary) if st.lists.is_some() && st.tag.as_ref() == Some(&summary.tag) => {
                (summary.tag, None)
            }
            Some(summary) => match host.get_shared(&self.shared.list) {
                Ok((Some(list), _)) => (summary.tag, Some(list)),
                _ => {
                    log::warn!("registry-token-filter: the shared revocation list is missing");
                    return held(&st);
                }
            },
            // Kept by an older module: the list itself.
            None => {
                let doc = record.document.to_string().into_bytes();
                (remote::list_tag(&doc), Some(doc))
            }
        };
        if let Some(list) = list {
            let started = host.now().ok();
            match revocation::parse_remote(&list) {
                Ok(lists) => {
                    st.lists = Some(Rc::new(lists));
                    st.tag = Some(tag);
                    st.loaded_us = Some(elapsed_us(host, started));
                }
                Err(e) => {
                    log::warn!("registry-token-filter: shared revocation list unusable: {e}");
                    return held(&st);
                }
            }
        }
        st.fetched_at = record.fetched_at;
        held(&st)
    }

    /// The list's state at `now` (reading shared data as [`ListCopy::current`] does, so a
    /// tick takes a new list before a request needs it).
    pub fn status(&self, host: &(impl SharedData + Clock), now: u64) -> ListStatus {
        let current = self.current(host, now);
        let mut st = self.state.borrow_mut();
        ListStatus {
            fetched_at: current.as_ref().map(|c| c.1),
            entries: current.as_ref().map_or(0, |c| c.0.len()),
            stale: revocation::is_stale(
                current.as_ref().map_or(self.started_at(now), |c| c.1),
                self.max_stale_seconds,
                now,
            ),
            failing: st.failing,
            loaded_us: st.loaded_us.take(),
        }
    }
}
