//! The follow loop: reads what the file holds past the last read, looks at the file when it
//! has read everything (truncated? grown? rotated away or deleted?), flushes records left
//! waiting too long, and decides when the tailer gives its descriptor back or releases the file.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{blocking, new_source, Finished, Tailer};
use crate::record::{Ack, CopyFrom, FileId, Head};
use crate::source::copies::FirstBytes;
use crate::source::identity::{self, Lead};

/// Bytes read from a file at a time.
const READ_CHUNK: usize = 256 * 1024;
/// The longest wait between two polls of an idle file when file events can wake it sooner.
const IDLE_POLL_MAX: Duration = Duration::from_secs(2);
/// With more files open than this many per `IDLE_POLL_MAX`, idle files are polled less often,
/// so that the polls of all idle files together cost little more than those of a few hundred.
const IDLE_POLLS_PER_SECOND: f64 = 100.0;

/// What the follow loop keeps from one turn to the next.
struct Progress {
    /// The file's size at the last look: reads ask for what is there and no more, so an idle
    /// file costs no buffer.
    size_seen: u64,
    /// Since when the file's path has named another file (or none).
    rotated_since: Option<Instant>,
    opened_at: Instant,
    last_data: Instant,
    /// Since when the file, still under its name, has been read to its end.
    at_end_since: Option<Instant>,
}

/// Why the follow loop ends.
enum Ending {
    /// Shutdown began, or records could not be handed on.
    Stopped,
    /// Idle, it gives its descriptor back to a file waiting for one.
    Parked,
    /// Rotated away and read to its end.
    Released,
    /// Deleted and read to its end: nothing to resume.
    Deleted,
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

struct FileState {
    size: u64,
    links: u64,
    /// Identity of the file now at our path, if any.
    path_id: Option<FileId>,
}

impl Tailer {
    /// Follows the file, `size` bytes long when opened, until shutdown, until it was rotated
    /// or deleted and read to its end, or until it gives its descriptor back.
    pub(super) async fn run(mut self, size: u64, mut changed: watch::Receiver<()>) -> Finished {
        let now = Instant::now();
        let mut progress = Progress {
            size_seen: size,
            rotated_since: None,
            opened_at: now,
            last_data: now,
            at_end_since: None,
        };
        loop {
            if self.shared.cancel.is_cancelled() {
                return self.finish(false);
            }
            let turn = if progress.size_seen > self.framer.read_offset() {
                self.read_available(&mut progress, &mut changed).await
            } else {
                self.look_at_file(&mut progress, &mut changed).await
            };
            if let ControlFlow::Break(ending) = turn {
                return self.end(ending);
            }
        }
    }

    fn end(self, ending: Ending) -> Finished {
        match ending {
            Ending::Stopped | Ending::Released => self.finish(false),
            Ending::Parked => self.finish(true),
            Ending::Deleted => Finished {
                id: self.source.id,
                resume_at: None,
                parked: false,
            },
        }
    }

    /// Reads the next chunk of what the file held at the last look.
    async fn read_available(
        &mut self,
        progress: &mut Progress,
        changed: &mut watch::Receiver<()>,
    ) -> ControlFlow<Ending> {
        let offset = self.framer.read_offset();
        let want = usize::try_from(progress.size_seen - offset)
            .map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
        let outcome = self.read_chunk(want).await;
        if outcome.is_ok() {
            self.unread.succeeded();
        }
        match outcome {
            Ok(ReadOutcome::Read(0)) => progress.size_seen = offset,
            Ok(ReadOutcome::Read(_)) => {
                self.idle_polls = 0;
                progress.rotated_since = None;
                progress.at_end_since = None;
                progress.last_data = Instant::now();
            }
            Ok(ReadOutcome::Stopped) => return ControlFlow::Break(Ending::Stopped),
            Ok(ReadOutcome::Replaced) => {
                let size = self.stat().await.map_or(0, |state| state.size);
                progress.size_seen = size;
                self.restart_after_truncation(
                    size,
                    progress.last_data.elapsed(),
                    "its start changed during a read",
                )
                .await;
            }
            Err(error) => {
                self.report_trouble("Cannot read file; will retry.", &error);
                self.wait(changed).await;
            }
        }
        ControlFlow::Continue(())
    }

