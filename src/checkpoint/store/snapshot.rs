//! The snapshot, `checkpoints.json`: every checkpoint as versioned JSON, with the last journal
//! entry it includes. It is written atomically (temp file in the same directory, fsync, rename
//! over the old file, fsync the directory), and a temp file left by an interrupted write is
//! removed at start. A checkpoint is written here in the form the journal's entries use too.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::{sync_directory, CheckpointStore, MovedAside, StoreError};
use crate::checkpoint::tracker::{unix_now, Checkpoint};
use crate::record::{CopyFrom, FileId, Head};

/// Version 2 added `journal_seq`; version 1 files are read as including no journal entry.
/// Version 3 added a checkpoint's `cursor`; a snapshot is written as version 3 only when one
/// of its checkpoints has a cursor (a `journald` flow), so that a store without one still
/// reads in a kinship that knows only version 2.
pub(super) const FORMAT_VERSION: u32 = 3;
/// The version written when no checkpoint has a cursor.
const FORMAT_VERSION_WITHOUT_CURSORS: u32 = 2;
pub(super) const FILE_NAME: &str = "checkpoints.json";
pub(super) const TEMP_NAME: &str = ".checkpoints.json.tmp";

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

/// One checkpoint as the snapshot and the journal's entries hold it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OnDiskFile {
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
    /// Where a `journald` flow resumes: the cursor of the last entry delivered.
    #[serde(default)]
    cursor: Option<String>,
}

/// [`OnDiskFile`] as written, borrowing the checkpoint: a journal entry costs no copy of
/// what it writes.
#[derive(Serialize)]
pub(super) struct FileOut<'a> {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

impl<'a> FileOut<'a> {
    pub(super) fn of(checkpoint: &'a Checkpoint) -> Self {
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
            cursor: checkpoint.cursor.as_deref(),
        }
    }
}

impl OnDiskFile {
    pub(super) fn into_checkpoint(self, now: u64) -> Checkpoint {
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
            cursor: self.cursor,
        }
    }
}

/// The snapshot as read.
#[derive(Default)]
pub(super) struct Snapshot {
    pub(super) journal_seq: u64,
    pub(super) checkpoints: Vec<Checkpoint>,
    pub(super) len: u64,
}

impl CheckpointStore {
    /// Removes a temp file left by a write that was interrupted; returns whether there was
    /// one.
    pub(super) fn remove_leftover_temp(&self) -> Result<bool, StoreError> {
        // A leftover temp file is a write that never reached its rename: the real file still
        // holds the state before it.
        match fs::remove_file(&self.temp) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Write {
                path: self.temp.clone(),
                source,
            }),
        }
    }

    /// Reads the snapshot; one that cannot be read as checkpoints is moved aside, and the
    /// store starts without it.
    pub(super) fn read_snapshot_or_move_aside(
        &self,
    ) -> Result<(Snapshot, Option<MovedAside>), StoreError> {
        match read_snapshot(&self.path) {
            Ok(snapshot) => Ok((snapshot, None)),
            Err(StoreError::Corrupt { reason, .. }) => {
                // Kept for whoever wants to look at it; the agent must start regardless.
                let moved_to = self.move_aside(&self.path, FILE_NAME)?;
                Ok((Snapshot::default(), Some(MovedAside { reason, moved_to })))
            }
            Err(other) => Err(other),
        }
    }

    /// Writes `checkpoints` as the snapshot, atomically and durably, as including every
    /// journal entry so far.
    pub(super) fn write_snapshot(&mut self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        let on_disk = OnDiskOut {
            version: if checkpoints.iter().any(|saved| saved.cursor.is_some()) {
                FORMAT_VERSION
            } else {
                FORMAT_VERSION_WITHOUT_CURSORS
            },
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
}

pub(super) fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
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
    let now = unix_now();
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
