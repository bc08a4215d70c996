//! The schedules of one poller: every `poll_interval`, a poll cycle of each target;
//! every `discovery_interval`, a discovery; every `events.cts.interval`, a read of the
//! target's trace list; beside them, the event polls and the pushed traces
//! ([`super::events`]). A reload resumes them where they were.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::event_polls::Inbox;
use super::poller::{lock, Poller, TargetRun};

impl Poller {
    /// Runs every target's schedules until `shutdown` fires. Targets run apart, so a
    /// slow or hung endpoint delays only its own target. Each target discovers first,
    /// so its first poll cycle (and readiness) covers discovered images.
    /// Pushed traces arrive at `inbox`.
    pub async fn run(&self, shutdown: watch::Receiver<bool>, inbox: Option<Inbox>) {
        let targets = join_all(
            self.targets
                .iter()
                .map(|run| self.run_target(run, shutdown.clone())),
        );
        tokio::join!(
            targets,
            self.dispatch_event_polls(shutdown.clone()),
            self.receive_pushed(inbox, shutdown.clone()),
        );
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
        let discoveries = async {
            if has_discovery {
                repeat(first_discovery, discovery, shutdown.clone(), || {
                    lock(&run.schedule).last_discovery = Some(tokio::time::Instant::now());
                    self.discover(run)
                })
                .await
            }
        };
        let incoming = async {
            let every = config.incoming_interval;
            if let (Some(every), Some(_)) = (every, &run.target.config.incoming) {
                repeat(now, every, shutdown.clone(), || self.list_incoming(run)).await
            }
        };
        let reads = async {
            let every = config.events.cts.map(|c| c.interval);
            if let (Some(every), Some(_)) = (every, &run.target.config.cts_endpoint) {
                repeat(now, every, shutdown.clone(), || self.read_traces(run)).await
            }
        };
        tokio::join!(polls, discoveries, reads, incoming);
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
