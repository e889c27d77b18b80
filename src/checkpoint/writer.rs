//! Writing checkpoints one write at a time, each on a blocking thread while the loop goes on
//! applying acknowledgements: what changed as a journal entry, or every checkpoint as the
//! snapshot, as the commit mode asks; a failed write is retried, and the changes it held are
//! written again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::{JoinError, JoinHandle};
use tracing::{error, info, warn};

use super::{AckTracker, CheckpointCommit, CheckpointStore, Delta, StoreError};
use crate::metrics::Metrics;

/// One write on a blocking thread, and what it leaves the store needing.
pub(super) struct Written {
    /// What the write held: marked unwritten again if it failed.
    delta: Delta,
    appended: bool,
    result: Result<(), StoreError>,
    store: StoreState,
}

/// What the loop needs to know of the store between writes, read by the write's thread so
/// that the loop never waits for the store's lock.
#[derive(Clone, Copy, Debug)]
struct StoreState {
    needs_snapshot: bool,
    compaction_due: bool,
    journal_empty: bool,
}

impl StoreState {
    fn of(store: &CheckpointStore) -> Self {
        StoreState {
            needs_snapshot: store.needs_snapshot(),
            compaction_due: store.compaction_due(),
            journal_empty: store.journal_len() == 0,
        }
    }
}

/// Writes checkpoints one write at a time: each on a blocking thread, while the loop goes on
/// applying acknowledgements.
pub(super) struct Writer {
    /// Locked only by the write in flight (and after one panicked): never by the loop while a
    /// write holds it.
    store: Arc<Mutex<CheckpointStore>>,
    path: PathBuf,
    commit: CheckpointCommit,
    state: StoreState,
    in_flight: Option<JoinHandle<Written>>,
    /// A write failed and none has succeeded since: the next is tried at the next tick.
    failing: bool,
    /// An entry was appended since the last tick: the journal is not compacted while busy.
    appended_since_tick: bool,
}

impl Writer {
    pub(super) fn new(store: CheckpointStore, commit: CheckpointCommit) -> Self {
        Writer {
            path: store.path().to_owned(),
            state: StoreState::of(&store),
            store: Arc::new(Mutex::new(store)),
            commit,
            in_flight: None,
            failing: false,
            appended_since_tick: false,
        }
    }

