//! The default mode: one measured run per scenario (poll cycle wall time and CPU,
//! RSS, scrape latency and size) and the table that compares the scenarios.

use std::path::Path;
use std::time::Duration;

use crate::args::{Args, Scenario};
use crate::proc::load_average;
use crate::report::{bytes, mib, ms, percentile, sorted};
use crate::run::Run;
use crate::scrape::{series_count, sum_samples, Variant};

/// Scrapes before the measured ones (connection set-up, first allocations).
const WARMUP_SCRAPES: usize = 2;

/// Everything one scenario measured.
pub(crate) struct Row {
    scenario: Scenario,
    latency: Duration,
    concurrency: u32,
    member_metrics: bool,
    requests_per_cycle: f64,
    first_cycle: f64,
    /// Exporter CPU seconds from the first cycle's first request to the second's.
    first_cycle_cpu: f64,
    walls: Vec<f64>,
    cpu_per_cycle: f64,
    peak_kib: u64,
    steady_kib: u64,
    after_scrapes_kib: u64,
    peak_after_scrapes_kib: u64,
    om: Vec<f64>,
    om_gzip: Vec<f64>,
    text: Vec<f64>,
    bytes_plain: usize,
    bytes_gzip: usize,
    bytes_text: usize,
    series: usize,
    retries: f64,
    failed_requests: f64,
    log_lines_per_cycle: f64,
    /// 1-minute load average at the start and the end (other work on the machine).
    load: (f64, f64),
    warnings: Vec<String>,
}

impl Row {
    fn ideal(&self) -> f64 {
        self.requests_per_cycle * self.latency.as_secs_f64() / self.concurrency as f64
    }
    /// Pages of one image are fetched one after the other (each needs the previous
    /// page's marker), so a cycle cannot be shorter than one image's pages × L.
    fn bound(&self) -> f64 {
        self.ideal()
            .max(self.scenario.pages_per_image() as f64 * self.latency.as_secs_f64())
    }
    fn median_wall(&self) -> f64 {
        percentile(&sorted(self.walls.clone()), 50.0)
    }
}

pub(crate) async fn measure(args: &Args, s: &Scenario, bin: &Path) -> Result<Row, String> {
    let mut run = Run::start(args, s, bin).await?;
    let result = measure_run(args, s, &mut run).await;
    run.stop().await;
    result
}

async fn measure_run(args: &Args, s: &Scenario, run: &mut Run) -> Result<Row, String> {
    let name = &s.name;
    let load_start = load_average();
    let (first_cycle, first_cycle_cpu) = measure_first_cycle(run, name).await?;
    let cycles = measure_cycles(args, run, name).await?;
    let steady_kib = run.kib("VmRSS")?;
    let peak_kib = run.kib("VmHWM")?;
    let scrapes = measure_scrapes(args, run, name).await?;
    let after_scrapes_kib = run.kib("VmRSS")?;
    let peak_after_scrapes_kib = run.kib("VmHWM")?;
    let warnings = run.exporter.logs().first_warnings.clone();
    Ok(Row {
        scenario: s.clone(),
        latency: args.latency,
        concurrency: args.concurrency,
        member_metrics: args.member_metrics,
        requests_per_cycle: cycles.requests_per_cycle,
        first_cycle,
        first_cycle_cpu,
        walls: cycles.walls,
        cpu_per_cycle: cycles.cpu_total / args.cycles as f64,
        peak_kib,
        steady_kib,
        after_scrapes_kib,
        peak_after_scrapes_kib,
        om: scrapes.om,
        om_gzip: scrapes.om_gzip,
        text: scrapes.text,
        bytes_plain: scrapes.bytes_plain,
        bytes_gzip: scrapes.bytes_gzip,
        bytes_text: scrapes.bytes_text,
        series: scrapes.series,
        retries: scrapes.retries,
        failed_requests: scrapes.failed_requests,
        log_lines_per_cycle: cycles.log_lines_per_cycle,
        load: (load_start, load_average()),
        warnings,
    })
}

/// The first cycle's wall time and CPU (connections, every page decoded, the baseline
/// audit): reported on their own.
async fn measure_first_cycle(run: &mut Run, name: &str) -> Result<(f64, f64), String> {
    run.wait_cycle_start(0).await?;
    let cpu0 = run.cpu()?;
    run.wait_cycle_start(1).await?;
    let cpu = run.cpu()? - cpu0;
    let first = run.scrape(Variant::OpenMetrics).await?;
    let first_text = String::from_utf8_lossy(first.body).into_owned();
    let first_cycle = sum_samples(&first_text, "ims_poll_duration_seconds", |_| true)
        .ok_or("no ims_poll_duration_seconds after the first cycle")?;
    eprintln!("[{name}] first cycle {first_cycle:.3}s, {cpu:.3}s CPU");
    Ok((first_cycle, cpu))
}

/// What the steady cycles measured.
struct Cycles {
    walls: Vec<f64>,
    /// Exporter CPU seconds over all measured cycles.
    cpu_total: f64,
    requests_per_cycle: f64,
    log_lines_per_cycle: f64,
}

