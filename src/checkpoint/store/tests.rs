use std::fs::OpenOptions;
use std::io::Write;

use super::journal::{decode_entry, COMPACT_AFTER_BYTES};
use super::*;
use crate::checkpoint::tracker::Delta;
use crate::record::{CopyFrom, FileId, Head};

fn checkpoint(inode: u64, offset: u64) -> Checkpoint {
    Checkpoint {
        flow: "app".into(),
        id: FileId { device: 3, inode },
        head: inode.is_multiple_of(2).then_some(Head {
            len: 7,
            hash: inode * 31,
        }),
        path: format!("/logs/{inode}.log").into(),
        offset,
        seen: 1_700_000_000 + inode,
        copy_from: if inode == 2 {
            vec![
                CopyFrom {
                    head: Head { len: 64, hash: 9 },
                    offset: 640,
                },
                CopyFrom {
                    head: Head { len: 64, hash: 10 },
                    offset: 80,
                },
            ]
        } else {
            Vec::new()
        },
        cursor: None,
    }
}

fn changed(checkpoints: &[Checkpoint]) -> Delta {
    Delta {
        changed: checkpoints.to_vec(),
        removed: Vec::new(),
    }
}

fn removed(inode: u64) -> Delta {
    Delta {
        changed: Vec::new(),
        removed: vec![("app".to_owned(), FileId { device: 3, inode })],
    }
}

fn journal_lines(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join(JOURNAL_NAME))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A snapshot of files 1 and 2, then entries: 1 moves to 15, 3 appears, 2 is forgotten,
/// 3 moves to 35. The state they leave is `expected_after_entries`.
fn snapshot_and_four_entries(dir: &Path) -> CheckpointStore {
    let (mut store, _) = CheckpointStore::open(dir).expect("open");
    store
        .write(&[checkpoint(1, 10), checkpoint(2, 20)])
        .expect("snapshot");
    store.append(&changed(&[checkpoint(1, 15)])).expect("1");
    store.append(&changed(&[checkpoint(3, 30)])).expect("2");
    store.append(&removed(2)).expect("3");
    store.append(&changed(&[checkpoint(3, 35)])).expect("4");
    store
}

fn expected_after_entries(entries: usize) -> Vec<Checkpoint> {
    let states = [
        vec![checkpoint(1, 10), checkpoint(2, 20)],
        vec![checkpoint(1, 15), checkpoint(2, 20)],
        vec![checkpoint(1, 15), checkpoint(2, 20), checkpoint(3, 30)],
        vec![checkpoint(1, 15), checkpoint(3, 30)],
        vec![checkpoint(1, 15), checkpoint(3, 35)],
    ];
    states[entries].clone()
}

#[test]
fn written_checkpoints_are_read_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state/nested");
    let (mut store, loaded) = CheckpointStore::open(&state).expect("open");
    assert!(loaded.checkpoints.is_empty());
    let saved = vec![checkpoint(1, 10), checkpoint(2, 20)];
    store.write(&saved).expect("write");
    store.write(&saved[..1]).expect("write again");
    let (_, loaded) = CheckpointStore::open(&state).expect("reopen");
    assert_eq!(loaded.checkpoints, saved[..1]);
    assert!(!state.join(TEMP_NAME).exists());
}

#[test]
fn journal_entries_appended_are_read_back_over_the_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = snapshot_and_four_entries(dir.path());
    assert_eq!(journal_lines(dir.path()).len(), 4);
    assert_eq!(
        read_saved(dir.path()).expect("read while open"),
        expected_after_entries(4)
    );
    drop(store);
    let (store, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints, expected_after_entries(4));
    assert_eq!(loaded.journal_entries, 4);
    assert!(loaded.torn_entry.is_none() && !loaded.start_over());
    // Opening compacted the journal into the snapshot.
    assert!(journal_lines(dir.path()).is_empty());
    assert!(!store.needs_snapshot());
    let snapshot: serde_json::Value =
        serde_json::from_slice(&fs::read(store.path()).expect("snapshot")).expect("JSON");
    assert_eq!(snapshot["version"], 2);
    assert_eq!(snapshot["journal_seq"], 4);
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints, expected_after_entries(4));
    assert_eq!(loaded.journal_entries, 0);
}

