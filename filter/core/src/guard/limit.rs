//! Rate limits by plan or tenant: a token bucket per key (`rate` requests a second, at
//! most `burst` at once), kept in the proxy's shared data so every worker of an Envoy
//! process draws from the same bucket. Updates are compare-and-swap; a lost race is
//! retried a few times, and a store that keeps failing lets the request through and says
//! so (a limiter must not take the registry down with it).

/// Attempts at a compare-and-swap update before giving up.
pub const CAS_ATTEMPTS: usize = 8;

/// The shared store (Envoy's shared data: per VM id, with CAS, no expiry).
pub trait Store {
    /// The value and its CAS token (`None`: absent).
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    /// Sets `value` if the CAS token still matches (`Ok(false)`: it moved on).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
}

/// A bucket's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests a second, refilled continuously.
    pub per_second: u32,
    /// Most requests at once (the bucket's size).
    pub burst: u32,
}

/// What the bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Taken.
    Allowed,
    /// Empty: try again after this many seconds (at least 1, for `Retry-After`).
    Limited {
        /// Seconds.
        retry_after: u64,
    },
    /// The store failed [`CAS_ATTEMPTS`] times or answered an error: let through.
    StoreFailed,
}

/// Milli-tokens, so refills of a fraction of a token are kept.
const MILLI: u64 = 1000;

/// `tokens (milli) ‖ last refill (ms)`, 16 bytes little-endian.
fn decode(v: &[u8]) -> Option<(u64, u64)> {
    let t = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let at = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    (v.len() == 16).then_some((t, at))
}

fn encode(tokens: u64, at: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&tokens.to_le_bytes());
    out[8..].copy_from_slice(&at.to_le_bytes());
    out
}

/// Takes one token from bucket `key` at `now_ms`.
pub fn take(store: &dyn Store, key: &str, limit: Limit, now_ms: u64) -> Take {
    let full = u64::from(limit.burst).saturating_mul(MILLI);
    let rate = u64::from(limit.per_second); // milli-tokens per millisecond
    for _ in 0..CAS_ATTEMPTS {
        let Ok((value, cas)) = store.get(key) else {
            return Take::StoreFailed;
        };
        // An absent or unreadable bucket starts full.
        let (tokens, at) = value.as_deref().and_then(decode).unwrap_or((full, now_ms));
        let elapsed = now_ms.saturating_sub(at);
        let tokens = tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(full);
        let (left, verdict) = if tokens >= MILLI {
            (tokens - MILLI, Take::Allowed)
        } else {
            let missing_ms = (MILLI - tokens).div_ceil(rate.max(1));
            (
                tokens,
                Take::Limited {
                    retry_after: missing_ms.div_ceil(1000).max(1),
                },
            )
        };
        match store.set(key, &encode(left, now_ms.max(at)), cas) {
            Ok(true) => return verdict,
            Ok(false) => continue,
            Err(_) => return Take::StoreFailed,
        }
    }
    Take::StoreFailed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Shared data as Envoy keeps it: a CAS token that moves on every set.
    #[derive(Default)]
    struct Shared {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Sets to refuse as lost races before accepting.
        races: Cell<usize>,
        fail: Cell<bool>,
    }

    impl Store for Shared {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
            if self.fail.get() {
                return Err("down".into());
            }
            Ok(match self.map.borrow().get(key) {
                Some((v, c)) => (Some(v.clone()), Some(*c)),
                None => (None, None),
            })
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                return Ok(false);
            }
            let mut map = self.map.borrow_mut();
            let current = map.get(key).map(|(_, c)| *c);
            if cas.is_some() && cas != current {
                return Ok(false);
            }
            let next = current.unwrap_or(0) + 1;
            map.insert(key.into(), (value.to_vec(), next));
            Ok(true)
        }
    }

    const L: Limit = Limit {
        per_second: 2,
        burst: 3,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let s = Shared::default();
        for _ in 0..3 {
            assert_eq!(take(&s, "plan:community", L, 1_000), Take::Allowed);
        }
        assert_eq!(
            take(&s, "plan:community", L, 1_000),
            Take::Limited { retry_after: 1 }
        );
        // Another key has its own bucket.
        assert_eq!(take(&s, "plan:enterprise", L, 1_000), Take::Allowed);
        // 2/s: one token back after 500 ms, not before.
        assert!(matches!(
            take(&s, "plan:community", L, 1_499),
            Take::Limited { .. }
        ));
        assert_eq!(take(&s, "plan:community", L, 1_500), Take::Allowed);
        assert!(matches!(
            take(&s, "plan:community", L, 1_500),
            Take::Limited { .. }
        ));
        // Refills never pass the burst.
        for _ in 0..3 {
            assert_eq!(take(&s, "plan:community", L, 60_000), Take::Allowed);
        }
        assert!(matches!(
            take(&s, "plan:community", L, 60_000),
            Take::Limited { .. }
        ));
    }

    #[test]
    fn retry_after_counts_the_wait() {
        let s = Shared::default();
        let slow = Limit {
            per_second: 1,
            burst: 1,
        };
        assert_eq!(take(&s, "k", slow, 0), Take::Allowed);
        assert_eq!(take(&s, "k", slow, 100), Take::Limited { retry_after: 1 });
        let zero = Limit {
            per_second: 0,
            burst: 1,
        };
        assert_eq!(take(&s, "z", zero, 0), Take::Allowed);
        assert!(
            matches!(take(&s, "z", zero, 10_000_000), Take::Limited { retry_after } if retry_after >= 1)
        );
    }

    #[test]
    fn lost_races_are_retried_and_a_failing_store_lets_through() {
        let s = Shared::default();
        s.races.set(CAS_ATTEMPTS - 1);
        assert_eq!(take(&s, "k", L, 0), Take::Allowed);
        s.races.set(CAS_ATTEMPTS);
        assert_eq!(take(&s, "k", L, 0), Take::StoreFailed);
        s.fail.set(true);
        assert_eq!(take(&s, "k", L, 0), Take::StoreFailed);
        // A clock that goes back does not mint tokens.
        let t = Shared::default();
        for _ in 0..3 {
            assert_eq!(take(&t, "k", L, 10_000), Take::Allowed);
        }
        assert!(matches!(take(&t, "k", L, 5_000), Take::Limited { .. }));
        // A garbled value starts a full bucket rather than failing.
        t.map.borrow_mut().insert("g".into(), (vec![1, 2, 3], 7));
        assert_eq!(take(&t, "g", L, 0), Take::Allowed);
    }
}
