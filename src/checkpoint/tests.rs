use std::path::Path;

use std::sync::atomic::Ordering;

use tokio::task::JoinHandle;

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
