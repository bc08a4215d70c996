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

/// The gzip member header (RFC 1952): deflate, no name or time, the fastest level
/// (`XFL` 4), the OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// Gzips the chunks from `rx` into `tx`. It runs on its own thread so that rendering
/// and compressing a large scrape overlap on two cores. The gzip framing is written
/// here around a raw deflate stream, so that the checksum is crc32fast's (SIMD):
/// zlib-rs's own took an eighth of a large compressed scrape.
fn gzip_stream(mut rx: ChunkReceiver, tx: &ChunkSender) {
    let mut enc = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(SCRAPE_CHUNK / 4),
        flate2::Compression::fast(),
    );
    enc.get_mut().extend_from_slice(&GZIP_HEADER);
    let (mut crc, mut size) = (crc32fast::Hasher::new(), 0u32);
    let send = |bytes: Vec<u8>| bytes.is_empty() || tx.blocking_send(Ok(bytes.into())).is_ok();
    loop {
        match rx.blocking_recv() {
            Some(Ok(chunk)) if chunk.is_empty() => break,
            Some(Ok(chunk)) => {
                crc.update(&chunk);
                // ISIZE is the length modulo 2^32.
                size = size.wrapping_add(chunk.len() as u32);
                if let Err(e) = enc.write_all(&chunk) {
                    tracing::error!(error = %e, "compressing metrics failed");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                // A fresh buffer of the usual size, so the next chunk's output is not
                // grown from nothing.
                let out = std::mem::replace(enc.get_mut(), Vec::with_capacity(SCRAPE_CHUNK / 4));
                if !send(out) {
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
        Ok(mut rest) => {
            rest.extend_from_slice(&crc.finalize().to_le_bytes());
            rest.extend_from_slice(&size.to_le_bytes());
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