#[test]
fn an_entry_holds_only_what_changed_and_checks_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = CheckpointStore::open(dir.path()).expect("open");
    let many: Vec<Checkpoint> = (1..=1000).map(|inode| checkpoint(inode, 0)).collect();
    store.write(&many).expect("snapshot");
    store
        .append(&changed(&[checkpoint(500, 80)]))
        .expect("entry");
    let lines = journal_lines(dir.path());
    assert_eq!(lines.len(), 1);
    assert!(lines[0].len() < 300, "{}", lines[0]);
    let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(line["entry"]["seq"], 1);
    assert_eq!(line["entry"]["changed"][0]["offset"], 80);
    let entry = decode_entry(lines[0].as_bytes()).expect("whole");
    assert_eq!(entry.changed.len(), 1);
    let flipped = lines[0].replace("\"offset\":80", "\"offset\":81");
    assert_eq!(
        decode_entry(flipped.as_bytes()).err().as_deref(),
        Some("its bytes do not match their hash")
    );
}

#[test]
fn a_torn_last_entry_is_ignored() {
    for tail in [
        &b"{\"xxh3\":\"0123"[..],
        b"{\"xxh3\":\"0000000000000000\",\"entry\":{\"seq\":5}}\n",
        b"\0\0\0\0\0\0\0\0",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(snapshot_and_four_entries(dir.path()));
        let mut journal = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_NAME))
            .expect("journal");
        journal.write_all(tail).expect("torn entry");
        drop(journal);
        let (mut store, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded.checkpoints, expected_after_entries(4));
        assert!(
            loaded
                .torn_entry
                .as_deref()
                .is_some_and(|why| why.starts_with("entry 5:")),
            "{:?}",
            loaded.torn_entry
        );
        assert!(loaded.corrupt_journal.is_none() && !loaded.start_over());
        // The torn bytes are gone: entries appended now are read back.
        store
            .append(&changed(&[checkpoint(1, 99)]))
            .expect("append");
        drop(store);
        let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
        assert!(loaded.torn_entry.is_none());
        assert_eq!(loaded.checkpoints[0], checkpoint(1, 99));
    }
}

#[test]
fn a_corrupt_entry_before_the_last_moves_the_journal_aside_and_its_prefix_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(snapshot_and_four_entries(dir.path()));
    let mut lines = journal_lines(dir.path());
    lines[2] = lines[2].replace("\"seq\":3", "\"seq\":9");
    let corrupt = lines.join("\n") + "\n";
    fs::write(dir.path().join(JOURNAL_NAME), &corrupt).expect("corrupt the journal");
    let (store, loaded) = CheckpointStore::open(dir.path()).expect("opens anyway");
    assert_eq!(loaded.checkpoints, expected_after_entries(2));
    assert!(loaded.start_over());
    let moved = loaded.corrupt_journal.expect("reported");
    assert_eq!(moved.reason, "entry 3: its bytes do not match their hash");
    assert_eq!(fs::read_to_string(&moved.moved_to).expect("kept"), corrupt);
    assert!(moved
        .moved_to
        .display()
        .to_string()
        .contains("checkpoints.journal.corrupt-"));
    // The snapshot now holds the prefix: a crash does not fall back to the older one.
    drop(store);
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints, expected_after_entries(2));
    assert!(!loaded.start_over());
}

#[test]
fn entries_out_of_sequence_are_not_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(snapshot_and_four_entries(dir.path()));
    // Entry 2 lost: 3 may not follow 1.
    let lines = journal_lines(dir.path());
    let gap = [&lines[0], &lines[2], &lines[3]]
        .map(String::as_str)
        .join("\n")
        + "\n";
    fs::write(dir.path().join(JOURNAL_NAME), gap).expect("write");
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("opens anyway");
    assert_eq!(loaded.checkpoints, expected_after_entries(1));
    let moved = loaded.corrupt_journal.expect("reported");
    assert_eq!(moved.reason, "entry 2: number 3 where 2 was due");
}

