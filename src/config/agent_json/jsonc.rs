//! agent.json's text: JSON with `//` and `/* */` comments, parsed into one object, and where a
//! key is written in it (for problems that name a line).

use serde_json::{Map, Value};

use crate::config::Problem;

/// The text parsed as one JSON object, comments allowed.
pub(super) fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(&strip_comments(text)) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the file must hold one JSON object".to_owned()),
        Err(error) => Err(format!(
            "not valid JSON at line {} column {}: {error}",
            error.line(),
            error.column()
        )),
    }
}

/// `text` with `//` and `/* */` comments outside strings replaced by spaces (newlines kept, so
/// JSON errors give the right line).
pub(super) fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && skipped == '/' {
                        break;
                    }
                    last = skipped;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// A problem with `key` (a global key, or a path into a flow such as
/// `flows[0].initialPosition`), at the first place its last part is written in `text`.
pub(super) fn problem(text: &str, key: &str, message: impl Into<String>) -> Problem {
    let last = if key.starts_with("flows[") {
        key.rsplit('.').next().unwrap_or(key)
    } else {
        key
    };
    let needle = format!("\"{}\"", last.split('[').next().unwrap_or(last));
    let line = text
        .find(&needle)
        .map(|at| text[..at].matches('\n').count() + 1);
    Problem {
        line,
        column: None,
        key: key.to_owned(),
        message: message.into(),
    }
}
