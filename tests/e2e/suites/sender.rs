//! Sender-constrained OpToks (DPoP, mTLS) against the real Envoy, a real Authority (npm
//! `oidc-provider`) and standard client libraries (`oauth4webapi`, `dpop`, `jose`): a
//! DPoP-bound OpTok accepted once and its replays refused on every worker, every violated
//! DPoP check refused and counted once, the nonce mode, an mTLS-bound OpTok accepted only
//! with its certificate (also through skopeo), and hostile or failed proofs made by hand.
//!
//! The oidc-provider tests run the shipped `envoy/gateway.yaml` (TLS, client certificates
//! requested, remote JWKS through the `authority` cluster) rendered with a test PKI, and
//! talk to it with `curl` (one new TLS connection per request). Needs `make
//! authority-deps` (node modules), openssl, curl.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use registry_token_e2e::authority::now;
use registry_token_e2e::dpop::{ath, DpopKey};
use registry_token_e2e::gateway::{
    decode_unverified, optok, token_path, verify_registry_token, SERVICE,
};
use registry_token_e2e::oidc::{
    self, proof, proof_variants, rejected_by_reason, rejected_delta, token_query,
    worker_connections, Authority, Grant, Pki, MTLS_CLIENT_DN, RESOURCE, SCOPE,
};
use registry_token_e2e::{Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

use super::common::{problem_type, PULL};
use super::optoken::{counter, Gateway};

const PULL_PUBLIC: &str = "repository:stella-ops/public/base:pull";

/// The `oidc-provider` Authority on `pki`, started or the test fails.
pub(crate) fn authority(pki: &Pki) -> Authority {
    Authority::start(pki).unwrap_or_else(|e| panic!("{e}"))
}

fn get(pki: &Pki, envoy: &Envoy, headers: &[(&str, &str)]) -> Reply {
    oidc::https_get(pki, envoy, &token_query(&[PULL_PUBLIC]), headers, None)
}

fn dpop_auth(grant: &Grant) -> String {
    format!("DPoP {}", grant.access_token)
}

/// Waits until the rejection counters moved by at least `n` in total, then returns the
/// delta against `before`.
fn delta_after(envoy: &Envoy, before: &BTreeMap<String, u64>, n: u64) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = rejected_delta(before, &rejected_by_reason(envoy));
        if d.values().sum::<u64>() >= n || Instant::now() >= deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 401 DPoP refusal with `error` in a `DPoP` challenge listing `algs`, and the reason
/// in the problem type.
fn assert_dpop_refusal(reply: &Reply, error: &str, reason: &str, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("DPoP ")
            && challenge.contains(&format!("error=\"{error}\""))
            && challenge.contains("algs=\""),
        "{what}: challenge {challenge:?}"
    );
    let problem = reply.json();
    assert_eq!(
        problem["type"],
        format!("urn:registry-token-filter:error:{reason}"),
        "{what}: {problem}"
    );
    assert_eq!(problem["errors"][0]["code"], "UNAUTHORIZED", "{what}");
}

/// The access log lines (JSON on Envoy's stdout) for the token endpoint, once there are
/// at least `n` of them (the stdout logger flushes periodically; up to 10 s).
fn access_log(envoy: &Envoy, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = envoy
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["path"].as_str().is_some_and(|p| p.starts_with("/token")))
            .collect();
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn which_worker(before: &[u64], after: &[u64]) -> usize {
    let moved: Vec<usize> = (0..before.len())
        .filter(|&i| after[i] > before[i])
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "exactly one worker should have accepted the connection: {before:?} -> {after:?}"
    );
    moved[0]
}

