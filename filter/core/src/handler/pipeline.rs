//! The `/token` pipeline, top to bottom:
//!
//! 1. [`credentials`]: the request (`service`, scopes) and the presented OpToken;
//! 2. [`verify_optok`]: `UntrustedOpTok` → [`VerifiedOpTok`] (through the cache);
//! 3. [`sender_constraint`]: DPoP proof or client certificate, as the OpToken's `cnf` says;
//! 4. [`policy`]: licence revocation, the plan, the granted access;
//! 5. [`mint`]: the registry token (or a reused one) and the reply.
//!
//! Each stage takes what the previous one produced and returns its own typed result or a
//! [`Denial`]; the audit record is filled in as the stages learn things.

use serde_json::json;

use super::audit::{self, Audit};
use super::cache::{self, MintedToken};
use super::credentials::{self, Credential, CredentialScheme, TokenRequest};
use super::reason::Reason;
use super::reply::{deny, quoted, Denial};
use super::{AuthorityKeys, Context, Decision, Outcome, RequestView};
use crate::config::Config;
use crate::policy::revocation::{self, OnStale, Revocation};
use crate::policy::scope::Scope;
use crate::sender::dpop::{self, DpopError, ProofPolicy};
use crate::sender::mtls;
use crate::token::jws::JwtError;
use crate::token::mint;
use crate::token::optok::{OpTokPolicy, VerifiedOpTok};
use crate::wire::time;

/// What the policy stage granted.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The plan applied.
    pub plan: String,
    /// The access granted (requested ∩ allowed).
    pub access: Vec<Scope>,
}

