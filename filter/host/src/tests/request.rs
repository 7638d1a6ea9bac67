//! The request path's host-independent pieces: the tick period, the token request's head,
//! the body bound, the reply's headers and the log gate.

use super::*;
use crate::request::{self, LogGate, TokenRequestHead, BODY_LIMIT};
use registry_token_core::wire::form::MAX_FORM_BYTES;
use std::cell::Cell;
use std::time::Duration;

#[test]
fn the_tick_follows_flush_millis_else_the_fetches() {
    let with_flush =
        |ms: u64| config(|v| v["ledger"] = json!({"cluster": "ledger", "flushMillis": ms}));
    let period = |ms| request::tick_period(&with_flush(ms), false);
    assert_eq!(period(1000), Some(Duration::from_millis(500)));
    assert_eq!(period(50), Some(Duration::from_millis(25)));
    assert_eq!(period(60_000), Some(Duration::from_secs(1)));
    let plain = config(|_| {});
    assert_eq!(
        request::tick_period(&plain, true),
        Some(Duration::from_secs(1))
    );
    assert_eq!(request::tick_period(&plain, false), None);
}

#[test]
fn the_head_takes_the_method_from_the_headers_and_a_post_waits_for_its_body() {
    let head = |method: Option<&str>| {
        let mut headers = vec![("accept".to_string(), "*/*".to_string())];
        if let Some(m) = method {
            headers.push((":method".to_string(), m.to_string()));
        }
        TokenRequestHead::new(7, "/token?service=x".to_string(), headers)
    };
    let post = head(Some("post"));
    assert_eq!(post.method, "post");
    assert_eq!((post.started, post.path.as_str()), (7, "/token?service=x"));
    assert_eq!(post.headers.len(), 2);
    assert!(post.waits_for_body(false));
    assert!(!post.waits_for_body(true));
    assert!(!head(Some("GET")).waits_for_body(false));
    let none = head(None);
    assert_eq!(none.method, "");
    assert!(!none.waits_for_body(false));
}

#[test]
fn a_body_is_read_at_its_end_or_one_byte_over_the_bound() {
    assert_eq!(BODY_LIMIT, MAX_FORM_BYTES + 1);
    assert!(request::body_ready(0, true));
    assert!(!request::body_ready(MAX_FORM_BYTES, false));
    assert!(request::body_ready(MAX_FORM_BYTES + 1, false));
    assert!(request::body_ready(MAX_FORM_BYTES * 4, false));
}

#[test]
fn paths_and_reply_headers() {
    assert_eq!(request::path_only("/token?service=a#f"), "/token");
    assert_eq!(request::path_only("/healthz#x?y"), "/healthz");
    assert_eq!(request::path_only(""), "");
    let decision = registry_token_core::handler::healthz();
    assert_eq!(
        request::reply_headers(&decision),
        [
            ("content-type", "application/json"),
            ("cache-control", "no-store")
        ],
        "every header of the decision, in its order"
    );
}

#[test]
fn the_log_gate_asks_the_host_at_most_once_a_second() {
    let gate = LogGate::default();
    let asked = Cell::new(0);
    let ask = |answer: bool| {
        let asked = &asked;
        move || {
            asked.set(asked.get() + 1);
            answer
        }
    };
    let t = 5 * LogGate::RECHECK_NS;
    assert!(!gate.info_enabled(t, ask(false)));
    assert!(!gate.info_enabled(t + LogGate::RECHECK_NS - 1, ask(true)));
    assert_eq!(asked.get(), 1);
    // A second on: asked again, and the new answer holds.
    assert!(gate.info_enabled(t + LogGate::RECHECK_NS, ask(true)));
    assert_eq!(asked.get(), 2);
    // A clock that went backwards asks again.
    assert!(!gate.info_enabled(t, ask(false)));
    assert_eq!(asked.get(), 3);
    // A first question at host time 0 still counts as asked.
    let zero = LogGate::default();
    assert!(zero.info_enabled(0, ask(true)));
    assert!(zero.info_enabled(1, ask(false)));
    assert_eq!(asked.get(), 4);
}
