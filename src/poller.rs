//! The schedules: every `poll_interval`, fetch the members of every monitored image;
//! every `discovery_interval`, list the targets' own images to find what to monitor.
//!
//! Concurrency is bounded by the client's request limiter, not here. A cycle runs to
//! completion before the next starts, so polls never overlap. An image's state is
//! replaced only when all its calls succeeded; a failure keeps the last good list.
//! The allowlist is applied at poll time (files re-read), and the change audit
//! compares each good list with the previous one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::audit;
use crate::config::{Config, ImageConfig, Target};
use crate::ids::ImageId;
use crate::ims::{ApiError, ImsClient, Member};
use crate::snapshot::{now_unix, DiscoveryStatus, ImageKey, ImageMeta, MemberSet, Slot, Store};

/// Longest random delay before a target's polls in a cycle, so that many targets do
/// not hit the API in the same instant. A tenth of the interval, at most this.
const MAX_JITTER: Duration = Duration::from_secs(5);

struct ImageJob {
    /// Index of the target in the config: jobs of one target share a jitter delay.
    target_index: usize,
    target: Arc<Target>,
    image: ImageConfig,
    slot: Arc<Slot>,
}

/// What the last good discovery of a target found: (ID, name), after filters.
type Discovered = Vec<(ImageId, String)>;

pub struct Poller {
    config: Arc<Config>,
    targets: Vec<Arc<Target>>,
    client: ImsClient,
    store: Arc<Store>,
    jobs: ArcSwap<Vec<Arc<ImageJob>>>,
    /// Per target: `None` until a discovery succeeded (or without `discover:`).
    discovered: Mutex<Vec<Option<Discovered>>>,
    discovery_status: Mutex<Vec<Option<DiscoveryStatus>>>,
}

pub fn image_key(target: &Target, image: &ImageId) -> ImageKey {
    ImageKey {
        region: target.region.as_str().into(),
        project_id: target.project_id.as_str().into(),
        image_id: image.as_str().into(),
    }
}

impl Poller {
    /// Registers the config's images with the store (keeping the state of images that
    /// were already there) and prepares the jobs.
    pub fn new(config: Arc<Config>, client: ImsClient, store: Arc<Store>) -> Self {
        let targets: Vec<Arc<Target>> = config.targets.iter().cloned().map(Arc::new).collect();
        let n = targets.len();
        let poller = Poller {
            config,
            targets,
            client,
            store,
            jobs: ArcSwap::from_pointee(Vec::new()),
            discovered: Mutex::new(vec![None; n]),
            discovery_status: Mutex::new(vec![None; n]),
        };
        poller.rebuild();
        poller
    }

    /// The images to monitor: configured ones (which win) plus discovered ones.
    fn rebuild(&self) {
        let discovered = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut planned: Vec<(usize, Arc<Target>, ImageConfig)> = Vec::new();
        for (ti, target) in self.targets.iter().enumerate() {
            let found: HashMap<&ImageId, &String> = discovered[ti]
                .as_ref()
                .map(|d| d.iter().map(|(id, name)| (id, name)).collect())
                .unwrap_or_default();
            let configured: HashSet<&ImageId> = target.images.iter().map(|i| &i.id).collect();
            for image in &target.images {
                let mut image = image.clone();
                if image.name.is_none() {
                    image.name = found.get(&image.id).map(|n| n.to_string());
                }
                planned.push((ti, target.clone(), image));
            }
            if let Some(d) = &discovered[ti] {
                for (id, name) in d.iter().filter(|(id, _)| !configured.contains(id)) {
                    planned.push((
                        ti,
                        target.clone(),
                        ImageConfig::discovered(target, id.clone(), name.clone()),
                    ));
                }
            }
        }
        let keys: Vec<(ImageKey, ImageMeta)> = planned
            .iter()
            .map(|(_, t, i)| {
                let meta = ImageMeta {
                    name: i.name.as_deref().unwrap_or("").into(),
                    source: i.source,
                };
                (image_key(t, &i.id), meta)
            })
            .collect();
        let slots = self.store.set_images(&keys);
        let jobs = planned
            .into_iter()
            .zip(slots)
            .map(|((target_index, target, image), slot)| {
                Arc::new(ImageJob {
                    target_index,
                    target,
                    image,
                    slot,
                })
            })
            .collect();
        self.jobs.store(Arc::new(jobs));
    }

