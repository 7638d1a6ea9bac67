//! The DPoP `jti` replay cache in Envoy shared data: process-wide (every worker's VM with
//! the same `vm_id` sees it), updated with compare-and-swap, bounded, and expired by time
//! slots rather than by deletion (shared data has no expiry).

use proxy_wasm::types::Status;
use registry_token_core::sender::dpop::DpopError;
use registry_token_core::sender::replay::{
    replay_data_key, replay_shard, ReplayCache, ReplaySlot, REPLAY_SHARDS, REPLAY_SLOTS,
};

/// Attempts at a contended compare-and-swap before giving up (fail closed).
const CAS_ATTEMPTS: usize = 16;

/// Replay cache over shared data.
pub struct SharedReplayCache {
    prefix: String,
    window_seconds: u64,
    per_slot_capacity: usize,
}

impl SharedReplayCache {
    /// A cache whose slots last `window_seconds`, holding at most `capacity` entries per
    /// slot across all shards.
    pub fn new(prefix: &str, window_seconds: u64, capacity: usize) -> SharedReplayCache {
        let cache = SharedReplayCache {
            prefix: prefix.to_string(),
            window_seconds: window_seconds.max(1),
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
                if let Ok((None, _)) = proxy_wasm::hostcalls::get_shared_data(&key) {
                    let _ = proxy_wasm::hostcalls::set_shared_data(&key, Some(&empty), None);
                }
            }
        }
    }
}

impl ReplayCache for SharedReplayCache {
    fn check_and_insert(&self, entry: [u8; 16], now: u64) -> Result<bool, DpopError> {
        let epoch = now / self.window_seconds;
        let shard = replay_shard(&entry);
        let current_slot = epoch % REPLAY_SLOTS;
        for slot in 0..REPLAY_SLOTS {
            if slot == current_slot {
                continue;
            }
            let key = replay_data_key(&self.prefix, shard, slot);
            if let Ok((Some(bytes), _)) = proxy_wasm::hostcalls::get_shared_data(&key) {
                let s = ReplaySlot::decode(&bytes);
                if s.live(epoch) && s.entries.contains(&entry) {
                    return Ok(false);
                }
            }
        }
        let key = replay_data_key(&self.prefix, shard, current_slot);
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = proxy_wasm::hostcalls::get_shared_data(&key)
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
            match proxy_wasm::hostcalls::set_shared_data(&key, Some(&s.encode()), cas) {
                Ok(()) => return Ok(true),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(DpopError::ReplayUnavailable),
            }
        }
        Err(DpopError::ReplayUnavailable)
    }
}
