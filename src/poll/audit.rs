//! The change audit: what changed in an image's member list between two good polls,
//! as one structured log event per change (`member_added`, `member_removed`,
//! `member_status_changed`) and counts for `ims_member_changes_total`.
//!
//! The first good poll of an image is a baseline: one line, not a flood of `added`.
//! An image that stops being monitored (a reload dropped it from the config, discovery
//! no longer lists it) while it had members is one line too (`image_unmonitored`), so
//! the history says why its shares are no longer seen. Changes are also kept as
//! [`ChangeEvent`]s for the share browser.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::state::{
    Attribution, ChangeEvent, ChangeKind, ImageKey, ImageState, MemberCounts, MemberRecord,
    MemberSet,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    Added(&'a MemberRecord),
    Removed(&'a MemberRecord),
    StatusChanged {
        old: &'a MemberRecord,
        new: &'a MemberRecord,
    },
}

impl Change<'_> {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::Added(_) => ChangeKind::Added,
            Change::Removed(_) => ChangeKind::Removed,
            Change::StatusChanged { .. } => ChangeKind::StatusChanged,
        }
    }
}

/// Changes from `old` to `new`; both are sorted by member ID.
pub fn diff<'a>(old: &'a MemberSet, new: &'a MemberSet) -> Vec<Change<'a>> {
    let (mut i, mut j) = (0, 0);
    let (a, b) = (&old.members, &new.members);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        // A list that has ended sorts after every member of the other.
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.cmp_id(y),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Equal => {
                if a[i].status() != b[j].status() {
                    out.push(Change::StatusChanged {
                        old: &a[i],
                        new: &b[j],
                    });
                }
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                out.push(Change::Removed(&a[i]));
                i += 1;
            }
            Ordering::Greater => {
                out.push(Change::Added(&b[j]));
                j += 1;
            }
        }
    }
    out
}

