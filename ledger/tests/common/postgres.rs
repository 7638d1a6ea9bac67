//! A throw-away PostgreSQL cluster (Debian's PostgreSQL 15: initdb and pg_ctl in a
//! temporary directory, as the `postgres` user when run as root, unix socket only),
//! stopped on drop. Shared by the ledger's own tests and the e2e suite
//! `tests/tests/ledger.rs` (which includes this file): std and `tempfile` only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs a command, as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(bin: &str, as_postgres: bool, cwd: &Path) -> Command {
    let path = format!("{}/{bin}", pg_bin().display());
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    };
    cmd.current_dir(cwd);
    cmd
}

/// PostgreSQL 15's binaries (the Debian `postgresql` package of this distribution), or the
/// newest installed major version when 15 is absent.
pub fn pg_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let fifteen = root.join("15/bin");
    if fifteen.join("initdb").exists() {
        return fifteen;
    }
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    match versions.last() {
        Some(v) => root.join(format!("{v}/bin")),
        None => fifteen,
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL 15 cluster in a temporary directory, on a unix socket only; stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    data: PathBuf,
    as_postgres: bool,
    pub url: String,
}

impl Postgres {
    /// Starts the cluster or panics (a test that needs it must fail, not skip).
    pub fn start() -> Postgres {
        assert!(
            pg_bin().join("initdb").exists(),
            "PostgreSQL is not installed in /usr/lib/postgresql (make apt-deps installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("ledger-pg-")
            .tempdir()
            .expect("tempdir");
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown of the PostgreSQL directory failed");
        }
        let data = dir.path().join("data");
        let out = pg_command("initdb", as_postgres, dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Postgres {
            url: format!(
                "postgres://postgres@localhost/postgres?host={}&port=5432",
                dir.path().display()
            ),
            data: data.clone(),
            dir,
            as_postgres,
        };
        let opts = format!(
            "-k {} -c listen_addresses='' -p 5432 -c fsync=off -c full_page_writes=off",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("server.log");
        let out = pg_command("pg_ctl", as_postgres, pg.dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(&log)
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl", self.as_postgres, self.dir.path())
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
