//! The issuance ledger end to end: real Envoy with the filter, the real ledger binary
//! (`registry-token-ledger`, started by the kit) on SQLite or a throw-away PostgreSQL,
//! wired as `make run` wires them (a ledger cluster, `ledger.headers` and
//! `revocation.headers` from the environment, the revocation list is the ledger's feed).
//!
//! The ledger binary: `$LEDGER_BIN`, else `registry-token-ledger` next to the test
//! binary's profile directory (`cargo build -p registry-token-ledger` first; `make e2e`
//! does).
//!
//! Knobs (environment): `LEDGER_E2E_REQUESTS` (default 2000) requests in the load runs,
//! `LEDGER_E2E_OUTAGE_SECONDS` (default 60, the issue's scenario) for how long the ledger is
//! paused or down in the middle of them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use registry_token_e2e::gateway::{
    bearer, filter_config, optok, token_path, ConfigForm, GatewaySpec, TestKeys,
};
use registry_token_e2e::{get, post, request, Envoy, EnvoyOptions};
use registry_token_testkit::{Ledger, LedgerOptions, Postgres};
use serde_json::{json, Value};

use super::common::PULL;

const INGEST_SECRET: &str = "e2e-ingest-secret-0123456789abcdef0123456789";

const FEED_SECRET: &str = "e2e-feed-secret-0123456789abcdef0123456789abc";

const ADMIN_SCOPE: &str = "registry.token.admin";

const PUSH: &str = "repository:stella-ops/private/app:push";

const SERVICE: &str = "registry.example";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The ledger on `database` with the gateways' secrets, admin tokens of the test
/// Authority (its JWKS written into `dir`), on a fixed port (a restart is reached by the
/// same cluster) and a database that outlives the process.
fn start_ledger(dir: &Path, keys: &TestKeys, database: &str) -> Ledger {
    let jwks = dir.join("admin-jwks.json");
    std::fs::write(&jwks, keys.authority_jwks().to_string()).expect("write jwks");
    let opts = LedgerOptions::new(database, "https://authority.example", &jwks)
        .ingest_secret(INGEST_SECRET)
        .feed_secret(FEED_SECRET)
        .env_remove("LEDGER_ADMIN_SCOPE");
    Ledger::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

/// An admin token of the ledger: the test Authority's key, the admin scope.
fn admin(keys: &TestKeys) -> String {
    optok(keys, |s| {
        s.subject = "security-team".into();
        s.scope = ADMIN_SCOPE.into();
    })
}

fn admin_get(ledger: &Ledger, keys: &TestKeys, path: &str) -> (u16, Value) {
    let reply = get(
        &ledger.url(path),
        &[("authorization", &bearer(&admin(keys)))],
    );
    let body = reply.try_json().unwrap_or(Value::Null);
    (reply.status, body)
}

/// Every row of the ledger (paginated), newest first.
fn all_rows(ledger: &Ledger, keys: &TestKeys) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/issuances?limit=10000&cursor={c}"),
            None => "/v1/issuances?limit=10000".to_string(),
        };
        let (status, body) = admin_get(ledger, keys, &path);
        assert_eq!(status, 200, "{path}: {body}");
        rows.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return rows,
        }
    }
}

struct Setup {
    keys: TestKeys,
    ledger: Ledger,
    envoy: Envoy,
    // Dropped after the ledger.
    _postgres: Option<Postgres>,
    _dir: tempfile::TempDir,
}

/// The ledger's database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Db {
    /// A file in the test's temporary directory.
    Sqlite,
    /// A throw-away PostgreSQL cluster (see [`Postgres`]).
    Postgres,
}

/// [`setup_on`] SQLite.
fn setup(ledger_section: Value) -> Setup {
    setup_on(Db::Sqlite, ledger_section)
}

