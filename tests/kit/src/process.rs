//! Child processes: stopping them (SIGTERM, then SIGKILL), signalling them, reading what
//! Linux's `/proc` says about them (CPU time, resident memory), pinning ourselves to a
//! CPU, and the tail of a log for a failure message.

use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

/// Stops a child process: SIGTERM, then SIGKILL after `grace`; reaps it. Shared by every
/// process the tests start (Envoy, the ledger, the registry, the Authority, Prometheus).
pub fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // A failed kill(2) means the process is gone already; the wait below reaps it.
    let _ = signal(child.id(), libc::SIGTERM);
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

/// Sends `sig` (e.g. `libc::SIGSTOP`) to process `pid`.
pub fn signal(pid: u32, sig: libc::c_int) -> Result<(), String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    // SAFETY: plain kill(2); callers pass their own children's ids.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// CPU time every thread of process `pid` has run so far, nanoseconds, and the part of it
/// run by threads whose name starts with `worker_prefix` (Envoy's workers: `wrk:`), from
/// `/proc/PID/task/*/schedstat`: Envoy's threads live as long as the process, so none of
/// its time leaves the sum with an ended thread.
pub fn cpu_ns(pid: u32, worker_prefix: &str) -> Result<(u64, u64), String> {
    let dir = format!("/proc/{pid}/task");
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
        if comm.starts_with(worker_prefix) {
            workers += ns;
        }
    }
    Ok((total, workers))
}

/// Resident set size of process `pid`, bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Pins the calling process (and the threads it creates afterwards) to `cpu`; false when
/// the kernel refused.
pub fn pin_self(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// A file's contents as text (lossy UTF-8), empty when it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`, with a note of how many came before.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "[... 1 earlier lines ...]\nb\nc\n");
        assert_eq!(tail("a\nb", 5), "a\nb\n");
    }

    #[test]
    fn proc_of_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        let (total, workers) = cpu_ns(me, "no-such-thread-name").unwrap();
        assert!(total > 0);
        assert_eq!(workers, 0);
        assert!(signal(me, 0).is_ok());
    }

    #[test]
    fn terminate_stops_and_reaps() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let start = Instant::now();
        terminate(&mut child, Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(matches!(child.try_wait(), Ok(Some(_))));
    }
}
