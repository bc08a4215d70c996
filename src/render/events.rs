//! The event sources' families: per target, the trace reads (`ims_cts_*`), the member
//! traces by name and the polls they triggered; the delay from a traced operation to
//! the end of its poll; the webhook's requests by result. Written only when the config
//! turns the source on, so a config without `events:` exposes none of them.

use std::sync::Arc;

use crate::render::exposition::{Exposition, Kind};
use crate::state::events::{EventStats, EVENT_TO_POLL_BUCKETS};
use crate::state::TargetStatus;

/// Which event sources the config turns on.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventOptions {
    /// `events.cts` is set.
    pub cts: bool,
    /// `events.webhook` is set.
    pub webhook: bool,
}

pub(super) fn write_events(
    w: &mut Exposition,
    targets: &[Arc<TargetStatus>],
    stats: &EventStats,
    options: EventOptions,
) {
    if options.cts {
        write_reads(w, targets);
    }
    if options.cts || options.webhook {
        write_polls(w, targets, stats);
    }
    if options.webhook {
        w.family(
            "ims_webhook_requests",
            "Requests to POST /api/v1/events by result (accepted, unauthorized, invalid, too_large, throttled, unverified).",
            Kind::Counter,
        );
        for (result, n) in stats.webhook_requests() {
            w.series().label("result", result.as_str()).int(n);
        }
    }
}

/// Per target: whether the last trace read succeeded, when one last did, the member
/// traces read by name.
fn write_reads(w: &mut Exposition, targets: &[Arc<TargetStatus>]) {
    w.family(
        "ims_cts_read_success",
        "1 if the last read of the target's Cloud Trace Service trace list succeeded, 0 if it failed (the next good read covers the gap).",
        Kind::Gauge,
    );
    for t in targets {
        if let Some(ok) = t.cts.as_ref().and_then(|c| c.ok) {
            w.target_series(&t.region, &t.project_id).int(ok as u64);
        }
    }
    w.family(
        "ims_cts_last_read_success_timestamp_seconds",
        "Unix time of the target's last good trace read.",
        Kind::Gauge,
    );
    for t in targets {
        if let Some(at) = t.cts.as_ref().and_then(|c| c.last_success_unix) {
            w.target_series(&t.region, &t.project_id).value(at);
        }
    }
    w.family(
        "ims_cts_traces",
        "IMS member traces read (or pushed) for the target, each trace once, by trace name.",
        Kind::Counter,
    );
    for t in targets {
        for (name, n) in t.cts.iter().flat_map(|c| &c.traces) {
            w.target_series(&t.region, &t.project_id)
                .label("trace_name", name)
                .int(*n);
        }
    }
}

/// Polls that traces triggered, and how long after the traced operation they ended.
fn write_polls(w: &mut Exposition, targets: &[Arc<TargetStatus>], stats: &EventStats) {
    w.family(
        "ims_event_polls",
        "Image polls triggered by traces (read or pushed), per target.",
        Kind::Counter,
    );
    for t in targets {
        let polls = t.cts.as_ref().map(|c| c.event_polls).unwrap_or(0);
        w.target_series(&t.region, &t.project_id).int(polls);
    }
    w.family(
        "ims_event_to_poll_seconds",
        "From a traced share change (the trace's operation time) to the end of the poll it triggered.",
        Kind::Histogram,
    );
    let h = stats.event_to_poll_histogram();
    w.histogram(&EVENT_TO_POLL_BUCKETS, &h.buckets, h.sum, h.count, None);
}
