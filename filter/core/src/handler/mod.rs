//! The decision: a request view, a clock reading, a crypto implementation and the current
//! Authority keys in; a complete reply (status, headers, body), an outcome for the metrics
//! and an audit record out. No I/O happens here.

pub mod cache;

use serde_json::{json, Value};

use crate::config::Config;
use crate::policy::revocation::{self, OnStale, RemoteList, Revocation};
use crate::policy::scope::{self, parse_scopes, Scope};
use crate::sender::dpop::{self, DpopError, ProofPolicy};
use crate::sender::mtls;
use crate::sender::replay::ReplayCache;
use crate::token::crypto::Crypto;
use crate::token::jws::JwtError;
use crate::token::keys::KeySet;
use crate::token::optok::{OpTokPolicy, VerifiedOpTok};
use crate::token::{jws, mint};
use crate::wire::b64;
use crate::wire::query::{parse_query, TokenQuery};
use crate::wire::time;
use cache::{Caches, MintedToken};

/// Path of the liveness endpoint.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the JWKS of the minting keys.
pub const JWKS_PATH: &str = "/jwks";
/// Longest raw scope kept in an audit record when the scope did not parse.
const MAX_AUDIT_SCOPE_CHARS: usize = 300;
/// Seconds a client is asked to wait while the Authority's keys are unknown.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// A read-only view of the request, gathered by the glue.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// Request headers, names lowercase, in arrival order (repeats kept).
    pub headers: &'a [(String, String)],
    /// Lowercase hex SHA-256 of the client certificate's DER, when the downstream
    /// connection is TLS with a client certificate.
    pub peer_certificate_sha256_hex: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// All values of a header (name lowercase).
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path_only(&self) -> &'a str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    /// The raw query (after `?`, before `#`), empty when absent.
    pub fn query(&self) -> &'a str {
        match self.path.split_once('?') {
            Some((_, q)) => q.split('#').next().unwrap_or(""),
            None => "",
        }
    }
}

/// Which endpoint a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The token endpoint (the realm's path).
    Token,
    /// Liveness.
    Healthz,
    /// The public keys of minted tokens.
    Jwks,
    /// Not ours: pass to the route untouched.
    PassThrough,
}

/// Routes by path only (the filter owns the realm's path, `/healthz` and `/jwks`).
pub fn route(config: &Config, path_without_query: &str) -> Route {
    if path_without_query == config.registry.realm.path {
        Route::Token
    } else if path_without_query == HEALTHZ_PATH {
        Route::Healthz
    } else if path_without_query == JWKS_PATH {
        Route::Jwks
    } else {
        Route::PassThrough
    }
}

/// What happened, for the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A token was minted.
    Issued,
    /// Refused; the reason label.
    Rejected(&'static str),
    /// A non-token endpoint answered (health).
    Other,
}

/// One structured audit record. Never holds the OpTok, the proof or the minted token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    /// Unix time of the decision.
    pub time: u64,
    /// `issued` or `rejected`.
    pub decision: &'static str,
    /// Reason label (`issued` on success).
    pub reason: &'static str,
    /// OpTok subject, when the OpTok verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// OpTok `client_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `jkt:<thumbprint>` or `x5t#S256:<thumbprint>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// Plan applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Requested `service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Requested scopes, `type:name:actions`.
    pub requested: Vec<String>,
    /// Granted scopes, `type:name:actions`.
    pub granted: Vec<String>,
    /// Minted token `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Minted token `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

/// The full reply and its side information.
#[derive(Debug, Clone)]
pub struct Decision {
    /// HTTP status.
    pub status: u16,
    /// Response headers (besides `:status`).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
    /// For the counters.
    pub outcome: Outcome,
    /// The audit record (token endpoint only).
    pub audit: Option<Audit>,
    /// The OpTok named a `kid` the key set lacks: the glue may trigger a (rate-limited)
    /// key refresh.
    pub unknown_kid: bool,
}

