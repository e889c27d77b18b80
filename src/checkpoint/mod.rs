//! The checkpoint store: hears files opened and ranges delivered, keeps each file's delivered
//! offset with the ordered tracker, and writes the state to disk: what changed, to the journal,
//! as soon as the write before it is done and at most every [`COMMIT_SPACING`] (group
//! commit), or the whole state on an interval; and once more at the end.
//!
//! This module runs the loop that applies acknowledgements; `tracker` keeps the checkpoints,
//! `writer` writes them one write at a time, and `store` holds them on disk.

pub mod import;
mod store;
mod tracker;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

pub use crate::config::CheckpointCommit;
use crate::metrics::{FlowMetrics, Metrics};
use crate::record::Ack;
pub use store::{read_saved, CheckpointStore, Loaded, MovedAside, StoreError, WriteCounts};
pub use tracker::{AckTracker, Checkpoint, Delta};
use writer::Writer;

/// A request to release a stopped flow's readings and hand back its checkpoints (see
/// `AckTracker::release_flow`). It is answered once every acknowledgement sent before it
/// has been applied.
#[derive(Debug)]
pub struct Release {
    pub flow: String,
    pub reply: oneshot::Sender<Vec<Checkpoint>>,
}

/// How [`run`] writes.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// `checkpoint_interval`: with [`CheckpointCommit::Interval`], how often the snapshot is
    /// written; with either, how soon a failed write is retried. In group mode the journal is
    /// also compacted once no entry was appended for this long, so that the snapshot is
    /// current whenever the agent is quiet.
    pub interval: Duration,
    pub expiry: Duration,
    pub commit: CheckpointCommit,
}

/// Most acknowledgements taken from the queue at once.
const ACKS_PER_TURN: usize = 4096;

/// How acknowledgements are batched. The first after a quiet spell is applied at once (and in
/// group mode written at once); then the queue is left alone for this long, and what arrived
/// meanwhile is applied together and goes in the next write. At full speed (2,600
/// acknowledgements a second) that is some 130 a batch and at most 20 journal writes a second.
/// A write costs some 250 µs of CPU on a virtual machine (the sync's I/O, and waking the
/// blocking thread, often on the other CPU), so the spacing sets the cost, and with it the
/// share of the agent's CPU at full speed, whose budget is 5 % (see the checkpoints
/// benchmark): a write for each acknowledgement took 27 %, 25 ms about 5 %, 50 ms about 4 %
/// (the `interval` mode 2 %). A crash re-sends at most this much more than the
/// acknowledgements of the write in flight.
pub const COMMIT_SPACING: Duration = Duration::from_millis(50);

