//! Stage 1, the request and its credentials. `GET`: the token request (`service`,
//! scopes) from the query string and the OpToken from `Authorization` (`Bearer`, `DPoP`,
//! or the Basic password). `POST` (a form, RFC 6749 §4.3 and §6): the same request from
//! the form, and the credential its grant names — the password grant's `password` is an
//! OpToken, the refresh grant's `refresh_token` a refresh token. Every source yields a
//! [`Presented`] credential for the later stages.

use super::audit::{self, Audit};
use super::reason::Reason;
use super::reply::Denial;
use super::{Grant, RequestView};
use crate::config::Config;
use crate::policy::scope::{parse_scopes, Scope};
use crate::token::jws;
use crate::wire::b64;
use crate::wire::form::{is_form_media_type, parse_form, FormError, MAX_FORM_BYTES};
use crate::wire::query::parse_query;

/// Where the OpTok came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialScheme {
    /// `Authorization: Bearer`.
    Bearer,
    /// `Authorization: DPoP`.
    DPoP,
    /// `Authorization: Basic` with the OpTok as the password.
    Basic,
    /// The `password` of a `POST` password grant.
    Password,
}

/// The presented credential: the scheme and the raw (untrusted) OpToken.
#[derive(Debug, Clone)]
pub struct Credential {
    /// How it was presented.
    pub scheme: CredentialScheme,
    /// The OpToken, not yet verified.
    pub token: String,
}

