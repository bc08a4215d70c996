//! How requests are served: one hyper connection per client with header, body,
//! handshake and write-stall timeouts, TLS and basic auth from the web config
//! (re-checked per connection and per request), the request cap, and graceful
//! shutdown. Cheap refusals come before a request takes a slot; scrapes have request
//! slots of their own, and health and readiness checks need none. The push endpoint
//! (`/api/v1/events`) is the one route with a body, and is not behind basic auth (its
//! token is its authentication; SMN cannot send a password); TLS applies to it as to
//! every route.

use std::sync::Arc;

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
use tokio::sync::watch;

use super::endpoint::BodyReadTimeout;
use super::limits::{Pools, Timeouts, MAX_BODY_BYTES};
use super::listen::accept_loop;
use super::stall::StallTimeout;
use super::web;
use crate::pages;

/// How the server listens: TLS and basic auth from the web config, request limits.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub web_config_file: Option<std::path::PathBuf>,
    /// Requests served at once; 0 means no limit. Split by [`RequestCap::split`].
    pub max_requests: usize,
    /// The metrics path (`--web.telemetry-path`): its requests have slots of their own.
    pub telemetry_path: String,
    /// How long a client may take at each step.
    pub timeouts: Timeouts,
}

/// What every connection shares.
struct Shared {
    app: TowerToHyperService<Router>,
    web: Option<Arc<web::Watcher>>,
    pools: Pools,
    timeouts: Timeouts,
}

impl Shared {
    /// The routes, the web config (loaded off the async workers) and the slots.
    async fn new(app: Router, options: ServeOptions) -> std::io::Result<Shared> {
        let web = match options.web_config_file {
            Some(path) => {
                let watcher = tokio::task::spawn_blocking(move || web::Watcher::new(&path))
                    .await
                    .map_err(std::io::Error::other)?;
                Some(Arc::new(watcher))
            }
            None => None,
        };
        Ok(Shared {
            app: TowerToHyperService::new(app),
            web,
            pools: Pools::new(options.max_requests, options.telemetry_path),
            timeouts: options.timeouts,
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
    let shared = Arc::new(Shared::new(app, options).await?);
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    // Every listener feeds one queue of accepted connections.
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept_loop(listener, accepted_tx.clone()));
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
        .header_read_timeout(shared.timeouts.header_read);
    let service = {
        let shared = shared.clone();
        service_fn(move |req| handle(shared.clone(), req))
    };
    let result = match tls {
        None => {
            let io = TokioIo::new(StallTimeout::new(stream, shared.timeouts.write_stall));
            graceful.watch(builder.serve_connection(io, service)).await
        }
        Some(config) => {
            let handshake =
                tls_handshake(config, stream, shared.timeouts.tls_handshake, &mut stopping);
            let Some(stream) = handshake.await else {
                return;
            };
            let io = TokioIo::new(StallTimeout::new(stream, shared.timeouts.write_stall));
            graceful.watch(builder.serve_connection(io, service)).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// The TLS handshake, bounded in time and abandoned at shutdown; `None` when it failed.
async fn tls_handshake(
    config: Arc<rustls::ServerConfig>,
    stream: tokio::net::TcpStream,
    timeout: std::time::Duration,
    stopping: &mut watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let handshake = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsAcceptor::from(config).accept(stream),
    );
    tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        },
        _ = stopping.wait_for(|s| *s) => None,
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

/// Whether the request is for the push endpoint, which reads its own body (under
/// its own cap) and authenticates with its own token.
fn is_push(req: &Request<Incoming>) -> bool {
    req.uri().path() == pages::API_EVENTS
}

/// Whether the request announces a body. No route but the push endpoint takes one.
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
    let push = is_push(&req);
    if has_body(&req) && !push {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            "Request bodies are not accepted\n",
        )
            .into_response();
    }
    if let Some(auth) = settings.and_then(|s| s.auth()).filter(|_| !push) {
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
    let _permit = match shared.pools.pool(req.uri().path()) {
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
    if is_push(&req) {
        // Read by the handler after the head is checked, under its own cap: an
        // unauthenticated body is never read at all.
        let (mut parts, body) = req.into_parts();
        parts
            .extensions
            .insert(BodyReadTimeout(shared.timeouts.body_read));
        return match shared
            .app
            .call(Request::from_parts(parts, Body::new(body)))
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    // Whatever slipped past `has_body` (a body without the headers that announce
    // one) is still bounded in size and time.
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        shared.timeouts.body_read,
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
