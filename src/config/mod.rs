//! The configuration: the validated form, plain values ([`types`]: [`Config`],
//! [`Target`], ...), and how it is made from the file: [`file`] (serde schema and defaults) → [`validate`]
//! (ranges) → [`build`] (the values, block by block, synchronous) → the async
//! IAM look-up of omitted project IDs ([`build()`] only) → the checks that need every
//! project ID. The web config (TLS, basic auth) is the HTTP
//! server's ([`crate::http::web`]).
//!
//! Everything a user can get wrong is caught here, at start or reload, with the key
//! path and the file in the message. Nothing downstream re-validates.

mod build;
mod events;
mod file;
mod incoming;
mod types;
mod validate;

pub use crate::files::ConfigError;
pub use file::{
    DEFAULT_ENDPOINT, DEFAULT_IAM_ENDPOINT, DEFAULT_MAX_INCOMING_IMAGES,
    DEFAULT_MAX_MEMBERS_PER_IMAGE, DEFAULT_MAX_MEMBERS_TOTAL,
};
pub use types::{
    Config, Discover, ImageConfig, LookupRequest, ProjectLookup, Target, WebhookSettings,
};

use std::path::Path;

use types::Fail;

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
    //! file each in `tests/data/config/bad/`, checked by `tests/it/config_fixtures.rs`.
    use std::time::Duration;

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
            c.targets[0].endpoint.as_str(),
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
            c.targets[0].credentials.initial().unwrap().access_key_id,
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
        assert!(c.targets[0].rate_limit.is_some());
    }

    #[test]
    fn endpoint_template() {
        let text = &fixture("ok/endpoint-template.yaml");
        let c = parse(text, "config.yaml", &no_env).unwrap();
        assert_eq!(
            c.targets[0].endpoint.host_str(),
            Some("ims.cn-north-4.myhuaweicloud.eu")
        );
    }
}
