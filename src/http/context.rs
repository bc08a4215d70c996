//! What every handler reads: the renderer, the store, the metrics path, the
//! reload channel and the push endpoint.

use std::sync::Arc;

use crate::render::Metrics;
use crate::state::Store;

/// A reload request: the answer says whether the new config was taken.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// The handlers' shared state.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    pub telemetry_path: String,
    /// `None` without `--web.enable-lifecycle`: `/-/reload` is refused.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    /// Receives `POST /api/v1/events`; `None`: the route answers 404.
    pub events: Option<Arc<dyn super::endpoint::EventsEndpoint>>,
}
