//! The real container clients, each confined to its own temporary directory: Debian's
//! `dockerd` 20.10 (with the `containerd` child it starts), a standalone `containerd` 1.6
//! driven with `ctr`, and `podman` 4.3 (no daemon). Plus [`CaptureRealm`], a token realm
//! that records what the clients send and mints tokens a distribution 2.8 registry accepts.
//!
//! Every guard keeps all its state under a short directory in `/tmp` (unix socket paths
//! are limited to 107 bytes), reads no configuration from `/etc` where the tool allows it,
//! and on drop — also when a test panics — stops its processes (SIGTERM, then SIGKILL),
//! waits until they are gone, unmounts whatever is still mounted under its directory and
//! removes it (`E2E_KEEP_TMP` keeps it after a failure). A failing test prints the tail of
//! the daemon's log.
//!
//! ```no_run
//! use registry_token_e2e::clients::{Containerd, Dockerd};
//! use registry_token_e2e::registry::Registry;
//!
//! let registry = Registry::start_plain().unwrap_or_else(|e| panic!("{e}"));
//! let docker = Dockerd::start(&[&registry.host()]).unwrap_or_else(|e| panic!("{e}"));
//! let image = format!("{}/e2e/tiny:v1", registry.host());
//! docker.import_tiny(&image).unwrap_or_else(|e| panic!("{e}"));
//! let run = docker.push(&image);
//! assert!(run.success, "{run}");
//! let ctrd = Containerd::start().unwrap_or_else(|e| panic!("{e}"));
//! let run = ctrd.pull(&image, None);
//! assert!(run.success, "{run}");
//! ```
//!
//! `make apt-deps` installs `docker.io`, `containerd` and `podman`. The daemons need root.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::gateway::{SERVICE, SIGNING_ISSUER};
use crate::registry::{bin_from, tar, OciImage};
use crate::{tail, LOG_TAIL_LINES};

/// How long a daemon may take to answer after it was started.
pub const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace period between SIGTERM and SIGKILL when a daemon guard is dropped.
pub const DAEMON_STOP_GRACE: Duration = Duration::from_secs(20);
/// Default limit of one client command (`docker push`, `ctr images pull`, …).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Binaries.
// ---------------------------------------------------------------------------------------

/// `$DOCKERD_BIN`, else `/usr/sbin/dockerd`.
pub fn dockerd_bin() -> PathBuf {
    bin_from("DOCKERD_BIN", "/usr/sbin/dockerd")
}

/// `$DOCKER_BIN`, else `/usr/bin/docker` (Debian's 20.10 CLI; not whatever `docker` comes
/// first on `PATH`, which may be a newer CLI from elsewhere).
pub fn docker_bin() -> PathBuf {
    bin_from("DOCKER_BIN", "/usr/bin/docker")
}

/// `$CONTAINERD_BIN`, else `/usr/bin/containerd`.
pub fn containerd_bin() -> PathBuf {
    bin_from("CONTAINERD_BIN", "/usr/bin/containerd")
}

/// `$CTR_BIN`, else `/usr/bin/ctr`.
pub fn ctr_bin() -> PathBuf {
    bin_from("CTR_BIN", "/usr/bin/ctr")
}

/// `$PODMAN_BIN`, else `/usr/bin/podman`.
pub fn podman_bin() -> PathBuf {
    bin_from("PODMAN_BIN", "/usr/bin/podman")
}

fn require(bin: &Path, package: &str) -> Result<(), String> {
    if bin.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} not found: install Debian's {package} (make apt-deps)",
            bin.display()
        ))
    }
}

// ---------------------------------------------------------------------------------------
// One client command.
// ---------------------------------------------------------------------------------------

