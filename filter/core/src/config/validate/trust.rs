//! Validation of `issuers` (each entry's token checks as for `authority`, its trust
//! policies compiled against the plan catalogue) and `anonymous` (its plan may allow only
//! `pull`). Every error names its field.

use super::validate_authority;
use crate::config::*;
use crate::policy::plan::Catalogue;
use crate::policy::trust::{TrustPolicies, TrustSpec};

/// Most entries of `issuers`.
pub const MAX_ISSUERS: usize = 16;

pub(in crate::config) fn validate_issuers(
    raw: Vec<RawIssuer>,
    authority: &AuthorityConfig,
    catalogue: &Catalogue,
) -> Result<Vec<IssuerConfig>, ConfigError> {
    if raw.len() > MAX_ISSUERS {
        return Err(ConfigError::new(
            "issuers",
            format!("more than {MAX_ISSUERS} issuers"),
        ));
    }
    let mut out: Vec<IssuerConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("issuers[{i}].{field}");
        let policies_raw = r.policies;
        let checks = validate_authority(RawAuthority {
            issuer: r.issuer,
            audiences: r.audiences,
            required_scopes: r.required_scopes,
            jwks: r.jwks,
            metadata_url: r.metadata_url,
            cluster: r.cluster,
            clock_skew_seconds: r.clock_skew_seconds,
            require_sender_constraint: r.require_sender_constraint,
            jwks_refresh_seconds: r.jwks_refresh_seconds,
            jwks_max_stale_seconds: r.jwks_max_stale_seconds,
            algorithms: r.algorithms,
            tenant_claim: None,
            require_tenant: None,
        })
        .map_err(|e| ConfigError {
            field: e
                .field
                .strip_prefix("authority.")
                .map_or_else(|| format!("issuers[{i}]"), at),
            reason: e.reason,
        })?;
        if checks.issuer == authority.issuer || out.iter().any(|o| o.checks.issuer == checks.issuer)
        {
            return Err(ConfigError::new(
                at("issuer"),
                "names an issuer already trusted (authority.issuer or another entry): the \
                 token's iss chooses one entry",
            ));
        }
        if let KeySource::Remote { metadata_url, .. } = &checks.keys {
            let same = |k: &KeySource| matches!(k, KeySource::Remote { metadata_url: m, .. } if m.as_string() == metadata_url.as_string());
            if same(&authority.keys) || out.iter().any(|o| same(&o.checks.keys)) {
                return Err(ConfigError::new(
                    at("metadataUrl"),
                    "is another issuer's metadataUrl too",
                ));
            }
        }
        if policies_raw.is_empty() {
            return Err(ConfigError::new(
                at("policies"),
                "at least one trust policy is required: they decide what the issuer's tokens get",
            ));
        }
        let specs: Vec<TrustSpec> = policies_raw
            .into_iter()
            .map(|p| TrustSpec {
                name: p.name,
                claims: p
                    .claims
                    .into_iter()
                    .map(|(k, v)| (k, v.into_vec()))
                    .collect(),
                subject: p.subject,
                tenant: p.tenant,
                plans: p.plans,
                plans_claim: p.plans_claim,
                license: p.license,
                rules_claim: p.rules_claim,
            })
            .collect();
        let policies = TrustPolicies::compile(&specs, &|p| catalogue.has_plan(p)).map_err(|e| {
            let field = if e.field.is_empty() {
                format!("policies[{}]", e.policy)
            } else {
                format!("policies[{}].{}", e.policy, e.field)
            };
            ConfigError::new(at(&field), e.reason)
        })?;
        out.push(IssuerConfig { checks, policies });
    }
    Ok(out)
}

pub(in crate::config) fn validate_anonymous(
    a: RawAnonymous,
    catalogue: &Catalogue,
) -> Result<String, ConfigError> {
    match catalogue.pull_only(&a.plan) {
        Err(_) => Err(ConfigError::new(
            "anonymous.plan",
            format!(
                "names no plan in `plans` ({:?})",
                a.plan.chars().take(64).collect::<String>()
            ),
        )),
        Ok(false) => Err(ConfigError::new(
            "anonymous.plan",
            "callers without credentials may only pull: every rule of this plan must allow \
             [pull] alone (no push, delete, * or registry rule)",
        )),
        Ok(true) => Ok(a.plan),
    }
}
