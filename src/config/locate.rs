//! Where each key of the config file is written, so that validation errors can point at the
//! place to fix. Filled in by the schema's pass over the document (one read of the YAML).

use std::collections::HashMap;

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
    /// Records where `path` is written.
    pub fn insert(&mut self, path: &str, position: Position) {
        if !path.is_empty() {
            self.positions.insert(path.to_owned(), position);
        }
    }

    /// Records `position` for `path` unless it has one: a mapping (a list item, say) is
    /// pointed at by where it starts, or by its first key.
    pub fn first(&mut self, path: &str, position: Position) {
        if !path.is_empty() {
            self.positions.entry(path.to_owned()).or_insert(position);
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
