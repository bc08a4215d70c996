//! Everything on `/metrics`: the exporter's own counters (API requests and their
//! latency) and, at scrape time, the families rendered from one [`Snapshot`].
//!
//! The self-metrics live in a prometheus-client registry (encoded as OpenMetrics, and
//! converted by [`openmetrics_to_text`] for text 0.0.4). The snapshot families, up to
//! hundreds of thousands of series, are written directly in the negotiated format by
//! [`crate::render::exposition`] from one [`Snapshot`] per scrape.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::ims::error::Reason;
use crate::render::exposition::{label_block, Exposition, Format, Kind, Sink};
use crate::state::{
    ChangeKind, ImageState, MemberRecord, Snapshot, Store, TargetStatus, MEMBER_TYPES, STATUSES,
};
use crate::timestamp::now_unix;

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The exporter's own metrics, shared by the client (writer) and the renderer.
#[derive(Debug)]
pub struct SelfMetrics {
    config_reload_ok: Gauge,
    config_reload_time: Gauge<f64, AtomicU64>,
    api_requests: Family<RequestLabels, Counter>,
    api_retries: Family<OperationLabels, Counter>,
    api_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    state_restore_ok: Gauge,
    state_write_ok: Gauge,
    state_write_time: Gauge<f64, AtomicU64>,
}

impl SelfMetrics {
    pub fn new() -> Self {
        SelfMetrics {
            config_reload_ok: Gauge::default(),
            config_reload_time: Gauge::default(),
            api_requests: Family::default(),
            api_retries: Family::default(),
            api_duration: Family::new_with_constructor(latency_histogram),
            state_restore_ok: Gauge::default(),
            state_write_ok: Gauge::default(),
            state_write_time: Gauge::default(),
        }
    }

    /// Whether the state under `--storage.path` was restored (or there was none).
    pub fn state_restored(&self, ok: bool) {
        self.state_restore_ok.set(i64::from(ok));
    }

    /// Records a write of the state file.
    pub fn state_written(&self, ok: bool, now_unix: f64) {
        self.state_write_ok.set(i64::from(ok));
        if ok {
            self.state_write_time.set(now_unix);
        }
    }

    /// Records a config load (at start or a reload) and whether it was taken.
    pub fn config_loaded(&self, ok: bool, now_unix: f64) {
        self.config_reload_ok.set(i64::from(ok));
        if ok {
            self.config_reload_time.set(now_unix);
        }
    }
}

impl crate::ims::observer::RequestObserver for SelfMetrics {
    fn retry(&self, operation: &'static str) {
        self.count_retry(operation)
    }

    fn request(&self, operation: &'static str, code: &str, elapsed: Duration) {
        self.observe_request(operation, code, elapsed)
    }
}

