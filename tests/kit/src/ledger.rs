//! The issuance ledger (`registry-token-ledger`) as a process: started on a free port (or
//! a given one, so a restart is reached at the same address), ready once it printed
//! `listening on …`, paused and resumed with signals, killed and restarted on the same
//! database, its `/metrics` read. Its stderr goes to a log file whose tail is printed when
//! a test fails.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::http;
use crate::process::{read_lossy, signal, tail};
use crate::{free_port, keep_on_failure, temp_dir};

/// How long the ledger gets by default to connect to its database, migrate it and listen.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The ledger binary: `$LEDGER_BIN`, else `registry-token-ledger` in the profile
/// directory of the running executable (`target/<profile>/deps/<test>` →
/// `target/<profile>/registry-token-ledger`; `cargo build -p registry-token-ledger`
/// first).
pub fn ledger_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("LEDGER_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} has no profile directory", exe.display()))?;
    let bin = profile.join("registry-token-ledger");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: run `cargo build -p registry-token-ledger` first (or set LEDGER_BIN)",
            bin.display()
        ))
    }
}

/// How to run the ledger.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// The binary; default [`ledger_bin`].
    pub bin: Option<PathBuf>,
    /// Its port on 127.0.0.1; default a free one.
    pub port: Option<u16>,
    /// `--database` (`sqlite://…`, `postgres://…`).
    pub database: String,
    /// `--issuer` of the admin tokens it accepts.
    pub issuer: String,
    /// `--jwks-file` verifying them.
    pub jwks_file: PathBuf,
    /// `LEDGER_INGEST_SECRET`, the gateways' bearer secret for `POST /v1/ingest`.
    pub ingest_secret: Option<String>,
    /// `LEDGER_FEED_SECRET`, the gateways' bearer secret for the revocation feed.
    pub feed_secret: Option<String>,
    /// `LEDGER_LOG`; default `warn`.
    pub log_level: String,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
    /// Environment variables removed from what the ledger inherits.
    pub env_remove: Vec<String>,
    /// Runs it under `taskset -c <cpu>`.
    pub cpu: Option<usize>,
    /// Runs it at the lowest CPU priority (`nice -n 19`).
    pub nice: bool,
    /// How long to wait for `listening on`; default [`READY_TIMEOUT`].
    pub ready_timeout: Duration,
}

impl LedgerOptions {
    /// The ledger on `database`, admin tokens of `issuer` verified with `jwks_file`.
    pub fn new(database: &str, issuer: &str, jwks_file: &Path) -> LedgerOptions {
        LedgerOptions {
            bin: None,
            port: None,
            database: database.to_owned(),
            issuer: issuer.to_owned(),
            jwks_file: jwks_file.to_path_buf(),
            ingest_secret: None,
            feed_secret: None,
            log_level: "warn".to_owned(),
            env: Vec::new(),
            env_remove: Vec::new(),
            cpu: None,
            nice: false,
            ready_timeout: READY_TIMEOUT,
        }
    }
    /// Sets the binary.
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }
    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    /// Sets `LEDGER_INGEST_SECRET`.
    pub fn ingest_secret(mut self, secret: &str) -> Self {
        self.ingest_secret = Some(secret.to_owned());
        self
    }
    /// Sets `LEDGER_FEED_SECRET`.
    pub fn feed_secret(mut self, secret: &str) -> Self {
        self.feed_secret = Some(secret.to_owned());
        self
    }
    /// Sets `LEDGER_LOG`.
    pub fn log_level(mut self, level: &str) -> Self {
        level.clone_into(&mut self.log_level);
        self
    }
    /// Adds an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.env_remove.push(name.to_owned());
        self
    }
    /// Pins it to `cpu`.
    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }
    /// Runs it at `nice -n 19`.
    pub fn nice(mut self, yes: bool) -> Self {
        self.nice = yes;
        self
    }
}

/// A running ledger; killed on drop (the log tail printed when a test is failing).
pub struct Ledger {
    child: Option<Child>,
    opts: LedgerOptions,
    bin: PathBuf,
    port: u16,
    dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
}

