//! ims-exporter: who Huawei Cloud images are shared with, as Prometheus metrics.
//!
//! [`run`] wires the pieces: config → poller → IMS client → snapshot store →
//! metrics renderer → HTTP server. Each module owns one concern; see their docs.

pub mod allowlist;
pub mod audit;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod fake_ims;
pub mod ids;
pub mod ims;
pub mod logging;
pub mod metrics;
pub mod poller;
pub mod ratelimit;
pub mod server;
pub mod signer;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use crate::cli::Cli;
use crate::config::Config;
use crate::fake_ims::{FakeIms, FakeState};
use crate::ims::ImsClient;
use crate::metrics::{Format, Metrics, SelfMetrics};
use crate::poller::Poller;
use crate::snapshot::Store;

/// Exit codes, as documented in the README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// How long shutdown waits for in-flight scrapes before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the exporter as the command line says and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    logging::init(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(run_async(cli))
}

async fn run_async(cli: Cli) -> u8 {
    // In demo mode the fake IMS lives as long as the exporter.
    let mut demo_fake: Option<FakeIms> = None;
    let mut demo_churn: Option<tokio::task::JoinHandle<()>> = None;
    let config = if cli.demo {
        let state = FakeState::default();
        let secret = fake_ims::demo::populate(&state);
        // Shares change on the fake every two polls, so the audit has something to say.
        demo_churn = Some(tokio::spawn(fake_ims::demo::churn(
            state.clone(),
            cli.demo_poll_interval * 2,
        )));
        let fake = match FakeIms::start(state).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the demo's fake IMS");
                return EXIT_FAILURE;
            }
        };
        tracing::info!(endpoint = %fake.endpoint(), "demo mode: polling a built-in fake IMS");
        let config = fake_ims::demo::config(&fake.endpoint(), &secret, cli.demo_poll_interval);
        demo_fake = Some(fake);
        match config {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "demo config is invalid");
                return EXIT_FAILURE;
            }
        }
    } else {
        let env = |k: &str| std::env::var(k).ok();
        match config::load(&cli.config_file, &env) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid configuration");
                eprintln!("ims-exporter: {e}");
                return EXIT_CONFIG;
            }
        }
    };

    if cli.config_check {
        println!(
            "{}: OK: {} target(s), {} image(s)",
            if cli.demo {
                "demo".to_string()
            } else {
                cli.config_file.display().to_string()
            },
            config.targets.len(),
            config.image_count()
        );
        for source in config.credential_sources() {
            println!("credentials: {source}");
        }
        return EXIT_OK;
    }

    let code = serve(cli, Arc::new(config)).await;
    if let Some(task) = demo_churn {
        task.abort();
    }
    if let Some(fake) = demo_fake {
        fake.stop().await;
    }
    code
}

fn build(config: &Arc<Config>) -> Result<(Arc<Store>, Arc<Metrics>, Poller), reqwest::Error> {
    let self_metrics = Arc::new(SelfMetrics::new());
    let store = Arc::new(Store::new());
    let metrics = Arc::new(Metrics::new(store.clone(), &self_metrics));
    let client = ImsClient::new(config, self_metrics)?;
    let poller = Poller::new(config.clone(), client, store.clone());
    Ok((store, metrics, poller))
}

async fn serve(cli: Cli, config: Arc<Config>) -> u8 {
    let (store, metrics, poller) = match build(&config) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client");
            return EXIT_FAILURE;
        }
    };

    if cli.once {
        let all_ok = poller.once().await;
        print!("{}", metrics.render(Format::Text));
        return if all_ok { EXIT_OK } else { EXIT_FAILURE };
    }

    let address = server::normalize_listen_address(&cli.listen_address);
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
        telemetry_path = %cli.telemetry_path,
        images = config.image_count(),
        poll_interval = %humantime::format_duration(config.poll_interval),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let poll_task = tokio::spawn({
        let stop_rx = stop_rx.clone();
        async move { poller.run(stop_rx).await }
    });

    let app = server::router(server::AppState {
        metrics,
        store,
        telemetry_path: cli.telemetry_path.clone(),
    });
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.changed().await;
            })
            .await
    });

    let signal = shutdown_signal().await;
    tracing::info!(signal, "shutting down");
    let _ = stop_tx.send(true);
    let _ = poll_task.await;
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

/// Waits for SIGINT or SIGTERM and says which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
