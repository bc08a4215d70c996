//! What a target takes over from the poller a reload replaces: its schedule (so the
//! reload polls only what it added) and what it discovered (so discovered images keep
//! their state); at start, what the state file says it last discovered.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::events::window::Window;
use super::poller::{lock, Discovered, Poller, TargetRun};
use crate::ids::ImageId;
use crate::poll::plan::LiveTarget;
use crate::state::storage::{RestoredTargets, StoredDiscovery};
use crate::state::{member_status, IncomingStatus, Offer, TargetSlot, TraceWindow};

impl TargetRun {
    /// The run of `live`, taking over from `previous` (a reload) or `restored` (a start).
    pub(super) fn take_over(
        live: &Arc<LiveTarget>,
        slot: Arc<TargetSlot>,
        previous: Option<&Poller>,
        restored: &RestoredTargets,
    ) -> TargetRun {
        let t = &live.config;
        let old = previous.and_then(|p| {
            p.targets.iter().find(|o| {
                o.target.config.region == t.region && o.target.config.project_id() == t.project_id()
            })
        });
        // Only a target that finished a cycle has a schedule worth resuming.
        let resumed = old
            .filter(|_| slot.load().last_cycle_seconds.is_some())
            .map(|o| *lock(&o.schedule));
        let same_filter = old.is_some_and(|o| {
            o.target.config.discover.is_some() && o.target.config.discover == t.discover
        });
        let discovered = match (old, &t.discover) {
            // What the old filter found stays monitored (with its state) until
            // the new filter's discovery, which runs at once, replaces it: an
            // image both filters find is not dropped and taken up again.
            (Some(o), Some(_)) => lock(&o.discovered).clone(),
            // Restored images are served until the first discovery replaces them.
            (None, Some(_)) => {
                restored_discovery(&restored.discovered, &t.region, t.project_id().as_str())
            }
            _ => None,
        };
        // A changed filter is applied at once (and so is a first discovery).
        let resumed = resumed.map(|mut s| {
            if !same_filter || discovered.is_none() {
                s.last_discovery = None;
            }
            s
        });
        if t.incoming.is_some() {
            restore_incoming(&slot, restored, &t.region, t.project_id().as_str());
        } else if slot.load().incoming.is_some() {
            // A reload turned the listing off: its series go with it.
            slot.update(|s| s.incoming = None);
        }
        let traces = match old {
            Some(o) => lock(&o.traces).clone(),
            None => restored_window(restored, &t.region, t.project_id().as_str()),
        };
        TargetRun {
            traces: Mutex::new(traces),
            target: live.clone(),
            slot,
            jobs: ArcSwap::from_pointee(Vec::new()),
            discovered: Mutex::new(discovered),
            schedule: Mutex::new(resumed.unwrap_or_default()),
            resumed,
        }
    }
}

/// What the state file says `region`/`project_id` last discovered.
fn restored_discovery(
    restored: &[StoredDiscovery],
    region: &str,
    project_id: &str,
) -> Option<Discovered> {
    restored
        .iter()
        .find(|r| r.region == region && r.project_id == project_id)
        .map(|r| {
            r.images
                .iter()
                .filter_map(|(id, name)| Some((ImageId::parse(id).ok()?, name.clone())))
                .collect()
        })
}

/// Where the state file says `region`/`project_id`'s trace reads stood.
fn restored_window(restored: &RestoredTargets, region: &str, project_id: &str) -> Window {
    restored
        .traces
        .iter()
        .find(|w| w.region == region && w.project_id == project_id)
        .map(|w| {
            Window::restored(&TraceWindow {
                to_ms: w.to_ms,
                seen: w.seen.clone(),
            })
        })
        .unwrap_or_default()
}

/// Puts the state file's list of images shared with the target in its slot, unless a
/// listing already replaced it: the first listing after a restart is diffed with it.
fn restore_incoming(slot: &TargetSlot, restored: &RestoredTargets, region: &str, project_id: &str) {
    let Some(stored) = restored
        .incoming
        .iter()
        .find(|l| l.region == region && l.project_id == project_id)
    else {
        return;
    };
    if slot.load().incoming.is_some() {
        return;
    }
    let offers: Arc<Vec<Offer>> = stored
        .offers
        .iter()
        .map(|o| Offer {
            image_id: o.image_id.clone(),
            image_name: o.name.clone(),
            owner: o.owner.clone(),
            member_status: member_status(&o.member_status),
            trusted: o.trusted,
            first_seen: o.first_seen,
        })
        .collect::<Vec<_>>()
        .into();
    slot.update(|s| {
        s.incoming = Some(IncomingStatus {
            ok: None,
            last_success_unix: stored.last_success,
            offers: Some(offers.clone()),
            restored: true,
        })
    });
}