/// The changes as events to keep, all at `time_unix`.
pub fn events(
    key: &ImageKey,
    image_name: &Arc<str>,
    changes: &[Change<'_>],
    time_unix: f64,
    by: Option<Arc<Attribution>>,
) -> Vec<ChangeEvent> {
    changes
        .iter()
        .map(|c| {
            let (m, old) = match c {
                Change::Added(m) | Change::Removed(m) => (*m, None),
                Change::StatusChanged { old, new } => (*new, Some(old.status_label())),
            };
            ChangeEvent {
                by: by.clone(),
                ..ChangeEvent::new(time_unix, c.kind(), key, image_name, m, old)
            }
        })
        .collect()
}

/// Logs each change as one info event with everything a reviewer needs; with the
/// trace that triggered the poll (`trace_id`, `actor`, `source_ip`) when one did.
pub fn log(key: &ImageKey, image_name: &str, changes: &[Change<'_>], by: Option<&Attribution>) {
    // Absent (not empty) without a trace: a scheduled poll's change names nobody.
    let trace_id = by.map(|b| b.trace_id.as_str());
    let actor = by.and_then(|b| b.actor.as_deref());
    let source_ip = by.and_then(|b| b.source_ip.as_deref());
    for c in changes {
        let (m, old_status) = match c {
            Change::Added(m) | Change::Removed(m) => (*m, ""),
            Change::StatusChanged { old, new } => (*new, old.status()),
        };
        let event = match c {
            Change::Added(_) => "member_added",
            Change::Removed(_) => "member_removed",
            Change::StatusChanged { .. } => "member_status_changed",
        };
        tracing::info!(
            event,
            region = %key.region,
            project_id = %key.project_id,
            image_id = %key.image_id,
            image_name,
            member_id = %m.member_id(),
            member_type = %m.member_type(),
            urn = %m.urn(),
            status = %m.status(),
            old_status,
            unexpected = m.unexpected,
            trace_id,
            actor,
            source_ip,
            "image share changed"
        );
    }
}

/// The first good poll of an image: one line with what is there.
pub fn log_baseline(key: &ImageKey, image_name: &str, set: &MemberSet) {
    tracing::info!(
        event = "baseline",
        region = %key.region,
        project_id = %key.project_id,
        image_id = %key.image_id,
        image_name,
        members = set.members.len(),
        unexpected = set.unexpected_count(),
        "image shares baseline"
    );
}

/// An image that is no longer monitored: one info line and one event, if its last
/// member list had any member (an image never polled, or shared with nobody, has no
/// share to explain). The unexpected count is the last poll's; a list restored from the
/// state file that no poll judged since has none (`unexpected=unknown`).
pub fn unmonitored(state: &ImageState, time_unix: f64) -> Option<ChangeEvent> {
    let set = state.members.as_deref().filter(|m| !m.members.is_empty())?;
    let counts = MemberCounts {
        members: set.members.len(),
        unexpected: state.last_poll_ok.map(|_| set.unexpected_count()),
    };
    let key = &state.key;
    let image_name = &*state.meta.name;
    match counts.unexpected {
        Some(unexpected) => tracing::info!(
            event = "image_unmonitored",
            region = %key.region,
            project_id = %key.project_id,
            image_id = %key.image_id,
            image_name,
            members = counts.members,
            unexpected,
            "image no longer monitored; its shares are no longer seen"
        ),
        None => tracing::info!(
            event = "image_unmonitored",
            region = %key.region,
            project_id = %key.project_id,
            image_id = %key.image_id,
            image_name,
            members = counts.members,
            unexpected = "unknown",
            "image no longer monitored; its shares are no longer seen"
        ),
    }
    Some(ChangeEvent::image_unmonitored(
        time_unix,
        key,
        &state.meta.name,
        counts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::model::Member;

    fn set(members: &[(&str, &str)]) -> MemberSet {
        MemberSet::from_api(
            members
                .iter()
                .map(|(id, status)| Member {
                    member_id: id.to_string(),
                    member_type: Some("project".into()),
                    status: Some(status.to_string()),
                    created_at: None,
                    updated_at: None,
                    image_id: None,
                    schema: None,
                    urn: None,
                })
                .collect(),
        )
    }

    fn state(members: Option<MemberSet>, polled: bool) -> ImageState {
        let key = ImageKey {
            region: "r".into(),
            project_id: "p".into(),
            image_id: "i".into(),
        };
        let meta = crate::state::ImageMeta {
            name: "golden".into(),
            source: crate::ids::Source::Config,
        };
        let mut s = ImageState::new(key, meta);
        s.members = members.map(Arc::new);
        s.last_poll_ok = polled.then_some(true);
        s
    }

    #[test]
    fn an_image_unmonitored_with_members_is_one_event() {
        // Judged at its last poll: a allowed, b unexpected.
        let judged = set(&[("a", "accepted"), ("b", "pending")])
            .evaluate(&[crate::allowlist::Entry::parse("a").unwrap()]);
        let e = unmonitored(&state(Some(judged.clone()), true), 5.0).expect("an event");
        assert_eq!(e.kind, ChangeKind::ImageUnmonitored);
        assert_eq!(e.kind.as_str(), "image_unmonitored");
        assert_eq!(
            e.counts,
            Some(MemberCounts {
                members: 2,
                unexpected: Some(1)
            })
        );
        assert!(e.unexpected);
        assert_eq!(
            (e.member_id.as_str(), &*e.member_type, &*e.status),
            ("", "", "")
        );
        assert_eq!((e.time_unix, &*e.image_name), (5.0, "golden"));
        // Restored from the state file and never judged since: unknown.
        let e = unmonitored(&state(Some(judged), false), 5.0).expect("an event");
        assert_eq!(e.counts.unwrap().unexpected, None);
        assert!(!e.unexpected);
        // Nothing to explain: never polled, or shared with nobody.
        assert_eq!(unmonitored(&state(None, false), 5.0), None);
        assert_eq!(unmonitored(&state(Some(set(&[])), true), 5.0), None);
    }

    #[test]
    fn added_removed_and_status_changes() {
        let old = set(&[("a", "pending"), ("b", "accepted"), ("d", "accepted")]);
        let new = set(&[
            ("a", "accepted"),
            ("c", "pending"),
            ("d", "accepted"),
            ("e", "rejected"),
        ]);
        let kinds: Vec<(&str, String)> = diff(&old, &new)
            .iter()
            .map(|c| {
                let id = match c {
                    Change::Added(m) | Change::Removed(m) => m.member_id(),
                    Change::StatusChanged { new, .. } => new.member_id(),
                };
                (c.kind().as_str(), id.to_string())
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("status_changed", "a".to_string()),
                ("removed", "b".to_string()),
                ("added", "c".to_string()),
                ("added", "e".to_string())
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }
}
