//! Native tests of the glue against the fake host: the fetch schedule, the remote key
//! states, the replay record and the clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};

use registry_token_core::config::Config;
use registry_token_core::handler::{Decision, Outcome, Reason, RequestView};
use registry_token_core::remote::{self, SharedKeys};
use registry_token_core::sender::dpop::DpopError;
use registry_token_core::sender::replay::{
    replay_data_key, replay_epoch_slot, ReplayCache, ReplaySlot,
};
use registry_token_core::token::crypto::RustCrypto;
use registry_token_core::wire::url::HttpUrl;

use crate::fake::{FakeHost, World};
use crate::fetch::{Fetcher, Keys};
use crate::replay::SharedReplayCache;
use crate::state::State;

const T0: u64 = 1_800_000_000;
const METADATA: &str = "http://authority.test/.well-known/openid-configuration";
const ISSUER: &str = "https://authority.example";
const LIST: &str = "http://lists.test/revoked.json";

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

struct EcKey {
    pem: String,
    jwk: Value,
}

fn ec_key(kid: &str) -> EcKey {
    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = key.public_key().to_encoded_point(false);
    EcKey {
        pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                    "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
    }
}

fn signing() -> &'static EcKey {
    static K: OnceLock<EcKey> = OnceLock::new();
    K.get_or_init(|| ec_key("signing"))
}

fn authority_jwk() -> Value {
    static K: OnceLock<Value> = OnceLock::new();
    K.get_or_init(|| ec_key("authority").jwk).clone()
}

fn base_config() -> Value {
    json!({
        "authority": {
            "issuer": ISSUER,
            "audiences": ["registry-token"],
            "metadataUrl": METADATA,
            "cluster": "authority",
            "jwksRefreshSeconds": 300,
            "requireSenderConstraint": false
        },
        "signing": {"keyPem": signing().pem, "algorithm": "ES256"},
        "registry": {"realm": "https://gateway.example/token", "allowedServices": ["registry.example"]},
        "plans": [{"name": "community", "repositories": [{"pattern": "stella-ops/public/*"}]}],
        "defaultPlan": "community"
    })
}

fn config(edit: impl FnOnce(&mut Value)) -> Config {
    let mut v = base_config();
    edit(&mut v);
    Config::from_value(v).unwrap_or_else(|e| panic!("config refused: {e}"))
}

/// One VM: its host, its state and its fetch schedule.
struct Vm {
    host: FakeHost,
    state: State<FakeHost>,
    fetcher: Fetcher,
}

fn vm(world: &Rc<World>, n: usize, config: &Config) -> Vm {
    let host = world.vm(n);
    Vm {
        state: State::with_replay_capacity(host.clone(), config.clone(), Box::new(RustCrypto), 0),
        fetcher: Fetcher::new(config),
        host,
    }
}

impl Vm {
    fn tick(&mut self) {
        self.fetcher.tick(&self.host);
    }

    /// Answers the call `token` as the host would during `on_http_call_response`.
    fn answer(&mut self, token: u32, status: &str, body: &str) {
        self.host.answer_with(status, body.as_bytes());
        self.fetcher.on_response(&self.host, token, body.len());
    }

    fn keys(&self) -> Keys {
        self.state.keys(self.host.world.now())
    }

    fn token_request(&self, bearer: &str) -> Decision {
        let headers = vec![("authorization".to_string(), format!("Bearer {bearer}"))];
        let view = RequestView {
            method: "GET",
            path: "/token?service=registry.example&scope=repository:stella-ops/public/base:pull",
            headers: &headers,
            peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
            body: None,
        };
        self.state.decide(&view)
    }
}

fn discovery() -> String {
    json!({"issuer": ISSUER, "jwks_uri": "http://authority.test/jwks.json"}).to_string()
}

