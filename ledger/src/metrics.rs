//! Prometheus text exposition, hand-formatted (a handful of series).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// The ledger's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    ingested: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    lag_seconds: AtomicI64,
    has_lag: AtomicBool,
    http: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Counts a stored batch: `accepted` new rows, `duplicates` skipped, and the lag of its
    /// newest record (`now - max(time)`, seconds).
    pub fn batch(&self, accepted: u64, duplicates: u64, lag_seconds: Option<i64>) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.ingested.fetch_add(accepted, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        if let Some(lag) = lag_seconds {
            self.lag_seconds.store(lag, Ordering::Relaxed);
            self.has_lag.store(true, Ordering::Relaxed);
        }
    }

    /// Counts one HTTP answer on a route template.
    pub fn http(&self, route: &str, status: u16) {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    /// The exposition text; `active_revocations` is read from the database by the caller,
    /// `max_revocations` is `--max-revocations`.
    pub fn render(&self, active_revocations: Option<i64>, max_revocations: usize) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "ledger_ingested_records_total",
            "Records stored from gateway batches.",
            self.ingested.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ledger_ingest_duplicates_total",
            "Records skipped because their id was already stored.",
            self.duplicates.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ledger_ingest_batches_total",
            "Gateway batches stored.",
            self.batches.load(Ordering::Relaxed),
        );
        if self.has_lag.load(Ordering::Relaxed) {
            let _ = writeln!(
                out,
                "# HELP ledger_ingest_lag_seconds Now minus the newest record time of the last batch.\n\
                 # TYPE ledger_ingest_lag_seconds gauge\nledger_ingest_lag_seconds {}",
                self.lag_seconds.load(Ordering::Relaxed)
            );
        }
        if let Some(n) = active_revocations {
            let _ = writeln!(
                out,
                "# HELP ledger_active_revocations Revocations in force.\n\
                 # TYPE ledger_active_revocations gauge\nledger_active_revocations {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ledger_max_revocations Most active revocations (--max-revocations).\n\
             # TYPE ledger_max_revocations gauge\nledger_max_revocations {max_revocations}"
        );
        let _ = writeln!(
            out,
            "# HELP ledger_http_requests_total HTTP answers by route and status.\n\
             # TYPE ledger_http_requests_total counter"
        );
        let map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, status), n) in map.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "ledger_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let m = Metrics::default();
        m.batch(3, 1, Some(2));
        m.http("/v1/ingest", 200);
        m.http("/v1/ingest", 200);
        let text = m.render(Some(4), 100_000);
        assert!(text.contains("ledger_ingested_records_total 3\n"));
        assert!(text.contains("ledger_ingest_duplicates_total 1\n"));
        assert!(text.contains("ledger_ingest_lag_seconds 2\n"));
        assert!(text.contains("ledger_active_revocations 4\n"));
        assert!(text.contains("ledger_max_revocations 100000\n"));
        assert!(
            text.contains("ledger_http_requests_total{route=\"/v1/ingest\",status=\"200\"} 2\n")
        );
    }
}
