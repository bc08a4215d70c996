//! The state shared between the poller (the only writer) and the metrics renderer.
//!
//! Each monitored image has a slot holding an immutable [`ImageState`] behind an
//! `ArcSwap`; the poller replaces it whole when a poll ends. A scrape takes one
//! [`Snapshot`] — the current `Arc` of every slot — and renders only from that, so it
//! never sees half an update and never waits for the poller.

pub mod storage;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::allowlist::{is_unexpected, Entry};
use crate::ids::Source;
use crate::ims::error::Reason;
use crate::ims::model::{Member, MemberRef};
use crate::shard::Shard;
use crate::timestamp::parse_timestamp;

/// Identifies one monitored image; the label values every per-image series carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageKey {
    pub region: Arc<str>,
    pub project_id: Arc<str>,
    pub image_id: Arc<str>,
}

/// A member type or status. The documented values are shared statics, so 100,000
/// members do not carry 200,000 copies of "project" and "accepted".
pub type Label = Cow<'static, str>;

/// The member types IMS documents.
pub const MEMBER_TYPES: [&str; 3] = ["project", "domain", "organization"];
/// The share statuses IMS documents (pending is real although the v1 pages name only
/// the other two).
pub const STATUSES: [&str; 3] = ["accepted", "pending", "rejected"];
/// What a missing or empty type or status is exported as.
pub const UNKNOWN: &str = "unknown";

/// A type or status as a [`Label`]: a documented value is a shared static.
pub fn label(value: Option<&str>) -> Label {
    match value.filter(|s| !s.is_empty()) {
        None => Cow::Borrowed(UNKNOWN),
        Some(v) => match MEMBER_TYPES.iter().chain(&STATUSES).find(|k| **k == v) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(v.to_string()),
        },
    }
}

/// One member as exported. Missing strings become `""` (urn) or `"unknown"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub member_id: String,
    pub member_type: Label,
    pub status: Label,
    pub urn: String,
    pub created_at: Option<f64>,
    pub updated_at: Option<f64>,
    /// No allowlist entry that applies to the image matches this member.
    pub unexpected: bool,
}

impl MemberRecord {
    /// The record, and how many of its timestamps were present but did not parse.
    pub fn from_ref(m: &MemberRef<'_>) -> (Self, usize) {
        // (value, present but unparseable)
        let time = |t: Option<&str>| match t.map(parse_timestamp) {
            None => (None, false),
            Some(v) => (v, v.is_none()),
        };
        let (created_at, bad_created) = time(m.created_at.as_deref());
        let (updated_at, bad_updated) = time(m.updated_at.as_deref());
        let bad = usize::from(bad_created) + usize::from(bad_updated);
        let record = MemberRecord {
            member_id: m.member_id.to_string(),
            member_type: label(m.member_type.as_deref()),
            status: label(m.status.as_deref()),
            urn: m.urn.as_deref().unwrap_or_default().to_string(),
            created_at,
            updated_at,
            unexpected: true,
        };
        (record, bad)
    }
}

/// The complete member list of an image from one successful poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberSet {
    /// Sorted by member ID, one entry per member ID.
    pub members: Vec<MemberRecord>,
    /// Members per (member_type, status).
    pub counts: BTreeMap<(Label, Label), u64>,
    /// Timestamps that were present but did not parse (the members are kept).
    pub bad_timestamps: usize,
    /// Entries dropped because their member ID was listed again later.
    pub duplicates: usize,
    /// False when only watched members were fetched (`list_members: false`): then the
    /// set is not the image's whole member list and counts are not exported.
    pub complete: bool,
}

impl MemberSet {
    pub fn from_api(members: Vec<Member>) -> Self {
        let mut bad_timestamps = 0;
        let records = members
            .iter()
            .map(|m| {
                let (record, bad) = MemberRecord::from_ref(&MemberRef::from(m));
                bad_timestamps += bad;
                record
            })
            .collect();
        Self::from_records(records, bad_timestamps)
    }

