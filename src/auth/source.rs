//! Where a target's credentials come from, as plain values the config carries.
//!
//! The chain, first that yields wins: explicit config (top level or per target), the
//! SDK environment variables, the SDK credentials file, and — when `ecs_metadata` is
//! configured — the ECS/CCE metadata service's temporary credentials. Each source is
//! read once when the config is loaded (a broken one is a config error); the live
//! [`super::provider::CredentialProvider`] of a source starts from that reading.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::auth::credentials::{self, Credentials, CredentialsConfig, CredentialsError, Secret};

pub const ENV_CREDENTIALS_FILE: &str = "HUAWEICLOUD_SDK_CREDENTIALS_FILE";

/// One source of credentials, with what it yielded when the config was loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// A `credentials:` block at `key`; its `_file` values are re-read on refresh.
    Config {
        key: String,
        config: CredentialsConfig,
        initial: Credentials,
    },
    /// The SDK environment variables, as read at load.
    Environment(Credentials),
    /// The SDK credentials file (INI, `[basic]`), re-read on refresh.
    File { path: PathBuf, initial: Credentials },
    /// Temporary credentials from the metadata service (fetched, not read).
    EcsMetadata { url: Url, timeout: Duration },
}

impl CredentialSource {
    /// The source's kind, as the `provider` label says it.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::Config { .. } => "config",
            CredentialSource::Environment(_) => "environment",
            CredentialSource::File { .. } => "credentials_file",
            CredentialSource::EcsMetadata { .. } => "ecs_metadata",
        }
    }

    /// What it yielded at load; `None` for temporary credentials.
    pub fn initial(&self) -> Option<&Credentials> {
        match self {
            CredentialSource::Config { initial, .. }
            | CredentialSource::Environment(initial)
            | CredentialSource::File { initial, .. } => Some(initial),
            CredentialSource::EcsMetadata { .. } => None,
        }
    }

    /// Where the credentials come from, for `--config.check` and logs; never a secret.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Config { key, .. } => format!("config file ({key})"),
            CredentialSource::Environment(_) => format!(
                "environment ({}, {})",
                credentials::ENV_AK,
                credentials::ENV_SK
            ),
            CredentialSource::File { path, .. } => {
                format!("SDK credentials file {}", path.display())
            }
            CredentialSource::EcsMetadata { url, .. } => {
                format!(
                    "ECS metadata service {}",
                    url.as_str().trim_end_matches('/')
                )
            }
        }
    }
}

/// Configuration that decides the chain beyond explicit blocks.
pub struct Chain<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `ecs_metadata:`: the service's base URL and the request timeout.
    pub ecs_metadata: Option<(Url, Duration)>,
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

    /// The source for a `credentials:` block at `key`, or the first of the chain that
    /// yields, with what it yields now (read once: a broken block is a config error).
    /// `Ok(None)`: nothing yields.
    pub fn resolve(
        &self,
        block: Option<&CredentialsConfig>,
        key: &str,
    ) -> Result<Option<CredentialSource>, CredentialsError> {
        if let Some(config) = block {
            let initial = config.resolve(key)?;
            return Ok(Some(CredentialSource::Config {
                key: key.to_string(),
                config: config.clone(),
                initial,
            }));
        }
        if let Some(c) = credentials::from_env(self.env) {
            return Ok(Some(CredentialSource::Environment(c)));
        }
        // The SDKs skip a credentials file that does not exist; one that exists must be usable.
        if let Some(path) = self.credentials_file().filter(|p| p.exists()) {
            match read_sdk_file(&path) {
                Ok(Some(initial)) => return Ok(Some(CredentialSource::File { path, initial })),
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
        if let Some((url, timeout)) = &self.ecs_metadata {
            return Ok(Some(CredentialSource::EcsMetadata {
                url: url.clone(),
                timeout: *timeout,
            }));
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
        assert_eq!(p.initial().unwrap().access_key_id, "FILEAK");
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
}
