//! Driving the gateway: one thread per keep-alive connection, closed or open loop, and
//! what the generator saw ([`RunResult`]).

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::Workload;
use crate::http::{connect, exchange, Target};

/// How to drive the gateway.
#[derive(Clone)]
pub struct RunSpec {
    /// The gateway.
    pub target: Target,
    /// Keep-alive connections (one thread each).
    pub connections: usize,
    /// How long.
    pub duration: Duration,
    /// Offered rate (requests/s over all connections); `None` = closed loop.
    pub rate: Option<f64>,
    /// Print a line each second.
    pub progress: bool,
    /// Stop after this many requests whatever the time.
    pub max_requests: u64,
}

/// What the generator saw.
#[derive(Debug, Default, Clone)]
pub struct RunResult {
    /// Seconds from the first send to the last answer.
    pub elapsed: f64,
    /// Latencies of answered requests, µs, sorted.
    pub latencies: Vec<u32>,
    /// Responses per status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response (connect, reset, timeout).
    pub transport_errors: u64,
    /// 200 responses without a token in the body.
    pub bad_bodies: u64,
    /// Distinct minted tokens among the 200 responses.
    pub distinct_tokens: usize,
    /// Answers per second of the run.
    pub per_second: Vec<u64>,
}

impl RunResult {
    /// All responses.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// 200 responses.
    pub fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }

    /// Tokens per second.
    pub fn tokens_per_second(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.ok() as f64 / self.elapsed
        } else {
            0.0
        }
    }

    /// Answers per second (any status).
    pub fn responses_per_second(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.responses() as f64 / self.elapsed
        } else {
            0.0
        }
    }

    /// Latency quantile `q` (0..1), µs.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        if self.latencies.is_empty() {
            return None;
        }
        let idx =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Some(self.latencies[idx - 1])
    }
}

#[derive(Default)]
struct WorkerOut {
    latencies: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    bad_bodies: u64,
    tokens: HashSet<u64>,
}

const TOKEN_MARK: &[u8] = b"\"token\":\"";

fn token_hash(body: &[u8]) -> Option<u64> {
    let start = body
        .windows(TOKEN_MARK.len())
        .position(|w| w == TOKEN_MARK)?
        + TOKEN_MARK.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body[start..start + len].hash(&mut h);
    Some(h.finish())
}

/// What the connections of one run share: the clock, the pace, the counters.
struct Shared {
    start: Instant,
    deadline: Instant,
    /// Open loop: the time between two sends of one connection.
    interval: Option<Duration>,
    connections: usize,
    per_second: Vec<AtomicU64>,
    sent: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    not_ok: AtomicU64,
}

/// Runs the load and returns what the generator saw.
pub fn run(spec: &RunSpec, workload: &Workload) -> RunResult {
    let connections = spec.connections.max(1);
    let secs = spec.duration.as_secs() as usize + 2;
    let start = Instant::now();
    let shared = Shared {
        start,
        deadline: start + spec.duration,
        interval: spec
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(connections as f64 / r)),
        connections,
        per_second: (0..secs).map(|_| AtomicU64::new(0)).collect(),
        sent: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        not_ok: AtomicU64::new(0),
    };
    let finished = AtomicBool::new(false);
    let outs: Vec<(WorkerOut, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|w| {
                let shared = &shared;
                s.spawn(move || connection(spec, workload, shared, w))
            })
            .collect();
        if spec.progress {
            let (shared, finished) = (&shared, &finished);
            s.spawn(move || progress(shared, finished));
        }
        let outs = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        finished.store(true, Ordering::Relaxed);
        outs
    });
    merge(spec, &shared, outs)
}

