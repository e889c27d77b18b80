//! The config file's shape, and the first pass over it. The YAML is read once into a tree that
//! keeps where each key and value is written and how each scalar was written (plain or
//! quoted); the tree is checked against a static description of every mapping's keys and the
//! kind of value each takes. Every unknown key, duplicate key and wrong type is reported, at
//! every depth, and left out; what is left becomes the `serde_yaml::Value` that
//! [`super::raw::RawConfig`] is read from, so that serde no longer meets a wrong type.
//!
//! serde_yaml alone cannot do this: it stops at its first error, and it reads a plain `42` or
//! `true` as a string wherever a string is expected.

use std::collections::{HashMap, HashSet};

use serde_yaml::{Mapping, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::locate::{KeyPositions, Position};
use super::Problem;
use crate::secrets::quoted;

/// Values a document may hold once its aliases are expanded: far more than any config, far
/// fewer than an alias bomb needs.
const MAX_VALUES: usize = 200_000;
/// How deep values may nest (serde_yaml's own limit).
const MAX_DEPTH: usize = 128;
/// The prefix `!!` stands for.
const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// The kind of value a key takes.
#[derive(Clone, Copy, Debug)]
enum Kind {
    String,
    Bool,
    /// A whole number from 0 up (serde's `u64`).
    WholeNumber,
    List(&'static Kind),
    /// A mapping of known keys.
    Mapping(&'static Shape),
    /// A mapping whose `type` chooses its keys.
    Typed(&'static [Variant]),
    /// Either kind, chosen by the form written (a scalar, a list or a mapping).
    Either(&'static Kind, &'static Kind),
    /// A mapping of any keys and values, kept as YAML types them (`add_metadata.fields`).
    FreeMapping,
}

/// A mapping's keys, and where the README lists them.
#[derive(Debug)]
struct Shape {
    /// What the mapping is, for messages: `a flow`.
    what: &'static str,
    /// The README section that lists its keys.
    section: &'static str,
    keys: &'static [(&'static str, Kind)],
}

/// One `type` of a [`Kind::Typed`] mapping; its shape includes `type` itself.
#[derive(Debug)]
struct Variant {
    name: &'static str,
    shape: Shape,
}

const STRING: Kind = Kind::String;
const BOOL: Kind = Kind::Bool;
const NUMBER: Kind = Kind::WholeNumber;
const STRING_OR_LIST: Kind = Kind::Either(&Kind::String, &Kind::List(&Kind::String));
const STRINGS: Kind = Kind::List(&Kind::String);

const TOP_LEVEL: Shape = Shape {
    what: "the top level",
    section: "Top level",
    keys: &[
        ("state_dir", STRING),
        ("aws", Kind::Mapping(&AWS)),
        ("shutdown_grace", STRING),
        ("checkpoint_interval", STRING),
        ("checkpoint_commit", STRING),
        ("progress_interval", STRING),
        ("checkpoint_expiry", STRING),
        ("max_open_files", NUMBER),
        ("memory_budget", NUMBER),
        ("dry_run_output", STRING),
        ("metrics", Kind::Mapping(&METRICS)),
        ("log_level", STRING),
        ("log_format", STRING),
        ("log_file", STRING),
        ("log_file_max_bytes", NUMBER),
        ("log_file_keep", NUMBER),
        ("watch_config", BOOL),
        ("cloudwatch", Kind::Mapping(&CLOUDWATCH)),
        ("flows", Kind::List(&Kind::Mapping(&FLOW))),
    ],
};

const AWS: Shape = Shape {
    what: "an aws block",
    section: "AWS settings",
    keys: &[
        ("region", STRING),
        ("endpoint_url", STRING),
        ("sts_endpoint_url", STRING),
        ("profile", STRING),
        ("access_key_id", STRING),
        ("secret_access_key", STRING),
        ("session_token", STRING),
        ("assume_role", Kind::Mapping(&ASSUME_ROLE)),
        ("request_timeout", STRING),
        ("connect_timeout", STRING),
        ("allow_insecure_http", BOOL),
        ("check_identity", BOOL),
        ("tls", Kind::Mapping(&TLS)),
    ],
};

const TLS: Shape = Shape {
    what: "a tls block",
    section: "AWS settings",
    keys: &[("ca_file", STRING)],
};

const ASSUME_ROLE: Shape = Shape {
    what: "an assume_role block",
    section: "AWS settings",
    keys: &[
        ("role_arn", STRING),
        ("external_id", STRING),
        ("session_name", STRING),
        ("duration", STRING),
    ],
};

const METRICS: Shape = Shape {
    what: "the metrics block",
    section: "Top level",
    keys: &[("listen", STRING), ("stuck_after", STRING)],
};

const CLOUDWATCH: Shape = Shape {
    what: "the cloudwatch block",
    section: "CloudWatch metrics",
    keys: &[
        ("enabled", BOOL),
        ("namespace", STRING),
        ("interval", STRING),
        ("aws", Kind::Mapping(&AWS)),
    ],
};

const FLOW: Shape = Shape {
    what: "a flow",
    section: "Flows",
    keys: &[
        ("name", STRING),
        ("processors", Kind::List(&Kind::Typed(PROCESSORS))),
        ("on_error", STRING),
        ("files", STRING_OR_LIST),
        ("exclude", STRING_OR_LIST),
        ("ignore_older", STRING),
        ("kinesis_stream", STRING),
        ("firehose_stream", STRING),
        ("aws", Kind::Mapping(&AWS)),
        ("dry_run", BOOL),
        ("data_path", STRING),
        ("wire_format", STRING),
        ("ordering", STRING),
        ("aggregation", STRING),
        ("pack_records", BOOL),
        ("pack_record_bytes", NUMBER),
        ("compression", STRING),
        ("initial_position", STRING),
        (
            "partition_key",
            Kind::Either(&Kind::String, &Kind::Mapping(&KEY_EXTRACTION)),
        ),
        ("explicit_hash_key", STRING),
        ("max_batch_age", STRING),
        ("max_batch_records", NUMBER),
        ("max_batch_bytes", NUMBER),
        ("max_record_bytes", NUMBER),
        ("max_in_flight", NUMBER),
        ("poll_interval", STRING),
        ("scan_interval", STRING),
        ("retry_initial_backoff", STRING),
        ("retry_max_backoff", STRING),
        ("max_retry_duration", STRING),
        ("fingerprint_bytes", NUMBER),
        ("partial_line_timeout", STRING),
        ("multiline_start_pattern", STRING),
        ("multiline_flush_timeout", STRING),
        ("skip_header_lines", NUMBER),
        ("file_footer_pattern", STRING),
        ("oversize_records", STRING),
        ("truncated_record_terminator", STRING),
    ],
};

const KEY_EXTRACTION: Shape = Shape {
    what: "a partition_key mapping",
    section: "Flows",
    keys: &[
        ("regex", STRING),
        ("json_field", STRING),
        ("fallback", STRING),
    ],
};

const REDACT_PATTERN: Shape = Shape {
    what: "a redact pattern",
    section: "Processors",
    keys: &[("pattern", STRING), ("replacement", STRING)],
};

/// The key of a processor that names its kind.
const TYPE_KEY: &str = "type";

const PROCESSORS: &[Variant] = &[
    Variant {
        name: "single_line",
        shape: Shape {
            what: "a single_line processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("no_trim", BOOL),
                ("escape_newlines", BOOL),
                ("separator", STRING),
            ],
        },
    },
    Variant {
        name: "csv_to_json",
        shape: Shape {
            what: "a csv_to_json processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("field_names", STRINGS),
                ("delimiter", STRING),
            ],
        },
    },
    Variant {
        name: "log_to_json",
        shape: Shape {
            what: "a log_to_json processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("format", STRING),
                ("pattern", STRING),
                ("field_names", STRINGS),
            ],
        },
    },
    Variant {
        name: "filter",
        shape: Shape {
            what: "a filter processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("include", STRING_OR_LIST),
                ("exclude", STRING_OR_LIST),
            ],
        },
    },
    Variant {
        name: "redact",
        shape: Shape {
            what: "a redact processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("builtin", STRING_OR_LIST),
                ("replacement", STRING),
                ("patterns", Kind::List(&Kind::Mapping(&REDACT_PATTERN))),
            ],
        },
    },
    Variant {
        name: "add_ec2_metadata",
        shape: Shape {
            what: "an add_ec2_metadata processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("refresh", STRING),
                ("tags", BOOL),
                ("endpoint", STRING),
            ],
        },
    },
    Variant {
        name: "add_metadata",
        shape: Shape {
            what: "an add_metadata processor",
            section: "Processors",
            keys: &[
                (TYPE_KEY, STRING),
                ("timestamp", BOOL),
                ("fields", Kind::FreeMapping),
                ("host", BOOL),
                ("file", BOOL),
                ("envelope", BOOL),
            ],
        },
    },
];

