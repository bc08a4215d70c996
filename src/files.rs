//! Reading the files the exporter is pointed at (config, web config, allowlists,
//! credentials, CA bundles, the state file): every read is size-capped, so `/dev/zero`
//! or a huge sparse file fails fast instead of filling memory, and the async callers
//! run reads on a blocking thread with a deadline, so a hung mount or a FIFO delays
//! only the read — never scrapes, health checks or shutdown. [`ConfigError`] says why a
//! config file (the exporter's or the web config) cannot be used.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

// One cap table for every reader.

/// Cap on config and web config files.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Cap on allowlist files (a million entries is far beyond any real list).
pub const MAX_ALLOWLIST_BYTES: u64 = 16 << 20;
/// Cap on credential, key, certificate and password files.
pub const MAX_SECRET_BYTES: u64 = 1 << 20;
/// The state file's cap is this plus [`STATE_BYTES_PER_MEMBER`] for every member
/// `max_members_total` allows ([`crate::state::storage::max_state_bytes`]): room for
/// the kept changes, the images and the discovered sets of a small config.
pub const STATE_BASE_BYTES: u64 = 16 << 20;
/// About three times what one member takes in the state file (about 150 bytes; an
/// organization member with its URN about 250).
pub const STATE_BYTES_PER_MEMBER: u64 = 512;
/// How long an async caller waits for one file read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads at most `max` bytes of `path`; a longer file is an error naming the cap.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Runs blocking `work` (file reads) on a blocking thread and waits at most `timeout`.
/// A read still hanging then is left behind: its thread stays blocked, but nothing
/// that serves or shuts down waits for it.
pub async fn off_runtime<T: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("file reader failed: {e}")),
        Err(_) => Err(format!(
            "timed out after {} (a hung mount or a FIFO?)",
            humantime::format_duration(timeout)
        )),
    }
}

/// Warns (as ssh does) when a file holding a secret can be read by other users.
pub fn warn_if_world_readable(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o004 != 0 {
                tracing::warn!(
                    file = %path.display(), mode = format!("{:o}", mode & 0o777).as_str(), what,
                    "file holding a secret is readable by every user; restrict it (chmod 600)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

/// Why a config file (the exporter's or the web config) cannot be used: the file, the
/// key path at fault and what is wrong, so a user can act on it
/// ("config.yaml: targets[2].project_id: must be 32 hex characters"). No variant ever
/// carries a secret value (private keys and passwords are described, never quoted).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'a'; 100]).unwrap();
        assert_eq!(read_capped(&p, 100).unwrap().len(), 100);
        let e = read_capped(&p, 99).unwrap_err();
        assert!(e.to_string().contains("larger than 99 bytes"), "{e}");
        #[cfg(unix)]
        assert!(read_capped(Path::new("/dev/zero"), 1 << 20).is_err());
    }
}
