//! The token exchange with a real registry (Debian's `docker-registry`, distribution 2.8)
//! and a real client (`skopeo`): the helpers every registry round trip here and in
//! `signing` uses (a gateway and a registry whose realm it is, push, pull, the registry's
//! own digest), a pull-only plan that pulls what an enterprise plan pushed but cannot
//! push, and `POST /token` answered from the form body (the OAuth2 password and refresh
//! grants; Envoy calls the body callback after a paused header callback only with
//! `allow_on_headers_stop_iteration: true`, which every shipped configuration has), also
//! when trailers end it (HTTP/2 DATA then trailers, HTTP/1.1 chunked with
//! `enable_trailers`): decided by the filter, never passed to the route.

use std::collections::BTreeMap;

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, start_gateway, token_path, verify_registry_token, ConfigForm,
    GatewaySpec, TestKeys, KEYPEM_ENV, SERVICE,
};
use registry_token_e2e::registry::{
    self, creds, empty_oci_dir, oci_manifest_digest, oci_ref, OciImage, Registry, RegistryAuth,
    OCI_MANIFEST,
};
use registry_token_e2e::{
    issued_stat, post, prom_issued, prom_samples, try_request, Envoy, EnvoyOptions,
};
use serde_json::{json, Value};

use super::common::{token, COUNTER_WAIT, LAG, PULL, REALM};

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
pub(crate) fn round_trip(envoy: &Envoy, registry: &Registry, keys: &TestKeys, public_pem: &str) {
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

/// An OpTok of the enterprise plan (pull and push of `stella-ops/**`).
pub(crate) fn enterprise(keys: &TestKeys) -> String {
    optok(keys, |s| s.plan = Some("enterprise".into()))
}

fn pull_only(keys: &TestKeys) -> String {
    optok(keys, |s| s.plan = Some("pullonly".into()))
}

/// Asks the gateway for a token directly and verifies it with `jsonwebtoken` against
/// `public_pem`: (header, claims, token).
pub(crate) fn minted(
    envoy: &Envoy,
    optok: &str,
    scope: &str,
    public_pem: &str,
) -> (Value, Value, String) {
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
pub(crate) fn exchange(
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

/// `registry_token_issued_total`, every grant together.
pub(crate) fn issued(envoy: &Envoy) -> f64 {
    prom_issued(&envoy.stats_prometheus()).unwrap_or(0.0)
}

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

/// `registry_token_rejected_total` by `reason` label.
pub(crate) fn rejected(envoy: &Envoy) -> BTreeMap<String, f64> {
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

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[test]
fn password_and_refresh_grants_are_answered_from_the_body() {
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["refreshTokens"] = json!({
        "lifetimeSeconds": 3600,
        "secrets": ["an-e2e-refresh-token-secret-of-32-chars-or-more"]
    });
    let envoy = start_gateway(&config, ConfigForm::StringValue, &keys, EnvoyOptions::new());
    let url = format!("{}/token", envoy.base_url());
    let op = optok(&keys, |_| {});

    // The password grant (containerd), with a refresh token asked for.
    let body = format!(
        "grant_type=password&username=dev-user&password={op}&service={SERVICE}\
         &scope={}&client_id=containerd-client&access_type=offline",
        PULL.replace(':', "%3A").replace('/', "%2F")
    );
    let reply = try_request("POST", &url, &[FORM], Some(body.as_bytes()))
        .unwrap_or_else(|e| panic!("the password grant got no answer: {e}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = reply.json();
    assert!(answer["access_token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    let refresh = answer["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // The refresh grant (the Docker daemon after docker login).
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&scope={PULL}&client_id=docker"
    );
    let reply = post(&url, &[FORM], body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.json()["access_token"].is_string());

    // An error is RFC 6749 JSON, and the next honest requests still pass.
    let reply = post(&url, &[FORM], b"grant_type=client_credentials");
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
    let reply = envoy.get(
        &token_path(SERVICE, &[PULL]),
        &[("authorization", &bearer(&op))],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = post(&url, &[FORM], body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    // Other POSTs are not held: they reach the route (quickstart's 404).
    let reply = post(&format!("{}/v2/", envoy.base_url()), &[FORM], b"x=1");
    assert_eq!(reply.status, 404, "{reply:?}");
}

/// The gateway of `config` with `enable_trailers` on the listener's HTTP/1.1 options
/// (HTTP/2 always carries trailers), started like [`start_gateway`] does.
fn gateway_with_trailers(config: &Value, keys: &TestKeys) -> Envoy {
    let spec = GatewaySpec::new(config);
    let yaml = spec.yaml();
    let at = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("stat_prefix:"))
        .expect("the quickstart's connection manager has a stat_prefix");
    let indent = &at[..at.len() - at.trim_start().len()];
    let yaml = yaml.replacen(
        &format!("{at}\n"),
        &format!("{at}\n{indent}http_protocol_options: {{ enable_trailers: true }}\n"),
        1,
    );
    let mut opts = EnvoyOptions::new().env(KEYPEM_ENV, keys.signing_key_pem());
    for k in spec.all_host_env_keys() {
        if k != KEYPEM_ENV {
            opts = opts.env(&k, "");
        }
    }
    Envoy::start(&yaml, opts).unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
}

/// `POST path` over HTTP/2 without TLS (prior knowledge): the headers, then `body` in one
/// DATA frame that does not end the stream (none when empty), then a trailers frame that
/// ends it. Returns the status and the body of the answer.
fn h2_post_with_trailers(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header(FORM.0, FORM.1)
            .body(())
            .unwrap();
        let (response, mut stream) = client.send_request(request, false).unwrap();
        if !body.is_empty() {
            stream
                .send_data(bytes::Bytes::copy_from_slice(body), false)
                .unwrap();
        }
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-client-checksum", http::HeaderValue::from_static("1"));
        stream.send_trailers(trailers).unwrap();
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        (status, String::from_utf8_lossy(&out).into_owned())
    };
    runtime
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(15), exchange).await
        })
        .unwrap_or_else(|_| panic!("POST {path} over h2c got no answer in 15 s"))
}

/// `POST path` over HTTP/1.1, chunked: `body` in one chunk, then the last chunk with a
/// trailer field. Returns the status and the body of the answer.
fn h1_post_chunked_with_trailers(port: u16, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{}: {}\r\n\
         transfer-encoding: chunked\r\nte: trailers\r\nconnection: close\r\n\r\n",
        FORM.0, FORM.1
    )
    .into_bytes();
    if !body.is_empty() {
        request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nx-client-checksum: 1\r\n\r\n");
    conn.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, rest) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("POST {path} over HTTP/1.1 got no answer: {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length: {head:?}"));
    (status, rest.get(..length).unwrap_or(rest).to_owned())
}

/// What a `POST /token` ended by trailers got: the filter's answer, never the route's.
fn decided(what: &str, (status, body): (u16, String)) -> (u16, Value) {
    assert_ne!(
        status, 404,
        "{what}: the request went past the filter to the route: {body:?}"
    );
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{what}: {status} is not the filter's JSON ({e}): {body:?}"));
    (status, json)
}

#[test]
fn a_post_token_ended_by_trailers_is_decided_never_routed() {
    let keys = TestKeys::generate();
    let envoy = gateway_with_trailers(&filter_config(&keys, REALM), &keys);
    let port = envoy.listen_port();
    let form = |op: &str| {
        format!(
            "grant_type=password&username=dev-user&password={op}&service={SERVICE}&scope={}",
            PULL.replace(':', "%3A").replace('/', "%2F")
        )
    };
    let garbage = b"grant_type=%zz&scope=%";
    let malformed = "wasmcustom.registry_token_rejected_total.reason.malformed_request";
    let missing = "wasmcustom.registry_token_rejected_total.reason.missing_grant_parameter";

    // HTTP/2: the form in a DATA frame, then the trailers frame.
    let (status, reply) = decided(
        "h2c form + trailers",
        h2_post_with_trailers(port, "/token", form(&optok(&keys, |_| {})).as_bytes()),
    );
    assert_eq!(status, 200, "{reply}");
    let token = reply["access_token"].as_str().unwrap_or_default();
    verify_registry_token(token, &keys.signing_public_pem())
        .unwrap_or_else(|e| panic!("the token does not verify: {e}"));
    assert_eq!(
        envoy.wait_counter(&issued_stat("password"), 1, COUNTER_WAIT),
        1
    );

    let (status, reply) = decided(
        "h2c garbage + trailers",
        h2_post_with_trailers(port, "/token", garbage),
    );
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        reply["type"],
        "urn:registry-token-filter:error:malformed_request"
    );
    assert_eq!(envoy.wait_counter(malformed, 1, COUNTER_WAIT), 1);

    // Trailers right after the headers: an empty form, decided as such.
    let (status, reply) = decided(
        "h2c trailers only",
        h2_post_with_trailers(port, "/token", b""),
    );
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        reply["type"],
        "urn:registry-token-filter:error:missing_grant_parameter"
    );
    assert_eq!(envoy.wait_counter(missing, 1, COUNTER_WAIT), 1);

    // HTTP/1.1 chunked with a trailer field (enable_trailers is on).
    let (status, reply) = decided(
        "HTTP/1.1 chunked form + trailers",
        h1_post_chunked_with_trailers(port, "/token", form(&optok(&keys, |_| {})).as_bytes()),
    );
    assert_eq!(status, 200, "{reply}");
    assert!(reply["access_token"].is_string(), "{reply}");
    assert_eq!(
        envoy.wait_counter(&issued_stat("password"), 2, COUNTER_WAIT),
        2
    );
    let (status, reply) = decided(
        "HTTP/1.1 chunked garbage + trailers",
        h1_post_chunked_with_trailers(port, "/token", garbage),
    );
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        reply["type"],
        "urn:registry-token-filter:error:malformed_request"
    );
    assert_eq!(envoy.wait_counter(malformed, 2, COUNTER_WAIT), 2);

    // Every decision wrote its audit line.
    let deadline = std::time::Instant::now() + LAG;
    let audits = loop {
        let n = envoy.log().matches("registry-token-filter: audit").count();
        if n >= 5 || std::time::Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(audits, 5, "one audit line per decision");

    // Not the filter's: a POST elsewhere with trailers still reaches the route.
    let (status, _) = h2_post_with_trailers(port, "/v2/", b"x=1");
    assert_eq!(status, 404);
}
