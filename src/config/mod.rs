//! The agent's configuration: the YAML file checked against its shape (`schema`: unknown keys,
//! duplicate keys, wrong types), read into raw serde types, then validated into types that
//! cannot be wrong. Every problem is reported at once, in file order, each with file, line,
//! column and key.

mod agent_json;
mod aws;
pub mod limits;
mod locate;
pub mod paths;
mod processing;
mod processor_spec;
mod raw;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use aws::{
    arn_region, AssumeRole, AwsSettings, CredentialSource, Destination, DestinationKind, Secret,
};
use locate::KeyPositions;
pub use paths::{default_paths, DefaultPaths, DEFAULT_CONFIG_PATH};
pub use processor_spec::{
    BuiltinRedaction, Ec2Settings, LineParser, LogLineFormat, OnError, ProcessorSpec, RedactRule,
};
use raw::{RawCloudWatch, RawConfig, RawFlow};
use schema::Rejected;

use crate::compression::Compression;
use crate::pattern::Pattern;
use crate::secrets::quoted;

/// Open files at once, over all flows: well under the usual soft limit of 1,024 descriptors
/// once the network's sockets and the agent's own files are counted.
const DEFAULT_MAX_OPEN_FILES: usize = 768;
/// The memory budget's bounds: room for a few reads, and 16 GiB.
const MIN_MEMORY_BUDGET: usize = 1024 * 1024;
const MAX_MEMORY_BUDGET: usize = 16 * 1024 * 1024 * 1024;
/// `log_file_max_bytes`: 10 MiB unless set, from 64 KiB to 1 GiB.
const DEFAULT_LOG_FILE_BYTES: usize = 10 * 1024 * 1024;
const MIN_LOG_FILE_BYTES: usize = 64 * 1024;
const MAX_LOG_FILE_BYTES: usize = 1024 * 1024 * 1024;
/// `log_file_keep`: rotated log files kept, 5 unless set, at most 1,000.
const DEFAULT_LOG_FILES_KEPT: usize = 5;
const MAX_LOG_FILES_KEPT: usize = 1000;
/// Durations such as `ignore_older` and `checkpoint_expiry` may be this long.
const LONGEST_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this configuration was read from.
    pub source: PathBuf,
    pub state_dir: PathBuf,
    pub shutdown_grace: Duration,
    pub checkpoint_interval: Duration,
    /// How acknowledged offsets reach the disk.
    pub checkpoint_commit: CheckpointCommit,
    pub progress_interval: Duration,
    /// Checkpoints of files no scan has found for this long are forgotten.
    pub checkpoint_expiry: Duration,
    /// Most files the agent holds open at once, over all flows.
    pub max_open_files: usize,
    /// Most bytes of records read and not yet delivered, over all flows.
    pub memory_budget: usize,
    /// Where flows in dry-run mode write their batches; `None` for standard output.
    pub dry_run_output: Option<PathBuf>,
    /// Whether the file holds a secret access key (it should then be readable by its owner only).
    pub holds_secret_keys: bool,
    /// The Prometheus endpoint, when asked for.
    pub metrics: Option<MetricsSettings>,
    /// A log filter (`info`, `debug`, `kinship=debug,info`); `RUST_LOG` overrides it.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Where logs go instead of standard error, and how that file is rotated.
    pub log_file: LogFileSettings,
    /// Whether a change to the config file reloads it, as SIGHUP does.
    pub watch_config: bool,
    /// Publishing metrics to CloudWatch, when enabled.
    pub cloudwatch: Option<CloudWatchSettings>,
    /// Keys of a Kinesis Agent agent.json that kinship does without, each with why.
    pub migration_warnings: Vec<String>,
    pub flows: Vec<FlowConfig>,
}

/// The log file: `log_file`, `log_file_max_bytes` and `log_file_keep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFileSettings {
    /// `None` for standard error (the Windows service then uses its default log file).
    pub path: Option<PathBuf>,
    /// A file is rotated before it grows past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept beside the current one.
    pub keep: usize,
}

/// Where reading starts in a file that has no checkpoint yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialPosition {
    StartOfFile,
    EndOfFile,
}

/// How each record's partition key is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionKey {
    /// A random decimal number per record: records spread over every shard.
    Random,
    /// No key: Firehose records have none.
    None,
    /// A hash of the record's bytes: equal records go to the same shard.
    Deterministic,
    /// The same key for every record: one shard, in order.
    Fixed(String),
    /// The record's stable id (its file's start hash and its offset): consumers can drop
    /// the duplicates that at-least-once delivery may send.
    RecordId,
    /// A key taken from the record itself, cut to 256 characters; `fallback` (never itself
    /// extracted) for records where nothing is found.
    Extracted {
        from: KeyField,
        fallback: Box<PartitionKey>,
    },
}

/// Where in a record an extracted partition key is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyField {
    /// The first capture group of the first match (the whole match if there is no group).
    Regex(Pattern),
    /// The field at this path of a JSON object record (`a.b` → `["a", "b"]`); strings as they
    /// are, numbers and booleans as written.
    Json(Vec<String>),
}

/// Bytes an extracted key may take: 256 characters of up to 4 bytes.
pub const EXTRACTED_KEY_MAX_BYTES: usize = 4 * limits::PARTITION_KEY_MAX_CHARS;

impl PartitionKey {
    /// The most bytes a key of this kind can take, so lines can be cut to leave room for it.
    pub fn max_len(&self) -> usize {
        match self {
            PartitionKey::Random => 20,
            PartitionKey::None => 0,
            PartitionKey::Deterministic => 16,
            PartitionKey::Fixed(key) => key.len(),
            // 16 hex digits + '-' + 20 digits, or device.inode in hex + '-' + 20 digits.
            PartitionKey::RecordId => 54,
            PartitionKey::Extracted { fallback, .. } => {
                EXTRACTED_KEY_MAX_BYTES.max(fallback.max_len())
            }
        }
    }
}

/// How acknowledged offsets reach the disk (`checkpoint_commit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckpointCommit {
    /// What changed is appended to a journal and synced as soon as the write before it is
    /// done (group commit); the snapshot is rewritten when the journal has grown.
    #[default]
    Group,
    /// The whole snapshot is rewritten every `checkpoint_interval`, when something changed.
    Interval,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL target: message field=value …`
    #[default]
    Human,
    /// One JSON object per line, with the fields as keys.
    Json,
}

/// Publishing the agent's metrics to CloudWatch (`PutMetricData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudWatchSettings {
    pub namespace: String,
    pub interval: Duration,
    /// The top-level `aws` block, with the `cloudwatch.aws` block over it.
    pub aws: AwsSettings,
}

/// The Kinesis Agent's namespace, so dashboards and alarms built for it keep working.
pub const DEFAULT_CLOUDWATCH_NAMESPACE: &str = "AWSKinesisAgent";

/// The Prometheus endpoint: `/metrics` and `/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: std::net::SocketAddr,
    /// A flow behind its files whose acknowledged bytes have not moved for this long is stuck,
    /// and `/health` says so.
    pub stuck_after: Duration,
}

/// Where the metrics endpoint listens unless told: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9720";

/// How records are combined before they are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Combine {
    /// One line per record.
    #[default]
    None,
    /// KPL aggregation (Kinesis): many lines per record, grouped by the shard their keys hash to.
    Kpl,
    /// Firehose line packing: whole lines joined into records of at most `record_bytes`.
    Pack { record_bytes: usize },
}

/// Who writes and sends a flow's data calls (`PutRecords`, `PutRecordBatch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataPath {
    /// kinship's own request bodies, signed with SigV4 and sent over its own HTTP client.
    #[default]
    Direct,
    /// The AWS SDK's client, as control-plane calls always are.
    Sdk,
}

/// Whether a Kinesis flow keeps each partition key's records in order in the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Calls are built per shard: no two calls in flight hold records of one shard, and a
    /// refused record is sent again before any later record of its shard.
    #[default]
    PerShard,
    /// Calls go out as batches fill, up to `max_in_flight` at once, in any order.
    Unordered,
}

/// What happens to a record longer than the record limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oversize {
    /// Keep its first bytes, end them with the terminator, skip the rest.
    Truncate,
    /// Send it as several records of at most the limit each; together they are the record.
    Split,
    /// Send none of it.
    Skip,
}

/// How a call's body is written: AWS JSON 1.1 or AWS CBOR 1.1.
///
/// Kinesis Data Streams speaks both; CBOR carries the data as raw bytes rather than base64,
/// a third fewer bytes on the wire and no encoding pass. Firehose speaks only JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WireFormat {
    #[default]
    Cbor,
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlowConfig {
    pub name: String,
    pub files: Vec<String>,
    /// Paths matching any of these globs are not followed.
    pub exclude: Vec<glob::Pattern>,
    /// Files not modified for this long are not opened (until they are written again).
    pub ignore_older: Option<Duration>,
    pub destination: Destination,
    /// Region, endpoints, credentials and timeouts: the flow's own over the top-level ones.
    pub aws: AwsSettings,
    /// Batches are written to `dry_run_output` instead of being sent.
    pub dry_run: bool,
    /// Who writes and sends the data calls: kinship itself, or the AWS SDK.
    pub data_path: DataPath,
    /// How kinship's own `PutRecords` bodies are encoded, as written; `None`: CBOR to AWS's own
    /// endpoints, JSON to any other (Firehose and the SDK always speak JSON).
    pub wire_format: Option<WireFormat>,
    /// `ordering`: per shard (the default) or none. Firehose flows always send unordered.
    pub ordering: Delivery,
    pub combine: Combine,
    pub compression: Compression,
    pub initial_position: InitialPosition,
    pub partition_key: PartitionKey,
    /// `explicit_hash_key: spread`: records go evenly over the shards, whatever their keys.
    pub explicit_hash_key: bool,
    pub max_batch_age: Duration,
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
    pub max_record_bytes: usize,
    /// Whether `max_record_bytes` was written in the config (else the stream's own limit,
    /// learnt at start-up, replaces the default).
    pub record_limit_set: bool,
    pub max_in_flight: usize,
    pub poll_interval: Duration,
    pub scan_interval: Duration,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// Records still refused after this long go to the dead-letter file; `None`: retried forever.
    pub max_retry_duration: Option<Duration>,
    /// Bytes from a file's start that, with device and inode, identify it.
    pub fingerprint_bytes: usize,
    /// A last line without its newline is sent once its file was idle this long.
    pub partial_line_timeout: Duration,
    /// A record begins at each line matching this and runs until the next such line.
    pub multiline_start_pattern: Option<Pattern>,
    /// A pending multi-line record is sent once its file was idle this long.
    pub multiline_flush_timeout: Duration,
    /// Lines skipped at the start of each file read from offset 0.
    pub skip_header_lines: usize,
    /// A line matching this ends the file: it and everything after it are not sent.
    pub file_footer_pattern: Option<Pattern>,
    pub oversize_records: Oversize,
    /// Ends a record cut by `oversize_records: truncate`.
    pub truncated_record_terminator: String,
    /// Applied in order to every record between the file and the batch.
    pub processors: Vec<ProcessorSpec>,
    /// What a converter does with a record it cannot parse.
    pub on_error: OnError,
}

