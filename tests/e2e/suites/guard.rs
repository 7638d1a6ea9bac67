//! Guard mode (issue 22) end to end: registry 2.8 **behind** real Envoy with the filter
//! (the listener routes `/v2…` to a `registry` cluster, `local_ratelimit` after the Wasm
//! filter; tests/e2e/src/guard.rs), the clients using Envoy's address as the registry host
//! and the gateway's `/token` as the realm. Here: dockerd, containerd (`ctr`) and skopeo
//! push and pull through the guard; a licence, subject, tenant and refresh token revoked
//! in the real ledger stop registry tokens issued before, within one refresh period, and
//! lifting them restores service. Tags (immutable, protected, delete; docker's own error
//! shows the guard's message) are in [`tags`], the catalogue and the rate limits in
//! [`limits`], hostile tokens and paths in [`hostile`]. Every guard refusal is checked
//! against `registry_token_rejected_total{reason=…}`, one by one.
//!
//! Needs root and `make apt-deps`; `--nocapture` prints the timings.

mod hostile;
mod limits;
mod tags;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use registry_token_e2e::authority::OpTokSpec;
use registry_token_e2e::clients::{Containerd, Dockerd};
use registry_token_e2e::gateway::{
    bearer, decode_unverified, filter_config, token_path, GatewaySpec, TestKeys, SERVICE,
};
use registry_token_e2e::guard::{registry_error, vm_failures, RegistryRoute, PLAN_HEADER};
use registry_token_e2e::oidc::{rejected_by_reason, rejected_delta};
use registry_token_e2e::registry::{
    self, creds, empty_oci_dir, oci_manifest_digest, oci_ref, OciImage, Registry, RegistryAuth,
};
use registry_token_e2e::{free_port, post, request, Envoy, EnvoyOptions, Reply};
use registry_token_testkit::{Ledger, LedgerOptions};
use serde_json::{json, Value};

use super::common::{within, COUNTER_WAIT, REALM};

/// `refreshTokens.secrets`.
const REFRESH_SECRET: &str = "guard-e2e-refresh-secret-0123456789abcdef";
/// The ledger's secrets and admin scope.
const FEED_SECRET: &str = "guard-e2e-feed-secret-0123456789abcdef012345";
const ADMIN_SCOPE: &str = "registry.token.admin";
/// `revocation.refreshSeconds` (the smallest allowed).
const LIST_REFRESH: Duration = Duration::from_secs(10);
/// What "within one refresh period" allows on a loaded 2-core box (as ledger.rs).
const REFRESH_SLACK: Duration = Duration::from_secs(3);

/// The manifests the suite reads (OCI from skopeo, Docker's from dockerd).
const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A caller: the OpToken's subject, plan, tenant and licence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Who {
    pub sub: &'static str,
    pub plan: &'static str,
    pub tenant: &'static str,
    pub license: Option<&'static str>,
}

/// A community caller of `tenant`.
pub(crate) const fn community(sub: &'static str, tenant: &'static str) -> Who {
    Who {
        sub,
        plan: "community",
        tenant,
        license: None,
    }
}

/// An enterprise caller of `tenant`.
pub(crate) const fn enterprise(sub: &'static str, tenant: &'static str) -> Who {
    Who {
        sub,
        plan: "enterprise",
        tenant,
        license: None,
    }
}

/// The contract's plans (docs: guard-contract, "Configuration"), each with the catalogue,
/// and `team`: enterprise's rule without immutable tags (where a manifest delete passes).
pub(crate) fn guard_plans(with_tags: bool) -> Value {
    let catalog = json!({"type": "registry", "pattern": "catalog", "actions": ["*"]});
    let mut community = json!({"pattern": "{tenant}/**", "actions": ["pull", "push", "delete"],
        "tags": {"protected": ["latest", "release-*"], "immutable": ["v*"], "delete": false}});
    let mut enterprise = json!({"pattern": "{tenant}/**", "actions": ["*"],
        "tags": {"protected": ["latest", "release-*"], "pushProtected": true, "immutable": ["v*"]}});
    let mut team = json!({"pattern": "{tenant}/**", "actions": ["*"],
        "tags": {"protected": ["latest", "release-*"], "pushProtected": true}});
    if !with_tags {
        for rule in [&mut community, &mut enterprise, &mut team] {
            if let Some(o) = rule.as_object_mut() {
                o.remove("tags");
            }
        }
    }
    json!([
        {"name": "community", "repositories": [community, catalog]},
        {"name": "enterprise", "repositories": [enterprise, catalog]},
        {"name": "team", "repositories": [team, catalog]}
    ])
}

