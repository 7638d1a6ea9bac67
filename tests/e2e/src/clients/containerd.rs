//! [`Containerd`]: a standalone `containerd` 1.6 confined to a temporary directory, driven
//! with `ctr`; OCI layouts packed as archives for `ctr images import`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    containerd_bin, ctr_bin, mask_creds, random_hex, require, run_command, DaemonDir, ProcId, Run,
    CLIENT_TIMEOUT, DAEMON_READY_TIMEOUT,
};
use crate::registry::{tar, OciImage};

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
pub(super) fn split_tag(reference: &str) -> Option<(&str, &str)> {
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
