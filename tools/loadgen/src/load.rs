//! The load engine: pre-generated requests, a fixed number of keep-alive connections for
//! a fixed time, closed loop (as fast as the gateway answers) or open loop (a fixed offered
//! rate, latency measured from the intended send time so queueing is not hidden).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;

use crate::http::{connect, exchange, Target};
use crate::jose::{ath, b64, unix_now, AuthorityKey, Binding, OpTokClaims, ProofKey};

/// Seconds covered by one batch of pre-generated DPoP proofs (each proof's `iat` is the
/// middle of its batch, well inside the filter's ±60 s window).
pub const PROOF_EPOCH_SECONDS: u64 = 60;

/// How requests prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Authorization: Bearer <OpTok>`, unbound OpToks.
    Bearer,
    /// `Authorization: DPoP <OpTok>` + a fresh `DPoP` proof; OpToks bound by `cnf.jkt`.
    Dpop,
    /// `Authorization: Bearer <OpTok>` over TLS with a client certificate; OpToks bound by
    /// `cnf.x5t#S256`.
    Mtls,
    /// `Authorization: DPoP <OpTok>` (bound by `cnf.jkt`) + a hostile proof, rotating over
    /// [`HOSTILE_KINDS`]: every answer should be a 401 ([`HOSTILE_REASONS`]).
    HostileDpop,
    /// `Authorization: DPoP <OpTok>` (bound by `cnf.jkt`) + `DPoP: x`: the cheapest proof
    /// refusal, 401 `dpop_malformed`.
    MalformedDpop,
    /// `POST` the OAuth2 password grant (containerd's first request): the form body
    /// `grant_type=password&username=…&password=<OpTok>&client_id=…` plus the GET path's
    /// query (`service`, `scope`); unbound OpToks.
    Password,
    /// `POST` the OAuth2 refresh grant (the Docker daemon after `docker login`):
    /// `grant_type=refresh_token&refresh_token=…&client_id=…` plus the query; the pool
    /// holds refresh tokens ([`OpTokPool::from_tokens`]).
    Refresh,
}

/// The hostile proofs of [`Mode::HostileDpop`], in rotation order.
pub const HOSTILE_KINDS: [&str; 4] = [
    "8192-bit RSA jwk, 34-bit e, PS512, 1024-byte garbage signature",
    "8192-bit RSA jwk, e = AQAB, PS512, 1024-byte garbage signature",
    "well-formed ES256 proof signed by a key other than the bound one",
    "well-formed ES256 proof by the bound key with a wrong ath",
];

/// Refusal reasons expected from [`Mode::HostileDpop`].
pub const HOSTILE_REASONS: &[&str] = &["dpop_jwk", "dpop_jkt_mismatch", "dpop_ath"];

/// Refusal reasons expected from [`Mode::MalformedDpop`].
pub const MALFORMED_REASONS: &[&str] = &["dpop_malformed"];

impl Mode {
    /// Parses `bearer`, `dpop`, `mtls`, `hostile-dpop`, `malformed-dpop`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "bearer" => Some(Mode::Bearer),
            "dpop" => Some(Mode::Dpop),
            "mtls" => Some(Mode::Mtls),
            "hostile-dpop" => Some(Mode::HostileDpop),
            "malformed-dpop" => Some(Mode::MalformedDpop),
            "password" => Some(Mode::Password),
            "refresh" => Some(Mode::Refresh),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bearer => "bearer",
            Mode::Dpop => "dpop",
            Mode::Mtls => "mtls",
            Mode::HostileDpop => "hostile-dpop",
            Mode::MalformedDpop => "malformed-dpop",
            Mode::Password => "password",
            Mode::Refresh => "refresh",
        }
    }

    /// How the OpToks of this mode are bound: the refusing DPoP modes use DPoP-bound
    /// OpToks, so a [`Mode::Dpop`] pool serves them.
    pub fn binding(self) -> Mode {
        match self {
            Mode::HostileDpop | Mode::MalformedDpop => Mode::Dpop,
            Mode::Password => Mode::Bearer,
            m => m,
        }
    }

    /// For the modes whose every answer should be a refusal: the 401 reasons expected
    /// (`registry_token_rejected_total` labels). `None` for the modes that mint.
    pub fn expected_refusals(self) -> Option<&'static [&'static str]> {
        match self {
            Mode::HostileDpop => Some(HOSTILE_REASONS),
            Mode::MalformedDpop => Some(MALFORMED_REASONS),
            _ => None,
        }
    }
}

