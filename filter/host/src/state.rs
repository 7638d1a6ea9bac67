//! What one configuration builds at configure time, and the `/token` decision against the
//! host: the clock reading, the current Authority keys and revocation list, the shared
//! replay cache. Generic over the [`Host`] so that it runs natively in tests.

use std::rc::Rc;
use std::time::Duration;

use registry_token_core::config::{Config, KeySource};
use registry_token_core::handler::cache::Caches;
use registry_token_core::handler::{self, Audit, Decision, Denial, Reason, RequestView};
use registry_token_core::policy::revocation::RemoteList;
use registry_token_core::remote;
use registry_token_core::token::crypto::Crypto;

use crate::fetch::{JwksCopy, Keys, ListCopy, ListStatus};
use crate::host::Host;
use crate::ledger::{Append, LedgerBuffer};
use crate::replay::SharedReplayCache;
use registry_token_core::config::OnBacklogFull;

/// DPoP proofs remembered per time slot across the process (16 bytes each).
/// Bounds shared memory to 3 slots × capacity × 16 bytes (48 MiB) and the sustained DPoP
/// rate of one Envoy process to capacity / `dpop.iatWindowSeconds` (≈ 17,000 proofs/s at
/// the default 60 s); beyond it proofs are refused with 503 (fail closed).
pub const REPLAY_CAPACITY: usize = 1024 * 1024;

/// Where the Authority's keys come from, as this VM reads them.
enum KeysSource {
    Inline(Rc<registry_token_core::token::keys::KeySet>),
    Remote(JwksCopy),
}

/// Everything built at configure time.
pub struct State<H> {
    host: H,
    /// The validated configuration.
    pub config: Config,
    crypto: Box<dyn Crypto>,
    keys: KeysSource,
    /// The remote key copies of `issuers` (by index; `None`: inline keys).
    issuer_keys: Vec<Option<JwksCopy>>,
    revocation: Option<ListCopy>,
    replay: SharedReplayCache<H>,
    /// The per-VM caches.
    pub caches: Caches,
    /// The gateway instance written in audit records (`ledger.gateway`, else Envoy's node
    /// id), if any.
    pub gateway: Option<String>,
    /// Verified registry tokens (the guard on the registry's route).
    pub guard_memo: registry_token_core::handler::guard::TokenMemo,
    /// Decisions of this VM, for request ids when the host has no randomness.
    decisions: std::cell::Cell<u64>,
    /// The issuance ledger's buffer, when `ledger` is configured.
    ledger: Option<LedgerBuffer>,
}

/// What became of a decision's ledger record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// No ledger configured (or no record for this decision).
    NotConfigured,
    /// In the buffer.
    Queued,
    /// Buffer full, `onBacklogFull: drop`: answered as decided, record dropped.
    Dropped,
    /// Buffer full, `onBacklogFull: refuse`: answered 503 `ledger_backlog_full` instead.
    Refused,
}

impl<H: Host + Clone> State<H> {
    /// Builds the state (creates the replay record's missing keys in shared data).
    pub fn new(host: H, config: Config, crypto: Box<dyn Crypto>) -> State<H> {
        Self::with_replay_capacity(host, config, crypto, REPLAY_CAPACITY)
    }

    /// [`State::new`] with another replay capacity (tests).
    pub fn with_replay_capacity(
        host: H,
        config: Config,
        crypto: Box<dyn Crypto>,
        replay_capacity: usize,
    ) -> State<H> {
        let keys = match (&config.authority.keys, JwksCopy::new(&config)) {
            (KeySource::Inline(set), _) => KeysSource::Inline(Rc::new(set.clone())),
            (KeySource::Remote { .. }, Some(copy)) => KeysSource::Remote(copy),
            (KeySource::Remote { .. }, None) => KeysSource::Inline(Rc::default()),
        };
        let replay = SharedReplayCache::new(
            host.clone(),
            remote::SHARED_PREFIX,
            config.dpop.iat_window_seconds,
            replay_capacity,
        );
        let issuer_keys = config
            .issuers
            .iter()
            .map(|i| JwksCopy::for_source(&i.checks.keys))
            .collect();
        let gateway = config.ledger.as_ref().and_then(|l| l.gateway.clone());
        let ledger = config.ledger.as_ref().map(|l| LedgerBuffer::new(&host, l));
        State {
            ledger,
            revocation: ListCopy::new(&config),
            host,
            config,
            crypto,
            keys,
            issuer_keys,
            replay,
            caches: Caches::default(),
            gateway,
            guard_memo: Default::default(),
            decisions: std::cell::Cell::new(0),
        }
    }
}

