//! One journal entry, as `journalctl --output=export` prints it (see `export`), turned into a
//! record: a JSON object of the entry's fields, its time as RFC 3339, values that are bytes
//! rather than text as base64, and its largest fields cut when the whole would not fit in a
//! record.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::export::Field;

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

/// Why an entry cannot be a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("it has no __CURSOR field")]
    NoCursor,
    #[error("even with its fields cut it is longer than the record limit ({max_bytes} bytes)")]
    TooLong { max_bytes: usize, cursor: String },
}

/// The entry of `fields` as a record of at most `max_bytes` bytes with its line ending.
pub fn entry_of(fields: Vec<Field>, max_bytes: usize) -> Result<Entry, EntryError> {
    let cursor = fields
        .iter()
        .find(|(name, _)| &**name == CURSOR)
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .ok_or(EntryError::NoCursor)?
        .to_owned();
    let mut record = Map::with_capacity(fields.len() + 1);
    let mut base64_fields: Vec<Value> = Vec::new();
    for (name, value) in fields {
        let time = if &*name == REALTIME {
            rfc3339(&value)
        } else {
            None
        };
        let value = match time {
            Some(time) => time,
            None => {
                let (value, was_bytes) = text_or_base64(value);
                if was_bytes && !base64_fields.iter().any(|named| named == &*name) {
                    base64_fields.push(Value::String(name.to_string()));
                }
                value
            }
        };
        insert(&mut record, name.into_string(), value);
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

/// Adds a field; a field the entry holds more than once becomes a list of its values.
fn insert(record: &mut Map<String, Value>, name: String, value: Value) {
    match record.get_mut(&name) {
        None => {
            record.insert(name, value);
        }
        Some(Value::Array(values)) => values.push(value),
        Some(first) => {
            let first = std::mem::take(first);
            record.insert(name, Value::Array(vec![first, value]));
        }
    }
}

fn serialized(record: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// `__REALTIME_TIMESTAMP` (microseconds, as text) as RFC 3339 in UTC.
fn rfc3339(value: &[u8]) -> Option<Value> {
    let micros: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    let time = SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(micros))?;
    Some(Value::String(
        humantime::format_rfc3339_micros(time).to_string(),
    ))
}

/// A value as the record holds it: text when it is UTF-8 without control characters other
/// than line breaks and tabs; otherwise base64. Returns whether it was bytes.
fn text_or_base64(value: Vec<u8>) -> (Value, bool) {
    match String::from_utf8(value) {
        Ok(text) if !text.chars().any(is_binary_char) => (Value::String(text), false),
        Ok(text) => (base64(text.as_bytes()), true),
        Err(error) => (base64(error.as_bytes()), true),
    }
}

fn is_binary_char(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
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
