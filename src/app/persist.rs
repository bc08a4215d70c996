//! `--storage.path` wired in: restore at start, a write after every poll cycle that
//! changed what the state file keeps, and a last write at shutdown. The file format
//! and its crash safety are [`crate::state::storage`]'s.

use std::sync::Arc;
use std::time::Duration;

use crate::files::{off_runtime, READ_TIMEOUT};
use crate::render::SelfMetrics;
use crate::state::storage::{DirLock, LockError, RestoredTargets, Storage, StoredDiscovery};
use crate::state::Store;
use crate::timestamp::{format_rfc3339, now_unix};

/// How long the start waits for the state file to be read and checked: a large one
/// (a million members) takes a few seconds; a hung mount must not delay the start
/// past a liveness probe's patience. A SIGTERM or SIGINT ends the wait at once.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Locks the storage directory (creating it, 0700, if it is missing), off the async
/// workers and with a deadline. The lock is held as long as the returned value.
pub(super) async fn lock(storage: &Storage) -> Result<DirLock, LockError> {
    let s = storage.clone();
    match off_runtime(READ_TIMEOUT, move || s.lock()).await {
        Ok(locked) => locked,
        Err(reason) => Err(LockError::Failed {
            dir: storage.dir().display().to_string(),
            reason,
        }),
    }
}

/// Restores the state file into `store` (what the config no longer names is dropped
/// by the poller's first `set_images`), and returns the restored discovered sets. A
/// file that cannot be used is moved aside and the exporter starts clean; one that
/// cannot be read in time (a hung mount) is left where it is.
pub(super) async fn restore(
    storage: &Storage,
    store: &Store,
    metrics: &SelfMetrics,
) -> RestoredTargets {
    let s = storage.clone();
    let loaded = off_runtime(RESTORE_TIMEOUT, move || s.load()).await;
    match loaded {
        Ok(Ok(Some(r))) => {
            let members: usize = r.images.iter().map(|i| i.member_count()).sum();
            tracing::info!(
                file = %storage.file().display(), images = r.images.len(), members,
                written_at = %format_rfc3339(r.written_at).unwrap_or_else(|| "-".into()),
                "restored state; the first poll of each image is compared with it"
            );
            store.restore(r.images);
            store.changes().push(r.changes);
            metrics.state_restored(true);
            RestoredTargets {
                discovered: r.discovered,
                traces: r.traces,
                incoming: r.incoming,
            }
        }
        Ok(Ok(None)) => {
            tracing::info!(file = %storage.file().display(), "no state to restore; starting clean");
            metrics.state_restored(true);
            RestoredTargets::default()
        }
        Ok(Err(e)) => {
            let s = storage.clone();
            let aside = off_runtime(READ_TIMEOUT, move || s.move_aside(now_unix()))
                .await
                .ok()
                .flatten();
            tracing::warn!(
                error = %e,
                moved_to = %aside.map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
                "cannot restore state; starting clean"
            );
            metrics.state_restored(false);
            RestoredTargets::default()
        }
        Err(e) => {
            tracing::warn!(
                file = %storage.file().display(), error = %e,
                "cannot restore state; starting clean"
            );
            metrics.state_restored(false);
            RestoredTargets::default()
        }
    }
}

/// Writes the state file after every poll cycle that changed what it keeps.
pub(super) async fn write_state(storage: Storage, store: Arc<Store>, metrics: Arc<SelfMetrics>) {
    let mut written = store.generation();
    loop {
        store.cycle_ended().await;
        let now = store.generation();
        if now != written && save(&storage, &store, &metrics).await {
            written = now;
        }
    }
}

/// One crash-safe write of the current state, off the async workers.
pub(super) async fn save(storage: &Storage, store: &Store, metrics: &SelfMetrics) -> bool {
    let snapshot = store.snapshot();
    let discovered: Vec<StoredDiscovery> = snapshot
        .targets
        .iter()
        .filter_map(|t| {
            Some(StoredDiscovery {
                region: t.region.to_string(),
                project_id: t.project_id.to_string(),
                images: t.discovered.as_deref()?.clone(),
            })
        })
        .collect();
    let changes = store.changes().all();
    let s = storage.clone();
    let started = std::time::Instant::now();
    let result =
        tokio::task::spawn_blocking(move || s.write(&snapshot, &discovered, &changes, now_unix()))
            .await;
    match result {
        Ok(Ok(bytes)) => {
            tracing::debug!(
                bytes,
                seconds = started.elapsed().as_secs_f64(),
                "state written"
            );
            metrics.state_written(true, now_unix());
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot write state");
            metrics.state_written(false, now_unix());
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot write state");
            metrics.state_written(false, now_unix());
            false
        }
    }
}
