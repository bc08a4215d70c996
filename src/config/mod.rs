//! The configuration file: serde types, defaults and validation.
//!
//! Everything a user can get wrong is caught here, at start or reload, with the key
//! path and the file in the message. Nothing downstream re-validates.

pub mod web;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::allowlist::{Allowlist, AllowlistFile, Entry};
use crate::auth::credentials::{self, CredentialsConfig};
use crate::auth::ecs_metadata::EcsMetadata;
use crate::auth::provider::{Chain, CredentialProvider, ENV_CREDENTIALS_FILE};
use crate::ids::{ImageId, MemberId, ProjectId, Source};
use crate::ims::client::{ApiTarget, ClientOptions, ImageFilter};
use crate::ims::ratelimit::{Rate, TokenBucket};
use crate::ims::retry::RetryPolicy;
use crate::shard::Shard;

pub const DEFAULT_ENDPOINT: &str = "https://ims.{region}.myhuaweicloud.com";
pub const DEFAULT_IAM_ENDPOINT: &str = "https://iam.myhuaweicloud.com";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
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
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
fn default_imagetype() -> String {
    "private".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(default = "default_page_size")]
    page_size: i64,
    #[serde(default = "default_max_concurrent_requests")]
    max_concurrent_requests: i64,
    #[serde(default = "default_discovery_interval", with = "humantime_serde")]
    discovery_interval: Duration,
    #[serde(default = "default_true")]
    member_metrics: bool,
    #[serde(default)]
    retry: FileRetry,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    max_response_bytes: Option<ByteSize>,
    #[serde(default = "default_max_members_per_image")]
    max_members_per_image: i64,
    #[serde(default = "default_max_members_total")]
    max_members_total: i64,
    #[serde(default)]
    credentials: Option<CredentialsConfig>,
    #[serde(default)]
    ecs_metadata: Option<FileEcsMetadata>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    allowed_members: Vec<String>,
    #[serde(default)]
    allowed_members_file: Option<PathBuf>,
    #[serde(default)]
    targets: Vec<FileTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEcsMetadata {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    #[serde(default = "default_max_attempts")]
    max_attempts: i64,
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    max_backoff: Duration,
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
struct ByteSize(u64);

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
struct FileTarget {
    region: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    iam_endpoint: Option<String>,
    #[serde(default)]
    credentials: Option<CredentialsConfig>,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    allowed_members: Vec<String>,
    #[serde(default)]
    allowed_members_file: Option<PathBuf>,
    #[serde(default)]
    discover: Option<FileDiscover>,
    #[serde(default)]
    images: Vec<FileImage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDiscover {
    #[serde(default = "default_imagetype")]
    imagetype: String,
    #[serde(default)]
    name_regex: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    exclude_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImage {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    expected_members: Vec<String>,
    #[serde(default)]
    watch_members: Vec<String>,
    #[serde(default = "default_true")]
    list_members: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    pub page_size: u32,
    pub max_concurrent_requests: usize,
    pub discovery_interval: Duration,
    /// Per-member series (info, timestamps, age); off: counts and unexpected only.
    pub member_metrics: bool,
    /// Which images this replica polls (from the command line, not the file).
    pub shard: Shard,
    pub retry: RetryPolicy,
    pub max_response_bytes: usize,
    /// A poll of an image with more members fails `too_large`.
    pub max_members_per_image: usize,
    /// Members held across all images; a poll that would pass it fails `too_large`.
    pub max_members_total: usize,
    /// Extra CA certificates (PEM) to trust for the API endpoints.
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub targets: Vec<Target>,
}

impl Config {
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests,
            retry: self.retry,
            max_response_bytes: self.max_response_bytes,
            ca_file: self.ca_file.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
        }
    }
}

/// Default cap on one API response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct Target {
    pub region: String,
    /// Where and as whom the target's calls go (endpoint, project, credentials, rate
    /// limit, request share).
    pub api: ApiTarget,
    /// IAM endpoint, for looking up an omitted project ID.
    pub iam_endpoint: Url,
    /// Entries that apply to every image of the target (top level + target).
    pub allowlist: Allowlist,
    pub discover: Option<Discover>,
    pub images: Vec<ImageConfig>,
}

