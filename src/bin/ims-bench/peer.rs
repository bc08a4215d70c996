//! `--peer`: ims-exporter and the official-SDK route side by side, in one run. The
//! fake IMS is populated once; ims-exporter polls it first, then each Python peer in
//! turn (`bench/peer/`: `huaweicloudsdkims` and `prometheus_client`, what a user would
//! write instead) polls the same fleet with the same concurrency. Each is measured the
//! same way: CPU over its first poll cycle (no scrape during it), RSS after that cycle,
//! then sequential scrapes of each variant.

use std::path::Path;

use crate::args::{Args, Scenario};
use crate::fleet::peer_command;
use crate::proc::load_average;
use crate::report::{bytes, mib, ms, percentile};
use crate::run::Run;
use crate::scrape::{series_count, Variant};
use crate::table::time_scrapes;

/// Scrapes per variant of the peer: a large scrape takes it seconds.
const PEER_SCRAPES: u64 = 5;
const VARIANTS: [Variant; 3] = [
    Variant::OpenMetrics,
    Variant::OpenMetricsGzip,
    Variant::Text,
];

/// What one exporter measured.
struct Figures {
    cycle_cpu: f64,
    cycle_wall: f64,
    rss_kib: u64,
    rss_after_scrapes_kib: u64,
    /// Sorted scrape times per variant, in [`VARIANTS`]' order.
    scrapes: [Vec<f64>; 3],
    bytes: [usize; 3],
    series: usize,
}

pub(crate) async fn peer(args: &Args, s: &Scenario, bin: &Path) -> Result<(), String> {
    if let Some(missing) = args.peer_script.iter().find(|p| !p.is_file()) {
        let m = missing.display();
        return Err(format!(
            "{m} not found: run from the checkout's root or pass --peer-script"
        ));
    }
    let mut run = Run::start(args, s, bin).await?;
    let result = compare(args, s, &mut run).await;
    run.stop().await;
    let (ours, theirs, load) = result?;
    print(args, s, &ours, &theirs, load);
    Ok(())
}

/// The exporter's figures, then each peer's in `--peer-script` order.
async fn compare(
    args: &Args,
    s: &Scenario,
    run: &mut Run,
) -> Result<(Figures, Vec<Figures>, (f64, f64)), String> {
    let load_start = load_average();
    let ours = figures(run, args.scrapes, &format!("{} ims-exporter", s.name)).await?;
    let images_file = run.dir().join("peer-images.txt");
    let mut theirs = Vec::new();
    for script in &args.peer_script {
        let cmd = peer_command(args, script, &run.endpoint(), &run.fleet, &images_file)?;
        run.replace_exporter(cmd, &args.python).await?;
        let name = format!("{} {}", s.name, peer_name(script));
        theirs.push(figures(run, args.scrapes.min(PEER_SCRAPES), &name).await?);
    }
    Ok((ours, theirs, (load_start, load_average())))
}

/// A peer as the table heads its column: its script's file name.
fn peer_name(script: &Path) -> String {
    let name = script.file_name().unwrap_or(script.as_os_str());
    format!("`{}`", name.to_string_lossy())
}

/// The first poll cycle (from its first request to the next cycle's first) and the
/// scrapes after it.
async fn figures(run: &mut Run, scrapes: u64, name: &str) -> Result<Figures, String> {
    run.wait_cycle_start(0).await?;
    let (cpu0, t0) = (run.cpu()?, std::time::Instant::now());
    run.wait_cycle_start(1).await?;
    let cycle_cpu = run.cpu()? - cpu0;
    let cycle_wall = t0.elapsed().as_secs_f64();
    let rss_kib = run.kib("VmRSS")?;
    eprintln!(
        "[{name}] first cycle {cycle_wall:.3}s wall, {cycle_cpu:.3}s CPU, RSS {}",
        mib(rss_kib)
    );
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut sizes = [0; 3];
    let mut series = 0;
    for (i, variant) in VARIANTS.into_iter().enumerate() {
        times[i] = time_scrapes(run, variant, scrapes).await?;
        sizes[i] = run.last_body().len();
        if i == 0 {
            series = series_count(&String::from_utf8_lossy(run.last_body()));
        }
        let median = ms(percentile(&times[i], 50.0));
        eprintln!("[{name}] {variant:?}: median {median}");
    }
    Ok(Figures {
        cycle_cpu,
        cycle_wall,
        rss_kib,
        rss_after_scrapes_kib: run.kib("VmRSS")?,
        scrapes: times,
        bytes: sizes,
        series,
    })
}

