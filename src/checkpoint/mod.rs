//! The checkpoint store: hears files opened and ranges delivered, keeps each file's delivered
//! offset with the ordered tracker, and writes the state to disk: what changed, to the journal,
//! as soon as the write before it is done and at most every [`COMMIT_SPACING`] (group
//! commit), or the whole state on an interval; and once more at the end.

pub mod store;
pub mod tracker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use crate::config::CheckpointCommit;
use crate::metrics::{FlowMetrics, Metrics};
use crate::record::Ack;
pub use store::{read_saved, CheckpointStore, Loaded, StoreError, WriteCounts};
pub use tracker::{AckTracker, Checkpoint, Delta};

/// A request to release a stopped flow's readings and hand back its checkpoints (see
/// [`AckTracker::release_flow`]). It is answered once every acknowledgement sent before it
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
    let mut last_expiry = tokio::time::Instant::now();
    expire(&mut tracker, settings.expiry);
    // Acknowledgements are taken in batches: after one is applied, the queue is left alone
    // until this instant (see COMMIT_SPACING).
    let mut rest_until = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
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
                // Every acknowledgement the flow sent before it stopped is queued by now.
                while let Ok(ack) = acks.try_recv() {
                    apply(&mut tracker, ack, &metrics);
                }
                let checkpoints = tracker.release_flow(&release.flow);
                let _ = release.reply.send(checkpoints);
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
                    rest_until = tokio::time::Instant::now() + COMMIT_SPACING;
                }
                None => break,
            },
            _ = ticker.tick() => {
                if last_expiry.elapsed() >= EXPIRY_CHECK_EVERY.min(settings.expiry / 4) {
                    last_expiry = tokio::time::Instant::now();
                    expire(&mut tracker, settings.expiry);
                }
                writer.tick(&mut tracker, &metrics);
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
    if !writer.finish(&mut tracker, &metrics).await {
        error!(path = %writer.path.display(), "The final checkpoint could not be written; lines delivered since the last saved one are sent again at the next start.");
    }
    debug!(path = %writer.path.display(), "Checkpoint store stopped.");
    tracker
}

/// How often checkpoints are checked for expiry (more often for a short `checkpoint_expiry`).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(60);

