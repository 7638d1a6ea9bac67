//! Every refusal the filter can give, in one place: its metric label, HTTP status, OAuth
//! error code (RFC 6750 / RFC 9449), Docker error code and a one-line description.
//!
//! [`Reason::ALL`] is the list the glue registers counters from at configure time (so an
//! alert sees a zero before the first refusal) and the one docs/CONFIGURATION.md's table is
//! checked against. The errors of the lower layers ([`JwtError`], [`DpopError`]) map here
//! and nowhere else.

use crate::sender::dpop::DpopError;
use crate::token::jws::JwtError;

macro_rules! reasons {
    ($($variant:ident = $label:literal, $status:literal, $oauth:expr, $doc:literal;)*) => {
        /// Why `/token` (or the guard, on the registry's route) refused a request.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $(
                #[doc = $doc]
                $variant,
            )*
        }

        impl Reason {
            /// Every reason, in documentation order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            /// The metric label (`registry_token_rejected_total{reason=…}`), also the
            /// problem `type` suffix and the audit record's `reason`.
            pub fn label(self) -> &'static str {
                match self { $(Reason::$variant => $label,)* }
            }

            /// The HTTP status of the refusal.
            pub fn status(self) -> u16 {
                match self { $(Reason::$variant => $status,)* }
            }

            /// The OAuth error code put in `WWW-Authenticate` (`None`: a bare challenge).
            pub fn oauth_error(self) -> Option<&'static str> {
                match self { $(Reason::$variant => $oauth,)* }
            }

            /// One line saying what happened, for docs and operators.
            pub fn description(self) -> &'static str {
                match self { $(Reason::$variant => $doc,)* }
            }
        }
    };
}

const INVALID_REQUEST: Option<&str> = Some("invalid_request");
const INVALID_TOKEN: Option<&str> = Some("invalid_token");
const INSUFFICIENT_SCOPE: Option<&str> = Some("insufficient_scope");
const INVALID_DPOP_PROOF: Option<&str> = Some("invalid_dpop_proof");
const INVALID_GRANT: Option<&str> = Some("invalid_grant");
const UNSUPPORTED_GRANT_TYPE: Option<&str> = Some("unsupported_grant_type");