    /// A complete set from records in the order listed, possibly with repeats.
    pub fn from_records(mut records: Vec<MemberRecord>, bad_timestamps: usize) -> Self {
        // A member listed twice (pages shifting under us) counts once, and the copy
        // listed last (the later page, which is newer) wins: a stable sort keeps the
        // listed order among equal IDs, whatever the list's size.
        records.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let listed = records.len();
        records.reverse();
        records.dedup_by(|a, b| a.member_id == b.member_id);
        records.reverse();
        let duplicates = listed - records.len();
        let mut counts = BTreeMap::new();
        for r in &records {
            *counts
                .entry((r.member_type.clone(), r.status.clone()))
                .or_insert(0) += 1;
        }
        MemberSet {
            members: records,
            counts,
            bad_timestamps,
            duplicates,
            complete: true,
        }
    }

    /// Sets each member's `unexpected` flag from `entries` (deny by default).
    pub fn evaluate(mut self, entries: &[Entry]) -> Self {
        for m in &mut self.members {
            m.unexpected = is_unexpected(entries, &m.member_id, &m.urn);
        }
        self
    }

    pub fn unexpected_count(&self) -> usize {
        self.members.iter().filter(|m| m.unexpected).count()
    }
}

/// Everything known about one image. Replaced whole, never mutated.
#[derive(Debug, Clone)]
pub struct ImageState {
    pub key: ImageKey,
    pub meta: ImageMeta,
    /// The last good member list; `None` until a poll has succeeded.
    pub members: Option<Arc<MemberSet>>,
    /// Watched members by ID: present (shared) or not, from the last good poll.
    pub watched: BTreeMap<String, bool>,
    /// `None` before the first poll ended.
    pub last_poll_ok: Option<bool>,
    pub last_success_unix: Option<f64>,
    /// Failed polls by reason, since the exporter started.
    pub errors: BTreeMap<Reason, u64>,
    /// Member changes seen by the audit, by kind.
    pub changes: BTreeMap<ChangeKind, u64>,
}

/// A kind of member change the audit counts: the `change` label of
/// `ims_member_changes_total`, and its key in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Added,
    Removed,
    StatusChanged,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 3] = [
        ChangeKind::Added,
        ChangeKind::Removed,
        ChangeKind::StatusChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::StatusChanged => "status_changed",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What the exporter knows about an image besides its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    pub name: Arc<str>,
    pub source: Source,
}

impl ImageState {
    pub fn new(key: ImageKey, meta: ImageMeta) -> Self {
        ImageState {
            key,
            meta,
            members: None,
            watched: BTreeMap::new(),
            last_poll_ok: None,
            last_success_unix: None,
            errors: BTreeMap::new(),
            changes: BTreeMap::new(),
        }
    }

    pub fn succeeded(
        &self,
        members: MemberSet,
        watched: BTreeMap<String, bool>,
        now_unix: f64,
    ) -> Self {
        ImageState {
            members: Some(Arc::new(members)),
            watched,
            last_poll_ok: Some(true),
            last_success_unix: Some(now_unix),
            ..self.clone()
        }
    }

    /// Keeps the last good members (re-judged against the allowlist now in force) and
    /// records why this poll failed.
    pub fn failed(&self, reason: Reason, entries: &[Entry]) -> Self {
        let mut next = self.clone();
        next.last_poll_ok = Some(false);
        *next.errors.entry(reason).or_insert(0) += 1;
        if let Some(m) = &self.members {
            let judged = (**m).clone().evaluate(entries);
            if judged != **m {
                next.members = Some(Arc::new(judged));
            }
        }
        next
    }

    pub fn unexpected_count(&self) -> usize {
        self.members
            .as_ref()
            .map(|m| m.unexpected_count())
            .unwrap_or(0)
    }

    /// Members held for this image (what counts against `max_members_total`).
    pub fn member_count(&self) -> usize {
        self.members.as_ref().map(|m| m.members.len()).unwrap_or(0)
    }
}

/// A slot per monitored image. The `Arc<Slot>` is what the poller holds while polling.
#[derive(Debug)]
pub struct Slot {
    pub key: ImageKey,
    state: ArcSwap<ImageState>,
    /// The store's count of members held, kept current as states are swapped.
    held: Arc<AtomicUsize>,
    /// The store's generation, bumped when what the state file keeps changes.
    generation: Arc<AtomicU64>,
    /// No longer in the store (a poll that ends after a reload dropped the image
    /// must not count its members).
    retired: AtomicBool,
}

