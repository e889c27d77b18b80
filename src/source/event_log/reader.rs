//! Reads the events of an `.evtx` file on a blocking thread, in record order, as records, and
//! hands them over in blocks through a bounded channel: reading goes only as fast as the
//! pipeline takes them.

use std::path::{Path, PathBuf};

use evtx::err::EvtxError;
use evtx::{EvtxParser, ParserSettings};
use tokio::sync::mpsc;

use super::render::{render, Rendered};

/// Events handed over at a time, at most.
const BLOCK_EVENTS: usize = 256;
/// Bytes of records handed over at a time, about.
const BLOCK_BYTES: usize = 512 * 1024;
/// Where chunk 0 starts: after the file header.
const FIRST_CHUNK_OFFSET: u64 = 4096;
const CHUNK_BYTES: u64 = 64 * 1024;

/// One event as a record: its JSON object, without a line ending.
#[derive(Debug)]
pub struct Event {
    pub record_id: u64,
    pub json: Vec<u8>,
}

/// What the reader hands over.
#[derive(Debug)]
pub enum Read {
    Events(Vec<Event>),
    /// The file is damaged at `chunk` (which starts at byte `offset`): its events cannot be
    /// read; reading goes on with the next chunk.
    Damaged {
        chunk: u64,
        offset: u64,
        error: String,
    },
    /// An event could not be read (the others are): its chunk and why.
    EventSkipped {
        error: String,
    },
    /// The file could not be opened as an event log.
    Unreadable(String),
    /// Every event was read; the highest record id seen, if any.
    Done {
        last_record_id: Option<u64>,
    },
}

/// Reads `path`, handing over events whose record id is at least `from` (all others only
/// counted), until the end or until `events` is closed.
pub fn read_file(path: PathBuf, from: u64, events: mpsc::Sender<Read>) {
    let mut parser = match open(&path) {
        Ok(parser) => parser,
        Err(error) => {
            let _ = events.blocking_send(Read::Unreadable(error.to_string()));
            return;
        }
    };
    let mut block = Vec::new();
    let mut block_bytes = 0;
    let mut last_record_id = None;
    for record in parser.records() {
        let record = match record {
            Ok(record) => record,
            Err(EvtxError::FailedToParseChunk { chunk_id, source }) => {
                if !flush(&events, &mut block, &mut block_bytes) {
                    return;
                }
                let damaged = Read::Damaged {
                    chunk: chunk_id,
                    offset: FIRST_CHUNK_OFFSET.saturating_add(chunk_id.saturating_mul(CHUNK_BYTES)),
                    error: source.to_string(),
                };
                if events.blocking_send(damaged).is_err() {
                    return;
                }
                continue;
            }
            Err(error) => {
                if !flush(&events, &mut block, &mut block_bytes)
                    || events
                        .blocking_send(Read::EventSkipped {
                            error: error.to_string(),
                        })
                        .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let record_id = record.event_record_id;
        last_record_id = last_record_id.max(Some(record_id));
        if record_id < from {
            continue;
        }
        let json = as_record(record_id, &record.data);
        block_bytes += json.len();
        block.push(Event { record_id, json });
        if (block.len() >= BLOCK_EVENTS || block_bytes >= BLOCK_BYTES)
            && !flush(&events, &mut block, &mut block_bytes)
        {
            return;
        }
    }
    if flush(&events, &mut block, &mut block_bytes) {
        let _ = events.blocking_send(Read::Done { last_record_id });
    }
}

fn open(path: &Path) -> Result<EvtxParser<std::fs::File>, EvtxError> {
    let settings = ParserSettings::new().num_threads(1);
    Ok(EvtxParser::from_path(path)?.with_configuration(settings))
}

/// The event's record: its rendering, or, for XML that cannot be rendered, the XML itself
/// beside the reason, so that nothing is lost.
pub fn as_record(record_id: u64, xml: &str) -> Vec<u8> {
    let record = match render(xml) {
        Ok(Rendered { record, .. }) => serde_json::Value::Object(record),
        Err(error) => serde_json::json!({
            "EventRecordID": record_id,
            "RenderError": error.to_string(),
            "Xml": xml,
        }),
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Hands over the block; false once nobody takes them.
fn flush(events: &mpsc::Sender<Read>, block: &mut Vec<Event>, bytes: &mut usize) -> bool {
    *bytes = 0;
    if block.is_empty() {
        return true;
    }
    events
        .blocking_send(Read::Events(std::mem::take(block)))
        .is_ok()
}
