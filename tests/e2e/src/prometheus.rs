//! A real Prometheus (Debian's `prometheus` package, `make apt-deps`) for the end-to-end
//! tests: started on a free port with a temporary configuration and TSDB, queried through
//! its HTTP API, stopped (SIGTERM, then SIGKILL) when dropped. Also `promtool`.
//!
//! ```no_run
//! use registry_token_e2e::prometheus::{scrape_config, Prometheus};
//! use std::time::Duration;
//!
//! let rules = registry_token_e2e::repo_root().join("deploy/prometheus/registry-token.rules.yaml");
//! let config = scrape_config("127.0.0.1:9901", "/stats/prometheus", &[rules]);
//! let prom = Prometheus::start(&config).unwrap_or_else(|e| panic!("{e}"));
//! prom.wait_value("registry_token_issued_total", 1.0, Duration::from_secs(20))
//!     .unwrap_or_else(|e| panic!("{e}"));
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, percent_encode, render_template, repo_root, tail, STOP_GRACE};

/// How long [`Prometheus::start`] waits for `GET /-/ready` to answer 200.
pub const PROMETHEUS_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The scrape configuration template: `tests/e2e/fixtures/operations-prometheus.yml`.
pub fn scrape_config_template_path() -> PathBuf {
    repo_root().join("tests/e2e/fixtures/operations-prometheus.yml")
}

/// The `prometheus` binary: `$PROMETHEUS_BIN`, else `prometheus` on the `PATH`.
pub fn prometheus_bin() -> PathBuf {
    match std::env::var_os("PROMETHEUS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("prometheus"),
    }
}

/// The `promtool` binary: `$PROMTOOL_BIN`, else `promtool` on the `PATH`.
pub fn promtool_bin() -> PathBuf {
    match std::env::var_os("PROMTOOL_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("promtool"),
    }
}

/// Runs `promtool args…` in `dir`; returns whether it succeeded and its stdout + stderr.
///
/// # Panics
/// When promtool cannot be started (the message says how to install it).
pub fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool (make apt-deps installs Debian's prometheus): {e}")
        });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The Prometheus configuration of [`scrape_config_template_path`]: scrape and evaluate
/// every second, one job `envoy` scraping `http://<target><metrics_path>`, and
/// `rule_files` (absolute paths; may be empty).
pub fn scrape_config(target: &str, metrics_path: &str, rule_files: &[PathBuf]) -> String {
    let template = fs::read_to_string(scrape_config_template_path())
        .unwrap_or_else(|e| panic!("{}: {e}", scrape_config_template_path().display()));
    let rules = if rule_files.is_empty() {
        "[]".to_owned()
    } else {
        let items: Vec<String> = rule_files
            .iter()
            .map(|p| Value::String(p.display().to_string()).to_string())
            .collect();
        format!("[{}]", items.join(", "))
    };
    let vars = vec![
        (
            "TARGET".to_owned(),
            Value::String(target.to_owned()).to_string(),
        ),
        (
            "METRICS_PATH".to_owned(),
            Value::String(metrics_path.to_owned()).to_string(),
        ),
        ("RULE_FILES".to_owned(), rules),
    ];
    render_template(&template, &vars).unwrap_or_else(|e| panic!("{e}"))
}

/// A running Prometheus.
pub struct Prometheus {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    log_path: PathBuf,
}

