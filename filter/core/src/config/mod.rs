//! The filter configuration: parsed from JSON (a `google.protobuf.StringValue`) or from a
//! decoded `google.protobuf.Struct`, overridden by `REGISTRY_TOKEN_*` environment
//! variables, then validated into a [`Config`] that the request path uses as is.
//!
//! Every error names the field (`signing.keyPem`, `plans[1].repositories[0].pattern`, …)
//! and the reason, in one line: the glue logs it and refuses the configuration.
//!
//! The reference for every field, its default and its bounds is `docs/CONFIGURATION.md`.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::policy::plan::{Catalogue, PlanSpec, RuleSpec};
use crate::policy::revocation::OnStale;
use crate::sender::nonce::NonceKey;
use crate::token::alg::Alg;
use crate::token::keys::{certificate_spki, pem_certificates, KeySet, PrivateKey, PublicKey};
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

// ---------------------------------------------------------------------------------------
// The raw model: exactly what the YAML/JSON may hold. Unknown fields are errors.
// ---------------------------------------------------------------------------------------

/// The configuration as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Where OpToks come from and how they are checked.
    pub authority: RawAuthority,
    /// How registry tokens are minted.
    pub signing: RawSigning,
    /// The registry this endpoint is the realm of.
    pub registry: RawRegistry,
    /// The plan catalogue.
    #[serde(default)]
    pub plans: Vec<RawPlan>,
    /// Plan applied when the OpTok has no `stellaops:plan` claim.
    #[serde(default)]
    pub default_plan: Option<String>,
    /// `stellaops:license` values refused with 403.
    #[serde(default)]
    pub revoked_licenses: Vec<String>,
    /// DPoP proof checks.
    #[serde(default)]
    pub dpop: Option<RawDpop>,
    /// A remote licence revocation list.
    #[serde(default)]
    pub revocation: Option<RawRevocation>,
}

/// `revocation` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRevocation {
    /// URL of the list (JSON `{"revokedLicenses": [..]}`, a JSON array, or text lines).
    pub url: String,
    /// Envoy cluster that reaches it.
    pub cluster: String,
    /// Refresh period (default 60, 10..=86400).
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    /// Age after which the list counts as stale (default 3600, at least refreshSeconds).
    #[serde(default)]
    pub max_stale_seconds: Option<u64>,
    /// `serve` (default: keep issuing with what is known) or `refuse` (503, fail closed)
    /// while the list is stale or was never fetched.
    #[serde(default)]
    pub on_stale: Option<String>,
}

/// `dpop` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDpop {
    /// Accepted distance of the proof's `iat` from now, either side (default 60, 1..=300).
    #[serde(default)]
    pub iat_window_seconds: Option<u64>,
    /// Proof algorithms accepted (default: every asymmetric algorithm supported).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Enables server nonces: the shared secret (at least 32 characters).
    #[serde(default)]
    pub nonce_secret: Option<String>,
    /// How long one nonce stays current (default 60, 10..=3600); the previous one is also
    /// accepted.
    #[serde(default)]
    pub nonce_step_seconds: Option<u64>,
}

/// `authority` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAuthority {
    /// Required; the OpTok `iss` must equal it.
    pub issuer: String,
    /// The OpTok `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Scopes the OpTok must carry (default `[registry.token.issue]`).
    #[serde(default)]
    pub required_scopes: Option<Vec<String>>,
    /// Inline JWKS.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// OIDC discovery document URL (alternative to `jwks`).
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// Envoy cluster that reaches the Authority (with `metadataUrl`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Allowed clock skew for `exp`, `nbf`, `iat` (default 60, at most 300).
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// OpToks must be DPoP- or mTLS-bound (default true).
    #[serde(default)]
    pub require_sender_constraint: Option<bool>,
    /// Period of the JWKS refresh with `metadataUrl` (default 300, 30..=86400).
    #[serde(default)]
    pub jwks_refresh_seconds: Option<u64>,
    /// OpTok algorithms accepted (default: RS256/384/512, PS256/384/512, ES256/384, EdDSA).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

