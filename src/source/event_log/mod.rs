//! The Windows Event Log as a source: `windows_event_log: { file: PATH }` ships the events of
//! an archived or exported `.evtx` file once, each as a JSON object record (see `render`);
//! `windows_event_log: { channel, query }` follows a live channel on Windows (see `live`).
//!
//! An event's position is its record id: the checkpoint of the file (known by its identity and
//! first bytes, as any file) is one past the last record id acknowledged, and a restart sends
//! only events from there. Record ids take the place of byte offsets all the way through, so
//! the flow's `bytes_*` counters count record ids, one per event.

#[cfg(windows)]
mod api;
mod live;
mod reader;
mod render;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::identity;
use super::outlet::Outlet;
use super::KnownOffset;
use crate::config::{FlowConfig, InitialPosition};
use crate::log_limit::LogLimiter;
use crate::metrics::FlowMetrics;
use crate::record::{FileId, LineSpan, Lines, SourceFile};
use reader::Read;

pub(super) use live::EventLogChannel;

/// Skipped events and over-long events are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Blocks of events waiting between the reader and the pipeline.
const READ_AHEAD_BLOCKS: usize = 2;

/// What one flow shipping an `.evtx` file needs.
pub(super) struct EventLogFile {
    pub path: PathBuf,
    pub checkpoints: HashMap<FileId, KnownOffset>,
    pub outlet: Outlet,
}

/// Why a file cannot be shipped.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("cannot open it: {0}")]
    Io(#[from] std::io::Error),
}

impl EventLogFile {
    /// Ships the file's events from its checkpoint (or its start), then keeps the checkpoint
    /// alive until `cancel` fires.
    pub(super) async fn run(self) {
        let flow = self.outlet.flow.name.clone();
        let source = match self.identify().await {
            Ok(source) => source,
            Err(failure) => {
                error!(flow, file = %self.path.display(), %failure, "Cannot read the event log file; nothing of it is sent.");
                self.outlet.cancel.cancelled().await;
                return;
            }
        };
        if !self.outlet.seen(&source).await {
            return;
        }
        let known = self
            .checkpoints
            .get(&source.id)
            .filter(|known| known.head.is_none() || known.head == source.head)
            .map(|known| known.offset);
        let shipped = match (known, self.outlet.flow.initial_position) {
            (Some(position), _) => self.ship(&source, Some(position)).await,
            (None, InitialPosition::StartOfFile) => self.ship(&source, None).await,
            (None, InitialPosition::EndOfFile) => self.skip_all(&source).await,
        };
        if shipped {
            self.outlet.keep_alive(&source).await;
        }
    }

    /// The file as a source of records: its identity and first bytes.
    async fn identify(&self) -> Result<Arc<SourceFile>, OpenError> {
        let path = self.path.clone();
        let fingerprint = self.outlet.flow.fingerprint_bytes as u64;
        let flow: Arc<str> = Arc::from(self.outlet.flow.name.as_str());
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let file = std::fs::File::open(&path)?;
            let id = identity::id_of(&file)?;
            let size = file.metadata()?.len();
            let start = identity::read_start(&file, size.min(fingerprint))?;
            Ok((id, identity::head_of_bytes(&start)))
        })
        .await
        .map_err(|joined| std::io::Error::other(joined.to_string()))??;
        let (id, head) = opened;
        Ok(Arc::new(SourceFile {
            key: super::tailer::next_file_key(),
            flow,
            id,
            head,
            path: self.path.clone(),
        }))
    }

    /// Sends every event from record id `from` on (from the first event, when `None`); false if
    /// shutdown began first.
    async fn ship(&self, source: &Arc<SourceFile>, from: Option<u64>) -> bool {
        let outlet = &self.outlet;
        if let Some(from) = from {
            if !outlet.announce(source, from).await {
                return false;
            }
        }
        let flow = outlet.flow.name.as_str();
        info!(flow, file = %self.path.display(), from_record_id = from.unwrap_or(0), "Shipping the event log file.");
        let mut events = start_reader(&self.path, from.unwrap_or(0));
        let mut sending = Sending::new(Origin::File(self.path.clone()), from, &outlet.flow);
        let mut skipped_log = LogLimiter::new(LOG_EVERY);
        let mut damaged_chunks = 0u64;
        loop {
            let read = tokio::select! {
                _ = outlet.cancel.cancelled() => return false,
                read = events.recv() => read,
            };
            match read {
                Some(Read::Events(block)) => {
                    if sending.position.is_none() {
                        // The first event read: the file's position starts at it.
                        let first = block.first().map_or(0, |event| event.record_id);
                        sending.position = Some(first);
                        if !outlet.announce(source, first).await {
                            return false;
                        }
                    }
                    let Some(lines) = sending.lines(source, block, &outlet.metrics, flow) else {
                        continue;
                    };
                    if !outlet.send(lines).await {
                        return false;
                    }
                }
                Some(Read::EventSkipped { error }) => {
                    if let Some(earlier) = skipped_log.allow() {
                        warn!(flow, file = %self.path.display(), %error, earlier, "An event of the event log file cannot be read; it is not sent (logged at most once a minute).");
                    }
                }
                Some(Read::Damaged {
                    chunk,
                    offset,
                    error,
                }) => {
                    damaged_chunks += 1;
                    if damaged_chunks == 1 {
                        error!(flow, file = %self.path.display(), chunk, offset, %error, next_record_id = sending.position, "The event log file is damaged here: the events of this chunk cannot be read; reading goes on after it (further damaged chunks are counted in the line that ends the file).");
                    }
                }
                Some(Read::Unreadable(error)) => {
                    error!(flow, file = %self.path.display(), %error, "Cannot read the file as a Windows event log; nothing of it is sent.");
                    return true;
                }
                Some(Read::Done { .. }) => {
                    if sending.position.is_none() && !outlet.announce(source, 0).await {
                        return false;
                    }
                    info!(flow, file = %self.path.display(), next_record_id = sending.position.unwrap_or(0), damaged_chunks, "Every event of the event log file has been read.");
                    return true;
                }
                None => {
                    error!(flow, file = %self.path.display(), "Reading the event log file stopped before its end; the events read were sent, the rest are read again at the next start.");
                    return true;
                }
            }
        }
    }

    /// `initial_position: end_of_file` on a file with no checkpoint: every event present now
    /// counts as sent.
    async fn skip_all(&self, source: &Arc<SourceFile>) -> bool {
        let outlet = &self.outlet;
        let mut events = start_reader(&self.path, u64::MAX);
        let last = loop {
            let read = tokio::select! {
                _ = outlet.cancel.cancelled() => return false,
                read = events.recv() => read,
            };
            match read {
                Some(Read::Done { last_record_id }) => break last_record_id,
                Some(Read::Unreadable(error)) => {
                    error!(flow = %outlet.flow.name, file = %self.path.display(), %error, "Cannot read the file as a Windows event log.");
                    return true;
                }
                Some(_) => {}
                None => return true,
            }
        };
        let position = last.map_or(0, |last| last.saturating_add(1));
        info!(flow = %outlet.flow.name, file = %self.path.display(), next_record_id = position, "initial_position is end_of_file: the events in the file are not sent.");
        outlet.announce(source, position).await
    }
}

