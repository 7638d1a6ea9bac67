//! The counters against the fake host: their names, the series defined up front, which one
//! a decision, a cache delta or a ledger POST moves, and no definition per request.

use super::*;
use crate::fake::Metric;
use crate::host::MetricKind;
use crate::ledger::Shipped;
use crate::metrics::{Metrics, LEDGER_DROPPED};
use registry_token_core::handler::cache::CacheStats;
use registry_token_core::handler::Grant;
use std::cell::Cell;

fn kind_of(world: &World, name: &str) -> Option<MetricKind> {
    world
        .metrics()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.kind)
}

#[test]
fn every_series_is_defined_at_configure_time_at_zero() {
    let world = World::new(T0);
    let _metrics = Metrics::new(world.vm(0));
    let counters = [
        "registry_token_optok_cache_hits_total",
        "registry_token_optok_cache_misses_total",
        "registry_token_mint_reused_total",
        "registry_token_ledger_dropped_total",
        "registry_token_ledger_batches_sent_total",
        "registry_token_ledger_batches_failed_total",
        "registry_token_ledger_records_sent_total",
        "registry_token_issued_total.grant.get",
        "registry_token_issued_total.grant.password",
        "registry_token_issued_total.grant.refresh_token",
        "registry_token_rejected_total.reason.clock_unavailable",
        "registry_token_rejected_total.reason.ledger_backlog_full",
    ];
    for name in counters {
        assert_eq!(kind_of(&world, name), Some(MetricKind::Counter), "{name}");
        assert_eq!(world.metric(name), Some(0), "{name}");
    }
    for reason in Reason::ALL {
        let name = format!("registry_token_rejected_total.reason.{}", reason.label());
        assert_eq!(world.metric(&name), Some(0), "{name}");
    }
    assert_eq!(
        kind_of(&world, "registry_token_decision_us"),
        Some(MetricKind::Histogram)
    );
    for gauge in [
        "registry_token_vm_memory_bytes",
        "registry_token_ledger_backlog",
        "registry_token_revocation_age_seconds",
        "registry_token_revocation_stale",
        "registry_token_revocation_entries",
        "registry_token_revocation_refresh_failing",
    ] {
        assert_eq!(kind_of(&world, gauge), Some(MetricKind::Gauge), "{gauge}");
    }
    assert_eq!(
        kind_of(&world, "registry_token_revocation_load_us"),
        Some(MetricKind::Histogram)
    );
    // Nothing else: 3 + 7 + 5 fixed series, one per grant, one per reason.
    assert_eq!(
        world.metrics().len(),
        15 + Grant::ALL.len() + Reason::ALL.len()
    );
}

#[test]
fn a_decision_moves_its_counter_and_defines_nothing() {
    let world = World::new(T0);
    let metrics = Metrics::new(world.vm(0));
    let defines = world.metric_defines.get();
    metrics.record(&Outcome::Issued(Grant::Password));
    metrics.record(&Outcome::Issued(Grant::Password));
    metrics.record(&Outcome::Rejected(Reason::ClockUnavailable));
    metrics.record(&Outcome::Other);
    metrics.increment(LEDGER_DROPPED);
    assert_eq!(world.metric_defines.get(), defines, "a define per request");
    let moved: Vec<Metric> = world
        .metrics()
        .into_iter()
        .filter(|m| m.value != 0)
        .collect();
    let moved: Vec<(&str, i64)> = moved.iter().map(|m| (m.name.as_str(), m.value)).collect();
    assert_eq!(
        moved,
        [
            ("registry_token_ledger_dropped_total", 1),
            ("registry_token_issued_total.grant.password", 2),
            ("registry_token_rejected_total.reason.clock_unavailable", 1),
        ]
    );
}

#[test]
fn a_series_the_host_could_not_define_at_configure_time_is_defined_on_first_use() {
    let world = World::new(T0);
    world.define_fails.set(true);
    let metrics = Metrics::new(world.vm(0));
    assert!(world.metrics().is_empty());
    world.define_fails.set(false);
    metrics.record(&Outcome::Rejected(Reason::LedgerBacklogFull));
    metrics.record(&Outcome::Rejected(Reason::LedgerBacklogFull));
    metrics.note_cache(CacheStats {
        optok_hits: 2,
        ..CacheStats::default()
    });
    let name = "registry_token_rejected_total.reason.ledger_backlog_full";
    assert_eq!(world.metric(name), Some(2));
    assert_eq!(
        world.metric("registry_token_optok_cache_hits_total"),
        Some(2)
    );
    // Defined once each, then found by name.
    assert_eq!(world.metrics().len(), 2);
    // Without a histogram the host clock is not even read.
    let read = Cell::new(false);
    metrics.record_decision(0, || {
        read.set(true);
        1
    });
    assert!(!read.get());
}

#[test]
fn cache_deltas_and_ledger_posts_move_their_counters() {
    let world = World::new(T0);
    let metrics = Metrics::new(world.vm(0));
    let stats = |hits, misses, reused| CacheStats {
        optok_hits: hits,
        optok_misses: misses,
        mint_reused: reused,
    };
    metrics.note_cache(stats(3, 1, 0));
    metrics.note_cache(stats(5, 1, 2));
    assert_eq!(
        world.metric("registry_token_optok_cache_hits_total"),
        Some(5)
    );
    assert_eq!(
        world.metric("registry_token_optok_cache_misses_total"),
        Some(1)
    );
    assert_eq!(world.metric("registry_token_mint_reused_total"), Some(2));
    metrics.shipped(Shipped::Sent(5));
    metrics.shipped(Shipped::Failed);
    metrics.shipped(Shipped::Rejected(3));
    let value = |name: &str| world.metric(&format!("registry_token_ledger_{name}"));
    assert_eq!(value("batches_sent_total"), Some(1));
    assert_eq!(value("records_sent_total"), Some(5));
    assert_eq!(value("batches_failed_total"), Some(2));
    assert_eq!(value("dropped_total"), Some(3));
    metrics.set_backlog(17);
    assert_eq!(value("backlog"), Some(17));
}

#[test]
fn the_memory_gauge_is_the_largest_vm_and_decisions_are_timed_in_microseconds() {
    let world = World::new(T0);
    let a = Metrics::new(world.vm(0));
    let b = Metrics::new(world.vm(1));
    let gauge = "registry_token_vm_memory_bytes";
    a.note_memory(2 << 20);
    b.note_memory(1 << 20);
    assert_eq!(world.metric(gauge), Some(2 << 20));
    b.note_memory(3 << 20);
    assert_eq!(world.metric(gauge), Some(3 << 20));
    a.record_decision(1_000, || 2_501_000);
    assert_eq!(world.metric("registry_token_decision_us"), Some(2_500));
    // A clock that went backwards records 0, not a wrapped value.
    a.record_decision(5_000, || 0);
    assert_eq!(world.metric("registry_token_decision_us"), Some(0));
}