/// Must show 1: a DPoP-bound OpTok from oidc-provider with a proof from the `dpop`
/// library → 200 at `--concurrency 2`; the same proof again → 401 `invalid_dpop_proof`
/// (`dpop_replay`) on every fresh connection, on both workers.
#[test]
fn dpop_bound_optok_is_accepted_once_and_replays_fail_on_every_worker() {
    const REPLAYS: usize = 16;
    let pki = Pki::generate();
    let authority = authority(&pki);
    let envoy = oidc::start_tls_gateway(&pki, &authority, EnvoyOptions::new().concurrency(2));
    let realm = oidc::realm(&envoy);

    let grant = authority.dpop_token();
    // What oidc-provider issued: an RFC 9068 JWT for the resource, bound to the key.
    assert_eq!(grant.header["typ"], "at+jwt", "{:?}", grant.header);
    assert_eq!(grant.header["alg"], "RS256");
    assert_eq!(grant.token_type.to_ascii_lowercase(), "dpop");
    assert_eq!(grant.claims["iss"], authority.issuer());
    assert_eq!(grant.claims["aud"], RESOURCE);
    assert_eq!(grant.claims["scope"], SCOPE);
    assert_eq!(grant.claims["stellaops:plan"], "community");
    assert_eq!(
        grant.claims["cnf"]["jkt"].as_str(),
        grant.dpop_jkt.as_deref(),
        "{}",
        grant.claims
    );

    let p = proof(&grant, &realm, "GET", None);
    let auth = dpop_auth(&grant);
    let w0 = worker_connections(&envoy, 2);
    let first = get(&pki, &envoy, &[("authorization", &auth), ("dpop", &p)]);
    assert_eq!(first.status, 200, "{first:?}");
    let first_worker = which_worker(&w0, &worker_connections(&envoy, 2));
    let token = first.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {}", first.body))
        .to_owned();
    let (_, claims) = verify_registry_token(&token, &pki.signing_public_pem)
        .unwrap_or_else(|e| panic!("minted token: {e}"));
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["sub"], oidc::DPOP_CLIENT);
    assert_eq!(
        claims["access"][0]["name"], "stella-ops/public/base",
        "{claims}"
    );

    // The same proof, over fresh connections, until both workers have refused it.
    let before = rejected_by_reason(&envoy);
    let mut served = [0usize; 2];
    for i in 0..REPLAYS {
        let w = worker_connections(&envoy, 2);
        let reply = get(&pki, &envoy, &[("authorization", &auth), ("dpop", &p)]);
        assert_dpop_refusal(
            &reply,
            "invalid_dpop_proof",
            "dpop_replay",
            &format!("replay {i}"),
        );
        served[which_worker(&w, &worker_connections(&envoy, 2))] += 1;
    }
    assert!(
        served[0] > 0 && served[1] > 0,
        "the replays should have reached both workers (first request on worker \
         {first_worker}; replays per worker {served:?})"
    );
    assert!(served[1 - first_worker] > 0);
    let delta = delta_after(&envoy, &before, REPLAYS as u64);
    assert_eq!(
        delta,
        BTreeMap::from([("dpop_replay".to_owned(), REPLAYS as u64)])
    );

    // A fresh proof from the same key still works, also under `Bearer` + `DPoP` header.
    let again = get(
        &pki,
        &envoy,
        &[
            ("authorization", &format!("Bearer {}", grant.access_token)),
            ("dpop", &proof(&grant, &realm, "GET", None)),
        ],
    );
    assert_eq!(again.status, 200, "{again:?}");

    // The access log (JSON on stdout) saw every request, none of them with credentials.
    let log = access_log(&envoy, REPLAYS + 2);
    let statuses: Vec<u64> = log.iter().filter_map(|l| l["status"].as_u64()).collect();
    assert_eq!(statuses.len(), REPLAYS + 2, "{log:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{log:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        REPLAYS,
        "{log:?}"
    );
    assert!(!envoy.stderr().contains(&grant.access_token));
    assert!(log.iter().all(|l| l["tls_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("TLSv1."))));
}

/// Must show 2: each DPoP check violated on purpose → 401 `invalid_dpop_proof`, each
/// counted once under its own reason.
#[test]
fn every_violated_dpop_check_is_refused_and_counted_once() {
    let pki = Pki::generate();
    let authority = authority(&pki);
    let envoy = oidc::start_tls_gateway(&pki, &authority, EnvoyOptions::new().concurrency(2));
    let realm = oidc::realm(&envoy);
    let grant = authority.dpop_token();
    let auth = dpop_auth(&grant);
    let variants = proof_variants(&grant, &realm, None);

    // (variant made by client.mjs with jose, reason label)
    let cases = [
        ("typ_jwt", "dpop_typ"),
        ("typ_missing", "dpop_typ"),
        ("alg_none", "dpop_alg"),
        ("alg_hs256", "dpop_alg"),
        ("jwk_private", "dpop_jwk"),
        ("signature_other_key", "dpop_signature"),
        ("jti_missing", "dpop_claims"),
        ("htm_post", "dpop_htm"),
        ("htu_other_host", "dpop_htu"),
        ("htu_other_path", "dpop_htu"),
        ("iat_stale", "dpop_iat"),
        ("iat_future", "dpop_iat"),
        ("ath_missing", "dpop_ath"),
        ("ath_wrong", "dpop_ath"),
        ("jkt_other_key", "dpop_jkt_mismatch"),
    ];
    for (name, reason) in cases {
        let p = variants
            .get(name)
            .unwrap_or_else(|| panic!("client.mjs made no {name} variant"));
        let before = rejected_by_reason(&envoy);
        let reply = get(&pki, &envoy, &[("authorization", &auth), ("dpop", p)]);
        assert_dpop_refusal(&reply, "invalid_dpop_proof", reason, name);
        let delta = delta_after(&envoy, &before, 1);
        assert_eq!(
            delta,
            BTreeMap::from([(reason.to_owned(), 1)]),
            "{name} must be counted once, as {reason}"
        );
    }

    // Header-level violations: two DPoP headers, no proof under each scheme.
    let valid_a = proof(&grant, &realm, "GET", None);
    let valid_b = proof(&grant, &realm, "GET", None);
    let basic = format!(
        "Basic {}",
        base64_std(&format!("user:{}", grant.access_token))
    );
    let bearer = format!("Bearer {}", grant.access_token);
    let header_cases: Vec<HeaderCase> = vec![
        (
            "two DPoP headers",
            vec![
                ("authorization", &auth),
                ("dpop", &valid_a),
                ("dpop", &valid_b),
            ],
            "dpop_multiple",
        ),
        (
            "DPoP scheme, no proof",
            vec![("authorization", &auth)],
            "dpop_missing",
        ),
        (
            "Bearer scheme, no proof",
            vec![("authorization", &bearer)],
            "dpop_missing",
        ),
        (
            "Basic scheme, no proof",
            vec![("authorization", &basic)],
            "dpop_missing",
        ),
    ];
    for (what, headers, reason) in header_cases {
        let before = rejected_by_reason(&envoy);
        let reply = get(&pki, &envoy, &headers);
        assert_dpop_refusal(&reply, "invalid_dpop_proof", reason, what);
        assert_eq!(
            delta_after(&envoy, &before, 1),
            BTreeMap::from([(reason.to_owned(), 1)]),
            "{what}"
        );
    }

    // A certificate-bound (not DPoP-bound) OpTok under the DPoP scheme.
    let cert = pki.client_cert("mtls", "registry-e2e-client");
    let mtls = authority.mtls_token(&cert);
    let before = rejected_by_reason(&envoy);
    let reply = oidc::https_get(
        &pki,
        &envoy,
        &token_query(&[PULL_PUBLIC]),
        &[
            ("authorization", &format!("DPoP {}", mtls.access_token)),
            ("dpop", &valid_a),
        ],
        Some(&cert),
    );
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.json()["type"],
        "urn:registry-token-filter:error:dpop_unbound_token"
    );
    assert_eq!(
        delta_after(&envoy, &before, 1),
        BTreeMap::from([("dpop_unbound_token".to_owned(), 1)])
    );

    // After all that, the valid variant (made by jose, not by `dpop`) is accepted.
    let reply = get(
        &pki,
        &envoy,
        &[("authorization", &auth), ("dpop", &variants["valid"])],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    // And the unused second valid proof from the two-header request was not burned.
    let reply = get(
        &pki,
        &envoy,
        &[("authorization", &auth), ("dpop", &valid_b)],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// (what, request headers, reason label).
type HeaderCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

fn base64_std(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Must show 3 (the 200/401 part, with curl): an mTLS-bound OpTok from oidc-provider is
/// accepted over a connection presenting its certificate (Bearer and Basic, as docker and
/// skopeo send it) and refused with another certificate or none.
#[test]
fn mtls_bound_optok_is_accepted_only_with_its_certificate() {
    let pki = Pki::generate();
    let authority = authority(&pki);
    let envoy = oidc::start_tls_gateway(&pki, &authority, EnvoyOptions::new().concurrency(2));
    let cert = pki.client_cert("client", "registry-e2e-client");
    // Same subject, same CA, another key: authenticates to the Authority just as well.
    let other = pki.client_cert("other", "registry-e2e-client");
    let rogue = pki.self_signed_client_cert("rogue", "registry-e2e-client");

    let grant = authority.mtls_token(&cert);
    assert_eq!(grant.claims["cnf"]["x5t#S256"], cert.x5t_s256.as_str());
    assert_eq!(grant.claims["aud"], RESOURCE);
    assert_eq!(grant.claims["stellaops:plan"], "enterprise");
    assert_eq!(grant.claims["stellaops:license"], "lic-0001");
    assert_eq!(cert.subject_dn, MTLS_CLIENT_DN);
    assert_eq!(grant.header["typ"], "at+jwt");

    // The Authority refuses a certificate no CA vouches for (tls_client_auth).
    let refused = authority
        .mtls_token_json(&rogue)
        .expect_err("a self-signed certificate must not authenticate the client");
    assert!(refused.contains("invalid_client"), "{refused}");

    let push = "repository:stella-ops/app:pull,push";
    let path = token_query(&[push]);
    let bearer = format!("Bearer {}", grant.access_token);
    let basic = format!(
        "Basic {}",
        base64_std(&format!("skopeo:{}", grant.access_token))
    );
    for (scheme, auth) in [("Bearer", &bearer), ("Basic", &basic)] {
        let reply = oidc::https_get(&pki, &envoy, &path, &[("authorization", auth)], Some(&cert));
        assert_eq!(reply.status, 200, "{scheme}: {reply:?}");
        let (_, claims) = verify_registry_token(
            reply.json()["token"].as_str().unwrap_or_default(),
            &pki.signing_public_pem,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            claims["access"][0]["actions"],
            serde_json::json!(["pull", "push"])
        );
    }

    let cases: [(&str, Option<&oidc::ClientCert>, &str); 2] = [
        ("another certificate", Some(&other), "mtls_mismatch"),
        ("no certificate", None, "mtls_no_certificate"),
    ];
    for (what, client, reason) in cases {
        for (scheme, auth) in [("Bearer", &bearer), ("Basic", &basic)] {
            let before = rejected_by_reason(&envoy);
            let reply = oidc::https_get(&pki, &envoy, &path, &[("authorization", auth)], client);
            assert_eq!(reply.status, 401, "{what}, {scheme}: {reply:?}");
            assert_eq!(
                reply.json()["type"],
                format!("urn:registry-token-filter:error:{reason}"),
                "{what}, {scheme}"
            );
            assert!(
                reply
                    .header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Bearer ") && c.contains("invalid_token")),
                "{what}, {scheme}: {reply:?}"
            );
            assert_eq!(
                delta_after(&envoy, &before, 1),
                BTreeMap::from([(reason.to_owned(), 1)]),
                "{what}, {scheme}"
            );
        }
    }

    // A certificate outside the gateway's client CA does not even complete the handshake.
    let url = format!("https://127.0.0.1:{}{path}", envoy.listen_port());
    let handshake = oidc::https_request(
        "GET",
        &url,
        &[("authorization", &bearer)],
        &pki.ca_cert,
        Some(&rogue),
    );
    assert!(handshake.is_err(), "{handshake:?}");

    // The access log records the client certificate each request came with.
    // 2 accepted, 4 refused; the failed handshake never became a request.
    let log = access_log(&envoy, 6);
    let digest_hex = hex_of_b64url(&cert.x5t_s256);
    let with_cert: Vec<&Value> = log
        .iter()
        .filter(|l| l["client_cert_sha256"].as_str() == Some(digest_hex.as_str()))
        .collect();
    assert_eq!(with_cert.len(), 2, "{log:?}");
    assert!(
        with_cert.iter().all(|l| l["status"] == 200),
        "{with_cert:?}"
    );
    assert_eq!(log.len(), 6, "{log:?}");
}

fn hex_of_b64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Must show 4: with `dpop.nonceSecret` (REGISTRY_TOKEN_DPOP__NONCESECRET), a proof
/// without a nonce → 401 `use_dpop_nonce` with a `DPoP-Nonce`; the `dpop` library's proof
/// with that nonce → 200.
#[test]
fn nonce_mode_demands_the_servers_nonce() {
    let pki = Pki::generate();
    let authority = authority(&pki);
    let envoy = oidc::start_tls_gateway(
        &pki,
        &authority,
        EnvoyOptions::new().concurrency(2).env(
            "REGISTRY_TOKEN_DPOP__NONCESECRET",
            "e2e-nonce-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        ),
    );
    let realm = oidc::realm(&envoy);
    let grant = authority.dpop_token();
    let auth = dpop_auth(&grant);

    let before = rejected_by_reason(&envoy);
    let first = get(
        &pki,
        &envoy,
        &[
            ("authorization", &auth),
            ("dpop", &proof(&grant, &realm, "GET", None)),
        ],
    );
    assert_dpop_refusal(&first, "use_dpop_nonce", "dpop_nonce", "no nonce");
    let nonce = first
        .header("dpop-nonce")
        .unwrap_or_else(|| panic!("no DPoP-Nonce header: {first:?}"))
        .to_owned();
    assert!(!nonce.is_empty());

    let wrong = get(
        &pki,
        &envoy,
        &[
            ("authorization", &auth),
            ("dpop", &proof(&grant, &realm, "GET", Some("not-the-nonce"))),
        ],
    );
    assert_dpop_refusal(&wrong, "use_dpop_nonce", "dpop_nonce", "wrong nonce");
    assert_eq!(
        delta_after(&envoy, &before, 2),
        BTreeMap::from([("dpop_nonce".to_owned(), 2)])
    );

    let retry = get(
        &pki,
        &envoy,
        &[
            ("authorization", &auth),
            ("dpop", &proof(&grant, &realm, "GET", Some(&nonce))),
        ],
    );
    assert_eq!(retry.status, 200, "{retry:?}");
    assert!(retry.header("dpop-nonce").is_some(), "{retry:?}");
    let (_, claims) = decode_unverified(retry.json()["token"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["aud"], SERVICE);
}

/// Must show 3 with the real client: skopeo, given the client certificate in a
/// containers/image certificate directory (`client.cert`/`client.key`) and the
/// mTLS-bound OpTok as its Basic password, pushes to and pulls from a real registry
/// (distribution 2.8) whose token realm is the TLS gateway. containers/image presents the
/// registry's certificate directory on every connection of its HTTP client, the one to
/// the realm included, which is what binds the token request to the certificate. The
/// same OpTok with another certificate, or none, gets no registry token.
#[test]
fn skopeo_pushes_and_pulls_with_an_mtls_bound_optok() {
    use registry_token_e2e::registry::{self, OciImage, Registry, RegistryAuth};

    let pki = Pki::generate();
    let authority = authority(&pki);
    let signing_cert = std::fs::read_to_string(&pki.signing_cert)
        .unwrap_or_else(|e| panic!("{}: {e}", pki.signing_cert.display()));
    // Registry 2.8 finds the key through x5c (verified against its rootcertbundle).
    let envoy = oidc::start_tls_gateway(
        &pki,
        &authority,
        EnvoyOptions::new()
            .concurrency(2)
            .env("REGISTRY_TOKEN_SIGNING__CERTIFICATECHAINPEM", &signing_cert),
    );
    let registry = Registry::start(&RegistryAuth::new(&oidc::realm(&envoy), &signing_cert))
        .unwrap_or_else(|e| panic!("{e}"));

    let cert = pki.client_cert("skopeo", "registry-e2e-client");
    let other = pki.client_cert("other", "registry-e2e-client");
    let grant = authority.mtls_token(&cert);
    assert_eq!(grant.claims["cnf"]["x5t#S256"], cert.x5t_s256.as_str());
    let creds = registry::creds(&grant.access_token);
    let with_cert = pki.cert_dir("certs-skopeo", Some(&cert));
    let with_other = pki.cert_dir("certs-other", Some(&other));
    let without = pki.cert_dir("certs-none", None);
    let dir_arg = |d: &std::path::Path| d.display().to_string();

    let image = OciImage::build("v1");
    let dest = registry.docker_ref("stella-ops/app", "v1");
    let push = |cert_dir: &str| {
        registry::skopeo(
            &[
                "copy",
                "--preserve-digests",
                "--retry-times",
                "0",
                "--dest-tls-verify=false",
                "--dest-cert-dir",
                cert_dir,
                "--dest-creds",
                &creds,
                &image.reference(),
                &dest,
            ],
            registry::SKOPEO_TIMEOUT,
        )
    };

    // Another certificate, then none: the realm refuses, nothing is pushed.
    let before = rejected_by_reason(&envoy);
    let refused_other = push(&dir_arg(&with_other));
    assert!(!refused_other.success, "{refused_other}");
    let refused_none = push(&dir_arg(&without));
    assert!(!refused_none.success, "{refused_none}");
    let delta = delta_after(&envoy, &before, 2);
    assert!(
        delta.get("mtls_mismatch").copied().unwrap_or(0) >= 1
            && delta.get("mtls_no_certificate").copied().unwrap_or(0) >= 1
            && delta
                .keys()
                .all(|k| k == "mtls_mismatch" || k == "mtls_no_certificate"),
        "{delta:?}\n{refused_other}\n{refused_none}"
    );
    let issued_before = envoy.issued();
    assert_eq!(issued_before, 0);

    // The right certificate: push, then pull back the same digest.
    let pushed = push(&dir_arg(&with_cert));
    assert!(pushed.success, "{pushed}");
    let pulled_dir = registry::empty_oci_dir();
    let pulled = registry::skopeo(
        &[
            "copy",
            "--preserve-digests",
            "--retry-times",
            "0",
            "--src-tls-verify=false",
            "--src-cert-dir",
            &dir_arg(&with_cert),
            "--src-creds",
            &creds,
            &dest,
            &registry::oci_ref(pulled_dir.path(), "v1"),
        ],
        registry::SKOPEO_TIMEOUT,
    );
    assert!(pulled.success, "{pulled}");
    assert_eq!(
        registry::oci_manifest_digest(pulled_dir.path(), "v1").as_deref(),
        Ok(image.manifest_digest.as_str())
    );
    assert!(envoy.issued_by("get") >= 2);

    // The gateway saw skopeo's token requests come with that certificate.
    let digest_hex = hex_of_b64url(&cert.x5t_s256);
    let log = access_log(&envoy, 4);
    let skopeo_ok: Vec<&Value> = log
        .iter()
        .filter(|l| {
            l["status"] == 200
                && l["client_cert_sha256"].as_str() == Some(digest_hex.as_str())
                && l["method"] == "GET"
        })
        .collect();
    assert!(skopeo_ok.len() >= 2, "{log:?}");
}

#[test]
fn hostile_and_failed_dpop_proofs() {
    let g = Gateway::start(|c| {
        c["authority"]["requireSenderConstraint"] = json!(true);
    });
    let path = token_path(SERVICE, &[PULL]);
    let dpop = DpopKey::generate(&g.keys, "client");
    let op = optok(&g.keys, |s| s.jkt = Some(dpop.jkt.clone()));
    let auth = format!("DPoP {op}");

    // An 8192-bit RSA proof key with a 34-bit exponent, PS512, a garbage signature: used
    // to cost ~18 ms of signature work; now refused on the key before any.
    let mut n = vec![0xa5u8; 1024];
    n[0] = 0xc3;
    let header = json!({"typ": "dpop+jwt", "alg": "PS512",
        "jwk": {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode([2u8, 0, 0, 0, 1])}});
    let claims =
        json!({"jti": "hostile", "htm": "GET", "htu": g.realm, "iat": now(), "ath": ath(&op)});
    let hostile = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([7u8; 1024])
    );
    let honest_dpop = |after: &str| {
        let proof = dpop.proof("GET", &g.realm, &op);
        let r = g.get(&path, &[("authorization", &auth), ("dpop", &proof)]);
        assert_eq!(r.status, 200, "an honest proof after {after}: {r:?}");
    };
    for _ in 0..3 {
        let before = counter(&g.envoy, "dpop_jwk");
        let r = g.get(&path, &[("authorization", &auth), ("dpop", &hostile)]);
        assert_eq!(
            (r.status, problem_type(&r).as_str()),
            (401, "urn:registry-token-filter:error:dpop_jwk"),
            "{r:?}"
        );
        assert!(counter(&g.envoy, "dpop_jwk") >= before + 1.0);
        honest_dpop("a hostile proof");
    }

    // A correctly signed proof with a wrong ath is refused; the honest retry with the
    // same jti is accepted (the refusal did not use the jti up); replaying it is not.
    let jti = "retry-with-the-same-jti";
    let wrong = dpop.proof_with("GET", &g.realm, &op, |c| {
        c["jti"] = json!(jti);
        c["ath"] = json!(ath("another token"));
    });
    let before = counter(&g.envoy, "dpop_ath");
    let r = g.get(&path, &[("authorization", &auth), ("dpop", &wrong)]);
    assert_eq!(
        problem_type(&r),
        "urn:registry-token-filter:error:dpop_ath",
        "{r:?}"
    );
    assert_eq!(counter(&g.envoy, "dpop_ath"), before + 1.0);
    let retry = dpop.proof_with("GET", &g.realm, &op, |c| c["jti"] = json!(jti));
    let r = g.get(&path, &[("authorization", &auth), ("dpop", &retry)]);
    assert_eq!(r.status, 200, "the honest retry with the same jti: {r:?}");
    let r = g.get(&path, &[("authorization", &auth), ("dpop", &retry)]);
    assert_eq!(
        problem_type(&r),
        "urn:registry-token-filter:error:dpop_replay",
        "{r:?}"
    );

    // A valid proof from another key than the bound one.
    let other = DpopKey::generate(&g.keys, "other");
    let r = g.get(
        &path,
        &[
            ("authorization", &auth),
            ("dpop", &other.proof("GET", &g.realm, &op)),
        ],
    );
    assert_eq!(
        problem_type(&r),
        "urn:registry-token-filter:error:dpop_jkt_mismatch",
        "{r:?}"
    );
    honest_dpop("a proof from another key");
    g.assert_no_trap();
}
