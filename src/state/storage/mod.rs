//! State that survives a restart (`--storage.path DIR`): for every image, the last good
//! member list and what resuming needs (name, source, last success, watched members,
//! change counts), and what each target last discovered.
//!
//! The format is one versioned JSON file, `DIR/state.json`, written whole by
//! write-temp, fsync, rename, fsync-dir: a `kill -9` at any moment leaves the previous
//! or the new file, never a torn one. A single file (not an embedded database) because
//! the state is one small document written at most once a poll cycle and read once at
//! start; JSON because an operator can read it. It is written on a blocking thread,
//! only after a cycle that changed something, and is only as big as the data.
//!
//! A file that cannot be used never stops the exporter: unreadable, not a regular file
//! (a FIFO, a device, a directory), larger than its cap ([`max_state_bytes`]), corrupt,
//! truncated, a future version, or holding what no exporter writes (a time outside the
//! years 2000–2199, more members than the config's caps, more changes than are kept, a
//! count past 2^53, a member string longer than the API decoder accepts). It is moved
//! aside (`state.json.bad-<unix time>`; a rename, which opens nothing, so a FIFO is
//! moved as safely as a file), a warning names it and why,
//! `ims_exporter_state_restore_successful` is 0, and the exporter starts clean. This
//! module reads and writes values only; the daemon decides when, off the async workers
//! and with a deadline.
//!
//! Only one process uses a directory: [`Storage::lock`] takes an exclusive `flock` on
//! `DIR/lock` (which holds the holder's PID) for the process's life; the kernel drops
//! it when the process ends, however it ends. Member IDs and share history are not
//! public: the directory is created 0700 (an existing one is left as it is) and the
//! state file 0600.

mod format;
mod lock;
mod modes;
mod restore;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::files::{STATE_BASE_BYTES, STATE_BYTES_PER_MEMBER};
use crate::ims::error::excerpt;
use crate::state::{ChangeEvent, Snapshot};
use format::{store_change, store_image, store_incoming, store_window, StateFile};
pub use format::{
    RestoredTargets, StoredDiscovery, StoredIncoming, StoredOffer, StoredTraceWindow,
    MAX_SEEN_TRACES,
};
pub use lock::{DirLock, LockError};
use modes::{create_dir, kind_of, private_file};
use restore::restore_file;
pub use restore::{Invalid, Limits, Problem, Restored};

const FILE: &str = "state.json";
/// Bumped when the format changes incompatibly; a newer file is not guessed at.
pub const VERSION: u32 = 1;
/// Parse errors are cut to this many characters (serde quotes the offending string).
const MAX_ERROR_CHARS: usize = 300;

/// The largest state file read: `STATE_BASE_BYTES` (16 MiB) + `STATE_BYTES_PER_MEMBER`
/// (512 bytes) × `max_members_total`, so 16 MiB + 512 MB with the default million
/// members. A member takes about 150 bytes in the file (an organization member with
/// its URN about 250), so a file this exporter wrote fits with room to spare, and a
/// larger one is refused before it is read.
pub fn max_state_bytes(members_total: usize) -> u64 {
    STATE_BASE_BYTES.saturating_add(STATE_BYTES_PER_MEMBER.saturating_mul(members_total as u64))
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a regular file but {kind}")]
    NotRegular { file: String, kind: &'static str },
    #[error(
        "{file}: {size} bytes, larger than the {cap} bytes a state file may have \
         ({} MiB + {STATE_BYTES_PER_MEMBER} bytes for each of max_members_total's \
         {members_total} members)",
        STATE_BASE_BYTES >> 20
    )]
    TooLarge {
        file: String,
        size: u64,
        cap: u64,
        members_total: usize,
    },
    #[error("{file}: not a state file: {message}")]
    NotStateFile { file: String, message: String },
    #[error("{file}: format version {version} (this exporter reads {VERSION})")]
    Version { file: String, version: u32 },
    #[error("{file}: corrupt: {message}")]
    Corrupt { file: String, message: String },
    #[error("{file}: {source}")]
    Invalid { file: String, source: Invalid },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
    limits: Limits,
}

