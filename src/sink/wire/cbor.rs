//! AWS CBOR 1.1 (`application/x-amz-cbor-1.1`): the `PutRecords` body, with the data as raw
//! byte strings, and a skimming reader for answers.
//!
//! The body uses definite lengths only. The reader takes whatever a service or an emulator
//! may send: definite and indefinite lengths, every integer width, tags, floats and simple
//! values.

use std::borrow::Cow;

use super::{Entry, StreamRef};
use crate::sink::wire::response::ScanError;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_SIMPLE: u8 = 7;

/// The size of a head carrying `argument`.
fn head_len(argument: u64) -> usize {
    match argument {
        0..=23 => 1,
        24..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// Writes the head of an item of major type `major` with `argument` in its shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let initial = major << 5;
    match argument {
        0..=23 => out.push(initial | argument as u8),
        24..=0xFF => out.extend_from_slice(&[initial | 24, argument as u8]),
        0x100..=0xFFFF => {
            out.push(initial | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xFFFF_FFFF => {
            out.push(initial | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(initial | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

/// A length as a head argument (a `usize` always fits in 64 bits on the targets we build).
fn length(len: usize) -> u64 {
    len as u64
}

/// The size of a text or byte string of `len` bytes.
fn string_len(len: usize) -> usize {
    head_len(length(len)) + len
}

fn write_text(out: &mut Vec<u8>, text: &[u8]) {
    write_head(out, MAJOR_TEXT, length(text.len()));
    out.extend_from_slice(text);
}

/// A map of two members whose first is "Records".
const BODY_OPEN: &[u8] = b"\xA2\x67Records";
/// A record map of two members opening with the "Data" name.
const ENTRY_OPEN: &[u8] = b"\xA2\x64Data";
/// A record map of three members opening with the "Data" name.
const ENTRY_WITH_HASH_KEY_OPEN: &[u8] = b"\xA3\x64Data";
const HASH_KEY_NAME: &[u8] = b"\x6FExplicitHashKey";
const PARTITION_KEY_NAME: &[u8] = b"\x6CPartitionKey";
const STREAM_NAME_NAME: &[u8] = b"\x6AStreamName";
const STREAM_ARN_NAME: &[u8] = b"\x69StreamARN";

fn stream_member(stream: StreamRef<'_>) -> (&'static [u8], &[u8]) {
    match stream {
        StreamRef::Name(name) => (STREAM_NAME_NAME, name.as_bytes()),
        StreamRef::Arn(arn) => (STREAM_ARN_NAME, arn.as_bytes()),
    }
}

/// The exact size of the body [`put_records`] writes.
pub(crate) fn put_records_len(stream: StreamRef<'_>, entries: &[Entry<'_>]) -> usize {
    let (member, value) = stream_member(stream);
    let mut len =
        BODY_OPEN.len() + head_len(length(entries.len())) + member.len() + string_len(value.len());
    for entry in entries {
        len += ENTRY_OPEN.len() + string_len(entry.data.len());
        if let Some(key) = entry.explicit_hash_key {
            len += HASH_KEY_NAME.len() + key.with_text(|text| string_len(text.len()));
        }
        len += PARTITION_KEY_NAME.len() + string_len(entry.partition_key.len());
    }
    len
}

/// `{"Records": [{"Data": h'…', "ExplicitHashKey": "…", "PartitionKey": "…"}, …], "StreamName": "…"}`
pub(crate) fn put_records(stream: StreamRef<'_>, entries: &[Entry<'_>], out: &mut Vec<u8>) {
    out.clear();
    out.reserve_exact(put_records_len(stream, entries));
    out.extend_from_slice(BODY_OPEN);
    write_head(out, MAJOR_ARRAY, length(entries.len()));
    for entry in entries {
        if entry.explicit_hash_key.is_some() {
            out.extend_from_slice(ENTRY_WITH_HASH_KEY_OPEN);
        } else {
            out.extend_from_slice(ENTRY_OPEN);
        }
        write_head(out, MAJOR_BYTES, length(entry.data.len()));
        out.extend_from_slice(entry.data);
        if let Some(key) = entry.explicit_hash_key {
            out.extend_from_slice(HASH_KEY_NAME);
            key.with_text(|text| write_text(out, text));
        }
        out.extend_from_slice(PARTITION_KEY_NAME);
        write_text(out, entry.partition_key.as_bytes());
    }
    let (member, value) = stream_member(stream);
    out.extend_from_slice(member);
    write_text(out, value);
}

/// How deep an answer may nest before the reader gives up on it (real answers nest 3 deep).
const MAX_DEPTH: usize = 64;

/// The head of the next data item, tags already passed over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Head {
    Unsigned(u64),
    Negative(u64),
    /// A byte string of the given length, or `None` when indefinite.
    Bytes(Option<u64>),
    Text(Option<u64>),
    Array(Option<u64>),
    Map(Option<u64>),
    Bool(bool),
    /// Null or undefined.
    Null,
    Float(f64),
    /// Any other simple value.
    Simple(u8),
    /// The end of an indefinite-length item.
    Break,
}

/// A container being walked: how many items are left, or `None` when it ends with a break.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Items(Option<u64>);

/// A forward-only reader over a CBOR item.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    pub(crate) fn invalid_at(offset: usize, reason: &'static str) -> ScanError {
        ScanError::InvalidCbor { offset, reason }
    }

    fn invalid(&self, reason: &'static str) -> ScanError {
        Self::invalid_at(self.at, reason)
    }

    /// Checks that nothing follows.
    pub(crate) fn end(&self) -> Result<(), ScanError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.invalid("more bytes follow the answer"))
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ScanError> {
        let bytes = self.bytes;
        match bytes.get(self.at..).and_then(|rest| rest.get(..len)) {
            Some(taken) => {
                self.at += len;
                Ok(taken)
            }
            None => Err(self.invalid("the answer ends inside an item")),
        }
    }

    fn argument(&mut self, info: u8) -> Result<Option<u64>, ScanError> {
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes([self.take(1)?[0], self.take(1)?[0]])),
            26 => {
                let mut word = [0u8; 4];
                word.copy_from_slice(self.take(4)?);
                u64::from(u32::from_be_bytes(word))
            }
            27 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(self.take(8)?);
                u64::from_be_bytes(word)
            }
            31 => return Ok(None),
            _ => {
                self.at -= 1;
                return Err(self.invalid("reserved additional information in an item's head"));
            }
        }))
    }

    /// Reads the next head, passing over any tags.
    pub(crate) fn head(&mut self) -> Result<Head, ScanError> {
        loop {
            let initial = self.take(1)?[0];
            let major = initial >> 5;
            let info = initial & 0x1F;
            if major == MAJOR_SIMPLE {
                return self.simple(info);
            }
            let argument = self.argument(info)?;
            let definite = |reader: &Self| {
                argument.ok_or_else(|| {
                    Self::invalid_at(reader.at - 1, "this major type has no indefinite length")
                })
            };
            return Ok(match major {
                MAJOR_UNSIGNED => Head::Unsigned(definite(self)?),
                MAJOR_NEGATIVE => Head::Negative(definite(self)?),
                MAJOR_BYTES => Head::Bytes(argument),
                MAJOR_TEXT => Head::Text(argument),
                MAJOR_ARRAY => Head::Array(argument),
                MAJOR_MAP => Head::Map(argument),
                // MAJOR_TAG, the only one left: a tag only annotates the item after it.
                _ => {
                    definite(self)?;
                    continue;
                }
            });
        }
    }

    fn simple(&mut self, info: u8) -> Result<Head, ScanError> {
        Ok(match info {
            20 => Head::Bool(false),
            21 => Head::Bool(true),
            22 | 23 => Head::Null,
            0..=19 => Head::Simple(info),
            24 => {
                let value = self.take(1)?[0];
                if value < 32 {
                    return Err(self.invalid("a two-byte simple value below 32"));
                }
                Head::Simple(value)
            }
            25 => Head::Float(half_to_f64(u16::from_be_bytes([
                self.take(1)?[0],
                self.take(1)?[0],
            ]))),
            26 => {
                let mut word = [0u8; 4];
                word.copy_from_slice(self.take(4)?);
                Head::Float(f64::from(f32::from_be_bytes(word)))
            }
            27 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(self.take(8)?);
                Head::Float(f64::from_be_bytes(word))
            }
            31 => Head::Break,
            _ => {
                self.at -= 1;
                return Err(self.invalid("reserved additional information in an item's head"));
            }
        })
    }

    /// Starts walking a map or array of `len` entries (`None`: indefinite). `per_entry` is
    /// the least bytes an entry takes, to turn away absurd lengths at once.
    pub(crate) fn items(&self, len: Option<u64>, per_entry: u64) -> Result<Items, ScanError> {
        if let Some(len) = len {
            let left = length(self.bytes.len() - self.at);
            if len.saturating_mul(per_entry) > left {
                return Err(self.invalid("a container is longer than the answer"));
            }
        }
        Ok(Items(len))
    }

    /// Whether the container has another entry; consumes the break of an indefinite one.
    pub(crate) fn next(&mut self, items: &mut Items) -> Result<bool, ScanError> {
        match &mut items.0 {
            Some(0) => Ok(false),
            Some(left) => {
                *left -= 1;
                Ok(true)
            }
            None => match self.bytes.get(self.at) {
                Some(0xFF) => {
                    self.at += 1;
                    Ok(false)
                }
                Some(_) => Ok(true),
                None => Err(self.invalid("the answer ends inside a container")),
            },
        }
    }

    /// The contents of a text or byte string whose head was just read; borrowed unless it
    /// comes in chunks.
    pub(crate) fn string_body(
        &mut self,
        major: u8,
        len: Option<u64>,
    ) -> Result<Cow<'a, [u8]>, ScanError> {
        match len {
            Some(len) => {
                let len = usize::try_from(len)
                    .map_err(|_| self.invalid("a string is longer than the answer"))?;
                Ok(Cow::Borrowed(self.take(len)?))
            }
            None => {
                let mut joined = Vec::new();
                loop {
                    let chunk_at = self.at;
                    match self.head()? {
                        Head::Break => return Ok(Cow::Owned(joined)),
                        Head::Text(Some(len)) if major == MAJOR_TEXT => {
                            joined.extend_from_slice(&self.string_body(major, Some(len))?)
                        }
                        Head::Bytes(Some(len)) if major == MAJOR_BYTES => {
                            joined.extend_from_slice(&self.string_body(major, Some(len))?)
                        }
                        _ => {
                            return Err(Self::invalid_at(
                                chunk_at,
                                "a chunk of an indefinite-length string is not a definite string of its type",
                            ))
                        }
                    }
                }
            }
        }
    }

    /// Reads a text string if one is next: `Some(text)`, or `None` after passing over
    /// whatever other item was there.
    pub(crate) fn text_or_skip(&mut self) -> Result<Option<Cow<'a, [u8]>>, ScanError> {
        let head = self.head()?;
        match head {
            Head::Text(len) => Ok(Some(self.string_body(MAJOR_TEXT, len)?)),
            other => {
                self.skip_after(other, 0)?;
                Ok(None)
            }
        }
    }

    /// Passes over the next item.
    pub(crate) fn skip(&mut self) -> Result<(), ScanError> {
        let head = self.head()?;
        self.skip_after(head, 0)
    }

    /// Passes over the rest of an item whose head was just read.
    pub(crate) fn skip_after(&mut self, head: Head, depth: usize) -> Result<(), ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep { offset: self.at });
        }
        match head {
            Head::Unsigned(_)
            | Head::Negative(_)
            | Head::Bool(_)
            | Head::Null
            | Head::Float(_)
            | Head::Simple(_) => Ok(()),
            Head::Bytes(len) => self.string_body(MAJOR_BYTES, len).map(drop),
            Head::Text(len) => self.string_body(MAJOR_TEXT, len).map(drop),
            Head::Array(len) | Head::Map(len) => {
                let per_entry = if matches!(head, Head::Map(_)) { 2 } else { 1 };
                let mut items = self.items(len, per_entry)?;
                while self.next(&mut items)? {
                    for _ in 0..per_entry {
                        let inner = self.head()?;
                        if inner == Head::Break {
                            return Err(self.invalid("a break where an item should be"));
                        }
                        self.skip_after(inner, depth + 1)?;
                    }
                }
                Ok(())
            }
            Head::Break => Err(self.invalid("a break outside an indefinite-length item")),
        }
    }
}

/// An IEEE 754 half-precision float, widened.
fn half_to_f64(half: u16) -> f64 {
    let sign = if half & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((half >> 10) & 0x1F);
    let mantissa = f64::from(half & 0x3FF);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15),
    };
    sign * magnitude
}