    /// Lists the images of every target with `discover:`. A failed discovery keeps the
    /// target's previous image set. Returns true when every discovery succeeded.
    pub async fn discover(&self) -> bool {
        let mut all_ok = true;
        let mut changed = false;
        for (ti, target) in self.targets.iter().enumerate() {
            let Some(filter) = &target.discover else {
                continue;
            };
            let result = self.client.list_images(target, filter).await;
            let previous = self
                .discovery_status
                .lock()
                .unwrap_or_else(|e| e.into_inner())[ti]
                .clone();
            let mut status = DiscoveryStatus {
                region: target.region.as_str().into(),
                project_id: target.project_id.as_str().into(),
                ok: false,
                images: previous.as_ref().map(|p| p.images).unwrap_or(0),
                last_success_unix: previous.and_then(|p| p.last_success_unix),
            };
            match result {
                Ok(images) => {
                    let mut found: Discovered = Vec::new();
                    for image in images {
                        let name = image.name.unwrap_or_default();
                        let Ok(id) = ImageId::parse(&image.id) else {
                            tracing::warn!(region = %target.region, project_id = %target.project_id, image_id = %image.id, "discovery returned an image ID that is not a UUID; skipped");
                            continue;
                        };
                        if filter.exclude_ids.contains(&id)
                            || filter
                                .name_regex
                                .as_ref()
                                .is_some_and(|r| !r.is_match(&name))
                        {
                            continue;
                        }
                        found.push((id, name));
                    }
                    found.sort();
                    found.dedup_by(|a, b| a.0 == b.0);
                    status = DiscoveryStatus {
                        ok: true,
                        images: found.len(),
                        last_success_unix: Some(now_unix()),
                        ..status
                    };
                    let mut discovered = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
                    if discovered[ti].as_ref() != Some(&found) {
                        tracing::info!(region = %target.region, project_id = %target.project_id, images = found.len(), "discovered images");
                        discovered[ti] = Some(found);
                        changed = true;
                    }
                }
                Err(e) => {
                    all_ok = false;
                    tracing::warn!(
                        region = %target.region, project_id = %target.project_id,
                        reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
                        "discovery failed; keeping the previous image set"
                    );
                }
            }
            self.discovery_status
                .lock()
                .unwrap_or_else(|e| e.into_inner())[ti] = Some(status);
        }
        let statuses = self
            .discovery_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flatten()
            .cloned()
            .collect();
        self.store.set_discovery(statuses);
        if changed {
            self.rebuild();
        }
        all_ok
    }

