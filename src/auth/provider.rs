//! The live credentials of one [`CredentialSource`], kept fresh.
//!
//! A provider holds the current credentials; the client only reads them. Refreshing
//! happens in the background before temporary credentials expire, and once when the
//! API rejects a signature — never on every call.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::auth::credentials::Credentials;
use crate::auth::ecs_metadata::EcsMetadata;
use crate::auth::source::{read_sdk_file, CredentialSource};

/// Temporary credentials are refreshed when less than this remains (as the SDKs do),
/// or half their lifetime for short-lived ones.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(40 * 60);

/// One source of credentials and what it currently yields.
#[derive(Debug)]
pub struct CredentialProvider {
    /// What it serves: a reload keeps a provider whose source is equal.
    source: CredentialSource,
    /// The client of the metadata service, for `CredentialSource::EcsMetadata`.
    metadata: Option<EcsMetadata>,
    current: ArcSwapOption<Credentials>,
    /// Unix time the current temporary credentials expire, if they do.
    expires_at: arc_swap::ArcSwapOption<f64>,
}

impl CredentialProvider {
    /// The provider of `source`, holding the credentials read when the config was
    /// loaded (temporary ones are fetched by the first refresh). No I/O.
    pub fn new(source: &CredentialSource) -> Result<Self, String> {
        let metadata = match source {
            CredentialSource::EcsMetadata { url, timeout } => {
                Some(EcsMetadata::new(url.clone(), *timeout)?)
            }
            _ => None,
        };
        Ok(CredentialProvider {
            source: source.clone(),
            metadata,
            current: ArcSwapOption::from(source.initial().cloned().map(Arc::new)),
            expires_at: ArcSwapOption::empty(),
        })
    }

    /// Whether this provider serves `source`.
    pub fn serves(&self, source: &CredentialSource) -> bool {
        self.source == *source
    }

    /// The credentials to sign with now; `None` until a temporary provider has fetched.
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.current.load_full()
    }

    pub fn expires_at(&self) -> Option<f64> {
        self.expires_at.load_full().map(|v| *v)
    }

    /// The provider's kind, as the `provider` label says it.
    pub fn kind(&self) -> &'static str {
        self.source.kind()
    }

    /// Where the credentials come from, for `--config.check` and logs; never a secret.
    pub fn describe(&self) -> String {
        let what = self.source.describe();
        match self.current() {
            Some(c) => format!("{what}, access key {}", c.access_key_id),
            None => what,
        }
    }

    /// Whether a refresh can yield anything new (re-read files, fetch from metadata).
    pub fn is_refreshable(&self) -> bool {
        !matches!(self.source, CredentialSource::Environment(_))
    }

    pub fn is_temporary(&self) -> bool {
        matches!(self.source, CredentialSource::EcsMetadata { .. })
    }

    /// Fetches or re-reads the credentials. On failure the previous ones stay.
    pub async fn refresh(&self) -> Result<(), String> {
        let fresh = match (&self.source, &self.metadata) {
            (CredentialSource::Config { key, config, .. }, _) => {
                config.resolve(key).map_err(|e| e.to_string())?
            }
            (CredentialSource::Environment(_), _) => return Ok(()),
            (CredentialSource::File { path, .. }, _) => read_sdk_file(path)?
                .ok_or_else(|| format!("{}: no [basic] ak and sk", path.display()))?,
            (CredentialSource::EcsMetadata { .. }, None) => {
                return Err("no client for the metadata service".into())
            }
            (CredentialSource::EcsMetadata { .. }, Some(m)) => {
                let (credentials, expires_at) = m.fetch().await?;
                self.expires_at.store(Some(Arc::new(expires_at)));
                credentials
            }
        };
        self.current.store(Some(Arc::new(fresh)));
        Ok(())
    }

    /// When to refresh temporary credentials next, as a delay from `now_unix`.
    pub fn refresh_delay(&self, now_unix: f64, fetched_unix: f64) -> Option<Duration> {
        let expires = self.expires_at()?;
        let lifetime = (expires - fetched_unix).max(0.0);
        let margin = REFRESH_BEFORE.as_secs_f64().min(lifetime / 2.0);
        Some(Duration::from_secs_f64(
            (expires - margin - now_unix).max(1.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_schedule() {
        let p = CredentialProvider::new(&CredentialSource::EcsMetadata {
            url: "http://127.0.0.1:9".parse().unwrap(),
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        p.expires_at.store(Some(Arc::new(100_000.0)));
        // Long-lived: 40 minutes before expiry.
        assert_eq!(
            p.refresh_delay(10_000.0, 10_000.0),
            Some(Duration::from_secs_f64(100_000.0 - 2400.0 - 10_000.0))
        );
        // Short-lived (10 s): half-way.
        p.expires_at.store(Some(Arc::new(110.0)));
        assert_eq!(p.refresh_delay(100.0, 100.0), Some(Duration::from_secs(5)));
        // Already late: soon, but not in a busy loop.
        assert_eq!(p.refresh_delay(200.0, 100.0), Some(Duration::from_secs(1)));
    }
}
