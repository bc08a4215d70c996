//! The JSON API: `GET /api/v1/shares` (filters and paging as query parameters) and
//! `GET /api/v1/images`. Served behind the same TLS, basic auth and request cap as
//! `/metrics`; the rows are [`crate::render::shares`]'.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::context::AppState;
use crate::render::shares::{self, ShareFilter, DEFAULT_PER_PAGE};

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

pub(super) async fn shares(
    State(state): State<AppState>,
    query: Result<Query<SharesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let filter = ShareFilter {
        image: q.image.filter(|s| !s.is_empty()),
        member_type: q.member_type.filter(|s| !s.is_empty()),
        status: q.status.filter(|s| !s.is_empty()),
        unexpected_only: q.unexpected.unwrap_or(false),
    };
    let snapshot = state.store.snapshot();
    json(&shares::shares(
        &snapshot,
        &filter,
        q.page.unwrap_or(1),
        q.per_page.unwrap_or(DEFAULT_PER_PAGE),
    ))
}

pub(super) async fn images(State(state): State<AppState>) -> Response {
    json(&shares::images(&state.store.snapshot()))
}
