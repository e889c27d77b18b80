//! The YAML document read once into a tree that keeps where each value is written and how
//! each scalar was written (plain or quoted), aliases expanded within limits.

use std::collections::HashMap;

use serde_yaml::Value;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::config::locate::Position;
use crate::config::problem::Problem;
use crate::secrets::quoted;

/// Values a document may hold once its aliases are expanded: far more than any config, far
/// fewer than an alias bomb needs.
const MAX_VALUES: usize = 200_000;
/// How deep values may nest (serde_yaml's own limit).
const MAX_DEPTH: usize = 128;
/// The prefix `!!` stands for.
const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// A value of the document, with where it starts.
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) at: Position,
    /// A tag kinship does not read (`!secret`), as written.
    pub(super) foreign_tag: Option<String>,
    pub(super) value: NodeValue,
}

#[derive(Clone, Debug)]
pub(super) enum NodeValue {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    Scalar,
    Sequence,
    Mapping,
}

#[derive(Clone, Debug)]
pub(super) struct Scalar {
    pub(super) text: String,
    /// Plain scalars are typed by how they look (`42`, `true`, `~`); quoted and block scalars,
    /// and those tagged `!!str`, are strings.
    pub(super) plain: bool,
}

/// What a scalar is, as serde_yaml reads it (YAML 1.2's core schema).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Resolved {
    Null,
    Bool(bool),
    Integer(i128),
    Float(f64),
    String,
}

impl Scalar {
    pub(super) fn resolve(&self) -> Resolved {
        if !self.plain {
            return Resolved::String;
        }
        resolve_plain(&self.text)
    }

    /// The scalar as serde_yaml would hold it.
    pub(super) fn to_value(&self) -> Value {
        match self.resolve() {
            Resolved::Null => Value::Null,
            Resolved::Bool(flag) => Value::Bool(flag),
            Resolved::Integer(number) => {
                if let Ok(unsigned) = u64::try_from(number) {
                    Value::Number(unsigned.into())
                } else if let Ok(signed) = i64::try_from(number) {
                    Value::Number(signed.into())
                } else {
                    Value::Number((number as f64).into())
                }
            }
            Resolved::Float(number) => Value::Number(number.into()),
            Resolved::String => Value::String(self.text.clone()),
        }
    }

    /// What was found, for messages: "`42`, which YAML reads as a number".
    pub(super) fn found(&self) -> String {
        let shown = quoted(&self.text);
        match self.resolve() {
            Resolved::Null if self.text.is_empty() => "no value".into(),
            Resolved::Null => format!("`{shown}`, which YAML reads as no value"),
            Resolved::Bool(_) => format!("`{shown}`, which YAML reads as a boolean"),
            Resolved::Integer(_) | Resolved::Float(_) => {
                format!("`{shown}`, which YAML reads as a number")
            }
            Resolved::String if self.plain => format!("the text `{shown}`"),
            Resolved::String => format!("the quoted text `{shown}`"),
        }
    }
}

/// A plain scalar as serde_yaml types it: null, a boolean, an integer (decimal, `0x`, `0o`,
/// `0b`), a float, or else a string. A decimal with a leading zero (`0644`) is a string.
pub(super) fn resolve_plain(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        _ => {}
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let leading_zero_digits = unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned.bytes().all(|b| b.is_ascii_digit());
    if leading_zero_digits {
        return Resolved::String;
    }
    let (radix, digits) = [("0x", 16), ("0o", 8), ("0b", 2)]
        .iter()
        .find_map(|(prefix, radix)| unsigned.strip_prefix(prefix).map(|rest| (*radix, rest)))
        .unwrap_or((10, unsigned));
    if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
        if let Ok(magnitude) = i128::from_str_radix(digits, radix) {
            return Resolved::Integer(if negative { -magnitude } else { magnitude });
        }
    }
    let special = match unsigned {
        ".inf" | ".Inf" | ".INF" if negative => Some(f64::NEG_INFINITY),
        ".inf" | ".Inf" | ".INF" => Some(f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if text == unsigned => Some(f64::NAN),
        _ => None,
    };
    if let Some(number) = special {
        return Resolved::Float(number);
    }
    let finite = text
        .strip_prefix('+')
        .filter(|rest| !rest.starts_with(['+', '-']))
        .unwrap_or(text)
        .parse::<f64>()
        .ok()
        .filter(|number| number.is_finite());
    match finite {
        Some(number) => Resolved::Float(number),
        None => Resolved::String,
    }
}

/// The document's first node, and where a second document starts, if one does.
pub(super) struct Tree {
    pub(super) root: Option<Node>,
    pub(super) second_document: Option<Position>,
}

/// A sequence or mapping whose end is not read yet.
struct Open {
    at: Position,
    anchor: usize,
    foreign_tag: Option<String>,
    mapping: bool,
    /// A mapping's keys and values, alternating.
    children: Vec<Node>,
}

