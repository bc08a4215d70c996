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

/// What a provider fetches or re-reads from.
#[derive(Debug)]
enum Kind {
    /// A source that is read (files re-read on refresh, the environment never).
    Read(CredentialSource),
    /// Temporary credentials from the metadata service.
    EcsMetadata(EcsMetadata),
}

/// One source of credentials and what it currently yields.
#[derive(Debug)]
pub struct CredentialProvider {
    kind: Kind,
    current: ArcSwapOption<Credentials>,
    /// Unix time the current temporary credentials expire, if they do.
    expires_at: arc_swap::ArcSwapOption<f64>,
}

impl CredentialProvider {
    fn with(kind: Kind, current: Option<Credentials>) -> Self {
        CredentialProvider {
            kind,
            current: ArcSwapOption::from(current.map(Arc::new)),
            expires_at: ArcSwapOption::empty(),
        }
    }

    /// The provider of `source`, holding the credentials read when the config was
    /// loaded (temporary ones are fetched by the first refresh). No I/O.
    pub fn new(source: &CredentialSource) -> Result<Self, String> {
        Ok(match source {
            CredentialSource::EcsMetadata { url, timeout } => CredentialProvider::with(
                Kind::EcsMetadata(EcsMetadata::new(url.clone(), *timeout)?),
                None,
            ),
            read => CredentialProvider::with(Kind::Read(read.clone()), read.initial().cloned()),
        })
    }

    /// The source this provider serves.
    pub fn serves(&self, source: &CredentialSource) -> bool {
        match (&self.kind, source) {
            (Kind::Read(mine), other) => mine == other,
            (Kind::EcsMetadata(m), CredentialSource::EcsMetadata { url, .. }) => {
                m.base_url() == url.as_str().trim_end_matches('/')
            }
            _ => false,
        }
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
        match &self.kind {
            Kind::Read(source) => source.kind(),
            Kind::EcsMetadata(_) => "ecs_metadata",
        }
    }

    /// Where the credentials come from, for `--config.check` and logs; never a secret.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            Kind::Read(source) => source.describe(),
            Kind::EcsMetadata(m) => format!("ECS metadata service {}", m.base_url()),
        };
        match self.current() {
            Some(c) => format!("{what}, access key {}", c.access_key_id),
            None => what,
        }
    }

    /// Whether a refresh can yield anything new (re-read files, fetch from metadata).
    pub fn is_refreshable(&self) -> bool {
        !matches!(self.kind, Kind::Read(CredentialSource::Environment(_)))
    }

    pub fn is_temporary(&self) -> bool {
        matches!(self.kind, Kind::EcsMetadata(_))
    }

    /// Fetches or re-reads the credentials. On failure the previous ones stay.
    pub async fn refresh(&self) -> Result<(), String> {
        let fresh = match &self.kind {
            Kind::Read(CredentialSource::Config { key, config, .. }) => {
                config.resolve(key).map_err(|e| e.to_string())?
            }
            Kind::Read(CredentialSource::Environment(_)) => return Ok(()),
            Kind::Read(CredentialSource::File { path, .. }) => read_sdk_file(path)?
                .ok_or_else(|| format!("{}: no [basic] ak and sk", path.display()))?,
            Kind::Read(CredentialSource::EcsMetadata { .. }) => {
                return Err("the metadata service is fetched by its own provider".into())
            }
            Kind::EcsMetadata(m) => {
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
        let p = CredentialProvider::with(
            Kind::Read(CredentialSource::EcsMetadata {
                url: "http://127.0.0.1:9".parse().unwrap(),
                timeout: Duration::from_secs(1),
            }),
            None,
        );
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
