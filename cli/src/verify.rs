//! `registry-token verify-bundle`: the manifest's detached JWS, then every token against
//! the manifest (file, SHA-256, signature, claims), then nothing else in the folder. The
//! first failure is returned naming its file.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use registry_token_core::token::alg::Alg;
use registry_token_core::token::crypto::{sha256, Crypto, RustCrypto};
use registry_token_core::token::jws::{self, Jws};
use registry_token_core::token::keys::KeySet;
use registry_token_core::wire::{b64, time::rfc3339};
use serde::Deserialize;
use serde_json::Value;

use crate::bundle::{hex, token_file, MANIFEST, MANIFEST_JWS, MANIFEST_VERSION, TOKENS_DIR};
use crate::canonical;
use crate::request::{parse_time, valid_name};

/// Signature algorithms a bundle may be signed with (those of `signing.algorithm`).
pub const BUNDLE_ALGS: [Alg; 2] = [Alg::Rs256, Alg::Es256];

/// The manifest as written by `bundle`. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    /// Format version (1).
    pub version: u64,
    /// Bundle name.
    pub bundle: String,
    /// `aud` of every token.
    pub service: String,
    /// `sub` of every token.
    pub subject: String,
    /// The plan that granted the access.
    pub plan: String,
    /// The licence, when the request named one.
    #[serde(default)]
    pub license: Option<String>,
    /// The tenant, when the request named one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// RFC 3339: `nbf` and `iat` of every token.
    pub not_before: String,
    /// RFC 3339: `exp` of every token.
    pub not_after: String,
    /// `iss` of every token.
    pub issuer: String,
    /// `alg` of every token and of the manifest signature.
    pub algorithm: String,
    /// `kid` of every token and of the manifest signature.
    pub kid: String,
    /// The tokens.
    pub tokens: Vec<ManifestToken>,
}

/// One token's entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManifestToken {
    /// Its name.
    pub name: String,
    /// `tokens/<name>.jwt`.
    pub file: String,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// Its `jti`.
    pub jti: String,
    /// The scopes asked for.
    pub requested: Vec<String>,
    /// The `access` claim.
    pub access: Value,
    /// RFC 3339 of `exp`.
    pub expires_at: String,
}

/// One verified token, for the listing.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Name.
    pub name: String,
    /// Granted access, as scopes (`repository:name:pull,push`).
    pub access: Vec<String>,
    /// RFC 3339 expiry.
    pub expires_at: String,
}

/// The verified bundle.
#[derive(Debug, Clone)]
pub struct Report {
    /// The manifest.
    pub manifest: Manifest,
    /// Every token, in manifest order.
    pub tokens: Vec<Verified>,
}

fn bad(file: &str, why: impl std::fmt::Display) -> String {
    format!("{file}: {why}")
}

fn read(dir: &Path, rel: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(rel);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => fs::read(&path).map_err(|e| bad(rel, e)),
        Ok(_) => Err(bad(rel, "is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad(rel, "missing")),
        Err(e) => Err(bad(rel, e)),
    }
}

/// Verifies the detached JWS `jws_text` over `payload` with `keys`; returns its header.
pub fn verify_detached(
    jws_text: &str,
    payload: &[u8],
    keys: &KeySet,
    crypto: &dyn Crypto,
) -> Result<serde_json::Map<String, Value>, String> {
    let parts: Vec<&str> = jws_text.split('.').collect();
    let [h, middle, s] = parts.as_slice() else {
        return Err(bad(MANIFEST_JWS, "not a compact JWS (header..signature)"));
    };
    if !middle.is_empty() {
        return Err(bad(
            MANIFEST_JWS,
            "not a detached JWS: the payload part is not empty",
        ));
    }
    let header_bytes =
        b64::url_decode(h).map_err(|_| bad(MANIFEST_JWS, "the header is not base64url"))?;
    let header = match serde_json::from_slice::<Value>(&header_bytes) {
        Ok(Value::Object(map)) => map,
        _ => return Err(bad(MANIFEST_JWS, "the header is not a JSON object")),
    };
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(bad(
            MANIFEST_JWS,
            "the header carries crit or b64, which are not accepted",
        ));
    }
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("(missing)");
    let alg = Alg::parse(name)
        .filter(|a| BUNDLE_ALGS.contains(a))
        .ok_or_else(|| {
            bad(
                MANIFEST_JWS,
                format!("algorithm {name:?} is not RS256 or ES256"),
            )
        })?;
    let signature =
        b64::url_decode(s).map_err(|_| bad(MANIFEST_JWS, "the signature is not base64url"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let candidates = keys.candidates(kid, alg);
    if candidates.is_empty() {
        return Err(bad(
            MANIFEST_JWS,
            format!(
                "signed by key {:?}, which is not among the trusted keys",
                kid.unwrap_or("(no kid)")
            ),
        ));
    }
    let input = format!("{h}.{}", b64::url_encode(payload));
    if candidates.iter().any(|key| {
        crypto
            .verify(alg, key, input.as_bytes(), &signature)
            .is_ok()
    }) {
        Ok(header)
    } else {
        Err(format!(
            "{MANIFEST}: the signature in {MANIFEST_JWS} does not verify over it with the trusted \
             key {:?} (one of the two files was changed, or signed by another key)",
            kid.unwrap_or("(no kid)")
        ))
    }
}

/// The granted access of an `access` claim as scope strings.
fn access_strings(access: &Value) -> Vec<String> {
    access
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let actions: Vec<&str> = a["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{}:{}:{}",
                a["type"].as_str().unwrap_or("?"),
                a["name"].as_str().unwrap_or("?"),
                actions.join(",")
            )
        })
        .collect()
}

