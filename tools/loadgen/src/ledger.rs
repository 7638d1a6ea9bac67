//! The issuance ledger's ingest load in `make bench`: a closed loop that POSTs batches of
//! records the way the filter does (`POST /v1/ingest`, `{"records": [...]}`, the gateway's
//! bearer secret), to measure the ledger's sustained ingest rate. The ledger process and
//! its database are the test kit's (`registry-token-testkit`), started by the bench.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use registry_token_ledger_wire as wire;

use crate::http::{self, Target};

/// One ledger record as the filter writes it for an issued token (the same fields and
/// about the same size, built and serialised by the wire crate), with a unique `id`.
pub fn record(run: &str, i: u64, now: u64) -> String {
    let sub = i % 1000;
    let scope = Cow::Borrowed("repository:bench/r9/app:pull");
    let text = |s: &'static str| Some(Cow::Borrowed(s));
    let r = wire::Record {
        id: Cow::Owned(format!("{run}-{i:012}")),
        time: now,
        decision: wire::Decision::Issued,
        reason: text("issued"),
        subject: Some(Cow::Owned(format!("bench-user-{sub}"))),
        client_id: text("loadgen"),
        plan: text("bench"),
        tenant: None,
        license: Some(Cow::Owned(format!("lic-{sub}"))),
        service: text("registry.bench"),
        requested: vec![scope.clone()],
        granted: vec![scope],
        iat: Some(now),
        exp: Some(now + 300),
        kid: text("a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6"),
        binding: text("jkt:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"),
        grant: Some(wire::Grant::Get),
        refresh_token_id: None,
        gateway: text("bench-gw"),
        issuer: None,
        policy: None,
    };
    r.to_json().unwrap_or_default()
}

/// What an ingest run gave.
#[derive(Debug, Default, Clone)]
pub struct IngestResult {
    /// Seconds from the first POST to the last answer.
    pub elapsed: f64,
    /// Records in batches answered 2xx.
    pub records: u64,
    /// Batches answered 2xx.
    pub batches: u64,
    /// Batches answered otherwise, or not answered.
    pub failed: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Latency of each 2xx batch, µs, sorted.
    pub latencies: Vec<u32>,
}

impl IngestResult {
    /// Records stored per second.
    pub fn records_per_second(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.records as f64 / self.elapsed
        } else {
            0.0
        }
    }

    /// The `q` quantile of the batch latencies, µs.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        let n = self.latencies.len();
        (n > 0).then(|| self.latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
    }
}

/// Closed loop: `connections` keep-alive connections POST batches of `batch` new records
/// (ids `run`-numbered, never repeated) for `duration`.
pub fn ingest_load(
    target: &Target,
    secret: &str,
    run: &str,
    connections: usize,
    batch: usize,
    duration: Duration,
) -> IngestResult {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let (target, stop) = (target.clone(), stop.clone());
            let (secret, run) = (secret.to_string(), format!("{run}-{w}"));
            thread::spawn(move || ingest_worker(&target, &secret, &run, batch, &stop))
        })
        .collect();
    thread::sleep(duration);
    stop.store(true, Ordering::SeqCst);
    let mut out = IngestResult::default();
    for w in workers {
        if let Ok(r) = w.join() {
            out.records += r.records;
            out.batches += r.batches;
            out.failed += r.failed;
            out.first_error = out.first_error.or(r.first_error);
            out.latencies.extend(r.latencies);
        }
    }
    out.elapsed = started.elapsed().as_secs_f64();
    out.latencies.sort_unstable();
    out
}

fn ingest_worker(
    target: &Target,
    secret: &str,
    run: &str,
    batch: usize,
    stop: &AtomicBool,
) -> IngestResult {
    let mut out = IngestResult::default();
    let mut conn: Option<Box<dyn http::Stream>> = None;
    let mut buf = Vec::new();
    let mut next = 0u64;
    let fail = |out: &mut IngestResult, e: String| {
        out.failed += 1;
        if out.first_error.is_none() {
            out.first_error = Some(e);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let records: Vec<String> = (0..batch as u64)
            .map(|k| record(run, next + k, now))
            .collect();
        let body = format!("{{\"records\":[{}]}}", records.join(","));
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            wire::INGEST_PATH,
            target.host,
            body.len()
        );
        let mut stream = match conn.take() {
            Some(s) => s,
            None => match http::connect(target, Duration::from_secs(30)) {
                Ok(s) => s,
                Err(e) => {
                    fail(&mut out, format!("connect: {e}"));
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        match http::exchange(stream.as_mut(), request.as_bytes(), &mut buf) {
            Ok(r) if (200..300).contains(&r.status) => {
                out.batches += 1;
                out.records += batch as u64;
                out.latencies
                    .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                next += batch as u64;
                if !r.close {
                    conn = Some(stream);
                }
            }
            Ok(r) => {
                let text = String::from_utf8_lossy(&buf[r.body.clone()]).into_owned();
                fail(&mut out, format!("HTTP {}: {text}", r.status));
                // The same ids again: the insert is idempotent, nothing counted twice.
            }
            Err(e) => fail(&mut out, format!("{e}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_json_with_a_unique_id() {
        let a: serde_json::Value = serde_json::from_str(&record("r", 1, 1_700_000_000)).unwrap();
        let b: serde_json::Value = serde_json::from_str(&record("r", 2, 1_700_000_000)).unwrap();
        assert_ne!(a["id"], b["id"]);
        assert_eq!(a["decision"], "issued");
        assert_eq!(a["exp"], 1_700_000_300);
        // The bytes of the format! string this record used to be.
        assert_eq!(
            record("r", 1, 1_700_000_000),
            concat!(
                r#"{"id":"r-000000000001","time":1700000000,"decision":"issued","reason":"issued","#,
                r#""subject":"bench-user-1","client_id":"loadgen","plan":"bench","#,
                r#""license":"lic-1","service":"registry.bench","#,
                r#""requested":["repository:bench/r9/app:pull"],"granted":["repository:bench/r9/app:pull"],"#,
                r#""iat":1700000000,"exp":1700000300,"kid":"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6","#,
                r#""binding":"jkt:0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I","grant":"get","#,
                r#""gateway":"bench-gw"}"#
            )
        );
        // The ledger takes it as it is.
        let parsed: wire::Record<'static> =
            serde_json::from_str(&record("r", 1, 1_700_000_000)).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
        assert_eq!(parsed.grant, Some(wire::Grant::Get));
    }
}
