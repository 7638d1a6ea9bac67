//! Command line, environment and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use registry_token_ledger_wire::MAX_ACTIVE_REVOCATIONS;

/// Shortest shared secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

/// Issuance ledger for the registry token gateways.
#[derive(Debug, Clone, Parser)]
#[command(name = "registry-token-ledger", version, about)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8086")]
    pub listen: String,

    /// Database: `sqlite://PATH` (file created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "LEDGER_DATABASE",
        default_value = "sqlite://.dev/ledger.db"
    )]
    pub database: String,

    /// Required `iss` of admin tokens.
    #[arg(long, env = "LEDGER_ISSUER")]
    pub issuer: Option<String>,

    /// Required `aud` of admin tokens: when set, a token must carry it (`aud` a string
    /// equal to it or an array holding it); when not set, `aud` is not checked.
    #[arg(long, env = "LEDGER_AUDIENCE")]
    pub audience: Option<String>,

    /// JWKS file with the admin token issuer's keys.
    #[arg(long, env = "LEDGER_JWKS_FILE", conflicts_with = "jwks_url")]
    pub jwks_file: Option<PathBuf>,

    /// JWKS URL with the admin token issuer's keys (fetched at start and periodically).
    #[arg(long, env = "LEDGER_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// How often the JWKS URL is fetched again, seconds.
    #[arg(long, env = "LEDGER_JWKS_REFRESH_SECONDS", default_value_t = 300)]
    pub jwks_refresh_seconds: u64,

    /// Scope an admin token must carry (`scope` string or `scp` array).
    #[arg(
        long,
        env = "LEDGER_ADMIN_SCOPE",
        default_value = "registry.token.admin"
    )]
    pub admin_scope: String,

    /// Clock skew allowed on `exp`/`nbf`, seconds.
    #[arg(long, env = "LEDGER_CLOCK_SKEW_SECONDS", default_value_t = 60)]
    pub clock_skew_seconds: u64,

    /// File holding the ingest secret (instead of LEDGER_INGEST_SECRET).
    #[arg(long, env = "LEDGER_INGEST_SECRET_FILE")]
    pub ingest_secret_file: Option<PathBuf>,

    /// File holding the feed secret (instead of LEDGER_FEED_SECRET).
    #[arg(long, env = "LEDGER_FEED_SECRET_FILE")]
    pub feed_secret_file: Option<PathBuf>,

    /// Most database connections.
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS", default_value_t = 8)]
    pub max_connections: u32,

    /// Most active revocations (1..=100000): a create beyond it is refused with 409
    /// `too_many_revocations`, so the gateways' digest feed stays within their bound.
    #[arg(long, env = "LEDGER_MAX_REVOCATIONS", default_value_t = MAX_ACTIVE_REVOCATIONS)]
    pub max_revocations: usize,

    /// PKCS#8 PEM P-256 private key that signs robot tokens (ES256); robots are off
    /// without it.
    #[arg(long, env = "LEDGER_ROBOT_KEY_FILE")]
    pub robot_key_file: Option<PathBuf>,

    /// `iss` of robot tokens: an http(s) URL; its discovery document and keys are served
    /// under its path (`<path>/.well-known/openid-configuration`, `…/jwks.json`).
    #[arg(long, env = "LEDGER_ROBOT_ISSUER")]
    pub robot_issuer: Option<String>,

    /// `aud` of robot tokens: an audience the gateways accept for the robot issuer.
    #[arg(long, env = "LEDGER_ROBOT_AUDIENCE")]
    pub robot_audience: Option<String>,

    /// Longest lifetime of a robot, days (1..=3650).
    #[arg(long, env = "LEDGER_ROBOT_MAX_DAYS", default_value_t = 90)]
    pub robot_max_days: u32,
}

/// Robot token issuance, when `--robot-key-file` is given.
#[derive(Debug, Clone)]
pub struct RobotConfig {
    /// The key file.
    pub key_file: PathBuf,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Longest lifetime, days.
    pub max_days: u32,
}