/// Verifies the bundle in `dir` with `keys` at `now` (Unix seconds).
pub fn verify(dir: &Path, keys: &KeySet, now: u64) -> Result<Report, String> {
    let crypto = RustCrypto;
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let manifest_bytes = read(dir, MANIFEST)?;
    let jws_bytes = read(dir, MANIFEST_JWS)?;
    let jws_text = std::str::from_utf8(&jws_bytes).map_err(|_| bad(MANIFEST_JWS, "not UTF-8"))?;
    let header = verify_detached(jws_text, &manifest_bytes, keys, &crypto)?;

    // Signed, so written by the key holder; still checked in full.
    let value: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad(MANIFEST, format!("not JSON: {e}")))?;
    if canonical::to_string(&value).as_bytes() != manifest_bytes.as_slice() {
        return Err(bad(MANIFEST, "not canonical JSON"));
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(MANIFEST, e))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(bad(
            MANIFEST,
            format!("version {} is not {MANIFEST_VERSION}", manifest.version),
        ));
    }
    if header.get("kid").and_then(Value::as_str) != Some(manifest.kid.as_str())
        || header.get("alg").and_then(Value::as_str) != Some(manifest.algorithm.as_str())
    {
        return Err(bad(
            MANIFEST_JWS,
            "its kid or alg differs from the manifest's",
        ));
    }
    let nbf = parse_time("notBefore", &manifest.not_before).map_err(|e| bad(MANIFEST, e))?;
    let exp = parse_time("notAfter", &manifest.not_after).map_err(|e| bad(MANIFEST, e))?;
    let alg = Alg::parse(&manifest.algorithm)
        .filter(|a| BUNDLE_ALGS.contains(a))
        .ok_or_else(|| bad(MANIFEST, "algorithm is not RS256 or ES256"))?;

    let mut listed = BTreeSet::new();
    let mut tokens = Vec::with_capacity(manifest.tokens.len());
    for entry in &manifest.tokens {
        if !valid_name(&entry.name)
            || entry.file != token_file(&entry.name)
            || !listed.insert(entry.name.clone())
        {
            return Err(bad(
                MANIFEST,
                format!(
                    "token entry {:?} has a bad or repeated name or file",
                    entry.name
                ),
            ));
        }
        let file = entry.file.as_str();
        let bytes = read(dir, file)?;
        let digest = hex(&sha256(&bytes));
        if digest != entry.sha256 {
            return Err(bad(
                file,
                format!("SHA-256 {digest} is not the manifest's {}", entry.sha256),
            ));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| bad(file, "not UTF-8"))?;
        let token = Jws::parse(text).map_err(|e| bad(file, e))?;
        let token_alg = token.alg(&[alg]).map_err(|e| bad(file, e))?;
        if token.header_str("kid") != Some(manifest.kid.as_str()) {
            return Err(bad(file, "its kid is not the manifest's"));
        }
        if token.header.contains_key("crit") {
            return Err(bad(file, "carries crit"));
        }
        jws::verify_signature(&token, token_alg, keys, &crypto).map_err(|e| bad(file, e))?;
        let c = &token.claims;
        let num = |k: &str| c.get(k).and_then(Value::as_u64);
        let checks: [(&str, bool); 9] = [
            (
                "iss",
                token.claim_str("iss") == Some(manifest.issuer.as_str()),
            ),
            (
                "sub",
                token.claim_str("sub") == Some(manifest.subject.as_str()),
            ),
            (
                "aud",
                token.claim_str("aud") == Some(manifest.service.as_str()),
            ),
            ("jti", token.claim_str("jti") == Some(entry.jti.as_str())),
            ("nbf", num("nbf") == Some(nbf)),
            ("iat", num("iat") == Some(nbf)),
            (
                "exp",
                num("exp") == Some(exp) && rfc3339(exp) == entry.expires_at,
            ),
            ("access", c.get("access") == Some(&entry.access)),
            (
                "tenant",
                match c.get("tenant") {
                    None => true,
                    Some(t) => t.as_str() == manifest.tenant.as_deref(),
                },
            ),
        ];
        if let Some((claim, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(bad(
                file,
                format!("claim {claim} does not match the manifest"),
            ));
        }
        if exp <= now {
            return Err(bad(file, format!("expired at {}", rfc3339(exp))));
        }
        if nbf > now {
            return Err(bad(
                file,
                format!(
                    "not valid before {} (use --at to check for a later time)",
                    rfc3339(nbf)
                ),
            ));
        }
        tokens.push(Verified {
            name: entry.name.clone(),
            access: access_strings(&entry.access),
            expires_at: entry.expires_at.clone(),
        });
    }

    // Nothing but the manifest, its signature and the listed tokens.
    let mut top: Vec<String> = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        top.push(e.file_name().to_string_lossy().into_owned());
    }
    top.sort();
    for name in top {
        if name != MANIFEST && name != MANIFEST_JWS && name != TOKENS_DIR {
            return Err(bad(
                &name,
                "is not part of the bundle (not in manifest.json)",
            ));
        }
    }
    let tokens_dir = dir.join(TOKENS_DIR);
    if !tokens_dir.is_dir() {
        return Err(bad(TOKENS_DIR, "missing"));
    }
    let mut extra: Vec<String> = Vec::new();
    for e in fs::read_dir(&tokens_dir).map_err(|e| bad(TOKENS_DIR, e))? {
        let e = e.map_err(|e| bad(TOKENS_DIR, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let listed_file = name
            .strip_suffix(".jwt")
            .is_some_and(|stem| listed.contains(stem));
        if !listed_file {
            extra.push(format!("{TOKENS_DIR}/{name}"));
        }
    }
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(bad(first, "is not listed in manifest.json"));
    }
    Ok(Report { manifest, tokens })
}
