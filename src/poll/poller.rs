//! The poller: its targets, the set of images they monitor (configured ones plus
//! discovered ones, rebuilt when discovery changes it), and one poll cycle of a target.
//! Every `poll_interval` a cycle polls every image ([`super::schedule`]); every
//! `discovery_interval` a discovery lists the targets' own images
//! ([`super::discovery`]).
//!
//! Concurrency is bounded by the client's request limiter, not here. A cycle runs to
//! completion before the next starts, so polls never overlap. An image's state is
//! replaced only when all its calls succeeded and the list respects the member caps; a
//! failure keeps the last good list. The allowlist is applied at poll time (files
//! re-read), and the change audit compares each good list with the previous one.
//!
//! A reload builds a new poller from the old one ([`Poller::new`] with `previous`):
//! targets that stay keep what they discovered and their schedules, so the reload
//! polls only the images it added, and every image that stays keeps its state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use rand::Rng;
use tokio::task::JoinSet;

use tokio::sync::mpsc;

use super::events::gate::PollGate;
use super::events::window::Window;
use super::image_poll::{poll_image, ImageJob, Limits};
use crate::config::{ImageConfig, Target};
use crate::ids::ImageId;
use crate::poll::audit;
use crate::poll::plan::{LiveTarget, Plan};
use crate::state::storage::RestoredTargets;
use crate::state::{ImageKey, ImageMeta, Store, TargetSlot};
use crate::timestamp::now_unix;

/// Longest random delay before a target's polls in a cycle, so that many targets do
/// not hit the API in the same instant. A tenth of the interval, at most this.
const MAX_JITTER: Duration = Duration::from_secs(5);

/// What the last good discovery of a target found: (ID, name), after filters.
pub(super) type Discovered = Vec<(ImageId, String)>;

/// When a target's schedules last started a round, so that a reload can resume them
/// instead of starting over.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Schedule {
    pub(super) last_poll: Option<tokio::time::Instant>,
    pub(super) last_discovery: Option<tokio::time::Instant>,
}

/// One target's schedules and what they know.
pub(super) struct TargetRun {
    pub(super) target: Arc<LiveTarget>,
    pub(super) slot: Arc<TargetSlot>,
    pub(super) jobs: ArcSwap<Vec<Arc<ImageJob>>>,
    /// `None` until a discovery succeeded (or without `discover:`).
    pub(super) discovered: Mutex<Option<Discovered>>,
    pub(super) schedule: Mutex<Schedule>,
    /// Taken over from the previous poller by a reload: resume, don't start over.
    pub(super) resumed: Option<Schedule>,
    /// Where the target's trace reads stand (taken over by a reload, restored at start).
    pub(super) traces: Mutex<Window>,
}

/// An event poll on its way to the dispatcher ([`super::event_polls`]).
pub(super) struct EventPoll {
    pub(super) job: Arc<ImageJob>,
    pub(super) slot: Arc<TargetSlot>,
}

pub struct Poller {
    pub(super) plan: Arc<Plan>,
    pub(super) store: Arc<Store>,
    pub(super) targets: Vec<TargetRun>,
    /// Serialises rebuilding the image set (discoveries of several targets may end at once).
    rebuild_lock: Mutex<()>,
    /// Serialises checking `max_members_total` with storing a poll's result.
    commit_lock: Arc<Mutex<()>>,
    /// Event polls on their way to the dispatcher ([`super::events`]).
    pub(super) event_tx: mpsc::UnboundedSender<EventPoll>,
    pub(super) event_rx: Mutex<Option<mpsc::UnboundedReceiver<EventPoll>>>,
}

