//! One image's member list as exported: records, counts by type and status, and
//! the documented member types and statuses.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::allowlist::{is_unexpected, Entry};
use crate::ims::model::{Member, MemberRef};
use crate::timestamp::parse_timestamp;

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
