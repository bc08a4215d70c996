//! Everything on `/metrics`: the exporter's own counters (API requests and their
//! latency) and, at scrape time, the families rendered from one [`Snapshot`].
//!
//! The snapshot families are encoded by a `Collector` that reads the store once per
//! scrape and computes ages then, so no series outlives its image and nothing is
//! half-updated. Encoding is prometheus-client's OpenMetrics; the classic text format
//! 0.0.4 is derived from it (see [`openmetrics_to_text`]).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::ims::error::Reason;
use crate::snapshot::{now_unix, ImageState, MemberRecord, Snapshot, Store, TargetStatus};

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The member types and statuses IMS documents; their counts are exported even when
/// zero so that graphs and alerts see a drop to 0 rather than a vanished series.
pub const KNOWN_MEMBER_TYPES: [&str; 3] = ["project", "domain", "organization"];
pub const KNOWN_STATUSES: [&str; 3] = ["accepted", "pending", "rejected"];

const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// Like the Go client: OpenMetrics only when the scraper asks for it.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

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
}

impl SelfMetrics {
    pub fn new() -> Self {
        SelfMetrics {
            config_reload_ok: Gauge::default(),
            config_reload_time: Gauge::default(),
            api_requests: Family::default(),
            api_retries: Family::default(),
            api_duration: Family::new_with_constructor(latency_histogram),
        }
    }

    /// Records a config load (at start or a reload) and whether it was taken.
    pub fn config_loaded(&self, ok: bool, now_unix: f64) {
        self.config_reload_ok.set(i64::from(ok));
        if ok {
            self.config_reload_time.set(now_unix);
        }
    }

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

/// The registry behind `/metrics` (and `--once`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
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
        registry.register_collector(Box::new(SnapshotCollector { store }));
        Metrics { registry }
    }

    pub fn render(&self, format: Format) -> String {
        let mut om = String::with_capacity(64 * 1024);
        // Writing to a String cannot fail; an Err here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut om, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        match format {
            Format::OpenMetrics => om,
            Format::Text => openmetrics_to_text(&om),
        }
    }
}

#[derive(Debug)]
struct SnapshotCollector {
    store: Arc<Store>,
}

type Fam<'a> = prometheus_client::encoding::MetricEncoder<'a>;

fn gauge(family: &mut Fam<'_>, labels: &impl EncodeLabelSet, value: f64) -> std::fmt::Result {
    ConstGauge::new(value).encode(family.encode_family(labels)?)
}

fn counter(family: &mut Fam<'_>, labels: &impl EncodeLabelSet, value: u64) -> std::fmt::Result {
    ConstCounter::new(value).encode(family.encode_family(labels)?)
}

type ImageLabels<'a> = [(&'static str, &'a str); 3];

fn image_labels(s: &ImageState) -> ImageLabels<'_> {
    [
        ("region", &s.key.region),
        ("project_id", &s.key.project_id),
        ("image_id", &s.key.image_id),
    ]
}

/// The image's labels followed by `more`.
fn labels<'a, const N: usize>(
    image: ImageLabels<'a>,
    more: [(&'static str, &'a str); N],
) -> Vec<(&'static str, &'a str)> {
    let mut v = Vec::with_capacity(3 + N);
    v.extend(image);
    v.extend(more);
    v
}

