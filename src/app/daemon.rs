//! The long-running mode: HTTP server, poller, reloads and shutdown.
//!
//! A reload (SIGHUP, or `POST /-/reload` with `--web.enable-lifecycle`) validates the
//! new config first; if it is bad, the old one keeps running and the reason is logged
//! and answered. If it is good, the old poller stops and a new one takes over from it
//! on the same store, so images that stay keep their data, counters and audit
//! baseline, their series have no gap, and only added images are polled at once.
//!
//! Signal listeners are made once, before anything else, so that no SIGTERM or SIGINT
//! is lost while a reload runs; a reload is abandoned when one arrives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::app::credentials::spawn_refreshers;
use crate::app::exit::{EXIT_FAILURE, EXIT_OK};
use crate::app::persist::{lock, restore, save, write_state};
use crate::app::projects::ProjectResolver;
use crate::app::render_options::render_options;
use crate::app::signals::{Signal, Signals};
use crate::app::source::{load_config, ConfigSource};
use crate::app::webhook::{start_webhook, webhook_endpoint};
use crate::config::Config;
use crate::http::{self, ReloadRequest, ServeOptions};
use crate::poll::event_polls::Inbox;
use crate::poll::plan::Plan;
use crate::poll::poller::Poller;
use crate::render::{Metrics, SelfMetrics};
use crate::state::storage::{DirLock, LockError, RestoredTargets, Storage};
use crate::state::Store;
use crate::timestamp::now_unix;
use crate::webhook::Webhook;

/// How long shutdown waits for in-flight scrapes before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct DaemonOptions {
    pub listen: http::ListenOn,
    pub telemetry_path: String,
    pub serve: ServeOptions,
    /// `--web.enable-lifecycle`: whether `POST /-/reload` is served.
    pub lifecycle: bool,
    /// `--storage.path`: where state is kept across restarts.
    pub storage: Option<Storage>,
}

/// A running poller and the means to stop it.
struct Running {
    poller: Arc<Poller>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(poller: Poller, inbox: Inbox) -> Running {
        let poller = Arc::new(poller);
        let (stop, stop_rx) = watch::channel(false);
        let p = poller.clone();
        let task = tokio::spawn(async move { p.run(stop_rx, Some(inbox)).await });
        Running { poller, stop, task }
    }

    /// Stops the poller and hands it back (a reload takes over from it).
    async fn stop(&mut self) -> Arc<Poller> {
        let _ = self.stop.send(true);
        (&mut self.task).await.ok();
        self.poller.clone()
    }
}

/// What polls, and what serves it: the plan, its poller and credential refreshers,
/// replaced whole by a reload, on the same store and renderer.
struct Polling {
    plan: Arc<Plan>,
    running: Running,
    refreshers: Vec<JoinHandle<()>>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    self_metrics: Arc<SelfMetrics>,
    /// Pushed traces, read by whichever poller runs.
    inbox: Inbox,
    /// Takes the webhook settings of every reloaded config.
    webhook: Arc<Webhook>,
}

impl Polling {
    fn start(
        plan: Plan,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        self_metrics: Arc<SelfMetrics>,
        restored: &RestoredTargets,
        (webhook, inbox): (Arc<Webhook>, Inbox),
    ) -> Polling {
        let plan = Arc::new(plan);
        metrics.set_options(render_options(&plan));
        Polling {
            refreshers: spawn_refreshers(&plan),
            running: Running::start(
                Poller::new(plan.clone(), store.clone(), None, restored),
                inbox.clone(),
            ),
            inbox,
            plan,
            store,
            metrics,
            self_metrics,
            webhook,
        }
    }

    /// Takes the new config: a new plan (keeping the providers of sources that stay)
    /// and a poller that takes over from the old one (see `Poller::new`). A plan that
    /// cannot be built leaves everything as it was.
    async fn reload(&mut self, new: Config) -> Result<(), String> {
        let plan = Plan::new(new, self.self_metrics.clone(), Some(&self.plan))
            .map_err(|e| e.to_string())?;
        plan.fetch_missing_credentials().await;
        let plan = Arc::new(plan);
        let old = self.running.stop().await;
        for task in self.refreshers.drain(..) {
            task.abort();
        }
        self.refreshers = spawn_refreshers(&plan);
        self.metrics.set_options(render_options(&plan));
        self.webhook.reload(&plan.config).await;
        let poller = Poller::new(
            plan.clone(),
            self.store.clone(),
            Some(&old),
            &Default::default(),
        );
        self.running = Running::start(poller, self.inbox.clone());
        tracing::info!(
            images = plan.config.image_count(),
            targets = plan.config.targets.len(),
            "configuration reloaded"
        );
        self.plan = plan;
        Ok(())
    }