pub fn image_key(target: &Target, image: &ImageId) -> ImageKey {
    ImageKey {
        region: target.region.as_str().into(),
        project_id: target.project_id().as_str().into(),
        image_id: image.as_str().into(),
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Poller {
    /// Registers the config's targets and images with the store (keeping the state of
    /// those already there) and prepares the jobs. On a reload, `previous` is the
    /// poller being replaced: targets that stay take over what it discovered (before
    /// the store's image set is rebuilt, so discovered images keep their state) and
    /// its schedules.
    /// At start, `restored` is what the state file says each target last discovered
    /// and where its trace reads stood.
    pub fn new(
        plan: Arc<Plan>,
        store: Arc<Store>,
        previous: Option<&Poller>,
        restored: &RestoredTargets,
    ) -> Self {
        let config = plan.config.clone();
        let keys: Vec<(Arc<str>, Arc<str>)> = config
            .targets
            .iter()
            .map(|t| (t.region.as_str().into(), t.project_id().as_str().into()))
            .collect();
        let slots = store.set_targets(&keys);
        let targets = plan
            .targets
            .iter()
            .zip(slots)
            .map(|(live, slot)| TargetRun::take_over(live, slot, previous, restored))
            .collect();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let poller = Poller {
            plan,
            store,
            targets,
            rebuild_lock: Mutex::new(()),
            commit_lock: Arc::new(Mutex::new(())),
            event_tx,
            event_rx: Mutex::new(Some(event_rx)),
        };
        poller.rebuild();
        poller
    }

    /// The images to monitor: configured ones (which win) plus discovered ones.
    pub(super) fn rebuild(&self) {
        let _guard = lock(&self.rebuild_lock);
        // An image's gate outlives the rebuild, so that its polls stay one at a time.
        let gates: HashMap<(usize, ImageId), Arc<PollGate>> = self
            .targets
            .iter()
            .enumerate()
            .flat_map(|(ti, run)| {
                run.jobs
                    .load()
                    .iter()
                    .map(|j| ((ti, j.image.id.clone()), j.gate.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let planned = self.planned_images();
        let keys: Vec<(ImageKey, ImageMeta)> = planned
            .iter()
            .map(|(ti, i)| {
                let meta = ImageMeta {
                    name: i.name.as_deref().unwrap_or("").into(),
                    source: i.source,
                };
                (image_key(&self.targets[*ti].target.config, &i.id), meta)
            })
            .collect();
        let (slots, dropped) = self.store.replace_images(&keys);
        // What stopped being monitored goes into the change history, so that the
        // shares it had do not vanish without a word.
        let now = now_unix();
        self.store.record_changes(
            dropped
                .iter()
                .filter_map(|s| audit::unmonitored(s, now))
                .collect(),
        );
        let mut jobs: Vec<Vec<Arc<ImageJob>>> = vec![Vec::new(); self.targets.len()];
        for ((ti, image), slot) in planned.into_iter().zip(slots) {
            let target = self.targets[ti].target.clone();
            let allowlist = self.plan.allowlist(&image.allowlist);
            let gate = gates
                .get(&(ti, image.id.clone()))
                .cloned()
                .unwrap_or_default();
            jobs[ti].push(Arc::new(ImageJob {
                target,
                image,
                allowlist,
                slot,
                gate,
            }));
        }
        for (run, jobs) in self.targets.iter().zip(jobs) {
            run.jobs.store(Arc::new(jobs));
        }
    }

    /// Every target's images for this shard: configured ones (named from discovery when
    /// the config gives no name), then discovered ones the config does not list.
    fn planned_images(&self) -> Vec<(usize, ImageConfig)> {
        let mut planned: Vec<(usize, ImageConfig)> = Vec::new();
        for (ti, run) in self.targets.iter().enumerate() {
            let target = &run.target.config;
            let discovered = lock(&run.discovered).clone();
            let found: HashMap<&ImageId, &String> = discovered
                .iter()
                .flatten()
                .map(|(id, name)| (id, name))
                .collect();
            let configured: HashSet<&ImageId> = target.images.iter().map(|i| &i.id).collect();
            let shard = self.plan.config.shard;
            let mine = |id: &ImageId| shard.owns(target.project_id().as_str(), id.as_str());
            for image in target.images.iter().filter(|i| mine(&i.id)) {
                let mut image = image.clone();
                if image.name.is_none() {
                    image.name = found.get(&image.id).map(|n| n.to_string());
                }
                planned.push((ti, image));
            }
            for (id, name) in discovered
                .iter()
                .flatten()
                .filter(|(id, _)| !configured.contains(id) && mine(id))
            {
                planned.push((
                    ti,
                    ImageConfig::discovered(target, id.clone(), name.clone()),
                ));
            }
        }
        planned
    }

    /// Polls every image of one target once (or, with `only_new`, those never polled:
    /// what a reload added). Returns true when every image succeeded.
    pub(super) async fn cycle(&self, run: &TargetRun, jitter: bool, only_new: bool) -> bool {
        let max_jitter = (self.plan.config.poll_interval / 10).min(MAX_JITTER);
        if jitter && !max_jitter.is_zero() {
            // The thread-local RNG must not live across an await (it is not Send).
            let delay = rand::rng().random_range(Duration::ZERO..max_jitter);
            tokio::time::sleep(delay).await;
        }
        let started = Instant::now();
        let jobs = run.jobs.load_full();
        // No more polls under way than the target may have requests in flight: a poll
        // waiting for a slot is a task whose future holds kilobytes, and 10,000 of them
        // at once would be the exporter's largest allocation.
        let in_flight = super::plan::target_share(
            self.plan.config.max_concurrent_requests,
            self.plan.config.targets.len(),
        );
        let mut set = JoinSet::new();
        let mut polled = 0;
        let mut all_ok = true;
        for job in jobs.iter() {
            if only_new && job.slot.load().last_poll_ok.is_some() {
                continue;
            }
            polled += 1;
            let (job, client, page_size) = (
                job.clone(),
                self.plan.client.clone(),
                self.plan.config.page_size,
            );
            let limits = self.limits();
            if set.len() >= in_flight {
                all_ok &= joined(set.join_next().await);
            }
            set.spawn(async move {
                let _running = job.gate.enter().await;
                poll_image(&client, &job, page_size, &limits, None).await
            });
        }
        while !set.is_empty() {
            all_ok &= joined(set.join_next().await);
        }
        let secs = started.elapsed().as_secs_f64();
        if !only_new {
            self.store.cycle_finished(&run.slot, secs);
        }
        // Milliseconds for a million members (its madvise calls): not on a worker.
        tokio::task::spawn_blocking(crate::memory::release_free_memory);
        tracing::debug!(
            region = %run.target.config.region, project_id = %run.target.config.project_id(),
            images = polled, seconds = secs, all_ok, only_new, "poll cycle finished"
        );
        all_ok
    }

    pub(super) fn limits(&self) -> Limits {
        Limits {
            store: self.store.clone(),
            per_image: self.plan.config.max_members_per_image,
            total: self.plan.config.max_members_total,
            commit: self.commit_lock.clone(),
        }
    }

    /// Discovery, then one poll of everything, every target at once, and one listing of
    /// the images shared with each target (`incoming:`, so that the reports hold them):
    /// for `--once`. False if any of them failed.
    pub async fn once(&self) -> bool {
        let mut ok = true;
        for run in &self.targets {
            ok &= self.discover(run).await;
        }
        let cycles = self.targets.iter().map(|run| self.cycle(run, false, false));
        for done in join_all(cycles).await {
            ok &= done;
        }
        let listings = self.targets.iter().map(|run| self.list_incoming(run));
        for done in join_all(listings).await {
            ok &= done;
        }
        ok
    }
}

/// Whether a finished poll task succeeded (a task that panicked did not).
fn joined(result: Option<Result<bool, tokio::task::JoinError>>) -> bool {
    match result {
        Some(Ok(ok)) => ok,
        Some(Err(e)) => {
            tracing::error!(error = %e, "poll task failed");
            false
        }
        None => true,
    }
}
