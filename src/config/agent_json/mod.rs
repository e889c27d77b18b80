//! The Kinesis Agent's `agent.json`, read as kinship's YAML: JSON with `//` and `/* */`
//! comments, flat dotted keys (`"cloudwatch.emitMetrics"` is one key), numbers and booleans
//! also written as strings, and the flows of every file in `agent.d/` beside it. Each key
//! becomes the kinship key that does the same; a key kinship does without is a warning naming
//! it and why; a key whose meaning kinship cannot keep is an error. `kinship migrate` prints
//! the YAML; `kinship run` reads an agent.json through the same translation.
//!
//! This module gathers the flows and runs the translation; `jsonc` and `values` read the
//! file, `globals`, `flows` and `processors` translate its keys, `yaml_out` writes the YAML.

mod endpoint;
mod flows;
mod globals;
mod jsonc;
mod processors;
#[cfg(test)]
mod tests;
mod values;
mod yaml_out;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Problem;
use flows::FlowBlock;
use globals::GlobalKeys;
use jsonc::{parse_object, problem, strip_comments};
use yaml_out::Writer;

/// An agent.json turned into kinship's YAML.
#[derive(Debug)]
pub(super) struct Migration {
    /// The YAML, with a comment wherever the meaning differs.
    pub(super) yaml: String,
    /// Keys kinship does without, each with why.
    pub(super) warnings: Vec<String>,
}

/// Whether `text` (read from `path`) is an agent.json: by its extension, or by a JSON object
/// where YAML would start.
pub(super) fn looks_like_agent_json(path: &Path, text: &str) -> bool {
    if path.extension().is_some_and(|ext| ext == "json") {
        return true;
    }
    strip_comments(text).trim_start().starts_with('{')
}

/// The translation under way: the YAML written so far, and what there is to say about it.
#[derive(Default)]
struct Translation {
    yaml: Writer,
    /// Keys kinship does without, each with why.
    warnings: Vec<String>,
    /// Keys whose meaning kinship cannot keep.
    problems: Vec<Problem>,
}

/// One flow as read, with the text of the file it is written in.
struct SourcedFlow {
    flow: Map<String, Value>,
    text: String,
}

/// Reads the agent.json at `path` (its text `text`) and the flows of `agent.d/` beside it.
pub(super) fn migrate(path: &Path, text: &str) -> Result<Migration, Vec<Problem>> {
    let root = parse_object(text).map_err(|message| {
        vec![Problem {
            line: None,
            column: None,
            key: String::new(),
            message,
        }]
    })?;
    let mut translation = Translation::default();
    let mut flows = listed_flows(&root, text, &mut translation.problems);
    flows.extend(agent_d_flows(path, &mut translation.warnings));
    if flows.is_empty() {
        translation
            .problems
            .push(problem(text, "flows", "there are no flows"));
    }
    translation.yaml.line(
        0,
        &format!(
            "# Migrated from {} by `kinship migrate`. Comments mark where kinship differs.",
            path.display()
        ),
    );
    GlobalKeys { root: &root, text }.write(&mut translation);
    translation.yaml.line(0, "flows:");
    let mut names: Vec<String> = Vec::new();
    for (index, SourcedFlow { flow, text }) in flows.iter().enumerate() {
        let block = FlowBlock {
            index,
            flow,
            text,
            root: &root,
        };
        block.write(&mut names, &mut translation);
    }
    let Translation {
        yaml,
        warnings,
        problems,
    } = translation;
    if problems.is_empty() {
        Ok(Migration {
            yaml: yaml.into_text(),
            warnings,
        })
    } else {
        Err(problems)
    }
}

/// The flows of agent.json itself; a problem for a `flows` that is not a list of objects.
fn listed_flows(
    root: &Map<String, Value>,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Vec<SourcedFlow> {
    let mut flows = Vec::new();
    match root.get("flows") {
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Object(flow) => flows.push(SourcedFlow {
                        flow: flow.clone(),
                        text: text.to_owned(),
                    }),
                    _ => problems.push(problem(text, "flows", "each flow must be an object")),
                }
            }
        }
        Some(_) => problems.push(problem(text, "flows", "must be a list")),
        None => {}
    }
    flows
}

/// The flows of the files in `agent.d/` beside `path`, by file name. A file that is not JSON
/// or has no flows list is skipped with a warning, as the Kinesis Agent skips it; an item
/// that is not an object is skipped.
fn agent_d_flows(path: &Path, warnings: &mut Vec<String>) -> Vec<SourcedFlow> {
    let mut flows = Vec::new();
    for (file, file_text) in agent_d_files(path) {
        match parse_object(&file_text) {
            Ok(other) => match other.get("flows") {
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::Object(flow) = item {
                            flows.push(SourcedFlow {
                                flow: flow.clone(),
                                text: file_text.clone(),
                            });
                        }
                    }
                }
                _ => warnings.push(format!(
                    "{}: has no flows list; skipped, as the Kinesis Agent does",
                    file.display()
                )),
            },
            Err(message) => warnings.push(format!(
                "{}: {message}; skipped, as the Kinesis Agent does",
                file.display()
            )),
        }
    }
    flows
}

/// The readable files of `agent.d/` beside `path`, by name.
fn agent_d_files(path: &Path) -> Vec<(PathBuf, String)> {
    let directory = path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("agent.d");
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).ok()?;
            Some((file, text))
        })
        .collect()
}
