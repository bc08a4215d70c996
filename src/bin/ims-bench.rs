//! `ims-bench`: the fleet-scale benchmark (issue 7, results in BENCHMARKS.md).
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
//! serve the restored members.
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

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::{ArgAction, Parser, ValueEnum};
use ims_exporter::fake_ims::{member, FakeIms, FakeState};
use ims_exporter::ims::model::Member;

const PROJECT: &str = "1bed856811654c1cb661a6ca845ebc77";
const REGION: &str = "cn-north-4";
const AK: &str = "BENCHACCESSKEY000000";
const SK: &str = "bench-secret-key-00000000000000000000000";
/// Members per list request: the API's maximum.
const PAGE_SIZE: usize = 1000;
const ORG_URN_PREFIX: &str =
    "organizations::6c031a41eefc480bb60f20c003891fcd:ou:o-z5142zmm6p5cumsxralfljeb3qrwqamd/";
/// What Prometheus sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// Scrapes before the measured ones (connection set-up, first allocations).
const WARMUP_SCRAPES: usize = 2;
/// How long the exporter may take to say where it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    /// 200 images × 50 members
    Typical,
    /// 1,000 images × 100 members
    Large,
    /// 5 images × 20,000 members (20 pages each)
    Wide,
    /// typical, large and wide, one after the other
    All,
}

/// Fleet-scale benchmark of ims-exporter against the in-process fake IMS.
///
/// Build the exporter first (`cargo build --release --bins`): the benchmark runs the
/// `ims-exporter` binary that sits next to its own.
#[derive(Parser, Debug)]
#[command(name = "ims-bench", version)]
struct Args {
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
    latency: Duration,
    /// The exporter's `max_concurrent_requests`.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Steady poll cycles to measure, after the first (every other cycle is measured).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    cycles: u64,
    /// Scrapes of /metrics per variant (OpenMetrics plain, OpenMetrics gzip, text).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    scrapes: u64,
    /// `false` writes `member_metrics: false` into the exporter's config.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    member_metrics: bool,
    /// Instead of the table: this many poll cycles with churn, printing the RSS after each.
    #[arg(long)]
    churn_cycles: Option<u64>,
    /// Share of each image's members replaced per churn cycle, in percent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    churn_percent: u64,
    /// Instead of the table: the cost of `--storage.path` (state bytes and write time
    /// per cycle) and the restart time to the first served metrics.
    #[arg(long)]
    state: bool,
    /// The exporter binary (default: `ims-exporter` next to this binary).
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// Give up on a scenario after this long.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    images: usize,
    members: usize,
}

impl Scenario {
    fn pages_per_image(&self) -> u64 {
        self.members.div_ceil(PAGE_SIZE).max(1) as u64
    }
    /// List requests per poll cycle: one per page of every image.
    fn requests_per_cycle(&self) -> u64 {
        self.images as u64 * self.pages_per_image()
    }
}

fn scenarios(args: &Args) -> Vec<Scenario> {
    let preset = |name: &str, images, members| Scenario {
        name: name.into(),
        images,
        members,
    };
    let mut list = match args.scenario {
        ScenarioArg::Typical => vec![preset("typical", 200, 50)],
        ScenarioArg::Large => vec![preset("large", 1000, 100)],
        ScenarioArg::Wide => vec![preset("wide", 5, 20_000)],
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

// ---------------------------------------------------------------------------------
// The simulated fleet

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn image_id(i: usize) -> String {
    let h = splitmix(i as u64 ^ 0x1a2b_3c4d);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        0x8000 | (splitmix(h) & 0x3fff),
        i
    )
}

fn unix_to_rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "2025-01-01T00:00:00Z".into())
}

/// The member ID of recipient `n`: a project or account ID (32 hex characters) or an
/// organization unit (`ou-` and 32 base-36 characters), with its type.
fn recipient_id(n: u64) -> (String, &'static str) {
    let h = splitmix(n);
    match n % 20 {
        0 => {
            let digits: String = (0..32u64)
                .map(|k| {
                    let d = (splitmix(h ^ k) % 36) as u32;
                    char::from_digit(d, 36).unwrap_or('0')
                })
                .collect();
            (format!("ou-{digits}"), "organization")
        }
        1..=3 => (format!("{:016x}{:016x}", h, splitmix(h)), "domain"),
        _ => (format!("{:016x}{:016x}", h, splitmix(h)), "project"),
    }
}