impl Target {
    pub fn project_id(&self) -> &ProjectId {
        &self.api.project_id
    }

    pub fn credentials(&self) -> &Arc<CredentialProvider> {
        &self.api.credentials
    }
}

#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub id: ImageId,
    pub name: Option<String>,
    pub source: Source,
    /// Everything that applies to this image: top level, target and `expected_members`.
    pub allowlist: Allowlist,
    pub watch_members: Vec<MemberId>,
    pub list_members: bool,
}

impl ImageConfig {
    /// A discovered image: the target's allowlist, listed, nothing watched.
    pub fn discovered(target: &Target, id: ImageId, name: String) -> Self {
        ImageConfig {
            id,
            name: Some(name),
            source: Source::Discovery,
            allowlist: target.allowlist.clone(),
            watch_members: Vec::new(),
            list_members: true,
        }
    }
}

/// Filters for listing a target's own images (`GET /v2/cloudimages`).
#[derive(Debug, Clone)]
pub struct Discover {
    /// The filters the API applies.
    pub api: ImageFilter,
    pub name_regex: Option<regex::Regex>,
    pub exclude_ids: Vec<ImageId>,
}

impl Discover {
    /// Whether `other` selects the same images (what a reload may carry over).
    pub fn same_filter(&self, other: &Discover) -> bool {
        self.api == other.api
            && self.name_regex.as_ref().map(regex::Regex::as_str)
                == other.name_regex.as_ref().map(regex::Regex::as_str)
            && self.exclude_ids == other.exclude_ids
    }
}

impl Config {
    /// Configured images this replica polls.
    pub fn image_count(&self) -> usize {
        self.targets
            .iter()
            .map(|t| {
                t.images
                    .iter()
                    .filter(|i| self.shard.owns(t.project_id().as_str(), i.id.as_str()))
                    .count()
            })
            .sum()
    }

    /// Where each target's credentials come from, for `--config.check`.
    pub fn credential_sources(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .targets
            .iter()
            .map(|t| t.credentials().describe())
            .collect();
        out.dedup();
        out
    }

    /// The distinct credential providers (shared ones once).
    pub fn credential_providers(&self) -> Vec<Arc<CredentialProvider>> {
        let mut out: Vec<Arc<CredentialProvider>> = Vec::new();
        for t in &self.targets {
            if !out.iter().any(|p| Arc::ptr_eq(p, t.credentials())) {
                out.push(t.credentials().clone());
            }
        }
        out
    }
}

/// What it takes to look up an omitted project ID through IAM.
pub struct LookupRequest {
    pub key: String,
    pub client: ClientOptions,
    pub region: String,
    pub iam_endpoint: Url,
    pub credentials: Arc<CredentialProvider>,
}

/// Resolves omitted project IDs (the application implements it with IAM and a cache).
pub trait ProjectLookup {
    fn lookup<'a>(
        &'a self,
        request: &'a LookupRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ProjectId, String>> + Send + 'a>>;
}

/// For configs that name every project ID.
struct NoLookup;

impl ProjectLookup for NoLookup {
    fn lookup<'a>(
        &'a self,
        _: &'a LookupRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ProjectId, String>> + Send + 'a>> {
        Box::pin(std::future::ready(Err(
            "must be set here (looking it up through IAM happens only when the exporter starts)"
                .to_string(),
        )))
    }
}

/// Each target's fair share of the global request bound: all shares together never
/// exceed it (unless there are more targets than requests), so no set of hung targets
/// can hold the requests the others need.
pub fn target_share(max_concurrent_requests: usize, targets: usize) -> usize {
    (max_concurrent_requests / targets.max(1)).max(1)
}

/// Reads and validates a config file, looking up omitted project IDs. `env` looks up
/// environment variables (the credentials chain); tests pass their own.
pub async fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    projects: &dyn ProjectLookup,
) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text =
        crate::files::read_text_capped(path, crate::files::MAX_CONFIG_BYTES).map_err(|source| {
            ConfigError::Read {
                file: file.clone(),
                source,
            }
        })?;
    build(&text, &file, env, projects).await
}

