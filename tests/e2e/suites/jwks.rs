//! Issue "Token exchange", "Must show (end-to-end, with real parts)": the real Envoy with the
//! real filter is the Bearer token realm of a real registry (Debian's `docker-registry`,
//! distribution 2.8), and a real client (`skopeo`) pushes and pulls through it with the
//! OpToks minted by an independent test Authority (`jsonwebtoken`).
//!
//! 1. push and pull round trips with `x5c` (self-signed signing certificate), with the
//!    libtrust `kid` only, and with a stable CA (`x5c` = leaf + CA, the registry trusts
//!    the CA only);
//! 2. a pull-only plan cannot push but pulls what an enterprise plan pushed;
//! 3. refusals, each moving `registry_token_rejected_total{reason=…}` by exactly one;
//! 4. remote JWKS through OIDC discovery from an Authority that starts down, comes up, and
//!    publishes a new key; fetched by one VM for the whole process.
//!
//! Also: a `jwks_uri` with a query string is fetched with its query (fails today: the
//! filter drops the query, see `registry_token_core::remote::parse_discovery`).
//!
//! Run with `make wasm && cargo test -p registry-token-e2e --test exchange -- --test-threads 2`
//! (`make apt-deps` installs `docker-registry` and `skopeo`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use registry_token_e2e::authority::{AuthorityKey, OpTokSpec};
use registry_token_e2e::gateway::{
    bearer, decode_unverified, filter_config, openssl, optok, start_gateway, token_path,
    verify_registry_token, ConfigForm, GatewaySpec, KeyKind, SigningKey, TestKeys,
    AUTHORITY_ISSUER, KEYPEM_ENV, REVOKED_LICENSE, SERVICE,
};
use registry_token_e2e::registry::{
    self, creds, empty_oci_dir, oci_manifest_digest, oci_ref, OciImage, Registry, RegistryAuth,
    OCI_MANIFEST,
};
use registry_token_e2e::{prom_issued, prom_samples, prom_value, Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

/// The realm of the test configurations: the gateway's own listener.
const REALM: &str = "http://127.0.0.1:{{LISTEN_PORT}}/token";
/// Counters of a request are bumped just after the reply is sent.
const COUNTER_WAIT: Duration = Duration::from_secs(5);

fn enterprise(keys: &TestKeys) -> String {
    optok(keys, |s| s.plan = Some("enterprise".into()))
}

fn pull_only(keys: &TestKeys) -> String {
    optok(keys, |s| s.plan = Some("pullonly".into()))
}

fn token(envoy: &Envoy, authorization: Option<&str>, scopes: &[&str]) -> Reply {
    let path = token_path(SERVICE, scopes);
    match authorization {
        Some(a) => envoy.get(&path, &[("authorization", a)]),
        None => envoy.get(&path, &[]),
    }
}

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

/// Asks the gateway for a token directly and verifies it with `jsonwebtoken` against
/// `public_pem`: (header, claims, token).
fn minted(envoy: &Envoy, optok: &str, scope: &str, public_pem: &str) -> (Value, Value, String) {
    let reply = token(envoy, Some(&bearer(optok)), &[scope]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = reply.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {reply:?}"))
        .to_owned();
    let (header, claims) =
        verify_registry_token(&token, public_pem).unwrap_or_else(|e| panic!("{e}"));
    (header, claims, token)
}

/// The gateway with `config` (signing key `key_pem`) and a registry trusting
/// `root_certs_pem` whose realm is the gateway's `/token`.
fn exchange(
    keys: &TestKeys,
    config: &Value,
    key_pem: &str,
    root_certs_pem: &str,
) -> (Envoy, Registry) {
    let envoy = start_gateway(
        config,
        ConfigForm::StringValue,
        keys,
        EnvoyOptions::new().env(KEYPEM_ENV, key_pem),
    );
    let realm = format!("{}/token", envoy.base_url());
    let registry = Registry::start(&RegistryAuth::new(&realm, root_certs_pem))
        .unwrap_or_else(|e| panic!("{e}"));
    (envoy, registry)
}

/// Pushes a fresh image to `repo:tag` with `optok`, asserts success and returns it.
fn push(registry: &Registry, optok: &str, repo: &str, tag: &str) -> OciImage {
    let image = OciImage::build(tag);
    let run = registry::copy(
        &image.reference(),
        &registry.docker_ref(repo, tag),
        None,
        Some(&creds(optok)),
    );
    assert!(run.success, "push to {repo}:{tag} failed:\n{run}");
    image
}

/// Pulls `repo:tag` with `optok` into a fresh OCI layout and returns its manifest digest.
fn pull(registry: &Registry, optok: &str, repo: &str, tag: &str) -> String {
    let dir = empty_oci_dir();
    let run = registry::copy(
        &registry.docker_ref(repo, tag),
        &oci_ref(dir.path(), tag),
        Some(&creds(optok)),
        None,
    );
    assert!(run.success, "pull of {repo}:{tag} failed:\n{run}");
    oci_manifest_digest(dir.path(), tag).unwrap_or_else(|e| panic!("{e}"))
}

/// The registry's own view: `GET /v2/<repo>/manifests/<tag>` with a token from the
/// gateway, returning `Docker-Content-Digest`.
fn registry_digest(
    envoy: &Envoy,
    registry: &Registry,
    optok: &str,
    repo: &str,
    tag: &str,
    public_pem: &str,
) -> String {
    let (_, _, tok) = minted(envoy, optok, &format!("repository:{repo}:pull"), public_pem);
    let reply = registry_token_e2e::get(
        &format!("{}/v2/{repo}/manifests/{tag}", registry.url()),
        &[
            ("authorization", &format!("Bearer {tok}")),
            ("accept", OCI_MANIFEST),
        ],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .header("docker-content-digest")
        .unwrap_or_else(|| panic!("no Docker-Content-Digest: {reply:?}"))
        .to_owned()
}

/// Push with an enterprise OpTok, pull back into a fresh layout, compare digests (skopeo
/// with `--preserve-digests`, and the registry's own `Docker-Content-Digest`).
fn round_trip(envoy: &Envoy, registry: &Registry, keys: &TestKeys, public_pem: &str) {
    let repo = "stella-ops/private/app";
    let op = enterprise(keys);
    let issued_before = issued(envoy);
    let image = push(registry, &op, repo, "v1");
    assert_eq!(pull(registry, &op, repo, "v1"), image.manifest_digest);
    assert_eq!(
        registry_digest(envoy, registry, &op, repo, "v1", public_pem),
        image.manifest_digest
    );
    // Every token the registry accepted came from the filter.
    assert!(
        issued(envoy) > issued_before,
        "registry_token_issued_total did not move"
    );
}

fn issued(envoy: &Envoy) -> f64 {
    prom_issued(&envoy.stats_prometheus()).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// 1. Push and pull with tokens the filter minted.
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// 2. A pull-only plan.
// ---------------------------------------------------------------------------------------

#[test]
fn a_pull_only_plan_pulls_but_cannot_push() {
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
    let repo = "stella-ops/private/base";
    let image = push(&registry, &enterprise(&keys), repo, "v1");

    let ro = pull_only(&keys);
    // The realm grants what was asked ∩ the plan: pull only.
    let (_, claims, _) = minted(
        &envoy,
        &ro,
        &format!("repository:{repo}:pull,push"),
        &public,
    );
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": repo, "actions": ["pull"]}])
    );

    let rejected_before = rejected(&envoy);
    let issued_before = issued(&envoy);
    let refused = OciImage::build("v2");
    let run = registry::copy(
        &refused.reference(),
        &registry.docker_ref(repo, "v2"),
        None,
        Some(&creds(&ro)),
    );
    assert!(!run.success, "a pull-only plan pushed:\n{run}");
    let err = run.stderr.to_lowercase();
    assert!(
        err.contains("denied") || err.contains("unauthorized"),
        "skopeo's error names neither denied nor unauthorized:\n{run}"
    );
    eprintln!("pull-only push refused as expected: {}", run.stderr.trim());
    // The realm granted (pull only) and refused nothing: the registry enforced the grant.
    assert!(
        issued(&envoy) > issued_before,
        "no token issued for the push"
    );
    assert_eq!(rejected(&envoy), rejected_before);

    assert_eq!(pull(&registry, &ro, repo, "v1"), image.manifest_digest);

    // Nothing of the refused push was tagged.
    let (_, _, tok) = minted(
        &envoy,
        &enterprise(&keys),
        &format!("repository:{repo}:pull"),
        &public,
    );
    let tags = registry_token_e2e::get(
        &format!("{}/v2/{repo}/tags/list", registry.url()),
        &[("authorization", &format!("Bearer {tok}"))],
    );
    assert_eq!(tags.status, 200, "{tags:?}");
    assert_eq!(tags.json()["tags"], json!(["v1"]), "{tags:?}");
}

// ---------------------------------------------------------------------------------------
// 3. Refusals and their counters.
// ---------------------------------------------------------------------------------------

/// `registry_token_rejected_total` by `reason` label.
fn rejected(envoy: &Envoy) -> BTreeMap<String, f64> {
    prom_samples(&envoy.stats_prometheus())
        .into_iter()
        .filter(|(name, _, _)| name == "registry_token_rejected_total")
        .map(|(_, labels, v)| {
            let reason = labels
                .iter()
                .find(|(l, _)| l == "reason")
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            (reason, v)
        })
        .collect()
}

/// Sends the request, checks status and problem type, then waits until
/// `registry_token_rejected_total{reason}` moved by one and checks that nothing else in the
/// two counters moved.
fn expect_refusal(
    envoy: &Envoy,
    authorization: Option<&str>,
    scopes: &[&str],
    status: u16,
    reason: &str,
) -> Reply {
    let before = rejected(envoy);
    let issued_before = issued(envoy);
    let reply = token(envoy, authorization, scopes);
    assert_eq!(reply.status, status, "{reason}: {reply:?}");
    assert_eq!(
        reply.json()["type"],
        format!("urn:registry-token-filter:error:{reason}"),
        "{reply:?}"
    );
    let mut want = before.clone();
    *want.entry(reason.to_owned()).or_insert(0.0) += 1.0;
    let deadline = Instant::now() + COUNTER_WAIT;
    let mut after = rejected(envoy);
    while after.get(reason) != want.get(reason) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        after = rejected(envoy);
    }
    assert_eq!(
        after, want,
        "{reason}: the rejection counters moved wrongly"
    );
    assert_eq!(issued(envoy), issued_before, "{reason}: a token was issued");
    reply
}

fn unsigned_none(claims: &Value, kid: &str) -> String {
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn refusals_answer_the_right_status_and_count_once_each() {
    let keys = TestKeys::generate();
    let envoy = start_gateway(
        &filter_config(&keys, REALM),
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new(),
    );
    let pull = "repository:stella-ops/public/base:pull";
    let kid = keys.authority.kid().to_owned();

    let reply = expect_refusal(&envoy, None, &[pull], 401, "missing_credentials");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{}/token\"", envoy.base_url())),
        "{reply:?}"
    );

    let good = bearer(&optok(&keys, |_| {}));
    expect_refusal(
        &envoy,
        Some(&good),
        &["repository:Stella/UPPER:pull"],
        400,
        "malformed_scope",
    );
    expect_refusal(&envoy, Some(&good), &["nonsense"], 400, "malformed_scope");

    let revoked = bearer(&optok(&keys, |s| {
        s.license = Some(REVOKED_LICENSE.into());
    }));
    expect_refusal(&envoy, Some(&revoked), &[pull], 403, "license_revoked");

    let expired = optok(&keys, |s| s.time_offset = -3600);
    let wrong_iss = optok(&keys, |s| s.issuer = "https://evil.example".into());
    let wrong_aud = optok(&keys, |s| s.audience = "someone-else".into());
    let none = unsigned_none(&OpTokSpec::default().claims(), &kid);
    // HS256 keyed with the Authority's public key: the classic algorithm confusion.
    let public_pem = openssl(
        keys.dir(),
        &[
            "pkey",
            "-in",
            &keys.authority_key_path.display().to_string(),
            "-pubout",
        ],
    );
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    hs_header.typ = Some("at+jwt".into());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &OpTokSpec::default().claims(),
        &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    for (what, tok, reason) in [
        ("expired", expired, "expired"),
        ("wrong issuer", wrong_iss, "wrong_issuer"),
        ("wrong audience", wrong_aud, "wrong_audience"),
        ("alg none", none, "disallowed_alg"),
        ("HS256 with the public key", hs256, "disallowed_alg"),
    ] {
        let reply = expect_refusal(&envoy, Some(&bearer(&tok)), &[pull], 401, reason);
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=") && challenge.contains("invalid_token"),
            "{what}: {reply:?}"
        );
    }
    // And the good OpTok still works.
    assert_eq!(token(&envoy, Some(&good), &[pull]).status, 200);
}

