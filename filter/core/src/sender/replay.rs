//! The DPoP `jti` replay record: the [`ReplayCache`] the proof check consults, the slot
//! format kept in Envoy shared data (process-wide, expired by time slots), and an
//! in-memory cache for native tests.

use crate::sender::dpop::DpopError;

/// Accepts or refuses a proof's `jti`: true when it was not seen before (and is now
/// recorded), false on a replay.
pub trait ReplayCache {
    /// Records `key` (a digest of the key thumbprint and `jti`) seen at `now`.
    fn check_and_insert(&self, key: [u8; 16], now: u64) -> Result<bool, DpopError>;
}

/// Number of shards the replay entries are spread over (each a shared-data key).
/// Many small shards keep each compare-and-swap copy small (a shard slot holds about
/// rate × window / shards entries) and contention between workers low.
pub const REPLAY_SHARDS: usize = 1024;
/// Time slots kept per shard: a proof accepted at `now` with `iat ≤ now + window` could be
/// replayed until `now + 2·window`, so entries live for three slots of `window` seconds.
pub const REPLAY_SLOTS: u64 = 3;

/// One shard's slot: the epoch it belongs to and the 16-byte entries seen in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySlot {
    /// `now / window` when the slot was written.
    pub epoch: u64,
    /// Entries.
    pub entries: Vec<[u8; 16]>,
}

impl ReplaySlot {
    /// Decodes shared-data bytes (garbage = empty slot of epoch 0).
    pub fn decode(bytes: &[u8]) -> ReplaySlot {
        let Some((head, rest)) = bytes.split_first_chunk::<8>() else {
            return ReplaySlot {
                epoch: 0,
                entries: Vec::new(),
            };
        };
        let entries = rest
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .collect();
        ReplaySlot {
            epoch: u64::from_be_bytes(*head),
            entries,
        }
    }

    /// Encodes for shared data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.entries.len());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(e);
        }
        out
    }

    /// Whether the slot is still live at epoch `current`.
    pub fn live(&self, current: u64) -> bool {
        self.epoch + REPLAY_SLOTS > current
    }
}

/// Shard index of an entry.
pub fn replay_shard(key: &[u8; 16]) -> usize {
    usize::from(u16::from_be_bytes([key[0], key[1]])) % REPLAY_SHARDS
}

/// Shared-data key of (shard, slot).
pub fn replay_data_key(prefix: &str, shard: usize, slot: u64) -> String {
    format!("{prefix}dpop-replay/{shard}/{slot}")
}

/// An in-process replay cache (native tests and single-VM hosts).
#[derive(Debug, Default)]
pub struct MemoryReplayCache {
    seen: std::cell::RefCell<std::collections::HashMap<[u8; 16], u64>>,
    /// Entries older than this many seconds are dropped.
    pub ttl_seconds: u64,
}

impl MemoryReplayCache {
    /// A cache remembering entries for `ttl_seconds`.
    pub fn new(ttl_seconds: u64) -> MemoryReplayCache {
        MemoryReplayCache {
            seen: Default::default(),
            ttl_seconds,
        }
    }
}

impl ReplayCache for MemoryReplayCache {
    fn check_and_insert(&self, key: [u8; 16], now: u64) -> Result<bool, DpopError> {
        let mut seen = self.seen.borrow_mut();
        seen.retain(|_, t| now < t.saturating_add(self.ttl_seconds));
        if seen.contains_key(&key) {
            return Ok(false);
        }
        seen.insert(key, now);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_slot_roundtrip_and_garbage() {
        let slot = ReplaySlot {
            epoch: 42,
            entries: vec![[1u8; 16], [2u8; 16]],
        };
        assert_eq!(ReplaySlot::decode(&slot.encode()), slot);
        assert_eq!(ReplaySlot::decode(b"short").entries.len(), 0);
        // A trailing partial entry is ignored, never a panic.
        let mut bytes = slot.encode();
        bytes.extend_from_slice(&[9u8; 5]);
        assert_eq!(ReplaySlot::decode(&bytes).entries.len(), 2);
    }

    #[test]
    fn replay_slots_live_for_three_windows() {
        let slot = ReplaySlot {
            epoch: 10,
            entries: Vec::new(),
        };
        assert!(slot.live(10));
        assert!(slot.live(12));
        assert!(!slot.live(13));
    }

    #[test]
    fn replay_keys_spread_over_shards() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..=u16::MAX {
            let mut k = [0u8; 16];
            k[..2].copy_from_slice(&i.to_be_bytes());
            let shard = replay_shard(&k);
            assert!(shard < REPLAY_SHARDS);
            seen.insert(shard);
        }
        assert_eq!(seen.len(), REPLAY_SHARDS);
        assert_eq!(replay_data_key("p/", 3, 1), "p/dpop-replay/3/1");
    }

    #[test]
    fn memory_cache_remembers_then_forgets() {
        let c = MemoryReplayCache::new(10);
        assert!(c.check_and_insert([7; 16], 100).unwrap());
        assert!(!c.check_and_insert([7; 16], 105).unwrap());
        assert!(c.check_and_insert([8; 16], 105).unwrap());
        assert!(c.check_and_insert([7; 16], 111).unwrap());
    }
}
