//! The composition root: builds every component from a validated config, wires the channels
//! between them, runs until shutdown is asked for, then shuts down in order under a deadline:
//! tailers stop → batchers flush → sinks finish their calls → the last checkpoint is written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::aws::{AwsClients, ClientError, FlowClients};
use crate::budget::MemoryBudget;
use crate::checkpoint::{self, AckTracker, CheckpointStore, StoreError};
use crate::config::{Combine, Config, Destination, DestinationKind, FlowConfig, InitialPosition};
use crate::exporter;
use crate::metrics::{self, Metrics};
use crate::pipeline::combine::Combiner;
use crate::pipeline::shards::{Shard, ShardMap};
use crate::pipeline::{self, BatchBuilder, BatchLimits, KeyChooser};
use crate::record::{CopyFrom, FileId};
use crate::service;
use crate::sink::check::{self, CheckFailed, CheckPassed};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::destination::DestinationClient;
use crate::sink::dry_run::DryRunOutput;
use crate::sink::{Billing, PutRecords, RetryPolicy, Sink};
use crate::source::{KnownOffset, OpenFiles, Source};

/// Blocks of lines (each at most one read, 256 KiB) queued between a flow's tailers and batcher.
const LINES_QUEUE_BLOCKS: usize = 16;
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
}

/// Runs the agent until `shutdown` fires, then stops it in order.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let destinations = Destinations::build(&config).await?;
    run_with(config, shutdown, move |flow| destinations.client_for(flow)).await
}

/// The AWS clients of every flow (dry-run flows need none) and the dry-run output.
pub struct Destinations {
    clients: HashMap<String, FlowClients>,
    dry_run: Option<Arc<DryRunOutput>>,
}

impl Destinations {
    /// Builds each flow's clients, sharing them between flows with equal AWS settings.
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        let mut aws = AwsClients::new();
        let mut clients = HashMap::new();
        for flow in config.flows.iter().filter(|flow| !flow.dry_run) {
            let flow_clients = aws.for_flow(flow).await?;
            info!(flow = %flow.name, destination = %flow.destination, region = %flow_clients.region, endpoint = flow.aws.endpoint_url.as_deref().unwrap_or("(AWS default)"), credentials = %flow.aws.describe_credentials(), "Destination settings.");
            clients.insert(flow.name.clone(), flow_clients);
        }
        if !clients.is_empty() {
            info!(
                flows = clients.len(),
                distinct_settings = aws.distinct_settings(),
                "AWS clients ready; flows with equal settings share one."
            );
        }
        let dry_run = if config.flows.iter().any(|flow| flow.dry_run) {
            let path = config.dry_run_output.clone();
            let output =
                DryRunOutput::open(path.as_deref()).map_err(|source| AppError::DryRunOutput {
                    path: path
                        .as_ref()
                        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string()),
                    source,
                })?;
            Some(output)
        } else {
            None
        };
        Ok(Self { clients, dry_run })
    }

    /// The client `flow` sends through; one that refuses every call if its clients are
    /// missing (a flow not in the config these were built from).
    pub fn client_for(&self, flow: &FlowConfig) -> DestinationClient {
        DestinationClient::for_flow(flow, self.clients.get(&flow.name), self.dry_run.as_ref())
            .unwrap_or_else(|| DestinationClient::unavailable(&flow.name))
    }
}

/// Runs the start-up checks of every flow that sends to AWS, at once; returns each flow's
/// name, destination and outcome, in config order.
pub async fn check_online(
    config: &Config,
) -> Result<Vec<(String, Destination, Result<CheckPassed, CheckFailed>)>, AppError> {
    let destinations = Destinations::build(config).await?;
    let mut checks = spawn_checks(
        config
            .flows
            .iter()
            .map(|flow| (flow, Arc::new(destinations.client_for(flow)))),
    );
    let mut outcomes: Vec<Option<Result<CheckPassed, CheckFailed>>> =
        config.flows.iter().map(|_| None).collect();
    while let Some(done) = checks.join_next().await {
        let (index, outcome) = done.map_err(|error| AppError::Task(error.to_string()))?;
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = Some(outcome);
        }
    }
    Ok(config
        .flows
        .iter()
        .zip(outcomes)
        .filter_map(|(flow, outcome)| Some((flow.name.clone(), flow.destination.clone(), outcome?)))
        .collect())
}

/// Starts the checks of every flow that sends to AWS, each tagged with its flow's index.
fn spawn_checks<'a, P: PutRecords>(
    flows: impl Iterator<Item = (&'a FlowConfig, Arc<P>)>,
) -> JoinSet<(usize, Result<CheckPassed, CheckFailed>)> {
    let mut checks = JoinSet::new();
    for (index, (flow, client)) in flows.enumerate() {
        if flow.dry_run {
            continue;
        }
        let kind = flow.destination.kind;
        let deadline = check::deadline(flow);
        checks.spawn(async move { (index, check::check(client.as_ref(), kind, deadline).await) });
    }
    checks
}

