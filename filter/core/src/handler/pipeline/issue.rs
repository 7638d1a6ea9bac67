//! Stage 5 of the pipeline: the registry token minted (or reused, with
//! `signing.reuseSeconds`), a refresh token sealed when one is asked for, and the token
//! reply.

use super::{Caller, Granted};
use crate::handler::audit::{self, Audit};
use crate::handler::cache::{self, MintedToken};
use crate::handler::credentials::TokenRequest;
use crate::handler::reason::Reason;
use crate::handler::reply::Denial;
use crate::handler::{Context, Decision, Grant, Outcome};
use crate::token::access::TagPolicy;
use crate::token::mint;
use crate::token::refresh::RefreshClaims;
use crate::wire::{json, time};

/// Stage 5: mint (or reuse, with `signing.reuseSeconds`) the registry token, seal a
/// refresh token when one is asked for (never on the refresh grant: no rotation), reply.
/// `GET` keeps the Docker token body (plus `refresh_token`); `POST` answers RFC 6749 §5.1.
pub(super) fn mint(
    ctx: &Context<'_>,
    caller: &Caller,
    request: &TokenRequest,
    granted: &Granted,
    audit: &mut Audit,
) -> Result<Decision, Denial> {
    let config = ctx.config;
    let refresh_claims = match (&config.refresh_tokens, caller) {
        (Some(rt), Caller::OpToken(optok)) if request.offline => {
            let jti = mint::new_jti(ctx.crypto)
                .map_err(|_| Denial::new(Reason::InternalError, "could not draw random bits"))?;
            Some(RefreshClaims {
                sub: optok.subject().to_owned(),
                plan: granted.plan.clone(),
                lic: optok.licenses().to_vec(),
                azp: optok.client_id().map(str::to_owned),
                cid: request.client_id.clone(),
                jkt: optok.jkt().map(str::to_owned),
                x5t_s256: optok.x5t_s256().map(str::to_owned),
                ten: optok.tenant().map(str::to_owned),
                iat: ctx.now,
                exp: ctx.now.saturating_add(rt.lifetime_seconds),
                jti,
            })
        }
        _ => None,
    };
    // The refresh token this one descends from: the one presented, or the one issued
    // with it (the guard's revocation of a refresh token reaches both).
    let rtid = caller
        .refresh_token_id()
        .or(refresh_claims.as_ref().map(|c| c.jti.as_str()));
    let minted = mint_token(ctx, caller, &request.service, granted, rtid)?;
    let refresh_token = refresh_claims.map(|claims| {
        audit.refresh_token_id = Some(claims.jti.clone());
        // `request.offline` with `refresh_tokens` configured: the match above.
        config
            .refresh_tokens
            .as_ref()
            .map(|rt| rt.keys.seal(&claims))
            .unwrap_or_default()
    });
    let body = token_body(
        &minted,
        ctx.now,
        refresh_token.as_deref(),
        (request.grant != Grant::Get).then(|| audit.granted.join(" ")),
    );
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("cache-control".to_string(), "no-store".to_string()),
        ("pragma".to_string(), "no-cache".to_string()),
    ];
    if let (Some(nonce), Some(_)) = (&config.dpop.nonce, caller.jkt()) {
        headers.push(("dpop-nonce".into(), nonce.current(ctx.now)));
    }
    audit.decision = "issued";
    audit.reason = "issued";
    audit.jti = Some(minted.jti);
    audit.iat = Some(minted.issued_at);
    audit.exp = Some(minted.expires_at);
    audit.kid = Some(audit::bounded(&config.signing.kid));
    Ok(Decision {
        status: 200,
        headers,
        body,
        outcome: Outcome::Issued(request.grant),
        audit: Some(std::mem::take(audit)),
        unknown_kid: false,
    })
}

/// The token reply's body: `token` and `access_token`, `expires_in`, `issued_at`, and
/// `refresh_token` when one was sealed; a `POST` (`scope` given) adds `token_type` and
/// `scope` (RFC 6749 §5.1). Written directly, keys sorted as `serde_json` writes them.
fn token_body(
    minted: &MintedToken,
    now: u64,
    refresh_token: Option<&str>,
    scope: Option<String>,
) -> String {
    let mut out = String::with_capacity(2 * minted.token.len() + 160);
    let mut o = json::Object::begin(&mut out);
    o.str("access_token", &minted.token)
        .u64("expires_in", minted.expires_at.saturating_sub(now))
        .str("issued_at", &time::rfc3339(minted.issued_at));
    if let Some(rt) = refresh_token {
        o.str("refresh_token", rt);
    }
    if let Some(scope) = &scope {
        o.str("scope", scope);
    }
    o.str("token", &minted.token);
    if scope.is_some() {
        o.str("token_type", "Bearer");
    }
    o.end();
    out
}

fn mint_token(
    ctx: &Context<'_>,
    caller: &Caller,
    service: &str,
    granted: &Granted,
    rtid: Option<&str>,
) -> Result<MintedToken, Denial> {
    let signing = &ctx.config.signing;
    let tenant = granted.tenant.as_deref();
    let tags: Vec<Option<&TagPolicy>> = granted.tags.iter().map(Option::as_ref).collect();
    let extra = mint::Extra {
        plan: Some(granted.plan.as_str()),
        licenses: caller.licenses(),
        rtid,
        tags: &tags,
    };
    let granted = granted.access.as_slice();
    let reuse = ctx.cache.filter(|_| signing.reuse_seconds > 0).map(|c| {
        let binding = cache::Binding {
            subject: caller.subject(),
            jkt: caller.jkt(),
            x5t_s256: caller.x5t_s256(),
            tenant,
        };
        (
            c,
            cache::mint_key(signing, &binding, service, granted, &extra),
        )
    });
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
        subject: caller.subject(),
        audience: service,
        access: granted,
        now: ctx.now,
        lifetime_seconds: signing.lifetime_seconds,
        kid: &signing.kid,
        x5c: signing.x5c.as_deref(),
        jti: &jti,
        tenant,
        extra,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_body_is_what_serde_json_wrote() {
        let minted = MintedToken {
            token: "eyJh.eyJi.c2ln".into(),
            jti: "j".into(),
            issued_at: 1_800_000_000,
            expires_at: 1_800_000_300,
        };
        for (rt, scope) in [
            (None, None),
            (Some("rtr1.x"), None),
            (None, Some("repository:a/b:pull registry:catalog:*")),
            (Some("rtr1.\"y"), Some("")),
        ] {
            let mut v = json!({
                "token": minted.token,
                "access_token": minted.token,
                "expires_in": 300,
                "issued_at": time::rfc3339(minted.issued_at),
            });
            if let Some(s) = scope {
                v["token_type"] = json!("Bearer");
                v["scope"] = json!(s);
            }
            if let Some(rt) = rt {
                v["refresh_token"] = json!(rt);
            }
            let body = token_body(&minted, 1_800_000_000, rt, scope.map(str::to_string));
            assert_eq!(body, v.to_string());
        }
    }
}
