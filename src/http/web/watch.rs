//! The live web config: re-read when it or a file it names changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;

use super::file::{load, Settings};
use super::reader::Reader;

/// The live web config: the last valid version, re-read when the file or a file it
/// names changes. Whether TLS is on is fixed by the first valid version; a later one
/// that would switch it is refused (that needs a restart).
pub struct Watcher {
    path: PathBuf,
    current: ArcSwapOption<Settings>,
    tls_on: OnceLock<bool>,
    reader: Mutex<Reader>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("path", &self.path)
            .field("current", &self.current.load_full())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Loads `path`. If it is invalid (the daemon checks it at start, so only if it
    /// changed since), the error is logged and [`Watcher::current`] is `None` until a
    /// valid version appears: the server then refuses connections rather than serve
    /// without the TLS or authentication the operator asked for.
    pub fn new(path: &Path) -> Watcher {
        let watcher = Watcher {
            path: path.to_path_buf(),
            current: ArcSwapOption::empty(),
            tls_on: OnceLock::new(),
            reader: Mutex::new(Reader::default()),
        };
        watcher.reload(&mut watcher.lock_reader());
        watcher
    }

    /// The settings in force, if a valid version was ever loaded.
    pub fn current(&self) -> Option<Arc<Settings>> {
        self.current.load_full()
    }

    /// Re-reads the web config if it or a file it names changed (a cheap `stat` of each
    /// otherwise). Blocking file I/O: call it off the async workers.
    pub fn refresh(&self) {
        let mut reader = self.lock_reader();
        if !reader.unchanged() {
            self.reload(&mut reader);
        }
    }

    fn lock_reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        // The reader is replaced whole on each load; a panicking holder breaks nothing.
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reload(&self, reader: &mut Reader) {
        let mut fresh = Reader::default();
        let result = load(&self.path, &mut fresh);
        let same = fresh.digest() == reader.digest();
        *reader = fresh;
        // Touched or re-checked but not changed: the outcome would be the same again.
        if same {
            return;
        }
        let file = self.path.display().to_string();
        let first = self.current.load().is_none();
        let settings = match result {
            Ok(s) => s,
            Err(e) => {
                if first {
                    tracing::error!(error = %e, "invalid web config; refusing connections until it is fixed");
                } else {
                    tracing::error!(error = %e, "invalid web config; the previous one stays in force");
                }
                return;
            }
        };
        let tls_on = *self.tls_on.get_or_init(|| settings.tls().is_some());
        if tls_on != settings.tls().is_some() {
            tracing::error!(
                file = %file,
                tls = tls_on,
                "the new web config switches TLS on or off, which needs a restart; the previous one stays in force"
            );
            return;
        }
        tracing::debug!(file = %file, settings = ?settings, "web config loaded");
        if !first {
            tracing::info!(file = %file, tls = tls_on, "web config reloaded");
        }
        self.current.store(Some(Arc::new(settings)));
    }
}
