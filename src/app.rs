//! The composition root: builds every component from a validated config, wires the channels
//! between them, runs until shutdown is asked for, then shuts down in order under a deadline:
//! tailers stop → batchers flush → sinks finish their calls → the last checkpoint is written.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::aws::{AwsClients, ClientError, FlowClients};
use crate::checkpoint::{self, AckTracker, Checkpoint, CheckpointStore, StoreError};
use crate::cloudwatch;
use crate::config::{Combine, Config, Destination, DestinationKind, FlowConfig, InitialPosition};
use crate::exporter;
use crate::limits::MemoryBudget;
use crate::limits::OpenFiles;
use crate::metrics::{self, Metrics};
use crate::pipeline::combine::Combiner;
use crate::pipeline::processors;
use crate::pipeline::shards::{Shard, ShardMap};
use crate::pipeline::{self, BatchBuilder, BatchLimits, KeyChooser};
use crate::record::{Ack, CopyFrom, FileId};
use crate::reload::{self, FlowChanges, Reloading};
use crate::service;
use crate::sink::check::{self, CheckFailed, CheckPassed};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::destination::DestinationClient;
use crate::sink::dry_run::DryRunOutput;
use crate::sink::{self, Billing, PutRecords, RetryPolicy, Sink};
use crate::source::{KnownOffset, Source};
use crate::wire::WireFormat;

/// Blocks of lines (each at most one read, 256 KiB) queued between a flow's tailers and batcher.
const LINES_QUEUE_BLOCKS: usize = 16;

/// A batch holds at most this fraction of the records' share of the memory budget.
const BATCHES_IN_BUDGET: usize = 4;
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
/// With `reloading`, each request reads the config file again and applies it.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    reloading: Option<Reloading>,
) -> Result<(), AppError> {
    let destinations = Destinations::build(&config).await?;
    run_with(config, shutdown, reloading, destinations).await
}

/// The AWS clients of every flow (dry-run flows need none) and the dry-run output.
pub struct Destinations {
    clients: HashMap<String, FlowClients>,
    dry_run: Option<Arc<DryRunOutput>>,
    cloudwatch: Option<aws_sdk_cloudwatch::Client>,
}

