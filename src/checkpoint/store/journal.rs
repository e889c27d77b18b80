//! The journal, `checkpoints.journal`: each group commit appends one entry with what changed
//! since the last one, and syncs it; once the journal has grown enough it is due for
//! compaction into the snapshot.
//!
//! The journal holds one entry per line, a JSON object with the xxh3 hash of the entry's bytes
//! exactly as written:
//!
//! `{"xxh3":"<16 hex digits>","entry":{"seq":8,"changed":[<file>…],"removed":[<key>…]}}`
//!
//! `changed` holds whole checkpoints, as the snapshot's `files` does; `removed` the flow,
//! device and inode of forgotten ones. `seq` numbers entries across compactions: a snapshot
//! records the last one it includes (`journal_seq`). Reading follows these rules:
//!
//! - Entries up to the snapshot's `journal_seq` are skipped: they are in it already (a crash
//!   between a compaction's snapshot and its truncation leaves them behind).
//! - Each entry's `seq` is one more than the entry before it, and the first entry past the
//!   snapshot is the one right after it.
//! - An entry counts once its line is whole: newline, checksum, JSON and `seq` all right. A
//!   last entry that is not is a crash while it was appended: its write had not returned, so
//!   nothing relied on it, and it is ignored.
//! - A bad entry before the last is a corrupt journal: it is moved aside, and the state is the
//!   snapshot and the entries before the bad one. See
//!   [`Loaded::start_over`](super::Loaded::start_over) for why that
//!   repeats lines but never loses them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use xxhash_rust::xxh3::xxh3_64;

use super::snapshot::{FileOut, OnDiskFile};
use super::{sync_directory, CheckpointStore, MovedAside, StoreError};
use crate::checkpoint::tracker::{unix_now, Checkpoint, Delta, Identity};
use crate::record::FileId;

pub(super) const JOURNAL_NAME: &str = "checkpoints.journal";

/// The journal is compacted once it holds this many bytes, or four times the last snapshot's
/// size if that is more. A compaction writes about a snapshot's bytes; waiting for four times
/// as many appended bytes keeps compaction under a fifth of all bytes written, however many
/// files are saved, and bounds what a start reads (4 MiB is read and applied in tens of
/// milliseconds). At full speed with 1,000 files (about 1.1 MiB of entries a second) that is
/// a 170 KiB snapshot every 3 to 4 s, where the `interval` mode writes one every second.
pub(super) const COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;

/// One journal entry: what changed since the entry before it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    seq: u64,
    #[serde(default)]
    pub(super) changed: Vec<OnDiskFile>,
    #[serde(default)]
    removed: Vec<OnDiskKey>,
}

/// [`Entry`] as written.
#[derive(Serialize)]
struct EntryOut<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    changed: Vec<FileOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed: Vec<KeyOut<'a>>,
}

/// A forgotten checkpoint's key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskKey {
    flow: String,
    device: u64,
    inode: u64,
}

/// [`OnDiskKey`] as written.
#[derive(Serialize)]
struct KeyOut<'a> {
    flow: &'a str,
    device: u64,
    inode: u64,
}

/// A journal line: the entry and the hash of its bytes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    xxh3: &'a str,
    #[serde(borrow)]
    entry: &'a RawValue,
}

/// The journal as read.
#[derive(Default)]
pub(super) struct Journal {
    /// Entries past the snapshot, in order.
    pub(super) entries: Vec<Entry>,
    /// The last whole entry's number.
    pub(super) last_seq: Option<u64>,
    /// A torn last entry: why it was not taken.
    pub(super) torn: Option<String>,
    /// A bad entry before the last: which one, and why.
    pub(super) bad: Option<String>,
}

impl CheckpointStore {
    /// Bytes of whole entries in the journal.
    pub(crate) fn journal_len(&self) -> u64 {
        self.journal_len
    }

