//! How the gateway signs, proved by what a real registry 2.8 accepts: `x5c` from a
//! self-signed certificate, the libtrust `kid` only, a leaf under a stable CA, PFX
//! (PKCS#12) keys of both OpenSSL flavours (RSA and P-256, inline or from the environment,
//! run with the tenant configuration of `tenants`), and the host's crypto (Envoy's `sign`
//! foreign function) used once per VM with RS256 and ES256 tokens that verify.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use registry_token_e2e::gateway::{
    bearer, filter_config, gateway_failure, openssl, optok, refusal_lines, start_gateway,
    verify_registry_token, ConfigForm, KeyKind, SigningKey, TestKeys, KEYPEM_ENV, SERVICE,
};
use registry_token_e2e::registry::{self, creds, OciImage, Registry, RegistryAuth};
use registry_token_e2e::{Envoy, EnvoyOptions};
use serde_json::json;

use super::common::{token, PRIVATE_PUSH, REALM};
use super::exchange::{enterprise, exchange, minted, round_trip};
use super::tenants;

/// The body of a PEM block (the first one when there are several), decoded.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD
        .decode(body.trim())
        .unwrap_or_else(|e| panic!("PEM body is not base64: {e}\n{pem}"))
}

/// libtrust's key id, computed here independently of the filter (distribution 2.8's
/// `kid`): SHA-256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32 without
/// padding, 12 groups of 4 joined by `:`.
fn libtrust_kid(public_pem: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(pem_der(public_pem));
    let mut bits = String::new();
    for b in &hash[..30] {
        bits.push_str(&format!("{b:08b}"));
    }
    let chars: Vec<char> = bits
        .as_bytes()
        .chunks(5)
        .map(|c| {
            let v = c
                .iter()
                .fold(0usize, |acc, &b| acc * 2 + usize::from(b - b'0'));
            char::from(ALPHABET[v])
        })
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn push_and_pull_with_x5c_from_a_self_signed_certificate() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
    let (envoy, registry) = exchange(
        &keys,
        &config,
        keys.signing_key_pem(),
        keys.signing_cert_pem(),
    );
    let public = keys.signing_public_pem();
    let (header, claims, _) = minted(
        &envoy,
        &enterprise(&keys),
        "repository:stella-ops/private/app:pull,push",
        &public,
    );
    assert_eq!(
        header["x5c"],
        json!([STANDARD.encode(pem_der(keys.signing_cert_pem()))]),
        "{header}"
    );
    assert_eq!(claims["aud"], SERVICE);
    round_trip(&envoy, &registry, &keys, &public);

    // Control: a registry trusting another certificate refuses the same tokens, so the
    // round trip above really rested on the signature check.
    let other = keys.extra_signing_key("other", KeyKind::Rsa2048);
    let realm = format!("{}/token", envoy.base_url());
    let stranger = Registry::start(&RegistryAuth::new(&realm, &other.cert_pem))
        .unwrap_or_else(|e| panic!("{e}"));
    let image = OciImage::build("v1");
    let run = registry::copy(
        &image.reference(),
        &stranger.docker_ref("stella-ops/private/app", "v1"),
        None,
        Some(&creds(&enterprise(&keys))),
    );
    assert!(
        !run.success,
        "a registry trusting another key accepted:\n{run}"
    );
    assert!(
        run.stderr.to_lowercase().contains("unauthorized"),
        "{run}\n{}",
        stranger.log()
    );
}

#[test]
fn push_and_pull_with_a_libtrust_kid_only() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["signing"]["kidFormat"] = json!("libtrust");
    // No chain: the registry finds the key by `kid` among its root certificates' keys
    // (registry 2.8 indexes them by libtrust fingerprint).
    let (envoy, registry) = exchange(
        &keys,
        &config,
        keys.signing_key_pem(),
        keys.signing_cert_pem(),
    );
    let public = keys.signing_public_pem();
    let (header, _, _) = minted(
        &envoy,
        &enterprise(&keys),
        "repository:stella-ops/private/app:pull",
        &public,
    );
    assert!(header.get("x5c").is_none(), "{header}");
    assert!(header.get("jwk").is_none(), "{header}");
    assert_eq!(header["kid"], libtrust_kid(&public), "{header}");
    round_trip(&envoy, &registry, &keys, &public);
}

