//! Plain types shared by the components: where a line came from, lines on their way, batches
//! and acknowledgements. No logic lives here and nothing here imports another module.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::limits::Reservation;

/// A file's identity on its filesystem: it survives renames, unlike its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

/// A hash of a file's first bytes: with device and inode, it tells a file apart from another
/// that later got the same inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    /// How many bytes from the start were hashed (fewer when the file was shorter).
    pub len: u32,
    pub hash: u64,
}

/// One followed file, as one tailer reads it. `key` is unique within the process; a file that
/// was truncated is read again under a new key, so offsets under one key only ever grow.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub key: u64,
    pub flow: Arc<str>,
    pub id: FileId,
    /// `None` while the file was empty when opened.
    pub head: Option<Head>,
    pub path: PathBuf,
}

/// One record inside a [`Lines`] buffer: `data[data_start..data_end]`, ending in the file at
/// `file_end`. An empty span covers bytes that are not sent (a skipped line); it is acknowledged
/// with the records around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineSpan {
    pub data_start: u32,
    pub data_end: u32,
    pub file_end: u64,
}

/// Consecutive lines of one file sharing one buffer. The first line starts at `file_start` in
/// the file; each following line starts where the one before it ended.
#[derive(Debug)]
pub struct Lines {
    pub file: Arc<SourceFile>,
    pub file_start: u64,
    pub data: Bytes,
    pub spans: Vec<LineSpan>,
    /// The records' room in the memory budget: their bytes plus a fixed overhead each.
    pub reserved: Reservation,
}

/// Where a copy of a truncated file continues: the head the file had before the truncation,
/// and the offset its records were handed on to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyFrom {
    pub head: Head,
    pub offset: u64,
}

/// The file a copy was made of (copytruncate), found while the file's reading before the
/// truncation may still have records in flight. Those records hold the same bytes as the start
/// of the copy, so the copy's checkpoint stays where the original's delivery has reached until
/// every one of them is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Original {
    /// The key ([`SourceFile::key`]) of the original's reading before the truncation.
    pub reading: u64,
}

/// A record ready for the destination.
#[derive(Clone, Debug)]
pub struct OutRecord {
    pub data: Bytes,
    pub partition_key: String,
    /// Where the record starts in its file.
    pub offset: u64,
    /// Which of its batch's `ranges` holds its file.
    pub range: u32,
    /// Routes the record to a shard instead of its partition key (an aggregated record goes to
    /// the shard its user records' keys hash to).
    pub explicit_hash_key: Option<Box<str>>,
    /// Lines (user records) the record carries: 1, or more when aggregated or packed.
    pub lines: u32,
}

impl OutRecord {
    /// A record carrying one line, routed by its partition key.
    pub fn line(data: Bytes, partition_key: String, offset: u64, range: u32) -> Self {
        Self {
            data,
            partition_key,
            offset,
            range,
            explicit_hash_key: None,
            lines: 1,
        }
    }

    /// Size as Kinesis counts it: the data plus the partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// The bytes `[start, end)` of a file, all of whose records a batch carries.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<SourceFile>,
    pub start: u64,
    pub end: u64,
}

/// Records for one call, with the file ranges they cover so delivery can be acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<OutRecord>,
    pub ranges: Vec<FileRange>,
    pub bytes: usize,
    /// The records' room in the memory budget, given back when the batch is dropped.
    pub reserved: Reservation,
}

/// What the checkpoint store hears: files being opened and closed by the source, and ranges
/// delivered by the sink.
#[derive(Debug)]
pub enum Ack {
    /// A tailer starts reading `file` at `offset`; nothing before it will be sent. If an earlier
    /// reading of the same file still has records in flight, this reading continues it. For a
    /// copy of a truncated file, `original` names that file: what of it was delivered is where
    /// the copy's checkpoint stands until the rest is.
    Opened {
        file: Arc<SourceFile>,
        offset: u64,
        original: Option<Original>,
    },
    /// The file was truncated (or replaced): `file` reads it again from `offset` (0 unless it is
    /// a copy that continues another file), and whatever the earlier
    /// reading still has in flight no longer counts toward the file's checkpoint. `before` is
    /// the head the file had and the offset it was read to: a copy of the file made before the
    /// truncation (copytruncate) continues from there, even after a restart.
    Restarted {
        file: Arc<SourceFile>,
        offset: u64,
        before: Option<CopyFrom>,
    },
    /// Every record in these ranges was accepted by the destination.
    Delivered(Vec<FileRange>),
    /// The tailer released `file` (deleted or rotated away) after reading up to `end`.
    Closed { file: Arc<SourceFile>, end: u64 },
    /// The reading `file.key` grew long enough for a longer head: `file` replaces its record.
    Identified { file: Arc<SourceFile> },
    /// A scan of `flow` found these files: their checkpoints are still wanted.
    Seen { flow: Arc<str>, ids: Vec<FileId> },
    /// The source asks how far each of these files of `flow` was acknowledged, to decide
    /// whether it is done with (`shipped_files`): `reply` gets one answer per id, in order,
    /// once every acknowledgement sent before the question has been applied.
    AskAcknowledged {
        flow: Arc<str>,
        ids: Vec<FileId>,
        reply: tokio::sync::oneshot::Sender<Vec<Option<Acknowledged>>>,
    },
    /// The file `id` of `flow` was deleted or moved away once every line of it was
    /// acknowledged: its checkpoint and readings are dropped.
    Shipped { flow: Arc<str>, id: FileId },
    /// A source that is not a file (the journal) names the entry of `file` ending at position
    /// `end` by `cursor`: once every position before `end` is delivered, the checkpoint keeps
    /// `cursor`, from which the source resumes after a restart. Sent before the entry is
    /// handed on.
    Marked {
        file: Arc<SourceFile>,
        end: u64,
        cursor: Box<str>,
    },
}

/// How far a file was acknowledged, as the checkpoint store knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// Every byte before this offset was delivered; nothing before it is in flight.
    pub offset: u64,
    /// The head of the file this offset belongs to (`None` if it was empty when opened).
    pub head: Option<Head>,
}

/// A record's stable identity: the hash of its file's first bytes and the offset it starts at.
/// Sending a record again (after a retry whose outcome was unknown, or a restart) gives it the
/// same id, and so does reading it from a copy of its file; consumers drop duplicates by it.
/// A file that was empty when opened is named by device and inode until its start is known.
pub fn record_id(file: &SourceFile, offset: u64) -> String {
    let mut id = String::with_capacity(40);
    let _ = match file.head {
        Some(head) => write!(id, "{:016x}-{offset}", head.hash),
        None => write!(id, "{:x}.{:x}-{offset}", file.id.device, file.id.inode),
    };
    id
}
