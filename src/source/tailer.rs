//! Follows one file: reads it in chunks on blocking threads, frames records and sends them on;
//! notices truncation, and releases the file once it was rotated or deleted and read to its end.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::framer::Framer;
use super::identity;
use super::{FlowShared, KnownOffset};
use crate::metrics::FlowMetrics;
use crate::record::{Ack, FileId, Head, Lines, SourceFile};

/// Bytes read from a file at a time.
const READ_CHUNK: usize = 256 * 1024;
/// How far back `end_of_file` looks for the end of the last complete line.
const END_OF_FILE_WINDOW: u64 = 64 * 1024;

static NEXT_FILE_KEY: AtomicU64 = AtomicU64::new(1);

/// Where a tailer starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A known offset: a checkpoint, or where an earlier tailer of this file stopped.
    At(KnownOffset),
    Beginning,
    /// After the last complete line.
    End,
}

/// Why a tailer stopped, and where to resume should the file be found again.
#[derive(Debug)]
pub struct Finished {
    pub id: FileId,
    pub resume_at: Option<KnownOffset>,
}

/// Runs until shutdown, or until the file was rotated or deleted and read to its end.
pub async fn follow(
    file: File,
    path: PathBuf,
    id: FileId,
    start: Start,
    shared: Arc<FlowShared>,
    mut changed: watch::Receiver<()>,
) -> Finished {
    let file = Arc::new(file);
    let opening = {
        let file = Arc::clone(&file);
        blocking(move || -> std::io::Result<Opening> {
            let size = file.metadata()?.len();
            let mut replaced = false;
            let offset = match start {
                Start::At(known) => {
                    let same_file = match known.head {
                        Some(head) => identity::starts_with(&file, head)?,
                        None => true,
                    };
                    replaced = !same_file;
                    if same_file && known.offset <= size {
                        known.offset
                    } else {
                        0
                    }
                }
                Start::Beginning => 0,
                Start::End => identity::after_last_newline(&file, size, END_OF_FILE_WINDOW)?,
            };
            let head = identity::head_of(&file, size)?;
            Ok(Opening {
                offset,
                size,
                head,
                replaced,
            })
        })
    };
    let Opening {
        offset,
        size,
        head,
        replaced,
    } = match opening.await.and_then(|result| result) {
        Ok(found) => found,
        Err(error) => {
            warn!(file = %path.display(), %error, "Cannot read file; will try again at the next scan.");
            let resume_at = match start {
                Start::At(known) => Some(known),
                Start::Beginning | Start::End => None,
            };
            return Finished { id, resume_at };
        }
    };
    if let Start::At(known) = start {
        if replaced {
            warn!(file = %path.display(), checkpoint = known.offset, "Another file now has this file's device and inode (its first bytes differ); reading it from the start.");
        } else if known.offset > size {
            warn!(file = %path.display(), checkpoint = known.offset, size, "File is shorter than its checkpoint; it was truncated, reading it from the start.");
        }
    }
    info!(file = %path.display(), offset, size, "Following file.");

    let mut tailer = Tailer {
        source: new_source(&shared, id, head, &path),
        file,
        path,
        framer: Framer::new(shared.settings.max_line_bytes, offset),
        unread: Unread::new(&shared.metrics),
        truncation_logged: false,
        trouble: None,
        shared,
    };
    if !tailer.announce(offset).await {
        return tailer.finish(None);
    }
    tailer.unread.set(size.saturating_sub(offset));
    // The file's size at the last look: reads ask for what is there and no more, so an idle
    // file costs no buffer.
    let mut size_seen = size;
    let mut rotated_since: Option<Instant> = None;

    loop {
        if tailer.shared.cancel.is_cancelled() {
            let resume = tailer.framer.framed_offset();
            return tailer.finish(Some(resume));
        }
        let offset = tailer.framer.read_offset();
        if size_seen > offset {
            let want =
                usize::try_from(size_seen - offset).map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
            match tailer.read_chunk(want).await {
                Ok(ReadOutcome::Read(0)) => size_seen = offset,
                Ok(ReadOutcome::Read(_)) => rotated_since = None,
                Ok(ReadOutcome::Stopped) => {
                    let resume = tailer.framer.framed_offset();
                    return tailer.finish(Some(resume));
                }
                Err(error) => {
                    tailer.report_trouble("Cannot read file; will retry.", &error);
                    tailer.wait(&mut changed).await;
                }
            }
            continue;
        }
        let state = match tailer.stat().await {
            Ok(state) => state,
            Err(error) => {
                tailer.report_trouble("Cannot stat file; will retry.", &error);
                tailer.wait(&mut changed).await;
                continue;
            }
        };
        size_seen = state.size;
        if state.size < offset {
            tailer.restart_after_truncation(state.size).await;
            continue;
        }
        tailer.unread.set(state.size - offset);
        if state.size > offset {
            continue;
        }
        if state.path_id == Some(id) {
            rotated_since = None;
        } else {
            let since = *rotated_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= tailer.shared.settings.release_after {
                let end = tailer.framer.framed_offset();
                // A last line without its newline is not sent in this version; say so.
                let unterminated_bytes = offset - end;
                if state.links == 0 {
                    info!(file = %tailer.path.display(), end, unterminated_bytes, "File was deleted and is read to its end; releasing it.");
                    let closed = Ack::Closed {
                        file: Arc::clone(&tailer.source),
                        end,
                    };
                    let _ = tailer.shared.acks.send(closed).await;
                    return tailer.finish(None);
                }
                info!(file = %tailer.path.display(), end, unterminated_bytes, "File was rotated away and is read to its end; releasing it.");
                return tailer.finish(Some(end));
            }
        }
        tailer.wait(&mut changed).await;
    }
}

