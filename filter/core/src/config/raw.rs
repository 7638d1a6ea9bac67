//! The configuration as written: serde structs that refuse unknown fields, and the bytes
//! (JSON text or a serialized `google.protobuf.Struct`) turned into a JSON value.

use serde::Deserialize;
use serde_json::Value;

use super::*;

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
    /// Subjects refused whatever credential they present (OpToken or refresh token).
    #[serde(default)]
    pub revoked_subjects: Vec<String>,
    /// Refresh-token ids (`jti`) refused.
    #[serde(default)]
    pub revoked_refresh_tokens: Vec<String>,
    /// Tenants (the `authority.tenantClaim` value) refused with 403.
    #[serde(default)]
    pub revoked_tenants: Vec<String>,
    /// Refresh tokens (off unless `lifetimeSeconds` is set).
    #[serde(default)]
    pub refresh_tokens: Option<RawRefreshTokens>,
    /// DPoP proof checks.
    #[serde(default)]
    pub dpop: Option<RawDpop>,
    /// A remote licence revocation list.
    #[serde(default)]
    pub revocation: Option<RawRevocation>,
    /// Offline Kit token bundles (`registry-token bundle`); the filter ignores it.
    #[serde(default)]
    pub offline: Option<RawOffline>,
    /// The issuance ledger the audit records are delivered to.
    #[serde(default)]
    pub ledger: Option<RawLedger>,
    /// Further trusted issuers (CI and workload identities), each with its trust policies.
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    /// The policy of callers without credentials (off when absent).
    #[serde(default)]
    pub anonymous: Option<RawAnonymous>,
    /// Guard mode on the registry's route (`/v2…`), off when absent (docs/GUARD.md).
    #[serde(default)]
    pub guard: Option<RawGuard>,
}

/// `guard` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGuard {
    /// The Envoy cluster of the registry (the immutable tags' `HEAD`).
    pub registry_cluster: String,
    /// The `HEAD`'s timeout, ms (default 5000).
    #[serde(default)]
    pub timeout_millis: Option<u64>,
    /// Set `x-registry-plan`, `-tenant`, `-subject` on what passes (default true).
    #[serde(default)]
    pub identity_headers: Option<bool>,
}

/// `plans[].repositories[].tags`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTags {
    /// Tag globs pushed only by a rule with `pushProtected`.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Whether this rule may push the protected tags (default false).
    #[serde(default)]
    pub push_protected: Option<bool>,
    /// Tag globs whose digest, once pushed, never changes.
    #[serde(default)]
    pub immutable: Vec<String>,
    /// Whether manifests may be deleted (default true).
    #[serde(default)]
    pub delete: Option<bool>,
}

/// `anonymous` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAnonymous {
    /// The plan of callers without credentials: its rules may allow only `pull`.
    pub plan: String,
}

/// One entry of `issuers`: the `authority` fields (but the tenant ones) and its policies.
/// Written out rather than `#[serde(flatten)]`-ed from [`RawAuthority`]: serde ignores
/// `deny_unknown_fields` on a flattened struct, and a misspelt field must stay an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIssuer {
    /// The token `iss` must equal it (exactly); it chooses this entry.
    pub issuer: String,
    /// The token `aud` must contain one of them.
    pub audiences: Vec<String>,
    /// Scopes the token must carry (default `[registry.token.issue]`; `[]` for workload
    /// tokens, which carry none).
    #[serde(default)]
    pub required_scopes: Option<Vec<String>>,
    /// Inline JWKS.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// OIDC discovery document URL (alternative to `jwks`).
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// Envoy cluster that reaches the issuer (with `metadataUrl`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Allowed clock skew (default 60, at most 300).
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// Tokens must be DPoP- or mTLS-bound (default true).
    #[serde(default)]
    pub require_sender_constraint: Option<bool>,
    /// JWKS refresh period with `metadataUrl` (default 300).
    #[serde(default)]
    pub jwks_refresh_seconds: Option<u64>,
    /// With `metadataUrl`: how long last-good keys stay trusted (default 86400).
    #[serde(default)]
    pub jwks_max_stale_seconds: Option<u64>,
    /// Token algorithms accepted.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// The trust policies, in order (at least one).
    #[serde(default)]
    pub policies: Vec<RawTrustPolicy>,
}

