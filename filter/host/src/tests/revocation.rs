//! The remote revocation list at scale against the fake host (issue 25 #4): a list past
//! the old 1 MiB bound is taken, the digest form of 50,000 entries is kept once and read
//! by each VM once per change, and a list that cannot be fetched or taken fails closed
//! after `maxStaleSeconds` with its own reason, its gauges saying so.

use super::ledger::{authority, optok};
use super::*;
use crate::metrics::Metrics;
use registry_token_core::policy::revocation::{DigestLists, RevokedLists, MAX_LIST_BYTES};

/// Inline Authority keys (the ledger tests' OpToks verify) and a remote list at [`LIST`].
fn list_config(revocation: Value) -> Config {
    config(|v| {
        let a = v["authority"].as_object_mut().unwrap();
        a.remove("metadataUrl");
        a.remove("cluster");
        a.remove("jwksRefreshSeconds");
        a.insert("jwks".into(), json!({"keys": [authority().jwk.clone()]}));
        let mut r = json!({"url": LIST, "cluster": "lists", "refreshSeconds": 10});
        for (k, x) in revocation.as_object().cloned().unwrap_or_default() {
            r[k] = x;
        }
        v["revocation"] = r;
    })
}

/// Ticks `v` and answers the list call it makes (there must be one).
fn serve_list(v: &mut Vm, status: &str, body: &str) {
    let seen = v.host.world.calls().len();
    v.tick();
    let call = new_calls(&v.host.world, seen)
        .into_iter()
        .find(|c| c.cluster == "lists")
        .expect("a list fetch is due");
    v.answer(call.token, status, body);
}

/// `/token` for `subject`: its status and reason label (`issued` when minted).
fn token_for(v: &Vm, subject: &str) -> (u16, &'static str) {
    let d = v.token_request(&optok(subject, v.host.world.now()));
    let label = match d.outcome {
        Outcome::Issued(_) => "issued",
        Outcome::Rejected(r) => r.label(),
        Outcome::Other => "other",
    };
    (d.status, label)
}

fn shared_calls(world: &World, what: &str) -> usize {
    world
        .shared_calls
        .borrow()
        .iter()
        .filter(|c| c.starts_with(what) && c.ends_with("#list"))
        .count()
}

/// The issue's list: 4,200 licences of 256 characters and a subject, 1.09 MB of value
/// form, which the gateway refused ("larger than 1048576 bytes") and so never enforced.
#[test]
fn the_issues_list_past_one_mib_is_taken_and_enforced() {
    let world = World::new(T0);
    let cfg = list_config(json!({}));
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    let licences: Vec<String> = (0..4_200).map(|i| format!("{i:0256}")).collect();
    let body = json!({"revokedLicenses": licences, "revokedSubjects": ["mallory"]}).to_string();
    assert!(body.len() > 1024 * 1024, "{} bytes", body.len());
    serve_list(&mut a, "200", &body);
    assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
    let status = b.state.revocation_status(world.now()).unwrap();
    assert_eq!(status.entries, 4_201);
    assert!(!status.stale && !status.failing, "{status:?}");
}