impl Slot {
    fn new(key: ImageKey, state: ImageState, store: &Store) -> Slot {
        Slot {
            key,
            state: ArcSwap::from_pointee(state),
            held: store.held.clone(),
            generation: store.generation.clone(),
            retired: AtomicBool::new(false),
        }
    }

    pub fn load(&self) -> Arc<ImageState> {
        self.state.load_full()
    }

    pub fn store(&self, state: ImageState) {
        let new = state.member_count();
        let previous = self.state.swap(Arc::new(state));
        let current = self.state.load();
        let kept = |s: &ImageState| (s.last_success_unix, s.watched.len(), s.meta.clone());
        if !same_members(&previous.members, &current.members)
            || kept(&previous) != kept(&current)
            || previous.watched != current.watched
        {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        let old = previous.member_count();
        if !self.retired.load(Ordering::Acquire) && new != old {
            if new > old {
                self.held.fetch_add(new - old, Ordering::AcqRel);
            } else {
                self.held.fetch_sub(old - new, Ordering::AcqRel);
            }
        }
    }
}

fn same_members(a: &Option<Arc<MemberSet>>, b: &Option<Arc<MemberSet>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// What a scrape renders from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub images: Vec<Arc<ImageState>>,
    pub targets: Vec<Arc<TargetStatus>>,
    /// (provider kind, expiry) of temporary credentials in use.
    pub credential_expiry: Vec<(&'static str, f64)>,
    pub member_metrics: bool,
    pub shard: Shard,
}

impl Snapshot {
    /// Wall time of the slowest target's last complete poll cycle: how long one round
    /// over every image takes.
    pub fn last_cycle_seconds(&self) -> Option<f64> {
        self.targets
            .iter()
            .filter_map(|t| t.last_cycle_seconds)
            .reduce(f64::max)
    }
}

/// The outcome of the last discovery of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryStatus {
    pub ok: bool,
    /// Images the last good discovery found (after filters).
    pub images: usize,
    pub last_success_unix: Option<f64>,
}

/// What is known about one target (region and project) as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub region: Arc<str>,
    pub project_id: Arc<str>,
    /// `None` for a target without `discover:` or before its first discovery.
    pub discovery: Option<DiscoveryStatus>,
    /// Wall time of the target's last complete poll cycle.
    pub last_cycle_seconds: Option<f64>,
    /// What the last good discovery found, (image ID, name), for the state file.
    pub discovered: Option<Arc<Vec<(String, String)>>>,
}

/// One target's status, replaced whole; the discovery and poll schedules of the
/// target both write it, hence read-copy-update.
#[derive(Debug)]
pub struct TargetSlot {
    status: ArcSwap<TargetStatus>,
}

impl TargetSlot {
    pub fn update(&self, f: impl Fn(&mut TargetStatus)) {
        self.status.rcu(|old| {
            let mut next = (**old).clone();
            f(&mut next);
            next
        });
    }

    pub fn load(&self) -> Arc<TargetStatus> {
        self.status.load_full()
    }
}