/// How often an aggregating flow learns its stream's shards again, besides when a record lands
/// on another shard than expected.
const SHARD_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The shard map an aggregating flow groups records by: learnt now, then kept fresh by a task.
/// A dry run aggregates as for a stream of one shard; a client that cannot list shards leaves
/// the map empty, and only records with equal keys are aggregated together.
async fn shard_map<P: PutRecords>(
    flow: &FlowConfig,
    client: &Arc<P>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Arc<ShardMap>> {
    if flow.combine != Combine::Kpl {
        return None;
    }
    let Some(map) = client.shards() else {
        let map = ShardMap::new();
        if flow.dry_run {
            map.replace(vec![Shard {
                id: "dry-run".into(),
                start: 0,
                end: u128::MAX,
            }]);
        }
        return Some(map);
    };
    let deadline = check::deadline(flow);
    match tokio::time::timeout(deadline, client.refresh_shards()).await {
        Ok(Ok(count)) => {
            info!(flow = %flow.name, shards = count, "Shards learnt; records are aggregated per shard.")
        }
        Ok(Err(failure)) => {
            warn!(flow = %flow.name, cause = %failure, "Cannot list the stream's shards (kinesis:ListShards); until they are known, only records with equal partition keys are aggregated together.")
        }
        Err(_) => {
            warn!(flow = %flow.name, "Listing the stream's shards timed out; until they are known, only records with equal partition keys are aggregated together.")
        }
    }
    tasks.spawn(keep_shards_fresh(
        Arc::clone(client),
        Arc::clone(&map),
        flow.name.clone(),
        shutdown.clone(),
    ));
    Some(map)
}

/// Learns the shards again every [`SHARD_REFRESH_EVERY`], and at once when asked.
async fn keep_shards_fresh<P: PutRecords>(
    client: Arc<P>,
    map: Arc<ShardMap>,
    flow: String,
    stop: CancellationToken,
) {
    let mut known = map.snapshot().len();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SHARD_REFRESH_EVERY) => {}
            _ = map.refresh_requested() => {}
        }
        match client.refresh_shards().await {
            Ok(count) => {
                if count != known {
                    info!(flow = %flow, shards = count, before = known, "The stream's shards changed.");
                }
                known = count;
            }
            Err(failure) => {
                warn!(flow = %flow, cause = %failure, "Cannot list the stream's shards; the last known map is kept.")
            }
        }
    }
}

/// Checks every flow's destination at once before tailing starts; logs each result, applies
/// learnt record size limits, and leaves a task checking again for each flow that failed.
async fn check_destinations<P: PutRecords>(
    flows: &mut [(FlowConfig, Arc<P>)],
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let mut checks = spawn_checks(
        flows
            .iter()
            .map(|(flow, client)| (flow, Arc::clone(client))),
    );
    loop {
        let done = tokio::select! {
            _ = shutdown.cancelled() => return,
            done = checks.join_next() => done,
        };
        let Some(done) = done else { return };
        let Ok((index, outcome)) = done else { continue };
        let Some((flow, client)) = flows.get_mut(index) else {
            continue;
        };
        match outcome {
            Ok(passed) => {
                check::log_passed(&flow.name, &flow.destination, &passed);
                check::apply_learned_limit(flow, &passed);
            }
            Err(failed) => {
                check::log_failed(&flow.name, &flow.destination, &failed);
                tasks.spawn(check::keep_checking(
                    Arc::clone(client),
                    flow.name.clone(),
                    flow.destination.clone(),
                    check::deadline(flow),
                    shutdown.clone(),
                ));
            }
        }
    }
}