/// What one read did.
enum ReadOutcome {
    /// Bytes read (0 at the end of the file); every record they completed was handed on.
    Read(usize),
    /// Shutdown began while records were being handed on; the rest were not sent.
    Stopped,
}

/// Read and stat errors are logged at most this often per file.
const TROUBLE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

struct Tailer {
    source: Arc<SourceFile>,
    file: Arc<File>,
    path: PathBuf,
    framer: Framer,
    unread: Unread,
    truncation_logged: bool,
    /// When a read or stat error was last logged, and how many were held back since.
    trouble: Option<(Instant, u64)>,
    shared: Arc<FlowShared>,
}

struct FileState {
    size: u64,
    links: u64,
    /// Identity of the file now at our path, if any.
    path_id: Option<FileId>,
}

impl Tailer {
    /// Tells the checkpoint store where reading starts; false if shutting down.
    async fn announce(&self, offset: u64) -> bool {
        let opened = Ack::Opened {
            file: Arc::clone(&self.source),
            offset,
        };
        self.shared.acks.send(opened).await.is_ok()
    }

    /// Reads one chunk and sends the records it completes; returns the bytes read.
    /// Reads up to `want` bytes and hands on the records they complete.
    async fn read_chunk(&mut self, want: usize) -> std::io::Result<ReadOutcome> {
        let offset = self.framer.read_offset();
        let (buffer, filled) = self.framer.take_buffer(want);
        let file = Arc::clone(&self.file);
        let joined = blocking(move || {
            let mut buffer = buffer;
            let result = identity::read_at(&file, &mut buffer[filled..], offset);
            (buffer, result)
        })
        .await;
        // Losing the buffer (the read task died) only means its partial line is read again.
        let (buffer, filled, result) = match joined {
            Ok((buffer, result)) => (buffer, filled, result),
            Err(error) => (bytes::BytesMut::new(), 0, Err(error)),
        };
        let read = *result.as_ref().unwrap_or(&0);
        let framed = self.framer.frame(buffer, filled + read, &self.source);
        result?;
        if framed.truncated > 0 {
            FlowMetrics::add(&self.shared.metrics.records_truncated, framed.truncated);
            if !self.truncation_logged {
                self.truncation_logged = true;
                warn!(
                    file = %self.path.display(),
                    max_line_bytes = self.shared.settings.max_line_bytes,
                    "Lines longer than the record limit are cut to fit; the rest of each such line is not sent (logged once per file)."
                );
            }
        }
        self.unread.add_read(read as u64);
        for lines in framed.lines {
            if !self.send(lines).await {
                // Nothing after an unsent block may go either: the gap it leaves would make the
                // next start send the later records twice.
                return Ok(ReadOutcome::Stopped);
            }
        }
        Ok(ReadOutcome::Read(read))
    }

    /// Hands `lines` on; false if shutdown began first (they are read again after the restart).
    async fn send(&self, lines: Lines) -> bool {
        let records = lines.spans.len() as u64;
        let bytes = lines
            .spans
            .last()
            .map_or(0, |span| span.file_end - lines.file_start);
        tokio::select! {
            biased;
            sent = self.shared.lines.send(lines) => {
                if sent.is_ok() {
                    FlowMetrics::add(&self.shared.metrics.records_read, records);
                    FlowMetrics::add(&self.shared.metrics.bytes_read, bytes);
                }
                sent.is_ok()
            }
            _ = self.shared.cancel.cancelled() => false,
        }
    }

