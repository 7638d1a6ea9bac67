//! The requests of one run: pre-built for the static modes (Bearer, mTLS, the grants,
//! `DPoP: x`), and for DPoP pre-signed proofs per 60-second epoch (hostile ones rotating
//! over [`HOSTILE_KINDS`]), signed on the fly beyond what was expected.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use ring::rand::SystemRandom;

use super::{Mode, OpTokPool, HOSTILE_KINDS, PROOF_EPOCH_SECONDS};
use crate::jose::{b64, unix_now, ProofKey};

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
        if let Some(requests) = static_requests(mode, &pool, used, &w.prefix, host, path) {
            w.static_requests = requests;
            return Ok(w);
        }
        // expect_rate 0: every proof is signed on the fly (long soaks).
        let epochs = if expect_rate == 0 {
            0
        } else {
            duration.div_ceil(PROOF_EPOCH_SECONDS).max(1)
        };
        for e in 0..epochs {
            let span = (duration - e * PROOF_EPOCH_SECONDS).min(PROOF_EPOCH_SECONDS);
            let mut count = (expect_rate.saturating_mul(span) * 11 / 10).max(16) as usize;
            if w.cycle {
                count = count
                    .min(used * HOSTILE_KINDS.len())
                    .max(HOSTILE_KINDS.len());
            }
            let requests = w.sign_epoch(e, count)?;
            w.epochs.push(Epoch {
                requests,
                next: AtomicUsize::new(0),
            });
        }
        Ok(w)
    }

    /// The first `count` requests of DPoP epoch `e`, their proofs issued in the middle of
    /// it, signed on all cores.
    fn sign_epoch(&self, e: u64, count: usize) -> Result<Vec<Vec<u8>>, String> {
        let threads = thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(1);
        let iat = self.epoch_base + e * PROOF_EPOCH_SECONDS + PROOF_EPOCH_SECONDS / 2;
        let start = e as usize * 1_000_003;
        let parts: Vec<Result<Vec<Vec<u8>>, String>> = thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let rng = SystemRandom::new();
                        (t..count)
                            .step_by(threads)
                            .map(|i| self.request(start + i, iat, &rng))
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
        Ok(requests)
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

/// The requests of a mode that needs no proof signed per request, one per OpTok in use
/// (`prefix`: the GET request line and `Host`); `None` for the DPoP modes that sign.
fn static_requests(
    mode: Mode,
    pool: &OpTokPool,
    used: usize,
    prefix: &str,
    host: &str,
    path: &str,
) -> Option<Vec<Vec<u8>>> {
    let each = |f: &dyn Fn(&str) -> String| -> Vec<Vec<u8>> {
        pool.tokens[..used]
            .iter()
            .map(|t| f(t).into_bytes())
            .collect()
    };
    match mode {
        Mode::Bearer | Mode::Mtls => Some(each(&|t| {
            format!("{prefix}Authorization: Bearer {t}\r\n\r\n")
        })),
        Mode::Password | Mode::Refresh => {
            let (post_path, query) = path.split_once('?').unwrap_or((path, ""));
            Some(each(&|t| {
                let grant = if mode == Mode::Password {
                    format!("grant_type=password&username=bench&password={t}")
                } else {
                    format!("grant_type=refresh_token&refresh_token={t}")
                };
                let body = format!("{grant}&client_id=bench&{query}");
                format!(
                    "POST {post_path} HTTP/1.1\r\nHost: {host}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }))
        }
        Mode::MalformedDpop => Some(each(&|t| {
            format!("{prefix}Authorization: DPoP {t}\r\nDPoP: x\r\n\r\n")
        })),
        Mode::Dpop | Mode::HostileDpop => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::ath;
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