    /// Everything seen was read: looks at the file again. Truncated, or grown with another
    /// start, it is read again from its start; grown, it is read on; else it waits at its end.
    async fn look_at_file(
        &mut self,
        progress: &mut Progress,
        changed: &mut watch::Receiver<()>,
    ) -> ControlFlow<Ending> {
        let offset = self.framer.read_offset();
        let state = match self.stat().await {
            Ok(state) => {
                self.unread.succeeded();
                state
            }
            Err(error) => {
                self.report_trouble("Cannot stat file; will retry.", &error);
                self.wait(changed).await;
                return ControlFlow::Continue(());
            }
        };
        progress.size_seen = state.size;
        if state.size < offset {
            self.restart_after_truncation(state.size, progress.last_data.elapsed(), "it shrank")
                .await;
            return ControlFlow::Continue(());
        }
        self.unread.set_size(state.size);
        if state.size > offset {
            // New bytes after a pause: make sure they still follow what was read (a
            // copytruncate can regrow the file past the old offset between two looks).
            return match self.check_head(state.size).await {
                HeadCheck::Same => ControlFlow::Continue(()),
                HeadCheck::Changed => {
                    self.restart_after_truncation(
                        state.size,
                        progress.last_data.elapsed(),
                        "its first bytes changed",
                    )
                    .await;
                    ControlFlow::Continue(())
                }
                HeadCheck::Stopped => ControlFlow::Break(Ending::Stopped),
            };
        }
        self.at_end(progress.last_data.elapsed()).await?;
        if state.path_id == Some(self.source.id) {
            progress.rotated_since = None;
            self.park_if_others_wait(progress)?;
        } else {
            self.release_if_rotated(progress, &state).await?;
        }
        self.wait(changed).await;
        ControlFlow::Continue(())
    }

    /// At the end of what is written, `idle` since the last data: notes how far the file was
    /// read, lets new files be opened if it was catching up, and sends records that waited
    /// too long for their end.
    async fn at_end(&mut self, idle: Duration) -> ControlFlow<Ending> {
        self.shared.copies.note_reached(
            self.source.id,
            self.first_bytes(),
            self.framer.read_offset(),
            &self.path,
        );
        if let Some(guard) = self.catch_up.take() {
            drop(guard); // Read to its end once: new files may be opened now.
        }
        let settings = &self.shared.settings;
        if self.framer.has_partial() && idle >= settings.partial_line_timeout {
            let flushed = self.framer.flush_partial(&self.source);
            if !self.send_framed(flushed).await {
                return ControlFlow::Break(Ending::Stopped);
            }
        }
        if self
            .assembler
            .as_ref()
            .is_some_and(|a| a.pending_start().is_some())
            && idle >= self.shared.settings.multiline_flush_timeout
            && !self.framer.has_partial()
            && !self.flush_assembler().await
        {
            return ControlFlow::Break(Ending::Stopped);
        }
        ControlFlow::Continue(())
    }

    /// Still under its name and idle at its end: gives the descriptor back if another file
    /// waits for one.
    fn park_if_others_wait(&self, progress: &mut Progress) -> ControlFlow<Ending> {
        let since = *progress.at_end_since.get_or_insert_with(Instant::now);
        if self.should_park(since, progress.opened_at) {
            tracing::debug!(file = %self.path.display(), offset = self.resume_offset(), "Closing an idle file so that a waiting file can be opened; it is opened again at its next turn.");
            return ControlFlow::Break(Ending::Parked);
        }
        ControlFlow::Continue(())
    }

    /// Rotated away or deleted: once idle at its end for `release_after`, sends its last
    /// records and releases it.
    async fn release_if_rotated(
        &mut self,
        progress: &mut Progress,
        state: &FileState,
    ) -> ControlFlow<Ending> {
        let since = *progress.rotated_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.shared.settings.release_after {
            return ControlFlow::Continue(());
        }
        // Its last line goes now, newline or not: nothing more will be written to it.
        let flushed = self.framer.flush_partial(&self.source);
        if !self.send_framed(flushed).await || !self.flush_assembler().await {
            return ControlFlow::Break(Ending::Stopped);
        }
        let end = self.framer.framed_offset();
        if state.links == 0 {
            info!(file = %self.path.display(), end, "File was deleted and is read to its end; releasing it.");
            let closed = Ack::Closed {
                file: Arc::clone(&self.source),
                end,
            };
            let _ = self.shared.acks.send(closed).await;
            return ControlFlow::Break(Ending::Deleted);
        }
        info!(file = %self.path.display(), end, "File was rotated away and is read to its end; releasing it.");
        ControlFlow::Break(Ending::Released)
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

    /// Logs a read or stat error at most once per `LOG_EVERY`, counting the repeats.
    fn report_trouble(&mut self, what: &'static str, error: &std::io::Error) {
        self.unread.failed();
        if let Some(repeats) = self.trouble_log.allow() {
            warn!(file = %self.path.display(), %error, repeats, "{what}");
        }
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

    async fn restart_after_truncation(&mut self, size: u64, idle: Duration, how: &'static str) {
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
        self.shared.copies.note_truncation(
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
        self.shared.copies.note_reached(
            self.source.id,
            FirstBytes::read(head, lead),
            0,
            &self.path,
        );
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
            let spread = Duration::from_secs_f64(open_now / IDLE_POLLS_PER_SECOND);
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
}
