//! The filter configuration: parsed from JSON (a `google.protobuf.StringValue`) or from a
//! decoded `google.protobuf.Struct`, overridden by `REGISTRY_TOKEN_*` environment
//! variables, then validated into a [`Config`] that the request path uses as is.
//!
//! Every error names the field (`signing.keyPem`, `plans[1].repositories[0].pattern`, …)
//! and the reason, in one line: the glue logs it and refuses the configuration.
//!
//! The reference for every field, its default and its bounds is `docs/CONFIGURATION.md`.

mod env;
mod raw;
mod validate;

use std::fmt;

use serde_json::Value;

use crate::policy::plan::Catalogue;
use crate::policy::revocation::{OnStale, RevokedLists};
use crate::policy::trust::TrustPolicies;
use crate::sender::nonce::NonceKey;
use crate::token::alg::Alg;
use crate::token::keys::{KeySet, PrivateKey};
use crate::token::refresh::RefreshKeys;
use crate::wire::url::HttpUrl;

/// Default lifetime of minted registry tokens, seconds.
pub const DEFAULT_LIFETIME_SECONDS: u64 = 300;
/// Smallest allowed minted-token lifetime (clients raise anything lower to 60 anyway).
pub const MIN_LIFETIME_SECONDS: u64 = 60;
/// Largest allowed minted-token lifetime.
pub const MAX_LIFETIME_SECONDS: u64 = 3600;
/// Path of the liveness endpoint (the filter answers it; a realm may not use it).
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the JWKS of the minting keys (the filter answers it; a realm may not use it).
pub const JWKS_PATH: &str = "/jwks";
/// Default OpTok scope required to obtain registry tokens.
pub const DEFAULT_REQUIRED_SCOPE: &str = "registry.token.issue";
/// The OpToken claim naming the caller's tenant, unless `authority.tenantClaim` says.
pub const DEFAULT_TENANT_CLAIM: &str = "stellaops:tenant";
/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "REGISTRY_TOKEN_";

/// A configuration error: the field path and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path such as `signing.lifetimeSeconds` or `plans[0].repositories[2].pattern`.
    pub field: String,
    /// Why the value was refused.
    pub reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "configuration: {}", self.reason)
        } else {
            write!(f, "configuration field {}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

pub use env::{apply_env_overrides, env_name};
pub use raw::*;
use validate::validate;

/// Where the Authority's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Inline JWKS, fixed for the life of the configuration.
    Inline(KeySet),
    /// Discovery document fetched through an Envoy cluster.
    Remote {
        /// The discovery document URL.
        metadata_url: HttpUrl,
        /// The Envoy cluster.
        cluster: String,
        /// Refresh period.
        refresh_seconds: u64,
        /// After this long without a successful fetch, the last good keys are dropped.
        max_stale_seconds: u64,
    },
}

/// Validated `authority`.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Required scopes.
    pub required_scopes: Vec<String>,
    /// Key source.
    pub keys: KeySource,
    /// Clock skew, seconds.
    pub clock_skew_seconds: u64,
    /// Whether unbound OpToks are refused.
    pub require_sender_constraint: bool,
    /// Accepted OpTok algorithms.
    pub algorithms: Vec<Alg>,
    /// The OpToken claim holding the caller's tenant (`authority.tenantClaim`).
    pub tenant_claim: String,
    /// Whether an OpToken (or refresh token) without a valid tenant is refused.
    pub require_tenant: bool,
}

/// Which `kid` minted tokens carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidFormat {
    /// RFC 7638 thumbprint (registry 3.x).
    Thumbprint,
    /// libtrust fingerprint (registry 2.8).
    Libtrust,
}

/// Validated `signing`.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// `iss` of minted tokens.
    pub issuer: String,
    /// The signing key (algorithm fixed by its type).
    pub key: PrivateKey,
    /// The `kid` header value.
    pub kid: String,
    /// `x5c` header values (standard base64 DER), leaf first.
    pub x5c: Option<Vec<String>>,
    /// Token lifetime, seconds.
    pub lifetime_seconds: u64,
    /// Mint reuse window, seconds (0 = off).
    pub reuse_seconds: u64,
    /// The JWKS served on `GET /jwks`: the active key first, then the published ones.
    pub jwks: Value,
}

/// Validated `registry`.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `allowedServices: ["*"]`: any `service` is accepted (logged as a warning).
    pub any_service: bool,
    /// The normalized realm URL.
    pub realm: HttpUrl,
    /// The realm as configured (for `WWW-Authenticate`).
    pub realm_text: String,
    /// Accepted services (empty with `any_service`).
    pub allowed_services: Vec<String>,
}

