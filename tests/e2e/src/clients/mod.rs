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
//! One module per client ([`Dockerd`], [`Containerd`], [`Podman`]) and one for the realm
//! ([`CaptureRealm`]); this one holds what they share: the binaries, running one client
//! command ([`run_command`]), the processes and mounts a guard cleans up, the daemon
//! directory.
//!
//! `make apt-deps` installs `docker.io`, `containerd` and `podman`. The daemons need root.

mod containerd;
mod dockerd;
mod podman;
mod realm;

pub use containerd::{oci_archive, Containerd};
pub use dockerd::Dockerd;
pub use podman::Podman;
pub use realm::{parse_form, scope_access, CaptureRealm, RealmRequest, RealmSettings};

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::{bin_from, tar};
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

#[cfg(test)]
mod tests {
    use super::containerd::split_tag;
    use super::*;
    use serde_json::json;

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
