//! What the server knows of the push endpoint (`POST /api/v1/events`): the
//! [`EventsEndpoint`] trait that `app` injects, its answers, why a body could not be
//! read, and the body cap. No event, config or API type: those are the endpoint's.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::HeaderName;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The largest body `POST /api/v1/events` reads; beyond, 413 (counted while reading,
/// so no more than this is ever buffered).
pub const MAX_EVENTS_BODY_BYTES: usize = 256 * 1024;

/// How long the body of a push may take to arrive, put on the request by the server
/// (its `--web.timeout`); a request without it gets the default body read timeout.
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
