//! The composition root: builds every component from a validated config, wires the channels
//! between them, runs until shutdown is asked for, then shuts down in order under a deadline:
//! tailers stop → batchers flush → sinks finish their calls → the last checkpoint is written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::budget::MemoryBudget;
use crate::checkpoint::{self, AckTracker, CheckpointStore, StoreError};
use crate::config::{AwsSettings, Config, FlowConfig, InitialPosition};
use crate::metrics::{self, Metrics};
use crate::pipeline::{self, BatchBuilder, BatchLimits, KeyChooser};
use crate::record::{CopyFrom, FileId};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::kinesis::KinesisClient;
use crate::sink::{PutRecords, RetryPolicy, Sink};
use crate::source::{KnownOffset, OpenFiles, Source};

/// Blocks of lines (each at most one read, 256 KiB) queued between a flow's tailers and batcher.
const LINES_QUEUE_BLOCKS: usize = 16;
/// Acknowledgement events queued for the checkpoint store.
const ACK_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    State(#[from] StoreError),
    #[error(
        "no AWS region is set; set aws.region in the config, or AWS_REGION in the environment"
    )]
    NoRegion,
    #[error("a start-up task failed: {0}")]
    Task(String),
}

/// Runs the agent until `shutdown` fires, then stops it in order.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AppError> {
    let (client, region) = kinesis_client(&config.aws).await?;
    let endpoint = config
        .aws
        .endpoint_url
        .clone()
        .unwrap_or_else(|| "(AWS default)".to_owned());
    info!(region = %region, endpoint = %endpoint, "Destination settings.");
    run_with(config, shutdown, |flow| {
        KinesisClient::new(
            client.clone(),
            flow.kinesis_stream.clone(),
            region.clone(),
            flow.explicit_hash_key,
        )
    })
    .await
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
    let dead_letters = DeadLetters::in_dir(&config.state_dir);
    let tasks = TaskTracker::new();
    for flow in &config.flows {
        let mut flow = flow.clone();
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
        );
        let sink = Sink {
            flow: Arc::from(flow.name.as_str()),
            stream: flow.kinesis_stream.clone(),
            client: Arc::new(destination(&flow)),
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
            acks: acks.clone(),
        };
        tasks.spawn(source.run());
        tasks.spawn(pipeline::batcher::run(builder, lines_received, batches));
        tasks.spawn(sink.run(batches_received));
        info!(flow = %flow.name, stream = %flow.kinesis_stream, files = ?flow.files, "Flow started.");
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

    shutdown.cancelled().await;
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
    finished.map_err(|error| AppError::Task(error.to_string()))?;
    info!("Stopped.");
    Ok(())
}

/// One Kinesis client for every flow. The SDK's own retries are off: the sink retries with
/// knowledge of which records failed, and logs why.
async fn kinesis_client(aws: &AwsSettings) -> Result<(aws_sdk_kinesis::Client, String), AppError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(aws.connect_timeout)
                .operation_attempt_timeout(aws.request_timeout)
                .build(),
        );
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk_config = loader.load().await;
    let region = sdk_config
        .region()
        .map(ToString::to_string)
        .ok_or(AppError::NoRegion)?;
    Ok((aws_sdk_kinesis::Client::new(&sdk_config), region))
}
