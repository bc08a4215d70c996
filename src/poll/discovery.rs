//! Discovery: list a target's own images, apply the filters, and rebuild the image
//! set when what it found changed. A failed discovery keeps the previous image set.

use std::sync::Arc;

use super::poller::{lock, Discovered, Poller, TargetRun};
use crate::config::{Discover, Target};
use crate::ids::ImageId;
use crate::ims::model::ImageSummary;
use crate::ims::ApiError;
use crate::state::DiscoveryStatus;
use crate::timestamp::now_unix;

impl Poller {
    /// Lists the target's images. A failed discovery keeps the previous image set.
    /// Returns true on success (and for a target without `discover:`).
    pub(super) async fn discover(&self, run: &TargetRun) -> bool {
        let target = &run.target.config;
        let Some(filter) = &target.discover else {
            return true;
        };
        let images = match self
            .plan
            .client
            .list_images(&run.target.api, &filter.api)
            .await
        {
            Ok(images) => images,
            Err(e) => {
                failed(run, &e);
                return false;
            }
        };
        let found = filtered(target, filter, images);
        // What this shard polls, so that the shards' counts add up to the whole.
        let shard = self.plan.config.shard;
        let count = found
            .iter()
            .filter(|(id, _)| shard.owns(target.project_id().as_str(), id.as_str()))
            .count();
        if record(run, found, count) {
            tracing::info!(region = %target.region, project_id = %target.project_id(), images = count, "discovered images");
            self.rebuild();
        }
        true
    }
}

/// A failed discovery: logged, and the target's status says so (its last count stays).
fn failed(run: &TargetRun, e: &ApiError) {
    let target = &run.target.config;
    tracing::warn!(
        region = %target.region, project_id = %target.project_id(),
        reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
        "discovery failed; keeping the previous image set"
    );
    run.slot.update(|s| {
        let last = s.discovery.as_ref();
        s.discovery = Some(DiscoveryStatus {
            ok: false,
            images: last.map(|d| d.images).unwrap_or(0),
            last_success_unix: last.and_then(|d| d.last_success_unix),
        });
    });
}

/// The images the filters keep, sorted by ID, each once.
fn filtered(target: &Target, filter: &Discover, images: Vec<ImageSummary>) -> Discovered {
    let mut found: Discovered = Vec::new();
    for image in images {
        let name = image.name.unwrap_or_default();
        let Ok(id) = ImageId::parse(&image.id) else {
            tracing::warn!(
                region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                "discovery returned an image ID that is not a UUID; skipped"
            );
            continue;
        };
        let excluded = filter.exclude_ids.contains(&id)
            || filter
                .name_regex
                .as_ref()
                .is_some_and(|r| !r.is_match(&name));
        if !excluded {
            found.push((id, name));
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

/// Records a good discovery (`count` images for this shard) in the target's status
/// and the poller; true when the set changed.
fn record(run: &TargetRun, found: Discovered, count: usize) -> bool {
    let kept: Vec<(String, String)> = found
        .iter()
        .map(|(id, name)| (id.to_string(), name.clone()))
        .collect();
    run.slot.update(|s| {
        s.discovery = Some(DiscoveryStatus {
            ok: true,
            images: count,
            last_success_unix: Some(now_unix()),
        });
        s.discovered = Some(Arc::new(kept.clone()));
    });
    let mut discovered = lock(&run.discovered);
    let changed = discovered.as_ref() != Some(&found);
    if changed {
        *discovered = Some(found);
    }
    changed
}