/// One trust policy (`issuers[i].policies[j]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTrustPolicy {
    /// Its name (audit, ledger).
    pub name: String,
    /// Claim conditions: claim → a value or a list of values (`*`, `**` patterns).
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, OneOrMany>,
    /// Subject template (default `{sub}`).
    #[serde(default)]
    pub subject: Option<String>,
    /// Tenant template.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Plans granted.
    #[serde(default)]
    pub plans: Vec<String>,
    /// A claim naming further plans (e.g. `groups`).
    #[serde(default)]
    pub plans_claim: Option<String>,
    /// The caller's licence.
    #[serde(default)]
    pub license: Option<String>,
    /// A list claim holding the token's own rules (`type:pattern:actions`), which narrow
    /// the plans' grant (e.g. `registry_rules`, the ledger's robot tokens).
    #[serde(default)]
    pub rules_claim: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `ledger` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLedger {
    /// Envoy cluster that reaches the ledger.
    pub cluster: String,
    /// Path of the ingest endpoint (default `/v1/ingest`).
    #[serde(default)]
    pub path: Option<String>,
    /// `:authority` (Host) of the calls (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Extra request headers (e.g. `authorization`), also from
    /// `REGISTRY_TOKEN_LEDGER__HEADERS__<NAME>`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Records per POST (default 100, 1..=1000).
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Longest a record waits for a batch to fill (default 1000, 50..=60000).
    #[serde(default)]
    pub flush_millis: Option<u64>,
    /// Records the per-process buffer holds (default 10000, batchSize..=1000000; rounded up
    /// to whole segments of min(batchSize, 16) records).
    #[serde(default)]
    pub buffer_records: Option<u64>,
    /// `drop` (default) or `refuse` when the buffer is full.
    #[serde(default)]
    pub on_backlog_full: Option<String>,
    /// Timeout of one POST (default 5000, 100..=60000).
    #[serde(default)]
    pub timeout_millis: Option<u64>,
    /// First retry delay after a failed POST (default 500, 10..=60000).
    #[serde(default)]
    pub initial_backoff_millis: Option<u64>,
    /// Longest retry delay (default 30000, initialBackoffMillis..=600000).
    #[serde(default)]
    pub max_backoff_millis: Option<u64>,
    /// Gateway instance name in the records (default: Envoy's node id).
    #[serde(default)]
    pub gateway: Option<String>,
}

/// `offline` section: the limits of `registry-token bundle` (the filter ignores it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOffline {
    /// Longest `notAfter - notBefore` of a bundle (default 30 days, 60..=31536000).
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Actions a bundled token may carry (default `[pull]`).
    #[serde(default)]
    pub allowed_actions: Option<Vec<String>>,
}

/// `refreshTokens` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRefreshTokens {
    /// Lifetime of a refresh token (300..=2592000); its presence turns refresh tokens on.
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
    /// Sealing secrets (each at least 32 characters): the first seals, all open.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// `revocation` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRevocation {
    /// URL of the list (the digest form `{"digest": "sha256-96", ..}`, JSON
    /// `{"revokedLicenses": [..]}`, a JSON array, or text lines).
    pub url: String,
    /// Envoy cluster that reaches it.
    pub cluster: String,
    /// Refresh period (default 60, 10..=86400).
    #[serde(default)]
    pub refresh_seconds: Option<u64>,
    /// Age after which the list counts as stale (default 10 × refreshSeconds, at least
    /// 300; at least refreshSeconds).
    #[serde(default)]
    pub max_stale_seconds: Option<u64>,
    /// `refuseWhenStale` (default: 503 once no list was taken for maxStaleSeconds, since
    /// the last good one or the start), `refuse` (also before the first list) or `serve`
    /// (keep issuing with what is known).
    #[serde(default)]
    pub on_stale: Option<String>,
    /// Extra request headers of the fetch (e.g. `authorization` for the ledger's feed),
    /// also from `REGISTRY_TOKEN_REVOCATION__HEADERS__<NAME>`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
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
    /// With `metadataUrl`: how long last-good keys stay trusted while every refresh fails
    /// (default 86400, refreshSeconds..=2592000).
    #[serde(default)]
    pub jwks_max_stale_seconds: Option<u64>,
    /// OpTok algorithms accepted (default: RS256/384/512, PS256/384/512, ES256/384, EdDSA).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// The claim naming the caller's tenant (default `stellaops:tenant`).
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Refuse OpTokens without a valid tenant (default false).
    #[serde(default)]
    pub require_tenant: Option<bool>,
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
    /// A PKCS#12 (PFX) file holding the key (and its certificates), standard base64;
    /// exactly one of `keyPem` and `keyPfx`.
    #[serde(default)]
    pub key_pfx: Option<String>,
    /// The password of `keyPfx` (default empty).
    #[serde(default)]
    pub key_pfx_password: Option<String>,
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
    /// Accepted `service` values (required; `["*"]` accepts any, explicitly).
    #[serde(default)]
    pub allowed_services: Option<Vec<String>>,
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
    /// Tag rules the guard enforces (repository rules only).
    #[serde(default)]
    pub tags: Option<RawTags>,
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