impl Shape {
    fn kind_of(&self, key: &str) -> Option<Kind> {
        self.keys
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, kind)| *kind)
    }
}

impl Kind {
    /// What the kind is, for messages: `a string`.
    fn describe(self) -> String {
        match self {
            Kind::String => "a string".into(),
            Kind::Bool => "true or false".into(),
            Kind::WholeNumber => "a whole number".into(),
            Kind::List(_) => "a list".into(),
            Kind::Mapping(_) | Kind::Typed(_) | Kind::FreeMapping => "a mapping".into(),
            Kind::Either(first, second) => {
                format!("{} or {}", first.describe(), second.describe())
            }
        }
    }

    /// Whether a value of `form` can be of this kind.
    fn takes(self, form: Form) -> bool {
        match self {
            Kind::String | Kind::Bool | Kind::WholeNumber => form == Form::Scalar,
            Kind::List(_) => form == Form::Sequence,
            Kind::Mapping(_) | Kind::Typed(_) | Kind::FreeMapping => form == Form::Mapping,
            Kind::Either(first, second) => first.takes(form) || second.takes(form),
        }
    }
}

/// A value of the document, with where it starts.
#[derive(Clone, Debug)]
struct Node {
    at: Position,
    /// A tag kinship does not read (`!secret`), as written.
    foreign_tag: Option<String>,
    value: NodeValue,
}

