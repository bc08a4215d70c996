//! The schedules: every `poll_interval`, fetch the members of every monitored image;
//! every `discovery_interval`, list the targets' own images to find what to monitor.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::allowlist::LiveAllowlist;
use crate::config::{ImageConfig, Target};
use crate::ids::ImageId;
use crate::ims::client::MemberCap;
use crate::ims::model::MemberRef;
use crate::ims::{ApiError, ImsClient, Member};
use crate::poll::audit;
use crate::poll::plan::{LiveTarget, Plan};
use crate::state::storage::StoredDiscovery;
use crate::state::{
    DiscoveryStatus, ImageKey, ImageMeta, MemberRecord, MemberSet, Slot, Store, TargetSlot,
};
use crate::timestamp::now_unix;

/// Longest random delay before a target's polls in a cycle, so that many targets do
/// not hit the API in the same instant. A tenth of the interval, at most this.
const MAX_JITTER: Duration = Duration::from_secs(5);

struct ImageJob {
    target: Arc<LiveTarget>,
    image: ImageConfig,
    /// The image's allowlist as polls apply it (files re-read).
    allowlist: LiveAllowlist,
    slot: Arc<Slot>,
}

/// What the last good discovery of a target found: (ID, name), after filters.
type Discovered = Vec<(ImageId, String)>;

/// When a target's schedules last started a round, so that a reload can resume them
/// instead of starting over.
#[derive(Debug, Clone, Copy, Default)]
struct Schedule {
    last_poll: Option<tokio::time::Instant>,
    last_discovery: Option<tokio::time::Instant>,
}

/// One target's schedules and what they know.
struct TargetRun {
    target: Arc<LiveTarget>,
    slot: Arc<TargetSlot>,
    jobs: ArcSwap<Vec<Arc<ImageJob>>>,
    /// `None` until a discovery succeeded (or without `discover:`).
    discovered: Mutex<Option<Discovered>>,
    schedule: Mutex<Schedule>,
    /// Taken over from the previous poller by a reload: resume, don't start over.
    resumed: Option<Schedule>,
}

pub struct Poller {
    plan: Arc<Plan>,
    store: Arc<Store>,
    targets: Vec<TargetRun>,
    /// Serialises rebuilding the image set (discoveries of several targets may end at once).
    rebuild_lock: Mutex<()>,
    /// Serialises checking `max_members_total` with storing a poll's result.
    commit_lock: Arc<Mutex<()>>,
}

