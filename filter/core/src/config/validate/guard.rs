//! Validation of `guard` (the registry's route, docs/GUARD.md) and of a plan rule's
//! `tags`. Every error names its field.

use super::ranged;
use crate::config::*;
use crate::token::access::TagPolicy;
use crate::token::keys::KeySet;

/// `plans[pi].repositories[ri].tags`: globs of tag characters and `*`, on repository
/// rules only.
pub(in crate::config) fn validate_tags(
    pi: usize,
    ri: usize,
    resource_type: &str,
    raw: RawTags,
) -> Result<TagPolicy, ConfigError> {
    let at = |field: &str| format!("plans[{pi}].repositories[{ri}].tags{field}");
    if resource_type != "repository" {
        return Err(ConfigError::new(
            at(""),
            "tag rules apply to repository rules only",
        ));
    }
    for (name, list) in [("protected", &raw.protected), ("immutable", &raw.immutable)] {
        if list.len() > TagPolicy::MAX_GLOBS {
            return Err(ConfigError::new(
                at(&format!(".{name}")),
                format!("more than {} globs", TagPolicy::MAX_GLOBS),
            ));
        }
        for (i, glob) in list.iter().enumerate() {
            if !TagPolicy::valid_glob(glob) {
                return Err(ConfigError::new(
                    at(&format!(".{name}[{i}]")),
                    format!(
                        "must be a tag glob: letters, digits, `_`, `.`, `-` and `*`, 1 to {} characters",
                        TagPolicy::MAX_GLOB_BYTES
                    ),
                ));
            }
        }
    }
    Ok(TagPolicy {
        protected: raw.protected,
        push_protected: raw.push_protected.unwrap_or(false),
        immutable: raw.immutable,
        delete: raw.delete.unwrap_or(true),
    })
}

/// `guard`: the registry's cluster, the `HEAD` timeout, and the keys registry tokens are
/// verified with (those `GET /jwks` serves).
pub(in crate::config) fn validate_guard(
    raw: RawGuard,
    signing: &SigningConfig,
) -> Result<GuardConfig, ConfigError> {
    let cluster = raw.registry_cluster;
    if cluster.trim().is_empty() || cluster.trim() != cluster {
        return Err(ConfigError::new(
            "guard.registryCluster",
            "must name the Envoy cluster of the registry",
        ));
    }
    let timeout_millis = ranged("guard.timeoutMillis", raw.timeout_millis, 5000, 100, 60_000)?;
    let keys = KeySet::from_jwks(&signing.jwks).map_err(|e| {
        ConfigError::new(
            "signing",
            format!("the keys registry tokens are verified with: {e}"),
        )
    })?;
    let mut algorithms = Vec::new();
    for alg in keys.iter().filter_map(|k| k.alg()) {
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        algorithms.push(signing.key.alg());
    }
    Ok(GuardConfig {
        registry_cluster: cluster,
        timeout_millis,
        identity_headers: raw.identity_headers.unwrap_or(true),
        keys,
        algorithms,
    })
}