reasons! {
    // The request itself.
    MethodNotAllowed = "method_not_allowed", 405, None,
        "The token endpoint was called with a method other than GET, HEAD or POST.";
    UnsupportedMediaType = "unsupported_media_type", 400, INVALID_REQUEST,
        "A `POST` whose `Content-Type` is not `application/x-www-form-urlencoded`.";
    BodyTooLarge = "body_too_large", 413, INVALID_REQUEST,
        "A `POST` body longer than 16 KiB.";
    MissingGrantParameter = "missing_grant_parameter", 400, INVALID_REQUEST,
        "A `POST` lacks `grant_type`, or the `password` or `refresh_token` its grant needs.";
    UnsupportedGrantType = "unsupported_grant_type", 400, UNSUPPORTED_GRANT_TYPE,
        "A `POST` whose `grant_type` is neither `password` nor `refresh_token`.";
    RefreshDisabled = "refresh_disabled", 400, UNSUPPORTED_GRANT_TYPE,
        "A refresh grant while `refreshTokens` is not configured.";
    MalformedRequest = "malformed_request", 400, INVALID_REQUEST,
        "The query string or form is not valid (bad percent-encoding, repeated or oversized parameters, a non-UTF-8 body).";
    MissingService = "missing_service", 400, INVALID_REQUEST,
        "The `service` parameter is missing.";
    MalformedScope = "malformed_scope", 400, INVALID_REQUEST,
        "A `scope` parameter does not follow the Docker scope grammar, or there are too many.";
    UnknownService = "unknown_service", 403, None,
        "The `service` is not in `registry.allowedServices`.";
    // Credentials.
    MissingCredentials = "missing_credentials", 401, None,
        "No `Authorization` header: the client is asked to authenticate.";
    DuplicateCredentials = "duplicate_credentials", 400, INVALID_REQUEST,
        "More than one `Authorization` header.";
    MalformedCredentials = "malformed_credentials", 401, INVALID_TOKEN,
        "The `Authorization` header has an unknown scheme, bad Basic encoding, no token, or an oversized token.";
    // The OpToken.
    KeysUnavailable = "keys_unavailable", 503, None,
        "The Authority's keys are not known yet (remote JWKS not fetched); the client should retry.";
    KeysWithdrawn = "keys_withdrawn", 503, None,
        "The Authority's last JWKS held no usable key: nothing is trusted until one that does is fetched.";
    KeysStale = "keys_stale", 503, None,
        "No JWKS fetch succeeded for `authority.jwksMaxStaleSeconds`: the last good keys were dropped.";
    MalformedToken = "malformed_token", 401, INVALID_TOKEN,
        "The OpToken is not a compact JWS of JSON objects, is a DPoP proof, or carries `crit`.";
    DisallowedAlg = "disallowed_alg", 401, INVALID_TOKEN,
        "The OpToken's `alg` is missing, `none`, HS*, or not in `authority.algorithms`.";
    UnknownKey = "unknown_key", 401, INVALID_TOKEN,
        "No Authority key has the OpToken's `kid` (a key refresh is triggered, rate-limited).";
    BadSignature = "bad_signature", 401, INVALID_TOKEN,
        "The OpToken's signature does not verify.";
    WrongIssuer = "wrong_issuer", 401, INVALID_TOKEN,
        "The OpToken's `iss` is not `authority.issuer` (a configuration without `issuers`).";
    UnknownIssuer = "unknown_issuer", 401, INVALID_TOKEN,
        "With `issuers` configured: the token's `iss` is missing or names no trusted issuer (`authority.issuer` or an `issuers[].issuer`, compared exactly).";
    WrongAudience = "wrong_audience", 401, INVALID_TOKEN,
        "The OpToken's `aud` holds none of `authority.audiences`.";
    Expired = "expired", 401, INVALID_TOKEN,
        "The OpToken has no `exp` or it is past (beyond the clock skew).";
    NotYetValid = "not_yet_valid", 401, INVALID_TOKEN,
        "The OpToken's `nbf` is in the future (beyond the clock skew).";
    IssuedInFuture = "issued_in_future", 401, INVALID_TOKEN,
        "The OpToken's `iat` is in the future (beyond the clock skew).";
    InsufficientScope = "insufficient_scope", 403, INSUFFICIENT_SCOPE,
        "The OpToken lacks a scope of `authority.requiredScopes`.";
    InvalidClaim = "invalid_claim", 401, INVALID_TOKEN,
        "An OpToken claim the decision relies on has the wrong type (`stellaops:license`, `stellaops:plan`, the tenant claim, `cnf`, `client_id`, a claim a trust policy reads), or `cnf` holds an unsupported confirmation method; or the matching trust policy's template reads a claim that is missing or holds a value templates refuse, or gives a tenant that is not one repository path component.";
    MissingSubject = "missing_subject", 401, INVALID_TOKEN,
        "The OpToken has no `sub`, or an empty one.";
    MissingTenant = "missing_tenant", 401, INVALID_TOKEN,
        "`authority.requireTenant` is on and the OpToken (or the refresh token) carries no tenant claim (`authority.tenantClaim`).";
    InvalidTenant = "invalid_tenant", 401, INVALID_TOKEN,
        "`authority.requireTenant` is on and the tenant is not one repository path component (`[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`, at most 255 bytes).";
    // The refresh token (refresh grant).
    InvalidRefreshToken = "invalid_refresh_token", 400, INVALID_GRANT,
        "The refresh token is malformed, altered, sealed by an unknown secret, or is not a refresh token (an OpToken).";
    RefreshTokenExpired = "refresh_token_expired", 400, INVALID_GRANT,
        "The refresh token is past its expiry (`refreshTokens.lifetimeSeconds`).";
    RefreshTokenRevoked = "refresh_token_revoked", 400, INVALID_GRANT,
        "The refresh token's id is in `revokedRefreshTokens` (inline or the remote list).";
    // The sender constraint.
    DpopMissing = "dpop_missing", 401, INVALID_DPOP_PROOF,
        "The OpToken is DPoP-bound (`cnf.jkt`) and no `DPoP` proof came with it.";
    DpopMultiple = "dpop_multiple", 401, INVALID_DPOP_PROOF,
        "More than one `DPoP` header, or one holding several values.";
    DpopMalformed = "dpop_malformed", 401, INVALID_DPOP_PROOF,
        "The DPoP proof is not a compact JWS of JSON objects.";
    DpopTyp = "dpop_typ", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `typ` is not `dpop+jwt`.";
    DpopAlg = "dpop_alg", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `alg` is missing, symmetric, `none` or not in `dpop.algorithms`.";
    DpopJwk = "dpop_jwk", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `jwk` is missing, holds private members, or does not fit the `alg`.";
    DpopSignature = "dpop_signature", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's signature does not verify with its `jwk`.";
    DpopClaims = "dpop_claims", 401, INVALID_DPOP_PROOF,
        "The DPoP proof lacks `jti`, `htm`, `htu` or `iat`, or one has the wrong type.";
    DpopHtm = "dpop_htm", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `htm` is not the request method.";
    DpopHtu = "dpop_htu", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `htu` is not the configured realm URL.";
    DpopIat = "dpop_iat", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `iat` is outside `dpop.iatWindowSeconds`.";
    DpopNonce = "dpop_nonce", 401, Some("use_dpop_nonce"),
        "Nonce mode: the proof has no fresh server nonce; the reply carries one in `DPoP-Nonce`.";
    DpopReplay = "dpop_replay", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `jti` was already used inside the window.";
    DpopReplayUnavailable = "dpop_replay_unavailable", 503, None,
        "The DPoP replay record could not take the proof (full or contended); the client should retry.";
    DpopAth = "dpop_ath", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's `ath` is missing or not the hash of the OpToken.";
    DpopJktMismatch = "dpop_jkt_mismatch", 401, INVALID_DPOP_PROOF,
        "The DPoP proof's key is not the one the OpToken is bound to (`cnf.jkt`).";
    DpopUnboundToken = "dpop_unbound_token", 401, INVALID_TOKEN,
        "The `DPoP` scheme was used with an OpToken that is not DPoP-bound.";
    MtlsNoCertificate = "mtls_no_certificate", 401, INVALID_TOKEN,
        "The OpToken is certificate-bound (`cnf.x5t#S256`) and the connection has no client certificate.";
    MtlsMismatch = "mtls_mismatch", 401, INVALID_TOKEN,
        "The client certificate is not the one the OpToken is bound to.";
    UnboundToken = "unbound_token", 401, INVALID_TOKEN,
        "`authority.requireSenderConstraint` is on and the OpToken has no binding.";
    // Policy.
    LicenseRevoked = "license_revoked", 403, INSUFFICIENT_SCOPE,
        "The OpToken's licence is revoked (inline `revokedLicenses` or the remote list).";
    SubjectRevoked = "subject_revoked", 403, INSUFFICIENT_SCOPE,
        "The caller's subject is in `revokedSubjects` (inline or the remote list).";
    TenantRevoked = "tenant_revoked", 403, INSUFFICIENT_SCOPE,
        "The caller's tenant is in `revokedTenants` (inline or the remote list).";
    RevocationUnavailable = "revocation_unavailable", 503, None,
        "The remote revocation list was not fetched yet since the gateway started and `revocation.onStale` is `refuse`; the client should retry.";
    RevocationStale = "revocation_stale", 503, None,
        "No remote revocation list was fetched and taken for `revocation.maxStaleSeconds` (since the last good one or, before the first, since the gateway started: unreachable, an error status, too large or malformed) and `revocation.onStale` is not `serve`: nothing is issued until one is.";
    MissingPlan = "missing_plan", 403, INSUFFICIENT_SCOPE,
        "The OpToken names no plan (`stellaops:plan`) and no `defaultPlan` is configured.";
    LedgerBacklogFull = "ledger_backlog_full", 503, None,
        "The issuance ledger's buffer is full and `ledger.onBacklogFull` is `refuse`: no token is issued unrecorded; the client should retry.";
    UnknownPlan = "unknown_plan", 403, INSUFFICIENT_SCOPE,
        "The plan the OpToken (or refresh token) names is not in the catalogue.";
    PlanDenied = "plan_denied", 403, INSUFFICIENT_SCOPE,
        "The plan grants none of the requested access.";
    NoTrustPolicy = "no_trust_policy", 403, INSUFFICIENT_SCOPE,
        "A valid token of an `issuers` entry matches none of its trust policies (`issuers[].policies`: claim conditions).";
    // The guard, on the registry's route (docs/GUARD.md).
    GuardInvalidPath = "guard_invalid_path", 400, None,
        "Guard: a path under `/v2/` the guard cannot read unambiguously (percent-encoding, `//`, `.` or `..` segments, a name, tag or digest outside distribution's grammar): refused rather than passed to a registry that might read it otherwise.";
    GuardInvalidToken = "guard_invalid_token", 401, INVALID_TOKEN,
        "Guard: the registry token is not one this gateway minted and still valid (signature with the `/jwks` keys, `alg`, `iss`, `aud` in `registry.allowedServices`, `exp`/`nbf`, its claims).";
    GuardLicenseRevoked = "guard_license_revoked", 401, INVALID_TOKEN,
        "Guard: a registry token issued before its licence was revoked (inline or the remote list); the client is sent back to the realm, which refuses it.";
    GuardSubjectRevoked = "guard_subject_revoked", 401, INVALID_TOKEN,
        "Guard: a registry token issued before its subject was revoked.";
    GuardTenantRevoked = "guard_tenant_revoked", 401, INVALID_TOKEN,
        "Guard: a registry token issued before its tenant was revoked.";
    GuardRefreshTokenRevoked = "guard_refresh_token_revoked", 401, INVALID_TOKEN,
        "Guard: a registry token minted from (or with) a refresh token since revoked.";
    GuardRevocationUnavailable = "guard_revocation_unavailable", 503, None,
        "Guard: the remote revocation list is not fetched or too old and `revocation.onStale` refuses: no registry request is served until one is.";
    ProtectedTag = "protected_tag", 403, None,
        "Guard: a push to a protected tag (`tags.protected`) by a rule without `tags.pushProtected`.";
    ImmutableTag = "immutable_tag", 403, None,
        "Guard: a push of another manifest to an existing immutable tag (`tags.immutable`), or a manifest delete where the rule names immutable tags (a delete would untag one).";
    DeleteRefused = "delete_refused", 403, None,
        "Guard: a manifest delete where the rule says `tags.delete: false`.";
    ImmutableCheckFailed = "immutable_check_failed", 503, None,
        "Guard: the registry could not say whether an immutable tag exists (its `HEAD` failed, timed out or answered neither 200 nor 404); the push is refused, the client should retry.";
    ManifestTooLarge = "manifest_too_large", 413, None,
        "Guard: a manifest pushed to an immutable tag is larger than 4 MiB (distribution's own limit).";
    CatalogTooLarge = "catalog_too_large", 502, None,
        "Guard: the registry's `_catalog` answer is larger than 512 KiB (ask for smaller pages with `n`).";
    CatalogUnreadable = "catalog_unreadable", 502, None,
        "Guard: the registry's `_catalog` answer is not the JSON the guard can filter: nothing unfiltered is passed on.";
    // Minting.
    InternalError = "internal_error", 500, None,
        "The filter could not draw random bits for the token id.";
    SigningFailed = "signing_failed", 500, None,
        "The registry token could not be signed (host or key failure).";
    ClockUnavailable = "clock_unavailable", 500, None,
        "The host clock could not be read: no time check can be made, so nothing is minted.";
}

