//! The registry token on the registry's route: the JWT this realm minted, read from
//! `Authorization: Bearer`, checked with the gateway's own signing public keys (the current
//! one and `signing.publishedKeys`), its algorithm, `iss`, `aud` (the service) and times.
//! Only a token that passes is read for the guard's rules; anything else passes to the
//! registry untouched, which answers its own 401 with the realm (the guard never widens
//! what the registry decides, it only takes away).

use serde_json::Value;

use crate::token::access::Scope;
use crate::token::alg::Alg;
use crate::token::crypto::Crypto;
use crate::token::jws::{verify_signature, Jws, JwtError};
use crate::token::keys::KeySet;

/// What the guard checks a registry token against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `iss`: the realm's `signing.issuer`.
    pub issuer: &'a str,
    /// `aud`: the registry's service name.
    pub service: &'a str,
    /// The algorithms the realm signs with.
    pub algorithms: &'a [Alg],
    /// Leeway on `exp` and `nbf`, seconds.
    pub skew: u64,
}

/// A registry token the realm minted, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryToken {
    /// `sub`.
    pub subject: String,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub exp: u64,
    /// `access`.
    pub access: Vec<Scope>,
    /// `tenant`, when the caller had one.
    pub tenant: Option<String>,
    /// `license` (`stellaops:license` of the caller), when minted with it.
    pub license: Option<String>,
    /// `rtid`: the refresh token it was minted from, when it was.
    pub refresh_token_id: Option<String>,
}

/// The bearer token of an `Authorization` value (`Bearer <token>`, scheme any case).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn opt_str(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaim(name.into())),
    }
}

fn access(v: Option<&Value>) -> Result<Vec<Scope>, JwtError> {
    let bad = || JwtError::InvalidClaim("access".into());
    let Some(Value::Array(entries)) = v else {
        return Err(bad());
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
            let actions = e
                .get("actions")
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|a| a.as_str().map(str::to_owned).ok_or_else(bad))
                .collect::<Result<Vec<String>, JwtError>>()?;
            Ok(Scope {
                resource_type: s("type").ok_or_else(bad)?,
                name: s("name").ok_or_else(bad)?,
                actions,
            })
        })
        .collect()
}

/// Verifies `token` as a registry token this realm minted, at `now`.
pub fn verify(
    token: &str,
    expect: &Expect<'_>,
    keys: &KeySet,
    crypto: &dyn Crypto,
    now: u64,
) -> Result<RegistryToken, JwtError> {
    let jws = Jws::parse(token)?;
    if jws.header.contains_key("crit") {
        return Err(JwtError::Malformed("crit is not supported".into()));
    }
    let alg = jws.alg(expect.algorithms)?;
    verify_signature(&jws, alg, keys, crypto)?;
    let c = &jws.claims;
    if jws.claim_str("iss") != Some(expect.issuer) {
        return Err(JwtError::WrongIssuer);
    }
    if jws.claim_str("aud") != Some(expect.service) {
        return Err(JwtError::WrongAudience);
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(JwtError::Expired)?;
    if now > exp.saturating_add(expect.skew) {
        return Err(JwtError::Expired);
    }
    match c.get("nbf") {
        None => {}
        Some(v) => match v.as_u64() {
            Some(nbf) if nbf <= now.saturating_add(expect.skew) => {}
            Some(_) => return Err(JwtError::NotYetValid),
            None => return Err(JwtError::InvalidClaim("nbf".into())),
        },
    }
    let subject = opt_str(c, "sub")?.ok_or(JwtError::MissingSubject)?;
    let jti = opt_str(c, "jti")?.ok_or_else(|| JwtError::InvalidClaim("jti".into()))?;
    Ok(RegistryToken {
        subject,
        jti,
        exp,
        access: access(c.get("access"))?,
        tenant: opt_str(c, "tenant")?,
        license: opt_str(c, "license")?,
        refresh_token_id: opt_str(c, "rtid")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::token::crypto::rust::RustCrypto;
    use crate::token::keys::testkeys;
    use crate::token::mint::{mint, MintRequest};

    const ISS: &str = "https://realm.example";
    const SVC: &str = "registry.example";

    fn expect() -> Expect<'static> {
        Expect {
            issuer: ISS,
            service: SVC,
            algorithms: &[Alg::Rs256, Alg::Es256],
            skew: 30,
        }
    }

    fn minted(now: u64, tenant: Option<&str>) -> (String, KeySet) {
        let key = testkeys::rsa_private();
        let access = vec![Scope {
            resource_type: "repository".into(),
            name: "acme/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }];
        let req = MintRequest {
            issuer: ISS,
            subject: "alice",
            audience: SVC,
            access: &access,
            now,
            lifetime_seconds: 300,
            kid: "k1",
            x5c: None,
            jti: "j-1",
            tenant,
        };
        let token = mint(&req, key, &RustCrypto).unwrap();
        let public = KeySet::from_keys(vec![key.public().clone().with_kid("k1".into())]);
        (token, public)
    }

    #[test]
    fn a_minted_token_verifies_with_what_the_guard_needs() {
        let (token, keys) = minted(1_000, Some("acme"));
        let t = verify(&token, &expect(), &keys, &RustCrypto, 1_100).unwrap();
        assert_eq!(t.subject, "alice");
        assert_eq!(t.jti, "j-1");
        assert_eq!(t.exp, 1_300);
        assert_eq!(t.tenant.as_deref(), Some("acme"));
        assert_eq!(t.access[0].to_string(), "repository:acme/app:pull,push");
        assert_eq!((t.license, t.refresh_token_id), (None, None));
        assert_eq!(bearer(&format!("Bearer {token}")), Some(token.as_str()));
        assert_eq!(bearer(&format!("bearer  {token}")), Some(token.as_str()));
    }

    #[test]
    fn anything_else_is_refused() {
        let (token, keys) = minted(1_000, None);
        let e =
            |t: &str, x: &Expect<'_>, now: u64| verify(t, x, &keys, &RustCrypto, now).unwrap_err();
        assert_eq!(e(&token, &expect(), 1_331), JwtError::Expired);
        assert_eq!(e(&token, &expect(), 969), JwtError::NotYetValid);
        let other_iss = Expect {
            issuer: "https://other",
            ..expect()
        };
        assert_eq!(e(&token, &other_iss, 1_100), JwtError::WrongIssuer);
        let other_svc = Expect {
            service: "other",
            ..expect()
        };
        assert_eq!(e(&token, &other_svc, 1_100), JwtError::WrongAudience);
        let es_only = Expect {
            algorithms: &[Alg::Es256],
            ..expect()
        };
        assert!(matches!(
            e(&token, &es_only, 1_100),
            JwtError::DisallowedAlg(_)
        ));
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            e(&tampered, &expect(), 1_100),
            JwtError::BadSignature | JwtError::Malformed(_)
        ));
        let (theirs, _) = minted(1_000, None);
        let stranger =
            KeySet::from_keys(vec![testkeys::unrelated_rsa_public().with_kid("k1".into())]);
        assert_eq!(
            verify(&theirs, &expect(), &stranger, &RustCrypto, 1_100).unwrap_err(),
            JwtError::BadSignature,
            "the same kid under another key never verifies"
        );
        let none = KeySet::from_keys(vec![]);
        assert_eq!(
            verify(&theirs, &expect(), &none, &RustCrypto, 1_100).unwrap_err(),
            JwtError::UnknownKey
        );
        assert!(matches!(
            e("a.b.c", &expect(), 1_100),
            JwtError::Malformed(_)
        ));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
    }
}