#[derive(Clone, Debug)]
enum NodeValue {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Scalar,
    Sequence,
    Mapping,
}

#[derive(Clone, Debug)]
struct Scalar {
    text: String,
    /// Plain scalars are typed by how they look (`42`, `true`, `~`); quoted and block scalars,
    /// and those tagged `!!str`, are strings.
    plain: bool,
}

/// What a scalar is, as serde_yaml reads it (YAML 1.2's core schema).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Resolved {
    Null,
    Bool(bool),
    Integer(i128),
    Float(f64),
    String,
}

impl Scalar {
    fn resolve(&self) -> Resolved {
        if !self.plain {
            return Resolved::String;
        }
        resolve_plain(&self.text)
    }

    /// The scalar as serde_yaml would hold it.
    fn to_value(&self) -> Value {
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
    fn found(&self) -> String {
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
fn resolve_plain(text: &str) -> Resolved {
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

/// The document's first node, and where a second document starts, if one does.
struct Tree {
    root: Option<Node>,
    second_document: Option<Position>,
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
fn count_values(node: &Node) -> usize {
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
fn depth(node: &Node) -> usize {
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

/// Reads the first document of `text` into a tree, aliases expanded.
fn read_tree(text: &str) -> Result<Tree, Problem> {
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
                let Some(node) = anchors.get(&anchor).cloned() else {
                    return Err(whole_file_problem(
                        at,
                        "an alias names an anchor not defined before it",
                    ));
                };
                // The copy counts whole, less the one value counted below.
                values += count_values(&node) - 1;
                if open.len() + depth(&node) > MAX_DEPTH {
                    return Err(whole_file_problem(
                        at,
                        format!("values nest more than {MAX_DEPTH} levels deep"),
                    ));
                }
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

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The edit distance between `a` and `b` (optimal string alignment: insertions, deletions,
/// substitutions and swaps of neighbours each count one).
fn edit_distance(a: &str, b: &str) -> usize {
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
fn nearest<'a>(written: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
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
struct Walk {
    problems: Vec<Problem>,
    positions: KeyPositions,
    rejected: Rejected,
}

impl Walk {
    fn problem(&mut self, at: Position, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line: Some(at.line),
            column: Some(at.column),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Reports a problem with the value of `key`, which nothing else then speaks of.
    fn reject(&mut self, at: Position, key: &str, message: impl Into<String>) {
        self.problem(at, key, message);
        self.rejected.0.insert(key.to_owned());
    }

    /// The value at `path` checked as `kind`: `None` when it cannot be used (its problem is
    /// reported). An empty value where a mapping or list is expected (`aws:` with its keys
    /// commented out) is as if the key were not written.
    fn value(&mut self, path: &str, node: &Node, kind: Kind) -> Option<Value> {
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
    fn string(&mut self, path: &str, at: Position, scalar: &Scalar) -> Value {
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

    fn bool(&mut self, path: &str, at: Position, scalar: &Scalar) -> Option<Value> {
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

    fn whole_number(&mut self, path: &str, at: Position, scalar: &Scalar) -> Option<Value> {
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
    fn key_name<'n>(&mut self, path: &str, key: &'n Node) -> Option<&'n str> {
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
    fn mapping(&mut self, path: &str, entries: &[(Node, Node)], shape: &Shape) -> Value {
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
    fn typed(
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
    fn any(&mut self, path: &str, node: &Node) -> Value {
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
fn describe_form(node: &Node) -> String {
    match &node.value {
        NodeValue::Scalar(scalar) => scalar.found(),
        NodeValue::Sequence(_) => "a list".into(),
        NodeValue::Mapping(_) => "a mapping".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let document = read(text).expect("readable YAML");
        document
            .problems
            .iter()
            .map(|problem| {
                format!(
                    "{}:{}: {}: {}",
                    problem.line.unwrap_or(0),
                    problem.column.unwrap_or(0),
                    problem.key,
                    problem.message
                )
            })
            .collect()
    }

    #[test]
    fn plain_scalars_are_typed_as_serde_yaml_types_them() {
        for text in [
            "42",
            "-7",
            "+7",
            "0x1F",
            "-0x1F",
            "0o17",
            "0b101",
            "0644",
            "-0",
            "1.5",
            "1e3",
            ".5",
            "1.",
            "-.inf",
            ".Inf",
            ".nan",
            "1_000",
            "true",
            "True",
            "TRUE",
            "yes",
            "no",
            "on",
            "~",
            "null",
            "Null",
            "NULL",
            "",
            "nan",
            "inf",
            "0x",
            "+-5",
            "-+5",
            "12abc",
            "1e400",
            "007",
            "+0x10",
            "0xG",
            "+.nan",
            "-.nan",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let document = format!("value: {text}\n");
            let expected: Mapping = serde_yaml::from_str(&document).expect(text);
            let expected = expected.get("value").cloned().unwrap_or(Value::Null);
            let mine = Scalar {
                text: text.to_owned(),
                plain: true,
            }
            .to_value();
            let same = match (&mine, &expected) {
                (Value::Number(a), Value::Number(b)) => {
                    a.as_f64().is_some_and(f64::is_nan) && b.as_f64().is_some_and(f64::is_nan)
                        || a == b
                        || a.as_f64() == b.as_f64()
                }
                _ => mine == expected,
            };
            assert!(same, "{text:?}: {mine:?} but serde_yaml reads {expected:?}");
        }
    }

    #[test]
    fn every_problem_of_every_mapping_is_reported() {
        let found = problems(
            "flows:\n  - name: app\n    files: /var/log/*.log\n    kinesis_stream: app\n    max_batch_agee: 1s\n    max_in_flight: many\n    retry_max_backoff: soon\n    aws:\n      regoin: x\n      assume_role:\n        role_rn: arn\n    partition_key: {regx: a}\n    processors:\n      - type: filter\n        includ: x\nmetrics:\n  listn: x\ncloudwatch:\n  namespce: x\nstate_dri: /x\n",
        );
        assert_eq!(
            found,
            [
                "5:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?",
                "6:20: flows[0].max_in_flight: expected a whole number, found the text `many`",
                "9:7: flows[0].aws.regoin: unknown key; did you mean region?",
                "11:9: flows[0].aws.assume_role.role_rn: unknown key; did you mean role_arn?",
                "12:21: flows[0].partition_key.regx: unknown key; did you mean regex?",
                "15:9: flows[0].processors[0].includ: unknown key; did you mean include?",
                "17:3: metrics.listn: unknown key; did you mean listen?",
                "19:3: cloudwatch.namespce: unknown key; did you mean namespace?",
                "20:1: state_dri: unknown key; did you mean state_dir?",
            ]
        );
    }

    #[test]
    fn an_unknown_key_with_no_near_name_points_at_the_readme() {
        assert_eq!(
            problems("flows:\n  - name: a\n    compress_everything: yes\n"),
            ["3:5: flows[0].compress_everything: unknown key; the keys of a flow are listed under \"Flows\" in the README"]
        );
        assert_eq!(
            problems("flows:\n  - processors:\n      - type: redact\n        zzzz: 1\n"),
            ["4:9: flows[0].processors[0].zzzz: unknown key; the keys of a redact processor are listed under \"Processors\" in the README"]
        );
    }

    #[test]
    fn plain_numbers_and_booleans_are_not_strings_and_quoted_ones_are() {
        assert_eq!(
            problems("aws:\n  region: 42\n  profile: '42'\nflows:\n  - kinesis_stream: true\n    name: ~\n    firehose_stream: !!str false\n    files: [/a, 7, \"8\"]\n"),
            [
                "2:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string",
                "5:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string",
                "6:11: flows[0].name: expected a string, found `~`, which YAML reads as no value; give a value, or leave the key out",
                "8:17: flows[0].files[1]: expected a string, found `7`, which YAML reads as a number; write it in quotes (\"7\") to make it a string",
            ]
        );
    }

    #[test]
    fn strings_lists_and_mappings_where_others_are_expected_are_reported() {
        assert_eq!(
            problems("watch_config: yes\nmax_open_files: '64'\nmemory_budget: -1\nlog_file_keep: 1.5\naws: [a]\nflows:\n  name: a\ncloudwatch:\n  enabled: 'true'\n  aws: text\n"),
            [
                "1:15: watch_config: expected true or false, found the text `yes`",
                "2:17: max_open_files: expected a whole number, found the quoted text `64`; write it without quotes",
                "3:16: memory_budget: `-1` is negative; give a whole number from 0 up",
                "4:16: log_file_keep: `1.5` is not a whole number",
                "5:6: aws: expected a mapping, found a list",
                "7:3: flows: expected a list, found a mapping",
                "9:12: cloudwatch.enabled: expected true or false, found the quoted text `true`; write it without quotes",
                "10:8: cloudwatch.aws: expected a mapping, found the text `text`",
            ]
        );
        assert_eq!(
            problems("flows:\n  - files: {a: b}\n    partition_key: [a]\n    processors: [{type: to_xml}, {type: filtr}, {include: a}]\n    name:\n      - a\n"),
            [
                "2:13: flows[0].files: expected a string or a list, found a mapping",
                "3:20: flows[0].partition_key: expected a string or a mapping, found a list",
                "4:25: flows[0].processors[0].type: `to_xml` is not a processor type; give one of single_line, csv_to_json, log_to_json, filter, redact, add_ec2_metadata, add_metadata",
                "4:41: flows[0].processors[1].type: `filtr` is not a processor type; did you mean filter?",
                "4:50: flows[0].processors[2]: has no type; give one of single_line, csv_to_json, log_to_json, filter, redact, add_ec2_metadata, add_metadata",
                "6:7: flows[0].name: expected a string, found a list",
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_reported_where_they_are_with_their_path() {
        assert_eq!(
            problems("state_dir: /a\nstate_dir: /b\nflows:\n  - name: a\n    max_in_flight: 2\n    aws:\n      region: x\n      region: y\n    max_in_flight: 3\n    processors:\n      - type: add_metadata\n        fields: {env: a, env: b}\n"),
            [
                "2:1: state_dir: duplicate key (first written at 1:1); remove one",
                "8:7: flows[0].aws.region: duplicate key (first written at 7:7); remove one",
                "9:5: flows[0].max_in_flight: duplicate key (first written at 5:5); remove one",
                "12:26: flows[0].processors[0].fields.env: duplicate key (first written at 12:18); remove one",
            ]
        );
        // The first is kept.
        let document = read("state_dir: /a\nstate_dir: /b\n").expect("readable");
        assert_eq!(document.value["state_dir"], Value::String("/a".into()));
    }

    #[test]
    fn free_form_fields_keep_any_value_as_yaml_types_it() {
        let document = read(
            "flows:\n  - processors:\n      - type: add_metadata\n        fields: {env: prod, tier: 2, ratio: 0.5, on: true, none: ~, list: [1, a], nested: {a: 1}}\n",
        )
        .expect("readable");
        assert!(document.problems.is_empty(), "{:?}", document.problems);
        let fields = &document.value["flows"][0]["processors"][0]["fields"];
        assert_eq!(fields["tier"], Value::Number(2.into()));
        assert_eq!(fields["ratio"], Value::Number(0.5.into()));
        assert_eq!(fields["on"], Value::Bool(true));
        assert_eq!(fields["none"], Value::Null);
        assert_eq!(fields["nested"]["a"], Value::Number(1.into()));
        assert_eq!(
            problems(
                "flows:\n  - processors:\n      - type: add_metadata\n        fields: [env]\n"
            ),
            ["4:17: flows[0].processors[0].fields: expected a mapping, found a list"]
        );
    }

    #[test]
    fn empty_blocks_are_as_if_not_written() {
        let document = read("aws:\nmetrics: ~\nflows:\n").expect("readable");
        assert!(document.problems.is_empty(), "{:?}", document.problems);
        assert_eq!(document.value, Value::Mapping(Mapping::new()));
    }

    #[test]
    fn aliases_are_expanded_and_bombs_refused() {
        let document =
            read("aws: &shared\n  region: eu-west-1\nflows:\n  - name: a\n    aws: *shared\n")
                .expect("readable");
        assert!(document.problems.is_empty(), "{:?}", document.problems);
        assert_eq!(
            document.value["flows"][0]["aws"]["region"],
            Value::String("eu-west-1".into())
        );
        let mut bomb = String::from("a: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let refused = read(&bomb).expect_err("too many values");
        assert!(refused.message.contains("more than"), "{refused:?}");
    }

    #[test]
    fn syntax_errors_stand_alone_with_their_position() {
        let problem = read("flows:\n  - name: [unclosed\n").expect_err("not YAML");
        assert!(
            problem.line.is_some() && problem.column.is_some(),
            "{problem:?}"
        );
        assert!(
            problem.message.starts_with("not valid YAML: "),
            "{problem:?}"
        );
        let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        assert!(read(&deep)
            .expect_err("too deep")
            .message
            .contains("nest more than 128"));
        let list = read("- a\n- b\n").expect_err("not a mapping");
        assert_eq!(
            list.message,
            "the file must be a mapping of keys such as state_dir and flows, not a list"
        );
    }

    #[test]
    fn a_second_document_and_foreign_tags_are_reported() {
        assert_eq!(
            problems("state_dir: /a\n---\nstate_dir: /b\n"),
            ["2:1: : a second YAML document starts here; kinship reads one document per file"]
        );
        assert_eq!(
            problems("aws:\n  region: !secret eu-west-1\n"),
            ["2:19: aws.region: the tag `!secret` means nothing to kinship; remove it"]
        );
    }

    #[test]
    fn secret_like_values_are_quoted_as_a_prefix() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let found = problems(&format!("max_open_files: {secret}\n{secret}: 1\n"));
        assert_eq!(
            found,
            [
                "1:17: max_open_files: expected a whole number, found the text `wJal… (40 characters)`",
                "2:1: wJal… (40 characters): unknown key; the keys of the top level are listed under \"Top level\" in the README",
            ]
        );
    }

    #[test]
    fn the_edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("regoin", "region"), 1);
        assert_eq!(edit_distance("max_batch_agee", "max_batch_age"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            nearest("Region", ["region", "profile"].into_iter()),
            Some("region")
        );
        assert_eq!(
            nearest("maxBatchAge", ["max_batch_age"].into_iter()),
            Some("max_batch_age")
        );
        assert_eq!(nearest("type", ["name", "files"].into_iter()), None);
    }

    #[test]
    fn positions_point_at_keys_list_items_and_mappings() {
        let document = read("state_dir: /x\naws:\n  region: eu-west-1\nflows:\n  - name: a\n    files: [/a, /b]\n  - name: b\n    max_batch_age: 5q\n").expect("readable");
        let at = |key: &str| document.positions.find(key).map(|p| (p.line, p.column));
        assert_eq!(at("state_dir"), Some((1, 1)));
        assert_eq!(at("aws.region"), Some((3, 3)));
        assert_eq!(at("flows[1].max_batch_age"), Some((8, 5)));
        assert_eq!(at("flows[0].files[1]"), Some((6, 17)));
        assert_eq!(at("flows[1]"), Some((7, 5)));
        // A missing key points at its parent.
        assert_eq!(at("flows[1].kinesis_stream"), Some((7, 5)));
    }

    /// Every mapping's shape, reachable from the top level, with its path for messages.
    fn shapes() -> Vec<&'static Shape> {
        fn visit(kind: Kind, out: &mut Vec<&'static Shape>) {
            match kind {
                Kind::Mapping(shape) => {
                    if !out.iter().any(|seen| std::ptr::eq(*seen, shape)) {
                        out.push(shape);
                        for (_, kind) in shape.keys {
                            visit(*kind, out);
                        }
                    }
                }
                Kind::Typed(variants) => {
                    for variant in variants {
                        visit(Kind::Mapping(&variant.shape), out);
                    }
                }
                Kind::List(item) => visit(*item, out),
                Kind::Either(first, second) => {
                    visit(*first, out);
                    visit(*second, out);
                }
                Kind::String | Kind::Bool | Kind::WholeNumber | Kind::FreeMapping => {}
            }
        }
        let mut out = Vec::new();
        visit(Kind::Mapping(&TOP_LEVEL), &mut out);
        out
    }

    /// The keys serde's derive expects of `T`, read from the error a key no struct has draws.
    fn serde_keys<T: serde::de::DeserializeOwned + std::fmt::Debug>(
        mut sample: Mapping,
    ) -> Vec<String> {
        sample.insert("zz_no_such_key".into(), Value::Null);
        let error = serde_yaml::from_value::<T>(Value::Mapping(sample))
            .expect_err("an unknown key is refused")
            .to_string();
        let Some((_, expected)) = error.split_once("expected") else {
            return Vec::new();
        };
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    fn shape_keys(shape: &Shape) -> Vec<String> {
        let mut keys: Vec<String> = shape
            .keys
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .filter(|name| name != TYPE_KEY)
            .collect();
        keys.sort();
        keys
    }

    fn sorted(mut keys: Vec<String>) -> Vec<String> {
        keys.retain(|name| name != TYPE_KEY);
        keys.sort();
        keys
    }

    #[test]
    fn the_shape_and_the_raw_types_name_the_same_keys() {
        use super::super::raw;
        let mut checked: Vec<&Shape> = Vec::new();
        let mut compare = |shape: &'static Shape, serde: Vec<String>| {
            assert_eq!(shape_keys(shape), sorted(serde), "{}", shape.what);
            checked.push(shape);
        };
        compare(&TOP_LEVEL, serde_keys::<raw::RawConfig>(Mapping::new()));
        compare(&AWS, serde_keys::<raw::RawAws>(Mapping::new()));
        compare(
            &ASSUME_ROLE,
            serde_keys::<raw::RawAssumeRole>(Mapping::new()),
        );
        compare(&TLS, serde_keys::<raw::RawTls>(Mapping::new()));
        compare(&METRICS, serde_keys::<raw::RawMetrics>(Mapping::new()));
        compare(
            &CLOUDWATCH,
            serde_keys::<raw::RawCloudWatch>(Mapping::new()),
        );
        compare(&FLOW, serde_keys::<raw::RawFlow>(Mapping::new()));
        compare(
            &KEY_EXTRACTION,
            serde_keys::<raw::RawKeyExtraction>(Mapping::new()),
        );
        compare(
            &REDACT_PATTERN,
            serde_keys::<raw::RawRedactPattern>(Mapping::new()),
        );
        for variant in PROCESSORS {
            let mut sample = Mapping::new();
            sample.insert(TYPE_KEY.into(), variant.name.into());
            compare(&variant.shape, serde_keys::<raw::RawProcessor>(sample));
        }
        let mut unknown_type = Mapping::new();
        unknown_type.insert(TYPE_KEY.into(), "zz_no_such_type".into());
        let error = serde_yaml::from_value::<raw::RawProcessor>(Value::Mapping(unknown_type))
            .expect_err("an unknown type is refused")
            .to_string();
        let serde_types: Vec<&str> = error
            .split_once("expected")
            .map(|(_, names)| names.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let shape_types: Vec<&str> = PROCESSORS.iter().map(|variant| variant.name).collect();
        assert_eq!(shape_types, serde_types);
        // Every shape reachable from the top level was compared.
        for shape in shapes() {
            assert!(
                checked.iter().any(|seen| std::ptr::eq(*seen, shape)),
                "{} is not compared with its raw type",
                shape.what
            );
        }
    }

    /// A value of `kind`; `alternative` chooses the side of an `Either`.
    fn sample(kind: Kind, alternative: usize) -> Value {
        match kind {
            Kind::String => "x".into(),
            Kind::Bool => true.into(),
            Kind::WholeNumber => 1.into(),
            Kind::FreeMapping => {
                let mut any = Mapping::new();
                any.insert("k".into(), 1.into());
                Value::Mapping(any)
            }
            // A list of items that can be refused also holds a hole where one was.
            Kind::List(Kind::Typed(variants)) => Value::Sequence(
                variants
                    .iter()
                    .map(|variant| sample_mapping(&variant.shape, alternative, Some(variant.name)))
                    .chain([Value::Null])
                    .collect(),
            ),
            Kind::List(Kind::String) => Value::Sequence(vec![sample(Kind::String, alternative)]),
            Kind::List(item) => Value::Sequence(vec![sample(*item, alternative), Value::Null]),
            Kind::Mapping(shape) => sample_mapping(shape, alternative, None),
            Kind::Typed(variants) => {
                sample_mapping(&variants[0].shape, alternative, Some(variants[0].name))
            }
            Kind::Either(first, second) => {
                sample(if alternative == 0 { *first } else { *second }, alternative)
            }
        }
    }

    fn sample_mapping(shape: &Shape, alternative: usize, type_name: Option<&str>) -> Value {
        let mut out = Mapping::new();
        for (name, kind) in shape.keys {
            let value = match type_name {
                Some(type_name) if *name == TYPE_KEY => type_name.into(),
                _ => sample(*kind, alternative),
            };
            out.insert((*name).into(), value);
        }
        Value::Mapping(out)
    }

    #[test]
    fn every_key_of_every_kind_and_every_hole_reads_into_the_raw_types() {
        for alternative in 0..2 {
            let document = sample(Kind::Mapping(&TOP_LEVEL), alternative);
            let raw: Result<super::super::raw::RawConfig, _> = serde_yaml::from_value(document);
            assert!(raw.is_ok(), "alternative {alternative}: {raw:?}");
        }
    }
}