impl<H: Host> State<H> {
    /// The current Authority keys at `now`.
    pub fn keys(&self, now: u64) -> Keys {
        match &self.keys {
            KeysSource::Inline(k) => Keys::Known(k.clone()),
            KeysSource::Remote(copy) => copy.current(&self.host, now),
        }
    }

    /// The `/token` decision. A clock the host cannot read refuses with 500
    /// `clock_unavailable` (nothing time-bound can be checked or minted without it).
    pub fn decide(&self, view: &RequestView<'_>) -> Decision {
        self.decide_at(view, None)
    }

    /// [`State::decide`] at `at`, the host time the glue read when the request's headers
    /// arrived, for a request answered in that same callback (one clock hostcall fewer);
    /// `None` reads the clock.
    pub fn decide_at(&self, view: &RequestView<'_>, at: Option<Duration>) -> Decision {
        let mut decision = self.decide_inner(view, at);
        if let Some(audit) = decision.audit.as_mut() {
            if audit.jti.is_none() {
                audit.id = Some(self.request_id(view));
            }
            audit.gateway = self.gateway.clone();
        }
        decision
    }

    /// The remote revocation list's state at `now` (`None` without one), for the gauges;
    /// read on every tick, so a new list is taken before a request needs it.
    pub fn revocation_status(&self, now: u64) -> Option<ListStatus> {
        self.revocation.as_ref().map(|r| r.status(&self.host, now))
    }

    /// The ledger buffer, when configured.
    pub fn ledger_buffer(&self) -> Option<&LedgerBuffer> {
        self.ledger.as_ref()
    }

    /// [`State::decide`], then the record into the ledger buffer. When the buffer cannot
    /// take it: `drop` answers as decided; `refuse` answers 503 `ledger_backlog_full`
    /// instead, so that no token leaves unrecorded (its audit, logged, says so).
    pub fn decide_recorded(&self, view: &RequestView<'_>) -> (Decision, Recorded) {
        self.decide_recorded_at(view, None)
    }

    /// [`State::decide_recorded`] with [`State::decide_at`]'s `at`.
    pub fn decide_recorded_at(
        &self,
        view: &RequestView<'_>,
        at: Option<Duration>,
    ) -> (Decision, Recorded) {
        let decision = self.decide_at(view, at);
        let (Some(buffer), Some(config)) = (&self.ledger, &self.config.ledger) else {
            return (decision, Recorded::NotConfigured);
        };
        let Some(record) = decision
            .audit
            .as_ref()
            .and_then(registry_token_core::ledger::record)
        else {
            return (decision, Recorded::NotConfigured);
        };
        let now_ms = self.now_ms();
        match buffer.append(&self.host, &record, now_ms) {
            Append::Queued => (decision, Recorded::Queued),
            full => {
                if let Append::Failed(why) = &full {
                    log::warn!("registry-token-filter: ledger buffer unavailable: {why}");
                }
                match config.on_backlog_full {
                    OnBacklogFull::Drop => (decision, Recorded::Dropped),
                    OnBacklogFull::Refuse => {
                        let audit = decision.audit.map(|a| Audit {
                            id: Some(self.request_id(view)),
                            decision: "rejected",
                            reason: Reason::LedgerBacklogFull.label(),
                            jti: None,
                            iat: None,
                            exp: None,
                            kid: None,
                            granted: Vec::new(),
                            ..a
                        });
                        let refusal = handler::deny(
                            &self.config,
                            Denial::new(
                                Reason::LedgerBacklogFull,
                                "the issuance ledger cannot record this decision now; retry later",
                            ),
                            audit,
                        );
                        (refusal, Recorded::Refused)
                    }
                }
            }
        }
    }

    /// Puts a guard refusal's audit record in the ledger's buffer (a full buffer drops
    /// it: the request is refused either way), after giving it an id and the gateway.
    pub(crate) fn record_refusal(&self, audit: &mut Audit, view: &RequestView<'_>) -> Recorded {
        audit.id = Some(self.request_id(view));
        audit.gateway = self.gateway.clone();
        let (Some(buffer), Some(record)) =
            (&self.ledger, registry_token_core::ledger::record(audit))
        else {
            return Recorded::NotConfigured;
        };
        let now_ms = self.now_ms();
        match buffer.append(&self.host, &record, now_ms) {
            Append::Queued => Recorded::Queued,
            _ => Recorded::Dropped,
        }
    }

