//! The guard's decision on the registry's route (`/v2…`, with `guard` configured;
//! docs/GUARD.md), top to bottom:
//!
//! 1. the path, read as distribution reads it ([`crate::guard::route`]); one the guard
//!    cannot read unambiguously is refused (`guard_invalid_path`), an unknown route passes;
//! 2. the registry token of `Authorization: Bearer` ([`crate::guard::token`]), verified
//!    with the gateway's own `/jwks` keys and memoised ([`memo`]); no credentials, or not
//!    `Bearer`, and `/v2/` itself pass untouched (the registry answers its own 401);
//! 3. revocation: the token's licences, subject, tenant and `rtid` against the lists
//!    `/token` uses;
//! 4. the tag rules of the token's entry for the repository ([`crate::guard::tags`]): an
//!    immutable tag's `PUT` is decided once the glue has the manifest and the registry's
//!    `HEAD` answer ([`immutable`]);
//! 5. what passes gets the identity headers; a `_catalog` answer is cut to the caller's
//!    plans ([`catalog`]).
//!
//! Every refusal is a [`Reason`], answered in the registry's error format ([`reply`]),
//! with an audit record like `/token`'s.

pub mod memo;
pub mod reply;

use std::rc::Rc;

use super::audit::{self, Audit};
use super::reason::Reason;
use super::Decision;
use crate::config::{Config, GuardConfig};
use crate::guard::catalog::{self, CatalogError};
use crate::guard::route::{self, Reference, RegistryRequest, Resource, RouteError};
use crate::guard::tags::{self, TagVerdict};
use crate::guard::token::{self as registry_token, Expect, RegistryToken};
use crate::policy::plan::Placeholders;
use crate::policy::revocation::{self, Identifiers, RemoteList, Revocation, Revoked};
use crate::token::crypto::Crypto;
use crate::token::jws::JwtError;

pub use memo::TokenMemo;
use reply::refuse;

/// The identity headers: removed from every guarded request, set from a verified token.
pub const IDENTITY_HEADERS: [&str; 3] =
    ["x-registry-plan", "x-registry-tenant", "x-registry-subject"];

/// The largest manifest the guard buffers (distribution's own limit), bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The request as the glue reads it.
#[derive(Debug, Clone, Copy)]
pub struct GuardView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// Every `Authorization` value (none, one, or several).
    pub authorization: &'a [&'a str],
}

/// What the guard decision needs besides the request.
pub struct GuardContext<'a> {
    /// The validated configuration.
    pub config: &'a Config,
    /// Its `guard` section.
    pub guard: &'a GuardConfig,
    /// Crypto implementation (host or pure Rust).
    pub crypto: &'a dyn Crypto,
    /// Unix time, seconds.
    pub now: u64,
    /// The remote revocation list as last fetched.
    pub revocation: RemoteList<'a>,
    /// Verified tokens of this VM.
    pub memo: &'a TokenMemo,
}

/// The caller a verified token names.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its claims.
    pub token: Rc<RegistryToken>,
}

impl Verified {
    /// The identity headers to set (`identityHeaders`), only those the token names.
    pub fn identity(&self) -> Vec<(&'static str, String)> {
        let t = &self.token;
        let mut out = Vec::with_capacity(3);
        if let Some(plan) = &t.plan {
            out.push((IDENTITY_HEADERS[0], plan.clone()));
        }
        if let Some(tenant) = &t.tenant {
            out.push((IDENTITY_HEADERS[1], tenant.clone()));
        }
        out.push((IDENTITY_HEADERS[2], t.subject.clone()));
        out
    }
}

/// A request that passes.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    /// Headers to set once the identity headers were removed.
    pub set: Vec<(&'static str, String)>,
    /// A `GET /v2/_catalog`: the caller whose answer is filtered.
    pub catalog: Option<Verified>,
}

/// A `PUT` of an immutable tag: decided by [`immutable`] once the glue has the manifest
/// (its body) and the registry's answer to `HEAD head_path` (sent with `authorization`).
#[derive(Debug, Clone)]
pub struct ImmutableCheck {
    /// What to set when it passes.
    pub pass: Pass,
    /// `/v2/<name>/manifests/<tag>`.
    pub head_path: String,
    /// The caller's `Authorization`, for the `HEAD`.
    pub authorization: String,
    caller: Verified,
    request: String,
    tag: String,
}

