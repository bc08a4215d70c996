//! Only one process uses a storage directory: an exclusive `flock` on `DIR/lock`,
//! holding the holder's PID, for the process's life (as Prometheus locks its data
//! directory); the kernel drops it when the process ends, however it ends.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::modes::{create_dir, private_file};

const LOCK_FILE: &str = "lock";

/// Why the storage directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "--storage.path {dir}: locked by another ims-exporter{}; two processes must not \
         share a storage directory",
        holder(*.pid)
    )]
    Held { dir: String, pid: Option<u32> },
    #[error("--storage.path {dir}: cannot lock it: {reason}")]
    Failed { dir: String, reason: String },
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
}

/// The storage directory's lock: held until dropped, or until the process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Creates `dir` (0700) if it is missing and locks it for this process: an
/// exclusive, non-blocking `flock` on `DIR/lock`, into which the PID is written.
/// Blocking: call it from a blocking thread.
pub(super) fn lock_dir(dir_path: &Path) -> Result<DirLock, LockError> {
    let dir = dir_path.display().to_string();
    let failed = |e: std::io::Error| LockError::Failed {
        dir: dir.clone(),
        reason: e.to_string(),
    };
    create_dir(dir_path).map_err(failed)?;
    let mut file = private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir_path.join(LOCK_FILE))
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder wrote its PID (unless it is just starting).
            let mut text = String::new();
            let _ = (&file).take(32).read_to_string(&mut text);
            return Err(LockError::Held {
                dir: dir.clone(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
    }
    file.set_len(0).map_err(failed)?;
    writeln!(file, "{}", std::process::id()).map_err(failed)?;
    Ok(DirLock { _file: file })
}
