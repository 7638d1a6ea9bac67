//! The bundle request (`--request FILE`, JSON) and its policy: the same revocation checks
//! and plan grant as the gateway's policy stage, plus the `offline` limits. Every refusal
//! names the request field (and the configuration field that refused it).

use registry_token_core::config::Config;
use registry_token_core::policy::revocation::{
    self, Identifiers, OnStale, RemoteList, Revocation, RevocationSet, Revoked,
};
use registry_token_core::policy::scope::{
    parse_scope, parse_scopes, validate_repository_name, Scope,
};
use serde::Deserialize;

/// Most tokens in one bundle.
pub const MAX_TOKENS: usize = 1000;
/// Longest bundle or token name, characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest subject, licence or tenant, characters.
pub const MAX_ID_CHARS: usize = 256;

/// The request as written. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Request {
    /// The bundle's name.
    pub bundle: String,
    /// The registry's `auth.token.service`: every token's `aud`.
    pub service: String,
    /// Every token's `sub`.
    pub subject: String,
    /// The plan whose rules grant the access.
    pub plan: String,
    /// The licence (checked against `revokedLicenses`).
    #[serde(default)]
    pub license: Option<String>,
    /// The tenant (fills `{tenant}` plan placeholders).
    #[serde(default)]
    pub tenant: Option<String>,
    /// RFC 3339: every token's `nbf` and `iat`.
    pub not_before: String,
    /// RFC 3339: every token's `exp`.
    pub not_after: String,
    /// The tokens, in order.
    pub tokens: Vec<TokenSpec>,
}

/// One token of the request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// File name stem: `tokens/<name>.jwt`.
    pub name: String,
    /// Docker scopes (`repository:stella-ops/public/base:pull`).
    pub scopes: Vec<String>,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Approved {
    /// The request as written.
    pub request: Request,
    /// `notBefore`, Unix seconds.
    pub not_before: u64,
    /// `notAfter`, Unix seconds.
    pub not_after: u64,
    /// The tokens with what the plan grants.
    pub tokens: Vec<ApprovedToken>,
}

/// One token with its grant.
#[derive(Debug, Clone)]
pub struct ApprovedToken {
    /// Its name.
    pub name: String,
    /// What was asked (merged per resource, as the gateway merges a query's scopes).
    pub requested: Vec<Scope>,
    /// What the plan grants: asked ∩ allowed, first rule wins.
    pub granted: Vec<Scope>,
}

/// Parses the request JSON; errors name the field.
pub fn parse(bytes: &[u8]) -> Result<Request, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let req: Request = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("request: {}", e.into_inner())
        } else {
            format!("request field {path}: {}", e.into_inner())
        }
    })?;
    de.end()
        .map_err(|e| format!("request: trailing data after the JSON object: {e}"))?;
    Ok(req)
}

fn refuse(field: &str, why: impl std::fmt::Display) -> String {
    format!("request field {field}: {why}")
}