    /// Logs a read or stat error at most once per `TROUBLE_LOG_EVERY`, counting the repeats.
    fn report_trouble(&mut self, what: &'static str, error: &std::io::Error) {
        let now = Instant::now();
        match &mut self.trouble {
            Some((last, held_back)) if now.duration_since(*last) < TROUBLE_LOG_EVERY => {
                *held_back += 1
            }
            trouble => {
                let repeats = trouble.map_or(0, |(_, held_back)| held_back);
                warn!(file = %self.path.display(), %error, repeats, "{what}");
                *trouble = Some((now, 0));
            }
        }
    }

    async fn stat(&self) -> std::io::Result<FileState> {
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        blocking(move || {
            let metadata = file.metadata()?;
            let path_id = std::fs::metadata(&path).ok().map(|m| identity::file_id(&m));
            Ok(FileState {
                size: metadata.len(),
                links: identity::link_count(&metadata),
                path_id,
            })
        })
        .await?
    }

    async fn restart_after_truncation(&mut self, size: u64) {
        warn!(
            file = %self.path.display(),
            size,
            offset = self.framer.read_offset(),
            "File was truncated; reading it again from the start."
        );
        let file = Arc::clone(&self.file);
        let head = blocking(move || identity::head_of(&file, size))
            .await
            .and_then(|result| result)
            .unwrap_or(None);
        self.source = new_source(&self.shared, self.source.id, head, &self.path);
        self.framer.restart_at(0);
        self.unread.set(size);
        let restarted = Ack::Restarted {
            file: Arc::clone(&self.source),
        };
        let _ = self.shared.acks.send(restarted).await;
    }

    async fn wait(&self, changed: &mut watch::Receiver<()>) {
        let poll = tokio::time::sleep(self.shared.settings.poll_interval);
        tokio::select! {
            _ = self.shared.cancel.cancelled() => {}
            _ = poll => {}
            result = changed.changed() => {
                if result.is_err() {
                    // The watcher is gone; polling alone keeps the file followed.
                    tokio::time::sleep(self.shared.settings.poll_interval).await;
                }
            }
        }
    }

    fn finish(self, resume_at: Option<u64>) -> Finished {
        Finished {
            id: self.source.id,
            resume_at: resume_at.map(|offset| KnownOffset {
                offset,
                head: self.source.head,
            }),
        }
    }
}

/// What opening a file found.
struct Opening {
    offset: u64,
    size: u64,
    head: Option<Head>,
    /// The known offset belonged to another file that had the same device and inode.
    replaced: bool,
}

fn new_source(
    shared: &FlowShared,
    id: FileId,
    head: Option<Head>,
    path: &std::path::Path,
) -> Arc<SourceFile> {
    Arc::new(SourceFile {
        key: NEXT_FILE_KEY.fetch_add(1, Ordering::Relaxed),
        flow: Arc::clone(&shared.flow),
        id,
        head,
        path: path.to_owned(),
    })
}

/// This file's share of the flow's unread-bytes gauge, taken back when the tailer ends.
struct Unread {
    metrics: Arc<FlowMetrics>,
    current: i64,
}

impl Unread {
    fn new(metrics: &Arc<FlowMetrics>) -> Self {
        Self {
            metrics: Arc::clone(metrics),
            current: 0,
        }
    }

    fn set(&mut self, unread: u64) {
        let unread = i64::try_from(unread).unwrap_or(i64::MAX);
        self.metrics
            .bytes_unread
            .fetch_add(unread - self.current, Ordering::Relaxed);
        self.current = unread;
    }

    fn add_read(&mut self, read: u64) {
        let read = i64::try_from(read).unwrap_or(i64::MAX);
        let next = (self.current - read).max(0);
        self.metrics
            .bytes_unread
            .fetch_add(next - self.current, Ordering::Relaxed);
        self.current = next;
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        self.metrics
            .bytes_unread
            .fetch_sub(self.current, Ordering::Relaxed);
    }
}

/// Runs blocking file I/O off the async workers.
pub async fn blocking<T, F>(work: F) -> std::io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| std::io::Error::other(format!("file task failed: {error}")))
}