impl Reason {
    /// The status and RFC 6749 §5.2 `error` of this refusal on `POST /token`: request
    /// faults are `invalid_request` (413 for an oversized body), every fault of the
    /// presented grant (OpToken, refresh token, binding, licence, subject, plan) is 400
    /// `invalid_grant` (a client such as containerd then falls back to `GET`), DPoP proof
    /// faults are 400 `invalid_dpop_proof` or `use_dpop_nonce` (RFC 9449 §5, §8), and
    /// server-side trouble keeps its 5xx.
    pub fn token_endpoint_error(self) -> (u16, &'static str) {
        match self {
            Reason::MethodNotAllowed => (405, "invalid_request"),
            Reason::BodyTooLarge => (413, "invalid_request"),
            Reason::MalformedScope | Reason::PlanDenied => (400, "invalid_scope"),
            Reason::UnsupportedGrantType | Reason::RefreshDisabled => {
                (400, "unsupported_grant_type")
            }
            Reason::MalformedRequest
            | Reason::MissingService
            | Reason::UnknownService
            | Reason::UnsupportedMediaType
            | Reason::MissingGrantParameter
            | Reason::MissingCredentials
            | Reason::DuplicateCredentials => (400, "invalid_request"),
            Reason::DpopNonce => (400, "use_dpop_nonce"),
            r if r.status() == 503 => (503, "temporarily_unavailable"),
            r if r.status() >= 500 => (r.status(), "server_error"),
            r if r.oauth_error() == INVALID_DPOP_PROOF => (400, "invalid_dpop_proof"),
            _ => (400, "invalid_grant"),
        }
    }