/// The ledger on `db`, then a gateway (2 workers) whose `ledger` section is
/// `ledger_section` plus the cluster, and whose revocation list is the ledger's feed.
fn setup_on(db: Db, ledger_section: Value) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TestKeys::generate();
    let (postgres, database) = match db {
        Db::Sqlite => (
            None,
            format!("sqlite://{}", dir.path().join("ledger.db").display()),
        ),
        Db::Postgres => {
            let pg = Postgres::try_start(false).unwrap_or_else(|e| panic!("{e}"));
            let url = pg.url.clone();
            (Some(pg), url)
        }
    };
    let ledger = start_ledger(dir.path(), &keys, &database);
    let mut config = filter_config(&keys, "http://127.0.0.1:{{LISTEN_PORT}}/token");
    let mut section = json!({
        "cluster": "ledger_e2e",
        "authority": format!("127.0.0.1:{}", ledger.port()),
        "flushMillis": 200,
        "timeoutMillis": 2000,
        "initialBackoffMillis": 200,
        "maxBackoffMillis": 2000,
        "gateway": "gw-e2e"
    });
    for (k, v) in ledger_section.as_object().cloned().unwrap_or_default() {
        section[k] = v;
    }
    config["ledger"] = section;
    config["refreshTokens"] = json!({
        "lifetimeSeconds": 3600,
        "secrets": ["an-e2e-refresh-token-secret-of-32-chars-or-more"]
    });
    config["revocation"] = json!({
        "url": ledger.url("/v1/revocations/feed"),
        "cluster": "ledger_e2e",
        "refreshSeconds": 10
    });
    let envoy = GatewaySpec::new(&config)
        .form(ConfigForm::StringValue)
        .extra_clusters(&ledger.cluster_yaml("ledger_e2e", 0))
        .start(
            &keys,
            EnvoyOptions::new()
                .concurrency(2)
                .env(
                    "REGISTRY_TOKEN_LEDGER__HEADERS__AUTHORIZATION",
                    &format!("Bearer {INGEST_SECRET}"),
                )
                .env(
                    "REGISTRY_TOKEN_REVOCATION__HEADERS__AUTHORIZATION",
                    &format!("Bearer {FEED_SECRET}"),
                ),
        );
    Setup {
        keys,
        ledger,
        envoy,
        _postgres: postgres,
        _dir: dir,
    }
}

/// One `/token` GET: status, the minted token's jti (if any), the latency.
fn token(envoy: &Envoy, optok: &str, scope: &str) -> (u16, Option<String>, Duration) {
    let t0 = Instant::now();
    let reply = envoy.get(
        &token_path(SERVICE, &[scope]),
        &[("authorization", &bearer(optok))],
    );
    let took = t0.elapsed();
    let jti = reply.try_json().and_then(|b| {
        let t = b["token"].as_str()?.to_string();
        let (_, claims) = registry_token_e2e::gateway::decode_unverified(&t).ok()?;
        claims["jti"].as_str().map(str::to_string)
    });
    (reply.status, jti, took)
}

/// Decisions Envoy counted: issued and rejected (every reason).
fn counted(envoy: &Envoy) -> (u64, BTreeMap<String, u64>) {
    let issued = envoy.issued();
    let reply = envoy.admin_get("/stats?format=json&filter=registry_token_rejected_total");
    let mut rejected = BTreeMap::new();
    for s in reply.json()["stats"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = s["name"].as_str().unwrap_or_default();
        if let Some(label) = name.rsplit_once(".reason.").map(|(_, l)| l.to_string()) {
            let v = s["value"].as_u64().unwrap_or(0);
            if v > 0 {
                rejected.insert(label, v);
            }
        }
    }
    (issued, rejected)
}

