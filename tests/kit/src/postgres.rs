//! A throw-away PostgreSQL cluster (Debian's PostgreSQL 15: initdb and pg_ctl in a
//! temporary directory, as the `postgres` user when run as root, unix socket only),
//! stopped on drop. For the ledger's own tests, the e2e suite's ledger tests and the bench.

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
    /// The connection URL (`postgres://postgres@localhost/postgres?host=<dir>&port=5432`).
    pub url: String,
}

impl Postgres {
    /// Starts the cluster (a test that needs it must fail, not skip, on an error); `durable` keeps PostgreSQL's default `fsync` and
    /// `full_page_writes` (a benchmark's figure), otherwise both are off (tests).
    pub fn try_start(durable: bool) -> Result<Postgres, String> {
        if !pg_bin().join("initdb").exists() {
            return Err(
                "PostgreSQL is not installed in /usr/lib/postgresql (make apt-deps installs it)"
                    .into(),
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("ledger-pg-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?
                .success();
            if !ok {
                return Err("chown of the PostgreSQL directory failed".into());
            }
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
            .map_err(|e| format!("run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let pg = Postgres {
            url: format!(
                "postgres://postgres@localhost/postgres?host={}&port=5432",
                dir.path().display()
            ),
            data: data.clone(),
            dir,
            as_postgres,
        };
        let mut opts = format!(
            "-k {} -c listen_addresses='' -p 5432",
            pg.dir.path().display()
        );
        if !durable {
            opts.push_str(" -c fsync=off -c full_page_writes=off");
        }
        let log = pg.dir.path().join("server.log");
        let out = pg_command("pg_ctl", as_postgres, pg.dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(&log)
            .arg("start")
            .output()
            .map_err(|e| format!("run pg_ctl start: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        Ok(pg)
    }
}

impl Postgres {
    /// Runs `sql` with `psql` on the cluster's socket (as the `postgres` user of the URL):
    /// the rows of the last statement, one a line, columns separated by `|`, no header.
    /// What a test reads straight from the database, past every service in front of it.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let out = pg_command("psql", false, self.dir.path())
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", "5432", "-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql {sql:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