    /// The host clock in milliseconds (0 when it cannot be read: the buffer's timestamps).
    fn now_ms(&self) -> u64 {
        self.host
            .now()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// The crypto implementation.
    pub(crate) fn crypto(&self) -> &dyn Crypto {
        self.crypto.as_ref()
    }

    /// The host.
    pub(crate) fn host(&self) -> &H {
        &self.host
    }

    /// A unique id for a decision that minted nothing: 128 random bits (base64url) from
    /// the crypto implementation; if the host has no randomness, the host time in
    /// nanoseconds, this VM's decision count, the VM's address of its state and the
    /// request's `x-request-id`.
    fn request_id(&self, view: &RequestView<'_>) -> String {
        let n = self.decisions.get().wrapping_add(1);
        self.decisions.set(n);
        if let Ok(id) = registry_token_core::token::mint::new_jti(self.crypto.as_ref()) {
            return id;
        }
        let nanos = self.host.now().map(|d| d.as_nanos()).unwrap_or(0);
        let xrid: String = view
            .header_values("x-request-id")
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        format!(
            "r-{nanos:x}-{n:x}-{:x}-{xrid}",
            self as *const Self as usize
        )
    }

    fn decide_inner(&self, view: &RequestView<'_>, at: Option<Duration>) -> Decision {
        let now = match at.map_or_else(|| self.host.now_unix(), |d| Ok(d.as_secs())) {
            Ok(now) => now,
            Err(why) => {
                log::error!("registry-token-filter: refusing /token: {why}");
                return handler::deny(
                    &self.config,
                    Denial::new(
                        Reason::ClockUnavailable,
                        "the proxy could not read its clock; retry later",
                    ),
                    Some(Audit::new(0)),
                );
            }
        };
        let keys = self.keys(now);
        self.with_revocation(now, |revocation| {
            self.decide_with(view, now, &keys, revocation)
        })
    }

    /// Runs `f` with the remote revocation list as last fetched (`NotConfigured` without
    /// one).
    pub(crate) fn with_revocation<R>(&self, now: u64, f: impl FnOnce(RemoteList<'_>) -> R) -> R {
        let revoked = self
            .revocation
            .as_ref()
            .and_then(|r| r.current(&self.host, now));
        let revocation = match (&self.revocation, &revoked) {
            (None, _) => RemoteList::NotConfigured,
            (Some(copy), None) => RemoteList::NotYetFetched {
                since: copy.started_at(now),
            },
            (Some(_), Some(list)) => RemoteList::Known {
                lists: &*list.0,
                fetched_at: list.1,
            },
        };
        f(revocation)
    }

    fn decide_with(
        &self,
        view: &RequestView<'_>,
        now: u64,
        keys: &Keys,
        revocation: RemoteList<'_>,
    ) -> Decision {
        let lookup = Lookup { state: self, now };
        let ctx = handler::Context {
            config: &self.config,
            keys: if self.config.issuers.is_empty() {
                keys.as_authority_keys()
            } else {
                handler::AuthorityKeys::Lookup(&lookup)
            },
            crypto: self.crypto.as_ref(),
            now,
            replay: &self.replay,
            cache: Some(&self.caches),
            revocation,
        };
        let decision = handler::handle_token(view, &ctx);
        if decision.unknown_kid {
            if let KeysSource::Remote(copy) = &self.keys {
                copy.note_unknown_kid(&self.host, now);
            }
        }
        decision
    }
}

/// The keys of every trusted issuer at `now`, read from shared data only for the issuer a
/// token names (index 0: `authority`; `i + 1`: `issuers[i]`).
struct Lookup<'a, H> {
    state: &'a State<H>,
    now: u64,
}

impl<H> std::fmt::Debug for Lookup<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup").field("now", &self.now).finish()
    }
}

impl<H: Host> handler::KeyLookup for Lookup<'_, H> {
    fn keys(&self, index: usize) -> handler::IssuerKeys {
        let keys = match index.checked_sub(1) {
            None => self.state.keys(self.now),
            Some(i) => match self.state.issuer_keys.get(i) {
                Some(Some(copy)) => copy.current(&self.state.host, self.now),
                _ => Keys::NotFetched,
            },
        };
        keys.into_issuer_keys()
    }

    fn unknown_kid(&self, index: usize) {
        if let Some(Some(copy)) = index
            .checked_sub(1)
            .and_then(|i| self.state.issuer_keys.get(i))
        {
            copy.note_unknown_kid(&self.state.host, self.now);
        }
    }
}