#[test]
fn push_and_pull_with_a_leaf_under_a_stable_ca() {
    let keys = TestKeys::generate();
    let ca = keys.ca("stable-ca");
    let leaf: SigningKey = ca.leaf("leaf", KeyKind::Rsa2048);
    let mut config = filter_config(&keys, REALM);
    config["signing"]["certificateChainPem"] = json!(leaf.chain_pem);
    // The registry trusts the CA only; the leaf key never appears in its configuration.
    let (envoy, registry) = exchange(&keys, &config, &leaf.key_pem, &ca.cert_pem);
    let (header, _, _) = minted(
        &envoy,
        &enterprise(&keys),
        "repository:stella-ops/private/app:pull",
        &leaf.public_pem,
    );
    assert_eq!(
        header["x5c"],
        json!([
            STANDARD.encode(pem_der(&leaf.cert_pem)),
            STANDARD.encode(pem_der(&ca.cert_pem))
        ]),
        "{header}"
    );
    round_trip(&envoy, &registry, &keys, &leaf.public_pem);
}

const PFX_PASSWORD: &str = "pfx-test-password";

/// `openssl pkcs12 -export` of `keys`' signing key of `kind` with its self-signed
/// certificate; `legacy` adds `-legacy` (3DES/RC2, SHA-1 MAC). Returns (the file's base64,
/// the certificate PEM, the public key PEM).
fn make_pfx(keys: &TestKeys, name: &str, kind: KeyKind, legacy: bool) -> (String, String, String) {
    let key = keys.extra_signing_key(name, kind);
    let out = format!("{name}.pfx");
    let key_file = key.key_path.to_string_lossy().into_owned();
    let cert_file = key.cert_path.to_string_lossy().into_owned();
    let pass = format!("pass:{PFX_PASSWORD}");
    let mut args = vec![
        "pkcs12", "-export", "-inkey", &key_file, "-in", &cert_file, "-passout", &pass, "-out",
        &out,
    ];
    if legacy {
        args.push("-legacy");
    }
    openssl(keys.dir(), &args);
    let bytes = fs::read(keys.dir().join(&out)).unwrap_or_else(|e| panic!("{out}: {e}"));
    // What OpenSSL wrote is what the flavour says.
    let info = std::process::Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-passin", &pass, "-in", &out])
        .args(if legacy { &["-legacy"][..] } else { &[][..] })
        .current_dir(keys.dir())
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&info.stdout),
        String::from_utf8_lossy(&info.stderr)
    );
    if legacy {
        assert!(text.contains("sha1") || text.contains("SHA1"), "{text}");
        assert!(
            text.contains("pbeWithSHA1And") || text.contains("RC2") || text.contains("3-Key"),
            "{text}"
        );
    } else {
        assert!(text.contains("sha256") || text.contains("SHA256"), "{text}");
        assert!(
            text.contains("PBES2") && text.contains("AES-256-CBC"),
            "{text}"
        );
    }
    (
        STANDARD.encode(bytes),
        key.cert_pem.clone(),
        key.public_pem.clone(),
    )
}

