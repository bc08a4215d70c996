//! Wires the push endpoint (`POST /api/v1/events`): built from the config at start
//! with the channel its traces travel on to the poller, handed to the HTTP server as
//! its events endpoint, and given every reloaded config.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::http::EventsEndpoint;
use crate::ims::traces::PushedTraces;
use crate::poll::event_polls::Inbox;
use crate::state::Store;
use crate::webhook::Webhook;

/// Pushed trace batches queued for the poller; beyond, the webhook answers 429.
const PUSHED_QUEUE: usize = 1024;

/// The endpoint for `config` (always made, so that a reload can turn it on or off)
/// and the inbox where the traces it takes arrive, read by whichever poller runs.
pub(crate) async fn start_webhook(config: &Config, store: Arc<Store>) -> (Arc<Webhook>, Inbox) {
    let (pushed_tx, pushed_rx) = mpsc::channel::<PushedTraces>(PUSHED_QUEUE);
    let webhook = Arc::new(Webhook::new(config, store, pushed_tx).await);
    (webhook, Arc::new(tokio::sync::Mutex::new(pushed_rx)))
}

/// The same endpoint, as the HTTP server knows it.
pub(crate) fn webhook_endpoint(webhook: &Arc<Webhook>) -> Arc<dyn EventsEndpoint> {
    webhook.clone()
}