/// The parts of hostile proofs that do not depend on the OpTok: an 8192-bit "RSA key"
/// (a random odd 8192-bit modulus: the filter must refuse it on its size, so it is never
/// used as a key), a 1024-byte garbage signature, and an intruder's P-256 key.
struct Hostile {
    /// base64url header with the 34-bit exponent (kind 0) and with `AQAB` (kind 1).
    rsa_headers: [String; 2],
    /// base64url of 1024 random bytes.
    garbage_signature: String,
    /// A P-256 key no OpTok is bound to (kind 2).
    intruder: ProofKey,
}

impl Hostile {
    fn new(rng: &SystemRandom) -> Result<Hostile, String> {
        use ring::rand::SecureRandom;
        let mut n = vec![0u8; 1024];
        rng.fill(&mut n).map_err(|_| "random bytes")?;
        n[0] |= 0x80;
        n[1023] |= 1;
        let mut sig = vec![0u8; 1024];
        rng.fill(&mut sig).map_err(|_| "random bytes")?;
        // 2^33 + 1: a 34-bit public exponent.
        let e34 = b64(&[0x02, 0x00, 0x00, 0x00, 0x01]);
        let header = |e: &str| {
            b64(serde_json::json!({"typ": "dpop+jwt", "alg": "PS512",
                "jwk": {"kty": "RSA", "n": b64(&n), "e": e}})
            .to_string()
            .as_bytes())
        };
        Ok(Hostile {
            rsa_headers: [header(&e34), header("AQAB")],
            garbage_signature: b64(&sig),
            intruder: ProofKey::generate(rng)?,
        })
    }
}

/// One generated OpTok and, for DPoP, its proof key.
type Generated = (String, Option<ProofKey>);

/// A pool of distinct OpToks (and, for DPoP, each one's proof key).
pub struct OpTokPool {
    /// Binding mode of the pool ([`Mode::binding`]: bearer, dpop or mtls).
    pub mode: Mode,
    /// The tokens.
    pub tokens: Vec<String>,
    /// Proof keys, parallel to `tokens` (DPoP only).
    pub keys: Vec<ProofKey>,
    /// `ath` of each token (DPoP only).
    pub aths: Vec<String>,
}

impl OpTokPool {
    /// A pool of ready-made tokens (e.g. refresh tokens for [`Mode::Refresh`]).
    pub fn from_tokens(mode: Mode, tokens: Vec<String>) -> OpTokPool {
        OpTokPool {
            mode,
            tokens,
            keys: Vec::new(),
            aths: Vec::new(),
        }
    }

