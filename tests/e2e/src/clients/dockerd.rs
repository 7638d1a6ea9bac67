//! [`Dockerd`]: Debian's `dockerd` 20.10 (and the `containerd` it starts) confined to a
//! temporary directory, driven with Debian's `docker` CLI.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    docker_bin, dockerd_bin, require, run_command, tiny_rootfs, DaemonDir, ProcId, Run,
    CLIENT_TIMEOUT, DAEMON_READY_TIMEOUT,
};

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
