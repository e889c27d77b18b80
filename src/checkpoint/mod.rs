//! The checkpoint store: hears files opened and ranges delivered, keeps each file's delivered
//! offset with the ordered tracker, and writes the state to disk on an interval and at the end.

pub mod store;
pub mod tracker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::metrics::{FlowMetrics, Metrics};
use crate::record::Ack;
pub use store::{CheckpointStore, Loaded, StoreError};
pub use tracker::{AckTracker, Checkpoint};

/// A request to release a stopped flow's readings and hand back its checkpoints (see
/// [`AckTracker::release_flow`]). It is answered once every acknowledgement sent before it
/// has been applied.
#[derive(Debug)]
pub struct Release {
    pub flow: String,
    pub reply: oneshot::Sender<Vec<Checkpoint>>,
}

/// Applies acknowledgements until every sender is gone or `stop` fires, writing changed state
/// every `interval`; writes once more at the end. A failed write is logged and retried.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: CheckpointStore,
    mut tracker: AckTracker,
    mut acks: mpsc::Receiver<Ack>,
    mut releases: mpsc::Receiver<Release>,
    interval: Duration,
    expiry: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> AckTracker {
    let store = Arc::new(store);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut last_expiry = tokio::time::Instant::now();
    expire(&mut tracker, expiry);
    loop {
        tokio::select! {
            biased;
            Some(release) = releases.recv() => {
                // Every acknowledgement the flow sent before it stopped is queued by now.
                while let Ok(ack) = acks.try_recv() {
                    apply(&mut tracker, ack, &metrics);
                }
                let checkpoints = tracker.release_flow(&release.flow);
                let _ = release.reply.send(checkpoints);
            }
            ack = acks.recv() => match ack {
                Some(ack) => apply(&mut tracker, ack, &metrics),
                None => break,
            },
            _ = ticker.tick() => {
                if last_expiry.elapsed() >= EXPIRY_CHECK_EVERY.min(expiry / 4) {
                    last_expiry = tokio::time::Instant::now();
                    expire(&mut tracker, expiry);
                }
                failing = save(&store, &mut tracker, failing).await;
                if !failing {
                    metrics.checkpoints_saved();
                }
            }
            _ = stop.cancelled() => {
                // Take what already arrived; whatever is still in flight is read again next time.
                while let Ok(ack) = acks.try_recv() {
                    apply(&mut tracker, ack, &metrics);
                }
                break;
            }
        }
    }
    if save(&store, &mut tracker, failing).await {
        error!(path = %store.path().display(), "The final checkpoint could not be written; lines delivered since the last saved one are sent again at the next start.");
    }
    debug!(path = %store.path().display(), "Checkpoint store stopped.");
    tracker
}

/// How often checkpoints are checked for expiry (more often for a short `checkpoint_expiry`).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(60);

fn expire(tracker: &mut AckTracker, expiry: Duration) {
    for gone in tracker.expire(tracker::unix_now(), expiry) {
        info!(flow = %gone.flow, file = %gone.path.display(), offset = gone.offset, ?expiry, "Forgot the checkpoint of a file no scan has found for checkpoint_expiry.");
    }
}

fn apply(tracker: &mut AckTracker, ack: Ack, metrics: &Metrics) {
    let flow = match &ack {
        Ack::Opened { file, .. }
        | Ack::Restarted { file, .. }
        | Ack::Closed { file, .. }
        | Ack::Identified { file } => Some(Arc::clone(&file.flow)),
        Ack::Delivered(ranges) => ranges.first().map(|range| Arc::clone(&range.file.flow)),
        Ack::Seen { .. } => None,
    };
    let advanced = tracker.apply(ack);
    if let Some(flow_metrics) = flow.and_then(|flow| metrics.flow(&flow)) {
        FlowMetrics::add(&flow_metrics.bytes_acknowledged, advanced);
    }
}

/// Writes the tracker's state if it changed; returns whether writing is failing.
async fn save(store: &Arc<CheckpointStore>, tracker: &mut AckTracker, was_failing: bool) -> bool {
    let Some(checkpoints) = tracker.take_changes() else {
        return was_failing;
    };
    let writer = Arc::clone(store);
    let result = tokio::task::spawn_blocking(move || writer.write(&checkpoints)).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(failure) => Err(StoreError::Write {
            path: store.path().to_owned(),
            source: std::io::Error::other(failure.to_string()),
        }),
    };
    match outcome {
        Ok(()) => {
            if was_failing {
                info!(path = %store.path().display(), "Checkpoints are written again.");
            }
            false
        }
        Err(failure) => {
            tracker.mark_unwritten();
            if !was_failing {
                error!(%failure, "Cannot save checkpoints; shipping goes on and the write is retried. After a restart, lines since the last saved checkpoint are sent again.");
            }
            true
        }
    }
}