/// What the glue does with a request on the registry's route.
#[derive(Debug, Clone)]
pub enum GuardStep {
    /// Continue to the registry.
    Pass(Pass),
    /// Answer with this refusal.
    Refuse(Box<Decision>),
    /// Wait for the manifest, ask the registry, then call [`immutable`].
    CheckImmutable(Box<ImmutableCheck>),
}

/// Whether `path` (without its query) is the guard's: `/v2` or under `/v2/`.
pub fn is_registry_path(path_without_query: &str) -> bool {
    path_without_query == "/v2" || path_without_query.starts_with("/v2/")
}

/// Whether a path has something a registry or a proxy may read otherwise than the guard:
/// percent-encoding (`%2F`), a backslash, an empty segment (`//`), a `.` or `..` segment.
fn ambiguous(path: &str) -> bool {
    path.contains('%')
        || path.contains('\\')
        || path.contains("//")
        || path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Decides a request on the registry's route.
pub fn guard(view: &GuardView<'_>, ctx: &GuardContext<'_>) -> GuardStep {
    let path_only = view.path.split(['?', '#']).next().unwrap_or("");
    let request = if ambiguous(path_only) {
        Err(RouteError::Invalid("path"))
    } else {
        route::parse(view.method, view.path)
    };
    let request = match request {
        Ok(r) => r,
        Err(RouteError::Invalid(what)) => {
            let detail = format!("the {what} of this path is not one the registry API defines");
            return refused(
                ctx,
                Reason::GuardInvalidPath,
                &detail,
                None,
                None,
                Vec::new(),
            );
        }
        // Not a route of the API: the registry answers it (404), nothing to guard.
        Err(RouteError::NotRegistryApi | RouteError::UnknownRoute) => {
            return GuardStep::Pass(Pass::default())
        }
    };
    if request.resource == Resource::Base {
        return GuardStep::Pass(Pass::default());
    }
    let requested = requested_scope(&request);
    let token = match view.authorization {
        [] => return GuardStep::Pass(Pass::default()),
        [one] => match registry_token::bearer(one) {
            Some(t) => t,
            // Basic or another scheme: the registry answers its own 401.
            None => return GuardStep::Pass(Pass::default()),
        },
        _ => {
            return refused(
                ctx,
                Reason::GuardInvalidToken,
                "more than one Authorization header",
                None,
                Some(&request),
                requested,
            )
        }
    };
    let caller = match verify(token, ctx) {
        Ok(c) => c,
        Err(e) => {
            let detail = format!("the registry token is not valid here: {}", jwt_text(&e));
            return refused(
                ctx,
                Reason::GuardInvalidToken,
                &detail,
                None,
                Some(&request),
                requested,
            );
        }
    };
    if let Some((reason, detail)) = revoked(&caller.token, ctx) {
        return refused(
            ctx,
            reason,
            detail,
            Some(&caller),
            Some(&request),
            requested,
        );
    }
    let pass = Pass {
        set: if ctx.guard.identity_headers {
            caller.identity()
        } else {
            Vec::new()
        },
        catalog: (request.resource == Resource::Catalog && view.method == "GET")
            .then(|| caller.clone()),
    };
    let Resource::Manifest { name, reference } = &request.resource else {
        return GuardStep::Pass(pass);
    };
    let Some(rules) = caller.token.repository(name).and_then(|e| e.tags.as_ref()) else {
        return GuardStep::Pass(pass);
    };
    match tags::verdict(view.method, &request.resource, rules) {
        TagVerdict::Pass => GuardStep::Pass(pass),
        TagVerdict::ProtectedTag => {
            let detail = format!(
                "tag {} of {name} is protected: this plan may not push it",
                reference_text(reference)
            );
            refused(
                ctx,
                Reason::ProtectedTag,
                &detail,
                Some(&caller),
                Some(&request),
                requested,
            )
        }
        TagVerdict::DeleteNotAllowed => {
            let detail = format!("deleting manifests of {name} is not allowed for this plan");
            refused(
                ctx,
                Reason::DeleteRefused,
                &detail,
                Some(&caller),
                Some(&request),
                requested,
            )
        }
        TagVerdict::DeleteImmutable => {
            let detail = format!(
                "manifests of {name} cannot be deleted: its rules name immutable tags, which a delete would untag"
            );
            refused(
                ctx,
                Reason::ImmutableTag,
                &detail,
                Some(&caller),
                Some(&request),
                requested,
            )
        }
        TagVerdict::CheckImmutable => {
            let tag = reference_text(reference).to_owned();
            GuardStep::CheckImmutable(Box::new(ImmutableCheck {
                pass,
                head_path: format!("/v2/{name}/manifests/{tag}"),
                authorization: view
                    .authorization
                    .first()
                    .map(|a| (*a).to_owned())
                    .unwrap_or_default(),
                request: requested.first().cloned().unwrap_or_default(),
                caller,
                tag,
            }))
        }
    }
}

/// The registry's answer to the immutable tag's `HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadAnswer<'a> {
    /// Its status (`None`: no answer, timed out).
    pub status: Option<u16>,
    /// Its `Docker-Content-Digest`.
    pub digest: Option<&'a str>,
}

