//! What several suites share: the realm of the test configurations (the gateway's own
//! listener), the scopes they ask for most, one `/token` GET, and the `type` of an RFC 7807
//! problem body, and polling until something holds.

use std::time::{Duration, Instant};

use registry_token_e2e::gateway::{token_path, SERVICE};
use registry_token_e2e::{Envoy, Reply};

/// The realm of the test configurations: the gateway's own listener.
pub(crate) const REALM: &str = "http://127.0.0.1:{{LISTEN_PORT}}/token";

/// A pull of the public repository every plan may read.
pub(crate) const PULL: &str = "repository:stella-ops/public/base:pull";

/// Pull and push of a private repository: the enterprise plan only.
pub(crate) const PRIVATE_PUSH: &str = "repository:stella-ops/private/app:pull,push";

/// Counters of a request are bumped just after the reply is sent.
pub(crate) const COUNTER_WAIT: Duration = Duration::from_secs(5);

/// How long a log line or a counter may lag behind the reply.
pub(crate) const LAG: Duration = Duration::from_secs(5);

/// `GET /token` for `scopes` of [`SERVICE`], with `authorization` when given.
pub(crate) fn token(envoy: &Envoy, authorization: Option<&str>, scopes: &[&str]) -> Reply {
    let path = token_path(SERVICE, scopes);
    match authorization {
        Some(a) => envoy.get(&path, &[("authorization", a)]),
        None => envoy.get(&path, &[]),
    }
}

/// The `type` of an RFC 7807 problem body, or "" for a non-problem reply.
pub(crate) fn problem_type(reply: &Reply) -> String {
    reply
        .try_json()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Polls `f` every 250 ms until it holds or `limit` passes; how long it took (`None`: it
/// never held).
pub(crate) fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
