//! The real clients through the gateway (real Envoy and this filter as the realm of a
//! real registry 2.8): `docker login` stores a refresh token, docker pushes (with a
//! cross-repository mount) and pulls through the refresh grant, also once the OpToken has
//! expired, until the licence is revoked in the remote list; containerd pushes and pulls
//! through the `POST` password grant; skopeo and podman through `GET`; every `POST /token`
//! refusal made by hand is counted and the next request succeeds.
//!
//! Needs root and `make apt-deps`; `--nocapture` prints the timings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use registry_token_e2e::authority::now;
use registry_token_e2e::clients::{podman_bin, Containerd, Dockerd, Podman};
use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, ConfigForm, GatewaySpec, TestKeys, KEYPEM_ENV,
    SERVICE,
};
use registry_token_e2e::list_server::ListServer;
use registry_token_e2e::oidc::{rejected_by_reason, rejected_delta};
use registry_token_e2e::registry::{self, OciImage, Registry, RegistryAuth};
use registry_token_e2e::{Envoy, EnvoyOptions, Reply};
use serde_json::{json, Value};

use super::common::{within, LAG, REALM};

/// The OpToken's subject (the user name the clients send; the filter ignores it).
const OP_USER: &str = "dev-user";

/// The licence of the OpTokens, revoked through the remote list in the docker test.
const LICENSE: &str = "lic-fleet-7";

/// `refreshTokens.secrets`.
const REFRESH_SECRET: &str = "clients-e2e-refresh-secret-0123456789abcdef";

/// `revocation.refreshSeconds` (the smallest allowed).
const LIST_REFRESH: Duration = Duration::from_secs(10);

/// `authority.clockSkewSeconds`.
const SKEW_SECONDS: i64 = 1;