/// Decides a waiting immutable-tag `PUT`: `manifest` is its body (`None`: larger than
/// [`MAX_MANIFEST_BYTES`]). `Ok` passes with what to set.
pub fn immutable(
    check: &ImmutableCheck,
    manifest: Option<&[u8]>,
    head: HeadAnswer<'_>,
    ctx: &GuardContext<'_>,
) -> Result<Pass, Box<Decision>> {
    let requested = vec![check.request.clone()];
    let Some(manifest) = manifest else {
        let detail = format!(
            "a manifest pushed to immutable tag {} is larger than 4 MiB",
            check.tag
        );
        return Err(refusal(
            ctx,
            Reason::ManifestTooLarge,
            &detail,
            Some(&check.caller),
            None,
            requested,
        ));
    };
    let pushed = format!("sha256:{}", hex(&crate::token::alg::sha256(manifest)));
    match head.status {
        Some(200 | 404) => {}
        _ => {
            let detail = format!(
                "the registry could not say whether immutable tag {} exists; retry later",
                check.tag
            );
            return Err(refusal(
                ctx,
                Reason::ImmutableCheckFailed,
                &detail,
                Some(&check.caller),
                None,
                requested,
            ));
        }
    }
    if tags::immutable_verdict(head.status, head.digest, &pushed) {
        Ok(check.pass.clone())
    } else {
        let detail = format!(
            "tag {} is immutable: it already names {}, not {pushed}; push under a new tag",
            check.tag,
            head.digest.unwrap_or("another manifest")
        );
        Err(refusal(
            ctx,
            Reason::ImmutableTag,
            &detail,
            Some(&check.caller),
            None,
            requested,
        ))
    }
}

/// The registry's `_catalog` answer cut to what `caller`'s plans grant `pull` on: the
/// body to send, or a refusal.
pub fn catalog_body(
    body: &[u8],
    caller: &Verified,
    ctx: &GuardContext<'_>,
) -> Result<Vec<u8>, Box<Decision>> {
    let t = &caller.token;
    let vars = Placeholders::new(t.tenant.as_deref(), Some(&t.subject));
    let plans: Vec<&str> = t.plans().collect();
    let visible = |name: &str| {
        plans
            .iter()
            .any(|p| ctx.config.catalogue.pulls(p, name, &vars))
    };
    let requested = vec!["registry:catalog:*".to_owned()];
    match catalog::filter(body, visible) {
        Ok((out, _hidden)) => Ok(out),
        Err(CatalogError::TooLarge) => Err(refusal(
            ctx,
            Reason::CatalogTooLarge,
            "the registry's catalogue page is too large to filter; ask for fewer with ?n=",
            Some(caller),
            None,
            requested,
        )),
        Err(CatalogError::Malformed(why)) => Err(refusal(
            ctx,
            Reason::CatalogUnreadable,
            &why,
            Some(caller),
            None,
            requested,
        )),
    }
}

fn verify(token: &str, ctx: &GuardContext<'_>) -> Result<Verified, JwtError> {
    let skew = ctx.config.authority.clock_skew_seconds;
    if let Some(found) = ctx.memo.get(token, ctx.now, skew) {
        return Ok(Verified { token: found });
    }
    let expect = Expect {
        issuer: &ctx.config.signing.issuer,
        services: &ctx.config.registry.allowed_services,
        algorithms: &ctx.guard.algorithms,
        skew,
    };
    let verified = Rc::new(registry_token::verify(
        token,
        &expect,
        &ctx.guard.keys,
        ctx.crypto,
        ctx.now,
    )?);
    ctx.memo.insert(token, verified.clone());
    Ok(Verified { token: verified })
}

