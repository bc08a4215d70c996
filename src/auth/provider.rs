//! Where a target's credentials come from, and keeping them fresh.
//!
//! The chain, first that yields wins: explicit config (top level or per target), the
//! SDK environment variables, the SDK credentials file, and — when `ecs_metadata` is
//! configured — the ECS/CCE metadata service's temporary credentials. A provider
//! holds the current credentials; the client only reads them. Refreshing happens in
//! the background before temporary credentials expire, and once when the API rejects
//! a signature — never on every call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::auth::credentials::{self, Credentials, CredentialsConfig, CredentialsError, Secret};
use crate::auth::ecs_metadata::EcsMetadata;

pub const ENV_CREDENTIALS_FILE: &str = "HUAWEICLOUD_SDK_CREDENTIALS_FILE";

/// Temporary credentials are refreshed when less than this remains (as the SDKs do),
/// or half their lifetime for short-lived ones.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(40 * 60);

#[derive(Debug)]
enum Kind {
    /// A `credentials:` block; `_file` values are re-read on refresh.
    Config {
        key: String,
        config: CredentialsConfig,
    },
    /// The SDK environment variables, read once.
    Environment,
    /// The SDK credentials file (INI, `[basic]`), re-read on refresh.
    File(PathBuf),
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

    /// The credentials to sign with now; `None` until a temporary provider has fetched.
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.current.load_full()
    }

    pub fn expires_at(&self) -> Option<f64> {
        self.expires_at.load_full().map(|v| *v)
    }

    /// The provider's kind, as the `provider` label says it.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Config { .. } => "config",
            Kind::Environment => "environment",
            Kind::File(_) => "credentials_file",
            Kind::EcsMetadata(_) => "ecs_metadata",
        }
    }

    /// Where the credentials come from, for `--config.check` and logs; never a secret.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            Kind::Config { key, .. } => format!("config file ({key})"),
            Kind::Environment => format!(
                "environment ({}, {})",
                credentials::ENV_AK,
                credentials::ENV_SK
            ),
            Kind::File(path) => format!("SDK credentials file {}", path.display()),
            Kind::EcsMetadata(m) => format!("ECS metadata service {}", m.base_url()),
        };
        match self.current() {
            Some(c) => format!("{what}, access key {}", c.access_key_id),
            None => what,
        }
    }

    /// Whether a refresh can yield anything new (re-read files, fetch from metadata).
    pub fn is_refreshable(&self) -> bool {
        !matches!(self.kind, Kind::Environment)
    }

    pub fn is_temporary(&self) -> bool {
        matches!(self.kind, Kind::EcsMetadata(_))
    }

    /// Fetches or re-reads the credentials. On failure the previous ones stay.
    pub async fn refresh(&self) -> Result<(), String> {
        let fresh = match &self.kind {
            Kind::Config { key, config } => config.resolve(key).map_err(|e| e.to_string())?,
            Kind::Environment => return Ok(()),
            Kind::File(path) => read_sdk_file(path)?
                .ok_or_else(|| format!("{}: no [basic] ak and sk", path.display()))?,
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

/// Configuration that decides the chain beyond explicit blocks.
pub struct Chain<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub ecs_metadata: Option<&'a EcsMetadata>,
}

impl Chain<'_> {
    /// The SDK credentials file: `HUAWEICLOUD_SDK_CREDENTIALS_FILE`, else
    /// `~/.huaweicloud/credentials`.
    pub fn credentials_file(&self) -> Option<PathBuf> {
        (self.env)(ENV_CREDENTIALS_FILE)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                (self.env)("HOME").map(|h| Path::new(&h).join(".huaweicloud").join("credentials"))
            })
    }

    /// The provider for a `credentials:` block at `key`, or the first of the chain
    /// that yields. `Ok(None)`: nothing yields.
    pub fn resolve(
        &self,
        block: Option<&CredentialsConfig>,
        key: &str,
    ) -> Result<Option<CredentialProvider>, CredentialsError> {
        if let Some(config) = block {
            let current = config.resolve(key)?;
            return Ok(Some(CredentialProvider::with(
                Kind::Config {
                    key: key.to_string(),
                    config: config.clone(),
                },
                Some(current),
            )));
        }
        if let Some(c) = credentials::from_env(self.env) {
            return Ok(Some(CredentialProvider::with(Kind::Environment, Some(c))));
        }
        // The SDKs skip a credentials file that does not exist; one that exists must be usable.
        if let Some(path) = self.credentials_file().filter(|p| p.exists()) {
            match read_sdk_file(&path) {
                Ok(Some(c)) => {
                    return Ok(Some(CredentialProvider::with(Kind::File(path), Some(c))))
                }
                Ok(None) => {
                    return Err(CredentialsError {
                        key: ENV_CREDENTIALS_FILE.into(),
                        message: format!(
                            "{} has no [basic] section with ak and sk",
                            path.display()
                        ),
                    })
                }
                Err(e) => {
                    return Err(CredentialsError {
                        key: ENV_CREDENTIALS_FILE.into(),
                        message: e,
                    })
                }
            }
        }
        if let Some(m) = self.ecs_metadata {
            return Ok(Some(CredentialProvider::with(
                Kind::EcsMetadata(m.clone()),
                None,
            )));
        }
        Ok(None)
    }
}

