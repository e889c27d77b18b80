//! The on-disk checkpoints: a snapshot, `checkpoints.json`, and a journal beside it,
//! `checkpoints.journal`. The snapshot is versioned JSON written atomically (temp file in the
//! same directory, fsync, rename over the old file, fsync the directory), so a crash at any
//! instant leaves either the old snapshot or the new one. Each group commit appends one entry
//! to the journal with what changed since the last one, and syncs it. The saved state is the
//! snapshot with the journal's later entries applied in order; compaction writes that state
//! as a new snapshot and empties the journal.
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
//!   snapshot and the entries before the bad one. See [`Loaded::start_over`] for why that
//!   repeats lines but never loses them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use xxhash_rust::xxh3::xxh3_64;

use super::tracker::{Checkpoint, Delta, Identity};
use crate::record::{CopyFrom, FileId, Head};

/// Version 2 added `journal_seq`; version 1 files are read as including no journal entry.
const FORMAT_VERSION: u32 = 2;
const FILE_NAME: &str = "checkpoints.json";
const TEMP_NAME: &str = ".checkpoints.json.tmp";
const JOURNAL_NAME: &str = "checkpoints.journal";

/// The journal is compacted once it holds this many bytes, or four times the last snapshot's
/// size if that is more. A compaction writes about a snapshot's bytes; waiting for four times
/// as many appended bytes keeps compaction under a fifth of all bytes written, however many
/// files are saved, and bounds what a start reads (4 MiB is read and applied in tens of
/// milliseconds). At full speed with 1,000 files (about 1.1 MiB of entries a second) that is
/// a 170 KiB snapshot every 3 to 4 s, where the `interval` mode writes one every second.
pub const COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {source}; create it or set state_dir to a writable directory", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read the checkpoint file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("the checkpoint file {} is corrupt ({reason})", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("the checkpoint file {} has format version {found}, newer than this kinship understands ({FORMAT_VERSION})", path.display())]
    NewerVersion { path: PathBuf, found: u32 },
    #[error("cannot write the checkpoint file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    #[allow(
        dead_code,
        reason = "checked before the rest is read, in read_snapshot"
    )]
    version: u32,
    /// The last journal entry this snapshot includes; 0 for none (and in version 1 files).
    #[serde(default)]
    journal_seq: u64,
    files: Vec<OnDiskFile>,
}

/// [`OnDisk`] as written, borrowing the checkpoints.
#[derive(Serialize)]
struct OnDiskOut<'a> {
    version: u32,
    journal_seq: u64,
    files: Vec<FileOut<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskFile {
    flow: String,
    device: u64,
    inode: u64,
    /// Bytes hashed from the file's start, and their xxh3 hash; absent for a file empty when opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_len: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_hash: Option<u64>,
    path: PathBuf,
    offset: u64,
    /// When a scan last found the file, in seconds since the Unix epoch; absent in files
    /// written before checkpoints expired, taken as "now" when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<u64>,
    /// Set after the file was truncated: where a copy of it made before each of its latest
    /// truncations continues (the head the file had then, and the offset delivered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    copy_from: Vec<CopyFrom>,
}

/// [`OnDiskFile`] as written, borrowing the checkpoint: a journal entry costs no copy of
/// what it writes.
#[derive(Serialize)]
struct FileOut<'a> {
    flow: &'a str,
    device: u64,
    inode: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    head_len: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    head_hash: Option<u64>,
    path: &'a Path,
    offset: u64,
    seen: u64,
    #[serde(skip_serializing_if = "<[CopyFrom]>::is_empty")]
    copy_from: &'a [CopyFrom],
}

impl<'a> FileOut<'a> {
    fn of(checkpoint: &'a Checkpoint) -> Self {
        FileOut {
            flow: &checkpoint.flow,
            device: checkpoint.id.device,
            inode: checkpoint.id.inode,
            head_len: checkpoint.head.map(|head| head.len),
            head_hash: checkpoint.head.map(|head| head.hash),
            path: &checkpoint.path,
            offset: checkpoint.offset,
            seen: checkpoint.seen,
            copy_from: &checkpoint.copy_from,
        }
    }
}

