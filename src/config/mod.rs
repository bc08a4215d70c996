//! The configuration: the validated, runtime form ([`Config`], [`Target`], ...) and how
//! it is made from the file: [`file`] (serde schema and defaults) → [`validate`]
//! (ranges) → [`build`] (the runtime plan, block by block, synchronous) → the async
//! IAM look-up of omitted project IDs ([`build()`] only) → the checks that need every
//! project ID. The web config (TLS, basic auth) is the HTTP
//! server's ([`crate::http::web`]).
//!
//! Everything a user can get wrong is caught here, at start or reload, with the key
//! path and the file in the message. Nothing downstream re-validates.

mod build;
mod file;
mod validate;

pub use crate::files::ConfigError;
pub use file::{
    DEFAULT_ENDPOINT, DEFAULT_IAM_ENDPOINT, DEFAULT_MAX_MEMBERS_PER_IMAGE,
    DEFAULT_MAX_MEMBERS_TOTAL,
};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::allowlist::Allowlist;
use crate::auth::provider::CredentialProvider;
use crate::ids::{ImageId, MemberId, ProjectId, Source};
use crate::ims::client::{ApiTarget, ClientOptions, ImageFilter};
use crate::ims::retry::RetryPolicy;
use crate::shard::Shard;

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

/// Validates `text` (named `file` in errors) and builds the config, looking up
/// omitted project IDs with `projects` (the only async step).
pub async fn build(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    projects: &dyn ProjectLookup,
) -> Result<Config, ConfigError> {
    let plan = plan(text, file, env)?;
    let mut ids = Vec::with_capacity(plan.targets.len());
    for t in &plan.targets {
        ids.push(match &t.project {
            build::Project::Known(id) => id.clone(),
            build::Project::Lookup(request) => projects
                .lookup(request)
                .await
                .map_err(|m| invalid(file, (request.key.clone(), m)))?,
        });
    }
    plan.finish(ids).map_err(|f| invalid(file, f))
}

/// Validates a config whose targets all name their project ID, synchronously (an
/// omitted one is an error here: it is looked up only when the exporter starts).
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let plan = plan(text, file, env)?;
    let ids = plan
        .targets
        .iter()
        .map(|t| {
            match &t.project {
            build::Project::Known(id) => Ok(id.clone()),
            build::Project::Lookup(request) => Err((
                request.key.clone(),
                "must be set here (looking it up through IAM happens only when the exporter starts)"
                    .to_string(),
            )),
        }
        })
        .collect::<Result<Vec<_>, Fail>>()
        .map_err(|f| invalid(file, f))?;
    plan.finish(ids).map_err(|f| invalid(file, f))
}

fn plan(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<build::Plan, ConfigError> {
    let raw = file::parse(text).map_err(|message| ConfigError::Parse {
        file: file.to_string(),
        message,
    })?;
    build::plan(&raw, env).map_err(|f| invalid(file, f))
}

/// A (key path, message) validation failure, named with its file by the caller.
type Fail = (String, String);

fn invalid(file: &str, (key, message): Fail) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        key,
        message,
    }
}

#[cfg(test)]
mod tests {
    //! The values a valid config yields. What makes a config invalid is a fixture
    //! file each in `tests/data/config/bad/`, checked by `tests/config_fixtures.rs`.
    use super::*;

    /// The text of a fixture under `tests/data/config/`, read when the test runs (the
    /// release build never sees the test data).
    fn fixture(path: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/config");
        std::fs::read_to_string(dir.join(path)).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn good_config_gets_defaults() {
        let c = parse(&fixture("ok/minimal.yaml"), "config.yaml", &no_env).unwrap();
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
        let text = &fixture("bad/missing-credentials.yaml");
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
        let text = &fixture("ok/retry-rate-limit-and-body-cap.yaml");
        let c = parse(text, "config.yaml", &no_env).unwrap();
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.max_response_bytes, 2 << 20);
        assert!(c.targets[0].api.rate_limit.is_some());
    }

    #[test]
    fn endpoint_template() {
        let text = &fixture("ok/endpoint-template.yaml");
        let c = parse(text, "config.yaml", &no_env).unwrap();
        assert_eq!(
            c.targets[0].api.endpoint.host_str(),
            Some("ims.cn-north-4.myhuaweicloud.eu")
        );
    }
}
