//! The composition root: builds every component from a validated config, wires the channels
//! between them, runs until shutdown is asked for, then shuts down in order under a deadline:
//! tailers stop → batchers flush → sinks finish their calls → the last checkpoint is written.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::checkpoint::{self, AckTracker, CheckpointStore, StoreError};
use crate::cloudwatch;
use crate::config::{Config, InitialPosition};
use crate::exporter;
use crate::limits::MemoryBudget;
use crate::limits::OpenFiles;
use crate::metrics::{self, Metrics};
use crate::reload::{self, Reloading};
use crate::service;
use crate::sink::clients::ClientError;
use crate::sink::dead_letter::DeadLetters;

mod clients;
pub mod command;
mod flows;
mod shards;
pub mod signals;

use clients::*;
pub use clients::{check_online, ClientFactory, Destinations, FlowEc2Access};
use flows::*;
/// Acknowledgement events queued for the checkpoint store.
const ACK_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    State(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot listen for metrics on {address} (metrics.listen): {source}")]
    MetricsListen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the dry-run output {path}: {source}")]
    DryRunOutput {
        path: String,
        source: std::io::Error,
    },
    #[error("a start-up task failed: {0}")]
    Task(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the agent until `shutdown` fires, then stops it in order.
/// With `reloading`, each request reads the config file again and applies it.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    reloading: Option<Reloading>,
) -> Result<(), AppError> {
    let destinations = Destinations::build(&config).await?;
    run_with(config, shutdown, reloading, destinations).await
}

/// Runs the agent with `clients` making each flow's client: the real AWS clients, or another
/// implementation of [`PutRecords`]. With `reloading`, each request reads the config again
/// and applies it.
pub async fn run_with<C: ClientFactory>(
    mut config: Config,
    shutdown: CancellationToken,
    reloading: Option<Reloading>,
    mut clients: C,
) -> Result<(), AppError> {
    let mut starting: Vec<Starting<C::Client>> = config
        .flows
        .iter()
        .map(|flow| {
            Starting::new(
                flow,
                clients.client_for(flow),
                clients.ec2_access(flow).map(|access| access.0),
                &shutdown,
            )
        })
        .collect();
    check_destinations(&mut starting, &shutdown).await;

    let state_dir = config.state_dir.clone();
    let (store, loaded) = tokio::task::spawn_blocking(move || CheckpointStore::open(&state_dir))
        .await
        .map_err(|error| AppError::Task(error.to_string()))??;
    if loaded.removed_leftover {
        info!(path = %store.path().display(), "Removed the temp file of an interrupted checkpoint write; the last complete checkpoint is used.");
    }
    if let Some(corrupt) = &loaded.corrupt {
        error!(path = %store.path().display(), reason = %corrupt.reason, moved_to = %corrupt.moved_to.display(), "The checkpoint file is corrupt and was moved aside; every file is read again from its start (lines already delivered are sent again, none is lost).");
    }
    if let Some(reason) = &loaded.torn_entry {
        info!(path = %store.journal_path().display(), %reason, "The checkpoint journal's last entry was cut short by a crash while it was written, and is ignored; the lines it covered are sent again.");
    }
    if let Some(corrupt) = &loaded.corrupt_journal {
        error!(path = %store.journal_path().display(), reason = %corrupt.reason, moved_to = %corrupt.moved_to.display(), "The checkpoint journal is corrupt and was moved aside; its entries before the bad one are used, and every file without a checkpoint is read from its start (lines already delivered are sent again, none is lost).");
    }
    info!(path = %store.path().display(), files = loaded.checkpoints.len(), journal_entries = loaded.journal_entries, "Checkpoints loaded.");
    let start_over = loaded.start_over();

    let metrics = Arc::new(Metrics::new(
        config.flows.iter().map(|flow| flow.name.as_str()),
    ));
    // The agent's own tasks beside the flows (metrics, progress, the watchdog, config
    // watching) run until the last checkpoint is written, then stop together on `finish`;
    // `finish` also stops the checkpoint store early if the shutdown grace period ends first.
    let background = TaskTracker::new();
    let finish = CancellationToken::new();
    if let Some(settings) = &config.metrics {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| AppError::MetricsListen {
                address: settings.listen,
                source,
            })?;
        background.spawn(exporter::serve(
            listener,
            Arc::clone(&metrics),
            settings.stuck_after,
            finish.clone(),
        ));
    }
    let mut resume = resume_points(&loaded.checkpoints);

    let (acks, acks_received) = mpsc::channel(ACK_QUEUE);
    let (releases, releases_received) = mpsc::channel(1);
    let checkpoint_task = tokio::spawn(checkpoint::run(
        store,
        AckTracker::new(loaded.checkpoints),
        acks_received,
        releases_received,
        checkpoint::Settings {
            interval: config.checkpoint_interval,
            expiry: config.checkpoint_expiry,
            commit: config.checkpoint_commit,
        },
        Arc::clone(&metrics),
        finish.clone(),
    ));

    let open_files = OpenFiles::new(config.max_open_files);
    let budget = MemoryBudget::new(config.memory_budget);
    metrics.watch_memory(&budget);
    metrics.watch_open_files(&open_files);
    let mut flows = Flows {
        acks,
        releases,
        metrics: Arc::clone(&metrics),
        open_files,
        budget,
        dead_letters: DeadLetters::in_dir(&config.state_dir),
        checkpoint_expiry: config.checkpoint_expiry,
        shutdown: shutdown.clone(),
        running: Vec::new(),
    };
    for mut flow in starting {
        if start_over {
            flow.flow.initial_position = InitialPosition::StartOfFile;
        }
        let flow_resume = resume.remove(&flow.flow.name).unwrap_or_default();
        flows.start(flow, flow_resume).await;
    }

    background.spawn(metrics::report_progress(
        Arc::clone(&metrics),
        config.progress_interval,
        finish.clone(),
    ));
    info!(flows = config.flows.len(), "kinship is running.");
    service::notify(&format!(
        "READY=1\nSTATUS=Shipping {} flow(s).",
        config.flows.len()
    ));
    if let (Some(settings), Some(client)) = (&config.cloudwatch, clients.cloudwatch()) {
        background.spawn(cloudwatch::publish(
            client,
            settings.namespace.clone(),
            settings.interval,
            Arc::clone(&metrics),
            finish.clone(),
        ));
    }
    if let Some(interval) = service::watchdog_interval() {
        background.spawn(service::feed_watchdog(interval, finish.clone()));
    }

    match reloading {
        Some(mut reloading) => {
            if config.watch_config {
                background.spawn(reload::watch_file(
                    config.source.clone(),
                    reloading.trigger.clone(),
                    shutdown.clone(),
                ));
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(()) = reloading.requests.recv() => {
                        service::notify("RELOADING=1\nSTATUS=Reloading the config.");
                        flows.reload(&mut config, &reloading.load, &mut clients).await;
                        service::notify(&format!(
                            "READY=1\nSTATUS=Shipping {} flow(s).",
                            flows.running.len()
                        ));
                    }
                }
            }
        }
        None => shutdown.cancelled().await,
    }

    service::notify("STOPPING=1\nSTATUS=Shutting down: sending what was read.");
    info!(grace = ?config.shutdown_grace, "Shutting down: reading stopped; sending what was read.");
    // The checkpoint store stops once every sender of acknowledgements is gone: these, and
    // then the flows' own as they finish.
    let Flows {
        running,
        acks,
        releases,
        ..
    } = flows;
    drop((acks, releases));
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    let mut finished_in_time = true;
    for flow in &running {
        if tokio::time::timeout_at(deadline, flow.tasks.wait())
            .await
            .is_err()
        {
            finished_in_time = false;
            break;
        }
    }
    if !finished_in_time {
        warn!(grace = ?config.shutdown_grace, "The shutdown grace period ended before every call finished; lines not delivered are read again at the next start.");
        finish.cancel();
    }
    let finished = checkpoint_task.await;
    finish.cancel();
    background.close();
    background.wait().await;
    metrics.log_progress();
    finished.map_err(|error| AppError::Task(error.to_string()))?;
    info!("Stopped.");
    Ok(())
}