/// One finished (or killed) client command.
#[derive(Clone, Debug)]
pub struct Run {
    /// The command line, with secrets masked.
    pub command: String,
    /// Exit code (None when killed by a signal, e.g. on timeout).
    pub code: Option<i32>,
    /// Exit status 0 and not timed out.
    pub success: bool,
    /// Killed because it ran longer than its timeout.
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → exit {:?}{} in {:.1?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (stdout and stderr captured, `stdin` written then closed), killing it after
/// `timeout`. `shown` is the command line for messages (mask secrets in it).
pub fn run_command(
    mut cmd: Command,
    shown: String,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Run {
    let started = Instant::now();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Run {
                command: shown,
                code: None,
                success: false,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("cannot start: {e}"),
                elapsed: started.elapsed(),
            }
        }
    };
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(data);
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = started + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                crate::terminate(&mut child, Duration::from_secs(2));
                break child.try_wait().ok().flatten();
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let code = status.and_then(|s| s.code());
    Run {
        command: shown,
        code,
        success: !timed_out && code == Some(0),
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// `user:password` → `user:***` for messages.
fn mask_creds(arg: &str) -> String {
    match arg.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Processes and mounts.
// ---------------------------------------------------------------------------------------

/// (state, ppid, starttime) of `pid` from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// Whether `pid` is a live process (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _, _)) if state != 'Z' && state != 'X')
}

/// A process identified by pid and start time (so a reused pid is never signalled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcId {
    /// The process id.
    pub pid: u32,
    start: u64,
}

impl ProcId {
    fn of(pid: u32) -> Option<ProcId> {
        proc_stat(pid).map(|(_, _, start)| ProcId { pid, start })
    }

    /// Still this process, and not a zombie.
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((s, _, start)) if start == self.start && s != 'Z' && s != 'X')
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.alive() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: plain kill(2) on a process we started (checked by start time above).
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// Every live descendant of `root` (children, grandchildren, …).
pub fn descendants(root: u32) -> Vec<ProcId> {
    let mut parents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((_, ppid, _)) = proc_stat(pid) {
                parents.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in parents.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(id) = ProcId::of(c) {
                if id.alive() {
                    out.push(id);
                }
            }
            todo.push(c);
        }
    }
    out
}

/// Waits until none of `procs` is alive; SIGKILLs the survivors after `grace`.
fn reap(procs: &[ProcId], grace: Duration) {
    let deadline = Instant::now() + grace;
    while procs.iter().any(ProcId::alive) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter().filter(|p| p.alive()) {
        p.signal(libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while procs.iter().any(ProcId::alive) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points at or under `dir`, deepest first (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts (`MNT_DETACH`) everything mounted at or under `dir`; returns what it
/// unmounted.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    let mut done = Vec::new();
    // A mount point can be stacked several times: repeat while something is left.
    for _ in 0..8 {
        let left = mounts_under(dir);
        if left.is_empty() {
            break;
        }
        for m in left {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2(2) with a valid NUL-terminated path.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc == 0 {
                done.push(m);
            }
        }
    }
    done
}

/// A short temporary directory under `/tmp` (socket paths must stay under 108 bytes).
fn short_tempdir(prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(6)
        .tempdir_in("/tmp")
        .map_err(|e| format!("cannot create a temporary directory in /tmp: {e}"))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The state shared by the daemon guards: the temporary directory, the process, its log.
struct DaemonDir {
    name: &'static str,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    procs: Vec<ProcId>,
}

impl DaemonDir {
    fn new(name: &'static str, prefix: &str) -> Result<DaemonDir, String> {
        let dir = short_tempdir(prefix)?;
        let path = dir.path().to_path_buf();
        Ok(DaemonDir {
            name,
            log_path: path.join(format!("{name}.log")),
            dir: Some(dir),
            path,
            child: None,
            procs: Vec::new(),
        })
    }

    fn spawn(&mut self, mut cmd: Command) -> Result<u32, String> {
        let log = fs::File::create(&self.log_path)
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        cmd.current_dir(&self.path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.name))?;
        let pid = child.id();
        if let Some(id) = ProcId::of(pid) {
            self.procs.push(id);
        }
        self.child = Some(child);
        Ok(pid)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    fn report(&self) -> String {
        format!(
            "--- last {LOG_TAIL_LINES} lines of the {} log ({}) ---\n{}",
            self.name,
            self.log_path.display(),
            tail(&self.log(), LOG_TAIL_LINES)
        )
    }

    /// Stops the daemon and everything it started; unmounts; idempotent.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Note its children (dockerd's containerd, shims) before it goes away.
            for d in descendants(child.id()) {
                if !self.procs.contains(&d) {
                    self.procs.push(d);
                }
            }
            crate::terminate(&mut child, DAEMON_STOP_GRACE);
        }
        // Children that outlive the daemon: TERM, then KILL.
        for p in &self.procs {
            p.signal(libc::SIGTERM);
        }
        reap(&self.procs, Duration::from_secs(10));
        unmount_under(&self.path);
    }

    /// Every process this guard started or saw (the daemon first).
    fn procs(&mut self) -> Vec<ProcId> {
        if let Some(c) = &self.child {
            for d in descendants(c.id()) {
                if !self.procs.contains(&d) {
                    self.procs.push(d);
                }
            }
        }
        self.procs.clone()
    }

    fn drop_dir(&mut self) {
        if thread::panicking() {
            eprintln!(
                "\n===== {} ({}) — test failed =====\n{}\n===== end of {} log =====",
                self.name,
                self.path.display(),
                self.report(),
                self.name
            );
        }
        self.stop();
        if thread::panicking() && std::env::var_os("E2E_KEEP_TMP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("(E2E_KEEP_TMP: kept {})", dir.keep().display());
            }
        }
    }
}

/// A tar archive with one file holding a random line: an image nobody has seen before.
fn tiny_rootfs() -> Vec<u8> {
    let content = format!("registry-token-filter client image {}\n", random_hex(16));
    tar(&[("hello.txt", content.as_bytes())])
}

// ---------------------------------------------------------------------------------------
// dockerd.
// ---------------------------------------------------------------------------------------

/// A `dockerd` with its data, exec root, socket, pid file, `daemon.json` and the CLI's
/// `config.json` in a temporary directory `D` (`/tmp/rtd-…`): no iptables, no bridge, the
/// `vfs` storage driver. It starts its own `containerd` under `D/exec/containerd`; both
/// are stopped on drop.
pub struct Dockerd {
    d: DaemonDir,
    pid: u32,
    startup: Duration,
}

impl Dockerd {
    /// Starts dockerd trusting `insecure_registries` (`host:port`, plain HTTP) and waits
    /// (up to [`DAEMON_READY_TIMEOUT`]) until `docker version` answers on its socket.
    pub fn start(insecure_registries: &[&str]) -> Result<Dockerd, String> {
        let bin = dockerd_bin();
        require(&bin, "docker.io")?;
        require(&docker_bin(), "docker.io")?;
        let started = Instant::now();
        let mut d = DaemonDir::new("dockerd", "rtd-")?;
        let p = d.path.clone();
        fs::create_dir_all(p.join("cfg")).map_err(|e| format!("{}: {e}", p.display()))?;
        fs::write(p.join("daemon.json"), "{}\n").map_err(|e| format!("daemon.json: {e}"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--host")
            .arg(format!("unix://{}", p.join("docker.sock").display()))
            .arg("--pidfile")
            .arg(p.join("docker.pid"))
            .arg("--config-file")
            .arg(p.join("daemon.json"))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=vfs",
            ]);
        for r in insecure_registries {
            cmd.arg("--insecure-registry").arg(r);
        }
        // No proxy settings from the runner: the registries are on 127.0.0.1.
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            cmd.env_remove(k);
        }
        cmd.env("TMPDIR", &p);
        let pid = d.spawn(cmd)?;
        let mut docker = Dockerd {
            d,
            pid,
            startup: Duration::ZERO,
        };
        let deadline = started + DAEMON_READY_TIMEOUT;
        loop {
            if let Some(status) = docker.d.exited() {
                return Err(format!(
                    "dockerd exited ({status}) before answering\n{}",
                    docker.d.report()
                ));
            }
            if docker.d.path.join("docker.sock").exists()
                && docker
                    .docker_timeout(&["version"], Duration::from_secs(10))
                    .success
            {
                docker.startup = started.elapsed();
                return Ok(docker);
            }
            if Instant::now() >= deadline {
                let last = docker.docker(&["version"]);
                return Err(format!(
                    "dockerd did not answer within {DAEMON_READY_TIMEOUT:?}\n{last}\n{}",
                    docker.d.report()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker <args>` against this daemon (`DOCKER_HOST=unix://D/docker.sock`,
    /// `DOCKER_CONFIG=D/cfg`), with [`CLIENT_TIMEOUT`].
    pub fn docker(&self, args: &[&str]) -> Run {
        self.docker_timeout(args, CLIENT_TIMEOUT)
    }

    /// [`Dockerd::docker`] with another timeout.
    pub fn docker_timeout(&self, args: &[&str], timeout: Duration) -> Run {
        self.docker_full(args, None, timeout)
    }

    fn docker_full(&self, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Run {
        let bin = docker_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.d.path.join("cfg"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .current_dir(&self.d.path);
        let shown = format!("{} {}", bin.display(), args.join(" "));
        run_command(cmd, shown, stdin, timeout)
    }

    /// `docker login --username U --password-stdin <registry>` (the password never
    /// appears on a command line).
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Run {
        self.docker_full(
            &["login", "--username", user, "--password-stdin", registry],
            Some(password.as_bytes()),
            CLIENT_TIMEOUT,
        )
    }

    /// `docker logout <registry>`.
    pub fn logout(&self, registry: &str) -> Run {
        self.docker(&["logout", registry])
    }

    /// `docker pull <reference>`.
    pub fn pull(&self, reference: &str) -> Run {
        self.docker(&["pull", reference])
    }

    /// `docker push <reference>`.
    pub fn push(&self, reference: &str) -> Run {
        self.docker(&["push", reference])
    }

    /// `docker tag <src> <dst>`.
    pub fn tag(&self, src: &str, dst: &str) -> Run {
        self.docker(&["tag", src, dst])
    }

    /// `docker rmi <reference>` (the tag; the image goes when it was the last one).
    pub fn rmi(&self, reference: &str) -> Run {
        self.docker(&["rmi", reference])
    }

    /// `docker import` of a fresh one-file root filesystem (random content: new to every
    /// registry) as `reference`; returns the image id. No network needed.
    pub fn import_tiny(&self, reference: &str) -> Result<String, String> {
        let rootfs = tiny_rootfs();
        let run = self.docker_full(&["import", "-", reference], Some(&rootfs), CLIENT_TIMEOUT);
        if !run.success {
            return Err(format!("docker import failed:\n{run}"));
        }
        self.image_id(reference)
    }

    /// `docker image inspect --format {{.Id}} <reference>`.
    pub fn image_id(&self, reference: &str) -> Result<String, String> {
        let run = self.docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
        if run.success {
            Ok(run.stdout.trim().to_owned())
        } else {
            Err(format!("no image {reference}:\n{run}"))
        }
    }

    /// The image's `RepoDigests` (`repo@sha256:…`, known after a push or a pull).
    pub fn repo_digests(&self, reference: &str) -> Vec<String> {
        let run = self.docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            reference,
        ]);
        serde_json::from_str::<Vec<String>>(run.stdout.trim()).unwrap_or_default()
    }

    /// `D/cfg/config.json`, the CLI's stored credentials (None before the first login).
    pub fn config_json(&self) -> Option<Value> {
        let text = fs::read_to_string(self.d.path.join("cfg/config.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `unix://D/docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.d.path.join("docker.sock").display())
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// dockerd and every process it started (its `containerd`), as they are now.
    pub fn processes(&mut self) -> Vec<ProcId> {
        self.d.procs()
    }

    /// How long it took until `docker version` answered.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The temporary directory `D`.
    pub fn dir(&self) -> &Path {
        &self.d.path
    }

    /// dockerd's log (stdout and stderr).
    pub fn log(&self) -> String {
        self.d.log()
    }

    /// Stops dockerd (and its containerd), unmounts what is left under `D`. Idempotent.
    pub fn stop(&mut self) {
        self.d.stop();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.d.drop_dir();
    }
}

// ---------------------------------------------------------------------------------------
// containerd + ctr.
// ---------------------------------------------------------------------------------------

/// A standalone `containerd` (CRI plugin disabled) with root, state, sockets and
/// configuration in a temporary directory `D` (`/tmp/rtc-…`), driven with `ctr`.
/// Images are unpacked with the `native` snapshotter.
pub struct Containerd {
    d: DaemonDir,
    pid: u32,
    startup: Duration,
}

impl Containerd {
    /// Writes the configuration, starts containerd and waits (up to
    /// [`DAEMON_READY_TIMEOUT`]) until `ctr version` answers.
    pub fn start() -> Result<Containerd, String> {
        let bin = containerd_bin();
        require(&bin, "containerd")?;
        require(&ctr_bin(), "containerd")?;
        let started = Instant::now();
        let mut d = DaemonDir::new("containerd", "rtc-")?;
        let p = d.path.clone();
        let q = |name: &str| Value::String(p.join(name).display().to_string()).to_string();
        let config = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
             [grpc]\n  address = {grpc}\n\n\
             [ttrpc]\n  address = {ttrpc}\n\n\
             [debug]\n  address = \"\"\n\n\
             [metrics]\n  address = \"\"\n",
            root = q("root"),
            state = q("state"),
            grpc = q("ctrd.sock"),
            ttrpc = q("ctrd.ttrpc.sock"),
        );
        let config_path = p.join("config.toml");
        fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--config").arg(&config_path).env("TMPDIR", &p);
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            cmd.env_remove(k);
        }
        let pid = d.spawn(cmd)?;
        let mut ctrd = Containerd {
            d,
            pid,
            startup: Duration::ZERO,
        };
        let deadline = started + DAEMON_READY_TIMEOUT;
        loop {
            if let Some(status) = ctrd.d.exited() {
                return Err(format!(
                    "containerd exited ({status}) before answering\n{}",
                    ctrd.d.report()
                ));
            }
            if ctrd.socket().exists()
                && ctrd
                    .ctr_timeout(&["version"], Duration::from_secs(10))
                    .success
            {
                ctrd.startup = started.elapsed();
                return Ok(ctrd);
            }
            if Instant::now() >= deadline {
                let last = ctrd.ctr(&["version"]);
                return Err(format!(
                    "containerd did not answer within {DAEMON_READY_TIMEOUT:?}\n{last}\n{}",
                    ctrd.d.report()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `D/ctrd.sock`.
    pub fn socket(&self) -> PathBuf {
        self.d.path.join("ctrd.sock")
    }

    /// `ctr --address D/ctrd.sock <args>` with [`CLIENT_TIMEOUT`]. Arguments following a
    /// `--user` are masked in [`Run::command`].
    pub fn ctr(&self, args: &[&str]) -> Run {
        self.ctr_timeout(args, CLIENT_TIMEOUT)
    }

    /// [`Containerd::ctr`] with another timeout.
    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> Run {
        let bin = ctr_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg("--address")
            .arg(self.socket())
            .args(args)
            .env("TMPDIR", &self.d.path)
            .env_remove("CONTAINERD_NAMESPACE")
            .env_remove("CONTAINERD_SNAPSHOTTER")
            .current_dir(&self.d.path);
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            cmd.env_remove(k);
        }
        let mut shown = vec![
            bin.display().to_string(),
            "--address".into(),
            self.socket().display().to_string(),
        ];
        let mut mask_next = false;
        for a in args {
            shown.push(if mask_next {
                mask_creds(a)
            } else {
                (*a).to_owned()
            });
            mask_next = matches!(*a, "--user" | "-u");
        }
        run_command(cmd, shown.join(" "), None, timeout)
    }

    fn transfer(&self, verb: &str, reference: &str, creds: Option<(&str, &str)>) -> Run {
        let user = creds.map(|(u, p)| format!("{u}:{p}"));
        let mut args = vec!["images", verb, "--plain-http"];
        if verb == "pull" {
            args.extend(["--snapshotter", "native"]);
        }
        if let Some(u) = &user {
            args.extend(["--user", u.as_str()]);
        }
        args.push(reference);
        self.ctr(&args)
    }

    /// `ctr images pull --plain-http --snapshotter native [--user U:P] <reference>`.
    pub fn pull(&self, reference: &str, creds: Option<(&str, &str)>) -> Run {
        self.transfer("pull", reference, creds)
    }

    /// `ctr images push --plain-http [--user U:P] <reference>`.
    pub fn push(&self, reference: &str, creds: Option<(&str, &str)>) -> Run {
        self.transfer("push", reference, creds)
    }

    /// `ctr images rm <reference>`.
    pub fn rm(&self, reference: &str) -> Run {
        self.ctr(&["images", "rm", reference])
    }

    /// `ctr images tag <src> <dst>`.
    pub fn tag(&self, src: &str, dst: &str) -> Run {
        self.ctr(&["images", "tag", src, dst])
    }

    /// Imports a fresh [`OciImage`] (one random layer) as `reference` (`host/repo:tag`)
    /// from an OCI archive built here; returns its manifest digest. No network needed.
    pub fn import_tiny(&self, reference: &str) -> Result<String, String> {
        let (base, tag) =
            split_tag(reference).ok_or_else(|| format!("{reference:?} is not repository:tag"))?;
        let image = OciImage::build(tag);
        let archive = oci_archive(image.path())?;
        let path = self.d.path.join(format!("import-{}.tar", random_hex(4)));
        fs::write(&path, archive).map_err(|e| format!("{}: {e}", path.display()))?;
        let path_s = path.display().to_string();
        let run = self.ctr(&[
            "images",
            "import",
            "--base-name",
            base,
            "--snapshotter",
            "native",
            &path_s,
        ]);
        let _ = fs::remove_file(&path);
        if !run.success {
            return Err(format!("ctr images import failed:\n{run}"));
        }
        match self.image_digest(reference) {
            Some(d) if d == image.manifest_digest => Ok(d),
            other => Err(format!(
                "after the import, {reference} has digest {other:?}, expected {}\n{run}\n{}",
                image.manifest_digest,
                self.ctr(&["images", "ls"])
            )),
        }
    }

    /// The target digest of `reference` in `ctr images ls` (None when absent).
    pub fn image_digest(&self, reference: &str) -> Option<String> {
        let run = self.ctr(&["images", "ls"]);
        run.stdout.lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&reference))
                .then(|| cols.get(2).map(|d| (*d).to_owned()))
                .flatten()
        })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// containerd and any process it started, as they are now.
    pub fn processes(&mut self) -> Vec<ProcId> {
        self.d.procs()
    }

    /// How long it took until `ctr version` answered.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The temporary directory `D`.
    pub fn dir(&self) -> &Path {
        &self.d.path
    }

    /// containerd's log.
    pub fn log(&self) -> String {
        self.d.log()
    }

    /// Stops containerd, unmounts what is left under `D`. Idempotent.
    pub fn stop(&mut self) {
        self.d.stop();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.d.drop_dir();
    }
}

/// `host:port/repo:tag` → (`host:port/repo`, `tag`).
fn split_tag(reference: &str) -> Option<(&str, &str)> {
    let slash = reference.rfind('/').unwrap_or(0);
    let colon = reference.rfind(':')?;
    (colon > slash).then(|| (&reference[..colon], &reference[colon + 1..]))
}

/// An OCI image layout directory (flat: `oci-layout`, `index.json`, `blobs/sha256/*`) as
/// an uncompressed tar archive, the format `ctr images import` and `docker load` read.
pub fn oci_archive(layout: &Path) -> Result<Vec<u8>, String> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in ["oci-layout", "index.json"] {
        let p = layout.join(name);
        files.push((
            name.to_owned(),
            fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?,
        ));
    }
    let blobs = layout.join("blobs/sha256");
    let mut entries: Vec<_> = fs::read_dir(&blobs)
        .map_err(|e| format!("{}: {e}", blobs.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        let name = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
        files.push((
            name,
            fs::read(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?,
        ));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    Ok(tar(&refs))
}

// ---------------------------------------------------------------------------------------
// podman.
// ---------------------------------------------------------------------------------------

/// `podman` (no daemon) with its storage (`--root`, `--runroot`, `--tmpdir`, `vfs`), auth
/// file, `registries.conf`, `containers.conf` and signature policy in a temporary
/// directory `D` (`/tmp/rtp-…`). Every command uses `--tls-verify=false` where it applies.
pub struct Podman {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Podman {
    /// Prepares the directory and checks that `podman version` runs.
    pub fn new() -> Result<Podman, String> {
        require(&podman_bin(), "podman")?;
        let dir = short_tempdir("rtp-")?;
        let path = dir.path().to_path_buf();
        let write = |name: &str, text: &str| {
            fs::write(path.join(name), text).map_err(|e| format!("{name}: {e}"))
        };
        write("registries.conf", "unqualified-search-registries = []\n")?;
        // podman push insists that an explicitly named auth file exists.
        write("auth.json", "{\"auths\":{}}\n")?;
        write(
            "storage.conf",
            &format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = {}\ngraphroot = {}\n",
                Value::String(path.join("run").display().to_string()),
                Value::String(path.join("root").display().to_string()),
            ),
        )?;
        write("containers.conf", "[engine]\nevents_logger = \"none\"\n")?;
        write(
            "policy.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )?;
        let podman = Podman {
            dir: Some(dir),
            path,
        };
        let run = podman.podman(&["version"]);
        if run.success {
            Ok(podman)
        } else {
            Err(format!("podman does not run here:\n{run}"))
        }
    }

    fn podman_full(&self, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Run {
        let bin = podman_bin();
        let p = &self.path;
        let mut cmd = Command::new(&bin);
        cmd.arg("--root")
            .arg(p.join("root"))
            .arg("--runroot")
            .arg(p.join("run"))
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", p.join("auth.json"))
            .env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("TMPDIR", p)
            .env("XDG_RUNTIME_DIR", p.join("xdg"))
            .env("XDG_CONFIG_HOME", p.join("xdgcfg"))
            .current_dir(p);
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            cmd.env_remove(k);
        }
        let shown = format!("{} {}", bin.display(), args.join(" "));
        run_command(cmd, shown, stdin, timeout)
    }

    /// `podman <args>` (after the storage options) with [`CLIENT_TIMEOUT`].
    pub fn podman(&self, args: &[&str]) -> Run {
        self.podman_full(args, None, CLIENT_TIMEOUT)
    }

    /// `podman login --tls-verify=false --username U --password-stdin <registry>`.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Run {
        self.podman_full(
            &[
                "login",
                "--tls-verify=false",
                "--username",
                user,
                "--password-stdin",
                registry,
            ],
            Some(password.as_bytes()),
            CLIENT_TIMEOUT,
        )
    }

    fn policy(&self) -> String {
        self.path.join("policy.json").display().to_string()
    }

    /// `podman pull --tls-verify=false <reference>`.
    pub fn pull(&self, reference: &str) -> Run {
        let policy = self.policy();
        self.podman(&[
            "pull",
            "--tls-verify=false",
            "--signature-policy",
            &policy,
            reference,
        ])
    }

    /// `podman push --tls-verify=false <reference>`.
    pub fn push(&self, reference: &str) -> Run {
        let policy = self.policy();
        self.podman(&[
            "push",
            "--tls-verify=false",
            "--signature-policy",
            &policy,
            reference,
        ])
    }

    /// `podman tag <src> <dst>`.
    pub fn tag(&self, src: &str, dst: &str) -> Run {
        self.podman(&["tag", src, dst])
    }

    /// `podman rmi <reference>`.
    pub fn rmi(&self, reference: &str) -> Run {
        self.podman(&["rmi", reference])
    }

    /// `podman import` of a fresh one-file root filesystem as `reference`; returns the
    /// image id.
    pub fn import_tiny(&self, reference: &str) -> Result<String, String> {
        let rootfs = tiny_rootfs();
        let run = self.podman_full(&["import", "-", reference], Some(&rootfs), CLIENT_TIMEOUT);
        if !run.success {
            return Err(format!("podman import failed:\n{run}"));
        }
        self.image_id(reference)
    }

    /// `podman image inspect --format {{.Id}} <reference>`.
    pub fn image_id(&self, reference: &str) -> Result<String, String> {
        let run = self.podman(&["image", "inspect", "--format", "{{.Id}}", reference]);
        if run.success {
            Ok(run.stdout.trim().to_owned())
        } else {
            Err(format!("no image {reference}:\n{run}"))
        }
    }

    /// `D/auth.json` (`REGISTRY_AUTH_FILE`), None before the first login.
    pub fn auth_json(&self) -> Option<Value> {
        let text = fs::read_to_string(self.path.join("auth.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The temporary directory `D`.
    pub fn dir(&self) -> &Path {
        &self.path
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        unmount_under(&self.path);
        if thread::panicking() && std::env::var_os("E2E_KEEP_TMP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("(E2E_KEEP_TMP: kept {})", dir.keep().display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A capturing token realm.
// ---------------------------------------------------------------------------------------

/// One request the realm received.
#[derive(Clone, Debug, Default)]
pub struct RealmRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// The query, decoded, in order.
    pub query_params: Vec<(String, String)>,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: String,
    /// The body as `application/x-www-form-urlencoded`, decoded, in order.
    pub form: Vec<(String, String)>,
    /// The status the realm answered.
    pub status: u16,
}

impl RealmRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`.
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        values(&self.query_params, name)
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_all(name).first().copied()
    }

    /// The first value of form field `name`.
    pub fn form_field(&self, name: &str) -> Option<&str> {
        values(&self.form, name).first().copied()
    }

    /// The user and password of a Basic `Authorization` header.
    pub fn basic(&self) -> Option<(String, String)> {
        let v = self.header("authorization")?;
        let (scheme, rest) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_owned(), p.to_owned()))
    }

    /// The request as text with secrets masked (Basic credentials → `user:***`,
    /// `password`/`refresh_token`/`client_secret` fields → `***`).
    pub fn redacted(&self) -> String {
        let mut out = format!("{} {}", self.method, self.path);
        if !self.query.is_empty() {
            out.push('?');
            out.push_str(&self.query);
        }
        out.push_str(&format!("  → {}\n", self.status));
        for (k, v) in &self.headers {
            let v = if k == "authorization" {
                match self.basic() {
                    Some((u, _)) => format!("Basic base64({u}:***)"),
                    None => format!("{} ***", v.split(' ').next().unwrap_or("")),
                }
            } else {
                v.clone()
            };
            out.push_str(&format!("  {k}: {v}\n"));
        }
        if !self.form.is_empty() {
            let fields: Vec<String> = self
                .form
                .iter()
                .map(|(k, v)| {
                    if matches!(k.as_str(), "password" | "refresh_token" | "client_secret") {
                        format!("{k}=***")
                    } else {
                        format!("{k}={}", form_encode(v))
                    }
                })
                .collect();
            out.push_str(&format!("  body: {}\n", fields.join("&")));
        } else if !self.body.is_empty() {
            out.push_str(&format!("  body: {} bytes\n", self.body.len()));
        }
        out
    }
}

fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b','
            | b'/'
            | b'*' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` (also a query string).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The registry access a scope string asks for: `type:name:action,…` where the name may
/// hold `host:port` (type up to the first `:`, actions after the last).
pub fn scope_access(scope: &str) -> Option<Value> {
    let first = scope.find(':')?;
    let last = scope.rfind(':')?;
    if last <= first {
        return None;
    }
    let typ = &scope[..first];
    let typ = typ.split('(').next().unwrap_or(typ);
    let name = &scope[first + 1..last];
    let actions: Vec<&str> = scope[last + 1..]
        .split(',')
        .filter(|a| !a.is_empty())
        .collect();
    Some(json!({"type": typ, "name": name, "actions": actions}))
}

/// How the capture realm decides and answers.
#[derive(Clone, Debug)]
pub struct RealmSettings {
    /// The user name that is accepted (Basic, or the `password` grant's `username`).
    pub user: String,
    /// Its password.
    pub password: String,
    /// When set, a GET with `offline_token=true` and a `password` grant with
    /// `access_type=offline` also get this `refresh_token`, and a `refresh_token` grant
    /// with it is accepted (docker then stores it as `identitytoken`).
    pub refresh_token: Option<String>,
    /// `expires_in` of the answers.
    pub expires_in: u64,
}

struct RealmShared {
    settings: RealmSettings,
    requests: Vec<RealmRequest>,
    key: jsonwebtoken::EncodingKey,
    x5c: String,
    alg: jsonwebtoken::Algorithm,
}

/// A token realm on 127.0.0.1 that records every request (method, path, query, headers,
/// form body) and answers like a Docker token server: it checks the credentials of
/// [`RealmSettings`] (Basic, `password` grant, `refresh_token` grant; 401 otherwise) and
/// mints a token for every requested scope, signed with the given key and carrying the
/// certificate in `x5c` (so a registry with that certificate in its `rootcertbundle`
/// accepts it; `iss` [`SIGNING_ISSUER`], `aud` [`SERVICE`]). Tokens are signed with the
/// `jsonwebtoken` crate, independently of the filter. Answers
/// `{"token", "access_token", "expires_in"}` (+ `refresh_token`, see
/// [`RealmSettings::refresh_token`]). It serves `GET` and `POST` on every path.
pub struct CaptureRealm {
    port: u16,
    shared: Arc<Mutex<RealmShared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CaptureRealm {
    /// Starts the realm. `key_pem`: PKCS#8 RSA (RS256) or P-256 (ES256) private key;
    /// `cert_pem`: its certificate (the `x5c` header).
    pub fn start(
        key_pem: &str,
        cert_pem: &str,
        settings: RealmSettings,
    ) -> Result<CaptureRealm, String> {
        let (key, alg) = match jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()) {
            Ok(k) => (k, jsonwebtoken::Algorithm::RS256),
            Err(_) => (
                jsonwebtoken::EncodingKey::from_ec_pem(key_pem.as_bytes())
                    .map_err(|e| format!("signing key: {e}"))?,
                jsonwebtoken::Algorithm::ES256,
            ),
        };
        let body: String = cert_pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        let shared = Arc::new(Mutex::new(RealmShared {
            settings,
            requests: Vec::new(),
            key,
            x5c: body.trim().to_owned(),
            alg,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || serve_realm(conn, &s));
            }
        });
        Ok(CaptureRealm {
            port,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/token`, the registry's `auth.token.realm`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RealmRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.lock().requests.clear();
    }

    /// All requests, redacted ([`RealmRequest::redacted`]), as one text.
    pub fn transcript(&self) -> String {
        self.requests()
            .iter()
            .map(RealmRequest::redacted)
            .collect::<Vec<_>>()
            .join("")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RealmShared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for CaptureRealm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!("capture realm saw:\n{}", self.transcript());
        }
    }
}

fn read_request(conn: &mut TcpStream) -> Option<RealmRequest> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    while body.len() < length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let is_form = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/x-www-form-urlencoded"));
    Some(RealmRequest {
        method,
        query_params: parse_form(&query),
        path,
        query,
        headers,
        form: if is_form {
            parse_form(&body)
        } else {
            Vec::new()
        },
        body,
        status: 0,
    })
}

fn serve_realm(mut conn: TcpStream, shared: &Mutex<RealmShared>) {
    let Some(mut req) = read_request(&mut conn) else {
        return;
    };
    let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let (status, body) = realm_answer(&req, &s);
    req.status = status;
    s.requests.push(req);
    drop(s);
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut extra = String::new();
    if status == 401 {
        extra.push_str("www-authenticate: Basic realm=\"capture\"\r\n");
    }
    let body = body.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

fn realm_answer(req: &RealmRequest, s: &RealmShared) -> (u16, Value) {
    let st = &s.settings;
    let unauthorized = |msg: &str| {
        (
            401,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": msg}]}),
        )
    };
    let (account, scopes, offline, service) = match req.method.as_str() {
        "GET" => {
            let Some((u, p)) = req.basic() else {
                return unauthorized("no Basic credentials");
            };
            if u != st.user || p != st.password {
                return unauthorized("wrong user or password");
            }
            (
                u,
                req.query_all("scope")
                    .iter()
                    .flat_map(|s| s.split(' '))
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                req.query_param("offline_token") == Some("true"),
                req.query_param("service").unwrap_or(SERVICE).to_owned(),
            )
        }
        "POST" => {
            let scopes: Vec<String> = values(&req.form, "scope")
                .iter()
                .flat_map(|s| s.split(' '))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let service = req.form_field("service").unwrap_or(SERVICE).to_owned();
            match req.form_field("grant_type") {
                Some("password") => {
                    let u = req.form_field("username").unwrap_or("");
                    if u != st.user || req.form_field("password") != Some(st.password.as_str()) {
                        return unauthorized("wrong user or password");
                    }
                    let offline = req.form_field("access_type") == Some("offline");
                    (u.to_owned(), scopes, offline, service)
                }
                Some("refresh_token") => {
                    match (&st.refresh_token, req.form_field("refresh_token")) {
                        (Some(want), Some(got)) if want == got => {
                            (st.user.clone(), scopes, false, service)
                        }
                        _ => return unauthorized("unknown refresh token"),
                    }
                }
                other => {
                    return (
                        400,
                        json!({"error": "unsupported_grant_type", "grant_type": other}),
                    )
                }
            }
        }
        _ => return (405, json!({"error": "method not allowed"})),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let access: Vec<Value> = scopes.iter().filter_map(|s| scope_access(s)).collect();
    let claims = json!({
        "iss": SIGNING_ISSUER,
        "sub": account,
        "aud": service,
        "exp": now + st.expires_in,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": random_hex(12),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(s.alg);
    header.x5c = Some(vec![s.x5c.clone()]);
    let token = match jsonwebtoken::encode(&header, &claims, &s.key) {
        Ok(t) => t,
        Err(e) => return (500, json!({"error": format!("cannot sign: {e}")})),
    };
    let mut answer = json!({
        "token": token,
        "access_token": token,
        "expires_in": st.expires_in,
    });
    if let (true, Some(r)) = (offline, &st.refresh_token) {
        answer["refresh_token"] = json!(r);
    }
    (200, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_scope_parsing() {
        let f = parse_form(
            "grant_type=password&scope=repository%3Aa%2Fb%3Apull+repository%3Ac%3Apush&x",
        );
        assert_eq!(f[0], ("grant_type".into(), "password".into()));
        assert_eq!(f[1].1, "repository:a/b:pull repository:c:push");
        assert_eq!(f[2], ("x".into(), String::new()));
        assert_eq!(
            scope_access("repository:127.0.0.1:5000/a:pull,push"),
            Some(
                json!({"type": "repository", "name": "127.0.0.1:5000/a", "actions": ["pull", "push"]})
            )
        );
        assert_eq!(
            scope_access("registry(x):catalog:*"),
            Some(json!({"type": "registry", "name": "catalog", "actions": ["*"]}))
        );
        assert_eq!(scope_access("nonsense"), None);
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:v1"),
            Some(("127.0.0.1:5000/a/b", "v1"))
        );
        assert_eq!(split_tag("127.0.0.1:5000/a/b"), None);
        assert_eq!(unescape_mount("/tmp/a\\040b"), "/tmp/a b");
    }
}
