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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::app::projects::ProjectResolver;
use crate::app::{EXIT_FAILURE, EXIT_OK};
use crate::config::{self, Config, ConfigError, ProjectLookup};
use crate::http::server::{self, ReloadRequest, ServeOptions};
use crate::ims::ImsClient;
use crate::poll::poller::Poller;
use crate::render::{Metrics, SelfMetrics};
use crate::shard::Shard;
use crate::state::storage::{Storage, StoredDiscovery};
use crate::state::Store;
use crate::timestamp::now_unix;

/// How long shutdown waits for in-flight scrapes before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where the configuration comes from, so that a reload reads it the same way.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A config file, and this replica's shard (from the command line).
    File(PathBuf, Shard),
    /// The demo's generated config (reloading re-reads the same text).
    Text { name: String, yaml: String },
}

impl ConfigSource {
    /// The file (or text) name used in errors.
    pub fn name(&self) -> String {
        match self {
            ConfigSource::File(path, _) => path.display().to_string(),
            ConfigSource::Text { name, .. } => name.clone(),
        }
    }

    /// Loads and validates the config, looking up omitted project IDs, and fetches
    /// temporary credentials that have not been fetched yet.
    pub async fn load(&self, projects: &dyn ProjectLookup) -> Result<Config, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        let config = match self {
            ConfigSource::File(path, shard) => {
                let mut config = config::load(path, &env, projects).await?;
                config.shard = *shard;
                config
            }
            ConfigSource::Text { name, yaml } => {
                config::build(yaml, name, &|_| None, projects).await?
            }
        };
        for provider in config.credential_providers() {
            if provider.current().is_none() {
                // Not fatal: polls report `auth` failures and the refresher keeps trying.
                if let Err(e) = provider.refresh().await {
                    tracing::error!(provider = provider.kind(), error = %e, "cannot fetch credentials");
                }
            }
        }
        Ok(config)
    }
}

/// Keeps temporary credentials fresh: refreshes each before it expires (40 minutes
/// before, or half-way for short-lived ones), retrying every few seconds on failure.
/// Also publishes their expiry to the store (a scrape reads values, never providers).
fn spawn_refreshers(config: &Config, store: &Arc<Store>) -> Vec<JoinHandle<()>> {
    publish_expiry(config, store);
    let providers = config.credential_providers();
    let publisher = {
        let (config, store) = (config.clone(), store.clone());
        tokio::spawn(async move {
            // A refresh after the API refused the credentials happens in the client:
            // picked up here within the period.
            let mut every = tokio::time::interval(EXPIRY_PUBLISH_PERIOD);
            loop {
                every.tick().await;
                publish_expiry(&config, &store);
            }
        })
    };
    providers
        .into_iter()
        .filter(|p| p.is_temporary())
        .map(|provider| {
            let (config, store) = (config.clone(), store.clone());
            tokio::spawn(async move {
                let mut fetched = now_unix();
                loop {
                    let wait = provider.refresh_delay(now_unix(), fetched).unwrap_or(RETRY_CREDENTIALS);
                    tokio::time::sleep(wait).await;
                    match provider.refresh().await {
                        Ok(()) => {
                            fetched = now_unix();
                            publish_expiry(&config, &store);
                            tracing::info!(provider = provider.kind(), expires_at = provider.expires_at().unwrap_or(0.0), "refreshed temporary credentials");
                        }
                        Err(e) => {
                            tracing::warn!(provider = provider.kind(), error = %e, "cannot refresh temporary credentials; retrying");
                            tokio::time::sleep(RETRY_CREDENTIALS).await;
                        }
                    }
                }
            })
        })
        .chain([publisher])
        .collect()
}

/// How often the credentials' expiry is copied into the store (besides after each
/// refresh here): a few atomic reads, so often enough that a scrape is never behind.
const EXPIRY_PUBLISH_PERIOD: Duration = Duration::from_secs(1);

/// Copies the expiry of the config's temporary credentials into the store.
pub fn publish_expiry(config: &Config, store: &Store) {
    store.set_credential_expiry(
        config
            .credential_providers()
            .iter()
            .filter_map(|p| p.expires_at().map(|e| (p.kind(), e)))
            .collect(),
    );
}

/// Wait between failed credential refreshes.
const RETRY_CREDENTIALS: Duration = Duration::from_secs(5);

pub struct DaemonOptions {
    pub listen_address: String,
    pub telemetry_path: String,
    pub serve: ServeOptions,
    /// `--web.enable-lifecycle`: whether `POST /-/reload` is served.
    pub lifecycle: bool,
    /// `--storage.path`: where state is kept across restarts.
    pub storage: Option<Storage>,
}

