//! Where the configuration comes from (a file and this replica's shard, or the
//! demo's text), and loading it off the async workers, so that a reload reads it
//! exactly as the start did.

use std::path::PathBuf;
use std::sync::Arc;

use crate::app::projects::ProjectResolver;
use crate::config::{self, Config, ConfigError, ProjectLookup};
use crate::shard::Shard;

/// Where the configuration comes from, so that a reload reads it the same way.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A config file, and this replica's shard (from the command line).
    File(PathBuf, Shard),
    /// The demo's generated config (reloading re-reads the same text).
    Text { name: String, yaml: String },
}

impl ConfigSource {
    /// The file (or text) name used in errors.
    pub fn name(&self) -> String {
        match self {
            ConfigSource::File(path, _) => path.display().to_string(),
            ConfigSource::Text { name, .. } => name.clone(),
        }
    }

    /// Loads and validates the config, looking up omitted project IDs.
    pub async fn load(&self, projects: &dyn ProjectLookup) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        Ok(match self {
            ConfigSource::File(path, shard) => {
                let mut config = config::load(path, &env, projects).await?;
                config.shard = *shard;
                config
            }
            ConfigSource::Text { name, yaml } => {
                config::build(yaml, name, &|_| None, projects).await?
            }
        })
    }
}

/// Loads the config on a blocking thread (driving the async IAM look-up from there),
/// so that config, allowlist, credential and CA files are never read on an async
/// worker: a file that hangs stalls the reload, not scrapes or shutdown.
pub async fn load_config(
    source: &ConfigSource,
    projects: &Arc<ProjectResolver>,
) -> Result<Config, ConfigError> {
    let (source, projects) = (source.clone(), projects.clone());
    let handle = tokio::runtime::Handle::current();
    let name = source.name();
    match tokio::task::spawn_blocking(move || handle.block_on(source.load(&*projects))).await {
        Ok(result) => result,
        Err(e) => Err(ConfigError::Parse {
            file: name,
            message: format!("loading failed: {e}"),
        }),
    }
}