/// Recipient `n` as a member of `image`: 80 % project, 15 % account, 5 % organization;
/// 80 % accepted, 15 % pending, 5 % rejected; shared some time in 2024–2025.
fn recipient(image: &str, n: u64) -> Member {
    let (id, kind) = recipient_id(n);
    let h = splitmix(n ^ 0x5eed);
    let status = match h % 20 {
        0 => "rejected",
        1..=3 => "pending",
        _ => "accepted",
    };
    let created = 1_704_067_200 + h % 63_072_000;
    let updated = created + (h >> 32) % 2_592_000;
    let urn = (kind == "organization").then(|| format!("{ORG_URN_PREFIX}{id}"));
    member(
        image,
        &id,
        kind,
        status,
        &unix_to_rfc3339(created),
        &unix_to_rfc3339(updated),
        urn.as_deref(),
    )
}

/// The allowlist of the benchmark's config: the organization's units by URN and every
/// member ID not starting with `f`, so about 6 % of the project and account members
/// are unexpected (16 entries to match per member, as a real allowlist has a few).
fn allowlist() -> Vec<String> {
    let mut entries = vec![format!("urn:{ORG_URN_PREFIX}*")];
    entries.extend("0123456789abcde".chars().map(|c| format!("{c}*")));
    entries
}

/// The fake and what it holds, for churn.
struct Fleet {
    state: FakeState,
    images: Vec<String>,
    /// Recipients of each image, oldest first.
    shares: Vec<VecDeque<u64>>,
    next_recipient: u64,
}

impl Fleet {
    fn populate(state: FakeState, s: &Scenario) -> Fleet {
        state.add_account(AK, SK, None);
        // Recipients come from a pool, so images share many of them, as in a real fleet.
        let pool = (2 * s.members as u64).max(2000);
        let mut images = Vec::with_capacity(s.images);
        let mut shares = Vec::with_capacity(s.images);
        for i in 0..s.images {
            let id = image_id(i);
            state.add_image(PROJECT, &id, &format!("bench-image-{i:05}"));
            let mut mine = VecDeque::with_capacity(s.members);
            for j in 0..s.members as u64 {
                let n = (i as u64 * 37 + j) % pool;
                state.put_member(PROJECT, recipient(&id, n));
                mine.push_back(n);
            }
            images.push(id);
            shares.push(mine);
        }
        Fleet {
            state,
            images,
            shares,
            next_recipient: pool,
        }
    }

    /// Replaces `percent` % of every image's members (the oldest) with new recipients.
    /// Returns (removed, added).
    fn churn(&mut self, percent: u64) -> (u64, u64) {
        let (mut removed, mut added) = (0, 0);
        for (image, mine) in self.images.iter().zip(&mut self.shares) {
            let k = (mine.len() as u64 * percent).div_ceil(100);
            for _ in 0..k {
                if let Some(n) = mine.pop_front() {
                    if self.state.remove_member(PROJECT, image, &recipient_id(n).0) {
                        removed += 1;
                    }
                }
                let n = self.next_recipient;
                self.next_recipient += 1;
                self.state.put_member(PROJECT, recipient(image, n));
                mine.push_back(n);
                added += 1;
            }
        }
        (removed, added)
    }
}

fn config_yaml(args: &Args, endpoint: &str, fleet: &Fleet) -> String {
    let mut y = String::new();
    y.push_str("# Written by ims-bench.\npoll_interval: 1s\nrequest_timeout: 30s\n");
    y.push_str(&format!(
        "page_size: {PAGE_SIZE}\nmax_concurrent_requests: {}\n",
        args.concurrency
    ));
    if !args.member_metrics {
        y.push_str("member_metrics: false\n");
    }
    y.push_str(&format!(
        "credentials:\n  access_key_id: {AK}\n  secret_access_key: {SK}\n"
    ));
    y.push_str("allowed_members:\n");
    for e in allowlist() {
        y.push_str(&format!("  - \"{e}\"\n"));
    }
    y.push_str(&format!(
        "targets:\n  - region: {REGION}\n    project_id: {PROJECT}\n    endpoint: {endpoint}\n    images:\n"
    ));
    for (i, id) in fleet.images.iter().enumerate() {
        y.push_str(&format!(
            "      - id: {id}\n        name: bench-image-{i:05}\n"
        ));
    }
    y
}

