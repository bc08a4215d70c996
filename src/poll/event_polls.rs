//! Event-driven polls (share-change events, docs/events.md): each target's
//! Cloud Trace Service trace list read every `events.cts.interval`
//! ([`Poller::read_traces`]) and traces pushed to the webhook
//! ([`Poller::receive_pushed`]) both go through [`Poller::act`]: member traces only,
//! each once per target, one queued poll per image (the leaves in [`super::events`]).
//! The polls run through the normal poll path (caps, rate limit, integrity rules,
//! audit, state write) and the changes they find say who made them; nothing here
//! writes the snapshot itself.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::events::gate::Cause;
use super::events::names::{is_member_trace, name_label, named, Named};
use super::events::window::Window;
use super::image_poll::{poll_image, ImageJob};
use super::poller::{lock, EventPoll, Poller, TargetRun};
use crate::ids::ImageId;
use crate::ims::traces::{PushedTraces, Trace};
use crate::state::CtsStatus;
use crate::timestamp::now_unix;

/// Where pushed traces arrive; held by the running poller, handed over on reload.
pub type Inbox = Arc<tokio::sync::Mutex<mpsc::Receiver<PushedTraces>>>;

fn now_ms() -> i64 {
    (now_unix() * 1000.0) as i64
}

/// Seconds from a trace's operation time to `now_ms`; a time from the API or a push
/// may be anything, so the difference saturates instead of overflowing.
fn lag_seconds(now_ms: i64, time_ms: i64) -> f64 {
    now_ms.saturating_sub(time_ms) as f64 / 1000.0
}

/// The member traces of `traces` this target has not seen (remembered now, by their
/// operation time, else `default_ms`), read or pushed alike.
fn new_member_traces(window: &mut Window, traces: &[Trace], default_ms: i64) -> Vec<Trace> {
    traces
        .iter()
        .filter(|t| {
            is_member_trace(t) && window.first_time(&t.trace_id, t.time.unwrap_or(default_ms))
        })
        .cloned()
        .collect()
}

/// Counts member traces by name (`ims_cts_traces_total`).
fn count(status: &mut CtsStatus, names: &[String]) {
    for name in names {
        *status.traces.entry(name.clone()).or_insert(0) += 1;
    }
}

fn cts_status(s: &mut crate::state::TargetStatus) -> &mut CtsStatus {
    s.cts.get_or_insert_with(CtsStatus::default)
}

impl Poller {
    /// Reads the target's trace list once and acts on the new member traces. A failed
    /// read leaves the window where it was: the next good read covers the gap.
    pub(super) async fn read_traces(&self, run: &TargetRun) -> bool {
        let (Some(endpoint), Some(cts)) =
            (&run.target.config.cts_endpoint, self.plan.config.events.cts)
        else {
            return true;
        };
        let lookback = cts.lookback.as_millis() as i64;
        let range = lock(&run.traces).range(now_ms(), lookback);
        let target = &run.target.config;
        let listed = self
            .plan
            .client
            .list_traces(&run.target.api, endpoint, range.from_ms, range.to_ms)
            .await;
        let traces = match listed {
            Ok(traces) => traces,
            Err(e) => {
                tracing::warn!(
                    region = %target.region, project_id = %target.project_id(),
                    reason = %e.reason(), request_id = e.request_id().unwrap_or("-"), error = %e,
                    "trace read failed; the next good read covers the gap (polls go on as scheduled)"
                );
                run.slot.update(|s| cts_status(s).ok = Some(false));
                return false;
            }
        };
        let fresh = {
            let mut window = lock(&run.traces);
            let fresh = new_member_traces(&mut window, &traces, range.to_ms);
            window.advance(range.to_ms, lookback);
            let stored = Arc::new(window.stored());
            let names: Vec<String> = fresh.iter().map(name_label).collect();
            run.slot.update(|s| {
                let c = cts_status(s);
                c.ok = Some(true);
                c.last_success_unix = Some(now_unix());
                c.window = Some(stored.clone());
                count(c, &names);
            });
            fresh
        };
        if range.beyond_retention {
            tracing::warn!(
                region = %target.region, project_id = %target.project_id(),
                "the last good trace read is older than the trace list keeps; polling every image of the target once"
            );
        }
        self.act(run, &fresh, range.beyond_retention).await;
        true
    }