/// Encodes one family: its descriptor, then whatever `samples` writes into it.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl FnOnce(Fam<'_>) -> std::fmt::Result,
) -> std::fmt::Result {
    samples(encoder.encode_descriptor(name, help, None, kind)?)
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

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let snap: Snapshot = self.store.snapshot();
        let now = now_unix();
        let images = &snap.images;
        let members = || {
            images
                .iter()
                .filter_map(|s| s.members.as_ref().map(|m| (s, m)))
        };

        let revision = option_env!("IMS_EXPORTER_REVISION").unwrap_or("unknown");
        family(
            &mut e,
            "ims_exporter_build_info",
            "Build information; value is always 1.",
            MetricType::Gauge,
            |mut f| {
                gauge(
                    &mut f,
                    &[
                        ("version", env!("CARGO_PKG_VERSION")),
                        ("revision", revision),
                    ],
                    1.0,
                )
            },
        )?;
        family(
            &mut e,
            "ims_exporter_shard_info",
            "This replica's shard: index (0-based) of count; value is always 1.",
            MetricType::Gauge,
            |mut f| {
                let (index, count) = (snap.shard.index.to_string(), snap.shard.count.to_string());
                gauge(
                    &mut f,
                    &[("index", index.as_str()), ("count", count.as_str())],
                    1.0,
                )
            },
        )?;
        family(
            &mut e,
            "ims_images_monitored",
            "Images this exporter (this shard) monitors.",
            MetricType::Gauge,
            |f| ConstGauge::new(images.len() as i64).encode(f),
        )?;
        if let Some(secs) = snap.last_cycle_seconds() {
            family(
                &mut e,
                "ims_poll_duration_seconds",
                "Wall time of the last complete poll cycle over all images (the slowest target's).",
                MetricType::Gauge,
                |f| ConstGauge::new(secs).encode(f),
            )?;
        }
        family(
            &mut e,
            "ims_exporter_credentials_expiry_timestamp_seconds",
            "Unix time the temporary credentials in use expire (they are refreshed before).",
            MetricType::Gauge,
            |mut f| {
                for (provider, expiry) in &snap.credential_expiry {
                    gauge(&mut f, &[("provider", *provider)], *expiry)?;
                }
                Ok(())
            },
        )?;
        let targets = &snap.targets;
        let target_labels = |t: &'_ TargetStatus| {
            [
                ("region", t.region.to_string()),
                ("project_id", t.project_id.to_string()),
            ]
        };
        family(
            &mut e,
            "ims_target_poll_duration_seconds",
            "Wall time of the target's last complete poll cycle.",
            MetricType::Gauge,
            |mut f| {
                for t in targets.iter() {
                    if let Some(secs) = t.last_cycle_seconds {
                        gauge(&mut f, &target_labels(t), secs)?;
                    }
                }
                Ok(())
            },
        )?;
        family(&mut e, "ims_discovery_success", "1 if the last discovery of the target's images succeeded, 0 if it failed (the previous image set is kept).", MetricType::Gauge, |mut f| {
            for t in targets.iter() {
                if let Some(d) = &t.discovery {
                    gauge(&mut f, &target_labels(t), if d.ok { 1.0 } else { 0.0 })?;
                }
            }
            Ok(())
        })?;
        family(
            &mut e,
            "ims_discovered_images",
            "Images the last good discovery of the target found, after filters.",
            MetricType::Gauge,
            |mut f| {
                for t in targets.iter() {
                    if let Some(d) = &t.discovery {
                        gauge(&mut f, &target_labels(t), d.images as f64)?;
                    }
                }
                Ok(())
            },
        )?;

        family(&mut e, "ims_image_info", "One series per monitored image with its name and where it came from (config or discovery); value is always 1.", MetricType::Gauge, |mut f| {
            for s in images {
                gauge(&mut f, &labels(image_labels(s), [("image_name", &s.meta.name), ("source", s.meta.source.as_str())]), 1.0)?;
            }
            Ok(())
        })?;
        family(&mut e, "ims_image_poll_success", "1 if the last poll of the image succeeded, 0 if it failed (last good data is still served).", MetricType::Gauge, |mut f| {
            for s in images {
                if let Some(ok) = s.last_poll_ok {
                    gauge(&mut f, &image_labels(s), if ok { 1.0 } else { 0.0 })?;
                }
            }
            Ok(())
        })?;
        family(
            &mut e,
            "ims_image_last_success_timestamp_seconds",
            "Unix time of the last successful poll of the image.",
            MetricType::Gauge,
            |mut f| {
                for s in images {
                    if let Some(t) = s.last_success_unix {
                        gauge(&mut f, &image_labels(s), t)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "ims_image_poll_errors",
            "Failed polls of the image by reason.",
            MetricType::Counter,
            |mut f| {
                // Every reason from the first poll on, at 0 until it happens.
                for s in images.iter().filter(|s| s.last_poll_ok.is_some()) {
                    for reason in Reason::ALL {
                        let n = s.errors.get(&reason).copied().unwrap_or(0);
                        counter(
                            &mut f,
                            &labels(image_labels(s), [("reason", reason.as_str())]),
                            n,
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        family(&mut e, "ims_member_changes", "Changes to the image's members seen between two good polls, by kind (added, removed, status_changed).", MetricType::Counter, |mut f| {
            for s in images {
                for change in ["added", "removed", "status_changed"] {
                    let n = s.changes.get(change).copied().unwrap_or(0);
                    counter(&mut f, &labels(image_labels(s), [("change", change)]), n)?;
                }
            }
            Ok(())
        })?;

        family(
            &mut e,
            "ims_image_members",
            "Members (recipients) of the image by member type and status, from the last good poll.",
            MetricType::Gauge,
            |mut f| {
                for (s, set) in members().filter(|(_, m)| m.complete) {
                    for t in KNOWN_MEMBER_TYPES {
                        for st in KNOWN_STATUSES {
                            let n = set
                                .counts
                                .get(&(t.to_string(), st.to_string()))
                                .copied()
                                .unwrap_or(0);
                            gauge(
                                &mut f,
                                &labels(image_labels(s), [("member_type", t), ("status", st)]),
                                n as f64,
                            )?;
                        }
                    }
                    for ((t, st), n) in &set.counts {
                        if !(KNOWN_MEMBER_TYPES.contains(&t.as_str())
                            && KNOWN_STATUSES.contains(&st.as_str()))
                        {
                            gauge(
                                &mut f,
                                &labels(
                                    image_labels(s),
                                    [("member_type", t.as_str()), ("status", st.as_str())],
                                ),
                                *n as f64,
                            )?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        family(
            &mut e,
            "ims_image_unexpected_members",
            "Members of the image that no applicable allowlist entry matches (0 when clean).",
            MetricType::Gauge,
            |mut f| {
                for s in images {
                    gauge(&mut f, &image_labels(s), s.unexpected_count() as f64)?;
                }
                Ok(())
            },
        )?;
        family(&mut e, "ims_image_member_unexpected", "1 for each member of the image that no applicable allowlist entry matches, whatever its status.", MetricType::Gauge, |mut f| {
            for (s, set) in members() {
                for m in set.members.iter().filter(|m| m.unexpected) {
                    let l = labels(image_labels(s), [("member_id", m.member_id.as_str()), ("member_type", m.member_type.as_str()), ("status", m.status.as_str())]);
                    gauge(&mut f, &l, 1.0)?;
                }
            }
            Ok(())
        })?;
        family(
            &mut e,
            "ims_image_member_present",
            "1 if a watched member is shared with the image, 0 if not (checked every poll).",
            MetricType::Gauge,
            |mut f| {
                for s in images {
                    for (member_id, present) in &s.watched {
                        gauge(
                            &mut f,
                            &labels(image_labels(s), [("member_id", member_id.as_str())]),
                            if *present { 1.0 } else { 0.0 },
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        if !snap.member_metrics {
            return Ok(());
        }
        family(
            &mut e,
            "ims_image_member_info",
            "One series per member of the image; value is always 1.",
            MetricType::Gauge,
            |mut f| {
                for (s, set) in members() {
                    for m in &set.members {
                        let l = labels(
                            image_labels(s),
                            [
                                ("member_id", m.member_id.as_str()),
                                ("member_type", m.member_type.as_str()),
                                ("status", m.status.as_str()),
                                ("urn", m.urn.as_str()),
                            ],
                        );
                        gauge(&mut f, &l, 1.0)?;
                    }
                }
                Ok(())
            },
        )?;
        for (name, help, pick) in PER_MEMBER {
            family(&mut e, name, help, MetricType::Gauge, |mut f| {
                for (s, set) in members() {
                    for m in &set.members {
                        if let Some(v) = pick(m, now) {
                            gauge(
                                &mut f,
                                &labels(image_labels(s), [("member_id", m.member_id.as_str())]),
                                v,
                            )?;
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
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
