//! The agent's configuration: the YAML file checked against its shape (`schema`: unknown keys,
//! duplicate keys, wrong types), read into raw serde types, then validated into types that
//! cannot be wrong. Every problem is reported at once, in file order, each with file, line,
//! column and key.
//!
//! The settings are in `model` (and `processor_spec`); the checks are in `global` (top-level
//! keys), `flow` and `sending` (each flow), `processing` (each flow's processors) and `aws`,
//! on the state kept by `checker`; `problem` says how a problem is shown.

mod agent_json;
mod aws;
mod checker;
mod flow;
mod global;
mod journald;
pub mod limits;
mod locate;
mod model;
pub mod paths;
mod problem;
mod processing;
mod processor_spec;
mod raw;
mod schema;
mod sending;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use aws::{
    arn_region, AssumeRole, AwsSettings, CredentialSource, Destination, DestinationKind, Secret,
};
use checker::Checker;
pub use journald::journald_priority_name;
pub use model::{
    CheckpointCommit, CloudWatchSettings, Combine, Config, DataPath, Delivery, EventLogSource,
    FlowConfig, InitialPosition, InstanceDimension, JournaldSource, KeyField, LogFileSettings,
    LogFormat, MetricsSettings, Oversize, PartitionKey, ProgressFormat, ShippedFiles, WireFormat,
    DEFAULT_CLOUDWATCH_NAMESPACE, DEFAULT_METRICS_LISTEN, EXTRACTED_KEY_MAX_BYTES,
};
pub use paths::{default_paths, DefaultPaths, DEFAULT_CONFIG_PATH};
use problem::quote_values_in;
pub use problem::{ConfigError, Problem};
pub use processor_spec::{
    BuiltinRedaction, Ec2Settings, LineParser, LogLineFormat, OnError, ProcessorSpec, RedactRule,
};
use raw::RawConfig;

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        if agent_json::looks_like_agent_json(path, &text) {
            return Config::from_agent_json(path, &text);
        }
        Config::parse(path, &text)
    }

    /// Reads a Kinesis Agent agent.json (and the flows of agent.d/ beside it) as the YAML
    /// `kinship migrate` prints for it.
    pub fn from_agent_json(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let migration =
            agent_json::migrate(path, text).map_err(|problems| ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })?;
        let mut config = Config::parse(path, &migration.yaml).map_err(|error| match error {
            // Lines of the translation mean nothing in the agent.json: name the keys only.
            ConfigError::Invalid { path, problems } => ConfigError::Invalid {
                path,
                problems: problems
                    .into_iter()
                    .map(|problem| Problem {
                        line: None,
                        column: None,
                        message: format!(
                            "{} (as translated; see kinship migrate)",
                            problem.message
                        ),
                        ..problem
                    })
                    .collect(),
            },
            other => other,
        })?;
        config.migration_warnings = migration.warnings;
        Ok(config)
    }

    /// The YAML `kinship migrate` prints for the agent.json at `path`: every key kinship does
    /// without listed first as comments.
    pub fn migrate_agent_json(path: &Path) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let migration =
            agent_json::migrate(path, &text).map_err(|problems| ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })?;
        let mut out = String::new();
        for warning in &migration.warnings {
            out.push_str(&format!("# Not carried over: {warning}\n"));
        }
        out.push_str(&migration.yaml);
        Ok(out)
    }

    /// Validates `text` as if read from `path` (which only names the file in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        if text.trim().is_empty() {
            return Err(invalid(vec![Problem {
                line: None,
                column: None,
                key: String::new(),
                message: "the file is empty; it needs at least `flows`".into(),
            }]));
        }
        // Unknown keys, duplicate keys and wrong types first, in every mapping; then what is
        // left is read and checked for what its values mean.
        let document = schema::read(text).map_err(|problem| invalid(vec![problem]))?;
        let mut problems = document.problems;
        let config = match serde_yaml::from_value::<RawConfig>(document.value) {
            Ok(raw) => {
                let mut checker = Checker {
                    positions: &document.positions,
                    rejected: &document.rejected,
                    problems: Vec::new(),
                };
                let config = checker.config(path, raw);
                problems.extend(checker.problems);
                Some(config)
            }
            // The schema's pass leaves only what the raw types take (a unit test holds the two
            // together), so this is a bug: say so rather than panic.
            Err(error) => {
                problems.push(Problem {
                    line: None,
                    column: None,
                    key: String::new(),
                    message: format!(
                        "passed the schema but could not be read ({}); please report this as a bug",
                        quote_values_in(&error.to_string())
                    ),
                });
                None
            }
        };
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => {
                // In file order; problems of the whole file (no position) last. The sort is
                // stable, so problems at one place keep the order they were found in.
                problems.sort_by_key(|problem| {
                    (
                        problem.line.unwrap_or(usize::MAX),
                        problem.column.unwrap_or(0),
                    )
                });
                Err(invalid(problems))
            }
        }
    }
}
