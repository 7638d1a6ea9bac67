//! `loadgen`'s command line (clap): the options of `make load`, their defaults and
//! bounds.

use clap::Parser;
use registry_token_loadgen::load::Mode;

/// Longest run accepted, seconds.
pub const MAX_DURATION: u64 = 3600;
/// Most connections accepted.
pub const MAX_CONNECTIONS: usize = 512;
/// Most distinct OpToks accepted.
pub const MAX_OPTOKS: usize = 200_000;

/// The command line (every option also works as `--name=value`; given twice, the last
/// one counts).
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "make load [LOAD_ARGS=\"...\"]: drives a running gateway (make run), loopback only",
    after_help = "Modes: bearer; dpop (DPoP-bound OpToks + ES256 proofs); mtls (certificate-bound \
                  OpToks over TLS; needs --ca --cert --key); hostile-dpop (DPoP-bound OpToks + \
                  hostile proofs in rotation: 8192-bit RSA jwk with a 34-bit e or e = AQAB, PS512, \
                  garbage signature; ES256 proof by another key; ES256 proof with a wrong ath: \
                  expects only 401 dpop_jwk / dpop_jkt_mismatch / dpop_ath); malformed-dpop \
                  (DPoP-bound OpToks + `DPoP: x`: expects only 401 dpop_malformed, the cheapest \
                  refusal).\n\n\
                  Prints tokens/s, client p50/p99/p99.9, the filter's own histogram, Envoy's \
                  counters, and checks Envoy's counter deltas against what it saw: exit 0 when \
                  they agree, 1 when not (or nothing was issued), 2 on a usage or setup error.",
    args_override_self = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    /// Gateway origin (https:// for mtls).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8085")]
    pub target: String,
    /// Envoy admin.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// Keep-alive connections, one thread each (at most 512).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub connections: usize,
    /// Seconds of load (at most 3600).
    #[arg(long, value_name = "S", default_value_t = 20)]
    pub duration: u64,
    /// Offered requests/s over all connections (0 = closed loop).
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub rate: f64,
    /// bearer, dpop, mtls, hostile-dpop or malformed-dpop (see below).
    #[arg(long, value_name = "M", default_value = "bearer", value_parser = parse_mode)]
    pub mode: Mode,
    /// PKCS#8 PEM key the gateway trusts.
    #[arg(long, value_name = "FILE", default_value = ".dev/authority.pem")]
    pub authority_key: String,
    /// kid of the OpToks (default: the key's RFC 7638 thumbprint).
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// Request path.
    #[arg(long, value_name = "P", default_value = "/token")]
    pub path: String,
    /// Request query.
    #[arg(
        long,
        value_name = "Q",
        default_value = "service=registry.localhost&scope=repository:stella-ops/public/base:pull"
    )]
    pub query: String,
    /// The gateway's registry.realm, for DPoP htu.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://localhost:8085/token"
    )]
    pub realm: String,
    /// Distinct OpToks pre-generated and cycled (at most 200000).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub optoks: usize,
    /// OpTok claim stellaops:plan (default: none).
    #[arg(long, value_name = "P")]
    pub plan: Option<String>,
    /// OpTok claim iss.
    #[arg(long, value_name = "I", default_value = "https://authority.example")]
    pub iss: String,
    /// OpTok claim aud.
    #[arg(long, value_name = "A", default_value = "registry-token")]
    pub aud: String,
    /// DPoP proofs pre-generated per second of run (more are signed live).
    #[arg(long, value_name = "R", default_value_t = 3000)]
    pub expect_rate: u64,
    /// CA certificate of an https:// --target (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
    /// Client certificate (PEM), with --key: mtls.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<String>,
    /// Client key (PEM), with --cert: mtls.
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
    /// Stop after N requests.
    #[arg(long, value_name = "N", default_value_t = 5_000_000)]
    pub max_requests: u64,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s)
        .ok_or_else(|| "--mode is bearer, dpop, mtls, hostile-dpop or malformed-dpop".to_owned())
}

/// The numbers' ranges.
pub fn check_bounds(cli: &Cli) -> Result<(), String> {
    if !(1..=MAX_CONNECTIONS).contains(&cli.connections) {
        return Err(format!(
            "--connections must be within 1..={MAX_CONNECTIONS}"
        ));
    }
    if !(1..=MAX_DURATION).contains(&cli.duration) {
        return Err(format!(
            "--duration must be within 1..={MAX_DURATION} seconds"
        ));
    }
    if !(1..=MAX_OPTOKS).contains(&cli.optoks) {
        return Err(format!("--optoks must be within 1..={MAX_OPTOKS}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_old_parsers() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.target, "http://127.0.0.1:8085");
        assert_eq!(c.admin, "http://127.0.0.1:9901");
        assert_eq!((c.connections, c.duration, c.rate), (8, 20, 0.0));
        assert_eq!(c.mode, Mode::Bearer);
        assert_eq!(c.authority_key, ".dev/authority.pem");
        assert_eq!(
            (c.path.as_str(), c.realm.as_str()),
            ("/token", "http://localhost:8085/token")
        );
        assert_eq!(
            c.query,
            "service=registry.localhost&scope=repository:stella-ops/public/base:pull"
        );
        assert_eq!(
            (c.optoks, c.expect_rate, c.max_requests),
            (2000, 3000, 5_000_000)
        );
        assert_eq!(
            (c.iss.as_str(), c.aud.as_str()),
            ("https://authority.example", "registry-token")
        );
        assert!(c.kid.is_none() && c.plan.is_none());
        assert!(c.ca.is_none() && c.cert.is_none() && c.key.is_none());
        assert_eq!(check_bounds(&c), Ok(()));
    }

    #[test]
    fn the_old_spellings_parse_and_the_last_one_counts() {
        let c = parse(&[
            "--mode=dpop",
            "--connections",
            "16",
            "--duration=60",
            "--rate",
            "250.5",
            "--expect-rate",
            "10",
            "--max-requests=7",
            "--authority-key",
            "k.pem",
            "--duration",
            "61",
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::Dpop);
        assert_eq!((c.connections, c.duration, c.rate), (16, 61, 250.5));
        assert_eq!((c.expect_rate, c.max_requests), (10, 7));
        assert_eq!(c.authority_key, "k.pem");
        for mode in ["bearer", "mtls", "hostile-dpop", "malformed-dpop"] {
            assert_eq!(parse(&["--mode", mode]).unwrap().mode.name(), mode);
        }
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["--mode", "nope"][..],
            &["--connections", "x"],
            &["--unknown", "1"],
            &["positional"],
            &["--duration"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let err = parse(&["--mode", "nope"]).unwrap_err().to_string();
        assert!(err.contains("bearer, dpop, mtls"), "{err}");
        let bounds = |args: &[&str]| check_bounds(&parse(args).unwrap()).unwrap_err();
        assert!(bounds(&["--connections", "0"]).contains("1..=512"));
        assert!(bounds(&["--connections", "513"]).contains("1..=512"));
        assert!(bounds(&["--duration", "3601"]).contains("1..=3600"));
        assert!(bounds(&["--optoks", "200001"]).contains("1..=200000"));
    }

    #[test]
    fn help_has_a_line_for_every_option() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(help.contains(&format!("--{long}")), "--{long} in\n{help}");
            assert!(arg.get_help().is_some(), "--{long} has no help");
        }
        assert!(help.contains("[default: 2000]"), "{help}");
    }
}
