//! The performance instrumentation in a real Envoy (no timing is asserted): the decision
//! histogram `registry_token_decision_us` in `/stats/prometheus`, the cache counters, the
//! VM memory gauge, and mint reuse handing out the same token. Uses the bench's own Envoy
//! template (`bench/envoy/token.yaml.in`), so `make test` also checks that it loads.
//!
//! Run with `make wasm && cargo test -p registry-token-e2e --test performance`.

use std::process::Command;
use std::time::{Duration, Instant};

use registry_token_e2e::authority::{AuthorityKey, OpTokSpec};
use registry_token_e2e::{prom_value, repo_root, Envoy, EnvoyOptions};
use serde_json::json;

const SERVICE: &str = "registry.bench";
const PATH: &str = "/token?service=registry.bench&scope=repository:bench/r1/app:pull";

fn genpkey(dir: &std::path::Path, name: &str, args: &[&str]) -> String {
    let out = dir.join(name);
    let status = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(status.success(), "openssl genpkey {args:?} failed");
    std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

fn prom(envoy: &Envoy, series: &str) -> f64 {
    prom_value(&envoy.stats_prometheus(), series).unwrap_or(0.0)
}

#[test]
fn histogram_cache_counters_memory_gauge_and_mint_reuse() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let authority_pem = genpkey(
        dir.path(),
        "authority.pem",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let signing_pem = genpkey(
        dir.path(),
        "signing.pem",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let authority = AuthorityKey::from_pem(&authority_pem).unwrap_or_else(|e| panic!("{e}"));
    let plugin = json!({
        "authority": {"issuer": "https://authority.example", "audiences": ["registry-token"],
                      "jwks": authority.jwks(), "requireSenderConstraint": false},
        "signing": {"keyPem": signing_pem, "algorithm": "ES256", "reuseSeconds": 60},
        "registry": {"realm": "http://localhost/token", "allowedServices": [SERVICE]},
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
