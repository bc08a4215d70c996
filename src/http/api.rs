//! The JSON API: `GET /api/v1/shares` (filters and paging as query parameters),
//! `GET /api/v1/images` and `GET /api/v1/changes`; and the share browser `GET /shares`
//! over the same filters. Served behind the same TLS, basic auth and request cap as
//! `/metrics`; the rows are [`crate::render::shares`]'.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::context::AppState;
use axum::extract::rejection::QueryRejection;

use crate::render::html;
use crate::render::shares::{self, ShareFilter, DEFAULT_CHANGES, DEFAULT_PER_PAGE};
use crate::state::MAX_CHANGES;

/// The query parameters of `/api/v1/shares`; unknown ones are refused (a typo must
/// not silently widen a filter).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SharesQuery {
    image: Option<String>,
    #[serde(rename = "type")]
    member_type: Option<String>,
    status: Option<String>,
    unexpected: Option<bool>,
    page: Option<usize>,
    per_page: Option<usize>,
}

fn json(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

impl SharesQuery {
    /// The filter and the page asked for (empty values mean "any").
    pub(super) fn parse(
        query: Result<Query<SharesQuery>, QueryRejection>,
    ) -> Result<(ShareFilter, usize, usize), String> {
        let Query(q) = query.map_err(|e| format!("{e}\n"))?;
        let filter = ShareFilter {
            image: q.image.filter(|s| !s.is_empty()),
            member_type: q.member_type.filter(|s| !s.is_empty()),
            status: q.status.filter(|s| !s.is_empty()),
            unexpected_only: q.unexpected.unwrap_or(false),
        };
        Ok((
            filter,
            q.page.unwrap_or(1),
            q.per_page.unwrap_or(DEFAULT_PER_PAGE),
        ))
    }
}

pub(super) async fn shares(
    State(state): State<AppState>,
    query: Result<Query<SharesQuery>, QueryRejection>,
) -> Response {
    match SharesQuery::parse(query) {
        Ok((filter, page, per_page)) => json(&shares::shares(
            &state.store.snapshot(),
            &filter,
            page,
            per_page,
        )),
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

/// Nothing but the page's own inline style: no script, no external asset, no frame.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The share browser.
pub(super) async fn shares_page(
    State(state): State<AppState>,
    query: Result<Query<SharesQuery>, QueryRejection>,
) -> Response {
    let (filter, page, per_page) = match SharesQuery::parse(query) {
        Ok(q) => q,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let snapshot = state.store.snapshot();
    let changes = shares::changes(state.store.changes(), &filter, DEFAULT_CHANGES);
    // A page of a large fleet is CPU work: not on an async worker.
    let body = tokio::task::spawn_blocking(move || {
        html::shares_page(&snapshot, &changes, &filter, page, per_page)
    })
    .await;
    match body {
        Ok(body) => html_response(body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// An HTML page of ours, under the strict policy.
pub(super) fn html_response(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The query parameters of `/api/v1/changes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    image: Option<String>,
    limit: Option<usize>,
}

/// The most recent member changes (and images no longer monitored), newest first.
pub(super) async fn changes(
    State(state): State<AppState>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let filter = ShareFilter {
        image: q.image.filter(|s| !s.is_empty()),
        ..ShareFilter::default()
    };
    let limit = q.limit.unwrap_or(DEFAULT_CHANGES).clamp(1, MAX_CHANGES);
    json(&shares::changes(state.store.changes(), &filter, limit))
}

pub(super) async fn images(State(state): State<AppState>) -> Response {
    json(&shares::images(&state.store.snapshot()))
}
