//! Registry token minting: the header (`alg`, `typ`, `kid`, `x5c`) and the claims registry
//! 2.8 and 3.x check (`iss`, `sub`, `aud` as a string, `exp`, `nbf`, `iat`, `jti`,
//! `access`) and the caller's `tenant` when it has a valid one, signed by the configured key through [`Crypto`].
//! The [`Extra`] claims (`plan`, `licenses`, `rtid`, each entry's `tags`) are for the
//! guard on the registry's route (docs/GUARD.md); the registry ignores them.

use crate::token::access::{Scope, TagPolicy};
use crate::token::crypto::Crypto;
use crate::token::keys::PrivateKey;
use crate::wire::{b64, json};

/// Everything a minted registry token says.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `aud` (the `service`), a string as registry 2.8 requires.
    pub audience: &'a str,
    /// `access` claim entries.
    pub access: &'a [Scope],
    /// `iat` and `nbf`.
    pub now: u64,
    /// `exp - iat`.
    pub lifetime_seconds: u64,
    /// `kid` header.
    pub kid: &'a str,
    /// `x5c` header.
    pub x5c: Option<&'a [String]>,
    /// `jti`: 128 random bits, base64url.
    pub jti: &'a str,
    /// `tenant` claim, only when set (a valid tenant of the caller).
    pub tenant: Option<&'a str>,
    /// What the guard reads besides the standard claims.
    pub extra: Extra<'a>,
}

/// The claims the guard reads on the registry's route: revocation that reaches tokens
/// already issued (`licenses`, `rtid`, with `sub` and `tenant`), the filtered catalogue
/// (`plan`), the tag rules (`tags` in an `access` entry).
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra<'a> {
    /// `plan`: the plan(s) applied, several joined by one space.
    pub plan: Option<&'a str>,
    /// `licenses`: the caller's `stellaops:license` values (written only when any).
    pub licenses: &'a [String],
    /// `rtid`: the refresh token this token descends from (presented or issued with it).
    pub rtid: Option<&'a str>,
    /// `tags` of each `access` entry, by index (shorter than `access`, or `None`: no tags).
    pub tags: &'a [Option<&'a TagPolicy>],
}

/// Signs a registry token. The header carries `alg`, `typ`, `kid` and, when set, `x5c`.
///
/// Header and claims are written straight to JSON ([`crate::wire::json`]) with the bytes
/// `serde_json` would write for the same objects (keys sorted), without a `Value` tree:
/// this runs once per request.
pub fn mint(
    req: &MintRequest<'_>,
    key: &PrivateKey,
    crypto: &dyn Crypto,
) -> Result<String, crate::token::crypto::CryptoError> {
    let header_json = header_json(req, key);
    let claims_json = claims_json(req);
    let mut token = String::with_capacity(
        (header_json.len() + claims_json.len()) * 4 / 3 + key.signature_len() * 4 / 3 + 8,
    );
    token.push_str(&b64::url_encode(header_json.as_bytes()));
    token.push('.');
    token.push_str(&b64::url_encode(claims_json.as_bytes()));
    let signature = crypto.sign(key, token.as_bytes())?;
    token.push('.');
    token.push_str(&b64::url_encode(&signature));
    Ok(token)
}

/// `{"alg","kid","typ"[,"x5c"]}`, keys sorted.
fn header_json(req: &MintRequest<'_>, key: &PrivateKey) -> String {
    let mut out = String::with_capacity(64 + req.kid.len());
    let mut h = json::Object::begin(&mut out);
    h.str("alg", key.alg().name())
        .str("kid", req.kid)
        .str("typ", "JWT");
    if let Some(chain) = req.x5c {
        h.strs("x5c", chain.iter().map(String::as_str));
    }
    h.end();
    out
}

/// `{"access","aud","exp","iat","iss","jti"[,"licenses"],"nbf"[,"plan"][,"rtid"],"sub"[,"tenant"]}`,
/// keys sorted; each `access` entry `{"actions","name"[,"tags"],"type"}`.
fn claims_json(req: &MintRequest<'_>) -> String {
    let mut out = String::with_capacity(256);
    let mut c = json::Object::begin(&mut out);
    let access = c.key("access");
    access.push('[');
    for (i, scope) in req.access.iter().enumerate() {
        if i > 0 {
            access.push(',');
        }
        let mut entry = json::Object::begin(access);
        entry
            .strs("actions", scope.actions.iter().map(String::as_str))
            .str("name", &scope.name);
        if let Some(Some(tags)) = req.extra.tags.get(i) {
            let mut t = json::Object::begin(entry.key("tags"));
            t.bool("delete", tags.delete)
                .strs("immutable", tags.immutable.iter().map(String::as_str))
                .strs("protected", tags.protected.iter().map(String::as_str))
                .bool("pushProtected", tags.push_protected);
            t.end();
        }
        entry.str("type", &scope.resource_type);
        entry.end();
    }
    access.push(']');
    c.str("aud", req.audience)
        .u64("exp", req.now.saturating_add(req.lifetime_seconds))
        .u64("iat", req.now)
        .str("iss", req.issuer)
        .str("jti", req.jti);
    if !req.extra.licenses.is_empty() {
        c.strs("licenses", req.extra.licenses.iter().map(String::as_str));
    }
    c.u64("nbf", req.now);
    if let Some(plan) = req.extra.plan {
        c.str("plan", plan);
    }
    if let Some(rtid) = req.extra.rtid {
        c.str("rtid", rtid);
    }
    c.str("sub", req.subject);
    if let Some(tenant) = req.tenant {
        c.str("tenant", tenant);
    }
    c.end();
    out
}