impl Ledger {
    /// Starts the ledger and waits until it listens.
    pub fn start(opts: LedgerOptions) -> Result<Ledger, String> {
        let bin = match &opts.bin {
            Some(b) => b.clone(),
            None => ledger_bin()?,
        };
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let dir = temp_dir("registry-token-ledger-")?;
        let log_path = dir.path().join("ledger.stderr");
        let mut ledger = Ledger {
            child: None,
            opts,
            bin,
            port,
            dir: Some(dir),
            log_path,
        };
        ledger.spawn()?;
        Ok(ledger)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let o = &self.opts;
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(c) = o.cpu {
            argv.extend(["taskset".into(), "-c".into(), c.to_string().into()]);
        }
        if o.nice {
            argv.extend(["nice".into(), "-n".into(), "19".into()]);
        }
        argv.push(self.bin.clone().into());
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--database",
                &o.database,
                "--issuer",
                &o.issuer,
                "--jwks-file",
            ])
            .arg(&o.jwks_file)
            .env("LEDGER_LOG", &o.log_level);
        if let Some(s) = &o.ingest_secret {
            cmd.env("LEDGER_INGEST_SECRET", s);
        }
        if let Some(s) = &o.feed_secret {
            cmd.env("LEDGER_FEED_SECRET", s);
        }
        for name in &o.env_remove {
            cmd.env_remove(name);
        }
        let mut child = cmd
            .envs(o.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                let mut lines = BufReader::new(out).lines();
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
                for _ in lines {}
            });
        }
        match rx.recv_timeout(o.ready_timeout) {
            Ok(line) if line.starts_with("listening on ") => {
                self.child = Some(child);
                Ok(())
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the ledger did not start: {other:?}\n{}",
                    tail(&self.log(), 40)
                ))
            }
        }
    }

    /// Starts it again after [`Ledger::kill`]: same port, same database.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Kills the process (resuming it first, should it be stopped) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = signal(c.id(), libc::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (`libc::SIGSTOP`, `libc::SIGCONT`, …) to the running ledger.
    pub fn signal(&self, sig: libc::c_int) -> Result<(), String> {
        let pid = self.pid().ok_or("the ledger is not running")?;
        signal(pid, sig)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The value of the unlabelled sample `name` on its `/metrics` (e.g.
    /// `ledger_ingested_records_total`, the rows it newly stored); `None` when absent.
    pub fn metric(&self, name: &str) -> Result<Option<u64>, String> {
        match http::get(&self.url("/metrics"))? {
            (200, text) => Ok(prom_sample(&text, name)),
            (status, _) => Err(format!("ledger /metrics answered {status}")),
        }
    }

    /// What it wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// An Envoy static cluster named `name` reaching it: one YAML list item, every line
    /// indented by `indent` spaces.
    pub fn cluster_yaml(&self, name: &str, indent: usize) -> String {
        let lines = [
            format!("- name: {name}"),
            "  type: STATIC".to_owned(),
            "  connect_timeout: 1s".to_owned(),
            "  load_assignment:".to_owned(),
            format!("    cluster_name: {name}"),
            "    endpoints:".to_owned(),
            "    - lb_endpoints:".to_owned(),
            "      - endpoint:".to_owned(),
            "          address:".to_owned(),
            format!(
                "            socket_address: {{ address: 127.0.0.1, port_value: {} }}",
                self.port
            ),
        ];
        let pad = " ".repeat(indent);
        lines.iter().map(|l| format!("{pad}{l}\n")).collect()
    }
}

/// An Envoy static cluster named `name` over ledger replicas on `ports` (127.0.0.1, one
/// endpoint each): how a fleet of gateways reaches several ledgers on one database. One
/// YAML list item, every line indented by `indent` spaces.
///
/// Envoy alone keeps a gateway's POSTs off a replica that is gone: an active health check
/// of `GET /healthz` every second (one failure takes a replica out of the rotation, one
/// success brings it back; `no_traffic_interval` 1 s too, so that the first checks are not
/// 60 s apart), outlier detection (two consecutive failures, a refused or reset
/// connection counting as one, eject a replica for 10 s, at most half of them), round
/// robin over the rest. A Wasm `dispatch_http_call` carries no retry policy (Envoy's
/// `httpCall` sets none), so what fails is the filter's batch, which it retries after its
/// backoff; the next try goes where the load balancer sends it.
pub fn replicas_cluster_yaml(name: &str, ports: &[u16], indent: usize) -> String {
    let mut lines = vec![
        format!("- name: {name}"),
        "  type: STATIC".to_owned(),
        "  connect_timeout: 1s".to_owned(),
        "  lb_policy: ROUND_ROBIN".to_owned(),
        "  load_assignment:".to_owned(),
        format!("    cluster_name: {name}"),
        "    endpoints:".to_owned(),
        "    - lb_endpoints:".to_owned(),
    ];
    for port in ports {
        lines.extend([
            "      - endpoint:".to_owned(),
            "          address:".to_owned(),
            format!("            socket_address: {{ address: 127.0.0.1, port_value: {port} }}"),
        ]);
    }
    lines.extend(
        [
            "  health_checks:",
            "  - timeout: 0.5s",
            "    interval: 1s",
            "    no_traffic_interval: 1s",
            "    unhealthy_threshold: 1",
            "    healthy_threshold: 1",
            "    http_health_check: { path: /healthz }",
            "  outlier_detection:",
            "    consecutive_5xx: 2",
            "    interval: 1s",
            "    base_ejection_time: 10s",
            "    max_ejection_percent: 50",
        ]
        .map(str::to_owned),
    );
    let pad = " ".repeat(indent);
    lines.iter().map(|l| format!("{pad}{l}\n")).collect()
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "\n===== ledger (port {}) — test failed =====\n{}===== end of ledger log =====",
                self.port,
                tail(&self.log(), 60)
            );
        }
        if let Some(dir) = self.dir.take() {
            keep_on_failure(dir);
        }
    }
}

