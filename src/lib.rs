//! ims-exporter: who Huawei Cloud images are shared with, as Prometheus metrics.
//!
//! [`run`] wires the pieces: config → poller → IMS client → snapshot store →
//! metrics renderer → HTTP server. Each module owns one concern; see their docs.

pub mod allowlist;
pub mod audit;
pub mod cli;
pub mod config;
pub mod credential_provider;
pub mod credentials;
pub mod daemon;
pub mod ecs_metadata;
pub mod exposition;
pub mod fake_ims;
pub mod files;
pub mod iam;
pub mod ids;
pub mod ims;
pub mod logging;
pub mod metrics;
pub mod poller;
pub mod ratelimit;
pub mod server;
pub mod shard;
pub mod signer;
pub mod snapshot;
pub mod storage;
pub mod web_config;

use std::sync::Arc;

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
    let code = runtime.block_on(run_async(cli));
    // A file read that hangs (a FIFO, a dead mount) is left on its blocking thread;
    // exiting must not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn run_async(cli: Cli) -> u8 {
    // First, so that a SIGTERM during a slow start is not lost.
    let signals = daemon::Signals::new();
    // In demo mode the fake IMS lives as long as the exporter.
    let mut demo_fake: Option<FakeIms> = None;
    let mut demo_churn: Option<tokio::task::JoinHandle<()>> = None;
    let source = if cli.demo {
        let state = FakeState::default();
        let secret = fake_ims::demo::populate(&state, cli.demo_large_image_members);
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
        let yaml = fake_ims::demo::config_yaml(&fake.endpoint(), &secret, cli.demo_poll_interval);
        demo_fake = Some(fake);
        daemon::ConfigSource::Text {
            name: "demo config".into(),
            yaml,
        }
    } else {
        let shard = match shard::Shard::new(&cli.shard_index, cli.shard_count) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ims-exporter: {e}");
                return EXIT_CONFIG;
            }
        };
        daemon::ConfigSource::File(cli.config_file.clone(), shard)
    };
    let self_metrics = Arc::new(SelfMetrics::new());
    let projects = Arc::new(iam::ProjectResolver::new(self_metrics.clone()));
    let config = match daemon::load_config(&source, &projects).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("ims-exporter: {e}");
            return EXIT_CONFIG;
        }
    };

    if let Some(Err(e)) = cli.web_config_file.as_deref().map(web_config::check) {
        tracing::error!(error = %e, "invalid web configuration");
        eprintln!("ims-exporter: {e}");
        return EXIT_CONFIG;
    }

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

    let code = if cli.once {
        once(&config, self_metrics).await
    } else {
        let options = daemon::DaemonOptions {
            listen_address: cli.listen_address.clone(),
            telemetry_path: cli.telemetry_path.clone(),
            serve: server::ServeOptions {
                web_config_file: cli.web_config_file.clone(),
                max_requests: cli.web_max_requests,
            },
            lifecycle: cli.web_enable_lifecycle,
            storage: cli.storage_path.as_deref().map(storage::Storage::new),
        };
        daemon::run(source, config, options, self_metrics, projects, signals).await
    };
    if let Some(task) = demo_churn {
        task.abort();
    }
    if let Some(fake) = demo_fake {
        fake.stop().await;
    }
    code
}

/// `--once`: discover, poll everything once, print the metrics.
async fn once(config: &Config, self_metrics: Arc<SelfMetrics>) -> u8 {
    let store = Arc::new(Store::new());
    store.set_credentials(config.credential_providers());
    let metrics = Metrics::new(store.clone(), &self_metrics);
    let client = match ImsClient::new(&config.client_options(), self_metrics) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client");
            return EXIT_FAILURE;
        }
    };
    let poller = Poller::new(Arc::new(config.clone()), client, store, None, &[]);
    let all_ok = poller.once().await;
    print!("{}", metrics.render(Format::Text));
    if all_ok {
        EXIT_OK
    } else {
        EXIT_FAILURE
    }
}
