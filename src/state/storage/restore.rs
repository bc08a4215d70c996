//! From a parsed state file to what a start restores, checked against what this
//! exporter writes: the first value out of bounds (a time outside the years 2000–2199,
//! more members than the config's caps, more changes than are kept, a count past
//! 2^53, a member string longer than the API decoder accepts) refuses the whole file.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::format::{
    StateFile, StoredChange, StoredDiscovery, StoredImage, StoredIncoming, StoredMember,
    StoredTraceWindow, MAX_SEEN_TRACES,
};
use crate::ids::{IdError, ImageId, MemberId, ProjectId, Source};
use crate::ims::model::{MAX_MEMBER_ID_BYTES, MAX_MEMBER_LABEL_BYTES};
use crate::state::{
    label, Attribution, ChangeEvent, ChangeKind, ImageKey, ImageMeta, ImageState, Label,
    MemberCounts, MemberRecord, MemberSet, MAX_CHANGES,
};
use crate::timestamp;

/// Longest region read back (a config's region is a short name like `cn-north-4`).
const MAX_REGION_BYTES: usize = 1024;
/// Longest trace ID, actor or address kept (as the trace decoder allows).
const MAX_TRACE_FIELD_BYTES: usize = 512;
/// More trace windows than targets any config can hold.
const MAX_TRACE_WINDOWS: usize = 100_000;
/// More images shared with one target than `max_incoming_images` allows.
const MAX_OFFERS: usize = 1_000_000;
/// Most watched members one image may have: a config (at most 4 MiB) cannot name
/// more, at four bytes an entry.
const MAX_WATCHED: usize = (crate::files::MAX_CONFIG_BYTES / 4) as usize;
/// Largest count read back: beyond it an `f64` sample would lose counts, and an
/// increment could overflow.
const MAX_COUNT: u64 = 1 << 53;

/// The member caps of the config (`max_members_per_image`, `max_members_total`): a
/// state file holding more members is refused, and its size cap derives from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub members_per_image: usize,
    pub members_total: usize,
}

/// What a start restores.
#[derive(Debug, Default)]
pub struct Restored {
    pub images: Vec<ImageState>,
    pub discovered: Vec<StoredDiscovery>,
    /// Where each target's trace reads stood.
    pub traces: Vec<StoredTraceWindow>,
    /// Each target's last good list of images shared with it.
    pub incoming: Vec<StoredIncoming>,
    /// The most recent member changes, oldest first.
    pub changes: Vec<ChangeEvent>,
    /// When the file was written (Unix seconds).
    pub written_at: f64,
}

/// A value no exporter writes, and where it is (`images[3].members[7].created_at`).
#[derive(Debug, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct Invalid {
    pub at: String,
    pub problem: Problem,
}

impl Invalid {
    fn new(at: impl Into<String>, problem: Problem) -> Invalid {
        Invalid {
            at: at.into(),
            problem,
        }
    }

    /// The same problem, located under `prefix` (called on the error path only).
    fn under(mut self, prefix: impl std::fmt::Display) -> Invalid {
        self.at = format!("{prefix}.{}", self.at);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0:?} is not a time in the years 2000-2199")]
    Time(f64),
    #[error("{len} bytes, more than {max}")]
    TooLong { len: usize, max: usize },
    #[error("empty")]
    Empty,
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{0}, more than 2^53")]
    Count(u64),
    #[error("{count}, more than {limit} ({max})")]
    TooMany {
        count: usize,
        max: usize,
        limit: &'static str,
    },
    #[error("the same image as an earlier entry")]
    Duplicate,
    #[error("not pending, accepted or rejected")]
    Status,
}

/// Checks a parsed file against what this exporter writes, and converts it; the
/// first value out of bounds refuses the whole file.
pub(super) fn restore_file(file: StateFile, limits: Limits) -> Result<Restored, Invalid> {
    let written_at = time("written_at", file.written_at)?;
    let mut total = 0usize;
    let mut seen = HashSet::new();
    let mut images = Vec::with_capacity(file.images.len());
    for (i, image) in file.images.into_iter().enumerate() {
        total = total.saturating_add(image.members.len());
        if total > limits.members_total {
            let problem = Problem::TooMany {
                count: total,
                max: limits.members_total,
                limit: "max_members_total",
            };
            return Err(Invalid::new(format!("images[{i}].members"), problem));
        }
        let state = restore_image(image, limits).map_err(|e| e.under(format!("images[{i}]")))?;
        if !seen.insert(state.key.clone()) {
            return Err(Invalid::new(format!("images[{i}]"), Problem::Duplicate));
        }
        images.push(state);
    }
    at_most(
        "changes",
        file.changes.len(),
        MAX_CHANGES,
        "the changes kept",
    )?;
    let mut changes = Vec::with_capacity(file.changes.len());
    for (i, c) in file.changes.into_iter().enumerate() {
        if let Some(event) = restore_change(c).map_err(|e| e.under(format!("changes[{i}]")))? {
            changes.push(event);
        }
    }
    let (traces, incoming) = restore_targets(file.traces, file.incoming)?;
    Ok(Restored {
        images,
        discovered: file.discovered,
        traces,
        incoming,
        changes,
        written_at,
    })
}