    /// Pushed traces, from the webhook, until `shutdown`: each goes to the targets of
    /// its region (every target when the push does not say), deduplicated with the
    /// pulled ones.
    pub(super) async fn receive_pushed(
        &self,
        inbox: Option<Inbox>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(inbox) = inbox else {
            return;
        };
        let mut rx = tokio::select! {
            rx = inbox.lock() => rx,
            _ = shutdown.changed() => return,
        };
        loop {
            let pushed = tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
                _ = shutdown.changed() => return,
            };
            tokio::select! {
                _ = self.pushed(pushed) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn pushed(&self, pushed: PushedTraces) {
        let now = now_ms();
        for run in &self.targets {
            let target = &run.target.config;
            if pushed.region.as_ref().is_some_and(|r| *r != target.region) {
                continue;
            }
            let fresh = {
                let mut window = lock(&run.traces);
                if target.cts_endpoint.is_none() {
                    window.forget_pushed_before(now);
                }
                new_member_traces(&mut window, &pushed.traces, now)
            };
            if fresh.is_empty() {
                continue;
            }
            let names: Vec<String> = fresh.iter().map(name_label).collect();
            run.slot.update(|s| count(cts_status(s), &names));
            self.act(run, &fresh, false).await;
        }
    }

    /// Polls what `traces` name: the images of the target they name; every image of
    /// the target for a trace that names none (or with `everything`); an early
    /// discovery for a trace naming only images the target does not monitor, on a
    /// target with `discover:` (the image may be new), then those images if found.
    pub(super) async fn act(&self, run: &TargetRun, traces: &[Trace], everything: bool) {
        let jobs = run.jobs.load_full();
        let index: HashMap<&ImageId, &Arc<ImageJob>> =
            jobs.iter().map(|j| (&j.image.id, j)).collect();
        let target = &run.target.config;
        let shard = self.plan.config.shard;
        let mut all = everything;
        let mut all_cause: Option<Cause> = None;
        let mut targeted: Vec<(Arc<ImageJob>, Cause)> = Vec::new();
        let mut unknown: Vec<(ImageId, Cause)> = Vec::new();
        for t in traces {
            let cause = Cause::of(t);
            match named(t, |id| index.contains_key(id)) {
                Named::Monitored(ids) => targeted.extend(
                    ids.iter()
                        .filter_map(|id| index.get(id))
                        .map(|j| ((*j).clone(), cause.clone())),
                ),
                Named::Unmonitored(ids) => {
                    let owned = ids
                        .into_iter()
                        .filter(|id| shard.owns(target.project_id().as_str(), id.as_str()));
                    if target.discover.is_some() {
                        unknown.extend(owned.map(|id| (id, cause.clone())));
                    }
                }
                Named::Nothing => {
                    all = true;
                    all_cause = Cause::newer(all_cause, &cause);
                }
            }
        }
        for (job, cause) in &targeted {
            self.trigger(run, job, Some(cause));
        }
        if all {
            for job in jobs.iter() {
                self.trigger(run, job, all_cause.as_ref());
            }
        }
        if !unknown.is_empty() && self.discover(run).await {
            let jobs = run.jobs.load_full();
            for (id, cause) in &unknown {
                if let Some(job) = jobs.iter().find(|j| &j.image.id == id) {
                    self.trigger(run, job, Some(cause));
                }
            }
        }
    }

    /// Queues an event poll of `job` (joining one already queued).
    fn trigger(&self, run: &TargetRun, job: &Arc<ImageJob>, cause: Option<&Cause>) {
        if job.gate.request(cause) {
            let poll = EventPoll {
                job: job.clone(),
                slot: run.slot.clone(),
            };
            // The dispatcher is gone only at shutdown: nothing left to poll for.
            let _ = self.event_tx.send(poll);
        }
    }

    /// Runs the queued event polls until `shutdown` (which abandons those running).
    pub(super) async fn dispatch_event_polls(&self, mut shutdown: watch::Receiver<bool>) {
        let Some(mut rx) = lock(&self.event_rx).take() else {
            return;
        };
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                poll = rx.recv() => match poll {
                    Some(poll) => {
                        running.spawn(self.event_poll(poll));
                    }
                    None => return,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One event poll: after any poll of the image running, with the queued traces'
    /// attribution; counted, and its lag from each trace observed.
    fn event_poll(
        &self,
        poll: EventPoll,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (client, page_size, limits, store) = (
            self.plan.client.clone(),
            self.plan.config.page_size,
            self.limits(),
            self.store.clone(),
        );
        async move {
            let EventPoll { job, slot } = poll;
            let _running = job.gate.enter().await;
            let Some(queued) = job.gate.take() else {
                return;
            };
            poll_image(&client, &job, page_size, &limits, queued.by()).await;
            let now = now_ms();
            for t in &queued.trace_times_ms {
                store.events().event_to_poll(lag_seconds(now, *t));
            }
            slot.update(|s| cts_status(s).event_polls += 1);
            store.events_polled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lag_seconds;

    #[test]
    fn any_trace_time_gives_a_lag_without_overflow() {
        assert_eq!(lag_seconds(5_000, 3_000), 2.0);
        assert!(lag_seconds(0, i64::MIN) > 0.0);
        assert!(lag_seconds(i64::MIN, i64::MAX) < 0.0);
    }
}