    /// Generates `n` OpToks (each a distinct subject) on all cores. `x5t` is the client
    /// certificate thumbprint for [`Mode::Mtls`].
    pub fn generate(
        authority: &AuthorityKey,
        claims: &OpTokClaims,
        mode: Mode,
        n: usize,
        x5t: Option<&str>,
    ) -> Result<OpTokPool, String> {
        let run = format!("{:x}", unix_now() ^ u64::from(std::process::id()));
        let now = unix_now();
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        let chunks: Vec<Result<Vec<Generated>, String>> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let run = &run;
                    s.spawn(move || {
                        let rng = SystemRandom::new();
                        let mut out = Vec::new();
                        for i in (t..n).step_by(threads) {
                            let key = match mode.binding() {
                                Mode::Dpop => Some(ProofKey::generate(&rng)?),
                                _ => None,
                            };
                            let binding = match (&key, mode) {
                                (Some(k), _) => Binding::Jkt(k.jkt().to_string()),
                                (None, Mode::Mtls) => {
                                    Binding::X5t(x5t.unwrap_or_default().to_string())
                                }
                                _ => Binding::None,
                            };
                            let tok = authority.sign(&claims.claims(run, i, now, &binding))?;
                            out.push((tok, key));
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("generator panicked".into()))
                })
                .collect()
        });
        let mut pool = OpTokPool {
            mode: mode.binding(),
            tokens: Vec::with_capacity(n),
            keys: Vec::new(),
            aths: Vec::new(),
        };
        for chunk in chunks {
            for (tok, key) in chunk? {
                if let Some(k) = key {
                    pool.aths.push(ath(&tok));
                    pool.keys.push(k);
                }
                pool.tokens.push(tok);
            }
        }
        Ok(pool)
    }

    /// Number of OpToks.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

struct Epoch {
    requests: Vec<Vec<u8>>,
    next: AtomicUsize,
}

/// The requests of one run.
pub struct Workload {
    pool: Arc<OpTokPool>,
    mode: Mode,
    /// Number of OpToks of the pool in use (the first `used`).
    used: usize,
    prefix: String,
    htu: String,
    static_requests: Vec<Vec<u8>>,
    epochs: Vec<Epoch>,
    /// Refused proofs are never recorded by the filter, so each epoch's requests are
    /// cycled rather than used once.
    cycle: bool,
    hostile: Option<Hostile>,
    epoch_base: u64,
    next: AtomicUsize,
    live: AtomicU64,
    rng: SystemRandom,
}

impl Workload {
    /// Requests for `GET path` with `Host: host`, cycling over the first `use_optoks`
    /// OpToks of `pool`, in the pool's own mode. For DPoP, proofs for `duration` seconds
    /// at up to `expect_rate` requests/s are signed now (beyond that they are made on the
    /// fly and counted).
    pub fn new(
        pool: Arc<OpTokPool>,
        use_optoks: usize,
        host: &str,
        path: &str,
        htu: &str,
        duration: u64,
        expect_rate: u64,
    ) -> Result<Workload, String> {
        let mode = pool.mode;
        Workload::with_mode(
            mode,
            pool,
            use_optoks,
            host,
            path,
            htu,
            duration,
            expect_rate,
        )
    }

