//! Guard mode on the registry's route (`--only guard`, issue 22): Envoys of one
//! configuration on Envoy's CPU: `guard-on` with the filter's `guard` section on `/v2`;
//! `guard-off`, the same configuration without it and the filter disabled on `/v2` (plain
//! Envoy in front); `guard-filter`, without the section but with the filter on `/v2` (where
//! it then passes everything). Behind them a registry 2.8, and a stand-in answering small
//! blobs (requests with `Host: blob-stand-in`). One large blob (of random bytes) and one
//! small one are pushed with a registry token from `guard-on`'s own `/token`; then, in each
//! round:
//!
//! - `GET`s of a small blob with that one token (memoised by the guard after its first
//!   use), answered by the stand-in, through `guard-on` and `guard-off` at once
//!   ([`measure_sides`]), then through `guard-on` and `guard-filter` at once: Envoy CPU per
//!   request, and what the guard adds to plain Envoy and to the filter without it.
//!   Registry 2.8 itself serves about 200 blob `GET`s a second per core here (some 5 ms of
//!   CPU each), which would leave Envoy idle and its CPU per request mostly its idle work;
//! - pulls of the large blob from the registry through `guard-off` and `guard-on` at once,
//!   compared over the window while both run: throughput (MB/s) and Envoy CPU per GiB.
//!
//! The registry and the stand-in run on the load generator's CPU (services of their own,
//! as the ledger).

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use registry_token_loadgen::http::{plain_target, Target};
use registry_token_loadgen::load::{Mode, OpTokPool, RunSpec, Workload};
use serde_json::{json, Value};

use crate::measure::{target_for, WARMUP_SECONDS};
use crate::pair::{measure_sides, Running};
use crate::procs::{start_guard_envoy, start_stand_in, BenchEnvoy};
use crate::procs::{BenchRegistry, RegistryAuth};
use crate::registry;
use crate::results::{Guard, Outcome, Pair, Pull, PullPair};
use crate::scenarios::{plugin_config, scenario, REALM, SERVICE};
use crate::setup::{signing_certificate, Material};
use crate::step;

use super::Bench;

/// The repository of the bench's blobs.
pub const GUARD_REPO: &str = "bench/guard";
/// Bytes of the small blob (the size of an image configuration).
pub const SMALL_BLOB_BYTES: usize = 4096;
/// Pairs of large-blob pulls per round.
pub const PULL_PAIRS_PER_ROUND: usize = 5;
/// The `Host` of requests the Envoys send to the stand-in.
pub const STAND_IN_HOST: &str = "blob-stand-in";
/// `iss` of the registry tokens, which the registry is told to expect.
const SIGNING_ISSUER: &str = "registry-token-bench";

/// The guard phase, when asked for.
pub fn guard(b: &Bench<'_>) -> Option<Outcome<Guard>> {
    if !b.s.want("guard") {
        return None;
    }
    step(&format!(
        "guard mode: a registry 2.8 behind the guard, the filter without it and plain Envoy, side by side; \
         {} round(s) of memoised {SMALL_BLOB_BYTES}-byte blob GETs ({} s after {WARMUP_SECONDS} s of warm-up) \
         and {PULL_PAIRS_PER_ROUND} pairs of {} MiB pulls at once",
        b.s.rounds, b.s.seconds, b.s.guard_mib
    ));
    let r = measure_guard(b);
    if let Err(e) = &r {
        println!("    guard FAILED: {e}");
    }
    Some(r)
}

/// The filter's configuration of both Envoys: `es256`'s (ES256 mint, the bench
/// Authority) with registry tokens a registry 2.8 takes (libtrust `kid`, an hour's
/// lifetime, so one token lasts the phase), a plan with tag rules, one revoked licence,
/// and, with `guard`, the guard's section.
pub fn guard_config(m: &Material, guard: bool) -> Result<Value, String> {
    let mut c = plugin_config(m, &scenario("es256")?);
    c["signing"]["issuer"] = json!(SIGNING_ISSUER);
    c["signing"]["kidFormat"] = json!("libtrust");
    c["signing"]["lifetimeSeconds"] = json!(3600);
    c["plans"] = json!([{"name": "bench", "repositories": [{
        "pattern": "bench/**", "actions": ["pull", "push"],
        "tags": {"protected": ["latest"], "immutable": ["v*"]}
    }]}]);
    c["revokedLicenses"] = json!(["bench-revoked-licence"]);
    if guard {
        c["guard"] = json!({"registryCluster": "registry"});
    }
    Ok(c)
}

