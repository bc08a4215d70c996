//! The config file as written: serde types with their defaults. Unknown keys are
//! refused here (with their path); ranges and meaning are checked in
//! [`super::validate`] and [`super::build`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::credentials::CredentialsConfig;
use crate::ims::retry::RetryPolicy;

pub const DEFAULT_ENDPOINT: &str = "https://ims.{region}.myhuaweicloud.com";
pub const DEFAULT_IAM_ENDPOINT: &str = "https://iam.myhuaweicloud.com";
pub const DEFAULT_CTS_ENDPOINT: &str = "https://cts.{region}.myhuaweicloud.com";

/// Parses the YAML text; errors name the key path (serde_yaml's message).
pub(super) fn parse(text: &str) -> Result<FileConfig, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_page_size() -> i64 {
    1000
}
fn default_max_concurrent_requests() -> i64 {
    8
}
fn default_discovery_interval() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max_members_per_image() -> i64 {
    DEFAULT_MAX_MEMBERS_PER_IMAGE as i64
}
fn default_max_members_total() -> i64 {
    DEFAULT_MAX_MEMBERS_TOTAL as i64
}
/// Default caps on members held: far above any real image (IMS shares an image with
/// hundreds of projects at most) and any real fleet, far below what exhausts memory
/// (about 200 bytes a member).
pub const DEFAULT_MAX_MEMBERS_PER_IMAGE: usize = 100_000;
pub const DEFAULT_MAX_MEMBERS_TOTAL: usize = 1_000_000;
/// Longest `poll_interval`, `discovery_interval` and retry backoff accepted: values
/// beyond (`500000000000years`) overflow timers.
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(600);
fn default_imagetype() -> String {
    "private".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub(super) poll_interval: Duration,
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub(super) request_timeout: Duration,
    #[serde(default = "default_page_size")]
    pub(super) page_size: i64,
    #[serde(default = "default_max_concurrent_requests")]
    pub(super) max_concurrent_requests: i64,
    #[serde(default = "default_discovery_interval", with = "humantime_serde")]
    pub(super) discovery_interval: Duration,
    #[serde(default = "default_true")]
    pub(super) member_metrics: bool,
    #[serde(default)]
    pub(super) retry: FileRetry,
    #[serde(default)]
    pub(super) rate_limit: Option<String>,
    #[serde(default)]
    pub(super) max_response_bytes: Option<ByteSize>,
    #[serde(default = "default_max_members_per_image")]
    pub(super) max_members_per_image: i64,
    #[serde(default = "default_max_members_total")]
    pub(super) max_members_total: i64,
    #[serde(default)]
    pub(super) credentials: Option<CredentialsConfig>,
    #[serde(default)]
    pub(super) ecs_metadata: Option<FileEcsMetadata>,
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure_skip_verify: bool,
    #[serde(default)]
    pub(super) allowed_members: Vec<String>,
    #[serde(default)]
    pub(super) allowed_members_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) events: Option<FileEvents>,
    #[serde(default)]
    pub(super) incoming: Option<FileIncoming>,
    #[serde(default = "default_max_incoming_images")]
    pub(super) max_incoming_images: i64,
    #[serde(default)]
    pub(super) targets: Vec<FileTarget>,
}

fn default_max_incoming_images() -> i64 {
    DEFAULT_MAX_INCOMING_IMAGES as i64
}
/// Images offered to one target that one listing may hold.
pub const DEFAULT_MAX_INCOMING_IMAGES: usize = 10_000;

/// `incoming:`: images other tenants share with our projects, and whose we trust.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIncoming {
    #[serde(default, with = "humantime_serde")]
    pub(super) interval: Option<Duration>,
    #[serde(default)]
    pub(super) trusted_owners: Vec<String>,
    #[serde(default)]
    pub(super) trusted_owners_file: Option<PathBuf>,
}

/// `targets[].incoming`: more trusted owners for this target, or `false` to list none.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum FileTargetIncoming {
    Enabled(bool),
    Block(FileTargetTrusted),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTargetTrusted {
    #[serde(default)]
    pub(super) trusted_owners: Vec<String>,
    #[serde(default)]
    pub(super) trusted_owners_file: Option<PathBuf>,
}

/// `events:`: where share changes are heard of between polls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEvents {
    #[serde(default)]
    pub(super) cts: Option<FileCts>,
    #[serde(default)]
    pub(super) webhook: Option<FileWebhook>,
}

fn default_cts_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_cts_lookback() -> Duration {
    Duration::from_secs(300)
}

/// `events.cts:`: read each target's Cloud Trace Service trace list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCts {
    #[serde(default = "default_cts_interval", with = "humantime_serde")]
    pub(super) interval: Duration,
    #[serde(default = "default_cts_lookback", with = "humantime_serde")]
    pub(super) lookback: Duration,
}

/// `events.webhook:`: `POST /api/v1/events` for pushed traces.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWebhook {
    pub(super) token_file: PathBuf,
    #[serde(default)]
    pub(super) smn_topics: Vec<String>,
    #[serde(default)]
    pub(super) smn_hosts: Vec<String>,
    #[serde(default)]
    pub(super) smn_verify: Option<bool>,
    #[serde(default)]
    pub(super) rate_limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEcsMetadata {
    #[serde(default)]
    pub(super) url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRetry {
    #[serde(default = "default_max_attempts")]
    pub(super) max_attempts: i64,
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub(super) initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub(super) max_backoff: Duration,
}

impl Default for FileRetry {
    fn default() -> Self {
        FileRetry {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_attempts() -> i64 {
    RetryPolicy::default().max_attempts.into()
}
fn default_initial_backoff() -> Duration {
    RetryPolicy::default().initial_backoff
}
fn default_max_backoff() -> Duration {
    RetryPolicy::default().max_backoff
}

/// A byte count: a number, or a string like `8MiB`, `512KiB`, `1MB`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ByteSize(pub(super) u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so errors keep the key path.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size in bytes, like 8388608 or 8MiB")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("expected a size like 8MiB, got {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTarget {
    pub(super) region: String,
    #[serde(default)]
    pub(super) project_id: Option<String>,
    #[serde(default)]
    pub(super) endpoint: Option<String>,
    #[serde(default)]
    pub(super) iam_endpoint: Option<String>,
    #[serde(default)]
    pub(super) cts_endpoint: Option<String>,
    /// `false`: this target reads no traces although `events.cts` is set.
    #[serde(default = "default_true")]
    pub(super) cts: bool,
    #[serde(default)]
    pub(super) incoming: Option<FileTargetIncoming>,
    #[serde(default)]
    pub(super) credentials: Option<CredentialsConfig>,
    #[serde(default)]
    pub(super) rate_limit: Option<String>,
    #[serde(default)]
    pub(super) allowed_members: Vec<String>,
    #[serde(default)]
    pub(super) allowed_members_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) discover: Option<FileDiscover>,
    #[serde(default)]
    pub(super) images: Vec<FileImage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDiscover {
    #[serde(default = "default_imagetype")]
    pub(super) imagetype: String,
    #[serde(default)]
    pub(super) name_regex: Option<String>,
    #[serde(default)]
    pub(super) tag: Option<String>,
    #[serde(default)]
    pub(super) visibility: Option<String>,
    #[serde(default)]
    pub(super) exclude_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileImage {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) expected_members: Vec<String>,
    #[serde(default)]
    pub(super) watch_members: Vec<String>,
    #[serde(default = "default_true")]
    pub(super) list_members: bool,
}