impl OnDiskFile {
    fn into_checkpoint(self, now: u64) -> Checkpoint {
        Checkpoint {
            flow: self.flow,
            id: FileId {
                device: self.device,
                inode: self.inode,
            },
            head: self
                .head_len
                .zip(self.head_hash)
                .map(|(len, hash)| Head { len, hash }),
            path: self.path,
            offset: self.offset,
            seen: self.seen.unwrap_or(now),
            copy_from: self.copy_from,
        }
    }
}

/// One journal entry: what changed since the entry before it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    seq: u64,
    #[serde(default)]
    changed: Vec<OnDiskFile>,
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

/// What a store has written since it was opened, counted as it goes (for benchmarks and
/// tests; reading them costs the writer nothing).
#[derive(Debug, Default)]
pub struct WriteCounts {
    /// Journal entries appended, and their bytes.
    pub entries: AtomicU64,
    pub entry_bytes: AtomicU64,
    /// Snapshots written (compactions included), and their bytes.
    pub snapshots: AtomicU64,
    pub snapshot_bytes: AtomicU64,
}

#[derive(Debug)]
pub struct CheckpointStore {
    directory: PathBuf,
    path: PathBuf,
    temp: PathBuf,
    journal_path: PathBuf,
    /// The journal, open for appending since the first append or truncation.
    journal: Option<File>,
    /// The last entry number used: the next entry takes the one after it. An append that
    /// fails uses its number up too, so that an entry that reached the disk anyway is older
    /// than the snapshot that follows, and skipped.
    seq: u64,
    /// Bytes of whole entries in the journal.
    journal_len: u64,
    /// Bytes of the snapshot last written or read.
    snapshot_len: u64,
    /// The journal may end in bytes that an entry must not follow (an append failed, or a
    /// torn entry was found at start): the next write must be a snapshot, which empties it.
    needs_snapshot: bool,
    counts: Arc<WriteCounts>,
}

/// What opening the store found.
#[derive(Debug)]
pub struct Loaded {
    pub checkpoints: Vec<Checkpoint>,
    /// A temp file left by a write that was interrupted (and removed).
    pub removed_leftover: bool,
    /// The checkpoint file could not be read as checkpoints: it was moved aside to `moved_to`
    /// and the store starts from the journal's entries alone.
    pub corrupt: Option<MovedAside>,
    /// Journal entries applied over the snapshot.
    pub journal_entries: usize,
    /// The journal's last entry was torn (a crash while it was appended), and ignored: why.
    pub torn_entry: Option<String>,
    /// An entry before the journal's last could not be read: the journal was moved aside,
    /// and the entries before that one were applied.
    pub corrupt_journal: Option<MovedAside>,
}

impl Loaded {
    /// Whether the saved state may be older than what was saved: every file without a
    /// checkpoint should then be read from its start, whatever `initial_position` says.
    ///
    /// After a corrupt journal the state is the snapshot and the entries before the bad one.
    /// Checkpoints only ever move forward over delivered lines, and each entry holds the whole
    /// checkpoints it changed, so the dropped entries leave each file at an offset it had
    /// earlier: its lines since are sent again, none is skipped. What an older state can miss
    /// is a file first saved in a dropped entry: with no checkpoint, `end_of_file` would start
    /// it at its end and lose its lines, hence a start from the beginning. A checkpoint a
    /// dropped entry forgot comes back; it is forgotten again (a file deleted, or expired), and
    /// a new file under its inode does not start with its bytes, so it is read from its start.
    pub fn start_over(&self) -> bool {
        self.corrupt.is_some() || self.corrupt_journal.is_some()
    }
}

#[derive(Debug)]
pub struct MovedAside {
    pub reason: String,
    pub moved_to: PathBuf,
}

/// The snapshot as read.
#[derive(Default)]
struct Snapshot {
    journal_seq: u64,
    checkpoints: Vec<Checkpoint>,
    len: u64,
}

/// The journal as read.
#[derive(Default)]
struct Journal {
    /// Entries past the snapshot, in order.
    entries: Vec<Entry>,
    /// The last whole entry's number.
    last_seq: Option<u64>,
    /// A torn last entry: why it was not taken.
    torn: Option<String>,
    /// A bad entry before the last: which one, and why.
    bad: Option<String>,
}

