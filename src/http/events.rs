//! `POST /api/v1/events`: the server's half of the push endpoint. It owns the HTTP
//! part (method, the body read under a size cap and a deadline, never buffering more
//! than the cap) and hands head and body to an [`EventsEndpoint`], which decides
//! everything else (whether the route is served, the token, the rate, the shapes).
//! The server knows no event, config or API type: the endpoint is injected by `app`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::context::AppState;
use super::endpoint::{BodyFailure, BodyReadTimeout, MAX_EVENTS_BODY_BYTES};
use super::limits::BODY_READ_TIMEOUT;

/// The route's handler. Refusals before the body is read close the connection, so
/// that an unread body is never drained to keep it alive.
pub(super) async fn events(State(state): State<AppState>, req: Request<Body>) -> Response {
    let Some(endpoint) = state.events.as_deref().filter(|e| e.served()) else {
        return (StatusCode::NOT_FOUND, "Not Found\n").into_response();
    };
    if req.method() != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "Method Not Allowed\n",
        )
            .into_response();
    }
    let (head, body) = req.into_parts();
    if let Err(answer) = endpoint.admit(&head) {
        return closing(answer.into_response());
    }
    let timeout = head
        .extensions
        .get::<BodyReadTimeout>()
        .map_or(BODY_READ_TIMEOUT, |t| t.0);
    let read = tokio::time::timeout(timeout, Limited::new(body, MAX_EVENTS_BODY_BYTES).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return closing(endpoint.body_failed(BodyFailure::TooLarge).into_response())
        }
        Ok(Err(_)) => return closing(endpoint.body_failed(BodyFailure::Broken).into_response()),
        Err(_) => return closing(endpoint.body_failed(BodyFailure::TimedOut).into_response()),
    };
    endpoint.receive(&head, body).await.into_response()
}

fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
