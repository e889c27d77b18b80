//! Handing records on: framed lines go through the assembler (if any), wait for room in the
//! memory budget and in the pipeline, and are counted; over-long records are counted and
//! logged at most once a minute per file.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{blocking, Tailer};
use crate::config::Oversize;
use crate::limits::RECORD_OVERHEAD;
use crate::metrics::FlowMetrics;
use crate::record::Lines;
use crate::source::framer::Framed;

impl Tailer {
    /// Passes framed lines through the assembler (if any) and hands the records on; false if
    /// shutdown began first.
    pub(super) async fn send_framed(&mut self, framed: Framed) -> bool {
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
    pub(super) async fn flush_assembler(&mut self) -> bool {
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
        let Some(earlier) = self.oversize_log.allow_counting(count) else {
            return;
        };
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

    /// The file's size now, read on a blocking thread.
    async fn size(&self) -> std::io::Result<u64> {
        let file = Arc::clone(&self.file);
        blocking(move || file.metadata().map(|metadata| metadata.len())).await?
    }
}