/// Validates a config whose targets all name their project ID.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    // With `NoLookup` nothing waits, so one poll completes the future.
    let mut fut = std::pin::pin!(build(text, file, env, &NoLookup));
    match fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(ConfigError::Parse {
            file: file.into(),
            message: "internal: config parsing waited".into(),
        }),
    }
}

/// Validates `text` (named `file` in errors), resolving omitted project IDs with `projects`.
pub async fn build(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    projects: &dyn ProjectLookup,
) -> Result<Config, ConfigError> {
    let raw: FileConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let invalid = |key: String, message: String| ConfigError::Invalid {
        file: file.to_string(),
        key,
        message,
    };

    let week = humantime::format_duration(MAX_INTERVAL);
    if raw.poll_interval < Duration::from_secs(1) || raw.poll_interval > MAX_INTERVAL {
        return Err(invalid(
            "poll_interval".into(),
            format!("must be between 1s and {week}"),
        ));
    }
    if raw.request_timeout.is_zero() || raw.request_timeout > Duration::from_secs(600) {
        return Err(invalid(
            "request_timeout".into(),
            "must be between 1ms and 10m".into(),
        ));
    }
    if !(1..=1000).contains(&raw.page_size) {
        return Err(invalid(
            "page_size".into(),
            format!("must be between 1 and 1000, got {}", raw.page_size),
        ));
    }
    if !(1..=256).contains(&raw.max_concurrent_requests) {
        return Err(invalid(
            "max_concurrent_requests".into(),
            format!(
                "must be between 1 and 256, got {}",
                raw.max_concurrent_requests
            ),
        ));
    }
    if raw.discovery_interval < Duration::from_secs(1) || raw.discovery_interval > MAX_INTERVAL {
        return Err(invalid(
            "discovery_interval".into(),
            format!("must be between 1s and {week}"),
        ));
    }
    if raw.retry.max_backoff > MAX_BACKOFF {
        return Err(invalid(
            "retry.max_backoff".into(),
            "must be at most 10m".into(),
        ));
    }
    if !(1..=10_000_000).contains(&raw.max_members_per_image) {
        return Err(invalid(
            "max_members_per_image".into(),
            format!(
                "must be between 1 and 10000000, got {}",
                raw.max_members_per_image
            ),
        ));
    }
    if !(1..=100_000_000).contains(&raw.max_members_total) {
        return Err(invalid(
            "max_members_total".into(),
            format!(
                "must be between 1 and 100000000, got {}",
                raw.max_members_total
            ),
        ));
    }
    if !(1..=10).contains(&raw.retry.max_attempts) {
        return Err(invalid(
            "retry.max_attempts".into(),
            format!("must be between 1 and 10, got {}", raw.retry.max_attempts),
        ));
    }
    if raw.retry.initial_backoff > raw.retry.max_backoff {
        return Err(invalid(
            "retry.initial_backoff".into(),
            "must not be longer than retry.max_backoff".into(),
        ));
    }
    let max_response_bytes = raw
        .max_response_bytes
        .map(|b| b.0)
        .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES as u64);
    if !(1024..=(1u64 << 30)).contains(&max_response_bytes) {
        return Err(invalid(
            "max_response_bytes".into(),
            "must be between 1KiB and 1GiB".into(),
        ));
    }
    let parse_rate = |key: String, value: &Option<String>| -> Result<Option<Rate>, ConfigError> {
        value
            .as_deref()
            .map(Rate::parse)
            .transpose()
            .map_err(|m| invalid(key, m))
    };
    let global_rate = parse_rate("rate_limit".into(), &raw.rate_limit)?;
    let client = ClientOptions {
        request_timeout: raw.request_timeout,
        max_concurrent_requests: raw.max_concurrent_requests as usize,
        retry: RetryPolicy {
            max_attempts: raw.retry.max_attempts as u32,
            initial_backoff: raw.retry.initial_backoff,
            max_backoff: raw.retry.max_backoff,
        },
        max_response_bytes: max_response_bytes as usize,
        ca_file: raw.ca_file.clone(),
        insecure_skip_verify: raw.insecure_skip_verify,
    };
    if raw.targets.is_empty() {
        return Err(invalid(
            "targets".into(),
            "at least one target is required".into(),
        ));
    }

    if let Some(ca) = &raw.ca_file {
        crate::tls::read_ca_file(ca).map_err(|m| invalid("ca_file".into(), m))?;
    }
    let ecs_metadata = match &raw.ecs_metadata {
        None => None,
        Some(m) => {
            let url = m
                .url
                .as_deref()
                .unwrap_or(crate::auth::ecs_metadata::DEFAULT_URL);
            let url = parse_endpoint(url, "").map_err(|m| invalid("ecs_metadata.url".into(), m))?;
            Some(
                EcsMetadata::new(url, raw.request_timeout)
                    .map_err(|m| invalid("ecs_metadata".into(), m))?,
            )
        }
    };
    // The chain for targets without their own block: top-level block, environment,
    // SDK credentials file, ECS metadata. One provider, shared by those targets.
    let chain = Chain {
        env,
        ecs_metadata: ecs_metadata.as_ref(),
    };
    let global = chain
        .resolve(raw.credentials.as_ref(), "credentials")
        .map_err(|e| invalid(e.key, e.message))?
        .map(Arc::new);

    let global_allow = allowlist(
        &raw.allowed_members,
        raw.allowed_members_file.as_deref(),
        "",
    )
    .map_err(|(k, m)| invalid(k, m))?;

    let mut seen: HashMap<(ProjectId, ImageId), String> = HashMap::new();
    let mut targets = Vec::with_capacity(raw.targets.len());
    for (ti, t) in raw.targets.iter().enumerate() {
        let key = |k: &str| format!("targets[{ti}].{k}");
        if t.region.is_empty()
            || !t
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                key("region"),
                format!("must be a region name like cn-north-4, got {:?}", t.region),
            ));
        }
        let iam_endpoint = parse_endpoint(
            t.iam_endpoint.as_deref().unwrap_or(DEFAULT_IAM_ENDPOINT),
            &t.region,
        )
        .map_err(|m| invalid(key("iam_endpoint"), m))?;
        let rate_limit = parse_rate(key("rate_limit"), &t.rate_limit)?
            .or(global_rate)
            .map(|r| Arc::new(TokenBucket::new(r)));
        let endpoint = parse_endpoint(t.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT), &t.region)
            .map_err(|m| invalid(key("endpoint"), m))?;
        let credentials = match &t.credentials {
            Some(c) => Arc::new(
                chain
                    .resolve(Some(c), &key("credentials"))
                    .map_err(|e| invalid(e.key, e.message))?
                    .ok_or_else(|| invalid(key("credentials"), "no credentials".into()))?,
            ),
            None => global.clone().ok_or_else(|| {
                invalid(
                    "credentials".into(),
                    format!(
                        "no credentials for targets[{ti}]: set credentials.access_key_id and \
                         credentials.secret_access_key (or their _file variants), or the {} and {} \
                         environment variables, or [basic] ak and sk in the SDK credentials file ({}), \
                         or ecs_metadata on an ECS/CCE server with an agency",
                        credentials::ENV_AK,
                        credentials::ENV_SK,
                        chain.credentials_file().map(|p| p.display().to_string()).unwrap_or_else(|| ENV_CREDENTIALS_FILE.into()),
                    ),
                )
            })?,
        };
        let project_id = match &t.project_id {
            Some(p) => ProjectId::parse(p).map_err(|e| invalid(key("project_id"), e.0))?,
            None => {
                let request = LookupRequest {
                    key: key("project_id"),
                    client: client.clone(),
                    region: t.region.clone(),
                    iam_endpoint: iam_endpoint.clone(),
                    credentials: credentials.clone(),
                };
                projects
                    .lookup(&request)
                    .await
                    .map_err(|m| invalid(key("project_id"), m))?
            }
        };
        if let Some(first) = targets
            .iter()
            .position(|o: &Target| o.region == t.region && o.project_id() == &project_id)
        {
            // Per-target series (discovery, cycle time) are labelled by region and project.
            return Err(invalid(
                key("project_id"),
                format!("region {} project {project_id} is already targets[{first}]; list its images there", t.region),
            ));
        }
        if t.images.is_empty() && t.discover.is_none() {
            return Err(invalid(
                key("images"),
                "at least one image is required (or a discover: block)".into(),
            ));
        }
        let target_allow = Allowlist::merge(&[
            &global_allow,
            &allowlist(
                &t.allowed_members,
                t.allowed_members_file.as_deref(),
                &format!("targets[{ti}]."),
            )
            .map_err(|(k, m)| invalid(k, m))?,
        ]);
        let discover = match &t.discover {
            None => None,
            Some(d) => Some(discover(d, &key("discover")).map_err(|(k, m)| invalid(k, m))?),
        };
        let mut images = Vec::with_capacity(t.images.len());
        for (ii, img) in t.images.iter().enumerate() {
            let ikey = |k: &str| key(&format!("images[{ii}].{k}"));
            let path = ikey("id");
            let id = ImageId::parse(&img.id).map_err(|e| invalid(path.clone(), e.0))?;
            if let Some(first) = seen.insert((project_id.clone(), id.clone()), path.clone()) {
                return Err(invalid(
                    path,
                    format!("image {id} in project {project_id} is already listed at {first}"),
                ));
            }
            let expected = allowlist(
                &img.expected_members,
                None,
                &format!("targets[{ti}].images[{ii}]."),
            )
            .map_err(|(k, m)| invalid(k.replace("allowed_members", "expected_members"), m))?;
            let mut watch_members = Vec::with_capacity(img.watch_members.len());
            for (wi, m) in img.watch_members.iter().enumerate() {
                let wkey = ikey(&format!("watch_members[{wi}]"));
                let id = MemberId::parse(m).map_err(|e| invalid(wkey.clone(), e.0))?;
                if watch_members.contains(&id) {
                    return Err(invalid(wkey, format!("{id} is listed twice")));
                }
                watch_members.push(id);
            }
            if !img.list_members && watch_members.is_empty() {
                return Err(invalid(
                    ikey("list_members"),
                    "with list_members: false, watch_members must name at least one member".into(),
                ));
            }
            images.push(ImageConfig {
                id,
                name: img.name.clone(),
                source: Source::Config,
                allowlist: Allowlist::merge(&[&target_allow, &expected]),
                watch_members,
                list_members: img.list_members,
            });
        }
        targets.push(Target {
            region: t.region.clone(),
            api: ApiTarget {
                endpoint,
                project_id,
                credentials,
                rate_limit,
                // Set below, once the number of targets is known.
                concurrency: Arc::new(tokio::sync::Semaphore::new(1)),
            },
            iam_endpoint,
            allowlist: target_allow,
            discover,
            images,
        });
    }
    let share = target_share(raw.max_concurrent_requests as usize, targets.len());
    for t in &mut targets {
        t.api.concurrency = Arc::new(tokio::sync::Semaphore::new(share));
    }

    Ok(Config {
        poll_interval: raw.poll_interval,
        request_timeout: raw.request_timeout,
        page_size: raw.page_size as u32,
        max_concurrent_requests: raw.max_concurrent_requests as usize,
        discovery_interval: raw.discovery_interval,
        member_metrics: raw.member_metrics,
        shard: Shard::default(),
        retry: client.retry,
        max_response_bytes: client.max_response_bytes,
        max_members_per_image: raw.max_members_per_image as usize,
        max_members_total: raw.max_members_total as usize,
        ca_file: client.ca_file,
        insecure_skip_verify: client.insecure_skip_verify,
        targets,
    })
}

