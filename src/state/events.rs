//! What the event sources did, for the self-metrics: webhook requests by result, and
//! the delay from a traced operation to the end of the poll it triggered. Per-target
//! trace reads are in [`super::TargetStatus`] (`cts`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of `ims_event_to_poll_seconds`, in seconds.
pub const EVENT_TO_POLL_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// How a `POST /api/v1/events` ended (`ims_webhook_requests_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    Accepted,
    Unauthorized,
    Invalid,
    TooLarge,
    Throttled,
    Unverified,
}

impl WebhookResult {
    pub const ALL: [WebhookResult; 6] = [
        WebhookResult::Accepted,
        WebhookResult::Unauthorized,
        WebhookResult::Invalid,
        WebhookResult::TooLarge,
        WebhookResult::Throttled,
        WebhookResult::Unverified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Accepted => "accepted",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::Invalid => "invalid",
            WebhookResult::TooLarge => "too_large",
            WebhookResult::Throttled => "throttled",
            WebhookResult::Unverified => "unverified",
        }
    }
}

/// A histogram: observations per bucket (not cumulative), sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; EVENT_TO_POLL_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

/// The event sources' counters, shared by the writers and the renderer.
#[derive(Debug, Default)]
pub struct EventStats {
    webhook: [AtomicU64; WebhookResult::ALL.len()],
    to_poll: Mutex<Histogram>,
}

impl EventStats {
    pub fn webhook_request(&self, result: WebhookResult) {
        self.webhook[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Webhook requests so far, by result, in [`WebhookResult::ALL`]'s order.
    pub fn webhook_requests(&self) -> Vec<(WebhookResult, u64)> {
        WebhookResult::ALL
            .iter()
            .map(|r| (*r, self.webhook[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// A trace's operation happened `seconds` before the poll it triggered ended.
    pub fn event_to_poll(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        let mut h = self.to_poll.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = EVENT_TO_POLL_BUCKETS.iter().position(|b| seconds <= *b) {
            h.buckets[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn event_to_poll_histogram(&self) -> Histogram {
        self.to_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_result_and_buckets() {
        let s = EventStats::default();
        s.webhook_request(WebhookResult::Throttled);
        s.webhook_request(WebhookResult::Throttled);
        let counts = s.webhook_requests();
        assert_eq!(counts[4], (WebhookResult::Throttled, 2));
        assert_eq!(counts[0], (WebhookResult::Accepted, 0));
        s.event_to_poll(1.5);
        s.event_to_poll(-3.0);
        s.event_to_poll(10_000.0);
        let h = s.event_to_poll_histogram();
        assert_eq!((h.buckets[0], h.buckets[2], h.count), (1, 1, 3));
    }
}