impl CheckpointStore {
    /// Opens the store in `directory` (created if missing) and reads its checkpoints: the
    /// snapshot, then the journal's later entries. A journal with anything in it is compacted
    /// at once, so that the store starts with an empty one; if that write fails, the first
    /// write is a snapshot.
    pub fn open(directory: &Path) -> Result<(CheckpointStore, Loaded), StoreError> {
        fs::create_dir_all(directory).map_err(|source| StoreError::CreateDir {
            path: directory.to_owned(),
            source,
        })?;
        let mut store = CheckpointStore {
            directory: directory.to_owned(),
            path: directory.join(FILE_NAME),
            temp: directory.join(TEMP_NAME),
            journal_path: directory.join(JOURNAL_NAME),
            journal: None,
            seq: 0,
            journal_len: 0,
            snapshot_len: 0,
            needs_snapshot: false,
            counts: Arc::default(),
        };
        // A leftover temp file is a write that never reached its rename: the real file still
        // holds the state before it.
        let removed_leftover = match fs::remove_file(&store.temp) {
            Ok(()) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(StoreError::Write {
                    path: store.temp.clone(),
                    source,
                })
            }
        };
        let (snapshot, corrupt) = match read_snapshot(&store.path) {
            Ok(snapshot) => (snapshot, None),
            Err(StoreError::Corrupt { reason, .. }) => {
                // Kept for whoever wants to look at it; the agent must start regardless.
                let moved_to = store.move_aside(&store.path, FILE_NAME)?;
                (Snapshot::default(), Some(MovedAside { reason, moved_to }))
            }
            Err(other) => return Err(other),
        };
        let journal_bytes = read_if_present(&store.journal_path)?;
        // Where a corrupt snapshot stood in the journal is unknown: every entry applies, in
        // order. Each holds whole checkpoints, so the files they name resume where they say.
        let after = corrupt.is_none().then_some(snapshot.journal_seq);
        let journal = read_journal(&journal_bytes, after);
        let journal_entries = journal.entries.len();
        store.seq = snapshot.journal_seq.max(journal.last_seq.unwrap_or(0));
        store.snapshot_len = snapshot.len;
        let checkpoints = apply(snapshot.checkpoints, journal.entries);
        let mut corrupt_journal = None;
        if !journal_bytes.is_empty() {
            store.journal_len = journal_bytes.len() as u64;
            store.needs_snapshot = true;
            // The state read becomes the snapshot before the corrupt journal is moved aside,
            // so that a crash now does not fall back to the older snapshot alone.
            let compacted = store.write_snapshot(&checkpoints);
            if let Some(reason) = journal.bad {
                let moved_to = store.move_aside(&store.journal_path, JOURNAL_NAME)?;
                store.journal_len = 0;
                corrupt_journal = Some(MovedAside { reason, moved_to });
            }
            if compacted.is_ok() {
                // A failure here leaves `needs_snapshot` set: the first write tries again.
                let _ = store.empty_journal();
            }
        }
        Ok((
            store,
            Loaded {
                checkpoints,
                removed_leftover,
                corrupt,
                journal_entries,
                torn_entry: journal.torn,
                corrupt_journal,
            },
        ))
    }

    /// The snapshot's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// Bytes of whole entries in the journal.
    pub fn journal_len(&self) -> u64 {
        self.journal_len
    }

    /// Whether the next write must be a snapshot ([`write`](Self::write)): the journal may end
    /// in bytes that an entry must not follow.
    pub fn needs_snapshot(&self) -> bool {
        self.needs_snapshot
    }

    /// Whether the journal has grown enough to be compacted (see [`COMPACT_AFTER_BYTES`]).
    pub fn compaction_due(&self) -> bool {
        self.journal_len >= COMPACT_AFTER_BYTES.max(4 * self.snapshot_len)
    }

    /// What this store has written, counted as it writes.
    pub fn counts(&self) -> Arc<WriteCounts> {
        Arc::clone(&self.counts)
    }

    /// Makes the next write a snapshot: a write was interrupted somewhere unknown.
    pub(super) fn force_snapshot(&mut self) {
        self.needs_snapshot = true;
    }

    /// Appends what changed as one journal entry and waits for it to reach the disk.
    pub fn append(&mut self, delta: &Delta) -> Result<(), StoreError> {
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

    /// Replaces the saved checkpoints with `checkpoints`, every one, atomically and durably,
    /// and empties the journal, whose entries the snapshot includes.
    pub fn write(&mut self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        self.write_snapshot(checkpoints)?;
        self.empty_journal()
    }

    fn write_snapshot(&mut self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        let on_disk = OnDiskOut {
            version: FORMAT_VERSION,
            journal_seq: self.seq,
            files: checkpoints.iter().map(FileOut::of).collect(),
        };
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Write { path, source }
        };
        let mut bytes = serde_json::to_vec_pretty(&on_disk).map_err(|error| StoreError::Write {
            path: self.temp.clone(),
            source: io::Error::other(error),
        })?;
        bytes.push(b'\n');
        let result = (|| {
            let mut temp = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.temp)?;
            temp.write_all(&bytes)?;
            temp.sync_all()
        })();
        if let Err(source) = result {
            // Leave no half-written temp file behind (best effort: the next write truncates it).
            let _ = fs::remove_file(&self.temp);
            return Err(write_error(&self.temp)(source));
        }
        fs::rename(&self.temp, &self.path).map_err(write_error(&self.path))?;
        sync_directory(&self.directory).map_err(write_error(&self.directory))?;
        self.snapshot_len = bytes.len() as u64;
        self.counts.snapshots.fetch_add(1, Ordering::Relaxed);
        self.counts
            .snapshot_bytes
            .fetch_add(self.snapshot_len, Ordering::Relaxed);
        Ok(())
    }

    /// Empties the journal after a snapshot that includes its entries. The truncation is
    /// synced before the next entry is appended: entries must never land after old bytes.
    fn empty_journal(&mut self) -> Result<(), StoreError> {
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

    /// Moves `path` to `<name>.corrupt-<unix time>` beside it.
    fn move_aside(&self, path: &Path, name: &str) -> Result<PathBuf, StoreError> {
        let moved_to = self
            .directory
            .join(format!("{name}.corrupt-{}", super::tracker::unix_now()));
        fs::rename(path, &moved_to).map_err(|source| StoreError::Write {
            path: moved_to.clone(),
            source,
        })?;
        Ok(moved_to)
    }
}

