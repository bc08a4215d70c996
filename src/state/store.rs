//! The store: one slot per image behind an `ArcSwap` (the poller replaces a state
//! whole), target statuses, and the [`Snapshot`] a scrape takes of all of it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::changes::{ChangeEvent, ChangeLog};
use super::image::{ImageKey, ImageMeta, ImageState};
use super::members::MemberSet;

/// A slot per monitored image. The `Arc<Slot>` is what the poller holds while polling.
#[derive(Debug)]
pub struct Slot {
    pub key: ImageKey,
    state: ArcSwap<ImageState>,
    /// The store's count of members held, kept current as states are swapped.
    held: Arc<AtomicUsize>,
    /// The store's generation, bumped when what the state file keeps changes.
    generation: Arc<AtomicU64>,
    /// No longer in the store (a poll that ends after a reload dropped the image
    /// must not count its members).
    retired: AtomicBool,
}

impl Slot {
    fn new(key: ImageKey, state: ImageState, store: &Store) -> Slot {
        Slot {
            key,
            state: ArcSwap::from_pointee(state),
            held: store.held.clone(),
            generation: store.generation.clone(),
            retired: AtomicBool::new(false),
        }
    }

    pub fn load(&self) -> Arc<ImageState> {
        self.state.load_full()
    }

    pub fn store(&self, state: ImageState) {
        let new = state.member_count();
        let previous = self.state.swap(Arc::new(state));
        let current = self.state.load();
        let kept = |s: &ImageState| (s.last_success_unix, s.watched.len(), s.meta.clone());
        if !same_members(&previous.members, &current.members)
            || kept(&previous) != kept(&current)
            || previous.watched != current.watched
        {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let old = previous.member_count();
        if !self.retired.load(Ordering::Acquire) && new != old {
            if new > old {
                self.held.fetch_add(new - old, Ordering::AcqRel);
            } else {
                self.held.fetch_sub(old - new, Ordering::AcqRel);
            }
        }
    }
}

fn same_members(a: &Option<Arc<MemberSet>>, b: &Option<Arc<MemberSet>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// What a scrape renders from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub images: Vec<Arc<ImageState>>,
    pub targets: Vec<Arc<TargetStatus>>,
}

impl Snapshot {
    /// Wall time of the slowest target's last complete poll cycle: how long one round
    /// over every image takes.
    pub fn last_cycle_seconds(&self) -> Option<f64> {
        self.targets
            .iter()
            .filter_map(|t| t.last_cycle_seconds)
            .reduce(f64::max)
    }
}

/// The outcome of the last discovery of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryStatus {
    pub ok: bool,
    /// Images the last good discovery found (after filters).
    pub images: usize,
    pub last_success_unix: Option<f64>,
}

/// Where a target's trace reads stand: the end of the last good read's window and the
/// trace IDs seen since the next window's start (with their operation time, Unix ms),
/// so that no trace is lost and none is acted on twice, across restarts too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceWindow {
    pub to_ms: Option<i64>,
    pub seen: Vec<(String, i64)>,
}

/// The trace reads of one target (`events.cts`) and the polls traces triggered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CtsStatus {
    /// The last read succeeded; `None` before the first read.
    pub ok: Option<bool>,
    pub last_success_unix: Option<f64>,
    /// Member traces read (or pushed), each once, by trace name.
    pub traces: std::collections::BTreeMap<String, u64>,
    /// Image polls triggered by traces.
    pub event_polls: u64,
    /// Where the reads stand, for the state file.
    pub window: Option<Arc<TraceWindow>>,
}

/// What is known about one target (region and project) as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub region: Arc<str>,
    pub project_id: Arc<str>,
    /// `None` for a target without `discover:` or before its first discovery.
    pub discovery: Option<DiscoveryStatus>,
    /// Wall time of the target's last complete poll cycle.
    pub last_cycle_seconds: Option<f64>,
    /// What the last good discovery found, (image ID, name), for the state file.
    pub discovered: Option<Arc<Vec<(String, String)>>>,
    /// Trace reads and event polls; `None` for a target that has none.
    pub cts: Option<CtsStatus>,
    /// Images shared with the target's project; `None` without `incoming:`.
    pub incoming: Option<super::incoming::IncomingStatus>,
}

/// One target's status, replaced whole; the discovery and poll schedules of the
/// target both write it, hence read-copy-update.
#[derive(Debug)]
pub struct TargetSlot {
    status: ArcSwap<TargetStatus>,
}

impl TargetSlot {
    pub fn update(&self, f: impl Fn(&mut TargetStatus)) {
        self.status.rcu(|old| {
            let mut next = (**old).clone();
            f(&mut next);
            next
        });
    }

    pub fn load(&self) -> Arc<TargetStatus> {
        self.status.load_full()
    }
}

