//! The DPoP `jti` replay record: the [`ReplayCache`] the proof check consults, the slot
//! format kept in Envoy shared data (process-wide, expired by time slots), and an
//! in-memory cache for native tests.

use crate::sender::dpop::DpopError;

/// Accepts or refuses a proof's `jti`: true when it was not seen before (and is now
/// recorded), false on a replay.
pub trait ReplayCache {
    /// Records `key` (a digest of the key thumbprint and `jti`) of a proof whose `iat` is
    /// `iat`, seen at `now`. A replay is the same proof, so it has the same `iat`: the
    /// record is filed by `iat`, and one look in one slot answers.
    fn check_and_insert(&self, key: [u8; 16], iat: u64, now: u64) -> Result<bool, DpopError>;
}

/// Number of shards the replay entries are spread over (each a shared-data key).
/// Many small shards keep each compare-and-swap copy small (a shard slot holds about
/// rate × 60 s / shards entries) and contention between workers low.
pub const REPLAY_SHARDS: usize = 1024;
/// Seconds of `iat` one slot covers. Fixed, not taken from the configuration: every
/// configuration on a `vm_id` (two listeners, or one before and after a reconfiguration
/// with another `dpop.iatWindowSeconds`) numbers slots alike, so none can empty the
/// entries another still needs.
pub const REPLAY_EPOCH_SECONDS: u64 = 60;
/// The largest `dpop.iatWindowSeconds` the configuration accepts.
pub const MAX_IAT_WINDOW_SECONDS: u64 = 300;
/// Slots per shard: proofs are accepted with `iat` within the window either side of now,
/// so at most `2 × 300 / 60 + 1 = 11` epochs of `iat` are acceptable at once; one more
/// slot so the oldest can be emptied while the newest fills.
pub const REPLAY_SLOTS: u64 = 2 * MAX_IAT_WINDOW_SECONDS / REPLAY_EPOCH_SECONDS + 2;

/// One shard's slot: the `iat` epoch it belongs to and the 16-byte entries seen in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySlot {
    /// `iat / REPLAY_EPOCH_SECONDS` of the proofs in the slot (0: never written).
    pub epoch: u64,
    /// Entries.
    pub entries: Vec<[u8; 16]>,
}

impl ReplaySlot {
    /// Decodes shared-data bytes (garbage = empty slot of epoch 0).
    pub fn decode(bytes: &[u8]) -> ReplaySlot {
        let entries = bytes
            .get(8..)
            .unwrap_or_default()
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .collect();
        ReplaySlot {
            epoch: Self::stored_epoch(bytes),
            entries,
        }
    }

    /// The epoch of a stored slot (0 when it holds less than one).
    pub fn stored_epoch(bytes: &[u8]) -> u64 {
        bytes
            .first_chunk::<8>()
            .map_or(0, |head| u64::from_be_bytes(*head))
    }

    /// Entries of a stored slot (a trailing partial entry is not one).
    pub fn stored_len(bytes: &[u8]) -> usize {
        bytes.len().saturating_sub(8) / 16
    }

    /// Whether a stored slot holds `entry`, read in place ([`ReplaySlot::decode`]'s
    /// reading: whole 16-byte entries after the epoch).
    pub fn stored_contains(bytes: &[u8], entry: &[u8; 16]) -> bool {
        bytes
            .get(8..)
            .is_some_and(|rest| rest.chunks_exact(16).any(|c| c == entry))
    }