/// Applies acknowledgements until every sender is gone or `stop` fires, and writes what
/// changed as `settings.commit` says, one write at a time on a blocking thread while
/// acknowledgements go on being applied; writes once more at the end. A failed write is
/// logged and retried.
pub async fn run(
    store: CheckpointStore,
    mut tracker: AckTracker,
    mut acks: mpsc::Receiver<Ack>,
    mut releases: mpsc::Receiver<Release>,
    settings: Settings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> AckTracker {
    let mut writer = Writer::new(store, settings.commit);
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    expire(&mut tracker, settings.expiry);
    // Acknowledgements are taken in batches: after one is applied, the queue is left alone
    // until this instant (see COMMIT_SPACING).
    let mut rest_until = Instant::now();
    loop {
        let now = Instant::now();
        let mut resting = now < rest_until;
        if writer.has_finished() {
            let finished = writer.finished().await;
            writer.complete(finished, &mut tracker, &metrics);
        }
        if !resting {
            match take_queued(&mut acks, &mut tracker, &metrics) {
                Queue::Closed => break,
                Queue::Taken(0) => {}
                Queue::Taken(_) => {
                    rest_until = now + COMMIT_SPACING;
                    resting = true;
                }
            }
        }
        if settings.commit == CheckpointCommit::Group {
            writer.start_if_due(&mut tracker);
        }
        let writing = writer.is_writing();
        tokio::select! {
            biased;
            Some(release) = releases.recv() => {
                answer(release, &mut acks, &mut tracker, &metrics);
            }
            // While resting, a finished write is taken when the rest ends: its end wakes no
            // one meanwhile.
            finished = writer.finished(), if writing && !resting => {
                writer.complete(finished, &mut tracker, &metrics);
            }
            _ = tokio::time::sleep_until(rest_until), if resting => {}
            ack = acks.recv(), if !resting => match ack {
                Some(ack) => {
                    apply(&mut tracker, ack, &metrics);
                    // Whatever came with it goes in the same write.
                    if let Queue::Closed = take_queued(&mut acks, &mut tracker, &metrics) {
                        break;
                    }
                    rest_until = Instant::now() + COMMIT_SPACING;
                }
                None => break,
            },
            _ = ticker.tick() => {
                expire_if_due(&mut tracker, &mut last_expiry, settings.expiry);
                writer.tick(&mut tracker, &metrics);
            }
            _ = stop.cancelled() => {
                // Take what already arrived; whatever is still in flight is read again next time.
                apply_arrived(&mut acks, &mut tracker, &metrics);
                break;
            }
        }
    }
    write_last(&mut writer, &mut tracker, &metrics).await;
    tracker
}

/// How often checkpoints are checked for expiry (more often for a short `checkpoint_expiry`).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Expires checkpoints if they were last checked long enough ago.
fn expire_if_due(tracker: &mut AckTracker, last_expiry: &mut Instant, expiry: Duration) {
    if last_expiry.elapsed() >= EXPIRY_CHECK_EVERY.min(expiry / 4) {
        *last_expiry = Instant::now();
        expire(tracker, expiry);
    }
}

fn expire(tracker: &mut AckTracker, expiry: Duration) {
    for gone in tracker.expire(tracker::unix_now(), expiry) {
        info!(flow = %gone.flow, file = %gone.path.display(), offset = gone.offset, ?expiry, "Forgot the checkpoint of a file no scan has found for checkpoint_expiry.");
    }
}

/// Releases a stopped flow's readings and hands back its checkpoints.
fn answer(
    release: Release,
    acks: &mut mpsc::Receiver<Ack>,
    tracker: &mut AckTracker,
    metrics: &Metrics,
) {
    // Every acknowledgement the flow sent before it stopped is queued by now.
    apply_arrived(acks, tracker, metrics);
    let checkpoints = tracker.release_flow(&release.flow);
    let _ = release.reply.send(checkpoints);
}

/// What [`take_queued`] found.
enum Queue {
    /// This many acknowledgements were applied.
    Taken(usize),
    /// Every sender is gone and nothing is left.
    Closed,
}

/// Applies the acknowledgements already queued (up to [`ACKS_PER_TURN`]).
fn take_queued(
    acks: &mut mpsc::Receiver<Ack>,
    tracker: &mut AckTracker,
    metrics: &Metrics,
) -> Queue {
    for taken in 0..ACKS_PER_TURN {
        match acks.try_recv() {
            Ok(ack) => apply(tracker, ack, metrics),
            Err(mpsc::error::TryRecvError::Empty) => return Queue::Taken(taken),
            Err(mpsc::error::TryRecvError::Disconnected) => return Queue::Closed,
        }
    }
    Queue::Taken(ACKS_PER_TURN)
}

/// Applies every acknowledgement already queued, however many.
fn apply_arrived(acks: &mut mpsc::Receiver<Ack>, tracker: &mut AckTracker, metrics: &Metrics) {
    while let Ok(ack) = acks.try_recv() {
        apply(tracker, ack, metrics);
    }
}

fn apply(tracker: &mut AckTracker, ack: Ack, metrics: &Metrics) {
    let flow = match &ack {
        Ack::Opened { file, .. }
        | Ack::Restarted { file, .. }
        | Ack::Closed { file, .. }
        | Ack::Identified { file }
        | Ack::Marked { file, .. } => Some(Arc::clone(&file.flow)),
        Ack::Delivered(ranges) => ranges.first().map(|range| Arc::clone(&range.file.flow)),
        Ack::Seen { .. } | Ack::AskAcknowledged { .. } | Ack::Shipped { .. } => None,
    };
    let advanced = tracker.apply(ack);
    if let Some(flow_metrics) = flow.and_then(|flow| metrics.flow(&flow)) {
        FlowMetrics::add(&flow_metrics.bytes_acknowledged, advanced);
    }
}

/// The last write, once the loop has stopped.
async fn write_last(writer: &mut Writer, tracker: &mut AckTracker, metrics: &Metrics) {
    if !writer.finish(tracker, metrics).await {
        error!(path = %writer.path().display(), "The final checkpoint could not be written; lines delivered since the last saved one are sent again at the next start.");
    }
    debug!(path = %writer.path().display(), "Checkpoint store stopped.");
}

#[cfg(test)]
mod tests;