#[derive(Debug, Default)]
pub struct Store {
    slots: ArcSwap<Vec<Arc<Slot>>>,
    /// (provider kind, expiry) of the temporary credentials in use, as the app last
    /// published them: values, so a scrape never calls into a provider.
    credential_expiry: ArcSwap<Vec<(&'static str, f64)>>,
    /// `member_metrics: false` turns this on: no per-member series.
    no_member_metrics: AtomicBool,
    /// (index, count) of this replica.
    shard: ArcSwap<Shard>,
    targets: ArcSwap<Vec<Arc<TargetSlot>>>,
    ready: AtomicBool,
    /// Members held across all images (checked against `max_members_total`).
    held: Arc<AtomicUsize>,
    /// Bumped whenever what `--storage.path` keeps changes.
    generation: Arc<AtomicU64>,
    /// Woken when a target finishes a poll cycle (the state writer waits on it).
    cycles: tokio::sync::Notify,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_shard(&self, shard: Shard) {
        self.shard.store(Arc::new(shard));
    }

    pub fn set_member_metrics(&self, on: bool) {
        self.no_member_metrics.store(!on, Ordering::Relaxed);
    }

    /// Publishes the expiry of the temporary credentials in use.
    pub fn set_credential_expiry(&self, expiry: Vec<(&'static str, f64)>) {
        if **self.credential_expiry.load() != expiry {
            self.credential_expiry.store(Arc::new(expiry));
        }
    }

    /// Sets which targets exist, keeping the status of those that stay.
    pub fn set_targets(&self, keys: &[(Arc<str>, Arc<str>)]) -> Vec<Arc<TargetSlot>> {
        let old = self.targets.load();
        let slots: Vec<Arc<TargetSlot>> = keys
            .iter()
            .map(|(region, project_id)| {
                old.iter()
                    .find(|t| {
                        let s = t.load();
                        &s.region == region && &s.project_id == project_id
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(TargetSlot {
                            status: ArcSwap::from_pointee(TargetStatus {
                                region: region.clone(),
                                project_id: project_id.clone(),
                                discovery: None,
                                last_cycle_seconds: None,
                                discovered: None,
                            }),
                        })
                    })
            })
            .collect();
        self.targets.store(Arc::new(slots.clone()));
        slots
    }

    /// Sets which images are monitored. Images that stay keep their state; images no
    /// longer listed stop being exported at once.
    pub fn set_images(&self, images: &[(ImageKey, ImageMeta)]) -> Vec<Arc<Slot>> {
        let old = self.slots.load();
        let by_key: std::collections::HashMap<&ImageKey, &Arc<Slot>> =
            old.iter().map(|s| (&s.key, s)).collect();
        let slots: Vec<Arc<Slot>> = images
            .iter()
            .map(|(k, meta)| match by_key.get(k) {
                Some(slot) => {
                    let state = slot.load();
                    if &state.meta != meta {
                        slot.store(ImageState {
                            meta: meta.clone(),
                            ..(*state).clone()
                        });
                    }
                    Arc::clone(slot)
                }
                None => Arc::new(Slot::new(
                    k.clone(),
                    ImageState::new(k.clone(), meta.clone()),
                    self,
                )),
            })
            .collect();
        let kept: std::collections::HashSet<&ImageKey> = slots.iter().map(|s| &s.key).collect();
        for gone in old.iter().filter(|s| !kept.contains(&s.key)) {
            gone.retired.store(true, Ordering::Release);
        }
        self.slots.store(Arc::new(slots.clone()));
        // Counted afresh whenever the image set changes, so nothing can drift.
        let held = slots.iter().map(|s| s.load().member_count()).sum();
        self.held.store(held, Ordering::Release);
        slots
    }

    /// Members held across all images.
    pub fn members_held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Puts restored image states in place before the first poller registers its
    /// images: those it keeps are served at once (and their first poll is diffed
    /// against them); the others are dropped by its first `set_images`.
    pub fn restore(&self, states: Vec<ImageState>) {
        let slots: Vec<Arc<Slot>> = states
            .into_iter()
            .map(|s| Arc::new(Slot::new(s.key.clone(), s, self)))
            .collect();
        let held = slots.iter().map(|s| s.load().member_count()).sum();
        self.slots.store(Arc::new(slots));
        self.held.store(held, Ordering::Release);
    }

    /// Changes whenever what the state file keeps changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Completes when a target finishes its next poll cycle.
    pub async fn cycle_ended(&self) {
        self.cycles.notified().await
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            images: self.slots.load().iter().map(|s| s.load()).collect(),
            targets: self.targets.load().iter().map(|t| t.load()).collect(),
            credential_expiry: (**self.credential_expiry.load()).clone(),
            member_metrics: !self.no_member_metrics.load(Ordering::Relaxed),
            shard: **self.shard.load(),
        }
    }

    /// Records a finished poll cycle of `target`; the exporter is ready once every
    /// target has finished one (and stays ready across reloads).
    pub fn cycle_finished(&self, target: &TargetSlot, seconds: f64) {
        target.update(|s| s.last_cycle_seconds = Some(seconds));
        self.cycles.notify_waiters();
        if self
            .targets
            .load()
            .iter()
            .all(|t| t.load().last_cycle_seconds.is_some())
        {
            self.ready.store(true, Ordering::Release);
        }
    }

    /// True once a full poll cycle has finished (readiness).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ImageKey {
        ImageKey {
            region: "r".into(),
            project_id: "p".into(),
            image_id: id.into(),
        }
    }