    /// Polls every image once. Returns true when every image succeeded.
    pub async fn cycle(&self, jitter: bool) -> bool {
        let started = Instant::now();
        let jobs = self.jobs.load_full();
        let max_jitter = (self.config.poll_interval / 10).min(MAX_JITTER);
        let mut delays = HashMap::new();
        let mut set = JoinSet::new();
        for job in jobs.iter() {
            let delay = if jitter && !max_jitter.is_zero() {
                *delays
                    .entry(job.target_index)
                    .or_insert_with(|| rand::rng().random_range(Duration::ZERO..max_jitter))
            } else {
                Duration::ZERO
            };
            let (job, client, page_size) =
                (job.clone(), self.client.clone(), self.config.page_size);
            set.spawn(async move {
                tokio::time::sleep(delay).await;
                poll_image(&client, &job, page_size).await
            });
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
        self.store.cycle_finished(secs);
        tracing::debug!(
            images = jobs.len(),
            seconds = secs,
            all_ok,
            "poll cycle finished"
        );
        all_ok
    }

    fn has_discovery(&self) -> bool {
        self.targets.iter().any(|t| t.discover.is_some())
    }

    /// Discovery (if configured), then one poll of everything: for `--once`.
    pub async fn once(&self) -> bool {
        let discovered = !self.has_discovery() || self.discover().await;
        self.cycle(false).await && discovered
    }

    /// Runs both schedules until `shutdown` fires. Discovery runs first so that the
    /// first poll cycle (and readiness) covers discovered images.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        if self.has_discovery() {
            tokio::select! {
                _ = self.discover() => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::join!(
            self.poll_loop(shutdown.clone()),
            self.discovery_loop(shutdown)
        );
    }

    async fn poll_loop(&self, shutdown: watch::Receiver<bool>) {
        let every = self.config.poll_interval;
        repeat(tokio::time::Instant::now(), every, shutdown, || {
            self.cycle(true)
        })
        .await;
    }

    async fn discovery_loop(&self, shutdown: watch::Receiver<bool>) {
        if self.has_discovery() {
            let every = self.config.discovery_interval;
            repeat(tokio::time::Instant::now() + every, every, shutdown, || {
                self.discover()
            })
            .await;
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
async fn fetch(
    client: &ImsClient,
    job: &ImageJob,
    page_size: u32,
) -> Result<(MemberSet, BTreeMap<String, bool>), ApiError> {
    let (target, image) = (&job.target, &job.image);
    let listed = if image.list_members {
        Some(client.list_members(target, &image.id, page_size).await?)
    } else {
        None
    };
    let mut watched = BTreeMap::new();
    let mut found: Vec<Member> = Vec::new();
    for member_id in &image.watch_members {
        let member = client.get_member(target, &image.id, member_id).await?;
        watched.insert(member_id.to_string(), member.is_some());
        found.extend(member);
    }
    Ok(match listed {
        Some(members) => (MemberSet::from_api(members), watched),
        None => (
            MemberSet {
                complete: false,
                ..MemberSet::from_api(found)
            },
            watched,
        ),
    })
}

async fn poll_image(client: &ImsClient, job: &ImageJob, page_size: u32) -> bool {
    let (target, image) = (&job.target, &job.image);
    let started = Instant::now();
    let entries = image.allowlist.current();
    let result = fetch(client, job, page_size).await;
    let previous = job.slot.load();
    match result {
        Ok((set, watched)) => {
            let set = set.evaluate(&entries);
            if set.bad_timestamps > 0 {
                tracing::warn!(
                    region = %target.region, project_id = %target.project_id, image_id = %image.id,
                    count = set.bad_timestamps,
                    "unparseable member timestamps; those members are exported without them"
                );
            }
            for (member_id, present) in &watched {
                if !present && previous.watched.get(member_id) != Some(&false) {
                    tracing::warn!(
                        region = %target.region, project_id = %target.project_id, image_id = %image.id,
                        member_id = %member_id, "watched member is not shared with the image"
                    );
                }
            }
            let name = previous.meta.name.clone();
            let mut next = previous.succeeded(set, watched, now_unix());
            let new_set = next.members.clone().unwrap_or_default();
            match &previous.members {
                None => audit::log_baseline(&next.key, &name, &new_set),
                Some(old) => {
                    let changes = audit::diff(old, &new_set);
                    audit::log(&next.key, &name, &changes);
                    for c in &changes {
                        *next.changes.entry(c.kind()).or_insert(0) += 1;
                    }
                }
            }
            tracing::debug!(
                region = %target.region, project_id = %target.project_id, image_id = %image.id,
                members = new_set.members.len(), seconds = started.elapsed().as_secs_f64(),
                "image polled"
            );
            job.slot.store(next);
            true
        }
        Err(e) => {
            tracing::warn!(
                region = %target.region, project_id = %target.project_id, image_id = %image.id,
                reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
                "poll failed; serving the last good member list"
            );
            job.slot.store(previous.failed(e.reason(), &entries));
            false
        }
    }
}