impl FlowConfig {
    /// The most bytes of a record (newline included) that fit in one record beside its key.
    pub fn max_line_bytes(&self) -> usize {
        self.max_record_bytes
            - self.partition_key.max_len()
            - self.compression.margin(self.max_record_bytes)
    }
}

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Path of the key, such as `flows[0].max_batch_age`; empty for the whole file.
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| ProblemAt { path, problem }.to_string())
        .collect();
    lines.join("\n")
}

struct ProblemAt<'a> {
    path: &'a Path,
    problem: &'a Problem,
}

impl fmt::Display for ProblemAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.problem.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.problem.column {
                write!(f, ":{column}")?;
            }
        }
        if self.problem.key.is_empty() {
            write!(f, ": {}", self.problem.message)
        } else {
            write!(f, ": {}: {}", self.problem.key, self.problem.message)
        }
    }
}

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

/// `message` with every value serde quoted in it (`"..."` or `` `...` ``) shown as
/// [`quoted`] shows it, so that a secret in the wrong place is not echoed.
fn quote_values_in(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let mark = &rest[open..open + 1];
        let Some(length) = rest[open + 1..].find(mark) else {
            break;
        };
        let inner = &rest[open + 1..open + 1 + length];
        out.push_str(&rest[..open + 1]);
        out.push_str(&quoted(inner));
        out.push_str(mark);
        rest = &rest[open + 2 + length..];
    }
    out.push_str(rest);
    out
}

/// The raw keys that decide how records are combined and compressed.
struct RawCombining {
    aggregation: Option<String>,
    pack_records: Option<bool>,
    pack_record_bytes: Option<u64>,
    compression: Option<String>,
}