/// What the decision needs besides the request.
pub struct Context<'a> {
    /// The validated configuration.
    pub config: &'a Config,
    /// The Authority's keys; `None` while not yet known (remote JWKS not fetched).
    pub keys: Option<&'a KeySet>,
    /// Crypto implementation (host or pure Rust).
    pub crypto: &'a dyn Crypto,
    /// Unix time, seconds.
    pub now: u64,
    /// DPoP `jti` replay cache (process-wide in Envoy).
    pub replay: &'a dyn ReplayCache,
    /// Verified-OpTok and minted-token caches (one per VM and configuration), if any.
    pub cache: Option<&'a Caches>,
    /// The remote revocation list as last fetched (`NotConfigured` without one).
    pub revocation: RemoteList<'a>,
}

/// The liveness reply.
pub fn healthz() -> Decision {
    Decision {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: json!({"status": "ok"}).to_string(),
        outcome: Outcome::Other,
        audit: None,
        unknown_kid: false,
    }
}

/// The JWKS of the minting keys (active first, then the published ones).
pub fn jwks(config: &Config) -> Decision {
    Decision {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/jwk-set+json".into()),
            ("cache-control".into(), "public, max-age=300".into()),
        ],
        body: config.signing.jwks.to_string(),
        outcome: Outcome::Other,
        audit: None,
        unknown_kid: false,
    }
}

/// A refusal, built into an RFC 7807 problem with the Docker `errors` array.
#[derive(Debug, Clone)]
pub struct Denial {
    /// HTTP status.
    pub status: u16,
    /// Metric reason label.
    pub reason: &'static str,
    /// Human detail (safe to show: no secrets).
    pub detail: String,
    /// RFC 6750 error code for `WWW-Authenticate` (401/403).
    pub oauth_error: Option<&'static str>,
    /// Extra headers (`Retry-After`, `DPoP-Nonce`, …).
    pub extra_headers: Vec<(String, String)>,
    /// A complete `WWW-Authenticate` value replacing the default Bearer challenge (DPoP).
    pub challenge: Option<String>,
}

impl Denial {
    /// A denial with the given status, reason and detail.
    pub fn new(status: u16, reason: &'static str, detail: impl Into<String>) -> Denial {
        let oauth_error = match status {
            400 => Some("invalid_request"),
            401 => Some("invalid_token"),
            _ => None,
        };
        Denial {
            status,
            reason,
            detail: detail.into(),
            oauth_error,
            extra_headers: Vec::new(),
            challenge: None,
        }
    }

    fn with_oauth_error(mut self, code: Option<&'static str>) -> Denial {
        self.oauth_error = code;
        self
    }
}

fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn docker_code(status: u16) -> &'static str {
    match status {
        400 => "INVALID_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        405 => "UNSUPPORTED",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// Escapes a value for an RFC 7235 quoted-string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds the reply for a denial.
pub fn deny(config: &Config, denial: Denial, audit: Option<Audit>) -> Decision {
    let status = denial.status;
    let body = json!({
        "type": format!("urn:registry-token-filter:error:{}", denial.reason),
        "title": title(status),
        "status": status,
        "detail": denial.detail,
        "errors": [{"code": docker_code(status), "message": denial.detail}],
    });
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/problem+json".to_string(),
        ),
        ("cache-control".to_string(), "no-store".to_string()),
    ];
    if let Some(challenge) = denial.challenge {
        headers.push(("www-authenticate".into(), challenge));
    } else if status == 401 || status == 403 {
        let mut challenge = format!("Bearer realm={}", quoted(&config.registry.realm_text));
        if let Some(code) = denial.oauth_error {
            challenge.push_str(&format!(
                ", error={}, error_description={}",
                quoted(code),
                quoted(&denial.detail)
            ));
        }
        // The `scope` attribute names what the OpTok lacks; only meaningful when the
        // refusal is about the OpTok's scopes (not a plan or licence decision).
        if denial.reason == "insufficient_scope" {
            challenge.push_str(&format!(
                ", scope={}",
                quoted(&config.authority.required_scopes.join(" "))
            ));
        }
        headers.push(("www-authenticate".into(), challenge));
    }
    headers.extend(denial.extra_headers);
    let mut audit = audit;
    if let Some(a) = audit.as_mut() {
        a.decision = "rejected";
        a.reason = denial.reason;
    }
    Decision {
        status,
        headers,
        body: body.to_string(),
        outcome: Outcome::Rejected(denial.reason),
        audit,
        unknown_kid: false,
    }
}

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