/// The value of the unlabelled Prometheus sample `name` in `text` (the exposition
/// format's `name value` line), truncated to an integer.
pub fn prom_sample(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_never_listens_is_an_error_with_its_stderr() {
        let dir = temp_dir("kit-ledger-").unwrap();
        let fake = dir.path().join("fake-ledger");
        std::fs::write(&fake, "#!/bin/sh\necho \"bad flag $1\" >&2\necho nope\n").unwrap();
        let chmod = Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        assert!(chmod.success());
        let err = Ledger::start(
            LedgerOptions::new("sqlite::memory:", "https://i", Path::new("/dev/null")).bin(&fake),
        )
        .err()
        .unwrap_or_default();
        assert!(
            err.contains("did not start") && err.contains("nope"),
            "{err}"
        );
        assert!(err.contains("bad flag --listen"), "{err}");
    }

    #[test]
    fn prom_sample_reads_an_unlabelled_sample() {
        let text =
            "# HELP x\nledger_ingested_records_total_x 9\nledger_ingested_records_total 42\n";
        assert_eq!(prom_sample(text, "ledger_ingested_records_total"), Some(42));
        assert_eq!(prom_sample(text, "absent"), None);
    }

    #[test]
    fn metrics_are_read_and_cpu_and_nice_apply() {
        use std::io::{Read, Write};
        // The ledger's port answered by this test: two `/metrics` pages, then a 500.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let body =
                "# HELP x\nledger_ingested_records_total_x 9\nledger_ingested_records_total 42\n";
            let mut requests = Vec::new();
            for status in ["200 OK", "200 OK", "500 Internal Server Error"] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                requests.push(request.lines().next().unwrap_or_default().to_owned());
                write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            requests
        });
        let dir = temp_dir("kit-ledger-").unwrap();
        let fake = dir.path().join("fake-ledger");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"nice $(nice)\" >&2\ngrep Cpus_allowed_list /proc/self/status >&2\n\
             echo 'listening on x'\nexec sleep 30\n",
        )
        .unwrap();
        let chmod = Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        assert!(chmod.success());
        let ledger = Ledger::start(
            LedgerOptions::new("sqlite::memory:", "https://i", Path::new("/dev/null"))
                .bin(&fake)
                .port(port)
                .cpu(0)
                .nice(true),
        )
        .unwrap();
        let log = ledger.log();
        assert!(log.contains("nice 19\n"), "{log}");
        assert!(log.contains("Cpus_allowed_list:\t0\n"), "{log}");
        assert_eq!(ledger.metric("ledger_ingested_records_total"), Ok(Some(42)));
        assert_eq!(ledger.metric("absent"), Ok(None));
        let err = ledger.metric("ledger_ingested_records_total").unwrap_err();
        assert!(err.contains("answered 500"), "{err}");
        assert_eq!(server.join().unwrap(), ["GET /metrics HTTP/1.1"; 3]);
    }

    #[test]
    fn replicas_cluster_yaml_lists_every_replica_with_health_checks() {
        let yaml = replicas_cluster_yaml("ledgers", &[4321, 4322], 2);
        assert!(
            yaml.starts_with("  - name: ledgers\n    type: STATIC\n"),
            "{yaml}"
        );
        assert!(yaml.lines().all(|l| l.starts_with("  ")), "{yaml}");
        for port in [4321, 4322] {
            let endpoint = format!("socket_address: {{ address: 127.0.0.1, port_value: {port} }}");
            assert_eq!(yaml.matches(&endpoint).count(), 1, "{yaml}");
        }
        assert_eq!(yaml.matches("- endpoint:").count(), 2, "{yaml}");
        assert!(
            yaml.contains("http_health_check: { path: /healthz }"),
            "{yaml}"
        );
        assert!(yaml.contains("outlier_detection:"), "{yaml}");
    }

    #[test]
    fn cluster_yaml_indents_every_line() {
        let dir = temp_dir("kit-ledger-").unwrap();
        let fake = dir.path().join("fake-ledger");
        std::fs::write(&fake, "#!/bin/sh\necho 'listening on x'\nexec sleep 30\n").unwrap();
        let chmod = Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        assert!(chmod.success());
        let mut ledger = Ledger::start(
            LedgerOptions::new("sqlite::memory:", "https://i", Path::new("/dev/null"))
                .bin(&fake)
                .port(4321),
        )
        .unwrap();
        assert!(ledger.pid().is_some());
        let yaml = ledger.cluster_yaml("ledger", 2);
        assert!(
            yaml.starts_with("  - name: ledger\n    type: STATIC\n"),
            "{yaml}"
        );
        assert!(yaml.ends_with("port_value: 4321 }\n"), "{yaml}");
        assert!(yaml.lines().all(|l| l.starts_with("  ")));
        assert_eq!(ledger.url("/x"), "http://127.0.0.1:4321/x");
        ledger.restart().unwrap();
        assert!(ledger.pid().is_some());
        ledger.kill();
        assert!(ledger.pid().is_none());
    }
}