fn jwks_with(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// The calls dispatched after the first `seen`.
fn new_calls(world: &World, seen: usize) -> Vec<crate::fake::Call> {
    world.calls().into_iter().skip(seen).collect()
}

/// Runs one full discovery → JWKS fetch from `v`, answering the JWKS with `jwks`.
fn full_fetch(v: &mut Vm, jwks: &str) {
    let seen = v.host.world.calls().len();
    v.tick();
    let calls = new_calls(&v.host.world, seen);
    assert_eq!(calls.len(), 1, "expected one metadata call: {calls:?}");
    assert_eq!(calls[0].path, "/.well-known/openid-configuration");
    v.answer(calls[0].token, "200", &discovery());
    let calls = new_calls(&v.host.world, seen + 1);
    assert_eq!(calls.len(), 1, "expected the JWKS call: {calls:?}");
    assert_eq!(calls[0].path, "/jwks.json");
    v.answer(calls[0].token, "200", jwks);
}

fn refused_with(decision: &Decision, reason: Reason, status: u16) {
    assert_eq!(decision.status, status, "{decision:?}");
    assert_eq!(decision.outcome, Outcome::Rejected(reason), "{decision:?}");
    let body: Value = serde_json::from_str(&decision.body).unwrap();
    assert_eq!(
        body["type"],
        format!("urn:registry-token-filter:error:{}", reason.label())
    );
    assert_eq!(
        decision.audit.as_ref().map(|a| a.reason),
        Some(reason.label())
    );
}

fn retry_after(decision: &Decision) -> Option<&str> {
    decision
        .headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .map(|(_, v)| v.as_str())
}

const SOME_JWT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImF1dGhvcml0eSJ9.e30.AAAA";

// ---------------------------------------------------------------------------------------
// The fetch schedule.
// ---------------------------------------------------------------------------------------

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
    let list_copy = |v: &Vm| crate::fetch::ListCopy::new(&cfg).unwrap().current(&v.host);
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
    assert!(got.0.licenses.contains("lic-1") && got.0.licenses.contains("lic-2"));
    assert_eq!(got.1, T0);
    let list_calls = || {
        world
            .calls()
            .into_iter()
            .filter(|c| c.cluster == "lists")
            .count()
    };
    world.advance(9);
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
        got.0.licenses.contains("lic-1"),
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
    assert!(got.0.licenses.contains("lic-3") && !got.0.licenses.contains("lic-1"));
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
    // No fetch is started without a clock.
    let mut r = vm(&world, 1, &config(|_| {}));
    r.tick();
    assert!(world.calls().is_empty());
}

// ---------------------------------------------------------------------------------------
// The DPoP replay record.
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// The issuance ledger: buffer, delivery schedule, onBacklogFull.
// ---------------------------------------------------------------------------------------

mod ledger {
    use super::*;
    use crate::fake::Call;
    use crate::ledger::{Append, LedgerBuffer, Shipped, Shipper};
    use crate::state::Recorded;
    use p256::ecdsa::{signature::Signer, Signature, SigningKey};

    struct Authority {
        key: p256::SecretKey,
        jwk: Value,
    }

