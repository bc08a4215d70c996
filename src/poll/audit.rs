//! The change audit: what changed in an image's member list between two good polls,
//! as one structured log event per change (`member_added`, `member_removed`,
//! `member_status_changed`) and counts for `ims_member_changes_total`.
//!
//! The first good poll of an image is a baseline: one line, not a flood of `added`.
//! Changes are also kept as [`ChangeEvent`]s for the share browser.

use std::sync::Arc;

use crate::state::{ChangeEvent, ChangeKind, ImageKey, MemberRecord, MemberSet};

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
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.member_id == y.member_id => {
                if x.status != y.status {
                    out.push(Change::StatusChanged { old: x, new: y });
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.member_id < y.member_id => {
                out.push(Change::Removed(x));
                i += 1;
            }
            (Some(x), None) => {
                out.push(Change::Removed(x));
                i += 1;
            }
            (_, Some(y)) => {
                out.push(Change::Added(y));
                j += 1;
            }
            (None, None) => break,
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
) -> Vec<ChangeEvent> {
    changes
        .iter()
        .map(|c| {
            let (m, old) = match c {
                Change::Added(m) | Change::Removed(m) => (*m, None),
                Change::StatusChanged { old, new } => (*new, Some(&old.status)),
            };
            ChangeEvent::new(time_unix, c.kind(), key, image_name, m, old)
        })
        .collect()
}

/// Logs each change as one info event with everything a reviewer needs.
pub fn log(key: &ImageKey, image_name: &str, changes: &[Change<'_>]) {
    for c in changes {
        let (m, old_status) = match c {
            Change::Added(m) | Change::Removed(m) => (*m, ""),
            Change::StatusChanged { old, new } => (*new, &*old.status),
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
            member_id = %m.member_id,
            member_type = %m.member_type,
            urn = %m.urn,
            status = %m.status,
            old_status,
            unexpected = m.unexpected,
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

    #[test]
    fn added_removed_and_status_changes() {
        let old = set(&[("a", "pending"), ("b", "accepted"), ("d", "accepted")]);
        let new = set(&[
            ("a", "accepted"),
            ("c", "pending"),
            ("d", "accepted"),
            ("e", "rejected"),
        ]);
        let kinds: Vec<(&str, &str)> = diff(&old, &new)
            .iter()
            .map(|c| {
                let id = match c {
                    Change::Added(m) | Change::Removed(m) => m.member_id.as_str(),
                    Change::StatusChanged { new, .. } => new.member_id.as_str(),
                };
                (c.kind().as_str(), id)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("status_changed", "a"),
                ("removed", "b"),
                ("added", "c"),
                ("added", "e")
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }
}