    /// The Docker `errors[].code` of the problem body.
    pub fn docker_code(self) -> &'static str {
        match self.status() {
            400 | 413 => "INVALID_REQUEST",
            401 => "UNAUTHORIZED",
            403 => "DENIED",
            405 => "UNSUPPORTED",
            503 => "UNAVAILABLE",
            _ => "UNKNOWN",
        }
    }

    /// The RFC 7807 `title` of the problem body.
    pub fn title(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            405 => "Method Not Allowed",
            502 => "Bad Gateway",
            413 => "Content Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        }
    }

    /// Whether the client is told to retry (`Retry-After`).
    pub fn retry_after(self) -> bool {
        self.status() == 503
    }

    /// Whether this is a refusal of the DPoP proof, answered with a `DPoP` challenge.
    pub fn is_dpop_proof(self) -> bool {
        self.oauth_error() == INVALID_DPOP_PROOF || self == Reason::DpopNonce
    }

    /// How an operator should treat this refusal (the split the Prometheus rules in
    /// `deploy/prometheus/` follow; docs/CONFIGURATION.md's table lists it).
    pub fn alert_class(self) -> AlertClass {
        match self {
            // Healthy clients cause these all day: the anonymous first request of every
            // client (docker, containerd, podman probe without credentials), OpTokens and
            // refresh tokens past their lifetime, and the DPoP nonce challenge.
            Reason::MissingCredentials
            | Reason::Expired
            | Reason::RefreshTokenExpired
            | Reason::DpopNonce => AlertClass::Noise,
            // Forgery, theft or replay, and the gateway unable to decide or mint.
            Reason::UnknownKey
            | Reason::BadSignature
            | Reason::DisallowedAlg
            | Reason::InvalidRefreshToken
            | Reason::DpopSignature
            | Reason::DpopReplay
            | Reason::DpopJktMismatch
            | Reason::MtlsMismatch
            | Reason::KeysUnavailable
            | Reason::KeysWithdrawn
            | Reason::KeysStale
            | Reason::DpopReplayUnavailable
            | Reason::RevocationUnavailable
            | Reason::RevocationStale
            | Reason::InternalError
            | Reason::SigningFailed
            | Reason::ClockUnavailable
            | Reason::LedgerBacklogFull
            | Reason::GuardRevocationUnavailable
            | Reason::ImmutableCheckFailed => AlertClass::Alarm,
            _ => AlertClass::Warning,
        }
    }

    /// The reason with this label.
    pub fn from_label(label: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.label() == label)
    }
}

