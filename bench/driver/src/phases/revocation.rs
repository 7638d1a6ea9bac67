//! The revocation list at 50,000 entries (`--only revocation-feed`): the ledger's feed
//! (its size in each form, the time to build the digest form once and to serve it from
//! memory after), and a gateway taking it (the filter's own histogram of a worker's load,
//! its gauges) and answering `/token` with it in force.

use std::time::{Duration, Instant};

use registry_token_loadgen::admin::{self, Snapshot};
use registry_token_loadgen::http::{self, connect, exchange, Target};
use registry_token_loadgen::load::Mode;
use serde_json::{json, Value};

use crate::measure::{measure, target_for, Load};
use crate::procs::{fresh_sqlite, start_bench_ledger, start_token_envoy_config, BenchLedger};
use crate::results::{Outcome, RevocationFeed};
use crate::scenarios::{plugin_config, request_path, scenario, BASE_RULES, ISSUER, LEDGER_SECRET};
use crate::step;

use super::Bench;

/// Revocations in the list: subjects and licences (what a caller's OpTok is checked by).
pub const FEED_ENTRIES: usize = 50_000;
/// Of which licences.
const FEED_LICENCES: usize = 10_000;
/// The gateway's `revocation.refreshSeconds`.
const REFRESH_SECONDS: u64 = 10;
/// Warm requests of the digest feed timed.
const WARM_GETS: usize = 20;

/// The revocation feed at [`FEED_ENTRIES`], when asked for.
pub fn revocation_feed(b: &Bench<'_>) -> Option<Outcome<RevocationFeed>> {
    if !b.s.want("revocation-feed") {
        return None;
    }
    step(&format!(
        "revocation feed at {FEED_ENTRIES} entries: the ledger's feed, a gateway taking it, /token with it for {} s",
        b.s.seconds
    ));
    let r = measure_feed(b);
    match &r {
        Ok(f) => println!(
            "    digest form {} bytes (value form {} bytes); built in {:.0} ms, served from memory in {} µs (median of {WARM_GETS}); \
             a worker takes it in {} µs; /token with it {:.0} tokens/s, filter p50 {} µs",
            f.digest_bytes,
            f.value_bytes,
            f.build_ms,
            f.serve_p50_us,
            f.gateway_load_us.map_or("?".into(), |u| format!("{u:.0}")),
            f.tokens_per_second,
            f.filter_p50_us.map_or("?".into(), |u| format!("{u:.1}"))
        ),
        Err(e) => println!("    revocation feed FAILED: {e}"),
    }
    Some(r)
}

