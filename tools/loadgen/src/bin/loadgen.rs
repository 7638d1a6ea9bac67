//! `make load`: drives a running gateway (default: `make run`'s 127.0.0.1:8085, admin
//! 127.0.0.1:9901) and checks Envoy's own counters against what it saw.
//!
//! ```text
//! loadgen [--target http://127.0.0.1:8085] [--admin http://127.0.0.1:9901]
//!         [--connections 8] [--duration 20] [--rate 0 (closed loop) | N requests/s]
//!         [--mode bearer|dpop|mtls|hostile-dpop|malformed-dpop]
//!         [--authority-key .dev/authority.pem] [--kid KID]
//!         [--path /token] [--query service=…&scope=…] [--realm http://localhost:8085/token]
//!         [--optoks 2000] [--plan P] [--iss URL] [--aud A] [--expect-rate 3000]
//!         [--ca ca.crt --cert client.crt --key client.key]   (mtls)
//!         [--max-requests 5000000]
//! ```
//!
//! Exit status: 0 when Envoy's counter deltas equal what the generator saw, 1 when they do
//! not (or nothing was issued; in the refusing modes, when anything but the expected 401s
//! came back), 2 on a usage or setup error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use registry_token_core::token::keys::pem_certificates;
use registry_token_loadgen::admin::{self, bucket_quantile, Snapshot};
use registry_token_loadgen::args::Args;
use registry_token_loadgen::http::{self, loopback_target, plain_target, Target};
use registry_token_loadgen::jose::{b64, sha256, AuthorityKey, OpTokClaims};
use registry_token_loadgen::load::{self, Mode, OpTokPool, RunSpec, Workload};

const KNOWN: &[&str] = &[
    "target",
    "admin",
    "connections",
    "duration",
    "rate",
    "mode",
    "authority-key",
    "kid",
    "path",
    "query",
    "realm",
    "optoks",
    "plan",
    "iss",
    "aud",
    "expect-rate",
    "ca",
    "cert",
    "key",
    "max-requests",
    "help",
];

