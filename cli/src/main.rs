//! `registry-token`: Offline Kit token bundles (docs/OFFLINE.md).
//!
//! Exit status: 0 done, 1 refused or not verified (one line on stderr naming the field or
//! the file), 2 bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use registry_token_cli::{bundle, canonical, credential_provider, request, source, verify};
use registry_token_core::policy::revocation::{parse_remote, RevocationSet};
use registry_token_core::token::keys::KeySet;

#[derive(Parser)]
#[command(
    name = "registry-token",
    version,
    about = "Offline Kit token bundles: signed, deterministic registry tokens for air-gapped mirrors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArgs {
    /// The gateway's configuration: an Envoy YAML holding the filter, an Istio WasmPlugin,
    /// or the plugin configuration alone (JSON or YAML). REGISTRY_TOKEN_* overrides apply
    /// as in the filter.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// With several Wasm filters in --config: the one with this config.name or root_id.
    #[arg(long, value_name = "NAME", requires = "config")]
    filter: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a bundle of registry tokens from a request: DIR/tokens/<name>.jwt,
    /// DIR/manifest.json, DIR/manifest.jws.
    Bundle {
        #[command(flatten)]
        config: ConfigArgs,
        /// The bundle request (JSON).
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// The bundle folder to create (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The current contents of the remote revocation list (revocation.url), as the
        /// gateway would fetch it.
        #[arg(long, value_name = "FILE")]
        revocation_list: Option<PathBuf>,
    },
    /// Check a bundle: the manifest signature, every digest, every token's signature and
    /// claims; list the tokens.
    VerifyBundle {
        /// The bundle folder.
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Trusted keys as a JWKS (the gateway's GET /jwks, or `registry-token jwks`).
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        jwks: Option<PathBuf>,
        /// Check validity at this RFC 3339 time instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Print the JWKS of the signing key (and signing.publishedKeys), as the gateway's
    /// GET /jwks serves it: the trust anchor for `verify-bundle --jwks`.
    Jwks {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// A kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1): reads a
    /// CredentialProviderRequest on standard input and answers the pod's service-account
    /// token as the registry's Basic password (docs/TRUST.md, Kubernetes).
    CredentialProvider {
        /// The Basic user name (the gateway reads only the password).
        #[arg(long, default_value = "serviceaccount")]
        username: String,
        /// Longest time the kubelet may cache an answer, seconds (it is also cut to the
        /// token's remaining lifetime less a minute).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(0..=86_400))]
        max_cache_seconds: u64,
    },
}

fn run_credential_provider(username: &str, max_cache_seconds: u64) -> Result<(), String> {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .take(credential_provider::MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("reading the request: {e}"))?;
    let opts = credential_provider::Options {
        username: username.to_string(),
        max_cache_seconds,
    };
    let answer = credential_provider::answer(&input, &opts, now())?;
    println!("{answer}");
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

fn load(args: &ConfigArgs) -> Result<source::Loaded, String> {
    let path = args.config.as_deref().ok_or("--config FILE is required")?;
    let loaded = source::load(path, args.filter.as_deref(), &env())?;
    for name in &loaded.ignored_env {
        eprintln!(
            "registry-token: note: {name} is set but not passed to the filter by {} \
             (not in host_env_keys), so it is not applied",
            loaded.origin
        );
    }
    for w in &loaded.warnings {
        eprintln!("registry-token: warning: {w}");
    }
    Ok(loaded)
}

fn read_file(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

fn run_bundle(
    config: &ConfigArgs,
    request_path: &Path,
    out: &Path,
    revocation_list: Option<&Path>,
) -> Result<(), String> {
    bundle::check_out(out)?;
    let loaded = load(config)?;
    let config = &loaded.config;
    let req = request::parse(&read_file("--request", request_path)?)
        .map_err(|e| format!("--request {}: {e}", request_path.display()))?;
    let lists = revocation_list
        .map(|p| {
            parse_remote(&read_file("--revocation-list", p)?)
                .map_err(|e| format!("--revocation-list {}: {e}", p.display()))
        })
        .transpose()?;
    let now = now();
    if config.revocation.is_some() && lists.is_none() {
        eprintln!(
            "registry-token: warning: the configuration has a remote revocation list \
             (revocation.url); only the inline lists were checked (give --revocation-list FILE)"
        );
    }
    let remote = request::remote_list(config, lists.as_ref().map(|l| l as &dyn RevocationSet), now);
    let approved =
        request::approve(req, config, remote, now).map_err(|e| format!("refused: {e}"))?;
    let built = bundle::build(&approved, config)?;
    bundle::write(&built, out)?;
    println!(
        "bundle {}: {} token(s) in {} (kid {}, until {})",
        approved.request.bundle,
        approved.tokens.len(),
        out.display(),
        config.signing.kid,
        registry_token_core::wire::time::rfc3339(approved.not_after)
    );
    for t in &approved.tokens {
        let granted: Vec<String> = t.granted.iter().map(ToString::to_string).collect();
        println!("  {}  {}", bundle::token_file(&t.name), granted.join(" "));
    }
    Ok(())
}

fn run_verify(
    dir: &Path,
    config: &ConfigArgs,
    jwks: Option<&Path>,
    at: Option<&str>,
) -> Result<(), String> {
    let keys = match (jwks, &config.config) {
        (Some(path), _) => {
            let bytes = read_file("--jwks", path)?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("--jwks {}: not JSON: {e}", path.display()))?;
            KeySet::from_jwks(&value).map_err(|e| format!("--jwks {}: {e}", path.display()))?
        }
        (None, Some(_)) => {
            let loaded = load(config)?;
            KeySet::from_jwks(&loaded.config.signing.jwks).map_err(|e| e.to_string())?
        }
        (None, None) => {
            return Err("give the trusted keys: --jwks FILE or --config FILE".to_string())
        }
    };
    if keys.is_empty() {
        return Err("the trusted key set holds no usable key".to_string());
    }
    let now = match at {
        Some(t) => request::parse_time("--at", t).map_err(|e| e.replace("request field ", ""))?,
        None => now(),
    };
    let report = verify::verify(dir, &keys, now).map_err(|e| format!("{}/{e}", dir.display()))?;
    let m = &report.manifest;
    println!(
        "bundle {}: manifest signature good (kid {}), {} token(s) for service {} subject {}, \
         valid {} .. {}",
        m.bundle,
        m.kid,
        report.tokens.len(),
        m.service,
        m.subject,
        m.not_before,
        m.not_after
    );
    for t in &report.tokens {
        println!(
            "  {}  {}  expires {}",
            t.name,
            t.access.join(" "),
            t.expires_at
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bundle {
            config,
            request,
            out,
            revocation_list,
        } => run_bundle(config, request, out, revocation_list.as_deref()),
        Command::VerifyBundle {
            dir,
            config,
            jwks,
            at,
        } => run_verify(dir, config, jwks.as_deref(), at.as_deref()),
        Command::Jwks { config } => load(config).map(|l| {
            println!("{}", canonical::to_string(&l.config.signing.jwks));
        }),
        Command::CredentialProvider {
            username,
            max_cache_seconds,
        } => run_credential_provider(username, *max_cache_seconds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-token: {e}");
            ExitCode::from(1)
        }
    }
}
