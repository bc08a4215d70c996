//! How requests are served: one hyper connection per client with header, body,
//! handshake and write-stall timeouts, TLS and basic auth from the web config
//! (re-checked per connection and per request), the request cap, and graceful
//! shutdown. Cheap refusals come before a request takes a slot; scrapes have request
//! slots of their own, and health and readiness checks need none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Semaphore};

use super::web;

/// How the server listens: TLS and basic auth from the web config, request limits.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub web_config_file: Option<std::path::PathBuf>,
    /// Requests served at once; 0 means no limit. Split by [`RequestCap::split`].
    pub max_requests: usize,
    /// The metrics path (`--web.telemetry-path`): its requests have slots of their own.
    pub telemetry_path: String,
}

/// Paths that are answered without taking a request slot: they cost nothing, and a
/// liveness probe refused while slow clients hold every slot would restart a healthy
/// exporter.
const EXEMPT_PATHS: [&str; 2] = ["/-/healthy", "/-/ready"];

/// `--web.max-requests` split in two pools, so that people browsing (or scripts on
/// the JSON API) can never make a Prometheus scrape fail, nor a pile of scrapes the
/// pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCap {
    /// Slots for the metrics path.
    pub scrapes: usize,
    /// Slots for every other path (share browser, JSON API, landing page, reload).
    pub others: usize,
}

impl RequestCap {
    /// Half of `max` (rounded up) for scrapes, the rest for the other pages, and at
    /// least one each; `None` for 0 (no limit).
    pub fn split(max: usize) -> Option<RequestCap> {
        (max > 0).then(|| RequestCap {
            scrapes: max.div_ceil(2),
            others: (max / 2).max(1),
        })
    }
}

/// A client must send a request's headers within this (slowloris); it also closes
/// keep-alive connections idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this after its headers.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection whose writes make no progress for this long (a client that stopped
/// reading) is closed.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// No endpoint takes a body; this only bounds what a client can make us buffer.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A pool of request slots.
struct Pool {
    slots: Arc<Semaphore>,
    size: usize,
    what: &'static str,
}

impl Pool {
    fn new(size: usize, what: &'static str) -> Pool {
        Pool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            what,
        }
    }
}

/// What every connection shares.
struct Shared {
    app: TowerToHyperService<Router>,
    web: Option<Arc<web::Watcher>>,
    /// (scrapes, other pages); `None` without a limit.
    pools: Option<(Pool, Pool)>,
    telemetry_path: String,
}

impl Shared {
    /// The pool a request to `path` takes its slot from; `None` for no slot.
    fn pool(&self, path: &str) -> Option<&Pool> {
        if EXEMPT_PATHS.contains(&path) {
            return None;
        }
        let (scrapes, others) = self.pools.as_ref()?;
        Some(if path == self.telemetry_path {
            scrapes
        } else {
            others
        })
    }
}

/// Serves `app` on every listener until `shutdown` completes, then stops accepting
/// and lets in-flight requests finish (idle connections are closed at once).
///
/// Each connection is served with hyper directly (not `axum::serve`) to get a header
/// read timeout, TLS from the web config (re-checked on every new connection, so
/// rotated certificates apply without a restart) and the per-request limits.
pub async fn serve(
    listeners: Vec<tokio::net::TcpListener>,
    app: Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let web = match options.web_config_file {
        Some(path) => {
            let watcher = tokio::task::spawn_blocking(move || web::Watcher::new(&path))
                .await
                .map_err(std::io::Error::other)?;
            Some(Arc::new(watcher))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        app: TowerToHyperService::new(app),
        web,
        pools: RequestCap::split(options.max_requests).map(|cap| {
            (
                Pool::new(cap.scrapes, "scrapes"),
                Pool::new(cap.others, "other pages"),
            )
        }),
        telemetry_path: options.telemetry_path,
    });
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    // Every listener feeds one queue of accepted connections.
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept(listener, accepted_tx.clone()));
    }
    drop(accepted_tx);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accepted_rx.recv() => match accepted {
                Some(stream) => stream,
                None => return Err(std::io::Error::other("no listener left")),
            },
        };
        // Subscribed here, before any shutdown signal, so that none is missed.
        let watcher = graceful.watcher();
        tokio::spawn(connection(
            shared.clone(),
            stream,
            watcher,
            stopping_rx.clone(),
        ));
    }
    // The listeners are closed before waiting for in-flight requests.
    acceptors.abort_all();
    while acceptors.join_next().await.is_some() {}
    let _ = stopping_tx.send(true);
    graceful.shutdown().await;
    Ok(())
}

/// The first and the longest wait after a failed accept (as Go's net/http).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// The wait after a failed accept, given the wait after the one before (if any).
fn next_backoff(last: Option<Duration>) -> Duration {
    last.map_or(ACCEPT_BACKOFF.0, |b| (b * 2).min(ACCEPT_BACKOFF.1))
}

