//! The metric families of `/metrics`: the self-metrics first, then everything read
//! from one [`Snapshot`] per scrape, one function per group of families, written in
//! the negotiated format by [`crate::render::exposition`].

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::ims::error::Reason;
use crate::render::events::{write_events, EventOptions};
use crate::render::exposition::{label_block, Exposition, Format, Kind, Sink};
use crate::render::incoming::write_incoming;
use crate::render::self_metrics::SelfMetrics;
use crate::shard::Shard;
use crate::state::{
    ChangeKind, ImageState, MemberRecord, MemberSet, Snapshot, Store, TargetStatus, MEMBER_TYPES,
    STATUSES,
};
use crate::timestamp::now_unix;

/// Everything `/metrics` (and `--once`) serves: the self-metrics, then the snapshot
/// families.
pub struct Metrics {
    self_metrics: Arc<SelfMetrics>,
    store: Arc<Store>,
    options: ArcSwap<RenderOptions>,
}

/// Reads the expiry of the temporary credentials in use: (provider kind, Unix time).
pub type ExpiryReader = Arc<dyn Fn() -> Vec<(&'static str, f64)> + Send + Sync>;

/// What the running configuration tells the renderer, handed over at start and at
/// every reload.
#[derive(Clone)]
pub struct RenderOptions {
    /// Per-member series (`member_metrics`).
    pub member_metrics: bool,
    /// This replica's shard.
    pub shard: Shard,
    /// Called at scrape time: the providers' own values, never a copy.
    pub credential_expiry: ExpiryReader,
    /// Which event sources are on (their families are written only then).
    pub events: EventOptions,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            member_metrics: true,
            shard: Shard::default(),
            credential_expiry: Arc::new(Vec::new),
            events: EventOptions::default(),
        }
    }
}

impl Metrics {
    pub fn new(store: Arc<Store>, self_metrics: Arc<SelfMetrics>) -> Self {
        Metrics {
            self_metrics,
            store,
            options: ArcSwap::from_pointee(RenderOptions::default()),
        }
    }

    /// What the configuration in force says (at start and after every reload).
    pub fn set_options(&self, options: RenderOptions) {
        self.options.store(Arc::new(options));
    }

    /// The whole exposition in one string (for `--once` and tests).
    pub fn render(&self, format: Format) -> String {
        self.render_at(format, now_unix())
    }

    /// [`Metrics::render`] as of `now` (Unix seconds), which ages are computed from:
    /// a fixed `now` makes the output reproducible (the golden file test).
    pub fn render_at(&self, format: Format, now: f64) -> String {
        let mut w = Exposition::new(format);
        self.write_all(&mut w, now);
        w.finish()
    }

    /// The exposition handed to `sink` in chunks of about `chunk` bytes, so that a
    /// scrape of a large fleet goes out while it is rendered and never sits in memory
    /// whole. Stops early when `sink` returns false.
    pub fn render_chunks(&self, format: Format, chunk: usize, sink: Sink<'_>) {
        let mut w = Exposition::streaming(format, chunk, sink);
        self.write_all(&mut w, now_unix());
        w.finish();
    }

    /// Every family: the self-metrics, the event sources', the images shared with us,
    /// then the snapshot's.
    fn write_all(&self, w: &mut Exposition<'_>, now: f64) {
        self.self_metrics.write(w);
        let (snapshot, options) = (self.store.snapshot(), self.options.load());
        write_events(w, &snapshot.targets, self.store.events(), options.events);
        write_incoming(w, &snapshot.targets);
        write_snapshot(w, &snapshot, &options, now);
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
        |m, _| m.created_at(),
    ),
    (
        "ims_image_member_updated_timestamp_seconds",
        "Unix time the share was last updated (updated_at), e.g. accepted or rejected.",
        |m, _| m.updated_at(),
    ),
    (
        "ims_image_member_update_age_seconds",
        "Seconds since the share was last updated, computed at scrape time.",
        |m, now| m.updated_at().map(|u| (now - u).max(0.0)),
    ),
];

