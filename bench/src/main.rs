//! `skyhook-bench`: Skyhook's benchmark harness (see docs/PERFORMANCE.md).
//!
//! - `serve`: `skyhook serve` (release build) on the embedded backend with a
//!   local receiver: throughput, latency at fixed rates, the machine's
//!   ceilings, peak RSS.
//! - `lambda`: every function binary under a local Runtime API emulator with
//!   moto behind it: size, cold-start init, first invocation, peak RSS.
//! - `aws-calls`: every AWS API call (through a counting proxy in front of
//!   moto) for one event at fan-out 1 and 10, success and one retry, and the
//!   cost per 1M deliveries.
//!
//! Each writes `<out>/<section>.json`, merges all sections into
//! `<out>/report.json` and regenerates the marked section of the doc.
//! Everything runs on 127.0.0.1, bounded in time and count.

mod aws;
// The test suite's emulator, shared verbatim (binaries from a given directory).
#[path = "../../shared/tests/lambda_emulator/mod.rs"]
mod emulator;
mod lambda;
mod net;
mod report;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skyhook-bench", about = "Skyhook's benchmark harness")]
struct Cli {
    /// Directory for the JSON reports.
    #[arg(long, global = true, default_value = "bench/results")]
    out: PathBuf,
    /// The document whose generated section is rewritten ("-" for none).
    #[arg(long, global = true, default_value = "docs/PERFORMANCE.md")]
    doc: String,
    /// Seconds instead of minutes, no thresholds (the test suite runs this).
    #[arg(long, global = true)]
    smoke: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// skyhook serve on SQLite: throughput, latency, ceilings, RSS.
    Serve {
        /// The skyhook binary (a release build for real numbers).
        #[arg(long, default_value = "target/release/skyhook")]
        skyhook: PathBuf,
        /// Only these phases (comma-separated: rates, fanout1, fanout10).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Concurrent publishers in the throughput phases.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Seconds of publishing per throughput phase.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Lambda cold starts under the Runtime API emulator, moto behind.
    Lambda {
        /// Directory holding the function binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Cold starts per function.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// AWS API calls per unit of work and cost per 1M deliveries.
    AwsCalls {
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Only regenerate the document from `<out>/report.json`.
    Render,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        let section = match cli.command {
            Command::Serve { skyhook, only, concurrency, seconds } => {
                let mut opts =
                    if cli.smoke { serve::ServeOptions::smoke(skyhook) } else { serve::ServeOptions::full(skyhook) };
                opts.only = only;
                opts.concurrency = concurrency.unwrap_or(opts.concurrency);
                opts.throughput_secs = seconds.unwrap_or(opts.throughput_secs);
                Some(("serve", serve::run(opts).await?))
            }
            Command::Lambda { bin_dir, runs } => {
                let runs = if cli.smoke { runs.min(2) } else { runs };
                Some(("lambda", lambda::run(&bin_dir, runs).await?))
            }
            Command::AwsCalls { bin_dir } => Some(("awsCalls", aws::run(&bin_dir).await?)),
            Command::Render => None,
        };
        report::write(&cli.out, section, &cli.doc)?;
        Ok::<_, net::BoxError>(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("skyhook-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
