//! `REGISTRY_TOKEN_<SECTION>__<FIELD>` environment overrides, applied to the raw JSON before
//! validation, typed by the field they override.

use serde_json::Value;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    Json,
}

/// Every overridable field: its path and how the environment string is read.
pub(super) const OVERRIDABLE: &[(&str, Kind)] = &[
    ("authority.issuer", Kind::Str),
    ("authority.audiences", Kind::StrList),
    ("authority.requiredScopes", Kind::StrList),
    ("authority.jwks", Kind::Json),
    ("authority.metadataUrl", Kind::Str),
    ("authority.cluster", Kind::Str),
    ("authority.clockSkewSeconds", Kind::Int),
    ("authority.requireSenderConstraint", Kind::Bool),
    ("authority.jwksRefreshSeconds", Kind::Int),
    ("authority.jwksMaxStaleSeconds", Kind::Int),
    ("authority.algorithms", Kind::StrList),
    ("authority.tenantClaim", Kind::Str),
    ("authority.requireTenant", Kind::Bool),
    ("signing.issuer", Kind::Str),
    ("signing.algorithm", Kind::Str),
    ("signing.keyPem", Kind::Str),
    ("signing.keyPfx", Kind::Str),
    ("signing.keyPfxPassword", Kind::Str),
    ("signing.keyId", Kind::Str),
    ("signing.kidFormat", Kind::Str),
    ("signing.certificateChainPem", Kind::Str),
    ("signing.lifetimeSeconds", Kind::Int),
    ("signing.reuseSeconds", Kind::Int),
    ("registry.realm", Kind::Str),
    ("registry.allowedServices", Kind::StrList),
    ("plans", Kind::Json),
    ("issuers", Kind::Json),
    ("anonymous.plan", Kind::Str),
    ("defaultPlan", Kind::Str),
    ("revokedLicenses", Kind::StrList),
    ("revokedSubjects", Kind::StrList),
    ("revokedRefreshTokens", Kind::StrList),
    ("revokedTenants", Kind::StrList),
    ("refreshTokens.lifetimeSeconds", Kind::Int),
    ("refreshTokens.secrets", Kind::StrList),
    ("dpop.iatWindowSeconds", Kind::Int),
    ("dpop.algorithms", Kind::StrList),
    ("dpop.nonceSecret", Kind::Str),
    ("dpop.nonceStepSeconds", Kind::Int),
    ("revocation.url", Kind::Str),
    ("revocation.cluster", Kind::Str),
    ("revocation.refreshSeconds", Kind::Int),
    ("revocation.maxStaleSeconds", Kind::Int),
    ("revocation.onStale", Kind::Str),
    ("offline.maxLifetimeSeconds", Kind::Int),
    ("offline.allowedActions", Kind::StrList),
    ("ledger.cluster", Kind::Str),
    ("ledger.path", Kind::Str),
    ("ledger.authority", Kind::Str),
    ("ledger.batchSize", Kind::Int),
    ("ledger.flushMillis", Kind::Int),
    ("ledger.bufferRecords", Kind::Int),
    ("ledger.onBacklogFull", Kind::Str),
    ("ledger.timeoutMillis", Kind::Int),
    ("ledger.initialBackoffMillis", Kind::Int),
    ("ledger.maxBackoffMillis", Kind::Int),
    ("ledger.gateway", Kind::Str),
    ("guard.registryCluster", Kind::Str),
    ("guard.timeoutMillis", Kind::Int),
    ("guard.identityHeaders", Kind::Bool),
];

/// Header maps whose entries come from `REGISTRY_TOKEN_<SECTION>__HEADERS__<NAME>`: the
/// header name is `<NAME>` lowercased with `_` read as `-` (`…__HEADERS__AUTHORIZATION` →
/// `authorization`), and it replaces a configured header of that name.
pub(super) const HEADER_MAPS: &[&str] = &["ledger.headers", "revocation.headers"];

/// The header a `REGISTRY_TOKEN_<SECTION>__HEADERS__<NAME>` variable sets, if it is one.
fn header_override(name: &str) -> Option<(&'static str, String)> {
    HEADER_MAPS.iter().find_map(|map| {
        let prefix = format!("{}__", env_name(map));
        let header = name.strip_prefix(&prefix)?;
        (!header.is_empty()).then(|| (*map, header.to_ascii_lowercase().replace('_', "-")))
    })
}

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
        if let Some((map, header)) = header_override(&name) {
            set_header(value, map, &header, &text)
                .map_err(|reason| ConfigError::new(format!("{map} (from {name})"), reason))?;
            applied.push(name);
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

/// Sets `header` in the map at `map_path` (created when missing), replacing a
/// case-insensitively equal name.
fn set_header(root: &mut Value, map_path: &str, header: &str, text: &str) -> Result<(), String> {
    let mut node = &mut *root;
    for part in map_path.split('.') {
        let obj = node
            .as_object_mut()
            .ok_or_else(|| "the configuration there is not an object".to_string())?;
        node = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    let obj = node
        .as_object_mut()
        .ok_or_else(|| "the configuration there is not an object".to_string())?;
    obj.retain(|k, _| !k.eq_ignore_ascii_case(header));
    obj.insert(header.to_string(), Value::String(text.to_string()));
    Ok(())
}

pub(super) fn parse_env_value(kind: Kind, text: &str) -> Result<Value, String> {
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

pub(super) fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

pub(super) fn set_path(root: &mut Value, path: &str, new: Value) -> Result<(), String> {
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