const USAGE: &str = "\
make load [LOAD_ARGS=\"...\"]  drives a running gateway (make run), loopback only

  --target URL        gateway origin (http://127.0.0.1:8085; https:// for mtls)
  --admin URL         Envoy admin (http://127.0.0.1:9901)
  --connections N     keep-alive connections, one thread each (8, at most 512)
  --duration S        seconds of load (20, at most 3600)
  --rate R            offered requests/s over all connections (0 = closed loop, default)
  --mode M            bearer (default), dpop (DPoP-bound OpToks + ES256 proofs) or
                      mtls (certificate-bound OpToks over TLS; needs --ca --cert --key),
                      hostile-dpop (DPoP-bound OpToks + hostile proofs in rotation: 8192-bit
                      RSA jwk with a 34-bit e or e = AQAB, PS512, garbage signature; ES256
                      proof by another key; ES256 proof with a wrong ath: expects only 401
                      dpop_jwk / dpop_jkt_mismatch / dpop_ath) or
                      malformed-dpop (DPoP-bound OpToks + `DPoP: x`: expects only 401
                      dpop_malformed, the cheapest refusal)
  --authority-key F   PKCS#8 PEM key the gateway trusts (.dev/authority.pem)
  --kid K             kid of OpToks (default: the key's RFC 7638 thumbprint)
  --path P --query Q  request (/token, service=registry.localhost&scope=repository:stella-ops/public/base:pull)
  --realm URL         the gateway's registry.realm, for DPoP htu (http://localhost:8085/token)
  --optoks N          distinct OpToks pre-generated and cycled (2000)
  --plan P --iss I --aud A   OpTok claims (no plan, https://authority.example, registry-token)
  --expect-rate R     DPoP proofs pre-generated per second of run (3000; more are signed live)
  --max-requests N    stop after N requests (5000000)

Prints tokens/s, client p50/p99/p99.9, the filter's own histogram, Envoy's counters, and
checks Envoy's counter deltas against what it saw: exit 0 when they agree, 1 when not (or
nothing was issued), 2 on a usage or setup error.";

/// Longest run accepted, seconds.
const MAX_DURATION: u64 = 3600;
/// Most connections accepted.
const MAX_CONNECTIONS: usize = 512;

fn fail(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

fn num_err<T>(e: String) -> T {
    fail(&e)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")))
}

fn fmt_us(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.1} ms", v / 1000.0),
        Some(v) => format!("{v:.0} µs"),
        None => "-".into(),
    }
}

fn main() {
    let args = Args::parse(std::env::args().skip(1), &["help"]).unwrap_or_else(|e| fail(&e));
    if args.has("help") {
        println!("{USAGE}");
        return;
    }
    let unknown = args.unknown(KNOWN);
    if !unknown.is_empty() {
        fail(&format!(
            "unknown flag(s): --{} (see --help)",
            unknown.join(", --")
        ));
    }
    let mode = Mode::parse(&args.str("mode", "bearer"))
        .unwrap_or_else(|| fail("--mode is bearer, dpop, mtls, hostile-dpop or malformed-dpop"));
    let connections: usize = args.num("connections", 8).unwrap_or_else(num_err);
    let duration: u64 = args.num("duration", 20).unwrap_or_else(num_err);
    let rate: f64 = args.num("rate", 0.0).unwrap_or_else(num_err);
    let optoks: usize = args.num("optoks", 2000).unwrap_or_else(num_err);
    let expect_rate: u64 = args.num("expect-rate", 3000).unwrap_or_else(num_err);
    let max_requests: u64 = args.num("max-requests", 5_000_000).unwrap_or_else(num_err);
    if !(1..=MAX_CONNECTIONS).contains(&connections) {
        fail(&format!(
            "--connections must be within 1..={MAX_CONNECTIONS}"
        ));
    }
    if !(1..=MAX_DURATION).contains(&duration) {
        fail(&format!(
            "--duration must be within 1..={MAX_DURATION} seconds"
        ));
    }
    if !(1..=200_000).contains(&optoks) {
        fail("--optoks must be within 1..=200000");
    }

    // Targets: loopback only.
    let target_url = args.str("target", "http://127.0.0.1:8085");
    let (addr, host, tls) = loopback_target(&target_url).unwrap_or_else(|e| fail(&e));
    let admin =
        plain_target(&args.str("admin", "http://127.0.0.1:9901")).unwrap_or_else(|e| fail(&e));
    let mut x5t = None;
    let tls_config = if tls || mode == Mode::Mtls {
        if !tls {
            fail("--mode mtls needs an https:// --target");
        }
        let ca = read(&args.opt("ca").unwrap_or_else(|| fail("https needs --ca")));
        let client = match (args.opt("cert"), args.opt("key")) {
            (Some(c), Some(k)) => {
                let cert = read(&c);
                let der = pem_certificates(&cert)
                    .unwrap_or_else(|e| fail(&format!("{c}: {e}")))
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| fail(&format!("{c}: no certificate")));
                x5t = Some(b64(&sha256(&der)));
                Some((cert, read(&k)))
            }
            (None, None) if mode != Mode::Mtls => None,
            _ => fail("--mode mtls needs --cert and --key"),
        };
        let config = http::tls_config(&ca, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))
            .unwrap_or_else(|e| fail(&e));
        let name_text = host
            .rsplit_once(':')
            .map_or(host.as_str(), |(h, _)| h)
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(name_text)
            .unwrap_or_else(|e| fail(&format!("server name: {e}")));
        Some((config, name))
    } else {
        None
    };
    let target = Target {
        addr,
        host: host.clone(),
        tls: tls_config,
    };

    // Is it there, and is it the filter?
    let before = admin::snapshot(&admin).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read Envoy's admin at {}: {e}\n(start the gateway with `make run` first)",
            args.str("admin", "http://127.0.0.1:9901")
        ))
    });

    let key_path = args.str("authority-key", ".dev/authority.pem");
    let authority = AuthorityKey::from_pem(&read(&key_path), args.opt("kid"))
        .unwrap_or_else(|e| fail(&format!("{key_path}: {e}")));
    let claims = OpTokClaims {
        issuer: args.str("iss", "https://authority.example"),
        audience: args.str("aud", "registry-token"),
        plan: args.opt("plan"),
        ttl: duration + 600,
        ..OpTokClaims::default()
    };
    let path = format!(
        "{}?{}",
        args.str("path", "/token"),
        args.str(
            "query",
            "service=registry.localhost&scope=repository:stella-ops/public/base:pull"
        )
    );
    let realm = args.str("realm", "http://localhost:8085/token");

    println!(
        "registry-token loadgen: {connections} connection(s) × {duration} s against {target_url}{path} (mode {}, {})",
        mode.name(),
        if rate > 0.0 { format!("open loop at {rate} requests/s") } else { "closed loop".into() }
    );
    let t = Instant::now();
    let pool = OpTokPool::generate(&authority, &claims, mode, optoks, x5t.as_deref())
        .unwrap_or_else(|e| fail(&e));
    println!(
        "pre-generated {} distinct OpToks (kid {}) in {:.1} s",
        pool.len(),
        authority.kid(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let expect = if rate > 0.0 {
        rate.ceil() as u64
    } else {
        expect_rate
    };
    let workload = Workload::with_mode(
        mode,
        Arc::new(pool),
        optoks,
        &host,
        &path,
        &realm,
        duration,
        expect,
    )
    .unwrap_or_else(|e| fail(&e));
    if mode == Mode::HostileDpop {
        println!(
            "pre-generated {} hostile DPoP proofs (cycled: the filter records no refused proof) in {:.1} s",
            workload.pregenerated(),
            t.elapsed().as_secs_f64()
        );
    } else if mode == Mode::Dpop {
        println!(
            "pre-generated {} DPoP proofs (ES256) in {:.1} s",
            workload.pregenerated(),
            t.elapsed().as_secs_f64()
        );
    }

    let spec = RunSpec {
        target,
        connections,
        duration: Duration::from_secs(duration),
        rate: (rate > 0.0).then_some(rate),
        progress: true,
        max_requests,
    };
    let before = admin::snapshot(&admin).unwrap_or(before);
    let result = load::run(&spec, &workload);

    // Envoy's counters are immediate; the histogram is merged at the stats flush (5 s by
    // default): wait for it to account for every answer.
    let responses = result.responses();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut after: Snapshot;
    loop {
        after = admin::snapshot(&admin).unwrap_or_else(|e| fail(&e));
        let counted =
            after.issued() + after.rejected_total() - (before.issued() + before.rejected_total());
        let sampled = after.count.saturating_sub(before.count);
        if (counted >= responses && sampled >= responses) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    let ok = result.ok();
    let non_ok = responses - ok;
    println!();
    println!(
        "client:   {responses} answers in {:.1} s ({:.0}/s): {:.0} tokens/s ({ok} × 200, {non_ok} other{}), {} transport error(s)",
        result.elapsed,
        result.responses_per_second(),
        result.tokens_per_second(),
        if non_ok > 0 {
            format!(
                ": {}",
                result
                    .statuses
                    .iter()
                    .filter(|(s, _)| **s != 200)
                    .map(|(s, n)| format!("{n} × {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        },
        result.transport_errors
    );
    if matches!(mode, Mode::Dpop | Mode::HostileDpop) && workload.live_proofs() > 0 {
        println!(
            "          {} DPoP proofs were signed during the run (pre-generated ones ran out)",
            workload.live_proofs()
        );
    }
    let q = |x: f64| result.quantile(x).map(f64::from);
    println!(
        "latency (client):  p50 {}   p99 {}   p99.9 {}   max {}",
        fmt_us(q(0.5)),
        fmt_us(q(0.99)),
        fmt_us(q(0.999)),
        fmt_us(result.latencies.last().map(|v| f64::from(*v)))
    );
    let sampled = after.count.saturating_sub(before.count);
    let mean = if sampled > 0 {
        Some((after.sum - before.sum) / sampled as f64)
    } else {
        None
    };
    println!(
        "filter (Envoy histogram registry_token_decision_us, this run): {sampled} samples, mean {}, p50 {}, p99 {}, p99.9 {} (bucket-interpolated)",
        fmt_us(mean),
        fmt_us(bucket_quantile(&before.buckets, &after.buckets, 0.5)),
        fmt_us(bucket_quantile(&before.buckets, &after.buckets, 0.99)),
        fmt_us(bucket_quantile(&before.buckets, &after.buckets, 0.999)),
    );
    if let Some((p50, p99, p999)) = after.quantiles {
        println!(
            "          Envoy's own quantiles since start: P50 {}, P99 {}, P99.9 {}",
            fmt_us(Some(p50)),
            fmt_us(Some(p99)),
            fmt_us(Some(p999))
        );
    }
    let issued = after.issued() - before.issued();
    let rb = before.rejected();
    let rejected: Vec<(String, u64)> = after
        .rejected()
        .into_iter()
        .map(|(r, v)| {
            let d = v - rb.get(&r).copied().unwrap_or(0);
            (r, d)
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    let rejected_total: u64 = rejected.iter().map(|(_, d)| d).sum();
    println!(
        "Envoy counters (delta): issued {issued}, rejected {rejected_total}{}",
        if rejected.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                rejected
                    .iter()
                    .map(|(r, d)| format!("{r}: {d}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let d = |name: &str| after.value(name) - before.value(name);
    println!(
        "filter caches (delta): OpTok hits {}, misses {}; minted tokens reused {}; distinct tokens seen by the client {}",
        d("wasmcustom.registry_token_optok_cache_hits_total"),
        d("wasmcustom.registry_token_optok_cache_misses_total"),
        d("wasmcustom.registry_token_mint_reused_total"),
        result.distinct_tokens
    );
    let vm = after.value("wasmcustom.registry_token_vm_memory_bytes");
    println!(
        "memory: largest VM {:.1} MiB; Envoy allocated {:.1} MiB, heap {:.1} MiB",
        vm as f64 / 1048576.0,
        after.value("server.memory_allocated") as f64 / 1048576.0,
        after.value("server.memory_heap_size") as f64 / 1048576.0
    );

    let checks = [
        ("issued == client 200s", issued, ok),
        ("rejected == client non-200s", rejected_total, non_ok),
        ("histogram samples == client answers", sampled, responses),
    ];
    let mut agree = true;
    println!();
    for (what, envoy, client) in checks {
        let good = envoy == client;
        agree &= good;
        println!(
            "  {} {what}: Envoy {envoy}, client {client}",
            if good { "ok  " } else { "FAIL" }
        );
    }
    if result.transport_errors > 0 {
        println!(
            "  note: {} request(s) got no answer; Envoy may have counted them",
            result.transport_errors
        );
    }
    if result.bad_bodies > 0 {
        println!(
            "  FAIL {} 200 answer(s) carried no token",
            result.bad_bodies
        );
        agree = false;
    }
    if let Some(expected) = mode.expected_refusals() {
        // Every answer should be one of the expected refusals: counted as such, not as
        // errors.
        let refused = result.statuses.get(&401).copied().unwrap_or(0);
        let good = refused == responses && responses > 0;
        agree &= good;
        println!(
            "  {} every answer a 401: {refused} of {responses}",
            if good { "ok  " } else { "FAIL" }
        );
        let unexpected: Vec<String> = rejected
            .iter()
            .filter(|(r, _)| !expected.contains(&r.as_str()))
            .map(|(r, d)| format!("{r}: {d}"))
            .collect();
        agree &= unexpected.is_empty();
        println!(
            "  {} refusal reasons within {}{}",
            if unexpected.is_empty() {
                "ok  "
            } else {
                "FAIL"
            },
            expected.join(" / "),
            if unexpected.is_empty() {
                String::new()
            } else {
                format!(": unexpected {}", unexpected.join(", "))
            }
        );
        if refused != responses {
            println!("  (hint: a 401 dpop_htu or dpop_iat means --realm or the clock; any other refusal means the OpToks were not accepted: check --authority-key)");
        }
    } else if ok == 0 {
        println!("  FAIL no token was issued: check --authority-key, --query and --realm against the gateway's configuration");
        agree = false;
    }
    if agree {
        println!("Envoy's counters agree with the load generator.");
    } else if mode.expected_refusals().is_some() {
        println!("Envoy's counters DISAGREE with the load generator (or an answer was not an expected refusal).");
        std::process::exit(1);
    } else {
        println!("Envoy's counters DISAGREE with the load generator (or nothing was issued).");
        std::process::exit(1);
    }
}
