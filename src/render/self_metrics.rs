//! The exporter's own metrics: API requests, retries and latency (reported by the
//! client through [`RequestObserver`]), config loads and state writes. Plain atomics
//! and small maps, written by the same exposition writer as the snapshot families:
//! one exposition path for both formats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::ims::observer::RequestObserver;
use crate::render::exposition::{Exposition, Kind};
use crate::state::events::EventStats;

/// Upper bounds of the API latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A gauge holding an `f64` (stored as its bits).
#[derive(Debug, Default)]
struct FloatGauge(AtomicU64);

impl FloatGauge {
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// One operation's latency histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at most each bound (not cumulative; summed when written).
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// What the client reports, by operation (and status code).
#[derive(Debug, Default)]
struct Requests {
    count: BTreeMap<(&'static str, String), u64>,
    retries: BTreeMap<&'static str, u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// The exporter's own metrics, shared by the client (writer) and the renderer.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    config_reload_ok: AtomicI64,
    config_reload_time: FloatGauge,
    requests: Mutex<Requests>,
    state_restore_ok: AtomicI64,
    state_write_ok: AtomicI64,
    state_write_time: FloatGauge,
}

impl SelfMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a config load (at start or a reload) and whether it was taken.
    pub fn config_loaded(&self, ok: bool, now_unix: f64) {
        self.config_reload_ok
            .store(i64::from(ok), Ordering::Relaxed);
        if ok {
            self.config_reload_time.set(now_unix);
        }
    }

    /// Whether the state under `--storage.path` was restored (or there was none).
    pub fn state_restored(&self, ok: bool) {
        self.state_restore_ok
            .store(i64::from(ok), Ordering::Relaxed);
    }

    /// Records a write of the state file.
    pub fn state_written(&self, ok: bool, now_unix: f64) {
        self.state_write_ok.store(i64::from(ok), Ordering::Relaxed);
        if ok {
            self.state_write_time.set(now_unix);
        }
    }

    /// Writes the self-metrics, first on `/metrics`.
    pub fn write(&self, w: &mut Exposition) {
        // The family order is the exposition's contract (the golden files).
        let requests = self.requests();
        write_request_counts(w, &requests);
        flag(
            w,
            "ims_exporter_config_last_reload_successful",
            "Whether the last configuration load (at start, SIGHUP or /-/reload) was taken.",
            &self.config_reload_ok,
        );
        gauge(
            w,
            "ims_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load that was taken.",
            self.config_reload_time.get(),
        );
        write_retries_and_latency(w, &requests);
        drop(requests);
        self.write_state(w);
    }

    /// The state file's families (`--storage.path`).
    fn write_state(&self, w: &mut Exposition) {
        flag(
            w,
            "ims_exporter_state_restore_successful",
            "With --storage.path: 1 if the state file was restored at start (or there was none), 0 if it could not be used and was moved aside.",
            &self.state_restore_ok,
        );
        flag(
            w,
            "ims_exporter_state_last_write_successful",
            "With --storage.path: whether the last write of the state file succeeded.",
            &self.state_write_ok,
        );
        gauge(
            w,
            "ims_exporter_state_last_write_success_timestamp_seconds",
            "With --storage.path: Unix time of the last successful write of the state file.",
            self.state_write_time.get(),
        );
    }
}

impl RequestObserver for SelfMetrics {
    fn retry(&self, operation: &'static str) {
        *self.requests().retries.entry(operation).or_insert(0) += 1;
    }

    fn request(&self, operation: &'static str, code: &str, elapsed: Duration) {
        let mut r = self.requests();
        *r.count.entry((operation, code.to_string())).or_insert(0) += 1;
        r.latency
            .entry(operation)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }
}

/// `ims_webhook_requests_total{result}`, once the webhook has been called: an
/// exporter without pushes keeps the exposition it had (and its golden files).
pub(crate) fn write_webhook_requests(w: &mut Exposition, events: &EventStats) {
    let counts = events.webhook_requests();
    if counts.iter().all(|(_, n)| *n == 0) {
        return;
    }
    w.family(
        "ims_webhook_requests",
        "Requests to POST /api/v1/events by result (accepted, unauthorized, invalid, too_large, throttled, unverified).",
        Kind::Counter,
    );
    for (result, n) in counts {
        w.series().label("result", result.as_str()).int(n);
    }
}

/// A gauge family with one series.
fn gauge(w: &mut Exposition, name: &'static str, help: &str, v: f64) {
    w.family(name, help, Kind::Gauge);
    w.series().value(v);
}

/// A 0/1 gauge, written as an integer.
fn flag(w: &mut Exposition, name: &'static str, help: &str, v: &AtomicI64) {
    w.family(name, help, Kind::Gauge);
    w.series().int(u64::from(v.load(Ordering::Relaxed) == 1));
}

fn write_request_counts(w: &mut Exposition, requests: &Requests) {
    w.family(
        "ims_api_requests",
        "IMS API requests by operation and HTTP status code (timeout or error when no response).",
        Kind::Counter,
    );
    for ((operation, code), n) in &requests.count {
        w.series()
            .label("operation", operation)
            .label("code", code)
            .int(*n);
    }
}

fn write_retries_and_latency(w: &mut Exposition, requests: &Requests) {
    w.family(
        "ims_api_retries",
        "IMS API requests retried after a transient failure (5xx, throttling, timeout, connection error), by operation.",
        Kind::Counter,
    );
    for (operation, n) in &requests.retries {
        w.series().label("operation", operation).int(*n);
    }
    w.family(
        "ims_api_request_duration_seconds",
        "IMS API request latency by operation.",
        Kind::Histogram,
    );
    for (operation, h) in &requests.latency {
        w.suffixed("_sum")
            .label("operation", operation)
            .value(h.sum);
        w.suffixed("_count")
            .label("operation", operation)
            .int(h.count);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            w.suffixed("_bucket")
                .label("operation", operation)
                .float_label("le", *bound)
                .int(cumulative);
        }
        w.suffixed("_bucket")
            .label("operation", operation)
            .label("le", "+Inf")
            .int(h.count);
    }
}