/// Reads the SDK credentials file. `Ok(None)` when it lacks `[basic]` ak and sk.
pub fn read_sdk_file(path: &Path) -> Result<Option<Credentials>, String> {
    let text = crate::files::read_text_capped(path, crate::files::MAX_SECRET_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    crate::files::warn_if_world_readable(path, "credentials file");
    let mut section = String::new();
    let (mut ak, mut sk, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        if section != "basic" {
            continue;
        }
        let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "ak" => ak = Some(v),
            "sk" => sk = Some(v),
            "security_token" => token = Some(v),
            _ => {}
        }
    }
    Ok(
        match (ak.filter(|v| !v.is_empty()), sk.filter(|v| !v.is_empty())) {
            (Some(ak), Some(sk)) => Some(Credentials {
                access_key_id: ak,
                secret_access_key: Secret::new(sk),
                security_token: token.filter(|t| !t.is_empty()).map(Secret::new),
            }),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_file_basic_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "# mine\n[other]\nak = NO\n[basic]\nak = FILEAK\nsk = FILESK\nproject_id = 1bed856811654c1cb661a6ca845ebc77\nsecurity_token = T\n").unwrap();
        let c = read_sdk_file(&path).unwrap().unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.expose()),
            ("FILEAK", "FILESK")
        );
        assert_eq!(c.security_token.unwrap().expose(), "T");
        std::fs::write(&path, "[basic]\nak = ONLYAK\n").unwrap();
        assert!(read_sdk_file(&path).unwrap().is_none());
    }

    #[test]
    fn chain_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "[basic]\nak = FILEAK\nsk = FILESK\n").unwrap();
        let file_s = file.display().to_string();
        let env_all = |k: &str| match k {
            credentials::ENV_AK => Some("ENVAK".to_string()),
            credentials::ENV_SK => Some("ENVSK".to_string()),
            ENV_CREDENTIALS_FILE => Some(file_s.clone()),
            _ => None,
        };
        let chain = Chain {
            env: &env_all,
            ecs_metadata: None,
        };
        let block = CredentialsConfig {
            access_key_id: Some("CFGAK".into()),
            secret_access_key: Some(Secret::new("S")),
            ..Default::default()
        };
        assert_eq!(
            chain
                .resolve(Some(&block), "credentials")
                .unwrap()
                .unwrap()
                .kind(),
            "config"
        );
        assert_eq!(
            chain.resolve(None, "credentials").unwrap().unwrap().kind(),
            "environment"
        );
        let env_file = |k: &str| (k == ENV_CREDENTIALS_FILE).then(|| file_s.clone());
        let chain = Chain {
            env: &env_file,
            ecs_metadata: None,
        };
        let p = chain.resolve(None, "credentials").unwrap().unwrap();
        assert_eq!(p.kind(), "credentials_file");
        assert_eq!(p.current().unwrap().access_key_id, "FILEAK");
        let nothing = |_: &str| None;
        assert!(Chain {
            env: &nothing,
            ecs_metadata: None
        }
        .resolve(None, "credentials")
        .unwrap()
        .is_none());
        let missing =
            |k: &str| (k == ENV_CREDENTIALS_FILE).then(|| "/nonexistent/credentials".to_string());
        assert!(
            Chain {
                env: &missing,
                ecs_metadata: None
            }
            .resolve(None, "credentials")
            .unwrap()
            .is_none(),
            "a missing file is skipped"
        );
        std::fs::write(&file, "[basic]\nak = ONLY\n").unwrap();
        assert!(
            Chain {
                env: &env_file,
                ecs_metadata: None
            }
            .resolve(None, "credentials")
            .is_err(),
            "an unusable file is an error"
        );
    }

    #[test]
    fn refresh_schedule() {
        let p = CredentialProvider::with(Kind::Environment, None);
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
