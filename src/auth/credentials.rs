//! Access key, secret key and security token values, and where they come from.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` never show the value, so
//! a stray `{:?}` in a log line or an error cannot leak them.

use std::fmt;
use std::path::{Path, PathBuf};

pub const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
pub const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
pub const ENV_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";

/// A secret string. Only [`Secret::expose`] gives the value back.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// AK/SK (and for temporary credentials, a security token) used to sign requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub security_token: Option<Secret>,
}

/// Credential settings as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    pub access_key_id: Option<String>,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    pub security_token: Option<Secret>,
    pub security_token_file: Option<PathBuf>,
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Why no usable credentials were found. `key` is the config key path at fault.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CredentialsError {
    pub key: String,
    pub message: String,
}

fn read_secret_file(key: &str, path: &Path) -> Result<String, CredentialsError> {
    let text =
        crate::files::read_text_capped(path, crate::files::MAX_SECRET_BYTES).map_err(|e| {
            CredentialsError {
                key: key.to_string(),
                message: format!("cannot read {}: {e}", path.display()),
            }
        })?;
    // The access key ID is no secret; the secret key and the token are.
    if !key.ends_with("access_key_id_file") {
        crate::files::warn_if_world_readable(path, key);
    }
    let value = text.trim();
    if value.is_empty() {
        return Err(CredentialsError {
            key: key.to_string(),
            message: format!("{} is empty", path.display()),
        });
    }
    Ok(value.to_string())
}

/// One value given either inline or as a file; both, or neither when required, is an error.
fn pick(
    prefix: &str,
    name: &str,
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, CredentialsError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(CredentialsError {
            key: format!("{prefix}.{name}"),
            message: format!("set either {name} or {name}_file, not both"),
        }),
        (Some(v), None) if v.trim().is_empty() => Err(CredentialsError {
            key: format!("{prefix}.{name}"),
            message: "must not be empty".into(),
        }),
        (Some(v), None) => Ok(Some(v.trim().to_string())),
        (None, Some(path)) => read_secret_file(&format!("{prefix}.{name}_file"), path).map(Some),
        (None, None) => Ok(None),
    }
}

impl CredentialsConfig {
    /// Resolves the configured values (reading `_file` variants). `prefix` is the key
    /// path of this block, e.g. `credentials`.
    pub fn resolve(&self, prefix: &str) -> Result<Credentials, CredentialsError> {
        let ak = pick(
            prefix,
            "access_key_id",
            self.access_key_id.as_deref(),
            self.access_key_id_file.as_deref(),
        )?;
        let sk = pick(
            prefix,
            "secret_access_key",
            self.secret_access_key.as_ref().map(Secret::expose),
            self.secret_access_key_file.as_deref(),
        )?;
        let token = pick(
            prefix,
            "security_token",
            self.security_token.as_ref().map(Secret::expose),
            self.security_token_file.as_deref(),
        )?;
        let missing = |name: &str| CredentialsError {
            key: format!("{prefix}.{name}"),
            message: format!("missing: set {name} or {name}_file"),
        };
        Ok(Credentials {
            access_key_id: ak.ok_or_else(|| missing("access_key_id"))?,
            secret_access_key: Secret(sk.ok_or_else(|| missing("secret_access_key"))?),
            security_token: token.map(Secret),
        })
    }
}

/// Credentials from the SDK environment variables, if AK and SK are both set.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
    let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    let ak = non_empty(ENV_AK)?;
    let sk = non_empty(ENV_SK)?;
    Some(Credentials {
        access_key_id: ak.trim().to_string(),
        secret_access_key: Secret(sk.trim().to_string()),
        security_token: non_empty(ENV_TOKEN).map(|t| Secret(t.trim().to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials {
            access_key_id: "AK1".into(),
            secret_access_key: Secret::new("super-secret-sk"),
            security_token: Some(Secret::new("super-secret-token")),
        };
        let shown = format!(
            "{c:?} {:?}",
            CredentialsConfig {
                secret_access_key: Some(Secret::new("super-secret-sk")),
                ..Default::default()
            }
        );
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("AK1"));
    }

    #[test]
    fn inline_and_file_together_is_an_error() {
        let cfg = CredentialsConfig {
            access_key_id: Some("AK".into()),
            access_key_id_file: Some("/nonexistent".into()),
            ..Default::default()
        };
        let err = cfg.resolve("credentials").unwrap_err();
        assert_eq!(err.key, "credentials.access_key_id");
    }

    #[test]
    fn missing_secret_names_the_key() {
        let cfg = CredentialsConfig {
            access_key_id: Some("AK".into()),
            ..Default::default()
        };
        let err = cfg.resolve("credentials").unwrap_err();
        assert_eq!(err.to_string(), "credentials.secret_access_key: missing: set secret_access_key or secret_access_key_file");
    }

    #[test]
    fn files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let sk = dir.path().join("sk");
        std::fs::write(&sk, "  the-sk\n").unwrap();
        let cfg = CredentialsConfig {
            access_key_id: Some("AK".into()),
            secret_access_key_file: Some(sk),
            ..Default::default()
        };
        assert_eq!(
            cfg.resolve("credentials")
                .unwrap()
                .secret_access_key
                .expose(),
            "the-sk"
        );
    }

    #[test]
    fn env_needs_both_ak_and_sk() {
        assert!(from_env(|k| (k == ENV_AK).then(|| "AK".to_string())).is_none());
        let c = from_env(|k| match k {
            ENV_AK => Some("AK".into()),
            ENV_SK => Some("SK".into()),
            ENV_TOKEN => Some("T".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.security_token.unwrap().expose(), "T");
    }
}
