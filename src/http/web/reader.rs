//! Reading the files a web config names, remembering what each looked like, so that
//! the watcher notices a change with a cheap `stat`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::files::read_capped;

/// Reads the files a web config names, remembering what each looked like just before
/// it was read, so that a later change (even one racing the read) is noticed, and a
/// digest of everything read, so that a re-read of unchanged content is a no-op.
#[derive(Default)]
pub(super) struct Reader {
    /// Path, its stamp before reading, and whether that stamp is too recent to trust.
    seen: Vec<(PathBuf, Option<Stamp>, bool)>,
    digest: Sha256,
}

/// What a cheap `stat` says about a file; a different stamp means "read it again".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64, i64, i64),
}

/// File times are coarse (a few ms), so a file modified this recently may change
/// again without its stamp changing; such a file is re-read (and its content compared)
/// until its stamp is older than this, as git does for its index.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode,
    })
}

impl Reader {
    pub(super) fn read(&mut self, path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        let before = stamp(path);
        let racy = before
            .as_ref()
            .and_then(|s| s.modified)
            .is_none_or(|m| SystemTime::now().duration_since(m).unwrap_or_default() < RACY_WINDOW);
        self.seen.push((path.to_path_buf(), before, racy));
        self.digest.update(path.as_os_str().as_encoded_bytes());
        let result = read_capped(path, max);
        match &result {
            Ok(bytes) => {
                self.digest.update((bytes.len() as u64).to_be_bytes());
                self.digest.update(bytes);
            }
            Err(e) => self.digest.update(format!("error: {e}")),
        }
        result
    }

    pub(super) fn unchanged(&self) -> bool {
        self.seen
            .iter()
            .all(|(path, seen, racy)| !racy && stamp(path) == *seen)
    }

    pub(super) fn digest(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }
}
