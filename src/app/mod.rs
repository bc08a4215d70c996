//! The application: wires config, poller, store, renderer and HTTP server together
//! for the three ways to run (daemon, `--once`, `--demo`), and owns the exit codes.
//! The only module that knows every other one.

pub(crate) mod check;
mod credentials;
pub(crate) mod daemon;
mod demo;
pub mod exit;
mod once;
mod persist;
pub(crate) mod projects;
mod render_options;
pub(crate) mod signals;
pub(crate) mod source;
mod webhook;

use std::sync::Arc;

use crate::app::projects as iam;
use crate::cli::Cli;
use crate::http;
use crate::http::web;
use crate::render::SelfMetrics;
use crate::state::storage;
use crate::{logging, shard};

use crate::app::exit::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use crate::poll::plan::Plan;

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
    let (demo, source) = match config_source(&cli).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = match start(&cli, source).await {
        Ok(started) if cli.config_check => config_check(&cli, &started.plan),
        Ok(started) if cli.once => {
            let storage = cli
                .storage_path
                .as_deref()
                .map(|dir| storage_of(dir, &started.plan));
            once::run(started.plan, started.self_metrics, cli.once_format, storage).await
        }
        Ok(started) => daemon(&cli, listen, started, signals).await,
        Err(code) => code,
    };
    if let Some(demo) = demo {
        demo.stop().await;
    }
    code
}

/// Where the config comes from: the demo's fake (started here) or the file.
async fn config_source(cli: &Cli) -> Result<(Option<demo::Demo>, source::ConfigSource), u8> {
    if cli.demo {
        let (demo, source) =
            demo::Demo::start(cli.demo_large_image_members, cli.demo_poll_interval).await?;
        return Ok((Some(demo), source));
    }
    match shard::Shard::new(&cli.shard_index, cli.shard_count) {
        Ok(shard) => Ok((
            None,
            source::ConfigSource::File(cli.config_file.clone(), shard),
        )),
        Err(e) => {
            eprintln!("ims-exporter: {e}");
            Err(EXIT_CONFIG)
        }
    }
}

/// A loaded, runnable configuration.
struct Started {
    source: source::ConfigSource,
    projects: Arc<iam::ProjectResolver>,
    plan: Plan,
    self_metrics: Arc<SelfMetrics>,
}

/// Loads and validates the config and the web config, and builds the plan that runs
/// it (fetching temporary credentials); or the exit code.
async fn start(cli: &Cli, source: source::ConfigSource) -> Result<Started, u8> {
    let self_metrics = Arc::new(SelfMetrics::new());
    let projects = Arc::new(iam::ProjectResolver::new(self_metrics.clone()));
    let refuse = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "invalid {what}");
        eprintln!("ims-exporter: {e}");
        EXIT_CONFIG
    };
    let config = source::load_config(&source, &projects)
        .await
        .map_err(|e| refuse("configuration", &e))?;
    if let Some(Err(e)) = cli.web_config_file.as_deref().map(web::check) {
        return Err(refuse("web configuration", &e));
    }
    let plan = Plan::new(config, self_metrics.clone(), None).map_err(|e| {
        tracing::error!(error = %e, "cannot run the configuration");
        EXIT_FAILURE
    })?;
    plan.fetch_missing_credentials().await;
    self_metrics.config_loaded(true, crate::timestamp::now_unix());
    Ok(Started {
        source,
        projects,
        plan,
        self_metrics,
    })
}

/// `--config.check`: what was loaded, and where the credentials come from.
fn config_check(cli: &Cli, plan: &Plan) -> u8 {
    let name = if cli.demo {
        "demo".to_string()
    } else {
        cli.config_file.display().to_string()
    };
    println!(
        "{name}: OK: {} target(s), {} image(s)",
        plan.config.targets.len(),
        plan.config.image_count()
    );
    for provider in &plan.providers {
        println!("credentials: {}", provider.describe());
    }
    check::print_events(&plan.config);
    check::print_incoming(&plan.config);
    EXIT_OK
}

/// The state directory with the config's caps.
fn storage_of(dir: &std::path::Path, plan: &Plan) -> storage::Storage {
    let limits = storage::Limits {
        members_per_image: plan.config.max_members_per_image,
        members_total: plan.config.max_members_total,
    };
    storage::Storage::new(dir, limits)
}

async fn daemon(
    cli: &Cli,
    listen: http::ListenOn,
    started: Started,
    signals: signals::Signals,
) -> u8 {
    let options = daemon::DaemonOptions {
        listen,
        telemetry_path: cli.telemetry_path.clone(),
        serve: http::ServeOptions {
            web_config_file: cli.web_config_file.clone(),
            max_requests: cli.web_max_requests,
            telemetry_path: cli.telemetry_path.clone(),
            timeouts: cli.web_timeout.map(http::Timeouts::all).unwrap_or_default(),
        },
        lifecycle: cli.web_enable_lifecycle,
        storage: cli
            .storage_path
            .as_deref()
            .map(|dir| storage_of(dir, &started.plan)),
    };
    let reloading = daemon::Reloading {
        source: started.source,
        projects: started.projects,
    };
    daemon::run(
        reloading,
        started.plan,
        options,
        started.self_metrics,
        signals,
    )
    .await
}
