//! Finds the line and column of each key in a YAML document, so validation errors can point at
//! the place to fix. serde_yaml reports positions only for its own errors.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Position of a key in the file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Key paths (`flows[0].max_batch_age`) mapped to where they are written.
#[derive(Debug, Default)]
pub struct KeyPositions {
    positions: HashMap<String, Position>,
}

impl KeyPositions {
    /// Indexes `text`; a document that does not parse yields an empty index (serde reports why).
    pub fn index(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            positions: builder.positions,
        }
    }

    /// The position of `path`, or of its nearest written ancestor (a missing key is reported
    /// where its parent is).
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut candidate = path;
        loop {
            if let Some(position) = self.positions.get(candidate) {
                return Some(*position);
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next_index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    positions: HashMap<String, Position>,
}

impl Builder {
    /// Path of the value that starts now, or `None` when the event is a mapping key.
    fn value_path(&mut self, event: &Event, mark: Marker) -> Option<String> {
        let position = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(key_name) => Some(join(path, &key_name)),
                None => {
                    if let Event::Scalar(name, ..) = event {
                        let full = join(path, name);
                        self.positions.insert(full, position);
                        // A mapping (a list item, say) is pointed at by its first key.
                        self.positions.entry(path.clone()).or_insert(position);
                        *key = Some(name.clone());
                    }
                    None
                }
            },
            Some(Frame::Sequence { path, next_index }) => {
                let full = format!("{path}[{next_index}]");
                *next_index += 1;
                if !matches!(event, Event::MappingStart(..) | Event::SequenceStart(..)) {
                    self.positions.insert(full.clone(), position);
                }
                Some(full)
            }
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let Some(path) = self.value_path(&event, mark) else {
                    return;
                };
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Mapping { path, key: None }
                } else {
                    Frame::Sequence {
                        path,
                        next_index: 0,
                    }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Scalar(..) | Event::Alias(..) => {
                self.value_path(&event, mark);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_list_items() {
        let text = "state_dir: /x\naws:\n  region: eu-west-1\nflows:\n  - name: a\n    files: /a\n  - name: b\n    max_batch_age: 5q\n";
        let index = KeyPositions::index(text);
        assert_eq!(
            index.find("state_dir"),
            Some(Position { line: 1, column: 1 })
        );
        assert_eq!(
            index.find("aws.region"),
            Some(Position { line: 3, column: 3 })
        );
        assert_eq!(
            index.find("flows[1].max_batch_age"),
            Some(Position { line: 8, column: 5 })
        );
        assert_eq!(
            index.find("flows[0].files"),
            Some(Position { line: 6, column: 5 })
        );
        // A missing key points at its parent.
        assert_eq!(
            index.find("flows[1].kinesis_stream").map(|p| p.line),
            Some(7)
        );
    }
}