fn position(mark: &Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

fn whole_file_problem(at: Position, message: impl Into<String>) -> Problem {
    Problem {
        line: Some(at.line),
        column: Some(at.column),
        key: String::new(),
        message: message.into(),
    }
}

/// Whether a scalar is plain as far as typing goes, and the tag kinship does not read, if any.
fn scalar_tag(style: TScalarStyle, tag: Option<Tag>) -> (bool, Option<String>) {
    let plain = style == TScalarStyle::Plain;
    match tag {
        None => (plain, None),
        // `!` alone and `!!str` make a string of whatever is written.
        Some(tag) if tag.handle == "!" && tag.suffix.is_empty() => (false, None),
        Some(tag) if tag.handle == CORE_TAG_PREFIX && tag.suffix == "str" => (false, None),
        Some(tag) => (plain, foreign_tag(tag)),
    }
}

/// A tag other than YAML's own, as written (`!!int`, `!!map` change nothing kinship reads).
fn foreign_tag(tag: Tag) -> Option<String> {
    if tag.handle == CORE_TAG_PREFIX {
        match tag.suffix.as_str() {
            "str" | "int" | "float" | "bool" | "null" | "map" | "seq" => None,
            other => Some(format!("!!{other}")),
        }
    } else if tag.handle == "!" && tag.suffix.is_empty() {
        None
    } else {
        Some(format!("{}{}", tag.handle, tag.suffix))
    }
}

/// How many values `node` holds, itself included.
pub(super) fn count_values(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::Scalar(_) => 0,
        NodeValue::Sequence(items) => items.iter().map(count_values).sum(),
        NodeValue::Mapping(entries) => entries
            .iter()
            .map(|(key, value)| count_values(key) + count_values(value))
            .sum(),
    }
}

/// How many levels `node` nests, itself included.
pub(super) fn depth(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::Scalar(_) => 0,
        NodeValue::Sequence(items) => items.iter().map(depth).max().unwrap_or(0),
        NodeValue::Mapping(entries) => entries
            .iter()
            .map(|(key, value)| depth(key).max(depth(value)))
            .max()
            .unwrap_or(0),
    }
}

/// Starts a sequence or a mapping, unless values already nest as deep as they may.
fn open_collection(
    open: &mut Vec<Open>,
    at: Position,
    anchor: usize,
    tag: Option<Tag>,
    mapping: bool,
) -> Result<(), Problem> {
    if open.len() >= MAX_DEPTH {
        return Err(whole_file_problem(
            at,
            format!("values nest more than {MAX_DEPTH} levels deep"),
        ));
    }
    open.push(Open {
        at,
        anchor,
        foreign_tag: tag.and_then(foreign_tag),
        mapping,
        children: Vec::new(),
    });
    Ok(())
}

/// The node a sequence or mapping makes once its end is read, and its anchor.
fn close_collection(done: Open) -> (Node, usize) {
    // The parser marks a block mapping where its first key's `:` is: point at
    // the first key instead, where the mapping is seen to start.
    let at = match (done.mapping, done.children.first()) {
        (true, Some(first_key)) => first_key.at,
        _ => done.at,
    };
    let value = if done.mapping {
        let mut entries = Vec::with_capacity(done.children.len() / 2);
        let mut children = done.children.into_iter();
        while let (Some(key), Some(value)) = (children.next(), children.next()) {
            entries.push((key, value));
        }
        NodeValue::Mapping(entries)
    } else {
        NodeValue::Sequence(done.children)
    };
    let node = Node {
        at,
        foreign_tag: done.foreign_tag,
        value,
    };
    (node, done.anchor)
}

/// A copy of the node `anchor` names, unless it is not defined yet or would nest too deep
/// below `open_depth` open collections.
fn expand_alias(
    anchors: &HashMap<usize, Node>,
    anchor: usize,
    at: Position,
    open_depth: usize,
) -> Result<Node, Problem> {
    let Some(node) = anchors.get(&anchor).cloned() else {
        return Err(whole_file_problem(
            at,
            "an alias names an anchor not defined before it",
        ));
    };
    if open_depth + depth(&node) > MAX_DEPTH {
        return Err(whole_file_problem(
            at,
            format!("values nest more than {MAX_DEPTH} levels deep"),
        ));
    }
    Ok(node)
}

/// Reads the first document of `text` into a tree, aliases expanded.
pub(super) fn read_tree(text: &str) -> Result<Tree, Problem> {
    let mut parser = Parser::new_from_str(text);
    let mut open: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root = None;
    let mut documents = 0;
    let mut values = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(|error| {
            whole_file_problem(
                position(error.marker()),
                format!("not valid YAML: {}", error.info()),
            )
        })?;
        let at = position(&mark);
        let (node, anchor) = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Ok(Tree {
                        root,
                        second_document: Some(at),
                    });
                }
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let (plain, foreign_tag) = scalar_tag(style, tag);
                let scalar = NodeValue::Scalar(Scalar { text, plain });
                let node = Node {
                    at,
                    foreign_tag,
                    value: scalar,
                };
                (node, anchor)
            }
            Event::Alias(anchor) => {
                let node = expand_alias(&anchors, anchor, at, open.len())?;
                // The copy counts whole, less the one value counted below.
                values += count_values(&node) - 1;
                (node, 0)
            }
            Event::SequenceStart(anchor, tag) => {
                open_collection(&mut open, at, anchor, tag, false)?;
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                open_collection(&mut open, at, anchor, tag, true)?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(done) = open.pop() else { continue };
                close_collection(done)
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
        };
        values += 1;
        if values > MAX_VALUES {
            return Err(whole_file_problem(
                at,
                format!("the document holds more than {MAX_VALUES} values once its aliases are expanded"),
            ));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match open.last_mut() {
            Some(parent) => parent.children.push(node),
            None => root = Some(node),
        }
    }
    Ok(Tree {
        root,
        second_document: None,
    })
}