/// The `/token` decision.
pub fn handle_token(req: &RequestView<'_>, ctx: &Context<'_>) -> Decision {
    let mut audit = Audit::new(ctx.now);
    let mut unknown_kid = false;
    match run(req, ctx, &mut audit, &mut unknown_kid) {
        Ok((request, optok, grant)) => mint(ctx, &optok, &request, &grant, audit),
        Err(denial) => {
            let mut decision = deny(ctx.config, denial, Some(audit));
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
) -> Result<(TokenRequest, VerifiedOpTok, Grant), Denial> {
    if !req.method.eq_ignore_ascii_case("GET") && !req.method.eq_ignore_ascii_case("HEAD") {
        let mut d = Denial::new(
            Reason::MethodNotAllowed,
            "the token endpoint answers GET (the OAuth2 POST flow is not offered)",
        );
        d.extra_headers.push(("allow".into(), "GET".into()));
        return Err(d);
    }
    // Cheap syntax checks first: garbage never costs a signature check.
    let request = credentials::token_request(req, ctx.config, audit)?;
    let credential = credentials::credentials(req)?;
    let optok = verify_optok(ctx, &credential).inspect_err(|d| {
        *unknown_kid = d.reason == Reason::UnknownKey;
    })?;
    audit.subject = Some(audit::bounded(&optok.subject));
    audit.client_id = optok.client_id.as_deref().map(audit::bounded);
    audit.binding = binding_text(&optok);
    sender_constraint(req, ctx, &credential, &optok)?;
    let grant = policy(ctx, &optok, &request, audit)?;
    Ok((request, optok, grant))
}

/// Stage 2: the OpToken, verified against the Authority's keys (through the cache).
fn verify_optok(ctx: &Context<'_>, credential: &Credential) -> Result<VerifiedOpTok, Denial> {
    let config = ctx.config;
    let keys = match ctx.keys {
        AuthorityKeys::Known(keys) => keys,
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
    };
    cache::verify_optok(
        ctx.cache,
        &credential.token,
        &policy,
        keys,
        ctx.crypto,
        ctx.now,
    )
    .map_err(|e: JwtError| Denial::new(Reason::from(&e), e.to_string()))
}

/// The audit record's `binding`: `jkt:<thumbprint>` and/or `x5t#S256:<thumbprint>`.
fn binding_text(optok: &VerifiedOpTok) -> Option<String> {
    let bindings: Vec<String> = optok
        .jkt
        .iter()
        .map(|j| format!("jkt:{j}"))
        .chain(optok.x5t_s256.iter().map(|x| format!("x5t#S256:{x}")))
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

/// Stage 3, the sender constraint: a `cnf.jkt` OpTok needs a valid DPoP proof from that
/// key, whatever the scheme; a `cnf.x5t#S256` OpTok needs that client certificate on the
/// connection; an unbound OpTok passes only when `requireSenderConstraint` is off, and
/// never under the `DPoP` scheme (RFC 9449 §7.1).
fn sender_constraint(
    req: &RequestView<'_>,
    ctx: &Context<'_>,
    credential: &Credential,
    optok: &VerifiedOpTok,
) -> Result<(), Denial> {
    let config = ctx.config;
    if let Some(jkt) = &optok.jkt {
        let proofs: Vec<&str> = req.header_values("dpop").collect();
        let policy = ProofPolicy {
            algorithms: &config.dpop.algorithms,
            htu: &config.registry.realm,
            iat_window_seconds: config.dpop.iat_window_seconds,
            nonce: config.dpop.nonce.as_ref(),
        };
        dpop::verify_proof(
            &proofs,
            req.method,
            &credential.token,
            jkt,
            &policy,
            ctx.crypto,
            ctx.replay,
            ctx.now,
        )
        .map_err(|e| dpop_denial(config, &e, ctx.now))?;
    } else if credential.scheme == CredentialScheme::DPoP {
        return Err(Denial::new(
            Reason::DpopUnboundToken,
            "the DPoP scheme needs a DPoP-bound access token (cnf.jkt)",
        ));
    }
    if let Some(x5t) = &optok.x5t_s256 {
        let presented = req
            .peer_certificate_sha256_hex
            .and_then(mtls::x5t_from_hex_digest);
        match presented {
            None => return Err(Denial::new(
                Reason::MtlsNoCertificate,
                "the access token is certificate-bound: present its client certificate over TLS",
            )),
            Some(t) if t == *x5t => {}
            Some(_) => {
                return Err(Denial::new(
                    Reason::MtlsMismatch,
                    "the client certificate is not the one the access token is bound to",
                ))
            }
        }
    }
    if optok.jkt.is_none() && optok.x5t_s256.is_none() && config.authority.require_sender_constraint
    {
        return Err(Denial::new(
            Reason::UnboundToken,
            "the access token is not sender-constrained (DPoP or mTLS binding required)",
        ));
    }
    Ok(())
}

/// Stage 4, policy: the licence is not revoked, the plan exists, and it grants something
/// of what was asked (`docker login` asks nothing and gets an empty grant).
fn policy(
    ctx: &Context<'_>,
    optok: &VerifiedOpTok,
    request: &TokenRequest,
    audit: &mut Audit,
) -> Result<Grant, Denial> {
    let config = ctx.config;
    let (max_stale, on_stale) = config
        .revocation
        .as_ref()
        .map_or((u64::MAX, OnStale::Serve), |r| {
            (r.max_stale_seconds, r.on_stale)
        });
    // Every listed licence is checked; no licence is checked once (for staleness).
    let licenses: Vec<Option<&str>> = if optok.licenses.is_empty() {
        vec![None]
    } else {
        optok.licenses.iter().map(|l| Some(l.as_str())).collect()
    };
    let verdict = licenses
        .into_iter()
        .map(|license| {
            revocation::check(
                license,
                &config.revoked_licenses,
                ctx.revocation,
                max_stale,
                on_stale,
                ctx.now,
            )
        })
        .find(|v| *v != Revocation::Clear)
        .unwrap_or(Revocation::Clear);
    match verdict {
        Revocation::Clear => {}
        Revocation::Revoked => {
            return Err(Denial::new(
                Reason::LicenseRevoked,
                "the caller's licence has been revoked",
            ))
        }
        Revocation::ListUnavailable => {
            return Err(Denial::new(
                Reason::RevocationUnavailable,
                "the licence revocation list is stale and this gateway fails closed; retry shortly",
            ))
        }
    }
    let Some(plan) = optok.plan.as_ref().or(config.default_plan.as_ref()) else {
        return Err(Denial::new(
            Reason::UnknownPlan,
            "the token names no plan and no defaultPlan is configured",
        ));
    };
    audit.plan = Some(audit::bounded(plan));
    let access = config.catalogue.grant(plan, &request.scopes).map_err(|_| {
        Denial::new(
            Reason::UnknownPlan,
            format!(
                "plan {:?} is not in the catalogue",
                plan.chars().take(64).collect::<String>()
            ),
        )
    })?;
    audit.granted = access.iter().map(audit::scope_text).collect();
    if !request.scopes.is_empty() && access.is_empty() {
        return Err(Denial::new(
            Reason::PlanDenied,
            format!("plan {plan:?} grants none of the requested access"),
        ));
    }
    Ok(Grant {
        plan: plan.clone(),
        access,
    })
}

/// Stage 5: mint (or reuse, with `signing.reuseSeconds`) the registry token and reply.
fn mint(
    ctx: &Context<'_>,
    optok: &VerifiedOpTok,
    request: &TokenRequest,
    grant: &Grant,
    mut audit: Audit,
) -> Decision {
    let config = ctx.config;
    let minted = match mint_token(ctx, optok, &request.service, &grant.access) {
        Ok(m) => m,
        Err(d) => return deny(config, d, Some(audit)),
    };
    let body = json!({
        "token": minted.token,
        "access_token": minted.token,
        "expires_in": minted.expires_at.saturating_sub(ctx.now),
        "issued_at": time::rfc3339(minted.issued_at),
    });
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
        ("pragma".to_string(), "no-cache".to_string()),
    ];
    if let (Some(nonce), Some(_)) = (&config.dpop.nonce, &optok.jkt) {
        headers.push(("dpop-nonce".into(), nonce.current(ctx.now)));
    }
    audit.decision = "issued";
    audit.reason = "issued";
    audit.jti = Some(minted.jti);
    audit.exp = Some(minted.expires_at);
    Decision {
        status: 200,
        headers,
        body: body.to_string(),
        outcome: Outcome::Issued,
        audit: Some(audit),
        unknown_kid: false,
    }
}

fn mint_token(
    ctx: &Context<'_>,
    optok: &VerifiedOpTok,
    service: &str,
    granted: &[Scope],
) -> Result<MintedToken, Denial> {
    let signing = &ctx.config.signing;
    let reuse = ctx
        .cache
        .filter(|_| signing.reuse_seconds > 0)
        .map(|c| (c, cache::mint_key(signing, optok, service, granted)));
    if let Some(m) = reuse
        .as_ref()
        .and_then(|(c, key)| c.reusable_mint(key, ctx.now, signing.reuse_seconds))
    {
        return Ok(m);
    }
    let jti = mint::new_jti(ctx.crypto)
        .map_err(|_| Denial::new(Reason::InternalError, "could not draw random bits"))?;
    let request = mint::MintRequest {
        issuer: &signing.issuer,
        subject: &optok.subject,
        audience: service,
        access: granted,
        now: ctx.now,
        lifetime_seconds: signing.lifetime_seconds,
        kid: &signing.kid,
        x5c: signing.x5c.as_deref(),
        jti: &jti,
    };
    let token = mint::mint(&request, &signing.key, ctx.crypto).map_err(|_| {
        Denial::new(
            Reason::SigningFailed,
            "the registry token could not be signed",
        )
    })?;
    let m = MintedToken {
        token,
        jti,
        issued_at: ctx.now,
        expires_at: ctx.now.saturating_add(signing.lifetime_seconds),
    };
    if let Some((c, key)) = reuse {
        c.remember_mint(key, &m, signing.reuse_seconds);
    }
    Ok(m)
}
