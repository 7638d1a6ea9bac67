//! The registry token on the registry's route: the JWT this realm minted, read from
//! `Authorization: Bearer`, checked with the gateway's own signing public keys (the current
//! one and `signing.publishedKeys`), its algorithm, `iss`, `aud` (the service) and times.
//! Only a token that passes is read for the guard's rules; the guard refuses anything else
//! with the registry's own 401 (the guard never widens what the registry decides, it only
//! takes away).

use serde_json::Value;

use crate::token::access::{Scope, TagPolicy};
use crate::token::alg::Alg;
use crate::token::crypto::Crypto;
use crate::token::jws::{verify_signature, Jws, JwtError};
use crate::token::keys::KeySet;

/// What the guard checks a registry token against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `iss`: the realm's `signing.issuer`.
    pub issuer: &'a str,
    /// `aud`: one of the registry's service names (`registry.allowedServices`; empty:
    /// any).
    pub services: &'a [String],
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
    /// `aud`: the service it was minted for.
    pub service: String,
    /// `access`, each entry with its `tags`.
    pub access: Vec<Entry>,
    /// `plan`: the plan(s) applied, several joined by one space.
    pub plan: Option<String>,
    /// `tenant`, when the caller had one.
    pub tenant: Option<String>,
    /// `licenses` (`stellaops:license` of the caller), when minted with any.
    pub licenses: Vec<String>,
    /// `rtid`: the refresh token it descends from, when it does.
    pub refresh_token_id: Option<String>,
}

/// One `access` entry and its tag rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Type, name, actions.
    pub scope: Scope,
    /// `tags`, when the rule that granted it has them.
    pub tags: Option<TagPolicy>,
}

impl RegistryToken {
    /// The entry for repository `name`, if the token has one.
    pub fn repository(&self, name: &str) -> Option<&Entry> {
        self.access
            .iter()
            .find(|e| e.scope.resource_type == "repository" && e.scope.name == name)
    }

    /// The plans it names (none without `plan`).
    pub fn plans(&self) -> impl Iterator<Item = &str> {
        self.plan
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|p| !p.is_empty())
    }

    /// Rough bytes held (for the memo's bound).
    pub fn weight(&self) -> usize {
        let strs = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        192 + self.subject.len()
            + self.jti.len()
            + self.service.len()
            + self.plan.as_deref().map_or(0, str::len)
            + self.tenant.as_deref().map_or(0, str::len)
            + self.refresh_token_id.as_deref().map_or(0, str::len)
            + strs(&self.licenses)
            + self
                .access
                .iter()
                .map(|e| {
                    96 + e.scope.name.len()
                        + strs(&e.scope.actions)
                        + e.tags
                            .as_ref()
                            .map_or(0, |t| 64 + strs(&t.protected) + strs(&t.immutable))
                })
                .sum::<usize>()
    }
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

fn strings(v: &Value, bad: &dyn Fn() -> JwtError) -> Result<Vec<String>, JwtError> {
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|a| a.as_str().map(str::to_owned).ok_or_else(bad))
        .collect()
}

fn tags(v: &Value) -> Result<TagPolicy, JwtError> {
    let bad = || JwtError::InvalidClaim("access".into());
    let flag = |k: &str, default: bool| match v.get(k) {
        None => Ok(default),
        Some(b) => b.as_bool().ok_or_else(bad),
    };
    let globs = |k: &str| v.get(k).map_or(Ok(Vec::new()), |g| strings(g, &bad));
    Ok(TagPolicy {
        protected: globs("protected")?,
        push_protected: flag("pushProtected", false)?,
        immutable: globs("immutable")?,
        delete: flag("delete", true)?,
    })
}

fn access(v: Option<&Value>) -> Result<Vec<Entry>, JwtError> {
    let bad = || JwtError::InvalidClaim("access".into());
    let Some(Value::Array(entries)) = v else {
        return Err(bad());
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
            Ok(Entry {
                scope: Scope {
                    resource_type: s("type").ok_or_else(bad)?,
                    name: s("name").ok_or_else(bad)?,
                    actions: strings(e.get("actions").ok_or_else(bad)?, &bad)?,
                },
                tags: e.get("tags").map(tags).transpose()?,
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
    let service = match jws.claim_str("aud") {
        Some(aud) if expect.services.is_empty() || expect.services.iter().any(|s| s == aud) => {
            aud.to_owned()
        }
        _ => return Err(JwtError::WrongAudience),
    };
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
        service,
        access: access(c.get("access"))?,
        plan: opt_str(c, "plan")?,
        tenant: opt_str(c, "tenant")?,
        licenses: match c.get("licenses") {
            None => Vec::new(),
            Some(v) => strings(v, &|| JwtError::InvalidClaim("licenses".into()))?,
        },
        refresh_token_id: opt_str(c, "rtid")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::token::crypto::rust::RustCrypto;
    use crate::token::keys::testkeys;
    use crate::token::mint::{mint, Extra, MintRequest};

    const ISS: &str = "https://realm.example";
    const SVC: &str = "registry.example";

    fn expect() -> Expect<'static> {
        Expect {
            issuer: ISS,
            services: &[],
            algorithms: &[Alg::Rs256, Alg::Es256],
            skew: 30,
        }
    }

    fn minted(now: u64, tenant: Option<&str>) -> (String, KeySet) {
        let key = testkeys::rsa_private();
        let licenses = vec!["L-1".to_string()];
        let tags = TagPolicy {
            protected: vec!["latest".into()],
            push_protected: false,
            immutable: vec!["v*".into()],
            delete: false,
        };
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
            extra: Extra {
                plan: Some("community"),
                licenses: &licenses,
                rtid: Some("rt-9"),
                tags: &[Some(&tags)],
            },
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
        assert_eq!(
            t.access[0].scope.to_string(),
            "repository:acme/app:pull,push"
        );
        let tags = t
            .repository("acme/app")
            .and_then(|e| e.tags.clone())
            .unwrap();
        assert_eq!(
            (tags.protected, tags.immutable),
            (vec!["latest".to_string()], vec!["v*".to_string()])
        );
        assert!(!tags.push_protected && !tags.delete);
        assert_eq!(t.licenses, vec!["L-1".to_string()]);
        assert_eq!(t.refresh_token_id.as_deref(), Some("rt-9"));
        assert_eq!(t.plans().collect::<Vec<_>>(), ["community"]);
        assert_eq!(t.service, SVC);
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
        let services = vec!["other".to_string()];
        let other_svc = Expect {
            services: &services,
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
