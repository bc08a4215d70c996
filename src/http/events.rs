//! `POST /api/v1/events`: the server's half of the push endpoint. It owns the HTTP
//! part (method, the body read under a size cap and a deadline, never buffering more
//! than the cap) and hands head and body to an [`EventsEndpoint`], which decides
//! everything else (whether the route is served, the token, the rate, the shapes).
//! The server knows no event, config or API type: the endpoint is injected by `app`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::HeaderName;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::context::AppState;
use super::limits::BODY_READ_TIMEOUT;

/// The largest body `POST /api/v1/events` reads; beyond, 413 (counted while reading,
/// so no more than this is ever buffered).
pub const MAX_EVENTS_BODY_BYTES: usize = 256 * 1024;

/// How long the body of a push may take to arrive, put on the request by the server
/// (its `--web.timeout`); a request without it gets [`BODY_READ_TIMEOUT`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub Duration);

/// An answer of the endpoint: a status, a small JSON body, extra headers.
#[derive(Debug, Clone)]
pub struct EventsAnswer {
    pub status: StatusCode,
    /// JSON text.
    pub body: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl EventsAnswer {
    pub fn new(status: StatusCode, body: String) -> EventsAnswer {
        EventsAnswer {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> EventsAnswer {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for EventsAnswer {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// Past [`MAX_EVENTS_BODY_BYTES`].
    TooLarge,
    /// Not within the body read timeout.
    TimedOut,
    /// The connection broke or the framing was wrong.
    Broken,
}

/// The future of [`EventsEndpoint::receive`].
pub type EventsFuture<'a> = Pin<Box<dyn Future<Output = EventsAnswer> + Send + 'a>>;

/// What receives pushed events. Called in this order: [`Self::served`], then (for a
/// `POST`) [`Self::admit`] on the head, then the body is read and given to
/// [`Self::receive`], or its failure to [`Self::body_failed`].
pub trait EventsEndpoint: Send + Sync {
    /// Whether the route exists now (it may come and go with reloads): else 404.
    fn served(&self) -> bool;
    /// Checks on the head before any of the body is read (authentication, rate,
    /// content type, announced length); an `Err` is the answer.
    fn admit(&self, head: &Parts) -> Result<(), EventsAnswer>;
    /// The answer when the body could not be read whole.
    fn body_failed(&self, failure: BodyFailure) -> EventsAnswer;
    /// The answer to an admitted request and its whole body.
    fn receive<'a>(&'a self, head: &'a Parts, body: Bytes) -> EventsFuture<'a>;
}

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
