//! The running flows: starting one (its source, batcher and sink, wired by channels), stopping
//! some under a deadline, and applying a reloaded config.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::checkpoint::{self, Checkpoint};
use crate::cloudwatch;
use crate::config::{Combine, Config, DestinationKind, FlowConfig};
use crate::limits::MemoryBudget;
use crate::limits::OpenFiles;
use crate::metrics::{FlowLabels, Metrics};
use crate::pipeline::combine::Combiner;
use crate::pipeline::processors::{self, Ec2Access};
use crate::pipeline::{self, BatchBuilder, BatchLimits, KeyChooser};
use crate::record::{Ack, CopyFrom, FileId};
use crate::reload::{self, FlowChanges};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{self, Billing, PutRecords, RetryPolicy, Sink};
use crate::source::{KnownOffset, Source};

use super::clients::*;
use super::shards::*;

/// Blocks of lines (each at most one read, 256 KiB) queued between a flow's tailers and batcher.
pub(super) const LINES_QUEUE_BLOCKS: usize = 16;

/// A batch holds at most this fraction of the records' share of the memory budget.
pub(super) const BATCHES_IN_BUDGET: usize = 4;
/// A flow about to start: its config as written and as it will run (with what its start-up
/// check learnt), its client, and the token and tracker its tasks run under.
pub(super) struct Starting<P> {
    pub(super) configured: FlowConfig,
    pub(super) flow: FlowConfig,
    pub(super) client: Arc<P>,
    /// How the flow's `add_ec2_metadata` calls EC2, when it reads tags.
    pub(super) ec2: Option<Ec2Access>,
    pub(super) stop: CancellationToken,
    pub(super) tasks: TaskTracker,
}

impl<P> Starting<P> {
    pub(super) fn new(
        flow: &FlowConfig,
        client: P,
        ec2: Option<Ec2Access>,
        shutdown: &CancellationToken,
    ) -> Self {
        Self {
            configured: flow.clone(),
            flow: flow.clone(),
            client: Arc::new(client),
            ec2,
            stop: shutdown.child_token(),
            tasks: TaskTracker::new(),
        }
    }
}

/// A running flow: what it was started from, and how to stop it.
pub(super) struct RunningFlow {
    pub(super) name: String,
    pub(super) configured: FlowConfig,
    pub(super) stop: CancellationToken,
    pub(super) tasks: TaskTracker,
    /// The flow's source, batcher and sink, aborted if they outlast `shutdown_grace` when a
    /// reload stops the flow.
    pub(super) aborts: Vec<AbortHandle>,
}

/// Where a flow's reading resumes: its files' acknowledged offsets, and the truncated files
/// whose copies continue.
#[derive(Debug, Default)]
pub(super) struct Resume {
    pub(super) offsets: HashMap<FileId, KnownOffset>,
    pub(super) truncated: Vec<(CopyFrom, PathBuf)>,
}

/// Groups checkpoints into each flow's resume points.
pub(super) fn resume_points(checkpoints: &[Checkpoint]) -> HashMap<String, Resume> {
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
                cursor: saved.cursor.clone(),
            },
        );
    }
    by_flow
}

/// What every flow shares, and the running flows.
pub(super) struct Flows {
    pub(super) acks: mpsc::Sender<Ack>,
    pub(super) releases: mpsc::Sender<checkpoint::Release>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) open_files: Arc<OpenFiles>,
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) dead_letters: Arc<DeadLetters>,
    pub(super) checkpoint_expiry: Duration,
    pub(super) shutdown: CancellationToken,
    pub(super) running: Vec<RunningFlow>,
}

impl Flows {
    /// Starts a flow's source, batcher and sink, resuming from `resume`.
    pub(super) async fn start<P: PutRecords>(&mut self, starting: Starting<P>, resume: Resume) {
        let Starting {
            configured,
            flow,
            client,
            ec2,
            stop,
            tasks,
        } = starting;
        let flow = Arc::new(flow);
        let flow_metrics = self.metrics.start_flow(&flow.name, flow_labels(&flow));
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
        let steps = processors::build(&flow.processors, ec2.as_ref());
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
            KeyChooser::new(flow.partition_key.clone())
                .reporting_cuts(&flow.name, Arc::clone(&flow_metrics)),
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
        info!(flow = %flow.name, destination = %flow.destination, dry_run = flow.dry_run, reads = %flow.reads(), "Flow started.");
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
    pub(super) async fn stop(&mut self, names: &[String], grace: Duration) {
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
    pub(super) async fn release(&self, flow: &str) -> Resume {
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
    pub(super) async fn reload<C: ClientFactory>(
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
            .map(|flow| {
                Starting::new(
                    flow,
                    clients.client_for(flow),
                    clients.ec2_access(flow).map(|access| access.0),
                    &self.shutdown,
                )
            })
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

/// How the flow is named in metrics and in the Kinesis Agent's progress lines.
fn flow_labels(flow: &FlowConfig) -> FlowLabels {
    let service = match flow.destination.kind {
        DestinationKind::Kinesis => "kinesis",
        DestinationKind::Firehose => "fh",
    };
    FlowLabels {
        destination: cloudwatch::destination_dimension(&flow.destination),
        tailer_id: format!(
            "{service}:{}:{}",
            flow.destination.name,
            flow.files.join(",")
        ),
        transforms: !flow.processors.is_empty(),
    }
}