/// `args.cycles` undisturbed cycles: wall time, CPU, requests and log lines.
async fn measure_cycles(args: &Args, run: &mut Run, name: &str) -> Result<Cycles, String> {
    let api_total = |t: &str| sum_samples(t, "ims_api_requests_total", |_| true).unwrap_or(0.0);
    let mut marks: Vec<(u64, f64)> = Vec::new(); // (cycle under way, completed requests)
    let mut walls = Vec::new();
    let mut cpu_total = 0.0;
    let lines_before = run.exporter.logs().lines;
    let cycles_before = run.current_cycle();
    for k in 0..args.cycles {
        // A cycle that starts after the last scrape ended is undisturbed.
        let c = run.current_cycle() + 1;
        run.wait_cycle_start(c).await?;
        let cpu0 = run.cpu()?;
        run.wait_cycle_start(c + 1).await?;
        let cpu1 = run.cpu()?;
        let scraped = run.scrape(Variant::OpenMetrics).await?;
        let text = String::from_utf8_lossy(scraped.body);
        let wall = sum_samples(&text, "ims_poll_duration_seconds", |_| true)
            .ok_or("no ims_poll_duration_seconds")?;
        marks.push((c + 1, api_total(&text)));
        walls.push(wall);
        cpu_total += cpu1 - cpu0;
        eprintln!(
            "[{name}] cycle {c}: {wall:.3}s wall, {:.3}s CPU ({}/{})",
            cpu1 - cpu0,
            k + 1,
            args.cycles
        );
    }
    let cycles_after = run.current_cycle();
    let log_lines = run.exporter.logs().lines - lines_before;
    Ok(Cycles {
        walls,
        cpu_total,
        requests_per_cycle: requests_per_cycle(&marks, run.per_cycle, name),
        log_lines_per_cycle: log_lines as f64
            / (cycles_after.saturating_sub(cycles_before)).max(1) as f64,
    })
}

/// Requests per cycle between the first and the last mark (`expected` if there is
/// only one); warns when it is not what the cycle counting assumes.
fn requests_per_cycle(marks: &[(u64, f64)], expected: u64, name: &str) -> f64 {
    let measured = match (marks.first(), marks.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0) as f64,
        _ => expected as f64,
    };
    if (measured - expected as f64).abs() > 0.5 {
        eprintln!(
            "[{name}] WARNING: the exporter made {measured:.1} requests per cycle, {expected} expected; cycle boundaries are approximate",
        );
    }
    measured
}

/// What the scrapes after the cycles measured.
struct Scrapes {
    om: Vec<f64>,
    om_gzip: Vec<f64>,
    text: Vec<f64>,
    bytes_plain: usize,
    bytes_gzip: usize,
    bytes_text: usize,
    series: usize,
    retries: f64,
    failed_requests: f64,
}

/// `args.scrapes` timed scrapes of each variant, one after the other as Prometheus
/// does, and what the last OpenMetrics body says.
async fn measure_scrapes(args: &Args, run: &mut Run, name: &str) -> Result<Scrapes, String> {
    let mut timings = Vec::new();
    let mut bodies = Vec::new();
    for variant in [
        Variant::OpenMetrics,
        Variant::OpenMetricsGzip,
        Variant::Text,
    ] {
        timings.push(time_scrapes(run, variant, args.scrapes).await?);
        bodies.push(run.last_body().to_vec());
    }
    let [om, om_gzip, text]: [Vec<f64>; 3] = timings
        .try_into()
        .map_err(|_| "internal: three scrape variants")?;
    let plain = String::from_utf8_lossy(&bodies[0]).into_owned();
    let series = series_count(&plain);
    check_gzip_series(&bodies[1], series, name)?;
    Ok(Scrapes {
        om,
        om_gzip,
        text,
        bytes_plain: bodies[0].len(),
        bytes_gzip: bodies[1].len(),
        bytes_text: bodies[2].len(),
        series,
        retries: sum_samples(&plain, "ims_api_retries_total", |_| true).unwrap_or(0.0),
        failed_requests: sum_samples(&plain, "ims_api_requests_total", |l| {
            !l.contains("code=\"200\"")
        })
        .unwrap_or(0.0),
    })
}

/// Warm-up scrapes, then `n` timed ones of `variant`: their sorted durations in
/// seconds (the last body stays in `run`).
pub(crate) async fn time_scrapes(
    run: &mut Run,
    variant: Variant,
    n: u64,
) -> Result<Vec<f64>, String> {
    for _ in 0..WARMUP_SCRAPES {
        run.scrape(variant).await?;
    }
    let mut t = Vec::new();
    for _ in 0..n {
        let sc = run.scrape(variant).await?;
        t.push(sc.elapsed.as_secs_f64());
    }
    Ok(sorted(t))
}

/// The gzip body decompresses (`Err` if not) and, if it has not as many series as
/// the plain one (`series`), says so.
fn check_gzip_series(gzipped: &[u8], series: usize, name: &str) -> Result<(), String> {
    let mut unzipped = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gzipped), &mut unzipped)
        .map_err(|e| format!("the gzip scrape does not decompress: {e}"))?;
    if series_count(&unzipped) != series {
        eprintln!("[{name}] WARNING: the gzip scrape has a different number of series");
    }
    Ok(())
}

