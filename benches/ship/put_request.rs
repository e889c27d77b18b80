//! Reads the entries of a `PutRecords` or `PutRecordBatch` request body without building JSON
//! values: almost every byte of a body is base64 record data, which only needs to be found.

use std::borrow::Cow;

use memchr::memmem;

/// One entry of the request's `Records` array, as slices of the body.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The `Data` value: base64 text.
    pub data: &'a [u8],
    /// `PartitionKey` (Kinesis only).
    pub partition_key: Option<JsonString<'a>>,
    /// `ExplicitHashKey` (Kinesis only, optional).
    pub explicit_hash_key: Option<JsonString<'a>>,
}

/// A JSON string value as it appears in the body.
#[derive(Clone, Copy, Debug)]
pub struct JsonString<'a> {
    /// With its quotes.
    quoted: &'a [u8],
    escaped: bool,
}

impl<'a> JsonString<'a> {
    /// Between the quotes, escapes and all.
    pub fn raw(&self) -> &'a [u8] {
        &self.quoted[1..self.quoted.len() - 1]
    }

    /// The value's text; the body's own bytes unless it holds escapes.
    pub fn text(&self) -> Cow<'a, str> {
        if !self.escaped {
            if let Ok(text) = std::str::from_utf8(self.raw()) {
                return Cow::Borrowed(text);
            }
        }
        Cow::Owned(serde_json::from_slice::<String>(self.quoted).unwrap_or_default())
    }

    /// Bytes of the value once unescaped.
    pub fn len(&self) -> usize {
        if self.escaped {
            self.text().len()
        } else {
            self.raw().len()
        }
    }
}

/// The entries of the body's `Records` array, in order.
pub fn entries(body: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let mut cursor = Cursor {
        bytes: body,
        at: records_array(body)?,
    };
    let mut entries = Vec::with_capacity(ENTRIES_CAPACITY);
    cursor.skip_whitespace();
    if cursor.peek() == Some(b']') {
        return Ok(entries);
    }
    loop {
        entries.push(cursor.entry(entries.len())?);
        cursor.skip_whitespace();
        match cursor.next() {
            Some(b',') => cursor.skip_whitespace(),
            Some(b']') => return Ok(entries),
            _ => return Err(cursor.unexpected("`,` or `]` after a record")),
        }
    }
}

/// Where the elements of the `"Records"` array start. A string value cannot pass for the key:
/// a value is never followed by `:`.
fn records_array(body: &[u8]) -> Result<usize, String> {
    for found in memmem::find_iter(body, b"\"Records\"") {
        let mut cursor = Cursor {
            bytes: body,
            at: found + b"\"Records\"".len(),
        };
        cursor.skip_whitespace();
        if cursor.next() != Some(b':') {
            continue;
        }
        cursor.skip_whitespace();
        if cursor.next() != Some(b'[') {
            return Err(cursor.unexpected("`[` after \"Records\":"));
        }
        return Ok(cursor.at);
    }
    Err("the request has no \"Records\" array".to_owned())
}

/// Entries room is made for at once: a full call's.
const ENTRIES_CAPACITY: usize = 500;

/// How long a string is expected to be, which decides how its end is looked for.
#[derive(Clone, Copy)]
enum Length {
    /// Field names and keys: byte by byte.
    Short,
    /// Record data (base64): with `memchr`, which is far faster once past its setup.
    Long,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.at += 1;
        byte
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        format!("expected {wanted} at byte {} of the request", self.at)
    }

    /// One `{"Key":"value",...}` object of string values.
    fn entry(&mut self, index: usize) -> Result<Entry<'a>, String> {
        if self.next() != Some(b'{') {
            return Err(self.unexpected("`{` to open a record"));
        }
        let (mut data, mut partition_key, mut explicit_hash_key) = (None, None, None);
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                let name = self
                    .string(Length::Short)
                    .ok_or_else(|| self.unexpected("a field name"))?;
                self.skip_whitespace();
                if self.next() != Some(b':') {
                    return Err(self.unexpected("`:` after a field name"));
                }
                self.skip_whitespace();
                let length = match name.raw() {
                    b"Data" => Length::Long,
                    _ => Length::Short,
                };
                let value = self
                    .string(length)
                    .ok_or_else(|| self.unexpected("a string value"))?;
                match name.raw() {
                    b"Data" => data = Some(value.raw()),
                    b"PartitionKey" => partition_key = Some(value),
                    b"ExplicitHashKey" => explicit_hash_key = Some(value),
                    _ => {}
                }
                self.skip_whitespace();
                match self.next() {
                    Some(b',') => self.skip_whitespace(),
                    Some(b'}') => break,
                    _ => return Err(self.unexpected("`,` or `}` in a record")),
                }
            }
        }
        let data = data.ok_or_else(|| format!("record {index} has no Data"))?;
        Ok(Entry {
            data,
            partition_key,
            explicit_hash_key,
        })
    }

    /// A string, found by its closing quote: only `"` and `\` matter inside one.
    #[inline]
    fn string(&mut self, length: Length) -> Option<JsonString<'a>> {
        let start = self.at;
        if self.next() != Some(b'"') {
            return None;
        }
        let mut escaped = false;
        loop {
            let rest = self.bytes.get(self.at..)?;
            let offset = match length {
                Length::Short => rest
                    .iter()
                    .position(|&byte| byte == b'"' || byte == b'\\')?,
                Length::Long => memchr::memchr2(b'"', b'\\', rest)?,
            };
            self.at += offset + 1;
            if rest[offset] == b'"' {
                return Some(JsonString {
                    quoted: &self.bytes[start..self.at],
                    escaped,
                });
            }
            // The escaped character (for \uXXXX, the `u`) is never a quote to stop at.
            escaped = true;
            self.at += 1;
        }
    }
}