    /// Whether the next write must be a snapshot ([`write`](Self::write)): the journal may end
    /// in bytes that an entry must not follow.
    pub(crate) fn needs_snapshot(&self) -> bool {
        self.needs_snapshot
    }

    /// Whether the journal has grown enough to be compacted (see [`COMPACT_AFTER_BYTES`]).
    pub(crate) fn compaction_due(&self) -> bool {
        self.journal_len >= COMPACT_AFTER_BYTES.max(4 * self.snapshot_len)
    }

    /// Appends what changed as one journal entry and waits for it to reach the disk.
    pub(crate) fn append(&mut self, delta: &Delta) -> Result<(), StoreError> {
        if self.needs_snapshot {
            return Err(StoreError::Write {
                path: self.journal_path.clone(),
                source: io::Error::other("the journal must be compacted before it takes entries"),
            });
        }
        let line = encode_entry(self.seq + 1, delta).map_err(|error| StoreError::Write {
            path: self.journal_path.clone(),
            source: io::Error::other(error),
        })?;
        self.seq += 1;
        let result = (|| {
            let journal = self.journal_file()?;
            journal.write_all(&line)?;
            journal.sync_data()
        })();
        match result {
            Ok(()) => {
                self.journal_len += line.len() as u64;
                self.counts.entries.fetch_add(1, Ordering::Relaxed);
                self.counts
                    .entry_bytes
                    .fetch_add(line.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(source) => {
                // Part of the line may be there: nothing may follow it.
                self.needs_snapshot = true;
                Err(StoreError::Write {
                    path: self.journal_path.clone(),
                    source,
                })
            }
        }
    }

    /// The journal held `journal_len` bytes at start: what was read from it becomes the
    /// snapshot and the journal is emptied (if that snapshot cannot be written, the first
    /// write is one). A journal with a bad entry (`bad`) is moved aside; what it was moved to
    /// is returned.
    pub(super) fn compact_at_open(
        &mut self,
        checkpoints: &[Checkpoint],
        journal_len: u64,
        bad: Option<String>,
    ) -> Result<Option<MovedAside>, StoreError> {
        self.journal_len = journal_len;
        self.needs_snapshot = true;
        // The state read becomes the snapshot before the corrupt journal is moved aside,
        // so that a crash now does not fall back to the older snapshot alone.
        let compacted = self.write_snapshot(checkpoints);
        let mut corrupt_journal = None;
        if let Some(reason) = bad {
            let moved_to = self.move_aside(&self.journal_path, JOURNAL_NAME)?;
            self.journal_len = 0;
            corrupt_journal = Some(MovedAside { reason, moved_to });
        }
        if compacted.is_ok() {
            // A failure here leaves `needs_snapshot` set: the first write tries again.
            let _ = self.empty_journal();
        }
        Ok(corrupt_journal)
    }

    /// Empties the journal after a snapshot that includes its entries. The truncation is
    /// synced before the next entry is appended: entries must never land after old bytes.
    pub(super) fn empty_journal(&mut self) -> Result<(), StoreError> {
        if self.journal_len == 0 && !self.needs_snapshot {
            return Ok(());
        }
        let result = (|| {
            let journal = self.journal_file()?;
            journal.set_len(0)?;
            journal.sync_all()
        })();
        match result {
            Ok(()) => {
                self.journal_len = 0;
                self.needs_snapshot = false;
                Ok(())
            }
            Err(source) => {
                self.needs_snapshot = true;
                Err(StoreError::Write {
                    path: self.journal_path.clone(),
                    source,
                })
            }
        }
    }

    fn journal_file(&mut self) -> io::Result<&mut File> {
        if self.journal.is_none() {
            let journal = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal_path)?;
            // A journal just made must still be there after a crash.
            sync_directory(&self.directory)?;
            self.journal = Some(journal);
        }
        Ok(self
            .journal
            .as_mut()
            .expect("the journal was opened just above"))
    }
}

/// Reads the journal's whole entries past `after` (every entry if `None`), by the rules in
/// this module's documentation.
pub(super) fn read_journal(bytes: &[u8], after: Option<u64>) -> Journal {
    let mut journal = Journal::default();
    let mut rest = bytes;
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let (line, whole, next) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], true, &rest[end + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        let entry = if whole {
            decode_entry(line)
        } else {
            Err("no newline at its end".to_owned())
        };
        let entry = entry.and_then(|entry| in_sequence(entry, journal.last_seq, after));
        match entry {
            Ok(entry) => {
                journal.last_seq = Some(entry.seq);
                if after.is_none_or(|snapshot| entry.seq > snapshot) {
                    journal.entries.push(entry);
                }
            }
            Err(reason) => {
                let reason = format!("entry {number}: {reason}");
                if next.is_empty() {
                    journal.torn = Some(reason);
                } else {
                    journal.bad = Some(reason);
                }
                break;
            }
        }
        rest = next;
    }
    journal
}

