//! The runtime plan: what a config's plain values become when the exporter runs. The
//! one place that builds the API client, each target's rate limiter and request
//! share, the credential providers (one per distinct source) and the watched
//! allowlist files. A reload builds a new plan from the new config, keeping the
//! providers whose source did not change (and the credentials they fetched).

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::allowlist::{Allowlist, LiveAllowlist, WatchedFiles};
use crate::auth::provider::CredentialProvider;
use crate::config::{Config, Target};
use crate::ims::client::ApiTarget;
use crate::ims::observer::RequestObserver;
use crate::ims::ratelimit::TokenBucket;
use crate::ims::ImsClient;

/// Why a config cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] crate::ims::client::ClientError),
    #[error("credentials ({source_of}): {message}")]
    Credentials { source_of: String, message: String },
}

/// One target as it runs: its values and its live API handle.
pub struct LiveTarget {
    pub config: Target,
    /// Where and as whom its calls go (endpoint, project, provider, rate limit, share).
    pub api: ApiTarget,
}

/// The config and everything live built from it.
pub struct Plan {
    pub config: Arc<Config>,
    pub client: ImsClient,
    pub targets: Vec<Arc<LiveTarget>>,
    /// The distinct credential providers, a shared source once.
    pub providers: Vec<Arc<CredentialProvider>>,
    files: WatchedFiles,
}

/// Each target's fair share of the global request bound: all shares together never
/// exceed it (unless there are more targets than requests), so no set of hung targets
/// can hold the requests the others need.
pub fn target_share(max_concurrent_requests: usize, targets: usize) -> usize {
    (max_concurrent_requests / targets.max(1)).max(1)
}

impl Plan {
    /// Builds the live parts of `config`; `previous` lends the providers of the
    /// sources that stay. No I/O: temporary credentials are fetched by
    /// [`Plan::fetch_missing_credentials`].
    pub fn new(
        config: Config,
        observer: Arc<dyn RequestObserver>,
        previous: Option<&Plan>,
    ) -> Result<Plan, PlanError> {
        let client = ImsClient::new(&config.client_options(), observer)?;
        let mut providers: Vec<Arc<CredentialProvider>> = Vec::new();
        for source in config.credential_sources() {
            let kept = previous
                .into_iter()
                .flat_map(|p| &p.providers)
                .find(|p| p.serves(source));
            let provider = match kept {
                Some(p) => p.clone(),
                None => Arc::new(CredentialProvider::new(source).map_err(|message| {
                    PlanError::Credentials {
                        source_of: source.describe(),
                        message,
                    }
                })?),
            };
            providers.push(provider);
        }
        let share = target_share(config.max_concurrent_requests, config.targets.len());
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let credentials = providers
                    .iter()
                    .find(|p| p.serves(&t.credentials))
                    .cloned()
                    .ok_or_else(|| PlanError::Credentials {
                        source_of: t.credentials.describe(),
                        message: "no provider".into(),
                    })?;
                Ok(Arc::new(LiveTarget {
                    api: ApiTarget {
                        endpoint: t.endpoint.clone(),
                        project_id: t.project_id.clone(),
                        credentials,
                        rate_limit: t.rate_limit.map(|r| Arc::new(TokenBucket::new(r))),
                        concurrency: Arc::new(Semaphore::new(share)),
                    },
                    config: t.clone(),
                }))
            })
            .collect::<Result<_, PlanError>>()?;
        Ok(Plan {
            config: Arc::new(config),
            client,
            targets,
            providers,
            files: WatchedFiles::default(),
        })
    }

    /// The live form of an allowlist: images that name the same file share its reads.
    pub fn allowlist(&self, allowlist: &Allowlist) -> LiveAllowlist {
        self.files.live(allowlist)
    }

    /// Fetches the credentials that no source yielded at load (temporary ones). Not
    /// fatal: polls report `auth` failures and the refresher keeps trying.
    pub async fn fetch_missing_credentials(&self) {
        for provider in &self.providers {
            if provider.current().is_none() {
                if let Err(e) = provider.refresh().await {
                    tracing::error!(provider = provider.kind(), error = %e, "cannot fetch credentials");
                }
            }
        }
    }
}