#[derive(Debug, Default)]
pub struct Store {
    slots: ArcSwap<Vec<Arc<Slot>>>,
    targets: ArcSwap<Vec<Arc<TargetSlot>>>,
    ready: AtomicBool,
    /// Members held across all images (checked against `max_members_total`).
    held: Arc<AtomicUsize>,
    /// Bumped whenever what `--storage.path` keeps changes.
    generation: Arc<AtomicU64>,
    /// Woken when a target finishes a poll cycle (the state writer waits on it).
    cycles: tokio::sync::Notify,
    /// The most recent member changes.
    changes: ChangeLog,
    /// What the event sources (trace reads, webhook) did.
    events: super::events::EventStats,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets which targets exist, keeping the status of those that stay.
    pub fn set_targets(&self, keys: &[(Arc<str>, Arc<str>)]) -> Vec<Arc<TargetSlot>> {
        let old = self.targets.load();
        let slots: Vec<Arc<TargetSlot>> = keys
            .iter()
            .map(|(region, project_id)| {
                old.iter()
                    .find(|t| {
                        let s = t.load();
                        &s.region == region && &s.project_id == project_id
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(TargetSlot {
                            status: ArcSwap::from_pointee(TargetStatus {
                                region: region.clone(),
                                project_id: project_id.clone(),
                                discovery: None,
                                last_cycle_seconds: None,
                                discovered: None,
                                cts: None,
                                incoming: None,
                            }),
                        })
                    })
            })
            .collect();
        self.targets.store(Arc::new(slots.clone()));
        slots
    }

    /// Sets which images are monitored. Images that stay keep their state; images no
    /// longer listed stop being exported at once.
    pub fn set_images(&self, images: &[(ImageKey, ImageMeta)]) -> Vec<Arc<Slot>> {
        self.replace_images(images).0
    }

    /// [`Store::set_images`], which also returns the last state of each image it
    /// dropped (for the change log: an image that stops being monitored).
    pub fn replace_images(
        &self,
        images: &[(ImageKey, ImageMeta)],
    ) -> (Vec<Arc<Slot>>, Vec<Arc<ImageState>>) {
        let old = self.slots.load();
        let by_key: std::collections::HashMap<&ImageKey, &Arc<Slot>> =
            old.iter().map(|s| (&s.key, s)).collect();
        let slots: Vec<Arc<Slot>> = images
            .iter()
            .map(|(k, meta)| match by_key.get(k) {
                Some(slot) => {
                    let state = slot.load();
                    if &state.meta != meta {
                        slot.store(ImageState {
                            meta: meta.clone(),
                            ..(*state).clone()
                        });
                    }
                    Arc::clone(slot)
                }
                None => Arc::new(Slot::new(
                    k.clone(),
                    ImageState::new(k.clone(), meta.clone()),
                    self,
                )),
            })
            .collect();
        let kept: std::collections::HashSet<&ImageKey> = slots.iter().map(|s| &s.key).collect();
        let mut dropped = Vec::new();
        for gone in old.iter().filter(|s| !kept.contains(&s.key)) {
            gone.retired.store(true, Ordering::Release);
            dropped.push(gone.load());
        }
        self.slots.store(Arc::new(slots.clone()));
        // Counted afresh whenever the image set changes, so nothing can drift.
        let held = slots.iter().map(|s| s.load().member_count()).sum();
        self.held.store(held, Ordering::Release);
        (slots, dropped)
    }

    /// Members held across all images.
    pub fn members_held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Puts restored image states in place before the first poller registers its
    /// images: those it keeps are served at once (and their first poll is diffed
    /// against them); the others are dropped by its first `set_images`.
    pub fn restore(&self, states: Vec<ImageState>) {
        let slots: Vec<Arc<Slot>> = states
            .into_iter()
            .map(|s| Arc::new(Slot::new(s.key.clone(), s, self)))
            .collect();
        let held = slots.iter().map(|s| s.load().member_count()).sum();
        self.slots.store(Arc::new(slots));
        self.held.store(held, Ordering::Release);
    }

    /// Records member changes the audit saw (they are kept in the state file too).
    pub fn record_changes(&self, events: Vec<ChangeEvent>) {
        if !events.is_empty() {
            self.changes.push(events);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The most recent member changes.
    pub fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    /// The event sources' counters.
    pub fn events(&self) -> &super::events::EventStats {
        &self.events
    }

    /// Changes whenever what the state file keeps changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Completes when a target finishes its next poll cycle (or polls triggered by
    /// events end): when the state file may be due.
    pub async fn cycle_ended(&self) {
        self.cycles.notified().await
    }

    /// Polls triggered by events ended: what the state file keeps may have changed.
    pub fn events_polled(&self) {
        self.cycles.notify_waiters();
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            images: self.slots.load().iter().map(|s| s.load()).collect(),
            targets: self.targets.load().iter().map(|t| t.load()).collect(),
        }
    }

    /// Records a finished poll cycle of `target`; the exporter is ready once every
    /// target has finished one (and stays ready across reloads).
    pub fn cycle_finished(&self, target: &TargetSlot, seconds: f64) {
        target.update(|s| s.last_cycle_seconds = Some(seconds));
        self.cycles.notify_waiters();
        if self
            .targets
            .load()
            .iter()
            .all(|t| t.load().last_cycle_seconds.is_some())
        {
            self.ready.store(true, Ordering::Release);
        }
    }

    /// True once a full poll cycle has finished (readiness).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