/// Validated `dpop`.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// `iat` window, seconds either side.
    pub iat_window_seconds: u64,
    /// Accepted proof algorithms.
    pub algorithms: Vec<Alg>,
    /// Nonce mode.
    pub nonce: Option<NonceKey>,
}

/// Validated `guard` (docs/GUARD.md).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// The Envoy cluster of the registry.
    pub registry_cluster: String,
    /// The immutable tags' `HEAD` timeout, ms.
    pub timeout_millis: u64,
    /// Set the identity headers on what passes.
    pub identity_headers: bool,
    /// The keys registry tokens are verified with: the active signing key and the
    /// published ones (what `GET /jwks` serves).
    pub keys: crate::token::keys::KeySet,
    /// Their algorithms.
    pub algorithms: Vec<crate::token::alg::Alg>,
}

/// A validated configuration, ready for the request path.
#[derive(Debug, Clone)]
pub struct Config {
    /// Authority.
    pub authority: AuthorityConfig,
    /// Signing.
    pub signing: SigningConfig,
    /// Registry.
    pub registry: RegistryConfig,
    /// Compiled plan catalogue.
    pub catalogue: Catalogue,
    /// Default plan.
    pub default_plan: Option<String>,
    /// Inline `revokedLicenses`, `revokedSubjects`, `revokedRefreshTokens`.
    pub revoked: RevokedLists,
    /// Refresh tokens, when enabled.
    pub refresh_tokens: Option<RefreshConfig>,
    /// DPoP.
    pub dpop: DpopConfig,
    /// The remote revocation list, when configured.
    pub revocation: Option<RevocationConfig>,
    /// Limits of Offline Kit token bundles (`registry-token bundle`); unused by the filter.
    pub offline: OfflineConfig,
    /// The issuance ledger, when configured.
    pub ledger: Option<LedgerConfig>,
    /// Further trusted issuers (`issuers`), each with its trust policies.
    pub issuers: Vec<IssuerConfig>,
    /// The plan of callers without credentials (`anonymous.plan`), when on.
    pub anonymous: Option<String>,
    /// Guard mode on the registry's route, when configured.
    pub guard: Option<GuardConfig>,
}

/// Validated `issuers[i]`: the token checks (as for `authority`, without tenant claim)
/// and the compiled trust policies.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Issuer, audiences, scopes, keys, skew, binding, algorithms.
    pub checks: AuthorityConfig,
    /// Its trust policies, in order.
    pub policies: TrustPolicies,
}

impl Config {
    /// `revocation.maxStaleSeconds` and `revocation.onStale`; without a remote list, never
    /// stale and served (the inline lists alone decide).
    pub fn revocation_policy(&self) -> (u64, OnStale) {
        self.revocation
            .as_ref()
            .map_or((u64::MAX, OnStale::Serve), |r| {
                (r.max_stale_seconds, r.on_stale)
            })
    }

    /// The `iss` value of every trusted issuer: `authority` first (index 0), then
    /// `issuers` in order (index `i + 1`).
    pub fn issuer_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.authority.issuer.as_str())
            .chain(self.issuers.iter().map(|i| i.checks.issuer.as_str()))
    }
}

/// What the filter does with a decision when the ledger buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBacklogFull {
    /// Answer as decided; the record is dropped and counted.
    Drop,
    /// Answer `/token` with 503 `ledger_backlog_full` until there is room.
    Refuse,
}

/// Validated `ledger`.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The Envoy cluster.
    pub cluster: String,
    /// Ingest path.
    pub path: String,
    /// `:authority` of the calls.
    pub authority: String,
    /// Extra headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// Records per POST.
    pub batch_size: usize,
    /// Longest a record waits for its batch, milliseconds.
    pub flush_millis: u64,
    /// Capacity of the per-process buffer, records (a multiple of `batch_size`).
    pub buffer_records: usize,
    /// Policy when the buffer is full.
    pub on_backlog_full: OnBacklogFull,
    /// Timeout of one POST, milliseconds.
    pub timeout_millis: u64,
    /// First retry delay, milliseconds.
    pub initial_backoff_millis: u64,
    /// Longest retry delay, milliseconds.
    pub max_backoff_millis: u64,
    /// Gateway instance name (`None`: Envoy's node id, read by the glue).
    pub gateway: Option<String>,
}