/// The ledger's digest form at 50,000 entries: under 1 MiB, kept in shared data once per
/// change, read by each VM once per change however often it is fetched.
#[test]
fn a_digest_feed_of_50_000_is_kept_once_and_read_once_per_change() {
    let world = World::new(T0);
    let cfg = list_config(json!({}));
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    let values = RevokedLists {
        subjects: (0..50_000).map(|i| format!("subject-{i:05}")).collect(),
        ..RevokedLists::default()
    };
    let body = serde_json::to_string(&DigestLists::from_values(&values).to_feed(T0)).unwrap();
    assert!(body.len() < 1024 * 1024, "{} bytes", body.len());
    serve_list(&mut a, "200", &body);
    assert_eq!(token_for(&b, "subject-49999"), (403, "subject_revoked"));
    assert_eq!(token_for(&b, "subject-00000"), (403, "subject_revoked"));
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
    let status = b.state.revocation_status(world.now()).unwrap();
    assert_eq!(status.entries, 50_000);
    assert!(status.loaded_us.is_some(), "the load is timed once");
    assert_eq!(shared_calls(&world, "set "), 1);
    let reads = shared_calls(&world, "get ");
    // Requests and ticks read the small record only, at most once a second.
    let record_reads = || {
        world
            .shared_calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("get ") && c.ends_with("#document"))
            .count()
    };
    let before = record_reads();
    for _ in 0..5 {
        token_for(&b, "alice");
        b.state.revocation_status(world.now());
    }
    assert_eq!(shared_calls(&world, "get "), reads);
    assert_eq!(record_reads(), before, "read again within the second");
    // The same list fetched again: the record moves on, the list is neither written nor read.
    world.advance(10);
    serve_list(&mut a, "200", &body);
    let status = b.state.revocation_status(world.now()).unwrap();
    assert_eq!(status.fetched_at, Some(T0 + 10));
    assert_eq!(status.loaded_us, None);
    assert_eq!(shared_calls(&world, "set "), 1);
    assert_eq!(shared_calls(&world, "get "), reads);
    // One more entry: written and read again, once.
    let mut more = values.clone();
    more.subjects.insert("mallory".into());
    world.advance(10);
    serve_list(
        &mut a,
        "200",
        &serde_json::to_string(&DigestLists::from_values(&more).to_feed(T0)).unwrap(),
    );
    assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
    assert_eq!(token_for(&b, "subject-12345"), (403, "subject_revoked"));
    assert_eq!(shared_calls(&world, "set "), 2);
    assert_eq!(shared_calls(&world, "get "), reads + 1);
    let before = record_reads();
    world.advance(1);
    for _ in 0..3 {
        token_for(&b, "alice");
    }
    assert_eq!(record_reads(), before + 1, "once in the next second");
}

