//! One image's member list as exported: records, counts by type and status, and
//! the documented member types and statuses.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::member_id::{hex_bytes, hex_text, MemberIdText};
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

/// What a type or status code says when the value is kept in [`Rare`] instead.
const OTHER: u8 = u8::MAX;

/// A timestamp as whole seconds since the epoch, or one of these two.
type Stamp = u32;
/// No timestamp.
const NO_STAMP: Stamp = Stamp::MAX;
/// The timestamp is not whole seconds between 1970 and 2106: kept in [`Rare`].
const RARE_STAMP: Stamp = Stamp::MAX - 1;

/// One member as exported. Missing strings read as `""` (urn) or `"unknown"`.
///
/// Kept small because a fleet holds a million of these: a project or account ID (32
/// lowercase hex digits) as its 16 bytes, the type and status as codes of the
/// documented values, the timestamps as whole seconds, and whatever is rare (a URN,
/// another ID, an undocumented type or status, a fraction of a second) behind one
/// pointer. 40 bytes and no allocation for a project or account member.
#[derive(Clone)]
pub struct MemberRecord {
    /// The ID's bytes when `hex_id`; zeros when the ID is kept in [`Rare`].
    id: [u8; 16],
    rare: Option<Box<Rare>>,
    created_at: Stamp,
    updated_at: Stamp,
    /// Index into `["unknown", MEMBER_TYPES..]`, or [`OTHER`].
    member_type: u8,
    /// Index into `["unknown", STATUSES..]`, or [`OTHER`].
    status: u8,
    /// The ID is 32 lowercase hex digits, kept in `id`. An ID that can be is, so two
    /// records have the same ID exactly when they agree on this and on `id` or
    /// [`Rare::id`].
    hex_id: bool,
    /// No allowlist entry that applies to the image matches this member.
    pub unexpected: bool,
}

/// The parts few members have.
#[derive(Clone, Default, PartialEq)]
struct Rare {
    id: Option<Box<str>>,
    urn: Option<Box<str>>,
    member_type: Option<Box<str>>,
    status: Option<Box<str>>,
    /// Timestamps a [`Stamp`] cannot hold.
    created_at: Option<f64>,
    updated_at: Option<f64>,
}

/// A timestamp as a [`Stamp`]; [`RARE_STAMP`] when it is not whole seconds in range.
fn stamp(t: Option<f64>) -> Stamp {
    match t.filter(|t| !t.is_nan()) {
        None => NO_STAMP,
        Some(t) if t.fract() == 0.0 && (0.0..f64::from(RARE_STAMP)).contains(&t) => t as Stamp,
        Some(_) => RARE_STAMP,
    }
}

/// A [`Stamp`] as seconds (`exact`: the timestamp kept in [`Rare`]).
fn seconds(stamp: Stamp, exact: Option<f64>) -> Option<f64> {
    match stamp {
        NO_STAMP => None,
        RARE_STAMP => exact,
        s => Some(f64::from(s)),
    }
}

/// The code of a documented `value` among `known`, else [`OTHER`] (0 is unknown).
fn code(known: &[&str; 3], value: Option<&str>) -> u8 {
    match value.filter(|s| !s.is_empty() && *s != UNKNOWN) {
        None => 0,
        Some(v) => known
            .iter()
            .position(|k| *k == v)
            .map_or(OTHER, |i| i as u8 + 1),
    }
}

/// A code as a [`Label`]: a shared static unless the value is kept in [`Rare`].
fn decode(known: &[&'static str; 3], code: u8, other: Option<&str>) -> Label {
    match other.filter(|_| code == OTHER) {
        Some(v) => Cow::Owned(v.to_string()),
        None => Cow::Borrowed(known_str(known, code, None)),
    }
}

/// The value a code stands for (`other`: the value kept in [`Rare`]).
fn known_str<'a>(known: &[&'static str; 3], code: u8, other: Option<&'a str>) -> &'a str {
    match (code, other) {
        (OTHER, Some(v)) => v,
        (1..=3, _) => known[code as usize - 1],
        _ => UNKNOWN,
    }
}

