//! `--churn-cycles N`: replaces a share of every image's members each poll cycle and
//! prints the exporter's RSS after every cycle, then its trend.

use std::path::Path;

use crate::args::{Args, Scenario};
use crate::report::mib;
use crate::run::Run;
use crate::scrape::{series_count, Variant};

pub(crate) async fn churn(
    args: &Args,
    s: &Scenario,
    bin: &Path,
    cycles: u64,
) -> Result<(), String> {
    let mut run = Run::start(args, s, bin).await?;
    let result = churn_run(args, s, &mut run, cycles).await;
    run.stop().await;
    result
}

async fn churn_run(args: &Args, s: &Scenario, run: &mut Run, cycles: u64) -> Result<(), String> {
    let name = &s.name;
    run.wait_cycle_start(1).await?;
    let start_kib = run.kib("VmRSS")?;
    println!();
    println!(
        "churn, {name}: {}% of each image's members replaced every poll cycle; one scrape (OpenMetrics) per cycle; RSS after the scrape",
        args.churn_percent
    );
    println!("RSS after the first cycle: {}", mib(start_kib));
    println!("cycle  RSS(MiB)  added  removed  series  poll CPU(s)");
    let mut series = Vec::new();
    let mut cpu = Vec::new();
    for k in 1..=cycles {
        // At the start of each cycle (after the one the last scrape overlapped); its CPU
        // is taken to the next cycle's start, before the scrape.
        let c = run.current_cycle() + 1;
        run.wait_cycle_start(c).await?;
        let (removed, added) = run.fleet.churn(args.churn_percent);
        let cpu_start = run.cpu()?;
        run.wait_cycle_start(c + 1).await?;
        let seconds = run.cpu()? - cpu_start;
        cpu.push(seconds);
        let sc = run.scrape(Variant::OpenMetrics).await?;
        let n = series_count(&String::from_utf8_lossy(sc.body));
        let kib = run.kib("VmRSS")?;
        series.push(kib);
        println!(
            "{k:5}  {:8.1}  {added:5}  {removed:7}  {n}  {seconds:.3}",
            kib as f64 / 1024.0
        );
    }
    cpu.sort_by(f64::total_cmp);
    println!(
        "poll CPU per cycle with churn, median: {:.3} s",
        cpu.get(cpu.len() / 2).copied().unwrap_or(0.0)
    );
    let peak = run.kib("VmHWM")?;
    print_churn_summary(args, name, cycles, &series, peak);
    Ok(())
}

/// The RSS trend: first, last, min, max, peak and the slope of the second half.
fn print_churn_summary(args: &Args, name: &str, cycles: u64, series: &[u64], peak: u64) {
    let first = series.first().copied().unwrap_or(0);
    let last = series.last().copied().unwrap_or(0);
    let max = series.iter().copied().max().unwrap_or(0);
    let min = series.iter().copied().min().unwrap_or(0);
    // Least-squares slope over the second half, where warm-up is over.
    let slope = slope(&series[series.len() / 2..]);
    println!();
    println!(
        "| churn ({name}, {cycles} cycles, {}%/cycle) | first | last | min | max | peak (VmHWM) | slope, 2nd half |",
        args.churn_percent
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| RSS | {} | {} | {} | {} | {} | {:+.1} KiB/cycle |",
        mib(first),
        mib(last),
        mib(min),
        mib(max),
        mib(peak),
        slope
    );
}

/// Least-squares slope of `values` per step; 0 with fewer than two.
fn slope(values: &[u64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let n = values.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, &v) in values.iter().enumerate() {
        sxy += (i as f64 - mx) * (v as f64 - my);
        sxx += (i as f64 - mx) * (i as f64 - mx);
    }
    sxy / sxx
}
