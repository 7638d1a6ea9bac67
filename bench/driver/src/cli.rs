//! The command line (clap): `bench [OPTIONS]` runs the whole comparison; `bench render`
//! writes a report again from a results file; `bench compare` sets two results files
//! side by side. [`RunArgs::settings`] turns the options into a run's [`Settings`]
//! (numbers clamped to their ranges, paths checked).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::scenarios::scenarios;

/// The command line of `bench`.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "make bench: the whole performance comparison of the registry token filter on this machine",
    long_about = None,
    after_help = "Envoy runs with --concurrency 1 pinned to CPU 0 (openssl speed too), the load generator \
                  on CPU 1. Every figure is measured in this run; every target is a ratio between figures \
                  of this run. The run writes its figures to the results file and renders the report and \
                  the plot from it.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Without a subcommand: run the comparison.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The run's options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// What to do besides running.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the report (and the plot) again from a results file, without measuring.
    Render(RenderArgs),
    /// Compare two results files: the ratio new / old of every figure both measured.
    Compare(CompareArgs),
}

/// The options of a run (every one also works as `--name=value`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seconds measured per scenario, after 2 s of warm-up (1–600).
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub seconds: u64,
    /// Keep-alive connections of each load (1–256).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub connections: u64,
    /// Seconds of the memory run at full load (0: none; at most 3600).
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub soak: u64,
    /// Seconds per point of the latency-against-offered-load sweep (1–120).
    #[arg(long, value_name = "S", default_value_t = 8)]
    pub sweep_seconds: u64,
    /// Distinct OpToks per binding kind (100–200000).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub optoks: u64,
    /// `openssl speed -seconds` (1–10).
    #[arg(long, value_name = "S", default_value_t = 3)]
    pub speed_seconds: u64,
    /// Alternating rounds of ceilings and scenarios; figures are the median round (1–9).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: u64,
    /// Measure only these parts (comma-separated): ceiling, crypto (or one crypto-…
    /// ceiling), scenario keys, hostcalls, ingest, revocation-feed, guard, sweep, soak;
    /// the report marks the rest not measured.
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// Size of the large blob of the guard phase, MiB (1–4096).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub guard_mib: u64,
    /// The report.
    #[arg(long, value_name = "FILE", default_value = "docs/PERFORMANCE.md")]
    pub out: PathBuf,
    /// The latency plot (PNG) [default: performance-latency.png beside --out].
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// The results file (JSON) [default: performance-results.json beside --out].
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Work directory: keys, Envoy configurations and logs, ledger databases.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub work: PathBuf,
    /// The Envoy binary.
    #[arg(long, value_name = "FILE", default_value = ".venv/bin/envoy")]
    pub envoy: PathBuf,
    /// The filter module.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "target/wasm32-wasip1/release/registry_token_filter.wasm"
    )]
    pub wasm: PathBuf,
    /// The crypto-ceiling probe module (bench/probe).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "target/wasm32-wasip1/release/registry_token_crypto_probe.wasm"
    )]
    pub probe: PathBuf,
    /// The ledger binary.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "target/release/registry-token-ledger"
    )]
    pub ledger: PathBuf,
    /// Also measure this module against another build, side by side (about 3 minutes).
    #[arg(long, value_name = "OLD.wasm")]
    pub compare_wasm: Option<PathBuf>,
    /// The scenarios of --compare-wasm (ones without the ledger).
    #[arg(long, value_name = "LIST", default_value = "rs256,es256,dpop-es256")]
    pub compare: String,
    /// Exit 1 when a target is not met (otherwise only errors and counter disagreement
    /// fail the run).
    #[arg(long)]
    pub strict: bool,
}

/// `bench render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The results file.
    #[arg(
        value_name = "RESULTS.json",
        default_value = "docs/performance-results.json"
    )]
    pub results: PathBuf,
    /// The report to write.
    #[arg(long, value_name = "FILE", default_value = "docs/PERFORMANCE.md")]
    pub out: PathBuf,
    /// The latency plot to write [default: performance-latency.png beside --out].
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// `bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The older results file.
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,
    /// The newer one.
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,
}

