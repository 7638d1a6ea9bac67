//! The DPoP `jti` replay cache in Envoy shared data: process-wide (every worker's VM with
//! the same `vm_id` sees it), updated with compare-and-swap, bounded, and expired by time
//! slots rather than by deletion (shared data has no expiry).
//!
//! Slots are numbered by `now / dpop.iatWindowSeconds`, so the record is keyed by that
//! window: two configurations on one `vm_id` with different windows would otherwise
//! number epochs differently and each wipe the other's slots (a proof accepted once could
//! then be accepted again). Configurations with the same window share one record.

use registry_token_core::sender::dpop::DpopError;
use registry_token_core::sender::replay::{
    replay_data_key, replay_shard, ReplayCache, ReplaySlot, REPLAY_SHARDS, REPLAY_SLOTS,
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
    /// A cache whose slots last `window_seconds`, holding at most `capacity` entries per
    /// slot across all shards; its keys are `prefix` + `window-<window>s/` + the record's.
    pub fn new(
        host: S,
        prefix: &str,
        window_seconds: u64,
        capacity: usize,
    ) -> SharedReplayCache<S> {
        let window_seconds = window_seconds.max(1);
        let cache = SharedReplayCache {
            host,
            prefix: format!("{prefix}window-{window_seconds}s/"),
            window_seconds,
            per_slot_capacity: (capacity / REPLAY_SHARDS).max(16),
        };
        cache.create_missing_keys();
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
}

impl<S: SharedData> ReplayCache for SharedReplayCache<S> {
    fn check_and_insert(&self, entry: [u8; 16], now: u64) -> Result<bool, DpopError> {
        let epoch = now / self.window_seconds;
        let shard = replay_shard(&entry);
        let current_slot = epoch % REPLAY_SLOTS;
        for slot in 0..REPLAY_SLOTS {
            if slot == current_slot {
                continue;
            }
            let key = replay_data_key(&self.prefix, shard, slot);
            if let Ok((Some(bytes), _)) = self.host.get_shared(&key) {
                let s = ReplaySlot::decode(&bytes);
                if s.live(epoch) && s.entries.contains(&entry) {
                    return Ok(false);
                }
            }
        }
        let key = replay_data_key(&self.prefix, shard, current_slot);
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = self
                .host
                .get_shared(&key)
                .map_err(|_| DpopError::ReplayUnavailable)?;
            let mut s = bytes
                .as_deref()
                .map(ReplaySlot::decode)
                .unwrap_or(ReplaySlot {
                    epoch,
                    entries: Vec::new(),
                });
            if s.epoch != epoch {
                s = ReplaySlot {
                    epoch,
                    entries: Vec::new(),
                };
            }
            if s.entries.contains(&entry) {
                return Ok(false);
            }
            if s.entries.len() >= self.per_slot_capacity {
                return Err(DpopError::ReplayUnavailable);
            }
            s.entries.push(entry);
            match self.host.set_shared(&key, &s.encode(), cas) {
                Ok(()) => return Ok(true),
                Err(SharedError::CasMismatch) => continue,
                Err(_) => return Err(DpopError::ReplayUnavailable),
            }
        }
        Err(DpopError::ReplayUnavailable)
    }
}