pub fn image_key(target: &Target, image: &ImageId) -> ImageKey {
    ImageKey {
        region: target.region.as_str().into(),
        project_id: target.project_id().as_str().into(),
        image_id: image.as_str().into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Poller {
    /// Registers the config's targets and images with the store (keeping the state of
    /// those already there) and prepares the jobs. On a reload, `previous` is the
    /// poller being replaced: targets that stay take over what it discovered (before
    /// the store's image set is rebuilt, so discovered images keep their state) and
    /// its schedules.
    /// At start, `restored` is what the state file says each target last discovered.
    pub fn new(
        plan: Arc<Plan>,
        store: Arc<Store>,
        previous: Option<&Poller>,
        restored: &[StoredDiscovery],
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
            .map(|(live, slot)| {
                let t = &live.config;
                let old = previous.and_then(|p| {
                    p.targets.iter().find(|o| {
                        o.target.config.region == t.region
                            && o.target.config.project_id() == t.project_id()
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
                    (None, Some(_)) => restored
                        .iter()
                        .find(|r| r.region == t.region && r.project_id == t.project_id().as_str())
                        .map(|r| {
                            r.images
                                .iter()
                                .filter_map(|(id, name)| {
                                    Some((ImageId::parse(id).ok()?, name.clone()))
                                })
                                .collect()
                        }),
                    _ => None,
                };
                // A changed filter is applied at once (and so is a first discovery).
                let resumed = resumed.map(|mut s| {
                    if !same_filter || discovered.is_none() {
                        s.last_discovery = None;
                    }
                    s
                });
                TargetRun {
                    target: live.clone(),
                    slot,
                    jobs: ArcSwap::from_pointee(Vec::new()),
                    discovered: Mutex::new(discovered),
                    schedule: Mutex::new(resumed.unwrap_or_default()),
                    resumed,
                }
            })
            .collect();
        let poller = Poller {
            plan,
            store,
            targets,
            rebuild_lock: Mutex::new(()),
            commit_lock: Arc::new(Mutex::new(())),
        };
        poller.rebuild();
        poller
    }

    /// The images to monitor: configured ones (which win) plus discovered ones.
    fn rebuild(&self) {
        let _guard = lock(&self.rebuild_lock);
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
            jobs[ti].push(Arc::new(ImageJob {
                target,
                image,
                allowlist,
                slot,
            }));
        }
        for (run, jobs) in self.targets.iter().zip(jobs) {
            run.jobs.store(Arc::new(jobs));
        }
    }

    /// Lists the target's images. A failed discovery keeps the previous image set.
    /// Returns true on success (and for a target without `discover:`).
    async fn discover(&self, run: &TargetRun) -> bool {
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
                return false;
            }
        };
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
        // What this shard polls, so that the shards' counts add up to the whole.
        let shard = self.plan.config.shard;
        let count = found
            .iter()
            .filter(|(id, _)| shard.owns(target.project_id().as_str(), id.as_str()))
            .count();
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
        let changed = {
            let mut discovered = lock(&run.discovered);
            let changed = discovered.as_ref() != Some(&found);
            if changed {
                *discovered = Some(found);
            }
            changed
        };
        if changed {
            tracing::info!(region = %target.region, project_id = %target.project_id(), images = count, "discovered images");
            self.rebuild();
        }
        true
    }

    /// Polls every image of one target once (or, with `only_new`, those never polled:
    /// what a reload added). Returns true when every image succeeded.
    async fn cycle(&self, run: &TargetRun, jitter: bool, only_new: bool) -> bool {
        let max_jitter = (self.plan.config.poll_interval / 10).min(MAX_JITTER);
        if jitter && !max_jitter.is_zero() {
            // The thread-local RNG must not live across an await (it is not Send).
            let delay = rand::rng().random_range(Duration::ZERO..max_jitter);
            tokio::time::sleep(delay).await;
        }
        let started = Instant::now();
        let jobs = run.jobs.load_full();
        let mut set = JoinSet::new();
        let mut polled = 0;
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
            set.spawn(async move { poll_image(&client, &job, page_size, &limits).await });
        }
        let mut all_ok = true;
        while let Some(result) = set.join_next().await {
            match result {
                Ok(ok) => all_ok &= ok,
                Err(e) => {
                    tracing::error!(error = %e, "poll task failed");
                    all_ok = false;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if !only_new {
            self.store.cycle_finished(&run.slot, secs);
        }
        tracing::debug!(
            region = %run.target.config.region, project_id = %run.target.config.project_id(),
            images = polled, seconds = secs, all_ok, only_new, "poll cycle finished"
        );
        all_ok
    }

    fn limits(&self) -> Limits {
        Limits {
            store: self.store.clone(),
            per_image: self.plan.config.max_members_per_image,
            total: self.plan.config.max_members_total,
            commit: self.commit_lock.clone(),
        }
    }

    /// Discovery, then one poll of everything, every target at once: for `--once`.
    pub async fn once(&self) -> bool {
        let mut ok = true;
        for run in &self.targets {
            ok &= self.discover(run).await;
        }
        let cycles = self.targets.iter().map(|run| self.cycle(run, false, false));
        for done in join_all(cycles).await {
            ok &= done;
        }
        ok
    }

    /// Runs every target's schedules until `shutdown` fires. Targets run apart, so a
    /// slow or hung endpoint delays only its own target. Each target discovers first,
    /// so its first poll cycle (and readiness) covers discovered images.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        join_all(
            self.targets
                .iter()
                .map(|run| self.run_target(run, shutdown.clone())),
        )
        .await;
    }

    async fn run_target(&self, run: &TargetRun, mut shutdown: watch::Receiver<bool>) {
        let now = tokio::time::Instant::now();
        let config = &self.plan.config;
        let (poll, discovery) = (config.poll_interval, config.discovery_interval);
        let resumed = run.resumed.unwrap_or_default();
        let has_discovery = run.target.config.discover.is_some();
        if has_discovery && resumed.last_discovery.is_none() {
            tokio::select! {
                _ = self.discover(run) => {}
                _ = shutdown.changed() => return,
            }
            lock(&run.schedule).last_discovery = Some(now);
        }
        // After a reload: what it added now, the rest when it is due.
        let first_poll = match resumed.last_poll {
            Some(last) => {
                tokio::select! {
                    _ = self.cycle(run, false, true) => {}
                    _ = shutdown.changed() => return,
                }
                (last + poll).max(now)
            }
            None => now,
        };
        let first_discovery = resumed
            .last_discovery
            .map(|last| (last + discovery).max(now))
            .unwrap_or(now + discovery);
        let polls = repeat(first_poll, poll, shutdown.clone(), || {
            lock(&run.schedule).last_poll = Some(tokio::time::Instant::now());
            self.cycle(run, true, false)
        });
        if has_discovery {
            let discoveries = repeat(first_discovery, discovery, shutdown, || {
                lock(&run.schedule).last_discovery = Some(tokio::time::Instant::now());
                self.discover(run)
            });
            tokio::join!(polls, discoveries);
        } else {
            polls.await;
        }
    }
}

/// Runs `work` at `start` and then every `every`, one run at a time (a run that outlives
/// the interval delays the next instead of overlapping it), until `shutdown` fires.
async fn repeat<F, Fut>(
    start: tokio::time::Instant,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    let mut ticker = tokio::time::interval_at(start, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = work() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Fetches what the image's config asks for: the member list, each watched member.
/// All or nothing: the first error fails the whole poll of the image.
/// The member caps (`max_members_per_image`, `max_members_total`) and what they are
/// checked against.
struct Limits {
    store: Arc<Store>,
    per_image: usize,
    total: usize,
    commit: Arc<Mutex<()>>,
}

impl Limits {
    /// The most members this image may have now: its own cap, or what the fleet-wide
    /// cap leaves beside the other images' members.
    fn cap(&self, held_by_image: usize) -> MemberCap {
        let others = self.store.members_held().saturating_sub(held_by_image);
        let room = self.total.saturating_sub(others);
        if room < self.per_image {
            MemberCap {
                limit: room,
                setting: "max_members_total",
            }
        } else {
            MemberCap {
                limit: self.per_image,
                setting: "max_members_per_image",
            }
        }
    }
}

async fn fetch(
    client: &ImsClient,
    job: &ImageJob,
    page_size: u32,
    cap: MemberCap,
) -> Result<(MemberSet, BTreeMap<String, bool>), ApiError> {
    let (api, image) = (&job.target.api, &job.image);
    let mut bad_timestamps = 0;
    let listed = if image.list_members {
        let mut record = |m: &MemberRef<'_>| {
            let (record, bad) = MemberRecord::from_ref(m);
            bad_timestamps += bad;
            record
        };
        Some(
            client
                .list_members(api, &image.id, page_size, cap, &mut record)
                .await?,
        )
    } else {
        None
    };
    let mut watched = BTreeMap::new();
    let mut found: Vec<Member> = Vec::new();
    for member_id in &image.watch_members {
        let member = client.get_member(api, &image.id, member_id).await?;
        watched.insert(member_id.to_string(), member.is_some());
        found.extend(member);
    }
    Ok(match listed {
        Some(records) => (MemberSet::from_records(records, bad_timestamps), watched),
        None => (
            MemberSet {
                complete: false,
                ..MemberSet::from_api(found)
            },
            watched,
        ),
    })
}

async fn poll_image(client: &ImsClient, job: &ImageJob, page_size: u32, limits: &Limits) -> bool {
    let (target, image) = (&job.target.config, &job.image);
    let started = Instant::now();
    let entries = job.allowlist.current().await;
    let held = job.slot.load().member_count();
    let result = fetch(client, job, page_size, limits.cap(held)).await;
    let previous = job.slot.load();
    match result {
        Ok((set, watched)) => {
            let set = set.evaluate(&entries);
            if set.duplicates > 0 {
                tracing::warn!(
                    region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                    count = set.duplicates,
                    "member IDs listed more than once; the copy listed last is kept"
                );
            }
            if set.bad_timestamps > 0 {
                tracing::warn!(
                    region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                    count = set.bad_timestamps,
                    "unparseable member timestamps; those members are exported without them"
                );
            }
            for (member_id, present) in &watched {
                if !present && previous.watched.get(member_id) != Some(&false) {
                    tracing::warn!(
                        region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                        member_id = %member_id, "watched member is not shared with the image"
                    );
                }
            }
            // Polls of several images end at once: the fleet-wide cap is checked
            // again as the result is stored, one image at a time.
            let _commit = lock(&limits.commit);
            let others = limits
                .store
                .members_held()
                .saturating_sub(previous.member_count());
            if others + set.members.len() > limits.total {
                let e = ApiError::TooManyMembers {
                    operation: crate::ims::client::OP_LIST_MEMBERS,
                    limit: limits.total.saturating_sub(others),
                    setting: "max_members_total",
                    request_id: None,
                };
                tracing::warn!(
                    region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                    reason = %e.reason(), error = %e,
                    "poll failed; serving the last good member list"
                );
                job.slot.store(previous.failed(e.reason(), &entries));
                return false;
            }
            let name = previous.meta.name.clone();
            let now = now_unix();
            let mut next = previous.succeeded(set, watched, now);
            let new_set = next.members.clone().unwrap_or_default();
            match &previous.members {
                None => audit::log_baseline(&next.key, &name, &new_set),
                Some(old) => {
                    let changes = audit::diff(old, &new_set);
                    audit::log(&next.key, &name, &changes);
                    for c in &changes {
                        *next.changes.entry(c.kind()).or_insert(0) += 1;
                    }
                    limits
                        .store
                        .record_changes(audit::events(&next.key, &name, &changes, now));
                }
            }
            tracing::debug!(
                region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                members = new_set.members.len(), seconds = started.elapsed().as_secs_f64(),
                "image polled"
            );
            job.slot.store(next);
            true
        }
        Err(e) => {
            tracing::warn!(
                region = %target.region, project_id = %target.project_id(), image_id = %image.id,
                reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
                "poll failed; serving the last good member list"
            );
            job.slot.store(previous.failed(e.reason(), &entries));
            false
        }
    }
}