/// Waits until the ledger holds `want` rows (or `timeout`); returns the rows.
fn wait_rows(s: &Setup, want: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = all_rows(&s.ledger, &s.keys);
        if rows.len() >= want || Instant::now() >= deadline {
            return rows;
        }
        thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn issued_tokens_and_refusals_are_in_the_ledger_with_the_ids_clients_saw() {
    decisions_reach_the_ledger(Db::Sqlite);
}

#[test]
fn postgres_issued_tokens_and_refusals_are_in_the_ledger() {
    decisions_reach_the_ledger(Db::Postgres);
}

fn decisions_reach_the_ledger(db: Db) {
    let s = setup_on(db, json!({"batchSize": 10}));
    let alice = optok(&s.keys, |o| {
        o.subject = "alice".into();
        o.license = Some("lic-1".into());
    });
    let mut jtis = Vec::new();
    for _ in 0..3 {
        let (status, jti, _) = token(&s.envoy, &alice, PULL);
        assert_eq!(status, 200);
        jtis.push(jti.expect("a token"));
    }
    let (status, _, _) = token(&s.envoy, &alice, PUSH);
    assert_eq!(status, 403, "community cannot push");
    let expired = optok(&s.keys, |o| {
        o.subject = "bob".into();
        o.time_offset = -3600;
    });
    assert_eq!(token(&s.envoy, &expired, PULL).0, 401);

    let rows = wait_rows(&s, 5, Duration::from_secs(20));
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for jti in &jtis {
        let (status, row) = admin_get(&s.ledger, &s.keys, &format!("/v1/issuances/{jti}"));
        assert_eq!(status, 200, "{jti}: {row}");
        assert_eq!(row["decision"], "issued");
        assert_eq!(row["subject"], "alice");
        assert_eq!(row["license"], "lic-1");
        assert_eq!(row["service"], SERVICE);
        assert_eq!(row["granted"], json!([PULL]));
        assert_eq!(row["gateway"], "gw-e2e");
        assert_eq!(row["grant"], "get");
        assert!(row["kid"].is_string() && row["iat"].is_i64() && row["exp"].is_i64());
    }
    let reasons: HashSet<(String, String)> = rows
        .iter()
        .filter(|r| r["decision"] == "rejected")
        .map(|r| {
            (
                r["reason"].as_str().unwrap_or_default().to_string(),
                r["subject"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        HashSet::from([
            ("plan_denied".to_string(), "alice".to_string()),
            // The expired OpToken did not verify: no subject is trusted.
            ("expired".to_string(), "-".to_string()),
        ])
    );
    // The refusal's id is the audit line's id.
    assert!(s.envoy.wait_for_log(Duration::from_secs(10), |log| {
        rows.iter()
            .filter(|r| r["decision"] == "rejected")
            .all(|r| log.contains(&format!("\"id\":\"{}\"", r["id"].as_str().unwrap_or("?"))))
    }));
    assert_eq!(
        s.envoy
            .counter("wasmcustom.registry_token_ledger_records_sent_total"),
        5
    );
    assert_eq!(
        s.envoy
            .counter("wasmcustom.registry_token_ledger_dropped_total"),
        0
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outage {
    /// SIGSTOP, then SIGCONT: connections hang, POSTs time out.
    Pause,
    /// SIGKILL, then a new process on the same database and port.
    Restart,
}

/// Load with a few threads; in the middle the ledger goes away for the outage; afterwards
/// the ledger holds exactly one row per decision Envoy counted, every jti a client got
/// among them; no request failed because of the outage.
fn load_through(db: Db, outage: Outage) {
    let requests = env_u64("LEDGER_E2E_REQUESTS", 2000) as usize;
    let outage_for = Duration::from_secs(env_u64("LEDGER_E2E_OUTAGE_SECONDS", 60));
    let mut s = setup_on(db, json!({"batchSize": 100, "bufferRecords": 50000}));
    let ok = optok(&s.keys, |o| o.subject = "load".into());
    let done = Arc::new(AtomicUsize::new(0));
    let during = Arc::new(AtomicBool::new(false));
    let jtis = Arc::new(Mutex::new(Vec::new()));
    let latencies = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads = 4;
    let envoy_url = s.envoy.base_url();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (done, during, jtis, latencies, failures, ok, url) = (
                done.clone(),
                during.clone(),
                jtis.clone(),
                latencies.clone(),
                failures.clone(),
                ok.clone(),
                envoy_url.clone(),
            );
            thread::spawn(move || loop {
                let i = done.fetch_add(1, Ordering::SeqCst);
                if i >= requests {
                    break;
                }
                // One in ten is refused (plan_denied), the rest issued.
                let scope = if (i + t) % 10 == 0 { PUSH } else { PULL };
                let t0 = Instant::now();
                let reply = request(
                    "GET",
                    &format!("{url}{}", token_path(SERVICE, &[scope])),
                    &[("authorization", &bearer(&ok))],
                    None,
                );
                let took = t0.elapsed();
                let want = if scope == PUSH { 403 } else { 200 };
                if reply.status != want {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{i}: {} {}", reply.status, reply.body));
                }
                if let Some(jti) = reply.try_json().and_then(|b| {
                    let t = b["token"].as_str()?.to_string();
                    let (_, c) = registry_token_e2e::gateway::decode_unverified(&t).ok()?;
                    c["jti"].as_str().map(str::to_string)
                }) {
                    jtis.lock().unwrap().push(jti);
                }
                let mut l = latencies.lock().unwrap();
                if during.load(Ordering::SeqCst) {
                    l.1.push(took);
                } else {
                    l.0.push(took);
                }
                drop(l);
                // Spread the requests over the outage.
                thread::sleep(Duration::from_millis(
                    (outage_for.as_millis() as u64 * 2 * threads as u64) / requests as u64,
                ));
            })
        })
        .collect();
    // A quarter in: the ledger goes away.
    while done.load(Ordering::SeqCst) < requests / 4 {
        thread::sleep(Duration::from_millis(20));
    }
    during.store(true, Ordering::SeqCst);
    match outage {
        Outage::Pause => s
            .ledger
            .signal(libc::SIGSTOP)
            .unwrap_or_else(|e| panic!("{e}")),
        Outage::Restart => s.ledger.kill(),
    }
    let away = Instant::now();
    thread::sleep(outage_for);
    let backlog = s.envoy.counter("wasmcustom.registry_token_ledger_backlog");
    let failed_batches = s
        .envoy
        .counter("wasmcustom.registry_token_ledger_batches_failed_total");
    match outage {
        Outage::Pause => s
            .ledger
            .signal(libc::SIGCONT)
            .unwrap_or_else(|e| panic!("{e}")),
        Outage::Restart => s.ledger.restart().unwrap_or_else(|e| panic!("{e}")),
    }
    during.store(false, Ordering::SeqCst);
    eprintln!(
        "ledger {outage:?} for {:?}: backlog {backlog}, failed batches {failed_batches}",
        away.elapsed()
    );
    for h in handles {
        h.join().expect("load thread");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    assert!(backlog > 0, "records waited while the ledger was away");
    assert!(failed_batches > 0, "POSTs failed while the ledger was away");

    let (issued, rejected) = counted(&s.envoy);
    let decisions = issued + rejected.values().sum::<u64>();
    assert_eq!(decisions, requests as u64, "{issued} issued, {rejected:?}");
    let rows = wait_rows(&s, decisions as usize, Duration::from_secs(120));
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a row listed twice");
    assert_eq!(
        rows.len() as u64,
        decisions,
        "one row per decision Envoy counted"
    );
    let issued_rows = rows.iter().filter(|r| r["decision"] == "issued").count() as u64;
    assert_eq!(issued_rows, issued);
    let jtis = jtis.lock().unwrap().clone();
    assert_eq!(jtis.len() as u64, issued);
    let missing: Vec<&String> = jtis
        .iter()
        .filter(|j| !unique.contains(j.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "tokens missing from the ledger: {missing:?}"
    );
    assert_eq!(
        s.envoy
            .counter("wasmcustom.registry_token_ledger_dropped_total"),
        0
    );
    assert_eq!(
        s.envoy.counter("wasmcustom.registry_token_ledger_backlog"),
        0,
        "the backlog drained"
    );
    // Latency: the outage cost the requests nothing noticeable.
    let (mut before, mut away) = latencies.lock().unwrap().clone();
    before.sort();
    away.sort();
    let p99 = |v: &Vec<Duration>| v.get(v.len() * 99 / 100).copied().unwrap_or_default();
    eprintln!(
        "p99 latency: {:?} without the ledger's outage ({} requests), {:?} during it ({})",
        p99(&before),
        before.len(),
        p99(&away),
        away.len()
    );
    assert!(!away.is_empty());
    assert!(
        p99(&away) <= p99(&before) * 5 + Duration::from_millis(100),
        "latency rose while the ledger was away: p99 {:?} vs {:?}",
        p99(&away),
        p99(&before)
    );
}

#[test]
fn a_paused_ledger_loses_nothing_and_duplicates_nothing() {
    load_through(Db::Sqlite, Outage::Pause);
}

#[test]
fn a_killed_and_restarted_ledger_loses_nothing_and_duplicates_nothing() {
    load_through(Db::Sqlite, Outage::Restart);
}

#[test]
fn postgres_a_killed_and_restarted_ledger_loses_nothing_and_duplicates_nothing() {
    load_through(Db::Postgres, Outage::Restart);
}

#[test]
fn refuse_with_a_tiny_buffer_never_issues_an_unrecorded_token() {
    let s = setup(json!({"batchSize": 1, "bufferRecords": 3, "onBacklogFull": "refuse"}));
    let op = optok(&s.keys, |o| o.subject = "carol".into());
    let mut issued = Vec::new();
    let (status, jti, _) = token(&s.envoy, &op, PULL);
    assert_eq!(status, 200);
    issued.push(jti.unwrap());
    s.ledger
        .signal(libc::SIGSTOP)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut refused = 0;
    for _ in 0..20 {
        let reply = s.envoy.get(
            &token_path(SERVICE, &[PULL]),
            &[("authorization", &bearer(&op))],
        );
        match reply.status {
            200 => issued.push(
                registry_token_e2e::gateway::decode_unverified(
                    reply.json()["token"].as_str().unwrap_or_default(),
                )
                .map(|(_, c)| c["jti"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
            ),
            503 => {
                assert!(reply.body.contains("ledger_backlog_full"), "{reply:?}");
                assert!(reply.header("retry-after").is_some());
                refused += 1;
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(refused >= 15, "the tiny buffer filled: {refused} refused");
    assert!(
        issued.len() <= 4,
        "at most the buffer and the batch out: {issued:?}"
    );
    assert_eq!(
        s.envoy
            .counter("wasmcustom.registry_token_rejected_total.reason.ledger_backlog_full"),
        refused
    );
    s.ledger
        .signal(libc::SIGCONT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Room again once the ledger took the backlog.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, jti, _) = token(&s.envoy, &op, PULL);
        if status == 200 {
            issued.push(jti.unwrap());
            break;
        }
        assert!(Instant::now() < deadline, "never room again");
        thread::sleep(Duration::from_millis(200));
    }
    let rows = wait_rows(&s, issued.len(), Duration::from_secs(30));
    let ids: HashSet<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    for jti in &issued {
        assert!(
            ids.contains(jti.as_str()),
            "{jti} issued but not in the ledger"
        );
    }
    assert_eq!(
        s.envoy
            .counter("wasmcustom.registry_token_ledger_dropped_total"),
        0
    );
}

/// One attempt of the client a revocation targets: status and body.
type Attempt<'a> = Box<dyn Fn() -> (u16, String) + 'a>;

#[test]
fn a_revocation_posted_to_the_ledger_is_enforced_within_one_refresh_and_lifted_the_same_way() {
    let s = setup(json!({}));
    let admin_token = admin(&s.keys);
    let refresh = Duration::from_secs(10);
    let url = format!("{}/token", s.envoy.base_url());
    let form = ("content-type", "application/x-www-form-urlencoded");
    let envoy = &s.envoy;
    let get_with = |op: String| -> Attempt {
        Box::new(move || {
            let reply = envoy.get(
                &token_path(SERVICE, &[PULL]),
                &[("authorization", &bearer(&op))],
            );
            (reply.status, reply.body)
        })
    };

    // A refresh token, as `docker login` gets one (the password grant, offline access); the
    // security team finds its id in the ledger row of the token issued with it.
    let body = format!(
        "grant_type=password&username=frank&password={}&service={SERVICE}\
         &scope={}&client_id=docker&access_type=offline",
        optok(&s.keys, |o| o.subject = "frank".into()),
        registry_token_e2e::percent_encode(PULL)
    );
    let reply = post(&url, &[form], body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = reply.json();
    let refresh_token = answer["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let (_, claims) = registry_token_e2e::gateway::decode_unverified(
        answer["access_token"].as_str().unwrap_or_default(),
    )
    .expect("the access token");
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let refresh_token_id = loop {
        let (status, row) = admin_get(&s.ledger, &s.keys, &format!("/v1/issuances/{jti}"));
        if status == 200 {
            assert_eq!(row["grant"], "password", "{row}");
            break row["refresh_token_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no refresh_token_id in {row}"))
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{jti} never reached the ledger: {status} {row}"
        );
        thread::sleep(Duration::from_millis(250));
    };
    // The row names the refresh token by its id (its `jti`), never by the token itself.
    let sealed = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let claims = refresh_token.split('.').nth(1).unwrap_or_default();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(claims).unwrap_or_default())
            .unwrap_or_default()
    };
    assert_eq!(sealed["jti"].as_str(), Some(refresh_token_id.as_str()));
    assert_ne!(refresh_token_id, refresh_token);
    let refresh_grant: Attempt = Box::new(|| {
        let body = format!(
            "grant_type=refresh_token&refresh_token={refresh_token}&service={SERVICE}&scope={PULL}&client_id=docker"
        );
        let reply = post(&url, &[form], body.as_bytes());
        (reply.status, reply.body)
    });

    let cases: [(&str, String, Attempt, u16, &str); 3] = [
        (
            "license",
            "lic-77".into(),
            get_with(optok(&s.keys, |o| {
                o.subject = "dora".into();
                o.license = Some("lic-77".into());
            })),
            403,
            "license_revoked",
        ),
        (
            "subject",
            "erin".into(),
            get_with(optok(&s.keys, |o| o.subject = "erin".into())),
            403,
            "subject_revoked",
        ),
        (
            "refreshToken",
            refresh_token_id,
            refresh_grant,
            400,
            "refresh_token_revoked",
        ),
    ];
    for (kind, value, attempt, refused, reason) in cases {
        // The feed was fetched (the gateway issues, the list is known).
        let (status, body) = attempt();
        assert_eq!(status, 200, "{kind} before: {body}");
        let reply = post(
            &s.ledger.url("/v1/revocations"),
            &[
                ("authorization", &bearer(&admin_token)),
                ("content-type", "application/json"),
            ],
            json!({"kind": kind, "value": value, "reason": "e2e"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(reply.status, 201, "{reply:?}");
        let id = reply.json()["id"].as_str().unwrap_or_default().to_string();
        let posted = Instant::now();
        loop {
            let (status, body) = attempt();
            if status == refused {
                assert!(body.contains(reason), "{kind}: {body}");
                break;
            }
            assert_eq!(status, 200, "{kind}: {body}");
            assert!(
                posted.elapsed() <= refresh + Duration::from_secs(3),
                "{kind} revocation not enforced within one refresh period"
            );
            thread::sleep(Duration::from_millis(250));
        }
        eprintln!("{kind} revoked after {:?}", posted.elapsed());
        let reply = request(
            "DELETE",
            &s.ledger
                .url(&format!("/v1/revocations/{id}?reason=e2e-done")),
            &[("authorization", &bearer(&admin_token))],
            None,
        );
        assert_eq!(reply.status, 204, "{reply:?}");
        let lifted = Instant::now();
        while attempt().0 != 200 {
            assert!(
                lifted.elapsed() <= refresh + Duration::from_secs(3),
                "{kind} still refused after one refresh period"
            );
            thread::sleep(Duration::from_millis(250));
        }
    }
    // The feed needs its secret: without it, 401 (the gateway sends it from the env).
    assert_eq!(get(&s.ledger.url("/v1/revocations/feed"), &[]).status, 401);
    assert!(!s
        .envoy
        .full_log()
        .contains("revocation list fetch answered HTTP 401"));
}
