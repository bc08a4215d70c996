//! The routes' answers once the gateway has let a request through: member list and
//! detail, image listing (`offers` answers its `__imagetype=shared` form), IAM
//! project listing, and the fallback for unknown paths; with the parsing of their
//! query parameters (`limit`, `marker`, filters).
//!
//! Each handler starts with the gateway's prologue (or [`authenticate`]) and must
//! not check signatures, inject faults or write error bodies itself: it picks the
//! IMS error code and message, [`ims_error`] formats them.

// Handlers return a ready `Response` as their error: it is what gets sent.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use serde_json::json;

use super::gateway::{
    authenticate, ims_error, json_response, parse_limit, parse_query, prologue, query_value,
    request_id,
};
use super::state::{FakeImage, FakeState, Fault};
use crate::ims::model::{Member, MemberList, PageInfo};

const DEFAULT_LIMIT: usize = 500;
const DEFAULT_IMAGES_LIMIT: usize = 25;

pub(super) async fn not_found(uri: Uri) -> Response {
    ims_error(
        StatusCode::NOT_FOUND,
        &request_id(),
        "IMG.0001",
        &format!("no such API: {}", uri.path()),
    )
}

/// A member-list `marker`: `None` when absent or empty; `Err` is the 400 answer.
fn parse_marker(value: Option<&str>, rid: &str) -> Result<Option<String>, Response> {
    // Markers are opaque to clients: Base64 of the last member ID of the previous page.
    match value {
        None | Some("") => Ok(None),
        Some(m) => base64::engine::general_purpose::STANDARD
            .decode(m)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| {
                ims_error(
                    StatusCode::BAD_REQUEST,
                    rid,
                    "IMG.0001",
                    "marker is not valid Base64",
                )
            }),
    }
}