    /// Appends `entry` to a stored slot (one that holds its epoch), dropping a trailing
    /// partial entry first, so the result reads as [`ReplaySlot::decode`] would write it.
    pub fn stored_push(bytes: &mut Vec<u8>, entry: &[u8; 16]) {
        bytes.truncate(8 + 16 * Self::stored_len(bytes));
        bytes.extend_from_slice(entry);
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

    /// Whether no configuration whose window is at most `max_window` can accept a proof
    /// of this slot at `now` any more (every `iat` of the epoch is older than
    /// `now - max_window`), so its entries can go.
    pub fn dead(&self, now: u64, max_window: u64) -> bool {
        let newest_iat = (self.epoch + 1) * REPLAY_EPOCH_SECONDS - 1;
        newest_iat.saturating_add(max_window) < now
    }
}

/// Epoch and slot index of an `iat`.
pub fn replay_epoch_slot(iat: u64) -> (u64, u64) {
    let epoch = iat / REPLAY_EPOCH_SECONDS;
    (epoch, epoch % REPLAY_SLOTS)
}

/// Shard index of an entry.
pub fn replay_shard(key: &[u8; 16]) -> usize {
    usize::from(u16::from_be_bytes([key[0], key[1]])) % REPLAY_SHARDS
}

/// Shared-data key of (shard, slot).
pub fn replay_data_key(prefix: &str, shard: usize, slot: u64) -> String {
    format!("{prefix}dpop-jti/{shard}/{slot}")
}

/// Shared-data key of the largest `dpop.iatWindowSeconds` any configuration on the
/// `vm_id` has had (raised at configure time, never lowered): how long entries are kept.
pub fn replay_max_window_key(prefix: &str) -> String {
    format!("{prefix}dpop-jti/max-window")
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
    fn check_and_insert(&self, key: [u8; 16], _iat: u64, now: u64) -> Result<bool, DpopError> {
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
    fn stored_slots_read_and_grow_in_place_as_decode_and_encode_do() {
        let slot = ReplaySlot {
            epoch: 7,
            entries: vec![[1u8; 16], [2u8; 16]],
        };
        let mut bytes = slot.encode();
        bytes.extend_from_slice(&[9u8; 5]); // a partial entry: not one
        assert_eq!(ReplaySlot::stored_epoch(&bytes), 7);
        assert_eq!(ReplaySlot::stored_epoch(b"short"), 0);
        assert_eq!(ReplaySlot::stored_len(&bytes), 2);
        assert!(ReplaySlot::stored_contains(&bytes, &[2u8; 16]));
        assert!(!ReplaySlot::stored_contains(&bytes, &[9u8; 16]));
        assert!(!ReplaySlot::stored_contains(b"short", &[0u8; 16]));
        ReplaySlot::stored_push(&mut bytes, &[3u8; 16]);
        let grown = ReplaySlot {
            epoch: 7,
            entries: vec![[1u8; 16], [2u8; 16], [3u8; 16]],
        };
        assert_eq!(
            bytes,
            grown.encode(),
            "the partial entry dropped, the new one after"
        );
        assert_eq!(ReplaySlot::decode(&bytes), grown);
    }

    #[test]
    fn replay_slots_die_once_no_window_accepts_their_iat() {
        let slot = ReplaySlot {
            epoch: 10,
            entries: Vec::new(),
        };
        // iat 600..=659; with a 60 s window the last accepted at 719.
        assert!(!slot.dead(719, 60));
        assert!(slot.dead(720, 60));
        assert!(!slot.dead(959, 300));
        assert!(slot.dead(960, 300));
    }

    #[test]
    fn slots_cover_every_acceptable_iat_without_reuse() {
        // At any `now`, the iat epochs a 300 s window accepts map to distinct slots, and
        // one slot more is free.
        for now in [1_000_000u64, 1_000_059, 1_000_060, 7_777_777] {
            let lo = replay_epoch_slot(now - MAX_IAT_WINDOW_SECONDS).0;
            let hi = replay_epoch_slot(now + MAX_IAT_WINDOW_SECONDS).0;
            assert!(hi - lo < REPLAY_SLOTS, "{now}: {lo}..={hi}");
            let slots: std::collections::HashSet<u64> =
                (lo..=hi).map(|e| e % REPLAY_SLOTS).collect();
            assert_eq!(slots.len() as u64, hi - lo + 1);
        }
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
        assert_eq!(replay_data_key("p/", 3, 1), "p/dpop-jti/3/1");
    }

    #[test]
    fn memory_cache_remembers_then_forgets() {
        let c = MemoryReplayCache::new(10);
        assert!(c.check_and_insert([7; 16], 100, 100).unwrap());
        assert!(!c.check_and_insert([7; 16], 100, 105).unwrap());
        assert!(c.check_and_insert([8; 16], 105, 105).unwrap());
        assert!(c.check_and_insert([7; 16], 100, 111).unwrap());
    }
}
