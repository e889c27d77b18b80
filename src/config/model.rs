//! The validated settings: what the rest of the agent reads. Plain values only: no handles,
//! no caches, nothing that runs.

use std::path::PathBuf;
use std::time::Duration;

use super::limits;
use super::processor_spec::{OnError, ProcessorSpec};
use super::{AwsSettings, Destination};
use crate::compression::Compression;
pub use crate::metrics::ProgressFormat;
use crate::pattern::Pattern;

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
    /// How progress is logged: kinship's line or the Kinesis Agent's (`progress_format`).
    pub progress_format: ProgressFormat,
    /// A flow this many bytes behind its files is warned about once; 0 for never.
    pub behind_warning_bytes: u64,
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

/// Where a flow's Windows events are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventLogSource {
    /// An archived or exported `.evtx` file, shipped once, positioned by event record id.
    File(PathBuf),
    /// A live channel of the Event Log (`Security`, `Microsoft-Windows-Sysmon/Operational`),
    /// followed through the Event Log API on Windows, with an optional XPath filter.
    Channel {
        channel: String,
        query: Option<String>,
    },
}

/// A flow that reads the systemd journal (`journald`), through `journalctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournaldSource {
    /// A journal directory to read instead of the system journal.
    pub directory: Option<PathBuf>,
    /// Only entries of these units (`_SYSTEMD_UNIT`), when any are given.
    pub units: Vec<String>,
    /// Only entries of this priority or more urgent (0 emerg … 7 debug).
    pub max_priority: Option<u8>,
    /// The `journalctl` program run: a bare name is looked up on `PATH`.
    pub journalctl: PathBuf,
}

/// Where reading starts in a file that has no checkpoint yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialPosition {
    StartOfFile,
    EndOfFile,
}

/// What becomes of a file once every line of it is acknowledged and it is no longer written
/// (`shipped_files`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ShippedFiles {
    /// Left where it is (the default).
    #[default]
    Keep,
    /// Deleted.
    Delete,
    /// Moved into this directory (`shipped_files_dir`), under its own name.
    Move(PathBuf),
}

impl ShippedFiles {
    /// The action's name, as logs and metrics show it; `None` for `keep`.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            ShippedFiles::Keep => None,
            ShippedFiles::Delete => Some("delete"),
            ShippedFiles::Move(_) => Some("move"),
        }
    }
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
    /// The `Instance` dimension beside `Destination` (`tag_instance`, `instance_id`).
    pub instance: InstanceDimension,
    /// The top-level `aws` block, with the `cloudwatch.aws` block over it.
    pub aws: AwsSettings,
}

/// Whether CloudWatch data points carry the `Instance` dimension, as the Kinesis Agent's do with
/// `cloudwatch.tagInstance`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InstanceDimension {
    /// `Destination` only.
    #[default]
    Off,
    /// The EC2 instance id, read from the instance metadata service at start.
    FromMetadata,
    /// This instance id (`cloudwatch.instance_id`).
    Given(String),
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
    /// The globs of the files followed; empty when the flow reads the Windows Event Log or
    /// the journal.
    pub files: Vec<String>,
    /// Set when the flow reads Windows events instead of files.
    pub event_log: Option<EventLogSource>,
    /// Set when the flow reads the systemd journal instead of files.
    pub journald: Option<JournaldSource>,
    /// Paths matching any of these globs are not followed.
    pub exclude: Vec<glob::Pattern>,
    /// Files not modified for this long are not opened (until they are written again).
    pub ignore_older: Option<Duration>,
    /// What becomes of a file once all of it is acknowledged and it is no longer written.
    pub shipped_files: ShippedFiles,
    /// A file that was not renamed counts as no longer written once it is not the newest
    /// match of its glob and was not modified for this long.
    pub shipped_files_idle: Duration,
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
    /// What the flow reads, as its log lines name it: its globs, the journal, or the Windows
    /// Event Log file or channel.
    pub fn reads(&self) -> String {
        match (&self.journald, &self.event_log) {
            (Some(journal), _) => match &journal.directory {
                Some(directory) => format!("the journal in {}", directory.display()),
                None => "the system journal".to_owned(),
            },
            (None, Some(EventLogSource::File(path))) => {
                format!("the event log file {}", path.display())
            }
            (None, Some(EventLogSource::Channel { channel, .. })) => {
                format!("the Event Log channel {channel}")
            }
            (None, None) => self.files.join(", "),
        }
    }

    /// The most bytes of a record (newline included) that fit in one record beside its key.
    pub fn max_line_bytes(&self) -> usize {
        self.max_record_bytes
            - self.partition_key.max_len()
            - self.compression.margin(self.max_record_bytes)
    }
}
