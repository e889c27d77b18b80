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
        .find(|field| &*field.name == CURSOR)
        .and_then(|field| std::str::from_utf8(&field.value).ok())
        .ok_or(EntryError::NoCursor)?
        .to_owned();
    let mut record = Map::with_capacity(fields.len() + 1);
    let mut base64_fields = Vec::new();
    let mut cut_fields = Vec::new();
    for (name, values, cut) in grouped(fields) {
        if cut {
            cut_fields.push(Value::String(name.to_string()));
        }
        let time = match values.as_slice() {
            [value] if &*name == REALTIME => rfc3339(value),
            _ => None,
        };
        let value = if let Some(time) = time {
            time
        } else if values.iter().all(|value| as_text(value).is_some()) {
            one_or_list(values, |value| {
                Value::String(String::from_utf8(value).unwrap_or_default())
            })
        } else {
            // Every value of a field that holds bytes is base64, so that a consumer can decode
            // each of them alike.
            base64_fields.push(Value::String(name.to_string()));
            one_or_list(values, |value| base64(&value))
        };
        record.insert(name.into_string(), value);
    }
    if !base64_fields.is_empty() {
        record.insert(BASE64_FIELDS.into(), Value::Array(base64_fields));
    }
    if !cut_fields.is_empty() {
        record.insert(TRUNCATED_FIELDS.into(), Value::Array(cut_fields));
    }
    let json = serialized(&record);
    if json.len() < max_bytes {
        let truncated = record.contains_key(TRUNCATED_FIELDS);
        return Ok(Entry {
            cursor,
            json,
            truncated,
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

/// The fields by name, in the order each name first comes: every value of a name the entry
/// holds more than once, and whether any of them was cut when read.
fn grouped(fields: Vec<Field>) -> Vec<(Box<str>, Vec<Vec<u8>>, bool)> {
    let mut groups: Vec<(Box<str>, Vec<Vec<u8>>, bool)> = Vec::with_capacity(fields.len());
    for field in fields {
        match groups.iter_mut().find(|(name, _, _)| *name == field.name) {
            Some((_, values, cut)) => {
                values.push(field.value);
                *cut |= field.cut;
            }
            None => groups.push((field.name, vec![field.value], field.cut)),
        }
    }
    groups
}

/// One value as itself, several as a list.
fn one_or_list(mut values: Vec<Vec<u8>>, each: impl Fn(Vec<u8>) -> Value) -> Value {
    if values.len() == 1 {
        each(values.remove(0))
    } else {
        Value::Array(values.into_iter().map(each).collect())
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

/// The value as text: UTF-8 without control characters other than line breaks and tabs.
fn as_text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value)
        .ok()
        .filter(|text| !text.chars().any(is_binary_char))
}

fn is_binary_char(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Cuts the record's longest text values until it fits in `max_bytes` with its line ending,
/// naming them in [`TRUNCATED_FIELDS`]; `None` if cutting cannot make it fit. The values are
/// cut to one length, the longest found that removes enough (so a long `MESSAGE` beside a long
/// `DUMP` keeps as much of each); a base64 value is cut to a whole number of 4-character
/// groups, so that it still decodes. The cursor and the time are never cut. Each round cuts
/// at least the excess, so a round or two do.
fn cut_to_fit(mut record: Map<String, Value>, max_bytes: usize) -> Option<Vec<u8>> {
    let base64_fields: Vec<String> = names_in(&record, BASE64_FIELDS);
    let mut cut_fields = names_in(&record, TRUNCATED_FIELDS);
    loop {
        record.insert(
            TRUNCATED_FIELDS.into(),
            Value::Array(cut_fields.iter().cloned().map(Value::String).collect()),
        );
        let json = serialized(&record);
        if json.len() < max_bytes {
            return Some(json);
        }
        let excess = json.len() + 1 - max_bytes;
        let mut lengths: Vec<(String, usize)> = record
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), CURSOR | REALTIME))
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.len())))
            .filter(|(_, len)| *len > 0)
            .collect();
        if lengths.is_empty() {
            return None;
        }
        lengths.sort_unstable_by_key(|(_, len)| std::cmp::Reverse(*len));
        let level = cut_level(&lengths, excess);
        for (name, len) in lengths.iter().filter(|(_, len)| *len > level) {
            let mut keep = level;
            if base64_fields.contains(name) {
                keep -= keep % 4;
            }
            if let Some(Value::String(text)) = record.get_mut(name) {
                while !text.is_char_boundary(keep) {
                    keep -= 1;
                }
                text.truncate(keep);
            }
            if *len > keep && !cut_fields.contains(name) {
                cut_fields.push(name.clone());
            }
        }
    }
}

/// The longest length such that cutting every value longer than it down to it removes at
/// least `excess` bytes; `lengths` longest first.
fn cut_level(lengths: &[(String, usize)], excess: usize) -> usize {
    let mut sum = 0usize;
    for (index, (_, len)) in lengths.iter().enumerate() {
        sum += len;
        let count = index + 1;
        let next = lengths.get(count).map_or(0, |(_, len)| *len);
        if sum - count * next >= excess {
            return (sum - excess) / count;
        }
    }
    0
}

/// The names a list member of `record` holds.
fn names_in(record: &Map<String, Value>, list: &str) -> Vec<String> {
    record
        .get(list)
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
