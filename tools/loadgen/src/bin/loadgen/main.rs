//! `make load`: drives a running gateway (default: `make run`'s 127.0.0.1:8085, admin
//! 127.0.0.1:9901) and checks Envoy's own counters against what it saw. The options are
//! [`Cli`]'s (`loadgen --help`, or `make load LOAD_ARGS="--help"`).
//!
//! Exit status: 0 when Envoy's counter deltas equal what the generator saw, 1 when they do
//! not (or nothing was issued; in the refusing modes, when anything but the expected 401s
//! came back), 2 on a usage or setup error.

mod cli;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use registry_token_core::token::keys::pem_certificates;
use registry_token_loadgen::admin::{self, Snapshot};
use registry_token_loadgen::http::{self, loopback_target, plain_target, Target};
use registry_token_loadgen::jose::{b64, sha256, AuthorityKey, OpTokClaims};
use registry_token_loadgen::load::{self, Mode, OpTokPool, RunSpec, Workload};

use cli::{check_bounds, Cli};
use report::report;

fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2)
        }
    }
}

/// The whole run: whether Envoy's counters agree with what the load saw; an error on a
/// usage or setup problem.
fn run(cli: &Cli) -> Result<bool, String> {
    check_bounds(cli)?;
    let (target, x5t) = target(cli)?;
    let admin = plain_target(&cli.admin)?;
    // Is it there, and is it the filter?
    let before = admin::snapshot(&admin).map_err(|e| {
        format!(
            "cannot read Envoy's admin at {}: {e}\n(start the gateway with `make run` first)",
            cli.admin
        )
    })?;
    let workload = workload(cli, &target.host, x5t.as_deref())?;
    let spec = RunSpec {
        target,
        connections: cli.connections,
        duration: Duration::from_secs(cli.duration),
        rate: (cli.rate > 0.0).then_some(cli.rate),
        progress: true,
        max_requests: cli.max_requests,
    };
    let before = admin::snapshot(&admin).unwrap_or(before);
    let result = load::run(&spec, &workload);
    let after = counted(&admin, &before, result.responses())?;
    Ok(report(cli.mode, &result, &workload, &before, &after))
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The gateway as a load target (loopback only; TLS with `--ca`, a client certificate
/// with `--cert` and `--key`) and, with a client certificate, its `x5t#S256`.
fn target(cli: &Cli) -> Result<(Target, Option<String>), String> {
    let (addr, host, tls) = loopback_target(&cli.target)?;
    if !tls && cli.mode != Mode::Mtls {
        return Ok((
            Target {
                addr,
                host,
                tls: None,
            },
            None,
        ));
    }
    if !tls {
        return Err("--mode mtls needs an https:// --target".into());
    }
    let ca = read(cli.ca.as_deref().ok_or("https needs --ca")?)?;
    let mut x5t = None;
    let client = match (&cli.cert, &cli.key) {
        (Some(c), Some(k)) => {
            let cert = read(c)?;
            let der = pem_certificates(&cert)
                .map_err(|e| format!("{c}: {e}"))?
                .into_iter()
                .next()
                .ok_or_else(|| format!("{c}: no certificate"))?;
            x5t = Some(b64(&sha256(&der)));
            Some((cert, read(k)?))
        }
        (None, None) if cli.mode != Mode::Mtls => None,
        _ => return Err("--mode mtls needs --cert and --key".into()),
    };
    let config = http::tls_config(&ca, client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())))?;
    let name_text = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(name_text)
        .map_err(|e| format!("server name: {e}"))?;
    Ok((
        Target {
            addr,
            host,
            tls: Some((config, name)),
        },
        x5t,
    ))
}

/// The OpToks (and DPoP proofs) of the run, made before it starts; says how many.
fn workload(cli: &Cli, host: &str, x5t: Option<&str>) -> Result<Workload, String> {
    let authority = AuthorityKey::from_pem(&read(&cli.authority_key)?, cli.kid.clone())
        .map_err(|e| format!("{}: {e}", cli.authority_key))?;
    let claims = OpTokClaims {
        issuer: cli.iss.clone(),
        audience: cli.aud.clone(),
        plan: cli.plan.clone(),
        ttl: cli.duration + 600,
        ..OpTokClaims::default()
    };
    let path = format!("{}?{}", cli.path, cli.query);
    let mode = cli.mode;
    println!(
        "registry-token loadgen: {} connection(s) × {} s against {}{path} (mode {}, {})",
        cli.connections,
        cli.duration,
        cli.target,
        mode.name(),
        if cli.rate > 0.0 {
            format!("open loop at {} requests/s", cli.rate)
        } else {
            "closed loop".into()
        }
    );
    let t = Instant::now();
    let pool = OpTokPool::generate(&authority, &claims, mode, cli.optoks, x5t)?;
    println!(
        "pre-generated {} distinct OpToks (kid {}) in {:.1} s",
        pool.len(),
        authority.kid(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let expect = if cli.rate > 0.0 {
        cli.rate.ceil() as u64
    } else {
        cli.expect_rate
    };
    let workload = Workload::with_mode(
        mode,
        Arc::new(pool),
        cli.optoks,
        host,
        &path,
        &cli.realm,
        cli.duration,
        expect,
    )?;
    let proofs = match mode {
        Mode::HostileDpop => "hostile DPoP proofs (cycled: the filter records no refused proof)",
        Mode::Dpop => "DPoP proofs (ES256)",
        _ => return Ok(workload),
    };
    println!(
        "pre-generated {} {proofs} in {:.1} s",
        workload.pregenerated(),
        t.elapsed().as_secs_f64()
    );
    Ok(workload)
}

/// Envoy's counters once they account for `responses` answers since `before` (at most
/// 15 s): the counters are immediate, the histogram is merged at the stats flush (5 s by
/// default).
fn counted(admin: &Target, before: &Snapshot, responses: u64) -> Result<Snapshot, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let after = admin::snapshot(admin)?;
        let counted =
            after.issued() + after.rejected_total() - (before.issued() + before.rejected_total());
        let sampled = after.count.saturating_sub(before.count);
        if (counted >= responses && sampled >= responses) || Instant::now() >= deadline {
            return Ok(after);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn mtls_needs_https_and_a_client_certificate() {
        let err = |args: &[&str]| target(&parse(args).unwrap()).err().unwrap_or_default();
        assert_eq!(
            err(&["--mode", "mtls"]),
            "--mode mtls needs an https:// --target"
        );
        assert_eq!(
            err(&["--target", "https://127.0.0.1:8443"]),
            "https needs --ca"
        );
        let plain = target(&parse(&[]).unwrap()).unwrap();
        assert!(plain.0.tls.is_none() && plain.1.is_none());
        assert_eq!(plain.0.host, "127.0.0.1:8085");
    }
}