impl Storage {
    pub fn new(dir: &Path, limits: Limits) -> Storage {
        Storage {
            dir: dir.to_path_buf(),
            limits,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The state file's size cap ([`max_state_bytes`]).
    pub fn max_bytes(&self) -> u64 {
        max_state_bytes(self.limits.members_total)
    }

    /// Creates the directory (0700) if it is missing and locks it for this process:
    /// an exclusive, non-blocking `flock` on `DIR/lock`, into which the PID is
    /// written. Blocking: call it from a blocking thread.
    pub fn lock(&self) -> Result<DirLock, LockError> {
        lock::lock_dir(&self.dir)
    }

    /// Reads the state file. `Ok(None)` when there is none yet. Blocking, and it may
    /// hang on a hung mount: call it from a blocking thread, with a deadline.
    pub fn load(&self) -> Result<Option<Restored>, StorageError> {
        let path = self.file();
        let file = || path.display().to_string();
        // A file that is not there (yet, or any more) is no state: `Ok(None)`.
        let absent_or_error = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(None),
            _ => Err(StorageError::Read {
                file: file(),
                source: e,
            }),
        };
        // stat opens nothing, so a FIFO or a device is refused without blocking on it.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => return absent_or_error(e),
        };
        if !meta.is_file() {
            return Err(StorageError::NotRegular {
                file: file(),
                kind: kind_of(&meta.file_type()),
            });
        }
        let cap = self.max_bytes();
        if meta.len() > cap {
            return Err(StorageError::TooLarge {
                file: file(),
                size: meta.len(),
                cap,
                members_total: self.limits.members_total,
            });
        }
        // Capped again while reading: the file may have grown since.
        let bytes = match crate::files::read_capped(&path, cap) {
            Ok(b) => b,
            Err(e) => return absent_or_error(e),
        };
        let parsed = parse(&bytes).map_err(|e| e.named(file()))?;
        drop(bytes);
        restore_file(parsed, self.limits)
            .map(Some)
            .map_err(|source| StorageError::Invalid {
                file: file(),
                source,
            })
    }

    /// Moves an unusable state file aside, so that it is kept for a post-mortem and
    /// the next write does not overwrite it. Returns where it went. A rename opens
    /// nothing: a FIFO or a symbolic link (to a device) is moved, not read.
    pub fn move_aside(&self, now_unix: f64) -> Option<PathBuf> {
        let to = self.dir.join(format!("{FILE}.bad-{}", now_unix as u64));
        std::fs::rename(self.file(), &to).ok().map(|_| to)
    }

    /// Writes `snapshot` (and the discovered sets) crash-safely, mode 0600. Returns
    /// the bytes written. Blocking: call it from a blocking thread.
    pub fn write(
        &self,
        snapshot: &Snapshot,
        discovered: &[StoredDiscovery],
        changes: &[Arc<ChangeEvent>],
        now_unix: f64,
    ) -> Result<usize, StorageError> {
        let file = StateFile {
            version: VERSION,
            written_at: now_unix,
            images: snapshot.images.iter().filter_map(store_image).collect(),
            discovered: discovered.to_vec(),
            traces: snapshot.targets.iter().filter_map(store_window).collect(),
            incoming: snapshot.targets.iter().filter_map(store_incoming).collect(),
            changes: changes.iter().map(|c| store_change(c)).collect(),
        };
        let path = self.file();
        let err = |source| StorageError::Write {
            file: path.display().to_string(),
            source,
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| err(std::io::Error::other(e)))?;
        create_dir(&self.dir).map_err(err)?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err)?;
        // A temporary file left by an older version keeps its mode when reopened.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
        }
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(err)?;
        // The rename itself is durable only once the directory is synced.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(bytes.len())
    }
}

/// Why the bytes are not a state file this exporter reads; named by the caller.
enum ParseError {
    NotStateFile(String),
    Version(u32),
    Corrupt(String),
}

impl ParseError {
    fn named(self, file: String) -> StorageError {
        match self {
            ParseError::NotStateFile(message) => StorageError::NotStateFile { file, message },
            ParseError::Version(version) => StorageError::Version { file, version },
            ParseError::Corrupt(message) => StorageError::Corrupt { file, message },
        }
    }
}

/// The file's JSON, its version read first, so that a newer format is named as such.
fn parse(bytes: &[u8]) -> Result<StateFile, ParseError> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let cut = |e: serde_json::Error| excerpt(&e.to_string(), MAX_ERROR_CHARS);
    let v: Version = serde_json::from_slice(bytes).map_err(|e| ParseError::NotStateFile(cut(e)))?;
    if v.version != VERSION {
        return Err(ParseError::Version(v.version));
    }
    serde_json::from_slice(bytes).map_err(|e| ParseError::Corrupt(cut(e)))
}

#[cfg(test)]
mod tests;
