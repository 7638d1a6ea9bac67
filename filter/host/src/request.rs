//! The host-independent pieces of the glue's contexts: the root context's tick period,
//! the `/token` request's head (`:method` taken from the header list fetched anyway) and
//! when it waits for a body, the local reply's header list, and the gate that asks the
//! host at most once a second whether it shows info lines.

use std::cell::Cell;
use std::time::Duration;

use registry_token_core::config::Config;
use registry_token_core::handler::Decision;
use registry_token_core::wire::form::MAX_FORM_BYTES;

/// How often the root context ticks: often enough that a ledger record waits about
/// `ledger.flushMillis`, not a second more (half of it, within 25 ms–1 s); else once a
/// second when remote documents are fetched (`fetches`); else never.
pub fn tick_period(config: &Config, fetches: bool) -> Option<Duration> {
    match &config.ledger {
        Some(l) => Some(Duration::from_millis((l.flush_millis / 2).clamp(25, 1000))),
        None => fetches.then_some(Duration::from_secs(1)),
    }
}

/// The path without its query or fragment, as the router takes it.
pub fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or("")
}

/// What a token request's headers said, kept while its body arrives.
#[derive(Debug, Clone)]
pub struct TokenRequestHead {
    /// Host time (ns) when the headers arrived, for the decision histogram.
    pub started: u64,
    /// `:method` (empty when absent).
    pub method: String,
    /// `:path`, with its query.
    pub path: String,
    /// Every request header, names lowercase.
    pub headers: Vec<(String, String)>,
}

impl TokenRequestHead {
    /// The head of a request whose headers are `headers` (`:method` is among them).
    pub fn new(started: u64, path: String, headers: Vec<(String, String)>) -> TokenRequestHead {
        let method = headers
            .iter()
            .find(|(k, _)| k == ":method")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        TokenRequestHead {
            started,
            method,
            path,
            headers,
        }
    }

    /// Whether the request waits for its body: a `POST` carries the OAuth2 form in it
    /// (bounded by [`BODY_LIMIT`]).
    pub fn waits_for_body(&self, end_of_stream: bool) -> bool {
        self.method.eq_ignore_ascii_case("POST") && !end_of_stream
    }
}

/// The most body bytes read: one byte over the form's bound is enough for the core to
/// answer 413, no need to wait for (or hold) more.
pub const BODY_LIMIT: usize = MAX_FORM_BYTES + 1;

/// Whether a waiting body is complete enough to decide on: the stream ended, or it
/// reached [`BODY_LIMIT`].
pub fn body_ready(body_size: usize, end_of_stream: bool) -> bool {
    end_of_stream || body_size >= BODY_LIMIT
}

/// The local reply's headers, borrowed from the decision.
pub fn reply_headers(decision: &Decision) -> Vec<(&str, &str)> {
    decision
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Whether the host logs this module's info lines, asked at most once a second (Envoy's
/// level can change at runtime through its admin `/logging`): at the default `warn` the
/// audit line is not handed to a host that would drop it (a hostcall per request saved).
#[derive(Debug, Default)]
pub struct LogGate {
    /// Host time (ns) of the last question; 0: never asked.
    asked_ns: Cell<u64>,
    info: Cell<bool>,
}

impl LogGate {
    /// How long an answer holds, ns.
    pub const RECHECK_NS: u64 = 1_000_000_000;

    /// Whether info lines are shown at `now_ns`; `ask` asks the host (a host that cannot
    /// say should answer true: the line is then handed over, as before the gate existed).
    pub fn info_enabled(&self, now_ns: u64, ask: impl FnOnce() -> bool) -> bool {
        let asked = self.asked_ns.get();
        if asked == 0 || now_ns.saturating_sub(asked) >= Self::RECHECK_NS || now_ns < asked {
            self.info.set(ask());
            self.asked_ns.set(now_ns.max(1));
        }
        self.info.get()
    }
}
