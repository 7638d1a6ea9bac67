//! Validation: the raw configuration into the [`Config`] the request path uses as is.
//! Every error names its field.

use super::env::short;
use super::*;
use crate::policy::plan::{Catalogue, PlanSpec, RuleSpec};
use crate::policy::revocation::{OnStale, RevokedLists};
use crate::sender::nonce::NonceKey;
use crate::token::alg::Alg;
use crate::token::refresh::RefreshKeys;
use crate::wire::url::HttpUrl;

mod guard;
mod keys;
mod trust;

use keys::{validate_authority, validate_signing};

pub(super) fn non_empty_list(field: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, item) in list.iter().enumerate() {
        if item.trim().is_empty() || item.trim() != item {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                "must be a non-empty string without surrounding spaces",
            ));
        }
    }
    Ok(())
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let authority = validate_authority(raw.authority)?;
    let signing = validate_signing(raw.signing)?;
    let registry = validate_registry(raw.registry)?;

    let mut specs: Vec<PlanSpec> = Vec::with_capacity(raw.plans.len());
    for (pi, p) in raw.plans.into_iter().enumerate() {
        let mut rules = Vec::with_capacity(p.repositories.len());
        for (ri, r) in p.repositories.into_iter().enumerate() {
            let resource_type = r.resource_type.unwrap_or_else(|| "repository".into());
            let tags = r
                .tags
                .map(|t| guard::validate_tags(pi, ri, &resource_type, t))
                .transpose()?;
            rules.push(RuleSpec {
                resource_type,
                pattern: r.pattern,
                actions: r.actions.unwrap_or_default(),
                tags,
            });
        }
        specs.push(PlanSpec {
            name: p.name,
            rules,
        });
    }
    let catalogue = Catalogue::compile(&specs).map_err(|e| ConfigError::new("", e.to_string()))?;
    if let Some(plan) = &raw.default_plan {
        if !catalogue.has_plan(plan) {
            return Err(ConfigError::new(
                "defaultPlan",
                format!("names no plan in `plans` ({plan:?})"),
            ));
        }
    }
    non_empty_list("revokedLicenses", &raw.revoked_licenses)?;
    non_empty_list("revokedSubjects", &raw.revoked_subjects)?;
    non_empty_list("revokedRefreshTokens", &raw.revoked_refresh_tokens)?;
    non_empty_list("revokedTenants", &raw.revoked_tenants)?;
    let refresh_tokens = raw
        .refresh_tokens
        .map(validate_refresh_tokens)
        .transpose()?
        .flatten();
    let dpop = validate_dpop(raw.dpop.unwrap_or_default())?;
    let revocation = raw.revocation.map(validate_revocation).transpose()?;
    let offline = validate_offline(raw.offline.unwrap_or_default())?;
    let ledger = raw.ledger.map(validate_ledger).transpose()?;
    let issuers = trust::validate_issuers(raw.issuers, &authority, &catalogue)?;
    let anonymous = raw
        .anonymous
        .map(|a| trust::validate_anonymous(a, &catalogue))
        .transpose()?;
    let guard = raw
        .guard
        .map(|g| guard::validate_guard(g, &signing))
        .transpose()?;
    Ok(Config {
        authority,
        signing,
        registry,
        catalogue,
        default_plan: raw.default_plan,
        revoked: RevokedLists {
            licenses: raw.revoked_licenses.into_iter().collect(),
            subjects: raw.revoked_subjects.into_iter().collect(),
            refresh_tokens: raw.revoked_refresh_tokens.into_iter().collect(),
            tenants: raw.revoked_tenants.into_iter().collect(),
        },
        refresh_tokens,
        dpop,
        revocation,
        offline,
        ledger,
        issuers,
        anonymous,
        guard,
    })
}