/// How an operator should treat a refusal: [`Reason::alert_class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertClass {
    /// Expected from healthy clients (counted, never alerted on by itself).
    Noise,
    /// A client or configuration fault worth a look (warning per reason).
    Warning,
    /// An attack or the gateway failing (critical per reason).
    Alarm,
}

impl AlertClass {
    /// `noise`, `warning` or `alarm`.
    pub fn label(self) -> &'static str {
        match self {
            AlertClass::Noise => "noise",
            AlertClass::Warning => "warning",
            AlertClass::Alarm => "alarm",
        }
    }
}

impl From<&JwtError> for Reason {
    fn from(e: &JwtError) -> Reason {
        match e {
            JwtError::Malformed(_) => Reason::MalformedToken,
            JwtError::DisallowedAlg(_) => Reason::DisallowedAlg,
            JwtError::UnknownKey => Reason::UnknownKey,
            JwtError::BadSignature => Reason::BadSignature,
            JwtError::WrongIssuer => Reason::WrongIssuer,
            JwtError::WrongAudience => Reason::WrongAudience,
            JwtError::Expired => Reason::Expired,
            JwtError::NotYetValid => Reason::NotYetValid,
            JwtError::IssuedInFuture => Reason::IssuedInFuture,
            JwtError::InsufficientScope(_) => Reason::InsufficientScope,
            JwtError::InvalidClaim(_) => Reason::InvalidClaim,
            JwtError::MissingSubject => Reason::MissingSubject,
        }
    }
}