/// Loads the config on a blocking thread (driving the async IAM look-up from there),
/// so that config, allowlist, credential and CA files are never read on an async
/// worker: a file that hangs stalls the reload, not scrapes or shutdown.
pub async fn load_config(
    source: &ConfigSource,
    projects: &Arc<ProjectResolver>,
) -> Result<Config, ConfigError> {
    let (source, projects) = (source.clone(), projects.clone());
    let handle = tokio::runtime::Handle::current();
    let name = source.name();
    match tokio::task::spawn_blocking(move || handle.block_on(source.load(&*projects))).await {
        Ok(result) => result,
        Err(e) => Err(ConfigError::Parse {
            file: name,
            message: format!("loading failed: {e}"),
        }),
    }
}

/// A running poller and the means to stop it.
struct Running {
    poller: Arc<Poller>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(poller: Poller) -> Running {
        let poller = Arc::new(poller);
        let (stop, stop_rx) = watch::channel(false);
        let p = poller.clone();
        let task = tokio::spawn(async move { p.run(stop_rx).await });
        Running { poller, stop, task }
    }

    async fn stop(self) -> Arc<Poller> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.poller
    }
}

pub async fn run(
    source: ConfigSource,
    config: Config,
    options: DaemonOptions,
    self_metrics: Arc<SelfMetrics>,
    projects: Arc<ProjectResolver>,
    mut signals: Signals,
) -> u8 {
    let store = Arc::new(Store::new());
    let metrics = Arc::new(Metrics::new(store.clone(), self_metrics.clone()));
    let client = match ImsClient::new(&config.client_options(), self_metrics.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client");
            return EXIT_FAILURE;
        }
    };
    self_metrics.config_loaded(true, now_unix());

    // Restored before the first request is served: no scrape sees the images missing.
    let restored = match &options.storage {
        Some(storage) => restore(storage, &store, &self_metrics).await,
        None => Vec::new(),
    };

    let address = server::normalize_listen_address(&options.listen_address);
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %address, error = %e, "cannot listen");
            return EXIT_FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(address);
    tracing::info!(
        address = %local,
        telemetry_path = %options.telemetry_path,
        images = config.image_count(),
        poll_interval = %humantime::format_duration(config.poll_interval),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    let config = Arc::new(config);
    let mut refreshers = spawn_refreshers(&config, &store);
    let mut running = Running::start(Poller::new(config, client, store.clone(), None, &restored));
    let writer = options
        .storage
        .clone()
        .map(|s| tokio::spawn(write_state(s, store.clone(), self_metrics.clone())));

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let app = server::router(server::AppState {
        metrics,
        store: store.clone(),
        telemetry_path: options.telemetry_path.clone(),
        reload: options.lifecycle.then_some(reload_tx),
    });
    let (server_stop_tx, mut server_stop_rx) = watch::channel(false);
    let mut server = tokio::spawn(server::serve(listener, app, options.serve, async move {
        let _ = server_stop_rx.changed().await;
    }));

    let signal = loop {
        let reply = tokio::select! {
            signal = signals.next() => match signal {
                Signal::Shutdown(name) => break name,
                Signal::Hangup => None,
            },
            // The server stops only when told to; if it ends by itself, so does the daemon.
            ended = &mut server => {
                tracing::error!(outcome = ?ended.map(|r| r.map_err(|e| e.to_string())), "HTTP server stopped unexpectedly");
                running.stop().await;
                return EXIT_FAILURE;
            }
            // None once every sender is gone (`/-/reload` is off): the branch is
            // disabled then, not taken as a reload.
            Some(request) = reload_rx.recv() => Some(request),
        };
        tracing::info!("reloading the configuration");
        let loaded = tokio::select! {
            signal = signals.shutdown() => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err("shutting down".into()));
                }
                break signal;
            }
            loaded = load_config(&source, &projects) => loaded,
        };
        let result = match loaded {
            Ok(new) => {
                let new = Arc::new(new);
                match ImsClient::new(&new.client_options(), self_metrics.clone()) {
                    Ok(client) => {
                        let old = running.stop().await;
                        for task in refreshers.drain(..) {
                            task.abort();
                        }
                        refreshers = spawn_refreshers(&new, &store);
                        let poller =
                            Poller::new(new.clone(), client, store.clone(), Some(&old), &[]);
                        running = Running::start(poller);
                        tracing::info!(
                            images = new.image_count(),
                            targets = new.targets.len(),
                            "configuration reloaded"
                        );
                        Ok(())
                    }
                    Err(e) => Err(format!("cannot build the HTTP client: {e}")),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "reload refused; the previous configuration stays in force");
        }
        self_metrics.config_loaded(result.is_ok(), now_unix());
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    };

    tracing::info!(signal, "shutting down");
    running.stop().await;
    if let (Some(task), Some(storage)) = (writer, &options.storage) {
        task.abort();
        save(storage, &store, &self_metrics).await;
    }
    for task in refreshers {
        task.abort();
    }
    let _ = server_stop_tx.send(true);
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