/// One snapshot's images, each with its label block encoded once per scrape.
struct Images<'s> {
    images: &'s [Arc<ImageState>],
    blocks: Vec<String>,
}

impl<'s> Images<'s> {
    fn new(images: &'s [Arc<ImageState>]) -> Self {
        let blocks = images.iter().map(|s| image_block(s)).collect();
        Images { images, blocks }
    }

    fn iter(&self) -> impl Iterator<Item = (&'s ImageState, &str)> + '_ {
        self.images
            .iter()
            .map(|s| &**s)
            .zip(self.blocks.iter().map(String::as_str))
    }

    /// Images with a good member list.
    fn members(&self) -> impl Iterator<Item = (&str, &'s MemberSet)> + '_ {
        self.iter()
            .filter_map(|(s, b)| s.members.as_deref().map(|m| (b, m)))
    }

    /// A gauge family with at most one series per image.
    fn gauge(
        &self,
        w: &mut Exposition,
        name: &'static str,
        help: &str,
        value: impl Fn(&ImageState) -> Option<f64>,
    ) {
        w.family(name, help, Kind::Gauge);
        for (s, b) in self.iter() {
            if let Some(v) = value(s) {
                w.series().labels(b).value(v);
            }
        }
    }
}

fn bool_value(ok: bool) -> f64 {
    if ok {
        1.0
    } else {
        0.0
    }
}

/// The families read from one snapshot; ages are computed against `now`, so nothing
/// is half-updated and no series outlives its image.
fn write_snapshot(w: &mut Exposition, snap: &Snapshot, options: &RenderOptions, now: f64) {
    let images = Images::new(&snap.images);
    write_exporter(w, snap, options);
    write_targets(w, &snap.targets);
    write_image_polls(w, &images);
    write_member_counts(w, &images);
    write_shares(w, &images);
    if options.member_metrics && !w.stopped() {
        write_member_details(w, &images, now);
    }
}

/// The exporter as a whole: build, shard, images, cycle time, credential expiry.
fn write_exporter(w: &mut Exposition, snap: &Snapshot, options: &RenderOptions) {
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
        .label("index", itoa::Buffer::new().format(options.shard.index))
        .label("count", itoa::Buffer::new().format(options.shard.count))
        .value(1.0);
    w.family(
        "ims_images_monitored",
        "Images this exporter (this shard) monitors.",
        Kind::Gauge,
    );
    w.series().int(snap.images.len() as u64);
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
    for (provider, expiry) in (options.credential_expiry)() {
        w.series().label("provider", provider).value(expiry);
    }
}

/// Per target: cycle time and discovery.
fn write_targets(w: &mut Exposition, targets: &[Arc<TargetStatus>]) {
    w.family(
        "ims_target_poll_duration_seconds",
        "Wall time of the target's last complete poll cycle.",
        Kind::Gauge,
    );
    for t in targets {
        if let Some(secs) = t.last_cycle_seconds {
            w.target_series(&t.region, &t.project_id).value(secs);
        }
    }
    w.family("ims_discovery_success", "1 if the last discovery of the target's images succeeded, 0 if it failed (the previous image set is kept).", Kind::Gauge);
    for t in targets {
        if let Some(d) = &t.discovery {
            w.target_series(&t.region, &t.project_id)
                .value(bool_value(d.ok));
        }
    }
    w.family(
        "ims_discovered_images",
        "Images the last good discovery of the target found, after filters.",
        Kind::Gauge,
    );
    for t in targets {
        if let Some(d) = &t.discovery {
            w.target_series(&t.region, &t.project_id)
                .value(d.images as f64);
        }
    }
}

/// Per image: what it is and how its polls go (success, last success, errors,
/// changes seen by the audit).
fn write_image_polls(w: &mut Exposition, images: &Images<'_>) {
    w.family("ims_image_info", "One series per monitored image with its name and where it came from (config or discovery); value is always 1.", Kind::Gauge);
    for (s, b) in images.iter() {
        w.series()
            .labels(b)
            .label("image_name", &s.meta.name)
            .label("source", s.meta.source.as_str())
            .value(1.0);
    }
    images.gauge(
        w,
        "ims_image_poll_success",
        "1 if the last poll of the image succeeded, 0 if it failed (last good data is still served).",
        |s| s.last_poll_ok.map(bool_value),
    );
    images.gauge(
        w,
        "ims_image_last_success_timestamp_seconds",
        "Unix time of the last successful poll of the image.",
        |s| s.last_success_unix,
    );
    w.family(
        "ims_image_poll_errors",
        "Failed polls of the image by reason.",
        Kind::Counter,
    );
    // Every reason from the first poll on, at 0 until it happens.
    for (s, b) in images.iter().filter(|(s, _)| s.last_poll_ok.is_some()) {
        for reason in Reason::ALL {
            let n = s.errors.get(&reason).copied().unwrap_or(0);
            w.series().labels(b).label("reason", reason.as_str()).int(n);
        }
    }
    w.family("ims_member_changes", "Changes to the image's members seen between two good polls, by kind (added, removed, status_changed).", Kind::Counter);
    for (s, b) in images.iter() {
        for change in ChangeKind::MEMBER {
            let n = s.changes.get(&change).copied().unwrap_or(0);
            w.series().labels(b).label("change", change.as_str()).int(n);
        }
    }
}

/// Per image: members by type and status (complete lists only).
fn write_member_counts(w: &mut Exposition, images: &Images<'_>) {
    w.family(
        "ims_image_members",
        "Members (recipients) of the image by member type and status, from the last good poll.",
        Kind::Gauge,
    );
    for (b, set) in images.members().filter(|(_, m)| m.complete) {
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
}

/// Per share that needs attention: unexpected members and watched members.
fn write_shares(w: &mut Exposition, images: &Images<'_>) {
    images.gauge(
        w,
        "ims_image_unexpected_members",
        "Members of the image that no applicable allowlist entry matches (0 when clean).",
        |s| Some(s.unexpected_count() as f64),
    );
    w.family("ims_image_member_unexpected", "1 for each member of the image that no applicable allowlist entry matches, whatever its status.", Kind::Gauge);
    for (b, set) in images.members() {
        let plain = set.plain_labels;
        for m in set.members.iter().filter(|m| m.unexpected) {
            w.series()
                .labels(b)
                .label_if_plain("member_id", &m.member_id(), plain)
                .label_if_plain("member_type", m.member_type(), plain)
                .label_if_plain("status", m.status(), plain)
                .value(1.0);
        }
    }
    w.family(
        "ims_image_member_present",
        "1 if a watched member is shared with the image, 0 if not (checked every poll).",
        Kind::Gauge,
    );
    for (s, b) in images.iter() {
        for (member_id, present) in &s.watched {
            w.series()
                .labels(b)
                .label("member_id", member_id)
                .value(bool_value(*present));
        }
    }
}

/// Per member (`member_metrics: true`): info, timestamps, age.
fn write_member_details(w: &mut Exposition, images: &Images<'_>, now: f64) {
    w.family(
        "ims_image_member_info",
        "One series per member of the image; value is always 1.",
        Kind::Gauge,
    );
    for (b, set) in images.members() {
        let plain = set.plain_labels;
        for m in &set.members {
            w.series()
                .labels(b)
                .label_if_plain("member_id", &m.member_id(), plain)
                .label_if_plain("member_type", m.member_type(), plain)
                .label_if_plain("status", m.status(), plain)
                .label_if_plain("urn", m.urn(), plain)
                .value(1.0);
        }
    }
    for (name, help, pick) in PER_MEMBER {
        if w.stopped() {
            return;
        }
        w.family(name, help, Kind::Gauge);
        for (b, set) in images.members() {
            for m in &set.members {
                if let Some(v) = pick(m, now) {
                    w.series()
                        .labels(b)
                        .label_if_plain("member_id", &m.member_id(), set.plain_labels)
                        .value(v);
                }
            }
        }
    }
}