// ---------------------------------------------------------------------------------------
// 4. Remote JWKS from an Authority that starts down.
// ---------------------------------------------------------------------------------------

/// What the test Authority does.
#[derive(Clone)]
enum Mode {
    /// Accepts connections and closes them at once (Envoy sees a reset: 503).
    Down,
    /// Serves the discovery document and this JWKS.
    Serving(Value),
}

/// One request (or refused connection: `path` empty) the Authority saw.
#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    path: String,
}

struct Shared {
    mode: Mode,
    hits: Vec<Hit>,
    /// The `jwks_uri` path (and query) the discovery document names.
    jwks_path: String,
}

/// A tiny HTTP/1.1 Authority: `/.well-known/openid-configuration` and `/jwks.json`,
/// `Connection: close` on every answer.
struct AuthorityServer {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/jwks.json";

impl AuthorityServer {
    fn start(mode: Mode) -> AuthorityServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| panic!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let shared = Arc::new(Mutex::new(Shared {
            mode,
            hits: Vec::new(),
            jwks_path: JWKS_PATH.to_owned(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || serve(conn, &s, port));
            }
        });
        AuthorityServer {
            port,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// Publishes the JWKS at `path_and_query` instead of [`JWKS_PATH`].
    fn set_jwks_path(&self, path_and_query: &str) {
        path_and_query.clone_into(&mut self.lock().jwks_path);
    }

    fn hits(&self) -> Vec<Hit> {
        self.lock().hits.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn metadata_url(&self) -> String {
        format!("http://127.0.0.1:{}{DISCOVERY_PATH}", self.port)
    }

    /// A STATIC Envoy cluster named `authority` reaching this server.
    fn cluster_yaml(&self) -> String {
        format!(
            "- name: authority\n  type: STATIC\n  connect_timeout: 1s\n  load_assignment:\n    \
             cluster_name: authority\n    endpoints:\n    - lb_endpoints:\n      - endpoint:\n          \
             address:\n            socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            self.port
        )
    }
}

impl Drop for AuthorityServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!("test Authority saw: {:#?}", self.hits());
        }
    }
}