struct Checker<'a> {
    positions: &'a KeyPositions,
    /// Keys the schema's pass reported: nothing more is said of them or of their absence.
    rejected: &'a Rejected,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        if self.rejected.covers(key) {
            return;
        }
        let position = self.positions.find(key);
        self.problems.push(Problem {
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Whether `key` was written but reported already (a wrong type, or a misspelling of it):
    /// checks that weigh it against other keys are skipped rather than guess its value.
    fn rejected(&self, key: &str) -> bool {
        self.rejected.covers(key)
    }

    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let state_dir = match raw.state_dir {
            Some(dir) => {
                if dir.trim().is_empty() {
                    self.problem("state_dir", "must not be empty");
                }
                PathBuf::from(dir)
            }
            None => default_paths().state_dir,
        };
        let top_aws = self.aws_block("aws", raw.aws, false);
        let dry_run_output = match raw.dry_run_output.as_deref() {
            None | Some("-") => None,
            Some("") => {
                self.problem(
                    "dry_run_output",
                    "must not be empty; write - for standard output",
                );
                None
            }
            Some(path) => Some(PathBuf::from(path)),
        };
        let mut holds_secret_keys = top_aws.holds_secret;
        let log_level = raw.log_level.unwrap_or_else(|| "info".to_owned());
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            self.problem(
                "log_level",
                format!(
                    "`{}` is not a log level or filter such as info, debug or kinship=debug,info ({error})",
                    quoted(&log_level)
                ),
            );
        }
        let log_format = match raw.log_format.as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.problem(
                    "log_format",
                    format!("`{}` is not one of human, json", quoted(other)),
                );
                LogFormat::Human
            }
        };
        let log_file = self.log_file(raw.log_file, raw.log_file_max_bytes, raw.log_file_keep);
        let cloudwatch = match raw.cloudwatch {
            Some(block) if block.enabled != Some(false) => {
                Some(self.cloudwatch(block, &top_aws, &mut holds_secret_keys))
            }
            _ => None,
        };
        let metrics = raw.metrics.map(|raw| {
            let text = raw
                .listen
                .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.to_owned());
            let listen = text.parse().unwrap_or_else(|_| {
                self.problem(
                    "metrics.listen",
                    format!(
                        "`{}` is not an address and port such as 127.0.0.1:9720",
                        quoted(&text)
                    ),
                );
                std::net::SocketAddr::from(([127, 0, 0, 1], 9720))
            });
            let stuck_after = self.duration(
                "metrics.stuck_after",
                raw.stuck_after,
                Duration::from_secs(60),
            );
            MetricsSettings {
                listen,
                stuck_after,
            }
        });
        let shutdown_grace = self.duration(
            "shutdown_grace",
            raw.shutdown_grace,
            Duration::from_secs(10),
        );
        let checkpoint_interval = self.duration(
            "checkpoint_interval",
            raw.checkpoint_interval,
            Duration::from_secs(1),
        );
        let checkpoint_commit = match raw.checkpoint_commit.as_deref() {
            None | Some("group") => CheckpointCommit::Group,
            Some("interval") => CheckpointCommit::Interval,
            Some(other) => {
                self.problem(
                    "checkpoint_commit",
                    format!("`{}` is not one of group, interval", quoted(other)),
                );
                CheckpointCommit::Group
            }
        };
        let progress_interval = self.duration(
            "progress_interval",
            raw.progress_interval,
            Duration::from_secs(30),
        );
        let checkpoint_expiry = self.long_duration(
            "checkpoint_expiry",
            raw.checkpoint_expiry,
            Duration::from_secs(7 * 24 * 3600),
        );
        let max_open_files = self.number(
            "max_open_files",
            raw.max_open_files,
            DEFAULT_MAX_OPEN_FILES,
            2..=1_000_000,
        );
        let memory_budget = self.number(
            "memory_budget",
            raw.memory_budget,
            crate::limits::DEFAULT_MEMORY_BUDGET,
            MIN_MEMORY_BUDGET..=MAX_MEMORY_BUDGET,
        );
        let mut flows = Vec::new();
        match raw.flows {
            None => self.problem("flows", "is missing; list at least one flow"),
            Some(raw_flows) if raw_flows.is_empty() => {
                self.problem("flows", "is empty; list at least one flow")
            }
            Some(raw_flows) => {
                self.duplicate_flow_names(&raw_flows);
                // A hole is an item the schema's pass reported (not a mapping).
                for (index, raw_flow) in raw_flows.into_iter().enumerate() {
                    let Some(raw_flow) = raw_flow else { continue };
                    let key = format!("flows[{index}]");
                    holds_secret_keys |= raw_flow
                        .aws
                        .as_ref()
                        .is_some_and(|aws| aws.secret_access_key.is_some());
                    if let Some(flow) = self.flow(&key, raw_flow, &top_aws) {
                        flows.push(flow);
                    }
                }
            }
        }
        Config {
            source: path.to_owned(),
            state_dir,
            shutdown_grace,
            checkpoint_interval,
            checkpoint_commit,
            progress_interval,
            checkpoint_expiry,
            max_open_files,
            memory_budget,
            dry_run_output,
            holds_secret_keys,
            metrics,
            log_level,
            log_format,
            log_file,
            watch_config: raw.watch_config.unwrap_or(false),
            cloudwatch,
            migration_warnings: Vec::new(),
            flows,
        }
    }

    /// Names written by more than one flow, whatever else is wrong with those flows.
    fn duplicate_flow_names(&mut self, raw_flows: &[Option<RawFlow>]) {
        let mut seen: Vec<&str> = Vec::new();
        for (index, raw_flow) in raw_flows.iter().enumerate() {
            let Some(name) = raw_flow.as_ref().and_then(|flow| flow.name.as_deref()) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            if seen.contains(&name) {
                self.problem(
                    &format!("flows[{index}].name"),
                    format!(
                        "`{}` is used by another flow; names must be unique",
                        quoted(name)
                    ),
                );
            } else {
                seen.push(name);
            }
        }
    }

    fn log_file(
        &mut self,
        path: Option<String>,
        max_bytes: Option<u64>,
        keep: Option<u64>,
    ) -> LogFileSettings {
        let path = match path {
            Some(path) if path.trim().is_empty() => {
                self.problem(
                    "log_file",
                    "must not be empty; leave it out to log to standard error",
                );
                None
            }
            path => path.map(PathBuf::from),
        };
        let max_bytes = self.number(
            "log_file_max_bytes",
            max_bytes,
            DEFAULT_LOG_FILE_BYTES,
            MIN_LOG_FILE_BYTES..=MAX_LOG_FILE_BYTES,
        );
        let keep = self.number(
            "log_file_keep",
            keep,
            DEFAULT_LOG_FILES_KEPT,
            0..=MAX_LOG_FILES_KEPT,
        );
        LogFileSettings {
            path,
            max_bytes: max_bytes as u64,
            keep,
        }
    }

    fn cloudwatch(
        &mut self,
        raw: RawCloudWatch,
        top_aws: &aws::AwsBlock,
        holds_secret_keys: &mut bool,
    ) -> CloudWatchSettings {
        let namespace = raw
            .namespace
            .unwrap_or_else(|| DEFAULT_CLOUDWATCH_NAMESPACE.to_owned());
        if namespace.is_empty() || namespace.len() > 255 {
            self.problem(
                "cloudwatch.namespace",
                "must be from 1 to 255 characters long",
            );
        } else if namespace.starts_with("AWS/") {
            self.problem(
                "cloudwatch.namespace",
                format!(
                    "`{}` starts with AWS/, which is reserved for AWS services",
                    quoted(&namespace)
                ),
            );
        }
        let interval = self.duration("cloudwatch.interval", raw.interval, Duration::from_secs(60));
        if interval < Duration::from_secs(1) {
            self.problem("cloudwatch.interval", "must be at least 1s");
        }
        let own = match raw.aws {
            Some(block) => self.aws_block(
                "cloudwatch.aws",
                block,
                top_aws.allows_insecure_http().unwrap_or(false),
            ),
            None => aws::AwsBlock::default(),
        };
        *holds_secret_keys |= own.holds_secret;
        CloudWatchSettings {
            namespace,
            interval,
            aws: own.over(top_aws),
        }
    }

    fn flow(&mut self, key: &str, raw: RawFlow, top_aws: &aws::AwsBlock) -> Option<FlowConfig> {
        let before = self.problems.len();
        let name = match raw.name {
            None => {
                self.problem(
                    &format!("{key}.name"),
                    "is missing; every flow needs a unique name",
                );
                String::new()
            }
            Some(name) => {
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !valid {
                    self.problem(
                        &format!("{key}.name"),
                        format!(
                            "`{}` must be 1 to 64 letters, digits, '-', '_' or '.'",
                            quoted(&name)
                        ),
                    );
                }
                name
            }
        };
        let files = match raw.files.map(raw::OneOrMany::into_vec) {
            None => {
                self.problem(
                    &format!("{key}.files"),
                    "is missing; give a glob such as /var/log/app/*.log",
                );
                Vec::new()
            }
            Some(files) if files.is_empty() => {
                self.problem(&format!("{key}.files"), "is empty; give at least one glob");
                files
            }
            Some(files) => {
                for (index, pattern) in files.iter().enumerate() {
                    let file_key = if files.len() == 1 {
                        format!("{key}.files")
                    } else {
                        format!("{key}.files[{index}]")
                    };
                    if !Path::new(pattern).is_absolute() {
                        self.problem(
                            &file_key,
                            format!("`{}` must be an absolute path", quoted(pattern)),
                        );
                    } else if let Err(error) = glob::Pattern::new(pattern) {
                        self.problem(
                            &file_key,
                            format!("`{}` is not a valid glob: {}", quoted(pattern), error.msg),
                        );
                    }
                }
                files
            }
        };
        let raw_combining = RawCombining {
            aggregation: raw.aggregation,
            pack_records: raw.pack_records,
            pack_record_bytes: raw.pack_record_bytes,
            compression: raw.compression,
        };
        // The service is the one whose key is written, even when its stream's name is wrong,
        // so that keys of that service are checked as such and not also reported.
        let written = |raw: &Option<String>, name: &str| {
            raw.is_some() || self.rejected(&format!("{key}.{name}"))
        };
        let firehose = written(&raw.firehose_stream, "firehose_stream")
            && !written(&raw.kinesis_stream, "kinesis_stream");
        let (data_path, wire_format) = self.data_path(
            key,
            raw.data_path.as_deref(),
            raw.wire_format.as_deref(),
            firehose,
        );
        let ordering = self.ordering(key, raw.ordering.as_deref(), firehose);
        let destination = self.destination(key, raw.kinesis_stream, raw.firehose_stream);
        let flow_aws = match raw.aws {
            Some(block) => self.aws_block(
                &format!("{key}.aws"),
                block,
                top_aws.allows_insecure_http().unwrap_or(false),
            ),
            None => aws::AwsBlock::default(),
        };
        let mut aws = flow_aws.over(top_aws);
        // Firehose speaks JSON only; for Kinesis, the endpoint decides (aws::wire_format_for).
        let wire_format = if firehose {
            Some(WireFormat::Json)
        } else {
            wire_format
        };
        // A stream named by ARN is in the ARN's region.
        if let Some(region) = destination
            .as_ref()
            .and_then(|d| d.arn.as_deref())
            .and_then(arn_region)
        {
            match flow_aws.region() {
                Some(own) if own != region => self.problem(
                    &format!("{key}.aws.region"),
                    format!(
                        "is {}, but the stream's ARN is in {region}; remove one",
                        quoted(own)
                    ),
                ),
                _ => aws.region = Some(region.to_owned()),
            }
        }
        let initial_position = match raw.initial_position.as_deref() {
            None | Some("end_of_file") => InitialPosition::EndOfFile,
            Some("start_of_file") => InitialPosition::StartOfFile,
            Some(other) => {
                self.problem(
                    &format!("{key}.initial_position"),
                    format!(
                        "`{}` is not one of end_of_file, start_of_file",
                        quoted(other)
                    ),
                );
                InitialPosition::EndOfFile
            }
        };
        if firehose {
            for (set, name) in [
                (raw.partition_key.is_some(), "partition_key"),
                (raw.explicit_hash_key.is_some(), "explicit_hash_key"),
            ] {
                if set {
                    self.problem(
                        &format!("{key}.{name}"),
                        "applies to Kinesis streams only; Firehose records have no partition key",
                    );
                }
            }
        }
        let partition_key = match raw.partition_key {
            None if firehose => PartitionKey::None,
            None => PartitionKey::Random,
            Some(raw::RawPartitionKey::Mode(mode)) => {
                self.simple_partition_key(&format!("{key}.partition_key"), &mode)
            }
            Some(raw::RawPartitionKey::Extract(extract)) => {
                self.extracted_partition_key(&format!("{key}.partition_key"), extract)
            }
        };
        let explicit_hash_key = match raw.explicit_hash_key.as_deref() {
            None | Some("none") => false,
            Some("spread") => true,
            Some(other) => {
                self.problem(
                    &format!("{key}.explicit_hash_key"),
                    format!("`{}` is not one of none, spread", quoted(other)),
                );
                false
            }
        };
        let max_batch_age = self.duration(
            &format!("{key}.max_batch_age"),
            raw.max_batch_age,
            Duration::from_secs(1),
        );
        let service = if firehose {
            limits::FIREHOSE
        } else {
            limits::KINESIS
        };
        let max_batch_records = self.number(
            &format!("{key}.max_batch_records"),
            raw.max_batch_records,
            service.max_records_per_call,
            1..=service.max_records_per_call,
        );
        let record_limit_set = raw.max_record_bytes.is_some();
        let max_record_bytes = self.number(
            &format!("{key}.max_record_bytes"),
            raw.max_record_bytes,
            service.default_record_bytes,
            limits::MIN_RECORD_BYTES..=service.max_record_bytes,
        );
        let max_batch_bytes = self.number(
            &format!("{key}.max_batch_bytes"),
            raw.max_batch_bytes,
            service.default_bytes_per_call,
            limits::MIN_RECORD_BYTES..=service.max_bytes_per_call,
        );
        let sizes_written = !self.rejected(&format!("{key}.max_batch_bytes"))
            && !self.rejected(&format!("{key}.max_record_bytes"));
        if sizes_written && max_batch_bytes < max_record_bytes {
            self.problem(
                &format!("{key}.max_batch_bytes"),
                format!(
                    "{max_batch_bytes} is smaller than max_record_bytes ({max_record_bytes}); one record must fit in a call"
                ),
            );
        }
        let max_in_flight = self.number(
            &format!("{key}.max_in_flight"),
            raw.max_in_flight,
            4,
            1..=64,
        );
        let poll_interval = self.duration(
            &format!("{key}.poll_interval"),
            raw.poll_interval,
            Duration::from_millis(250),
        );
        let scan_interval = self.duration(
            &format!("{key}.scan_interval"),
            raw.scan_interval,
            Duration::from_secs(5),
        );
        let retry_initial_backoff = self.duration(
            &format!("{key}.retry_initial_backoff"),
            raw.retry_initial_backoff,
            Duration::from_millis(100),
        );
        let retry_max_backoff = self.duration(
            &format!("{key}.retry_max_backoff"),
            raw.retry_max_backoff,
            Duration::from_secs(10),
        );
        let backoffs_written = !self.rejected(&format!("{key}.retry_initial_backoff"))
            && !self.rejected(&format!("{key}.retry_max_backoff"));
        if backoffs_written && retry_max_backoff < retry_initial_backoff {
            self.problem(
                &format!("{key}.retry_max_backoff"),
                "must not be shorter than retry_initial_backoff",
            );
        }
        let max_retry_duration = raw.max_retry_duration.map(|text| {
            self.long_duration(
                &format!("{key}.max_retry_duration"),
                Some(text),
                Duration::ZERO,
            )
        });
        let exclude = self.exclude(key, raw.exclude);
        let (processors, on_error) = self.processors(key, raw.processors, raw.on_error);
        let ignore_older = raw.ignore_older.map(|text| {
            self.long_duration(&format!("{key}.ignore_older"), Some(text), Duration::ZERO)
        });
        let fingerprint_bytes = self.number(
            &format!("{key}.fingerprint_bytes"),
            raw.fingerprint_bytes,
            1024,
            16..=65536,
        );
        let partial_line_timeout = self.duration(
            &format!("{key}.partial_line_timeout"),
            raw.partial_line_timeout,
            Duration::from_secs(5),
        );
        let multiline_start_pattern = raw
            .multiline_start_pattern
            .and_then(|text| self.pattern(&format!("{key}.multiline_start_pattern"), text));
        let multiline_flush_timeout = self.duration(
            &format!("{key}.multiline_flush_timeout"),
            raw.multiline_flush_timeout,
            Duration::from_secs(5),
        );
        let skip_header_lines = self.number(
            &format!("{key}.skip_header_lines"),
            raw.skip_header_lines,
            0,
            0..=1_000_000,
        );
        let file_footer_pattern = raw
            .file_footer_pattern
            .and_then(|text| self.pattern(&format!("{key}.file_footer_pattern"), text));
        let oversize_records = match raw.oversize_records.as_deref() {
            None | Some("truncate") => Oversize::Truncate,
            Some("split") => Oversize::Split,
            Some("skip") => Oversize::Skip,
            Some(other) => {
                self.problem(
                    &format!("{key}.oversize_records"),
                    format!("`{}` is not one of truncate, split, skip", quoted(other)),
                );
                Oversize::Truncate
            }
        };
        let truncated_record_terminator = raw
            .truncated_record_terminator
            .unwrap_or_else(|| "\n".to_owned());
        if truncated_record_terminator.len() > 256 {
            self.problem(
                &format!("{key}.truncated_record_terminator"),
                "is longer than 256 bytes",
            );
        }
        let (combine, compression) = self.combining(
            key,
            &raw_combining,
            firehose,
            explicit_hash_key,
            max_record_bytes,
        );
        // Combined records fill up to the record limit; calls of more than one such record
        // would only hold more memory, so they are one record limit unless set.
        let max_batch_bytes = if combine != Combine::None && raw.max_batch_bytes.is_none() {
            max_record_bytes
        } else {
            max_batch_bytes
        };
        let destination = destination?;
        if self.problems.len() != before {
            return None;
        }
        Some(FlowConfig {
            name,
            files,
            destination,
            aws,
            dry_run: raw.dry_run.unwrap_or(false),
            data_path,
            wire_format,
            ordering,
            combine,
            compression,
            record_limit_set,
            initial_position,
            partition_key,
            explicit_hash_key,
            max_batch_age,
            max_batch_records,
            max_batch_bytes,
            max_record_bytes,
            max_in_flight,
            poll_interval,
            scan_interval,
            retry_initial_backoff,
            retry_max_backoff,
            max_retry_duration,
            exclude,
            ignore_older,
            fingerprint_bytes,
            partial_line_timeout,
            multiline_start_pattern,
            multiline_flush_timeout,
            skip_header_lines,
            file_footer_pattern,
            oversize_records,
            truncated_record_terminator,
            processors,
            on_error,
        })
    }

    /// `data_path` and `wire_format` as written (`None`: the default, which depends on the
    /// endpoint): CBOR is Kinesis's alone, and only kinship's own data path writes it.
    fn data_path(
        &mut self,
        key: &str,
        data_path: Option<&str>,
        wire_format: Option<&str>,
        firehose: bool,
    ) -> (DataPath, Option<WireFormat>) {
        let path = match data_path {
            None | Some("direct") => DataPath::Direct,
            Some("sdk") => DataPath::Sdk,
            Some(other) => {
                self.problem(
                    &format!("{key}.data_path"),
                    format!("`{}` is not one of direct, sdk", quoted(other)),
                );
                DataPath::Direct
            }
        };
        let format = match wire_format {
            None => None,
            Some("json") => Some(WireFormat::Json),
            Some("cbor") if firehose => {
                self.problem(
                    &format!("{key}.wire_format"),
                    "cbor applies to Kinesis streams only; Firehose speaks json",
                );
                None
            }
            Some("cbor") if path == DataPath::Sdk => {
                self.problem(
                    &format!("{key}.wire_format"),
                    "cbor needs data_path: direct; the AWS SDK sends json",
                );
                None
            }
            Some("cbor") => Some(WireFormat::Cbor),
            Some(other) => {
                self.problem(
                    &format!("{key}.wire_format"),
                    format!("`{}` is not one of cbor, json", quoted(other)),
                );
                None
            }
        };
        // The SDK speaks JSON whatever the default says.
        let format = if path == DataPath::Sdk {
            Some(WireFormat::Json)
        } else {
            format
        };
        (path, format)
    }

    /// `ordering`: `per_shard` (the default) or `none`; a Kinesis key.
    fn ordering(&mut self, key: &str, ordering: Option<&str>, firehose: bool) -> Delivery {
        let ordering = match ordering {
            None => {
                return if firehose {
                    Delivery::Unordered
                } else {
                    Delivery::PerShard
                }
            }
            Some(written) => written,
        };
        if firehose {
            self.problem(
                &format!("{key}.ordering"),
                "ordering applies to Kinesis streams only: Firehose has no shards and keeps no order",
            );
            return Delivery::Unordered;
        }
        match ordering {
            "per_shard" => Delivery::PerShard,
            "none" => Delivery::Unordered,
            other => {
                self.problem(
                    &format!("{key}.ordering"),
                    format!("`{}` is not one of per_shard, none", quoted(other)),
                );
                Delivery::PerShard
            }
        }
    }

    /// `aggregation` (Kinesis), `pack_records` and `pack_record_bytes` (Firehose), `compression`.
    fn combining(
        &mut self,
        key: &str,
        raw: &RawCombining,
        firehose: bool,
        spread: bool,
        max_record_bytes: usize,
    ) -> (Combine, Compression) {
        let aggregation = match raw.aggregation.as_deref() {
            None | Some("none") => false,
            Some("kpl") if firehose => {
                self.problem(
                    &format!("{key}.aggregation"),
                    "applies to Kinesis streams only; for Firehose, use pack_records",
                );
                false
            }
            Some("kpl") => true,
            Some(other) => {
                self.problem(
                    &format!("{key}.aggregation"),
                    format!("`{}` is not one of none, kpl", quoted(other)),
                );
                false
            }
        };
        if aggregation && spread {
            self.problem(
                &format!("{key}.explicit_hash_key"),
                "cannot be spread with aggregation: kpl, which routes each aggregated record to the shard of its records' keys",
            );
        }
        let pack = raw.pack_records.unwrap_or(false);
        let pack_rejected = self.rejected(&format!("{key}.pack_records"));
        if pack && !firehose {
            self.problem(
                &format!("{key}.pack_records"),
                "applies to Firehose streams only; for Kinesis, use aggregation: kpl",
            );
        }
        let record_bytes = match raw.pack_record_bytes {
            None => max_record_bytes,
            Some(_) if !pack && !pack_rejected => {
                self.problem(
                    &format!("{key}.pack_record_bytes"),
                    "is set without pack_records: true",
                );
                max_record_bytes
            }
            Some(value) => self.number(
                &format!("{key}.pack_record_bytes"),
                Some(value),
                max_record_bytes,
                limits::MIN_RECORD_BYTES..=max_record_bytes,
            ),
        };
        let compression = match raw.compression.as_deref() {
            None | Some("none") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(other) => {
                self.problem(
                    &format!("{key}.compression"),
                    format!("`{}` is not one of none, gzip, zstd", quoted(other)),
                );
                Compression::None
            }
        };
        let combine = if aggregation {
            Combine::Kpl
        } else if pack && firehose {
            Combine::Pack { record_bytes }
        } else {
            Combine::None
        };
        (combine, compression)
    }

    fn exclude(&mut self, key: &str, raw: Option<raw::OneOrMany>) -> Vec<glob::Pattern> {
        let patterns = raw.map(raw::OneOrMany::into_vec).unwrap_or_default();
        let count = patterns.len();
        let mut compiled = Vec::new();
        for (index, pattern) in patterns.into_iter().enumerate() {
            let exclude_key = if count == 1 {
                format!("{key}.exclude")
            } else {
                format!("{key}.exclude[{index}]")
            };
            match glob::Pattern::new(&pattern) {
                Ok(glob) => compiled.push(glob),
                Err(error) => self.problem(
                    &exclude_key,
                    format!("`{}` is not a valid glob: {}", quoted(&pattern), error.msg),
                ),
            }
        }
        compiled
    }

    /// `random`, `deterministic`, `record_id`, or a fixed key.
    fn simple_partition_key(&mut self, key: &str, mode: &str) -> PartitionKey {
        match mode {
            "random" => PartitionKey::Random,
            "deterministic" => PartitionKey::Deterministic,
            "record_id" => PartitionKey::RecordId,
            fixed => {
                let chars = fixed.chars().count();
                if chars == 0 || chars > limits::PARTITION_KEY_MAX_CHARS {
                    self.problem(
                        key,
                        format!(
                            "a fixed key must be 1 to {} characters, not {chars}",
                            limits::PARTITION_KEY_MAX_CHARS
                        ),
                    );
                }
                PartitionKey::Fixed(fixed.to_owned())
            }
        }
    }

    /// `{ regex: '...' }` or `{ json_field: 'a.b' }`, with an optional `fallback`.
    fn extracted_partition_key(&mut self, key: &str, raw: raw::RawKeyExtraction) -> PartitionKey {
        let fallback = match raw.fallback {
            None => PartitionKey::Random,
            Some(mode) => self.simple_partition_key(&format!("{key}.fallback"), &mode),
        };
        let from = match (raw.regex, raw.json_field) {
            (Some(text), None) => self
                .pattern(&format!("{key}.regex"), text)
                .map(KeyField::Regex),
            (None, Some(path)) => {
                let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
                if parts.iter().any(String::is_empty) {
                    self.problem(
                        &format!("{key}.json_field"),
                        format!(
                            "`{}` is not a field path such as `request.id`",
                            quoted(&path)
                        ),
                    );
                    None
                } else {
                    Some(KeyField::Json(parts))
                }
            }
            // A misspelt or mistyped one was reported already.
            _ if self.rejected(&format!("{key}.regex"))
                || self.rejected(&format!("{key}.json_field")) =>
            {
                None
            }
            _ => {
                self.problem(key, "give exactly one of `regex` and `json_field`");
                None
            }
        };
        match from {
            Some(from) => PartitionKey::Extracted {
                from,
                fallback: Box::new(fallback),
            },
            None => fallback,
        }
    }

    fn pattern(&mut self, key: &str, text: String) -> Option<Pattern> {
        match regex::bytes::Regex::new(&text) {
            Ok(regex) => Some(Pattern { text, regex }),
            Err(error) => {
                // The parser's message draws a caret under the pattern over several
                // lines; its last line says what is wrong.
                let message = error.to_string();
                let last_line = message.lines().last().unwrap_or_default().trim();
                let reason = last_line.strip_prefix("error: ").unwrap_or(last_line);
                self.problem(
                    key,
                    format!(
                        "`{}` is not a valid regular expression: {reason}",
                        quoted(&text)
                    ),
                );
                None
            }
        }
    }

    /// A duration that may be longer than a day (up to a year); `default` when absent.
    fn long_duration(&mut self, key: &str, raw: Option<String>, default: Duration) -> Duration {
        self.bounded_duration(key, raw, default, LONGEST_DURATION, "366 days")
    }

    fn duration(&mut self, key: &str, raw: Option<String>, default: Duration) -> Duration {
        self.bounded_duration(key, raw, default, Duration::from_secs(24 * 3600), "24h")
    }

    fn bounded_duration(
        &mut self,
        key: &str,
        raw: Option<String>,
        default: Duration,
        longest: Duration,
        longest_text: &str,
    ) -> Duration {
        let Some(text) = raw else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if duration.is_zero() => {
                self.problem(key, "must be longer than zero");
                default
            }
            Ok(duration) if duration > longest => {
                self.problem(
                    key,
                    format!(
                        "`{}` is longer than the {longest_text} this setting allows",
                        quoted(&text)
                    ),
                );
                default
            }
            Ok(duration) => duration,
            Err(error) => {
                self.problem(
                    key,
                    format!(
                        "`{}` is not a duration ({error}); write a number and a unit, such as 500ms, 5s or 1m",
                        quoted(&text)
                    ),
                );
                default
            }
        }
    }

    fn number(
        &mut self,
        key: &str,
        raw: Option<u64>,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> usize {
        let Some(value) = raw else {
            return default;
        };
        match usize::try_from(value) {
            Ok(value) if range.contains(&value) => value,
            _ => {
                self.problem(
                    key,
                    format!(
                        "{value} is out of range; it must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
state_dir: /tmp/state
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:4567
flows:
  - name: app
    files: /var/log/app/*.log
    kinesis_stream: app-logs
    initial_position: start_of_file
    partition_key: deterministic
    max_batch_age: 250ms
";

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(Path::new("/etc/k.yaml"), text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { path, problems }) => problems
                .iter()
                .map(|problem| {
                    ProblemAt {
                        path: &path,
                        problem,
                    }
                    .to_string()
                })
                .collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn a_good_config_validates_with_defaults_filled_in() {
        let config = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
        assert_eq!(config.state_dir, PathBuf::from("/tmp/state"));
        assert_eq!(config.flows[0].aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        let flow = &config.flows[0];
        assert_eq!(flow.files, vec!["/var/log/app/*.log".to_owned()]);
        assert_eq!(flow.initial_position, InitialPosition::StartOfFile);
        assert_eq!(flow.partition_key, PartitionKey::Deterministic);
        assert_eq!(flow.max_batch_age, Duration::from_millis(250));
        assert_eq!(flow.max_batch_records, 500);
        assert_eq!(flow.max_batch_bytes, 5 * 1024 * 1024);
        assert_eq!(flow.max_line_bytes(), 1024 * 1024 - 16);
    }

    #[test]
    fn files_may_be_a_list_and_partition_key_a_fixed_string() {
        let text = GOOD
            .replace("files: /var/log/app/*.log", "files: [/a/*.log, /b/*.log]")
            .replace("partition_key: deterministic", "partition_key: host-1");
        let config = Config::parse(Path::new("k.yaml"), &text).expect("valid config");
        assert_eq!(config.flows[0].files.len(), 2);
        assert_eq!(
            config.flows[0].partition_key,
            PartitionKey::Fixed("host-1".into())
        );
        assert_eq!(config.flows[0].max_line_bytes(), 1024 * 1024 - 6);
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("    max_batch_age: 250ms", "    max_batch_agee: 250ms");
        assert_eq!(
            problems(&text),
            ["/etc/k.yaml:11:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?"]
        );
    }

    #[test]
    fn a_wrong_type_names_file_line_and_key() {
        let text = GOOD.replace(
            "  - name: app\n",
            "  - name: app\n    max_in_flight: many\n",
        );
        assert_eq!(
            problems(&text),
            ["/etc/k.yaml:7:20: flows[0].max_in_flight: expected a whole number, found the text `many`"]
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let text = "\
shutdown_grace: soon
aws:
  endpoint_url: localhost:4567
flows:
  - name: app
    files: relative/*.log
    max_batch_age: 0s
    max_batch_records: 501
    initial_position: middle
  - name: app
    files: /x/*.log
    kinesis_stream: bad/name
";
        let found = problems(text);
        let expected = [
            "/etc/k.yaml:1:1: shutdown_grace: `soon` is not a duration",
            "/etc/k.yaml:3:3: aws.endpoint_url: `localhost:4567` is not an http:// or https:// URL with a host",
            "/etc/k.yaml:6:5: flows[0].files: `relative/*.log` must be an absolute path",
            "/etc/k.yaml:5:5: flows[0].kinesis_stream: is missing",
            "/etc/k.yaml:9:5: flows[0].initial_position: `middle` is not one of end_of_file, start_of_file",
            "/etc/k.yaml:7:5: flows[0].max_batch_age: must be longer than zero",
            "/etc/k.yaml:8:5: flows[0].max_batch_records: 501 is out of range; it must be from 1 to 500",
            // The second flow's name is a duplicate even though the first flow has problems.
            "/etc/k.yaml:10:5: flows[1].name: `app` is used by another flow; names must be unique",
            "/etc/k.yaml:12:5: flows[1].kinesis_stream: `bad/name` is not a stream name",
        ];
        for want in expected {
            assert!(
                found.iter().any(|line| line.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn duplicate_flow_names_are_rejected() {
        let text = format!("{GOOD}  - name: app\n    files: /b/*.log\n    kinesis_stream: other\n");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("/etc/k.yaml:12:5: flows[1].name: `app` is used by another flow"),
            "{}",
            found[0]
        );
    }

    /// A config with seven different problems: types, an unknown key, a duplicate key, a
    /// duplicate flow name and values that mean nothing (`kinship check` is run on it too).
    const SEVEN_PROBLEMS: &str = include_str!("../../tests/configs/seven-problems.yaml");

    #[test]
    fn every_problem_of_the_file_is_reported_in_one_run_in_file_order() {
        assert_eq!(
            problems(SEVEN_PROBLEMS),
            [
                "/etc/k.yaml:3:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string",
                "/etc/k.yaml:4:3: aws.endpoint_url: `wJal… (40 characters)` is not an http:// or https:// URL with a host",
                "/etc/k.yaml:8:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string",
                "/etc/k.yaml:9:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?",
                "/etc/k.yaml:10:20: flows[0].max_in_flight: expected a whole number, found the text `many`",
                "/etc/k.yaml:11:5: flows[1].name: `app` is used by another flow; names must be unique",
                "/etc/k.yaml:14:5: flows[1].kinesis_stream: duplicate key (first written at 13:5); remove one",
            ]
        );
    }

    #[test]
    fn three_mistakes_in_one_flow_give_three_lines() {
        let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_agee: 1s\n    max_in_flight: many\n    retry_max_backoff: soon\n",
        );
        let found = problems(&text);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(
            found[0],
            "/etc/k.yaml:11:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?"
        );
        assert_eq!(
            found[1],
            "/etc/k.yaml:12:20: flows[0].max_in_flight: expected a whole number, found the text `many`"
        );
        assert!(
            found[2].starts_with(
                "/etc/k.yaml:13:5: flows[0].retry_max_backoff: `soon` is not a duration"
            ),
            "{}",
            found[2]
        );
    }

    #[test]
    fn plain_scalars_of_the_wrong_type_are_errors_and_quoted_ones_strings() {
        let found = problems(&format!(
            "aws:\n  region: 42\n{FLOW}    kinesis_stream: true\n    dry_run: 'false'\n"
        ));
        assert_eq!(
            found,
            [
                "/etc/k.yaml:2:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string",
                "/etc/k.yaml:6:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string",
                "/etc/k.yaml:7:14: flows[0].dry_run: expected true or false, found the quoted text `false`; write it without quotes",
            ]
        );
        let config = parse(&format!(
            "aws:\n  region: \"42\"\n{FLOW}    kinesis_stream: 'true'\n    max_in_flight: 0x10\n"
        ));
        assert_eq!(config.flows[0].aws.region.as_deref(), Some("42"));
        assert_eq!(config.flows[0].destination.name, "true");
        assert_eq!(config.flows[0].max_in_flight, 16);
    }

    #[test]
    fn a_key_written_wrong_draws_no_follow_on_problems() {
        // No "has no destination" for a destination of the wrong type or misspelt, and a
        // Firehose flow's keys are not taken for a Kinesis flow's.
        for destination in [
            "kinesis_stream: true",
            "kinesis_stream: [a, b]",
            "kinesis_streem: logs",
        ] {
            let found = problems(&format!("{FLOW}    {destination}\n"));
            assert_eq!(found.len(), 1, "{destination}: {found:#?}");
        }
        let found = problems(&format!(
            "{FLOW}    firehose_stream: {{name: x}}\n    pack_records: true\n    pack_record_bytes: 4096\n"
        ));
        assert_eq!(found.len(), 1, "{found:#?}");
        // A wrong-typed flag says nothing of the keys it goes with.
        let found = problems(&format!(
            "aws:\n  endpoint_url: http://kinesis.example.com\n  allow_insecure_http: yes\n{FLOW}    firehose_stream: a\n    pack_records: sure\n    pack_record_bytes: 4096\n    max_record_bytes: lots\n    max_batch_bytes: 2048\n"
        ));
        assert_eq!(
            found,
            [
                "/etc/k.yaml:3:24: aws.allow_insecure_http: expected true or false, found the text `yes`",
                "/etc/k.yaml:8:19: flows[0].pack_records: expected true or false, found the text `sure`",
                "/etc/k.yaml:10:23: flows[0].max_record_bytes: expected a whole number, found the text `lots`",
            ]
        );
        // A processor misspelt, or its only pattern misspelt, says only that.
        let found = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: filtre\n        include: x\n      - type: filter\n        includ: x\n      - type: log_to_json\n        formt: syslog\n"
        ));
        assert_eq!(
            found,
            [
                "/etc/k.yaml:6:15: flows[0].processors[0].type: `filtre` is not a processor type; did you mean filter?",
                "/etc/k.yaml:9:9: flows[0].processors[1].includ: unknown key; did you mean include?",
                "/etc/k.yaml:11:9: flows[0].processors[2].formt: unknown key; did you mean format?",
            ]
        );
    }

    #[test]
    fn duplicate_flow_names_are_found_whatever_else_is_wrong() {
        let found = problems(
            "flows:\n  - name: app\n    files: relative.log\n    kinesis_stream: a\n  - name: app\n    files: /b/*.log\n    firehose_stream: b\n    max_in_flight: 0\n",
        );
        assert_eq!(
            found,
            [
                "/etc/k.yaml:3:5: flows[0].files: `relative.log` must be an absolute path",
                "/etc/k.yaml:5:5: flows[1].name: `app` is used by another flow; names must be unique",
                "/etc/k.yaml:8:5: flows[1].max_in_flight: 0 is out of range; it must be from 1 to 64",
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_reported_where_they_are_with_their_path() {
        let found = problems(&format!(
            "state_dir: /a\nstate_dir: /b\n{FLOW}    kinesis_stream: a\n    max_in_flight: 2\n    max_in_flight: 3\n    aws:\n      assume_role:\n        role_arn: arn:aws:iam::123456789012:role/a\n        role_arn: arn:aws:iam::123456789012:role/b\n"
        ));
        assert_eq!(
            found,
            [
                "/etc/k.yaml:2:1: state_dir: duplicate key (first written at 1:1); remove one",
                "/etc/k.yaml:8:5: flows[0].max_in_flight: duplicate key (first written at 7:5); remove one",
                "/etc/k.yaml:12:9: flows[0].aws.assume_role.role_arn: duplicate key (first written at 11:9); remove one",
            ]
        );
    }

    #[test]
    fn values_that_look_like_secrets_are_not_echoed() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let token = "FwoGZXIvYXdzEBYaDH7tokenTOKEN123";
        let found = problems(&format!(
            "aws:\n  region: {secret}\n  endpoint_url: {token}\n{FLOW}    kinesis_stream: a\n    aws:\n      region: {token}\n      endpoint_url: {secret}\n"
        ));
        assert_eq!(
            found,
            [
                "/etc/k.yaml:2:3: aws.region: `wJal… (40 characters)` is not a region name such as us-east-1",
                "/etc/k.yaml:3:3: aws.endpoint_url: `FwoG… (32 characters)` is not an http:// or https:// URL with a host",
                "/etc/k.yaml:9:7: flows[0].aws.region: `FwoG… (32 characters)` is not a region name such as us-east-1",
                "/etc/k.yaml:10:7: flows[0].aws.endpoint_url: `wJal… (40 characters)` is not an http:// or https:// URL with a host",
            ]
        );
    }

    #[test]
    fn an_unusable_list_item_leaves_the_others_their_index() {
        let found = problems(
            "flows:\n  - just-a-name\n  - name: b\n    files: relative\n    kinesis_stream: b\n    processors:\n      - type: nope\n      - type: redact\n        patterns:\n          - oops\n          - pattern: '(x'\n",
        );
        assert_eq!(
            found,
            [
                "/etc/k.yaml:2:5: flows[0]: expected a mapping, found the text `just-a-name`",
                "/etc/k.yaml:4:5: flows[1].files: `relative` must be an absolute path",
                "/etc/k.yaml:7:15: flows[1].processors[0].type: `nope` is not a processor type; give one of single_line, csv_to_json, log_to_json, filter, redact, add_ec2_metadata, add_metadata",
                "/etc/k.yaml:10:13: flows[1].processors[1].patterns[0]: expected a mapping, found the text `oops`",
                "/etc/k.yaml:11:13: flows[1].processors[1].patterns[1].pattern: `(x` is not a valid regular expression: unclosed group",
            ]
        );
        assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    processors:\n      - type: redact\n        patterns: [{{replacement: x}}]\n"
            )),
            ["/etc/k.yaml:7:21: flows[0].processors[0].patterns[0].pattern: is missing; give the regular expression to redact"]
        );
    }

    #[test]
    fn values_serde_quotes_are_shown_as_secrets_are() {
        assert_eq!(
            quote_values_in(
                "invalid type: string \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\", expected `u64` at `x"
            ),
            "invalid type: string \"wJal… (40 characters)\", expected `u64` at `x"
        );
    }

    #[test]
    fn the_packaged_config_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/kinship.yaml"
        ));
        let text = std::fs::read_to_string(path).expect("packaged config");
        Config::parse(path, &text).unwrap_or_else(|error| panic!("{error}"));
    }

    #[test]
    fn missing_and_empty_flows_are_rejected() {
        assert!(problems("state_dir: /x\n")[0].contains("flows: is missing"));
        assert!(problems("flows: []\n")[0].contains("flows: is empty"));
        assert!(problems("   \n")[0].contains("the file is empty"));
    }

    #[test]
    fn sizes_are_checked_against_each_other_and_the_service() {
        let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_age: 250ms\n    max_record_bytes: 2097152\n    max_batch_bytes: 1048576\n    partition_key: \"\"\n",
        );
        let text = text.replace("    partition_key: deterministic\n", "");
        let found = problems(&text);
        assert!(
            found.iter().any(|l| l
                .contains("flows[0].max_batch_bytes: 1048576 is smaller than max_record_bytes")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|l| l.contains(
                "flows[0].partition_key: a fixed key must be 1 to 256 characters, not 0"
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn tailing_keys_are_read_with_their_defaults() {
        let config = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
        assert_eq!(config.checkpoint_expiry, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.max_open_files, DEFAULT_MAX_OPEN_FILES);
        let flow = &config.flows[0];
        assert!(flow.exclude.is_empty());
        assert_eq!(flow.ignore_older, None);
        assert_eq!(flow.fingerprint_bytes, 1024);
        assert_eq!(flow.partial_line_timeout, Duration::from_secs(5));
        assert!(flow.multiline_start_pattern.is_none());
        assert_eq!(flow.skip_header_lines, 0);
        assert!(flow.file_footer_pattern.is_none());
        assert_eq!(flow.oversize_records, Oversize::Truncate);
        assert_eq!(flow.truncated_record_terminator, "\n");

        let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_age: 250ms\n    exclude: [/var/log/app/*.gz, /var/log/app/debug-*]\n    ignore_older: 2d\n    fingerprint_bytes: 64\n    multiline_start_pattern: '^\\d{4}-'\n    skip_header_lines: 2\n    file_footer_pattern: '^#end'\n    oversize_records: split\n    truncated_record_terminator: ' [cut]'\n",
        );
        let text = format!("checkpoint_expiry: 30d\nmax_open_files: 64\n{text}");
        let config = Config::parse(Path::new("/etc/k.yaml"), &text).expect("valid config");
        assert_eq!(
            config.checkpoint_expiry,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(config.max_open_files, 64);
        let flow = &config.flows[0];
        assert_eq!(flow.exclude.len(), 2);
        assert!(flow.exclude[1].matches("/var/log/app/debug-1.log"));
        assert_eq!(flow.ignore_older, Some(Duration::from_secs(2 * 24 * 3600)));
        assert_eq!(flow.fingerprint_bytes, 64);
        let start = flow.multiline_start_pattern.as_ref().expect("a pattern");
        assert!(start.regex.is_match(b"2026-11-23 started"));
        assert!(!start.regex.is_match(b"\tat Foo.bar"));
        assert_eq!(flow.skip_header_lines, 2);
        assert!(flow.file_footer_pattern.is_some());
        assert_eq!(flow.oversize_records, Oversize::Split);
        assert_eq!(flow.truncated_record_terminator, " [cut]");
    }

    #[test]
    fn bad_tailing_keys_name_file_line_and_key() {
        let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_age: 250ms\n    exclude: ['/x/[a.log', /y/*.log]\n    ignore_older: 400d\n    fingerprint_bytes: 8\n    multiline_start_pattern: '(unclosed'\n    file_footer_pattern: '*oops'\n    oversize_records: drop\n",
        );
        let text = format!("checkpoint_expiry: forever\nmax_open_files: 1\n{text}");
        let found = problems(&text);
        let expected = [
            "/etc/k.yaml:1:1: checkpoint_expiry: `forever` is not a duration",
            "/etc/k.yaml:2:1: max_open_files: 1 is out of range; it must be from 2 to 1000000",
            "/etc/k.yaml:14:15: flows[0].exclude[0]: `/x/[a.log` is not a valid glob",
            "/etc/k.yaml:15:5: flows[0].ignore_older: `400d` is longer than the 366 days this setting allows",
            "/etc/k.yaml:16:5: flows[0].fingerprint_bytes: 8 is out of range; it must be from 16 to 65536",
            "/etc/k.yaml:17:5: flows[0].multiline_start_pattern: `(unclosed` is not a valid regular expression: unclosed group",
            "/etc/k.yaml:18:5: flows[0].file_footer_pattern: `*oops` is not a valid regular expression: repetition operator missing expression",
            "/etc/k.yaml:19:5: flows[0].oversize_records: `drop` is not one of truncate, split, skip",
        ];
        for want in expected {
            assert!(
                found.iter().any(|line| line.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn yaml_syntax_errors_give_a_position() {
        let found = problems("flows:\n  - name: [unclosed\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("/etc/k.yaml:"), "{}", found[0]);
        assert!(
            found[0].chars().filter(|c| *c == ':').count() >= 3,
            "{}",
            found[0]
        );
    }

    #[test]
    fn the_example_config_is_valid_as_shipped_and_with_every_optional_key_set() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kinship.yaml"));
        let text = std::fs::read_to_string(path).expect("example config");
        let config = Config::parse(path, &text).expect("valid as shipped");
        assert_eq!(config.memory_budget, crate::limits::DEFAULT_MEMORY_BUDGET);
        // Uncomment every `# key: value` line (keeping its indentation).
        let uncommented: String = text
            .lines()
            .map(|line| {
                let indent = line.len() - line.trim_start().len();
                match line.trim_start().strip_prefix("# ") {
                    Some(rest)
                        if rest.split_once(':').is_some_and(|(key, _)| {
                            key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                    {
                        format!("{}{rest}\n", &line[..indent])
                    }
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        assert!(
            uncommented.contains("  request_timeout: 30s"),
            "{uncommented}"
        );
        let config = Config::parse(path, &uncommented)
            .unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
        assert_eq!(config.flows[0].aws.request_timeout, Duration::from_secs(30));
        assert_eq!(
            config.flows[0].max_retry_duration,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn the_delivery_keys_are_read_and_checked() {
        let text = GOOD
            .replace(
                "  endpoint_url: http://127.0.0.1:4567\n",
                "  endpoint_url: http://127.0.0.1:4567\n  request_timeout: 3s\n  connect_timeout: 1s\n",
            )
            .replace(
                "    partition_key: deterministic\n",
                "    partition_key: record_id\n    max_retry_duration: 2h\n",
            );
        let text = format!("memory_budget: 8388608\n{text}");
        let config = Config::parse(Path::new("/etc/k.yaml"), &text).expect("valid config");
        assert_eq!(config.memory_budget, 8 * 1024 * 1024);
        assert_eq!(config.flows[0].aws.request_timeout, Duration::from_secs(3));
        assert_eq!(config.flows[0].aws.connect_timeout, Duration::from_secs(1));
        let flow = &config.flows[0];
        assert_eq!(flow.partition_key, PartitionKey::RecordId);
        assert_eq!(flow.max_retry_duration, Some(Duration::from_secs(7200)));
        let defaults = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
        assert_eq!(defaults.flows[0].max_retry_duration, None);
        assert_eq!(
            defaults.flows[0].aws.request_timeout,
            Duration::from_secs(30)
        );

        let bad = format!(
            "memory_budget: 1000\n{}",
            GOOD.replace(
                "    partition_key: deterministic\n",
                "    max_retry_duration: soon\n"
            )
        );
        let found = problems(&bad);
        assert!(
            found[0].starts_with("/etc/k.yaml:1:1: memory_budget: 1000 is out of range"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with(
                "/etc/k.yaml:11:5: flows[0].max_retry_duration: `soon` is not a duration"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn partition_keys_may_be_extracted_from_records_with_a_fallback() {
        let with_key = |value: &str| {
            GOOD.replace(
                "    partition_key: deterministic\n",
                &format!("    partition_key: {value}\n"),
            )
        };
        let config = Config::parse(
            Path::new("/etc/k.yaml"),
            &with_key(r"{ regex: 'user=(\w+)', fallback: deterministic }"),
        )
        .expect("valid config");
        match &config.flows[0].partition_key {
            PartitionKey::Extracted {
                from: KeyField::Regex(pattern),
                fallback,
            } => {
                assert_eq!(pattern.text, r"user=(\w+)");
                assert_eq!(**fallback, PartitionKey::Deterministic);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            config.flows[0].max_line_bytes(),
            limits::KINESIS_DEFAULT_RECORD_BYTES - EXTRACTED_KEY_MAX_BYTES
        );
        let config = Config::parse(
            Path::new("/etc/k.yaml"),
            &with_key("{ json_field: request.id }"),
        )
        .expect("valid config");
        assert_eq!(
            config.flows[0].partition_key,
            PartitionKey::Extracted {
                from: KeyField::Json(vec!["request".into(), "id".into()]),
                fallback: Box::new(PartitionKey::Random),
            }
        );
        let spread = with_key("random\n    explicit_hash_key: spread");
        let config = Config::parse(Path::new("/etc/k.yaml"), &spread).expect("valid config");
        assert!(config.flows[0].explicit_hash_key);
        assert!(
            !Config::parse(Path::new("/etc/k.yaml"), GOOD)
                .expect("valid config")
                .flows[0]
                .explicit_hash_key
        );
        let found = problems(&with_key("random\n    explicit_hash_key: sometimes"));
        assert_eq!(
            found,
            vec!["/etc/k.yaml:11:5: flows[0].explicit_hash_key: `sometimes` is not one of none, spread"]
        );
        for (value, expected) in [
            (
                "{ regex: 'a', json_field: b }",
                "/etc/k.yaml:10:5: flows[0].partition_key: give exactly one of `regex` and `json_field`",
            ),
            (
                "{ json_field: 'a..b' }",
                "/etc/k.yaml:10:5: flows[0].partition_key.json_field: `a..b` is not a field path",
            ),
            (
                "{ regex: '(x' }",
                "/etc/k.yaml:10:5: flows[0].partition_key.regex: `(x` is not a valid regular expression",
            ),
            (
                "{ json_field: a, fallback: '' }",
                "/etc/k.yaml:10:5: flows[0].partition_key.fallback: a fixed key must be 1 to 256 characters",
            ),
        ] {
            let found = problems(&with_key(value));
            // The line, and the column of the key inside the braces.
            let (position, message) = expected.split_at("/etc/k.yaml:10:".len());
            let message = message.split_once(' ').map_or("", |(_, rest)| rest);
            assert!(
                found.len() == 1 && found[0].starts_with(position) && found[0].contains(message),
                "{value}: {found:?}"
            );
        }
    }

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("/etc/k.yaml"), text).expect("valid config")
    }

    const FLOW: &str = "flows:\n  - name: app\n    files: /var/log/*.log\n";

    #[test]
    fn a_firehose_flow_gets_firehose_limits_and_no_partition_key() {
        let config = parse(&format!("{FLOW}    firehose_stream: to-s3\n"));
        let flow = &config.flows[0];
        assert_eq!(flow.destination.kind, DestinationKind::Firehose);
        assert_eq!(flow.destination.name, "to-s3");
        assert_eq!(flow.partition_key, PartitionKey::None);
        assert_eq!(flow.max_record_bytes, 1000 * 1024);
        assert_eq!(flow.max_batch_bytes, 4 * 1024 * 1024);
        assert_eq!(flow.max_batch_records, 500);
        assert_eq!(flow.max_line_bytes(), 1000 * 1024);
        let wrong = problems(&format!(
            "{FLOW}    firehose_stream: to-s3\n    partition_key: fixed\n    explicit_hash_key: spread\n    max_batch_bytes: 5242880\n    max_record_bytes: 1048576\n"
        ));
        assert_eq!(
            wrong,
            [
                "/etc/k.yaml:5:5: flows[0].partition_key: applies to Kinesis streams only; Firehose records have no partition key",
                "/etc/k.yaml:6:5: flows[0].explicit_hash_key: applies to Kinesis streams only; Firehose records have no partition key",
                "/etc/k.yaml:7:5: flows[0].max_batch_bytes: 5242880 is out of range; it must be from 1024 to 4194304",
                "/etc/k.yaml:8:5: flows[0].max_record_bytes: 1048576 is out of range; it must be from 1024 to 1024000",
            ]
        );
    }

    #[test]
    fn a_flow_names_exactly_one_destination_by_name_or_arn() {
        assert_eq!(
            problems(&format!("{FLOW}    firehose_stream: a\n    kinesis_stream: b\n")),
            ["/etc/k.yaml:4:5: flows[0].firehose_stream: is set together with kinesis_stream; a flow sends to one destination"]
        );
        assert_eq!(
            problems(FLOW),
            ["/etc/k.yaml:2:5: flows[0].kinesis_stream: is missing; name the stream records go to (kinesis_stream or firehose_stream)"]
        );
        let config = parse(&format!(
            "aws:\n  region: us-east-1\n{FLOW}    kinesis_stream: arn:aws:kinesis:eu-central-1:210987654321:stream/shared-logs\n"
        ));
        let flow = &config.flows[0];
        assert_eq!(flow.destination.name, "shared-logs");
        assert_eq!(
            flow.destination.arn.as_deref(),
            Some("arn:aws:kinesis:eu-central-1:210987654321:stream/shared-logs")
        );
        assert_eq!(flow.aws.region.as_deref(), Some("eu-central-1"));
        assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: arn:aws:kinesis:eu-central-1:210987654321:stream/s\n    aws:\n      region: us-east-1\n"
            )),
            ["/etc/k.yaml:6:7: flows[0].aws.region: is us-east-1, but the stream's ARN is in eu-central-1; remove one"]
        );
        assert_eq!(
            problems(&format!(
                "{FLOW}    firehose_stream: arn:aws:kinesis:eu-central-1:210987654321:stream/s\n"
            )),
            ["/etc/k.yaml:4:5: flows[0].firehose_stream: `arn:aws:kinesis:eu-central-1:210987654321:stream/s` is not a stream ARN such as arn:aws:firehose:us-east-1:123456789012:deliverystream/NAME"]
        );
    }

    #[test]
    fn a_flows_aws_block_overrides_the_top_one_key_by_key() {
        let config = parse(&format!(
            "aws:\n  region: us-east-1\n  endpoint_url: https://kinesis.example.com\n  access_key_id: AKIATOP\n  secret_access_key: top-secret\n  assume_role:\n    role_arn: arn:aws:iam::123456789012:role/top\n  request_timeout: 10s\n\
             {FLOW}    kinesis_stream: a\n\
             \x20 - name: own\n    files: /var/log/*.log\n    kinesis_stream: b\n    aws:\n      region: eu-west-1\n      profile: logs\n      connect_timeout: 2s\n      check_identity: false\n"
        ));
        assert!(config.holds_secret_keys);
        let (top, own) = (&config.flows[0].aws, &config.flows[1].aws);
        assert_eq!(top.region.as_deref(), Some("us-east-1"));
        assert!(matches!(
            &top.credentials,
            CredentialSource::Static { access_key_id, secret_access_key, session_token: None }
                if access_key_id.expose() == "AKIATOP" && secret_access_key.expose() == "top-secret"
        ));
        assert_eq!(top.request_timeout, Duration::from_secs(10));
        assert_eq!(top.connect_timeout, Duration::from_secs(5));
        assert!(top.check_identity);
        assert_eq!(own.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            own.endpoint_url.as_deref(),
            Some("https://kinesis.example.com")
        );
        assert_eq!(own.credentials, CredentialSource::Profile("logs".into()));
        assert_eq!(own.assume_role, top.assume_role);
        let role = own.assume_role.as_ref().expect("inherited role");
        assert_eq!(role.session_name, "kinship");
        assert_eq!(role.duration, Duration::from_secs(3600));
        assert_eq!(own.request_timeout, Duration::from_secs(10));
        assert_eq!(own.connect_timeout, Duration::from_secs(2));
        assert!(!own.check_identity);
        assert_ne!(top, own);
        let plain = parse(&format!("{FLOW}    kinesis_stream: a\n"));
        assert!(!plain.holds_secret_keys);
        assert_eq!(plain.flows[0].aws, AwsSettings::default());
    }

    #[test]
    fn credential_mistakes_name_the_key() {
        let wrong = problems(&format!(
            "aws:\n  profile: p\n  access_key_id: AKIA\n  secret_access_key: s\n{FLOW}    kinesis_stream: a\n    aws:\n      session_token: t\n      assume_role:\n        role_arn: arn:aws:iam::123:role/x\n        session_name: 'has space'\n        duration: 5m\n        external_id: x\n  - name: b\n    files: /var/log/*.log\n    kinesis_stream: b\n    aws:\n      secret_access_key: s\n"
        ));
        assert_eq!(
            wrong,
            [
                "/etc/k.yaml:2:3: aws.profile: is set together with access_key_id; choose one source of credentials",
                "/etc/k.yaml:10:7: flows[0].aws.session_token: is set without access_key_id and secret_access_key",
                "/etc/k.yaml:12:9: flows[0].aws.assume_role.role_arn: `arn:aws:iam::123:role/x` is not a role ARN such as arn:aws:iam::123456789012:role/kinship",
                "/etc/k.yaml:13:9: flows[0].aws.assume_role.session_name: `has space` must be 2 to 64 letters, digits or any of +=,.@_-",
                "/etc/k.yaml:14:9: flows[0].aws.assume_role.duration: must be from 15m to 12h (STS's bounds for a role session)",
                "/etc/k.yaml:15:9: flows[0].aws.assume_role.external_id: must be 2 to 1,224 characters",
                "/etc/k.yaml:20:7: flows[1].aws.secret_access_key: is set without access_key_id; give both",
            ]
        );
    }

    #[test]
    fn plain_http_is_for_loopback_unless_allowed() {
        let text = |url: &str, allow: &str| {
            format!("aws:\n  endpoint_url: {url}\n{allow}{FLOW}    kinesis_stream: a\n")
        };
        assert!(problems(&text("http://127.0.0.1:4567", "")).is_empty());
        assert!(problems(&text("http://localhost:4567", "")).is_empty());
        assert!(problems(&text("https://kinesis.example.com", "")).is_empty());
        assert_eq!(
            problems(&text("http://kinesis.example.com", "")),
            ["/etc/k.yaml:2:3: aws.endpoint_url: `http://kinesis.example.com` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true"]
        );
        assert!(problems(&text(
            "http://kinesis.example.com",
            "  allow_insecure_http: true\n"
        ))
        .is_empty());
        // The top-level allowance covers flows' own endpoints too.
        assert!(problems(&format!(
            "aws:\n  allow_insecure_http: true\n{FLOW}    kinesis_stream: a\n    aws:\n      sts_endpoint_url: http://sts.internal:80\n"
        ))
        .is_empty());
        assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    aws:\n      sts_endpoint_url: http://sts.internal:80\n"
            )),
            ["/etc/k.yaml:6:7: flows[0].aws.sts_endpoint_url: `http://sts.internal:80` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true"]
        );
    }

    #[test]
    fn dry_run_is_per_flow_with_one_output() {
        let config = parse(&format!(
            "dry_run_output: /tmp/batches.jsonl\n{FLOW}    kinesis_stream: a\n    dry_run: true\n"
        ));
        assert!(config.flows[0].dry_run);
        assert_eq!(
            config.dry_run_output.as_deref(),
            Some(Path::new("/tmp/batches.jsonl"))
        );
        let config = parse(&format!(
            "dry_run_output: '-'\n{FLOW}    kinesis_stream: a\n"
        ));
        assert!(!config.flows[0].dry_run);
        assert_eq!(config.dry_run_output, None);
    }

    #[test]
    fn ordering_is_per_shard_by_default_and_a_kinesis_key() {
        let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n\
             \x20 - name: b\n    files: /var/log/*.log\n    kinesis_stream: b\n    ordering: none\n\
             \x20 - name: c\n    files: /var/log/*.log\n    firehose_stream: c\n"
        ));
        let orderings: Vec<_> = config.flows.iter().map(|flow| flow.ordering).collect();
        assert_eq!(
            orderings,
            [Delivery::PerShard, Delivery::Unordered, Delivery::Unordered]
        );
        let wrong = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    ordering: strict\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    ordering: per_shard\n"
        ));
        assert_eq!(
            wrong,
            [
                "/etc/k.yaml:5:5: flows[0].ordering: `strict` is not one of per_shard, none",
                "/etc/k.yaml:9:5: flows[1].ordering: ordering applies to Kinesis streams only: Firehose has no shards and keeps no order",
            ]
        );
    }

    #[test]
    fn the_data_path_and_its_wire_format_are_checked_against_the_destination() {
        let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    wire_format: cbor\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n\
             \x20 - name: c\n    files: /var/log/*.log\n    kinesis_stream: c\n\
             \x20 - name: d\n    files: /var/log/*.log\n    kinesis_stream: d\n    data_path: sdk\n\
             \x20 - name: e\n    files: /var/log/*.log\n    kinesis_stream: e\n    aws:\n      endpoint_url: http://localhost:4567\n"
        ));
        let paths: Vec<_> = config
            .flows
            .iter()
            .map(|flow| (flow.data_path, flow.wire_format))
            .collect();
        assert_eq!(
            paths,
            [
                (DataPath::Direct, Some(WireFormat::Cbor)),
                // Firehose speaks JSON; for Kinesis, unless written, the endpoint decides
                // when the flow starts (CBOR to AWS's own, JSON to any other).
                (DataPath::Direct, Some(WireFormat::Json)),
                (DataPath::Direct, None),
                (DataPath::Sdk, Some(WireFormat::Json)),
                (DataPath::Direct, None),
            ]
        );
        let wrong = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    data_path: fast\n    wire_format: xml\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    wire_format: cbor\n\
             \x20 - name: c\n    files: /var/log/*.log\n    kinesis_stream: c\n    data_path: sdk\n    wire_format: cbor\n"
        ));
        assert_eq!(
            wrong,
            [
                "/etc/k.yaml:5:5: flows[0].data_path: `fast` is not one of direct, sdk",
                "/etc/k.yaml:6:5: flows[0].wire_format: `xml` is not one of cbor, json",
                "/etc/k.yaml:10:5: flows[1].wire_format: cbor applies to Kinesis streams only; Firehose speaks json",
                "/etc/k.yaml:15:5: flows[2].wire_format: cbor needs data_path: direct; the AWS SDK sends json",
            ]
        );
    }

    #[test]
    fn a_ca_file_must_be_a_readable_pem_bundle() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let bundle = dir.path().join("ca.pem");
        std::fs::write(
            &bundle,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("bundle written");
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, [0x30, 0x82, 0x01]).expect("file written");
        let missing = dir.path().join("missing.pem");
        let config = parse(&format!(
            "aws:\n  tls:\n    ca_file: {}\n{FLOW}    kinesis_stream: a\n",
            bundle.display()
        ));
        assert_eq!(
            config.flows[0].aws.tls_ca_file.as_deref(),
            Some(bundle.as_path())
        );
        let wrong = problems(&format!(
            "aws:\n  tls:\n    ca_file: {}\n{FLOW}    kinesis_stream: a\n    aws:\n      tls:\n        ca_file: {}\n\
             \x20 - name: b\n    files: /var/log/*.log\n    kinesis_stream: b\n    aws:\n      tls: {{ca_file: certs/ca.pem}}\n",
            not_pem.display(),
            missing.display()
        ));
        assert_eq!(wrong.len(), 3, "{wrong:?}");
        assert!(
            wrong[0].starts_with("/etc/k.yaml:3:5: aws.tls.ca_file: `")
                && wrong[0].ends_with(
                    "ca.der` holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"
                ),
            "{wrong:?}"
        );
        assert!(
            wrong[1].starts_with("/etc/k.yaml:10:9: flows[0].aws.tls.ca_file: cannot read `")
                && wrong[1].contains("No such file"),
            "{wrong:?}"
        );
        assert_eq!(
            wrong[2],
            "/etc/k.yaml:15:13: flows[1].aws.tls.ca_file: `certs/ca.pem` is not an absolute path"
        );
    }

    #[test]
    fn aggregation_packing_and_compression_are_checked_against_the_destination() {
        let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    aggregation: kpl\n    compression: zstd\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    pack_records: true\n    pack_record_bytes: 65536\n    compression: gzip\n\
             \x20 - name: c\n    files: /var/log/*.log\n    firehose_stream: c\n    pack_records: true\n"
        ));
        let flows = &config.flows;
        assert_eq!(flows[0].combine, Combine::Kpl);
        assert_eq!(flows[0].compression, Compression::Zstd);
        // Calls of combined records are one record limit unless set.
        assert_eq!(flows[0].max_batch_bytes, 1024 * 1024);
        assert_eq!(flows[1].max_batch_bytes, 1000 * 1024);
        // Room is kept for compression to grow what does not compress.
        assert_eq!(
            flows[0].max_line_bytes(),
            1024 * 1024 - 20 - (1024 * 1024 / 128 + 256)
        );
        assert_eq!(
            flows[1].combine,
            Combine::Pack {
                record_bytes: 65536
            }
        );
        assert_eq!(flows[1].compression, Compression::Gzip);
        assert_eq!(
            flows[2].combine,
            Combine::Pack {
                record_bytes: 1000 * 1024
            }
        );
        assert_eq!(flows[2].compression, Compression::None);
        let wrong = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    aggregation: kpl\n    explicit_hash_key: spread\n    pack_records: true\n    compression: lz4\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    aggregation: kpl\n    pack_record_bytes: 4096\n\
             \x20 - name: c\n    files: /var/log/*.log\n    firehose_stream: c\n    pack_records: true\n    pack_record_bytes: 2000000\n    aggregation: maybe\n"
        ));
        assert_eq!(
            wrong,
            [
                "/etc/k.yaml:6:5: flows[0].explicit_hash_key: cannot be spread with aggregation: kpl, which routes each aggregated record to the shard of its records' keys",
                "/etc/k.yaml:7:5: flows[0].pack_records: applies to Firehose streams only; for Kinesis, use aggregation: kpl",
                "/etc/k.yaml:8:5: flows[0].compression: `lz4` is not one of none, gzip, zstd",
                "/etc/k.yaml:12:5: flows[1].aggregation: applies to Kinesis streams only; for Firehose, use pack_records",
                "/etc/k.yaml:13:5: flows[1].pack_record_bytes: is set without pack_records: true",
                "/etc/k.yaml:18:5: flows[2].pack_record_bytes: 2000000 is out of range; it must be from 1024 to 1024000",
                "/etc/k.yaml:19:5: flows[2].aggregation: `maybe` is not one of none, kpl",
            ]
        );
    }

    #[test]
    fn checkpoint_commit_is_group_unless_set_to_interval() {
        let defaults = parse(&format!("{FLOW}    kinesis_stream: a\n"));
        assert_eq!(defaults.checkpoint_commit, CheckpointCommit::Group);
        assert_eq!(defaults.checkpoint_interval, Duration::from_secs(1));
        let interval = parse(&format!(
            "checkpoint_commit: interval\ncheckpoint_interval: 200ms\n{FLOW}    kinesis_stream: a\n"
        ));
        assert_eq!(interval.checkpoint_commit, CheckpointCommit::Interval);
        assert_eq!(interval.checkpoint_interval, Duration::from_millis(200));
        assert_eq!(
            problems(&format!(
                "state_dir: /x\ncheckpoint_commit: always\n{FLOW}    kinesis_stream: a\n"
            )),
            ["/etc/k.yaml:2:1: checkpoint_commit: `always` is not one of group, interval"]
        );
    }

    #[test]
    fn logging_and_metrics_keys_are_read_and_checked() {
        let config = parse(&format!(
            "log_level: kinship=debug,warn\nlog_format: json\nmetrics:\n  stuck_after: 5s\n{FLOW}    kinesis_stream: a\n"
        ));
        assert_eq!(config.log_level, "kinship=debug,warn");
        assert_eq!(config.log_format, LogFormat::Json);
        let metrics = config.metrics.expect("metrics block");
        assert_eq!(metrics.listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(metrics.stuck_after, Duration::from_secs(5));
        let defaults = parse(&format!("{FLOW}    kinesis_stream: a\n"));
        assert_eq!(
            (
                defaults.log_level.as_str(),
                defaults.log_format,
                defaults.metrics
            ),
            ("info", LogFormat::Human, None)
        );
        assert_eq!(
            problems(&format!(
                "log_level: 'kinship=loud'\nlog_format: xml\nmetrics:\n  listen: everywhere\n{FLOW}    kinesis_stream: a\n"
            )),
            [
                "/etc/k.yaml:1:1: log_level: `kinship=loud` is not a log level or filter such as info, debug or kinship=debug,info (error parsing level filter: expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\", or a number 0-5)",
                "/etc/k.yaml:2:1: log_format: `xml` is not one of human, json",
                "/etc/k.yaml:4:3: metrics.listen: `everywhere` is not an address and port such as 127.0.0.1:9720",
            ]
        );
    }

    #[test]
    fn processors_are_read_and_checked() {
        let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    on_error: drop\n    processors:\n      - type: filter\n        include: ERROR\n      - type: redact\n        builtin: [email]\n        patterns:\n          - pattern: 'pw=\\S+'\n            replacement: 'pw=*'\n      - type: add_metadata\n        fields: {{env: prod, tier: 2}}\n        timestamp: true\n"
        ));
        let flow = &config.flows[0];
        assert_eq!(flow.on_error, OnError::Drop);
        assert_eq!(flow.processors.len(), 3);
        match &flow.processors[2] {
            ProcessorSpec::AddMetadata {
                fields,
                timestamp,
                envelope,
                host,
                ..
            } => {
                assert_eq!(
                    fields,
                    &vec![
                        ("env".to_owned(), serde_json::json!("prod")),
                        ("tier".to_owned(), serde_json::json!(2))
                    ]
                );
                assert!(*timestamp && !*envelope && !*host);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    on_error: retry\n    processors:\n      - type: filter\n        include: '(oops'\n      - type: filter\n      - type: redact\n        builtin: [email, phone]\n"
            )),
            [
                "/etc/k.yaml:5:5: flows[0].on_error: `retry` is not one of send_raw, drop",
                "/etc/k.yaml:8:9: flows[0].processors[0].include[0]: `(oops` is not a valid regular expression: unclosed group",
                "/etc/k.yaml:9:9: flows[0].processors[1]: a filter needs include or exclude patterns",
                "/etc/k.yaml:11:26: flows[0].processors[2].builtin[1]: `phone` is not one of email, us_ssn, card_number, aws_access_key_id, aws_secret_key, bearer_token",
            ]
        );
        let converters = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: single_line\n        escape_newlines: true\n      - type: csv_to_json\n        field_names: [a, b]\n        delimiter: '\\t'\n      - type: log_to_json\n        format: combined_apache\n"
        ));
        assert_eq!(
            converters.flows[0].processors[..2],
            [
                ProcessorSpec::SingleLine {
                    trim: true,
                    separator: "\\n".into()
                },
                ProcessorSpec::CsvToJson {
                    field_names: vec!["a".into(), "b".into()],
                    delimiter: b'\t'
                },
            ]
        );
        assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    processors:\n      - type: csv_to_json\n        delimiter: ';;'\n      - type: log_to_json\n        format: nginx\n      - type: log_to_json\n        pattern: '(a)(b)'\n        field_names: [one]\n"
            )),
            [
                "/etc/k.yaml:6:9: flows[0].processors[0].field_names: is required: one name per column",
                "/etc/k.yaml:9:9: flows[0].processors[1].format: `nginx` is not one of common_apache, combined_apache, apache_error, syslog, rfc3339_syslog",
                "/etc/k.yaml:12:9: flows[0].processors[2].field_names: names 1 fields, but the pattern has 2 groups",
            ]
        );
        let unknown = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: to_xml\n"
        ));
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert!(
            unknown[0].contains("flows[0].processors") && unknown[0].contains("to_xml"),
            "{unknown:?}"
        );
    }

    #[test]
    fn cloudwatch_publishing_is_off_unless_asked_for_and_checked() {
        assert_eq!(
            parse(&format!("{FLOW}    kinesis_stream: a\n")).cloudwatch,
            None
        );
        let off = parse(&format!(
            "cloudwatch:\n  enabled: false\n{FLOW}    kinesis_stream: a\n"
        ));
        assert_eq!(off.cloudwatch, None);
        let on = parse(&format!(
            "aws:\n  region: eu-west-1\ncloudwatch:\n  interval: 30s\n  aws:\n    endpoint_url: https://monitoring.example.com\n{FLOW}    kinesis_stream: a\n"
        ));
        let settings = on.cloudwatch.expect("cloudwatch on");
        assert_eq!(settings.namespace, DEFAULT_CLOUDWATCH_NAMESPACE);
        assert_eq!(settings.interval, Duration::from_secs(30));
        assert_eq!(settings.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            settings.aws.endpoint_url.as_deref(),
            Some("https://monitoring.example.com")
        );
        assert_eq!(
            problems(&format!(
                "cloudwatch:\n  namespace: AWS/Kinesis\n  interval: 10ms\n{FLOW}    kinesis_stream: a\n"
            )),
            [
                "/etc/k.yaml:2:3: cloudwatch.namespace: `AWS/Kinesis` starts with AWS/, which is reserved for AWS services",
                "/etc/k.yaml:3:3: cloudwatch.interval: must be at least 1s",
            ]
        );
    }

    #[test]
    fn the_log_file_keys_are_read_and_checked() {
        let config = parse(&format!(
            "log_file: 'C:\\ProgramData\\kinship\\logs\\kinship.log'\nlog_file_max_bytes: 1048576\nlog_file_keep: 0\n{FLOW}    kinesis_stream: a\n"
        ));
        assert_eq!(
            config.log_file,
            LogFileSettings {
                path: Some(PathBuf::from(r"C:\ProgramData\kinship\logs\kinship.log")),
                max_bytes: 1024 * 1024,
                keep: 0,
            }
        );
        let defaults = parse(&format!("{FLOW}    kinesis_stream: a\n"));
        assert_eq!(
            defaults.log_file,
            LogFileSettings {
                path: None,
                max_bytes: 10 * 1024 * 1024,
                keep: 5,
            }
        );
        assert_eq!(
            problems(&format!(
                "log_file: ''\nlog_file_max_bytes: 100\nlog_file_keep: 5000\n{FLOW}    kinesis_stream: a\n"
            )),
            [
                "/etc/k.yaml:1:1: log_file: must not be empty; leave it out to log to standard error",
                "/etc/k.yaml:2:1: log_file_max_bytes: 100 is out of range; it must be from 65536 to 1073741824",
                "/etc/k.yaml:3:1: log_file_keep: 5000 is out of range; it must be from 0 to 1000",
            ]
        );
    }
}
