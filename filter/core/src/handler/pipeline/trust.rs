//! Stage 2 with several issuers: the token's `iss` chooses the issuer
//! ([`crate::token::issuers`]), whose keys, audiences, algorithms and scopes verify it;
//! a token of `authority` goes on as before, a token of an `issuers` entry through that
//! issuer's trust policies ([`crate::policy::trust`]) to a [`Caller::Trusted`].

use std::rc::Rc;

use super::{verify_optok, Caller, TrustedCaller};
use crate::config::{IssuerConfig, KeySource};
use crate::handler::audit::{self, Audit};
use crate::handler::credentials::Credential;
use crate::handler::reason::Reason;
use crate::handler::reply::Denial;
use crate::handler::{AuthorityKeys, Context, IssuerKeys};
use crate::policy::trust::{TokenRules, TrustDenial};
use crate::token::issuers;
use crate::token::jws::JwtError;
use crate::token::keys::KeySet;
use crate::token::optok::{self, OpTokPolicy, UntrustedOpTok};
use crate::token::refresh;

/// The keys to verify with, or why there are none (the denials of `authority`'s keys).
pub(super) fn known(keys: IssuerKeys) -> Result<Rc<KeySet>, Denial> {
    match keys {
        IssuerKeys::Known(k) => Ok(k),
        IssuerKeys::NotFetched => Err(Denial::new(
            Reason::KeysUnavailable,
            "the issuer's signing keys are not available yet; retry shortly",
        )),
        IssuerKeys::Withdrawn => Err(Denial::new(
            Reason::KeysWithdrawn,
            "the issuer publishes no usable signing key; retry later",
        )),
        IssuerKeys::Stale => Err(Denial::new(
            Reason::KeysStale,
            "the issuer's signing keys could not be refreshed for too long; retry later",
        )),
    }
}

/// Stage 2: the credential's token verified by the issuer its `iss` names. Without
/// `issuers`, exactly the one-Authority check (`wrong_issuer` for another `iss`).
pub(super) fn verify_caller(
    ctx: &Context<'_>,
    credential: &Credential,
    audit: &mut Audit,
    unknown_kid: &mut bool,
) -> Result<Caller, Denial> {
    let config = ctx.config;
    let index = if config.issuers.is_empty() {
        0
    } else {
        if refresh::is_refresh_token(&credential.token) {
            return verify_optok(ctx, credential).map(Caller::OpToken);
        }
        let untrusted = UntrustedOpTok::parse(&credential.token)
            .map_err(|e: JwtError| Denial::new(Reason::from(&e), e.to_string()))?;
        issuers::select(untrusted.issuer(), config.issuer_names()).ok_or_else(|| {
            Denial::new(
                Reason::UnknownIssuer,
                "the token's issuer (iss) is not trusted by this realm",
            )
        })?
    };
    let Some(issuer) = index.checked_sub(1).and_then(|i| config.issuers.get(i)) else {
        let optok = verify_optok(ctx, credential).inspect_err(|d| {
            *unknown_kid = d.reason == Reason::UnknownKey;
        })?;
        // Named once several issuers are trusted: a one-Authority configuration sends the
        // ledger the records it always sent (an older ledger refuses unknown fields).
        if !config.issuers.is_empty() {
            audit.issuer = Some(audit::bounded(&config.authority.issuer));
        }
        return Ok(Caller::OpToken(optok));
    };
    let optok = verify_with(ctx, issuer, index, credential)?;
    audit.issuer = Some(audit::bounded(&issuer.checks.issuer));
    let outcome = issuer
        .policies
        .evaluate_with(
            &|name| optok.claim(name),
            &|p| config.catalogue.has_plan(p),
            &|rules| match ctx.cache {
                Some(c) => c.token_rules(rules),
                None => TokenRules::compile(rules).map(Rc::new),
            },
        )
        .map_err(|e| {
            let reason = match &e {
                TrustDenial::NoMatch => Reason::NoTrustPolicy,
                TrustDenial::NoPlan(_) => Reason::MissingPlan,
                TrustDenial::WrongType(_)
                | TrustDenial::Render(_)
                | TrustDenial::InvalidTenant
                | TrustDenial::Rules(..) => Reason::InvalidClaim,
            };
            Denial::new(reason, e.to_string())
        })?;
    audit.policy = Some(audit::bounded(&outcome.policy));
    Ok(Caller::Trusted(Box::new(TrustedCaller {
        optok,
        issuer: index - 1,
        outcome,
    })))
}

/// The token verified under `issuers[index - 1]`'s rules and keys, keeping the claims its
/// policies read.
fn verify_with(
    ctx: &Context<'_>,
    issuer: &IssuerConfig,
    index: usize,
    credential: &Credential,
) -> Result<optok::VerifiedOpTok, Denial> {
    let checks = &issuer.checks;
    let shared;
    let keys: &KeySet = match (&checks.keys, ctx.keys) {
        (KeySource::Inline(set), _) => set,
        (KeySource::Remote { .. }, keys) => {
            shared = known(match keys {
                AuthorityKeys::Lookup(l) => l.keys(index),
                _ => IssuerKeys::NotFetched,
            })?;
            &shared
        }
    };
    let policy = OpTokPolicy {
        issuer: &checks.issuer,
        audiences: &checks.audiences,
        required_scopes: &checks.required_scopes,
        algorithms: &checks.algorithms,
        clock_skew_seconds: checks.clock_skew_seconds,
        tenant_claim: &checks.tenant_claim,
    };
    let keep = issuer.policies.claims();
    let token = &credential.token;
    let verified = match ctx.cache {
        Some(c) => c.verify_optok_keeping(token, &policy, keep, keys, ctx.crypto, ctx.now),
        None => UntrustedOpTok::parse(token)
            .and_then(|u| u.verify_keeping(&policy, keep, keys, ctx.crypto, ctx.now)),
    };
    verified.map_err(|e| {
        if e == JwtError::UnknownKey {
            if let AuthorityKeys::Lookup(l) = ctx.keys {
                l.unknown_kid(index);
            }
        }
        Denial::new(Reason::from(&e), e.to_string())
    })
}