/// Starts reading `path` on a blocking thread, from record id `from`.
fn start_reader(path: &Path, from: u64) -> mpsc::Receiver<Read> {
    let (sender, receiver) = mpsc::channel(READ_AHEAD_BLOCKS);
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || reader::read_file(path, from, sender));
    receiver
}

/// Where events are read from, as their log lines name it.
enum Origin {
    File(PathBuf),
    Channel(String),
}

impl Origin {
    fn file(&self) -> Option<tracing::field::DisplayValue<std::path::Display<'_>>> {
        match self {
            Origin::File(path) => Some(tracing::field::display(path.display())),
            Origin::Channel(_) => None,
        }
    }

    fn channel(&self) -> Option<&str> {
        match self {
            Origin::File(_) => None,
            Origin::Channel(channel) => Some(channel),
        }
    }
}

/// Turns blocks of events into lines, in record id order.
struct Sending {
    origin: Origin,
    /// The next record id to send: every event below it was handed on (or left out). `None`
    /// until the first event of a file read from its start.
    position: Option<u64>,
    max_bytes: usize,
    oversize_log: LogLimiter,
    out_of_order_log: LogLimiter,
}

impl Sending {
    fn new(origin: Origin, position: Option<u64>, flow: &FlowConfig) -> Sending {
        Sending {
            origin,
            position,
            max_bytes: flow.max_line_bytes(),
            oversize_log: LogLimiter::new(LOG_EVERY),
            out_of_order_log: LogLimiter::new(LOG_EVERY),
        }
    }

    /// The events of `block` after `position`, as lines; `None` if there are none.
    fn lines(
        &mut self,
        source: &Arc<SourceFile>,
        block: Vec<reader::Event>,
        metrics: &FlowMetrics,
        flow: &str,
    ) -> Option<Lines> {
        let file_start = self.position.unwrap_or(0);
        let mut position = file_start;
        let mut data = BytesMut::with_capacity(block.iter().map(|e| e.json.len() + 1).sum());
        let mut spans = Vec::with_capacity(block.len());
        let mut oversize = 0u64;
        let mut out_of_order = 0u64;
        for event in block {
            // An event whose record id is not past those handed on cannot be given a position
            // of its own; it is told, not sent.
            if event.record_id < position {
                out_of_order += 1;
                continue;
            }
            let data_start = u32::try_from(data.len()).unwrap_or(u32::MAX);
            if event.json.len() + 1 > self.max_bytes {
                oversize += 1;
            } else {
                data.put_slice(&event.json);
                data.put_u8(b'\n');
            }
            position = event.record_id.saturating_add(1);
            spans.push(LineSpan {
                data_start,
                data_end: u32::try_from(data.len()).unwrap_or(u32::MAX),
                file_end: position,
            });
        }
        self.position = Some(position);
        if oversize > 0 {
            FlowMetrics::add(&metrics.records_truncated, oversize);
            if let Some(earlier) = self.oversize_log.allow_counting(oversize) {
                warn!(
                    flow,
                    file = self.origin.file(),
                    channel = self.origin.channel(),
                    max_record_bytes = self.max_bytes,
                    events = oversize + earlier,
                    "Events longer than the record limit are not sent (logged at most once a minute)."
                );
            }
        }
        if out_of_order > 0 {
            if let Some(earlier) = self.out_of_order_log.allow_counting(out_of_order) {
                warn!(
                    flow,
                    file = self.origin.file(),
                    channel = self.origin.channel(),
                    events = out_of_order + earlier,
                    next_record_id = position,
                    "Events whose record ids are not past those already sent (a log written out of order, or damaged) are not sent (logged at most once a minute)."
                );
            }
        }
        (!spans.is_empty()).then(|| Lines {
            file: Arc::clone(source),
            file_start,
            data: Bytes::from(data),
            spans,
            reserved: crate::limits::Reservation::none(),
        })
    }
}