impl MemberRecord {
    /// A record (not yet judged: `unexpected` until [`MemberSet::evaluate`]).
    pub fn new(
        member_id: &str,
        member_type: Option<&str>,
        status: Option<&str>,
        urn: Option<&str>,
        created_at: Option<f64>,
        updated_at: Option<f64>,
    ) -> Self {
        let mut rare = Rare::default();
        let hex = hex_bytes(member_id);
        if hex.is_none() {
            rare.id = Some(member_id.into());
        }
        let type_code = code(&MEMBER_TYPES, member_type);
        if type_code == OTHER {
            rare.member_type = member_type.map(Into::into);
        }
        let status_code = code(&STATUSES, status);
        if status_code == OTHER {
            rare.status = status.map(Into::into);
        }
        rare.urn = urn.filter(|u| !u.is_empty()).map(Into::into);
        let (created_stamp, updated_stamp) = (stamp(created_at), stamp(updated_at));
        if created_stamp == RARE_STAMP {
            rare.created_at = created_at;
        }
        if updated_stamp == RARE_STAMP {
            rare.updated_at = updated_at;
        }
        MemberRecord {
            id: hex.unwrap_or_default(),
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
            created_at: created_stamp,
            updated_at: updated_stamp,
            member_type: type_code,
            status: status_code,
            hex_id: hex.is_some(),
            unexpected: true,
        }
    }

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
        let record = MemberRecord::new(
            &m.member_id,
            m.member_type.as_deref(),
            m.status.as_deref(),
            m.urn.as_deref(),
            created_at,
            updated_at,
        );
        (record, bad)
    }

    pub fn member_id(&self) -> MemberIdText<'_> {
        match self.rare().and_then(|r| r.id.as_deref()) {
            Some(kept) => MemberIdText::Kept(kept),
            None => MemberIdText::Hex(hex_text(&self.id)),
        }
    }

    /// Whether both records are of the same member.
    pub fn same_id(&self, other: &Self) -> bool {
        self.hex_id == other.hex_id
            && if self.hex_id {
                self.id == other.id
            } else {
                self.member_id() == *other.member_id()
            }
    }

    /// Orders two records by member ID (byte order, as `str` orders). Two hex IDs
    /// compare by their bytes: lowercase hex digits sort as the values they stand for.
    pub fn cmp_id(&self, other: &Self) -> std::cmp::Ordering {
        if self.hex_id && other.hex_id {
            self.id.cmp(&other.id)
        } else {
            self.member_id().cmp(&other.member_id())
        }
    }

    fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    pub fn member_type(&self) -> &str {
        let other = self.rare().and_then(|r| r.member_type.as_deref());
        known_str(&MEMBER_TYPES, self.member_type, other)
    }

    pub fn status(&self) -> &str {
        let other = self.rare().and_then(|r| r.status.as_deref());
        known_str(&STATUSES, self.status, other)
    }

    /// The type as a [`Label`] (a shared static when documented).
    pub fn type_label(&self) -> Label {
        let other = self.rare().and_then(|r| r.member_type.as_deref());
        decode(&MEMBER_TYPES, self.member_type, other)
    }

    /// The status as a [`Label`] (a shared static when documented).
    pub fn status_label(&self) -> Label {
        let other = self.rare().and_then(|r| r.status.as_deref());
        decode(&STATUSES, self.status, other)
    }

    /// `""` when the member has none.
    pub fn urn(&self) -> &str {
        self.rare().and_then(|r| r.urn.as_deref()).unwrap_or("")
    }

    pub fn created_at(&self) -> Option<f64> {
        seconds(self.created_at, self.rare().and_then(|r| r.created_at))
    }

    pub fn updated_at(&self) -> Option<f64> {
        seconds(self.updated_at, self.rare().and_then(|r| r.updated_at))
    }
}

/// Field by field: a record's form is canonical (a value is kept in exactly one way),
/// so equal fields are equal members, and the commit compares whole lists cheaply.
impl PartialEq for MemberRecord {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.hex_id == other.hex_id
            && self.member_type == other.member_type
            && self.status == other.status
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
            && self.unexpected == other.unexpected
            && self.rare == other.rare
    }
}

impl std::fmt::Debug for MemberRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberRecord")
            .field("member_id", &&*self.member_id())
            .field("member_type", &self.member_type())
            .field("status", &self.status())
            .field("urn", &self.urn())
            .field("created_at", &self.created_at())
            .field("updated_at", &self.updated_at())
            .field("unexpected", &self.unexpected)
            .finish()
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
    /// No member's ID, type, status or URN has a byte that label values escape, so a
    /// scrape copies them as they are (found once per poll, not once per scrape).
    pub plain_labels: bool,
}

/// Whether `s` can be a label value as it is: no `\\`, `"` or line feed, the bytes
/// the exposition formats escape.
pub fn is_plain_label(s: &str) -> bool {
    // No early exit, so that it vectorises: label values are short.
    s.bytes().fold(0u8, |acc, b| {
        acc | u8::from(b == b'\\') | u8::from(b == b'"') | u8::from(b == b'\n')
    }) == 0
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
        records.sort_by(MemberRecord::cmp_id);
        let listed = records.len();
        records.reverse();
        records.dedup_by(|a, b| a.same_id(b));
        records.reverse();
        // Pages grow the list by doubling; a set lives a whole poll interval.
        records.shrink_to_fit();
        let duplicates = listed - records.len();
        // Counted by code, and only undocumented values by name.
        let mut by_code = [[0u64; 4]; 4];
        let mut counts = BTreeMap::new();
        for r in &records {
            match by_code
                .get_mut(usize::from(r.member_type))
                .and_then(|row| row.get_mut(usize::from(r.status)))
            {
                Some(n) => *n += 1,
                None => {
                    *counts
                        .entry((r.type_label(), r.status_label()))
                        .or_insert(0) += 1
                }
            }
        }
        for (t, row) in by_code.iter().enumerate() {
            for (s, &n) in row.iter().enumerate().filter(|(_, n)| **n > 0) {
                let key = (
                    decode(&MEMBER_TYPES, t as u8, None),
                    decode(&STATUSES, s as u8, None),
                );
                *counts.entry(key).or_insert(0) += n;
            }
        }
        let plain_labels = records.iter().all(|r| {
            (r.hex_id || is_plain_label(&r.member_id()))
                && is_plain_label(r.member_type())
                && is_plain_label(r.status())
                && is_plain_label(r.urn())
        });
        MemberSet {
            members: records,
            counts,
            bad_timestamps,
            duplicates,
            complete: true,
            plain_labels,
        }
    }

    /// Sets each member's `unexpected` flag from `entries` (deny by default).
    pub fn evaluate(mut self, entries: &[Entry]) -> Self {
        for m in &mut self.members {
            m.unexpected = is_unexpected(entries, &m.member_id(), m.urn());
        }
        self
    }

    pub fn unexpected_count(&self) -> usize {
        self.members.iter().filter(|m| m.unexpected).count()
    }
}