    fn authority() -> &'static Authority {
        static A: OnceLock<Authority> = OnceLock::new();
        A.get_or_init(|| {
            let key = p256::SecretKey::random(&mut rand_core::OsRng);
            let point = key.public_key().to_encoded_point(false);
            let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "op", "alg": "ES256",
                             "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())});
            Authority { key, jwk }
        })
    }

    fn optok(subject: &str, now: u64) -> String {
        let header = b64(br#"{"alg":"ES256","kid":"op","typ":"JWT"}"#);
        let claims = b64(
            json!({"iss": ISSUER, "aud": "registry-token", "sub": subject,
            "scope": "registry.token.issue", "iat": now, "exp": now + 600,
            "stellaops:license": "lic-7"})
            .to_string()
            .as_bytes(),
        );
        let input = format!("{header}.{claims}");
        let sig: Signature = SigningKey::from(&authority().key).sign(input.as_bytes());
        format!("{input}.{}", b64(&sig.to_bytes()))
    }

    fn ledger_config(ledger: Value) -> Config {
        config(|v| {
            let a = v["authority"].as_object_mut().unwrap();
            a.remove("metadataUrl");
            a.remove("cluster");
            a.remove("jwksRefreshSeconds");
            a.insert("jwks".into(), json!({"keys": [authority().jwk.clone()]}));
            v["ledger"] = ledger;
        })
    }

    struct Gw {
        host: FakeHost,
        state: State<FakeHost>,
        shipper: Shipper,
    }

    fn gw(world: &Rc<World>, n: usize, cfg: &Config) -> Gw {
        let host = world.vm(n);
        let state = State::with_replay_capacity(host.clone(), cfg.clone(), Box::new(RustCrypto), 0);
        let shipper = Shipper::new(
            state.ledger_buffer().unwrap().clone(),
            cfg.ledger.as_ref().unwrap(),
        );
        Gw {
            host,
            state,
            shipper,
        }
    }

    impl Gw {
        /// One `/token` request: an issued token for `Some(subject)`, a refusal for `None`.
        fn request(&self, subject: Option<&str>) -> (Decision, Recorded) {
            let bearer = match subject {
                Some(s) => optok(s, self.host.world.now()),
                None => SOME_JWT.to_string(),
            };
            let headers = vec![("authorization".to_string(), format!("Bearer {bearer}"))];
            let view = RequestView {
                method: "GET",
                path:
                    "/token?service=registry.example&scope=repository:stella-ops/public/base:pull",
                headers: &headers,
                peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
                body: None,
            };
            self.state.decide_recorded(&view)
        }

        fn tick(&mut self) -> Option<Shipped> {
            self.shipper.tick(&self.host)
        }

        fn answer(&mut self, call: &Call, status: &str) -> Option<Shipped> {
            self.host
                .answer_with(status, b"{\"accepted\":1,\"duplicates\":0}");
            self.shipper.on_response(&self.host, call.token, 30)
        }

        fn backlog(&self) -> u64 {
            self.shipper.buffer().backlog(&self.host)
        }
    }

    /// The ledger's id of a decision (the minted token's `jti`, or the request id).
    fn id_of(d: &Decision) -> String {
        let a = d.audit.as_ref().unwrap();
        a.jti.clone().or(a.id.clone()).unwrap()
    }

    fn ids_in(call: &Call) -> Vec<String> {
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn last_call(world: &World) -> Call {
        world.calls().last().cloned().expect("a call")
    }

    #[test]
    fn records_reach_the_ledger_in_order_with_the_ids_the_clients_got() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "authority": "ledger.internal",
            "batchSize": 3, "flushMillis": 200, "gateway": "gw-1",
            "headers": {"authorization": "Bearer ingest-secret"}}));
        let mut a = gw(&world, 1, &cfg);
        let (issued, rec) = a.request(Some("alice"));
        assert_eq!((issued.status, rec), (200, Recorded::Queued), "{issued:?}");
        let token: Value = serde_json::from_str(&issued.body).unwrap();
        let (refused, _) = a.request(None);
        assert_eq!(refused.status, 401);
        assert_eq!(a.backlog(), 2);
        assert_eq!(a.tick(), None);
        assert!(
            world.calls().is_empty(),
            "neither a full batch nor old enough"
        );
        world.advance_ms(250);
        assert_eq!(a.tick(), None);
        let call = last_call(&world);
        assert_eq!(
            (
                call.method.as_str(),
                call.cluster.as_str(),
                call.path.as_str(),
                call.authority.as_str()
            ),
            ("POST", "ledger", "/v1/ingest", "ledger.internal")
        );
        assert!(call
            .headers
            .contains(&("authorization".into(), "Bearer ingest-secret".into())));
        assert_eq!(ids_in(&call), vec![id_of(&issued), id_of(&refused)]);
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        let first = &body["records"][0];
        // The jti is the one inside the token the client received.
        let claims = token["token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(first["id"], claims["jti"]);
        assert_eq!(
            (&first["decision"], &first["license"], &first["gateway"]),
            (&json!("issued"), &json!("lic-7"), &json!("gw-1"))
        );
        assert_eq!(
            (&first["iat"], &first["exp"]),
            (&claims["iat"], &claims["exp"])
        );
        assert_eq!(first["kid"], json!(cfg.signing.kid));
        assert_eq!(body["records"][1]["decision"], "rejected");
        assert!(body["records"][1]["reason"].is_string());
        // A record arriving while the POST is out waits for the next one.
        let (third, _) = a.request(None);
        assert_eq!(a.answer(&call, "200"), Some(Shipped::Sent(2)));
        assert_eq!(a.backlog(), 1);
        world.advance_ms(250);
        a.tick();
        let call = last_call(&world);
        assert_eq!(ids_in(&call), vec![id_of(&third)]);
        assert_eq!(a.answer(&call, "201"), Some(Shipped::Sent(1)));
        assert_eq!(a.backlog(), 0);
        assert_eq!(world.calls().len(), 2);
    }

    /// A batch larger than a segment ([`crate::ledger::SEGMENT_RECORDS`]) is sent in one
    /// POST gathered from consecutive segments, in order; records appended while it is out
    /// (into the tail segment it carried part of) stay for the next one; nothing twice.
    #[test]
    fn a_batch_spans_segments_in_one_post_and_only_what_was_sent_is_removed() {
        use crate::ledger::SEGMENT_RECORDS;
        let world = World::new(T0);
        let batch = 2 * SEGMENT_RECORDS + 5;
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": batch,
            "flushMillis": 200, "bufferRecords": 4 * batch}));
        let mut a = gw(&world, 1, &cfg);
        assert_eq!(
            a.shipper.buffer().capacity(),
            u64::try_from((4 * batch).div_ceil(SEGMENT_RECORDS) * SEGMENT_RECORDS).unwrap()
        );
        let mut expected = Vec::new();
        for i in 0..batch - 1 {
            let (d, rec) = a.request(if i % 3 == 0 { None } else { Some("alice") });
            assert_eq!(rec, Recorded::Queued);
            expected.push(id_of(&d));
        }
        assert_eq!(a.backlog(), u64::try_from(batch - 1).unwrap());
        // Filled segment by segment: the tail is the third one (two full, one partial).
        let keys = registry_token_core::ledger::BufferKeys::new(
            registry_token_core::remote::SHARED_PREFIX,
            "ledger",
            &cfg.ledger.as_ref().unwrap().path,
            batch,
            SEGMENT_RECORDS,
        );
        let (meta, _) = crate::host::SharedData::get_shared(&a.host, &keys.meta).unwrap();
        let meta = registry_token_core::ledger::Meta::from_bytes(&meta.unwrap()).unwrap();
        assert_eq!((meta.head, meta.tail), (0, 2));
        assert_eq!(a.tick(), None);
        assert!(
            world.calls().is_empty(),
            "one record short of a batch, not old"
        );
        let (d, _) = a.request(Some("bob"));
        expected.push(id_of(&d));
        a.tick();
        let call = last_call(&world);
        assert_eq!(
            ids_in(&call),
            expected,
            "one POST, the whole batch, in order"
        );
        // Records arriving while it is out land in the tail segment it carried part of.
        let mut later = Vec::new();
        for _ in 0..3 {
            later.push(id_of(&a.request(Some("carol")).0));
        }
        assert_eq!(a.tick(), None);
        assert_eq!(world.calls().len(), 1, "one POST in flight at a time");
        assert_eq!(
            a.answer(&call, "200"),
            Some(Shipped::Sent(u64::try_from(batch).unwrap()))
        );
        assert_eq!(a.backlog(), 3);
        world.advance_ms(250);
        a.tick();
        let call = last_call(&world);
        assert_eq!(ids_in(&call), later);
        assert_eq!(a.answer(&call, "200"), Some(Shipped::Sent(3)));
        assert_eq!(a.backlog(), 0);
        // More than a batch waiting: full batches first, at the ledger's pace.
        let mut all = Vec::new();
        for _ in 0..batch + 7 {
            all.push(id_of(&a.request(Some("dave")).0));
        }
        a.tick();
        let call = last_call(&world);
        let first = ids_in(&call);
        assert!(
            first.len() <= batch && first.len() > batch - SEGMENT_RECORDS,
            "{} records",
            first.len()
        );
        a.answer(&call, "200");
        world.advance_ms(250);
        a.tick();
        let call = last_call(&world);
        let mut got = first;
        got.extend(ids_in(&call));
        a.answer(&call, "200");
        assert_eq!(got, all, "everything once, in order");
        assert_eq!(a.backlog(), 0);
    }

    /// The shared-data calls made since `from` whose key ends with `suffix`, as
    /// `get …`/`set …` lines.
    fn shared_calls_on(world: &World, from: usize, suffix: &str) -> Vec<String> {
        world.shared_calls.borrow()[from..]
            .iter()
            .filter(|c| c.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Appends read the buffer's bookkeeping only when the tail segment moves on (each
    /// shared-data read costs Envoy a call into the module), and an acknowledged batch of
    /// several segments moves the head in one write; every record still arrives once, in
    /// order.
    #[test]
    fn appends_read_the_bookkeeping_only_when_the_tail_moves_and_a_batch_moves_the_head_once() {
        let world = World::new(T0);
        // Segments of 4 records (batchSize 4), a POST of 4 records: 12 records fill 3.
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 4, "flushMillis": 200}));
        let mut a = gw(&world, 1, &cfg);
        let from = world.shared_calls.borrow().len();
        let mut expected = Vec::new();
        for _ in 0..12 {
            let (d, rec) = a.request(Some("alice"));
            assert_eq!(rec, Recorded::Queued);
            expected.push(id_of(&d));
        }
        let meta_reads = shared_calls_on(&world, from, "/meta")
            .into_iter()
            .filter(|c| c.starts_with("get "))
            .count();
        // The first append, and one per new segment (the 5th and 9th records).
        assert_eq!(
            meta_reads,
            3,
            "{:?}",
            world.shared_calls.borrow()[from..].to_vec()
        );
        let mut got = Vec::new();
        for _ in 0..3 {
            world.advance_ms(250);
            a.tick();
            let call = last_call(&world);
            let before = world.shared_calls.borrow().len();
            assert_eq!(a.answer(&call, "200"), Some(Shipped::Sent(4)));
            let meta_writes = shared_calls_on(&world, before, "/meta")
                .into_iter()
                .filter(|c| c.starts_with("set "))
                .count();
            assert!(meta_writes <= 1, "the head moves in one write at most");
            got.extend(ids_in(&call));
        }
        assert_eq!(got, expected, "everything once, in order");
        assert_eq!(a.backlog(), 0);
    }

    /// A VM whose tail hint is out of date (another VM sealed that segment, or its slot
    /// now holds a newer segment of the ring) finds the tail through the bookkeeping:
    /// nothing lands in a sealed or reused segment, nothing is lost or sent twice.
    #[test]
    fn an_out_of_date_tail_hint_is_corrected_by_the_slot_it_points_to() {
        let world = World::new(T0);
        // Segments of 2, at most 2 segments (3 slots): the ring wraps quickly.
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 2,
            "flushMillis": 200, "bufferRecords": 4}));
        let mut a = gw(&world, 1, &cfg);
        let mut b = gw(&world, 2, &cfg);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let ship = |gw: &mut Gw, got: &mut Vec<String>| {
            world.advance_ms(250);
            gw.tick();
            let call = last_call(&world);
            assert!(matches!(gw.answer(&call, "200"), Some(Shipped::Sent(_))));
            got.extend(ids_in(&call));
        };
        // a's hint: segment 0. b fills it, seals it and opens segment 1; segment 0 is
        // sent, emptied, and the head moves past it.
        expected.push(id_of(&a.request(Some("alice")).0));
        for _ in 0..2 {
            expected.push(id_of(&b.request(Some("bob")).0));
        }
        ship(&mut b, &mut got);
        assert_eq!(got.len(), 2);
        // a's hint points at that sealed, empty segment behind the head: its record goes
        // to segment 1, after b's (not into segment 0, where nobody would send it).
        expected.push(id_of(&a.request(Some("alice")).0));
        ship(&mut b, &mut got);
        // Now b alone moves the tail round the ring (3 records a round: each seals a
        // segment) until segment 4 holds slot 1, the slot of a's hint (segment 1).
        let keys = registry_token_core::ledger::BufferKeys::new(
            registry_token_core::remote::SHARED_PREFIX,
            "ledger",
            &cfg.ledger.as_ref().unwrap().path,
            2,
            2,
        );
        let meta = || {
            let (m, _) = crate::host::SharedData::get_shared(&a.host, &keys.meta).unwrap();
            registry_token_core::ledger::Meta::from_bytes(&m.unwrap()).unwrap()
        };
        while meta().tail < 4 {
            for _ in 0..3 {
                expected.push(id_of(&b.request(Some("bob")).0));
            }
            while b.backlog() > 0 {
                ship(&mut b, &mut got);
            }
        }
        expected.push(id_of(&a.request(Some("alice")).0));
        ship(&mut a, &mut got);
        assert_eq!(got, expected, "everything once, in order");
        assert_eq!(a.backlog(), 0);
    }

    #[test]
    fn failures_keep_the_batch_and_retry_it_with_backoff_nothing_lost_nothing_twice() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 2,
            "initialBackoffMillis": 100, "maxBackoffMillis": 1000}));
        let mut a = gw(&world, 1, &cfg);
        let mut expected = Vec::new();
        for i in 0..7 {
            let (d, rec) = a.request(if i % 2 == 0 { Some("alice") } else { None });
            assert_eq!(rec, Recorded::Queued);
            expected.push(id_of(&d));
        }
        let mut delivered: Vec<String> = Vec::new();
        let mut failures = 0;
        // 5xx, a timeout (no status), 401 (wrong secret), a dispatch failure: all retried.
        let mut script = vec!["503", "", "401", "500"].into_iter();
        for _ in 0..200 {
            world.advance_ms(50);
            if world.calls().len() == 4 && failures == 4 {
                world.dispatch_fails.set(true);
            }
            let before = world.calls().len();
            match a.tick() {
                Some(Shipped::Failed) => {
                    failures += 1;
                    world.dispatch_fails.set(false);
                    continue;
                }
                Some(other) => panic!("{other:?}"),
                None => {}
            }
            if world.calls().len() == before {
                continue;
            }
            let call = last_call(&world);
            match script.next() {
                Some(status) => {
                    assert_eq!(a.answer(&call, status), Some(Shipped::Failed));
                    failures += 1;
                    // The backoff holds every VM back: nothing is sent at once.
                    assert_eq!(a.tick(), None);
                    assert_eq!(world.calls().len(), before + 1);
                }
                None => {
                    let n = ids_in(&call).len() as u64;
                    assert_eq!(a.answer(&call, "200"), Some(Shipped::Sent(n)));
                    delivered.extend(ids_in(&call));
                }
            }
            if delivered.len() == expected.len() {
                break;
            }
        }
        assert_eq!(failures, 5);
        assert_eq!(delivered, expected, "every record once, in order");
        assert_eq!(a.backlog(), 0);
        // The same batch was re-sent after each failure, not a different one.
        let calls = world.calls();
        assert_eq!(ids_in(&calls[0]), ids_in(&calls[1]));
        assert_eq!(ids_in(&calls[0]), ids_in(&calls[4]));
    }

    #[test]
    fn a_batch_the_ledger_refuses_as_invalid_is_dropped_not_retried_forever() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 1}));
        let mut a = gw(&world, 1, &cfg);
        let (_, _) = a.request(None);
        let (second, _) = a.request(None);
        a.tick();
        let call = last_call(&world);
        assert_eq!(a.answer(&call, "400"), Some(Shipped::Rejected(1)));
        a.tick();
        assert_eq!(ids_in(&last_call(&world)), vec![id_of(&second)]);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_then_takes_records_again() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 2, "bufferRecords": 4}));
        let mut a = gw(&world, 1, &cfg);
        let b = gw(&world, 2, &cfg);
        for vm in [&a, &b, &a, &b] {
            assert_eq!(vm.request(Some("alice")).1, Recorded::Queued);
        }
        let (d, rec) = b.request(Some("alice"));
        assert_eq!(rec, Recorded::Dropped);
        assert_eq!(d.status, 200, "drop: the request is answered as decided");
        assert_eq!(a.backlog(), 4);
        a.tick();
        let call = last_call(&world);
        a.answer(&call, "200");
        assert_eq!(a.backlog(), 2);
        assert_eq!(b.request(None).1, Recorded::Queued);
        assert_eq!(b.request(None).1, Recorded::Queued);
        assert_eq!(b.request(None).1, Recorded::Dropped);
    }

    #[test]
    fn refuse_answers_503_ledger_backlog_full_until_there_is_room() {
        let world = World::new(T0);
        let cfg = ledger_config(
            json!({"cluster": "ledger", "batchSize": 1, "bufferRecords": 2,
            "onBacklogFull": "refuse"}),
        );
        let mut a = gw(&world, 1, &cfg);
        let first = a.request(Some("alice")).0;
        assert_eq!(a.request(Some("alice")).1, Recorded::Queued);
        let (d, rec) = a.request(Some("alice"));
        assert_eq!(rec, Recorded::Refused);
        refused_with(&d, Reason::LedgerBacklogFull, 503);
        assert!(!d.body.contains("access_token") && !d.body.contains("\"token\""));
        assert!(retry_after(&d).is_some());
        let audit = d.audit.as_ref().unwrap();
        assert!(audit.jti.is_none() && audit.id.is_some() && audit.granted.is_empty());
        // A refusal cannot be recorded either: refused the same way.
        assert_eq!(a.request(None).1, Recorded::Refused);
        a.tick();
        let call = last_call(&world);
        assert_eq!(ids_in(&call), vec![id_of(&first)]);
        // Still full while the POST is out.
        assert_eq!(a.request(Some("alice")).1, Recorded::Refused);
        a.answer(&call, "200");
        let (d, rec) = a.request(Some("alice"));
        assert_eq!((d.status, rec), (200, Recorded::Queued));
    }

    #[test]
    fn one_vm_at_a_time_flushes_and_a_vanished_holder_s_lease_expires() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 1,
            "timeoutMillis": 1000}));
        let mut a = gw(&world, 1, &cfg);
        let mut b = gw(&world, 2, &cfg);
        let ids: Vec<String> = (0..3).map(|_| id_of(&a.request(None).0)).collect();
        a.tick();
        b.tick();
        assert_eq!(world.calls().len(), 1, "one POST for the process");
        assert!(a.shipper.busy() && !b.shipper.busy());
        let call = last_call(&world);
        assert_eq!(call.vm, 1);
        a.answer(&call, "200");
        b.tick();
        let call = last_call(&world);
        assert_eq!((call.vm, ids_in(&call)), (2, vec![ids[1].clone()]));
        // b's VM disappears with its POST out: its lease expires, a re-sends the batch
        // (at-least-once: the ledger's insert is idempotent on the id).
        drop(b);
        a.tick();
        assert_eq!(world.calls().len(), 2);
        world.advance_ms(3100);
        a.tick();
        let call = last_call(&world);
        assert_eq!((call.vm, ids_in(&call)), (1, vec![ids[1].clone()]));
        a.answer(&call, "200");
        a.tick();
        let call = last_call(&world);
        assert_eq!(ids_in(&call), vec![ids[2].clone()]);
    }

    #[test]
    fn contended_appends_keep_every_record() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 2}));
        let cfg2 = cfg.ledger.clone().unwrap();
        let a = gw(&world, 1, &cfg);
        let other = world.vm(2);
        let buffer = LedgerBuffer::new(&other, &cfg2);
        // Before each of a's conditional writes, another worker appends first (once per
        // write, up to 5 times).
        let n = Rc::new(std::cell::Cell::new(0));
        let n2 = n.clone();
        world.before_cas_write(move |_, key| {
            if key.contains("/segment/") && n2.get() < 5 {
                n2.set(n2.get() + 1);
                let record = format!("{{\"id\":\"other-{}\"}}", n2.get());
                assert_eq!(buffer.append(&other, &record, 0), Append::Queued);
            }
        });
        let mut mine = Vec::new();
        for _ in 0..3 {
            mine.push(id_of(&a.request(None).0));
        }
        world.clear_hook();
        assert!(world.cas_mismatches.get() > 0);
        let mut stored = Vec::new();
        let mut a = a;
        for _ in 0..10 {
            a.tick();
            if let Some(call) = world.calls().last().cloned() {
                if a.answer(&call, "200").is_some() {
                    stored.extend(ids_in(&call));
                }
            }
        }
        for id in &mine {
            assert_eq!(stored.iter().filter(|s| *s == id).count(), 1, "{id}");
        }
        assert_eq!(stored.len(), 3 + n.get());
    }

    #[test]
    fn a_segment_is_sealed_before_the_next_opens_and_only_then_stepped_over() {
        use registry_token_core::ledger::Segment;
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "batchSize": 2}));
        let mut a = gw(&world, 1, &cfg);
        for _ in 0..3 {
            assert_eq!(a.request(None).1, Recorded::Queued);
        }
        let segment = |slot: u64| {
            let key = world
                .keys()
                .into_iter()
                .find(|k| k.ends_with(&format!("/segment/{slot}")))
                .unwrap();
            Segment::from_bytes(&world.get(&key).unwrap()).unwrap()
        };
        let (s0, s1) = (segment(0), segment(1));
        assert!(s0.sealed && s0.records.len() == 2, "{s0:?}");
        assert!(!s1.sealed && s1.records.len() == 1, "{s1:?}");
        a.tick();
        let call = last_call(&world);
        assert_eq!(a.answer(&call, "200"), Some(Shipped::Sent(2)));
        assert!(segment(0).records.is_empty() && segment(0).sealed);
        // The head moved on to segment 1: its record goes next, once old enough.
        world.advance_ms(1500);
        a.tick();
        assert_eq!(ids_in(&last_call(&world)).len(), 1);
        assert_eq!(a.backlog(), 1);
    }

    #[test]
    fn request_ids_are_unique_across_vms() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger", "bufferRecords": 1000}));
        let a = gw(&world, 1, &cfg);
        let b = gw(&world, 2, &cfg);
        let mut ids = std::collections::HashSet::new();
        for _ in 0..200 {
            assert!(ids.insert(id_of(&a.request(None).0)));
            assert!(ids.insert(id_of(&b.request(None).0)));
        }
    }

    #[test]
    fn an_append_that_cannot_write_is_treated_as_full() {
        let world = World::new(T0);
        let cfg = ledger_config(json!({"cluster": "ledger"}));
        let buffer = LedgerBuffer::new(&world.vm(1), cfg.ledger.as_ref().unwrap());
        // Bookkeeping destroyed (another module on the vm_id, say): no panic, Failed.
        for key in world.keys() {
            if key.ends_with("/meta") {
                world.set(&key, b"garbage", None).unwrap();
            }
        }
        assert!(matches!(
            buffer.append(&world.vm(1), "{}", 1),
            Append::Failed(_)
        ));
        assert_eq!(buffer.backlog(&world.vm(1)), 0);
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
}
