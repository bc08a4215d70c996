//! Wires the push endpoint (`POST /api/v1/events`): built from the config at start,
//! handed to the HTTP server as its events endpoint, and given every reloaded config.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::http::EventsEndpoint;
use crate::ims::traces::PushedTraces;
use crate::state::Store;
use crate::webhook::Webhook;

/// The endpoint for `config`; always made, so that a reload can turn it on or off.
pub(crate) async fn start(
    config: &Config,
    store: Arc<Store>,
    pushed: mpsc::Sender<PushedTraces>,
) -> Arc<Webhook> {
    Arc::new(Webhook::new(config, store, pushed).await)
}

/// The same endpoint, as the HTTP server knows it.
pub(crate) fn endpoint(webhook: &Arc<Webhook>) -> Arc<dyn EventsEndpoint> {
    webhook.clone()
}