/// Where the admin keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWKS document read once at start.
    File(PathBuf),
    /// A URL fetched at start and every `refresh` seconds.
    Url {
        /// The URL.
        url: String,
        /// Refresh period, seconds.
        refresh: u64,
    },
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database URL as given.
    pub database: String,
    /// Admin token issuer.
    pub issuer: String,
    /// Admin token audience, if checked.
    pub audience: Option<String>,
    /// Admin keys.
    pub jwks: JwksSource,
    /// Admin scope.
    pub admin_scope: String,
    /// Skew, seconds.
    pub clock_skew_seconds: u64,
    /// Gateway ingest secret.
    pub ingest_secret: String,
    /// Gateway feed secret (the ingest secret when not set).
    pub feed_secret: String,
    /// Pool size.
    pub max_connections: u32,
    /// Most active revocations.
    pub max_revocations: usize,
    /// Robot tokens, if on.
    pub robots: Option<RobotConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &redact_url(&self.database))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks", &self.jwks)
            .field("admin_scope", &self.admin_scope)
            .finish_non_exhaustive()
    }
}

/// Hides the password of a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn read_secret(
    name: &str,
    env_value: Option<String>,
    file: Option<&PathBuf>,
) -> Result<Option<String>, String> {
    let value = match (env_value, file) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{name}: set either the variable or the file, not both"
            ))
        }
        (Some(v), None) => v,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{name}: cannot read {}: {e}", path.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        (None, None) => return Ok(None),
    };
    if value.chars().count() < MIN_SECRET_LEN {
        return Err(format!(
            "{name} must be at least {MIN_SECRET_LEN} characters"
        ));
    }
    if value.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("{name} must not hold spaces or control characters"));
    }
    Ok(Some(value))
}

impl Config {
    /// Validates the arguments; `env` reads a secret variable (injected for tests).
    pub fn from_args(args: Args, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let listen: SocketAddr = args
            .listen
            .parse()
            .map_err(|_| format!("--listen {:?} is not an address:port", args.listen))?;
        let scheme_ok = args.database.starts_with("sqlite:")
            || args.database.starts_with("postgres://")
            || args.database.starts_with("postgresql://");
        if !scheme_ok {
            return Err(format!(
                "--database must start with sqlite: or postgres:// (got {:?})",
                redact_url(&args.database)
            ));
        }
        let issuer = match args.issuer {
            Some(i) if !i.trim().is_empty() => i,
            _ => return Err("--issuer (LEDGER_ISSUER) is required".into()),
        };
        let jwks = match (args.jwks_file, args.jwks_url) {
            (Some(f), None) => JwksSource::File(f),
            (None, Some(u)) => {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    return Err(format!("--jwks-url {u:?} must be an http(s) URL"));
                }
                if !(10..=86_400).contains(&args.jwks_refresh_seconds) {
                    return Err("--jwks-refresh-seconds must be within 10..=86400".into());
                }
                JwksSource::Url {
                    url: u,
                    refresh: args.jwks_refresh_seconds,
                }
            }
            (Some(_), Some(_)) => return Err("give --jwks-file or --jwks-url, not both".into()),
            (None, None) => return Err("--jwks-file or --jwks-url is required".into()),
        };
        let scope = args.admin_scope.trim();
        if scope.is_empty() || scope.contains(' ') {
            return Err("--admin-scope must be one non-empty scope".into());
        }
        if args.clock_skew_seconds > 600 {
            return Err("--clock-skew-seconds must be at most 600".into());
        }
        if args.max_connections == 0 || args.max_connections > 256 {
            return Err("--max-connections must be within 1..=256".into());
        }
        if !(1..=MAX_ACTIVE_REVOCATIONS).contains(&args.max_revocations) {
            return Err(format!(
                "--max-revocations must be within 1..={MAX_ACTIVE_REVOCATIONS} (the gateways \
                 take a digest feed of at most that many)"
            ));
        }
        let ingest_secret = read_secret(
            "LEDGER_INGEST_SECRET",
            env("LEDGER_INGEST_SECRET"),
            args.ingest_secret_file.as_ref(),
        )?
        .ok_or("LEDGER_INGEST_SECRET (or --ingest-secret-file) is required")?;
        let feed_secret = read_secret(
            "LEDGER_FEED_SECRET",
            env("LEDGER_FEED_SECRET"),
            args.feed_secret_file.as_ref(),
        )?
        .unwrap_or_else(|| ingest_secret.clone());
        let robots = robot_config(
            args.robot_key_file,
            args.robot_issuer,
            args.robot_audience,
            args.robot_max_days,
        )?;
        Ok(Config {
            listen,
            database: args.database,
            issuer,
            audience: args.audience.filter(|a| !a.is_empty()),
            jwks,
            admin_scope: scope.to_string(),
            clock_skew_seconds: args.clock_skew_seconds,
            ingest_secret,
            feed_secret,
            max_connections: args.max_connections,
            max_revocations: args.max_revocations,
            robots,
        })
    }

    /// The robot token signer, its key read from the file; `None` when robots are off.
    pub fn robots(&self) -> Result<Option<crate::robots::RobotSigner>, String> {
        self.robots
            .as_ref()
            .map(|r| {
                crate::robots::RobotSigner::from_pem_file(
                    &r.key_file,
                    r.issuer.clone(),
                    r.audience.clone(),
                    r.max_days,
                )
            })
            .transpose()
    }
}