/// A run's settings: [`RunArgs`] clamped and checked.
#[derive(Debug)]
pub struct Settings {
    /// Seconds per scenario.
    pub seconds: u64,
    /// Connections per load.
    pub connections: usize,
    /// Seconds of the memory run.
    pub soak: u64,
    /// Seconds per sweep point.
    pub sweep_seconds: u64,
    /// OpToks per binding kind.
    pub optoks: usize,
    /// `openssl speed -seconds`.
    pub speed_seconds: u64,
    /// Rounds.
    pub rounds: u64,
    /// `--only`.
    pub only: Option<Vec<String>>,
    /// The guard phase's large blob, MiB.
    pub guard_mib: u64,
    /// The report.
    pub out: PathBuf,
    /// The plot.
    pub plot: PathBuf,
    /// The results file.
    pub results: PathBuf,
    /// The work directory (created).
    pub work: PathBuf,
    /// Envoy.
    pub envoy: PathBuf,
    /// The filter module.
    pub wasm: PathBuf,
    /// The probe module.
    pub probe: PathBuf,
    /// The ledger binary.
    pub ledger: PathBuf,
    /// `--compare-wasm`, absolute.
    pub compare_wasm: Option<PathBuf>,
    /// The scenarios compared.
    pub compare: Vec<&'static str>,
    /// `--strict`.
    pub strict: bool,
    /// The command, for the report (`BENCH_COMMAND`, or `bench` and its arguments).
    pub command: String,
}

impl Settings {
    /// Whether `key` is measured (`--only`).
    pub fn want(&self, key: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|k| k == key))
    }

    /// OpToks to make per binding kind: `--optoks`, or the fewest allowed when only the
    /// guard (it needs one, for its registry token) and the hostcalls (the probe reads
    /// none) are measured.
    pub fn optoks_needed(&self) -> usize {
        match &self.only {
            Some(l) if l.iter().all(|k| k == "guard" || k == "hostcalls") => MIN_OPTOKS,
            _ => self.optoks,
        }
    }
}

/// The fewest OpToks per binding kind (`--optoks`).
pub const MIN_OPTOKS: usize = 100;

/// `name` beside `out`.
pub fn beside(out: &Path, name: &str) -> PathBuf {
    out.parent().unwrap_or(Path::new("")).join(name)
}

impl RunArgs {
    /// The options as settings, without touching the file system.
    pub fn settings(self, command: String) -> Result<Settings, String> {
        let mut compare = Vec::new();
        if self.compare_wasm.is_some() {
            for key in self.compare.split(',') {
                match scenarios()
                    .into_iter()
                    .find(|s| s.key == key.trim() && !s.ledger)
                {
                    Some(sc) => compare.push(sc.key),
                    None => {
                        return Err(format!(
                            "--compare: {key} is not a scenario without the ledger"
                        ))
                    }
                }
            }
        }
        Ok(Settings {
            seconds: self.seconds.clamp(1, 600),
            connections: self.connections.clamp(1, 256) as usize,
            soak: self.soak.min(3600),
            sweep_seconds: self.sweep_seconds.clamp(1, 120),
            optoks: (self.optoks as usize).clamp(MIN_OPTOKS, 200_000),
            speed_seconds: self.speed_seconds.clamp(1, 10),
            rounds: self.rounds.clamp(1, 9),
            only: self
                .only
                .map(|l| l.split(',').map(|s| s.trim().to_string()).collect()),
            guard_mib: self.guard_mib.clamp(1, 4096),
            plot: self
                .plot
                .unwrap_or_else(|| beside(&self.out, "performance-latency.png")),
            results: self
                .results
                .unwrap_or_else(|| beside(&self.out, "performance-results.json")),
            out: self.out,
            work: self.work,
            envoy: self.envoy,
            wasm: self.wasm,
            probe: self.probe,
            ledger: self.ledger,
            compare_wasm: self.compare_wasm,
            compare,
            strict: self.strict,
            command,
        })
    }
}

