//! The remote documents against the fake host: the fetch schedule and its lease, the key
//! states (withdrawn, stale), the revocation list, and a failing clock.

use super::*;
use registry_token_core::policy::revocation::{RevocationKind, RevocationSet};

const LICENSE: RevocationKind = RevocationKind::License;

#[test]
fn configure_does_not_fetch_the_first_tick_does() {
    let world = World::new(T0);
    let cfg = config(|_| {});
    // The configuration-validation VM: built, never ticked, destroyed.
    let validation = vm(&world, 0, &cfg);
    assert!(validation.fetcher.needed());
    drop(validation);
    let lease = SharedKeys::for_url(&HttpUrl::parse(METADATA, false).unwrap()).lease;
    assert!(world.calls().is_empty());
    assert_eq!(world.get(&lease), None, "configure took the lease");
    let mut worker = vm(&world, 1, &cfg);
    assert!(matches!(worker.keys(), Keys::NotFetched));
    worker.tick();
    assert_eq!(world.calls().len(), 1);
    // Inline keys and no list: nothing to fetch.
    let inline = config(|v| {
        let a = v["authority"].as_object_mut().unwrap();
        a.remove("metadataUrl");
        a.remove("cluster");
        a.insert("jwks".into(), json!({"keys": [authority_jwk()]}));
    });
    assert!(!Fetcher::new(&inline).needed());
}

#[test]
fn two_vms_contend_for_the_lease_and_one_fetches() {
    let world = World::new(T0);
    let cfg = config(|_| {});
    let mut a = vm(&world, 0, &cfg);
    let mut b = vm(&world, 1, &cfg);
    a.tick();
    b.tick();
    let calls = world.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].vm, 0);
    assert_eq!(calls[0].cluster, "authority");
    assert_eq!(calls[0].authority, "authority.test");
    // While A's fetch is in flight, B keeps off (the lease), and so does A.
    world.advance(2);
    b.tick();
    a.tick();
    assert_eq!(world.calls().len(), 1);
    a.answer(calls[0].token, "200", &discovery());
    let jwks_call = world.calls()[1].clone();
    a.answer(jwks_call.token, "200", &jwks_with(&[authority_jwk()]));
    // Both VMs read the keys A fetched.
    assert!(matches!(a.keys(), Keys::Known(k) if k.len() == 1));
    assert!(matches!(b.keys(), Keys::Known(k) if k.len() == 1));
    // Nothing due until the refresh period (from the fetch at T0 + 2); then one fetch.
    world.advance(299);
    a.tick();
    b.tick();
    assert_eq!(world.calls().len(), 2);
    world.advance(1);
    b.tick();
    a.tick();
    let calls = world.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2].vm, 1);
}

