//! `registry-token bundle`: an approved request minted into registry tokens (the core's
//! `mint`, pure-Rust signing), the canonical manifest, its detached JWS, and the files
//! written all at once.
//!
//! Deterministic: `jti` is derived from the token's content, RS256 (PKCS#1 v1.5) and
//! ES256 (RFC 6979 nonces in `p256`) signatures are functions of key and message, and
//! nothing reads the clock except the refusal of an already expired window.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use registry_token_core::config::Config;
use registry_token_core::token::crypto::{sha256, Crypto, RustCrypto};
use registry_token_core::token::mint::{self, MintRequest};
use registry_token_core::wire::{b64, time::rfc3339};
use serde_json::{json, Map, Value};

use crate::canonical;
use crate::request::Approved;

/// Version of the manifest format.
pub const MANIFEST_VERSION: u64 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest signature's file name.
pub const MANIFEST_JWS: &str = "manifest.jws";
/// The tokens' folder.
pub const TOKENS_DIR: &str = "tokens";

/// The files of a bundle, relative paths and bytes, in writing order.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// `tokens/<name>.jwt`, then `manifest.json`, then `manifest.jws`.
    pub files: Vec<(String, Vec<u8>)>,
    /// The canonical manifest.
    pub manifest: Value,
}

/// `tokens/<name>.jwt`.
pub fn token_file(name: &str) -> String {
    format!("{TOKENS_DIR}/{name}.jwt")
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `jti` of a token: the first 128 bits of the SHA-256 of the canonical JSON of
/// everything the token says but its `jti` (claims and header), plus the bundle and token
/// names, the licence and the tenant, base64url (22 characters, like the gateway's random
/// ones). Equal inputs give equal ids; two tokens of one bundle never share one.
pub fn derive_jti(content: &Value) -> String {
    let digest = sha256(canonical::to_string(content).as_bytes());
    b64::url_encode(&digest[..16])
}

/// Mints every token and builds the manifest and its signature.
pub fn build(approved: &Approved, config: &Config) -> Result<Bundle, String> {
    let signing = &config.signing;
    let req = &approved.request;
    let crypto = RustCrypto;
    let lifetime = approved.not_after - approved.not_before;
    let mut files = Vec::with_capacity(approved.tokens.len() + 2);
    let mut entries = Vec::with_capacity(approved.tokens.len());
    for token in &approved.tokens {
        let access = serde_json::to_value(&token.granted).map_err(|e| e.to_string())?;
        let content = json!({
            "bundle": req.bundle,
            "name": token.name,
            "license": req.license,
            "tenant": req.tenant,
            "header": {"alg": signing.key.alg().name(), "typ": "JWT", "kid": signing.kid, "x5c": signing.x5c},
            "claims": {
                "iss": signing.issuer, "sub": req.subject, "aud": req.service,
                "exp": approved.not_after, "nbf": approved.not_before, "iat": approved.not_before,
                "access": access,
            },
        });
        let jti = derive_jti(&content);
        let minted = mint::mint(
            &MintRequest {
                issuer: &signing.issuer,
                subject: &req.subject,
                audience: &req.service,
                access: &token.granted,
                now: approved.not_before,
                lifetime_seconds: lifetime,
                kid: &signing.kid,
                x5c: signing.x5c.as_deref(),
                jti: &jti,
                tenant: req.tenant.as_deref(),
                extra: mint::Extra::default(),
            },
            &signing.key,
            &crypto,
        )
        .map_err(|e| format!("tokens {:?}: signing failed: {e}", token.name))?;
        let file = token_file(&token.name);
        let bytes = minted.into_bytes();
        entries.push(json!({
            "name": token.name,
            "file": file,
            "sha256": hex(&sha256(&bytes)),
            "jti": jti,
            "requested": token.requested.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "access": access,
            "expiresAt": rfc3339(approved.not_after),
        }));
        files.push((file, bytes));
    }
    let mut manifest = Map::new();
    manifest.insert("version".into(), json!(MANIFEST_VERSION));
    manifest.insert("bundle".into(), json!(req.bundle));
    manifest.insert("service".into(), json!(req.service));
    manifest.insert("subject".into(), json!(req.subject));
    manifest.insert("plan".into(), json!(req.plan));
    if let Some(license) = &req.license {
        manifest.insert("license".into(), json!(license));
    }
    if let Some(tenant) = &req.tenant {
        manifest.insert("tenant".into(), json!(tenant));
    }
    manifest.insert("notBefore".into(), json!(rfc3339(approved.not_before)));
    manifest.insert("notAfter".into(), json!(rfc3339(approved.not_after)));
    manifest.insert("issuer".into(), json!(signing.issuer));
    manifest.insert("algorithm".into(), json!(signing.key.alg().name()));
    manifest.insert("kid".into(), json!(signing.kid));
    manifest.insert("tokens".into(), Value::Array(entries));
    let manifest = Value::Object(manifest);
    let manifest_bytes = canonical::to_string(&manifest).into_bytes();
    let jws = sign_detached(&manifest_bytes, config, &crypto)?;
    files.push((MANIFEST.to_string(), manifest_bytes));
    files.push((MANIFEST_JWS.to_string(), jws.into_bytes()));
    Ok(Bundle { files, manifest })
}

/// A detached compact JWS (RFC 7515 Appendix F) over `payload`: `header..signature`, the
/// signature over `header.BASE64URL(payload)`, with the signing key; the header (canonical
/// JSON) carries `alg`, `kid` and, when configured, `x5c`.
pub fn sign_detached(
    payload: &[u8],
    config: &Config,
    crypto: &dyn Crypto,
) -> Result<String, String> {
    let signing = &config.signing;
    let mut header = Map::new();
    header.insert("alg".into(), json!(signing.key.alg().name()));
    header.insert("kid".into(), json!(signing.kid));
    if let Some(x5c) = &signing.x5c {
        header.insert("x5c".into(), json!(x5c));
    }
    let header = b64::url_encode(canonical::to_string(&Value::Object(header)).as_bytes());
    let signing_input = format!("{header}.{}", b64::url_encode(payload));
    let signature = crypto
        .sign(&signing.key, signing_input.as_bytes())
        .map_err(|e| format!("{MANIFEST_JWS}: signing failed: {e}"))?;
    Ok(format!("{header}..{}", b64::url_encode(&signature)))
}

/// Refuses an `--out` that exists and is not an empty directory.
pub fn check_out(out: &Path) -> Result<(), String> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => {
            let mut entries =
                fs::read_dir(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
            if entries.next().is_some() {
                return Err(format!(
                    "--out {}: exists and is not empty (a bundle is never written over another)",
                    out.display()
                ));
            }
            Ok(())
        }
        Ok(_) => Err(format!(
            "--out {}: exists and is not a directory",
            out.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("--out {}: {e}", out.display())),
    }
}

fn parent_of(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes the bundle into a new temporary directory next to `out` (files 0600, folders
/// 0700), then renames it to `out` (which must not exist or be an empty directory). On any
/// error nothing is left behind.
pub fn write(bundle: &Bundle, out: &Path) -> Result<(), String> {
    check_out(out)?;
    let parent = parent_of(out);
    let tmp = tempfile::Builder::new()
        .prefix(".registry-token-bundle-")
        .tempdir_in(&parent)
        .map_err(|e| {
            format!(
                "--out {}: cannot create a directory in {}: {e}",
                out.display(),
                parent.display()
            )
        })?;
    let io = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| io(tmp.path(), e))?;
    let tokens = tmp.path().join(TOKENS_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tokens)
        .map_err(|e| io(&tokens, e))?;
    for (rel, bytes) in &bundle.files {
        let path = tmp.path().join(rel);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.write_all(bytes).map_err(|e| io(&path, e))?;
        f.sync_all().map_err(|e| io(&path, e))?;
    }
    // Re-check just before the rename: rename(2) replaces only an empty directory.
    check_out(out)?;
    let kept = tmp.keep();
    fs::rename(&kept, out).map_err(|e| {
        let _ = fs::remove_dir_all(&kept);
        format!("--out {}: {e}", out.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_is_a_128_bit_digest_of_the_canonical_content() {
        let a = derive_jti(&json!({"b": 1, "a": [1, 2]}));
        // Key order does not matter (canonical JSON); any value does.
        assert_eq!(a, derive_jti(&json!({"a": [1, 2], "b": 1})));
        assert_ne!(a, derive_jti(&json!({"a": [2, 1], "b": 1})));
        assert_eq!(a.len(), 22);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(token_file("x"), "tokens/x.jwt");
    }
}
