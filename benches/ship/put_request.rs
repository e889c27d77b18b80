//! Reads the entries of a `PutRecords` or `PutRecordBatch` request body without building JSON
//! or CBOR values: almost every byte of a body is record data, which only needs to be found.
//! JSON 1.1 bodies carry it as base64 text; CBOR 1.1 bodies as byte strings (see [`cbor`]).

use std::borrow::Cow;

use memchr::memmem;

/// One entry of the request's `Records` array, as slices of the body where it can be.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub data: Data<'a>,
    /// `PartitionKey` (Kinesis only).
    pub partition_key: Option<Text<'a>>,
    /// `ExplicitHashKey` (Kinesis only, optional).
    pub explicit_hash_key: Option<Text<'a>>,
}

/// A record's `Data` as the body carries it.
#[derive(Clone, Debug)]
pub enum Data<'a> {
    /// JSON: base64 text.
    Base64(&'a [u8]),
    /// CBOR: the bytes themselves (joined, when the body sent them in chunks).
    Bytes(Cow<'a, [u8]>),
}

impl Data<'_> {
    /// Bytes of the data once decoded.
    pub fn decoded_len(&self) -> u64 {
        match self {
            Data::Base64(encoded) => {
                let padding = encoded
                    .iter()
                    .rev()
                    .take(2)
                    .take_while(|&&byte| byte == b'=')
                    .count();
                (encoded.len() / 4 * 3).saturating_sub(padding) as u64
            }
            Data::Bytes(bytes) => bytes.len() as u64,
        }
    }
}