#[test]
fn a_crash_between_a_compactions_snapshot_and_its_truncation_reads_correctly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = snapshot_and_four_entries(dir.path());
    let journal = fs::read(dir.path().join(JOURNAL_NAME)).expect("journal");
    // Compaction: the snapshot includes entries 1..=4 (and file 1 moved on since).
    let compacted = vec![checkpoint(1, 50), checkpoint(3, 35)];
    store.write(&compacted).expect("compact");
    assert!(journal_lines(dir.path()).is_empty());
    drop(store);
    // ... as if the truncation never reached the disk.
    fs::write(dir.path().join(JOURNAL_NAME), &journal).expect("old entries back");
    assert_eq!(read_saved(dir.path()).expect("read"), compacted);
    let (mut store, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints, compacted, "the old entries are skipped");
    assert_eq!(loaded.journal_entries, 0);
    // Numbers go on from the snapshot's.
    store
        .append(&changed(&[checkpoint(3, 60)]))
        .expect("append");
    let line: serde_json::Value =
        serde_json::from_str(&journal_lines(dir.path())[0]).expect("JSON");
    assert_eq!(line["entry"]["seq"], 5);
    drop(store);
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(
        loaded.checkpoints,
        vec![checkpoint(1, 50), checkpoint(3, 60)]
    );
}

#[test]
fn a_version_1_snapshot_is_read_with_a_journal_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let version_1 = r#"{
  "version": 1,
  "files": [
    {"flow": "app", "device": 3, "inode": 1, "path": "/logs/1.log", "offset": 10, "seen": 1700000001},
    {"flow": "app", "device": 3, "inode": 4, "head_len": 7, "head_hash": 124, "path": "/logs/4.log", "offset": 4}
  ]
}
"#;
    fs::write(dir.path().join(FILE_NAME), version_1).expect("write");
    let (mut store, loaded) = CheckpointStore::open(dir.path()).expect("open");
    assert_eq!(loaded.checkpoints.len(), 2);
    assert_eq!(loaded.checkpoints[0], checkpoint(1, 10));
    assert_eq!(loaded.checkpoints[1].head, Some(Head { len: 7, hash: 124 }));
    store
        .append(&changed(&[checkpoint(1, 11)]))
        .expect("append");
    drop(store);
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints[0], checkpoint(1, 11));
}

#[test]
fn the_journal_is_due_for_compaction_past_its_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = CheckpointStore::open(dir.path()).expect("open");
    store.write(&[checkpoint(1, 0)]).expect("snapshot");
    store.append(&changed(&[checkpoint(1, 1)])).expect("append");
    let entry_len = store.journal_len();
    assert!(!store.compaction_due());
    // As if thousands of entries had been appended (each one synced), to one short.
    store.journal_len = COMPACT_AFTER_BYTES - 1;
    assert!(!store.compaction_due());
    store.append(&changed(&[checkpoint(1, 2)])).expect("append");
    assert_eq!(store.journal_len(), COMPACT_AFTER_BYTES - 1 + entry_len);
    assert!(store.compaction_due());
    store.write(&[checkpoint(1, 2)]).expect("compact");
    assert_eq!(store.journal_len(), 0);
    assert!(!store.compaction_due());
    // A snapshot over a quarter of the bound raises it to four snapshots' worth.
    let many: Vec<Checkpoint> = (1..=8000).map(|inode| checkpoint(inode, 0)).collect();
    store.write(&many).expect("snapshot");
    assert!(
        4 * store.snapshot_len > COMPACT_AFTER_BYTES,
        "{}",
        store.snapshot_len
    );
    store.journal_len = COMPACT_AFTER_BYTES;
    assert!(!store.compaction_due());
    store.journal_len = 4 * store.snapshot_len;
    assert!(store.compaction_due());
}

#[test]
fn a_leftover_temp_file_is_removed_and_the_real_file_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = CheckpointStore::open(dir.path()).expect("open");
    store.write(&[checkpoint(1, 10)]).expect("write");
    fs::write(dir.path().join(TEMP_NAME), b"{\"version\":1,\"fi").expect("torn temp file");
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert!(loaded.removed_leftover);
    assert_eq!(loaded.checkpoints, vec![checkpoint(1, 10)]);
    assert!(!dir.path().join(TEMP_NAME).exists());
}

