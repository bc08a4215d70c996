//! `--events`: what share-change events (docs/events.md) deliver and cost, with the
//! exporter polling hourly and reading the fake's trace list:
//!
//! - trace to `/metrics`: a share is added and its trace recorded at once; the time
//!   until a scrape of `/metrics` shows the share, at trace reads every 2 s and 10 s
//!   (changes at random moments of the read interval);
//! - API requests per hour for the scenario's images: polls every 5 minutes alone, and
//!   hourly polls plus a trace read every 10 s (from the requests measured per cycle,
//!   per read and per traced change);
//! - CPU of the event path: 100 member traces a second for 30 s, each naming one image.

use std::path::Path;
use std::time::{Duration, Instant};

use ims_exporter::fake_ims::{member, member_trace};

use crate::args::{Args, Scenario};
use crate::fleet::{image_id, PROJECT};
use crate::report::{ms, percentile, sorted};
use crate::run::Run;
use crate::scrape::Variant;

/// Read intervals the latency is measured at.
const INTERVALS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(10)];
/// Traced changes per interval.
const CHANGES: [usize; 2] = [30, 12];
/// The CPU run: traces a second, for how long, read every second.
const TRACES_PER_SECOND: u64 = 100;
const CPU_RUN: Duration = Duration::from_secs(30);
/// How often the latency probe scrapes `/metrics`.
const PROBE_EVERY: Duration = Duration::from_millis(25);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A recipient no fleet image has, for change `n`.
fn newcomer(n: usize) -> String {
    format!(
        "{:032x}",
        0xe0e0_0000_0000_0000_0000_0000_0000_0000u128 + n as u128
    )
}

/// What one read interval measured.
struct Latency {
    interval: Duration,
    seconds: Vec<f64>,
    /// IMS requests per traced change, trace-list requests per read.
    requests_per_change: f64,
    requests_per_read: f64,
    per_cycle: u64,
}

pub(crate) async fn events(args: &Args, s: &Scenario, bin: &Path) -> Result<(), String> {
    let mut measured = Vec::new();
    for (interval, changes) in INTERVALS.into_iter().zip(CHANGES) {
        let mut args = args.clone();
        args.cts_interval = Some(interval);
        let mut run = Run::start(&args, s, bin).await?;
        let result = latency(&mut run, s, interval, changes).await;
        run.stop().await;
        measured.push(result?);
    }
    let cpu = {
        let mut args = args.clone();
        args.cts_interval = Some(Duration::from_secs(1));
        let mut run = Run::start(&args, s, bin).await?;
        let result = event_cpu(&mut run, s).await;
        run.stop().await;
        result?
    };
    print_events(s, &measured, cpu);
    Ok(())
}