/// `signing` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSigning {
    /// `iss` of minted tokens (default `registry-token-service`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `RS256` (default) or `ES256`; must fit the key.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// PKCS#1, PKCS#8 or SEC1 PEM private key.
    #[serde(default)]
    pub key_pem: Option<String>,
    /// Explicit `kid`; default derived per `kidFormat`.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `thumbprint` (RFC 7638, default) or `libtrust`.
    #[serde(default)]
    pub kid_format: Option<String>,
    /// Certificate chain, leaf first; sent as `x5c`.
    #[serde(default)]
    pub certificate_chain_pem: Option<String>,
    /// Minted token lifetime (default 300, allowed 60..=3600).
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
    /// Further public keys published on `GET /jwks` (rotation: the previous or the next
    /// key), never used for minting.
    #[serde(default)]
    pub published_keys: Vec<RawPublishedKey>,
    /// Seconds a minted token is handed out again for an identical request (0 = off, the
    /// default; at most half the lifetime).
    #[serde(default)]
    pub reuse_seconds: Option<u64>,
}

/// A key published for verifiers only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPublishedKey {
    /// `PUBLIC KEY` or `CERTIFICATE` PEM.
    pub pem: String,
    /// Explicit `kid`; default derived per `signing.kidFormat`.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// `registry` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRegistry {
    /// Public URL of the `/token` endpoint.
    pub realm: String,
    /// Accepted `service` values; empty = any.
    #[serde(default)]
    pub allowed_services: Vec<String>,
}

/// One plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPlan {
    /// Plan name, matched against `stellaops:plan`.
    pub name: String,
    /// Rules, first match wins.
    #[serde(default)]
    pub repositories: Vec<RawRule>,
}

/// One plan rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRule {
    /// Repository pattern: `*` within a segment, `**` any number of segments.
    pub pattern: String,
    /// Allowed actions (default `[pull]`); `*` = all.
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    /// `repository` (default) or `registry`.
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
}

// ---------------------------------------------------------------------------------------
// The validated model.
// ---------------------------------------------------------------------------------------

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
    /// The normalized realm URL.
    pub realm: HttpUrl,
    /// The realm as configured (for `WWW-Authenticate`).
    pub realm_text: String,
    /// Accepted services; empty = any.
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
    /// Revoked licences.
    pub revoked_licenses: HashSet<String>,
    /// DPoP.
    pub dpop: DpopConfig,
    /// The remote revocation list, when configured.
    pub revocation: Option<RevocationConfig>,
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
}

impl Config {
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

/// Turns the configuration bytes into a JSON value: JSON text when it starts with `{`
/// (after whitespace), else a serialized `google.protobuf.Struct`.
pub fn config_value(bytes: &[u8]) -> Result<Value, ConfigError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        None => Err(ConfigError::new(
            "",
            "the plugin configuration is empty (give it as a StringValue JSON or a Struct)",
        )),
        Some(b'{') => serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new("", format!("invalid JSON: {e}"))),
        Some(_) => crate::wire::structpb::decode_struct(bytes).map_err(|e| {
            ConfigError::new(
                "",
                format!("neither JSON nor a google.protobuf.Struct: {e}"),
            )
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Environment overrides.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    Json,
}

/// Every overridable field: its path and how the environment string is read.
const OVERRIDABLE: &[(&str, Kind)] = &[
    ("authority.issuer", Kind::Str),
    ("authority.audiences", Kind::StrList),
    ("authority.requiredScopes", Kind::StrList),
    ("authority.jwks", Kind::Json),
    ("authority.metadataUrl", Kind::Str),
    ("authority.cluster", Kind::Str),
    ("authority.clockSkewSeconds", Kind::Int),
    ("authority.requireSenderConstraint", Kind::Bool),
    ("authority.jwksRefreshSeconds", Kind::Int),
    ("authority.algorithms", Kind::StrList),
    ("signing.issuer", Kind::Str),
    ("signing.algorithm", Kind::Str),
    ("signing.keyPem", Kind::Str),
    ("signing.keyId", Kind::Str),
    ("signing.kidFormat", Kind::Str),
    ("signing.certificateChainPem", Kind::Str),
    ("signing.lifetimeSeconds", Kind::Int),
    ("signing.reuseSeconds", Kind::Int),
    ("registry.realm", Kind::Str),
    ("registry.allowedServices", Kind::StrList),
    ("plans", Kind::Json),
    ("defaultPlan", Kind::Str),
    ("revokedLicenses", Kind::StrList),
    ("dpop.iatWindowSeconds", Kind::Int),
    ("dpop.algorithms", Kind::StrList),
    ("dpop.nonceSecret", Kind::Str),
    ("dpop.nonceStepSeconds", Kind::Int),
    ("revocation.url", Kind::Str),
    ("revocation.cluster", Kind::Str),
    ("revocation.refreshSeconds", Kind::Int),
    ("revocation.maxStaleSeconds", Kind::Int),
    ("revocation.onStale", Kind::Str),
];

/// The environment variable name of a field path: `signing.keyPem` →
/// `REGISTRY_TOKEN_SIGNING__KEYPEM`.
pub fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "__").to_ascii_uppercase()
    )
}

