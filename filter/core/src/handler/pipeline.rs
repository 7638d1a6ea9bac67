//! The `/token` pipeline, top to bottom:
//!
//! 1. [`credentials`]: the request (`service`, scopes, grant) and the presented credential
//!    — an OpToken (`GET`'s `Authorization`, or the password grant's `password`) or a
//!    refresh token (the refresh grant);
//! 2. [`verify_optok`] or [`verify_refresh`]: the credential → a [`Caller`];
//! 3. [`sender_constraint`]: DPoP proof or client certificate, as the caller's binding says;
//! 4. [`policy`]: the tenant (`authority.requireTenant`), revocation (licence, subject,
//!    tenant, refresh-token id), the plan, the access (placeholders filled from the
//!    caller's own tenant and subject);
//! 5. [`mint`] (in `issue`): the registry token (or a reused one), a refresh token when
//!    asked, the reply.
//!
//! Each stage takes what the previous one produced and returns its own typed result or a
//! [`Denial`]; the audit record is filled in as the stages learn things. Every grant runs
//! the same stages 3–5 on the same [`Caller`].

use super::audit::{self, Audit};
use super::credentials::{self, Credential, CredentialScheme, Presented, TokenRequest};
use super::reason::Reason;
use super::reply::{deny, deny_form, quoted, Denial};
use super::{AuthorityKeys, Context, Decision, RequestView};
use crate::config::Config;
use crate::policy::plan::Placeholders;
use crate::policy::revocation::{self, Identifiers, Revocation, Revoked};
use crate::policy::scope::{is_path_component, Scope};
use crate::policy::trust::Outcome;
use crate::sender::dpop::{self, DpopError, ProofPolicy};
use crate::sender::mtls;
use crate::token::access::TagPolicy;
use crate::token::jws::JwtError;
use crate::token::optok::{self, OpTokPolicy, VerifiedOpTok};
use crate::token::refresh::{self, RefreshClaims, RefreshError};

mod issue;
mod trust;

use issue::mint;

/// What the policy stage granted.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The plan applied.
    pub plan: String,
    /// The access granted (requested ∩ allowed).
    pub access: Vec<Scope>,
    /// The caller's tenant when it is valid (one repository path component): the minted
    /// token's `tenant` claim.
    pub tenant: Option<String>,
    /// The tag rules of each `access` entry (by index; `None`: its rule has none), for
    /// the guard on the registry's route.
    pub tags: Vec<Option<TagPolicy>>,
}

/// A refresh token that opened under a configured secret and is not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRefresh {
    /// The token as presented (a DPoP proof's `ath` is its hash).
    pub token: String,
    /// What it carries.
    pub claims: RefreshClaims,
}

/// The subject of callers without credentials (`anonymous`).
pub const ANONYMOUS_SUBJECT: &str = "anonymous";

/// A verified token of an `issuers` entry and what its matching trust policy gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCaller {
    /// The verified token (its binding, `client_id`).
    pub optok: VerifiedOpTok,
    /// The issuer's index in `issuers`.
    pub issuer: usize,
    /// Subject, tenant, plans, licence and the policy's name.
    pub outcome: Outcome,
}

/// The verified caller, whichever credential it presented: the one input of stages 3–5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A verified OpToken of `authority` (`GET`, or the password grant).
    OpToken(VerifiedOpTok),
    /// A verified refresh token (the refresh grant).
    Refresh(VerifiedRefresh),
    /// A verified token of an `issuers` entry, through its trust policies.
    Trusted(Box<TrustedCaller>),
    /// No credentials, `anonymous` configured.
    Anonymous,
}

impl Caller {
    /// The subject.
    pub fn subject(&self) -> &str {
        match self {
            Caller::OpToken(o) => o.subject(),
            Caller::Refresh(r) => &r.claims.sub,
            Caller::Trusted(t) => &t.outcome.subject,
            Caller::Anonymous => ANONYMOUS_SUBJECT,
        }
    }

    /// The plan it names (a refresh token names the plan resolved when it was issued; a
    /// trusted caller its policy's first plan; see [`Caller::plans`]).
    pub fn plan(&self) -> Option<&str> {
        match self {
            Caller::OpToken(o) => o.plan(),
            Caller::Refresh(r) => Some(&r.claims.plan),
            Caller::Trusted(t) => t.outcome.plans.first().map(String::as_str),
            Caller::Anonymous => None,
        }
    }