/// Waits for the first poll cycle to end (every image polled once).
async fn first_cycle(run: &mut Run) -> Result<(), String> {
    run.wait_cycle_start(0).await?;
    let deadline = Instant::now() + run.cycle_budget;
    loop {
        let sc = run.scrape(Variant::Text).await?;
        if String::from_utf8_lossy(sc.body).contains("\nims_poll_duration_seconds ") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the first poll cycle did not end".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn latency(
    run: &mut Run,
    s: &Scenario,
    interval: Duration,
    changes: usize,
) -> Result<Latency, String> {
    first_cycle(run).await?;
    let (ims_before, cts_before) = (run.fleet.state.requests(), run.fleet.state.cts_requests());
    let started = Instant::now();
    let mut seconds = Vec::with_capacity(changes);
    for n in 0..changes {
        // A random moment of the read interval.
        let wait = interval.mul_f64(rand::random::<f64>());
        tokio::time::sleep(wait).await;
        let image = image_id(n % s.images);
        let who = newcomer(n);
        let t = now_ms();
        run.fleet.state.put_member(
            PROJECT,
            member(
                &image,
                &who,
                "project",
                "pending",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                None,
            ),
        );
        run.fleet.state.add_trace(
            PROJECT,
            member_trace("addMember", &image, &who, "bench", "192.0.2.1", t, t),
        );
        probe(run, &who, interval * 4 + Duration::from_secs(30)).await?;
        seconds.push((now_ms() - t) as f64 / 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let reads = (run.fleet.state.cts_requests() - cts_before) as f64;
    let reads_expected = (elapsed / interval.as_secs_f64()).max(1.0);
    Ok(Latency {
        interval,
        seconds: sorted(seconds),
        requests_per_change: (run.fleet.state.requests() - ims_before) as f64 / changes as f64,
        requests_per_read: reads / reads_expected,
        per_cycle: run.per_cycle,
    })
}

/// Scrapes `/metrics` until it names `member`.
async fn probe(run: &mut Run, member: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let sc = run.scrape(Variant::Text).await?;
        if memchr_str(sc.body, member.as_bytes()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{member} never showed on /metrics"));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

fn memchr_str(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// CPU seconds per second of the exporter while 100 traces a second arrive, and the
/// event polls they made.
async fn event_cpu(run: &mut Run, s: &Scenario) -> Result<(f64, f64), String> {
    first_cycle(run).await?;
    let polls_before = run.fleet.state.requests();
    let cpu_before = run.cpu()?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < CPU_RUN {
        let t = now_ms();
        let image = image_id(n as usize % s.images);
        run.fleet.state.add_trace(
            PROJECT,
            member_trace(
                "updateMember",
                &image,
                &newcomer(n as usize),
                "bench",
                "192.0.2.1",
                t,
                t,
            ),
        );
        n += 1;
        let due = Duration::from_millis(n * 1000 / TRACES_PER_SECOND);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    // The last read and its polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = started.elapsed().as_secs_f64();
    let cpu = (run.cpu()? - cpu_before) / secs;
    let polls = (run.fleet.state.requests() - polls_before) as f64 / secs;
    Ok((cpu, polls))
}

fn print_events(s: &Scenario, measured: &[Latency], (cpu, polls): (f64, f64)) {
    println!();
    println!(
        "| events, {}: {} images × {} members, poll_interval 1h | p50 | p95 | max | goal (p95) |",
        s.name, s.images, s.members
    );
    println!("|---|---|---|---|---|");
    for m in measured {
        let i = m.interval.as_secs_f64();
        println!(
            "| trace → /metrics, trace reads every {i:.0} s ({} changes) | {} | {} | {} | ≤ {:.0} s |",
            m.seconds.len(),
            ms(percentile(&m.seconds, 50.0)),
            ms(percentile(&m.seconds, 95.0)),
            ms(m.seconds.last().copied().unwrap_or(f64::NAN)),
            i + 4.0
        );
    }
    if let Some(m) = measured
        .iter()
        .find(|m| m.interval == Duration::from_secs(10))
    {
        let poll_5m = m.per_cycle as f64 * 12.0;
        let reads = 360.0 * m.requests_per_read;
        let with_events = m.per_cycle as f64 + reads;
        println!();
        println!(
            "| API requests per hour, {} images | requests | ratio |",
            s.images
        );
        println!("|---|---|---|");
        println!("| poll every 5 m | {poll_5m:.0} | 1 |");
        println!(
            "| poll every 1 h + trace reads every 10 s ({:.2} requests a read) | {with_events:.0} | {:.3} |",
            m.requests_per_read,
            with_events / poll_5m
        );
        // The poll interval at which the total is a tenth of the 5-minute poll's.
        let slow = m.per_cycle as f64 / 2.0 + reads;
        println!(
            "| poll every 2 h + trace reads every 10 s | {slow:.0} | {:.3} |",
            slow / poll_5m
        );
        println!(
            "| each traced share change adds (measured) | {:.2} | |",
            m.requests_per_change
        );
    }
    println!();
    println!(
        "| event path at {TRACES_PER_SECOND} traces a second ({} s, reads every 1 s) | value |",
        CPU_RUN.as_secs()
    );
    println!("|---|---|");
    println!("| exporter CPU (seconds per second) | {cpu:.3} |");
    println!("| image polls triggered per second | {polls:.1} |");
}
