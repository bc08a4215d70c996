//! The most recent member changes the audit saw (added, removed, status changed), and
//! the images that stopped being monitored while they had members (image_unmonitored),
//! for the share browser and `/api/v1/changes`. Bounded: the oldest event is dropped
//! once [`MAX_CHANGES`] are held, so a flapping share cannot grow memory. The state file
//! keeps them, so a restart does not forget what happened before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::image::{ChangeKind, ImageKey};
use super::members::{Label, MemberRecord};

/// Changes held in memory and in the state file.
pub const MAX_CHANGES: usize = 1000;

/// How many members an image had when it stopped being monitored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCounts {
    pub members: usize,
    /// Members no allowlist entry matched at the image's last poll; `None` when the
    /// list was restored from the state file and dropped before any poll judged it.
    pub unexpected: Option<usize>,
}

/// Who made a change, from the trace whose poll found it. A change found by a
/// scheduled poll has none: it is never guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub trace_id: String,
    /// `user.name` of the trace, else `user.id`.
    pub actor: Option<String>,
    pub source_ip: Option<String>,
}

/// One change to one share, or an image that stopped being monitored
/// ([`ChangeKind::ImageUnmonitored`]: no member, empty member fields, `counts` set).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// When the poll that saw it ended, or when the image stopped being monitored
    /// (Unix seconds).
    pub time_unix: f64,
    pub kind: ChangeKind,
    pub key: ImageKey,
    pub image_name: Arc<str>,
    pub member_id: String,
    pub member_type: Label,
    /// The status after the change (before it, for a removal).
    pub status: Label,
    /// The status before a status change.
    pub old_status: Option<Label>,
    /// Whether the member was unexpected (judged by the allowlist at that poll); for an
    /// image, whether any of its members was.
    pub unexpected: bool,
    /// The image's members, for an image event; `None` for a member change.
    pub counts: Option<MemberCounts>,
    /// The trace that triggered the poll that found it, if one did.
    pub by: Option<Arc<Attribution>>,
    /// For a change to an image shared with us: the tenant that shares it.
    pub owner: Option<String>,
}

impl ChangeEvent {
    pub fn new(
        time_unix: f64,
        kind: ChangeKind,
        key: &ImageKey,
        image_name: &Arc<str>,
        member: &MemberRecord,
        old_status: Option<Label>,
    ) -> ChangeEvent {
        ChangeEvent {
            time_unix,
            kind,
            key: key.clone(),
            image_name: image_name.clone(),
            member_id: member.member_id().to_string(),
            member_type: member.type_label(),
            status: member.status_label(),
            old_status,
            unexpected: member.unexpected,
            counts: None,
            by: None,
            owner: None,
        }
    }

    /// The image stopped being monitored at `time_unix` with these members.
    pub fn image_unmonitored(
        time_unix: f64,
        key: &ImageKey,
        image_name: &Arc<str>,
        counts: MemberCounts,
    ) -> ChangeEvent {
        ChangeEvent {
            time_unix,
            kind: ChangeKind::ImageUnmonitored,
            key: key.clone(),
            image_name: image_name.clone(),
            member_id: String::new(),
            member_type: Label::Borrowed(""),
            status: Label::Borrowed(""),
            old_status: None,
            unexpected: counts.unexpected.is_some_and(|n| n > 0),
            counts: Some(counts),
            by: None,
            owner: None,
        }
    }
}

/// The last [`MAX_CHANGES`] events, oldest first.
#[derive(Debug, Default)]
pub struct ChangeLog {
    events: Mutex<VecDeque<Arc<ChangeEvent>>>,
}

impl ChangeLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<ChangeEvent>>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `events` (in the order they happened), dropping the oldest beyond the cap.
    pub fn push(&self, events: impl IntoIterator<Item = ChangeEvent>) {
        let mut held = self.lock();
        for e in events {
            if held.len() == MAX_CHANGES {
                held.pop_front();
            }
            held.push_back(Arc::new(e));
        }
    }

    /// Every event held, oldest first.
    pub fn all(&self) -> Vec<Arc<ChangeEvent>> {
        self.lock().iter().cloned().collect()
    }

    /// Up to `limit` events matching `keep`, newest first.
    pub fn recent(
        &self,
        limit: usize,
        keep: impl Fn(&ChangeEvent) -> bool,
    ) -> Vec<Arc<ChangeEvent>> {
        self.lock()
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> ChangeEvent {
        ChangeEvent {
            time_unix: i as f64,
            kind: ChangeKind::Added,
            key: ImageKey {
                region: "r".into(),
                project_id: "p".into(),
                image_id: "i".into(),
            },
            image_name: "n".into(),
            member_id: format!("m{i}"),
            member_type: "project".into(),
            status: "pending".into(),
            old_status: None,
            unexpected: false,
            counts: None,
            by: None,
            owner: None,
        }
    }

    #[test]
    fn keeps_the_newest_up_to_the_cap() {
        let log = ChangeLog::default();
        log.push((0..MAX_CHANGES + 5).map(event));
        let all = log.all();
        assert_eq!(all.len(), MAX_CHANGES);
        assert_eq!(all[0].member_id, "m5");
        let recent = log.recent(2, |_| true);
        let ids: Vec<&str> = recent.iter().map(|e| e.member_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                format!("m{}", MAX_CHANGES + 4),
                format!("m{}", MAX_CHANGES + 3)
            ]
        );
        assert_eq!(log.recent(10, |e| e.member_id == "m7").len(), 1);
    }
}
