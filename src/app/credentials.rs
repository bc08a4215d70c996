//! Temporary credentials kept fresh in the background.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::poll::plan::Plan;
use crate::timestamp::now_unix;

/// Wait between failed credential refreshes.
const RETRY_CREDENTIALS: Duration = Duration::from_secs(5);

/// Keeps temporary credentials fresh: refreshes each before it expires (40 minutes
/// before, or half-way for short-lived ones), retrying every few seconds on failure.
/// A scrape reads their expiry from the providers themselves.
pub(super) fn spawn_refreshers(plan: &Plan) -> Vec<JoinHandle<()>> {
    plan.providers
        .iter()
        .filter(|p| p.is_temporary())
        .map(|provider| {
            let provider = provider.clone();
            tokio::spawn(async move {
                let mut fetched = now_unix();
                loop {
                    let wait = provider.refresh_delay(now_unix(), fetched).unwrap_or(RETRY_CREDENTIALS);
                    tokio::time::sleep(wait).await;
                    match provider.refresh().await {
                        Ok(()) => {
                            fetched = now_unix();
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
        .collect()
}
