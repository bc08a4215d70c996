//! `--once`: discover, poll every image once, print the metrics (or, with
//! `--once.format`, a report of the shares) to stdout, and exit 0 if every image
//! succeeded, 1 otherwise (cron, the textfile collector, audits). With `--storage.path`
//! it reads a daemon's state file, read-only, so its reports hold the recorded changes.

use std::sync::Arc;

use crate::app::exit::{EXIT_FAILURE, EXIT_OK};
use crate::app::render_options::render_options;
use crate::cli::OnceFormat;
use crate::files::{off_runtime, READ_TIMEOUT};
use crate::poll::plan::Plan;
use crate::poll::poller::Poller;
use crate::render::report::Report;
use crate::render::{Format, Metrics, SelfMetrics};
use crate::state::storage::{RestoredTargets, Storage};
use crate::state::Store;

/// `--once`: discover, poll everything once, print the metrics. With `storage`, the
/// state file is read (never written): the poll is compared with it, and the reports
/// hold the changes it kept.
pub(super) async fn run(
    plan: Plan,
    self_metrics: Arc<SelfMetrics>,
    format: OnceFormat,
    storage: Option<Storage>,
) -> u8 {
    let store = Arc::new(Store::new());
    let metrics = Metrics::new(store.clone(), self_metrics);
    metrics.set_options(render_options(&plan));
    let restored = match storage {
        Some(storage) => read_state(&storage, &store).await,
        None => Default::default(),
    };
    let poller = Poller::new(Arc::new(plan), store.clone(), None, &restored);
    let all_ok = poller.once().await;
    let report = || Report::new(&store.snapshot(), store.changes());
    let out = match format {
        OnceFormat::Prometheus => metrics.render(Format::Text),
        OnceFormat::Json => report().json(),
        OnceFormat::Csv => report().csv(),
        OnceFormat::Markdown => report().markdown(),
    };
    print!("{out}");
    if all_ok {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}

/// Reads the state file a daemon writes (without its lock: the file is replaced whole,
/// never written in place) into `store`. One that cannot be used is reported and left
/// alone: `--once` never moves or writes it.
async fn read_state(storage: &Storage, store: &Store) -> RestoredTargets {
    let s = storage.clone();
    match off_runtime(READ_TIMEOUT, move || s.load()).await {
        Ok(Ok(Some(r))) => {
            store.restore(r.images);
            store.changes().push(r.changes);
            RestoredTargets {
                discovered: r.discovered,
                traces: r.traces,
                incoming: r.incoming,
            }
        }
        Ok(Ok(None)) => RestoredTargets::default(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the state; polling without it");
            RestoredTargets::default()
        }
        Err(e) => {
            tracing::warn!(file = %storage.file().display(), error = %e, "cannot read the state; polling without it");
            RestoredTargets::default()
        }
    }
}
