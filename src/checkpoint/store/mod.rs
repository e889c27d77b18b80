//! The on-disk checkpoints: a snapshot, `checkpoints.json` ([`snapshot`]), and a journal beside
//! it, `checkpoints.journal` ([`journal`]). The snapshot is versioned JSON written atomically
//! (temp file in the same directory, fsync, rename over the old file, fsync the directory), so
//! a crash at any instant leaves either the old snapshot or the new one. Each group commit
//! appends one entry to the journal with what changed since the last one, and syncs it. The
//! saved state is the snapshot with the journal's later entries applied in order; compaction
//! writes that state as a new snapshot and empties the journal.
//!
//! This module opens the store, reads what it holds at start and reports what it found.

mod journal;
mod snapshot;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::tracker::{unix_now, Checkpoint};
use journal::{apply_entries, read_journal, JOURNAL_NAME};
use snapshot::{read_snapshot, FILE_NAME, FORMAT_VERSION, TEMP_NAME};

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
        let mut store = CheckpointStore::in_directory(directory);
        let removed_leftover = store.remove_leftover_temp()?;
        let (snapshot, corrupt) = store.read_snapshot_or_move_aside()?;
        let journal_bytes = read_if_present(&store.journal_path)?;
        // Where a corrupt snapshot stood in the journal is unknown: every entry applies, in
        // order. Each holds whole checkpoints, so the files they name resume where they say.
        let after = corrupt.is_none().then_some(snapshot.journal_seq);
        let journal = read_journal(&journal_bytes, after);
        let journal_entries = journal.entries.len();
        store.seq = snapshot.journal_seq.max(journal.last_seq.unwrap_or(0));
        store.snapshot_len = snapshot.len;
        let checkpoints = apply_entries(snapshot.checkpoints, journal.entries);
        let corrupt_journal = if journal_bytes.is_empty() {
            None
        } else {
            store.compact_at_open(&checkpoints, journal_bytes.len() as u64, journal.bad)?
        };
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

    /// The store of `directory`, before anything is read.
    fn in_directory(directory: &Path) -> Self {
        CheckpointStore {
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
        }
    }

    /// The snapshot's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// What this store has written, counted as it writes.
    pub fn counts(&self) -> Arc<WriteCounts> {
        Arc::clone(&self.counts)
    }

    /// Makes the next write a snapshot: a write was interrupted somewhere unknown.
    pub(super) fn force_snapshot(&mut self) {
        self.needs_snapshot = true;
    }

    /// Replaces the saved checkpoints with `checkpoints`, every one, atomically and durably,
    /// and empties the journal, whose entries the snapshot includes.
    pub(crate) fn write(&mut self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        self.write_snapshot(checkpoints)?;
        self.empty_journal()
    }

    /// Moves `path` to `<name>.corrupt-<unix time>` beside it.
    fn move_aside(&self, path: &Path, name: &str) -> Result<PathBuf, StoreError> {
        let moved_to = self
            .directory
            .join(format!("{name}.corrupt-{}", unix_now()));
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
    Ok(apply_entries(snapshot.checkpoints, journal.entries))
}

/// The file and the reason, if opening the store in `directory` would find its snapshot or
/// its journal corrupt (and move it aside); read without changing anything, so that a tool
/// can leave a corrupt store for the agent's next start to handle.
pub(crate) fn find_corruption(directory: &Path) -> Result<Option<(PathBuf, String)>, StoreError> {
    let journal_path = directory.join(JOURNAL_NAME);
    let journal_bytes = read_if_present(&journal_path)?;
    let snapshot_path = directory.join(FILE_NAME);
    let snapshot = match read_snapshot(&snapshot_path) {
        Ok(snapshot) => snapshot,
        Err(StoreError::Corrupt { path, reason }) => return Ok(Some((path, reason))),
        Err(other) => return Err(other),
    };
    let journal = read_journal(&journal_bytes, Some(snapshot.journal_seq));
    Ok(journal.bad.map(|reason| (journal_path, reason)))
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
mod tests;