    fn meta() -> ImageMeta {
        ImageMeta {
            name: "n".into(),
            source: Source::Config,
        }
    }

    fn member(id: &str, status: &str, created: Option<&str>) -> Member {
        Member {
            member_id: id.into(),
            member_type: Some("project".into()),
            status: Some(status.into()),
            created_at: created.map(str::to_string),
            updated_at: None,
            image_id: None,
            schema: None,
            urn: None,
        }
    }

    #[test]
    fn bad_timestamp_keeps_member() {
        let set = MemberSet::from_api(vec![
            member("b", "accepted", Some("garbage")),
            member("a", "pending", Some("2023-08-23T04:07:52Z")),
        ]);
        assert_eq!(set.members.len(), 2);
        assert_eq!(set.members[0].member_id, "a");
        assert_eq!(set.members[1].created_at, None);
        assert_eq!(set.bad_timestamps, 1);
        assert_eq!(set.counts[&("project".into(), "accepted".into())], 1);
    }

    #[test]
    fn the_copy_listed_last_wins_whatever_the_size() {
        // An unstable sort picked by list size; check sizes on both sides of its
        // small-slice cut-off.
        for n in [2usize, 5, 20, 21, 100, 5000] {
            let mut listed: Vec<Member> = (0..n)
                .map(|i| member(&format!("m{:05}", i % (n / 2).max(1)), "pending", None))
                .collect();
            // The later copy of each ID says accepted.
            let mut seen = std::collections::HashSet::new();
            for m in listed.iter_mut() {
                if !seen.insert(m.member_id.clone()) {
                    m.status = Some("accepted".into());
                }
            }
            let set = MemberSet::from_api(listed);
            assert_eq!(set.members.len(), (n / 2).max(1), "n={n}");
            assert_eq!(set.duplicates, n - (n / 2).max(1), "n={n}");
            assert!(
                set.members.iter().all(|m| m.status == "accepted"),
                "n={n}: the later copy wins"
            );
        }
    }

    #[test]
    fn failure_keeps_last_good_members() {
        let s = ImageState::new(key("i"), meta()).succeeded(
            MemberSet::from_api(vec![member("a", "accepted", None)]),
            BTreeMap::new(),
            10.0,
        );
        let f = s.failed(Reason::Http5xx, &[]).failed(Reason::Http5xx, &[]);
        assert_eq!(f.members, s.members);
        assert_eq!(f.last_poll_ok, Some(false));
        assert_eq!(f.last_success_unix, Some(10.0));
        assert_eq!(f.errors[&Reason::Http5xx], 2);
    }

    #[test]
    fn set_images_carries_state_and_drops_removed() {
        let store = Store::new();
        let slots = store.set_images(&[(key("a"), meta()), (key("b"), meta())]);
        slots[0].store(ImageState::new(key("a"), meta()).failed(Reason::Timeout, &[]));
        store.set_images(&[(key("a"), meta()), (key("c"), meta())]);
        let snap = store.snapshot();
        let ids: Vec<_> = snap
            .images
            .iter()
            .map(|s| s.key.image_id.to_string())
            .collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(snap.images[0].last_poll_ok, Some(false));
        assert!(!store.ready());
    }

    #[test]
    fn ready_when_every_target_finished_a_cycle_and_stays_ready() {
        let store = Store::new();
        let t = |r: &str| (Arc::<str>::from(r), Arc::<str>::from("p"));
        let slots = store.set_targets(&[t("a"), t("b")]);
        store.cycle_finished(&slots[0], 1.0);
        assert!(!store.ready());
        store.cycle_finished(&slots[1], 3.0);
        assert!(store.ready());
        assert_eq!(store.snapshot().last_cycle_seconds(), Some(3.0));
        // A target added by a reload keeps its place; readiness is not lost.
        let slots = store.set_targets(&[t("a"), t("c")]);
        assert_eq!(slots[0].load().last_cycle_seconds, Some(1.0));
        assert!(store.ready());
    }
}
