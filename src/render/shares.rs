//! Who can boot which image, as rows a person (or a script) reads: one row per share,
//! unexpected shares first, filtered and paged; and one row per image with its poll
//! health; and the most recent member changes (and images no longer monitored, and
//! changes to the images shared with us, `direction: incoming`). Built
//! from one snapshot; the JSON API serves it (schema version 1, in
//! docs/share-browser-and-api.md#json-api), and the
//! field names are a contract.

use std::sync::Arc;

use serde::Serialize;

use crate::state::{
    ChangeEvent, ChangeLog, ImageKey, ImageState, MemberRecord, Snapshot, MEMBER_TYPES, STATUSES,
};

/// The schema version of the JSON API.
pub const SCHEMA_VERSION: u32 = 1;
/// Rows per page unless asked otherwise, and at most.
pub const DEFAULT_PER_PAGE: usize = 100;
pub const MAX_PER_PAGE: usize = 1000;

/// Which shares to list (query parameters of `/api/v1/shares`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareFilter {
    /// An image ID or name (exact).
    pub image: Option<String>,
    /// A member type, whatever its case.
    pub member_type: Option<String>,
    /// A status, whatever its case.
    pub status: Option<String>,
    pub unexpected_only: bool,
}

/// `value` as its documented spelling among `documented` when it is one of them in
/// another case (`Accepted` → `accepted`), else as it is.
pub(crate) fn documented(value: Option<String>, documented: &[&str]) -> Option<String> {
    value.map(
        |v| match documented.iter().find(|d| d.eq_ignore_ascii_case(&v)) {
            Some(d) => d.to_string(),
            None => v,
        },
    )
}

impl ShareFilter {
    /// The same filter with a documented type or status in its documented spelling,
    /// so that links and the share browser's boxes show the filter in force.
    pub fn canonical(self) -> ShareFilter {
        ShareFilter {
            member_type: documented(self.member_type, &MEMBER_TYPES),
            status: documented(self.status, &STATUSES),
            ..self
        }
    }

    fn image_matches(&self, s: &ImageState) -> bool {
        self.image_is(&s.key.image_id, &s.meta.name)
    }

    fn image_is(&self, id: &str, name: &str) -> bool {
        self.image.as_deref().is_none_or(|i| id == i || name == i)
    }

    fn member_matches(&self, m: &MemberRecord) -> bool {
        // Case-insensitive, as the API's own values may not be lower case either.
        self.member_type
            .as_deref()
            .is_none_or(|t| m.member_type().eq_ignore_ascii_case(t))
            && self
                .status
                .as_deref()
                .is_none_or(|st| m.status().eq_ignore_ascii_case(st))
            && (!self.unexpected_only || m.unexpected)
    }
}

/// Which share a row is about: the image and the member (inlined in the JSON).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareOf {
    pub region: String,
    pub project_id: String,
    pub image_id: String,
    pub image_name: String,
    pub member_id: String,
    pub member_type: String,
}

impl ShareOf {
    fn new(key: &ImageKey, image_name: &str, member_id: &str, member_type: &str) -> ShareOf {
        ShareOf {
            region: key.region.to_string(),
            project_id: key.project_id.to_string(),
            image_id: key.image_id.to_string(),
            image_name: image_name.to_string(),
            member_id: member_id.to_string(),
            member_type: member_type.to_string(),
        }
    }
}

/// One share.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShareRow {
    #[serde(flatten)]
    pub of: ShareOf,
    pub status: String,
    /// Organization members only; `null` otherwise.
    pub urn: Option<String>,
    /// `created_at`, RFC 3339 (UTC), or `null` when the API did not say.
    pub shared_since: Option<String>,
    /// `updated_at`, likewise.
    pub updated_at: Option<String>,
    /// No applicable allowlist entry matches the member.
    pub unexpected: bool,
}

/// One page of shares.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SharePage {
    pub version: u32,
    /// Shares matching the filter, on all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub shares: Vec<ShareRow>,
}

/// One image and its poll health.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageRow {
    pub region: String,
    pub project_id: String,
    pub image_id: String,
    pub name: String,
    /// `config` or `discovery`.
    pub source: &'static str,
    /// `null` before the first poll ended.
    pub last_poll_ok: Option<bool>,
    pub last_success: Option<String>,
    /// The `reason` of the last failed poll, if any poll failed.
    pub last_error_reason: Option<&'static str>,
    /// `null` until a poll succeeded.
    pub members: Option<usize>,
    pub unexpected_members: usize,
    /// Watched members that are not shared with the image.
    pub watched_missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageList {
    pub version: u32,
    pub images: Vec<ImageRow>,
}