    /// Every plan whose rules the caller gets (their union): the plan it names or
    /// `defaultPlan`; a trusted caller's policy plans; `anonymous.plan`. Empty: none.
    pub fn plans<'c>(&'c self, config: &'c Config) -> Vec<&'c str> {
        match self {
            Caller::Trusted(t) => t.outcome.plans.iter().map(String::as_str).collect(),
            Caller::Anonymous => config.anonymous.as_deref().into_iter().collect(),
            _ => self
                .plan()
                .or(config.default_plan.as_deref())
                .into_iter()
                .collect(),
        }
    }

    /// `stellaops:license`: every licence the caller holds (a trusted caller: its
    /// policy's).
    pub fn licenses(&self) -> &[String] {
        match self {
            Caller::OpToken(o) => o.licenses(),
            Caller::Refresh(r) => &r.claims.lic,
            Caller::Trusted(t) => t.outcome.license.as_slice(),
            Caller::Anonymous => &[],
        }
    }

    /// The OpToken's `client_id`.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Caller::OpToken(o) => o.client_id(),
            Caller::Refresh(r) => r.claims.azp.as_deref(),
            Caller::Trusted(t) => t.optok.client_id(),
            Caller::Anonymous => None,
        }
    }

    /// The DPoP key binding (`cnf.jkt`).
    pub fn jkt(&self) -> Option<&str> {
        match self {
            Caller::OpToken(o) => o.jkt(),
            Caller::Refresh(r) => r.claims.jkt.as_deref(),
            Caller::Trusted(t) => t.optok.jkt(),
            Caller::Anonymous => None,
        }
    }

    /// The certificate binding (`cnf.x5t#S256`).
    pub fn x5t_s256(&self) -> Option<&str> {
        match self {
            Caller::OpToken(o) => o.x5t_s256(),
            Caller::Refresh(r) => r.claims.x5t_s256.as_deref(),
            Caller::Trusted(t) => t.optok.x5t_s256(),
            Caller::Anonymous => None,
        }
    }

    /// The tenant, as presented (the OpToken's `authority.tenantClaim`, or the one the
    /// refresh token was sealed with); not yet checked against the name grammar. A trusted
    /// caller's is its policy's, already one path component.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::OpToken(o) => o.tenant(),
            Caller::Refresh(r) => r.claims.ten.as_deref(),
            Caller::Trusted(t) => t.outcome.tenant.as_deref(),
            Caller::Anonymous => None,
        }
    }

    /// The id of the refresh token presented.
    pub fn refresh_token_id(&self) -> Option<&str> {
        match self {
            Caller::Refresh(r) => Some(&r.claims.jti),
            _ => None,
        }
    }

    /// Whether an unbound credential is refused: `authority.requireSenderConstraint`, or
    /// the trusted caller's issuer's.
    fn requires_binding(&self, config: &Config) -> bool {
        match self {
            Caller::Trusted(t) => config
                .issuers
                .get(t.issuer)
                .is_none_or(|i| i.checks.require_sender_constraint),
            Caller::Anonymous => false,
            _ => config.authority.require_sender_constraint,
        }
    }
}

/// The `/token` decision.
pub fn handle_token(req: &RequestView<'_>, ctx: &Context<'_>) -> Decision {
    let mut audit = Audit::new(ctx.now);
    let mut unknown_kid = false;
    let form = req.method.eq_ignore_ascii_case("POST");
    let result = run(req, ctx, &mut audit, &mut unknown_kid)
        .and_then(|(request, caller, granted)| mint(ctx, &caller, &request, &granted, &mut audit));
    match result {
        Ok(decision) => decision,
        Err(denial) => {
            let mut decision = if form {
                deny_form(denial, Some(audit))
            } else {
                deny(ctx.config, denial, Some(audit))
            };
            decision.unknown_kid = unknown_kid;
            decision
        }
    }
}