fn print(args: &Args, s: &Scenario, ours: &Figures, theirs: &[Figures], load: (f64, f64)) {
    println!(
        "\n`ims-bench --peer`: {} ({} × {} = {} members), L = {:?}, {} concurrent requests, \
         member_metrics {}; one run, the same fake; each ratio is the peer's figure over \
         ims-exporter's\n",
        s.name,
        s.images,
        s.members,
        s.images * s.members,
        args.latency,
        args.concurrency,
        args.member_metrics
    );
    let peers: String = args
        .peer_script
        .iter()
        .map(|p| format!(" {} | ratio |", peer_name(p)))
        .collect();
    println!("| | ims-exporter |{peers}");
    println!("|---|---|{}", "---|---|".repeat(theirs.len()));
    let tables: Vec<_> = theirs.iter().map(|t| rows(ours, t)).collect();
    // Every peer takes the same number of scrapes: the first one's labels serve.
    let labels = rows(ours, theirs.first().unwrap_or(ours));
    for (i, [label, a, ..]) in labels.into_iter().enumerate() {
        let cells: String = tables
            .iter()
            .map(|t| format!(" {} | {} |", t[i][2], t[i][3]))
            .collect();
        println!("| {label} | {a} |{cells}");
    }
    let load = format!("{:.2} / {:.2}", load.0, load.1);
    let blank = " | |".repeat(theirs.len());
    println!("| load average (1 min), start / end | {load} |{blank}");
}

/// The table's rows: what, ims-exporter's, the peer's, how many times more the peer's is.
fn rows(ours: &Figures, theirs: &Figures) -> Vec<[String; 4]> {
    let ratio = |a: f64, b: f64| format!("**{:.1}×**", b / a);
    let secs = |v: f64| format!("{v:.3} s");
    let kib = |f: &Figures| (f.rss_kib as f64, f.rss_after_scrapes_kib as f64);
    let mut rows = vec![
        [
            "CPU for the first poll cycle (no scrape during it)".into(),
            secs(ours.cycle_cpu),
            secs(theirs.cycle_cpu),
            ratio(ours.cycle_cpu, theirs.cycle_cpu),
        ],
        [
            "first poll cycle wall".into(),
            secs(ours.cycle_wall),
            secs(theirs.cycle_wall),
            String::new(),
        ],
        [
            "RSS after the cycle (before any scrape)".into(),
            mib(ours.rss_kib),
            mib(theirs.rss_kib),
            ratio(kib(ours).0, kib(theirs).0),
        ],
        [
            "RSS after the scrapes".into(),
            mib(ours.rss_after_scrapes_kib),
            mib(theirs.rss_after_scrapes_kib),
            ratio(kib(ours).1, kib(theirs).1),
        ],
    ];
    let median = |f: &Figures, i: usize| percentile(&f.scrapes[i], 50.0);
    for (i, label) in ["OpenMetrics", "OpenMetrics + gzip", "text 0.0.4"]
        .iter()
        .enumerate()
    {
        let (n, m) = (ours.scrapes[i].len(), theirs.scrapes[i].len());
        rows.push([
            format!("scrape {label}, median ({n} / {m} scrapes)"),
            ms(median(ours, i)),
            ms(median(theirs, i)),
            ratio(median(ours, i), median(theirs, i)),
        ]);
    }
    rows.push([
        "bytes per scrape: OpenMetrics / gzip / text".into(),
        ours.bytes.map(bytes).join(" / "),
        theirs.bytes.map(bytes).join(" / "),
        String::new(),
    ]);
    rows.push([
        "series".into(),
        ours.series.to_string(),
        theirs.series.to_string(),
        String::new(),
    ]);
    rows
}
