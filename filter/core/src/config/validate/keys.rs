//! Validation of the two sections that carry keys: `authority` (the OpToken issuer, its
//! audiences and scopes, its keys inline or fetched, algorithms, clock skew, the tenant
//! claim) and `signing` (the minting key from PEM or PFX, its certificate chain, `kid`,
//! lifetimes, the published keys). Every error names its field.

use super::{non_empty_list, parse_algorithms};
use crate::config::env::short;
use crate::config::*;
use crate::token::alg::Alg;
use crate::token::keys::pfx;
use crate::token::keys::{certificate_spki, pem_certificates, KeySet, PrivateKey, PublicKey};
use crate::wire::url::HttpUrl;

pub(super) fn validate_authority(a: RawAuthority) -> Result<AuthorityConfig, ConfigError> {
    if a.issuer.trim().is_empty() {
        return Err(ConfigError::new("authority.issuer", "must not be empty"));
    }
    if a.audiences.is_empty() {
        return Err(ConfigError::new(
            "authority.audiences",
            "must list at least one audience",
        ));
    }
    non_empty_list("authority.audiences", &a.audiences)?;
    let required_scopes = a
        .required_scopes
        .unwrap_or_else(|| vec![DEFAULT_REQUIRED_SCOPE.to_string()]);
    non_empty_list("authority.requiredScopes", &required_scopes)?;
    for (i, s) in required_scopes.iter().enumerate() {
        if s.contains(' ') {
            return Err(ConfigError::new(
                format!("authority.requiredScopes[{i}]"),
                "a scope must not contain spaces",
            ));
        }
    }
    let clock_skew_seconds = a.clock_skew_seconds.unwrap_or(60);
    if clock_skew_seconds > 300 {
        return Err(ConfigError::new(
            "authority.clockSkewSeconds",
            format!("{clock_skew_seconds} is above the maximum of 300"),
        ));
    }
    let refresh_seconds = a.jwks_refresh_seconds.unwrap_or(300);
    if !(30..=86_400).contains(&refresh_seconds) {
        return Err(ConfigError::new(
            "authority.jwksRefreshSeconds",
            format!("{refresh_seconds} is outside 30..=86400"),
        ));
    }
    let max_stale_seconds = a.jwks_max_stale_seconds.unwrap_or(86_400);
    if !(refresh_seconds..=2_592_000).contains(&max_stale_seconds) {
        return Err(ConfigError::new(
            "authority.jwksMaxStaleSeconds",
            format!(
                "{max_stale_seconds} is outside jwksRefreshSeconds ({refresh_seconds})..=2592000"
            ),
        ));
    }
    let keys = match (a.jwks, a.metadata_url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "authority.jwks",
                "set either jwks or metadataUrl, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "authority.jwks",
                "one of jwks (inline keys) or metadataUrl (with cluster) is required",
            ))
        }
        (Some(jwks), None) => {
            if a.cluster.is_some() {
                return Err(ConfigError::new(
                    "authority.cluster",
                    "only used with metadataUrl",
                ));
            }
            let set = KeySet::from_jwks(&jwks)
                .map_err(|e| ConfigError::new("authority.jwks", e.to_string()))?;
            if set.is_empty() {
                return Err(ConfigError::new(
                    "authority.jwks",
                    "holds no usable signing key",
                ));
            }
            KeySource::Inline(set)
        }
        (None, Some(url)) => {
            let metadata_url = HttpUrl::parse(&url, false)
                .map_err(|e| ConfigError::new("authority.metadataUrl", e))?;
            let cluster = a.cluster.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                ConfigError::new(
                    "authority.cluster",
                    "required with metadataUrl: the Envoy cluster that reaches the Authority",
                )
            })?;
            KeySource::Remote {
                metadata_url,
                cluster,
                refresh_seconds,
                max_stale_seconds,
            }
        }
    };
    let algorithms = parse_algorithms("authority.algorithms", a.algorithms)?;
    let tenant_claim = a
        .tenant_claim
        .unwrap_or_else(|| DEFAULT_TENANT_CLAIM.to_string());
    if tenant_claim.trim().is_empty() || tenant_claim.trim() != tenant_claim {
        return Err(ConfigError::new(
            "authority.tenantClaim",
            "must be a non-empty claim name without surrounding spaces",
        ));
    }
    if [
        "sub", "iss", "aud", "exp", "nbf", "iat", "jti", "cnf", "scope", "scp",
    ]
    .contains(&tenant_claim.as_str())
    {
        return Err(ConfigError::new(
            "authority.tenantClaim",
            format!("{tenant_claim:?} is a registered claim with its own meaning; name the tenant claim (e.g. stellaops:tenant)"),
        ));
    }
    Ok(AuthorityConfig {
        issuer: a.issuer,
        audiences: a.audiences,
        required_scopes,
        keys,
        clock_skew_seconds,
        require_sender_constraint: a.require_sender_constraint.unwrap_or(true),
        algorithms,
        tenant_claim,
        require_tenant: a.require_tenant.unwrap_or(false),
    })
}