impl From<&DpopError> for Reason {
    fn from(e: &DpopError) -> Reason {
        match e {
            DpopError::Missing => Reason::DpopMissing,
            DpopError::Multiple => Reason::DpopMultiple,
            DpopError::Malformed(_) => Reason::DpopMalformed,
            DpopError::Typ => Reason::DpopTyp,
            DpopError::Alg => Reason::DpopAlg,
            DpopError::Jwk(_) => Reason::DpopJwk,
            DpopError::Signature => Reason::DpopSignature,
            DpopError::Claims(_) => Reason::DpopClaims,
            DpopError::Htm => Reason::DpopHtm,
            DpopError::Htu => Reason::DpopHtu,
            DpopError::Iat => Reason::DpopIat,
            DpopError::Nonce => Reason::DpopNonce,
            DpopError::Replay => Reason::DpopReplay,
            DpopError::ReplayUnavailable => Reason::DpopReplayUnavailable,
            DpopError::Ath => Reason::DpopAth,
            DpopError::JktMismatch => Reason::DpopJktMismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_unique_snake_case_and_round_trip() {
        let labels: HashSet<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert!(
                r.label()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{r:?}"
            );
            assert_eq!(Reason::from_label(r.label()), Some(*r));
            assert!(!r.description().is_empty());
            assert!(matches!(
                r.status(),
                400 | 401 | 403 | 405 | 413 | 500 | 502 | 503
            ));
            let (status, error) = r.token_endpoint_error();
            assert!(matches!(status, 400 | 405 | 413 | 500 | 502 | 503), "{r:?}");
            assert!(
                [
                    "invalid_request",
                    "invalid_grant",
                    "invalid_scope",
                    "unsupported_grant_type",
                    "invalid_dpop_proof",
                    "use_dpop_nonce",
                    "temporarily_unavailable",
                    "server_error"
                ]
                .contains(&error),
                "{r:?}"
            );
        }
        assert_eq!(Reason::from_label("issued"), None);
    }

    #[test]
    fn every_dpop_error_has_its_own_dpop_reason() {
        let all = [
            DpopError::Missing,
            DpopError::Multiple,
            DpopError::Malformed(String::new()),
            DpopError::Typ,
            DpopError::Alg,
            DpopError::Jwk(String::new()),
            DpopError::Signature,
            DpopError::Claims(String::new()),
            DpopError::Htm,
            DpopError::Htu,
            DpopError::Iat,
            DpopError::Nonce,
            DpopError::Replay,
            DpopError::ReplayUnavailable,
            DpopError::Ath,
            DpopError::JktMismatch,
        ];
        let reasons: HashSet<&str> = all.iter().map(|e| Reason::from(e).label()).collect();
        assert_eq!(reasons.len(), all.len());
        assert!(reasons.iter().all(|r| r.starts_with("dpop_")));
        assert!(all.iter().all(|e| !e.to_string().is_empty()));
    }

    #[test]
    fn every_jwt_error_has_its_own_reason() {
        let all = [
            JwtError::Malformed(String::new()),
            JwtError::DisallowedAlg(String::new()),
            JwtError::UnknownKey,
            JwtError::BadSignature,
            JwtError::WrongIssuer,
            JwtError::WrongAudience,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::IssuedInFuture,
            JwtError::InsufficientScope(String::new()),
            JwtError::InvalidClaim(String::new()),
            JwtError::MissingSubject,
        ];
        let reasons: HashSet<Reason> = all.iter().map(Reason::from).collect();
        assert_eq!(reasons.len(), all.len());
    }
}
