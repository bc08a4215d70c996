//! Errors that name the web config file and the key at fault.

use std::path::{Path, PathBuf};

use crate::files::ConfigError;

/// Builds errors that name the web config file.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) dir: &'a Path,
}

impl Ctx<'_> {
    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
    pub(super) fn unsupported(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }
    /// Relative paths are relative to the web config's directory, as in the toolkit.
    pub(super) fn resolve(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}