/// `offline`: bounds of `maxLifetimeSeconds`, actions among `pull`, `push`, `delete`, `*`.
pub(super) fn validate_offline(o: RawOffline) -> Result<OfflineConfig, ConfigError> {
    let max_lifetime_seconds = o
        .max_lifetime_seconds
        .unwrap_or(DEFAULT_OFFLINE_MAX_LIFETIME_SECONDS);
    if !(MIN_OFFLINE_MAX_LIFETIME_SECONDS..=MAX_OFFLINE_MAX_LIFETIME_SECONDS)
        .contains(&max_lifetime_seconds)
    {
        return Err(ConfigError::new(
            "offline.maxLifetimeSeconds",
            format!(
                "{max_lifetime_seconds} is outside {MIN_OFFLINE_MAX_LIFETIME_SECONDS}..={MAX_OFFLINE_MAX_LIFETIME_SECONDS}"
            ),
        ));
    }
    let Some(list) = o.allowed_actions else {
        return Ok(OfflineConfig {
            max_lifetime_seconds,
            ..OfflineConfig::default()
        });
    };
    if list.is_empty() {
        return Err(ConfigError::new(
            "offline.allowedActions",
            "must list at least one action (pull, push, delete or *)",
        ));
    }
    let mut allowed_actions: Vec<String> = Vec::new();
    for (i, action) in list.into_iter().enumerate() {
        if !matches!(action.as_str(), "pull" | "push" | "delete" | "*") {
            return Err(ConfigError::new(
                format!("offline.allowedActions[{i}]"),
                format!("{:?} is not pull, push, delete or *", short(&action)),
            ));
        }
        if !allowed_actions.contains(&action) {
            allowed_actions.push(action);
        }
    }
    Ok(OfflineConfig {
        max_lifetime_seconds,
        allowed_actions,
    })
}

/// `refreshTokens`: `None` (off) without `lifetimeSeconds` and without secrets.
pub(super) fn validate_refresh_tokens(
    r: RawRefreshTokens,
) -> Result<Option<RefreshConfig>, ConfigError> {
    let Some(lifetime_seconds) = r.lifetime_seconds else {
        if r.secrets.is_empty() {
            return Ok(None);
        }
        return Err(ConfigError::new(
            "refreshTokens.lifetimeSeconds",
            "required with secrets: setting it turns refresh tokens on",
        ));
    };
    if !(MIN_REFRESH_LIFETIME_SECONDS..=MAX_REFRESH_LIFETIME_SECONDS).contains(&lifetime_seconds) {
        return Err(ConfigError::new(
            "refreshTokens.lifetimeSeconds",
            format!(
                "{lifetime_seconds} is outside {MIN_REFRESH_LIFETIME_SECONDS}..={MAX_REFRESH_LIFETIME_SECONDS}"
            ),
        ));
    }
    if r.secrets.is_empty() {
        return Err(ConfigError::new(
            "refreshTokens.secrets",
            format!(
                "required when refresh tokens are on: at least one secret (or set {})",
                env_name("refreshTokens.secrets")
            ),
        ));
    }
    for (i, secret) in r.secrets.iter().enumerate() {
        if secret.chars().count() < MIN_REFRESH_SECRET_CHARS {
            return Err(ConfigError::new(
                format!("refreshTokens.secrets[{i}]"),
                format!("must be at least {MIN_REFRESH_SECRET_CHARS} characters"),
            ));
        }
    }
    Ok(Some(RefreshConfig {
        lifetime_seconds,
        keys: RefreshKeys::new(r.secrets.into_iter().map(String::into_bytes).collect()),
    }))
}

/// `revocation.maxStaleSeconds` when not given: ten refresh periods, at least five minutes
/// (a ledger restart or a short outage costs no request; a list that cannot be fetched or
/// taken for longer fails closed unless `onStale` is `serve`).
pub(crate) fn default_revocation_max_stale(refresh_seconds: u64) -> u64 {
    refresh_seconds.saturating_mul(10).max(300)
}

pub(super) fn validate_revocation(r: RawRevocation) -> Result<RevocationConfig, ConfigError> {
    let url =
        HttpUrl::parse_keeping_query(&r.url).map_err(|e| ConfigError::new("revocation.url", e))?;
    if r.cluster.trim().is_empty() {
        return Err(ConfigError::new(
            "revocation.cluster",
            "must name the Envoy cluster that reaches the list",
        ));
    }
    let refresh_seconds = r.refresh_seconds.unwrap_or(60);
    if !(10..=86_400).contains(&refresh_seconds) {
        return Err(ConfigError::new(
            "revocation.refreshSeconds",
            format!("{refresh_seconds} is outside 10..=86400"),
        ));
    }
    let max_stale_seconds = r
        .max_stale_seconds
        .unwrap_or_else(|| default_revocation_max_stale(refresh_seconds));
    if max_stale_seconds < refresh_seconds {
        return Err(ConfigError::new(
            "revocation.maxStaleSeconds",
            format!("{max_stale_seconds} is below refreshSeconds ({refresh_seconds})"),
        ));
    }
    let on_stale = match r.on_stale.as_deref().unwrap_or("refuseWhenStale") {
        "serve" => OnStale::Serve,
        "refuse" => OnStale::Refuse,
        "refuseWhenStale" => OnStale::RefuseWhenStale,
        other => {
            return Err(ConfigError::new(
                "revocation.onStale",
                format!("{:?} is not refuseWhenStale, refuse or serve", short(other)),
            ))
        }
    };
    let headers = validate_headers("revocation.headers", &r.headers)?;
    Ok(RevocationConfig {
        url,
        cluster: r.cluster,
        refresh_seconds,
        max_stale_seconds,
        on_stale,
        headers,
    })
}