/// Default longest window of an offline token bundle (30 days).
pub const DEFAULT_OFFLINE_MAX_LIFETIME_SECONDS: u64 = 2_592_000;
/// Smallest `offline.maxLifetimeSeconds`.
pub const MIN_OFFLINE_MAX_LIFETIME_SECONDS: u64 = 60;
/// Largest `offline.maxLifetimeSeconds` (365 days).
pub const MAX_OFFLINE_MAX_LIFETIME_SECONDS: u64 = 31_536_000;

/// Validated `offline`: what `registry-token bundle` may put in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineConfig {
    /// Longest `notAfter - notBefore`, seconds.
    pub max_lifetime_seconds: u64,
    /// Actions a bundled token may ask for (`pull`, `push`, `delete`, or `*` for all),
    /// deduplicated, in the order written.
    pub allowed_actions: Vec<String>,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            max_lifetime_seconds: DEFAULT_OFFLINE_MAX_LIFETIME_SECONDS,
            allowed_actions: vec!["pull".to_string()],
        }
    }
}

impl OfflineConfig {
    /// Whether a bundled token may ask for `action`.
    pub fn allows(&self, action: &str) -> bool {
        self.allowed_actions.iter().any(|a| a == "*" || a == action)
    }
}

/// Smallest refresh-token lifetime.
pub const MIN_REFRESH_LIFETIME_SECONDS: u64 = 300;
/// Largest refresh-token lifetime (30 days).
pub const MAX_REFRESH_LIFETIME_SECONDS: u64 = 2_592_000;
/// Shortest refresh-token sealing secret, characters.
pub const MIN_REFRESH_SECRET_CHARS: usize = 32;

/// Validated `refreshTokens`.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// Lifetime of a refresh token, seconds.
    pub lifetime_seconds: u64,
    /// The sealing secrets (first seals, all open).
    pub keys: RefreshKeys,
}

/// Validated `revocation`.
#[derive(Debug, Clone)]
pub struct RevocationConfig {
    /// The list's URL (query kept).
    pub url: HttpUrl,
    /// The Envoy cluster.
    pub cluster: String,
    /// Refresh period.
    pub refresh_seconds: u64,
    /// Staleness bound.
    pub max_stale_seconds: u64,
    /// Policy when stale.
    pub on_stale: OnStale,
    /// Extra headers of the fetch (names lowercase).
    pub headers: Vec<(String, String)>,
}

impl Config {
    /// What an operator should be warned about (logged once by the glue), e.g. an
    /// allow-list of `["*"]`, or an EC signing key whose `kid` distribution 3.x derives
    /// otherwise while tokens carry no `x5c` (a warning, not a refusal: distribution 2.8
    /// and other registries accept it).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.registry.any_service {
            out.push(
                "registry.allowedServices is [\"*\"]: the caller chooses the minted token's aud; \
                 any registry trusting this signing key accepts tokens from this realm"
                    .to_string(),
            );
        }
        if let (None, Some(advisory)) = (
            &self.signing.x5c,
            self.signing.key.distribution3_kid_advisory(),
        ) {
            let starts = if advisory.coordinates.contains(' ') {
                "coordinates start"
            } else {
                "coordinate starts"
            };
            out.push(format!(
                "signing key: its EC point's {} {starts} with a zero byte, and distribution 3.x \
                 derives such a key's kid without it ({:?}, not RFC 7638's {:?}): a 3.x registry \
                 that finds the key by kid in auth.token.rootcertbundle refuses every token \
                 (this realm sends kid {:?}). Send x5c (signing.certificateChainPem, or a \
                 signing.keyPfx with the certificate), or give the registry this realm's JWKS \
                 (GET /jwks) as auth.token.jwks, or use another signing key (docs/DEPLOY.md); \
                 distribution 2.8 and other registries are not affected",
                advisory.coordinates, advisory.unpadded, advisory.rfc7638, self.signing.kid
            ));
        }
        if let Some(r) = self
            .revocation
            .as_ref()
            .filter(|r| r.on_stale == OnStale::Serve)
        {
            out.push(format!(
                "revocation.onStale is serve: while the revocation list cannot be fetched or \
                 taken (never, or not for {} s), tokens are issued without it; the gauge \
                 registry_token_revocation_stale says so",
                r.max_stale_seconds
            ));
        }
        out
    }

    /// Parses the plugin configuration bytes (JSON text, or a serialized
    /// `google.protobuf.Struct`), applies environment overrides, validates.
    pub fn load<I, K, V>(bytes: &[u8], env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut value = config_value(bytes)?;
        apply_env_overrides(&mut value, env)?;
        Config::from_value(value)
    }

    /// Deserializes and validates a JSON value.
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::new(path, e.into_inner().to_string())
        })?;
        validate(raw)
    }
}

#[cfg(test)]
mod tests;
