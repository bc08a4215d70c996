//! What the renderer reads of the running plan: `member_metrics`, the shard, and the
//! providers' credential expiry, read at scrape time (never copied).

use std::sync::Arc;

use crate::poll::plan::Plan;
use crate::render::events::EventOptions;
use crate::render::RenderOptions;

/// The renderer's view of `plan`.
pub(super) fn render_options(plan: &Plan) -> RenderOptions {
    let providers = plan.providers.clone();
    RenderOptions {
        member_metrics: plan.config.member_metrics,
        shard: plan.config.shard,
        credential_expiry: Arc::new(move || {
            providers
                .iter()
                .filter_map(|p| p.expires_at().map(|e| (p.kind(), e)))
                .collect()
        }),
        events: EventOptions {
            cts: plan.config.events.cts.is_some(),
            webhook: plan.config.events.webhook.is_some(),
        },
    }
}