/// Headers the filter sets itself on its calls: not configurable.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "user-agent",
    "accept",
];

/// Extra headers of an outgoing call: lowercase token names (not pseudo-headers nor
/// [`RESERVED_HEADERS`]), values without control characters.
pub(super) fn validate_headers(
    field: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let at = || format!("{field}.{name}");
        if lower.is_empty()
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError::new(
                at(),
                "a header name is a non-empty HTTP token (letters, digits, -, _ …)",
            ));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(ConfigError::new(at(), "the filter sets this header itself"));
        }
        if out.iter().any(|(n, _)| *n == lower) {
            return Err(ConfigError::new(
                at(),
                "given twice (names are case-insensitive)",
            ));
        }
        if value.is_empty() || value.chars().any(|c| c.is_control()) {
            return Err(ConfigError::new(
                at(),
                "the value must be non-empty, without control characters",
            ));
        }
        out.push((lower, value.clone()));
    }
    Ok(out)
}

fn ranged(
    field: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let v = value.unwrap_or(default);
    if !(min..=max).contains(&v) {
        return Err(ConfigError::new(
            field,
            format!("{v} is outside {min}..={max}"),
        ));
    }
    Ok(v)
}

pub(super) fn validate_ledger(l: RawLedger) -> Result<LedgerConfig, ConfigError> {
    if l.cluster.trim().is_empty() || l.cluster.trim() != l.cluster {
        return Err(ConfigError::new(
            "ledger.cluster",
            "must name the Envoy cluster that reaches the ledger",
        ));
    }
    let path = l.path.unwrap_or_else(|| "/v1/ingest".to_string());
    if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ' || c == '#') {
        return Err(ConfigError::new(
            "ledger.path",
            "must be an absolute path (starts with /, no spaces, no fragment)",
        ));
    }
    let authority = l.authority.unwrap_or_else(|| l.cluster.clone());
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_control() || c == ' ' || c == '/')
    {
        return Err(ConfigError::new(
            "ledger.authority",
            "must be a host[:port] without spaces or slashes",
        ));
    }
    let headers = validate_headers("ledger.headers", &l.headers)?;
    let batch_size = ranged("ledger.batchSize", l.batch_size, 100, 1, 1000)?;
    let flush_millis = ranged("ledger.flushMillis", l.flush_millis, 1000, 50, 60_000)?;
    let buffer = ranged(
        "ledger.bufferRecords",
        l.buffer_records,
        10_000,
        1,
        1_000_000,
    )?;
    if buffer < batch_size {
        return Err(ConfigError::new(
            "ledger.bufferRecords",
            format!("{buffer} is below batchSize ({batch_size})"),
        ));
    }
    let buffer_records = buffer.div_ceil(batch_size) * batch_size;
    let on_backlog_full = match l.on_backlog_full.as_deref().unwrap_or("drop") {
        "drop" => OnBacklogFull::Drop,
        "refuse" => OnBacklogFull::Refuse,
        other => {
            return Err(ConfigError::new(
                "ledger.onBacklogFull",
                format!("{:?} is not drop or refuse", short(other)),
            ))
        }
    };
    let timeout_millis = ranged("ledger.timeoutMillis", l.timeout_millis, 5000, 100, 60_000)?;
    let initial_backoff_millis = ranged(
        "ledger.initialBackoffMillis",
        l.initial_backoff_millis,
        500,
        10,
        60_000,
    )?;
    let max_backoff_millis = ranged(
        "ledger.maxBackoffMillis",
        l.max_backoff_millis,
        30_000,
        initial_backoff_millis,
        600_000,
    )?;
    let gateway = match l.gateway {
        Some(g) if g.trim().is_empty() || g.chars().any(char::is_control) || g.len() > 256 => {
            return Err(ConfigError::new(
                "ledger.gateway",
                "must be 1..=256 bytes without control characters",
            ))
        }
        g => g,
    };
    Ok(LedgerConfig {
        cluster: l.cluster,
        path,
        authority,
        headers,
        // Bounded above: the casts cannot truncate.
        batch_size: usize::try_from(batch_size).unwrap_or(1000),
        flush_millis,
        buffer_records: usize::try_from(buffer_records).unwrap_or(1_000_000),
        on_backlog_full,
        timeout_millis,
        initial_backoff_millis,
        max_backoff_millis,
        gateway,
    })
}