/// Restores the state file into `store` (what the config no longer names is dropped
/// by the poller's first `set_images`), and returns the restored discovered sets. A
/// file that cannot be used is moved aside and the exporter starts clean.
async fn restore(storage: &Storage, store: &Store, metrics: &SelfMetrics) -> Vec<StoredDiscovery> {
    let s = storage.clone();
    let loaded = tokio::task::spawn_blocking(move || s.load()).await;
    match loaded {
        Ok(Ok(Some(r))) => {
            let members: usize = r.images.iter().map(|i| i.member_count()).sum();
            tracing::info!(
                file = %storage.file().display(), images = r.images.len(), members,
                written_at = %humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs_f64(r.written_at.max(0.0))
                ),
                "restored state; the first poll of each image is compared with it"
            );
            store.restore(r.images);
            metrics.state_restored(true);
            r.discovered
        }
        Ok(Ok(None)) => {
            tracing::info!(file = %storage.file().display(), "no state to restore; starting clean");
            metrics.state_restored(true);
            Vec::new()
        }
        Ok(Err(e)) => {
            let s = storage.clone();
            let aside = tokio::task::spawn_blocking(move || s.move_aside(now_unix()))
                .await
                .ok()
                .flatten();
            tracing::warn!(
                error = %e,
                moved_to = %aside.map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
                "cannot restore state; starting clean"
            );
            metrics.state_restored(false);
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot restore state; starting clean");
            metrics.state_restored(false);
            Vec::new()
        }
    }
}

/// Writes the state file after every poll cycle that changed what it keeps.
async fn write_state(storage: Storage, store: Arc<Store>, metrics: Arc<SelfMetrics>) {
    let mut written = store.generation();
    loop {
        store.cycle_ended().await;
        let now = store.generation();
        if now != written && save(&storage, &store, &metrics).await {
            written = now;
        }
    }
}

/// One crash-safe write of the current state, off the async workers.
async fn save(storage: &Storage, store: &Store, metrics: &SelfMetrics) -> bool {
    let snapshot = store.snapshot();
    let discovered: Vec<StoredDiscovery> = snapshot
        .targets
        .iter()
        .filter_map(|t| {
            Some(StoredDiscovery {
                region: t.region.to_string(),
                project_id: t.project_id.to_string(),
                images: t.discovered.as_deref()?.clone(),
            })
        })
        .collect();
    let s = storage.clone();
    let started = std::time::Instant::now();
    let result =
        tokio::task::spawn_blocking(move || s.write(&snapshot, &discovered, now_unix())).await;
    match result {
        Ok(Ok(bytes)) => {
            tracing::debug!(
                bytes,
                seconds = started.elapsed().as_secs_f64(),
                "state written"
            );
            metrics.state_written(true, now_unix());
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot write state");
            metrics.state_written(false, now_unix());
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot write state");
            metrics.state_written(false, now_unix());
            false
        }
    }
}

/// The signals the daemon acts on, listened for from the start and for its whole
/// life: a listener made anew on each pass would miss a signal sent in between.
pub struct Signals {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the listeners; call it before any slow start-up work.
    pub fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                hangup: signal(SignalKind::hangup()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next SIGHUP, SIGINT or SIGTERM.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let hangup = async {
                match &mut self.hangup {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let Signals {
                terminate,
                interrupt,
                ..
            } = self;
            tokio::select! {
                _ = hangup => Signal::Hangup,
                name = shutdown(interrupt, terminate) => Signal::Shutdown(name),
            }
        }
        #[cfg(not(unix))]
        Signal::Shutdown(self.shutdown().await)
    }

    /// SIGINT or SIGTERM, and which.
    pub async fn shutdown(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            shutdown(&mut self.interrupt, &mut self.terminate).await
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// What [`Signals::next`] received.
pub enum Signal {
    Hangup,
    Shutdown(&'static str),
}

#[cfg(unix)]
async fn shutdown(
    interrupt: &mut Option<tokio::signal::unix::Signal>,
    terminate: &mut Option<tokio::signal::unix::Signal>,
) -> &'static str {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = recv(interrupt) => "SIGINT",
        _ = recv(terminate) => "SIGTERM",
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}
