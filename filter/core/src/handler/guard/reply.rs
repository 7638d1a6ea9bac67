//! A guard refusal in the registry's own error format (distribution's
//! `{"errors":[{"code","message","detail"}]}`), so docker, containerd and skopeo print its
//! message; a 401 carries the challenge that sends the client back to the realm, where it
//! is refused for the same reason (or given a new token).

use serde_json::json;

use crate::config::Config;
use crate::guard::route::RegistryRequest;
use crate::handler::audit::Audit;
use crate::handler::reason::Reason;
use crate::handler::reply::{quoted, RETRY_AFTER_SECONDS};
use crate::handler::{Decision, Outcome};

/// The distribution error code of a guard refusal.
pub fn registry_code(reason: Reason) -> &'static str {
    match reason {
        Reason::GuardInvalidPath => "NAME_INVALID",
        Reason::ManifestTooLarge => "SIZE_INVALID",
        r => r.docker_code(),
    }
}

/// The refusal of a request on the registry's route.
pub fn refuse(
    config: &Config,
    reason: Reason,
    detail: &str,
    request: Option<&RegistryRequest<'_>>,
    service: Option<&str>,
    audit: Audit,
) -> Decision {
    let body = json!({
        "errors": [{
            "code": registry_code(reason),
            "message": detail,
            "detail": {"reason": reason.label()},
        }]
    })
    .to_string();
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
        (
            "docker-distribution-api-version".to_string(),
            "registry/2.0".to_string(),
        ),
    ];
    if reason.status() == 401 {
        headers.push((
            "www-authenticate".into(),
            challenge(config, reason, detail, request, service),
        ));
    }
    if reason.retry_after() {
        headers.push(("retry-after".into(), RETRY_AFTER_SECONDS.to_string()));
    }
    Decision {
        status: reason.status(),
        headers,
        body,
        outcome: Outcome::Rejected(reason),
        audit: Some(audit),
        unknown_kid: false,
    }
}

/// `Bearer realm=…,service=…,scope=…,error="invalid_token"`, as the registry writes it.
fn challenge(
    config: &Config,
    reason: Reason,
    detail: &str,
    request: Option<&RegistryRequest<'_>>,
    service: Option<&str>,
) -> String {
    let mut c = format!("Bearer realm={}", quoted(&config.registry.realm_text));
    let service = service.or_else(|| config.registry.allowed_services.first().map(String::as_str));
    if let Some(service) = service {
        c.push_str(&format!(",service={}", quoted(service)));
    }
    let scope = request.and_then(|r| match (r.repository(), r.actions) {
        (Some(name), actions) if !actions.is_empty() => {
            Some(format!("repository:{name}:{}", actions.join(",")))
        }
        (None, actions) if !actions.is_empty() => Some("registry:catalog:*".to_owned()),
        _ => None,
    });
    if let Some(scope) = scope {
        c.push_str(&format!(",scope={}", quoted(&scope)));
    }
    if let Some(code) = reason.oauth_error() {
        c.push_str(&format!(
            ",error={},error_description={}",
            quoted(code),
            quoted(detail)
        ));
    }
    c
}