    async fn stop(mut self) {
        self.running.stop().await;
        for task in self.refreshers {
            task.abort();
        }
    }
}

/// What a reload needs: where the config comes from and the IAM look-up.
pub struct Reloading {
    pub source: ConfigSource,
    pub projects: Arc<ProjectResolver>,
}

pub async fn run(
    reloading: Reloading,
    plan: Plan,
    options: DaemonOptions,
    self_metrics: Arc<SelfMetrics>,
    mut signals: Signals,
) -> u8 {
    let store = Arc::new(Store::new());
    let metrics = Arc::new(Metrics::new(store.clone(), self_metrics.clone()));
    let (_lock, restored) = match start_storage(&options, &store, &self_metrics, &mut signals).await
    {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let Some(listeners) = listen(options.listen, &options.telemetry_path, &plan.config).await
    else {
        return EXIT_FAILURE;
    };
    // Traces pushed to `POST /api/v1/events` travel to the poller's inbox.
    let (webhook, inbox) = start_webhook(&plan.config, store.clone()).await;
    let events = webhook_endpoint(&webhook);
    let mut polling = Polling::start(
        plan,
        store.clone(),
        metrics.clone(),
        self_metrics.clone(),
        &restored,
        (webhook, inbox),
    );
    let writer = spawn_writer(options.storage.as_ref(), &store, &self_metrics);
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let app = http::router(http::AppState {
        metrics,
        store: store.clone(),
        telemetry_path: options.telemetry_path.clone(),
        reload: options.lifecycle.then_some(reload_tx),
        events: Some(events),
    });
    let (server_stop_tx, mut server) = spawn_server(listeners, app, options.serve);
    let outcome = serve(
        &mut polling,
        &mut server,
        &mut signals,
        reload_rx,
        &reloading,
    )
    .await;
    polling.stop().await;
    let Some(signal) = outcome else {
        return EXIT_FAILURE;
    };
    tracing::info!(signal, "shutting down");
    if let (Some(task), Some(storage)) = (writer, &options.storage) {
        task.abort();
        save_at_shutdown(storage, &store, &self_metrics).await;
    }
    let _ = server_stop_tx.send(true);
    server_exit(server).await
}

/// With `--storage.path`, the writer of the state file after the cycles that change it.
fn spawn_writer(
    storage: Option<&Storage>,
    store: &Arc<Store>,
    self_metrics: &Arc<SelfMetrics>,
) -> Option<JoinHandle<()>> {
    let (store, metrics) = (store.clone(), self_metrics.clone());
    storage.map(|s| tokio::spawn(write_state(s.clone(), store, metrics)))
}

/// The HTTP server, until the sender it returns says stop.
fn spawn_server(
    listeners: Vec<tokio::net::TcpListener>,
    app: axum::Router,
    options: ServeOptions,
) -> (watch::Sender<bool>, JoinHandle<std::io::Result<()>>) {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(listeners, app, options, async move {
        let _ = stop_rx.changed().await;
    }));
    (stop_tx, server)
}

/// The last write of the state. A write hung on a dead mount must not keep the
/// process from exiting; an abandoned write leaves the previous file (write-temp,
/// rename).
async fn save_at_shutdown(storage: &Storage, store: &Store, self_metrics: &SelfMetrics) {
    let saved = tokio::time::timeout(SHUTDOWN_GRACE, save(storage, store, self_metrics));
    if saved.await.is_err() {
        tracing::warn!(
            file = %storage.file().display(),
            "the state was not written at shutdown: the write did not finish in time"
        );
    }
}