#[test]
fn a_corrupt_file_is_moved_aside_and_the_store_starts_from_the_journal_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let torn = b"{\"version\":1,\"files\":[{\"flow\":";
    fs::write(dir.path().join(FILE_NAME), torn).expect("write");
    let (mut store, loaded) = CheckpointStore::open(dir.path()).expect("opens anyway");
    assert!(loaded.checkpoints.is_empty());
    assert!(loaded.start_over());
    let moved = loaded.corrupt.expect("reported");
    assert!(moved.reason.contains("EOF"), "{}", moved.reason);
    assert_eq!(fs::read(&moved.moved_to).expect("kept"), torn);
    assert!(!store.path().exists());
    store.write(&[checkpoint(1, 10)]).expect("writes again");
    store
        .append(&changed(&[checkpoint(2, 20)]))
        .expect("append");
    fs::write(dir.path().join(FILE_NAME), b"[]").expect("write");
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("opens anyway");
    assert!(loaded.corrupt.is_some(), "no format version");
    assert_eq!(
        loaded.checkpoints,
        vec![checkpoint(2, 20)],
        "the journal's entry"
    );
    fs::write(dir.path().join(FILE_NAME), b"{\"version\":9,\"files\":[]}").expect("write");
    assert!(matches!(
        CheckpointStore::open(dir.path()),
        Err(StoreError::NewerVersion { found: 9, .. })
    ));
}

#[cfg(unix)]
#[test]
fn a_failed_write_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = CheckpointStore::open(dir.path()).expect("open");
    store.write(&[checkpoint(1, 10)]).expect("write");
    // A directory where the temp file should go makes the write fail as a full disk would.
    fs::create_dir(dir.path().join(TEMP_NAME)).expect("block the temp path");
    let error = store
        .write(&[checkpoint(1, 99)])
        .expect_err("write must fail");
    assert!(
        error
            .to_string()
            .contains("cannot write the checkpoint file"),
        "{error}"
    );
    fs::remove_dir(dir.path().join(TEMP_NAME)).expect("unblock");
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints, vec![checkpoint(1, 10)]);
}

#[cfg(unix)]
#[test]
fn after_a_failed_append_the_next_write_is_a_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = snapshot_and_four_entries(dir.path());
    // The journal's handle is open: a read-only handle in its place makes the next
    // append fail as a full disk would.
    store.journal = Some(File::open(dir.path().join(JOURNAL_NAME)).expect("read-only"));
    store
        .append(&changed(&[checkpoint(1, 70)]))
        .expect_err("append must fail");
    assert!(store.needs_snapshot());
    assert!(
        store.append(&changed(&[checkpoint(1, 71)])).is_err(),
        "no entry after it"
    );
    store.journal = None;
    store
        .write(&[checkpoint(1, 71), checkpoint(3, 35)])
        .expect("snapshot");
    assert!(!store.needs_snapshot());
    store
        .append(&changed(&[checkpoint(3, 36)]))
        .expect("entries again");
    let line: serde_json::Value =
        serde_json::from_str(&journal_lines(dir.path())[0]).expect("JSON");
    assert_eq!(line["entry"]["seq"], 6, "the failed entry used up number 5");
    drop(store);
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(
        loaded.checkpoints,
        vec![checkpoint(1, 71), checkpoint(3, 36)]
    );
}

#[test]
fn a_cursor_is_kept_and_only_a_store_holding_one_is_written_as_version_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _) = CheckpointStore::open(dir.path()).expect("open");
    let plain = vec![checkpoint(1, 10)];
    store.write(&plain).expect("snapshot");
    let version = |path: &Path| {
        let snapshot: serde_json::Value =
            serde_json::from_slice(&fs::read(path).expect("snapshot")).expect("JSON");
        snapshot["version"].clone()
    };
    assert_eq!(version(store.path()), 2);
    let mut journal = checkpoint(2, 7);
    journal.cursor = Some("s=1;i=7;b=2;m=3;t=4;x=5".into());
    store
        .write(&[plain[0].clone(), journal.clone()])
        .expect("snapshot");
    assert_eq!(version(store.path()), 3);
    let mut later = journal.clone();
    later.offset = 9;
    later.cursor = Some("s=1;i=9;b=2;m=3;t=4;x=6".into());
    store.append(&changed(&[later.clone()])).expect("entry");
    drop(store);
    let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
    assert_eq!(loaded.checkpoints, vec![plain[0].clone(), later]);
}