/// `n` random bytes.
fn random(n: usize) -> Result<Vec<u8>, String> {
    let mut data = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(data)
}

/// A registry token for `GUARD_REPO` (pull, push) from `e`'s `/token`.
fn mint(e: &BenchEnvoy, optok: &str) -> Result<String, String> {
    let t = target_for_envoy(e)?;
    let path = format!("/token?service={SERVICE}&scope=repository:{GUARD_REPO}:pull,push");
    let (status, _, body) = registry::request(&t, "GET", &path, optok, None)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (status, v["token"].as_str()) {
        (200, Some(token)) => Ok(token.to_string()),
        _ => Err(format!(
            "GET /token answered {status}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// The listener of `e`, as a load target (`Host: 127.0.0.1`).
fn target_for_envoy(e: &BenchEnvoy) -> Result<Target, String> {
    plain_target(&format!("http://127.0.0.1:{}", e.listen_port()))
}

/// The same listener, `Host: blob-stand-in`.
fn stand_in_target(e: &BenchEnvoy) -> Result<Target, String> {
    Ok(Target {
        host: STAND_IN_HOST.to_string(),
        ..target_for_envoy(e)?
    })
}

/// `token` with one character of its signature changed.
fn forged(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = b.len().saturating_sub(10);
    if let Some(c) = b.get_mut(i) {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Every Envoy (named, and whether it guards) answers the small blob from the registry
/// with its bytes, and the stand-in's; with a forged token, the guard refuses both itself
/// (401 `guard_invalid_token`), while through the others the registry refuses it and the
/// stand-in (which checks nothing) answers: the guard runs where it should, and only there.
fn check(
    envoys: &[(&BenchEnvoy, &str, bool)],
    path: &str,
    token: &str,
    small: &[u8],
) -> Result<(), String> {
    for &(e, name, guarded) in envoys {
        for (t, upstream) in [
            (target_for_envoy(e)?, "registry"),
            (stand_in_target(e)?, "stand-in"),
        ] {
            let (status, _, body) = registry::request(&t, "GET", path, token, None)?;
            let want = if upstream == "registry" {
                small.len()
            } else {
                SMALL_BLOB_BYTES
            };
            if status != 200 || body.len() != want || (upstream == "registry" && body != small) {
                return Err(format!(
                    "{name}: GET {path} ({upstream}) answered {status} with {} bytes",
                    body.len()
                ));
            }
            let (status, _, body) = registry::request(&t, "GET", path, &forged(token), None)?;
            let by_guard = String::from_utf8_lossy(&body).contains("guard_invalid_token");
            let expected = match (guarded, upstream) {
                (true, _) => status == 401 && by_guard,
                (false, "registry") => status == 401 && !by_guard,
                (false, _) => status == 200,
            };
            if !expected {
                return Err(format!(
                    "{name}: a forged token ({upstream}) answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
    }
    Ok(())
}

/// The CPU time of each Envoy so far, ns.
fn cpu(envoys: [&BenchEnvoy; 2]) -> Result<[u64; 2], String> {
    Ok([envoys[0].cpu_ns()?.0, envoys[1].cpu_ns()?.0])
}

/// What the pull that ends first reads: when, every pull's bytes so far, each Envoy's CPU.
type WindowEnd = (Instant, [u64; 2], Result<[u64; 2], String>);

/// The large blob (`size` bytes) pulled through both Envoys at once: both connections
/// opened, both requests sent together; the window ends with the first pull's last byte,
/// when the other's bytes so far and both Envoys' CPU are read. Both are read to the end.
fn pull_pair(envoys: [&BenchEnvoy; 2], path: &str, token: &str, size: u64) -> Outcome<PullPair> {
    let targets = [target_for_envoy(envoys[0])?, target_for_envoy(envoys[1])?];
    let mut conns = [registry::open(&targets[0])?, registry::open(&targets[1])?];
    let read = [AtomicU64::new(0), AtomicU64::new(0)];
    let end: Mutex<Option<WindowEnd>> = Mutex::new(None);
    let barrier = Barrier::new(3);
    let cpu0 = cpu(envoys)?;
    let (started, results) = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .zip(&targets)
            .enumerate()
            .map(|(i, (conn, t))| {
                let (read, end, barrier) = (&read, &end, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let r = registry::pull(conn.as_mut(), t, path, token, &read[i]);
                    let now = Instant::now();
                    if let (Ok(_), Ok(mut e)) = (&r, end.lock()) {
                        if e.is_none() {
                            let bytes = [0, 1].map(|k| read[k].load(Ordering::Relaxed));
                            *e = Some((now, bytes, cpu(envoys)));
                        }
                    }
                    r
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let results: Vec<Result<u64, String>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a pull panicked".into())))
            .collect();
        (started, results)
    });
    for (r, name) in results.into_iter().zip(["guard-off", "guard-on"]) {
        match r {
            Ok(n) if n == size => {}
            Ok(n) => return Err(format!("{name}: pulled {n} bytes of {size}")),
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    let (at, bytes, cpu1) = end
        .into_inner()
        .map_err(|e| e.to_string())?
        .ok_or("no pull ended")?;
    let cpu1 = cpu1?;
    let side = |i: usize| Pull {
        bytes: bytes[i],
        envoy_cpu_ns: cpu1[i].saturating_sub(cpu0[i]),
    };
    Ok(PullPair {
        seconds: at.duration_since(started).as_secs_f64(),
        base: side(0),
        test: side(1),
    })
}

fn measure_guard(b: &Bench<'_>) -> Outcome<Guard> {
    let work = &b.ctx.work;
    let cert = signing_certificate(work)?;
    let reg = BenchRegistry::start(
        &work.join("guard-registry"),
        &RegistryAuth {
            realm: REALM,
            service: SERVICE,
            issuer: SIGNING_ISSUER,
            cert_pem: &cert,
        },
        b.client_cpu,
    )?;
    let stand_in = start_stand_in(&b.ctx, SMALL_BLOB_BYTES, b.client_cpu)?;
    let ports = [reg.port(), stand_in.listen_port()];
    let on = guard_config(&b.material, true)?;
    let off = guard_config(&b.material, false)?;
    let base = start_guard_envoy(&b.ctx, "guard-off", &off, ports, false)?;
    let filter = start_guard_envoy(&b.ctx, "guard-filter", &off, ports, true)?;
    let test = start_guard_envoy(&b.ctx, "guard-on", &on, ports, true)?;
    let optok = b.pools.bearer.tokens.first().ok_or("no OpTok")?;
    let token = mint(&test, optok)?;

    let small = random(SMALL_BLOB_BYTES)?;
    let small_digest = registry::push_blob(&reg.target, GUARD_REPO, &token, &small)?;
    let size = b.s.guard_mib << 20;
    let big_digest = {
        let big = random(usize::try_from(size).map_err(|e| e.to_string())?)?;
        registry::push_blob(&reg.target, GUARD_REPO, &token, &big)?
    };
    let small_path = format!("/v2/{GUARD_REPO}/blobs/{small_digest}");
    let big_path = format!("/v2/{GUARD_REPO}/blobs/{big_digest}");
    check(
        &[
            (&base, "guard-off", false),
            (&filter, "guard-filter", false),
            (&test, "guard-on", true),
        ],
        &small_path,
        &token,
        &small,
    )?;
    println!(
        "    pushed {SMALL_BLOB_BYTES} bytes and {} MiB; every Envoy answers the small blob (registry and stand-in), \
         the guard refuses a forged token itself and the others pass it on",
        b.s.guard_mib
    );
    // Once, untimed: the blob in the page cache, both paths warm.
    pull_pair([&base, &test], &big_path, &token, size)?;

    let pool = Arc::new(OpTokPool::from_tokens(Mode::Bearer, vec![token.clone()]));
    let workload = Workload::new(pool, 1, STAND_IN_HOST, &small_path, REALM, 1, 0)?;
    let spec = |e: &BenchEnvoy| -> Result<RunSpec, String> {
        Ok(RunSpec {
            target: target_for(&b.material, e.listen_port(), Mode::Bearer)?,
            connections: b.ctx.connections,
            duration: Duration::from_secs(WARMUP_SECONDS),
            rate: None,
            progress: false,
            max_requests: 20_000_000,
        })
    };
    let specs = [spec(&base)?, spec(&filter)?, spec(&test)?];
    let mut out = Guard {
        blob_bytes: size,
        small_bytes: SMALL_BLOB_BYTES as u64,
        ..Guard::default()
    };
    let running = |key, envoy, spec| Running {
        key,
        envoy,
        spec,
        workload: &workload,
    };
    for round in 1..=b.s.rounds {
        let r = measure_sides(
            [
                running("guard-off", &base, &specs[0]),
                running("guard-on", &test, &specs[2]),
            ],
            b.s.seconds,
            None,
        );
        print_gets("plain Envoy", round, &r);
        out.gets.push(r);
        let r = measure_sides(
            [
                running("guard-filter", &filter, &specs[1]),
                running("guard-on", &test, &specs[2]),
            ],
            b.s.seconds,
            None,
        );
        print_gets("the filter without the guard", round, &r);
        out.gets_filter.push(r);
        for _ in 0..PULL_PAIRS_PER_ROUND {
            let r = pull_pair([&base, &test], &big_path, &token, size);
            print_pull(out.pulls.len() + 1, &r);
            out.pulls.push(r);
        }
    }
    Ok(out)
}

/// One side-by-side round of GETs, the guard against `base`.
fn print_gets(base: &str, round: u64, r: &Outcome<Pair>) {
    match r {
        Ok(p) => println!(
            "    GETs, round {round}: {:.1} µs of Envoy CPU per request with {base}, {:.1} µs with the guard \
             ({:+.1} µs); client p50 {} vs {} µs; {:.0} and {:.0} requests/s at once",
            p.base.cpu_us_per_decision(),
            p.test.cpu_us_per_decision(),
            p.added_us(),
            p.base.p50_us.unwrap_or(0),
            p.test.p50_us.unwrap_or(0),
            p.base.rate(),
            p.test.rate()
        ),
        Err(e) => println!("    GETs, round {round}, against {base}: FAILED: {e}"),
    }
}

fn print_pull(n: usize, r: &Outcome<PullPair>) {
    match r {
        Ok(p) => println!(
            "    pull {n}: at once, {:.0} MB/s through plain Envoy, {:.0} MB/s through the guard = {:.3} \
             (over {:.2} s); Envoy CPU {:.0} vs {:.0} ms per GiB",
            p.mb_per_second(&p.base),
            p.mb_per_second(&p.test),
            p.ratio(),
            p.seconds,
            p.base.cpu_ms_per_gib(),
            p.test.cpu_ms_per_gib()
        ),
        Err(e) => println!("    pull {n}: FAILED: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both configurations are ones the filter takes (its own parser and checks), with
    /// keys made as `make bench` makes them; only one has the guard.
    #[test]
    fn both_configurations_are_valid_and_differ_by_the_guard() {
        use registry_token_core::config::Config;
        let work = tempfile::tempdir().expect("tempdir");
        let m = crate::setup::make_material(work.path()).expect("keys (openssl)");
        let load = |c: &Value| {
            Config::load(c.to_string().as_bytes(), Vec::<(String, String)>::new())
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        let (on, off) = (
            guard_config(&m, true).expect("on"),
            guard_config(&m, false).expect("off"),
        );
        assert!(load(&on).guard.is_some());
        assert!(load(&off).guard.is_none());
        let mut without = on.clone();
        without.as_object_mut().expect("object").remove("guard");
        assert_eq!(without, off);
        assert!(signing_certificate(work.path())
            .expect("certificate")
            .starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_forged_token_differs_in_its_signature_only() {
        let t = "aaaa.bbbb.cccccccccccccccccccccccc";
        let f = forged(t);
        assert_ne!(f, t);
        assert_eq!(f.len(), t.len());
        assert!(f.starts_with("aaaa.bbbb.c"));
    }
}
