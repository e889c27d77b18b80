//! The house plan, kept: reads `src/` and fails when a module imports across the layers of
//! ARCHITECTURE.md, naming the file and line.
//!
//! - The bottom layer (plain record types, the shared limits, the shard map, patterns,
//!   compression, the metrics registry, the log limiter, …) imports nothing above it.
//! - `config` imports only the bottom layer.
//! - A component (`source`, `pipeline`, `sink`, `checkpoint`, …) imports only the bottom layer
//!   and `config`, never a sibling: data and acknowledgements pass between components over
//!   channels that `app` wires.
//! - `app` (the composition root) and `cli` (the command line) may import anything below them.
//! - No import cycle between top-level modules, at any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The bottom layer, each module importing only those before it in this list.
const BOTTOM: &[&str] = &[
    "clock",
    "error_chain",
    "log_limit",
    "pattern",
    "secrets",
    "logfile",
    "limits",
    "record",
    "compression",
    "shard_map",
    "metrics",
];
const CONFIG: &str = "config";
const COMPONENTS: &[&str] = &[
    "source",
    "pipeline",
    "sink",
    "checkpoint",
    "reload",
    "exporter",
    "cloudwatch",
    "service",
    "logging",
];
const TOP: &[&str] = &["app", "cli"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Bottom(usize),
    Config,
    Component,
    Top,
}

fn layer_of(module: &str) -> Option<Layer> {
    if let Some(place) = BOTTOM.iter().position(|m| *m == module) {
        return Some(Layer::Bottom(place));
    }
    if module == CONFIG {
        return Some(Layer::Config);
    }
    if COMPONENTS.contains(&module) {
        return Some(Layer::Component);
    }
    TOP.contains(&module).then_some(Layer::Top)
}

/// One `crate::…` reference from one top-level module to another.
#[derive(Clone, Debug)]
struct Import {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

impl fmt::Display for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}`",
            self.file.display(),
            self.line,
            self.from,
            self.to
        )
    }
}

/// The top-level modules `lib.rs` declares.
fn top_level_modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').to_owned())
        })
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read a source directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// A line without its `//` comment (a `//` inside a string literal is kept).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match c {
            '"' if previous != '\\' => in_string = !in_string,
            '/' if !in_string && previous == '/' => return &line[..at - 1],
            _ => {}
        }
        previous = c;
    }
    line
}

/// The top-level module names a line refers to through `crate::`: `crate::sink::X`, and each
/// first name inside `crate::{sink::X, pipeline}`.
fn crate_references(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut name = String::new();
            let mut expecting_name = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expecting_name = true,
                    c if expecting_name && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ if expecting_name && !name.is_empty() => {
                        names.push(std::mem::take(&mut name));
                        expecting_name = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                names.push(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// Every reference from one top-level module to another, in the tree at `src`.
fn imports(src: &Path) -> (Vec<String>, Vec<Import>) {
    let modules = top_level_modules(src);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|part| part.as_os_str().to_str())
            .unwrap_or_default();
        let from = first.trim_end_matches(".rs").to_owned();
        if !modules.contains(&from) {
            continue; // lib.rs and main.rs
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") {
                continue;
            }
            for to in crate_references(code_of(line)) {
                if to != from && modules.contains(&to) {
                    found.push(Import {
                        from: from.clone(),
                        to,
                        file: Path::new("src").join(relative),
                        line: index + 1,
                    });
                }
            }
        }
    }
    (modules, found)
}

/// What breaks the plan in the tree at `src`, one line each.
fn violations(src: &Path) -> Vec<String> {
    let (modules, imports) = imports(src);
    let mut problems = Vec::new();
    for module in &modules {
        if layer_of(module).is_none() {
            problems.push(format!(
                "src/lib.rs: `{module}` is in no layer; add it to the plan in tests/architecture.rs and ARCHITECTURE.md"
            ));
        }
    }
    for import in &imports {
        let (Some(from), Some(to)) = (layer_of(&import.from), layer_of(&import.to)) else {
            continue;
        };
        let why = match (from, to) {
            (Layer::Bottom(a), Layer::Bottom(b)) if b >= a => {
                Some("the bottom layer imports only the bottom modules listed before it")
            }
            (Layer::Bottom(_), Layer::Config | Layer::Component | Layer::Top) => {
                Some("the bottom layer imports nothing above it")
            }
            (Layer::Config, Layer::Component | Layer::Top) => {
                Some("config imports only the bottom layer")
            }
            (Layer::Component, Layer::Component) => {
                Some("a component never imports a sibling; pass data over a channel that app wires, or move the shared type to the bottom layer")
            }
            (Layer::Component, Layer::Top) => Some("a component never imports app or cli"),
            _ => None,
        };
        if let Some(why) = why {
            problems.push(format!("{import}: {why}"));
        }
    }
    problems.extend(cycles(&imports));
    problems
}

