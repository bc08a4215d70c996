//! A fake of the IMS API on loopback, for the tests, the demo and the benchmark.
//!
//! It speaks the real wire format (checked against the official Python SDK): it
//! verifies SDK-HMAC-SHA256 signatures (wrong SK, missing header, stale date and a
//! missing security token are refused as the API gateway does), pages member lists
//! with opaque Base64 markers, and can inject faults per image. It also serves the
//! Cloud Trace Service trace list (`GET /v3/{project_id}/traces`) on the same server,
//! signed and faulted the same way, so one fake is both a target's IMS and CTS.
//! And it lists the images other tenants offer to a project
//! (`GET /v2/cloudimages?__imagetype=shared`), with their owner, by our member status.
//!
//! Inside, the code follows a request: `state` holds what the fake knows (and the
//! tests change), `gateway` does what the API gateway does before a handler
//! (request IDs, error formats, signatures, latency, faults), and `handlers` (IMS,
//! IAM), `offers` (images offered to a project) and `cts` (the trace list) answer
//! the routes. This module starts and stops the server and wires the routes
//! ([`router`]); it must not answer requests itself.

mod cts;
pub mod demo;
mod gateway;
mod handlers;
pub mod metadata;
mod offer_controls;
mod offers;
mod state;
pub mod synthetic;

pub use gateway::MAX_CLOCK_SKEW;
pub use state::{member, member_trace, now_ms, Canned, CtsQuery, FakeState, Fault, SharedQuery};

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

use handlers::{get_member, list_images, list_members, list_projects, not_found};

/// A running fake; stopped by [`FakeIms::stop`] or, at the latest, when dropped.
pub struct FakeIms {
    addr: SocketAddr,
    /// `http`, or `https` when started with a web config that enables TLS.
    scheme: &'static str,
    pub state: FakeState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeIms {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(state: FakeState) -> std::io::Result<FakeIms> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, state).await
    }

    pub async fn start_on(addr: SocketAddr, state: FakeState) -> std::io::Result<FakeIms> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "fake IMS server failed");
            }
        });
        Ok(FakeIms {
            addr,
            scheme: "http",
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// Starts the fake on 127.0.0.1 served the way the exporter serves itself, with a
    /// web config (exporter-toolkit format) that enables TLS: for testing private CAs
    /// and proxies.
    pub async fn start_tls(
        state: FakeState,
        web_config: std::path::PathBuf,
    ) -> std::io::Result<FakeIms> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = crate::http::ServeOptions {
            web_config_file: Some(web_config),
            max_requests: 0,
            telemetry_path: String::new(),
            timeouts: crate::http::Timeouts::default(),
        };
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = crate::http::serve(vec![listener], app, options, shutdown).await {
                tracing::error!(error = %e, "fake IMS server failed");
            }
        });
        Ok(FakeIms {
            addr,
            scheme: "https",
            state,
            shutdown: Some(tx),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL to use as a target's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Delayed answers would hold graceful shutdown; don't wait for them forever.
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for FakeIms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn router(state: FakeState) -> Router {
    Router::new()
        .route(
            "/v1/{project_id}/cloudimages/{image_id}/members",
            get(list_members),
        )
        .route(
            "/v1/{project_id}/cloudimages/{image_id}/members/{member_id}",
            get(get_member),
        )
        .route("/v2/cloudimages", get(list_images))
        .route("/v3/projects", get(list_projects))
        .route("/v3/{project_id}/traces", get(cts::list_traces))
        .fallback(not_found)
        .with_state(state)
}