/// A certificate chain (leaf first) as `x5c`, after checking the leaf holds `key`.
fn x5c_chain(field: &str, certs: &[Vec<u8>], key: &PrivateKey) -> Result<Vec<String>, ConfigError> {
    let leaf = certs
        .first()
        .ok_or_else(|| ConfigError::new(field, "holds no certificate"))?;
    let spki = certificate_spki(leaf).map_err(|e| ConfigError::new(field, e.to_string()))?;
    let leaf_key =
        PublicKey::from_spki_der(&spki).map_err(|e| ConfigError::new(field, e.to_string()))?;
    if !leaf_key.same_key(key.public()) {
        return Err(ConfigError::new(
            field,
            "the first (leaf) certificate does not hold the signing key's public key",
        ));
    }
    Ok(certs
        .iter()
        .map(|c| crate::wire::b64::std_encode(c))
        .collect())
}

pub(super) fn validate_signing(s: RawSigning) -> Result<SigningConfig, ConfigError> {
    let issuer = s
        .issuer
        .unwrap_or_else(|| "registry-token-service".to_string());
    if issuer.trim().is_empty() {
        return Err(ConfigError::new("signing.issuer", "must not be empty"));
    }
    let pem = s.key_pem.filter(|p| !p.trim().is_empty());
    let pfx = s.key_pfx.filter(|p| !p.trim().is_empty());
    let (key, pfx_chain) = match (pem, pfx) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "signing.keyPfx",
                "set either keyPem or keyPfx, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "signing.keyPem",
                format!(
                    "required: a PEM private key, or a PKCS#12 file in keyPfx (or set {} / {})",
                    env_name("signing.keyPem"),
                    env_name("signing.keyPfx")
                ),
            ))
        }
        (Some(pem), None) => (
            PrivateKey::from_pem(&pem)
                .map_err(|e| ConfigError::new("signing.keyPem", e.to_string()))?,
            Vec::new(),
        ),
        (None, Some(b64)) => {
            let bytes = crate::wire::b64::std_decode(b64.trim()).map_err(|_| {
                ConfigError::new("signing.keyPfx", "is not standard base64 of a PKCS#12 file")
            })?;
            let password = s.key_pfx_password.as_deref().unwrap_or("");
            // The error names the field and the kind of failure, never the password.
            let pfx = pfx::decode(&bytes, password).map_err(|e| {
                let field = if e == pfx::PfxError::WrongPassword {
                    "signing.keyPfxPassword"
                } else {
                    "signing.keyPfx"
                };
                ConfigError::new(field, e.to_string())
            })?;
            let key = PrivateKey::from_pkcs8_der(&pfx.private_key_pkcs8_der)
                .map_err(|e| ConfigError::new("signing.keyPfx", e.to_string()))?;
            (key, pfx.certificates_der)
        }
    };
    let algorithm = s.algorithm.unwrap_or_else(|| "RS256".to_string());
    let alg = match algorithm.as_str() {
        "RS256" => Alg::Rs256,
        "ES256" => Alg::Es256,
        other => {
            return Err(ConfigError::new(
                "signing.algorithm",
                format!("{:?} is not supported (RS256 or ES256)", short(other)),
            ))
        }
    };
    if key.alg() != alg {
        return Err(ConfigError::new(
            "signing.algorithm",
            format!(
                "{} does not fit the signing key, which is a {} key",
                alg.name(),
                key.public().key_type_name()
            ),
        ));
    }
    let kid_format = match s.kid_format.as_deref().unwrap_or("thumbprint") {
        "thumbprint" => KidFormat::Thumbprint,
        "libtrust" => KidFormat::Libtrust,
        other => {
            return Err(ConfigError::new(
                "signing.kidFormat",
                format!("{:?} is not thumbprint or libtrust", short(other)),
            ))
        }
    };
    let kid = match s.key_id {
        Some(kid) if kid.trim().is_empty() => {
            return Err(ConfigError::new(
                "signing.keyId",
                "must not be empty when set",
            ))
        }
        Some(kid) => kid,
        None => match kid_format {
            KidFormat::Thumbprint => key.public().thumbprint().to_string(),
            KidFormat::Libtrust => key.public().libtrust_kid(),
        },
    };
    // The x5c chain: certificateChainPem when given, else the certificates of the PFX.
    let x5c = match s.certificate_chain_pem.filter(|p| !p.trim().is_empty()) {
        Some(pem) => {
            let certs = pem_certificates(&pem)
                .map_err(|e| ConfigError::new("signing.certificateChainPem", e.to_string()))?;
            Some(x5c_chain("signing.certificateChainPem", &certs, &key)?)
        }
        None if !pfx_chain.is_empty() => Some(x5c_chain("signing.keyPfx", &pfx_chain, &key)?),
        None => None,
    };
    let lifetime_seconds = s.lifetime_seconds.unwrap_or(DEFAULT_LIFETIME_SECONDS);
    if !(MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&lifetime_seconds) {
        return Err(ConfigError::new(
            "signing.lifetimeSeconds",
            format!(
                "{lifetime_seconds} is outside {MIN_LIFETIME_SECONDS}..={MAX_LIFETIME_SECONDS}"
            ),
        ));
    }
    let reuse_seconds = s.reuse_seconds.unwrap_or(0);
    if reuse_seconds > lifetime_seconds / 2 {
        return Err(ConfigError::new(
            "signing.reuseSeconds",
            format!(
                "{reuse_seconds} is above half the lifetime ({})",
                lifetime_seconds / 2
            ),
        ));
    }
    let mut published = vec![key.public().clone().with_kid(kid.clone())];
    for (i, p) in s.published_keys.iter().enumerate() {
        let field = format!("signing.publishedKeys[{i}]");
        let public = PublicKey::from_pem(&p.pem)
            .map_err(|e| ConfigError::new(format!("{field}.pem"), e.to_string()))?;
        let pkid = match &p.key_id {
            Some(k) if k.trim().is_empty() => {
                return Err(ConfigError::new(
                    format!("{field}.keyId"),
                    "must not be empty when set",
                ))
            }
            Some(k) => k.clone(),
            None => match kid_format {
                KidFormat::Thumbprint => public.thumbprint().to_string(),
                KidFormat::Libtrust => public.libtrust_kid(),
            },
        };
        if published.iter().any(|k| k.kid() == Some(pkid.as_str())) {
            return Err(ConfigError::new(
                format!("{field}.keyId"),
                format!("kid {pkid:?} is already used by another key"),
            ));
        }
        published.push(public.with_kid(pkid));
    }
    let jwks = serde_json::json!({
        "keys": published.iter().map(PublicKey::to_jwk).collect::<Vec<_>>()
    });
    Ok(SigningConfig {
        issuer,
        key,
        kid,
        x5c,
        lifetime_seconds,
        reuse_seconds,
        jwks,
    })
}