/// What the caller presented, not yet verified.
#[derive(Debug, Clone)]
pub enum Presented {
    /// An OpToken (`GET` or the password grant).
    OpToken(Credential),
    /// A refresh token (the refresh grant).
    RefreshToken(String),
    /// No credentials at all on a `GET`, and `anonymous` is configured.
    Anonymous,
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `service` (the minted token's `aud`), on the allow-list.
    pub service: String,
    /// The requested scopes, parsed.
    pub scopes: Vec<Scope>,
    /// How the token is asked for.
    pub grant: Grant,
    /// A refresh token is asked for (`offline_token=true` on `GET`, `access_type=offline`
    /// on `POST`).
    pub offline: bool,
    /// The `client_id` parameter (audit only), bounded.
    pub client_id: Option<String>,
}

/// Reads the request: the query and `Authorization` of a `GET`/`HEAD`, or the form of a
/// `POST`. Syntax first, nothing costly. The audit record learns what was asked.
pub fn read_request(
    req: &RequestView<'_>,
    config: &Config,
    audit: &mut Audit,
) -> Result<(TokenRequest, Presented), Denial> {
    if req.method.eq_ignore_ascii_case("POST") {
        return read_form(req, config, audit);
    }
    audit.grant = Grant::Get.label();
    let request = token_request(req, config, audit)?;
    let credential = match credentials(req) {
        Err(d) if d.reason == Reason::MissingCredentials && config.anonymous.is_some() => {
            return Ok((request, Presented::Anonymous))
        }
        other => other?,
    };
    Ok((request, Presented::OpToken(credential)))
}

/// Parses the query of a `GET /token` into a [`TokenRequest`]: syntax before anything
/// costly, then the service allow-list. The audit record learns what was asked.
pub fn token_request(
    req: &RequestView<'_>,
    config: &Config,
    audit: &mut Audit,
) -> Result<TokenRequest, Denial> {
    let query = parse_query(req.query())
        .map_err(|e| Denial::new(Reason::MalformedRequest, e.to_string()))?;
    let client_id = query.client_id.as_deref().map(audit::bounded);
    audit.request_client_id.clone_from(&client_id);
    let (service, scopes) = service_and_scopes(query.service, &query.scopes, config, audit)?;
    Ok(TokenRequest {
        service,
        scopes,
        grant: Grant::Get,
        offline: query.offline_token,
        client_id,
    })
}

/// `POST /token`: the media type, the size, the form, the grant and its credential.
fn read_form(
    req: &RequestView<'_>,
    config: &Config,
    audit: &mut Audit,
) -> Result<(TokenRequest, Presented), Denial> {
    let mut types = req.header_values("content-type");
    match (types.next(), types.next()) {
        (Some(t), None) if is_form_media_type(t) => {}
        _ => {
            return Err(Denial::new(
                Reason::UnsupportedMediaType,
                "the token request body must be application/x-www-form-urlencoded",
            ))
        }
    }
    let body = req.body.unwrap_or_default();
    let form = parse_form(body).map_err(|e| match e {
        FormError::TooLarge { .. } => Denial::new(
            Reason::BodyTooLarge,
            format!("the request body exceeds {MAX_FORM_BYTES} bytes"),
        ),
        e => Denial::new(Reason::MalformedRequest, e.to_string()),
    })?;
    let client_id = form.client_id.as_deref().map(audit::bounded);
    audit.request_client_id.clone_from(&client_id);
    let grant = match form.grant_type.as_deref() {
        None => {
            return Err(Denial::new(
                Reason::MissingGrantParameter,
                "the grant_type parameter is required (password or refresh_token)",
            ))
        }
        Some("password") => Grant::Password,
        Some("refresh_token") => Grant::RefreshToken,
        Some(other) => {
            return Err(Denial::new(
                Reason::UnsupportedGrantType,
                format!(
                    "grant_type {:?} is not supported (password or refresh_token)",
                    audit::bounded(other).chars().take(64).collect::<String>()
                ),
            ))
        }
    };
    audit.grant = grant.label();
    let (service, scopes) = service_and_scopes(form.service, &form.scopes, config, audit)?;
    let presented = match grant {
        Grant::RefreshToken => {
            if config.refresh_tokens.is_none() {
                return Err(Denial::new(
                    Reason::RefreshDisabled,
                    "this realm issues no refresh tokens",
                ));
            }
            let token = form.refresh_token.ok_or_else(|| {
                Denial::new(
                    Reason::MissingGrantParameter,
                    "the refresh_token parameter is required with grant_type=refresh_token",
                )
            })?;
            Presented::RefreshToken(token)
        }
        Grant::Password | Grant::Get => {
            let token = form.password.ok_or_else(|| {
                Denial::new(
                    Reason::MissingGrantParameter,
                    "the password parameter (the Authority access token) is required with grant_type=password",
                )
            })?;
            if token.len() > jws::MAX_JWT_BYTES {
                return Err(Denial::new(
                    Reason::MalformedCredentials,
                    "the token is too long",
                ));
            }
            Presented::OpToken(Credential {
                scheme: CredentialScheme::Password,
                token,
            })
        }
    };
    let request = TokenRequest {
        service,
        scopes,
        grant,
        offline: form.access_type.as_deref() == Some("offline"),
        client_id,
    };
    Ok((request, presented))
}

/// The `service` (required, on the allow-list) and the scopes, from either source.
fn service_and_scopes(
    service: Option<String>,
    raw_scopes: &[String],
    config: &Config,
    audit: &mut Audit,
) -> Result<(String, Vec<Scope>), Denial> {
    audit.service = service.as_deref().map(audit::bounded);
    let Some(service) = service else {
        return Err(Denial::new(
            Reason::MissingService,
            "the service parameter is required",
        ));
    };
    let scopes = match parse_scopes(raw_scopes.iter()) {
        Ok(s) => s,
        Err(e) => {
            audit.requested = audit::raw_scopes(raw_scopes);
            return Err(Denial::new(Reason::MalformedScope, e.to_string()));
        }
    };
    audit.requested = scopes.iter().map(audit::scope_text).collect();
    if !config.registry.any_service && !config.registry.allowed_services.contains(&service) {
        return Err(Denial::new(
            Reason::UnknownService,
            format!(
                "service {:?} is not served by this token realm",
                service.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok((service, scopes))
}

/// Extracts the OpTok from `Authorization`.
pub fn credentials(req: &RequestView<'_>) -> Result<Credential, Denial> {
    let mut values = req.header_values("authorization");
    let Some(value) = values.next() else {
        return Err(Denial::new(
            Reason::MissingCredentials,
            "no credentials: send the Authority access token as Authorization: Bearer, DPoP or Basic",
        ));
    };
    if values.next().is_some() {
        return Err(Denial::new(
            Reason::DuplicateCredentials,
            "more than one Authorization header",
        ));
    }
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    let malformed = |why: &str| Denial::new(Reason::MalformedCredentials, why.to_string());
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        CredentialScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        CredentialScheme::DPoP
    } else if scheme.eq_ignore_ascii_case("basic") {
        CredentialScheme::Basic
    } else {
        return Err(malformed(
            "unsupported Authorization scheme (use Bearer, DPoP or Basic)",
        ));
    };
    let token = match scheme {
        CredentialScheme::Bearer | CredentialScheme::DPoP => rest.to_string(),
        CredentialScheme::Basic | CredentialScheme::Password => {
            let decoded = b64::std_decode(rest)
                .map_err(|_| malformed("Basic credentials are not valid base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| malformed("Basic credentials are not UTF-8"))?;
            let (_, password) = text
                .split_once(':')
                .ok_or_else(|| malformed("Basic credentials lack the user:password colon"))?;
            password.to_string()
        }
    };
    if token.is_empty() {
        return Err(malformed("the credentials hold no token"));
    }
    if token.len() > jws::MAX_JWT_BYTES {
        return Err(malformed("the token is too long"));
    }
    Ok(Credential { scheme, token })
}