/// Applies `REGISTRY_TOKEN_<SECTION>__<FIELD>` variables over the configuration value.
/// An empty value counts as unset. An unknown `REGISTRY_TOKEN_*` name is an error (a typo
/// must not silently leave the file's value in force). Returns the applied names.
pub fn apply_env_overrides<I, K, V>(value: &mut Value, env: I) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.as_ref().starts_with(ENV_PREFIX))
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect();
    vars.sort();
    for (name, text) in vars {
        if text.is_empty() {
            continue;
        }
        let Some((path, kind)) = OVERRIDABLE
            .iter()
            .find(|(path, _)| env_name(path) == name)
            .copied()
        else {
            return Err(ConfigError::new(
                name.clone(),
                "unknown REGISTRY_TOKEN_* environment variable (see docs/CONFIGURATION.md)",
            ));
        };
        let parsed = parse_env_value(kind, &text)
            .map_err(|reason| ConfigError::new(format!("{path} (from {name})"), reason))?;
        set_path(value, path, parsed).map_err(|reason| ConfigError::new(path, reason))?;
        applied.push(name);
    }
    Ok(applied)
}

fn parse_env_value(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        Kind::Str => Ok(Value::String(text.to_string())),
        Kind::Int => text
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| format!("expected a non-negative integer, got {:?}", short(text))),
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {:?}", short(text))),
        },
        Kind::StrList => {
            let t = text.trim();
            if t.starts_with('[') {
                let v: Value =
                    serde_json::from_str(t).map_err(|e| format!("invalid JSON array: {e}"))?;
                Ok(v)
            } else {
                Ok(Value::Array(
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }
        }
        Kind::Json => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}")),
    }
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

