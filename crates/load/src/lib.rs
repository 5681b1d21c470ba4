//! The load generator (`playground load`, or `playground-load` on its own):
//! opens many connections to one or more servers, drives
//! traffic, follows `reconnect`, and reports what happened.
//!
//! The original client's positional form and defaults still work:
//! `playground load tcp 10000 127.0.0.1 40000` opens 10,000 connections,
//! one every 15 ms, each sending `msg:` every 250 ms for 60 s.
//!
//! How it is put together:
//! - `args`, `parse` and `plan`: the command line, checked and resolved into
//!   targets, source addresses and a role per client;
//! - `script`: what each role says and which replies are right (`expect`),
//!   shared by every transport; `tcp` drives a script over a TCP connection, `udp`
//!   over a UDP socket (logging in over TCP, where `login` lives);
//!   `framing`: lines, or the original's packets, over TCP;
//! - `pace`: per-connection intervals or a total rate, and the send slots
//!   latencies are measured from; `stages`: ramps of connections and rate;
//! - `stats`, `timeline`, `delivery`: counters, latency histograms,
//!   the per-second timeline and the broadcast delivery check;
//! - `runner`: opens the clients on schedule and samples the timeline;
//! - `progress`, `report`, `plot`: what a person sees; `threshold`: the
//!   pass/fail checks and the exit code; `hdr` and `merge`: histograms in
//!   the JSON report and the merge of several generators' reports;
//! - `limits`, `net`: open-file limits and source-address binding;
//! - `testing`: fixtures the drivers' unit tests share.
//!
//! `runner` picks the driver by `Protocol`.

mod args;
mod delivery;
mod expect;
mod framing;
mod hdr;
mod limits;
mod merge;
mod net;
mod pace;
mod parse;
mod plan;
mod plot;
mod progress;
mod report;
mod runner;
mod script;
mod stages;
mod stats;
mod tcp;
#[cfg(test)]
mod testing;
mod threshold;
mod timeline;
mod udp;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use playground_common::wait_for_signal;
use tokio_util::sync::CancellationToken;

pub use args::{Broadcasters, LoadArgs, Mix, MixPart, ProgressMode, Protocol, ScenarioKind, SourceIps};
pub use delivery::{ClientDeliveries, DeliveryCheck};
pub use framing::Framing;
pub use merge::{MergeArgs, merge};
pub use plan::Plan;
/// Loads the font the pictures are written with (for other crates that draw too).
pub use plot::load_font;
pub use progress::Progress;
pub use report::{BroadcastReport, Report};
pub use script::Role;
pub use stages::Stage;
pub use stats::{Counts, Latencies, Percentiles};
pub use threshold::{Outcome, Threshold};
pub use timeline::Second;

/// The exit code of a run that failed its checks (a crossed threshold, or no
/// request succeeded): k6's code for crossed thresholds.
pub const FAILED_CHECKS: u8 = 99;

// The command line of `playground-load`, the load generator as a program of
// its own (`cargo install --path crates/load`); `playground load` takes the
// same arguments. The doc comment below is its `--help` text.
/// Generate load against a playground server (or the original's) and report
/// what happened.
#[derive(Debug, clap::Parser)]
#[command(name = "playground-load", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub command: LoadCommand,
}

/// `playground load`: a run, or `merge` of the reports of several runs.
#[derive(Debug, Clone, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 the run passed; 99 its results failed their checks (a --threshold was crossed, \
                  or no request succeeded); 1 it could not start; 2 the command line is wrong."
)]
pub struct LoadCommand {
    #[command(subcommand)]
    pub tool: Option<Tool>,
    #[command(flatten)]
    pub run: Option<LoadArgs>,
}

/// What `playground load` does besides a run.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Tool {
    /// Merge the --json reports of several load generators run at the same
    /// time into one: counts summed, histograms merged, percentiles
    /// recomputed, thresholds judged on the whole.
    Merge(MergeArgs),
}

impl Cli {
    /// Parses the arguments of a run (without the program name).
    pub fn parse_args(args: &[&str]) -> Result<LoadArgs, clap::Error> {
        let argv = std::iter::once("playground-load").chain(args.iter().copied());
        let cli = <Cli as clap::Parser>::try_parse_from(argv)?;
        cli.command.run.ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingRequiredArgument))
    }
}

/// The runtime for a load: `--threads` worker threads. One thread runs
/// every connection on the calling thread, which saves the cross-thread
/// wake-ups of a multi-threaded runtime and caps the generator at one core.
pub fn runtime(command: &LoadCommand) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = command.run.as_ref().and_then(|a| a.threads);
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(n)).enable_all().build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
}

/// Runs `playground load`: a run, or a merge of reports. The exit code is
/// [`FAILED_CHECKS`] when the results fail their checks.
pub async fn run(command: LoadCommand) -> anyhow::Result<ExitCode> {
    match (command.tool, command.run) {
        (Some(Tool::Merge(args)), _) => {
            let report = merge::merge_files(&args)?;
            finish(&report, args.json.as_deref())
        }
        (None, Some(args)) => load(args).await,
        (None, None) => anyhow::bail!("nothing to do: give a protocol (tcp or udp), or `merge`; see --help"),
    }
}

/// Runs the load with progress, prints the report, and writes `--json` and
/// `--plot`. Ctrl-C (or SIGTERM) stops the clients and reports what ran so far.
async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let plan = prepare(&args).await?;
    let progress = Progress::new(args.progress, args.progress_interval, plan.planned());
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signals(cancel.clone(), progress.notes()));
    let report = runner::execute(&plan, cancel, progress).await;
    signals.abort();
    let code = finish(&report, args.json.as_deref())?;
    if let Some(path) = &args.plot {
        plot::draw(&report, path)?;
    }
    Ok(code)
}

/// Prints the report, writes it as JSON to `json`, says what failed, and
/// returns the exit code.
fn finish(report: &Report, json: Option<&Path>) -> anyhow::Result<ExitCode> {
    // A closed pipe (`| head`) must not lose the --json and --plot outputs.
    let _ = writeln!(std::io::stdout().lock(), "{report}");
    if let Some(path) = json {
        std::fs::write(path, report.to_json() + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if report.failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("playground load: failed: {}", report.failures.join("; "));
    Ok(ExitCode::from(FAILED_CHECKS))
}

/// Runs the load without progress or signal handling and returns its report.
pub async fn execute(args: &LoadArgs) -> anyhow::Result<Report> {
    let plan = prepare(args).await?;
    Ok(runner::execute(&plan, CancellationToken::new(), Progress::Off).await)
}

/// Checks everything that can be checked before connecting.
async fn prepare(args: &LoadArgs) -> anyhow::Result<Plan> {
    let plan = Plan::new(args).await?;
    net::check_sources(&plan.sources)?;
    limits::ensure_open_files(plan.files_needed(), args.connections)?;
    if let Some(path) = &args.plot {
        // Fail now rather than after a long run.
        if path.extension().and_then(|e| e.to_str()).is_none_or(|e| !e.eq_ignore_ascii_case("png")) {
            anyhow::bail!("--plot {}: the picture is a PNG file, name it *.png", path.display());
        }
    }
    Ok(plan)
}

/// First Ctrl-C or SIGTERM: stop the clients and report. Second: quit at once.
async fn stop_on_signals(cancel: CancellationToken, notes: progress::Notes) {
    wait_for_signal().await;
    notes.say("stopping: closing connections and printing the report so far (Ctrl-C again to quit at once)");
    cancel.cancel();
    wait_for_signal().await;
    std::process::exit(130);
}
