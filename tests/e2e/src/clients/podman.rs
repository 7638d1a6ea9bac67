//! [`Podman`]: `podman` 4.3 (no daemon) with its storage, auth file and configuration in
//! a temporary directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::{
    podman_bin, require, run_command, short_tempdir, tiny_rootfs, unmount_under, Run,
    CLIENT_TIMEOUT,
};

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
