//! One image's polls, one at a time: scheduled and event-triggered polls take the
//! image's gate, and event triggers that arrive while a poll is queued join it. Many
//! traces for one image → one poll; a poll already running → one more right after,
//! never two at once.

use std::sync::{Arc, Mutex};

use crate::ims::traces::Trace;
use crate::state::Attribution;

/// Trace times kept for the lag histogram per queued poll at most.
const MAX_TRACE_TIMES: usize = 64;

/// Why an event poll was asked for: the trace (who, from where, when).
#[derive(Debug, Clone)]
pub struct Cause {
    pub by: Arc<Attribution>,
    /// The traced operation's time, Unix ms.
    pub time_ms: Option<i64>,
}

impl Cause {
    pub fn of(t: &Trace) -> Cause {
        Cause {
            by: Arc::new(Attribution {
                trace_id: t.trace_id.clone(),
                actor: t.actor().map(str::to_string),
                source_ip: t.source_ip.clone().filter(|s| !s.is_empty()),
            }),
            time_ms: t.time,
        }
    }

    /// The newer of two causes (by operation time): whose change a poll most likely sees.
    pub fn newer(a: Option<Cause>, b: &Cause) -> Option<Cause> {
        match a {
            Some(a) if a.time_ms >= b.time_ms => Some(a),
            _ => Some(b.clone()),
        }
    }
}

/// A queued event poll: the newest trace asking for it, and every trace's time.
#[derive(Debug, Default)]
pub struct Queued {
    cause: Option<Cause>,
    pub trace_times_ms: Vec<i64>,
}

impl Queued {
    /// Who the poll's changes are attributed to: the newest trace that asked for it.
    pub fn by(&self) -> Option<Arc<Attribution>> {
        self.cause.as_ref().map(|c| c.by.clone())
    }
}

/// The gate of one image, kept across image-set rebuilds.
#[derive(Debug, Default)]
pub struct PollGate {
    running: tokio::sync::Mutex<()>,
    queued: Mutex<Option<Queued>>,
}

impl PollGate {
    /// Asks for an event poll. True when none was queued: the caller starts one.
    pub fn request(&self, cause: Option<&Cause>) -> bool {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let start = queued.is_none();
        let q = queued.get_or_insert_with(Queued::default);
        if let Some(c) = cause {
            // A later trigger of the same time takes over.
            if q.cause.as_ref().is_none_or(|old| c.time_ms >= old.time_ms) {
                q.cause = Some(c.clone());
            }
            if let Some(t) = c.time_ms {
                if q.trace_times_ms.len() < MAX_TRACE_TIMES {
                    q.trace_times_ms.push(t);
                }
            }
        }
        start
    }

    /// The queued poll, taken as it starts (a trigger from now on queues another).
    pub fn take(&self) -> Option<Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Waits until no other poll of the image runs.
    pub async fn enter(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.running.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(id: &str, time: i64) -> Cause {
        Cause::of(&Trace {
            trace_id: id.into(),
            time: Some(time),
            ..Trace::default()
        })
    }

    #[test]
    fn triggers_join_the_queued_poll_and_the_newest_trace_names_it() {
        let gate = PollGate::default();
        assert!(gate.request(Some(&cause("a", 10))));
        assert!(!gate.request(Some(&cause("b", 30))));
        assert!(!gate.request(Some(&cause("c", 20))));
        let q = gate.take().unwrap();
        assert_eq!(q.by().unwrap().trace_id, "b");
        assert_eq!(q.trace_times_ms, [10, 30, 20]);
        // Taken: the next trigger queues another poll.
        assert!(gate.request(None));
        assert!(gate.take().unwrap().by().is_none());
    }
}
