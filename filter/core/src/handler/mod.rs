//! The request pipeline: a request view, a clock reading, a crypto implementation and the
//! current Authority keys in; a complete reply (status, headers, body), an outcome for the
//! metrics and an audit record out. No I/O happens here.
//!
//! | file | stage |
//! |---|---|
//! | [`credentials`] | 1. the token request (query or `POST` form) and the presented credential: an OpToken (`Authorization`, or the password grant's `password`) or a refresh token |
//! | [`pipeline`] | 2–5. credential (OpToken or refresh token) → sender constraint → policy → mint, in order |
//! | [`reason`] | every refusal: label, status, codes, description |
//! | [`reply`] | problems, the token reply, `/healthz`, `/jwks` |
//! | [`audit`] | the audit record |
//! | [`cache`] | the verified-OpToken cache and the mint memo |
//! | [`guard`] | the guard on the registry's route (`/v2…`): the registry token, revocation, tag rules, the catalogue |

pub mod audit;
pub mod cache;
pub mod credentials;
pub mod guard;
pub mod pipeline;
pub mod reason;
pub mod reply;

use crate::config::Config;
use crate::policy::revocation::RemoteList;
use crate::sender::replay::ReplayCache;
use crate::token::crypto::Crypto;
use crate::token::keys::KeySet;

pub use crate::config::{HEALTHZ_PATH, JWKS_PATH};
pub use audit::Audit;
pub use cache::Caches;
pub use credentials::{credentials, CredentialScheme};
pub use pipeline::{handle_token, Caller, TrustedCaller, VerifiedRefresh, ANONYMOUS_SUBJECT};
pub use reason::{AlertClass, Reason};
pub use reply::{deny, deny_form, healthz, jwks, Denial, RETRY_AFTER_SECONDS};

/// A read-only view of the request, gathered by the glue.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// Request headers, names lowercase, in arrival order (repeats kept).
    pub headers: &'a [(String, String)],
    /// The client certificate of the downstream connection (its digest is read only when
    /// a certificate-bound credential needs it).
    pub peer_certificate: PeerCertificate<'a>,
    /// The buffered request body (`POST` only; `None` otherwise, or when the glue did not
    /// buffer one, which reads as an empty body). The core checks its length itself.
    pub body: Option<&'a [u8]>,
}

/// The downstream connection's client certificate, as the glue can give it.
#[derive(Clone, Copy)]
pub enum PeerCertificate<'a> {
    /// Known up front: the lowercase hex SHA-256 of the certificate's DER, or `None` (no
    /// TLS, or no client certificate).
    Known(Option<&'a str>),
    /// Asked of the host when a certificate-bound credential needs it, so that the other
    /// requests do not pay the hostcall.
    Lookup(&'a dyn Fn() -> Option<String>),
}

impl PeerCertificate<'_> {
    /// The lowercase hex SHA-256 of the certificate's DER (an empty answer is none).
    pub fn sha256_hex(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        let digest = match self {
            PeerCertificate::Known(d) => d.map(Cow::Borrowed),
            PeerCertificate::Lookup(ask) => ask().map(Cow::Owned),
        };
        digest.filter(|d| !d.is_empty())
    }
}

impl std::fmt::Debug for PeerCertificate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerCertificate::Known(d) => f.debug_tuple("Known").field(d).finish(),
            PeerCertificate::Lookup(_) => f.write_str("Lookup(..)"),
        }
    }
}

impl<'a> RequestView<'a> {
    /// All values of a header (name lowercase).
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path_only(&self) -> &'a str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    /// The raw query (after `?`, before `#`), empty when absent.
    pub fn query(&self) -> &'a str {
        match self.path.split_once('?') {
            Some((_, q)) => q.split('#').next().unwrap_or(""),
            None => "",
        }
    }
}

/// Which endpoint a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The token endpoint (the realm's path).
    Token,
    /// Liveness.
    Healthz,
    /// The public keys of minted tokens.
    Jwks,
    /// The registry's API (`/v2…`) with `guard` configured: [`guard::guard`] decides.
    Registry,
    /// Not ours: pass to the route untouched.
    PassThrough,
}

