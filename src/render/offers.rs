//! Images other tenants share with our projects (`incoming:`), as rows a person or a
//! script reads: one row per offered image, untrusted owners first, filtered and paged,
//! for `GET /api/v1/incoming`, the share browser's "Shared with us" section and the
//! reports. Built from one snapshot (each target's last good listing); schema version 1
//! like the other endpoints (docs/share-browser-and-api.md#json-api), and the field
//! names are a contract.

use serde::Serialize;

use super::shares::{documented, paged, rfc3339, SCHEMA_VERSION};
use crate::state::{Offer, Snapshot, TargetStatus, STATUSES};

/// Which offers to list (query parameters of `/api/v1/incoming`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingFilter {
    /// The owner (the sharing tenant), exact.
    pub owner: Option<String>,
    /// Our member status, whatever its case.
    pub status: Option<String>,
    /// Only trusted (`true`) or only untrusted (`false`) owners.
    pub trusted: Option<bool>,
}

impl IncomingFilter {
    /// The same filter with a documented status in its documented spelling, so that
    /// links and the share browser's boxes show the filter in force.
    pub fn canonical(self) -> IncomingFilter {
        IncomingFilter {
            status: documented(self.status, &STATUSES),
            ..self
        }
    }

    fn matches(&self, o: &Offer) -> bool {
        self.owner.as_deref().is_none_or(|w| o.owner == w)
            && self
                .status
                .as_deref()
                .is_none_or(|s| o.member_status.eq_ignore_ascii_case(s))
            && self.trusted.is_none_or(|t| o.trusted == t)
    }

    /// No filter is in force.
    pub fn is_empty(&self) -> bool {
        *self == IncomingFilter::default()
    }
}

/// One image offered to one of our projects.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncomingRow {
    /// The target (region and project) the image is shared with.
    pub region: String,
    pub project_id: String,
    pub image_id: String,
    pub image_name: String,
    /// The tenant that shares it.
    pub owner: String,
    /// Our status for it: `pending`, `accepted` or `rejected`.
    pub member_status: &'static str,
    /// A trusted owner entry matches `owner`.
    pub trusted: bool,
    /// When the exporter first listed it, RFC 3339 (UTC).
    pub first_seen: Option<String>,
}

/// One page of offers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncomingPage {
    pub version: u32,
    /// Offers matching the filter, on all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub incoming: Vec<IncomingRow>,
}

/// Whether any target lists the images shared with it (its listing is on).
pub fn listed(snap: &Snapshot) -> bool {
    snap.targets.iter().any(|t| t.incoming.is_some())
}

/// The offers matching `filter`: untrusted first, then by region, project and image.
fn matching<'s>(snap: &'s Snapshot, filter: &IncomingFilter) -> Vec<(&'s TargetStatus, &'s Offer)> {
    let mut matching: Vec<(&TargetStatus, &Offer)> = snap
        .targets
        .iter()
        .filter_map(|t| t.incoming.as_ref().map(|i| (&**t, i)))
        .flat_map(|(t, i)| i.offers.iter().flat_map(|o| o.iter()).map(move |o| (t, o)))
        .filter(|(_, o)| filter.matches(o))
        .collect();
    matching.sort_by(|(ta, a), (tb, b)| {
        (a.trusted, &ta.region, &ta.project_id, &a.image_id).cmp(&(
            b.trusted,
            &tb.region,
            &tb.project_id,
            &b.image_id,
        ))
    });
    matching
}

fn row(t: &TargetStatus, o: &Offer) -> IncomingRow {
    IncomingRow {
        region: t.region.to_string(),
        project_id: t.project_id.to_string(),
        image_id: o.image_id.clone(),
        image_name: o.image_name.clone(),
        owner: o.owner.clone(),
        member_status: o.member_status,
        trusted: o.trusted,
        first_seen: rfc3339(o.first_seen),
    }
}

