//! Follows one file: reads it in chunks on blocking threads, frames records and sends them on;
//! notices truncation, sends a last line that never got its newline, gives its descriptor back
//! when others are waiting for one, and releases the file once it was rotated or deleted and
//! read to its end.
//!
//! `open` finds where reading starts, `run` is the follow loop, `send` hands records on, and
//! `unread` keeps the unread-bytes gauges.

mod open;
mod run;
mod send;
mod unread;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::assembler::Assembler;
use super::catch_up::CatchUp;
use super::copies::FirstBytes;
use super::framer::Framer;
use super::identity::Lead;
use super::{FlowShared, KnownOffset};
use crate::limits::FilePermit;
use crate::log_limit::LogLimiter;
use crate::record::{Ack, FileId, Head, SourceFile};
use unread::Unread;

/// Read and stat errors, and over-long records, are logged at most this often per file.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

static NEXT_FILE_KEY: AtomicU64 = AtomicU64::new(1);

/// A key no other reading of a file in this process has.
pub(super) fn next_file_key() -> u64 {
    NEXT_FILE_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Where a tailer starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// A known offset: a checkpoint, or where an earlier tailer of this file stopped.
    At(KnownOffset),
    Beginning,
    /// After the last complete line.
    End,
}

/// Why a tailer stopped, and where to resume should the file be found again.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) id: FileId,
    pub(super) resume_at: Option<KnownOffset>,
    /// It gave its descriptor back for another file and wants to be opened again.
    pub(super) parked: bool,
}

/// One opened file handed to a tailer.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) id: FileId,
    pub(super) start: Start,
    /// The checkpoint of the file that had this device and inode before, if it was replaced.
    pub(super) replaced: Option<KnownOffset>,
    pub(super) permit: FilePermit,
    /// Held while this file must be read to its end before new files are opened.
    pub(super) catch_up: Option<CatchUp>,
}

/// Runs until shutdown, until the file was rotated or deleted and read to its end, or until it
/// gives its descriptor back to a file that waits for one.
pub(super) async fn follow(
    opened: Opened,
    shared: Arc<FlowShared>,
    changed: watch::Receiver<()>,
) -> Finished {
    match Tailer::open(opened, shared).await {
        Ok((tailer, size)) => tailer.run(size, changed).await,
        Err(finished) => finished,
    }
}

/// One file being followed.
struct Tailer {
    source: Arc<SourceFile>,
    /// The file's first bytes, kept to recognise a copy of it while the copy is written.
    lead: Lead,
    file: Arc<File>,
    path: PathBuf,
    framer: Framer,
    assembler: Option<Assembler>,
    unread: Unread,
    /// Over-long records, logged at most once per `LOG_EVERY`.
    oversize_log: LogLimiter,
    footer_logged: bool,
    /// Polls in a row that found nothing new.
    idle_polls: u32,
    /// Read and stat errors, logged at most once per `LOG_EVERY`.
    trouble_log: LogLimiter,
    /// Held while this file must be read to its end before new files are opened.
    catch_up: Option<CatchUp>,
    shared: Arc<FlowShared>,
    /// This tailer's share of the open-file budget, returned when it ends.
    _permit: FilePermit,
}

impl Tailer {
    fn first_bytes(&self) -> FirstBytes {
        FirstBytes::read(self.source.head, self.lead)
    }

    /// Identifies the file by `head` from now on (read up to `offset`); false if shutdown
    /// began first.
    async fn learn_head(&mut self, head: Head, lead: Lead, offset: u64) -> bool {
        let identified = Arc::new(SourceFile {
            key: self.source.key,
            flow: Arc::clone(&self.source.flow),
            id: self.source.id,
            head: Some(head),
            path: self.path.clone(),
        });
        self.source = Arc::clone(&identified);
        self.lead = lead;
        // Copies of this file are recognised by its head from now on.
        self.shared
            .copies
            .note_reached(self.source.id, self.first_bytes(), offset, &self.path);
        self.shared
            .acks
            .send(Ack::Identified { file: identified })
            .await
            .is_ok()
    }

    /// Where reading would resume: the start of the first record not handed on.
    fn resume_offset(&self) -> u64 {
        self.assembler
            .as_ref()
            .and_then(Assembler::pending_start)
            .unwrap_or_else(|| self.framer.framed_offset())
    }

    fn finish(self, parked: bool) -> Finished {
        Finished {
            id: self.source.id,
            resume_at: Some(KnownOffset {
                offset: self.resume_offset(),
                head: self.source.head,
                path: Some(self.path.clone()),
                original: None,
                cursor: None,
            }),
            parked,
        }
    }
}

fn new_source(
    shared: &FlowShared,
    id: FileId,
    head: Option<Head>,
    path: &std::path::Path,
) -> Arc<SourceFile> {
    Arc::new(SourceFile {
        key: next_file_key(),
        flow: Arc::clone(&shared.flow),
        id,
        head,
        path: path.to_owned(),
    })
}

/// Runs blocking file I/O off the async workers.
pub(super) async fn blocking<T, F>(work: F) -> std::io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| std::io::Error::other(format!("file task failed: {error}")))
}