    /// [`Workload::new`] in `mode`, which must use the pool's binding (the refusing DPoP
    /// modes use a DPoP pool). [`Mode::HostileDpop`] pre-generates at most four proofs per
    /// OpTok per 60-second epoch and cycles over them; [`Mode::MalformedDpop`] needs none.
    #[allow(clippy::too_many_arguments)]
    pub fn with_mode(
        mode: Mode,
        pool: Arc<OpTokPool>,
        use_optoks: usize,
        host: &str,
        path: &str,
        htu: &str,
        duration: u64,
        expect_rate: u64,
    ) -> Result<Workload, String> {
        let used = use_optoks.clamp(1, pool.len().max(1));
        if pool.is_empty() {
            return Err("no OpToks".into());
        }
        if mode.binding() != pool.mode {
            return Err(format!(
                "mode {} needs a {} OpTok pool, not {}",
                mode.name(),
                mode.binding().name(),
                pool.mode.name()
            ));
        }
        let prefix = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        let rng = SystemRandom::new();
        let hostile = match mode {
            Mode::HostileDpop => Some(Hostile::new(&rng)?),
            _ => None,
        };
        let mut w = Workload {
            pool: pool.clone(),
            mode,
            used,
            prefix,
            htu: htu.to_string(),
            static_requests: Vec::new(),
            epochs: Vec::new(),
            cycle: mode == Mode::HostileDpop,
            hostile,
            epoch_base: unix_now(),
            next: AtomicUsize::new(0),
            live: AtomicU64::new(0),
            rng,
        };
        match mode {
            Mode::Bearer | Mode::Mtls => {
                w.static_requests = (0..used)
                    .map(|i| {
                        format!(
                            "{}Authorization: Bearer {}\r\n\r\n",
                            w.prefix, pool.tokens[i]
                        )
                        .into_bytes()
                    })
                    .collect();
                return Ok(w);
            }
            Mode::Password | Mode::Refresh => {
                let (post_path, query) = path.split_once('?').unwrap_or((path, ""));
                w.static_requests = (0..used)
                    .map(|i| {
                        let grant = if mode == Mode::Password {
                            format!(
                                "grant_type=password&username=bench&password={}",
                                pool.tokens[i]
                            )
                        } else {
                            format!("grant_type=refresh_token&refresh_token={}", pool.tokens[i])
                        };
                        let body = format!("{grant}&client_id=bench&{query}");
                        format!(
                            "POST {post_path} HTTP/1.1\r\nHost: {host}\r\n\
                             Content-Type: application/x-www-form-urlencoded\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes()
                    })
                    .collect();
                return Ok(w);
            }
            Mode::MalformedDpop => {
                w.static_requests = (0..used)
                    .map(|i| {
                        format!(
                            "{}Authorization: DPoP {}\r\nDPoP: x\r\n\r\n",
                            w.prefix, pool.tokens[i]
                        )
                        .into_bytes()
                    })
                    .collect();
                return Ok(w);
            }
            Mode::Dpop | Mode::HostileDpop => {}
        }
        // expect_rate 0: every proof is signed on the fly (long soaks).
        let epochs = if expect_rate == 0 {
            0
        } else {
            duration.div_ceil(PROOF_EPOCH_SECONDS).max(1)
        };
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        for e in 0..epochs {
            let span = (duration - e * PROOF_EPOCH_SECONDS).min(PROOF_EPOCH_SECONDS);
            let mut count = (expect_rate.saturating_mul(span) * 11 / 10).max(16) as usize;
            if w.cycle {
                count = count
                    .min(used * HOSTILE_KINDS.len())
                    .max(HOSTILE_KINDS.len());
            }
            let iat = w.epoch_base + e * PROOF_EPOCH_SECONDS + PROOF_EPOCH_SECONDS / 2;
            let start = e as usize * 1_000_003;
            let parts: Vec<Result<Vec<Vec<u8>>, String>> = thread::scope(|s| {
                let w = &w;
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        s.spawn(move || {
                            let rng = SystemRandom::new();
                            (t..count)
                                .step_by(threads)
                                .map(|i| w.request(start + i, iat, &rng))
                                .collect()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("generator panicked".into()))
                    })
                    .collect()
            });
            let mut requests = Vec::with_capacity(count);
            for p in parts {
                requests.extend(p?);
            }
            w.epochs.push(Epoch {
                requests,
                next: AtomicUsize::new(0),
            });
        }
        Ok(w)
    }

    /// Request number `n` of a DPoP mode, its proof issued at `iat`.
    fn request(&self, n: usize, iat: u64, rng: &SystemRandom) -> Result<Vec<u8>, String> {
        match &self.hostile {
            None => self.dpop_request(n % self.used, iat, rng),
            Some(h) => {
                let kinds = HOSTILE_KINDS.len();
                self.hostile_request(h, (n / kinds) % self.used, n % kinds, iat, rng)
            }
        }
    }

    fn dpop_request(&self, i: usize, iat: u64, rng: &SystemRandom) -> Result<Vec<u8>, String> {
        let proof = self.pool.keys[i].proof(rng, &self.htu, &self.pool.aths[i], iat)?;
        Ok(self.with_proof(i, &proof))
    }

    fn with_proof(&self, i: usize, proof: &str) -> Vec<u8> {
        format!(
            "{}Authorization: DPoP {}\r\nDPoP: {proof}\r\n\r\n",
            self.prefix, self.pool.tokens[i]
        )
        .into_bytes()
    }