// ---------------------------------------------------------------------------------
// The exporter process

/// The last lines of the exporter's stderr and what was found in them.
#[derive(Default)]
struct LogSink {
    tail: VecDeque<String>,
    lines: u64,
    warnings: u64,
    first_warnings: Vec<String>,
    address: Option<String>,
    /// (bytes, seconds) of each state write (`--state`).
    state_writes: Vec<(f64, f64)>,
}

/// `bytes` and `seconds` of a "state written" log line.
fn state_write(line: &str) -> Option<(f64, f64)> {
    if !line.contains("state written") {
        return None;
    }
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((field("bytes=")?, field("seconds=")?))
}

/// The exporter, running; killed when dropped.
struct Exporter {
    child: Child,
    logs: Arc<Mutex<LogSink>>,
    addr: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn listening_address(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    // logfmt (`address=…`) or JSON (`"address":"…"`).
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["address"].as_str().map(str::to_string))
        .or_else(|| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix("address="))
                .map(|a| a.trim_matches('"').to_string())
        })
}

impl Exporter {
    async fn start(bin: &Path, config: &Path, state: Option<&Path>) -> Result<Exporter, String> {
        let mut cmd = Command::new(bin);
        cmd.arg("--config.file").arg(config);
        match state {
            // Debug: the state writes are logged with their size and time.
            Some(dir) => cmd
                .arg("--storage.path")
                .arg(dir)
                .args(["--log.level", "debug"]),
            None => cmd.args(["--log.level", "info"]),
        };
        let mut child = cmd
            .args(["--web.listen-address", "127.0.0.1:0"])
            .env_remove("HUAWEICLOUD_SDK_AK")
            .env_remove("HUAWEICLOUD_SDK_SK")
            .env_remove("HUAWEICLOUD_SDK_SECURITY_TOKEN")
            .env(
                "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
                "/nonexistent/ims-bench-credentials",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let logs = Arc::new(Mutex::new(LogSink::default()));
        if let Some(stderr) = child.stderr.take() {
            let sink = logs.clone();
            // Drained all the time, so the exporter never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut s = lock(&sink);
                    s.lines += 1;
                    if s.address.is_none() {
                        s.address = listening_address(&line);
                    }
                    if let Some(w) = state_write(&line) {
                        s.state_writes.push(w);
                    }
                    if line.contains("level=warn")
                        || line.contains("level=error")
                        || line.contains("\"level\":\"WARN")
                        || line.contains("\"level\":\"ERROR")
                    {
                        s.warnings += 1;
                        if s.first_warnings.len() < 5 {
                            s.first_warnings.push(line.clone());
                        }
                    }
                    s.tail.push_back(line);
                    if s.tail.len() > 40 {
                        s.tail.pop_front();
                    }
                }
            });
        }
        let mut exporter = Exporter {
            child,
            logs,
            addr: String::new(),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            exporter.check_alive()?;
            let address = lock(&exporter.logs).address.clone();
            if let Some(a) = address {
                exporter.addr = a;
                return Ok(exporter);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the exporter did not say where it listens within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    exporter.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let logs = lock(&self.logs);
        logs.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// `Err` with the exporter's last words if it has exited.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                // Let the reader thread catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                Err(format!(
                    "the exporter exited ({status}); if it refused the config, it says why:\n{}",
                    self.log_tail()
                ))
            }
            Err(e) => Err(format!("cannot check on the exporter: {e}")),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, String> {
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = std::env::temp_dir().join(format!("ims-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The exporter binary: `--exporter`, else `ims-exporter` next to this binary.
fn exporter_binary(args: &Args) -> Result<PathBuf, String> {
    let path = match &args.exporter {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find my own path: {e}"))?
            .with_file_name("ims-exporter"),
    };
    if !path.is_file() {
        return Err(format!(
            "{} not found: build the exporter first with `cargo build --release --bins`",
            path.display()
        ));
    }
    if path.parent().and_then(|p| p.file_name()) == Some("debug".as_ref()) {
        eprintln!(
            "WARNING: {} is a debug build; numbers are meaningless. Use `cargo build --release --bins` and `cargo run --release --bin ims-bench`.",
            path.display()
        );
    }
    if let (Some(built), Some(newest)) = (
        std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
        newest_source(Path::new(env!("CARGO_MANIFEST_DIR"))),
    ) {
        if newest > built {
            eprintln!(
                "WARNING: {} is older than the sources; run `cargo build --release --bins` to benchmark the current code.",
                path.display()
            );
        }
    }
    Ok(path)
}

/// The newest modification time of the exporter's sources (not this benchmark's).
fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name() != Some("bin".as_ref()) {
                    walk(&p, newest);
                }
            } else if p.extension() == Some("rs".as_ref()) {
                if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                    *newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
                }
            }
        }
    }
    let mut newest = None;
    walk(&root.join("src"), &mut newest);
    newest
}