impl SelfMetrics {
    pub fn count_retry(&self, operation: &'static str) {
        self.api_retries
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    pub fn observe_request(&self, operation: &'static str, code: &str, elapsed: Duration) {
        self.api_requests
            .get_or_create(&RequestLabels {
                operation,
                code: code.to_string(),
            })
            .inc();
        self.api_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything `/metrics` (and `--once`) serves: the self-metrics registry, then the
/// snapshot families.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    store: Arc<Store>,
}

impl Metrics {
    pub fn new(store: Arc<Store>, self_metrics: &SelfMetrics) -> Self {
        let mut registry = Registry::default();
        // register() appends the final period to HELP itself.
        registry.register(
            "ims_api_requests",
            "IMS API requests by operation and HTTP status code (timeout or error when no response)",
            self_metrics.api_requests.clone(),
        );
        registry.register(
            "ims_exporter_config_last_reload_successful",
            "Whether the last configuration load (at start, SIGHUP or /-/reload) was taken",
            self_metrics.config_reload_ok.clone(),
        );
        registry.register(
            "ims_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load that was taken",
            self_metrics.config_reload_time.clone(),
        );
        registry.register(
            "ims_api_retries",
            "IMS API requests retried after a transient failure (5xx, throttling, timeout, connection error), by operation",
            self_metrics.api_retries.clone(),
        );
        registry.register(
            "ims_api_request_duration_seconds",
            "IMS API request latency by operation",
            self_metrics.api_duration.clone(),
        );
        registry.register(
            "ims_exporter_state_restore_successful",
            "With --storage.path: 1 if the state file was restored at start (or there was none), 0 if it could not be used and was moved aside",
            self_metrics.state_restore_ok.clone(),
        );
        registry.register(
            "ims_exporter_state_last_write_successful",
            "With --storage.path: whether the last write of the state file succeeded",
            self_metrics.state_write_ok.clone(),
        );
        registry.register(
            "ims_exporter_state_last_write_success_timestamp_seconds",
            "With --storage.path: Unix time of the last successful write of the state file",
            self_metrics.state_write_time.clone(),
        );
        Metrics { registry, store }
    }

    /// The whole exposition in one string (for `--once` and tests).
    pub fn render(&self, format: Format) -> String {
        self.render_at(format, now_unix())
    }

    /// [`Metrics::render`] as of `now` (Unix seconds), which ages are computed from:
    /// a fixed `now` makes the output reproducible (the golden file test).
    pub fn render_at(&self, format: Format, now: f64) -> String {
        let mut w = Exposition::new(format, self.self_metrics(format));
        write_snapshot(&mut w, &self.store.snapshot(), now);
        w.finish()
    }

    /// The exposition handed to `sink` in chunks of about `chunk` bytes, so that a
    /// scrape of a large fleet goes out while it is rendered and never sits in memory
    /// whole. Stops early when `sink` returns false.
    pub fn render_chunks(&self, format: Format, chunk: usize, sink: Sink<'_>) {
        let mut head = String::with_capacity(chunk + chunk / 8);
        head.push_str(&self.self_metrics(format));
        let mut w = Exposition::streaming(format, head, chunk, sink);
        write_snapshot(&mut w, &self.store.snapshot(), now_unix());
        w.finish();
    }

    /// The registry's few self-metrics, encoded by prometheus-client, without `# EOF`.
    fn self_metrics(&self, format: Format) -> String {
        let mut om = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an Err here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut om, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        if om.ends_with("# EOF\n") {
            om.truncate(om.len() - "# EOF\n".len());
        }
        match format {
            Format::OpenMetrics => om,
            Format::Text => openmetrics_to_text(&om),
        }
    }
}

/// The image's `region`, `project_id` and `image_id`, encoded once per scrape.
fn image_block(s: &ImageState) -> String {
    label_block(&[
        ("region", &s.key.region),
        ("project_id", &s.key.project_id),
        ("image_id", &s.key.image_id),
    ])
}

type Pick = fn(&MemberRecord, f64) -> Option<f64>;

/// Per-member value families, rendered for every known member of every image.
const PER_MEMBER: [(&str, &str, Pick); 3] = [
    (
        "ims_image_member_created_timestamp_seconds",
        "Unix time the image was shared with the member (created_at).",
        |m, _| m.created_at,
    ),
    (
        "ims_image_member_updated_timestamp_seconds",
        "Unix time the share was last updated (updated_at), e.g. accepted or rejected.",
        |m, _| m.updated_at,
    ),
    (
        "ims_image_member_update_age_seconds",
        "Seconds since the share was last updated, computed at scrape time.",
        |m, now| m.updated_at.map(|u| (now - u).max(0.0)),
    ),
];

/// The families read from one snapshot; ages are computed against `now`, so nothing
/// is half-updated and no series outlives its image.
fn write_snapshot(w: &mut Exposition, snap: &Snapshot, now: f64) {
    let images = &snap.images;
    let blocks: Vec<String> = images.iter().map(|s| image_block(s)).collect();
    let per_image = || images.iter().zip(&blocks);
    let members =
        || per_image().filter_map(|(s, b)| s.members.as_ref().map(|m| (s, b.as_str(), m)));
    let bool_value = |ok: bool| if ok { 1.0 } else { 0.0 };

    let revision = option_env!("IMS_EXPORTER_REVISION").unwrap_or("unknown");
    w.family(
        "ims_exporter_build_info",
        "Build information; value is always 1.",
        Kind::Gauge,
    );
    w.series()
        .label("version", env!("CARGO_PKG_VERSION"))
        .label("revision", revision)
        .value(1.0);
    w.family(
        "ims_exporter_shard_info",
        "This replica's shard: index (0-based) of count; value is always 1.",
        Kind::Gauge,
    );
    w.series()
        .label("index", itoa::Buffer::new().format(snap.shard.index))
        .label("count", itoa::Buffer::new().format(snap.shard.count))
        .value(1.0);
    w.family(
        "ims_images_monitored",
        "Images this exporter (this shard) monitors.",
        Kind::Gauge,
    );
    w.series().int(images.len() as u64);
    if let Some(secs) = snap.last_cycle_seconds() {
        w.family(
            "ims_poll_duration_seconds",
            "Wall time of the last complete poll cycle over all images (the slowest target's).",
            Kind::Gauge,
        );
        w.series().value(secs);
    }
    w.family(
        "ims_exporter_credentials_expiry_timestamp_seconds",
        "Unix time the temporary credentials in use expire (they are refreshed before).",
        Kind::Gauge,
    );
    for (provider, expiry) in &snap.credential_expiry {
        w.series().label("provider", provider).value(*expiry);
    }

    let targets = &snap.targets;
    let target_series = |w: &mut Exposition, t: &TargetStatus, v: f64| {
        w.series()
            .label("region", &t.region)
            .label("project_id", &t.project_id)
            .value(v)
    };
    w.family(
        "ims_target_poll_duration_seconds",
        "Wall time of the target's last complete poll cycle.",
        Kind::Gauge,
    );
    for t in targets {
        if let Some(secs) = t.last_cycle_seconds {
            target_series(w, t, secs);
        }
    }
    w.family("ims_discovery_success", "1 if the last discovery of the target's images succeeded, 0 if it failed (the previous image set is kept).", Kind::Gauge);
    for t in targets {
        if let Some(d) = &t.discovery {
            target_series(w, t, bool_value(d.ok));
        }
    }
    w.family(
        "ims_discovered_images",
        "Images the last good discovery of the target found, after filters.",
        Kind::Gauge,
    );
    for t in targets {
        if let Some(d) = &t.discovery {
            target_series(w, t, d.images as f64);
        }
    }

    w.family("ims_image_info", "One series per monitored image with its name and where it came from (config or discovery); value is always 1.", Kind::Gauge);
    for (s, b) in per_image() {
        w.series()
            .labels(b)
            .label("image_name", &s.meta.name)
            .label("source", s.meta.source.as_str())
            .value(1.0);
    }
    // A gauge family with at most one series per image.
    let image_gauge =
        |w: &mut Exposition, name, help, value: &dyn Fn(&ImageState) -> Option<f64>| {
            w.family(name, help, Kind::Gauge);
            for (s, b) in per_image() {
                if let Some(v) = value(s) {
                    w.series().labels(b).value(v);
                }
            }
        };
    image_gauge(
        w,
        "ims_image_poll_success",
        "1 if the last poll of the image succeeded, 0 if it failed (last good data is still served).",
        &|s| s.last_poll_ok.map(bool_value),
    );
    image_gauge(
        w,
        "ims_image_last_success_timestamp_seconds",
        "Unix time of the last successful poll of the image.",
        &|s| s.last_success_unix,
    );
    w.family(
        "ims_image_poll_errors",
        "Failed polls of the image by reason.",
        Kind::Counter,
    );
    // Every reason from the first poll on, at 0 until it happens.
    for (s, b) in per_image().filter(|(s, _)| s.last_poll_ok.is_some()) {
        for reason in Reason::ALL {
            let n = s.errors.get(&reason).copied().unwrap_or(0);
            w.series().labels(b).label("reason", reason.as_str()).int(n);
        }
    }
    w.family("ims_member_changes", "Changes to the image's members seen between two good polls, by kind (added, removed, status_changed).", Kind::Counter);
    for (s, b) in per_image() {
        for change in ChangeKind::ALL {
            let n = s.changes.get(&change).copied().unwrap_or(0);
            w.series().labels(b).label("change", change.as_str()).int(n);
        }
    }

    w.family(
        "ims_image_members",
        "Members (recipients) of the image by member type and status, from the last good poll.",
        Kind::Gauge,
    );
    for (_, b, set) in members().filter(|(_, _, m)| m.complete) {
        for t in MEMBER_TYPES {
            for st in STATUSES {
                let n = set
                    .counts
                    .iter()
                    .find(|((mt, ms), _)| mt == t && ms == st)
                    .map_or(0, |(_, n)| *n);
                w.series()
                    .labels(b)
                    .label("member_type", t)
                    .label("status", st)
                    .value(n as f64);
            }
        }
        for ((t, st), n) in &set.counts {
            if !(MEMBER_TYPES.contains(&&**t) && STATUSES.contains(&&**st)) {
                w.series()
                    .labels(b)
                    .label("member_type", t)
                    .label("status", st)
                    .value(*n as f64);
            }
        }
    }
    image_gauge(
        w,
        "ims_image_unexpected_members",
        "Members of the image that no applicable allowlist entry matches (0 when clean).",
        &|s| Some(s.unexpected_count() as f64),
    );
    w.family("ims_image_member_unexpected", "1 for each member of the image that no applicable allowlist entry matches, whatever its status.", Kind::Gauge);
    for (_, b, set) in members() {
        for m in set.members.iter().filter(|m| m.unexpected) {
            w.series()
                .labels(b)
                .label("member_id", &m.member_id)
                .label("member_type", &m.member_type)
                .label("status", &m.status)
                .value(1.0);
        }
    }
    w.family(
        "ims_image_member_present",
        "1 if a watched member is shared with the image, 0 if not (checked every poll).",
        Kind::Gauge,
    );
    for (s, b) in per_image() {
        for (member_id, present) in &s.watched {
            w.series()
                .labels(b)
                .label("member_id", member_id)
                .value(bool_value(*present));
        }
    }
    if !snap.member_metrics || w.stopped() {
        return;
    }
    w.family(
        "ims_image_member_info",
        "One series per member of the image; value is always 1.",
        Kind::Gauge,
    );
    for (_, b, set) in members() {
        for m in &set.members {
            w.series()
                .labels(b)
                .label("member_id", &m.member_id)
                .label("member_type", &m.member_type)
                .label("status", &m.status)
                .label("urn", &m.urn)
                .value(1.0);
        }
    }
    for (name, help, pick) in PER_MEMBER {
        if w.stopped() {
            return;
        }
        w.family(name, help, Kind::Gauge);
        for (_, b, set) in members() {
            for m in &set.members {
                if let Some(v) = pick(m, now) {
                    w.series()
                        .labels(b)
                        .label("member_id", &m.member_id)
                        .value(v);
                }
            }
        }
    }
}

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4: no `# EOF` or `# UNIT`,
/// counter families named with their `_total` suffix, `unknown` as `untyped`.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some((_, text)) = help.take() {
                // OpenMetrics escapes `"` in HELP; 0.0.4 does not.
                out.push_str(&format!("# HELP {name} {}\n", text.replace("\\\"", "\"")));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn text_format_conversion() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n# HELP b Some \\\"b\\\".\n# TYPE b gauge\n# UNIT b seconds\nb 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n# HELP b Some \"b\".\n# TYPE b gauge\nb 1.5\n"
        );
    }
}
