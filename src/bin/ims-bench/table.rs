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
    // The first cycle: connections, baseline audit; reported on its own.
    run.wait_cycle_start(1).await?;
    let first = run.scrape(Variant::OpenMetrics).await?;
    let first_text = String::from_utf8_lossy(&first.body).into_owned();
    let first_cycle = sum_samples(&first_text, "ims_poll_duration_seconds", |_| true)
        .ok_or("no ims_poll_duration_seconds after the first cycle")?;
    eprintln!("[{name}] first cycle {first_cycle:.3}s");

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
        let text = String::from_utf8_lossy(&scraped.body);
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
    let requests_per_cycle = match (marks.first(), marks.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0) as f64,
        _ => run.per_cycle as f64,
    };
    if (requests_per_cycle - run.per_cycle as f64).abs() > 0.5 {
        eprintln!(
            "[{name}] WARNING: the exporter made {requests_per_cycle:.1} requests per cycle, {} expected; cycle boundaries are approximate",
            run.per_cycle
        );
    }
    let steady_kib = run.kib("VmRSS")?;
    let peak_kib = run.kib("VmHWM")?;

    // Scrapes, one after the other, as Prometheus does.
    let mut timings = Vec::new();
    let mut bodies = Vec::new();
    for variant in [
        Variant::OpenMetrics,
        Variant::OpenMetricsGzip,
        Variant::Text,
    ] {
        for _ in 0..WARMUP_SCRAPES {
            run.scrape(variant).await?;
        }
        let mut t = Vec::new();
        let mut last = Vec::new();
        for _ in 0..args.scrapes {
            let sc = run.scrape(variant).await?;
            t.push(sc.elapsed.as_secs_f64());
            last = sc.body;
        }
        timings.push(sorted(t));
        bodies.push(last);
    }
    let [om, om_gzip, text]: [Vec<f64>; 3] = timings
        .try_into()
        .map_err(|_| "internal: three scrape variants")?;
    let plain = String::from_utf8_lossy(&bodies[0]).into_owned();
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&bodies[1][..]),
        &mut unzipped,
    )
    .map_err(|e| format!("the gzip scrape does not decompress: {e}"))?;
    let series = series_count(&plain);
    if series_count(&unzipped) != series {
        eprintln!("[{name}] WARNING: the gzip scrape has a different number of series");
    }
    let after_scrapes_kib = run.kib("VmRSS")?;
    let peak_after_scrapes_kib = run.kib("VmHWM")?;
    let retries = sum_samples(&plain, "ims_api_retries_total", |_| true).unwrap_or(0.0);
    let failed_requests = sum_samples(&plain, "ims_api_requests_total", |l| {
        !l.contains("code=\"200\"")
    })
    .unwrap_or(0.0);
    let warnings = run.exporter.logs().first_warnings.clone();
    Ok(Row {
        scenario: s.clone(),
        latency: args.latency,
        concurrency: args.concurrency,
        member_metrics: args.member_metrics,
        requests_per_cycle,
        first_cycle,
        walls,
        cpu_per_cycle: cpu_total / args.cycles as f64,
        peak_kib,
        steady_kib,
        after_scrapes_kib,
        peak_after_scrapes_kib,
        om,
        om_gzip,
        text,
        bytes_plain: bodies[0].len(),
        bytes_gzip: bodies[1].len(),
        bytes_text: bodies[2].len(),
        series,
        retries,
        failed_requests,
        log_lines_per_cycle: log_lines as f64
            / (cycles_after.saturating_sub(cycles_before)).max(1) as f64,
        load: (load_start, load_average()),
        warnings,
    })
}

pub(crate) fn print_table(rows: &[Row], args: &Args) {
    let head: Vec<String> = rows.iter().map(|r| r.scenario.name.clone()).collect();
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |label: &str, f: &dyn Fn(&Row) -> String| {
        lines.push((label.to_string(), rows.iter().map(f).collect()));
    };
    add("images × members", &|r| {
        format!(
            "{} × {} = {}",
            r.scenario.images,
            r.scenario.members,
            r.scenario.images * r.scenario.members
        )
    });
    add("latency L / concurrency", &|r| {
        format!("{:?} / {}", r.latency, r.concurrency)
    });
    add("member_metrics", &|r| r.member_metrics.to_string());
    add("requests per cycle", &|r| {
        format!("{:.0}", r.requests_per_cycle)
    });
    add("ideal cycle (requests × L / concurrency)", &|r| {
        format!("{:.3} s", r.ideal())
    });
    add("poll cycle wall, median (min–max)", &|r| {
        let w = sorted(r.walls.clone());
        format!(
            "{:.3} s ({:.3}–{:.3})",
            percentile(&w, 50.0),
            w.first().copied().unwrap_or(f64::NAN),
            w.last().copied().unwrap_or(f64::NAN)
        )
    });
    add("**cycle / ideal**", &|r| {
        format!(
            "**{:.2}**",
            percentile(&sorted(r.walls.clone()), 50.0) / r.ideal()
        )
    });
    add("bound incl. sequential paging (pages × L)", &|r| {
        format!(
            "{:.3} s (cycle / bound {:.2})",
            r.bound(),
            percentile(&sorted(r.walls.clone()), 50.0) / r.bound()
        )
    });
    add("first cycle wall", &|r| format!("{:.3} s", r.first_cycle));
    add("**exporter CPU per cycle**", &|r| {
        format!("**{:.3} s**", r.cpu_per_cycle)
    });
    add("peak RSS (VmHWM) after cycles", &|r| mib(r.peak_kib));
    add("**steady RSS (VmRSS) after cycles**", &|r| {
        format!("**{}**", mib(r.steady_kib))
    });
    add("RSS / peak RSS after the scrapes", &|r| {
        format!(
            "{} / {}",
            mib(r.after_scrapes_kib),
            mib(r.peak_after_scrapes_kib)
        )
    });
    add("**/metrics OpenMetrics median** (p99)", &|r| {
        format!(
            "**{}** ({})",
            ms(percentile(&r.om, 50.0)),
            ms(percentile(&r.om, 99.0))
        )
    });
    add("/metrics OpenMetrics + gzip median (p99)", &|r| {
        format!(
            "{} ({})",
            ms(percentile(&r.om_gzip, 50.0)),
            ms(percentile(&r.om_gzip, 99.0))
        )
    });
    add("/metrics text 0.0.4 median (p99)", &|r| {
        format!(
            "{} ({})",
            ms(percentile(&r.text, 50.0)),
            ms(percentile(&r.text, 99.0))
        )
    });
    add("bytes per scrape: OpenMetrics / gzip / text", &|r| {
        format!(
            "{} / {} / {}",
            bytes(r.bytes_plain),
            bytes(r.bytes_gzip),
            bytes(r.bytes_text)
        )
    });
    add("series", &|r| r.series.to_string());
    add("API retries / failed requests", &|r| {
        format!("{:.0} / {:.0}", r.retries, r.failed_requests)
    });
    add("exporter log lines per cycle", &|r| {
        format!("{:.1}", r.log_lines_per_cycle)
    });
    add("load average (1 min), start / end", &|r| {
        format!("{:.2} / {:.2}", r.load.0, r.load.1)
    });

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
    println!("| | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(head.len()));
    for (label, cells) in lines {
        println!("| {label} | {} |", cells.join(" | "));
    }
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