/// One connection's loop until the deadline (or `max_requests`): send at the pace (open
/// loop) or at once (closed loop), time the answer, count it; its last answer's time.
fn connection(spec: &RunSpec, workload: &Workload, sh: &Shared, w: usize) -> (WorkerOut, Instant) {
    let mut out = WorkerOut::default();
    let mut stream = None;
    let mut buf = Vec::with_capacity(8192);
    let offset = sh
        .interval
        .map(|i| i.mul_f64(w as f64 / sh.connections as f64));
    let mut k: u32 = 0;
    let mut last = sh.start;
    loop {
        let intended = match (sh.interval, offset) {
            (Some(i), Some(o)) => sh.start + o + i * k,
            _ => Instant::now(),
        };
        if intended >= sh.deadline || sh.sent.load(Ordering::Relaxed) >= spec.max_requests {
            break;
        }
        k = k.saturating_add(1);
        let now = Instant::now();
        if intended > now {
            thread::sleep(intended - now);
        }
        if stream.is_none() {
            match connect(&spec.target, Duration::from_secs(10)) {
                Ok(s) => stream = Some(s),
                Err(_) => {
                    out.transport_errors += 1;
                    sh.failed.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let Some(conn) = stream.as_mut() else {
            continue;
        };
        let request = workload.next_request();
        sh.sent.fetch_add(1, Ordering::Relaxed);
        let t0 = if sh.interval.is_some() {
            intended
        } else {
            Instant::now()
        };
        match exchange(conn.as_mut(), &request, &mut buf) {
            Ok(resp) => {
                let t1 = Instant::now();
                last = t1;
                let micros = t1.duration_since(t0).as_micros();
                out.latencies
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                *out.statuses.entry(resp.status).or_insert(0) += 1;
                if resp.status == 200 {
                    match token_hash(&buf[resp.body.clone()]) {
                        Some(h) if out.tokens.len() < 4_000_000 => {
                            out.tokens.insert(h);
                        }
                        Some(_) => {}
                        None => out.bad_bodies += 1,
                    }
                } else {
                    sh.not_ok.fetch_add(1, Ordering::Relaxed);
                }
                sh.done.fetch_add(1, Ordering::Relaxed);
                let sec = t1.duration_since(sh.start).as_secs() as usize;
                if let Some(c) = sh.per_second.get(sec) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if resp.close {
                    stream = None;
                }
            }
            Err(_) => {
                out.transport_errors += 1;
                sh.failed.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
    }
    (out, last)
}

/// A line each second until `finished`.
fn progress(sh: &Shared, finished: &AtomicBool) {
    let mut prev = 0;
    let mut tick = 1u64;
    while !finished.load(Ordering::Relaxed) {
        let next = sh.start + Duration::from_secs(tick);
        while Instant::now() < next {
            if finished.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let d = sh.done.load(Ordering::Relaxed);
        println!(
            "  [{tick:>4}s] {:>7} answers/s   total {:>9}   non-200 {:>6}   transport errors {:>4}",
            d - prev,
            d,
            sh.not_ok.load(Ordering::Relaxed),
            sh.failed.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
        prev = d;
        tick += 1;
    }
}

/// Every connection's answers as one [`RunResult`].
fn merge(spec: &RunSpec, sh: &Shared, outs: Vec<(WorkerOut, Instant)>) -> RunResult {
    let mut result = RunResult::default();
    let mut tokens = HashSet::new();
    let mut last_answer = sh.start;
    for (out, last) in outs {
        last_answer = last_answer.max(last);
        result.latencies.extend(out.latencies);
        for (s, n) in out.statuses {
            *result.statuses.entry(s).or_insert(0) += n;
        }
        result.transport_errors += out.transport_errors;
        result.bad_bodies += out.bad_bodies;
        tokens.extend(out.tokens);
    }
    result.distinct_tokens = tokens.len();
    result.latencies.sort_unstable();
    // Closed loop: the run lasts until the last answer; open loop: the offered period.
    result.elapsed = if sh.interval.is_some() {
        spec.duration.as_secs_f64()
    } else {
        last_answer.duration_since(sh.start).as_secs_f64()
    };
    result.per_second = sh
        .per_second
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;
    use crate::http::plain_target;
    use crate::load::{Mode, OpTokPool};

    #[test]
    fn token_hash_finds_the_token() {
        assert!(token_hash(br#"{"token":"abc","expires_in":300}"#).is_some());
        assert_eq!(
            token_hash(br#"{"token":"abc"}"#),
            token_hash(br#"{"x":1,"token":"abc"}"#)
        );
        assert_ne!(
            token_hash(br#"{"token":"abc"}"#),
            token_hash(br#"{"token":"abd"}"#)
        );
        assert_eq!(token_hash(br#"{"error":"x"}"#), None);
    }

    /// A gateway on loopback answering every GET with a new token, then a 401 from the
    /// fourth request on.
    fn gateway() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let mut w = conn.try_clone().expect("clone");
                let mut r = BufReader::new(conn);
                let mut n = 0;
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|k| k > 0) {
                    if line == "\r\n" {
                        n += 1;
                        let (status, body) = if n < 4 {
                            ("200 OK", format!("{{\"token\":\"t{n}\"}}"))
                        } else {
                            ("401 Unauthorized", "{}".to_string())
                        };
                        let _ = write!(
                            w,
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    line.clear();
                }
            }
        });
        port
    }

    #[test]
    fn a_closed_loop_run_counts_what_came_back() {
        let port = gateway();
        let pool = Arc::new(OpTokPool::from_tokens(Mode::Bearer, vec!["op".into()]));
        let workload = Workload::new(pool, 1, "h", "/token", "u", 1, 0).expect("workload");
        let spec = RunSpec {
            target: plain_target(&format!("http://127.0.0.1:{port}")).expect("target"),
            connections: 1,
            duration: Duration::from_secs(5),
            rate: None,
            progress: false,
            max_requests: 5,
        };
        let r = run(&spec, &workload);
        assert_eq!(r.statuses, BTreeMap::from([(200, 3), (401, 2)]));
        assert_eq!((r.ok(), r.responses(), r.transport_errors), (3, 5, 0));
        assert_eq!((r.distinct_tokens, r.bad_bodies), (3, 0));
        assert_eq!(r.latencies.len(), 5);
        assert!(r.elapsed > 0.0 && r.elapsed < 5.0, "{}", r.elapsed);
        assert_eq!(r.per_second.iter().sum::<u64>(), 5);
    }
}