fn serve(mut conn: TcpStream, shared: &Mutex<Shared>, port: u16) {
    let at = Instant::now();
    let (mode, jwks_path) = {
        let s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (s.mode.clone(), s.jwks_path.clone())
    };
    let record = |path: &str| {
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hits
            .push(Hit {
                at,
                path: path.to_owned(),
            });
    };
    let Mode::Serving(jwks) = mode else {
        record("");
        let _ = conn.shutdown(Shutdown::Both);
        return;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    record(&path);
    let (status, body) = match path.as_str() {
        DISCOVERY_PATH => (
            "200 OK",
            json!({
                "issuer": AUTHORITY_ISSUER,
                "jwks_uri": format!("http://127.0.0.1:{port}{jwks_path}"),
                "id_token_signing_alg_values_supported": ["RS256"]
            }),
        ),
        p if p == jwks_path => ("200 OK", jwks),
        _ => ("404 Not Found", json!({"error": "not found"})),
    };
    let body = body.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

/// Polls `/token` with `authorization` until it answers `want` (or `timeout`); returns the
/// last reply and how long it took.
fn poll_token(
    envoy: &Envoy,
    authorization: &str,
    scope: &str,
    want: u16,
    timeout: Duration,
) -> (Reply, Duration) {
    let started = Instant::now();
    loop {
        let reply = token(envoy, Some(authorization), &[scope]);
        if reply.status == want || started.elapsed() >= timeout {
            return (reply, started.elapsed());
        }
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn remote_jwks_from_an_authority_that_starts_down_and_publishes_a_new_key() {
    let test_started = Instant::now();
    let keys = TestKeys::generate();
    openssl(
        keys.dir(),
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "authority-b.key.pem",
        ],
    );
    let key_b = AuthorityKey::from_file(&keys.dir().join("authority-b.key.pem"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(key_b.kid(), keys.authority.kid());
    let jwk_a = keys.authority.jwk();

    let server = AuthorityServer::start(Mode::Down);
    // The periodic refresh is out of the picture (an hour): key B can only arrive through
    // the early refresh an unknown `kid` triggers (at most every 30 s).
    let config = remote_config(&keys, &server, 3600);
    let envoy = GatewaySpec::new(&config)
        .extra_clusters(&server.cluster_yaml())
        .start(&keys, EnvoyOptions::new().concurrency(2));
    let scope = "repository:stella-ops/public/base:pull";
    let op_a = bearer(&optok(&keys, |_| {}));

    // Down at start: 503 with Retry-After, counted as keys_unavailable.
    let reply = token(&envoy, Some(&op_a), &[scope]);
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        reply
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s > 0)),
        "{reply:?}"
    );
    assert_eq!(
        reply.json()["type"],
        "urn:registry-token-filter:error:keys_unavailable"
    );
    // While down, one VM retries every 5 s (RETRY_SECONDS): the second attempt comes
    // within a few seconds. (A fetch dispatched from a VM that Envoy destroys before the
    // answer, such as the configuration-validation VM, would strand the lease for its 15 s
    // and show here as a single attempt.)
    let deadline = Instant::now() + Duration::from_secs(12);
    while server.hits().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the Authority saw {:?} in 12 s while down: no retry every 5 s",
            server.hits()
        );
        assert_eq!(token(&envoy, Some(&op_a), &[scope]).status, 503);
        thread::sleep(Duration::from_millis(250));
    }
    let prom = envoy.stats_prometheus();
    assert!(
        prom_value(
            &prom,
            r#"registry_token_rejected_total{reason="keys_unavailable"}"#
        )
        .is_some_and(|v| v >= 2.0),
        "{prom}"
    );

    // Up with key A: 200 within a few seconds, no restart.
    server.set(Mode::Serving(json!({"keys": [jwk_a.clone()]})));
    let up_at = Instant::now();
    // The next retry is at most 5 s away (plus the 1 s tick and whole-second clocks).
    let (reply, took) = poll_token(&envoy, &op_a, scope, 200, Duration::from_secs(10));
    assert_eq!(reply.status, 200, "not up after {took:?}: {reply:?}");
    eprintln!("Authority up → 200 after {took:.1?}");

    // An OpTok from the new key B: unknown until B is published.
    let op_b = bearer(&OpTokSpec::default().mint(&key_b));
    let reply = token(&envoy, Some(&op_b), &[scope]);
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.json()["type"],
        "urn:registry-token-filter:error:unknown_key"
    );
    server.set(Mode::Serving(json!({"keys": [jwk_a, key_b.jwk()]})));
    // The unknown-kid refresh is rate-limited to one per 30 s after the last fetch.
    let (reply, took) = poll_token(&envoy, &op_b, scope, 200, Duration::from_secs(45));
    assert_eq!(
        reply.status, 200,
        "key B not accepted {took:?} after it was published: {reply:?}"
    );
    eprintln!(
        "key B published → accepted after {took:.1?} ({:.1?} after the Authority came up)",
        up_at.elapsed()
    );
    // Key A still works, and the issued token is a real one.
    let reply = token(&envoy, Some(&op_a), &[scope]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let tok = reply.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(decode_unverified(&tok).is_ok());

    // One VM fetches for the process. Envoy runs three VMs that tick here (the main
    // thread's and one per worker of --concurrency 2); if each fetched on its own, every
    // fetch would come as a burst of up to three requests within the same second. With the
    // shared lease we expect exactly one discovery request per attempt: attempts while down
    // every 5 s, then the first good fetch, then the one early refresh for key B. We allow
    // one more (a fetch may straddle a second boundary of the 30 s limit, or a B request
    // that failed in the same second as the refresh asks for another one 30 s later), and
    // check that no two attempts are closer than 3 s (the 5 s retry schedule minus the
    // whole-second clock of the filter).
    let hits = server.hits();
    let attempts: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.path.is_empty() || h.path == DISCOVERY_PATH)
        .collect();
    for pair in attempts.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_secs(3),
            "two metadata fetches {gap:?} apart: one per VM, not one per process?\n{hits:#?}"
        );
    }
    let served: Vec<&Hit> = hits.iter().filter(|h| h.path == DISCOVERY_PATH).collect();
    let jwks_fetches = hits.iter().filter(|h| h.path == JWKS_PATH).count();
    assert!(
        (2..=3).contains(&served.len()) && jwks_fetches == served.len(),
        "expected 2 (at most 3) metadata and as many JWKS fetches once up:\n{hits:#?}"
    );
    // Connections closed while down carry no path.
    let down = hits.iter().filter(|h| h.path.is_empty()).count();
    assert!(
        (2..=3).contains(&down),
        "{down} attempts while down:\n{hits:#?}"
    );
    eprintln!(
        "Authority saw {} attempt(s) while down, {} metadata + {jwks_fetches} JWKS fetches \
         once up; test took {:.1?}",
        down,
        served.len(),
        test_started.elapsed()
    );
}