/// One member change the audit saw, or an image that stopped being monitored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChangeRow {
    /// When the poll that saw it ended (when the image stopped being monitored), RFC
    /// 3339 (UTC).
    pub time: Option<String>,
    /// `added`, `removed`, `status_changed` or `image_unmonitored`.
    pub change: &'static str,
    /// `outgoing` (a share of one of our images) or `incoming` (an image another
    /// tenant shares with one of our projects).
    pub direction: &'static str,
    /// For `image_unmonitored` and `incoming`, `member_id` and `member_type` are empty
    /// strings.
    #[serde(flatten)]
    pub of: ShareOf,
    /// For `incoming`: the tenant that shares the image; `null` otherwise.
    pub owner: Option<String>,
    /// The status after the change; for `removed`, the last status seen; empty for
    /// `image_unmonitored`.
    pub status: String,
    /// The status before a `status_changed`; `null` otherwise.
    pub old_status: Option<String>,
    /// Whether the member was unexpected; for `image_unmonitored`, whether any of the
    /// image's members was; for `incoming`, whether no trusted owner entry matched the
    /// owner.
    pub unexpected: bool,
    /// For `image_unmonitored`: the members the image had; `null` otherwise.
    pub members: Option<usize>,
    /// For `image_unmonitored`: how many of them were unexpected at its last poll
    /// (`null` when no poll judged them since the exporter restored them); `null`
    /// otherwise.
    pub unexpected_members: Option<usize>,
    /// The Cloud Trace Service trace whose poll found the change, who made the call
    /// and from where; `null` for a change a scheduled poll found (never guessed).
    pub trace_id: Option<String>,
    pub actor: Option<String>,
    pub source_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChangeList {
    pub version: u32,
    /// Newest first.
    pub changes: Vec<ChangeRow>,
}

/// Changes shown unless asked otherwise.
pub const DEFAULT_CHANGES: usize = 50;

/// Up to `limit` of the most recent changes to images matching `filter`'s image,
/// newest first (the other filters are about current shares and do not apply).
pub fn changes(log: &ChangeLog, filter: &ShareFilter, limit: usize) -> ChangeList {
    let events: Vec<Arc<ChangeEvent>> =
        log.recent(limit, |e| filter.image_is(&e.key.image_id, &e.image_name));
    ChangeList {
        version: SCHEMA_VERSION,
        changes: events
            .iter()
            .map(|e| ChangeRow {
                time: rfc3339(e.time_unix),
                change: e.kind.change(),
                direction: e.kind.direction(),
                of: ShareOf::new(&e.key, &e.image_name, &e.member_id, &e.member_type),
                owner: e.owner.clone(),
                status: e.status.to_string(),
                old_status: e.old_status.as_ref().map(|s| s.to_string()),
                unexpected: e.unexpected,
                members: e.counts.map(|c| c.members),
                unexpected_members: e.counts.and_then(|c| c.unexpected),
                trace_id: e.by.as_ref().map(|b| b.trace_id.clone()),
                actor: e.by.as_ref().and_then(|b| b.actor.clone()),
                source_ip: e.by.as_ref().and_then(|b| b.source_ip.clone()),
            })
            .collect(),
    }
}

/// RFC 3339 in UTC, to the second; `null` in the JSON (never a panic) for a time that
/// has none (NaN, an infinity, before 1970, after 9999).
pub fn rfc3339(unix: f64) -> Option<String> {
    crate::timestamp::format_rfc3339(unix)
}

/// The shares matching `filter`, unexpected first; the rest in a stable order (the
/// store keeps images in config order and members sorted by ID).
fn matching<'s>(
    snap: &'s Snapshot,
    filter: &ShareFilter,
) -> Vec<(&'s ImageState, &'s MemberRecord)> {
    let mut matching: Vec<(&ImageState, &MemberRecord)> = snap
        .images
        .iter()
        .filter(|s| filter.image_matches(s))
        .filter_map(|s| s.members.as_deref().map(|m| (&**s, m)))
        .flat_map(|(s, set)| {
            set.members
                .iter()
                .filter(|m| filter.member_matches(m))
                .map(move |m| (s, m))
        })
        .collect();
    matching.sort_by_key(|(_, m)| !m.unexpected);
    matching
}