/// A string member of a record.
#[derive(Clone, Debug)]
pub enum Text<'a> {
    Json(JsonString<'a>),
    Cbor(Cow<'a, str>),
}

impl<'a> Text<'a> {
    pub fn text(&self) -> Cow<'a, str> {
        match self {
            Text::Json(json) => json.text(),
            Text::Cbor(text) => text.clone(),
        }
    }

    /// Bytes of the value once unescaped.
    pub fn len(&self) -> usize {
        match self {
            Text::Json(json) => json.len(),
            Text::Cbor(text) => text.len(),
        }
    }
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

/// The entries of a JSON body's `Records` array, in order.
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
                    b"Data" => data = Some(Data::Base64(value.raw())),
                    b"PartitionKey" => partition_key = Some(Text::Json(value)),
                    b"ExplicitHashKey" => explicit_hash_key = Some(Text::Json(value)),
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

/// AWS CBOR 1.1 bodies: a map whose `Records` member is an array of maps with `Data` (a byte
/// string), `PartitionKey` and `ExplicitHashKey` (text strings). Items of definite and
/// indefinite length are read alike; every other member is skipped unread.
pub mod cbor {
    use std::borrow::Cow;

    use super::{Data, Entry, Text, ENTRIES_CAPACITY};

    /// Nesting deeper than this in a skipped member is refused rather than followed.
    const MAX_DEPTH: usize = 32;
    const BREAK: u8 = 0xff;

    /// The entries of a CBOR body's `Records` array, in order.
    pub fn entries(body: &[u8]) -> Result<Vec<Entry<'_>>, String> {
        let mut cursor = Cursor { bytes: body, at: 0 };
        let mut entries = Vec::new();
        let mut found = false;
        let members = cursor.map_head("the request")?;
        let mut index = 0;
        while cursor.has_member(members, index)? {
            index += 1;
            if cursor.text()? == "Records" {
                found = true;
                entries = cursor.records()?;
            } else {
                cursor.skip(0)?;
            }
        }
        if !found {
            return Err("the request has no Records array".to_owned());
        }
        Ok(entries)
    }

    /// A count of members or items, or `None` for an indefinite length (ended by a break).
    type Length = Option<u64>;

    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn error(&self, what: &str) -> String {
            format!("{what} at byte {} of the CBOR request", self.at)
        }

        fn byte(&mut self) -> Result<u8, String> {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| self.error("the body ends early"))?;
            self.at += 1;
            Ok(byte)
        }

        fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| self.at.checked_add(len))
                .filter(|&end| end <= self.bytes.len())
                .ok_or_else(|| self.error("an item runs past the end"))?;
            let taken = &self.bytes[self.at..end];
            self.at = end;
            Ok(taken)
        }

        /// An item's major type and argument (`None`: indefinite length).
        fn head(&mut self) -> Result<(u8, Length), String> {
            let initial = self.byte()?;
            let (major, info) = (initial >> 5, initial & 0x1f);
            let argument = match info {
                0..=23 => Some(u64::from(info)),
                24 => Some(u64::from(self.byte()?)),
                25..=27 => {
                    let bytes = self.take(1 << (info - 24))?;
                    Some(
                        bytes
                            .iter()
                            .fold(0, |value, &byte| value << 8 | u64::from(byte)),
                    )
                }
                31 if matches!(major, 2..=5) => None,
                // A lone break, or a reserved value.
                _ => return Err(self.error("an invalid CBOR item head")),
            };
            Ok((major, argument))
        }

        fn map_head(&mut self, what: &str) -> Result<Length, String> {
            match self.head()? {
                (5, length) => Ok(length),
                _ => Err(self.error(&format!("{what} is not a CBOR map"))),
            }
        }

        /// Whether item `index` of a map or array of `length` follows (consuming the break
        /// that ends an indefinite one).
        fn has_member(&mut self, length: Length, index: u64) -> Result<bool, String> {
            match length {
                Some(length) => Ok(index < length),
                None if self.bytes.get(self.at) == Some(&BREAK) => {
                    self.at += 1;
                    Ok(false)
                }
                None => Ok(true),
            }
        }

        /// A byte (major 2) or text (major 3) string's bytes, borrowed unless sent in chunks.
        fn string(&mut self, major: u8) -> Result<Cow<'a, [u8]>, String> {
            match self.head()? {
                (found, Some(len)) if found == major => Ok(Cow::Borrowed(self.take(len)?)),
                (found, None) if found == major => {
                    let mut joined = Vec::new();
                    loop {
                        if self.bytes.get(self.at) == Some(&BREAK) {
                            self.at += 1;
                            return Ok(Cow::Owned(joined));
                        }
                        match self.head()? {
                            (chunk, Some(len)) if chunk == major => {
                                joined.extend_from_slice(self.take(len)?)
                            }
                            _ => return Err(self.error("a bad chunk in a string")),
                        }
                    }
                }
                _ => Err(self.error(if major == 2 {
                    "expected a byte string"
                } else {
                    "expected a text string"
                })),
            }
        }

        fn text(&mut self) -> Result<Cow<'a, str>, String> {
            match self.string(3)? {
                Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
                    .map(Cow::Borrowed)
                    .map_err(|_| self.error("a text string is not UTF-8")),
                Cow::Owned(bytes) => String::from_utf8(bytes)
                    .map(Cow::Owned)
                    .map_err(|_| self.error("a text string is not UTF-8")),
            }
        }

        fn records(&mut self) -> Result<Vec<Entry<'a>>, String> {
            let length = match self.head()? {
                (4, length) => length,
                _ => return Err(self.error("Records is not a CBOR array")),
            };
            let mut entries = Vec::with_capacity(ENTRIES_CAPACITY);
            let mut index = 0;
            while self.has_member(length, index)? {
                entries.push(self.record(index)?);
                index += 1;
            }
            Ok(entries)
        }

        fn record(&mut self, index: u64) -> Result<Entry<'a>, String> {
            let members = self.map_head(&format!("record {index}"))?;
            let (mut data, mut partition_key, mut explicit_hash_key) = (None, None, None);
            let mut member = 0;
            while self.has_member(members, member)? {
                member += 1;
                match &*self.text()? {
                    "Data" => data = Some(Data::Bytes(self.string(2)?)),
                    "PartitionKey" => partition_key = Some(Text::Cbor(self.text()?)),
                    "ExplicitHashKey" => explicit_hash_key = Some(Text::Cbor(self.text()?)),
                    _ => self.skip(0)?,
                }
            }
            Ok(Entry {
                data: data.ok_or_else(|| format!("record {index} has no Data"))?,
                partition_key,
                explicit_hash_key,
            })
        }

        /// Passes over one item of any kind.
        fn skip(&mut self, depth: usize) -> Result<(), String> {
            if depth > MAX_DEPTH {
                return Err(self.error("items nested too deep"));
            }
            let start = self.at;
            match self.head()? {
                (0 | 1 | 7, _) => Ok(()),
                (2 | 3, _) => {
                    self.at = start;
                    let major = self.bytes[start] >> 5;
                    self.string(major).map(drop)
                }
                (4 | 5, length) => {
                    let per_item = if self.bytes[start] >> 5 == 5 { 2 } else { 1 };
                    let mut index = 0;
                    while self.has_member(length.map(|len| len.saturating_mul(per_item)), index)? {
                        self.skip(depth + 1)?;
                        index += 1;
                    }
                    Ok(())
                }
                // A tag, then the item it tags.
                _ => self.skip(depth + 1),
            }
        }
    }
}
