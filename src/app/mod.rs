//! The composition root: builds every component from a validated config, wires the channels
//! between them, runs until shutdown is asked for, then shuts down in order under a deadline:
//! tailers stop → batchers flush → sinks finish their calls → the last checkpoint is written.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::checkpoint::import::{self as agent_import, Action, ImportError, Imported};
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
    #[error(transparent)]
    Import(#[from] ImportError),
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
    run_importing(config, None, shutdown, reloading).await
}

/// As [`run`]; with `import`, the Kinesis Agent's checkpoint database, its checkpoints are
/// first given to the files that have none (`kinship run --import-checkpoints`).
pub async fn run_importing(
    config: Config,
    import: Option<PathBuf>,
    shutdown: CancellationToken,
    reloading: Option<Reloading>,
) -> Result<(), AppError> {
    let destinations = Destinations::build(&config).await?;
    start(config, import, shutdown, reloading, destinations).await
}

/// Runs the agent with `clients` making each flow's client: the real AWS clients, or another
/// implementation of [`PutRecords`]. With `reloading`, each request reads the config again
/// and applies it.
pub async fn run_with<C: ClientFactory>(
    config: Config,
    shutdown: CancellationToken,
    reloading: Option<Reloading>,
    clients: C,
) -> Result<(), AppError> {
    start(config, None, shutdown, reloading, clients).await
}

/// Runs the agent, after importing the Kinesis Agent's checkpoints from `import` if given.
async fn start<C: ClientFactory>(
    mut config: Config,
    import: Option<PathBuf>,
    shutdown: CancellationToken,
    reloading: Option<Reloading>,
    mut clients: C,
) -> Result<(), AppError> {
    // The agent's database is read first: if it cannot be, nothing has started.
    let agent_rows = match import.clone() {
        Some(db) => Some(blocking(move || agent_import::read_agent_db(&db)).await??),
        None => None,
    };
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
    let (mut store, mut loaded) = blocking(move || CheckpointStore::open(&state_dir)).await??;
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
    if let (Some(rows), Some(db)) = (agent_rows, import) {
        let flows = config.flows.clone();
        let saved = std::mem::take(&mut loaded.checkpoints);
        let (returned, imported) = blocking(move || {
            let imported = agent_import::import(&mut store, saved, &flows, rows);
            (store, imported)
        })
        .await?;
        store = returned;
        let imported = imported?;
        log_import(&imported, &db);
        loaded.checkpoints = imported.checkpoints;
    }
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

    let progress = metrics::ProgressSettings {
        interval: config.progress_interval,
        format: config.progress_format,
        behind_warning_bytes: config.behind_warning_bytes,
    };
    background.spawn(metrics::report_progress(
        Arc::clone(&metrics),
        progress,
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
            cloudwatch::Publishing {
                namespace: settings.namespace.clone(),
                interval: settings.interval,
                instance: settings.instance.clone(),
            },
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
    metrics.log_progress(config.progress_format);
    finished.map_err(|error| AppError::Task(error.to_string()))?;
    info!("Stopped.");
    Ok(())
}

/// Runs blocking work (file and database reads, the store's writes) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AppError::Task(error.to_string()))
}

/// Logs what became of each of the Kinesis Agent's checkpoints read from `db`.
fn log_import(imported: &Imported, db: &std::path::Path) {
    for outcome in &imported.outcomes {
        let flow = outcome.flow.as_deref().unwrap_or("-");
        let file = outcome.path.display();
        let agent_flow = &outcome.agent_flow;
        match &outcome.action {
            Action::Seeded { offset, size } => {
                info!(flow, file = %file, offset, size, agent_flow, "Seeded the file's checkpoint from the Kinesis Agent's.");
            }
            Action::Kept { offset } => {
                info!(flow, file = %file, offset, agent_flow, "Kept kinship's own checkpoint of the file over the Kinesis Agent's.");
            }
            Action::Skipped(reason) => {
                warn!(flow, file = %file, %reason, agent_flow, "Did not import the Kinesis Agent's checkpoint of the file; it is read as initial_position says.");
            }
        }
    }
    info!(database = %db.display(), outcomes = imported.outcomes.len(), seeded = imported.seeded(), "Imported the Kinesis Agent's checkpoints.");
}
