//! agent.json's values read as the Kinesis Agent reads them: numbers and booleans may also be
//! written as strings; a value that cannot be read is a problem naming its key.

use serde_json::{Map, Value};

use super::jsonc::problem;
use crate::config::Problem;
use crate::secrets;

/// A string, number or boolean as text; `None` when absent, empty or of another type.
pub(super) fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A list, each item as text; empty when absent or not a list.
pub(super) fn list(map: &Map<String, Value>, key: &str) -> Vec<String> {
    match map.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A whole number, written as a number or a string (decimal or 0x hex).
pub(super) fn number(
    map: &Map<String, Value>,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<i64> {
    number_at(map, key, key, text, problems)
}

/// As [`number`], a problem named by `path`.
pub(super) fn number_at(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<i64> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => {
            let trimmed = text.as_str();
            match trimmed
                .strip_prefix("0x")
                .or_else(|| trimmed.strip_prefix("0X"))
            {
                Some(hex) => i64::from_str_radix(hex, 16).ok(),
                None => trimmed.parse().ok(),
            }
        }
        _ => None,
    };
    if parsed.is_none() {
        problems.push(problem(
            text,
            path,
            format!("{} is not a whole number", shown(value)),
        ));
    }
    parsed
}

/// A boolean, written as one or as a string (true/yes/t/y/1, false/no/f/n/0).
pub(super) fn boolean(
    map: &Map<String, Value>,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<bool> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(text) => match text.to_lowercase().as_str() {
            "true" | "yes" | "t" | "y" | "1" => Some(true),
            "false" | "no" | "f" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    if parsed.is_none() {
        problems.push(problem(
            text,
            key,
            format!("{} is not true or false", shown(value)),
        ));
    }
    parsed
}

/// A JSON value as a message may quote it: a string that looks like a secret as its prefix.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("\"{}\"", secrets::quoted(text)),
        other => secrets::quoted(&other.to_string()).into_owned(),
    }
}
