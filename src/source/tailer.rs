//! Follows one file: reads it in chunks on blocking threads, frames records and sends them on;
//! notices truncation, sends a last line that never got its newline, gives its descriptor back
//! when others are waiting for one, and releases the file once it was rotated or deleted and
//! read to its end.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::assembler::Assembler;
use super::framer::{Framed, Framer};
use super::identity::{self, Lead};
use super::{CatchUp, FirstBytes, FlowShared, KnownOffset};
use crate::config::Oversize;
use crate::limits::FilePermit;
use crate::limits::RECORD_OVERHEAD;
use crate::metrics::{FileGauge, FlowMetrics};
use crate::record::{Ack, CopyFrom, FileId, Head, Lines, Original, SourceFile};

/// Bytes read from a file at a time.
const READ_CHUNK: usize = 256 * 1024;
/// How far back `end_of_file` looks for the end of the last complete line.
const END_OF_FILE_WINDOW: u64 = 64 * 1024;
/// The longest wait between two polls of an idle file when file events can wake it sooner.
const IDLE_POLL_MAX: std::time::Duration = std::time::Duration::from_secs(2);
/// With more files open than this many per `IDLE_POLL_MAX`, idle files are polled less often,
/// so that the polls of all idle files together cost little more than those of a few hundred.
const IDLE_POLLS_PER_SECOND: f64 = 100.0;
/// Read and stat errors, and over-long records, are logged at most this often per file.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

static NEXT_FILE_KEY: AtomicU64 = AtomicU64::new(1);

/// Where a tailer starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// It gave its descriptor back for another file and wants to be opened again.
    pub parked: bool,
}

/// One opened file handed to a tailer.
pub struct Opened {
    pub file: File,
    pub path: PathBuf,
    pub id: FileId,
    pub start: Start,
    /// The checkpoint of the file that had this device and inode before, if it was replaced.
    pub replaced: Option<KnownOffset>,
    pub permit: FilePermit,
    /// Held while this file must be read to its end before new files are opened.
    pub catch_up: Option<CatchUp>,
}

