//! The routes and their small handlers: landing page, health, readiness, reload
//! (behind `--web.enable-lifecycle`). `/metrics` is [`super::scrape`]'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::api;
use super::context::AppState;
use super::scrape::metrics;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path.clone(), get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/shares", get(api::shares_page))
        .route("/api/v1/shares", get(api::shares))
        .route("/api/v1/images", get(api::images))
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

/// `:PORT` means every interface, as in the Go exporters.
pub fn normalize_listen_address(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    }
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let path = html_escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>IMS Exporter</title></head><body>\n\
         <h1>IMS Exporter</h1>\n<p>Who Huawei Cloud images are shared with, as Prometheus metrics.</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li>\
         <li><a href=\"/-/ready\">Readiness</a></li><li><a href=\"/shares\">Shares</a></li><li><a href=\"/api/v1/shares\">Shares (JSON)</a></li>\
         <li><a href=\"/api/v1/images\">Images (JSON)</a></li></ul>\n<p>Version {}</p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address() {
        assert_eq!(normalize_listen_address(":10027"), "0.0.0.0:10027");
        assert_eq!(normalize_listen_address("[::1]:9"), "[::1]:9");
    }
}
