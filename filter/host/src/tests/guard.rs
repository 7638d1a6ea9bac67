//! The guard against the fake host: a registry token from this VM's own `/token`, then
//! the registry's route — a pass, refusals audited into the ledger's buffer and shipped,
//! the immutable tag's `HEAD` dispatched through `guard.registryCluster` and its answer
//! decided, the clock failing closed, and `GuardStream` across the request's ends.

use super::ledger::optok;
use super::*;
use crate::guard::{GuardAction, GuardStream};
use crate::ledger::Shipper;
use crate::state::Recorded;
use registry_token_core::handler::guard::{GuardStep, GuardView, HeadAnswer};

const REPO: &str = "stella-ops/public/base";

fn guard_config() -> Config {
    // The guard section and a rule with tags, through the raw form like any other.
    let mut v = base_config();
    v["authority"] = json!({"issuer": ISSUER, "audiences": ["registry-token"],
        "jwks": {"keys": [super::ledger::authority().jwk.clone()]}, "requireSenderConstraint": false});
    v["ledger"] = json!({"cluster": "ledger", "flushMillis": 50});
    v["plans"] = json!([{"name": "community", "repositories": [
        {"pattern": "stella-ops/public/*", "actions": ["pull", "push"], "tags": {"immutable": ["v*"]}}
    ]}]);
    v["guard"] = json!({"registryCluster": "registry", "timeoutMillis": 2000});
    Config::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn registry_token(state: &State<FakeHost>, now: u64) -> String {
    let headers = vec![(
        "authorization".to_string(),
        format!("Bearer {}", optok("alice", now)),
    )];
    let view = RequestView {
        method: "GET",
        path: "/token?service=registry.example&scope=repository:stella-ops/public/base:pull,push",
        headers: &headers,
        peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
        body: None,
    };
    let d = state.decide(&view);
    assert_eq!(d.status, 200, "{}", d.body);
    serde_json::from_str::<Value>(&d.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn view<'a>(method: &'a str, path: &'a str, auth: &'a [&'a str]) -> GuardView<'a> {
    GuardView {
        method,
        path,
        authorization: auth,
    }
}

#[test]
fn a_pass_a_refusal_shipped_to_the_ledger_and_a_clock_that_fails_closed() {
    let world = World::new(T0);
    let cfg = guard_config();
    let host = world.vm(0);
    let state = State::with_replay_capacity(host.clone(), cfg.clone(), Box::new(RustCrypto), 0);
    let token = registry_token(&state, T0);
    let auth = format!("Bearer {token}");
    let path = format!("/v2/{REPO}/manifests/latest");
    let (step, recorded) = state.guard(&view("GET", &path, &[&auth]));
    assert!(matches!(step, GuardStep::Pass(_)), "{step:?}");
    assert_eq!(
        recorded,
        Recorded::NotConfigured,
        "a pass is not a ledger record"
    );
    // A forged token: refused, recorded with an id, shipped with its reason.
    let forged = format!("Bearer {}x", &token[..token.len() - 1]);
    let (step, recorded) = state.guard(&view("GET", &path, &[&forged]));
    let GuardStep::Refuse(d) = step else {
        panic!("{step:?}")
    };
    assert_eq!((d.status, recorded), (401, Recorded::Queued));
    let id = d.audit.as_ref().and_then(|a| a.id.clone()).unwrap();
    let mut shipper = Shipper::new(
        state.ledger_buffer().unwrap().clone(),
        cfg.ledger.as_ref().unwrap(),
    );
    world.advance_ms(100);
    shipper.tick(&host);
    let call = world.calls().last().cloned().expect("the ledger POST");
    let records: Value = serde_json::from_slice(&call.body).unwrap();
    let shipped = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(id))
        .cloned()
        .expect("the refusal's record");
    assert_eq!(shipped["reason"], "guard_invalid_token");
    assert_eq!(
        shipped["requested"],
        json!([format!("repository:{REPO}:pull")])
    );
    // No clock: nothing is decided, everything refused.
    world.fail_clock();
    let (step, _) = state.guard(&view("GET", &path, &[&auth]));
    let GuardStep::Refuse(d) = step else {
        panic!("{step:?}")
    };
    assert_eq!(d.outcome, Outcome::Rejected(Reason::ClockUnavailable));
}

#[test]
fn an_immutable_tag_asks_the_registry_through_its_cluster_then_decides() {
    let world = World::new(T0);
    let cfg = guard_config();
    let host = world.vm(0);
    let state = State::with_replay_capacity(host.clone(), cfg, Box::new(RustCrypto), 0);
    let token = registry_token(&state, T0);
    let auth = format!("Bearer {token}");
    let path = format!("/v2/{REPO}/manifests/v1");
    let auths = [auth.as_str()];
    let v = view("PUT", &path, &auths);
    let (step, _) = state.guard(&v);
    let mut stream = GuardStream::default();
    assert!(matches!(stream.on_headers(step, false), GuardAction::Pause));
    assert!(matches!(
        stream.on_request_body(100, false),
        GuardAction::Pause
    ));
    assert!(matches!(
        stream.on_request_body(200, true),
        GuardAction::ReadManifest(200)
    ));
    let (check, manifest) = stream
        .on_manifest(Some(b"{\"schemaVersion\":2}".to_vec()))
        .unwrap();
    let manifest = manifest.unwrap();
    let call = state
        .dispatch_head(&check, "registry.example:5000")
        .unwrap();
    let sent = world.calls().last().cloned().unwrap();
    assert_eq!(
        (
            sent.cluster.as_str(),
            sent.method.as_str(),
            sent.path.as_str(),
            sent.authority.as_str()
        ),
        (
            "registry",
            "HEAD",
            format!("/v2/{REPO}/manifests/v1").as_str(),
            "registry.example:5000"
        )
    );
    assert!(sent
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && *v == auth));
    stream.head_sent(check, manifest, call);
    assert!(
        stream.take_head(call + 1).is_none(),
        "another call's answer is not this one"
    );
    let (check, manifest) = stream.take_head(call).unwrap();
    // The tag exists with another manifest: refused and recorded.
    let other = HeadAnswer {
        status: Some(200),
        digest: Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    };
    let (result, recorded) = state.guard_immutable(&check, Some(&manifest), other, &v);
    let d = result.unwrap_err();
    assert_eq!(
        (d.status, d.outcome.clone(), recorded),
        (
            403,
            Outcome::Rejected(Reason::ImmutableTag),
            Recorded::Queued
        )
    );
    // A new tag passes with the identity headers.
    let new = HeadAnswer {
        status: Some(404),
        digest: None,
    };
    let (result, _) = state.guard_immutable(&check, Some(&manifest), new, &v);
    assert!(result
        .unwrap()
        .set
        .iter()
        .any(|(k, v)| *k == "x-registry-subject" && v == "alice"));
    // Too large: refused without asking.
    let mut s = GuardStream::default();
    let (step, _) = state.guard(&v);
    s.on_headers(step, false);
    assert!(matches!(
        s.on_request_body(5 * 1024 * 1024, false),
        GuardAction::ReadManifest(usize::MAX)
    ));
    let (check, none) = s.on_manifest(None).unwrap();
    assert!(none.is_none());
    let (result, _) = state.guard_immutable(
        &check,
        None,
        HeadAnswer {
            status: None,
            digest: None,
        },
        &v,
    );
    assert_eq!(
        result.unwrap_err().outcome,
        Outcome::Rejected(Reason::ManifestTooLarge)
    );
}