#[test]
fn pfx_signing_keys_of_both_flavours_mint_tokens_the_registry_accepts() {
    let keys = TestKeys::generate();
    for (n, (kind, legacy, from_env)) in [
        (KeyKind::Rsa2048, false, false),
        (KeyKind::Rsa2048, true, true),
        (KeyKind::EcP256, false, true),
        (KeyKind::EcP256, true, false),
    ]
    .into_iter()
    .enumerate()
    {
        let what = format!(
            "{kind:?} {}",
            if legacy {
                "-legacy"
            } else {
                "OpenSSL 3 default"
            }
        );
        let (pfx, cert_pem, public_pem) = make_pfx(&keys, &format!("pfx{n}"), kind, legacy);
        let mut config = tenants::tenant_config(&keys, false);
        config["signing"]["algorithm"] = json!(kind.algorithm());
        // The PEM key the harness passes by default is blanked: exactly one of the two.
        let mut opts = EnvoyOptions::new().env(KEYPEM_ENV, "");
        if from_env {
            opts = opts
                .env("REGISTRY_TOKEN_SIGNING__KEYPFX", &pfx)
                .env("REGISTRY_TOKEN_SIGNING__KEYPFXPASSWORD", PFX_PASSWORD);
        } else {
            config["signing"]["keyPfx"] = json!(pfx);
            config["signing"]["keyPfxPassword"] = json!(PFX_PASSWORD);
        }
        let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, opts);
        let realm = format!("{}/token", envoy.base_url());
        let registry = Registry::start(&RegistryAuth::new(&realm, &cert_pem))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let acme = tenants::tenant_optok(&keys, "acme");
        // The minted token verifies with the PFX's key and carries its certificate.
        let reply = tenants::token(&envoy, &acme, &[tenants::ACME_X]);
        assert_eq!(reply.status, 200, "{what}: {reply:?}");
        let tok = reply.json()["token"].as_str().unwrap_or("").to_owned();
        let (header, claims) =
            verify_registry_token(&tok, &public_pem).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(header["alg"], kind.algorithm(), "{what}");
        let cert_der: String = cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(
            header["x5c"],
            json!([cert_der]),
            "{what}: x5c is the PFX's certificate"
        );
        assert_eq!(claims["tenant"], "acme");
        // The registry accepts it: a real push and pull, and its own API.
        let image = tenants::push(&registry, &acme, "tenants/acme/pfx", "v1")
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            tenants::pull(&registry, &acme, "tenants/acme/pfx", "v1"),
            image.manifest_digest,
            "{what}"
        );
        let (tok, _) = tenants::minted(
            &envoy,
            &acme,
            "repository:tenants/acme/pfx:pull",
            &public_pem,
        );
        let list = registry_token_e2e::get(
            &format!("{}/v2/tenants/acme/pfx/tags/list", registry.url()),
            &[("authorization", &format!("Bearer {tok}"))],
        );
        assert_eq!(list.status, 200, "{what}: {list:?}");
        // Neither the password nor the key material is in Envoy's log.
        let log = envoy.log();
        assert!(
            !log.contains(PFX_PASSWORD),
            "{what}: the password is in the log"
        );
        assert!(!log.contains(&pfx[..40]), "{what}: the PFX is in the log");
        eprintln!("{what}: pushed and pulled with a token signed by the PFX key");
    }
    // A wrong password: Envoy refuses the configuration with one line naming the field,
    // and neither password appears in its log.
    let (pfx, _, _) = make_pfx(&keys, "wrongpass", KeyKind::EcP256, false);
    let mut config = tenants::tenant_config(&keys, false);
    config["signing"]["algorithm"] = json!("ES256");
    config["signing"]["keyPfx"] = json!(pfx);
    config["signing"]["keyPfxPassword"] = json!("not-the-password-0123");
    let log = gateway_failure(
        &config,
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new().env(KEYPEM_ENV, ""),
    );
    let lines = refusal_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("signing.keyPfxPassword"), "{lines:?}");
    assert!(
        !log.contains("not-the-password-0123"),
        "the wrong password is in the log"
    );
    assert!(!log.contains(PFX_PASSWORD));
}

