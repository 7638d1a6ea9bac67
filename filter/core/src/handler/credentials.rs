//! Stage 1, the request and its credentials: the token request (`service`, scopes) from
//! the query string, and the OpToken from `Authorization` (`Bearer`, `DPoP`, or the Basic
//! password).

use super::audit::{self, Audit};
use super::reason::Reason;
use super::reply::Denial;
use super::RequestView;
use crate::config::Config;
use crate::policy::scope::{parse_scopes, Scope};
use crate::token::jws;
use crate::wire::b64;
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
}

/// The presented credential: the scheme and the raw (untrusted) OpToken.
#[derive(Debug, Clone)]
pub struct Credential {
    /// How it was presented.
    pub scheme: CredentialScheme,
    /// The OpToken, not yet verified.
    pub token: String,
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `service` (the minted token's `aud`), on the allow-list.
    pub service: String,
    /// The requested scopes, parsed.
    pub scopes: Vec<Scope>,
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
    audit.service = query.service.as_deref().map(audit::bounded);
    let Some(service) = query.service else {
        return Err(Denial::new(
            Reason::MissingService,
            "the service parameter is required",
        ));
    };
    let scopes = match parse_scopes(query.scopes.iter()) {
        Ok(s) => s,
        Err(e) => {
            audit.requested = audit::raw_scopes(&query.scopes);
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
    Ok(TokenRequest { service, scopes })
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
        CredentialScheme::Basic => {
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
