//! The checking pass: the tree walked against the shapes, every unknown key, duplicate key and
//! wrong type reported and left out, the rest turned into the `serde_yaml::Value` serde reads.

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

use super::shapes::{Kind, Shape, Variant, TYPE_KEY};
use super::tree::{resolve_plain, Form, Node, NodeValue, Resolved, Scalar};
use super::Rejected;
use crate::config::locate::{KeyPositions, Position};
use crate::config::problem::Problem;
use crate::secrets::quoted;

/// `parent.key`, or `key` at the top.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The edit distance between `a` and `b` (optimal string alignment: insertions, deletions,
/// substitutions and swaps of neighbours each count one).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut table = vec![0; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            table[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let substitution = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (table[(i - 1) * width + j] + 1)
                    .min(table[i * width + j - 1] + 1)
                    .min(table[(i - 1) * width + j - 1] + substitution);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(table[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    table[a.len() * width + b.len()]
}

/// The known name nearest to `written`, if one is near enough to be what was meant: a third of
/// its letters or fewer wrong (case aside), at least one.
pub(super) fn nearest<'a>(written: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let written_lower = written.to_lowercase();
    known
        .map(|name| (edit_distance(&written_lower, name), name))
        .filter(|(distance, name)| {
            *distance <= (name.chars().count().max(written.chars().count()) / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

#[derive(Default)]
pub(super) struct Walk {
    pub(super) problems: Vec<Problem>,
    pub(super) positions: KeyPositions,
    pub(super) rejected: Rejected,
}

impl Walk {
    pub(super) fn problem(&mut self, at: Position, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line: Some(at.line),
            column: Some(at.column),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Reports a problem with the value of `key`, which nothing else then speaks of.
    pub(super) fn reject(&mut self, at: Position, key: &str, message: impl Into<String>) {
        self.problem(at, key, message);
        self.rejected.0.insert(key.to_owned());
    }

    /// The value at `path` checked as `kind`: `None` when it cannot be used (its problem is
    /// reported). An empty value where a mapping or list is expected (`aws:` with its keys
    /// commented out) is as if the key were not written.
    pub(super) fn value(&mut self, path: &str, node: &Node, kind: Kind) -> Option<Value> {
        if let Some(tag) = &node.foreign_tag {
            self.reject(
                node.at,
                path,
                format!("the tag `{tag}` means nothing to kinship; remove it"),
            );
            return None;
        }
        let form = match &node.value {
            NodeValue::Scalar(_) => Form::Scalar,
            NodeValue::Sequence(_) => Form::Sequence,
            NodeValue::Mapping(_) => Form::Mapping,
        };
        match (&node.value, kind) {
            (
                NodeValue::Scalar(scalar),
                Kind::List(_) | Kind::Mapping(_) | Kind::Typed(_) | Kind::FreeMapping,
            ) if scalar.resolve() == Resolved::Null => None,
            (NodeValue::Mapping(_), Kind::FreeMapping) => Some(self.any(path, node)),
            (_, Kind::Either(first, _)) if first.takes(form) => self.value(path, node, *first),
            (_, Kind::Either(_, second)) if second.takes(form) => self.value(path, node, *second),
            (NodeValue::Scalar(scalar), Kind::String) => Some(self.string(path, node.at, scalar)),
            (NodeValue::Scalar(scalar), Kind::Bool) => self.bool(path, node.at, scalar),
            (NodeValue::Scalar(scalar), Kind::WholeNumber) => {
                self.whole_number(path, node.at, scalar)
            }
            (NodeValue::Sequence(items), Kind::List(item_kind)) => {
                let mut values = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{index}]");
                    self.positions.first(&item_path, item.at);
                    // An unusable item stays as a hole so that the items after it keep their
                    // index (and their key paths) for the later checks.
                    values.push(
                        self.value(&item_path, item, *item_kind)
                            .unwrap_or(Value::Null),
                    );
                }
                Some(Value::Sequence(values))
            }
            (NodeValue::Mapping(entries), Kind::Mapping(shape)) => {
                Some(self.mapping(path, entries, shape))
            }
            (NodeValue::Mapping(entries), Kind::Typed(variants)) => {
                self.typed(path, node.at, entries, variants)
            }
            (_, Kind::String) => {
                // A string is always given, so nothing is said about its being missing.
                let found = describe_form(node);
                self.reject(node.at, path, format!("expected a string, found {found}"));
                Some(Value::String(String::new()))
            }
            _ => {
                let found = describe_form(node);
                self.reject(
                    node.at,
                    path,
                    format!("expected {}, found {found}", kind.describe()),
                );
                None
            }
        }
    }

    /// A string as written. A plain scalar that YAML reads as something else is reported, and
    /// kept as its text so that nothing is said about the key's being missing.
    pub(super) fn string(&mut self, path: &str, at: Position, scalar: &Scalar) -> Value {
        match scalar.resolve() {
            Resolved::String => {}
            Resolved::Null if scalar.text.is_empty() => self.reject(
                at,
                path,
                "expected a string, found no value; give one, or leave the key out",
            ),
            Resolved::Null => self.reject(
                at,
                path,
                format!(
                    "expected a string, found {}; give a value, or leave the key out",
                    scalar.found()
                ),
            ),
            Resolved::Bool(_) | Resolved::Integer(_) | Resolved::Float(_) => self.reject(
                at,
                path,
                format!(
                    "expected a string, found {}; write it in quotes (\"{}\") to make it a string",
                    scalar.found(),
                    quoted(&scalar.text)
                ),
            ),
        }
        Value::String(scalar.text.clone())
    }

    pub(super) fn bool(&mut self, path: &str, at: Position, scalar: &Scalar) -> Option<Value> {
        if let Resolved::Bool(flag) = scalar.resolve() {
            return Some(Value::Bool(flag));
        }
        let hint = if !scalar.plain && matches!(resolve_plain(&scalar.text), Resolved::Bool(_)) {
            "; write it without quotes"
        } else {
            ""
        };
        self.reject(
            at,
            path,
            format!("expected true or false, found {}{hint}", scalar.found()),
        );
        None
    }

    pub(super) fn whole_number(
        &mut self,
        path: &str,
        at: Position,
        scalar: &Scalar,
    ) -> Option<Value> {
        let shown = quoted(&scalar.text);
        let message = match scalar.resolve() {
            Resolved::Integer(number) => match u64::try_from(number) {
                Ok(number) => return Some(Value::Number(number.into())),
                Err(_) if number < 0 => {
                    format!("`{shown}` is negative; give a whole number from 0 up")
                }
                Err(_) => format!("`{shown}` is too large"),
            },
            Resolved::Float(_) => format!("`{shown}` is not a whole number"),
            _ if !scalar.plain && matches!(resolve_plain(&scalar.text), Resolved::Integer(_)) => {
                format!(
                    "expected a whole number, found {}; write it without quotes",
                    scalar.found()
                )
            }
            _ => format!("expected a whole number, found {}", scalar.found()),
        };
        self.reject(at, path, message);
        None
    }

    /// The name of a mapping's key, or `None` (reported) when the key is not a scalar.
    pub(super) fn key_name<'n>(&mut self, path: &str, key: &'n Node) -> Option<&'n str> {
        match &key.value {
            NodeValue::Scalar(scalar) => Some(&scalar.text),
            _ => {
                self.problem(
                    key.at,
                    path,
                    format!("a key must be a name, not {}", describe_form(key)),
                );
                None
            }
        }
    }

    /// A mapping of `shape`'s keys: unknown and duplicate keys reported and left out.
    pub(super) fn mapping(&mut self, path: &str, entries: &[(Node, Node)], shape: &Shape) -> Value {
        let mut written: HashMap<&str, Position> = HashMap::new();
        let mut suggested: Vec<&str> = Vec::new();
        let mut out = Mapping::new();
        for (key, node) in entries {
            let Some(name) = self.key_name(path, key) else {
                continue;
            };
            self.positions.first(path, key.at);
            let Some(kind) = shape.kind_of(name) else {
                let key_path = join(path, &quoted(name));
                self.positions.insert(&key_path, key.at);
                let message = match nearest(name, shape.keys.iter().map(|(known, _)| *known)) {
                    Some(near) => {
                        suggested.push(near);
                        format!("unknown key; did you mean {near}?")
                    }
                    None => format!(
                        "unknown key; the keys of {} are listed under \"{}\" in the README",
                        shape.what, shape.section
                    ),
                };
                self.problem(key.at, &key_path, message);
                continue;
            };
            let key_path = join(path, name);
            if let Some(first) = written.get(name) {
                self.problem(
                    key.at,
                    &key_path,
                    format!(
                        "duplicate key (first written at {}:{}); remove one",
                        first.line, first.column
                    ),
                );
                continue;
            }
            written.insert(name, key.at);
            self.positions.insert(&key_path, key.at);
            if let Some(value) = self.value(&key_path, node, kind) {
                out.insert(Value::String(name.to_owned()), value);
            }
        }
        // A misspelt key probably meant the one suggested: that one is not missing.
        for near in suggested {
            if !written.contains_key(near) {
                self.rejected.0.insert(join(path, near));
            }
        }
        Value::Mapping(out)
    }

    /// A processor: its `type` chooses its keys. `None` (reported) when the type is missing or
    /// unknown, since its other keys then mean nothing.
    pub(super) fn typed(
        &mut self,
        path: &str,
        at: Position,
        entries: &[(Node, Node)],
        variants: &'static [Variant],
    ) -> Option<Value> {
        let names = || variants.iter().map(|variant| variant.name);
        let type_entry = entries.iter().find(
            |(key, _)| matches!(&key.value, NodeValue::Scalar(scalar) if scalar.text == TYPE_KEY),
        );
        let Some((_, type_node)) = type_entry else {
            let known: Vec<&str> = names().collect();
            self.reject(
                at,
                path,
                format!("has no {TYPE_KEY}; give one of {}", known.join(", ")),
            );
            return None;
        };
        let type_path = join(path, TYPE_KEY);
        let written = match &type_node.value {
            NodeValue::Scalar(scalar) if scalar.resolve() == Resolved::String => &scalar.text,
            _ => {
                let found = describe_form(type_node);
                self.reject(
                    type_node.at,
                    &type_path,
                    format!("expected a processor type, found {found}"),
                );
                return None;
            }
        };
        let Some(variant) = variants.iter().find(|variant| variant.name == written) else {
            let message = match nearest(written, names()) {
                Some(near) => format!(
                    "`{}` is not a processor type; did you mean {near}?",
                    quoted(written)
                ),
                None => format!(
                    "`{}` is not a processor type; give one of {}",
                    quoted(written),
                    names().collect::<Vec<_>>().join(", ")
                ),
            };
            self.positions.insert(&type_path, type_node.at);
            self.reject(type_node.at, &type_path, message);
            return None;
        };
        Some(self.mapping(path, entries, &variant.shape))
    }

    /// Anything, as serde_yaml would read it, with its keys' positions and duplicates found.
    pub(super) fn any(&mut self, path: &str, node: &Node) -> Value {
        match &node.value {
            NodeValue::Scalar(scalar) => scalar.to_value(),
            NodeValue::Sequence(items) => Value::Sequence(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        let item_path = format!("{path}[{index}]");
                        self.positions.first(&item_path, item.at);
                        self.any(&item_path, item)
                    })
                    .collect(),
            ),
            NodeValue::Mapping(entries) => {
                let mut written: HashMap<String, Position> = HashMap::new();
                let mut out = Mapping::new();
                for (key, value) in entries {
                    self.positions.first(path, key.at);
                    let key_value = self.any(path, key);
                    if let NodeValue::Scalar(scalar) = &key.value {
                        let key_path = join(path, &quoted(&scalar.text));
                        if let Some(first) = written.get(&scalar.text) {
                            self.problem(
                                key.at,
                                &key_path,
                                format!(
                                    "duplicate key (first written at {}:{}); remove one",
                                    first.line, first.column
                                ),
                            );
                            continue;
                        }
                        written.insert(scalar.text.clone(), key.at);
                        self.positions.insert(&key_path, key.at);
                        let value = self.any(&key_path, value);
                        out.insert(key_value, value);
                    } else {
                        let value = self.any(path, value);
                        out.insert(key_value, value);
                    }
                }
                Value::Mapping(out)
            }
        }
    }
}

/// What `node` is, for messages about a value of the wrong form.
pub(super) fn describe_form(node: &Node) -> String {
    match &node.value {
        NodeValue::Scalar(scalar) => scalar.found(),
        NodeValue::Sequence(_) => "a list".into(),
        NodeValue::Mapping(_) => "a mapping".into(),
    }
}