fn robot_config(
    key_file: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
    max_days: u32,
) -> Result<Option<RobotConfig>, String> {
    let Some(key_file) = key_file else {
        if issuer.is_some() || audience.is_some() {
            return Err("--robot-issuer and --robot-audience need --robot-key-file".into());
        }
        return Ok(None);
    };
    let issuer = issuer
        .filter(|i| i.starts_with("https://") || i.starts_with("http://"))
        .filter(|i| !i.contains(['?', '#', ' ']))
        .ok_or("--robot-issuer (LEDGER_ROBOT_ISSUER) must be an http(s) URL with no query")?;
    let audience = audience
        .filter(|a| !a.trim().is_empty())
        .ok_or("--robot-audience (LEDGER_ROBOT_AUDIENCE) is required with --robot-key-file")?;
    if !(1..=3650).contains(&max_days) {
        return Err("--robot-max-days must be within 1..=3650".into());
    }
    Ok(Some(RobotConfig {
        key_file,
        issuer,
        audience,
        max_days,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["ledger", "--issuer", "https://idp", "--jwks-file", "/x"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    fn env_with(secret: &'static str) -> impl Fn(&str) -> Option<String> {
        move |k| (k == "LEDGER_INGEST_SECRET").then(|| secret.to_string())
    }

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_and_fallback_feed_secret() {
        let c = Config::from_args(args(&[]), env_with(GOOD)).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8086");
        assert_eq!(c.database, "sqlite://.dev/ledger.db");
        assert_eq!(c.admin_scope, "registry.token.admin");
        assert_eq!(c.feed_secret, GOOD);
        assert_eq!(c.max_revocations, 100_000);
        let c = Config::from_args(args(&["--max-revocations", "5"]), env_with(GOOD)).unwrap();
        assert_eq!(c.max_revocations, 5);
    }

    #[test]
    fn bad_configurations_are_one_line_errors() {
        let bad = |a: Args, s: &'static str| Config::from_args(a, env_with(s)).unwrap_err();
        assert!(bad(args(&[]), "short").contains("at least 32"));
        assert!(bad(args(&["--listen", "nope"]), GOOD).contains("--listen"));
        assert!(bad(args(&["--database", "mysql://x"]), GOOD).contains("--database"));
        assert!(bad(args(&["--admin-scope", "a b"]), GOOD).contains("--admin-scope"));
        for n in ["0", "100001"] {
            assert!(bad(args(&["--max-revocations", n]), GOOD).contains("--max-revocations"));
        }
        let no_issuer = Args::parse_from(["ledger", "--jwks-file", "/x"]);
        assert!(bad(no_issuer, GOOD).contains("--issuer"));
        let no_keys = Args::parse_from(["ledger", "--issuer", "i"]);
        assert!(bad(no_keys, GOOD).contains("--jwks-file"));
        let robots = |extra: &[&str]| bad(args(extra), GOOD);
        assert!(robots(&["--robot-issuer", "https://l"]).contains("--robot-key-file"));
        let key = ["--robot-key-file", "/k"];
        assert!(robots(&key).contains("--robot-issuer"));
        let with_issuer = [&key[..], &["--robot-issuer", "ftp://l"]].concat();
        assert!(robots(&with_issuer).contains("--robot-issuer"));
        let with_issuer = [&key[..], &["--robot-issuer", "https://l"]].concat();
        assert!(robots(&with_issuer).contains("--robot-audience"));
        let full = [&with_issuer[..], &["--robot-audience", "registry"]].concat();
        let days = [&full[..], &["--robot-max-days", "0"]].concat();
        assert!(robots(&days).contains("--robot-max-days"));
        let on = Config::from_args(args(&full), env_with(GOOD)).unwrap();
        assert_eq!(on.robots.map(|r| r.max_days), Some(90));
        let missing = Config::from_args(args(&[]), |_| None).unwrap_err();
        assert!(missing.contains("LEDGER_INGEST_SECRET"));
        assert!(!missing.contains('\n'));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