/// Envoy with the filter as the realm (refresh tokens on, the remote revocation list from
/// a [`ListServer`], a 1 s clock skew, an access log `METHOD PATH STATUS`), and a registry
/// trusting its signing certificate.
struct Gateway {
    keys: TestKeys,
    list: ListServer,
    envoy: Envoy,
    registry: Registry,
    access_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let keys = TestKeys::generate();
        let list = ListServer::start(Some(r#"{"revokedLicenses": []}"#));
        let mut cfg = filter_config(&keys, REALM);
        cfg["authority"]["clockSkewSeconds"] = json!(SKEW_SECONDS);
        // x5c: registry 2.8 finds the key through the chain.
        cfg["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
        cfg["refreshTokens"] = json!({ "lifetimeSeconds": 3600, "secrets": [REFRESH_SECRET] });
        cfg["revocation"] = json!({
            "url": format!("http://127.0.0.1:{}/revoked.json", list.port()),
            "cluster": "licensing",
            "refreshSeconds": LIST_REFRESH.as_secs(),
            "maxStaleSeconds": 3600,
            "onStale": "serve",
        });
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let access_log = dir.path().join("access.log");
        let yaml = GatewaySpec::new(&cfg)
            .form(ConfigForm::StringValue)
            .extra_clusters(&list.cluster_yaml())
            .yaml();
        let envoy = Envoy::start(
            &with_access_log(&yaml, &access_log),
            EnvoyOptions::new()
                .concurrency(2)
                .env(KEYPEM_ENV, keys.signing_key_pem())
                .env("REGISTRY_TOKEN_AUTHORITY__JWKS", ""),
        )
        .unwrap_or_else(|e| panic!("the gateway did not start: {e}"));
        let registry = Registry::start(&RegistryAuth::new(
            &format!("{}/token", envoy.base_url()),
            keys.signing_cert_pem(),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        Gateway {
            keys,
            list,
            envoy,
            registry,
            access_log,
            _dir: dir,
        }
    }

    /// An OpToken for plan `enterprise` (`stella-ops/**` pull and push), licence
    /// [`LICENSE`], valid `ttl` seconds.
    fn optok(&self, ttl: i64) -> String {
        optok(&self.keys, |s| {
            s.plan = Some("enterprise".into());
            s.license = Some(LICENSE.into());
            s.ttl = ttl;
        })
    }

    /// Issued tokens per grant.
    fn issued(&self) -> BTreeMap<&'static str, u64> {
        registry_token_e2e::GRANTS
            .iter()
            .map(|g| (*g, self.envoy.issued_by(g)))
            .collect()
    }

    /// The access log's lines, once it holds at least `min` lines for `/token` (Envoy
    /// flushes the file every second).
    fn token_log(&self, min: usize) -> Vec<String> {
        let deadline = Instant::now() + LAG;
        loop {
            let lines: Vec<String> = std::fs::read_to_string(&self.access_log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.split(' ').nth(1).is_some_and(|p| p.starts_with("/token")))
                .map(str::to_owned)
                .collect();
            if lines.len() >= min || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `POST /token` with a form body.
    fn post(&self, content_type: &str, body: &str) -> Reply {
        self.envoy.request(
            "POST",
            "/token",
            &[("content-type", content_type)],
            Some(body.as_bytes()),
        )
    }
}

/// `yaml` with a file access log `METHOD PATH STATUS` on the listener.
fn with_access_log(yaml: &str, path: &Path) -> String {
    let anchor = "          stat_prefix: registry_token\n";
    assert_eq!(yaml.matches(anchor).count(), 1, "{yaml}");
    let log = format!(
        "{anchor}          access_log:\n          - name: envoy.access_loggers.file\n            \
         typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              \
         path: {}\n              log_format:\n                text_format_source:\n                  \
         inline_string: \"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\\n\"\n",
        path.display()
    );
    yaml.replace(anchor, &log)
}

/// `issued` after minus before, grants that moved only.
fn issued_delta(
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then_some((*k, d))
        })
        .collect()
}

/// `docker login` with an OpToken: `config.json` keeps a refresh token, never the
/// OpToken; push (with a cross-repository mount) and pull go through the refresh grant,
/// keep working after the OpToken expired, and stop within one list period once the
/// licence is in the remote revocation list.
#[test]
fn docker_logs_in_with_an_optoken_and_works_through_the_refresh_grant_until_revoked() {
    let test_started = Instant::now();
    let gw = Gateway::start();
    let host = gw.registry.host();
    let docker = Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    let image_a = format!("{host}/stella-ops/private/a:v1");
    let image_b = format!("{host}/stella-ops/private/b:v1");
    docker
        .import_tiny(&image_a)
        .unwrap_or_else(|e| panic!("{e}"));
    let rejected_before = rejected_by_reason(&gw.envoy);
    let issued_before = gw.issued();

    // A short-lived OpToken: valid 6 s, then expired (skew 1 s).
    let ttl = 6;
    let op = gw.optok(ttl);
    let expires = now() + ttl + SKEW_SECONDS;
    let run = docker.login(&host, OP_USER, &op);
    assert!(run.success, "{run}");
    let config = docker.config_json().unwrap_or(Value::Null);
    let text = config.to_string();
    assert!(!text.contains(&op), "the OpToken is stored: {text}");
    let auth = &config["auths"][&host];
    let refresh = auth["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no identitytoken: {text}"))
        .to_owned();
    assert!(refresh.starts_with("rtr1."), "{refresh}");
    assert_eq!(
        auth["auth"].as_str(),
        Some(STANDARD.encode(format!("{OP_USER}:")).as_str()),
        "{text}"
    );
    // A refresh token is no OpToken: the GET protocol refuses it.
    let r = gw.envoy.get(
        &token_path(SERVICE, &["repository:stella-ops/private/a:pull"]),
        &[("authorization", &bearer(&refresh))],
    );
    assert_eq!(r.status, 401, "{r:?}");

    // Push A, then B with the same layers: a cross-repository mount from A.
    let run = docker.push(&image_a);
    assert!(run.success, "{run}");
    let run = docker.tag(&image_a, &image_b);
    assert!(run.success, "{run}");
    let run = docker.push(&image_b);
    assert!(run.success, "{run}");
    assert!(
        run.stdout.contains("Mounted from stella-ops/private/a"),
        "no cross-repository mount:\n{run}"
    );
    let login_and_pushes = issued_delta(&issued_before, &gw.issued());
    assert_eq!(
        login_and_pushes.get("get"),
        Some(&1),
        "{login_and_pushes:?}"
    );
    assert_eq!(
        login_and_pushes.get("password"),
        None,
        "{login_and_pushes:?}"
    );
    assert!(
        login_and_pushes.get("refresh_token").copied().unwrap_or(0) >= 2,
        "{login_and_pushes:?}"
    );
    // The mount's token request asked for pull on the source too, and got it.
    assert!(
        gw.envoy.wait_for_log(LAG, |log| log.lines().any(|l| l
            .contains("registry-token-filter: audit ")
            && l.contains("\"grant\":\"refresh_token\"")
            && l.contains("stella-ops/private/b")
            && l.contains("stella-ops/private/a"))),
        "no refresh grant for b with a's pull:\n{}",
        gw.envoy.log()
    );

    // Past the OpToken's expiry: the OpToken itself is refused, docker still works.
    let wait = expires + 1 - now();
    if wait > 0 {
        std::thread::sleep(Duration::from_secs(wait.unsigned_abs()));
    }
    let r = gw.envoy.get(
        &token_path(SERVICE, &["repository:stella-ops/private/a:pull"]),
        &[("authorization", &bearer(&op))],
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("expired"), "{r:?}");
    let refreshed_before = gw.envoy.issued_by("refresh_token");
    for image in [&image_a, &image_b] {
        let run = docker.rmi(image);
        assert!(run.success, "{run}");
    }
    let run = docker.pull(&image_b);
    assert!(run.success, "after the OpToken expired: {run}");
    let image_c = format!("{host}/stella-ops/private/c:v1");
    docker
        .import_tiny(&image_c)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = docker.push(&image_c);
    assert!(run.success, "after the OpToken expired: {run}");
    assert!(gw.envoy.issued_by("refresh_token") >= refreshed_before + 2);

    // Refused so far: only the two requests made here by hand (the expired OpToken and
    // the refresh token sent as an OpToken); docker itself was never refused.
    let rejected = rejected_delta(&rejected_before, &rejected_by_reason(&gw.envoy));
    assert_eq!(
        rejected,
        BTreeMap::from([("expired".to_owned(), 1), ("malformed_token".to_owned(), 1)]),
        "{rejected:?}"
    );

    // The licence goes into the remote list: refused within one refresh period.
    gw.list
        .set(Some(&format!(r#"{{"revokedLicenses": ["{LICENSE}"]}}"#)));
    let revoked_at = Instant::now();
    let mut last = None;
    let stopped = within(LIST_REFRESH + Duration::from_secs(5), || {
        let _ = docker.rmi(&image_b);
        let run = docker.pull(&image_b);
        let ok = run.success;
        last = Some(run);
        !ok
    });
    let last = last.unwrap_or_else(|| panic!("no pull attempted"));
    assert!(
        stopped.is_some(),
        "docker still pulls {:?} after the revocation:\n{last}",
        revoked_at.elapsed()
    );
    eprintln!("docker pull refused {stopped:?} after the revocation:\n{last}");
    // Each worker reads the shared list at most once a second, on its own: the pull's
    // refusal by one worker says nothing of the other, so the push gets the same bound.
    let mut last = None;
    let stopped = within(
        (LIST_REFRESH + Duration::from_secs(5)).saturating_sub(revoked_at.elapsed()),
        || {
            let run = docker.push(&image_c);
            let ok = run.success;
            last = Some(run);
            !ok
        },
    );
    let last = last.unwrap_or_else(|| panic!("no push attempted"));
    assert!(
        stopped.is_some(),
        "docker still pushes {:?} after the revocation:\n{last}",
        revoked_at.elapsed()
    );
    let rejected = rejected_delta(&rejected_before, &rejected_by_reason(&gw.envoy));
    assert!(
        rejected.get("license_revoked").copied().unwrap_or(0) >= 2,
        "{rejected:?}"
    );
    eprintln!("test took {:.2?}", test_started.elapsed());
}

/// containerd with `--user U:OPTOK` pushes and pulls through the `POST` password grant:
/// no 405, no fallback to `GET`, and the only refusal counted is the anonymous probe.
#[test]
fn containerd_pushes_and_pulls_through_the_post_password_grant() {
    let test_started = Instant::now();
    let gw = Gateway::start();
    let ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
    let image = format!("{}/stella-ops/private/ctr:v1", gw.registry.host());
    let digest = ctrd.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
    let op = gw.optok(600);
    let rejected_before = rejected_by_reason(&gw.envoy);
    let issued_before = gw.issued();

    let run = ctrd.push(&image, Some((OP_USER, &op)));
    assert!(run.success, "{run}");
    let run = ctrd.rm(&image);
    assert!(run.success, "{run}");
    let run = ctrd.pull(&image, Some((OP_USER, &op)));
    assert!(run.success, "{run}");
    assert_eq!(ctrd.image_digest(&image), Some(digest));

    let issued = issued_delta(&issued_before, &gw.issued());
    assert!(
        issued.get("password").copied().unwrap_or(0) >= 2,
        "{issued:?}"
    );
    assert_eq!(issued.len(), 1, "only the password grant: {issued:?}");
    let rejected = rejected_delta(&rejected_before, &rejected_by_reason(&gw.envoy));
    let decisions = usize::try_from(issued.values().sum::<u64>() + rejected.values().sum::<u64>())
        .unwrap_or(usize::MAX);
    let log = gw.token_log(decisions);
    eprintln!("access log:\n{}\nrejected: {rejected:?}", log.join("\n"));
    assert!(log.iter().all(|l| !l.ends_with(" 405")), "a 405: {log:?}");
    assert!(
        log.iter().all(|l| l.starts_with("POST /token ")),
        "containerd fell back to GET: {log:?}"
    );
    assert!(rejected.is_empty(), "refusals counted: {rejected:?}");
    eprintln!("test took {:.2?}", test_started.elapsed());
}

/// skopeo (copy in and out) and podman (login, push, pull) use `GET` with the OpToken as
/// the Basic password.
#[test]
fn skopeo_and_podman_work_through_get_with_the_optoken() {
    let test_started = Instant::now();
    let gw = Gateway::start();
    let op = gw.optok(600);
    let issued_before = gw.issued();

    let image = OciImage::build("v1");
    let dest = gw.registry.docker_ref("stella-ops/private/skopeo", "v1");
    let creds = registry::creds(&op);
    let run = registry::copy(&image.reference(), &dest, None, Some(&creds));
    assert!(run.success, "{run}");
    let out = registry::empty_oci_dir();
    let run = registry::copy(
        &dest,
        &registry::oci_ref(out.path(), "v1"),
        Some(&creds),
        None,
    );
    assert!(run.success, "{run}");
    assert_eq!(
        registry::oci_manifest_digest(out.path(), "v1").as_deref(),
        Ok(image.manifest_digest.as_str())
    );

    assert!(
        podman_bin().is_file(),
        "podman is not installed: run `make apt-deps` (a missing client is a failure, not a skip)"
    );
    let podman = Podman::new().unwrap_or_else(|e| panic!("{e}"));
    let host = gw.registry.host();
    let run = podman.login(&host, OP_USER, &op);
    assert!(run.success, "{run}");
    let reference = format!("{host}/stella-ops/private/podman:v1");
    podman
        .import_tiny(&reference)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = podman.push(&reference);
    assert!(run.success, "{run}");
    let run = podman.rmi(&reference);
    assert!(run.success, "{run}");
    let run = podman.pull(&reference);
    assert!(run.success, "{run}");

    let issued = issued_delta(&issued_before, &gw.issued());
    assert!(issued.get("get").copied().unwrap_or(0) >= 4, "{issued:?}");
    assert_eq!(issued.len(), 1, "only GET: {issued:?}");
    eprintln!("test took {:.2?}", test_started.elapsed());
}

/// HMAC-SHA256 (RFC 2104), for sealing refresh tokens in a test.
fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The claims of a refresh token `rtr1.<claims>.<tag>`.
fn refresh_claims(token: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap_or_else(|e| panic!("{token}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{token}: {e}"))
}

/// `claims` sealed as a refresh token with `secret` (the filter's format).
fn seal_refresh(claims: &Value, secret: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = format!("rtr1.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let tag = hmac_sha256(secret.as_bytes(), head.as_bytes());
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    registry_token_e2e::percent_encode(v)
}

/// Every `POST /token` refusal made by hand: RFC 6749 §5.2 JSON (`error`,
/// `error_description`), the status that makes containerd behave (400 falls back to
/// `GET`; 405 and 413 are not grant faults), exactly its own reason counted once, and the
/// next honest request answered 200.
#[test]
fn every_post_refusal_by_hand_is_counted_and_the_next_request_succeeds() {
    let gw = Gateway::start();
    let form = "application/x-www-form-urlencoded";
    let op = gw.optok(600);
    let scope = form_encode("repository:stella-ops/private/app:pull,push");
    let password = |optok: &str| {
        format!(
            "grant_type=password&username={OP_USER}&password={optok}&service={SERVICE}&scope={scope}&client_id=containerd-client"
        )
    };
    let refresh_grant = |token: &str| {
        format!(
            "grant_type=refresh_token&refresh_token={}&service={SERVICE}&scope={scope}&client_id=docker",
            form_encode(token)
        )
    };
    let honest = || {
        let r = gw.post(form, &format!("{}&access_type=offline", password(&op)));
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert!(v["access_token"].is_string(), "{v}");
        v["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh_token: {v}"))
            .to_owned()
    };
    let refresh = honest();
    assert_eq!(
        gw.post(form, &refresh_grant(&refresh)).status,
        200,
        "the refresh grant"
    );

    // One refusal: status, OAuth error, its reason counted exactly once, then an honest
    // password grant and an honest refresh grant answer 200.
    let refused = |what: &str, reply: Reply, status: u16, error: &str, reason: &str| {
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        let v = reply.json();
        assert_eq!(v["error"], error, "{what}: {v}");
        assert!(
            v["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{what}: {v}"
        );
        assert_eq!(
            v["type"],
            format!("urn:registry-token-filter:error:{reason}"),
            "{what}: {v}"
        );
    };
    let expired_op = optok(&gw.keys, |s| {
        s.plan = Some("enterprise".into());
        s.time_offset = -3600;
    });
    let revoked_op = optok(&gw.keys, |s| {
        s.plan = Some("enterprise".into());
        s.license = Some(registry_token_e2e::gateway::REVOKED_LICENSE.into());
    });
    let mut expired_claims = refresh_claims(&refresh);
    expired_claims["iat"] = json!(now() - 7200);
    expired_claims["exp"] = json!(now() - 3600);
    let expired_refresh = seal_refresh(&expired_claims, REFRESH_SECRET);
    let mut altered_claims = refresh_claims(&refresh);
    altered_claims["plan"] = json!("pullonly");
    let altered_refresh = {
        let sealed = seal_refresh(&altered_claims, REFRESH_SECRET);
        let tag = refresh.rsplit('.').next().unwrap_or_default();
        format!("{}.{tag}", sealed.rsplit_once('.').map_or("", |(h, _)| h))
    };
    let big = format!("{}&pad={}", password(&op), "a".repeat(17 * 1024));
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        ("no grant_type", form, format!("password={op}&service={SERVICE}"), 400, "invalid_request", "missing_grant_parameter"),
        ("no password", form, format!("grant_type=password&service={SERVICE}"), 400, "invalid_request", "missing_grant_parameter"),
        ("grant_type twice", form, format!("grant_type=password&{}", password(&op)), 400, "invalid_request", "malformed_request"),
        ("bad percent-encoding", form, format!("{}&client_id=%ZZ", password(&op)), 400, "invalid_request", "malformed_request"),
        ("JSON body", "application/json", format!(r#"{{"grant_type":"password","password":"{op}"}}"#), 400, "invalid_request", "unsupported_media_type"),
        ("unknown grant", form, format!("grant_type=client_credentials&service={SERVICE}"), 400, "unsupported_grant_type", "unsupported_grant_type"),
        ("not a JWT", form, password("not-a-jwt"), 400, "invalid_grant", "malformed_token"),
        ("expired OpToken", form, password(&expired_op), 400, "invalid_grant", "expired"),
        ("revoked licence", form, password(&revoked_op), 400, "invalid_grant", "license_revoked"),
        ("refresh token as password", form, password(&refresh), 400, "invalid_grant", "malformed_token"),
        ("OpToken as refresh token", form, refresh_grant(&op), 400, "invalid_grant", "invalid_refresh_token"),
        ("altered refresh token", form, refresh_grant(&altered_refresh), 400, "invalid_grant", "invalid_refresh_token"),
        ("expired refresh token", form, refresh_grant(&expired_refresh), 400, "invalid_grant", "refresh_token_expired"),
        ("malformed scope", form, format!("grant_type=password&password={op}&service={SERVICE}&scope=repository%3ABad%2FUPPER%3Apull"), 400, "invalid_scope", "malformed_scope"),
        ("scope outside the plan", form, format!("grant_type=password&password={op}&service={SERVICE}&scope=repository%3Aother%2Fapp%3Apull"), 400, "invalid_scope", "plan_denied"),
        ("body over 16 KiB", form, big, 413, "invalid_request", "body_too_large"),
    ];
    for (what, content_type, body, status, error, reason) in cases {
        let before = rejected_by_reason(&gw.envoy);
        let reply = gw.post(content_type, &body);
        refused(what, reply, status, error, reason);
        let moved = rejected_delta(&before, &rejected_by_reason(&gw.envoy));
        assert_eq!(moved, BTreeMap::from([(reason.to_owned(), 1)]), "{what}");
        honest();
        assert_eq!(
            gw.post(form, &refresh_grant(&refresh)).status,
            200,
            "after {what}"
        );
    }

    // PUT: 405 with Allow, counted as method_not_allowed.
    let before = rejected_by_reason(&gw.envoy);
    let reply = gw.envoy.request(
        "PUT",
        "/token",
        &[("content-type", form)],
        Some(password(&op).as_bytes()),
    );
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"), "{reply:?}");
    let moved = rejected_delta(&before, &rejected_by_reason(&gw.envoy));
    assert_eq!(
        moved,
        BTreeMap::from([("method_not_allowed".to_owned(), 1)])
    );
    honest();

    // The refresh token's id in the remote list: refused within one list period.
    let jti = refresh_claims(&refresh)["jti"]
        .as_str()
        .unwrap_or_else(|| panic!("no jti in the refresh token"))
        .to_owned();
    gw.list
        .set(Some(&format!(r#"{{"revokedRefreshTokens": ["{jti}"]}}"#)));
    let before = rejected_by_reason(&gw.envoy);
    let mut last = None;
    let took = within(LIST_REFRESH + Duration::from_secs(5), || {
        let r = gw.post(form, &refresh_grant(&refresh));
        let done = r.status != 200;
        last = Some(r);
        done
    });
    let last = last.unwrap_or_else(|| panic!("no request made"));
    assert!(took.is_some(), "still accepted: {last:?}");
    refused(
        "revoked refresh token",
        last,
        400,
        "invalid_grant",
        "refresh_token_revoked",
    );
    let moved = rejected_delta(&before, &rejected_by_reason(&gw.envoy));
    assert_eq!(
        moved,
        BTreeMap::from([("refresh_token_revoked".to_owned(), 1)])
    );
    // A new refresh token from the same OpToken still works.
    let fresh = honest();
    assert_eq!(gw.post(form, &refresh_grant(&fresh)).status, 200);
}