    /// OpTok `i` with hostile proof `kind` (an index into [`HOSTILE_KINDS`]).
    fn hostile_request(
        &self,
        h: &Hostile,
        i: usize,
        kind: usize,
        iat: u64,
        rng: &SystemRandom,
    ) -> Result<Vec<u8>, String> {
        let ath = &self.pool.aths[i];
        let proof = match kind {
            0 | 1 => {
                let claims = serde_json::json!({"jti": format!("hostile-{i}-{kind}"),
                    "htm": "GET", "htu": self.htu, "iat": iat, "ath": ath});
                format!(
                    "{}.{}.{}",
                    h.rsa_headers[kind],
                    b64(claims.to_string().as_bytes()),
                    h.garbage_signature
                )
            }
            2 => h.intruder.proof(rng, &self.htu, ath, iat)?,
            _ => {
                let wrong = crate::jose::ath(&format!("not-{}", self.pool.tokens[i]));
                self.pool.keys[i].proof(rng, &self.htu, &wrong, iat)?
            }
        };
        Ok(self.with_proof(i, &proof))
    }

    /// The mode of the requests.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Pre-generated DPoP proofs.
    pub fn pregenerated(&self) -> usize {
        self.epochs.iter().map(|e| e.requests.len()).sum()
    }

    /// Proofs that had to be signed during the run.
    pub fn live_proofs(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The next request.
    pub fn next_request(&self) -> Cow<'_, [u8]> {
        if !self.static_requests.is_empty() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.static_requests.len();
            return Cow::Borrowed(&self.static_requests[i]);
        }
        let now = unix_now();
        let e = (now.saturating_sub(self.epoch_base) / PROOF_EPOCH_SECONDS) as usize;
        if let Some(epoch) = self.epochs.get(e) {
            let mut i = epoch.next.fetch_add(1, Ordering::Relaxed);
            if self.cycle && !epoch.requests.is_empty() {
                i %= epoch.requests.len();
            }
            if let Some(r) = epoch.requests.get(i) {
                return Cow::Borrowed(r);
            }
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Cow::Owned(self.request(n, now, &self.rng).unwrap_or_default())
    }
}

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

