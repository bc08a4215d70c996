//! The routes and their small handlers: landing page, health, readiness, reload
//! (behind `--web.enable-lifecycle`). `/metrics` is [`super::scrape`]'s, the share
//! browser and the JSON API [`super::api`]'s, pushed events [`super::events`]'.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use super::api;
use super::context::AppState;
use super::events::events;
use super::scrape::metrics;
use crate::pages;
use crate::render::html;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(pages::LANDING, get(landing))
        .route(&state.telemetry_path.clone(), get(metrics))
        .route(pages::HEALTHY, get(|| async { "Healthy\n" }))
        .route(pages::READY, get(ready))
        .route(pages::RELOAD, post(reload).put(reload))
        .route(pages::SHARES, get(api::shares_page))
        .route(pages::API_SHARES, get(api::shares))
        .route(pages::API_IMAGES, get(api::images))
        .route(pages::API_CHANGES, get(api::changes))
        .route(pages::API_INCOMING, get(api::incoming))
        // Any method: the endpoint says 404 when it is off, before 405.
        .route(pages::API_EVENTS, any(events))
        .with_state(state)
}

async fn reload(State(state): State<AppState>) -> Response {
    let Some(reload) = &state.reload else {
        // As Prometheus answers: reloading over HTTP is opt-in; SIGHUP always works.
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response();
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::OK, "OK\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// The landing page, with the same strict policy as the share browser.
async fn landing(State(state): State<AppState>) -> Response {
    let body = html::landing_page(
        &state.store.snapshot(),
        &state.telemetry_path,
        env!("CARGO_PKG_VERSION"),
    );
    api::html_response(body)
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.store.ready() {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: the first poll cycle has not finished\n",
        )
            .into_response()
    }
}
