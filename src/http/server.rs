//! The HTTP server: landing page, metrics (with content negotiation and gzip),
//! health and readiness, and how they are served: TLS and basic auth from the web
//! config, header/body/handshake timeouts, the concurrency cap and graceful shutdown.
//! Handlers only read the store; they never call the API.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
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

use crate::config::web;
use crate::render::exposition::Format;
use crate::render::families::Metrics;
use crate::state::Store;

/// A reload request: the answer says whether the new config was taken.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    pub telemetry_path: String,
    /// `None` without `--web.enable-lifecycle`: `/-/reload` is refused.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path.clone(), get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .with_state(state)
}

/// How the server listens: TLS and basic auth from the web config, request limits.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub web_config_file: Option<std::path::PathBuf>,
    /// Requests served at once; 0 means no limit.
    pub max_requests: usize,
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
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// No endpoint takes a body; this only bounds what a client can make us buffer.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every connection shares.
struct Shared {
    app: TowerToHyperService<Router>,
    web: Option<Arc<web::Watcher>>,
    limit: Option<Arc<Semaphore>>,
    max_requests: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and
/// lets in-flight requests finish (idle connections are closed at once).
///
/// Each connection is served with hyper directly (not `axum::serve`) to get a header
/// read timeout, TLS from the web config (re-checked on every new connection, so
/// rotated certificates apply without a restart) and the per-request limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
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
        limit: (options.max_requests > 0).then(|| Arc::new(Semaphore::new(options.max_requests))),
        max_requests: options.max_requests,
    });
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Subscribed here, before any shutdown signal, so that none is missed.
        let watcher = graceful.watcher();
        tokio::spawn(connection(
            shared.clone(),
            stream,
            watcher,
            stopping_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    graceful.shutdown().await;
    Ok(())
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
    let _permit = match &shared.limit {
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Limit of concurrent requests reached ({}), try again later.\n",
                        shared.max_requests
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
         <li><a href=\"/-/ready\">Readiness</a></li></ul>\n<p>Version {}</p>\n</body></html>\n",
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

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

/// Size of the pieces a scrape is streamed in.
const SCRAPE_CHUNK: usize = 256 * 1024;

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(&headers);
    // Rendering is CPU work: it runs on a blocking thread and streams chunks through a
    // short queue (via a second thread that gzips them, when asked), so the client
    // receives while the rest is rendered and a scrape of a large fleet never sits in
    // memory whole.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    if gzip {
        let (raw_tx, raw_rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || render_stream(&state.metrics, format, &raw_tx));
        tokio::task::spawn_blocking(move || gzip_stream(raw_rx, &tx));
    } else {
        tokio::task::spawn_blocking(move || render_stream(&state.metrics, format, &tx));
    }
    let stream = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            // The renderer's end marker: the body is complete.
            Some(Ok(chunk)) if chunk.is_empty() => None,
            Some(Ok(chunk)) => Some((Ok(chunk), (rx, false))),
            Some(Err(e)) => Some((Err(e), (rx, true))),
            // The renderer ended without its marker: abort rather than serve a
            // truncated exposition as if it were whole.
            None => Some((
                Err(std::io::Error::other("rendering metrics stopped")),
                (rx, true),
            )),
        }
    });
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        Body::from_stream(stream),
    )
        .into_response();
    resp.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept-Encoding"),
    );
    if gzip {
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    resp
}

type ChunkSender = tokio::sync::mpsc::Sender<std::io::Result<Bytes>>;
type ChunkReceiver = tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>;

/// Renders one scrape into `tx`, then an empty chunk as the end marker. Returns early
/// when the receiver is gone (the client went away).
fn render_stream(metrics: &Metrics, format: Format, tx: &ChunkSender) {
    let mut open = true;
    metrics.render_chunks(format, SCRAPE_CHUNK, &mut |chunk: String| {
        open = tx.blocking_send(Ok(chunk.into_bytes().into())).is_ok();
        open
    });
    if open {
        let _ = tx.blocking_send(Ok(Bytes::new()));
    }
}

/// Gzips the chunks from `rx` into `tx`. It runs on its own thread so that rendering
/// and compressing a large scrape overlap on two cores.
fn gzip_stream(mut rx: ChunkReceiver, tx: &ChunkSender) {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(SCRAPE_CHUNK / 4),
        flate2::Compression::fast(),
    );
    let send = |bytes: Vec<u8>| bytes.is_empty() || tx.blocking_send(Ok(bytes.into())).is_ok();
    loop {
        match rx.blocking_recv() {
            Some(Ok(chunk)) if chunk.is_empty() => break,
            Some(Ok(chunk)) => {
                if let Err(e) = enc.write_all(&chunk) {
                    tracing::error!(error = %e, "compressing metrics failed");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                if !send(std::mem::take(enc.get_mut())) {
                    return;
                }
            }
            // Passed on as is; a renderer that ended without its marker ends the
            // body without one too, which aborts it.
            Some(Err(e)) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            None => return,
        }
    }
    match enc.finish() {
        Ok(rest) => {
            if send(rest) {
                let _ = tx.blocking_send(Ok(Bytes::new()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "compressing metrics failed");
            let _ = tx.blocking_send(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            "deflate, gzip;q=1.0, *;q=0.5".parse().unwrap(),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "gzip;q=0".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn listen_address() {
        assert_eq!(normalize_listen_address(":10027"), "0.0.0.0:10027");
        assert_eq!(normalize_listen_address("[::1]:9"), "[::1]:9");
    }
}
