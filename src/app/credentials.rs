//! Temporary credentials kept fresh in the background, and their expiry published to
//! the store as values (a scrape never calls into a provider).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::state::Store;
use crate::timestamp::now_unix;

/// Keeps temporary credentials fresh: refreshes each before it expires (40 minutes
/// before, or half-way for short-lived ones), retrying every few seconds on failure.
/// Also publishes their expiry to the store (a scrape reads values, never providers).
pub(super) fn spawn_refreshers(config: &Config, store: &Arc<Store>) -> Vec<JoinHandle<()>> {
    publish_expiry(config, store);
    let providers = config.credential_providers();
    let publisher = {
        let (config, store) = (config.clone(), store.clone());
        tokio::spawn(async move {
            // A refresh after the API refused the credentials happens in the client:
            // picked up here within the period.
            let mut every = tokio::time::interval(EXPIRY_PUBLISH_PERIOD);
            loop {
                every.tick().await;
                publish_expiry(&config, &store);
            }
        })
    };
    providers
        .into_iter()
        .filter(|p| p.is_temporary())
        .map(|provider| {
            let (config, store) = (config.clone(), store.clone());
            tokio::spawn(async move {
                let mut fetched = now_unix();
                loop {
                    let wait = provider.refresh_delay(now_unix(), fetched).unwrap_or(RETRY_CREDENTIALS);
                    tokio::time::sleep(wait).await;
                    match provider.refresh().await {
                        Ok(()) => {
                            fetched = now_unix();
                            publish_expiry(&config, &store);
                            tracing::info!(provider = provider.kind(), expires_at = provider.expires_at().unwrap_or(0.0), "refreshed temporary credentials");
                        }
                        Err(e) => {
                            tracing::warn!(provider = provider.kind(), error = %e, "cannot refresh temporary credentials; retrying");
                            tokio::time::sleep(RETRY_CREDENTIALS).await;
                        }
                    }
                }
            })
        })
        .chain([publisher])
        .collect()
}

/// How often the credentials' expiry is copied into the store (besides after each
/// refresh here): a few atomic reads, so often enough that a scrape is never behind.
const EXPIRY_PUBLISH_PERIOD: Duration = Duration::from_secs(1);

/// Copies the expiry of the config's temporary credentials into the store.
pub fn publish_expiry(config: &Config, store: &Store) {
    store.set_credential_expiry(
        config
            .credential_providers()
            .iter()
            .filter_map(|p| p.expires_at().map(|e| (p.kind(), e)))
            .collect(),
    );
}

/// Wait between failed credential refreshes.
const RETRY_CREDENTIALS: Duration = Duration::from_secs(5);