/// A row label and how to write a scenario's cell in it.
type Line = (&'static str, fn(&Row) -> String);

pub(crate) fn print_table(rows: &[Row], args: &Args) {
    let lines = [
        fleet_lines(),
        cycle_lines(),
        memory_lines(),
        scrape_lines(),
        health_lines(),
    ];
    println!();
    println!(
        "ims-bench: {} steady cycles measured (after the first), {} scrapes per variant; {} cores",
        args.cycles,
        args.scrapes,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!();
    let head: Vec<String> = rows.iter().map(|r| r.scenario.name.clone()).collect();
    println!("| | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(head.len()));
    for (label, cell) in lines.iter().flatten() {
        let cells: Vec<String> = rows.iter().map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
    print_warnings(rows);
}

/// The first warnings each scenario's exporter logged, below the table.
fn print_warnings(rows: &[Row]) {
    for r in rows {
        if !r.warnings.is_empty() {
            println!();
            println!("{}: the exporter logged warnings, e.g.:", r.scenario.name);
            for w in &r.warnings {
                println!("    {w}");
            }
        }
    }
}

/// The fleet and the exporter's settings.
fn fleet_lines() -> Vec<Line> {
    vec![
        ("images × members", |r| {
            format!(
                "{} × {} = {}",
                r.scenario.images,
                r.scenario.members,
                r.scenario.images * r.scenario.members
            )
        }),
        ("latency L / concurrency", |r| {
            format!("{:?} / {}", r.latency, r.concurrency)
        }),
        ("member_metrics", |r| r.member_metrics.to_string()),
        ("requests per cycle", |r| {
            format!("{:.0}", r.requests_per_cycle)
        }),
    ]
}

/// Poll cycle time against its ideal and bound, and its CPU.
fn cycle_lines() -> Vec<Line> {
    vec![
        ("ideal cycle (requests × L / concurrency)", |r| {
            format!("{:.3} s", r.ideal())
        }),
        ("poll cycle wall, median (min–max)", |r| {
            let w = sorted(r.walls.clone());
            format!(
                "{:.3} s ({:.3}–{:.3})",
                percentile(&w, 50.0),
                w.first().copied().unwrap_or(f64::NAN),
                w.last().copied().unwrap_or(f64::NAN)
            )
        }),
        ("**cycle / ideal**", |r| {
            format!("**{:.2}**", r.median_wall() / r.ideal())
        }),
        ("bound incl. sequential paging (pages × L)", |r| {
            format!(
                "{:.3} s (cycle / bound {:.2})",
                r.bound(),
                r.median_wall() / r.bound()
            )
        }),
        ("first cycle wall", |r| format!("{:.3} s", r.first_cycle)),
        ("first cycle CPU (every page decoded)", |r| {
            format!("{:.3} s", r.first_cycle_cpu)
        }),
        ("**exporter CPU per cycle**", |r| {
            format!("**{:.3} s**", r.cpu_per_cycle)
        }),
    ]
}

/// The exporter's memory after the cycles and after the scrapes.
fn memory_lines() -> Vec<Line> {
    vec![
        ("peak RSS (VmHWM) after cycles", |r| mib(r.peak_kib)),
        ("**steady RSS (VmRSS) after cycles**", |r| {
            format!("**{}**", mib(r.steady_kib))
        }),
        ("RSS / peak RSS after the scrapes", |r| {
            format!(
                "{} / {}",
                mib(r.after_scrapes_kib),
                mib(r.peak_after_scrapes_kib)
            )
        }),
    ]
}

/// A latency list as "median (p99)".
fn median_p99(samples: &[f64]) -> String {
    format!(
        "{} ({})",
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 99.0))
    )
}

/// `/metrics`: latency per variant, size and series.
fn scrape_lines() -> Vec<Line> {
    vec![
        ("**/metrics OpenMetrics median** (p99)", |r| {
            format!(
                "**{}** ({})",
                ms(percentile(&r.om, 50.0)),
                ms(percentile(&r.om, 99.0))
            )
        }),
        ("/metrics OpenMetrics + gzip median (p99)", |r| {
            median_p99(&r.om_gzip)
        }),
        ("/metrics text 0.0.4 median (p99)", |r| median_p99(&r.text)),
        ("bytes per scrape: OpenMetrics / gzip / text", |r| {
            format!(
                "{} / {} / {}",
                bytes(r.bytes_plain),
                bytes(r.bytes_gzip),
                bytes(r.bytes_text)
            )
        }),
        ("series", |r| r.series.to_string()),
    ]
}

/// Whether the run was clean: API errors, log volume, other load on the machine.
fn health_lines() -> Vec<Line> {
    vec![
        ("API retries / failed requests", |r| {
            format!("{:.0} / {:.0}", r.retries, r.failed_requests)
        }),
        ("exporter log lines per cycle", |r| {
            format!("{:.1}", r.log_lines_per_cycle)
        }),
        ("load average (1 min), start / end", |r| {
            format!("{:.2} / {:.2}", r.load.0, r.load.1)
        }),
    ]
}