/// Runs the agent with `destination` making each flow's client: the real Kinesis client, or
/// another implementation of [`PutRecords`] (tests run the whole agent in-process this way).
pub async fn run_with<P, F>(
    config: Config,
    shutdown: CancellationToken,
    destination: F,
) -> Result<(), AppError>
where
    P: PutRecords,
    F: Fn(&FlowConfig) -> P,
{
    let tasks = TaskTracker::new();
    let mut flows: Vec<(FlowConfig, Arc<P>)> = config
        .flows
        .iter()
        .map(|flow| (flow.clone(), Arc::new(destination(flow))))
        .collect();
    check_destinations(&mut flows, &tasks, &shutdown).await;

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
    info!(path = %store.path().display(), files = loaded.checkpoints.len(), "Checkpoints loaded.");
    let start_over = loaded.corrupt.is_some();

    let metrics = Arc::new(Metrics::new(
        config.flows.iter().map(|flow| flow.name.as_str()),
    ));
    let stop_exporter = CancellationToken::new();
    let exporter = match &config.metrics {
        Some(settings) => {
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .map_err(|source| AppError::MetricsListen {
                    address: settings.listen,
                    source,
                })?;
            Some(tokio::spawn(exporter::serve(
                listener,
                Arc::clone(&metrics),
                settings.stuck_after,
                stop_exporter.clone(),
            )))
        }
        None => None,
    };
    let mut checkpoints_by_flow: HashMap<String, HashMap<FileId, KnownOffset>> = HashMap::new();
    let mut truncated_by_flow: HashMap<String, Vec<(CopyFrom, PathBuf)>> = HashMap::new();
    for saved in &loaded.checkpoints {
        for copy_from in &saved.copy_from {
            truncated_by_flow
                .entry(saved.flow.clone())
                .or_default()
                .push((*copy_from, saved.path.clone()));
        }
        let known = KnownOffset {
            offset: saved.offset,
            head: saved.head,
            path: Some(saved.path.clone()),
        };
        checkpoints_by_flow
            .entry(saved.flow.clone())
            .or_default()
            .insert(saved.id, known);
    }

    let (acks, acks_received) = mpsc::channel(ACK_QUEUE);
    let stop_checkpoints = CancellationToken::new();
    let checkpoint_task = tokio::spawn(checkpoint::run(
        store,
        AckTracker::new(loaded.checkpoints),
        acks_received,
        config.checkpoint_interval,
        config.checkpoint_expiry,
        Arc::clone(&metrics),
        stop_checkpoints.clone(),
    ));

    let open_files = OpenFiles::new(config.max_open_files);
    let budget = MemoryBudget::new(config.memory_budget);
    metrics.watch_memory(&budget);
    metrics.watch_open_files(&open_files);
    let dead_letters = DeadLetters::in_dir(&config.state_dir);
    for (mut flow, client) in flows {
        if start_over {
            flow.initial_position = InitialPosition::StartOfFile;
        }
        let flow = Arc::new(flow);
        let Some(flow_metrics) = metrics.flow(&flow.name) else {
            continue;
        };
        let (lines, lines_received) = mpsc::channel(LINES_QUEUE_BLOCKS);
        let (batches, batches_received) = mpsc::channel(flow.max_in_flight);
        let source = Source {
            flow: Arc::clone(&flow),
            checkpoints: checkpoints_by_flow.remove(&flow.name).unwrap_or_default(),
            truncated: truncated_by_flow.remove(&flow.name).unwrap_or_default(),
            checkpoint_expiry: config.checkpoint_expiry,
            lines,
            acks: acks.clone(),
            metrics: Arc::clone(&flow_metrics),
            open_files: Arc::clone(&open_files),
            budget: Arc::clone(&budget),
            cancel: shutdown.clone(),
        };
        let builder = BatchBuilder::new(
            BatchLimits {
                max_records: flow.max_batch_records,
                max_bytes: flow.max_batch_bytes,
                max_age: flow.max_batch_age,
            },
            KeyChooser::new(flow.partition_key.clone()),
        )
        .with_combiner(Combiner::new(
            flow.combine,
            flow.compression,
            flow.max_record_bytes,
            shard_map(&flow, &client, &tasks, &shutdown).await,
        ));
        let sink = Sink {
            flow: Arc::from(flow.name.as_str()),
            stream: flow.destination.to_string(),
            client,
            max_in_flight: flow.max_in_flight,
            max_batch_bytes: flow.max_batch_bytes,
            retry: RetryPolicy {
                initial: flow.retry_initial_backoff,
                max: flow.retry_max_backoff,
            },
            give_up: flow
                .max_retry_duration
                .map(|limit| (limit, Arc::clone(&dead_letters))),
            metrics: flow_metrics,
            compression: flow.compression,
            billing: match flow.destination.kind {
                DestinationKind::Kinesis => Billing::KinesisPutUnits,
                DestinationKind::Firehose => Billing::FirehoseUnits,
            },
            acks: acks.clone(),
        };
        tasks.spawn(source.run());
        tasks.spawn(pipeline::batcher::run(builder, lines_received, batches));
        tasks.spawn(sink.run(batches_received));
        info!(flow = %flow.name, destination = %flow.destination, dry_run = flow.dry_run, files = ?flow.files, "Flow started.");
    }
    drop(acks);
    tasks.close();

    let stop_progress = CancellationToken::new();
    let progress = tokio::spawn(metrics::report_progress(
        Arc::clone(&metrics),
        config.progress_interval,
        stop_progress.clone(),
    ));
    info!(flows = config.flows.len(), "kinship is running.");
    service::notify(&format!(
        "READY=1\nSTATUS=Shipping {} flow(s).",
        config.flows.len()
    ));
    let stop_watchdog = CancellationToken::new();
    if let Some(interval) = service::watchdog_interval() {
        tokio::spawn(service::feed_watchdog(interval, stop_watchdog.clone()));
    }

    shutdown.cancelled().await;
    service::notify("STOPPING=1\nSTATUS=Shutting down: sending what was read.");
    info!(grace = ?config.shutdown_grace, "Shutting down: reading stopped; sending what was read.");
    if tokio::time::timeout(config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!(grace = ?config.shutdown_grace, "The shutdown grace period ended before every call finished; lines not delivered are read again at the next start.");
        stop_checkpoints.cancel();
    }
    let finished = checkpoint_task.await;
    stop_progress.cancel();
    let _ = progress.await;
    metrics.log_progress();
    stop_exporter.cancel();
    stop_watchdog.cancel();
    if let Some(exporter) = exporter {
        let _ = exporter.await;
    }
    finished.map_err(|error| AppError::Task(error.to_string()))?;
    info!("Stopped.");
    Ok(())
}