/// A fresh `jti`: 128 random bits, base64url.
pub fn new_jti(crypto: &dyn Crypto) -> Result<String, crate::token::crypto::CryptoError> {
    let mut bytes = [0u8; 16];
    crypto.fill_random(&mut bytes)?;
    Ok(b64::url_encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    /// The `Value`-tree form the direct writer replaced.
    fn by_value(req: &MintRequest<'_>, alg: &str) -> (String, String) {
        let mut header = Map::new();
        header.insert("alg".into(), Value::from(alg));
        header.insert("typ".into(), Value::from("JWT"));
        header.insert("kid".into(), Value::from(req.kid));
        if let Some(chain) = req.x5c {
            header.insert(
                "x5c".into(),
                Value::Array(chain.iter().map(|c| Value::from(c.as_str())).collect()),
            );
        }
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(req.issuer));
        claims.insert("sub".into(), Value::from(req.subject));
        claims.insert("aud".into(), Value::from(req.audience));
        claims.insert(
            "exp".into(),
            Value::from(req.now.saturating_add(req.lifetime_seconds)),
        );
        claims.insert("nbf".into(), Value::from(req.now));
        claims.insert("iat".into(), Value::from(req.now));
        claims.insert("jti".into(), Value::from(req.jti));
        if let Some(tenant) = req.tenant {
            claims.insert("tenant".into(), Value::from(tenant));
        }
        if let Some(plan) = req.extra.plan {
            claims.insert("plan".into(), Value::from(plan));
        }
        if let Some(rtid) = req.extra.rtid {
            claims.insert("rtid".into(), Value::from(rtid));
        }
        if !req.extra.licenses.is_empty() {
            claims.insert("licenses".into(), Value::from(req.extra.licenses.to_vec()));
        }
        let mut access = serde_json::to_value(req.access).unwrap_or(Value::Array(Vec::new()));
        for (i, tags) in req.extra.tags.iter().enumerate() {
            if let (Some(t), Some(entry)) = (tags, access.get_mut(i)) {
                entry["tags"] = serde_json::json!({
                    "protected": t.protected, "pushProtected": t.push_protected,
                    "immutable": t.immutable, "delete": t.delete,
                });
            }
        }
        claims.insert("access".into(), access);
        (
            Value::Object(header).to_string(),
            Value::Object(claims).to_string(),
        )
    }

    #[test]
    fn header_and_claims_are_the_bytes_serde_json_writes() {
        let ec = crate::token::keys::testkeys::p256_private();
        let rsa = crate::token::keys::testkeys::rsa_private();
        let scope = |resource_type: &str, name: &str, actions: &[&str]| Scope {
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        };
        // What `parse_scope` gives for `repository:team/app:pull,push` and
        // `registry:catalog:*`.
        let access = [
            scope("repository", "team/app", &["pull", "push"]),
            scope("registry", "catalog", &["*"]),
        ];
        let chain = vec!["MIIB+/==".to_string(), "MIIC\\".to_string()];
        let base = MintRequest {
            issuer: "registry-token-service",
            subject: "alice \"quoted\" \u{1} é \u{2028}",
            audience: "registry.example",
            access: &access,
            now: 1_800_000_000,
            lifetime_seconds: u64::MAX,
            kid: "k\\1",
            x5c: None,
            jti: "AAAAAAAAAAAAAAAAAAAAAA",
            tenant: None,
            extra: Extra::default(),
        };
        let tags = TagPolicy {
            protected: vec!["latest".into(), "rel-*".into()],
            push_protected: true,
            immutable: vec![],
            delete: false,
        };
        let licenses = vec!["L-1".to_string(), "L \"2\"".to_string()];
        let entry_tags = [None, Some(&tags)];
        let first_tags = [Some(&tags)];
        let variants = [
            base.clone(),
            MintRequest {
                x5c: Some(&chain),
                tenant: Some("acme"),
                ..base.clone()
            },
            MintRequest {
                access: &[],
                lifetime_seconds: 300,
                ..base.clone()
            },
            MintRequest {
                tenant: Some("acme"),
                extra: Extra {
                    plan: Some("community enterprise"),
                    licenses: &licenses,
                    rtid: Some("rt-1"),
                    tags: &entry_tags,
                },
                ..base.clone()
            },
            MintRequest {
                extra: Extra {
                    tags: &first_tags,
                    ..Extra::default()
                },
                ..base.clone()
            },
        ];
        for key in [&ec, rsa] {
            for req in &variants {
                let (header, claims) = by_value(req, key.alg().name());
                assert_eq!(header_json(req, key), header);
                assert_eq!(claims_json(req), claims);
            }
        }
    }
}