/// A list the gateway cannot take (here: past its bound) keeps the last good one only up
/// to `maxStaleSeconds` (default ten refresh periods, at least 300 s); then `/token` fails
/// closed with `revocation_stale` until a list is taken again, and the gauges say so.
#[test]
fn a_list_that_cannot_be_taken_fails_closed_after_max_stale_seconds() {
    let world = World::new(T0);
    let cfg = list_config(json!({}));
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    let metrics = Metrics::new(world.vm(1));
    serve_list(&mut a, "200", r#"{"revokedSubjects": ["mallory"]}"#);
    let too_large = " ".repeat(MAX_LIST_BYTES + 1);
    world.advance(10);
    serve_list(&mut a, "200", &too_large);
    while world.now() - T0 < 300 {
        assert_eq!(
            token_for(&b, "alice"),
            (200, "issued"),
            "at {} s",
            world.now() - T0
        );
        assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
        let status = b.state.revocation_status(world.now()).unwrap();
        assert!(status.failing && !status.stale, "{status:?}");
        world.advance(remote::RETRY_SECONDS);
        serve_list(&mut a, "200", &too_large);
    }
    world.advance(1);
    let d = b.token_request(&optok("alice", world.now()));
    refused_with(&d, Reason::RevocationStale, 503);
    assert!(retry_after(&d).is_some(), "{d:?}");
    // A revoked subject stays revoked.
    assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
    let status = b.state.revocation_status(world.now()).unwrap();
    assert!(status.failing && status.stale, "{status:?}");
    metrics.note_revocation(&status, world.now());
    assert_eq!(world.metric("registry_token_revocation_stale"), Some(1));
    assert_eq!(
        world.metric("registry_token_revocation_refresh_failing"),
        Some(1)
    );
    assert_eq!(world.metric("registry_token_revocation_entries"), Some(1));
    assert_eq!(
        world.metric("registry_token_revocation_age_seconds"),
        Some(i64::try_from(world.now() - T0).unwrap())
    );
    // Taken again: served again, the gauges back to 0.
    world.advance(remote::RETRY_SECONDS);
    serve_list(&mut a, "200", r#"{"revokedSubjects": ["mallory"]}"#);
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
    let status = b.state.revocation_status(world.now()).unwrap();
    metrics.note_revocation(&status, world.now());
    assert_eq!(world.metric("registry_token_revocation_stale"), Some(0));
    assert_eq!(
        world.metric("registry_token_revocation_refresh_failing"),
        Some(0)
    );
    assert_eq!(
        world.metric("registry_token_revocation_age_seconds"),
        Some(0)
    );
}

/// `onStale: serve` keeps issuing past `maxStaleSeconds`, and the stale gauge says so.
#[test]
fn serve_keeps_issuing_with_a_stale_list_and_says_so() {
    let world = World::new(T0);
    let cfg = list_config(json!({"onStale": "serve", "maxStaleSeconds": 20}));
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    serve_list(&mut a, "200", r#"{"revokedSubjects": ["mallory"]}"#);
    world.advance(10);
    serve_list(&mut a, "503", "");
    world.advance(11);
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
    assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
    let status = b.state.revocation_status(world.now()).unwrap();
    assert!(status.stale && status.failing, "{status:?}");
}

/// Before the first list is taken, the default issues as it always did, but only for
/// `maxStaleSeconds` after the start: a gateway that never takes its list (one too large
/// from the start, say) then fails closed with `revocation_stale`. `refuse` refuses at
/// once with `revocation_unavailable`; `serve` never refuses.
#[test]
fn before_the_first_list_the_default_issues_for_max_stale_seconds_only() {
    let world = World::new(T0);
    let mut a = vm(&world, 0, &list_config(json!({})));
    let b = vm(&world, 1, &list_config(json!({})));
    let strict = vm(&world, 2, &list_config(json!({"onStale": "refuse"})));
    let serve = vm(&world, 3, &list_config(json!({"onStale": "serve"})));
    // Started: the first tick (or request) is the start.
    assert!(!b.state.revocation_status(T0).unwrap().stale);
    serve.state.revocation_status(T0);
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
    let d = strict.token_request(&optok("alice", T0));
    refused_with(&d, Reason::RevocationUnavailable, 503);
    // The only list on offer is past the gateway's bound: never taken.
    let too_large = " ".repeat(MAX_LIST_BYTES + 1);
    serve_list(&mut a, "200", &too_large);
    while world.now() - T0 < 300 {
        world.advance(remote::RETRY_SECONDS);
        serve_list(&mut a, "200", &too_large);
        assert_eq!(
            token_for(&b, "alice"),
            (200, "issued"),
            "{} s",
            world.now() - T0
        );
    }
    world.advance(1);
    let d = b.token_request(&optok("alice", world.now()));
    refused_with(&d, Reason::RevocationStale, 503);
    let status = b.state.revocation_status(world.now()).unwrap();
    assert!(
        status.stale && status.failing && status.fetched_at.is_none(),
        "{status:?}"
    );
    assert_eq!(token_for(&serve, "alice"), (200, "issued"));
    assert!(serve.state.revocation_status(world.now()).unwrap().stale);
    // Taken at last: served.
    world.advance(remote::RETRY_SECONDS);
    serve_list(&mut a, "200", r#"{"revokedSubjects": ["mallory"]}"#);
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
    assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
    assert_eq!(token_for(&strict, "alice"), (200, "issued"));
}

/// A record an older module wrote (the list itself as its document, no list key) is read
/// as it is, so a module upgrade on the same `vm_id` keeps the list in force.
#[test]
fn a_record_of_an_older_module_is_read() {
    let world = World::new(T0);
    let cfg = list_config(json!({}));
    let b = vm(&world, 1, &cfg);
    let keys = SharedKeys::for_url(&HttpUrl::parse(LIST, false).unwrap());
    let record = remote::FetchRecord {
        fetched_at: T0,
        document: json!({"revokedLicenses": [], "revokedSubjects": ["mallory"],
                         "revokedRefreshTokens": [], "revokedTenants": []}),
        attempted_at: T0,
        last_error: None,
        withdrawn: false,
    };
    world.set(&keys.document, &record.to_bytes(), None).unwrap();
    assert_eq!(token_for(&b, "mallory"), (403, "subject_revoked"));
    assert_eq!(token_for(&b, "alice"), (200, "issued"));
}
