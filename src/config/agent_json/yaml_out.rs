//! The YAML `kinship migrate` writes: lines at an indent, keys, comments, and scalars quoted so
//! YAML reads them back as the text they were.

use std::fmt::Write as _;

use serde_json::Value;

/// YAML text, one line at a time.
#[derive(Default)]
pub(super) struct Writer {
    text: String,
}

impl Writer {
    pub(super) fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.text, "{}{text}", " ".repeat(indent));
    }

    pub(super) fn key(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("{key}: {value}"));
    }

    pub(super) fn comment(&mut self, indent: usize, text: &str) {
        self.line(indent, &format!("# {text}"));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Adds the lines `other` holds, as they are.
    pub(super) fn append(&mut self, other: Writer) {
        self.text.push_str(&other.text);
    }

    pub(super) fn into_text(self) -> String {
        self.text
    }
}

/// `text` as a single-quoted YAML scalar.
pub(super) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `items` as a YAML flow list of single-quoted scalars.
pub(super) fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A string as a double-quoted YAML scalar, which takes JSON's escapes.
pub(super) fn json_quoted(text: &str) -> String {
    Value::from(text).to_string()
}