/// Each import cycle between top-level modules, with the imports that close it.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for import in imports {
        edges
            .entry(import.from.as_str())
            .or_default()
            .entry(import.to.as_str())
            .or_insert(import);
    }
    let mut reported = BTreeSet::new();
    let mut problems = Vec::new();
    for start in edges.keys() {
        // Breadth-first from `start`, back to `start`: the shortest cycle through it.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*start]);
        let mut closing = None;
        while let Some(at) = queue.pop_front() {
            for next in edges.get(at).into_iter().flat_map(|to| to.keys()) {
                if next == start {
                    closing = Some(at);
                    break;
                }
                if !came_from.contains_key(next) {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let Some(mut at) = closing else { continue };
        let mut path = vec![*start];
        let mut back = vec![at];
        while at != *start {
            at = came_from[at];
            if at != *start {
                back.push(at);
            }
        }
        back.reverse();
        path.extend(back);
        let mut key = path.clone();
        key.sort_unstable();
        if !reported.insert(key) {
            continue;
        }
        let steps: Vec<String> = path
            .iter()
            .zip(path.iter().cycle().skip(1))
            .map(|(from, to)| edges[from][to].to_string())
            .collect();
        problems.push(format!("import cycle: {}", steps.join("; ")));
    }
    problems
}

#[test]
fn the_source_tree_keeps_the_layers_of_the_house_plan() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    assert!(
        problems.is_empty(),
        "the layers of ARCHITECTURE.md are broken:\n{}",
        problems.join("\n")
    );
}

/// A tree with the plan's modules, each importing what `imports` says.
fn tree(imports: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    let mut lib = String::new();
    for module in BOTTOM.iter().chain([&CONFIG]).chain(COMPONENTS).chain(TOP) {
        lib.push_str(&format!("pub mod {module};\n"));
        let mut text = String::from("//! A module.\n");
        for (from, line) in imports {
            if from == module {
                text.push_str(line);
                text.push('\n');
            }
        }
        if *module == "sink" {
            std::fs::create_dir_all(src.join("sink")).expect("mkdir");
            std::fs::write(src.join("sink/mod.rs"), "mod kinesis;\n").expect("write");
            std::fs::write(src.join("sink/kinesis.rs"), &text).expect("write");
        } else {
            std::fs::write(src.join(format!("{module}.rs")), &text).expect("write");
        }
    }
    std::fs::write(src.join("lib.rs"), lib).expect("write lib.rs");
    dir
}

#[test]
fn a_sibling_import_fails_naming_the_file_and_line() {
    let allowed = tree(&[
        ("sink", "use crate::config::FlowConfig;"),
        ("sink", "use crate::{record::Batch, shard_map::ShardMap};"),
        (
            "pipeline",
            "use crate::limits::MemoryBudget; // crate::sink::X in a comment",
        ),
        ("app", "use crate::sink::Sink;"),
        ("record", "use crate::limits::Reservation;"),
    ]);
    assert_eq!(violations(allowed.path()), Vec::<String>::new());

    let sibling = tree(&[(
        "sink",
        "use crate::config::FlowConfig;\nuse crate::{record::Batch, pipeline::shards::ShardMap};",
    )]);
    let problems = violations(sibling.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "src/sink/kinesis.rs:3: `sink` imports `pipeline`: a component never imports a sibling"
        ),
        "{problems:?}"
    );
}

#[test]
fn upward_imports_and_cycles_fail() {
    let upward = tree(&[
        ("config", "use crate::pipeline::processors::Processor;"),
        ("record", "use crate::metrics::FlowMetrics;"),
    ]);
    let problems = violations(upward.path());
    assert!(
        problems.iter().any(|p| p.starts_with(
            "src/config.rs:2: `config` imports `pipeline`: config imports only the bottom layer"
        )),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with(
            "src/record.rs:2: `record` imports `metrics`: the bottom layer imports only the bottom modules listed before it"
        )),
        "{problems:?}"
    );

    let cycle = tree(&[
        ("app", "use crate::cli::Args;"),
        ("cli", "use crate::app::run;"),
    ]);
    let problems = violations(cycle.path());
    assert_eq!(
        problems,
        vec![
            "import cycle: src/app.rs:2: `app` imports `cli`; src/cli.rs:2: `cli` imports `app`"
                .to_owned()
        ],
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let dir = tree(&[]);
    let lib = dir.path().join("lib.rs");
    let mut text = std::fs::read_to_string(&lib).expect("read");
    text.push_str("pub mod gadgets;\n");
    std::fs::write(&lib, text).expect("write");
    std::fs::write(dir.path().join("gadgets.rs"), "").expect("write");
    assert_eq!(
        violations(dir.path()),
        vec!["src/lib.rs: `gadgets` is in no layer; add it to the plan in tests/architecture.rs and ARCHITECTURE.md".to_owned()]
    );
}
