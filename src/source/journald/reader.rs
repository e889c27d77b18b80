//! Reads one run of journalctl's output on a task of its own: entries in the export format
//! (see `export`), each made into a record (see `entry`), gathered into blocks with their
//! positions and handed over through a bounded channel, so that journalctl is read only as fast
//! as the blocks are taken.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, BufReader};
use tokio::sync::mpsc;
use tracing::warn;

use super::entry::{entry_of, EntryError};
use super::export::{next_entry, ExportError, Field, Limits, Next};
use crate::limits::Reservation;
use crate::log_limit::LogLimiter;
use crate::metrics::FlowMetrics;
use crate::record::{LineSpan, Lines, SourceFile};

/// journalctl's output is read this much at a time.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// Entries handed over at a time, at most.
const BLOCK_ENTRIES: usize = 512;
/// Bytes of records handed over at a time, about.
const BLOCK_BYTES: usize = 512 * 1024;
/// The most bytes of fields kept of one entry: a larger one (journald takes entries of up to
/// hundreds of MiB) is read past, not held in memory, with a warning. Of each value, at most
/// the record limit is kept.
const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;
/// After an entry this large, the line buffer is given back.
const KEEP_LINE_CAPACITY: usize = 1024 * 1024;
/// Cut, dropped and unreadable entries are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the reader needs besides the output.
pub struct ReadSettings {
    pub flow: Arc<str>,
    /// The record limit, with the record's line ending.
    pub max_record_bytes: usize,
    pub metrics: Arc<FlowMetrics>,
    /// journalctl was started at this entry (`--cursor`), which was handed on already: if it
    /// comes first, it is left out.
    pub resumed_at: Option<String>,
}

/// Reads `output` until it ends or nobody takes the blocks; the first entry read is at
/// `position`. An error says why the output could not be read.
pub async fn read<R: AsyncRead + Unpin>(
    output: R,
    position: u64,
    settings: ReadSettings,
    blocks: mpsc::Sender<Block>,
) -> Result<(), ExportError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, output);
    let mut logs = Logs::default();
    let mut block = Block::new(position);
    let mut fields = Vec::new();
    let mut line = Vec::new();
    let limits = Limits {
        value_bytes: settings.max_record_bytes,
        entry_bytes: MAX_ENTRY_BYTES,
    };
    let mut first = true;
    loop {
        let next = next_entry(&mut reader, &mut fields, &mut line, limits).await;
        if line.capacity() > KEEP_LINE_CAPACITY {
            line = Vec::new();
        }
        let resumed_entry =
            std::mem::take(&mut first) && is_at(&fields, settings.resumed_at.as_deref());
        match next {
            Ok(Next::Entry) if resumed_entry => {}
            Ok(Next::Entry) => block.add(std::mem::take(&mut fields), &settings, &mut logs),
            Ok(Next::TooLong) => {
                FlowMetrics::add(&settings.metrics.records_truncated, 1);
                if let Some(earlier) = logs.dropped.allow() {
                    warn!(flow = %settings.flow, max_entry_bytes = MAX_ENTRY_BYTES, earlier, "journalctl printed an entry too long to read; it is not sent (logged at most once a minute).");
                }
            }
            Ok(Next::End) | Err(_) => {
                if !block.is_empty() {
                    let _ = blocks.send(block).await;
                }
                return next.map(|_| ());
            }
        }
        // Handed over when full, or when journalctl has printed nothing more for now.
        if block.is_full() || (reader.buffer().is_empty() && !block.is_empty()) {
            let next_block = Block::new(block.position);
            if blocks
                .send(std::mem::replace(&mut block, next_block))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    }
}

/// Whether `fields` are those of the entry named `cursor`.
fn is_at(fields: &[Field], cursor: Option<&str>) -> bool {
    cursor.is_some_and(|cursor| {
        fields
            .iter()
            .any(|field| &*field.name == "__CURSOR" && field.value == cursor.as_bytes())
    })
}

/// Rate limits for the warnings of one run of journalctl.
struct Logs {
    cut: LogLimiter,
    dropped: LogLimiter,
    unreadable: LogLimiter,
}

impl Default for Logs {
    fn default() -> Self {
        Self {
            cut: LogLimiter::new(LOG_EVERY),
            dropped: LogLimiter::new(LOG_EVERY),
            unreadable: LogLimiter::new(LOG_EVERY),
        }
    }
}

/// Entries gathered to be handed on together, each at a position of its own.
#[derive(Debug)]
pub struct Block {
    /// Where the block starts.
    start: u64,
    /// The position after the block's last entry.
    pub position: u64,
    data: BytesMut,
    spans: Vec<LineSpan>,
    /// Entries sent as records (the others are too long to send).
    pub records: usize,
    /// The cursor of the block's last entry.
    pub last_cursor: Option<String>,
}

impl Block {
    fn new(position: u64) -> Self {
        Self {
            start: position,
            position,
            data: BytesMut::new(),
            spans: Vec::new(),
            records: 0,
            last_cursor: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn is_full(&self) -> bool {
        self.spans.len() >= BLOCK_ENTRIES || self.data.len() >= BLOCK_BYTES
    }

    /// Entries in the block.
    #[cfg(test)]
    pub fn entries(&self) -> u64 {
        self.position - self.start
    }

    /// Adds an entry: as a record, or, too long even cut, as a position only (not sent). An
    /// entry without a cursor cannot be resumed after; it is told and left out.
    fn add(&mut self, fields: Vec<Field>, settings: &ReadSettings, logs: &mut Logs) {
        let flow = &*settings.flow;
        let data_start = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        match entry_of(fields, settings.max_record_bytes) {
            Ok(entry) => {
                if entry.truncated {
                    FlowMetrics::add(&settings.metrics.records_truncated, 1);
                    if let Some(earlier) = logs.cut.allow() {
                        warn!(flow, max_record_bytes = settings.max_record_bytes, earlier, cursor = %entry.cursor, "A journal entry longer than the record limit is sent with its largest fields cut, named in truncated_fields (logged at most once a minute).");
                    }
                }
                self.data.reserve(entry.json.len() + 1);
                self.data.put_slice(&entry.json);
                self.data.put_u8(b'\n');
                self.records += 1;
                self.last_cursor = Some(entry.cursor);
            }
            Err(EntryError::TooLong { cursor, .. }) => {
                FlowMetrics::add(&settings.metrics.records_truncated, 1);
                if let Some(earlier) = logs.dropped.allow() {
                    warn!(flow, max_record_bytes = settings.max_record_bytes, earlier, %cursor, "A journal entry with too many fields to fit in a record even cut is not sent (logged at most once a minute).");
                }
                self.last_cursor = Some(cursor);
            }
            Err(error) => {
                if let Some(earlier) = logs.unreadable.allow() {
                    warn!(flow, %error, earlier, "An entry journalctl printed cannot be sent (logged at most once a minute).");
                }
                return;
            }
        }
        self.position += 1;
        self.spans.push(LineSpan {
            data_start,
            data_end: u32::try_from(self.data.len()).unwrap_or(u32::MAX),
            file_end: self.position,
        });
    }

    /// The block as lines of `file`, holding `reserved` of the memory budget.
    pub fn into_lines(self, file: &Arc<SourceFile>, reserved: Reservation) -> Lines {
        Lines {
            file: Arc::clone(file),
            file_start: self.start,
            data: Bytes::from(self.data),
            spans: self.spans,
            reserved,
        }
    }
}

#[cfg(test)]
mod tests;
