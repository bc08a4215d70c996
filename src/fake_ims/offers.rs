//! The recipient's view of sharing: `GET /v2/cloudimages?__imagetype=shared`, the
//! images other tenants offer to the project named by `X-Project-Id`, with their
//! `owner`. Filtered by our `member_status` (`pending`, `accepted`, `rejected`),
//! sorted by image ID and paged by `limit` (1..=1000, 500 by default as the SDK
//! documents) and `marker` (the last image ID of the previous page; one the project
//! was never offered is refused).
//!
//! The answer is `{"images": [...]}` and nothing else: no `page_info` or `next`
//! link, so a client pages by the last ID until a short page, which works whatever
//! the real API adds. Nor does an image carry `member_status`: the docs leave open
//! whether the real one does, so a client must take the status from its query.
//!
//! Like the other handlers it starts with the gateway's prologue
//! ([`shared_prologue`]) and must not check signatures or write error bodies itself.

// Handlers return a ready `Response` as their error: it is what gets sent.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::ops::Bound;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::gateway::{
    ims_error, json_response, parse_limit, parse_query, query_value, request_id, shared_prologue,
};
use super::state::{FakeState, Fault, Offer, SharedQuery};

/// The page size without `limit` (ListImagesRequest's documented default).
const DEFAULT_LIMIT: usize = 500;
/// The member statuses `member_status` takes.
const STATUSES: [&str; 3] = ["pending", "accepted", "rejected"];
/// Image IDs of [`Fault::Flood`]'s endless pages: this prefix and a 12-hex counter.
const FLOOD_PREFIX: &str = "f1000000-0000-4000-8000-";
/// The owner of the flood's images.
const FLOOD_OWNER: &str = "f100df100df100df100df100df100df1";

/// A listing's query, checked.
struct OfferQuery {
    limit: usize,
    marker: Option<String>,
    member_status: Option<String>,
    /// `visibility` is absent or `shared`: offers are what it asks for.
    shared: bool,
}

/// What [`FakeState::shared_queries`] keeps of a request, before any check.
fn recorded(query: &[(String, String)], project_id: Option<&str>) -> SharedQuery {
    let get = |k: &str| query_value(query, k);
    SharedQuery {
        project_id: project_id.map(str::to_string),
        member_status: get("member_status").map(str::to_string),
        limit: get("limit").and_then(|v| v.parse().ok()),
        marker: get("marker").map(str::to_string),
    }
}

/// `GET /v2/cloudimages` with `__imagetype=shared`. A request without `X-Project-Id`
/// is signed-checked like any other (no project: no shared fault applies), then
/// refused with a 400.
pub(super) async fn list_offers(
    state: &FakeState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let rid = request_id();
    let query = parse_query(uri.query());
    let project_id = headers
        .get("x-project-id")
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.is_empty());
    let record = recorded(&query, project_id);
    let key = project_id.unwrap_or("");
    let fault = match shared_prologue(state, method, uri, headers, key, record, &rid).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let Some(project_id) = project_id else {
        return bad_request(&rid, "X-Project-Id header is required");
    };
    let q = match parse(&query, &rid) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    if let Some(Fault::Flood(per_page)) = fault {
        return flood_page(per_page, &q, &rid);
    }
    let inner = state.lock();
    let empty = BTreeMap::new();
    let offers = inner.offers.get(project_id).unwrap_or(&empty);
    page_of(offers, &q, fault, &rid)
}

/// Checks the query as IMS does; `Err` is the 400 answer.
fn parse(query: &[(String, String)], rid: &str) -> Result<OfferQuery, Response> {
    let get = |k: &str| query_value(query, k);
    let limit = parse_limit(get("limit"), DEFAULT_LIMIT, rid)?;
    let member_status = match get("member_status") {
        None => None,
        Some(s) if STATUSES.contains(&s) => Some(s.to_string()),
        Some(s) => {
            let message = format!("member_status {s:?} is not accepted, rejected or pending");
            return Err(bad_request(rid, &message));
        }
    };
    Ok(OfferQuery {
        limit,
        marker: get("marker").filter(|m| !m.is_empty()).map(str::to_string),
        member_status,
        shared: get("visibility").is_none_or(|v| v == "shared"),
    })
}

impl OfferQuery {
    /// Whether an offer passes the filters.
    fn matches(&self, offer: &Offer) -> bool {
        self.shared
            && self
                .member_status
                .as_deref()
                .is_none_or(|s| offer.member_status == s)
    }
}

/// The page `q` asks for of `offers` (one project's, by image ID).
fn page_of(
    offers: &BTreeMap<String, Offer>,
    q: &OfferQuery,
    fault: Option<Fault>,
    rid: &str,
) -> Response {
    // The marker is looked up among all the project's offers: a page boundary stays
    // valid when that image's status changes between pages.
    let after = match &q.marker {
        None => Bound::Unbounded,
        Some(m) if offers.contains_key(m) => Bound::Excluded(m.as_str()),
        Some(m) => {
            let message = format!("marker {m:?} is not an image offered to the project");
            return bad_request(rid, &message);
        }
    };
    let skipped = match after {
        Bound::Excluded(m) => offers
            .range::<str, _>((Bound::Unbounded, Bound::Included(m)))
            .filter(|(_, o)| q.matches(o))
            .count(),
        _ => 0,
    };
    if fault == Some(Fault::FailPage(skipped.div_ceil(q.limit))) {
        return ims_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            rid,
            "IMG.0999",
            "injected page fault",
        );
    }
    let page: Vec<Value> = offers
        .range::<str, _>((after, Bound::Unbounded))
        .filter(|(_, o)| q.matches(o))
        .take(q.limit)
        .map(|(id, o)| offer_json(id, &o.name, &o.owner))
        .collect();
    json_response(StatusCode::OK, rid, json!({ "images": page }).to_string())
}

/// An offered image as IMS lists it to the recipient: the sharing tenant's `owner`,
/// no `member_status`.
fn offer_json(id: &str, name: &str, owner: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "owner": owner,
        "status": "active",
        "visibility": "shared",
        "__imagetype": "shared",
        "protected": false,
        "__os_type": "Linux",
        "min_disk": 40,
        "min_ram": 0,
        "disk_format": "zvhd2",
        "container_format": "bare",
        "tags": [],
        "self": format!("/v2/images/{id}"),
        "file": format!("/v2/images/{id}/file"),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

/// A page of [`Fault::Flood`]: `per_page` new images after the marker, whatever
/// `limit` says; every page is full, so a client paging by the last ID never ends.
fn flood_page(per_page: usize, q: &OfferQuery, rid: &str) -> Response {
    let start: u64 = q
        .marker
        .as_deref()
        .and_then(|m| m.strip_prefix(FLOOD_PREFIX))
        .and_then(|n| u64::from_str_radix(n, 16).ok())
        .map_or(0, |n| n.saturating_add(1));
    let images: Vec<Value> = (start..start.saturating_add(per_page as u64))
        .map(|i| {
            let id = format!("{FLOOD_PREFIX}{i:012x}");
            offer_json(&id, &format!("flood-{i}"), FLOOD_OWNER)
        })
        .collect();
    json_response(StatusCode::OK, rid, json!({ "images": images }).to_string())
}

/// IMS's answer to a query it does not take.
fn bad_request(rid: &str, message: &str) -> Response {
    ims_error(StatusCode::BAD_REQUEST, rid, "IMG.0001", message)
}