    /// The snapshot's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the write in flight is done: awaiting it now does not wait.
    pub(super) fn has_finished(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|write| write.is_finished())
    }

    /// Group commit: starts a write of whatever changed, unless one is in flight or writes
    /// are failing (then the tick retries).
    pub(super) fn start_if_due(&mut self, tracker: &mut AckTracker) {
        if self.in_flight.is_some() || self.failing {
            return;
        }
        if tracker.has_changes() || self.state.needs_snapshot {
            let snapshot = self.state.needs_snapshot || self.state.compaction_due;
            self.start(tracker, snapshot);
        }
    }

    pub(super) fn tick(&mut self, tracker: &mut AckTracker, metrics: &Metrics) {
        if !self.failing {
            metrics.checkpoints_saved();
        }
        let appended = std::mem::take(&mut self.appended_since_tick);
        if self.in_flight.is_some() {
            return;
        }
        let pending = tracker.has_changes() || self.state.needs_snapshot;
        match self.commit {
            CheckpointCommit::Interval if pending => self.start(tracker, true),
            CheckpointCommit::Interval => {}
            CheckpointCommit::Group if self.failing && pending => {
                let snapshot = self.state.needs_snapshot || self.state.compaction_due;
                self.start(tracker, snapshot);
            }
            // Quiet for a whole interval: the snapshot is brought up to date and the journal
            // emptied, so the file people and tools read is current and a start replays nothing.
            CheckpointCommit::Group if !appended && !pending && !self.state.journal_empty => {
                self.start(tracker, true);
            }
            CheckpointCommit::Group => {}
        }
    }

    /// Starts a write of what changed: an entry appended to the journal, or (`snapshot`)
    /// every checkpoint written as the snapshot.
    fn start(&mut self, tracker: &mut AckTracker, snapshot: bool) {
        let delta = tracker.take_delta().unwrap_or_default();
        let everything = snapshot.then(|| tracker.snapshot());
        let store = Arc::clone(&self.store);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let mut store = lock(&store);
            let result = match &everything {
                Some(everything) => store.write(everything),
                None => store.append(&delta),
            };
            Written {
                delta,
                appended: everything.is_none(),
                result,
                store: StoreState::of(&store),
            }
        }));
    }

    /// Waits for the write in flight; never ends if there is none.
    pub(super) async fn finished(&mut self) -> Result<Written, JoinError> {
        match &mut self.in_flight {
            Some(write) => write.await,
            None => std::future::pending().await,
        }
    }

    /// Takes a finished write's outcome; returns whether it succeeded.
    pub(super) fn complete(
        &mut self,
        finished: Result<Written, JoinError>,
        tracker: &mut AckTracker,
        metrics: &Metrics,
    ) -> bool {
        self.in_flight = None;
        let result = match finished {
            Ok(written) => {
                self.state = written.store;
                if written.result.is_err() {
                    tracker.mark_unwritten(&written.delta);
                } else if written.appended {
                    self.appended_since_tick = true;
                }
                written.result
            }
            Err(failure) => {
                // The write panicked (or never ran): where it stopped is unknown, and what it
                // held is gone with it, so the next write is a snapshot of everything.
                let mut store = lock(&self.store);
                store.force_snapshot();
                self.state = StoreState::of(&store);
                Err(StoreError::Write {
                    path: self.path.clone(),
                    source: std::io::Error::other(failure.to_string()),
                })
            }
        };
        match result {
            Ok(()) => {
                if self.failing {
                    info!(path = %self.path.display(), "Checkpoints are written again.");
                }
                self.failing = false;
                metrics.checkpoints_saved();
                true
            }
            Err(failure) => {
                if !self.failing {
                    error!(%failure, "Cannot save checkpoints; shipping goes on and the write is retried. After a restart, lines since the last saved checkpoint are sent again.");
                }
                self.failing = true;
                false
            }
        }
    }

    /// Waits for the write in flight, then writes what is left: a snapshot, so that the next
    /// start reads one file and an empty journal. In group mode, if the snapshot cannot be
    /// written, the changes still go to the journal if it takes them. Returns whether
    /// everything is on disk.
    pub(super) async fn finish(&mut self, tracker: &mut AckTracker, metrics: &Metrics) -> bool {
        if self.in_flight.is_some() {
            let finished = self.finished().await;
            self.complete(finished, tracker, metrics);
        }
        let journal_left = self.commit == CheckpointCommit::Group && !self.state.journal_empty;
        if !(tracker.has_changes() || self.state.needs_snapshot || journal_left) {
            return true;
        }
        self.start(tracker, true);
        let finished = self.finished().await;
        if self.complete(finished, tracker, metrics) {
            return true;
        }
        if self.commit != CheckpointCommit::Group || self.state.needs_snapshot {
            return false;
        }
        // The snapshot and the journal still hold everything before the failed write; what
        // changed since goes in one more entry.
        if tracker.has_changes() {
            self.start(tracker, false);
            let finished = self.finished().await;
            if self.complete(finished, tracker, metrics) {
                warn!(path = %self.path.display(), "The final snapshot could not be written; the last changes were saved to the journal, which the next start reads.");
                return true;
            }
            return false;
        }
        true
    }
}

/// The store, whether or not a write panicked while holding it: a panicked write leaves the
/// store asking for a snapshot (see [`Writer::complete`]).
fn lock(store: &Mutex<CheckpointStore>) -> MutexGuard<'_, CheckpointStore> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}
