//! Why a config file (the exporter's or the web config) cannot be used: the file, the
//! key path at fault and what is wrong, so a user can act on it
//! ("config.yaml: targets[2].project_id: must be 32 hex characters"). No variant ever
//! carries a secret value (private keys and passwords are described, never quoted).

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
    /// A web config key exporter-toolkit knows that this exporter does not implement.
    #[error("{file}: {key}: not supported by ims-exporter: {message}")]
    Unsupported {
        file: String,
        key: String,
        message: String,
    },
}