fn restore_image(i: StoredImage, limits: Limits) -> Result<ImageState, Invalid> {
    let key = image_key(&i.region, &i.project_id, &i.image_id)?;
    let last_success = opt_time("last_success", i.last_success)?;
    at_most(
        "members",
        i.members.len(),
        limits.members_per_image,
        "max_members_per_image",
    )?;
    at_most(
        "watched",
        i.watched.len(),
        MAX_WATCHED,
        "a config's watched members",
    )?;
    for id in i.watched.keys() {
        text("watched", id, MAX_MEMBER_ID_BYTES)?;
        MemberId::parse(id).map_err(|e| Invalid::new("watched", e.into()))?;
    }
    let mut kinds = BTreeMap::new();
    for (k, v) in i.changes {
        // A kind this exporter does not know is dropped, not guessed at.
        if let Some(kind) = ChangeKind::parse(&k).filter(|k| k.is_member()) {
            kinds.insert(kind, count(|| format!("changes.{k}"), v)?);
        }
    }
    let source = if i.source == Source::Discovery.as_str() {
        Source::Discovery
    } else {
        Source::Config
    };
    let meta = ImageMeta {
        name: i.name.into(),
        source,
    };
    let mut records = Vec::with_capacity(i.members.len());
    for (j, m) in i.members.into_iter().enumerate() {
        records.push(restore_member(m).map_err(|e| e.under(format!("members[{j}]")))?);
    }
    let mut set = MemberSet::from_records(records, 0);
    set.complete = i.complete;
    let mut state = ImageState::new(key, meta);
    state.members = Some(Arc::new(set));
    state.last_success_unix = last_success;
    state.watched = i.watched;
    state.changes = kinds;
    Ok(state)
}

fn restore_member(m: StoredMember) -> Result<MemberRecord, Invalid> {
    member_id("id", &m.id)?;
    text("urn", &m.urn, MAX_MEMBER_ID_BYTES)?;
    text("type", &m.member_type, MAX_MEMBER_LABEL_BYTES)?;
    text("status", &m.status, MAX_MEMBER_LABEL_BYTES)?;
    Ok(MemberRecord::new(
        &m.id,
        Some(&m.member_type),
        Some(&m.status),
        Some(&m.urn),
        opt_time("created_at", m.created_at)?,
        opt_time("updated_at", m.updated_at)?,
    ))
}

/// The key of a restored image or change: as the config validated it.
fn image_key(region: &str, project_id: &str, image_id: &str) -> Result<ImageKey, Invalid> {
    text("region", region, MAX_REGION_BYTES)?;
    // Cut first: an ID error quotes the value.
    text("project_id", project_id, 64)?;
    text("image_id", image_id, 64)?;
    ProjectId::parse(project_id).map_err(|e| Invalid::new("project_id", e.into()))?;
    ImageId::parse(image_id).map_err(|e| Invalid::new("image_id", e.into()))?;
    Ok(ImageKey {
        region: region.into(),
        project_id: project_id.into(),
        image_id: image_id.into(),
    })
}

fn time(at: &'static str, t: f64) -> Result<f64, Invalid> {
    if timestamp::in_range(t) {
        Ok(t)
    } else {
        Err(Invalid::new(at, Problem::Time(t)))
    }
}

fn opt_time(at: &'static str, t: Option<f64>) -> Result<Option<f64>, Invalid> {
    t.map(|t| time(at, t)).transpose()
}

fn text(at: &'static str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        let problem = Problem::TooLong { len: s.len(), max };
        return Err(Invalid::new(at, problem));
    }
    Ok(())
}

fn member_id(at: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::new(at, Problem::Empty));
    }
    text(at, s, MAX_MEMBER_ID_BYTES)
}

fn count(at: impl FnOnce() -> String, n: u64) -> Result<u64, Invalid> {
    if n > MAX_COUNT {
        return Err(Invalid::new(at(), Problem::Count(n)));
    }
    Ok(n)
}

fn at_most(at: &'static str, n: usize, max: usize, limit: &'static str) -> Result<(), Invalid> {
    if n > max {
        let problem = Problem::TooMany {
            count: n,
            max,
            limit,
        };
        return Err(Invalid::new(at, problem));
    }
    Ok(())
}