/// Validates `allowed_members` entries and loads `allowed_members_file`. `prefix` is
/// the key path of the block (`""` at top level). Errors are (key, message).
fn allowlist(
    entries: &[String],
    file: Option<&Path>,
    prefix: &str,
) -> Result<Allowlist, (String, String)> {
    let mut out = Allowlist::default();
    for (i, e) in entries.iter().enumerate() {
        out.entries
            .push(Entry::parse(e).map_err(|m| (format!("{prefix}allowed_members[{i}]"), m))?);
    }
    if let Some(path) = file {
        out.files.push(Arc::new(
            AllowlistFile::load(path).map_err(|m| (format!("{prefix}allowed_members_file"), m))?,
        ));
    }
    Ok(out)
}

fn discover(d: &FileDiscover, key: &str) -> Result<Discover, (String, String)> {
    let name_regex = match &d.name_regex {
        None => None,
        Some(r) => Some(regex::Regex::new(r).map_err(|e| {
            (
                format!("{key}.name_regex"),
                format!("not a valid regular expression: {e}"),
            )
        })?),
    };
    let mut exclude_ids = Vec::with_capacity(d.exclude_ids.len());
    for (i, id) in d.exclude_ids.iter().enumerate() {
        exclude_ids.push(ImageId::parse(id).map_err(|e| (format!("{key}.exclude_ids[{i}]"), e.0))?);
    }
    let simple = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !simple(&d.imagetype) {
        return Err((
            format!("{key}.imagetype"),
            format!("must be an image type like private, got {:?}", d.imagetype),
        ));
    }
    if let Some(v) = d.visibility.as_deref().filter(|v| !simple(v)) {
        return Err((
            format!("{key}.visibility"),
            format!("must be a visibility like private or shared, got {v:?}"),
        ));
    }
    Ok(Discover {
        api: ImageFilter {
            imagetype: d.imagetype.clone(),
            tag: d.tag.clone(),
            visibility: d.visibility.clone(),
        },
        name_regex,
        exclude_ids,
    })
}