/// The checkpoints saved in `directory` (snapshot and journal), read without changing
/// anything, as a tool or a test may look at a running agent's state. A corrupt journal
/// gives the entries before its bad one, as at start.
pub fn read_saved(directory: &Path) -> Result<Vec<Checkpoint>, StoreError> {
    // The journal first: a compaction between the two reads then gives a newer snapshot,
    // past every entry read, rather than entries past an older one.
    let journal_bytes = read_if_present(&directory.join(JOURNAL_NAME))?;
    let snapshot = read_snapshot(&directory.join(FILE_NAME))?;
    let journal = read_journal(&journal_bytes, Some(snapshot.journal_seq));
    Ok(apply(snapshot.checkpoints, journal.entries))
}

fn read_if_present(path: &Path) -> Result<Vec<u8>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StoreError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::default()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let version: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
    match version.get("version").and_then(serde_json::Value::as_u64) {
        Some(found) if found > u64::from(FORMAT_VERSION) => {
            return Err(StoreError::NewerVersion {
                path: path.to_owned(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            })
        }
        Some(_) => {}
        None => return Err(corrupt("no format version".into())),
    }
    let on_disk: OnDisk =
        serde_json::from_value(version).map_err(|error| corrupt(error.to_string()))?;
    let now = super::tracker::unix_now();
    Ok(Snapshot {
        journal_seq: on_disk.journal_seq,
        checkpoints: on_disk
            .files
            .into_iter()
            .map(|file| file.into_checkpoint(now))
            .collect(),
        len: bytes.len() as u64,
    })
}

/// Reads the journal's whole entries past `after` (every entry if `None`), by the rules in
/// this module's documentation.
fn read_journal(bytes: &[u8], after: Option<u64>) -> Journal {
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
        let entry = entry.and_then(|entry| {
            let expected = match (journal.last_seq, after) {
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
        });
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

fn decode_entry(line: &[u8]) -> Result<Entry, String> {
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
fn apply(snapshot: Vec<Checkpoint>, entries: Vec<Entry>) -> Vec<Checkpoint> {
    if entries.is_empty() {
        return snapshot;
    }
    let mut saved: BTreeMap<Identity, Checkpoint> = snapshot
        .into_iter()
        .map(|checkpoint| ((checkpoint.flow.clone(), checkpoint.id), checkpoint))
        .collect();
    let now = super::tracker::unix_now();
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

#[cfg(unix)]
fn sync_directory(directory: &Path) -> io::Result<()> {
    fs::File::open(directory)?.sync_all()
}

// Windows cannot open a directory as a file; its rename is made durable by the file's flush.
#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