/// Routes by path only (the filter owns the realm's path, `/healthz` and `/jwks`).
pub fn route(config: &Config, path_without_query: &str) -> Route {
    if path_without_query == config.registry.realm.path {
        Route::Token
    } else if path_without_query == HEALTHZ_PATH {
        Route::Healthz
    } else if path_without_query == JWKS_PATH {
        Route::Jwks
    } else if config.guard.is_some() && guard::is_registry_path(path_without_query) {
        Route::Registry
    } else {
        Route::PassThrough
    }
}

/// How a token was obtained (the `grant` label of `registry_token_issued_total` and the
/// audit record's `grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    /// `GET /token` with the OpToken in `Authorization` (the Docker token protocol).
    Get,
    /// `POST /token`, `grant_type=password`: the OpToken is the password.
    Password,
    /// `POST /token`, `grant_type=refresh_token`.
    RefreshToken,
}

impl Grant {
    /// Every grant, for registering counters.
    pub const ALL: &'static [Grant] = &[Grant::Get, Grant::Password, Grant::RefreshToken];

    /// `get`, `password` or `refresh_token`.
    pub fn label(self) -> &'static str {
        match self {
            Grant::Get => "get",
            Grant::Password => "password",
            Grant::RefreshToken => "refresh_token",
        }
    }
}

/// What happened, for the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A token was minted, by this grant.
    Issued(Grant),
    /// Refused.
    Rejected(Reason),
    /// A non-token endpoint answered (health).
    Other,
}

/// The full reply and its side information.
#[derive(Debug, Clone)]
pub struct Decision {
    /// HTTP status.
    pub status: u16,
    /// Response headers (besides `:status`).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
    /// For the counters.
    pub outcome: Outcome,
    /// The audit record (token endpoint only).
    pub audit: Option<Audit>,
    /// The OpTok named a `kid` the key set lacks: the glue may trigger a (rate-limited)
    /// key refresh.
    pub unknown_kid: bool,
}

/// The Authority's keys as the glue last knows them.
#[derive(Debug, Clone, Copy)]
pub enum AuthorityKeys<'a> {
    /// Keys to verify with.
    Known(&'a KeySet),
    /// The remote JWKS was never fetched yet.
    NotFetched,
    /// The last successful fetch held no usable key: trust nothing.
    Withdrawn,
    /// No fetch succeeded for `authority.jwksMaxStaleSeconds`: last good keys dropped.
    Stale,
    /// Several issuers (`issuers`): the glue's keys of each, asked for the one a token
    /// names (index 0 is `authority`, `i + 1` is `issuers[i]`).
    Lookup(&'a dyn KeyLookup),
}

/// An issuer's keys as the glue knows them, owned (shared with the glue's copy).
#[derive(Debug, Clone)]
pub enum IssuerKeys {
    /// Keys to verify with.
    Known(std::rc::Rc<KeySet>),
    /// The remote JWKS was never fetched yet.
    NotFetched,
    /// The last successful fetch held no usable key.
    Withdrawn,
    /// No fetch succeeded for the issuer's `jwksMaxStaleSeconds`.
    Stale,
}

/// The keys of every trusted issuer, asked lazily: only the issuer a token names is read.
pub trait KeyLookup: std::fmt::Debug {
    /// The keys of issuer `index` (0: `authority`; `i + 1`: `issuers[i]`).
    fn keys(&self, index: usize) -> IssuerKeys;
    /// A token of issuer `index` named a `kid` its keys lack: an early (rate-limited)
    /// refresh of that issuer's JWKS.
    fn unknown_kid(&self, index: usize);
}

impl<'a> From<Option<&'a KeySet>> for AuthorityKeys<'a> {
    fn from(keys: Option<&'a KeySet>) -> AuthorityKeys<'a> {
        keys.map_or(AuthorityKeys::NotFetched, AuthorityKeys::Known)
    }
}

/// What the decision needs besides the request.
pub struct Context<'a> {
    /// The validated configuration.
    pub config: &'a Config,
    /// The Authority's keys, or why there are none.
    pub keys: AuthorityKeys<'a>,
    /// Crypto implementation (host or pure Rust).
    pub crypto: &'a dyn Crypto,
    /// Unix time, seconds.
    pub now: u64,
    /// DPoP `jti` replay cache (process-wide in Envoy).
    pub replay: &'a dyn ReplayCache,
    /// Verified-OpTok and minted-token caches (one per VM and configuration), if any.
    pub cache: Option<&'a Caches>,
    /// The remote revocation list as last fetched (`NotConfigured` without one).
    pub revocation: RemoteList<'a>,
}