impl Destinations {
    /// Builds each flow's clients, sharing them between flows with equal AWS settings.
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        Self::build_keeping(config, None).await
    }

    /// Builds the clients of `config`'s flows, writing dry runs to `dry_run` if it is open.
    async fn build_keeping(
        config: &Config,
        dry_run: Option<Arc<DryRunOutput>>,
    ) -> Result<Self, AppError> {
        let mut aws = AwsClients::new();
        let mut clients = HashMap::new();
        for flow in config.flows.iter().filter(|flow| !flow.dry_run) {
            let flow_clients = aws.for_flow(flow).await?;
            let data_path = match (&flow_clients.data_caller, flow_clients.wire_format) {
                (None, _) => "sdk",
                (Some(_), WireFormat::Cbor) => "direct, cbor",
                (Some(_), WireFormat::Json) => "direct, json",
            };
            info!(flow = %flow.name, destination = %flow.destination, region = %flow_clients.region, endpoint = flow.aws.endpoint_url.as_deref().unwrap_or("(AWS default)"), credentials = %flow.aws.describe_credentials(), data_path, "Destination settings.");
            clients.insert(flow.name.clone(), flow_clients);
        }
        if !clients.is_empty() {
            info!(
                flows = clients.len(),
                distinct_settings = aws.distinct_settings(),
                "AWS clients ready; flows with equal settings share one."
            );
        }
        let dry_run = if dry_run.is_some() {
            dry_run
        } else if config.flows.iter().any(|flow| flow.dry_run) {
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
        let cloudwatch = match &config.cloudwatch {
            Some(settings) => Some(aws.cloudwatch(&settings.aws).await?),
            None => None,
        };
        Ok(Self {
            clients,
            dry_run,
            cloudwatch,
        })
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

/// The shard map an aggregating flow groups records by, and a flow delivering in order per
/// shard builds its calls by: learnt now, then kept fresh by a task. A dry run aggregates as
/// for a stream of one shard; a client that cannot list shards leaves the map empty: only
/// records with equal keys are aggregated together, and ordered delivery cuts the hash key
/// space into equal lanes of its own.
async fn shard_map<P: PutRecords>(
    flow: &FlowConfig,
    client: &Arc<P>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<Arc<ShardMap>> {
    let ordered = sink::ordered::applies(flow);
    if flow.combine != Combine::Kpl && !ordered {
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
    let usage = match (flow.combine == Combine::Kpl, ordered) {
        (true, true) => "records are aggregated and calls built per shard",
        (false, true) => "calls are built per shard",
        _ => "records are aggregated per shard",
    };
    match tokio::time::timeout(deadline, client.refresh_shards()).await {
        Ok(Ok(count)) => {
            info!(flow = %flow.name, shards = count, usage, "Shards learnt.")
        }
        Ok(Err(failure)) => {
            warn!(flow = %flow.name, cause = %failure, "Cannot list the stream's shards (kinesis:ListShards); until they are known, only records with equal partition keys are aggregated together, and ordered calls are built per slice of the hash key space.")
        }
        Err(_) => {
            warn!(flow = %flow.name, "Listing the stream's shards timed out; until they are known, only records with equal partition keys are aggregated together, and ordered calls are built per slice of the hash key space.")
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

/// Makes each flow's client: at start for every flow, and for the flows a reload starts.
pub trait ClientFactory: Send {
    type Client: PutRecords;

    /// Readies the clients of `config`'s flows; called at each reload, before any of its
    /// flows starts. An error rejects the new config.
    fn prepare(&mut self, config: &Config) -> impl Future<Output = Result<(), AppError>> + Send;

    fn client_for(&self, flow: &FlowConfig) -> Self::Client;

    /// The client metrics are published through, when `cloudwatch` is enabled.
    fn cloudwatch(&self) -> Option<aws_sdk_cloudwatch::Client> {
        None
    }
}

/// Any function from a flow to its client (tests run the whole agent in-process this way).
impl<P, F> ClientFactory for F
where
    P: PutRecords,
    F: Fn(&FlowConfig) -> P + Send,
{
    type Client = P;

    async fn prepare(&mut self, _config: &Config) -> Result<(), AppError> {
        Ok(())
    }

    fn client_for(&self, flow: &FlowConfig) -> P {
        self(flow)
    }
}

impl ClientFactory for Destinations {
    type Client = DestinationClient;

    async fn prepare(&mut self, config: &Config) -> Result<(), AppError> {
        *self = Self::build_keeping(config, self.dry_run.clone()).await?;
        Ok(())
    }

    fn client_for(&self, flow: &FlowConfig) -> DestinationClient {
        Destinations::client_for(self, flow)
    }

    fn cloudwatch(&self) -> Option<aws_sdk_cloudwatch::Client> {
        self.cloudwatch.clone()
    }
}

/// A flow about to start: its config as written and as it will run (with what its start-up
/// check learnt), its client, and the token and tracker its tasks run under.
struct Starting<P> {
    configured: FlowConfig,
    flow: FlowConfig,
    client: Arc<P>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl<P> Starting<P> {
    fn new(flow: &FlowConfig, client: P, shutdown: &CancellationToken) -> Self {
        Self {
            configured: flow.clone(),
            flow: flow.clone(),
            client: Arc::new(client),
            stop: shutdown.child_token(),
            tasks: TaskTracker::new(),
        }
    }
}

/// A running flow: what it was started from, and how to stop it.
struct RunningFlow {
    name: String,
    configured: FlowConfig,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The flow's source, batcher and sink, aborted if they outlast `shutdown_grace` when a
    /// reload stops the flow.
    aborts: Vec<AbortHandle>,
}

/// Where a flow's reading resumes: its files' acknowledged offsets, and the truncated files
/// whose copies continue.
#[derive(Debug, Default)]
struct Resume {
    offsets: HashMap<FileId, KnownOffset>,
    truncated: Vec<(CopyFrom, PathBuf)>,
}

/// Groups checkpoints into each flow's resume points.
fn resume_points(checkpoints: &[Checkpoint]) -> HashMap<String, Resume> {
    let mut by_flow: HashMap<String, Resume> = HashMap::new();
    for saved in checkpoints {
        let resume = by_flow.entry(saved.flow.clone()).or_default();
        for copy_from in &saved.copy_from {
            resume.truncated.push((*copy_from, saved.path.clone()));
        }
        resume.offsets.insert(
            saved.id,
            KnownOffset {
                offset: saved.offset,
                head: saved.head,
                path: Some(saved.path.clone()),
                original: None,
            },
        );
    }
    by_flow
}

/// Checks every starting flow's destination at once before tailing starts; logs each result,
/// applies learnt record size limits, and leaves a task checking again for each flow that
/// failed.
async fn check_destinations<P: PutRecords>(
    flows: &mut [Starting<P>],
    shutdown: &CancellationToken,
) {
    let mut checks = spawn_checks(
        flows
            .iter()
            .map(|starting| (&starting.flow, Arc::clone(&starting.client))),
    );
    loop {
        let done = tokio::select! {
            _ = shutdown.cancelled() => return,
            done = checks.join_next() => done,
        };
        let Some(done) = done else { return };
        let Ok((index, outcome)) = done else { continue };
        let Some(starting) = flows.get_mut(index) else {
            continue;
        };
        let flow = &mut starting.flow;
        match outcome {
            Ok(passed) => {
                check::log_passed(&flow.name, &flow.destination, &passed);
                check::apply_learned_limit(flow, &passed);
            }
            Err(failed) => {
                check::log_failed(&flow.name, &flow.destination, &failed);
                starting.tasks.spawn(check::keep_checking(
                    Arc::clone(&starting.client),
                    flow.name.clone(),
                    flow.destination.clone(),
                    check::deadline(flow),
                    starting.stop.clone(),
                ));
            }
        }
    }
}

/// What every flow shares, and the running flows.
struct Flows {
    acks: mpsc::Sender<Ack>,
    releases: mpsc::Sender<checkpoint::Release>,
    metrics: Arc<Metrics>,
    open_files: Arc<OpenFiles>,
    budget: Arc<MemoryBudget>,
    dead_letters: Arc<DeadLetters>,
    checkpoint_expiry: Duration,
    shutdown: CancellationToken,
    running: Vec<RunningFlow>,
}

impl Flows {
    /// Starts a flow's source, batcher and sink, resuming from `resume`.
    async fn start<P: PutRecords>(&mut self, starting: Starting<P>, resume: Resume) {
        let Starting {
            configured,
            flow,
            client,
            stop,
            tasks,
        } = starting;
        let flow = Arc::new(flow);
        let flow_metrics = self.metrics.start_flow(
            &flow.name,
            &cloudwatch::destination_dimension(&flow.destination),
        );
        let (lines, lines_received) = mpsc::channel(LINES_QUEUE_BLOCKS);
        let (batches, batches_received) = mpsc::channel(flow.max_in_flight);
        let source = Source {
            flow: Arc::clone(&flow),
            checkpoints: resume.offsets,
            truncated: resume.truncated,
            checkpoint_expiry: self.checkpoint_expiry,
            lines,
            acks: self.acks.clone(),
            metrics: Arc::clone(&flow_metrics),
            open_files: Arc::clone(&self.open_files),
            budget: Arc::clone(&self.budget),
            cancel: stop.clone(),
        };
        let shards = shard_map(&flow, &client, &tasks, &stop).await;
        // Built once: the chain and the EC2 metadata refreshers share each processor's cache.
        let steps = processors::build(&flow.processors);
        let builder = BatchBuilder::new(
            BatchLimits {
                max_records: flow.max_batch_records,
                // A batch is sent once it holds a quarter of the records' share of the budget,
                // so that a batch fills well before the share is spent and waits for no age.
                max_bytes: flow
                    .max_batch_bytes
                    .min(self.budget.records_total() / BATCHES_IN_BUDGET)
                    .max(1),
                max_age: flow.max_batch_age,
            },
            KeyChooser::new(flow.partition_key.clone()),
        )
        .with_combiner(Combiner::new(
            flow.combine,
            flow.compression,
            flow.max_record_bytes,
            shards.clone().filter(|_| flow.combine == Combine::Kpl),
        ))
        .with_processors(processors::Chain::new(
            &flow.name,
            steps.clone(),
            flow.on_error,
            flow.max_line_bytes(),
            Arc::clone(&flow_metrics),
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
                .map(|limit| (limit, Arc::clone(&self.dead_letters))),
            metrics: flow_metrics,
            compression: flow.compression,
            billing: match flow.destination.kind {
                DestinationKind::Kinesis => Billing::KinesisPutUnits,
                DestinationKind::Firehose => Billing::FirehoseUnits,
            },
            acks: self.acks.clone(),
            budget: Arc::clone(&self.budget),
            lanes: shards.filter(|_| sink::ordered::applies(&flow)).map(|map| {
                sink::ordered::Lanes {
                    map,
                    max_records: flow.max_batch_records,
                }
            }),
        };
        for processor in &steps {
            if let processors::Processor::AddEc2Metadata(add) = processor {
                tasks.spawn(add.clone().keep_fresh(flow.name.clone(), stop.clone()));
            }
        }
        let aborts = vec![
            tasks.spawn(source.run()).abort_handle(),
            tasks
                .spawn(pipeline::batcher::run(builder, lines_received, batches))
                .abort_handle(),
            tasks.spawn(sink.run(batches_received)).abort_handle(),
        ];
        tasks.close();
        info!(flow = %flow.name, destination = %flow.destination, dry_run = flow.dry_run, files = ?flow.files, "Flow started.");
        self.running.push(RunningFlow {
            name: flow.name.clone(),
            configured,
            stop,
            tasks,
            aborts,
        });
    }

    /// Stops the flows named: reading stops and what was read is sent; whatever still runs
    /// after `grace` is aborted (its lines not acknowledged are read again when it restarts).
    async fn stop(&mut self, names: &[String], grace: Duration) {
        let (stopping, running): (Vec<RunningFlow>, Vec<RunningFlow>) =
            std::mem::take(&mut self.running)
                .into_iter()
                .partition(|flow| names.contains(&flow.name));
        self.running = running;
        for flow in &stopping {
            flow.stop.cancel();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for flow in &stopping {
            if tokio::time::timeout_at(deadline, flow.tasks.wait())
                .await
                .is_err()
            {
                warn!(flow = %flow.name, ?grace, "The flow did not finish sending within shutdown_grace; its calls were stopped, and lines not acknowledged are read again if it starts again.");
                for task in &flow.aborts {
                    task.abort();
                }
                flow.tasks.wait().await;
            }
            info!(flow = %flow.name, "Flow stopped.");
        }
    }

    /// The checkpoints of `flow`, once every acknowledgement its stopped tasks sent has been
    /// applied; the checkpoint store forgets its earlier readings.
    async fn release(&self, flow: &str) -> Resume {
        let (reply, answer) = oneshot::channel();
        let asked = self
            .releases
            .send(checkpoint::Release {
                flow: flow.to_owned(),
                reply,
            })
            .await;
        match (asked, answer.await) {
            (Ok(()), Ok(checkpoints)) => {
                resume_points(&checkpoints).remove(flow).unwrap_or_default()
            }
            _ => {
                warn!(flow, "The checkpoint store has stopped; the flow resumes from its saved checkpoints at the next start.");
                Resume::default()
            }
        }
    }

    /// Applies a new config: stops removed and changed flows, starts added and changed ones;
    /// unchanged flows go on untouched. An invalid config is rejected and the running one kept.
    async fn reload<C: ClientFactory>(
        &mut self,
        running: &mut Config,
        load: &reload::LoadConfig,
        clients: &mut C,
    ) {
        let path = running.source.display().to_string();
        info!(path, "Reloading the config.");
        let new = match load(&running.source) {
            Ok(new) => new,
            Err(problem) => {
                error!(path, problems = %problem, "The new config is invalid; the running one is kept.");
                return;
            }
        };
        let restart_keys = reload::needs_restart(running, &new);
        if !restart_keys.is_empty() {
            warn!(keys = ?restart_keys, "These settings changed but apply only at the next start; their running values are kept.");
        }
        let changes =
            FlowChanges::between(self.running.iter().map(|flow| &flow.configured), &new.flows);
        if !changes.any() {
            info!(
                path,
                unchanged = changes.unchanged.len(),
                "Config reloaded; no flow changed."
            );
            return;
        }
        if let Err(failure) = clients.prepare(&new).await {
            error!(path, %failure, "Cannot make the new config's AWS clients; the running config is kept.");
            return;
        }
        let stopping: Vec<String> = changes
            .removed
            .iter()
            .chain(&changes.changed)
            .cloned()
            .collect();
        self.stop(&stopping, running.shutdown_grace).await;
        for name in &changes.removed {
            let _ = self.release(name).await;
            self.metrics.remove_flow(name);
        }
        let mut starting: Vec<Starting<C::Client>> = new
            .flows
            .iter()
            .filter(|flow| {
                changes.added.contains(&flow.name) || changes.changed.contains(&flow.name)
            })
            .map(|flow| Starting::new(flow, clients.client_for(flow), &self.shutdown))
            .collect();
        check_destinations(&mut starting, &self.shutdown).await;
        for flow in starting {
            let resume = self.release(&flow.flow.name).await;
            self.start(flow, resume).await;
        }
        running.flows = new.flows;
        info!(path, added = ?changes.added, removed = ?changes.removed, changed = ?changes.changed, unchanged = changes.unchanged.len(), "Config reloaded.");
    }
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
        .map(|flow| Starting::new(flow, clients.client_for(flow), &shutdown))
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
    let mut resume = resume_points(&loaded.checkpoints);

    let (acks, acks_received) = mpsc::channel(ACK_QUEUE);
    let (releases, releases_received) = mpsc::channel(1);
    let stop_checkpoints = CancellationToken::new();
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
        stop_checkpoints.clone(),
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
    let stop_publishing = CancellationToken::new();
    let publishing = match (&config.cloudwatch, clients.cloudwatch()) {
        (Some(settings), Some(client)) => Some(tokio::spawn(cloudwatch::publish(
            client,
            settings.namespace.clone(),
            settings.interval,
            Arc::clone(&metrics),
            stop_publishing.clone(),
        ))),
        _ => None,
    };
    let stop_watchdog = CancellationToken::new();
    if let Some(interval) = service::watchdog_interval() {
        tokio::spawn(service::feed_watchdog(interval, stop_watchdog.clone()));
    }

    match reloading {
        Some(mut reloading) => {
            if config.watch_config {
                tokio::spawn(reload::watch_file(
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
        stop_checkpoints.cancel();
    }
    let finished = checkpoint_task.await;
    stop_publishing.cancel();
    if let Some(publishing) = publishing {
        let _ = publishing.await;
    }
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