/// How a test's gateway is set up.
#[derive(Clone, Debug, Default)]
pub(crate) struct Setup {
    /// Without the `guard` section and the plans' `tags` (the registry behind a plain
    /// route, as before issue 22).
    pub no_guard: bool,
    /// `local_ratelimit` buckets: (plan, max tokens, refill seconds).
    pub limits: Vec<(&'static str, u32, u32)>,
    /// The real ledger, its digest feed as the remote revocation list.
    pub ledger: bool,
}

/// Envoy with the filter in front of registry 2.8 (and the ledger when asked).
pub(crate) struct Guarded {
    pub keys: TestKeys,
    pub envoy: Envoy,
    pub registry: Registry,
    pub ledger: Option<Ledger>,
    _dir: tempfile::TempDir,
}

impl Guarded {
    pub(crate) fn start(setup: &Setup) -> Guarded {
        let keys = TestKeys::generate();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ledger = setup.ledger.then(|| start_ledger(dir.path(), &keys));
        let mut cfg = filter_config(&keys, REALM);
        // x5c: registry 2.8 finds the key through the chain.
        cfg["signing"]["certificateChainPem"] = json!(keys.signing_cert_pem());
        cfg["refreshTokens"] = json!({"lifetimeSeconds": 3600, "secrets": [REFRESH_SECRET]});
        cfg["plans"] = guard_plans(!setup.no_guard);
        if !setup.no_guard {
            cfg["guard"] = json!({"registryCluster": "registry", "timeoutMillis": 5000,
                "identityHeaders": true});
        }
        let port = free_port();
        let mut route = RegistryRoute::new(port);
        for (plan, max, fill) in &setup.limits {
            route = route.limit(plan, *max, *fill);
        }
        let mut opts = EnvoyOptions::new().concurrency(2);
        let mut clusters = String::new();
        if let Some(l) = &ledger {
            cfg["revocation"] = json!({
                "url": l.url("/v1/revocations/feed?form=digests"),
                "cluster": "ledger_guard",
                "refreshSeconds": LIST_REFRESH.as_secs(),
            });
            // Every decision, the guard's refusals among them, is recorded in it.
            cfg["ledger"] = json!({
                "cluster": "ledger_guard",
                "authority": format!("127.0.0.1:{}", l.port()),
                "flushMillis": 200,
                "gateway": "gw-guard"
            });
            clusters = l.cluster_yaml("ledger_guard", 0);
            opts = opts
                .env(
                    "REGISTRY_TOKEN_REVOCATION__HEADERS__AUTHORIZATION",
                    &format!("Bearer {FEED_SECRET}"),
                )
                .env(
                    "REGISTRY_TOKEN_LEDGER__HEADERS__AUTHORIZATION",
                    &format!("Bearer {INGEST_SECRET}"),
                );
        }
        let spec = GatewaySpec::new(&cfg)
            .registry_route(route)
            .extra_clusters(&clusters);
        let envoy = spec.start(&keys, opts);
        let realm = format!("{}/token", envoy.base_url());
        let registry =
            Registry::start_on(&RegistryAuth::new(&realm, keys.signing_cert_pem()), port)
                .unwrap_or_else(|e| panic!("{e}"));
        Guarded {
            keys,
            envoy,
            registry,
            ledger,
            _dir: dir,
        }
    }

    /// `127.0.0.1:<listener>`: the registry host clients use.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.envoy.listen_port())
    }

    /// The realm the guard's 401s name.
    pub(crate) fn realm(&self) -> String {
        format!("{}/token", self.envoy.base_url())
    }

    /// An OpToken of `who` (600 s).
    pub(crate) fn op(&self, who: &Who) -> String {
        let mut claims = OpTokSpec {
            subject: who.sub.into(),
            plan: Some(who.plan.into()),
            license: who.license.map(str::to_owned),
            ..OpTokSpec::default()
        }
        .claims();
        claims["stellaops:tenant"] = json!(who.tenant);
        let key = &self.keys.authority;
        key.sign(&claims, Some(key.kid()), Some("at+jwt"))
    }