/// Makes the work directory and resolves the paths a run needs before it starts.
pub fn resolve(s: &mut Settings) -> Result<(), String> {
    if let Some(p) = &s.compare_wasm {
        s.compare_wasm = Some(
            std::fs::canonicalize(p).map_err(|e| format!("--compare-wasm {}: {e}", p.display()))?,
        );
    }
    std::fs::create_dir_all(&s.work).map_err(|e| format!("{}: {e}", s.work.display()))?;
    s.wasm = std::fs::canonicalize(&s.wasm)
        .map_err(|e| format!("{}: {e} (run make wasm)", s.wasm.display()))?;
    s.work = std::fs::canonicalize(&s.work).map_err(|e| e.to_string())?;
    if !s.envoy.is_file() {
        return Err(format!("{} not found (make envoy)", s.envoy.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_old_parsers() {
        let cli = parse(&[]).expect("no arguments");
        assert!(cli.command.is_none());
        let s = cli.run.settings("c".into()).expect("settings");
        assert_eq!(
            (s.seconds, s.connections, s.soak, s.sweep_seconds),
            (10, 8, 300, 8)
        );
        assert_eq!((s.optoks, s.speed_seconds, s.rounds), (20_000, 3, 3));
        assert_eq!(s.out, Path::new("docs/PERFORMANCE.md"));
        assert_eq!(s.plot, Path::new("docs/performance-latency.png"));
        assert_eq!(s.results, Path::new("docs/performance-results.json"));
        assert_eq!(s.work, Path::new("target/bench"));
        assert_eq!(s.envoy, Path::new(".venv/bin/envoy"));
        assert_eq!(
            s.wasm,
            Path::new("target/wasm32-wasip1/release/registry_token_filter.wasm")
        );
        assert_eq!(
            s.probe,
            Path::new("target/wasm32-wasip1/release/registry_token_crypto_probe.wasm")
        );
        assert_eq!(s.ledger, Path::new("target/release/registry-token-ledger"));
        assert!(s.compare_wasm.is_none() && s.compare.is_empty() && !s.strict);
        assert!(s.want("anything"));
        assert_eq!((s.guard_mib, s.optoks_needed()), (256, 20_000));
    }

    #[test]
    fn only_the_guard_and_the_hostcalls_need_few_optoks() {
        let with = |args: &[&str]| {
            parse(args)
                .expect("parse")
                .run
                .settings(String::new())
                .expect("settings")
        };
        let s = with(&["--only", "guard", "--guard-mib", "9999"]);
        assert!(s.want("guard") && !s.want("es256") && !s.want("ceiling"));
        assert_eq!((s.optoks_needed(), s.guard_mib), (MIN_OPTOKS, 4096));
        assert_eq!(with(&["--only", "guard,es256"]).optoks_needed(), 20_000);
        let h = with(&["--only", "hostcalls"]);
        assert!(h.want("hostcalls") && !h.want("crypto") && !h.want("crypto-es"));
        assert_eq!(h.optoks_needed(), MIN_OPTOKS);
        assert_eq!(
            with(&["--only", "hostcalls,guard"]).optoks_needed(),
            MIN_OPTOKS
        );
        assert_eq!(
            with(&["--only", "hostcalls,crypto"]).optoks_needed(),
            20_000
        );
        assert_eq!(with(&["--guard-mib", "0"]).guard_mib, 1);
    }

    #[test]
    fn options_are_clamped_as_before() {
        let s = parse(&[
            "--seconds=0",
            "--connections",
            "1000",
            "--soak",
            "99999",
            "--optoks",
            "5",
            "--rounds",
            "20",
            "--only",
            "ceiling, sweep",
            "--strict",
        ])
        .expect("parse")
        .run
        .settings(String::new())
        .expect("settings");
        assert_eq!((s.seconds, s.connections, s.soak), (1, 256, 3600));
        assert_eq!((s.optoks, s.rounds, s.strict), (100, 9, true));
        assert!(s.want("sweep") && s.want("ceiling") && !s.want("soak"));
    }

    #[test]
    fn outputs_go_beside_the_report() {
        let s = parse(&["--out", "/tmp/q/PERFORMANCE.md"])
            .expect("parse")
            .run
            .settings(String::new())
            .expect("settings");
        assert_eq!(s.plot, Path::new("/tmp/q/performance-latency.png"));
        assert_eq!(s.results, Path::new("/tmp/q/performance-results.json"));
    }

    #[test]
    fn compare_takes_ledger_less_scenarios() {
        let with = |list: &str| {
            parse(&["--compare-wasm", "old.wasm", "--compare", list])
                .expect("parse")
                .run
                .settings(String::new())
        };
        assert_eq!(
            with("rs256, dpop-es256").expect("ok").compare,
            vec!["rs256", "dpop-es256"]
        );
        assert!(with("es256-ledger").is_err());
        assert!(with("nope").is_err());
    }

    #[test]
    fn subcommands_and_errors() {
        assert!(matches!(
            parse(&["render"]).expect("render").command,
            Some(Command::Render(RenderArgs { ref results, .. })) if results == Path::new("docs/performance-results.json")
        ));
        assert!(matches!(
            parse(&["compare", "a.json", "b.json"])
                .expect("compare")
                .command,
            Some(Command::Compare(_))
        ));
        assert!(parse(&["--nope"]).is_err(), "unknown options are refused");
        assert!(parse(&["--seconds", "x"]).is_err(), "numbers are numbers");
        assert!(parse(&["render", "--seconds", "3"]).is_err());
        // One line per option in --help.
        let help = Cli::command().render_help().to_string();
        for opt in [
            "--seconds",
            "--connections",
            "--soak",
            "--sweep-seconds",
            "--optoks",
            "--speed-seconds",
            "--rounds",
            "--only",
            "--guard-mib",
            "--out",
            "--plot",
            "--results",
            "--work",
            "--envoy",
            "--wasm",
            "--probe",
            "--ledger",
            "--compare-wasm",
            "--compare ",
            "--strict",
        ] {
            assert!(help.contains(opt), "{opt} in --help:\n{help}");
        }
        for part in ["guard", "hostcalls", "revocation-feed", "soak"] {
            assert!(help.contains(part), "--only {part} in --help:\n{help}");
        }
        Cli::command().debug_assert();
    }
}
