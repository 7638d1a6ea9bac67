//! The DPoP `jti` replay record in Envoy shared data: process-wide (every worker's VM with
//! the same `vm_id` sees it), updated with compare-and-swap, bounded, and emptied by time
//! rather than by deletion (shared data has no expiry).
//!
//! Entries are filed by the proof's `iat` in slots of a fixed 60 s, the same for every
//! configuration: two configurations on one `vm_id` (two listeners, or one listener before
//! and after a reconfiguration with another `dpop.iatWindowSeconds`) share one record and
//! neither empties what the other still needs, so a proof accepted under one is refused
//! under both. A slot is emptied only once no configuration can accept its `iat` any more:
//! the record remembers the largest window it has served (`max-window`).

use registry_token_core::sender::dpop::DpopError;
use registry_token_core::sender::replay::{
    replay_data_key, replay_epoch_slot, replay_max_window_key, replay_shard, ReplayCache,
    ReplaySlot, REPLAY_SHARDS, REPLAY_SLOTS,
};

/// Attempts at a contended compare-and-swap before giving up (fail closed).
const CAS_ATTEMPTS: usize = 16;

use crate::host::{SharedData, SharedError};

/// Replay cache over shared data.
pub struct SharedReplayCache<S> {
    host: S,
    prefix: String,
    window_seconds: u64,
    per_slot_capacity: usize,
}

impl<S: SharedData> SharedReplayCache<S> {
    /// A cache for a configuration with `dpop.iatWindowSeconds = window_seconds`, holding
    /// at most `capacity` entries per 60-second slot across all shards; its keys start
    /// with `prefix`.
    pub fn new(
        host: S,
        prefix: &str,
        window_seconds: u64,
        capacity: usize,
    ) -> SharedReplayCache<S> {
        let cache = SharedReplayCache {
            host,
            prefix: prefix.to_owned(),
            window_seconds: window_seconds.max(1),
            per_slot_capacity: (capacity / REPLAY_SHARDS).max(16),
        };
        cache.create_missing_keys();
        cache.raise_max_window();
        cache
    }

    /// Creates every (shard, slot) key that does not exist yet, so later writes can always
    /// use a real CAS (Envoy treats CAS 0 as "no check"). Existing keys are left alone.
    fn create_missing_keys(&self) {
        let empty = ReplaySlot {
            epoch: 0,
            entries: Vec::new(),
        }
        .encode();
        for shard in 0..REPLAY_SHARDS {
            for slot in 0..REPLAY_SLOTS {
                let key = replay_data_key(&self.prefix, shard, slot);
                if let Ok((None, _)) = self.host.get_shared(&key) {
                    let _ = self.host.set_shared(&key, &empty, None);
                }
            }
        }
    }

    /// Raises the record's `max-window` to this configuration's window (never lowers it).
    fn raise_max_window(&self) {
        let key = replay_max_window_key(&self.prefix);
        for _ in 0..CAS_ATTEMPTS {
            let Ok((bytes, cas)) = self.host.get_shared(&key) else {
                return;
            };
            if bytes.as_deref().map(decode_u64).unwrap_or(0) >= self.window_seconds {
                return;
            }
            match self
                .host
                .set_shared(&key, &self.window_seconds.to_be_bytes(), cas)
            {
                Err(SharedError::CasMismatch) => continue,
                _ => return,
            }
        }
    }

    /// The largest window any configuration on the `vm_id` has had (at least this one's).
    fn max_window(&self) -> u64 {
        let stored = match self.host.get_shared(&replay_max_window_key(&self.prefix)) {
            Ok((Some(bytes), _)) => decode_u64(&bytes),
            _ => 0,
        };
        stored.max(self.window_seconds)
    }

    /// Empties the slots of `shard` no configuration can accept a proof of any more. Run
    /// when a slot is reused for a new epoch (once per shard and minute), so the record
    /// holds about `2 × max-window` seconds of proofs, not the whole ring.
    fn sweep(&self, shard: usize, keep: u64, now: u64) {
        let max_window = self.max_window();
        for slot in (0..REPLAY_SLOTS).filter(|&s| s != keep) {
            let key = replay_data_key(&self.prefix, shard, slot);
            let Ok((Some(bytes), cas)) = self.host.get_shared(&key) else {
                continue;
            };
            let s = ReplaySlot::decode(&bytes);
            if !s.entries.is_empty() && s.dead(now, max_window) {
                let empty = ReplaySlot {
                    epoch: s.epoch,
                    entries: Vec::new(),
                };
                // A lost race means another VM wrote or swept it: fine either way.
                let _ = self.host.set_shared(&key, &empty.encode(), cas);
            }
        }
    }
}

fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .first_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .unwrap_or(0)
}

impl<S: SharedData> ReplayCache for SharedReplayCache<S> {
    fn check_and_insert(&self, entry: [u8; 16], iat: u64, now: u64) -> Result<bool, DpopError> {
        let (epoch, slot) = replay_epoch_slot(iat);
        let shard = replay_shard(&entry);
        let key = replay_data_key(&self.prefix, shard, slot);
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = self
                .host
                .get_shared(&key)
                .map_err(|_| DpopError::ReplayUnavailable)?;
            // The slot as stored (`ReplaySlot`'s encoding: the epoch, then 16 bytes per
            // entry), searched and extended in place: no entry is copied out and back.
            let mut stored = bytes.unwrap_or_default();
            let stored_epoch = ReplaySlot::stored_epoch(&stored);
            if stored_epoch > epoch {
                // The slot already serves an iat a whole ring later: this iat is outside
                // every window (the proof check refuses it first). Fail closed.
                return Err(DpopError::ReplayUnavailable);
            }
            let reused = stored_epoch != epoch || stored.len() < 8;
            if reused {
                // An older epoch of this slot (or none yet): past every window by
                // construction (REPLAY_SLOTS covers every acceptable iat).
                stored.clear();
                stored.extend_from_slice(&epoch.to_be_bytes());
            }
            if ReplaySlot::stored_contains(&stored, &entry) {
                return Ok(false);
            }
            if ReplaySlot::stored_len(&stored) >= self.per_slot_capacity {
                return Err(DpopError::ReplayUnavailable);
            }
            ReplaySlot::stored_push(&mut stored, &entry);
            match self.host.set_shared(&key, &stored, cas) {
                Ok(()) => {
                    if reused {
                        self.sweep(shard, slot, now);
                    }
                    return Ok(true);
                }
                Err(SharedError::CasMismatch) => continue,
                Err(_) => return Err(DpopError::ReplayUnavailable),
            }
        }
        Err(DpopError::ReplayUnavailable)
    }
}