    /// A registry token of `who` for `scopes`, from the gateway's `/token`.
    pub(crate) fn token(&self, who: &Who, scopes: &[&str]) -> String {
        let reply = self.envoy.get(
            &token_path(SERVICE, scopes),
            &[("authorization", &bearer(&self.op(who)))],
        );
        assert_eq!(
            reply.status, 200,
            "/token for {who:?} {scopes:?}: {reply:?}"
        );
        reply.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {reply:?}"))
            .to_owned()
    }

    /// A request on the registry's route through Envoy with `Bearer <token>`.
    pub(crate) fn v2(&self, method: &str, path: &str, token: &str, body: Option<&[u8]>) -> Reply {
        let auth = bearer(token);
        let mut headers = vec![("authorization", auth.as_str())];
        if method == "PUT" && path.contains("/manifests/") {
            headers.push(("content-type", registry::OCI_MANIFEST));
        }
        if method != "PUT" {
            headers.push(("accept", ACCEPT));
        }
        self.envoy.request(method, path, &headers, body)
    }

    /// The same request straight to the registry (bypassing Envoy and the guard).
    pub(crate) fn direct(&self, method: &str, path: &str, token: &str) -> Reply {
        request(
            method,
            &format!("{}{path}", self.registry.url()),
            &[("authorization", &bearer(token)), ("accept", ACCEPT)],
            None,
        )
    }

    /// skopeo copies a fresh image to `repo:tag` through Envoy as `who`; its manifest
    /// digest.
    pub(crate) fn push(&self, who: &Who, repo: &str, tag: &str) -> OciImage {
        let image = OciImage::build(tag);
        let run = registry::copy(
            &image.reference(),
            &format!("docker://{}/{repo}:{tag}", self.host()),
            None,
            Some(&creds(&self.op(who))),
        );
        assert!(run.success, "push of {repo}:{tag} as {who:?}:\n{run}");
        image
    }

