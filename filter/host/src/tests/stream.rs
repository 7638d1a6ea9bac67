//! The ends of a request the filter owns: every way a `/token` request can end (headers,
//! body, trailers, the body bound) is decided exactly once and nothing ever continues;
//! a form ended by trailers (HTTP/2 DATA then trailers, HTTP/1.1 chunked with
//! `enable_trailers`) is decided with the body gathered, counted and recorded.

use super::ledger::{ledger_config, optok};
use super::*;
use crate::metrics::Metrics;
use crate::request::{TokenRequestHead, BODY_LIMIT};
use crate::state::Recorded;
use crate::stream::{Step, StreamState};

const PATH: &str = "/token";
const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn head(method: &str) -> TokenRequestHead {
    let headers = vec![
        (":method".to_string(), method.to_string()),
        (FORM_TYPE.0.to_string(), FORM_TYPE.1.to_string()),
    ];
    TokenRequestHead::new(1, PATH.to_string(), headers)
}

/// One callback after the headers.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// A body chunk: what the host has buffered so far, and whether the stream ends.
    Body(usize, bool),
    Trailers,
}

/// Whether `event` ends a waiting request (or makes it decidable: the body bound).
fn ends(event: Event) -> bool {
    match event {
        Event::Body(size, eos) => eos || size >= BODY_LIMIT,
        Event::Trailers => true,
    }
}

fn feed(state: &mut StreamState, event: Event) -> Step {
    match event {
        Event::Body(size, eos) => state.on_body(size, eos),
        Event::Trailers => state.on_trailers(),
    }
}

/// Every sequence of up to `len` events over `alphabet`.
fn sequences(alphabet: &[Event], len: usize) -> Vec<Vec<Event>> {
    let mut all = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..len {
        let mut next = Vec::new();
        for seq in &last {
            for e in alphabet {
                let mut s: Vec<Event> = seq.clone();
                s.push(*e);
                next.push(s);
            }
        }
        all.extend(next.iter().cloned());
        last = next;
    }
    all
}

#[test]
fn a_token_request_is_answered_once_at_its_first_end_and_never_continues() {
    let alphabet = [
        Event::Body(0, false),
        Event::Body(10, false),
        Event::Body(10, true),
        Event::Body(BODY_LIMIT - 1, false),
        Event::Body(BODY_LIMIT, false),
        Event::Body(BODY_LIMIT * 3, false),
        Event::Trailers,
    ];
    let mut checked = 0;
    for (method, headers_end) in [
        ("POST", false),
        ("POST", true),
        ("GET", false),
        ("GET", true),
    ] {
        for seq in sequences(&alphabet, 4) {
            let mut state = StreamState::default();
            let first = state.on_token_headers(head(method), headers_end);
            let mut steps = vec![first];
            steps.extend(seq.iter().map(|e| feed(&mut state, *e)));
            let answers: Vec<usize> = steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Step::Answer { .. }))
                .map(|(i, _)| i)
                .collect();
            assert!(
                !steps.iter().any(|s| matches!(s, Step::Continue)),
                "{method} {headers_end} {seq:?}: a callback let /token through: {steps:?}"
            );
            // Where the request should be decided: the headers, unless a POST has more to
            // come; else its first ending event; else not yet (still waiting).
            let expected = if method == "GET" || headers_end {
                Some(0)
            } else {
                seq.iter().position(|e| ends(*e)).map(|i| i + 1)
            };
            assert_eq!(
                answers,
                expected.into_iter().collect::<Vec<_>>(),
                "{method} {headers_end} {seq:?}: {steps:?}"
            );
            match (&state, expected) {
                (StreamState::Replied, Some(_)) | (StreamState::Waiting(_), None) => {}
                other => panic!("{method} {headers_end} {seq:?}: left in {other:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * (1 + 7 + 49 + 343 + 2401));
}

#[test]
fn the_body_read_is_what_the_host_buffered_up_to_the_bound() {
    let body_of = |steps: &[Step]| match steps.last() {
        Some(Step::Answer { body, .. }) => *body,
        other => panic!("not an answer: {other:?}"),
    };
    let mut s = StreamState::default();
    let headers_only = s.on_token_headers(head("POST"), true);
    assert_eq!(body_of(&[headers_only]), None, "no body to read");
    let mut s = StreamState::default();
    assert!(matches!(
        s.on_token_headers(head("GET"), false),
        Step::Answer { body: None, .. }
    ));

    let mut s = StreamState::default();
    assert!(matches!(
        s.on_token_headers(head("POST"), false),
        Step::Pause
    ));
    assert!(matches!(s.on_body(40, false), Step::Pause));
    assert_eq!(body_of(&[s.on_body(90, true)]), Some(90));

    let mut s = StreamState::default();
    s.on_token_headers(head("POST"), false);
    assert_eq!(
        body_of(&[s.on_body(BODY_LIMIT * 2, false)]),
        Some(BODY_LIMIT),
        "one byte over the form's bound is enough for the 413"
    );

    // Trailers: the host's buffer, whatever it holds (none when no DATA came).
    let mut s = StreamState::default();
    s.on_token_headers(head("POST"), false);
    s.on_body(12, false);
    assert_eq!(body_of(&[s.on_trailers()]), Some(BODY_LIMIT));
    let mut s = StreamState::default();
    s.on_token_headers(head("POST"), false);
    assert_eq!(body_of(&[s.on_trailers()]), Some(BODY_LIMIT));
}

#[test]
fn other_requests_continue_and_local_replies_hold_the_rest() {
    let mut pass = StreamState::default();
    assert!(matches!(pass.on_body(10, false), Step::Continue));
    assert!(matches!(pass.on_body(10, true), Step::Continue));
    assert!(matches!(pass.on_trailers(), Step::Continue));

    let mut healthz = StreamState::default();
    healthz.on_local_reply();
    assert!(matches!(healthz.on_body(10, false), Step::Pause));
    assert!(matches!(healthz.on_body(10, true), Step::Pause));
    assert!(matches!(healthz.on_trailers(), Step::Pause));
}

/// One VM's stream context against the fake host: the host's body buffer, the state and
/// the counters, doing what the binding does with each [`Step`].
struct Stream<'a> {
    state: &'a State<FakeHost>,
    metrics: &'a Metrics<FakeHost>,
    stream: StreamState,
    buffered: Vec<u8>,
    answers: Vec<(Decision, Recorded)>,
}

impl<'a> Stream<'a> {
    fn new(state: &'a State<FakeHost>, metrics: &'a Metrics<FakeHost>) -> Stream<'a> {
        Stream {
            state,
            metrics,
            stream: StreamState::default(),
            buffered: Vec::new(),
            answers: Vec::new(),
        }
    }

    fn run(&mut self, step: Step) {
        let Step::Answer { head, body } = step else {
            assert!(matches!(step, Step::Pause), "{step:?}");
            return;
        };
        let body = body.map(|n| &self.buffered[..n.min(self.buffered.len())]);
        let view = RequestView {
            method: &head.method,
            path: &head.path,
            headers: &head.headers,
            peer_certificate: registry_token_core::handler::PeerCertificate::Known(None),
            body,
        };
        let (decision, recorded) = self.state.decide_recorded(&view);
        self.metrics.record(&decision.outcome);
        self.answers.push((decision, recorded));
    }

    fn headers(&mut self, end_of_stream: bool) {
        let step = self.stream.on_token_headers(head("POST"), end_of_stream);
        self.run(step);
    }

    fn data(&mut self, chunk: &[u8], end_of_stream: bool) {
        self.buffered.extend_from_slice(chunk);
        let step = self.stream.on_body(self.buffered.len(), end_of_stream);
        self.run(step);
    }

    fn trailers(&mut self) {
        let step = self.stream.on_trailers();
        self.run(step);
    }

    fn answer(&self) -> &(Decision, Recorded) {
        assert_eq!(self.answers.len(), 1, "answered once: {:?}", self.answers);
        &self.answers[0]
    }
}

