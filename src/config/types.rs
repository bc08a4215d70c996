//! The validated configuration as plain values: settings, targets, images, their
//! allowlists and credential sources. Nothing here is live: the runtime plan
//! ([`crate::poll::plan`]) builds clients, limiters and providers from these values,
//! and a reload compares two of them.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use reqwest::Url;

use crate::allowlist::Allowlist;
use crate::auth::credentials::Secret;
use crate::auth::source::CredentialSource;
use crate::ids::{ImageId, MemberId, ProjectId, Source};
use crate::ims::client::{ClientOptions, ImageFilter};
use crate::ims::ratelimit::Rate;
use crate::ims::retry::RetryPolicy;
use crate::shard::Shard;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
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
    /// Where share changes are heard of between polls (traces read, pushed events).
    pub events: Events,
    /// `incoming:` is set: how often images shared with the targets are listed.
    pub incoming_interval: Option<Duration>,
    /// Images offered to one target that one listing may hold.
    pub max_incoming_images: usize,
    pub targets: Vec<Target>,
}

/// `events:`: sources of "poll this image now".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Events {
    pub cts: Option<CtsSettings>,
    pub webhook: Option<WebhookSettings>,
}

/// `events.cts`: how often each target's trace list is read, and how far back every
/// read reaches again (for traces recorded late).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CtsSettings {
    pub interval: Duration,
    pub lookback: Duration,
}

/// `events.webhook`: `POST /api/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// The bearer token (read at load; never printed).
    pub token: Secret,
    pub token_file: PathBuf,
    /// SMN topics whose subscription confirmations are followed.
    pub smn_topics: Vec<String>,
    /// Hosts (`host` or `host:port`) besides `smn.{region}.myhuaweicloud.com` of the
    /// configured regions that SMN confirmation and certificate URLs may name.
    pub smn_hosts: Vec<String>,
    /// Refuse SMN messages whose signature does not verify.
    pub smn_verify: bool,
    /// Accepted requests per second at most (beyond: 429).
    pub rate_limit: Rate,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub region: String,
    /// Base URL of the IMS endpoint.
    pub endpoint: Url,
    pub project_id: ProjectId,
    /// Where the target's credentials come from (shared sources are equal values).
    pub credentials: CredentialSource,
    /// The target's request rate limit, if any.
    pub rate_limit: Option<Rate>,
    /// IAM endpoint, for looking up an omitted project ID.
    pub iam_endpoint: Url,
    /// CTS endpoint whose trace list the target reads; `None` when `events.cts` is
    /// not set or the target opted out (`cts: false`).
    pub cts_endpoint: Option<Url>,
    /// The owners whose images offered to this target are trusted (top level +
    /// target); `None` when `incoming:` is not set or the target opted out.
    pub incoming: Option<Allowlist>,
    /// Entries that apply to every image of the target (top level + target).
    pub allowlist: Allowlist,
    pub discover: Option<Discover>,
    pub images: Vec<ImageConfig>,
}

impl Target {
    pub fn project_id(&self) -> &ProjectId {
        &self.project_id
    }
}

#[derive(Debug, Clone, PartialEq)]
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

/// The same images are selected: what a reload may carry over.
impl PartialEq for Discover {
    fn eq(&self, other: &Discover) -> bool {
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

    /// The distinct credential sources (a shared one once).
    pub fn credential_sources(&self) -> Vec<&CredentialSource> {
        let mut out: Vec<&CredentialSource> = Vec::new();
        for t in &self.targets {
            if !out.contains(&&t.credentials) {
                out.push(&t.credentials);
            }
        }
        out
    }
}

/// What it takes to look up an omitted project ID through IAM.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    pub key: String,
    pub client: ClientOptions,
    pub region: String,
    pub iam_endpoint: Url,
    pub credentials: CredentialSource,
}

/// Resolves omitted project IDs (the application implements it with IAM and a cache).
pub trait ProjectLookup {
    fn lookup<'a>(
        &'a self,
        request: &'a LookupRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ProjectId, String>> + Send + 'a>>;
}

/// A (key path, message) validation failure, named with its file by the caller.
pub(super) type Fail = (String, String);
