//! `--state`: what `--storage.path` costs (state file size and write time per cycle)
//! and how long a restarted exporter takes to serve the restored members.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::args::{Args, Scenario};
use crate::report::{bytes, mib, ms, percentile, sorted};
use crate::run::Run;
use crate::scrape::Variant;

/// The start of the series every image with restored members has, one per image.
const RESTORED_SERIES: &str = "ims_image_last_success_timestamp_seconds{";

/// State writes measured before the restart.
const STATE_WRITES: usize = 6;

pub(crate) async fn state(args: &Args, s: &Scenario, bin: &Path) -> Result<(), String> {
    let mut run = Run::start(args, s, bin).await?;
    let result = state_run(s, bin, &mut run).await;
    run.stop().await;
    result
}

async fn state_run(s: &Scenario, bin: &Path, run: &mut Run) -> Result<(), String> {
    let writes = wait_state_writes(&s.name, run).await?;
    let (listening, served) = restart_restored(s, bin, run).await?;
    let rss = run.kib("VmRSS")?;
    print_state_table(
        s,
        &StateFigures {
            size: sorted(writes.iter().map(|w| w.0).collect()),
            secs: sorted(writes.iter().map(|w| w.1).collect()),
            listening,
            served,
            rss,
        },
    );
    Ok(())
}

/// Waits for [`STATE_WRITES`] writes after the first; their (bytes, seconds).
async fn wait_state_writes(name: &str, run: &mut Run) -> Result<Vec<(f64, f64)>, String> {
    // The first write follows the first cycle; every cycle changes the last success
    // times, so every cycle writes.
    let deadline = Instant::now() + run.cycle_budget * (STATE_WRITES as u32 + 2);
    while run.exporter.logs().state_writes.len() < STATE_WRITES + 1 {
        run.exporter.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "[{name}] timed out waiting for state writes; the exporter's log:\n{}",
                run.exporter.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first write is left out (it overlaps the first scrape-free cycle's start-up).
    Ok(run.exporter.logs().state_writes[1..].to_vec())
}

/// Kills the exporter and restarts it: seconds from the process start to listening,
/// and to serving every image's restored members.
async fn restart_restored(s: &Scenario, bin: &Path, run: &mut Run) -> Result<(f64, f64), String> {
    // kill -9, then a restart against an API that now answers in 30 s: what is served
    // before the first poll can end is the restored state.
    run.fleet.state.set_latency(Duration::from_secs(30));
    run.exporter.kill();
    let started = Instant::now();
    run.restart_exporter(bin).await?;
    let listening = started.elapsed().as_secs_f64();
    loop {
        let sc = run.scrape(Variant::Text).await?;
        let text = String::from_utf8_lossy(sc.body);
        let images = text
            .lines()
            .filter(|l| l.starts_with(RESTORED_SERIES))
            .count();
        if images == s.images {
            return Ok((listening, started.elapsed().as_secs_f64()));
        }
        if started.elapsed() > run.cycle_budget {
            return Err(format!("[{}] the restored state was not served", s.name));
        }
    }
}

/// What `--state` measured.
struct StateFigures {
    /// Sorted bytes and seconds of the state writes.
    size: Vec<f64>,
    secs: Vec<f64>,
    /// Seconds from the restart to listening and to the restored members served.
    listening: f64,
    served: f64,
    /// KiB after the restore.
    rss: u64,
}

fn print_state_table(s: &Scenario, f: &StateFigures) {
    let name = &s.name;
    println!();
    println!(
        "| state (`--storage.path`), {name}: {} images × {} members | median | max |",
        s.images, s.members
    );
    println!("|---|---|---|");
    println!(
        "| state file per write | {} | {} |",
        bytes(percentile(&f.size, 50.0) as usize),
        bytes(f.size.last().copied().unwrap_or(0.0) as usize)
    );
    println!(
        "| write time per cycle (serialise, write, fsync, rename) | {} | {} |",
        ms(percentile(&f.secs, 50.0)),
        ms(f.secs.last().copied().unwrap_or(0.0))
    );
    println!(
        "| restart: process start to listening | {} | |",
        ms(f.listening)
    );
    println!(
        "| restart: process start to every image's restored members served | {} | |",
        ms(f.served)
    );
    println!("| RSS after the restore | {} | |", mib(f.rss));
}