/// Asserts that every VM (Envoy logs "Thread-Local Wasm created" for each, at
/// `wasm:debug`) logged `crypto: host` exactly once after its creation, on its thread, and
/// that there were at least `min_vms` of them.
fn assert_host_crypto_once_per_vm(envoy: &Envoy, min_vms: usize) {
    let counts = |log: &str| {
        (
            log.matches("Thread-Local Wasm created").count(),
            log.matches("registry-token-filter: crypto: host").count(),
        )
    };
    let settled = envoy.wait_for_log(Duration::from_secs(10), |log| {
        let (vms, host) = counts(log);
        vms >= min_vms && host == vms
    });
    let log = envoy.log();
    assert!(
        settled,
        "VMs and `crypto: host` lines: {:?}\n{log}",
        counts(&log)
    );
    assert!(!log.contains("crypto: pure Rust"), "{log}");
    // Per thread: created, crypto, created, crypto, …
    let mut per_thread: BTreeMap<String, Vec<char>> = BTreeMap::new();
    for line in log.lines() {
        let event = if line.contains("Thread-Local Wasm created") {
            'v'
        } else if line.contains("registry-token-filter: crypto:") {
            'c'
        } else {
            continue;
        };
        // "[date time][thread][level][component] …"
        let thread = line
            .split(']')
            .nth(1)
            .unwrap_or_default()
            .trim_start_matches('[');
        per_thread.entry(thread.to_owned()).or_default().push(event);
    }
    for (thread, events) in &per_thread {
        let s: String = events.iter().collect();
        assert!(
            !s.is_empty() && s.as_bytes().chunks(2).all(|c| c == b"vc"),
            "thread {thread}: events {s} (v = VM created, c = crypto line)\n{log}"
        );
    }
}

/// The filter signs through Envoy's `sign` foreign function (BoringSSL) when the host has
/// it: `crypto: host` once per VM; the RS256 and ES256 tokens it mints that way verify
/// with `jsonwebtoken` (ES256: the host's DER signature turned into JWS `r‖s`).
#[test]
fn host_crypto_is_used_once_per_vm_and_its_tokens_verify() {
    let keys = TestKeys::generate();
    let debug_wasm = || {
        EnvoyOptions::new()
            .concurrency(2)
            .arg("--component-log-level")
            .arg("wasm:debug")
    };
    let op = bearer(&optok(&keys, |s| s.plan = Some("enterprise".into())));

    let envoy = start_gateway(
        &filter_config(&keys, REALM),
        ConfigForm::StringValue,
        &keys,
        debug_wasm(),
    );
    // Main thread (a validation VM, then its own) and one per worker.
    assert_host_crypto_once_per_vm(&envoy, 3);
    for i in 0..6 {
        let reply = token(&envoy, Some(&op), &[PRIVATE_PUSH]);
        assert_eq!(reply.status, 200, "{reply:?}");
        let body = reply.json();
        let (header, claims) = verify_registry_token(
            body["token"].as_str().unwrap_or_default(),
            &keys.signing_public_pem(),
        )
        .unwrap_or_else(|e| panic!("RS256 token {i}: {e}"));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));
    }
    drop(envoy);

    let ec = keys.ec_signing_key("ec");
    let mut config = filter_config(&keys, REALM);
    config["signing"]["algorithm"] = json!("ES256");
    let envoy = start_gateway(
        &config,
        ConfigForm::Struct,
        &keys,
        debug_wasm().env(KEYPEM_ENV, &ec.key_pem),
    );
    assert_host_crypto_once_per_vm(&envoy, 3);
    for i in 0..6 {
        let reply = token(&envoy, Some(&op), &[PRIVATE_PUSH]);
        assert_eq!(reply.status, 200, "{reply:?}");
        let token = reply.json()["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (header, _) = verify_registry_token(&token, &ec.public_pem)
            .unwrap_or_else(|e| panic!("ES256 token {i}: {e}"));
        assert_eq!(header["alg"], "ES256");
        // JWS ES256 signatures are r‖s, 64 bytes (86 base64url characters).
        assert_eq!(token.rsplit('.').next().map(str::len), Some(86), "{token}");
        // And not by the RSA key.
        assert!(verify_registry_token(&token, &keys.signing_public_pem()).is_err());
    }
}