impl Prometheus {
    /// Writes `config_yaml` to a temporary directory and starts Prometheus with
    /// `--config.file` there, `--storage.tsdb.path` a fresh directory beside it and
    /// `--web.listen-address 127.0.0.1:<free port>`; waits until `/-/ready` answers 200.
    pub fn start(config_yaml: &str) -> Result<Prometheus, String> {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-prometheus-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config_yaml)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let tsdb = dir.path().join("tsdb");
        let log_path = dir.path().join("prometheus.log");
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        let port = free_port();
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {} (make apt-deps installs Debian's prometheus): {e}",
                    prometheus_bin().display()
                )
            })?;
        let mut prom = Prometheus {
            child: Some(child),
            dir,
            port,
            log_path,
        };
        let deadline = Instant::now() + PROMETHEUS_READY_TIMEOUT;
        loop {
            if let Some(status) = prom
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "prometheus exited ({status}) before becoming ready\n{}",
                    tail(&prom.log(), 60)
                ));
            }
            if matches!(
                crate::try_request("GET", &format!("{}/-/ready", prom.url()), &[], None),
                Ok(r) if r.status == 200
            ) {
                return Ok(prom);
            }
            if Instant::now() >= deadline {
                let log = prom.log();
                prom.stop();
                return Err(format!(
                    "prometheus did not become ready within {PROMETHEUS_READY_TIMEOUT:?}\n{}",
                    tail(&log, 60)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temporary directory (configuration, TSDB, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `GET <url><path>` on the HTTP API; the `data` member of a `success` reply.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.url());
        let reply = crate::try_request("GET", &url, &[], None)?;
        let doc = reply
            .try_json()
            .ok_or_else(|| format!("GET {url}: {} {}", reply.status, reply.body))?;
        if reply.status != 200 || doc["status"] != "success" {
            return Err(format!("GET {url}: {} {}", reply.status, reply.body));
        }
        Ok(doc["data"].clone())
    }

    /// An instant query (`/api/v1/query?query=…`): the `result` vector.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        if data["resultType"] != "vector" {
            return Err(format!("{promql}: not a vector: {data}"));
        }
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of an instant query that returns exactly one series, or None when it
    /// returns none.
    pub fn query_value(&self, promql: &str) -> Result<Option<f64>, String> {
        let result = self.query(promql)?;
        match result.as_slice() {
            [] => Ok(None),
            [one] => one["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .map(Some)
                .ok_or_else(|| format!("{promql}: bad sample {one}")),
            many => Err(format!(
                "{promql}: {} series, expected one: {many:?}",
                many.len()
            )),
        }
    }

    /// Polls [`Prometheus::query_value`] until it equals `want` (or `timeout` passes, an
    /// error naming the last value and the scrape targets' health).
    pub fn wait_value(&self, promql: &str, want: f64, timeout: Duration) -> Result<f64, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.query_value(promql);
            if let Ok(Some(v)) = last {
                if (v - want).abs() < 1e-9 {
                    return Ok(v);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{promql}: wanted {want} within {timeout:?}, last {last:?}; targets: {}",
                    self.api("/api/v1/targets")
                        .map(|t| t.to_string())
                        .unwrap_or_else(|e| e)
                ));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `/api/v1/<what>` until `pred` holds on its `data` (or `timeout` passes);
    /// returns the last `data`.
    pub fn wait_api(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let data = self.api(path)?;
            if pred(&data) {
                return Ok(data);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "GET {path}: condition not met within {timeout:?}: {data}"
                ));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, STOP_GRACE);
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "\n===== Prometheus ({}) — test failed =====\n{}===== end of Prometheus log =====",
                self.url(),
                tail(&self.log(), 60)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_config_renders_valid_yaml() {
        let rules = repo_root().join("deploy/prometheus/registry-token.rules.yaml");
        let text = scrape_config(
            "127.0.0.1:1234",
            "/stats/prometheus",
            std::slice::from_ref(&rules),
        );
        let doc: Value = serde_yaml::from_str::<serde_yaml::Value>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(doc["global"]["scrape_interval"], "1s");
        assert_eq!(doc["rule_files"][0], rules.display().to_string());
        let job = &doc["scrape_configs"][0];
        assert_eq!(job["metrics_path"], "/stats/prometheus");
        assert_eq!(job["static_configs"][0]["targets"][0], "127.0.0.1:1234");
        let none = scrape_config("h:1", "/m", &[]);
        assert!(none.contains("rule_files: []"), "{none}");
    }
}