/// The filter configuration reading its keys from `server` through the `authority` cluster.
fn remote_config(keys: &TestKeys, server: &AuthorityServer, refresh_seconds: u64) -> Value {
    let mut config = filter_config(keys, REALM);
    let authority = config["authority"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("no authority"));
    authority.remove("jwks");
    authority.insert("metadataUrl".into(), json!(server.metadata_url()));
    authority.insert("cluster".into(), json!("authority"));
    authority.insert("jwksRefreshSeconds".into(), json!(refresh_seconds));
    config
}

#[test]
fn a_jwks_uri_with_a_query_is_fetched_with_its_query() {
    // Some Authorities publish a jwks_uri with a query (Azure AD B2C:
    // `…/discovery/v2.0/keys?p=b2c_1_signin`); the keys exist only at that URL.
    let keys = TestKeys::generate();
    let server = AuthorityServer::start(Mode::Serving(keys.authority_jwks()));
    let jwks_path = "/discovery/v2.0/keys?p=b2c_1_signin";
    server.set_jwks_path(jwks_path);
    let envoy = GatewaySpec::new(&remote_config(&keys, &server, 300))
        .extra_clusters(&server.cluster_yaml())
        .start(&keys, EnvoyOptions::new());
    let op = bearer(&optok(&keys, |_| {}));
    // Up from the start: the first tick fetches; allow one 5 s retry on top.
    let (reply, took) = poll_token(
        &envoy,
        &op,
        "repository:stella-ops/public/base:pull",
        200,
        Duration::from_secs(10),
    );
    let paths: Vec<String> = server.hits().into_iter().map(|h| h.path).collect();
    assert!(
        paths.iter().any(|p| p == jwks_path),
        "the filter never asked for {jwks_path:?} (it asked for {paths:?})"
    );
    assert_eq!(reply.status, 200, "no keys after {took:?}: {reply:?}");
}