/// A bundle or token name: 1..=128 of `[A-Za-z0-9._-]`, starting with a letter or digit
/// (so it is a file name, never `.`, `..` or hidden).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().count() <= MAX_NAME_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn identifier(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.trim() != value {
        return Err(refuse(
            field,
            "must be non-empty without surrounding spaces",
        ));
    }
    if value.chars().count() > MAX_ID_CHARS || value.chars().any(char::is_control) {
        return Err(refuse(
            field,
            format!("must be at most {MAX_ID_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

/// RFC 3339 with whole seconds, at or after 1970, as Unix seconds.
pub fn parse_time(field: &str, text: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| refuse(field, format!("{text:?} is not an RFC 3339 date-time: {e}")))?;
    if t.nanosecond() != 0 {
        return Err(refuse(
            field,
            "must be whole seconds (tokens carry whole seconds)",
        ));
    }
    u64::try_from(t.unix_timestamp()).map_err(|_| refuse(field, "is before 1970"))
}

/// The plan's grant for one token, for this subject and tenant.
///
/// Tenant hookup: the core's `Catalogue::grant(plan, scopes)` takes no caller values yet;
/// when the plan matcher fills `{tenant}`/`{sub}` placeholders, pass `subject` and
/// `tenant` to it here (the gateway's policy stage passes the OpToken's values) — this is
/// the only place the CLI asks the plan.
fn grant(
    config: &Config,
    plan: &str,
    subject: &str,
    tenant: Option<&str>,
    requested: &[Scope],
) -> Result<Vec<Scope>, String> {
    config
        .catalogue
        .grant_for(
            plan,
            requested,
            &registry_token_core::policy::plan::Placeholders::new(tenant, Some(subject)),
        )
        .map_err(|e| refuse("plan", e))
}

/// Checks the request against the configuration at `now` (Unix seconds). `remote` is the
/// remote revocation list when one was given (`--revocation-list`).
pub fn approve(
    request: Request,
    config: &Config,
    remote: RemoteList<'_>,
    now: u64,
) -> Result<Approved, String> {
    if !valid_name(&request.bundle) {
        return Err(refuse(
            "bundle",
            format!(
                "must be 1..={MAX_NAME_CHARS} of A-Z a-z 0-9 . _ - starting with a letter or digit"
            ),
        ));
    }
    let registry = &config.registry;
    if !registry.any_service && !registry.allowed_services.contains(&request.service) {
        return Err(refuse(
            "service",
            format!(
                "{:?} is not in the configuration's registry.allowedServices ({})",
                request.service,
                registry.allowed_services.join(", ")
            ),
        ));
    }
    identifier("service", &request.service)?;
    identifier("subject", &request.subject)?;
    if let Some(license) = &request.license {
        identifier("license", license)?;
    }
    if let Some(tenant) = &request.tenant {
        identifier("tenant", tenant)?;
        if tenant.contains('/') || validate_repository_name(tenant).is_err() {
            return Err(refuse(
                "tenant",
                "must be one repository path component (lowercase letters, digits, separators . _ __ -)",
            ));
        }
    }

    // Revocation, as the gateway's policy stage: inline lists, then the remote list.
    let licenses: Vec<String> = request.license.iter().cloned().collect();
    let ids = Identifiers {
        licenses: &licenses,
        subject: Some(&request.subject),
        refresh_token_id: None,
        tenant: request.tenant.as_deref(),
    };
    let (max_stale, on_stale) = config
        .revocation
        .as_ref()
        .map_or((u64::MAX, OnStale::Serve), |r| {
            (r.max_stale_seconds, r.on_stale)
        });
    match revocation::check(&ids, &config.revoked, remote, max_stale, on_stale, now) {
        Revocation::Clear => {}
        Revocation::Revoked(Revoked::Tenant) => {
            return Err(refuse("tenant", "is revoked (revokedTenants)"))
        }
        Revocation::Revoked(Revoked::License) => {
            return Err(refuse("license", "is revoked (revokedLicenses)"))
        }
        Revocation::Revoked(Revoked::Subject) | Revocation::Revoked(Revoked::RefreshToken) => {
            return Err(refuse("subject", "is revoked (revokedSubjects)"))
        }
        Revocation::ListUnavailable => {
            return Err(
                "configuration field revocation: the remote revocation list is configured with \
                 onStale: refuse; give its current contents with --revocation-list FILE"
                    .to_string(),
            )
        }
    }
    if !config.catalogue.has_plan(&request.plan) {
        return Err(refuse(
            "plan",
            format!(
                "{:?} is not a plan of the configuration ({})",
                request.plan,
                config.catalogue.plan_names().collect::<Vec<_>>().join(", ")
            ),
        ));
    }

    let not_before = parse_time("notBefore", &request.not_before)?;
    let not_after = parse_time("notAfter", &request.not_after)?;
    if not_after <= not_before {
        return Err(refuse("notAfter", "must be after notBefore"));
    }
    let max = config.offline.max_lifetime_seconds;
    if not_after - not_before > max {
        return Err(refuse(
            "notAfter",
            format!(
                "the window notBefore..notAfter is {} s, longer than offline.maxLifetimeSeconds ({max} s)",
                not_after - not_before
            ),
        ));
    }
    if not_after <= now {
        return Err(refuse(
            "notAfter",
            "is already past: the tokens would be expired",
        ));
    }

    if request.tokens.is_empty() {
        return Err(refuse("tokens", "must list at least one token"));
    }
    if request.tokens.len() > MAX_TOKENS {
        return Err(refuse("tokens", format!("more than {MAX_TOKENS} tokens")));
    }
    let mut tokens = Vec::with_capacity(request.tokens.len());
    for (i, spec) in request.tokens.iter().enumerate() {
        if !valid_name(&spec.name) {
            return Err(refuse(
                &format!("tokens[{i}].name"),
                format!("must be 1..={MAX_NAME_CHARS} of A-Z a-z 0-9 . _ - starting with a letter or digit"),
            ));
        }
        if let Some(j) = request.tokens[..i]
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(&spec.name))
        {
            return Err(refuse(
                &format!("tokens[{i}].name"),
                format!(
                    "{:?} is already the name of tokens[{j}] (names are file names)",
                    spec.name
                ),
            ));
        }
        if spec.scopes.is_empty() {
            return Err(refuse(
                &format!("tokens[{i}].scopes"),
                "must list at least one scope",
            ));
        }
        for (j, text) in spec.scopes.iter().enumerate() {
            let field = format!("tokens[{i}].scopes[{j}]");
            if text.contains(' ') {
                return Err(refuse(&field, "one scope per entry (no spaces)"));
            }
            let scope = parse_scope(text).map_err(|e| refuse(&field, e))?;
            if let Some(action) = scope.actions.iter().find(|a| !config.offline.allows(a)) {
                return Err(refuse(
                    &field,
                    format!(
                        "action {action:?} is not in offline.allowedActions ({})",
                        config.offline.allowed_actions.join(", ")
                    ),
                ));
            }
        }
        let requested =
            parse_scopes(&spec.scopes).map_err(|e| refuse(&format!("tokens[{i}].scopes"), e))?;
        let granted = grant(
            config,
            &request.plan,
            &request.subject,
            request.tenant.as_deref(),
            &requested,
        )?;
        if granted.is_empty() {
            return Err(refuse(
                &format!("tokens[{i}]"),
                format!(
                    "plan {:?} grants none of the requested access ({})",
                    request.plan,
                    spec.scopes.join(" ")
                ),
            ));
        }
        tokens.push(ApprovedToken {
            name: spec.name.clone(),
            requested,
            granted,
        });
    }
    Ok(Approved {
        request,
        not_before,
        not_after,
        tokens,
    })
}

/// Which remote list the policy sees: none configured and none given → not configured;
/// configured but not given → never fetched (`onStale` decides); given → known now.
pub fn remote_list<'a>(
    config: &Config,
    given: Option<&'a dyn RevocationSet>,
    now: u64,
) -> RemoteList<'a> {
    match (given, &config.revocation) {
        (Some(lists), _) => RemoteList::Known {
            lists,
            fetched_at: now,
        },
        (None, Some(_)) => RemoteList::NeverFetched,
        (None, None) => RemoteList::NotConfigured,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn times_are_rfc3339_whole_seconds_after_1970() {
        assert_eq!(parse_time("t", "1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("t", "2026-12-01T01:00:00+01:00"),
            Ok(1_796_083_200)
        );
        assert_eq!(
            parse_time("t", "2026-12-01T00:00:00Z").unwrap(),
            parse_time("t", "2026-12-01T01:00:00+01:00").unwrap()
        );
        for bad in [
            "2026-12-01",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00.5Z",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            let e = parse_time("notBefore", bad).unwrap_err();
            assert!(e.starts_with("request field notBefore:"), "{bad}: {e}");
        }
    }

    #[test]
    fn names_are_file_names() {
        for good in ["a", "base", "mirror-eu-2026.12_x", "A1"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "é",
            long.as_str(),
            "a\\b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = parse(br#"{"bundle":"b","service":"s","subject":"x","plan":"p","notBefore":"a","notAfter":"b","tokens":[],"extra":1}"#).unwrap_err();
        assert!(e.contains("extra"), "{e}");
        let e = parse(br#"{"bundle":"b","service":"s","subject":"x","plan":"p","notBefore":"a","notAfter":"b","tokens":[{"name":"n","scopes":["x"],"actions":[]}]}"#).unwrap_err();
        assert!(e.contains("tokens[0]") && e.contains("actions"), "{e}");
        let e = parse(br#"{"bundle":"b"}"#).unwrap_err();
        assert!(e.contains("service"), "{e}");
        let e = parse(br#"{"bundle":"b","service":"s","subject":"x","plan":"p","notBefore":"a","notAfter":"b","tokens":[]} {}"#).unwrap_err();
        assert!(e.contains("trailing"), "{e}");
    }
}