#[test]
fn a_form_ended_by_trailers_is_decided_counted_and_recorded() {
    let world = World::new(T0);
    let cfg = ledger_config(json!({"cluster": "ledger", "flushMillis": 200}));
    let host = world.vm(0);
    let state = State::with_replay_capacity(host.clone(), cfg, Box::new(RustCrypto), 0);
    let metrics = Metrics::new(host);
    let form = format!(
        "grant_type=password&username=u&password={}&service=registry.example\
         &scope=repository%3Astella-ops%2Fpublic%2Fbase%3Apull",
        optok("alice", T0)
    );

    // The form in two DATA frames, then the trailers (no end of stream on the data).
    let mut s = Stream::new(&state, &metrics);
    s.headers(false);
    let (first, second) = form.as_bytes().split_at(form.len() / 2);
    s.data(first, false);
    s.data(second, false);
    assert!(s.answers.is_empty(), "waits for the end of the request");
    s.trailers();
    let (issued, recorded) = s.answer();
    assert_eq!(issued.status, 200, "{issued:?}");
    let reply: Value = serde_json::from_str(&issued.body).unwrap();
    assert!(reply["access_token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(*recorded, Recorded::Queued, "the ledger has its record");
    assert_eq!(
        world.metric("registry_token_issued_total.grant.password"),
        Some(1)
    );

    // A garbage form ended by trailers: the core's refusal, counted and recorded.
    let mut s = Stream::new(&state, &metrics);
    s.headers(false);
    s.data(b"grant_type=%zz&&=", false);
    s.trailers();
    let (refused, recorded) = s.answer();
    refused_with(refused, Reason::MalformedRequest, 400);
    assert_eq!(*recorded, Recorded::Queued);
    let malformed = "registry_token_rejected_total.reason.malformed_request";
    assert_eq!(world.metric(malformed), Some(1));

    // Trailers right after the headers (no DATA): an empty form, refused.
    let mut s = Stream::new(&state, &metrics);
    s.headers(false);
    s.trailers();
    refused_with(&s.answer().0, Reason::MissingGrantParameter, 400);

    // Later callbacks of an answered request are held and decide nothing more.
    s.data(b"grant_type=password", true);
    s.trailers();
    assert_eq!(s.answers.len(), 1);
    assert_eq!(
        world.metric("registry_token_issued_total.grant.password"),
        Some(1)
    );
}
