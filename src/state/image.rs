//! Everything known about one image, replaced whole by each poll: its key, name and
//! source, last good members, watched members, poll outcome, error and change counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::allowlist::Entry;
use crate::ids::Source;
use crate::ims::error::Reason;
use crate::ims::listing::ListingPrint;

use super::members::MemberSet;

/// Identifies one monitored image; the label values every per-image series carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageKey {
    pub region: Arc<str>,
    pub project_id: Arc<str>,
    pub image_id: Arc<str>,
}

/// Everything known about one image. Replaced whole, never mutated.
#[derive(Debug, Clone)]
pub struct ImageState {
    pub key: ImageKey,
    pub meta: ImageMeta,
    /// The last good member list; `None` until a poll has succeeded.
    pub members: Option<Arc<MemberSet>>,
    /// The answer `members` came from, so that the same answer is known without
    /// decoding it (not in the state file: after a restart the first poll decodes).
    pub listing: Option<Arc<ListingPrint>>,
    /// The allowlist entries `members` were judged against.
    pub judged_with: Option<Arc<Vec<Entry>>>,
    /// Watched members by ID: present (shared) or not, from the last good poll.
    pub watched: BTreeMap<String, bool>,
    /// `None` before the first poll ended.
    pub last_poll_ok: Option<bool>,
    pub last_success_unix: Option<f64>,
    /// Failed polls by reason, since the exporter started.
    pub errors: BTreeMap<Reason, u64>,
    /// Why the last failed poll failed (kept after a later success).
    pub last_error: Option<Reason>,
    /// Member changes seen by the audit, by kind.
    pub changes: BTreeMap<ChangeKind, u64>,
}

/// A kind of change the change log holds, and its name in the state file and the
/// JSON API. The member changes are what the audit counts (the `change` label of
/// `ims_member_changes_total`); `ImageUnmonitored` is an image that stopped being
/// monitored while it had members, which no counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Added,
    Removed,
    StatusChanged,
    ImageUnmonitored,
    /// An image offered to a target's project (`incoming:`) appeared, went, or our
    /// status for it changed.
    IncomingAdded,
    IncomingRemoved,
    IncomingStatusChanged,
}

impl ChangeKind {
    /// The member changes, counted per image by `ims_member_changes_total`.
    pub const MEMBER: [ChangeKind; 3] = [
        ChangeKind::Added,
        ChangeKind::Removed,
        ChangeKind::StatusChanged,
    ];
    /// Every kind.
    pub const ALL: [ChangeKind; 7] = [
        ChangeKind::Added,
        ChangeKind::Removed,
        ChangeKind::StatusChanged,
        ChangeKind::ImageUnmonitored,
        ChangeKind::IncomingAdded,
        ChangeKind::IncomingRemoved,
        ChangeKind::IncomingStatusChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::StatusChanged => "status_changed",
            ChangeKind::ImageUnmonitored => "image_unmonitored",
            ChangeKind::IncomingAdded => "incoming_added",
            ChangeKind::IncomingRemoved => "incoming_removed",
            ChangeKind::IncomingStatusChanged => "incoming_status_changed",
        }
    }

    /// A change to an image shared with us (not to one of ours).
    pub fn is_incoming(self) -> bool {
        matches!(
            self,
            ChangeKind::IncomingAdded
                | ChangeKind::IncomingRemoved
                | ChangeKind::IncomingStatusChanged
        )
    }

    /// `outgoing` (our images' shares) or `incoming` (images shared with us).
    pub fn direction(self) -> &'static str {
        if self.is_incoming() {
            "incoming"
        } else {
            "outgoing"
        }
    }

    /// The change as the API and the pages name it, whatever its direction: `added`,
    /// `removed`, `status_changed`, `image_unmonitored`.
    pub fn change(self) -> &'static str {
        match self {
            ChangeKind::IncomingAdded => "added",
            ChangeKind::IncomingRemoved => "removed",
            ChangeKind::IncomingStatusChanged => "status_changed",
            other => other.as_str(),
        }
    }

    /// A change to one member (not to the image as a whole).
    pub fn is_member(self) -> bool {
        Self::MEMBER.contains(&self)
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
            listing: None,
            judged_with: None,
            watched: BTreeMap::new(),
            last_poll_ok: None,
            last_success_unix: None,
            errors: BTreeMap::new(),
            last_error: None,
            changes: BTreeMap::new(),
        }
    }

    /// A good poll's state; the caller sets where the members came from
    /// ([`Self::listing`], [`Self::judged_with`]) if it knows.
    pub fn succeeded(
        &self,
        members: impl Into<Arc<MemberSet>>,
        watched: BTreeMap<String, bool>,
        now_unix: f64,
    ) -> Self {
        ImageState {
            members: Some(members.into()),
            listing: None,
            judged_with: None,
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
        next.last_error = Some(reason);
        *next.errors.entry(reason).or_insert(0) += 1;
        next.members = self.members_judged(entries);
        if !self.was_judged_against(entries) {
            next.judged_with = None;
        }
        next
    }

    /// The kept members judged against `entries`: the same `Arc` when that changes
    /// nothing (they were judged against them already, or no verdict moves).
    pub fn members_judged(&self, entries: &[Entry]) -> Option<Arc<MemberSet>> {
        let members = self.members.as_ref()?;
        if self.was_judged_against(entries) {
            return Some(members.clone());
        }
        let judged = (**members).clone().evaluate(entries);
        Some(match judged == **members {
            true => members.clone(),
            false => Arc::new(judged),
        })
    }

    /// Whether the members were judged against `entries`.
    fn was_judged_against(&self, entries: &[Entry]) -> bool {
        self.judged_with.as_deref().is_some_and(|j| **j == *entries)
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
