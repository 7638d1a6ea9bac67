//! [`Envoy`]: the kit's Envoy process ([`EnvoyProcess`]: start, readiness, log, stop) with
//! what the suites ask of it — requests to its listener as [`Reply`]s, and its counters,
//! panicking with a readable message when something is off.

use std::ops::{Deref, DerefMut};
use std::thread;
use std::time::{Duration, Instant};

use registry_token_testkit::http::regex_escape;
use registry_token_testkit::{EnvoyOptions, EnvoyProcess};

use crate::http::{get, percent_encode, request, Reply};
use crate::prom::{issued_stat, GRANTS};
use crate::tail;

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL after
/// [`crate::STOP_GRACE`]); when dropped during a panic it prints the log tail to stderr.
/// The process-level methods (ports, URLs, log, `stop`, `pid`, …) are the kit's
/// [`EnvoyProcess`]'s, reached through `Deref`.
pub struct Envoy {
    process: EnvoyProcess,
}

impl Deref for Envoy {
    type Target = EnvoyProcess;
    fn deref(&self) -> &EnvoyProcess {
        &self.process
    }
}

impl DerefMut for Envoy {
    fn deref_mut(&mut self) -> &mut EnvoyProcess {
        &mut self.process
    }
}

impl Envoy {
    /// Renders `config_yaml`, starts Envoy and waits (up to [`crate::READY_TIMEOUT`])
    /// until admin `GET /ready` answers 200. If Envoy exits or never gets ready, the error
    /// carries the tail of its log.
    pub fn start(config_yaml: &str, opts: EnvoyOptions) -> Result<Envoy, String> {
        EnvoyProcess::start(config_yaml, &opts).map(|process| Envoy { process })
    }

    /// Starts Envoy with a config it must refuse and waits for it to exit (up to
    /// [`crate::FAILURE_TIMEOUT`]). Returns its log (the log file followed by anything
    /// written to stdout/stderr). Errors if Envoy becomes ready or does not exit in time.
    pub fn start_expect_failure(config_yaml: &str, opts: EnvoyOptions) -> Result<String, String> {
        EnvoyProcess::start_expect_failure(config_yaml, &opts)
    }

    /// `GET <base_url><path>` on the listener.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        get(&format!("{}{path}", self.base_url()), headers)
    }

    /// Any request on the listener.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        request(method, &format!("{}{path}", self.base_url()), headers, body)
    }

    /// `GET <admin_url><path>`.
    pub fn admin_get(&self, path: &str) -> Reply {
        get(&format!("{}{path}", self.admin_url()), &[])
    }

    /// Admin `/stats/prometheus`.
    pub fn stats_prometheus(&self) -> String {
        let reply = self.admin_get("/stats/prometheus");
        assert_eq!(
            reply.status, 200,
            "admin /stats/prometheus failed: {}",
            reply.body
        );
        reply.body
    }

    /// Value of the counter or gauge named exactly `name`, or None if no such stat exists.
    /// Reads admin `/stats?format=json&filter=^<name>$`.
    pub fn try_counter(&self, name: &str) -> Option<u64> {
        self.process.stat(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Value of the counter or gauge named exactly `name`.
    ///
    /// # Panics
    /// When there is no such stat (the message lists stats with a similar name).
    pub fn counter(&self, name: &str) -> u64 {
        if let Some(v) = self.try_counter(name) {
            return v;
        }
        let last = name.rsplit('.').next().unwrap_or(name);
        let similar = self.admin_get(&format!(
            "/stats?filter={}",
            percent_encode(&regex_escape(last))
        ));
        panic!(
            "no stat named {name:?} in Envoy; stats ending like it:\n{}",
            tail(&similar.body, 40)
        );
    }

    /// Tokens issued by `grant` (`get`, `password`, `refresh_token`): the counter
    /// `wasmcustom.registry_token_issued_total.grant.<grant>` (0 if it does not exist).
    pub fn issued_by(&self, grant: &str) -> u64 {
        self.try_counter(&issued_stat(grant)).unwrap_or(0)
    }

    /// Tokens issued, every grant together.
    pub fn issued(&self) -> u64 {
        GRANTS.iter().map(|g| self.issued_by(g)).sum()
    }

    /// Polls [`Envoy::issued`] until it is at least `min` (or `timeout` passes) and returns
    /// the last value read.
    pub fn wait_issued(&self, min: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.issued();
            if v >= min || Instant::now() >= deadline {
                return v;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls [`Envoy::try_counter`] until it is at least `min` (or `timeout` passes) and
    /// returns the last value read (0 if the stat never appeared). Counters of a request
    /// can be bumped just after the client got the response.
    pub fn wait_counter(&self, name: &str, min: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.try_counter(name).unwrap_or(0);
            if v >= min || Instant::now() >= deadline {
                return v;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}
