//! The DPoP replay record in shared data: windows, sweeping, contention, capacity, and
//! configurations sharing one record.

use super::*;

fn entry(shard: u16, n: u8) -> [u8; 16] {
    let mut e = [n; 16];
    e[..2].copy_from_slice(&shard.to_be_bytes());
    e
}

#[test]
fn replay_entries_are_refused_while_any_window_accepts_their_iat() {
    let world = World::new(T0);
    let cache = SharedReplayCache::new(world.vm(0), "p/", 60, 0);
    let other_vm = SharedReplayCache::new(world.vm(1), "p/", 60, 0);
    let e = entry(7, 1);
    assert_eq!(cache.check_and_insert(e, T0, T0), Ok(true));
    assert_eq!(cache.check_and_insert(e, T0, T0), Ok(false));
    assert_eq!(other_vm.check_and_insert(e, T0, T0 + 1), Ok(false));
    // As long as the iat is acceptable (now ≤ iat + 60), and later.
    assert_eq!(other_vm.check_and_insert(e, T0, T0 + 60), Ok(false));
    assert_eq!(other_vm.check_and_insert(e, T0, T0 + 200), Ok(false));
    // The same jti with another iat is another proof (only its key holder can sign it).
    assert_eq!(other_vm.check_and_insert(e, T0 + 120, T0 + 120), Ok(true));
}

#[test]
fn dead_slots_are_emptied_when_their_shard_moves_on() {
    let world = World::new(T0);
    let cache = SharedReplayCache::new(world.vm(0), "p/", 60, 0);
    let start = T0 / 60 * 60;
    assert_eq!(cache.check_and_insert(entry(5, 1), start, start), Ok(true));
    let (_, first_slot) = replay_epoch_slot(start);
    let first_key = replay_data_key("p/", 5, first_slot);
    // Three minutes later a proof of the same shard opens a new slot: the first slot's
    // iat is past the 60 s window, so it is emptied.
    let later = start + 180;
    assert_eq!(cache.check_and_insert(entry(5, 2), later, later), Ok(true));
    let slot = ReplaySlot::decode(&world.get(&first_key).unwrap_or_default());
    assert!(slot.entries.is_empty(), "{slot:?}");
    // With a 300 s window on the same vm_id (another configuration), it would be kept.
    let world = World::new(T0);
    let cache = SharedReplayCache::new(world.vm(0), "p/", 60, 0);
    let _wide = SharedReplayCache::new(world.vm(1), "p/", 300, 0);
    assert_eq!(cache.check_and_insert(entry(5, 1), start, start), Ok(true));
    assert_eq!(cache.check_and_insert(entry(5, 2), later, later), Ok(true));
    let slot = ReplaySlot::decode(&world.get(&first_key).unwrap_or_default());
    assert_eq!(slot.entries, vec![entry(5, 1)]);
    assert_eq!(_wide.check_and_insert(entry(5, 1), start, later), Ok(false));
}

#[test]
fn replay_cas_contention_is_retried_and_keeps_every_entry() {
    let world = World::new(T0);
    let cache = SharedReplayCache::new(world.vm(0), "p/", 60, 0);
    let other = SharedReplayCache::new(world.vm(1), "p/", 60, 0);
    // Another VM writes to the same slot right before this VM's first two writes.
    let rival = Rc::new(std::cell::Cell::new(0u8));
    let r = rival.clone();
    world.before_cas_write(move |w, key| {
        if r.get() < 2 {
            r.set(r.get() + 1);
            let slot = registry_token_core::sender::replay::ReplaySlot {
                epoch: T0 / 60,
                entries: (0..=r.get()).map(|n| entry(3, 100 + n)).collect(),
            };
            let _ = w.set(key, &slot.encode(), None);
        }
    });
    assert_eq!(cache.check_and_insert(entry(3, 1), T0, T0), Ok(true));
    world.clear_hook();
    assert_eq!(world.cas_mismatches.get(), 2);
    assert_eq!(other.check_and_insert(entry(3, 1), T0, T0), Ok(false));
    assert_eq!(other.check_and_insert(entry(3, 101), T0, T0), Ok(false));
    assert_eq!(other.check_and_insert(entry(3, 102), T0, T0), Ok(false));
    // Endless contention: refused (fail closed), not accepted.
    world.before_cas_write(|w, key| {
        let _ = w.set(key, &[], None);
    });
    assert_eq!(
        cache.check_and_insert(entry(3, 2), T0, T0),
        Err(DpopError::ReplayUnavailable)
    );
}

#[test]
fn a_full_replay_slot_is_unavailable() {
    let world = World::new(T0);
    // The smallest capacity: 16 entries per shard and slot.
    let cache = SharedReplayCache::new(world.vm(0), "p/", 60, 0);
    for n in 0..16 {
        assert_eq!(cache.check_and_insert(entry(9, n), T0, T0), Ok(true));
    }
    assert_eq!(
        cache.check_and_insert(entry(9, 200), T0, T0),
        Err(DpopError::ReplayUnavailable)
    );
    // Other shards are not affected; the next minute of iat has room again.
    assert_eq!(cache.check_and_insert(entry(10, 200), T0, T0), Ok(true));
    assert_eq!(
        cache.check_and_insert(entry(9, 200), T0 + 60, T0 + 60),
        Ok(true)
    );
}

#[test]
fn configurations_with_different_windows_share_one_record_and_wipe_nothing() {
    // Two configurations on one vm_id (two listeners, or one before and after a
    // reconfiguration): dpop.iatWindowSeconds 60 and 90. Before the record was filed by
    // iat in fixed slots, they numbered slots by now/window, and each write of one
    // emptied the other's slot: find a time at which both numbered their slot alike.
    let now = (T0..)
        .find(|t| (t / 60) % 3 == (t / 90) % 3 && (t / 60) != (t / 90))
        .unwrap();
    let world = World::new(now);
    let a = SharedReplayCache::new(world.vm(0), remote::SHARED_PREFIX, 60, 1 << 20);
    let b = SharedReplayCache::new(world.vm(1), remote::SHARED_PREFIX, 90, 1 << 20);
    let proof = entry(42, 1);
    assert_eq!(a.check_and_insert(proof, now, now), Ok(true));
    // The other configuration records proofs of its own in the same shard.
    assert_eq!(b.check_and_insert(entry(42, 2), now, now), Ok(true));
    assert_eq!(b.check_and_insert(entry(42, 3), now + 1, now + 1), Ok(true));
    assert_eq!(
        a.check_and_insert(proof, now, now + 2),
        Ok(false),
        "replay accepted"
    );
    // One record: a proof accepted under one configuration is refused under the other,
    // and under a configuration made later (a reconfiguration with another window).
    assert_eq!(b.check_and_insert(proof, now, now + 3), Ok(false));
    let c = SharedReplayCache::new(world.vm(0), remote::SHARED_PREFIX, 300, 1 << 20);
    assert_eq!(c.check_and_insert(proof, now, now + 4), Ok(false));
    assert_eq!(
        c.check_and_insert(entry(42, 3), now + 1, now + 4),
        Ok(false)
    );
    assert!(world
        .keys()
        .iter()
        .all(|k| k.starts_with(remote::SHARED_PREFIX)));
}