/// `entry`, if its number follows `last_seq`, the entry before it (or, for the first entry
/// past the snapshot, the snapshot's last, `after`).
fn in_sequence(entry: Entry, last_seq: Option<u64>, after: Option<u64>) -> Result<Entry, String> {
    let expected = match (last_seq, after) {
        (Some(last), _) => Some(last + 1),
        (None, Some(snapshot)) if entry.seq > snapshot + 1 => Some(snapshot + 1),
        (None, _) => None,
    };
    match expected {
        Some(expected) if entry.seq != expected => {
            Err(format!("number {} where {expected} was due", entry.seq))
        }
        _ => Ok(entry),
    }
}

pub(super) fn decode_entry(line: &[u8]) -> Result<Entry, String> {
    let line: Line = serde_json::from_slice(line).map_err(|error| error.to_string())?;
    let hash = u64::from_str_radix(line.xxh3, 16)
        .ok()
        .filter(|_| line.xxh3.len() == 16)
        .ok_or_else(|| format!("`{}` is not an xxh3 hash", line.xxh3))?;
    if xxh3_64(line.entry.get().as_bytes()) != hash {
        return Err("its bytes do not match their hash".to_owned());
    }
    serde_json::from_str(line.entry.get()).map_err(|error| error.to_string())
}

fn encode_entry(seq: u64, delta: &Delta) -> Result<Vec<u8>, serde_json::Error> {
    let entry = EntryOut {
        seq,
        changed: delta.changed.iter().map(FileOut::of).collect(),
        removed: delta
            .removed
            .iter()
            .map(|(flow, id)| KeyOut {
                flow,
                device: id.device,
                inode: id.inode,
            })
            .collect(),
    };
    // Fails only for a path that is not UTF-8, as the snapshot's write does.
    let body = serde_json::to_vec(&entry)?;
    let mut line = Vec::with_capacity(body.len() + 40);
    line.extend_from_slice(b"{\"xxh3\":\"");
    line.extend_from_slice(format!("{:016x}", xxh3_64(&body)).as_bytes());
    line.extend_from_slice(b"\",\"entry\":");
    line.extend_from_slice(&body);
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// The snapshot's checkpoints with `entries` applied in order.
pub(super) fn apply_entries(snapshot: Vec<Checkpoint>, entries: Vec<Entry>) -> Vec<Checkpoint> {
    if entries.is_empty() {
        return snapshot;
    }
    let mut saved: BTreeMap<Identity, Checkpoint> = snapshot
        .into_iter()
        .map(|checkpoint| ((checkpoint.flow.clone(), checkpoint.id), checkpoint))
        .collect();
    let now = unix_now();
    for entry in entries {
        for key in entry.removed {
            let id = FileId {
                device: key.device,
                inode: key.inode,
            };
            saved.remove(&(key.flow, id));
        }
        for file in entry.changed {
            let checkpoint = file.into_checkpoint(now);
            saved.insert((checkpoint.flow.clone(), checkpoint.id), checkpoint);
        }
    }
    saved.into_values().collect()
}
