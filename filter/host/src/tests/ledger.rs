//! The issuance ledger against the fake host: the buffer's segments and bookkeeping, the
//! shipper's batches, leases and backoff, and `onBacklogFull`.

use super::*;
use crate::fake::Call;
use crate::ledger::{Append, LedgerBuffer, Shipped, Shipper};
use crate::state::Recorded;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};

pub(super) struct Authority {
    key: p256::SecretKey,
    pub(super) jwk: Value,
}

pub(super) fn authority() -> &'static Authority {
    static A: OnceLock<Authority> = OnceLock::new();
    A.get_or_init(|| {
        let key = p256::SecretKey::random(&mut rand_core::OsRng);
        let point = key.public_key().to_encoded_point(false);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "op", "alg": "ES256",
                         "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())});
        Authority { key, jwk }
    })
}

pub(super) fn optok(subject: &str, now: u64) -> String {
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

pub(super) fn ledger_config(ledger: Value) -> Config {
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
        let headers = bearer_headers(&bearer);
        let view = token_view(&headers);
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
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
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
