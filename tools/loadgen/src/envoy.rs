//! Starting and stopping a benchmark Envoy: rendered config, free loopback ports, one
//! worker, optionally pinned to one CPU (`taskset`), stopped with SIGTERM then SIGKILL.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{get, plain_target, Target};

/// How long Envoy gets to compile the module and become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Replaces every `{{NAME}}`; errors on leftovers.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    match out.find("{{") {
        Some(i) => Err(format!(
            "unresolved placeholder near {:?}",
            out[i..].chars().take(30).collect::<String>()
        )),
        None => Ok(out),
    }
}

/// A running Envoy.
pub struct EnvoyProc {
    child: Option<Child>,
    /// Listener port.
    pub port: u16,
    /// Admin endpoint.
    pub admin: Target,
    /// Its log file.
    pub log: PathBuf,
}

impl EnvoyProc {
    /// Starts `envoy` with `yaml` (already rendered with the ports this returns), one
    /// worker, pinned to `cpu` when given. Waits for admin `/ready`.
    pub fn start(
        envoy: &Path,
        work: &Path,
        name: &str,
        template: &str,
        vars: &[(&str, String)],
        cpu: Option<usize>,
    ) -> Result<EnvoyProc, String> {
        let port = free_port()?;
        let admin_port = free_port()?;
        let mut all: Vec<(&str, String)> = vars.to_vec();
        all.push(("LISTEN_PORT", port.to_string()));
        all.push(("ADMIN_PORT", admin_port.to_string()));
        let yaml = render(template, &all)?;
        let config = work.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = work.join(format!("{name}.log"));
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c.to_string()).arg(envoy);
                cmd
            }
            None => Command::new(envoy),
        };
        cmd.arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--log-level", "warn", "--log-path"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", envoy.display()))?;
        let admin = plain_target(&format!("http://127.0.0.1:{admin_port}"))?;
        let mut proc = EnvoyProc {
            child: Some(child),
            port,
            admin,
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(c) = proc.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    return Err(format!(
                        "Envoy ({name}) exited ({status}) before becoming ready:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
            }
            if matches!(get(&proc.admin, "/ready"), Ok((200, _))) {
                return Ok(proc);
            }
            if Instant::now() > deadline {
                proc.stop();
                return Err(format!("Envoy ({name}) not ready within {READY_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The Envoy process id (of `taskset`'s exec, the same process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// CPU time every thread of the process has run so far, nanoseconds, and the part of
    /// it run by the worker threads (`wrk:…`), from Linux's `/proc/PID/task/*/schedstat`:
    /// Envoy's threads live as long as the process, so none of its time leaves the sum
    /// with an ended thread.
    pub fn cpu_ns(&self) -> Result<(u64, u64), String> {
        let dir = format!("/proc/{}/task", self.pid().ok_or("Envoy is not running")?);
        let (mut total, mut workers) = (0, 0);
        for task in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
            let task = task.map_err(|e| format!("{dir}: {e}"))?.path();
            let file = task.join("schedstat");
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ns = text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .ok_or_else(|| format!("{}: unreadable: {text:?}", file.display()))?;
            total += ns;
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.starts_with("wrk:") {
                workers += ns;
            }
        }
        Ok((total, workers))
    }

    /// Resident set size of the process, bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for EnvoyProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pins the calling process (all its threads created later) to `cpu`.
pub fn pin_self(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_and_refuses_leftovers() {
        let vars = [("A", "1".to_string())];
        assert_eq!(render("x{{A}}y", &vars).unwrap(), "x1y");
        assert!(render("{{B}}", &vars).is_err());
    }
}