fn run(
    req: &RequestView<'_>,
    ctx: &Context<'_>,
    audit: &mut Audit,
    unknown_kid: &mut bool,
) -> Result<(TokenRequest, Caller, Granted), Denial> {
    let method = req.method;
    if !["GET", "HEAD", "POST"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
    {
        let mut d = Denial::new(
            Reason::MethodNotAllowed,
            "the token endpoint answers GET and POST",
        );
        d.extra_headers
            .push(("allow".into(), "GET, HEAD, POST".into()));
        return Err(d);
    }
    // Cheap syntax checks first: garbage never costs a signature check.
    let (request, presented) = credentials::read_request(req, ctx.config, audit)?;
    let caller = match presented {
        Presented::OpToken(credential) => {
            let caller = trust::verify_caller(ctx, &credential, audit, unknown_kid)?;
            note_caller(audit, &caller);
            sender_constraint(
                req,
                ctx,
                Some(credential.scheme),
                &credential.token,
                &caller,
            )?;
            caller
        }
        Presented::Anonymous => {
            let caller = Caller::Anonymous;
            note_caller(audit, &caller);
            audit.policy = Some(ANONYMOUS_SUBJECT.to_string());
            caller
        }
        Presented::RefreshToken(token) => {
            let caller = Caller::Refresh(verify_refresh(ctx, token)?);
            note_caller(audit, &caller);
            if let Caller::Refresh(r) = &caller {
                sender_constraint(req, ctx, None, &r.token, &caller)?;
            }
            caller
        }
    };
    let granted = policy(ctx, &caller, &request, audit)?;
    Ok((request, caller, granted))
}

fn note_caller(audit: &mut Audit, caller: &Caller) {
    audit.subject = Some(audit::bounded(caller.subject()));
    audit.client_id = caller.client_id().map(audit::bounded);
    audit.tenant = caller.tenant().map(audit::bounded);
    audit.binding = binding_text(caller);
    let licenses = caller.licenses();
    if !licenses.is_empty() {
        audit.license = Some(audit::bounded(&licenses.join(" ")));
    }
    if let Some(id) = caller.refresh_token_id() {
        audit.refresh_token_id = Some(id.to_string());
    }
}

/// Stage 2 of the refresh grant: the refresh token opens under a configured secret and is
/// not expired. An OpToken (or anything else) is not a refresh token.
fn verify_refresh(ctx: &Context<'_>, token: String) -> Result<VerifiedRefresh, Denial> {
    let Some(rt) = &ctx.config.refresh_tokens else {
        return Err(Denial::new(
            Reason::RefreshDisabled,
            "this realm issues no refresh tokens",
        ));
    };
    if !refresh::is_refresh_token(&token) {
        return Err(Denial::new(
            Reason::InvalidRefreshToken,
            "not a refresh token of this realm (an access token is not a refresh token)",
        ));
    }
    match rt.keys.open(&token, ctx.now) {
        Ok(claims) => Ok(VerifiedRefresh { token, claims }),
        Err(e @ RefreshError::Expired) => {
            Err(Denial::new(Reason::RefreshTokenExpired, e.to_string()))
        }
        Err(e) => Err(Denial::new(Reason::InvalidRefreshToken, e.to_string())),
    }
}

/// Stage 2 (`authority`): the OpToken, verified against the Authority's keys (through
/// the cache).
fn verify_optok(ctx: &Context<'_>, credential: &Credential) -> Result<VerifiedOpTok, Denial> {
    let config = ctx.config;
    if refresh::is_refresh_token(&credential.token) {
        return Err(Denial::new(
            Reason::MalformedToken,
            "a refresh token is not an access token (use POST grant_type=refresh_token)",
        ));
    }
    let lookup_keys;
    let keys = match ctx.keys {
        AuthorityKeys::Known(keys) => keys,
        AuthorityKeys::Lookup(l) => {
            lookup_keys = trust::known(l.keys(0))?;
            &*lookup_keys
        }
        AuthorityKeys::NotFetched => {
            return Err(Denial::new(
                Reason::KeysUnavailable,
                "the Authority's signing keys are not available yet; retry shortly",
            ))
        }
        AuthorityKeys::Withdrawn => {
            return Err(Denial::new(
                Reason::KeysWithdrawn,
                "the Authority publishes no usable signing key; retry later",
            ))
        }
        AuthorityKeys::Stale => {
            return Err(Denial::new(
                Reason::KeysStale,
                "the Authority's signing keys could not be refreshed for too long; retry later",
            ))
        }
    };
    let policy = OpTokPolicy {
        issuer: &config.authority.issuer,
        audiences: &config.authority.audiences,
        required_scopes: &config.authority.required_scopes,
        algorithms: &config.authority.algorithms,
        clock_skew_seconds: config.authority.clock_skew_seconds,
        tenant_claim: &config.authority.tenant_claim,
    };
    let token = &credential.token;
    match ctx.cache {
        Some(c) => c.verify_optok(token, &policy, keys, ctx.crypto, ctx.now),
        None => optok::verify_optok(token, &policy, keys, ctx.crypto, ctx.now),
    }
    .map_err(|e: JwtError| Denial::new(Reason::from(&e), e.to_string()))
}

/// The audit record's `binding`: `jkt:<thumbprint>` and/or `x5t#S256:<thumbprint>`.
fn binding_text(caller: &Caller) -> Option<String> {
    let bindings: Vec<String> = caller
        .jkt()
        .iter()
        .map(|j| format!("jkt:{j}"))
        .chain(caller.x5t_s256().iter().map(|x| format!("x5t#S256:{x}")))
        .collect();
    (!bindings.is_empty()).then(|| bindings.join(" "))
}

fn dpop_denial(config: &Config, e: &DpopError, now: u64) -> Denial {
    let reason = Reason::from(e);
    let mut d = Denial::new(reason, e.to_string());
    if reason.status() == 401 {
        let algs: Vec<&str> = config.dpop.algorithms.iter().map(|a| a.name()).collect();
        d.challenge = Some(format!(
            "DPoP error={}, error_description={}, algs={}",
            quoted(reason.oauth_error().unwrap_or("invalid_dpop_proof")),
            quoted(&e.to_string()),
            quoted(&algs.join(" "))
        ));
    }
    if let Some(nonce) = &config.dpop.nonce {
        d.extra_headers
            .push(("dpop-nonce".into(), nonce.current(now)));
    }
    d
}

/// Stage 3, the sender constraint: a `cnf.jkt` caller needs a valid DPoP proof from that
/// key, whatever the scheme (its `ath` is the hash of the presented token: the OpToken, or
/// the refresh token on a refresh grant); a `cnf.x5t#S256` caller needs that client
/// certificate on the connection; an unbound caller passes only when
/// `requireSenderConstraint` is off, and never under the `DPoP` scheme (RFC 9449 §7.1).
fn sender_constraint(
    req: &RequestView<'_>,
    ctx: &Context<'_>,
    scheme: Option<CredentialScheme>,
    token: &str,
    caller: &Caller,
) -> Result<(), Denial> {
    let config = ctx.config;
    if let Some(jkt) = caller.jkt() {
        let proofs: Vec<&str> = req.header_values("dpop").collect();
        let policy = ProofPolicy {
            algorithms: &config.dpop.algorithms,
            htu: &config.registry.realm,
            iat_window_seconds: config.dpop.iat_window_seconds,
            nonce: config.dpop.nonce.as_ref(),
        };
        // The token's SHA-256 (for `ath`) is taken only here: an unbound token is never
        // hashed with it (the OpTok memo keys on a cheaper keyed hash).
        dpop::verify_proof(
            &proofs, req.method, token, jkt, &policy, ctx.crypto, ctx.replay, ctx.now,
        )
        .map_err(|e| dpop_denial(config, &e, ctx.now))?;
    } else if scheme == Some(CredentialScheme::DPoP) {
        return Err(Denial::new(
            Reason::DpopUnboundToken,
            "the DPoP scheme needs a DPoP-bound access token (cnf.jkt)",
        ));
    }
    if let Some(x5t) = caller.x5t_s256() {
        let presented = req
            .peer_certificate
            .sha256_hex()
            .and_then(|d| mtls::x5t_from_hex_digest(&d));
        match presented {
            None => {
                return Err(Denial::new(
                    Reason::MtlsNoCertificate,
                    "the credential is certificate-bound: present its client certificate over TLS",
                ))
            }
            Some(t) if t == x5t => {}
            Some(_) => {
                return Err(Denial::new(
                    Reason::MtlsMismatch,
                    "the client certificate is not the one the credential is bound to",
                ))
            }
        }
    }
    if caller.jkt().is_none() && caller.x5t_s256().is_none() && caller.requires_binding(config) {
        return Err(Denial::new(
            Reason::UnboundToken,
            "the credential is not sender-constrained (DPoP or mTLS binding required)",
        ));
    }
    Ok(())
}

/// Stage 4, policy: the caller has a valid tenant if `authority.requireTenant` says so,
/// is not revoked (licence, subject, tenant, refresh-token id), the plan exists under the
/// current rules, and it grants something of what was asked (`docker login` asks nothing
/// and gets an empty grant). `{tenant}`/`{sub}` rules match only the caller's own valid
/// values.
fn policy(
    ctx: &Context<'_>,
    caller: &Caller,
    request: &TokenRequest,
    audit: &mut Audit,
) -> Result<Granted, Denial> {
    let config = ctx.config;
    let authority_caller = matches!(caller, Caller::OpToken(_) | Caller::Refresh(_));
    if config.authority.require_tenant && authority_caller {
        match caller.tenant() {
            None => {
                return Err(Denial::new(
                    Reason::MissingTenant,
                    format!(
                        "the credential carries no tenant ({:?}) and this realm requires one",
                        config.authority.tenant_claim.chars().take(64).collect::<String>()
                    ),
                ))
            }
            Some(t) if !is_path_component(t) => {
                return Err(Denial::new(
                    Reason::InvalidTenant,
                    "the tenant is not one repository path component (lowercase letters, digits, and the separators . _ __ -, at most 255 bytes)",
                ))
            }
            Some(_) => {}
        }
    }
    let (max_stale, on_stale) = config.revocation_policy();
    let ids = Identifiers {
        licenses: caller.licenses(),
        subject: Some(caller.subject()),
        refresh_token_id: caller.refresh_token_id(),
        tenant: caller.tenant(),
    };
    match revocation::check(
        &ids,
        &config.revoked,
        ctx.revocation,
        max_stale,
        on_stale,
        ctx.now,
    ) {
        Revocation::Clear => {}
        Revocation::Revoked(Revoked::License) => {
            return Err(Denial::new(
                Reason::LicenseRevoked,
                "the caller's licence has been revoked",
            ))
        }
        Revocation::Revoked(Revoked::Subject) => {
            return Err(Denial::new(
                Reason::SubjectRevoked,
                "the caller's access has been revoked",
            ))
        }
        Revocation::Revoked(Revoked::Tenant) => {
            return Err(Denial::new(
                Reason::TenantRevoked,
                "the caller's tenant has been revoked",
            ))
        }
        Revocation::Revoked(Revoked::RefreshToken) => {
            return Err(Denial::new(
                Reason::RefreshTokenRevoked,
                "the refresh token has been revoked",
            ))
        }
        Revocation::ListUnavailable => {
            return Err(
                if revocation::unavailable_is_stale(ctx.revocation, on_stale) {
                    Denial::new(
                    Reason::RevocationStale,
                    "no revocation list could be taken for revocation.maxStaleSeconds and this gateway fails closed; retry later",
                )
                } else {
                    Denial::new(
                    Reason::RevocationUnavailable,
                    "the revocation list has not been fetched yet and this gateway fails closed; retry shortly",
                )
                },
            )
        }
    }
    let plans = caller.plans(config);
    if plans.is_empty() {
        return Err(Denial::new(
            Reason::MissingPlan,
            "the token names no plan and no defaultPlan is configured",
        ));
    }
    let plan = plans.join(" ");
    audit.plan = Some(audit::bounded(&plan));
    let vars = Placeholders::new(caller.tenant(), Some(caller.subject()));
    let granted = match plans.as_slice() {
        [one] => config.catalogue.grant_for(one, &request.scopes, &vars),
        several => config
            .catalogue
            .grant_union(several, &request.scopes, &vars),
    };
    let mut access = granted.map_err(|e| {
        Denial::new(
            Reason::UnknownPlan,
            format!("plan {:?} is not in the catalogue", e.name),
        )
    })?;
    if matches!(caller, Caller::Anonymous) {
        // `anonymous.plan` allows only pull (validated); pull alone is granted regardless.
        access.retain_mut(|s| {
            s.actions.retain(|a| a == "pull");
            !s.actions.is_empty()
        });
    }
    let rules = match caller {
        Caller::Trusted(t) => t.outcome.rules.as_ref(),
        _ => None,
    };
    if let Some(rules) = rules {
        // The token's own rules (`rulesClaim`): they only narrow what the plans grant.
        access = rules.narrow(&access);
    }
    audit.granted = access.iter().map(audit::scope_text).collect();
    if !request.scopes.is_empty() && access.is_empty() {
        if rules.is_some() {
            return Err(Denial::new(
                Reason::PlanDenied,
                format!("plan {plan:?} and the token's own rules together grant none of the requested access"),
            ));
        }
        if matches!(caller, Caller::Anonymous) {
            // Nothing public here: ask for credentials, as without `anonymous`.
            return Err(Denial::new(
                Reason::MissingCredentials,
                "authentication is required for this access",
            ));
        }
        return Err(Denial::new(
            Reason::PlanDenied,
            format!("plan {plan:?} grants none of the requested access"),
        ));
    }
    let tags = access
        .iter()
        .map(|s| {
            (s.resource_type == "repository")
                .then(|| config.catalogue.tag_policy(&plans, &s.name, &vars))
                .flatten()
                .cloned()
        })
        .collect();
    Ok(Granted {
        plan,
        access,
        tenant: vars.tenant().map(str::to_string),
        tags,
    })
}