/// An event of a kind this exporter does not know is dropped (`None`), not guessed at;
/// so is an image event without its member count.
fn restore_change(c: StoredChange) -> Result<Option<ChangeEvent>, Invalid> {
    let Some(kind) = ChangeKind::parse(&c.change) else {
        return Ok(None);
    };
    let time_unix = time("time", c.time)?;
    let key = image_key(&c.region, &c.project_id, &c.image_id)?;
    if kind.is_member() {
        member_id("member_id", &c.member_id)?;
    } else {
        text("member_id", &c.member_id, MAX_MEMBER_ID_BYTES)?;
    }
    text("member_type", &c.member_type, MAX_MEMBER_LABEL_BYTES)?;
    text("status", &c.status, MAX_MEMBER_LABEL_BYTES)?;
    if let Some(old) = &c.old_status {
        text("old_status", old, MAX_MEMBER_LABEL_BYTES)?;
    }
    // A member change names a member; an image event has none (empty fields).
    let as_label = |s: &str| -> Label {
        if kind.is_member() {
            label(Some(s))
        } else {
            Label::Owned(s.to_string())
        }
    };
    // Only an image that stopped being monitored carries counts.
    let counts = match (kind == ChangeKind::ImageUnmonitored, c.members) {
        (true, Some(members)) => Some(MemberCounts {
            members: count(|| "members".into(), members as u64)? as usize,
            unexpected: c.unexpected_members,
        }),
        (true, None) => return Ok(None),
        (false, _) => None,
    };
    if let Some(owner) = &c.owner {
        text("owner", owner, MAX_MEMBER_ID_BYTES)?;
    }
    let by = attribution(&c)?;
    Ok(Some(ChangeEvent {
        time_unix,
        kind,
        key,
        image_name: c.image_name.into(),
        member_id: c.member_id,
        member_type: as_label(&c.member_type),
        status: as_label(&c.status),
        old_status: c.old_status.map(|s| as_label(&s)),
        unexpected: c.unexpected,
        counts,
        by,
        owner: c.owner.clone(),
    }))
}

/// Who made a change, if a trace said so.
fn attribution(c: &StoredChange) -> Result<Option<Arc<Attribution>>, Invalid> {
    let Some(trace_id) = &c.trace_id else {
        return Ok(None);
    };
    text("trace_id", trace_id, MAX_TRACE_FIELD_BYTES)?;
    for (at, v) in [("actor", &c.actor), ("source_ip", &c.source_ip)] {
        if let Some(v) = v {
            text(at, v, MAX_TRACE_FIELD_BYTES)?;
        }
    }
    Ok(Some(Arc::new(Attribution {
        trace_id: trace_id.clone(),
        actor: c.actor.clone(),
        source_ip: c.source_ip.clone(),
    })))
}

/// The targets' trace windows and lists of images shared with them.
type Targets = (Vec<StoredTraceWindow>, Vec<StoredIncoming>);

fn restore_targets(
    traces: Vec<StoredTraceWindow>,
    incoming: Vec<StoredIncoming>,
) -> Result<Targets, Invalid> {
    at_most(
        "traces",
        traces.len(),
        MAX_TRACE_WINDOWS,
        "the trace windows",
    )?;
    let traces = traces
        .into_iter()
        .enumerate()
        .map(|(i, w)| restore_window(w).map_err(|e| e.under(format!("traces[{i}]"))))
        .collect::<Result<Vec<_>, Invalid>>()?;
    at_most(
        "incoming",
        incoming.len(),
        MAX_TRACE_WINDOWS,
        "the incoming lists",
    )?;
    let incoming = incoming
        .into_iter()
        .enumerate()
        .map(|(i, l)| restore_incoming(l).map_err(|e| e.under(format!("incoming[{i}]"))))
        .collect::<Result<Vec<_>, Invalid>>()?;
    Ok((traces, incoming))
}

/// Images shared with a target, as a listing would have them: at most the cap any
/// config allows, each field bounded, a known status, a time in range.
fn restore_incoming(l: StoredIncoming) -> Result<StoredIncoming, Invalid> {
    text("region", &l.region, MAX_REGION_BYTES)?;
    text("project_id", &l.project_id, MAX_REGION_BYTES)?;
    if let Some(t) = l.last_success {
        time("last_success", t)?;
    }
    at_most(
        "offers",
        l.offers.len(),
        MAX_OFFERS,
        "the images shared with a target",
    )?;
    for (i, o) in l.offers.iter().enumerate() {
        let at = |e: Invalid| e.under(format!("offers[{i}]"));
        text("image_id", &o.image_id, MAX_MEMBER_ID_BYTES).map_err(at)?;
        text("name", &o.name, MAX_MEMBER_ID_BYTES).map_err(at)?;
        text("owner", &o.owner, MAX_MEMBER_ID_BYTES).map_err(at)?;
        if crate::state::member_status(&o.member_status) == "unknown" {
            return Err(at(Invalid::new("member_status", Problem::Status)));
        }
        time("first_seen", o.first_seen).map_err(at)?;
    }
    Ok(l)
}

/// Where a target's trace reads stood: its window end within the years the exporter
/// accepts, at most [`MAX_SEEN_TRACES`] IDs, each bounded.
fn restore_window(w: StoredTraceWindow) -> Result<StoredTraceWindow, Invalid> {
    text("region", &w.region, MAX_REGION_BYTES)?;
    text("project_id", &w.project_id, MAX_REGION_BYTES)?;
    if let Some(to) = w.to_ms {
        time("to_ms", to as f64 / 1000.0)?;
    }
    at_most(
        "seen",
        w.seen.len(),
        MAX_SEEN_TRACES,
        "the trace IDs remembered",
    )?;
    for (i, (id, _)) in w.seen.iter().enumerate() {
        text("seen", id, MAX_TRACE_FIELD_BYTES).map_err(|e| e.under(format!("seen[{i}]")))?;
    }
    Ok(w)
}
