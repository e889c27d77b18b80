//! A JSON object written key by key, in order: what the converters produce.

use bytes::Bytes;

/// A field's value: text, or `null` for a missing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    Null,
}

/// `{"key":value,…}` built in the order fields are pushed.
#[derive(Debug, Default)]
pub struct Object {
    text: String,
}

impl Object {
    pub fn push(&mut self, key: &str, value: Value<'_>) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        push_string(&mut self.text, key);
        self.text.push(':');
        match value {
            Value::Text(text) => push_string(&mut self.text, text),
            Value::Null => self.text.push_str("null"),
        }
    }

    /// The members alone, without braces (to add to another object).
    pub fn into_members(self) -> String {
        self.text.get(1..).unwrap_or_default().to_owned()
    }

    /// The object as text.
    pub fn into_text(mut self) -> String {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        self.text
    }

    /// The object followed by `line_end`, as a record.
    pub fn into_record(mut self, line_end: &[u8]) -> Bytes {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        let mut bytes = self.text.into_bytes();
        bytes.extend_from_slice(line_end);
        Bytes::from(bytes)
    }
}

fn push_string(out: &mut String, text: &str) {
    out.push_str(&string(text));
}

/// `text` as a JSON string, quotes included.
pub fn string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `body`, a JSON object (surrounding spaces allowed), with `members` (`"k":v,…`) added as its
/// last keys and its own bytes otherwise untouched, then `line_end`; `None` if `body` is not a
/// JSON object.
pub fn add_members(body: &[u8], members: &str, line_end: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let value: &serde_json::value::RawValue = serde_json::from_str(text).ok()?;
    let text = value.get();
    if !text.starts_with('{') {
        return None;
    }
    let inner = text[1..text.len() - 1].trim();
    let mut out = Vec::with_capacity(inner.len() + members.len() + line_end.len() + 3);
    out.push(b'{');
    out.extend_from_slice(inner.as_bytes());
    if !inner.is_empty() && !members.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(members.as_bytes());
    out.push(b'}');
    out.extend_from_slice(line_end);
    Some(out)
}