/// Accepts connections on one listener for as long as the server wants them.
async fn accept(
    listener: tokio::net::TcpListener,
    accepted: tokio::sync::mpsc::Sender<tokio::net::TcpStream>,
) {
    let mut backoff: Option<Duration> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = None;
                let _ = stream.set_nodelay(true);
                if accepted.send(stream).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, doubling the wait up
                // to a second, instead of spinning (and logging) in a tight loop.
                let wait = next_backoff(backoff);
                backoff = Some(wait);
                tracing::warn!(
                    error = %e, retry_in = %humantime::format_duration(wait),
                    "accepting a connection failed"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    graceful: hyper_util::server::graceful::Watcher,
    mut stopping: watch::Receiver<bool>,
) {
    let tls = match &shared.web {
        None => None,
        Some(web) => {
            let web = web.clone();
            let current = tokio::task::spawn_blocking(move || {
                web.refresh();
                web.current()
            })
            .await
            .ok()
            .flatten();
            // No valid web config was ever loaded: serving without the TLS or auth it
            // asks for would be worse than not serving.
            let Some(current) = current else { return };
            current.tls()
        }
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let service = {
        let shared = shared.clone();
        service_fn(move |req| handle(shared.clone(), req))
    };
    let result = match tls {
        None => {
            let io = TokioIo::new(StallTimeout::new(stream));
            graceful.watch(builder.serve_connection(io, service)).await
        }
        Some(config) => {
            let handshake = tokio::time::timeout(
                TLS_HANDSHAKE_TIMEOUT,
                tokio_rustls::TlsAcceptor::from(config).accept(stream),
            );
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                },
                _ = stopping.wait_for(|s| *s) => return,
            };
            let io = TokioIo::new(StallTimeout::new(stream));
            graceful.watch(builder.serve_connection(io, service)).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// The per-request gate in front of the routes: concurrency cap, basic auth, body
/// size and time limits, and the web config's extra headers.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response, std::convert::Infallible> {
    // Settings in force now, so a changed password applies to kept-alive connections too.
    let settings = shared.web.as_ref().and_then(|w| w.current());
    let mut response = limited(&shared, settings.as_deref(), req).await;
    // No answer of ours, error bodies included, is to be sniffed into something else.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if let Some(settings) = &settings {
        for (name, value) in settings.headers() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(response)
}

/// Whether the request announces a body. No route takes one.
fn has_body(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Cheap refusals come first, so that they never hold one of the request slots that
/// scrapes need: a request with a body (no route takes one) is refused before its
/// body is read, and a client that fails basic auth before it takes a slot.
async fn limited(
    shared: &Shared,
    settings: Option<&web::Settings>,
    req: Request<Incoming>,
) -> Response {
    if has_body(&req) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            "Request bodies are not accepted\n",
        )
            .into_response();
    }
    if let Some(auth) = settings.and_then(|s| s.auth()) {
        if !auth
            .authorize(req.headers().get(header::AUTHORIZATION))
            .await
        {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response();
        }
    }
    // Over the cap: answer at once rather than queue, so a pile-up cannot build.
    let _permit = match shared.pool(req.uri().path()) {
        Some(pool) => match pool.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Limit of concurrent requests for {} reached ({}), try again later.\n",
                        pool.what, pool.size
                    ),
                )
                    .into_response()
            }
        },
        None => None,
    };
    let response = route(shared, req).await;
    match _permit {
        // A streamed body (a scrape) is still being produced when the handler
        // returns: its slot is held until the body is sent. A body already in memory
        // keeps its length and frees the slot now.
        Some(permit) if response.body().size_hint().exact().is_none() => response.map(|body| {
            Body::from_stream(body.into_data_stream().map(move |frame| {
                let _held = &permit;
                frame
            }))
        }),
        _ => response,
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response {
    // Whatever slipped past `has_body` (a body without the headers that announce
    // one) is still bounded in size and time.
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await;
    let body = match collected {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n").into_response()
        }
        Ok(Err(_)) => return (StatusCode::BAD_REQUEST, "Bad request body\n").into_response(),
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "Request body too slow\n").into_response(),
    };
    match shared
        .app
        .call(Request::from_parts(parts, Body::from(body)))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Closes a connection whose writes stay blocked (a client that does not read its
/// response) instead of holding it forever. Reads are bounded elsewhere (header and
/// body timeouts), as an idle keep-alive connection legitimately waits to read.
struct StallTimeout<S> {
    inner: S,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallTimeout<S> {
    fn new(inner: S) -> Self {
        StallTimeout {
            inner,
            stalled: None,
        }
    }

    /// Maps `Pending` to an error once writes have been pending for too long.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_to_a_second() {
        let mut waits = vec![next_backoff(None)];
        for _ in 0..12 {
            waits.push(next_backoff(waits.last().copied()));
        }
        assert_eq!(waits[0], Duration::from_millis(5));
        assert_eq!(waits[1], Duration::from_millis(10));
        assert_eq!(waits[8], Duration::from_secs(1));
        assert_eq!(waits[12], Duration::from_secs(1));
        // At most a few log lines a second once it is failing for good, where it
        // used to be ten.
        let first_second: Duration = waits.iter().take(9).sum();
        assert!(first_second >= Duration::from_secs(2), "{first_second:?}");
    }

    #[test]
    fn the_cap_is_split_between_scrapes_and_pages() {
        assert_eq!(RequestCap::split(0), None);
        let split = |n| RequestCap::split(n).map(|c| (c.scrapes, c.others));
        assert_eq!(split(40), Some((20, 20)));
        assert_eq!(split(5), Some((3, 2)));
        assert_eq!(split(2), Some((1, 1)));
        // One slot still leaves the pages one: a scrape is never refused for them.
        assert_eq!(split(1), Some((1, 1)));
    }
}