// ---------------------------------------------------------------------------------
// /proc

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("malformed /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<f64, String> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("malformed /proc/{pid}/stat"))
    };
    // Fields 14 (utime) and 15 (stime); `rest` starts at field 3.
    Ok((num(11)? + num(12)?) / ticks)
}

/// The 1-minute load average, to tell a busy machine from a slow exporter.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(pid: u32, key: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------
// Scraping

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    OpenMetrics,
    OpenMetricsGzip,
    Text,
}

struct Scrape {
    elapsed: Duration,
    body: Vec<u8>,
}

async fn scrape(client: &reqwest::Client, url: &str, variant: Variant) -> Result<Scrape, String> {
    let mut req = client.get(url);
    if variant != Variant::Text {
        req = req.header("accept", PROMETHEUS_ACCEPT);
    }
    if variant == Variant::OpenMetricsGzip {
        req = req.header("accept-encoding", "gzip");
    }
    let start = Instant::now();
    let resp = req
        .send()
        .await
        .map_err(|e| format!("scrape failed: {e}"))?;
    let status = resp.status();
    let gzipped = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the scrape failed: {e}"))?;
    let elapsed = start.elapsed();
    if status != 200 {
        return Err(format!(
            "scrape answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    if gzipped != (variant == Variant::OpenMetricsGzip) {
        return Err(format!(
            "scrape: Content-Encoding gzip was {gzipped}, expected {}",
            !gzipped
        ));
    }
    Ok(Scrape {
        elapsed,
        body: body.to_vec(),
    })
}

/// The sum of the samples of `name` whose labels pass `keep`.
fn sum_samples(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let labels = match rest.as_bytes().first() {
            Some(b'{') => rest.get(1..rest.rfind('}')?)?,
            Some(b' ') => "",
            _ => continue,
        };
        if !keep(labels) {
            continue;
        }
        if let Some(v) = line
            .split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

fn series_count(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Sorted-sample percentile, nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

// ---------------------------------------------------------------------------------
// Running one scenario

struct Run {
    fleet: Fleet,
    fake: FakeIms,
    exporter: Exporter,
    _dir: TempDir,
    client: reqwest::Client,
    url: String,
    ticks: f64,
    per_cycle: u64,
    /// How long waiting for one cycle may take before the run is called stuck.
    cycle_budget: Duration,
    deadline: Instant,
}

impl Run {
    async fn start(args: &Args, s: &Scenario, bin: &Path) -> Result<Run, String> {
        let state = FakeState::default();
        state.set_latency(args.latency);
        let built = Instant::now();
        let fleet = Fleet::populate(state.clone(), s);
        eprintln!(
            "[{}] fake IMS: {} images × {} members ({} in all) in {:.1}s; latency {:?}",
            s.name,
            s.images,
            s.members,
            s.images * s.members,
            built.elapsed().as_secs_f64(),
            args.latency
        );
        let fake = FakeIms::start(state)
            .await
            .map_err(|e| format!("cannot start the fake IMS: {e}"))?;
        let dir = TempDir::new(&s.name)?;
        let config = dir.0.join("config.yaml");
        std::fs::write(&config, config_yaml(args, &fake.endpoint(), &fleet))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let state = args.state.then(|| dir.0.join("state"));
        let exporter = Exporter::start(bin, &config, state.as_deref()).await?;
        eprintln!(
            "[{}] exporter pid {} listening on {}",
            s.name,
            exporter.pid(),
            exporter.addr
        );
        ims_exporter::tls::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let l = args.latency.as_secs_f64();
        let ideal = s.requests_per_cycle() as f64 * l / args.concurrency as f64;
        let path = s.pages_per_image() as f64 * l;
        Ok(Run {
            url: format!("http://{}/metrics", exporter.addr),
            fleet,
            fake,
            exporter,
            _dir: dir,
            client,
            ticks: clock_ticks(),
            per_cycle: s.requests_per_cycle(),
            cycle_budget: Duration::from_secs(60) + Duration::from_secs_f64(20.0 * ideal.max(path)),
            deadline: Instant::now() + args.timeout,
        })
    }

    /// Requests the fake has received (the exporter's count, at arrival).
    fn requests(&self) -> u64 {
        self.fleet.state.requests()
    }

    /// The poll cycle under way (0-based), from the fake's request count.
    fn current_cycle(&self) -> u64 {
        self.requests().saturating_sub(1) / self.per_cycle
    }

    /// Waits until cycle `c` has started (its first request reached the fake).
    async fn wait_cycle_start(&mut self, c: u64) -> Result<(), String> {
        let want = c * self.per_cycle + 1;
        let deadline = (Instant::now() + self.cycle_budget).min(self.deadline);
        let mut n = 0u64;
        while self.requests() < want {
            if n % 100 == 0 {
                self.exporter.check_alive()?;
            }
            n += 1;
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for poll cycle {c} (the fake has {} requests, expected {want}); the exporter's log:\n{}",
                    self.requests(),
                    self.exporter.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    async fn scrape(&mut self, variant: Variant) -> Result<Scrape, String> {
        self.exporter.check_alive()?;
        if Instant::now() > self.deadline {
            return Err("the scenario ran out of time (--timeout)".into());
        }
        scrape(&self.client, &self.url, variant).await
    }

    fn cpu(&self) -> Result<f64, String> {
        cpu_seconds(self.exporter.pid(), self.ticks)
    }

    fn kib(&self, key: &str) -> Result<u64, String> {
        status_kib(self.exporter.pid(), key)
    }

    async fn stop(self) {
        let Run { exporter, fake, .. } = self;
        // (also used by `--state`, whose restart replaces the exporter)
        drop(exporter);
        fake.stop().await;
    }
}

/// Everything one scenario measured.
struct Row {
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

async fn measure(args: &Args, s: &Scenario, bin: &Path) -> Result<Row, String> {
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
    let lines_before = lock(&run.exporter.logs).lines;
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
    let log_lines = lock(&run.exporter.logs).lines - lines_before;
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
    let warnings = lock(&run.exporter.logs).first_warnings.clone();
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

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(secs: f64) -> String {
    if secs < 0.01 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} ms", secs * 1e3)
    }
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn print_table(rows: &[Row], args: &Args) {
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

// ---------------------------------------------------------------------------------
// Churn

async fn churn(args: &Args, s: &Scenario, bin: &Path, cycles: u64) -> Result<(), String> {
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
    println!("cycle  RSS(MiB)  added  removed  series");
    let mut series = Vec::new();
    for k in 1..=cycles {
        // At the start of each cycle (after the one the last scrape overlapped).
        let c = run.current_cycle() + 1;
        run.wait_cycle_start(c).await?;
        let (removed, added) = run.fleet.churn(args.churn_percent);
        let sc = run.scrape(Variant::OpenMetrics).await?;
        let n = series_count(&String::from_utf8_lossy(&sc.body));
        let kib = run.kib("VmRSS")?;
        series.push(kib);
        println!(
            "{k:5}  {:8.1}  {added:5}  {removed:7}  {n}",
            kib as f64 / 1024.0
        );
    }
    let peak = run.kib("VmHWM")?;
    let first = series.first().copied().unwrap_or(0);
    let last = series.last().copied().unwrap_or(0);
    let max = series.iter().copied().max().unwrap_or(0);
    let min = series.iter().copied().min().unwrap_or(0);
    // Least-squares slope over the second half, where warm-up is over.
    let half = &series[series.len() / 2..];
    let slope = if half.len() >= 2 {
        let n = half.len() as f64;
        let mx = (n - 1.0) / 2.0;
        let my = half.iter().map(|&v| v as f64).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, &v) in half.iter().enumerate() {
            sxy += (i as f64 - mx) * (v as f64 - my);
            sxx += (i as f64 - mx) * (i as f64 - mx);
        }
        sxy / sxx
    } else {
        0.0
    };
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
    Ok(())
}

// ---------------------------------------------------------------------------------
// `--state`: what `--storage.path` costs

/// State writes measured before the restart.
const STATE_WRITES: usize = 6;

async fn state(args: &Args, s: &Scenario, bin: &Path) -> Result<(), String> {
    let mut run = Run::start(args, s, bin).await?;
    let result = state_run(s, bin, &mut run).await;
    run.stop().await;
    result
}

async fn state_run(s: &Scenario, bin: &Path, run: &mut Run) -> Result<(), String> {
    let name = &s.name;
    // The first write follows the first cycle; every cycle changes the last success
    // times, so every cycle writes.
    let deadline = Instant::now() + run.cycle_budget * (STATE_WRITES as u32 + 2);
    while lock(&run.exporter.logs).state_writes.len() < STATE_WRITES + 1 {
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
    let writes: Vec<(f64, f64)> = lock(&run.exporter.logs).state_writes[1..].to_vec();
    let size = sorted(writes.iter().map(|w| w.0).collect());
    let secs = sorted(writes.iter().map(|w| w.1).collect());

    // kill -9, then a restart against an API that now answers in 30 s: what is served
    // before the first poll can end is the restored state.
    let config = run._dir.0.join("config.yaml");
    let dir = run._dir.0.join("state");
    run.fleet.state.set_latency(Duration::from_secs(30));
    let _ = run.exporter.child.kill();
    let _ = run.exporter.child.wait();
    let started = Instant::now();
    run.exporter = Exporter::start(bin, &config, Some(&dir)).await?;
    let listening = started.elapsed().as_secs_f64();
    run.url = format!("http://{}/metrics", run.exporter.addr);
    let served = loop {
        let sc = run.scrape(Variant::Text).await?;
        let text = String::from_utf8_lossy(&sc.body);
        let images = text
            .lines()
            .filter(|l| l.starts_with("ims_image_last_success_timestamp_seconds{"))
            .count();
        if images == s.images {
            break started.elapsed().as_secs_f64();
        }
        if started.elapsed() > run.cycle_budget {
            return Err(format!("[{name}] the restored state was not served"));
        }
    };
    let rss = run.kib("VmRSS")?;
    println!();
    println!(
        "| state (`--storage.path`), {name}: {} images × {} members | median | max |",
        s.images, s.members
    );
    println!("|---|---|---|");
    println!(
        "| state file per write | {} | {} |",
        bytes(percentile(&size, 0.5) as usize),
        bytes(size.last().copied().unwrap_or(0.0) as usize)
    );
    println!(
        "| write time per cycle (serialise, write, fsync, rename) | {} | {} |",
        ms(percentile(&secs, 0.5)),
        ms(secs.last().copied().unwrap_or(0.0))
    );
    println!(
        "| restart: process start to listening | {} | |",
        ms(listening)
    );
    println!(
        "| restart: process start to every image's restored members served | {} | |",
        ms(served)
    );
    println!("| RSS after the restore | {} | |", mib(rss));
    Ok(())
}

// ---------------------------------------------------------------------------------

async fn run(args: Args) -> Result<(), String> {
    let bin = exporter_binary(&args)?;
    eprintln!("exporter: {}", bin.display());
    let list = scenarios(&args);
    if args.state {
        for s in &list {
            tokio::time::timeout(args.timeout, state(&args, s, &bin))
                .await
                .map_err(|_| format!("[{}] ran out of time (--timeout)", s.name))??;
        }
        return Ok(());
    }
    if let Some(cycles) = args.churn_cycles {
        for s in &list {
            tokio::time::timeout(args.timeout, churn(&args, s, &bin, cycles))
                .await
                .map_err(|_| format!("[{}] ran out of time (--timeout)", s.name))??;
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for s in &list {
        let row = tokio::time::timeout(args.timeout, measure(&args, s, &bin))
            .await
            .map_err(|_| format!("[{}] ran out of time (--timeout)", s.name))??;
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
