//! The application: wires config, poller, store, renderer and HTTP server together
//! for the three ways to run (daemon, `--once`, `--demo`), and owns the exit codes.
//! The only module that knows every other one.

pub(crate) mod credentials;
pub(crate) mod daemon;
mod demo;
mod once;
mod persist;
pub(crate) mod projects;
pub(crate) mod signals;
pub(crate) mod source;

use std::sync::Arc;

use crate::app::projects as iam;
use crate::cli::Cli;
use crate::config::web;
use crate::http;
use crate::render::SelfMetrics;
use crate::state::storage;
use crate::{logging, shard};

/// Exit codes, as documented in the README.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

/// Runs the exporter as the command line says and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    logging::init(cli.log_level, cli.log_format);
    // Taken while the process has one thread (it changes the environment).
    let listen = if cli.web_systemd_socket && !cli.once && !cli.config_check {
        match http::systemd_sockets() {
            Ok(sockets) => http::ListenOn::Inherited(sockets),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen");
                eprintln!("ims-exporter: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        http::ListenOn::Addresses(cli.listen_address.clone())
    };
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
    let code = runtime.block_on(run_async(cli, listen));
    // A file read that hangs (a FIFO, a dead mount) is left on its blocking thread;
    // exiting must not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn run_async(cli: Cli, listen: http::ListenOn) -> u8 {
    // First, so that a SIGTERM during a slow start is not lost.
    let signals = signals::Signals::new();
    // In demo mode the fake IMS lives as long as the exporter.
    let mut demo: Option<demo::Demo> = None;
    let source = if cli.demo {
        match demo::Demo::start(cli.demo_large_image_members, cli.demo_poll_interval).await {
            Ok((d, source)) => {
                demo = Some(d);
                source
            }
            Err(code) => return code,
        }
    } else {
        let shard = match shard::Shard::new(&cli.shard_index, cli.shard_count) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ims-exporter: {e}");
                return EXIT_CONFIG;
            }
        };
        source::ConfigSource::File(cli.config_file.clone(), shard)
    };
    let self_metrics = Arc::new(SelfMetrics::new());
    let projects = Arc::new(iam::ProjectResolver::new(self_metrics.clone()));
    let config = match source::load_config(&source, &projects).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("ims-exporter: {e}");
            return EXIT_CONFIG;
        }
    };

    if let Some(Err(e)) = cli.web_config_file.as_deref().map(web::check) {
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
        once::run(&config, self_metrics, cli.once_format).await
    } else {
        let options = daemon::DaemonOptions {
            listen,
            telemetry_path: cli.telemetry_path.clone(),
            serve: http::ServeOptions {
                web_config_file: cli.web_config_file.clone(),
                max_requests: cli.web_max_requests,
            },
            lifecycle: cli.web_enable_lifecycle,
            storage: cli.storage_path.as_deref().map(|dir| {
                let limits = storage::Limits {
                    members_per_image: config.max_members_per_image,
                    members_total: config.max_members_total,
                };
                storage::Storage::new(dir, limits)
            }),
        };
        daemon::run(source, config, options, self_metrics, projects, signals).await
    };
    if let Some(demo) = demo {
        demo.stop().await;
    }
    code
}
