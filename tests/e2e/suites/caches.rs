//! Caches and the performance instrumentation in a real Envoy (no timing is asserted): the
//! decision histogram `registry_token_decision_us`, the cache counters, the VM memory
//! gauge and mint reuse handing out the same token, with the bench's own Envoy template
//! (`bench/envoy/token.yaml.in`, so the e2e run also checks that it loads); and the caches
//! bounded by bytes: under long repository names with `signing.reuseSeconds` on, the VM's
//! memory stays under the cache budgets plus what it had before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_token_e2e::authority::{AuthorityKey, OpTokSpec};
use registry_token_e2e::gateway::{
    bearer, filter_config, fixture_key, optok, start_gateway, token_path, ConfigForm, KeyKind,
    TestKeys, SERVICE,
};
use registry_token_e2e::{get, prom_value, repo_root, Envoy, EnvoyOptions};
use serde_json::json;

use super::common::REALM;

const BENCH_SERVICE: &str = "registry.bench";

const PATH: &str = "/token?service=registry.bench&scope=repository:bench/r1/app:pull";

fn prom(envoy: &Envoy, series: &str) -> f64 {
    prom_value(&envoy.stats_prometheus(), series).unwrap_or(0.0)
}

#[test]
fn histogram_cache_counters_memory_gauge_and_mint_reuse() {
    let authority_pem = fixture_key(KeyKind::Rsa2048, "authority");
    let signing_pem = fixture_key(KeyKind::EcP256, "bench-signing");
    let authority = AuthorityKey::from_pem(&authority_pem).unwrap_or_else(|e| panic!("{e}"));
    let plugin = json!({
        "authority": {"issuer": "https://authority.example", "audiences": ["registry-token"],
                      "jwks": authority.jwks(), "requireSenderConstraint": false},
        "signing": {"keyPem": signing_pem, "algorithm": "ES256", "reuseSeconds": 60},
        "registry": {"realm": "http://localhost/token", "allowedServices": [BENCH_SERVICE]},
        "plans": [{"name": "bench", "repositories": [
            {"pattern": "bench/r0/*"}, {"pattern": "bench/r1/*", "actions": ["pull"]}]}],
        "defaultPlan": "bench"
    });
    let template_path = repo_root().join("bench/envoy/token.yaml.in");
    let template = std::fs::read_to_string(&template_path)
        .unwrap_or_else(|e| panic!("{}: {e}", template_path.display()));
    let opts = EnvoyOptions::default()
        .var("PLUGIN_CONFIG", plugin.to_string())
        .var("TRANSPORT_SOCKET", "")
        .var("CLUSTERS", "");
    let envoy = Envoy::start(&template, opts).unwrap_or_else(|e| panic!("{e}"));

    let optok = OpTokSpec {
        subject: "perf-user".into(),
        ..OpTokSpec::default()
    }
    .mint(&authority);
    let auth = format!("Bearer {optok}");
    let first = envoy.get(PATH, &[("authorization", &auth)]);
    assert_eq!(first.status, 200, "{}", first.body);
    let second = envoy.get(PATH, &[("authorization", &auth)]);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        first.json()["token"],
        second.json()["token"],
        "reuseSeconds hands out the same token"
    );
    let refused = envoy.get(PATH, &[("authorization", "Bearer not.a.token")]);
    assert_eq!(refused.status, 401);

    // Counters at once; the histogram at the next stats flush (1 s in this template).
    assert_eq!(
        envoy.wait_counter(
            "wasmcustom.registry_token_issued_total.grant.get",
            2,
            Duration::from_secs(5)
        ),
        2
    );
    assert_eq!(
        envoy.counter("wasmcustom.registry_token_optok_cache_hits_total"),
        1
    );
    assert_eq!(
        envoy.counter("wasmcustom.registry_token_optok_cache_misses_total"),
        2,
        "the first verification and the malformed token"
    );
    assert_eq!(
        envoy.counter("wasmcustom.registry_token_mint_reused_total"),
        1
    );
    assert!(envoy.counter("wasmcustom.registry_token_vm_memory_bytes") >= 65_536);

    let deadline = Instant::now() + Duration::from_secs(10);
    while prom(&envoy, "registry_token_decision_us_count") < 3.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = envoy.stats_prometheus();
    assert_eq!(
        prom_value(&text, "registry_token_decision_us_count"),
        Some(3.0),
        "one sample per /token decision:\n{}",
        text.lines()
            .filter(|l| l.contains("registry_token"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        prom_value(&text, r#"registry_token_decision_us_bucket{le="+Inf"}"#) == Some(3.0),
        "buckets in microseconds"
    );
    assert!(prom_value(&text, "registry_token_decision_us_sum").is_some_and(|s| s > 0.0));
}

/// The verified-OpTok cache (4 MiB) plus the mint memo (8 MiB) per VM: docs/CONFIGURATION.md
/// (`signing.reuseSeconds`) and `filter/core/src/handler/cache.rs`.
const CACHE_BUDGET_BYTES: f64 = 12.0 * 1024.0 * 1024.0;

fn memory_gauge(envoy: &Envoy) -> f64 {
    prom_value(&envoy.stats_prometheus(), "registry_token_vm_memory_bytes")
        .expect("registry_token_vm_memory_bytes is exported")
}

/// 30 repository names of about 240 characters, different for every `n`.
fn long_scopes(n: usize) -> Vec<String> {
    (0..30)
        .map(|i| {
            let filler = "segment-of-a-rather-long-repository-name".repeat(5);
            format!("repository:long/{n:06}/{i:02}/{}:pull", &filler[..200])
        })
        .collect()
}

/// Issue #9, defect 4: one client asking for 30 long repository names per request with
/// `signing.reuseSeconds` on drove the VM from 1.3 MiB to 64 MiB in 6,000 requests (and
/// Wasm memory never shrinks). Now the mint memo and the OpTok cache are bounded by bytes:
/// the gauge stays under the memory before the load plus the budgets, while the minted
/// tokens of the load add up to more than twice the budgets.
#[test]
fn vm_memory_stays_within_the_cache_budgets_under_long_names_with_reuse() {
    const REQUESTS: usize = 2_500;
    const THREADS: usize = 4;
    let keys = TestKeys::generate();
    let mut config = filter_config(&keys, REALM);
    config["signing"]["reuseSeconds"] = json!(120);
    // One worker, so the gauge is this VM's memory.
    let envoy = start_gateway(
        &config,
        ConfigForm::StringValue,
        &keys,
        EnvoyOptions::new().concurrency(1),
    );
    let auth = bearer(&optok(&keys, |s| {
        s.plan = Some("pullonly".into());
        s.ttl = 3_600;
    }));
    // Warm up with the same shape of request, then take the base.
    for n in 0..20 {
        let scopes = long_scopes(1_000_000 + n);
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let reply = envoy.get(&token_path(SERVICE, &refs), &[("authorization", &auth)]);
        assert_eq!(reply.status, 200, "warm-up: {reply:?}");
    }
    let base = memory_gauge(&envoy);

    let next = Arc::new(AtomicUsize::new(0));
    let minted_bytes = Arc::new(AtomicUsize::new(0));
    let url = envoy.base_url();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (next, minted_bytes, url, auth) = (
                next.clone(),
                minted_bytes.clone(),
                url.clone(),
                auth.clone(),
            );
            std::thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    return;
                }
                let scopes = long_scopes(n);
                let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                let reply = get(
                    &format!("{url}{}", token_path(SERVICE, &refs)),
                    &[("authorization", &auth)],
                );
                assert_eq!(reply.status, 200, "request {n}: {reply:?}");
                let token = reply.json()["token"].as_str().unwrap_or_default().len();
                assert!(token > 0, "request {n}: no token");
                minted_bytes.fetch_add(token, Ordering::Relaxed);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("load thread");
    }
    let minted = minted_bytes.load(Ordering::Relaxed) as f64;
    assert!(
        minted > 2.0 * CACHE_BUDGET_BYTES,
        "the load must offer more than twice the budgets to the caches: {minted} bytes minted"
    );
    let after = memory_gauge(&envoy);
    eprintln!(
        "VM memory: {:.1} MiB before the load, {:.1} MiB after {REQUESTS} requests \
         ({:.1} MiB of tokens minted); bound {:.1} MiB",
        base / 1048576.0,
        after / 1048576.0,
        minted / 1048576.0,
        (base + CACHE_BUDGET_BYTES) / 1048576.0
    );
    assert!(
        after <= base + CACHE_BUDGET_BYTES,
        "registry_token_vm_memory_bytes {after} exceeds the memory before the load ({base}) \
         plus the cache budgets ({CACHE_BUDGET_BYTES})"
    );
    // The memo was used (the same request twice within reuseSeconds gets the same token).
    let scopes = long_scopes(REQUESTS - 1);
    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let path = token_path(SERVICE, &refs);
    let a = envoy.get(&path, &[("authorization", &auth)]).json();
    let b = envoy.get(&path, &[("authorization", &auth)]).json();
    assert_eq!(
        a["token"], b["token"],
        "the mint memo reuses a recent token"
    );
}
