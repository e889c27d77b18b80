//! The config file's shape, and the first pass over it. The YAML is read once into a tree that
//! keeps where each key and value is written and how each scalar was written (plain or
//! quoted); the tree is checked against a static description of every mapping's keys and the
//! kind of value each takes. Every unknown key, duplicate key and wrong type is reported, at
//! every depth, and left out; what is left becomes the `serde_yaml::Value` that
//! [`super::raw::RawConfig`] is read from, so that serde no longer meets a wrong type.
//!
//! serde_yaml alone cannot do this: it stops at its first error, and it reads a plain `42` or
//! `true` as a string wherever a string is expected.
//!
//! `tree` reads the YAML, `shapes` describes every mapping, `walk` checks the one against the
//! other; this module holds the entry point and what it hands back.

mod shapes;
#[cfg(test)]
mod tests;
mod tree;
mod walk;

use std::collections::HashSet;

use serde_yaml::Value;

use super::locate::KeyPositions;
use super::problem::Problem;
use shapes::TOP_LEVEL;
use tree::{read_tree, Node, NodeValue, Resolved};
use walk::Walk;

/// Keys written but not usable as written (a wrong type, or a near miss of a known key's
/// name): each has its problem reported, and nothing more is said about it, what it holds, or
/// its being missing.
#[derive(Debug, Default)]
pub struct Rejected(HashSet<String>);

impl Rejected {
    /// Whether `key` or a mapping or list holding it was rejected.
    pub fn covers(&self, key: &str) -> bool {
        let mut candidate = key;
        loop {
            if self.0.contains(candidate) {
                return true;
            }
            match candidate.rfind(['.', '[']) {
                Some(cut) => candidate = &candidate[..cut],
                None => return false,
            }
        }
    }
}

/// A document that passed the first pass, whatever it found wrong.
#[derive(Debug)]
pub struct Document {
    /// The usable part, for serde.
    pub value: Value,
    /// Where each key is written, for the later problems.
    pub positions: KeyPositions,
    pub rejected: Rejected,
    /// Unknown keys, duplicate keys and wrong types.
    pub problems: Vec<Problem>,
}

/// Reads `text` and checks its shape. A YAML syntax error, or a document that is not a
/// mapping, is the one problem returned: nothing after it can be read.
pub fn read(text: &str) -> Result<Document, Problem> {
    let tree = read_tree(text)?;
    let mut walk = Walk::default();
    if let Some(at) = tree.second_document {
        walk.problems.push(Problem {
            line: Some(at.line),
            column: Some(at.column),
            key: String::new(),
            message: "a second YAML document starts here; kinship reads one document per file"
                .into(),
        });
    }
    let entries: &[(Node, Node)] = match &tree.root {
        None => &[],
        Some(node) => match &node.value {
            NodeValue::Mapping(entries) => entries,
            NodeValue::Scalar(scalar) if scalar.resolve() == Resolved::Null => &[],
            _ => {
                let found = match &node.value {
                    NodeValue::Scalar(scalar) => scalar.found(),
                    NodeValue::Sequence(_) => "a list".into(),
                    NodeValue::Mapping(_) => "a mapping".into(),
                };
                return Err(Problem {
                    line: Some(node.at.line),
                    column: Some(node.at.column),
                    key: String::new(),
                    message: format!(
                        "the file must be a mapping of keys such as state_dir and flows, not {found}"
                    ),
                });
            }
        },
    };
    let value = walk.mapping("", entries, &TOP_LEVEL);
    Ok(Document {
        value,
        positions: walk.positions,
        rejected: walk.rejected,
        problems: walk.problems,
    })
}