pub(super) fn validate_dpop(d: RawDpop) -> Result<DpopConfig, ConfigError> {
    let iat_window_seconds = d.iat_window_seconds.unwrap_or(60);
    let max = crate::sender::replay::MAX_IAT_WINDOW_SECONDS;
    if !(1..=max).contains(&iat_window_seconds) {
        return Err(ConfigError::new(
            "dpop.iatWindowSeconds",
            format!("{iat_window_seconds} is outside 1..={max}"),
        ));
    }
    let algorithms = parse_algorithms("dpop.algorithms", d.algorithms)?;
    let step = d.nonce_step_seconds.unwrap_or(60);
    if !(10..=3600).contains(&step) {
        return Err(ConfigError::new(
            "dpop.nonceStepSeconds",
            format!("{step} is outside 10..=3600"),
        ));
    }
    let nonce = match d.nonce_secret {
        None => None,
        Some(secret) if secret.len() < 32 => {
            return Err(ConfigError::new(
                "dpop.nonceSecret",
                "must be at least 32 characters (shared by every replica)",
            ))
        }
        Some(secret) => Some(NonceKey::new(secret.into_bytes(), step)),
    };
    Ok(DpopConfig {
        iat_window_seconds,
        algorithms,
        nonce,
    })
}

pub(super) fn parse_algorithms(
    field: &str,
    list: Option<Vec<String>>,
) -> Result<Vec<Alg>, ConfigError> {
    let Some(list) = list else {
        return Ok(Alg::ALL.to_vec());
    };
    if list.is_empty() {
        return Err(ConfigError::new(field, "must list at least one algorithm"));
    }
    let mut algs = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let alg = Alg::parse(name).ok_or_else(|| {
            ConfigError::new(
                format!("{field}[{i}]"),
                format!(
                    "{:?} is not an accepted asymmetric JWS algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA)",
                    short(name)
                ),
            )
        })?;
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    Ok(algs)
}

pub(super) fn validate_registry(r: RawRegistry) -> Result<RegistryConfig, ConfigError> {
    let realm =
        HttpUrl::parse(&r.realm, false).map_err(|e| ConfigError::new("registry.realm", e))?;
    for own in [HEALTHZ_PATH, JWKS_PATH] {
        if realm.path == own {
            return Err(ConfigError::new(
                "registry.realm",
                format!("its path {own} is another endpoint of the filter; use e.g. /token"),
            ));
        }
    }
    // The minted `aud` is the caller's `service`: without an allow-list a token for any
    // registry that trusts the same key is one query parameter away.
    let Some(services) = r.allowed_services else {
        return Err(ConfigError::new(
            "registry.allowedServices",
            "required: the registry's auth.token.service value(s); [\"*\"] accepts any service (not recommended)",
        ));
    };
    if services.is_empty() {
        return Err(ConfigError::new(
            "registry.allowedServices",
            "is empty: list the registry's auth.token.service value(s), or [\"*\"] to accept any",
        ));
    }
    let any_service = services.iter().any(|s| s == "*");
    if any_service && services.len() > 1 {
        return Err(ConfigError::new(
            "registry.allowedServices",
            "\"*\" accepts any service and cannot be combined with names",
        ));
    }
    non_empty_list("registry.allowedServices", &services)?;
    Ok(RegistryConfig {
        realm,
        realm_text: r.realm,
        allowed_services: if any_service { Vec::new() } else { services },
        any_service,
    })
}