fn row(s: &ImageState, m: &MemberRecord) -> ShareRow {
    ShareRow {
        of: ShareOf::new(&s.key, &s.meta.name, &m.member_id(), m.member_type()),
        status: m.status().to_string(),
        urn: (!m.urn().is_empty()).then(|| m.urn().to_string()),
        shared_since: m.created_at().and_then(rfc3339),
        updated_at: m.updated_at().and_then(rfc3339),
        unexpected: m.unexpected,
    }
}

/// Page `page` (1-based) of `per_page` rows (clamped to 1..=[`MAX_PER_PAGE`]) of the
/// shares matching `filter`; only that page's rows are built.
pub fn shares(snap: &Snapshot, filter: &ShareFilter, page: usize, per_page: usize) -> SharePage {
    let matching = matching(snap, filter);
    let (rows, page, per_page) = paged(&matching, page, per_page, |(s, m)| row(s, m));
    SharePage {
        version: SCHEMA_VERSION,
        total: matching.len(),
        page,
        per_page,
        shares: rows,
    }
}

/// Page `page` (1-based, at least 1) of `per_page` rows (clamped to
/// 1..=[`MAX_PER_PAGE`]) of `matching`, only that page's rows built by `row`; with the
/// page and page size in force.
pub(super) fn paged<T, R>(
    matching: &[T],
    page: usize,
    per_page: usize,
    row: impl Fn(&T) -> R,
) -> (Vec<R>, usize, usize) {
    let per_page = per_page.clamp(1, MAX_PER_PAGE);
    let page = page.max(1);
    let rows = matching
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(row)
        .collect();
    (rows, page, per_page)
}

/// Every share, unexpected first (reports).
pub fn all_shares(snap: &Snapshot) -> Vec<ShareRow> {
    matching(snap, &ShareFilter::default())
        .into_iter()
        .map(|(s, m)| row(s, m))
        .collect()
}

/// Every monitored image with its poll health.
pub fn images(snap: &Snapshot) -> ImageList {
    ImageList {
        version: SCHEMA_VERSION,
        images: snap
            .images
            .iter()
            .map(|s| ImageRow {
                region: s.key.region.to_string(),
                project_id: s.key.project_id.to_string(),
                image_id: s.key.image_id.to_string(),
                name: s.meta.name.to_string(),
                source: s.meta.source.as_str(),
                last_poll_ok: s.last_poll_ok,
                last_success: s.last_success_unix.and_then(rfc3339),
                last_error_reason: s.last_error.map(|r| r.as_str()),
                members: s.members.as_ref().map(|m| m.members.len()),
                unexpected_members: s.unexpected_count(),
                watched_missing: s
                    .watched
                    .iter()
                    .filter(|(_, present)| !**present)
                    .map(|(id, _)| id.clone())
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(member_type: &'static str, status: &'static str) -> MemberRecord {
        let mut record = MemberRecord::new("m", Some(member_type), Some(status), None, None, None);
        record.unexpected = false;
        record
    }

    #[test]
    fn type_and_status_match_whatever_the_case() {
        let f = |t: &str, s: &str| ShareFilter {
            member_type: Some(t.into()),
            status: Some(s.into()),
            ..ShareFilter::default()
        };
        assert!(f("Project", "ACCEPTED").member_matches(&record("project", "accepted")));
        assert!(f("project", "accepted").member_matches(&record("Project", "Accepted")));
        assert!(!f("project", "pending").member_matches(&record("project", "accepted")));
        assert_eq!(
            f("PROJECT", "Accepted").canonical(),
            f("project", "accepted")
        );
        assert_eq!(f("Other", "Odd").canonical(), f("Other", "Odd"));
    }

    #[test]
    fn a_time_without_rfc3339_text_is_null() {
        assert_eq!(
            rfc3339(1_692_763_672.0).as_deref(),
            Some("2023-08-23T04:07:52Z")
        );
        // Issue 19: a restored 1e13 made every page that showed it panic.
        for t in [1e12, 1e13, 1e15, 1e19, 1e300, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(rfc3339(t), None, "{t}");
        }
    }

    proptest! {
        #[test]
        fn rfc3339_never_panics(t in proptest::num::f64::ANY) {
            if let Some(text) = rfc3339(t) {
                prop_assert_eq!(text.len(), 20);
            }
        }
    }
}
