//! Pools of distinct OpToks (and, for DPoP, each one's proof key), signed on all cores.

use std::thread;

use ring::rand::SystemRandom;

use super::Mode;
use crate::jose::{ath, unix_now, AuthorityKey, Binding, OpTokClaims, ProofKey};

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