fn revoked(t: &RegistryToken, ctx: &GuardContext<'_>) -> Option<(Reason, &'static str)> {
    let config = ctx.config;
    let (max_stale, on_stale) = config.revocation_policy();
    let ids = Identifiers {
        licenses: &t.licenses,
        subject: Some(&t.subject),
        refresh_token_id: t.refresh_token_id.as_deref(),
        tenant: t.tenant.as_deref(),
    };
    match revocation::check(
        &ids,
        &config.revoked,
        ctx.revocation,
        max_stale,
        on_stale,
        ctx.now,
    ) {
        Revocation::Clear => None,
        Revocation::Revoked(Revoked::License) => Some((
            Reason::GuardLicenseRevoked,
            "the licence this token was issued under has been revoked",
        )),
        Revocation::Revoked(Revoked::Subject) => Some((
            Reason::GuardSubjectRevoked,
            "the access of this token's subject has been revoked",
        )),
        Revocation::Revoked(Revoked::Tenant) => Some((
            Reason::GuardTenantRevoked,
            "this token's tenant has been revoked",
        )),
        Revocation::Revoked(Revoked::RefreshToken) => Some((
            Reason::GuardRefreshTokenRevoked,
            "the refresh token this token descends from has been revoked",
        )),
        Revocation::ListUnavailable => Some((
            Reason::GuardRevocationUnavailable,
            "the revocation list is not current and this gateway fails closed; retry later",
        )),
    }
}

/// The scope the request needs, as the audit record writes it.
fn requested_scope(request: &RegistryRequest<'_>) -> Vec<String> {
    match (&request.resource, request.repository()) {
        (Resource::Catalog, _) => vec!["registry:catalog:*".to_owned()],
        (_, Some(name)) => vec![format!("repository:{name}:{}", request.actions.join(","))],
        _ => Vec::new(),
    }
}

fn reference_text<'a>(r: &Reference<'a>) -> &'a str {
    match r {
        Reference::Tag(t) | Reference::Digest(t) => t,
    }
}

fn jwt_text(e: &JwtError) -> String {
    match e {
        JwtError::Expired => "it has expired".into(),
        JwtError::NotYetValid => "it is not valid yet".into(),
        JwtError::WrongIssuer => "another issuer minted it".into(),
        JwtError::WrongAudience => "it was minted for another service".into(),
        JwtError::BadSignature | JwtError::UnknownKey => {
            "its signature is not this gateway's".into()
        }
        JwtError::DisallowedAlg(_) => "its algorithm is not this gateway's".into(),
        _ => "it is malformed".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// A refusal as a [`GuardStep`].
fn refused(
    ctx: &GuardContext<'_>,
    reason: Reason,
    detail: &str,
    caller: Option<&Verified>,
    request: Option<&RegistryRequest<'_>>,
    requested: Vec<String>,
) -> GuardStep {
    GuardStep::Refuse(refusal(ctx, reason, detail, caller, request, requested))
}

/// A refusal with its audit record.
fn refusal(
    ctx: &GuardContext<'_>,
    reason: Reason,
    detail: &str,
    caller: Option<&Verified>,
    request: Option<&RegistryRequest<'_>>,
    requested: Vec<String>,
) -> Box<Decision> {
    let mut audit = Audit::new(ctx.now);
    audit.reason = reason.label();
    if let Some(c) = caller {
        let t = &c.token;
        audit.subject = Some(audit::bounded(&t.subject));
        audit.tenant = t.tenant.as_deref().map(audit::bounded);
        audit.plan = t.plan.as_deref().map(audit::bounded);
        audit.service = Some(audit::bounded(&t.service));
        audit.refresh_token_id = t.refresh_token_id.as_deref().map(audit::bounded);
        if !t.licenses.is_empty() {
            audit.license = Some(audit::bounded(&t.licenses.join(" ")));
        }
        audit.issuer = Some(audit::bounded(&ctx.config.signing.issuer));
    }
    audit.requested = requested;
    let service = caller.map(|c| c.token.service.as_str());
    Box::new(refuse(ctx.config, reason, detail, request, service, audit))
}

#[cfg(test)]
mod tests;
