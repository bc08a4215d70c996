//! The poll schedule: every `poll_interval`, list the members of every monitored
//! image and publish each image's new state to the store.
//!
//! Concurrency is bounded by the client's request limiter, not here. A cycle runs to
//! completion before the next starts, so polls never overlap. An image's state is
//! replaced only when all its pages succeeded; a failure keeps the last good list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::config::{Config, ImageConfig, Target};
use crate::ims::ImsClient;
use crate::snapshot::{now_unix, ImageKey, MemberSet, Slot, Store};

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

pub struct Poller {
    config: Arc<Config>,
    client: ImsClient,
    store: Arc<Store>,
    jobs: Vec<Arc<ImageJob>>,
}

pub fn image_key(target: &Target, image: &ImageConfig) -> ImageKey {
    ImageKey {
        region: target.region.as_str().into(),
        project_id: target.project_id.as_str().into(),
        image_id: image.id.as_str().into(),
    }
}

impl Poller {
    /// Registers the config's images with the store (keeping the state of images that
    /// were already there) and prepares the jobs.
    pub fn new(config: Arc<Config>, client: ImsClient, store: Arc<Store>) -> Self {
        let mut keys = Vec::with_capacity(config.image_count());
        let mut planned = Vec::with_capacity(config.image_count());
        for (target_index, target) in config.targets.iter().enumerate() {
            let target = Arc::new(target.clone());
            for image in &target.images {
                keys.push(image_key(&target, image));
                planned.push((target_index, target.clone(), image.clone()));
            }
        }
        let slots = store.set_images(&keys);
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
        Poller {
            config,
            client,
            store,
            jobs,
        }
    }

    /// Polls every image once. Returns true when every image succeeded.
    pub async fn cycle(&self, jitter: bool) -> bool {
        let started = Instant::now();
        let max_jitter = (self.config.poll_interval / 10).min(MAX_JITTER);
        let mut delays = std::collections::HashMap::new();
        let mut set = JoinSet::new();
        for job in &self.jobs {
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
            images = self.jobs.len(),
            seconds = secs,
            all_ok,
            "poll cycle finished"
        );
        all_ok
    }

    /// Polls every `poll_interval` until `shutdown` fires; the first cycle starts now.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = self.cycle(true) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn poll_image(client: &ImsClient, job: &ImageJob, page_size: u32) -> bool {
    let (target, image) = (&job.target, &job.image);
    let started = Instant::now();
    match client.list_members(target, &image.id, page_size).await {
        Ok(members) => {
            let set = MemberSet::from_api(members);
            if set.bad_timestamps > 0 {
                tracing::warn!(
                    region = %target.region, project_id = %target.project_id, image_id = %image.id,
                    count = set.bad_timestamps,
                    "unparseable member timestamps; those members are exported without them"
                );
            }
            tracing::debug!(
                region = %target.region, project_id = %target.project_id, image_id = %image.id,
                members = set.members.len(), seconds = started.elapsed().as_secs_f64(),
                "image polled"
            );
            job.slot.store(job.slot.load().succeeded(set, now_unix()));
            true
        }
        Err(e) => {
            tracing::warn!(
                region = %target.region, project_id = %target.project_id, image_id = %image.id,
                reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
                "poll failed; serving the last good member list"
            );
            job.slot.store(job.slot.load().failed(e.reason()));
            false
        }
    }
}