fn set_path(root: &mut Value, path: &str, new: Value) -> Result<(), String> {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let obj = node
            .as_object_mut()
            .ok_or_else(|| "the configuration there is not an object".to_string())?;
        if parts.peek().is_none() {
            obj.insert(part.to_string(), new);
            return Ok(());
        }
        node = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------

fn non_empty_list(field: &str, list: &[String]) -> Result<(), ConfigError> {
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

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let authority = validate_authority(raw.authority)?;
    let signing = validate_signing(raw.signing)?;
    let registry = validate_registry(raw.registry)?;

    let specs: Vec<PlanSpec> = raw
        .plans
        .into_iter()
        .map(|p| PlanSpec {
            name: p.name,
            rules: p
                .repositories
                .into_iter()
                .map(|r| RuleSpec {
                    resource_type: r.resource_type.unwrap_or_else(|| "repository".into()),
                    pattern: r.pattern,
                    actions: r.actions.unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
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
    let dpop = validate_dpop(raw.dpop.unwrap_or_default())?;
    let revocation = raw.revocation.map(validate_revocation).transpose()?;
    Ok(Config {
        authority,
        signing,
        registry,
        catalogue,
        default_plan: raw.default_plan,
        revoked_licenses: raw.revoked_licenses.into_iter().collect(),
        dpop,
        revocation,
    })
}

fn validate_revocation(r: RawRevocation) -> Result<RevocationConfig, ConfigError> {
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
    let max_stale_seconds = r.max_stale_seconds.unwrap_or(3600);
    if max_stale_seconds < refresh_seconds {
        return Err(ConfigError::new(
            "revocation.maxStaleSeconds",
            format!("{max_stale_seconds} is below refreshSeconds ({refresh_seconds})"),
        ));
    }
    let on_stale = match r.on_stale.as_deref().unwrap_or("serve") {
        "serve" => OnStale::Serve,
        "refuse" => OnStale::Refuse,
        other => {
            return Err(ConfigError::new(
                "revocation.onStale",
                format!("{:?} is not serve or refuse", short(other)),
            ))
        }
    };
    Ok(RevocationConfig {
        url,
        cluster: r.cluster,
        refresh_seconds,
        max_stale_seconds,
        on_stale,
    })
}

fn validate_dpop(d: RawDpop) -> Result<DpopConfig, ConfigError> {
    let iat_window_seconds = d.iat_window_seconds.unwrap_or(60);
    if !(1..=300).contains(&iat_window_seconds) {
        return Err(ConfigError::new(
            "dpop.iatWindowSeconds",
            format!("{iat_window_seconds} is outside 1..=300"),
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

fn parse_algorithms(field: &str, list: Option<Vec<String>>) -> Result<Vec<Alg>, ConfigError> {
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

fn validate_authority(a: RawAuthority) -> Result<AuthorityConfig, ConfigError> {
    if a.issuer.trim().is_empty() {
        return Err(ConfigError::new("authority.issuer", "must not be empty"));
    }
    if a.audiences.is_empty() {
        return Err(ConfigError::new(
            "authority.audiences",
            "must list at least one audience",
        ));
    }
    non_empty_list("authority.audiences", &a.audiences)?;
    let required_scopes = a
        .required_scopes
        .unwrap_or_else(|| vec![DEFAULT_REQUIRED_SCOPE.to_string()]);
    non_empty_list("authority.requiredScopes", &required_scopes)?;
    for (i, s) in required_scopes.iter().enumerate() {
        if s.contains(' ') {
            return Err(ConfigError::new(
                format!("authority.requiredScopes[{i}]"),
                "a scope must not contain spaces",
            ));
        }
    }
    let clock_skew_seconds = a.clock_skew_seconds.unwrap_or(60);
    if clock_skew_seconds > 300 {
        return Err(ConfigError::new(
            "authority.clockSkewSeconds",
            format!("{clock_skew_seconds} is above the maximum of 300"),
        ));
    }
    let refresh_seconds = a.jwks_refresh_seconds.unwrap_or(300);
    if !(30..=86_400).contains(&refresh_seconds) {
        return Err(ConfigError::new(
            "authority.jwksRefreshSeconds",
            format!("{refresh_seconds} is outside 30..=86400"),
        ));
    }
    let keys = match (a.jwks, a.metadata_url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "authority.jwks",
                "set either jwks or metadataUrl, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "authority.jwks",
                "one of jwks (inline keys) or metadataUrl (with cluster) is required",
            ))
        }
        (Some(jwks), None) => {
            if a.cluster.is_some() {
                return Err(ConfigError::new(
                    "authority.cluster",
                    "only used with metadataUrl",
                ));
            }
            let set = KeySet::from_jwks(&jwks)
                .map_err(|e| ConfigError::new("authority.jwks", e.to_string()))?;
            if set.is_empty() {
                return Err(ConfigError::new(
                    "authority.jwks",
                    "holds no usable signing key",
                ));
            }
            KeySource::Inline(set)
        }
        (None, Some(url)) => {
            let metadata_url = HttpUrl::parse(&url, false)
                .map_err(|e| ConfigError::new("authority.metadataUrl", e))?;
            let cluster = a.cluster.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                ConfigError::new(
                    "authority.cluster",
                    "required with metadataUrl: the Envoy cluster that reaches the Authority",
                )
            })?;
            KeySource::Remote {
                metadata_url,
                cluster,
                refresh_seconds,
            }
        }
    };
    let algorithms = parse_algorithms("authority.algorithms", a.algorithms)?;
    Ok(AuthorityConfig {
        issuer: a.issuer,
        audiences: a.audiences,
        required_scopes,
        keys,
        clock_skew_seconds,
        require_sender_constraint: a.require_sender_constraint.unwrap_or(true),
        algorithms,
    })
}

fn validate_signing(s: RawSigning) -> Result<SigningConfig, ConfigError> {
    let issuer = s
        .issuer
        .unwrap_or_else(|| "registry-token-service".to_string());
    if issuer.trim().is_empty() {
        return Err(ConfigError::new("signing.issuer", "must not be empty"));
    }
    let pem = s.key_pem.filter(|p| !p.trim().is_empty()).ok_or_else(|| {
        ConfigError::new(
            "signing.keyPem",
            format!(
                "required: a PEM private key (or set {})",
                env_name("signing.keyPem")
            ),
        )
    })?;
    let key = PrivateKey::from_pem(&pem)
        .map_err(|e| ConfigError::new("signing.keyPem", e.to_string()))?;
    let algorithm = s.algorithm.unwrap_or_else(|| "RS256".to_string());
    let alg = match algorithm.as_str() {
        "RS256" => Alg::Rs256,
        "ES256" => Alg::Es256,
        other => {
            return Err(ConfigError::new(
                "signing.algorithm",
                format!("{:?} is not supported (RS256 or ES256)", short(other)),
            ))
        }
    };
    if key.alg() != alg {
        return Err(ConfigError::new(
            "signing.algorithm",
            format!(
                "{} does not fit the signing key, which is a {} key",
                alg.name(),
                key.public().key_type_name()
            ),
        ));
    }
    let kid_format = match s.kid_format.as_deref().unwrap_or("thumbprint") {
        "thumbprint" => KidFormat::Thumbprint,
        "libtrust" => KidFormat::Libtrust,
        other => {
            return Err(ConfigError::new(
                "signing.kidFormat",
                format!("{:?} is not thumbprint or libtrust", short(other)),
            ))
        }
    };
    let kid = match s.key_id {
        Some(kid) if kid.trim().is_empty() => {
            return Err(ConfigError::new(
                "signing.keyId",
                "must not be empty when set",
            ))
        }
        Some(kid) => kid,
        None => match kid_format {
            KidFormat::Thumbprint => key.public().thumbprint().to_string(),
            KidFormat::Libtrust => key.public().libtrust_kid(),
        },
    };
    let x5c = match s.certificate_chain_pem {
        None => None,
        Some(pem) if pem.trim().is_empty() => None,
        Some(pem) => {
            let certs = pem_certificates(&pem)
                .map_err(|e| ConfigError::new("signing.certificateChainPem", e.to_string()))?;
            let leaf = certs.first().ok_or_else(|| {
                ConfigError::new("signing.certificateChainPem", "holds no certificate")
            })?;
            let spki = certificate_spki(leaf)
                .map_err(|e| ConfigError::new("signing.certificateChainPem", e.to_string()))?;
            let leaf_key = PublicKey::from_spki_der(&spki)
                .map_err(|e| ConfigError::new("signing.certificateChainPem", e.to_string()))?;
            if !leaf_key.same_key(key.public()) {
                return Err(ConfigError::new(
                    "signing.certificateChainPem",
                    "the first (leaf) certificate does not hold the signing key's public key",
                ));
            }
            Some(
                certs
                    .iter()
                    .map(|c| crate::wire::b64::std_encode(c))
                    .collect(),
            )
        }
    };
    let lifetime_seconds = s.lifetime_seconds.unwrap_or(DEFAULT_LIFETIME_SECONDS);
    if !(MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&lifetime_seconds) {
        return Err(ConfigError::new(
            "signing.lifetimeSeconds",
            format!(
                "{lifetime_seconds} is outside {MIN_LIFETIME_SECONDS}..={MAX_LIFETIME_SECONDS}"
            ),
        ));
    }
    let reuse_seconds = s.reuse_seconds.unwrap_or(0);
    if reuse_seconds > lifetime_seconds / 2 {
        return Err(ConfigError::new(
            "signing.reuseSeconds",
            format!(
                "{reuse_seconds} is above half the lifetime ({})",
                lifetime_seconds / 2
            ),
        ));
    }
    let mut published = vec![key.public().clone().with_kid(kid.clone())];
    for (i, p) in s.published_keys.iter().enumerate() {
        let field = format!("signing.publishedKeys[{i}]");
        let public = PublicKey::from_pem(&p.pem)
            .map_err(|e| ConfigError::new(format!("{field}.pem"), e.to_string()))?;
        let pkid = match &p.key_id {
            Some(k) if k.trim().is_empty() => {
                return Err(ConfigError::new(
                    format!("{field}.keyId"),
                    "must not be empty when set",
                ))
            }
            Some(k) => k.clone(),
            None => match kid_format {
                KidFormat::Thumbprint => public.thumbprint().to_string(),
                KidFormat::Libtrust => public.libtrust_kid(),
            },
        };
        if published.iter().any(|k| k.kid() == Some(pkid.as_str())) {
            return Err(ConfigError::new(
                format!("{field}.keyId"),
                format!("kid {pkid:?} is already used by another key"),
            ));
        }
        published.push(public.with_kid(pkid));
    }
    let jwks = serde_json::json!({
        "keys": published.iter().map(PublicKey::to_jwk).collect::<Vec<_>>()
    });
    Ok(SigningConfig {
        issuer,
        key,
        kid,
        x5c,
        lifetime_seconds,
        reuse_seconds,
        jwks,
    })
}

fn validate_registry(r: RawRegistry) -> Result<RegistryConfig, ConfigError> {
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
    non_empty_list("registry.allowedServices", &r.allowed_services)?;
    Ok(RegistryConfig {
        realm,
        realm_text: r.realm,
        allowed_services: r.allowed_services,
    })
}