    /// skopeo pulls `repo:tag` through Envoy as `who`: its manifest digest.
    pub(crate) fn pull(&self, who: &Who, repo: &str, tag: &str) -> String {
        let dir = empty_oci_dir();
        let run = registry::copy(
            &format!("docker://{}/{repo}:{tag}", self.host()),
            &oci_ref(dir.path(), tag),
            Some(&creds(&self.op(who))),
            None,
        );
        assert!(run.success, "pull of {repo}:{tag} as {who:?}:\n{run}");
        oci_manifest_digest(dir.path(), tag).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Refusals by reason now.
    pub(crate) fn rejected(&self) -> BTreeMap<String, u64> {
        rejected_by_reason(&self.envoy)
    }

    /// Waits (up to [`COUNTER_WAIT`]) until the refusals since `before` are `want`;
    /// returns what they are.
    pub(crate) fn rejected_since(
        &self,
        before: &BTreeMap<String, u64>,
        want: &[(&str, u64)],
    ) -> BTreeMap<String, u64> {
        let want: BTreeMap<String, u64> = want.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let deadline = Instant::now() + COUNTER_WAIT;
        loop {
            let got = rejected_delta(before, &self.rejected());
            if got == want || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts the Envoy log holds no VM panic or trap.
    pub(crate) fn assert_no_trap(&self) {
        let failures = vm_failures(&self.envoy.full_log());
        assert!(
            failures.is_empty(),
            "the VM failed:\n{}",
            failures.join("\n")
        );
    }
}

/// Asserts a guard refusal: `status`, a JSON registry error body with `code` and a
/// message, `detail.reason` = `reason`; a 401 also carries the challenge sending the
/// client back to the realm. Returns the message.
pub(crate) fn refused(
    g: &Guarded,
    what: &str,
    r: &Reply,
    status: u16,
    code: &str,
    reason: &str,
) -> String {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}: {r:?}"
    );
    let (c, message, label) = registry_error(r);
    assert_eq!(
        (c.as_str(), label.as_str()),
        (code, reason),
        "{what}: {}",
        r.body
    );
    assert!(!message.is_empty(), "{what}: no message: {}", r.body);
    if status == 401 {
        let challenge = r.header("www-authenticate").unwrap_or_default();
        for part in [
            "Bearer ".to_owned(),
            format!("realm=\"{}\"", g.realm()),
            format!("service=\"{SERVICE}\""),
            "error=\"invalid_token\"".to_owned(),
        ] {
            assert!(
                challenge.contains(&part),
                "{what}: {part} not in {challenge:?}"
            );
        }
    }
    message
}

/// The ledger's ingest secret (the gateway ships its audit records with it).
const INGEST_SECRET: &str = "guard-e2e-ingest-secret-0123456789abcdef0123";

fn start_ledger(dir: &Path, keys: &TestKeys) -> Ledger {
    let jwks = dir.join("admin-jwks.json");
    std::fs::write(&jwks, keys.authority_jwks().to_string()).unwrap_or_else(|e| panic!("{e}"));
    let database = format!("sqlite://{}", dir.join("ledger.db").display());
    let opts = LedgerOptions::new(&database, "https://authority.example", &jwks)
        .ingest_secret(INGEST_SECRET)
        .feed_secret(FEED_SECRET)
        .env_remove("LEDGER_ADMIN_SCOPE");
    Ledger::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Without the `guard` section the same route is a plain proxy: skopeo pushes and pulls
/// through Envoy, `/v2/` answers the registry's own challenge naming the gateway's realm.
/// The rate limit works on whatever `x-registry-plan` says, so without a guard a client
/// picks its own bucket (why the guard removes the header). (The harness's own proof, and
/// what guard mode must keep working.)
#[test]
fn the_registry_behind_the_gateway_serves_skopeo_without_a_guard() {
    let started = Instant::now();
    let g = Guarded::start(&Setup {
        no_guard: true,
        limits: vec![("community", 2, 60)],
        ..Setup::default()
    });
    let r = g.envoy.get("/v2/", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(&format!("realm=\"{}\"", g.realm())),
        "{challenge}"
    );
    let who = community("una", "acme");
    let image = g.push(&who, "acme/app", "v1");
    assert_eq!(g.pull(&who, "acme/app", "v1"), image.manifest_digest);
    assert!(g.envoy.counter("cluster.registry.upstream_rq_completed") >= 4);
    let token = g.token(&who, &["repository:acme/app:pull"]);
    let auth = bearer(&token);
    let get = |plan: &str| {
        g.envoy
            .request(
                "GET",
                "/v2/acme/app/manifests/v1",
                &[
                    ("authorization", &auth),
                    ("accept", ACCEPT),
                    (PLAN_HEADER, plan),
                ],
                None,
            )
            .status
    };
    let statuses: Vec<u16> = (0..4).map(|_| get("community")).collect();
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(get("enterprise"), 200, "a client picks its bucket");
    eprintln!("test took {:.2?}", started.elapsed());
}

/// dockerd (login, push, pull), containerd (`ctr --user`, the POST grant) and skopeo push
/// and pull through the guard as they do without it: nothing refused.
#[test]
fn docker_containerd_and_skopeo_push_and_pull_through_the_guard() {
    let started = Instant::now();
    let g = Guarded::start(&Setup::default());
    let host = g.host();
    let who = community("cody", "acme");
    let op = g.op(&who);
    let before = g.rejected();

    let image = g.push(&who, "acme/skopeo", "v1");
    assert_eq!(g.pull(&who, "acme/skopeo", "v1"), image.manifest_digest);
    eprintln!("skopeo done at {:.2?}", started.elapsed());

    let docker = Dockerd::start(&[&host]).unwrap_or_else(|e| panic!("{e}"));
    let reference = format!("{host}/acme/docker:v1");
    docker
        .import_tiny(&reference)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = docker.login(&host, who.sub, &op);
    assert!(run.success, "{run}");
    let run = docker.push(&reference);
    assert!(run.success, "{run}");
    let run = docker.rmi(&reference);
    assert!(run.success, "{run}");
    let run = docker.pull(&reference);
    assert!(run.success, "{run}");
    eprintln!("docker done at {:.2?}", started.elapsed());

    let ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
    let reference = format!("{host}/acme/ctr:v1");
    let digest = ctrd
        .import_tiny(&reference)
        .unwrap_or_else(|e| panic!("{e}"));
    let run = ctrd.push(&reference, Some((who.sub, &op)));
    assert!(run.success, "{run}");
    let run = ctrd.rm(&reference);
    assert!(run.success, "{run}");
    let run = ctrd.pull(&reference, Some((who.sub, &op)));
    assert!(run.success, "{run}");
    assert_eq!(ctrd.image_digest(&reference), Some(digest));
    eprintln!("containerd done at {:.2?}", started.elapsed());

    let refused = rejected_delta(&before, &g.rejected());
    assert!(refused.is_empty(), "refusals: {refused:?}");
    assert!(g.envoy.counter("cluster.registry.upstream_rq_completed") >= 20);
    g.assert_no_trap();
    eprintln!("test took {:.2?}", started.elapsed());
}

/// An admin request to the ledger.
fn ledger_admin(g: &Guarded, method: &str, path: &str, body: Option<Value>) -> Reply {
    let ledger = g.ledger.as_ref().unwrap_or_else(|| panic!("no ledger"));
    let admin = g.keys.authority.sign(
        &OpTokSpec {
            subject: "security-team".into(),
            scope: ADMIN_SCOPE.into(),
            ..OpTokSpec::default()
        }
        .claims(),
        Some(g.keys.authority.kid()),
        Some("at+jwt"),
    );
    let auth = bearer(&admin);
    let text = body.map(|b| b.to_string());
    request(
        method,
        &ledger.url(path),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        text.as_deref().map(str::as_bytes),
    )
}

/// A licence, a subject, a tenant and a refresh token revoked through the ledger API: the
/// registry tokens issued before are refused (401, the registry error body with its
/// reason, the challenge back to the realm) within one refresh period while another
/// caller is served; the realm refuses them too; skopeo holding such a token sees the
/// guard's message; deleting the revocations restores every token.
#[test]
fn revocations_in_the_ledger_reach_registry_tokens_already_issued() {
    let started = Instant::now();
    let g = Guarded::start(&Setup {
        ledger: true,
        ..Setup::default()
    });
    let alice = Who {
        license: Some("lic-guard-a"),
        ..community("alice", "acme")
    };
    let bob = community("bob", "acme");
    let carol = community("carol", "globex");
    let erin = community("erin", "acme");
    let dave = community("dave", "acme");
    g.push(&dave, "acme/app", "v1");
    g.push(&carol, "globex/app", "v1");
    let pull = |repo: &str| format!("repository:{repo}:pull");
    // erin's token comes from the password grant with a refresh token (docker login's
    // way): it carries the refresh token's id.
    let form = format!(
        "grant_type=password&username=erin&password={}&service={SERVICE}&scope={}\
         &client_id=docker&access_type=offline",
        g.op(&erin),
        registry_token_e2e::percent_encode(&pull("acme/app"))
    );
    let reply = post(
        &g.realm(),
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let erin_token = reply.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = reply.json()["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, erin_claims) = decode_unverified(&erin_token).unwrap_or_else(|e| panic!("{e}"));
    let rtid = erin_claims["rtid"]
        .as_str()
        .unwrap_or_else(|| panic!("no rtid in {erin_claims}"))
        .to_owned();
    // (kind, value, the token issued before, its repository, the guard's reason).
    let cases = [
        (
            "license",
            "lic-guard-a".to_owned(),
            g.token(&alice, &[&pull("acme/app")]),
            "acme/app",
            "guard_license_revoked",
        ),
        (
            "subject",
            "bob".to_owned(),
            g.token(&bob, &[&pull("acme/app")]),
            "acme/app",
            "guard_subject_revoked",
        ),
        (
            "tenant",
            "globex".to_owned(),
            g.token(&carol, &[&pull("globex/app")]),
            "globex/app",
            "guard_tenant_revoked",
        ),
        (
            "refreshToken",
            rtid,
            erin_token,
            "acme/app",
            "guard_refresh_token_revoked",
        ),
    ];
    let control = g.token(&dave, &[&pull("acme/app")]);
    let get =
        |token: &str, repo: &str| g.v2("GET", &format!("/v2/{repo}/manifests/v1"), token, None);
    for (kind, _, token, repo, _) in &cases {
        assert_eq!(get(token, repo).status, 200, "{kind} before the revocation");
    }
    let before = g.rejected();
    let mut ids = Vec::new();
    for (kind, value, ..) in &cases {
        let r = ledger_admin(
            &g,
            "POST",
            "/v1/revocations",
            Some(json!({"kind": kind, "value": value, "reason": "guard e2e"})),
        );
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(r.json()["id"].as_str().unwrap_or_default().to_owned());
    }
    let revoked_at = Instant::now();
    let mut pending: Vec<usize> = (0..cases.len()).collect();
    let mut messages = BTreeMap::new();
    let done = within(LIST_REFRESH + REFRESH_SLACK, || {
        assert_eq!(get(&control, "acme/app").status, 200, "the control caller");
        pending.retain(|&i| {
            let (kind, _, token, repo, reason) = &cases[i];
            let r = get(token, repo);
            if r.status == 200 {
                return true;
            }
            let what = format!("{kind} revoked, a token issued before");
            messages.insert(i, refused(&g, &what, &r, 401, "UNAUTHORIZED", reason));
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.contains(&format!("scope=\"repository:{repo}:pull\"")),
                "{challenge}"
            );
            eprintln!(
                "{kind}: refused {:.2?} after the revocation",
                revoked_at.elapsed()
            );
            false
        });
        pending.is_empty()
    });
    assert!(
        done.is_some(),
        "still served after one refresh period: {pending:?}"
    );
    let want: Vec<(&str, u64)> = cases.iter().map(|c| (c.4, 1)).collect();
    assert_eq!(
        g.rejected_since(&before, &want),
        want.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    );

    // Each refusal is in the ledger, with its reason and the caller the token named.
    for ((_, _, _, repo, reason), subject) in cases.iter().zip(["alice", "bob", "carol", "erin"]) {
        let found = within(Duration::from_secs(10), || {
            let path = format!("/v1/issuances?decision=rejected&subject={subject}");
            let r = ledger_admin(&g, "GET", &path, None);
            assert_eq!(r.status, 200, "{r:?}");
            let items = r.json()["items"].as_array().cloned().unwrap_or_default();
            items.iter().any(|i| {
                i["reason"] == *reason
                    && i["gateway"] == "gw-guard"
                    && i["requested"] == json!([pull(repo)])
            })
        });
        assert!(found.is_some(), "no ledger record of {reason}");
    }

    // The realm refuses them too, for the right reason.
    for (who, repo, reason) in [
        (&alice, "acme/app", "license_revoked"),
        (&bob, "acme/app", "subject_revoked"),
        (&carol, "globex/app", "tenant_revoked"),
    ] {
        let r = g.envoy.get(
            &token_path(SERVICE, &[&pull(repo)]),
            &[("authorization", &bearer(&g.op(who)))],
        );
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.body.contains(reason), "{reason}: {}", r.body);
    }
    let grant = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&client_id=docker\
         &scope={}",
        registry_token_e2e::percent_encode(&pull("acme/app"))
    );
    let r = post(
        &g.realm(),
        &[("content-type", "application/x-www-form-urlencoded")],
        grant.as_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("refresh_token_revoked"), "{}", r.body);

    // A real client holding the licence's token sees the guard's message. skopeo opens its
    // own connection, which may reach the other worker: each worker reads the shared list
    // on its own (at most once a second), so skopeo gets the same bound from the revocation.
    let before = g.rejected();
    let out = empty_oci_dir();
    let mut last = None;
    let refused = within(
        (LIST_REFRESH + REFRESH_SLACK).saturating_sub(revoked_at.elapsed()),
        || {
            let run = registry::skopeo(
                &[
                    "copy",
                    "--retry-times",
                    "0",
                    "--src-tls-verify=false",
                    "--src-registry-token",
                    &cases[0].2,
                    &format!("docker://{}/acme/app:v1", g.host()),
                    &oci_ref(out.path(), "v1"),
                ],
                registry::SKOPEO_TIMEOUT,
            );
            let done = !run.success;
            last = Some(run);
            done
        },
    );
    let run = last.unwrap_or_else(|| panic!("no copy attempted"));
    assert!(
        refused.is_some(),
        "skopeo still copies {:?} after the revocation:\n{run}",
        revoked_at.elapsed()
    );
    assert!(
        run.stderr.contains(&messages[&0]),
        "skopeo does not show {:?}:\n{run}",
        messages[&0]
    );
    let moved = g.rejected_since(&before, &[("guard_license_revoked", 1)]);
    assert_eq!(moved.get("guard_license_revoked"), Some(&1), "{moved:?}");

    // Lifted: every token issued before is served again within one refresh period.
    for id in &ids {
        let r = ledger_admin(
            &g,
            "DELETE",
            &format!("/v1/revocations/{id}?reason=done"),
            None,
        );
        assert_eq!(r.status, 204, "{r:?}");
    }
    let lifted = within(LIST_REFRESH + REFRESH_SLACK, || {
        cases
            .iter()
            .all(|(_, _, token, repo, _)| get(token, repo).status == 200)
    });
    assert!(
        lifted.is_some(),
        "still refused after the revocations were deleted"
    );
    eprintln!(
        "served again {lifted:?} after the deletes; test took {:.2?}",
        started.elapsed()
    );
    g.assert_no_trap();
}