pub(super) async fn list_members(
    State(state): State<FakeState>,
    Path((project_id, image_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    let fault = match prologue(&state, &method, &uri, &headers, &image_id, &rid).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let (limit, after) = match member_paging(&uri, &rid) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let inner = state.lock();
    let Some(image) = inner.images.get(&(project_id, image_id.clone())) else {
        return image_not_found(&rid, &image_id);
    };
    let page_index = after
        .as_ref()
        .map(|a| image.members.range(..=a.clone()).count().div_ceil(limit))
        .unwrap_or(0);
    if fault == Some(Fault::FailPage(page_index)) {
        return ims_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &rid,
            "IMG.0999",
            "injected page fault",
        );
    }
    let body = member_page(image, after, limit);
    drop(inner);
    json_response(
        StatusCode::OK,
        &rid,
        serde_json::to_string(&body).unwrap_or_default(),
    )
}

/// A member list's `limit` and `marker` (decoded); `Err` is the 400 answer.
fn member_paging(uri: &Uri, rid: &str) -> Result<(usize, Option<String>), Response> {
    let query = parse_query(uri.query());
    let get = |k: &str| query_value(&query, k);
    let limit = parse_limit(get("limit"), DEFAULT_LIMIT, rid)?;
    let after = parse_marker(get("marker"), rid)?;
    Ok((limit, after))
}

/// The page of `image`'s members after the member ID `after`, at most `limit` long.
fn member_page(image: &FakeImage, after: Option<String>, limit: usize) -> MemberList {
    let rest: Vec<&Member> = match &after {
        Some(a) => image
            .members
            .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            .map(|(_, m)| m)
            .collect(),
        None => image.members.values().collect(),
    };
    let page: Vec<Member> = rest.iter().take(limit).map(|m| (*m).clone()).collect();
    let more = rest.len() > limit;
    let next_marker = more.then(|| {
        base64::engine::general_purpose::STANDARD
            .encode(page.last().map(|m| m.member_id.as_str()).unwrap_or(""))
    });
    // Like the real API, a listing that fits one page may carry no page_info at all.
    let page_info = (after.is_some() || more).then_some(PageInfo {
        next_marker,
        current_count: Some(page.len() as u64),
    });
    MemberList {
        members: page,
        schema: Some("/v2/schemas/members".into()),
        page_info,
    }
}

/// IMS's answer for an image the project does not have.
fn image_not_found(rid: &str, image_id: &str) -> Response {
    ims_error(
        StatusCode::NOT_FOUND,
        rid,
        "IMG.0027",
        &format!("image {image_id} not found"),
    )
}

pub(super) async fn get_member(
    State(state): State<FakeState>,
    Path((project_id, image_id, member_id)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    if let Err(resp) = prologue(&state, &method, &uri, &headers, &image_id, &rid).await {
        return resp;
    }
    let inner = state.lock();
    let Some(image) = inner.images.get(&(project_id, image_id.clone())) else {
        return image_not_found(&rid, &image_id);
    };
    match image.members.get(&member_id) {
        Some(m) => json_response(
            StatusCode::OK,
            &rid,
            serde_json::to_string(m).unwrap_or_default(),
        ),
        None => ims_error(
            StatusCode::NOT_FOUND,
            &rid,
            "IMG.0206",
            &format!("image {image_id} is not shared with {member_id}"),
        ),
    }
}

/// `GET /v2/cloudimages`: the images of the project named by `X-Project-Id`, filtered
/// and paged like IMS (`marker` = the last image ID of the previous page); with
/// `__imagetype=shared`, the images other tenants offer to it instead.
pub(super) async fn list_images(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if query_value(&parse_query(uri.query()), "__imagetype") == Some("shared") {
        return super::offers::list_offers(&state, &method, &uri, &headers).await;
    }
    let rid = request_id();
    let Some(project_id) = headers
        .get("x-project-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        state.count_request();
        return ims_error(
            StatusCode::BAD_REQUEST,
            &rid,
            "IMG.0001",
            "X-Project-Id header is required",
        );
    };
    if let Err(resp) = prologue(&state, &method, &uri, &headers, &project_id, &rid).await {
        return resp;
    }
    let query = parse_query(uri.query());
    let limit = match parse_limit(query_value(&query, "limit"), DEFAULT_IMAGES_LIMIT, &rid) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let inner = state.lock();
    // One more than a page, to know whether there is a next one.
    let matching: Vec<serde_json::Value> = inner
        .images
        .iter()
        .filter(|((p, id), img)| p == &project_id && image_matches(&query, id, img))
        .take(limit + 1)
        .map(|((p, id), img)| image_json(p, id, img))
        .collect();
    drop(inner);
    json_response(
        StatusCode::OK,
        &rid,
        images_page(matching, limit).to_string(),
    )
}

/// Whether image `id` comes after `marker` and passes every filter of the query.
fn image_matches(query: &[(String, String)], id: &str, img: &FakeImage) -> bool {
    let get = |k: &str| query_value(query, k);
    get("marker").is_none_or(|m| id > m)
        && get("__imagetype").is_none_or(|t| img.imagetype.as_deref().unwrap_or("private") == t)
        && get("visibility").is_none_or(|v| img.visibility.as_deref().unwrap_or("private") == v)
        && get("tag").is_none_or(|t| img.tags.iter().any(|have| have == t))
        && get("name").is_none_or(|n| img.name == n)
        && get("id").is_none_or(|i| id == i)
}

/// An image as IMS lists it (project `owner`).
fn image_json(owner: &str, id: &str, img: &FakeImage) -> serde_json::Value {
    json!({
        "id": id,
        "name": img.name,
        "status": "active",
        "visibility": img.visibility.as_deref().unwrap_or("private"),
        "__imagetype": img.imagetype.as_deref().unwrap_or("private"),
        "owner": owner,
        "__os_type": "Linux",
        "min_disk": 40,
        "tags": img.tags,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

/// The listing body: the first `limit` of `matching`, and a `next` link if there
/// were more.
fn images_page(matching: Vec<serde_json::Value>, limit: usize) -> serde_json::Value {
    let more = matching.len() > limit;
    let page: Vec<serde_json::Value> = matching.into_iter().take(limit).collect();
    let mut body = json!({"images": page, "schema": "/v2/schemas/images", "first": format!("/v2/cloudimages?limit={limit}")});
    if more {
        if let Some(last) = page.last().and_then(|i| i["id"].as_str()) {
            body["next"] = json!(format!("/v2/cloudimages?limit={limit}&marker={last}"));
        }
    }
    body
}

/// `GET /v3/projects?name=`: IAM's project listing, filtered by name.
pub(super) async fn list_projects(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    state.count_request();
    if let Err(resp) = authenticate(&state, &method, &uri, &headers, &rid) {
        return resp;
    }
    let query = parse_query(uri.query());
    let name = query_value(&query, "name");
    let projects: Vec<serde_json::Value> = state
        .lock()
        .projects
        .iter()
        .filter(|(_, n)| name.is_none_or(|want| want == n))
        .map(|(id, n)| json!({"id": id, "name": n, "domain_id": "d0000000000000000000000000000000", "enabled": true, "is_domain": false}))
        .collect();
    json_response(
        StatusCode::OK,
        &rid,
        json!({"projects": projects, "links": {"self": "/v3/projects"}}).to_string(),
    )
}
