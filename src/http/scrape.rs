//! `/metrics`: the format Prometheus asked for, gzip when accepted, and the body
//! rendered on a blocking thread and streamed in chunks (gzipped on a second thread),
//! so a large fleet's scrape never sits in memory whole.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::context::AppState;
use crate::render::negotiation::{accepts_gzip, negotiate, Negotiated};
use crate::render::{Format, Metrics};

/// Size of the pieces a scrape is streamed in.
const SCRAPE_CHUNK: usize = 256 * 1024;

pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Negotiated {
        format,
        content_type,
    } = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
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
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response();
    resp.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept, Accept-Encoding"),
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