#[test]
fn a_lease_left_by_a_vanished_vm_expires() {
    let world = World::new(T0);
    let cfg = config(|_| {});
    let mut a = vm(&world, 0, &cfg);
    let mut b = vm(&world, 1, &cfg);
    a.tick();
    drop(a); // destroyed before the answer
    world.advance(remote::LEASE_SECONDS - 1);
    b.tick();
    assert_eq!(world.calls().len(), 1);
    world.advance(1);
    b.tick();
    assert_eq!(world.calls().len(), 2);
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys_and_retries() {
    let world = World::new(T0);
    let cfg = config(|_| {});
    let mut a = vm(&world, 0, &cfg);
    full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
    world.advance(300);
    a.tick();
    let call = world.calls()[2].clone();
    a.answer(call.token, "503", "");
    assert!(matches!(a.keys(), Keys::Known(_)), "last good set dropped");
    world.advance(remote::RETRY_SECONDS - 1);
    a.tick();
    assert_eq!(world.calls().len(), 3);
    world.advance(1);
    a.tick();
    assert_eq!(world.calls().len(), 4);
    // A bad discovery document and a malformed JWKS are failures too.
    let call = world.calls()[3].clone();
    a.answer(
        call.token,
        "200",
        r#"{"issuer": "https://other.example", "jwks_uri": "x"}"#,
    );
    assert!(matches!(a.keys(), Keys::Known(_)));
    world.advance(remote::RETRY_SECONDS);
    a.tick();
    let call = world.calls()[4].clone();
    a.answer(call.token, "200", &discovery());
    let call = world.calls()[5].clone();
    a.answer(call.token, "200", "not json");
    assert!(matches!(a.keys(), Keys::Known(k) if k.len() == 1));
    // Never fetched and failing: not fetched, retried every RETRY_SECONDS.
    let fresh = World::new(T0);
    let mut c = vm(&fresh, 0, &cfg);
    c.tick();
    c.answer(fresh.calls()[0].token, "504", "");
    assert!(matches!(c.keys(), Keys::NotFetched));
    fresh.advance(remote::RETRY_SECONDS);
    c.tick();
    assert_eq!(fresh.calls().len(), 2);
}

#[test]
fn an_unknown_kid_refreshes_early_at_most_every_30_s() {
    let world = World::new(T0);
    let cfg = config(|v| v["authority"]["jwksRefreshSeconds"] = json!(3600));
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
    // An OpTok naming a kid the set lacks, seen by VM B.
    world.advance(5);
    let unknown = format!(
        "{}.{}.AAAA",
        b64(br#"{"alg":"ES256","typ":"JWT","kid":"rotated"}"#),
        b64(br#"{"sub":"x"}"#)
    );
    let d = b.token_request(&unknown);
    assert!(d.unknown_kid, "{d:?}");
    world.advance(10);
    a.tick();
    assert_eq!(world.calls().len(), 2, "refreshed before 30 s");
    world.advance(14); // T0 + 29
    a.tick();
    assert_eq!(world.calls().len(), 2);
    world.advance(1); // T0 + 30
    full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
    assert_eq!(world.calls().len(), 4);
    // Asked again at once: the next early refresh waits 30 s from that fetch.
    b.token_request(&unknown);
    world.advance(29);
    a.tick();
    assert_eq!(world.calls().len(), 4);
    world.advance(1);
    a.tick();
    assert_eq!(world.calls().len(), 5);
}

#[test]
fn the_revocation_list_refreshes_and_a_bad_list_keeps_the_last_good_one() {
    let world = World::new(T0);
    let cfg = config(|v| {
        v["revocation"] = json!({"url": LIST, "cluster": "lists", "refreshSeconds": 10});
    });
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    let list_copy = |v: &Vm| {
        crate::fetch::ListCopy::new(&cfg)
            .unwrap()
            .current(&v.host, v.host.world.now())
    };
    a.tick();
    let calls: Vec<_> = world
        .calls()
        .into_iter()
        .filter(|c| c.cluster == "lists")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, "/revoked.json");
    assert!(list_copy(&b).is_none());
    a.answer(
        calls[0].token,
        "200",
        r#"{"revokedLicenses": ["lic-1", "lic-2"]}"#,
    );
    let got = list_copy(&b).unwrap();
    assert!(got.0.contains(LICENSE, "lic-1") && got.0.contains(LICENSE, "lic-2"));
    assert_eq!(got.1, T0);
    let list_calls = || {
        world
            .calls()
            .into_iter()
            .filter(|c| c.cluster == "lists")
            .count()
    };
    // Due 2 s before the period is over (the tick and whole seconds fall inside it).
    world.advance(10 - crate::fetch::LIST_REFRESH_LEAD_SECONDS - 1);
    a.tick();
    assert_eq!(list_calls(), 1);
    world.advance(1);
    a.tick();
    assert_eq!(list_calls(), 2);
    let token = world
        .calls()
        .into_iter()
        .rfind(|c| c.cluster == "lists")
        .unwrap()
        .token;
    a.answer(token, "200", r#"{"revokedLicenses": [1, 2]}"#);
    let got = list_copy(&b).unwrap();
    assert!(
        got.0.contains(LICENSE, "lic-1"),
        "a bad list replaced the last good one"
    );
    assert_eq!(got.1, T0, "the fetch time moved on a failure");
    world.advance(remote::RETRY_SECONDS - 1);
    a.tick();
    assert_eq!(list_calls(), 2);
    world.advance(1);
    a.tick();
    assert_eq!(list_calls(), 3);
    let token = world
        .calls()
        .into_iter()
        .rfind(|c| c.cluster == "lists")
        .unwrap()
        .token;
    a.answer(token, "200", "lic-3\n# comment\n");
    let got = list_copy(&b).unwrap();
    assert!(got.0.contains(LICENSE, "lic-3") && !got.0.contains(LICENSE, "lic-1"));
}

// ---------------------------------------------------------------------------------------
// Defect 3: keys withdrawn by the Authority, keys too stale.
// ---------------------------------------------------------------------------------------

#[test]
fn withdrawn_keys_refuse_with_keys_withdrawn_until_published_again() {
    for withdrawn in [
        jwks_with(&[]),
        jwks_with(&[json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"})]),
    ] {
        let world = World::new(T0);
        let cfg = config(|_| {});
        let mut a = vm(&world, 0, &cfg);
        let b = vm(&world, 1, &cfg);
        full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
        assert!(matches!(b.keys(), Keys::Known(_)));
        world.advance(300);
        full_fetch(&mut a, &withdrawn);
        assert!(
            matches!(b.keys(), Keys::Withdrawn),
            "{withdrawn}: last good kept"
        );
        let d = b.token_request(SOME_JWT);
        refused_with(&d, Reason::KeysWithdrawn, 503);
        assert!(retry_after(&d).is_some(), "{d:?}");
        // A failed fetch afterwards does not bring the old keys back.
        world.advance(remote::RETRY_SECONDS);
        a.tick();
        let call = world.calls().last().unwrap().clone();
        a.answer(call.token, "503", "");
        assert!(matches!(b.keys(), Keys::Withdrawn));
        // Retried every RETRY_SECONDS; keys published again: known again.
        world.advance(remote::RETRY_SECONDS);
        full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
        assert!(matches!(b.keys(), Keys::Known(_)));
        assert_ne!(
            b.token_request(SOME_JWT).outcome,
            Outcome::Rejected(Reason::KeysWithdrawn)
        );
    }
}

#[test]
fn keys_older_than_max_stale_are_dropped() {
    let world = World::new(T0);
    let cfg = config(|v| {
        v["authority"]["jwksRefreshSeconds"] = json!(30);
        v["authority"]["jwksMaxStaleSeconds"] = json!(60);
    });
    let mut a = vm(&world, 0, &cfg);
    let b = vm(&world, 1, &cfg);
    full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
    // Every refresh fails from now on.
    for _ in 0..13 {
        world.advance(remote::RETRY_SECONDS);
        a.tick();
        if let Some(call) = world.calls().last().cloned() {
            a.answer(call.token, "503", "");
        }
        let age = world.now() - T0;
        let keys = b.keys();
        if age <= 60 {
            assert!(matches!(keys, Keys::Known(_)), "dropped at {age} s");
        } else {
            assert!(matches!(keys, Keys::Stale), "still trusted at {age} s");
        }
    }
    let d = b.token_request(SOME_JWT);
    refused_with(&d, Reason::KeysStale, 503);
    assert!(retry_after(&d).is_some(), "{d:?}");
    // The Authority answers again: trusted again.
    world.advance(remote::RETRY_SECONDS);
    full_fetch(&mut a, &jwks_with(&[authority_jwk()]));
    assert!(matches!(b.keys(), Keys::Known(_)));
}

// ---------------------------------------------------------------------------------------
// Defect 8: the clock.
// ---------------------------------------------------------------------------------------

#[test]
fn a_failing_clock_refuses_with_clock_unavailable_and_never_mints() {
    let world = World::new(T0);
    let cfg = config(|v| {
        let a = v["authority"].as_object_mut().unwrap();
        a.remove("metadataUrl");
        a.remove("cluster");
        a.insert("jwks".into(), json!({"keys": [authority_jwk()]}));
    });
    let v = vm(&world, 0, &cfg);
    world.fail_clock();
    let d = v.token_request(SOME_JWT);
    refused_with(&d, Reason::ClockUnavailable, 500);
    assert!(!d.body.contains("\"token\""), "{d:?}");
    assert_eq!(d.audit.as_ref().map(|a| a.decision), Some("rejected"));
    // A request answered in its headers' callback brings the time read then: decided at
    // that time, the clock not read again.
    let headers = bearer_headers(SOME_JWT);
    let view = token_view(&headers);
    let at = v
        .state
        .decide_at(&view, Some(std::time::Duration::from_secs(T0 + 7)));
    assert_ne!(
        at.outcome,
        Outcome::Rejected(Reason::ClockUnavailable),
        "{at:?}"
    );
    assert_eq!(at.audit.as_ref().map(|a| a.time), Some(T0 + 7));
    // No fetch is started without a clock.
    let mut r = vm(&world, 1, &config(|_| {}));
    r.tick();
    assert!(world.calls().is_empty());
}

#[test]
fn the_revocation_fetch_sends_its_configured_headers() {
    let world = World::new(T0);
    let cfg = config(|v| {
        v["revocation"] = json!({"url": LIST, "cluster": "lists",
            "headers": {"authorization": "Bearer feed-secret"}});
    });
    let mut v = vm(&world, 1, &cfg);
    v.tick();
    let calls = world.calls();
    let list = calls
        .iter()
        .find(|c| c.cluster == "lists")
        .expect("list call");
    assert!(list
        .headers
        .contains(&("authorization".into(), "Bearer feed-secret".into())));
    let jwks = calls.iter().find(|c| c.cluster == "authority").unwrap();
    assert!(
        !jwks.headers.iter().any(|(k, _)| k == "authorization"),
        "the feed's secret never goes to the Authority"
    );
}