fn expire(tracker: &mut AckTracker, expiry: Duration) {
    for gone in tracker.expire(tracker::unix_now(), expiry) {
        info!(flow = %gone.flow, file = %gone.path.display(), offset = gone.offset, ?expiry, "Forgot the checkpoint of a file no scan has found for checkpoint_expiry.");
    }
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

/// One write on a blocking thread, and what it leaves the store needing.
struct Written {
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
struct Writer {
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
    fn new(store: CheckpointStore, commit: CheckpointCommit) -> Self {
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

    fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the write in flight is done: awaiting it now does not wait.
    fn has_finished(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|write| write.is_finished())
    }

    /// Group commit: starts a write of whatever changed, unless one is in flight or writes
    /// are failing (then the tick retries).
    fn start_if_due(&mut self, tracker: &mut AckTracker) {
        if self.in_flight.is_some() || self.failing {
            return;
        }
        if tracker.has_changes() || self.state.needs_snapshot {
            let snapshot = self.state.needs_snapshot || self.state.compaction_due;
            self.start(tracker, snapshot);
        }
    }

    fn tick(&mut self, tracker: &mut AckTracker, metrics: &Metrics) {
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

    async fn finished(&mut self) -> Result<Written, JoinError> {
        match &mut self.in_flight {
            Some(write) => write.await,
            None => std::future::pending().await,
        }
    }

    /// Takes a finished write's outcome; returns whether it succeeded.
    fn complete(
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
    async fn finish(&mut self, tracker: &mut AckTracker, metrics: &Metrics) -> bool {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use std::sync::atomic::Ordering;

    use super::*;
    use crate::record::{FileId, FileRange, SourceFile};

    const HOUR: Duration = Duration::from_secs(3600);

    struct Running {
        acks: mpsc::Sender<Ack>,
        _releases: mpsc::Sender<Release>,
        stop: CancellationToken,
        task: JoinHandle<AckTracker>,
        file: Arc<SourceFile>,
        counts: Arc<WriteCounts>,
    }

    fn start(dir: &Path, commit: CheckpointCommit, interval: Duration) -> Running {
        let (store, _) = CheckpointStore::open(dir).expect("open");
        let counts = store.counts();
        let (acks, acks_received) = mpsc::channel(64);
        let (releases, releases_received) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            store,
            AckTracker::new(Vec::new()),
            acks_received,
            releases_received,
            Settings {
                interval,
                expiry: 7 * 24 * HOUR,
                commit,
            },
            Arc::new(Metrics::new(["app"])),
            stop.clone(),
        ));
        let file = Arc::new(SourceFile {
            key: 1,
            flow: Arc::from("app"),
            id: FileId {
                device: 1,
                inode: 10,
            },
            head: None,
            path: "/logs/app.log".into(),
        });
        Running {
            acks,
            _releases: releases,
            stop,
            task,
            file,
            counts,
        }
    }

    impl Running {
        async fn open(&self) {
            let opened = Ack::Opened {
                file: Arc::clone(&self.file),
                offset: 0,
                original: None,
            };
            self.acks.send(opened).await.expect("running");
        }

        async fn deliver(&self, start: u64, end: u64) {
            let range = FileRange {
                file: Arc::clone(&self.file),
                start,
                end,
            };
            let delivered = Ack::Delivered(vec![range]);
            self.acks.send(delivered).await.expect("running");
        }

        async fn stop(self) -> AckTracker {
            self.stop.cancel();
            self.task.await.expect("the loop ends")
        }
    }

    /// The offset saved on disk (snapshot and journal) for the test's file.
    fn saved_offset(dir: &Path) -> Option<u64> {
        read_saved(dir)
            .ok()?
            .iter()
            .find(|saved| saved.id.inode == 10)
            .map(|saved| saved.offset)
    }

    /// The offset in the snapshot alone.
    fn snapshot_offset(dir: &Path) -> Option<u64> {
        let text = std::fs::read_to_string(dir.join("checkpoints.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["files"].get(0)?["offset"].as_u64()
    }

    fn journal_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("checkpoints.journal")).map_or(0, |journal| journal.len())
    }

    /// Polls `done` in virtual time (which stands still while a write runs on its blocking
    /// thread) until it holds, for at most `within`.
    async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn group_commit_saves_an_acknowledgement_without_waiting_for_the_interval() {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = start(dir.path(), CheckpointCommit::Group, HOUR);
        agent.open().await;
        agent.deliver(0, 100).await;
        let sent = tokio::time::Instant::now();
        eventually(
            Duration::from_secs(1),
            "the acknowledgement is saved",
            || saved_offset(dir.path()) == Some(100),
        )
        .await;
        assert!(sent.elapsed() < Duration::from_secs(1));
        assert!(journal_len(dir.path()) > 0, "saved by the journal");
        assert_eq!(snapshot_offset(dir.path()), None);
        agent.deliver(100, 250).await;
        eventually(Duration::from_secs(1), "the next one too", || {
            saved_offset(dir.path()) == Some(250)
        })
        .await;
        // Quiet for a whole interval: the journal is compacted into the snapshot.
        tokio::time::sleep(2 * HOUR).await;
        eventually(Duration::from_secs(1), "the journal is compacted", || {
            journal_len(dir.path()) == 0
        })
        .await;
        assert_eq!(snapshot_offset(dir.path()), Some(250));
        agent.deliver(250, 300).await;
        let tracker = agent.stop().await;
        assert_eq!(
            tracker.checkpoint(
                "app",
                FileId {
                    device: 1,
                    inode: 10
                }
            ),
            Some(300)
        );
        // The stop leaves everything in the snapshot.
        assert_eq!(journal_len(dir.path()), 0);
        assert_eq!(snapshot_offset(dir.path()), Some(300));
    }

    #[tokio::test(start_paused = true)]
    async fn acknowledgements_arriving_together_share_a_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = start(dir.path(), CheckpointCommit::Group, HOUR);
        agent.open().await;
        // One acknowledgement a millisecond for 200 ms.
        for start in 0..200 {
            agent.deliver(start * 10, start * 10 + 10).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eventually(COMMIT_SPACING * 2, "the last one is saved", || {
            saved_offset(dir.path()) == Some(2000)
        })
        .await;
        let entries = agent.counts.entries.load(Ordering::Relaxed);
        let most = (200 * Duration::from_millis(1)).as_millis() / COMMIT_SPACING.as_millis() + 2;
        assert!(
            (2..=most as u64).contains(&entries),
            "{entries} entries for 200 acknowledgements"
        );
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn interval_commit_writes_the_snapshot_at_each_tick_and_no_journal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let interval = Duration::from_secs(10);
        let agent = start(dir.path(), CheckpointCommit::Interval, interval);
        agent.open().await;
        agent.deliver(0, 100).await;
        eventually(interval, "the first tick writes", || {
            snapshot_offset(dir.path()) == Some(100)
        })
        .await;
        agent.deliver(100, 200).await;
        tokio::time::sleep(interval / 2).await;
        assert_eq!(
            saved_offset(dir.path()),
            Some(100),
            "not before the next tick"
        );
        eventually(interval, "the next tick writes", || {
            snapshot_offset(dir.path()) == Some(200)
        })
        .await;
        agent.deliver(200, 300).await;
        agent.stop().await;
        assert_eq!(snapshot_offset(dir.path()), Some(300), "the final write");
        assert!(!dir.path().join("checkpoints.journal").exists());
    }

    #[cfg(unix)]
    #[tokio::test(start_paused = true)]
    async fn changes_whose_write_failed_are_written_once_writes_succeed() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Directories where the journal and the snapshot's temp file go make every write
        // fail, as a full disk would, until they are removed.
        let blocked = [
            dir.path().join("checkpoints.journal"),
            dir.path().join(".checkpoints.json.tmp"),
        ];
        let agent = start(dir.path(), CheckpointCommit::Group, Duration::from_secs(1));
        for path in &blocked {
            std::fs::create_dir(path).expect("block");
        }
        agent.open().await;
        agent.deliver(0, 100).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        agent.deliver(100, 200).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            snapshot_offset(dir.path()),
            None,
            "nothing could be written"
        );
        for path in &blocked {
            std::fs::remove_dir(path).expect("unblock");
        }
        eventually(
            Duration::from_secs(3),
            "the changes are written at the next retry",
            || saved_offset(dir.path()) == Some(200),
        )
        .await;
        agent.deliver(200, 300).await;
        eventually(Duration::from_secs(1), "and appended again", || {
            saved_offset(dir.path()) == Some(300) && journal_len(dir.path()) > 0
        })
        .await;
        agent.stop().await;
    }
}