/// Runs until shutdown, until the file was rotated or deleted and read to its end, or until it
/// gives its descriptor back to a file that waits for one.
pub async fn follow(
    opened: Opened,
    shared: Arc<FlowShared>,
    mut changed: watch::Receiver<()>,
) -> Finished {
    let Opened {
        file,
        path,
        id,
        start,
        replaced: replaced_known,
        permit,
        mut catch_up,
    } = opened;
    let file = Arc::new(file);
    let fingerprint_bytes = shared.settings.fingerprint_bytes;
    let opening = {
        let file = Arc::clone(&file);
        let start = start.clone();
        blocking(move || -> std::io::Result<Opening> {
            let size = file.metadata()?.len();
            let mut replaced = false;
            let offset = match start {
                Start::At(ref known) => {
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
            let (head, lead) = identity::head_and_lead(&file, size, fingerprint_bytes)?;
            Ok(Opening {
                offset,
                size,
                head,
                lead,
                replaced,
            })
        })
    };
    let Opening {
        offset,
        size,
        head,
        lead,
        replaced,
    } = match opening.await.and_then(|result| result) {
        Ok(found) => found,
        Err(error) => {
            warn!(file = %path.display(), %error, "Cannot read file; will try again at the next scan.");
            let resume_at = match start {
                Start::At(known) => Some(known),
                Start::Beginning | Start::End => None,
            };
            return Finished {
                id,
                resume_at,
                parked: false,
            };
        }
    };
    if let Start::At(known) = &start {
        if replaced {
            warn!(file = %path.display(), checkpoint = known.offset, "Another file now has this file's device and inode (its first bytes differ); reading it from the start.");
        } else if known.offset > size {
            warn!(file = %path.display(), checkpoint = known.offset, size, "File is shorter than its checkpoint; it was truncated, reading it from the start.");
        }
    }
    // The file this checkpoint belonged to is gone (truncated, or its inode reused): a copy
    // of it made before, if one turns up, continues where it was read to, even after a restart.
    let earlier = match &start {
        Start::At(known) if replaced || known.offset > size => {
            shared.note_truncation(
                id,
                FirstBytes::head_only(known.head),
                known.offset,
                &path,
                None,
            );
            Some(known)
        }
        // Discovery noted this one when it found it.
        _ => replaced_known.as_ref(),
    };
    // A copy of a file truncated while this process read it: reading starts where that file
    // was read to.
    let original = match &start {
        Start::At(known) if !replaced && known.offset <= size => known.original,
        _ => None,
    };
    let truncated_before = earlier.and_then(|known| {
        known.head.map(|head| CopyFrom {
            head,
            offset: known.offset,
        })
    });
    if start == Start::Beginning || start == Start::End || replaced {
        info!(file = %path.display(), offset, size, "Following file.");
    } else {
        tracing::debug!(file = %path.display(), offset, size, "Following file.");
    }

    let settings = &shared.settings;
    let assembler = settings
        .assemble
        .is_needed()
        .then(|| Assembler::new(settings.assemble.clone(), offset));
    let unread = Unread::new(&shared.metrics, &path, offset);
    let mut tailer = Tailer {
        source: new_source(&shared, id, head, &path),
        lead,
        file,
        path,
        framer: Framer::new(settings.frame.clone(), offset),
        assembler,
        unread,
        oversize_logged: None,
        footer_logged: false,
        idle_polls: 0,
        trouble: None,
        shared: Arc::clone(&shared),
        _permit: permit,
    };
    shared.note_reached(id, FirstBytes::read(head, lead), offset, &tailer.path);
    if !tailer.announce(offset, truncated_before, original).await {
        return tailer.finish(false);
    }
    tailer.unread.set_size(size);
    // The file's size at the last look: reads ask for what is there and no more, so an idle
    // file costs no buffer.
    let mut size_seen = size;
    let mut rotated_since: Option<Instant> = None;
    let opened_at = Instant::now();
    let mut last_data = Instant::now();
    let mut at_end_since: Option<Instant> = None;

    loop {
        if tailer.shared.cancel.is_cancelled() {
            return tailer.finish(false);
        }
        let offset = tailer.framer.read_offset();
        if size_seen > offset {
            let want =
                usize::try_from(size_seen - offset).map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
            match tailer.read_chunk(want).await {
                Ok(ReadOutcome::Read(0)) => size_seen = offset,
                Ok(ReadOutcome::Read(_)) => {
                    tailer.idle_polls = 0;
                    rotated_since = None;
                    at_end_since = None;
                    last_data = Instant::now();
                }
                Ok(ReadOutcome::Stopped) => return tailer.finish(false),
                Ok(ReadOutcome::Replaced) => {
                    let size = tailer.stat().await.map_or(0, |state| state.size);
                    size_seen = size;
                    tailer
                        .restart_after_truncation(
                            size,
                            last_data.elapsed(),
                            "its start changed during a read",
                        )
                        .await;
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
            tailer
                .restart_after_truncation(state.size, last_data.elapsed(), "it shrank")
                .await;
            continue;
        }
        tailer.unread.set_size(state.size);
        if state.size > offset {
            // New bytes after a pause: make sure they still follow what was read (a
            // copytruncate can regrow the file past the old offset between two looks).
            match tailer.check_head(state.size).await {
                HeadCheck::Same => continue,
                HeadCheck::Changed => {
                    tailer
                        .restart_after_truncation(
                            state.size,
                            last_data.elapsed(),
                            "its first bytes changed",
                        )
                        .await;
                    continue;
                }
                HeadCheck::Stopped => return tailer.finish(false),
            }
        }
        // At the end of what is written.
        tailer.shared.note_reached(
            id,
            tailer.first_bytes(),
            tailer.framer.read_offset(),
            &tailer.path,
        );
        if let Some(guard) = catch_up.take() {
            drop(guard); // Read to its end once: new files may be opened now.
        }
        let idle = last_data.elapsed();
        let settings = &tailer.shared.settings;
        if tailer.framer.has_partial() && idle >= settings.partial_line_timeout {
            let flushed = tailer.framer.flush_partial(&tailer.source);
            if !tailer.send_framed(flushed).await {
                return tailer.finish(false);
            }
        }
        if tailer
            .assembler
            .as_ref()
            .is_some_and(|a| a.pending_start().is_some())
            && idle >= tailer.shared.settings.multiline_flush_timeout
            && !tailer.framer.has_partial()
            && !tailer.flush_assembler().await
        {
            return tailer.finish(false);
        }
        if state.path_id == Some(id) {
            rotated_since = None;
            let since = *at_end_since.get_or_insert_with(Instant::now);
            if tailer.should_park(since, opened_at) {
                tracing::debug!(file = %tailer.path.display(), offset = tailer.resume_offset(), "Closing an idle file so that a waiting file can be opened; it is opened again at its next turn.");
                return tailer.finish(true);
            }
        } else {
            let since = *rotated_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= tailer.shared.settings.release_after {
                // Its last line goes now, newline or not: nothing more will be written to it.
                let flushed = tailer.framer.flush_partial(&tailer.source);
                if !tailer.send_framed(flushed).await || !tailer.flush_assembler().await {
                    return tailer.finish(false);
                }
                let end = tailer.framer.framed_offset();
                if state.links == 0 {
                    info!(file = %tailer.path.display(), end, "File was deleted and is read to its end; releasing it.");
                    let closed = Ack::Closed {
                        file: Arc::clone(&tailer.source),
                        end,
                    };
                    let _ = tailer.shared.acks.send(closed).await;
                    return Finished {
                        id,
                        resume_at: None,
                        parked: false,
                    };
                }
                info!(file = %tailer.path.display(), end, "File was rotated away and is read to its end; releasing it.");
                return tailer.finish(false);
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
    /// Nothing was used: the file no longer starts as it did (truncated and written again).
    Replaced,
}

enum HeadCheck {
    Same,
    /// The file no longer starts with the bytes it started with: it was truncated and rewritten.
    Changed,
    Stopped,
}

struct Tailer {
    source: Arc<SourceFile>,
    /// The file's first bytes, kept to recognise a copy of it while the copy is written.
    lead: Lead,
    file: Arc<File>,
    path: PathBuf,
    framer: Framer,
    assembler: Option<Assembler>,
    unread: Unread,
    /// When over-long records were last logged, and how many since.
    oversize_logged: Option<(Instant, u64)>,
    footer_logged: bool,
    /// Polls in a row that found nothing new.
    idle_polls: u32,
    /// When a read or stat error was last logged, and how many were held back since.
    trouble: Option<(Instant, u64)>,
    shared: Arc<FlowShared>,
    /// This tailer's share of the open-file budget, returned when it ends.
    _permit: FilePermit,
}

struct FileState {
    size: u64,
    links: u64,
    /// Identity of the file now at our path, if any.
    path_id: Option<FileId>,
}

impl Tailer {
    /// Tells the checkpoint store where reading starts (and, for a file found truncated, what
    /// it was before, so a copy of it can continue even after a restart); false if shutting
    /// down.
    async fn announce(
        &self,
        offset: u64,
        truncated_before: Option<CopyFrom>,
        original: Option<Original>,
    ) -> bool {
        let ack = match truncated_before {
            Some(before) => Ack::Restarted {
                file: Arc::clone(&self.source),
                offset,
                before: Some(before),
            },
            None => Ack::Opened {
                file: Arc::clone(&self.source),
                offset,
                original,
            },
        };
        self.shared.acks.send(ack).await.is_ok()
    }

    /// Reads up to `want` bytes and hands on the records they complete.
    async fn read_chunk(&mut self, want: usize) -> std::io::Result<ReadOutcome> {
        // Held until the records read are handed on, so waiting files hold no buffer.
        let open_files = Arc::clone(&self.shared.open_files);
        let _turn = open_files.read_turn().await;
        let offset = self.framer.read_offset();
        let (buffer, filled) = self.framer.take_buffer(want);
        let file = Arc::clone(&self.file);
        let head = self.source.head;
        let joined = blocking(move || {
            let mut buffer = buffer;
            let result = identity::read_at(&file, &mut buffer[filled..], offset);
            // Still the same file after the read? If it was truncated and written again
            // before the read, the bytes read belong to its new content, not to this reading.
            let same = match (&result, head) {
                (Ok(read), Some(head)) if *read > 0 => identity::starts_with(&file, head),
                _ => Ok(true),
            };
            (buffer, result, same)
        })
        .await;
        // Losing the buffer (the read task died) only means its partial line is read again.
        let (buffer, filled, result, same) = match joined {
            Ok((buffer, result, same)) => (buffer, filled, result, same),
            Err(error) => (bytes::BytesMut::new(), 0, Err(error), Ok(true)),
        };
        if let Ok(false) = same {
            let _ = self.framer.frame(buffer, filled, &self.source);
            return Ok(ReadOutcome::Replaced);
        }
        let read = *result.as_ref().unwrap_or(&0);
        if offset == 0 && read > 0 && self.source.head.is_none() {
            // The file was empty when last looked at: the bytes just read are its start, and
            // what identifies it from now on, even if it is truncated before the next look.
            let fingerprint_bytes = self.shared.settings.fingerprint_bytes;
            let first = &buffer[filled..filled + read.min(fingerprint_bytes)];
            if let Some(head) = identity::head_of_bytes(first) {
                let lead = Lead::of(first);
                if !self.learn_head(head, lead, offset).await {
                    return Ok(ReadOutcome::Stopped);
                }
            }
        }
        let framed = self.framer.frame(buffer, filled + read, &self.source);
        result?;
        if !self.send_framed(framed).await {
            return Ok(ReadOutcome::Stopped);
        }
        Ok(ReadOutcome::Read(read))
    }

    /// Passes framed lines through the assembler (if any) and hands the records on; false if
    /// shutdown began first.
    async fn send_framed(&mut self, framed: Framed) -> bool {
        self.count_oversize(framed.oversize);
        let lines = match self.assembler.as_mut() {
            None => framed.lines,
            Some(assembler) => {
                let assembled = assembler.process(framed.lines);
                if assembled.footer_found && !self.footer_logged {
                    self.footer_logged = true;
                    info!(file = %self.path.display(), "Found the file's footer line; nothing after it in this file is sent.");
                }
                self.count_oversize(assembled.oversize);
                assembled.lines
            }
        };
        for block in lines {
            if !self.send(block).await {
                // Nothing after an unsent block may go either: the gap it leaves would make the
                // next start send the later records twice.
                return false;
            }
        }
        true
    }

    /// Sends the assembler's open record; false if shutdown began first.
    async fn flush_assembler(&mut self) -> bool {
        let Some(assembler) = self.assembler.as_mut() else {
            return true;
        };
        for block in assembler.flush().lines {
            if !self.send(block).await {
                return false;
            }
        }
        true
    }

    /// Counts over-long records; logs them at most once per file per `LOG_EVERY`.
    fn count_oversize(&mut self, count: u64) {
        if count == 0 {
            return;
        }
        FlowMetrics::add(&self.shared.metrics.records_truncated, count);
        let now = Instant::now();
        match &mut self.oversize_logged {
            Some((last, held_back)) if now.duration_since(*last) < LOG_EVERY => {
                *held_back += count;
            }
            logged => {
                let earlier = logged.map_or(0, |(_, held_back)| held_back);
                let action = match self.shared.settings.frame.oversize {
                    Oversize::Truncate => "cut to fit; the rest of each is not sent",
                    Oversize::Split => "sent in pieces of at most the limit",
                    Oversize::Skip => "not sent",
                };
                warn!(
                    file = %self.path.display(),
                    max_record_bytes = self.shared.settings.frame.max_line_bytes,
                    records = count + earlier,
                    action,
                    "Records longer than the record limit (logged at most once a minute per file)."
                );
                *logged = Some((now, 0));
            }
        }
    }

    /// Hands `lines` on; false if shutdown began first (they are read again after the restart).
    async fn send(&mut self, mut lines: Lines) -> bool {
        let (records, record_bytes) = lines
            .spans
            .iter()
            .filter(|span| span.data_end > span.data_start)
            .fold((0usize, 0usize), |(count, bytes), span| {
                (
                    count + 1,
                    bytes + (span.data_end - span.data_start) as usize,
                )
            });
        let bytes = lines
            .spans
            .last()
            .map_or(0, |span| span.file_end - lines.file_start);
        let cost = record_bytes + records * RECORD_OVERHEAD;
        if cost > 0 && lines.reserved.bytes() < cost {
            // With the budget spent, reading stops here until delivered records free room.
            let budget = Arc::clone(&self.shared.budget);
            match self.wait_looking(budget.reserve(cost)).await {
                Some(reserved) => lines.reserved = reserved,
                None => return false,
            }
        }
        let records = records as u64;
        let handed_on = lines.file_start + bytes;
        // With the pipeline full (its batches wait for the destination), reading stops here.
        let queue = self.shared.lines.clone();
        match self.wait_looking(queue.send(lines)).await {
            Some(Ok(())) => {
                FlowMetrics::add(&self.shared.metrics.records_read, records);
                FlowMetrics::add(&self.shared.metrics.bytes_read, bytes);
                self.unread.handed_on(handed_on);
                true
            }
            Some(Err(_)) | None => false,
        }
    }

    /// Waits for `until` to be ready; `None` if shutdown began first. Reading waits so for room
    /// in the memory budget or in the pipeline, for as long as the destination is slow or down:
    /// meanwhile the file is looked at every poll interval, so its unread bytes stay current
    /// while it grows.
    async fn wait_looking<T>(&mut self, until: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(until);
        let poll_interval = self.shared.settings.poll_interval;
        let mut look = tokio::time::interval_at(Instant::now() + poll_interval, poll_interval);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                done = &mut until => return Some(done),
                _ = self.shared.cancel.cancelled() => return None,
                _ = look.tick() => {
                    // Waiting for the stat keeps the place in the queue being waited for.
                    if let Ok(size) = self.size().await {
                        self.unread.set_size(size);
                    }
                }
            }
        }
    }

    /// Logs a read or stat error at most once per `LOG_EVERY`, counting the repeats.
    fn report_trouble(&mut self, what: &'static str, error: &std::io::Error) {
        let now = Instant::now();
        match &mut self.trouble {
            Some((last, held_back)) if now.duration_since(*last) < LOG_EVERY => *held_back += 1,
            trouble => {
                let repeats = trouble.map_or(0, |(_, held_back)| held_back);
                warn!(file = %self.path.display(), %error, repeats, "{what}");
                *trouble = Some((now, 0));
            }
        }
    }

    /// The file's size now, read on a blocking thread.
    async fn size(&self) -> std::io::Result<u64> {
        let file = Arc::clone(&self.file);
        blocking(move || file.metadata().map(|metadata| metadata.len())).await?
    }

    async fn stat(&self) -> std::io::Result<FileState> {
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        blocking(move || {
            let metadata = file.metadata()?;
            let path_id = std::fs::metadata(&path)
                .and_then(|m| identity::id_at(&path, &m))
                .ok();
            Ok(FileState {
                size: metadata.len(),
                links: identity::link_count(&metadata),
                path_id,
            })
        })
        .await?
    }

    /// Checks the file still starts as it did; learns a longer head once the file grew enough.
    async fn check_head(&mut self, size: u64) -> HeadCheck {
        let head = self.source.head;
        let fingerprint_bytes = self.shared.settings.fingerprint_bytes;
        let known_len = head.map_or(0, |head| u64::from(head.len));
        let wants_longer = known_len < fingerprint_bytes as u64 && size > known_len;
        let file = Arc::clone(&self.file);
        let checked = blocking(move || -> std::io::Result<(bool, Option<(Head, Lead)>)> {
            if let Some(head) = head {
                if !identity::starts_with(&file, head)? {
                    return Ok((false, None));
                }
            }
            let longer = if wants_longer {
                match identity::head_and_lead(&file, size, fingerprint_bytes)? {
                    (Some(head), lead) => Some((head, lead)),
                    (None, _) => None,
                }
            } else {
                None
            };
            Ok((true, longer))
        })
        .await
        .and_then(|result| result);
        match checked {
            // An unreadable start is retried by the read that follows.
            Err(_) => HeadCheck::Same,
            Ok((false, _)) => HeadCheck::Changed,
            Ok((true, None)) => HeadCheck::Same,
            Ok((true, Some((longer, lead)))) => {
                tracing::debug!(file = %self.path.display(), ?longer, size, "Head upgraded.");
                if self
                    .learn_head(longer, lead, self.framer.read_offset())
                    .await
                {
                    HeadCheck::Same
                } else {
                    HeadCheck::Stopped
                }
            }
        }
    }

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
            .note_reached(self.source.id, self.first_bytes(), offset, &self.path);
        self.shared
            .acks
            .send(Ack::Identified { file: identified })
            .await
            .is_ok()
    }

    async fn restart_after_truncation(
        &mut self,
        size: u64,
        idle: std::time::Duration,
        how: &'static str,
    ) {
        // An unfinished record read before the truncation is sent only if it would have been
        // sent by now anyway; otherwise it is left to the copy (if one is followed), which
        // continues from the record's start, so no record is sent in two pieces.
        let settings = &self.shared.settings;
        if self.framer.has_partial() && idle >= settings.partial_line_timeout {
            let flushed = self.framer.flush_partial(&self.source);
            let _ = self.send_framed(flushed).await;
        }
        if !self.framer.has_partial() && idle >= self.shared.settings.multiline_flush_timeout {
            let _ = self.flush_assembler().await;
        }
        let reached = self.resume_offset();
        warn!(
            file = %self.path.display(),
            size,
            offset = reached,
            how,
            "File was truncated; reading it again from the start."
        );
        let before = self.source.head;
        self.shared.note_truncation(
            self.source.id,
            self.first_bytes(),
            reached,
            &self.path,
            Some(self.source.key),
        );
        let file = Arc::clone(&self.file);
        let fingerprint_bytes = self.shared.settings.fingerprint_bytes;
        let (head, lead) =
            blocking(move || identity::head_and_lead(&file, size, fingerprint_bytes))
                .await
                .and_then(|result| result)
                .unwrap_or((None, Lead::of(&[])));
        self.lead = lead;
        self.source = new_source(&self.shared, self.source.id, head, &self.path);
        // Its new content is what a copy made from now on starts with.
        self.shared
            .note_reached(self.source.id, FirstBytes::read(head, lead), 0, &self.path);
        self.framer.restart_at(0);
        if let Some(assembler) = self.assembler.as_mut() {
            assembler.restart_at(0);
        }
        self.unread.restart(size);
        let restarted = Ack::Restarted {
            file: Arc::clone(&self.source),
            offset: 0,
            before: before.map(|head| CopyFrom {
                head,
                offset: reached,
            }),
        };
        let _ = self.shared.acks.send(restarted).await;
    }

    /// Whether to give the descriptor back: only for a file still under its name (so it can be
    /// opened again), idle at its end, while another file waits for a descriptor.
    fn should_park(&self, at_end_since: Instant, opened_at: Instant) -> bool {
        let settings = &self.shared.settings;
        self.shared.open_files.others_waiting()
            && !self.framer.has_partial()
            && self
                .assembler
                .as_ref()
                .is_none_or(|a| a.pending_start().is_none())
            && (at_end_since.elapsed() >= settings.park_after
                || opened_at.elapsed() >= settings.park_after * 4)
    }

    /// Waits for a file event, or the next poll. A file that stays idle is polled less and less
    /// often, down to once per `IDLE_POLL_MAX`, when file events can wake it sooner.
    async fn wait(&mut self, changed: &mut watch::Receiver<()>) {
        let poll_interval = self.shared.settings.poll_interval;
        let longest = if self.shared.events.load(Ordering::Relaxed) {
            // Many idle files together poll no more than `IDLE_POLLS_PER_SECOND` times.
            let open_now = self.shared.open_files.open_now() as f64;
            let spread = std::time::Duration::from_secs_f64(open_now / IDLE_POLLS_PER_SECOND);
            IDLE_POLL_MAX.max(spread).max(poll_interval)
        } else {
            poll_interval
        };
        let delay = poll_interval
            .saturating_mul(1 << self.idle_polls.min(16))
            .min(longest);
        self.idle_polls = self.idle_polls.saturating_add(1);
        let poll = tokio::time::sleep(delay);
        tokio::select! {
            _ = self.shared.cancel.cancelled() => {}
            _ = poll => {}
            result = changed.changed() => {
                self.idle_polls = 0;
                if result.is_err() {
                    // The watcher is gone; polling alone keeps the file followed.
                    tokio::time::sleep(poll_interval).await;
                }
            }
        }
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
            }),
            parked,
        }
    }
}

/// What opening a file found.
struct Opening {
    offset: u64,
    size: u64,
    head: Option<Head>,
    lead: Lead,
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

/// This file's share of the flow's unread-bytes gauge, taken back when the tailer ends, and
/// its own gauge in the flow's list of followed files.
///
/// Unread is what of the file was not handed on yet: the bytes after the last record counted
/// in `bytes_read`, whether still on disk or already in this tailer's buffers (a chunk waiting
/// for the memory budget, a line without its newline yet, an open multi-line record). So
/// unread + read − delivered counts every byte of the file once, wherever it is.
struct Unread {
    metrics: Arc<FlowMetrics>,
    file: FileGauge,
    /// The file's size at the last look.
    size: u64,
    /// Where the records handed on end.
    handed_on: u64,
    /// This file's share of the flow's gauge now.
    current: i64,
}

impl Unread {
    fn new(metrics: &Arc<FlowMetrics>, path: &std::path::Path, offset: u64) -> Self {
        Self {
            metrics: Arc::clone(metrics),
            file: metrics.follow_file(path),
            size: offset,
            handed_on: offset,
            current: 0,
        }
    }

    /// The file was found `size` bytes long.
    fn set_size(&mut self, size: u64) {
        self.size = size;
        self.update();
    }

    /// Records up to `offset` were handed on (and counted in `bytes_read`).
    fn handed_on(&mut self, offset: u64) {
        self.handed_on = self.handed_on.max(offset);
        self.update();
    }

    /// The file was truncated to `size` and is read again from its start.
    fn restart(&mut self, size: u64) {
        self.handed_on = 0;
        self.set_size(size);
    }

    fn update(&mut self) {
        let unread = self.size.saturating_sub(self.handed_on);
        let unread = i64::try_from(unread).unwrap_or(i64::MAX);
        self.metrics
            .bytes_unread
            .fetch_add(unread - self.current, Ordering::Relaxed);
        self.file.set(unread);
        self.current = unread;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges(metrics: &FlowMetrics) -> (i64, Vec<u64>) {
        let files = metrics
            .files_unread()
            .into_iter()
            .map(|(_, unread)| unread)
            .collect();
        (metrics.bytes_unread.load(Ordering::Relaxed), files)
    }

    #[test]
    fn unread_is_what_was_not_handed_on_wherever_it_is() {
        let metrics = Arc::new(FlowMetrics::default());
        let mut unread = Unread::new(&metrics, std::path::Path::new("/a.log"), 100);
        unread.set_size(1000);
        assert_eq!(gauges(&metrics), (900, vec![900]));
        // Records to 400 handed on; the bytes read after them wait in the tailer: still unread.
        unread.handed_on(400);
        assert_eq!(gauges(&metrics), (600, vec![600]));
        // The file grew while reading waited.
        unread.set_size(5000);
        assert_eq!(gauges(&metrics), (4600, vec![4600]));
        // Truncated and read again from its start.
        unread.restart(300);
        assert_eq!(gauges(&metrics), (300, vec![300]));
        unread.handed_on(300);
        assert_eq!(gauges(&metrics), (0, vec![0]));
        unread.set_size(350);
        drop(unread);
        assert_eq!(
            gauges(&metrics),
            (0, vec![]),
            "given back when the tailer ends"
        );
    }
}
