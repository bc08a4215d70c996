//! The command line (clap `Args`) and the fleets it names: the preset and custom
//! scenarios, and the list requests one poll cycle of each makes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

/// Members per list request: the API's maximum.
pub(crate) const PAGE_SIZE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    /// 200 images × 50 members
    Typical,
    /// 1,000 images × 100 members
    Large,
    /// 5 images × 20,000 members (20 pages each)
    Wide,
    /// 2,000 images × 500 members: the default max_members_total (run it with
    /// `--member-metrics false`; not part of `all`)
    Huge,
    /// typical, large and wide, one after the other
    All,
}

/// Fleet-scale benchmark of ims-exporter against the in-process fake IMS.
///
/// Build the exporter first (`cargo build --release --bins`): the benchmark runs the
/// `ims-exporter` binary that sits next to its own.
#[derive(Parser, Debug, Clone)]
#[command(name = "ims-bench", version)]
pub(crate) struct Args {
    /// Which fleet to simulate.
    #[arg(long, value_enum, default_value = "typical")]
    scenario: ScenarioArg,
    /// Number of images instead of the scenario's (a custom scenario with --members).
    #[arg(long)]
    images: Option<usize>,
    /// Members per image instead of the scenario's.
    #[arg(long)]
    members: Option<usize>,
    /// Latency the fake adds to every API answer.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub(crate) latency: Duration,
    /// The exporter's `max_concurrent_requests`.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) concurrency: u32,
    /// Steady poll cycles to measure, after the first (every other cycle is measured).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) cycles: u64,
    /// Scrapes of /metrics per variant (OpenMetrics plain, OpenMetrics gzip, text).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) scrapes: u64,
    /// `false` writes `member_metrics: false` into the exporter's config.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub(crate) member_metrics: bool,
    /// Instead of the table: this many poll cycles with churn, printing the RSS after each.
    #[arg(long)]
    pub(crate) churn_cycles: Option<u64>,
    /// Share of each image's members replaced per churn cycle, in percent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub(crate) churn_percent: u64,
    /// Instead of the table: the cost of `--storage.path` (state bytes and write time
    /// per cycle) and the restart time to the first served metrics.
    #[arg(long)]
    pub(crate) state: bool,
    /// Instead of the table: share-change events (docs/events.md): trace to /metrics
    /// latency at trace reads every 2 s and 10 s, API requests per hour with and
    /// without trace reads, and the CPU of the event path at 100 traces a second.
    #[arg(long)]
    pub(crate) events: bool,
    /// Instead of the table: the cost of listing images shared with us (`incoming:`)
    /// with this many images offered to the project, half of them from trusted owners.
    #[arg(long)]
    pub(crate) incoming: Option<usize>,
    /// Instead of the table: the official-SDK route side by side in the same run
    /// (Python exporters on `huaweicloudsdkims` and `prometheus_client`, each polling
    /// the same fake in turn after ims-exporter did).
    #[arg(long)]
    pub(crate) peer: bool,
    /// The Python interpreter that runs the peers (`--peer`).
    #[arg(long, default_value = "python3")]
    pub(crate) python: PathBuf,
    /// The peers' scripts (`--peer`), from the checkout's root, measured in this order:
    /// by default `prometheus_client` `Gauge`s set after each cycle (the route as the
    /// issue measured it), then a collector that builds samples at scrape time.
    #[arg(
        long,
        num_args = 1..,
        default_values = ["bench/peer/sdk_gauges.py", "bench/peer/sdk_exporter.py"]
    )]
    pub(crate) peer_script: Vec<PathBuf>,
    /// Set by `--events` for each run: the exporter reads traces this often and polls
    /// hourly.
    #[arg(skip)]
    pub(crate) cts_interval: Option<Duration>,
    /// The exporter binary (default: `ims-exporter` next to this binary).
    #[arg(long)]
    pub(crate) exporter: Option<PathBuf>,
    /// Give up on a scenario after this long.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) images: usize,
    pub(crate) members: usize,
}

impl Scenario {
    pub(crate) fn pages_per_image(&self) -> u64 {
        self.members.div_ceil(PAGE_SIZE).max(1) as u64
    }
    /// List requests per poll cycle: one per page of every image.
    pub(crate) fn requests_per_cycle(&self) -> u64 {
        self.images as u64 * self.pages_per_image()
    }
}

pub(crate) fn scenarios(args: &Args) -> Vec<Scenario> {
    let preset = |name: &str, images, members| Scenario {
        name: name.into(),
        images,
        members,
    };
    let mut list = match args.scenario {
        ScenarioArg::Typical => vec![preset("typical", 200, 50)],
        ScenarioArg::Large => vec![preset("large", 1000, 100)],
        ScenarioArg::Wide => vec![preset("wide", 5, 20_000)],
        ScenarioArg::Huge => vec![preset("huge", 2000, 500)],
        ScenarioArg::All => vec![
            preset("typical", 200, 50),
            preset("large", 1000, 100),
            preset("wide", 5, 20_000),
        ],
    };
    if args.images.is_some() || args.members.is_some() {
        for s in &mut list {
            s.images = args.images.unwrap_or(s.images);
            s.members = args.members.unwrap_or(s.members);
            s.name = format!("custom {}×{}", s.images, s.members);
        }
        list.truncate(1);
    }
    list
}