/// An endpoint URL, `{region}` substituted; http(s) only, no query or fragment.
fn parse_endpoint(template: &str, region: &str) -> Result<Url, String> {
    let text = template.replace("{region}", region);
    let url = Url::parse(&text).map_err(|e| format!("not a URL ({e}): {text:?}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("must be an http or https URL, got {text:?}"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
        return Err(format!(
            "must be a base URL without query or fragment, got {text:?}"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    //! The values a valid config yields. What makes a config invalid is a fixture
    //! file each in `tests/data/config/bad/`, checked by `tests/config_fixtures.rs`.
    use super::*;

    /// The text of a fixture under `tests/data/config/`.
    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/config/",
                $path
            ))
        };
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn good_config_gets_defaults() {
        let c = parse(fixture!("ok/minimal.yaml"), "config.yaml", &no_env).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(60));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.page_size, 1000);
        assert_eq!(c.max_concurrent_requests, 8);
        assert_eq!(
            c.targets[0].api.endpoint.as_str(),
            "https://ims.cn-north-4.myhuaweicloud.com/"
        );
    }

    /// Without a `credentials:` block (the fixture that fails without them), the
    /// SDK environment variables are used.
    #[test]
    fn missing_credentials_come_from_the_environment() {
        let text = fixture!("bad/missing-credentials.yaml");
        let env = |k: &str| match k {
            "HUAWEICLOUD_SDK_AK" => Some("EAK".to_string()),
            "HUAWEICLOUD_SDK_SK" => Some("ESK".to_string()),
            _ => None,
        };
        let c = parse(text, "config.yaml", &env).unwrap();
        assert_eq!(
            c.targets[0].credentials().current().unwrap().access_key_id,
            "EAK"
        );
    }

    #[test]
    fn retry_rate_limit_and_body_cap() {
        let text = fixture!("ok/retry-rate-limit-and-body-cap.yaml");
        let c = parse(text, "config.yaml", &no_env).unwrap();
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.max_response_bytes, 2 << 20);
        assert!(c.targets[0].api.rate_limit.is_some());
    }

    #[test]
    fn endpoint_template() {
        let text = fixture!("ok/endpoint-template.yaml");
        let c = parse(text, "config.yaml", &no_env).unwrap();
        assert_eq!(
            c.targets[0].api.endpoint.host_str(),
            Some("ims.cn-north-4.myhuaweicloud.eu")
        );
    }
}