/// Page `page` (1-based) of `per_page` rows (clamped as for the shares) of the
/// offers matching `filter`; only that page's rows are built.
pub fn incoming(
    snap: &Snapshot,
    filter: &IncomingFilter,
    page: usize,
    per_page: usize,
) -> IncomingPage {
    let matching = matching(snap, filter);
    let (rows, page, per_page) = paged(&matching, page, per_page, |(t, o)| row(t, o));
    IncomingPage {
        version: SCHEMA_VERSION,
        total: matching.len(),
        page,
        per_page,
        incoming: rows,
    }
}

/// Every offer, untrusted first (reports).
pub fn all_incoming(snap: &Snapshot) -> Vec<IncomingRow> {
    matching(snap, &IncomingFilter::default())
        .into_iter()
        .map(|(t, o)| row(t, o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::IncomingStatus;
    use std::sync::Arc;

    fn offer(id: &str, owner: &str, status: &'static str, trusted: bool) -> Offer {
        Offer {
            image_id: id.into(),
            image_name: format!("name-{id}"),
            owner: owner.into(),
            member_status: status,
            trusted,
            first_seen: 1_692_763_672.0,
        }
    }

    fn target(region: &str, project: &str, offers: Option<Vec<Offer>>) -> Arc<TargetStatus> {
        Arc::new(TargetStatus {
            region: region.into(),
            project_id: project.into(),
            discovery: None,
            last_cycle_seconds: None,
            discovered: None,
            cts: None,
            incoming: Some(IncomingStatus {
                ok: Some(true),
                last_success_unix: Some(1.0),
                offers: offers.map(Arc::new),
                restored: false,
            }),
        })
    }

    fn snap() -> Snapshot {
        Snapshot {
            images: Vec::new(),
            targets: vec![
                target(
                    "r2",
                    "p",
                    Some(vec![
                        offer("a", "o1", "accepted", true),
                        offer("b", "o2", "pending", false),
                    ]),
                ),
                target(
                    "r1",
                    "p",
                    Some(vec![
                        offer("c", "o1", "rejected", true),
                        offer("d", "o3", "accepted", false),
                    ]),
                ),
                target("r0", "p", None),
            ],
        }
    }

    fn ids(rows: &[IncomingRow]) -> Vec<&str> {
        rows.iter().map(|r| r.image_id.as_str()).collect()
    }

    #[test]
    fn untrusted_first_then_by_region_project_image() {
        let s = snap();
        assert_eq!(ids(&all_incoming(&s)), ["d", "b", "c", "a"]);
        let first = &all_incoming(&s)[0];
        assert_eq!(first.first_seen.as_deref(), Some("2023-08-23T04:07:52Z"));
        assert_eq!((first.region.as_str(), first.owner.as_str()), ("r1", "o3"));
        assert!(listed(&s));
    }

    #[test]
    fn filters_and_pages() {
        let s = snap();
        let f = |owner: Option<&str>, status: Option<&str>, trusted: Option<bool>| {
            IncomingFilter {
                owner: owner.map(str::to_string),
                status: status.map(str::to_string),
                trusted,
            }
            .canonical()
        };
        let rows = |f: IncomingFilter| incoming(&s, &f, 1, 100).incoming;
        assert_eq!(ids(&rows(f(Some("o1"), None, None))), ["c", "a"]);
        assert_eq!(ids(&rows(f(None, Some("ACCEPTED"), None))), ["d", "a"]);
        assert_eq!(ids(&rows(f(None, None, Some(false)))), ["d", "b"]);
        assert_eq!(ids(&rows(f(Some("O1"), None, None))), [] as [&str; 0]);
        assert_eq!(
            f(None, Some("Pending"), None).status.as_deref(),
            Some("pending")
        );
        let page = incoming(&s, &IncomingFilter::default(), 2, 3);
        assert_eq!((page.total, page.page, page.per_page), (4, 2, 3));
        assert_eq!(ids(&page.incoming), ["a"]);
    }
}
