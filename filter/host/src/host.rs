//! The host, behind small traits ([`SharedData`], [`HttpCalls`], [`Clock`]; [`Host`] is
//! all three) so that the fetch schedule, the ledger shipper and the replay cache run
//! natively against a fake host in tests; the glue crate's `EnvoyHost` is the real one.

use std::time::Duration;

/// Why a shared-data write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedError {
    /// The compare-and-swap value no longer matches: someone wrote in between.
    CasMismatch,
    /// Any other host failure.
    Host(String),
}

/// Envoy shared data: process-wide per `vm_id`, with compare-and-swap, no expiry.
pub trait SharedData {
    /// The value and its CAS (`None` for both when the key does not exist).
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), SharedError>;
    /// Writes `value`. With `cas` `None` or `Some(0)` the write is unconditional (Envoy
    /// semantics); otherwise it fails with [`SharedError::CasMismatch`] when the key's CAS
    /// differs.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError>;
}

/// Outgoing HTTP calls through a cluster.
pub trait HttpCalls {
    /// Dispatches a call (with `body`, when given); the token identifies the answer.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String>;
    /// While an answer is being delivered: its `:status` (empty when absent) and at most
    /// `limit` bytes of its body (`body_size` is what the host announced).
    fn call_response(&self, body_size: usize, limit: usize) -> (String, Vec<u8>);
}

/// The host's wall clock, which may fail.
pub trait Clock {
    /// Time since the Unix epoch.
    fn now(&self) -> Result<Duration, String>;

    /// Unix seconds.
    fn now_unix(&self) -> Result<u64, String> {
        self.now().map(|d| d.as_secs())
    }
}

/// Everything the fetch schedule and the replay cache need.
pub trait Host: SharedData + HttpCalls + Clock {}

impl<T: SharedData + HttpCalls + Clock> Host for T {}

/// The kind of a metric the host keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only ever incremented.
    Counter,
    /// Set to a value.
    Gauge,
    /// Samples of a distribution.
    Histogram,
}

/// The host's metrics (Envoy stats), for [`crate::metrics::Metrics`]. Writes cannot fail
/// visibly: a metric that cannot be moved is not worth refusing a request for.
pub trait Stats {
    /// Defines a metric (or finds the one of that name); its id.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, String>;
    /// Adds `delta` to a counter.
    fn increment_metric(&self, id: u32, delta: i64);
    /// Sets a gauge, or records a histogram sample.
    fn record_metric(&self, id: u32, value: u64);
    /// A metric's current value (0 when the host cannot say).
    fn get_metric(&self, id: u32) -> u64;
}
