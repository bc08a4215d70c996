//! Command-line flags, named like the Prometheus exporters' (`--config.file`,
//! `--web.listen-address`, …) so operators' habits carry over.

use std::path::PathBuf;

use clap::Parser;

use crate::logging::{LogFormat, LogLevel};

/// Members of the demo's large image by default: enough for several pages at the
/// demo's page size.
const DEMO_LARGE_IMAGE_MEMBERS: usize = 1200;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ims-exporter",
    version,
    about = "Prometheus exporter for Huawei Cloud IMS image sharing: who can boot your images"
)]
pub struct Cli {
    /// Path to the configuration file.
    #[arg(
        long = "config.file",
        value_name = "FILE",
        default_value = "config.yaml"
    )]
    pub config_file: PathBuf,

    /// Validate the configuration (and say where credentials come from), then exit.
    #[arg(long = "config.check")]
    pub config_check: bool,

    /// Address to listen on for HTTP requests (`:PORT` means all interfaces).
    /// Repeatable: listen on several addresses, e.g. an IPv4 and an IPv6 one.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":10027",
        action = clap::ArgAction::Append
    )]
    pub listen_address: Vec<String>,

    /// Listen on the sockets systemd passes (socket activation, see the `.socket`
    /// unit) instead of `--web.listen-address`.
    #[arg(long = "web.systemd-socket")]
    pub web_systemd_socket: bool,

    /// Path to a web configuration file (exporter-toolkit format) enabling TLS and/or
    /// basic authentication; re-read when it changes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// For tests: one figure for the server's header-read, body-read, TLS-handshake and
    /// write-stall timeouts (default 10s each).
    #[arg(long = "web.timeout", value_name = "DURATION", hide = true, value_parser = parse_web_timeout)]
    pub web_timeout: Option<std::time::Duration>,

    /// Maximum number of requests served at once (0 = no limit); more are answered 503.
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = 40)]
    pub web_max_requests: usize,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        value_parser = parse_telemetry_path
    )]
    pub telemetry_path: String,

    /// Directory where the last good state is kept across restarts (off: stateless).
    /// With --once, a daemon's state is read (never written): its recorded changes
    /// go into the report and the poll is compared with it.
    #[arg(long = "storage.path", value_name = "DIR")]
    pub storage_path: Option<PathBuf>,

    /// Enable shutdown and reload via HTTP request (`POST /-/reload`); SIGHUP always
    /// reloads.
    #[arg(long = "web.enable-lifecycle")]
    pub web_enable_lifecycle: bool,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,

    /// Replicas sharing the work: each polls only the images that hash to it.
    #[arg(long = "shard.count", value_name = "N", default_value_t = 1)]
    pub shard_count: u32,

    /// This replica's index, 0-based (a StatefulSet pod name like `ims-exporter-2` works).
    #[arg(
        long = "shard.index",
        value_name = "I",
        env = "SHARD_INDEX",
        default_value = "0"
    )]
    pub shard_index: String,

    /// Poll every image once, print the metrics to stdout and exit: 0 if every image
    /// succeeded, 1 otherwise (for cron and the node_exporter textfile collector).
    #[arg(long)]
    pub once: bool,

    /// What `--once` prints: the metrics (`prometheus`), or a report of the current
    /// shares, unexpected first, with poll failures (`json`, `csv`, `markdown`).
    #[arg(long = "once.format", value_enum, default_value = "prometheus")]
    pub once_format: OnceFormat,

    /// Run against a built-in fake IMS with generated images and members; needs no
    /// cloud account and ignores --config.file.
    #[arg(long)]
    pub demo: bool,

    /// Members of the demo's large image (about four series each): raise it to load-test
    /// scrapes of a big snapshot.
    #[arg(long = "demo.large-image-members", value_name = "N", default_value_t = DEMO_LARGE_IMAGE_MEMBERS)]
    pub demo_large_image_members: usize,

    /// Poll interval in demo mode.
    #[arg(long = "demo.poll-interval", value_name = "DURATION", default_value = "15s", value_parser = parse_demo_interval)]
    pub demo_poll_interval: std::time::Duration,
}

/// `--web.telemetry-path`: an absolute path of its own (checked here, so a bad value
/// exits 2 with a message instead of failing when the routes are built).
fn parse_telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("must start with '/', got {s:?}"));
    }
    if crate::pages::RESERVED.contains(&s) || s.starts_with("/-/") || s.starts_with("/api/") {
        return Err(format!("{s:?} is reserved for the server's own pages"));
    }
    if s.contains(['{', '}', '*', '?', '#']) || s.contains("//") || s.ends_with('/') {
        return Err(format!(
            "must be a plain path such as /metrics (no '{{', '}}', '*', '?', '#', '//' or trailing '/'), got {s:?}"
        ));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("must not contain white space, got {s:?}"));
    }
    Ok(s.to_string())
}

/// `--web.timeout`: 100ms to 10m.
fn parse_web_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(600) {
        return Err(format!("must be between 100ms and 10m, got {s}"));
    }
    Ok(d)
}

/// `--demo.poll-interval`: 1s to 1d.
fn parse_demo_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(86_400) {
        return Err(format!("must be between 1s and 1d, got {s}"));
    }
    Ok(d)
}

/// `--once.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnceFormat {
    Prometheus,
    Json,
    Csv,
    Markdown,
}
