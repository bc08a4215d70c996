//! `--once`: discover, poll every image once, print the metrics (or, with
//! `--once.format`, a report of the shares) to stdout, and exit 0 if every image
//! succeeded, 1 otherwise (cron, the textfile collector, audits).

use std::sync::Arc;

use crate::app::exit::{EXIT_FAILURE, EXIT_OK};
use crate::app::render_options::render_options;
use crate::cli::OnceFormat;
use crate::poll::plan::Plan;
use crate::poll::poller::Poller;
use crate::render::report::Report;
use crate::render::{Format, Metrics, SelfMetrics};
use crate::state::Store;

/// `--once`: discover, poll everything once, print the metrics.
pub(super) async fn run(plan: Plan, self_metrics: Arc<SelfMetrics>, format: OnceFormat) -> u8 {
    let store = Arc::new(Store::new());
    let metrics = Metrics::new(store.clone(), self_metrics);
    metrics.set_options(render_options(&plan));
    let poller = Poller::new(Arc::new(plan), store.clone(), None, &Default::default());
    let all_ok = poller.once().await;
    let report = || Report::new(&store.snapshot());
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
