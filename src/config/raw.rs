//! The YAML file as serde reads it, before validation: every key optional so that missing keys
//! are reported together with every other problem, unknown keys rejected. serde reads what the
//! schema's pass (`schema.rs`) left of the document: unknown keys and wrong types are reported
//! and left out there, and an item of a list that could not be used is a hole (`None`) so that
//! the items after it keep their index.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state_dir: Option<String>,
    #[serde(default)]
    pub aws: RawAws,
    pub shutdown_grace: Option<String>,
    pub checkpoint_interval: Option<String>,
    pub checkpoint_commit: Option<String>,
    pub progress_interval: Option<String>,
    pub progress_format: Option<String>,
    pub behind_warning_bytes: Option<u64>,
    pub checkpoint_expiry: Option<String>,
    pub max_open_files: Option<u64>,
    pub memory_budget: Option<u64>,
    pub dry_run_output: Option<String>,
    pub metrics: Option<RawMetrics>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub log_file: Option<String>,
    pub log_file_max_bytes: Option<u64>,
    pub log_file_keep: Option<u64>,
    pub watch_config: Option<bool>,
    pub cloudwatch: Option<RawCloudWatch>,
    pub flows: Option<Vec<Option<RawFlow>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub sts_endpoint_url: Option<String>,
    pub profile: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub assume_role: Option<RawAssumeRole>,
    pub request_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub check_identity: Option<bool>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssumeRole {
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub duration: Option<String>,
}

/// `windows_event_log`: where a flow's events are read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventLog {
    pub file: Option<String>,
    pub channel: Option<String>,
    pub query: Option<String>,
}

/// `journald`: a flow that reads the systemd journal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournald {
    pub directory: Option<String>,
    pub units: Option<OneOrMany>,
    pub max_priority: Option<String>,
    pub journalctl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    pub name: Option<String>,
    pub processors: Option<Vec<Option<RawProcessor>>>,
    pub on_error: Option<String>,
    pub files: Option<OneOrMany>,
    pub windows_event_log: Option<RawEventLog>,
    pub journald: Option<RawJournald>,
    pub exclude: Option<OneOrMany>,
    pub ignore_older: Option<String>,
    pub shipped_files: Option<String>,
    pub shipped_files_dir: Option<String>,
    pub shipped_files_idle: Option<String>,
    pub kinesis_stream: Option<String>,
    pub firehose_stream: Option<String>,
    pub aws: Option<RawAws>,
    pub dry_run: Option<bool>,
    pub data_path: Option<String>,
    pub wire_format: Option<String>,
    pub ordering: Option<String>,
    pub aggregation: Option<String>,
    pub pack_records: Option<bool>,
    pub pack_record_bytes: Option<u64>,
    pub compression: Option<String>,
    pub initial_position: Option<String>,
    pub partition_key: Option<RawPartitionKey>,
    pub explicit_hash_key: Option<String>,
    pub max_batch_age: Option<String>,
    pub max_batch_records: Option<u64>,
    pub max_batch_bytes: Option<u64>,
    pub max_record_bytes: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub poll_interval: Option<String>,
    pub scan_interval: Option<String>,
    pub retry_initial_backoff: Option<String>,
    pub retry_max_backoff: Option<String>,
    pub max_retry_duration: Option<String>,
    pub fingerprint_bytes: Option<u64>,
    pub partial_line_timeout: Option<String>,
    pub multiline_start_pattern: Option<String>,
    pub multiline_flush_timeout: Option<String>,
    pub skip_header_lines: Option<u64>,
    pub file_footer_pattern: Option<String>,
    pub oversize_records: Option<String>,
    pub truncated_record_terminator: Option<String>,
}

/// `partition_key: random` or `partition_key: { regex: '...', fallback: random }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPartitionKey {
    Mode(String),
    Extract(RawKeyExtraction),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyExtraction {
    pub regex: Option<String>,
    pub json_field: Option<String>,
    pub fallback: Option<String>,
}

/// One entry of a flow's `processors` list, chosen by its `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawProcessor {
    SingleLine {
        no_trim: Option<bool>,
        escape_newlines: Option<bool>,
        separator: Option<String>,
    },
    CsvToJson {
        field_names: Option<Vec<String>>,
        delimiter: Option<String>,
    },
    LogToJson {
        format: Option<String>,
        pattern: Option<String>,
        field_names: Option<Vec<String>>,
        dash_as_null: Option<bool>,
    },
    Filter {
        include: Option<OneOrMany>,
        exclude: Option<OneOrMany>,
    },
    Redact {
        builtin: Option<OneOrMany>,
        replacement: Option<String>,
        patterns: Option<Vec<Option<RawRedactPattern>>>,
    },
    AddEc2Metadata {
        refresh: Option<String>,
        tags: Option<bool>,
        endpoint: Option<String>,
        ec2_endpoint: Option<String>,
    },
    AddMetadata {
        timestamp: Option<bool>,
        fields: Option<serde_yaml::Mapping>,
        host: Option<bool>,
        file: Option<bool>,
        record_id: Option<bool>,
        envelope: Option<bool>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedactPattern {
    pub pattern: Option<String>,
    pub replacement: Option<String>,
}

/// `files: /a/*.log` or `files: [/a/*.log, /b/*.log]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloudWatch {
    pub enabled: Option<bool>,
    pub namespace: Option<String>,
    pub interval: Option<String>,
    pub tag_instance: Option<bool>,
    pub instance_id: Option<String>,
    pub aws: Option<RawAws>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
    pub stuck_after: Option<String>,
}