/// The storage directory is locked for the process's life, then the state is restored
/// before the first request is served: no scrape sees the images missing. A SIGTERM or
/// SIGINT meanwhile (the state on a hung mount) ends the start: `Err(exit code)`.
async fn start_storage(
    options: &DaemonOptions,
    store: &Store,
    self_metrics: &SelfMetrics,
    signals: &mut Signals,
) -> Result<(Option<DirLock>, RestoredTargets), u8> {
    let Some(storage) = &options.storage else {
        return Ok((None, RestoredTargets::default()));
    };
    let opened = tokio::select! {
        signal = signals.shutdown() => {
            tracing::info!(signal, "shutting down");
            return Err(EXIT_OK);
        }
        opened = open_storage(storage, store, self_metrics) => opened,
    };
    match opened {
        Ok((lock, restored)) => Ok((Some(lock), restored)),
        Err(e) => {
            tracing::error!(error = %e, "cannot use the storage directory");
            Err(EXIT_FAILURE)
        }
    }
}

/// Locks the storage directory, then restores the state from it.
async fn open_storage(
    storage: &Storage,
    store: &Store,
    metrics: &SelfMetrics,
) -> Result<(DirLock, RestoredTargets), LockError> {
    let lock = lock(storage).await?;
    Ok((lock, restore(storage, store, metrics).await))
}

/// Opens the listeners and says where the exporter listens; `None` when it cannot.
async fn listen(
    on: http::ListenOn,
    telemetry_path: &str,
    config: &Config,
) -> Option<Vec<tokio::net::TcpListener>> {
    let listeners = match on.open().await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen");
            return None;
        }
    };
    for listener in &listeners {
        let address = listener.local_addr().map(|a| a.to_string());
        tracing::info!(
            address = %address.unwrap_or_else(|e| e.to_string()),
            telemetry_path = %telemetry_path,
            images = config.image_count(),
            poll_interval = %humantime::format_duration(config.poll_interval),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
    }
    Some(listeners)
}

/// Serves reloads until a shutdown signal (its name), or `None` when the server ended
/// by itself.
async fn serve(
    polling: &mut Polling,
    server: &mut JoinHandle<std::io::Result<()>>,
    signals: &mut Signals,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
    reloading: &Reloading,
) -> Option<&'static str> {
    loop {
        let reply = tokio::select! {
            signal = signals.next() => match signal {
                Signal::Shutdown(name) => return Some(name),
                Signal::Hangup => None,
            },
            // The server stops only when told to; if it ends by itself, so does the daemon.
            ended = &mut *server => {
                tracing::error!(outcome = ?ended.map(|r| r.map_err(|e| e.to_string())), "HTTP server stopped unexpectedly");
                return None;
            }
            // None once every sender is gone (`/-/reload` is off): the branch is
            // disabled then, not taken as a reload.
            Some(request) = reload_rx.recv() => Some(request),
        };
        if let Err(signal) = reload(polling, signals, reply, reloading).await {
            return Some(signal);
        }
    }
}

/// One reload, answered on `reply` (from `/-/reload`) when given. A shutdown signal
/// during it abandons it: `Err(signal)`.
async fn reload(
    polling: &mut Polling,
    signals: &mut Signals,
    reply: Option<ReloadRequest>,
    reloading: &Reloading,
) -> Result<(), &'static str> {
    tracing::info!("reloading the configuration");
    let loaded = tokio::select! {
        signal = signals.shutdown() => {
            if let Some(reply) = reply {
                let _ = reply.send(Err("shutting down".into()));
            }
            return Err(signal);
        }
        loaded = load_config(&reloading.source, &reloading.projects) => loaded,
    };
    let result = match loaded {
        Ok(new) => polling.reload(new).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "reload refused; the previous configuration stays in force");
    }
    polling
        .self_metrics
        .config_loaded(result.is_ok(), now_unix());
    if let Some(reply) = reply {
        let _ = reply.send(result);
    }
    Ok(())
}

/// Waits (at most the grace period) for the server to finish its in-flight requests,
/// and says how the process exits.
async fn server_exit(server: JoinHandle<std::io::Result<()>>) -> u8 {
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) => EXIT_OK,
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, "HTTP server failed");
            EXIT_FAILURE
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "HTTP server task failed");
            EXIT_FAILURE
        }
        Err(_) => {
            tracing::warn!("in-flight requests did not finish in time; exiting anyway");
            EXIT_OK
        }
    }
}