/// Extracts the OpTok from `Authorization`.
pub fn credentials(req: &RequestView<'_>) -> Result<(CredentialScheme, String), Denial> {
    let mut values = req.header_values("authorization");
    let Some(value) = values.next() else {
        return Err(Denial::new(
            401,
            "missing_credentials",
            "no credentials: send the Authority access token as Authorization: Bearer, DPoP or Basic",
        )
        .with_oauth_error(None));
    };
    if values.next().is_some() {
        return Err(Denial::new(
            400,
            "malformed_credentials",
            "more than one Authorization header",
        ));
    }
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    let malformed = |why: &str| Denial::new(401, "malformed_credentials", why.to_string());
    let scheme_kind = if scheme.eq_ignore_ascii_case("bearer") {
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
    let token = match scheme_kind {
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
    Ok((scheme_kind, token))
}

fn scope_text(s: &Scope) -> String {
    format!("{}:{}:{}", s.resource_type, s.name, s.actions.join(","))
}

fn jwt_denial(e: &JwtError) -> Denial {
    match e {
        JwtError::InsufficientScope(_) => {
            Denial::new(403, e.reason(), e.to_string()).with_oauth_error(Some("insufficient_scope"))
        }
        _ => Denial::new(401, e.reason(), e.to_string()),
    }
}

/// The `/token` decision.
pub fn handle_token(req: &RequestView<'_>, ctx: &Context<'_>) -> Decision {
    let config = ctx.config;
    let mut audit = Audit {
        time: ctx.now,
        decision: "rejected",
        reason: "",
        ..Audit::default()
    };
    if !req.method.eq_ignore_ascii_case("GET") && !req.method.eq_ignore_ascii_case("HEAD") {
        let mut d = Denial::new(
            405,
            "method_not_allowed",
            "the token endpoint answers GET (the OAuth2 POST flow is not offered)",
        );
        d.extra_headers.push(("allow".into(), "GET".into()));
        return deny(config, d, Some(audit));
    }
    // Cheap syntax checks first: garbage never costs a signature check.
    let query: TokenQuery = match parse_query(req.query()) {
        Ok(q) => q,
        Err(e) => {
            return deny(
                config,
                Denial::new(400, "malformed_request", e.to_string()),
                Some(audit),
            )
        }
    };
    audit.service = query.service.clone();
    let Some(service) = query.service.clone() else {
        return deny(
            config,
            Denial::new(400, "missing_service", "the service parameter is required"),
            Some(audit),
        );
    };
    let scopes = match parse_scopes(query.scopes.iter()) {
        Ok(s) => s,
        Err(e) => {
            // Who asked for what, even when it did not parse: the raw parameters, bounded
            // and stripped of control characters.
            audit.requested = query
                .scopes
                .iter()
                .take(scope::MAX_SCOPES)
                .map(|s| {
                    s.chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_AUDIT_SCOPE_CHARS)
                        .collect()
                })
                .collect();
            return deny(
                config,
                Denial::new(400, "malformed_scope", e.to_string()),
                Some(audit),
            );
        }
    };
    audit.requested = scopes.iter().map(scope_text).collect();
    if !config.registry.allowed_services.is_empty()
        && !config.registry.allowed_services.contains(&service)
    {
        return deny(
            config,
            Denial::new(
                403,
                "unknown_service",
                format!(
                    "service {:?} is not served by this token realm",
                    service.chars().take(64).collect::<String>()
                ),
            ),
            Some(audit),
        );
    }
    let (scheme, token) = match credentials(req) {
        Ok(c) => c,
        Err(d) => return deny(config, d, Some(audit)),
    };
    let Some(keys) = ctx.keys else {
        let mut d = Denial::new(
            503,
            "keys_unavailable",
            "the Authority's signing keys are not available yet; retry shortly",
        );
        d.extra_headers
            .push(("retry-after".into(), RETRY_AFTER_SECONDS.to_string()));
        return deny(config, d, Some(audit));
    };
    let policy = OpTokPolicy {
        issuer: &config.authority.issuer,
        audiences: &config.authority.audiences,
        required_scopes: &config.authority.required_scopes,
        algorithms: &config.authority.algorithms,
        clock_skew_seconds: config.authority.clock_skew_seconds,
    };
    let optok = match cache::verify_optok(ctx.cache, &token, &policy, keys, ctx.crypto, ctx.now) {
        Ok(t) => t,
        Err(e) => {
            let mut decision = deny(config, jwt_denial(&e), Some(audit));
            decision.unknown_kid = e == JwtError::UnknownKey;
            return decision;
        }
    };
    audit.subject = Some(optok.subject.clone());
    audit.client_id = optok.client_id.clone();
    if let Err(d) = check_sender_constraint(req, ctx, scheme, &token, &optok, &mut audit) {
        return deny(config, d, Some(audit));
    }
    let (max_stale, on_stale) = config
        .revocation
        .as_ref()
        .map_or((u64::MAX, OnStale::Serve), |r| {
            (r.max_stale_seconds, r.on_stale)
        });
    match revocation::check(
        optok.license.as_deref(),
        &config.revoked_licenses,
        ctx.revocation,
        max_stale,
        on_stale,
        ctx.now,
    ) {
        Revocation::Clear => {}
        Revocation::Revoked => {
            return deny(
                config,
                Denial::new(
                    403,
                    "license_revoked",
                    "the caller's licence has been revoked",
                )
                .with_oauth_error(Some("insufficient_scope")),
                Some(audit),
            );
        }
        Revocation::ListUnavailable => {
            let mut d = Denial::new(
                503,
                "revocation_unavailable",
                "the licence revocation list is stale and this gateway fails closed; retry shortly",
            );
            d.extra_headers
                .push(("retry-after".into(), RETRY_AFTER_SECONDS.to_string()));
            return deny(config, d, Some(audit));
        }
    }
    let plan = match optok.plan.as_ref().or(config.default_plan.as_ref()) {
        Some(p) => p.clone(),
        None => {
            return deny(
                config,
                Denial::new(
                    403,
                    "unknown_plan",
                    "the token names no plan and no defaultPlan is configured",
                )
                .with_oauth_error(Some("insufficient_scope")),
                Some(audit),
            )
        }
    };
    audit.plan = Some(plan.clone());
    let granted = match config.catalogue.grant(&plan, &scopes) {
        Ok(g) => g,
        Err(_) => {
            return deny(
                config,
                Denial::new(
                    403,
                    "unknown_plan",
                    format!(
                        "plan {:?} is not in the catalogue",
                        plan.chars().take(64).collect::<String>()
                    ),
                )
                .with_oauth_error(Some("insufficient_scope")),
                Some(audit),
            )
        }
    };
    audit.granted = granted.iter().map(scope_text).collect();
    if !scopes.is_empty() && granted.is_empty() {
        return deny(
            config,
            Denial::new(
                403,
                "plan_denied",
                format!("plan {plan:?} grants none of the requested access"),
            )
            .with_oauth_error(Some("insufficient_scope")),
            Some(audit),
        );
    }
    mint_reply(ctx, &optok, &service, &granted, audit)
}

fn mint_reply(
    ctx: &Context<'_>,
    optok: &VerifiedOpTok,
    service: &str,
    granted: &[Scope],
    mut audit: Audit,
) -> Decision {
    let config = ctx.config;
    let signing = &config.signing;
    let reuse = ctx
        .cache
        .filter(|_| signing.reuse_seconds > 0)
        .map(|c| (c, cache::mint_key(signing, optok, service, granted)));
    let reused = reuse
        .as_ref()
        .and_then(|(c, key)| c.reusable_mint(key, ctx.now, signing.reuse_seconds));
    let minted = if let Some(m) = reused {
        m
    } else {
        let jti = match mint::new_jti(ctx.crypto) {
            Ok(j) => j,
            Err(_) => {
                return deny(
                    config,
                    Denial::new(500, "internal_error", "could not draw random bits"),
                    Some(audit),
                )
            }
        };
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
        let token = match mint::mint(&request, &signing.key, ctx.crypto) {
            Ok(t) => t,
            Err(_) => {
                return deny(
                    config,
                    Denial::new(
                        500,
                        "signing_failed",
                        "the registry token could not be signed",
                    ),
                    Some(audit),
                )
            }
        };
        let m = MintedToken {
            token,
            jti,
            issued_at: ctx.now,
            expires_at: ctx.now.saturating_add(signing.lifetime_seconds),
        };
        if let Some((c, key)) = reuse {
            c.remember_mint(key, &m, signing.reuse_seconds);
        }
        m
    };
    let body: Value = json!({
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

fn dpop_denial(config: &Config, e: &DpopError, now: u64) -> Denial {
    let status = if *e == DpopError::ReplayUnavailable {
        503
    } else {
        401
    };
    let mut d = Denial::new(status, e.reason(), e.to_string());
    let algs: Vec<&str> = config.dpop.algorithms.iter().map(|a| a.name()).collect();
    let code = if *e == DpopError::Nonce {
        "use_dpop_nonce"
    } else {
        "invalid_dpop_proof"
    };
    if status == 401 {
        d.challenge = Some(format!(
            "DPoP error={}, error_description={}, algs={}",
            quoted(code),
            quoted(&e.to_string()),
            quoted(&algs.join(" "))
        ));
    } else {
        d.extra_headers
            .push(("retry-after".into(), RETRY_AFTER_SECONDS.to_string()));
    }
    if let Some(nonce) = &config.dpop.nonce {
        d.extra_headers
            .push(("dpop-nonce".into(), nonce.current(now)));
    }
    d
}

/// Sender constraint: a `cnf.jkt` OpTok needs a valid DPoP proof from that key, whatever
/// the scheme; a `cnf.x5t#S256` OpTok needs that client certificate on the connection; an
/// unbound OpTok passes only when `requireSenderConstraint` is off, and never under the
/// `DPoP` scheme (RFC 9449 §7.1).
fn check_sender_constraint(
    req: &RequestView<'_>,
    ctx: &Context<'_>,
    scheme: CredentialScheme,
    token: &str,
    optok: &VerifiedOpTok,
    audit: &mut Audit,
) -> Result<(), Denial> {
    let config = ctx.config;
    let mut bindings = Vec::new();
    if let Some(jkt) = &optok.jkt {
        bindings.push(format!("jkt:{jkt}"));
        audit.binding = Some(bindings.join(" "));
        let proofs: Vec<&str> = req.header_values("dpop").collect();
        let policy = ProofPolicy {
            algorithms: &config.dpop.algorithms,
            htu: &config.registry.realm,
            iat_window_seconds: config.dpop.iat_window_seconds,
            nonce: config.dpop.nonce.as_ref(),
        };
        dpop::verify_proof(
            &proofs, req.method, token, jkt, &policy, ctx.crypto, ctx.replay, ctx.now,
        )
        .map_err(|e| dpop_denial(config, &e, ctx.now))?;
    } else if scheme == CredentialScheme::DPoP {
        return Err(Denial::new(
            401,
            "dpop_unbound_token",
            "the DPoP scheme needs a DPoP-bound access token (cnf.jkt)",
        ));
    }
    if let Some(x5t) = &optok.x5t_s256 {
        bindings.push(format!("x5t#S256:{x5t}"));
        audit.binding = Some(bindings.join(" "));
        let presented = req
            .peer_certificate_sha256_hex
            .and_then(mtls::x5t_from_hex_digest);
        match presented {
            None => return Err(Denial::new(
                401,
                "mtls_no_certificate",
                "the access token is certificate-bound: present its client certificate over TLS",
            )),
            Some(t) if t == *x5t => {}
            Some(_) => {
                return Err(Denial::new(
                    401,
                    "mtls_mismatch",
                    "the client certificate is not the one the access token is bound to",
                ))
            }
        }
    }
    if bindings.is_empty() && config.authority.require_sender_constraint {
        return Err(Denial::new(
            401,
            "unbound_token",
            "the access token is not sender-constrained (DPoP or mTLS binding required)",
        ));
    }
    Ok(())
}
