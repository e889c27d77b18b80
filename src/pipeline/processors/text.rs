//! Converters of a record's text: `single_line` joins a multi-line record into one line;
//! `csv_to_json` turns a CSV line into a JSON object.

use bytes::Bytes;

use super::json::{Object, Value};
use super::{split_line_end, Outcome};

/// `single_line`: the lines of a record (from `multiline_start_pattern`) joined into one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleLine {
    /// Trim each line of spaces and control characters at both ends (the Kinesis Agent's
    /// default), or keep them.
    pub trim: bool,
    /// What goes between the lines: nothing by default, as the Kinesis Agent joins them.
    pub separator: String,
}

impl SingleLine {
    pub fn apply(&self, record: Bytes) -> Outcome {
        if !record[..record.len().saturating_sub(1)].contains(&b'\n') {
            // One line already: nothing to join (its ending stays as it is).
            return Outcome::Keep(record);
        }
        let mut pieces: Vec<&[u8]> = record.split(|byte| *byte == b'\n').collect();
        while pieces.last().is_some_and(|piece| piece.is_empty()) {
            pieces.pop();
        }
        let mut out = Vec::with_capacity(record.len() + 1);
        for (index, piece) in pieces.iter().enumerate() {
            if index > 0 {
                out.extend_from_slice(self.separator.as_bytes());
            }
            let piece = if self.trim {
                trim_control(piece)
            } else {
                piece
            };
            out.extend_from_slice(piece);
        }
        out.push(b'\n');
        Outcome::Keep(Bytes::from(out))
    }
}

/// `piece` without the bytes up to space (control characters and spaces) at either end.
fn trim_control(piece: &[u8]) -> &[u8] {
    let start = piece
        .iter()
        .position(|byte| *byte > b' ')
        .unwrap_or(piece.len());
    let end = piece
        .iter()
        .rposition(|byte| *byte > b' ')
        .map_or(start, |last| last + 1);
    &piece[start..end]
}

/// `csv_to_json`: a CSV line as a JSON object of `field_names`. Fields may be quoted (`"a,b"`,
/// with `""` for a quote inside); missing columns are `null`, extra columns are left out; every
/// value is a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvToJson {
    pub field_names: Vec<String>,
    pub delimiter: u8,
}

impl CsvToJson {
    pub fn apply(&self, record: Bytes) -> Outcome {
        let (body, line_end) = split_line_end(&record);
        let Ok(text) = std::str::from_utf8(body) else {
            return Outcome::Unparsable("csv_to_json: the record is not UTF-8".into());
        };
        let columns = match split_csv(text, self.delimiter as char) {
            Ok(columns) => columns,
            Err(reason) => return Outcome::Unparsable(format!("csv_to_json: {reason}")),
        };
        let mut object = Object::default();
        for (index, name) in self.field_names.iter().enumerate() {
            let value = columns
                .get(index)
                .map_or(Value::Null, |column| Value::Text(column));
            object.push(name, value);
        }
        Outcome::Keep(object.into_record(line_end))
    }
}

/// Splits one CSV line (RFC 4180 quoting) into its fields.
fn split_csv(text: &str, delimiter: char) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if at_field_start && c == '"' {
            // A quoted field: up to the closing quote, `""` being a quote.
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        current.push('"');
                    }
                    Some('"') => break,
                    Some(other) => current.push(other),
                }
            }
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut current));
                    return Ok(fields);
                }
                Some(next) if next == delimiter => {
                    fields.push(std::mem::take(&mut current));
                    at_field_start = true;
                }
                Some(_) => return Err("text follows a quoted field's closing quote"),
            }
            continue;
        }
        if c == delimiter {
            fields.push(std::mem::take(&mut current));
            at_field_start = true;
        } else {
            current.push(c);
            at_field_start = false;
        }
    }
    fields.push(current);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(outcome: Outcome) -> String {
        match outcome {
            Outcome::Keep(bytes) => String::from_utf8(bytes.to_vec()).expect("utf-8"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn single_line_joins_trimmed_lines_as_the_kinesis_agent_does() {
        let join = SingleLine {
            trim: true,
            separator: String::new(),
        };
        assert_eq!(
            kept(join.apply(Bytes::from_static(b"{\n   \"a\": 1\n}\n"))),
            "{\"a\": 1}\n"
        );
        assert_eq!(
            kept(join.apply(Bytes::from_static(
                b"Exception: boom\r\n\tat a.b(C.java:1)\r\n\tat d.e(F.java:2)\r\n"
            ))),
            "Exception: boomat a.b(C.java:1)at d.e(F.java:2)\n"
        );
        let escaped = SingleLine {
            trim: false,
            separator: "\\n".into(),
        };
        assert_eq!(
            kept(escaped.apply(Bytes::from_static(b"first\n  second\n\n"))),
            "first\\n  second\n"
        );
        // A single line is left as it is, CRLF included.
        assert_eq!(
            kept(join.apply(Bytes::from_static(b" one \r\n"))),
            " one \r\n"
        );
    }

    #[test]
    fn csv_fields_with_quotes_and_missing_or_extra_columns() {
        let csv = CsvToJson {
            field_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            delimiter: b',',
        };
        assert_eq!(
            kept(csv.apply(Bytes::from_static(b"1,\"x, \"\"y\"\"\", z\n"))),
            "{\"a\":\"1\",\"b\":\"x, \\\"y\\\"\",\"c\":\" z\",\"d\":null}\n"
        );
        assert_eq!(
            kept(csv.apply(Bytes::from_static(b"1,2,3,4,5,6\r\n"))),
            "{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\"}\r\n"
        );
        assert_eq!(
            kept(csv.apply(Bytes::from_static(b",,\n"))),
            "{\"a\":\"\",\"b\":\"\",\"c\":\"\",\"d\":null}\n"
        );
        assert!(matches!(
            csv.apply(Bytes::from_static(b"1,\"open\n")),
            Outcome::Unparsable(_)
        ));
        assert!(matches!(
            csv.apply(Bytes::from_static(b"\"a\"b,c\n")),
            Outcome::Unparsable(_)
        ));
        let tabs = CsvToJson {
            field_names: vec!["k".into(), "v".into()],
            delimiter: b'\t',
        };
        assert_eq!(
            kept(tabs.apply(Bytes::from_static(b"key\tvalue with, comma\n"))),
            "{\"k\":\"key\",\"v\":\"value with, comma\"}\n"
        );
    }
}