/// The counted refusals of one reason.
fn rejected_count(envoy: &Envoy, reason: &str) -> f64 {
    prom_value(
        &envoy.stats_prometheus(),
        &format!(r#"registry_token_rejected_total{{reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

/// Asserts a 503 of `reason` with a Retry-After.
fn assert_unavailable(reply: &Reply, reason: &str) {
    assert_eq!(reply.status, 503, "{reply:?}");
    assert!(
        reply
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s > 0)),
        "{reply:?}"
    );
    assert_eq!(
        reply.json()["type"],
        format!("urn:registry-token-filter:error:{reason}"),
        "{reply:?}"
    );
}

#[test]
fn keys_withdrawn_by_the_authority_are_not_trusted_any_more() {
    // The Authority's JWKS fetches fine but holds no usable key (an empty set, or only
    // keys the filter cannot use): the last good keys must not stay trusted.
    let keys = TestKeys::generate();
    let jwk_a = keys.authority.jwk();
    let server = AuthorityServer::start(Mode::Serving(json!({"keys": [jwk_a.clone()]})));
    // Refresh every 30 s (the minimum); while withdrawn, the filter asks every 5 s.
    let envoy = GatewaySpec::new(&remote_config(&keys, &server, 30))
        .extra_clusters(&server.cluster_yaml())
        .start(&keys, EnvoyOptions::new().concurrency(2));
    let scope = "repository:stella-ops/public/base:pull";
    let op = bearer(&optok(&keys, |_| {}));
    let (reply, took) = poll_token(&envoy, &op, scope, 200, Duration::from_secs(10));
    assert_eq!(reply.status, 200, "no keys after {took:?}: {reply:?}");

    server.set(Mode::Serving(
        json!({"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}]}),
    ));
    // The next periodic refresh (≤ 30 s plus the tick) withdraws the keys.
    let (reply, took) = poll_token(&envoy, &op, scope, 503, Duration::from_secs(40));
    assert_unavailable(&reply, "keys_withdrawn");
    eprintln!("keys withdrawn → 503 after {took:.1?}");
    assert!(rejected_count(&envoy, "keys_withdrawn") >= 1.0);
    assert!(
        envoy.wait_for_log(Duration::from_secs(5), |log| log
            .contains("the Authority withdrew its keys")),
        "no log line"
    );

    // Published again: 200 within a retry interval.
    server.set(Mode::Serving(json!({"keys": [jwk_a]})));
    let (reply, took) = poll_token(&envoy, &op, scope, 200, Duration::from_secs(10));
    assert_eq!(reply.status, 200, "still refused {took:?} later: {reply:?}");
}

#[test]
fn keys_are_dropped_once_no_refresh_succeeded_for_max_stale_seconds() {
    // jwksRefreshSeconds 30 and jwksMaxStaleSeconds 30 (the smallest allowed): the
    // Authority goes down right after the first fetch; 30 s later the keys are dropped.
    let keys = TestKeys::generate();
    let jwk_a = keys.authority.jwk();
    let server = AuthorityServer::start(Mode::Serving(json!({"keys": [jwk_a.clone()]})));
    let mut config = remote_config(&keys, &server, 30);
    config["authority"]["jwksMaxStaleSeconds"] = json!(30);
    let envoy = GatewaySpec::new(&config)
        .extra_clusters(&server.cluster_yaml())
        .start(&keys, EnvoyOptions::new().concurrency(2));
    let scope = "repository:stella-ops/public/base:pull";
    let op = bearer(&optok(&keys, |_| {}));
    let (reply, took) = poll_token(&envoy, &op, scope, 200, Duration::from_secs(10));
    assert_eq!(reply.status, 200, "no keys after {took:?}: {reply:?}");
    server.set(Mode::Down);
    let down_at = Instant::now();
    // Kept while failing (last good), until 30 s after the good fetch.
    let reply = token(&envoy, Some(&op), &[scope]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let (reply, took) = poll_token(&envoy, &op, scope, 503, Duration::from_secs(40));
    assert_unavailable(&reply, "keys_stale");
    assert!(
        took >= Duration::from_secs(20),
        "dropped {took:?} after the Authority went down, before max-stale"
    );
    assert!(rejected_count(&envoy, "keys_stale") >= 1.0);
    eprintln!(
        "Authority down → keys_stale after {:.1?}",
        down_at.elapsed()
    );
    // Back up: trusted again at the next retry.
    server.set(Mode::Serving(json!({"keys": [jwk_a]})));
    let (reply, took) = poll_token(&envoy, &op, scope, 200, Duration::from_secs(10));
    assert_eq!(reply.status, 200, "still refused {took:?} later: {reply:?}");
}