/// Runs the load and returns what the generator saw.
pub fn run(spec: &RunSpec, workload: &Workload) -> RunResult {
    let connections = spec.connections.max(1);
    let secs = spec.duration.as_secs() as usize + 2;
    let per_second: Vec<AtomicU64> = (0..secs).map(|_| AtomicU64::new(0)).collect();
    let sent = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let not_ok = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let interval = spec
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(connections as f64 / r));
    let mut last_answer = start;
    let outs: Vec<(WorkerOut, Instant)> = thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|w| {
                let (per_second, sent, done, failed, not_ok) =
                    (&per_second, &sent, &done, &failed, &not_ok);
                s.spawn(move || {
                    let mut out = WorkerOut::default();
                    let mut stream = None;
                    let mut buf = Vec::with_capacity(8192);
                    let offset = interval.map(|i| i.mul_f64(w as f64 / connections as f64));
                    let mut k: u32 = 0;
                    let mut last = start;
                    loop {
                        let intended = match (interval, offset) {
                            (Some(i), Some(o)) => start + o + i * k,
                            _ => Instant::now(),
                        };
                        if intended >= deadline || sent.load(Ordering::Relaxed) >= spec.max_requests
                        {
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
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                            }
                        }
                        let Some(conn) = stream.as_mut() else {
                            continue;
                        };
                        let request = workload.next_request();
                        sent.fetch_add(1, Ordering::Relaxed);
                        let t0 = if interval.is_some() {
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
                                    not_ok.fetch_add(1, Ordering::Relaxed);
                                }
                                done.fetch_add(1, Ordering::Relaxed);
                                let sec = t1.duration_since(start).as_secs() as usize;
                                if let Some(c) = per_second.get(sec) {
                                    c.fetch_add(1, Ordering::Relaxed);
                                }
                                if resp.close {
                                    stream = None;
                                }
                            }
                            Err(_) => {
                                out.transport_errors += 1;
                                failed.fetch_add(1, Ordering::Relaxed);
                                stream = None;
                            }
                        }
                    }
                    (out, last)
                })
            })
            .collect();
        if spec.progress {
            let finished = &finished;
            let (done, failed, not_ok) = (&done, &failed, &not_ok);
            s.spawn(move || {
                let mut prev = 0;
                let mut tick = 1u64;
                while !finished.load(Ordering::Relaxed) {
                    let next = start + Duration::from_secs(tick);
                    while Instant::now() < next {
                        if finished.load(Ordering::Relaxed) {
                            return;
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                    let d = done.load(Ordering::Relaxed);
                    println!(
                        "  [{tick:>4}s] {:>7} answers/s   total {:>9}   non-200 {:>6}   transport errors {:>4}",
                        d - prev,
                        d,
                        not_ok.load(Ordering::Relaxed),
                        failed.load(Ordering::Relaxed)
                    );
                    let _ = std::io::stdout().flush();
                    prev = d;
                    tick += 1;
                }
            });
        }
        let outs = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        finished.store(true, Ordering::Relaxed);
        outs
    });
    let mut result = RunResult::default();
    let mut tokens = HashSet::new();
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
    result.elapsed = if interval.is_some() {
        spec.duration.as_secs_f64()
    } else {
        last_answer.duration_since(start).as_secs_f64()
    };
    result.per_second = per_second
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::Value;

    /// A DPoP pool of `n` OpToks whose "tokens" are placeholders (the filter is not here).
    fn pool(n: usize) -> Arc<OpTokPool> {
        let rng = SystemRandom::new();
        let keys: Vec<ProofKey> = (0..n)
            .map(|_| ProofKey::generate(&rng).expect("key"))
            .collect();
        let tokens: Vec<String> = (0..n).map(|i| format!("optok-{i}")).collect();
        Arc::new(OpTokPool {
            mode: Mode::Dpop,
            aths: tokens.iter().map(|t| ath(t)).collect(),
            tokens,
            keys,
        })
    }

    fn part(b64url: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(b64url).expect("base64url")
    }

    /// (OpTok, proof header, proof claims, signature bytes) of a request.
    fn split(request: &[u8]) -> (String, Value, Value, Vec<u8>) {
        let text = String::from_utf8(request.to_vec()).expect("utf-8");
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .expect(name)
                .to_string()
        };
        let optok = header("Authorization: DPoP ");
        let proof = header("DPoP: ");
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        (
            optok,
            serde_json::from_slice(&part(parts[0])).expect("header"),
            serde_json::from_slice(&part(parts[1])).expect("claims"),
            part(parts[2]),
        )
    }

    #[test]
    fn modes_parse_and_bind() {
        for m in [
            Mode::Bearer,
            Mode::Dpop,
            Mode::Mtls,
            Mode::HostileDpop,
            Mode::MalformedDpop,
        ] {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        assert_eq!(Mode::HostileDpop.binding(), Mode::Dpop);
        assert_eq!(Mode::MalformedDpop.binding(), Mode::Dpop);
        assert!(Mode::Dpop.expected_refusals().is_none());
        assert_eq!(
            Mode::MalformedDpop.expected_refusals(),
            Some(&["dpop_malformed"][..])
        );
    }

    #[test]
    fn hostile_workload_rotates_the_four_proofs() {
        let p = pool(3);
        let w = Workload::with_mode(
            Mode::HostileDpop,
            p.clone(),
            3,
            "h",
            "/token",
            "https://gw/token",
            5,
            1000,
        )
        .expect("workload");
        // Four proofs per OpTok at most, then cycled.
        assert_eq!(w.pregenerated(), 12);
        let requests: Vec<Vec<u8>> = (0..24).map(|_| w.next_request().into_owned()).collect();
        assert_eq!(requests[..12], requests[12..]);
        assert_eq!(w.live_proofs(), 0);
        let mut seen = [0usize; 4];
        for r in &requests[..12] {
            let (optok, h, c, sig) = split(r);
            let i = p.tokens.iter().position(|t| *t == optok).expect("an OpTok");
            assert_eq!(h["typ"], "dpop+jwt");
            assert_eq!(c["htu"], "https://gw/token");
            assert_eq!(c["htm"], "GET");
            let jwk = &h["jwk"];
            let kind = if h["alg"] == "PS512" {
                assert_eq!(jwk["kty"], "RSA");
                let n = part(jwk["n"].as_str().expect("n"));
                assert_eq!(n.len(), 1024);
                assert!(n[0] & 0x80 != 0, "an 8192-bit modulus");
                assert_eq!(sig.len(), 1024);
                assert_eq!(c["ath"], p.aths[i].as_str());
                let e = part(jwk["e"].as_str().expect("e"));
                if e == [1, 0, 1] {
                    1
                } else {
                    assert_eq!(e, [2, 0, 0, 0, 1], "2^33 + 1, a 34-bit exponent");
                    0
                }
            } else {
                assert_eq!(h["alg"], "ES256");
                assert_eq!(sig.len(), 64);
                let canonical = format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    jwk["x"].as_str().expect("x"),
                    jwk["y"].as_str().expect("y")
                );
                let jkt = b64(&crate::jose::sha256(canonical.as_bytes()));
                if jkt == p.keys[i].jkt() {
                    assert_ne!(c["ath"], p.aths[i].as_str(), "a wrong ath");
                    3
                } else {
                    assert_eq!(c["ath"], p.aths[i].as_str());
                    2
                }
            };
            seen[kind] += 1;
        }
        assert_eq!(seen, [3, 3, 3, 3]);
    }

    #[test]
    fn malformed_workload_sends_dpop_x() {
        let w = Workload::with_mode(Mode::MalformedDpop, pool(2), 2, "h", "/t", "u", 5, 1000)
            .expect("workload");
        let r = String::from_utf8(w.next_request().into_owned()).expect("utf-8");
        assert!(r.contains("\r\nAuthorization: DPoP optok-0\r\nDPoP: x\r\n\r\n"));
    }

    #[test]
    fn a_refusing_mode_needs_a_dpop_pool() {
        let bearer = Arc::new(OpTokPool {
            mode: Mode::Bearer,
            tokens: vec!["t".into()],
            keys: Vec::new(),
            aths: Vec::new(),
        });
        assert!(Workload::with_mode(Mode::HostileDpop, bearer, 1, "h", "/t", "u", 5, 10).is_err());
    }

    #[test]
    fn grant_workloads_post_the_form_with_the_query() {
        let bearer = Arc::new(OpTokPool::from_tokens(Mode::Bearer, vec!["op-0".into()]));
        let w = Workload::with_mode(
            Mode::Password,
            bearer,
            1,
            "h",
            "/token?service=s&scope=x",
            "u",
            5,
            0,
        )
        .expect("workload");
        let r = String::from_utf8(w.next_request().into_owned()).expect("utf-8");
        let body =
            "grant_type=password&username=bench&password=op-0&client_id=bench&service=s&scope=x";
        assert_eq!(
            r,
            format!(
                "POST /token HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        let refresh = Arc::new(OpTokPool::from_tokens(Mode::Refresh, vec!["rtr1.x".into()]));
        let w = Workload::with_mode(Mode::Refresh, refresh, 1, "h", "/token?scope=x", "u", 5, 0)
            .expect("workload");
        let r = String::from_utf8(w.next_request().into_owned()).expect("utf-8");
        assert!(r.ends_with(
            "\r\n\r\ngrant_type=refresh_token&refresh_token=rtr1.x&client_id=bench&scope=x"
        ));
        // A password workload needs the unbound pool.
        let dpop = Arc::new(OpTokPool::from_tokens(Mode::Dpop, vec!["t".into()]));
        assert!(Workload::with_mode(Mode::Password, dpop, 1, "h", "/t", "u", 5, 0).is_err());
    }
}
