//! One journal entry, as `journalctl --output=json` prints it, turned into a record: a JSON
//! object of the entry's fields, its time as RFC 3339, values that are bytes rather than text
//! as base64, and its largest fields cut when the whole would not fit in a record.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value};

/// The field journalctl names the entry's position by.
const CURSOR: &str = "__CURSOR";
/// The field of the entry's wall-clock time, in microseconds since the Unix epoch.
const REALTIME: &str = "__REALTIME_TIMESTAMP";
/// Names the fields whose values were bytes, now base64. Journal field names are upper case,
/// so no field of the entry's own can take this name.
pub const BASE64_FIELDS: &str = "base64_fields";
/// Names the fields cut to fit the record limit.
pub const TRUNCATED_FIELDS: &str = "truncated_fields";

/// An entry as a record.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry is in the journal, to resume after it.
    pub cursor: String,
    /// The record: one JSON object, without a line ending.
    pub json: Vec<u8>,
    /// Whether fields were cut to fit.
    pub truncated: bool,
}

/// Why a line from journalctl is not an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    #[error("it has no __CURSOR field")]
    NoCursor,
    #[error("even with its fields cut it is longer than the record limit ({max_bytes} bytes)")]
    TooLong { max_bytes: usize, cursor: String },
}

/// The entry printed as `line`, as a record of at most `max_bytes` bytes with its line ending.
pub fn entry_of(line: &[u8], max_bytes: usize) -> Result<Entry, EntryError> {
    let fields: Map<String, Value> = match serde_json::from_slice(line) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(EntryError::NotAnObject("another JSON value".into())),
        Err(error) => return Err(EntryError::NotAnObject(error.to_string())),
    };
    let cursor = match fields.get(CURSOR) {
        Some(Value::String(cursor)) => cursor.clone(),
        _ => return Err(EntryError::NoCursor),
    };
    let mut record = Map::with_capacity(fields.len() + 1);
    let mut base64_fields = Vec::new();
    for (name, value) in fields {
        let value = if name == REALTIME {
            rfc3339(&value).unwrap_or(value)
        } else {
            let (value, was_bytes) = text_or_base64(value);
            if was_bytes {
                base64_fields.push(Value::String(name.clone()));
            }
            value
        };
        record.insert(name, value);
    }
    if !base64_fields.is_empty() {
        record.insert(BASE64_FIELDS.into(), Value::Array(base64_fields));
    }
    let json = serialized(&record);
    if json.len() < max_bytes {
        return Ok(Entry {
            cursor,
            json,
            truncated: false,
        });
    }
    let Some(json) = cut_to_fit(record, max_bytes) else {
        return Err(EntryError::TooLong { max_bytes, cursor });
    };
    Ok(Entry {
        cursor,
        json,
        truncated: true,
    })
}

fn serialized(record: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// `__REALTIME_TIMESTAMP` (microseconds, as a string) as RFC 3339 in UTC.
fn rfc3339(value: &Value) -> Option<Value> {
    let micros: u64 = value.as_str()?.parse().ok()?;
    let time = SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(micros))?;
    Some(Value::String(
        humantime::format_rfc3339_micros(time).to_string(),
    ))
}

/// A field's value as the record holds it: text as it is; bytes (journalctl prints a value
/// that is not UTF-8, or holds control characters, as an array of numbers) as base64; a field
/// the entry has more than once as an array of those. Returns whether any of it was bytes.
fn text_or_base64(value: Value) -> (Value, bool) {
    match value {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(Value::as_u64)
                .map(|byte| u8::try_from(byte).unwrap_or(u8::MAX))
                .collect();
            (
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
                true,
            )
        }
        Value::Array(items) => {
            let mut any_bytes = false;
            let items = items
                .into_iter()
                .map(|item| {
                    let (item, was_bytes) = text_or_base64(item);
                    any_bytes |= was_bytes;
                    item
                })
                .collect();
            (Value::Array(items), any_bytes)
        }
        other => (other, false),
    }
}

/// Cuts the record's largest text values, largest first, until it fits in `max_bytes` with
/// its line ending, naming them in [`TRUNCATED_FIELDS`]; `None` if cutting cannot make it fit. A base64 value is cut to a whole
/// number of 4-character groups, so that it still decodes. The cursor and the time are never
/// cut.
fn cut_to_fit(mut record: Map<String, Value>, max_bytes: usize) -> Option<Vec<u8>> {
    record.insert(TRUNCATED_FIELDS.into(), Value::Array(Vec::new()));
    let base64_fields: Vec<String> = record
        .get(BASE64_FIELDS)
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    loop {
        let json = serialized(&record);
        if json.len() < max_bytes {
            return Some(json);
        }
        let excess = json.len() + 1 - max_bytes;
        let largest = record
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), CURSOR | REALTIME))
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.len())))
            .filter(|(_, len)| *len > 0)
            .max_by_key(|(_, len)| *len);
        let (name, len) = largest?;
        let mut keep = len.saturating_sub(excess);
        if base64_fields.contains(&name) {
            keep -= keep % 4;
        }
        if let Some(Value::String(text)) = record.get_mut(&name) {
            while !text.is_char_boundary(keep) {
                keep -= 1;
            }
            text.truncate(keep);
        }
        if let Some(Value::Array(cut)) = record.get_mut(TRUNCATED_FIELDS) {
            let name = Value::String(name);
            if !cut.contains(&name) {
                cut.push(name);
            }
        }
    }
}

#[cfg(test)]
mod tests;