/// One request on a fresh connection: status, body, the time from sending to the body.
fn call(
    t: &Target,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>, Duration), String> {
    let mut s = connect(t, Duration::from_secs(30)).map_err(|e| format!("{path}: {e}"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {auth}\r\nConnection: close\r\n",
        t.host
    );
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    let mut buf = Vec::new();
    let started = Instant::now();
    let r = exchange(s.as_mut(), req.as_bytes(), &mut buf).map_err(|e| format!("{path}: {e}"))?;
    let took = started.elapsed();
    Ok((r.status, buf[r.body.clone()].to_vec(), took))
}

/// `FEED_ENTRIES` revocations through the ledger's batch API.
fn fill(l: &BenchLedger, admin: &str) -> Result<(), String> {
    let all: Vec<(&str, String)> = (0..FEED_ENTRIES)
        .map(|i| {
            if i < FEED_LICENCES {
                ("license", format!("revoked-licence-{i:06}"))
            } else {
                ("subject", format!("revoked-user-{i:06}@tenant.example"))
            }
        })
        .collect();
    for chunk in all.chunks(10_000) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|(kind, value)| json!({"kind": kind, "value": value, "reason": "bench"}))
            .collect();
        let body = json!({ "items": items }).to_string();
        let (status, answer, _) = call(
            &l.target,
            "POST",
            "/v1/revocations/batch",
            admin,
            Some(&body),
        )?;
        if status != 201 {
            return Err(format!(
                "POST /v1/revocations/batch answered {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
    }
    Ok(())
}

/// The sample sum and count of Envoy's histogram `name` (Prometheus text).
fn histogram_sum_count(admin: &Target, name: &str) -> Result<(f64, u64), String> {
    let (_, text) = http::get(admin, "/stats/prometheus")?;
    let sample = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{suffix}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Ok((
        sample("_sum").unwrap_or(0.0),
        sample("_count").unwrap_or(0.0) as u64,
    ))
}

fn measure_feed(b: &Bench<'_>) -> Outcome<RevocationFeed> {
    let db = fresh_sqlite(&b.ctx.work, "revocation")?;
    // The ledger on the load generator's CPU (a service of its own), as for es256-ledger.
    let l = start_bench_ledger(&b.ctx, &b.material, &b.s.ledger, &db, b.client_cpu, false)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let admin = b.material.authority.sign(&json!({
        "iss": ISSUER, "sub": "bench-security", "iat": now, "exp": now + 3600,
        "scope": "registry.token.admin"
    }))?;
    let t = Instant::now();
    fill(&l, &admin)?;
    let fill_seconds = t.elapsed().as_secs_f64();

    let digests = "/v1/revocations/feed?form=digests";
    let (status, body, cold) = call(&l.target, "GET", digests, LEDGER_SECRET, None)?;
    if status != 200 {
        return Err(format!("GET {digests} answered {status}"));
    }
    let lists = registry_token_core::policy::revocation::parse_remote(&body)?;
    if lists.len() != FEED_ENTRIES {
        return Err(format!("the digest feed holds {} entries", lists.len()));
    }
    let mut warm = Vec::new();
    for _ in 0..WARM_GETS {
        let (_, again, took) = call(&l.target, "GET", digests, LEDGER_SECRET, None)?;
        if again != body {
            return Err("the digest feed changed without a change".into());
        }
        warm.push(took);
    }
    warm.sort();
    let (_, values, value_took) = call(
        &l.target,
        "GET",
        "/v1/revocations/feed",
        LEDGER_SECRET,
        None,
    )?;

    // The gateway: es256 with the list (the digest form, as shipped) in force.
    let sc = scenario("es256")?;
    let mut config = plugin_config(&b.material, &sc);
    config["revocation"] = json!({
        "url": l.url(digests),
        "cluster": crate::scenarios::LEDGER_CLUSTER,
        "refreshSeconds": REFRESH_SECONDS,
        "headers": {"authorization": format!("Bearer {LEDGER_SECRET}")}
    });
    let e = start_token_envoy_config(&b.ctx, "revocation-feed", &config, Some(&l))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let taken = loop {
        let s: Snapshot = admin::snapshot(&e.admin)?;
        let entries = s.value("wasmcustom.registry_token_revocation_entries");
        if entries == FEED_ENTRIES as u64
            && s.value("wasmcustom.registry_token_revocation_stale") == 0
        {
            break s;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the gateway did not take the list in 30 s (entries {entries}, failing {})",
                s.value("wasmcustom.registry_token_revocation_refresh_failing")
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let target = target_for(&b.material, e.listen_port(), Mode::Bearer)?;
    let m = measure(
        &b.ctx,
        Load {
            target: &target,
            admin: &e.admin,
            mode: Mode::Bearer,
            pool: b.pools.get(Mode::Bearer),
            use_optoks: 0,
            path: &request_path(BASE_RULES),
            seconds: b.s.seconds,
            rate: None,
            expect_rate: 4000,
            warmup: true,
        },
    )?;
    let figures = m.figures(Mode::Bearer);
    // Envoy writes histograms to its stats sinks every 5 s.
    let (mut sum, mut count) = (0.0, 0);
    let deadline = Instant::now() + Duration::from_secs(12);
    while count == 0 && Instant::now() < deadline {
        (sum, count) = histogram_sum_count(&e.admin, "registry_token_revocation_load_us")?;
        if count == 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let after = admin::snapshot(&e.admin)?;
    Ok(RevocationFeed {
        entries: FEED_ENTRIES as u64,
        fill_seconds,
        digest_bytes: body.len() as u64,
        value_bytes: values.len() as u64,
        build_ms: cold.as_secs_f64() * 1000.0,
        serve_p50_us: u64::try_from(warm[warm.len() / 2].as_micros()).unwrap_or(u64::MAX),
        value_serve_ms: value_took.as_secs_f64() * 1000.0,
        gateway_load_us: (count > 0).then(|| sum / count as f64),
        gateway_loads: count,
        vm_memory_bytes: after.value("wasmcustom.registry_token_vm_memory_bytes"),
        stale: taken.value("wasmcustom.registry_token_revocation_stale") != 0,
        tokens_per_second: figures.tokens_per_second(),
        filter_p50_us: figures.filter_p50_us,
        filter_p99_us: figures.filter_p99_us,
        non_ok: figures.responses() - figures.ok() + figures.transport_errors,
    })
}
