//! `ims-bench`: the fleet-scale benchmark (how to run it, its targets and the current
//! figures: BENCHMARKS.md).
//!
//! Starts the fake IMS in this process on 127.0.0.1 with N images × M members and a
//! per-request latency L, runs the release `ims-exporter` built next to this binary
//! against it as a child process, and prints one table: poll cycle wall time and its
//! ratio to the ideal `requests × L / concurrency`, exporter CPU per cycle, peak and
//! steady RSS, `/metrics` latency (median and p99, with and without gzip), bytes per
//! scrape and series count. `--churn-cycles N` instead replaces a share of every
//! image's members each cycle and prints the exporter's RSS after every cycle.
//! `--state` instead runs the exporter with `--storage.path` and prints the state
//! file's size and write time per cycle, and the time a restarted exporter takes to
//! serve the restored members. `--events` instead measures share-change events: trace
//! to `/metrics` latency, API requests per hour, CPU of the event path.
//!
//! ```sh
//! cargo build --release --bins
//! cargo run --release --bin ims-bench -- --scenario all
//! ```
//!
//! Cycle boundaries are seen from the fake's side: the exporter makes a known number
//! of requests per cycle (one per page), so cycle `c` has started once the fake has
//! received `c × requests + 1` requests. Measured cycles are never disturbed by a
//! scrape: the `ims_poll_duration_seconds` gauge of cycle `c` is read during cycle
//! `c + 1`, which is then left out, so only every other cycle is measured.

mod args;
mod churn;
mod events;
mod exporter;
mod fleet;
mod incoming;
mod peer;
mod proc;
mod report;
mod run;
mod scrape;
mod state;
mod table;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use args::{scenarios, Args, Scenario};
use churn::churn;
use exporter::exporter_binary;
use state::state;
use table::{measure, print_table};

/// `job` for scenario `s`, given up after `--timeout`.
async fn in_time<T>(
    args: &Args,
    s: &Scenario,
    job: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(args.timeout, job)
        .await
        .map_err(|_| format!("[{}] ran out of time (--timeout)", s.name))?
}

async fn run(args: Args) -> Result<(), String> {
    let bin = exporter_binary(&args)?;
    eprintln!("exporter: {}", bin.display());
    let list = scenarios(&args);
    if let Some(offers) = args.incoming {
        for s in &list {
            in_time(&args, s, incoming::incoming(&args, s, &bin, offers)).await?;
        }
        return Ok(());
    }
    if args.peer {
        for s in &list {
            in_time(&args, s, peer::peer(&args, s, &bin)).await?;
        }
        return Ok(());
    }
    if args.events {
        for s in &list {
            in_time(&args, s, events::events(&args, s, &bin)).await?;
        }
        return Ok(());
    }
    if args.state {
        for s in &list {
            in_time(&args, s, state(&args, s, &bin)).await?;
        }
        return Ok(());
    }
    if let Some(cycles) = args.churn_cycles {
        for s in &list {
            in_time(&args, s, churn(&args, s, &bin, cycles)).await?;
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for s in &list {
        let row = in_time(&args, s, measure(&args, s, &bin)).await?;
        rows.push(row);
    }
    print_table(&rows, &args);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ims-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Leaving the select drops the running scenario, which kills the exporter.
    let result = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return Err("cannot install signal handlers".to_string());
        };
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
            _ = hup.recv() => Err("hung up".to_string()),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ims-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
