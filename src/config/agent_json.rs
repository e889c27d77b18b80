//! The Kinesis Agent's `agent.json`, read as kinship's YAML: JSON with `//` and `/* */`
//! comments, flat dotted keys (`"cloudwatch.emitMetrics"` is one key), numbers and booleans
//! also written as strings, and the flows of every file in `agent.d/` beside it. Each key
//! becomes the kinship key that does the same; a key kinship does without is a warning naming
//! it and why; a key whose meaning kinship cannot keep is an error. `kinship migrate` prints
//! the YAML; `kinship run` reads an agent.json through the same translation.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Problem;
use crate::secrets;

/// An agent.json turned into kinship's YAML.
#[derive(Debug)]
pub struct Migration {
    /// The YAML, with a comment wherever the meaning differs.
    pub yaml: String,
    /// Keys kinship does without, each with why.
    pub warnings: Vec<String>,
}

/// Whether `text` (read from `path`) is an agent.json: by its extension, or by a JSON object
/// where YAML would start.
pub fn looks_like_agent_json(path: &Path, text: &str) -> bool {
    if path.extension().is_some_and(|ext| ext == "json") {
        return true;
    }
    strip_comments(text).trim_start().starts_with('{')
}

/// The global keys kinship does without, and why.
const IGNORED_GLOBALS: &[(&str, &str)] = &[
    (
        "maxSendingThreads",
        "kinship sends asynchronously; each flow's concurrency is max_in_flight",
    ),
    (
        "maxSendingThreadsPerCore",
        "kinship sends asynchronously; each flow's concurrency is max_in_flight",
    ),
    (
        "sendingThreadsKeepAliveMillis",
        "kinship keeps no sending thread pool",
    ),
    (
        "sendingThreadsMaxQueueSize",
        "kinship bounds what is queued with memory_budget",
    ),
    (
        "maxConnections",
        "the AWS SDK for Rust pools connections itself",
    ),
    (
        "connectionTTLMillis",
        "the AWS SDK for Rust pools connections itself",
    ),
    (
        "useTcpKeepAlive",
        "the AWS SDK for Rust manages its connections",
    ),
    (
        "useHttpGzip",
        "kinship compresses records with a flow's compression key instead",
    ),
    (
        "userAgent",
        "kinship sends the AWS SDK for Rust's user agent",
    ),
    (
        "userAgentOverride",
        "kinship sends the AWS SDK for Rust's user agent",
    ),
    (
        "cloudwatch.tagInstance",
        "kinship publishes the Destination dimension only",
    ),
    (
        "cloudwatch.metricsQueueSize",
        "kinship keeps counters, not a queue of metrics",
    ),
    (
        "log.emitMetrics",
        "the progress line and the metrics endpoint show every counter",
    ),
    (
        "log.emitInternalMetrics",
        "the progress line and the metrics endpoint show every counter",
    ),
];

/// Flow keys kinship does without, and why.
const IGNORED_FLOW_KEYS: &[(&str, &str)] = &[
    (
        "publishQueueCapacity",
        "kinship bounds what is queued with memory_budget",
    ),
    (
        "waitOnFullPublishQueueMillis",
        "kinship pauses reading when memory_budget is spent",
    ),
    (
        "waitOnEmptyPublishQueueMillis",
        "kinship sends a batch when it is full or max_batch_age passed",
    ),
    (
        "log.emitInternalMetrics",
        "the progress line and the metrics endpoint show every counter",
    ),
];

/// Reads the agent.json at `path` (its text `text`) and the flows of `agent.d/` beside it.
pub fn migrate(path: &Path, text: &str) -> Result<Migration, Vec<Problem>> {
    let mut problems = Vec::new();
    let root = parse_object(text).map_err(|message| {
        vec![Problem {
            line: None,
            column: None,
            key: String::new(),
            message,
        }]
    })?;
    let mut flows: Vec<(Map<String, Value>, String)> = Vec::new();
    match root.get("flows") {
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Object(flow) => flows.push((flow.clone(), text.to_owned())),
                    _ => problems.push(problem(text, "flows", "each flow must be an object")),
                }
            }
        }
        Some(_) => problems.push(problem(text, "flows", "must be a list")),
        None => {}
    }
    let mut warnings = Vec::new();
    for (file, file_text) in agent_d_files(path) {
        match parse_object(&file_text) {
            Ok(other) => match other.get("flows") {
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::Object(flow) = item {
                            flows.push((flow.clone(), file_text.clone()));
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
    if flows.is_empty() {
        problems.push(problem(text, "flows", "there are no flows"));
    }
    let mut out = Writer::default();
    let _ = writeln!(
        out.text,
        "# Migrated from {} by `kinship migrate`. Comments mark where kinship differs.",
        path.display()
    );
    globals(&root, text, &mut out, &mut warnings, &mut problems);
    out.line(0, "flows:");
    let mut names: Vec<String> = Vec::new();
    for (index, (flow, flow_text)) in flows.iter().enumerate() {
        flow_block(
            index,
            flow,
            flow_text,
            &root,
            &mut names,
            &mut out,
            &mut warnings,
            &mut problems,
        );
    }
    if problems.is_empty() {
        Ok(Migration {
            yaml: out.text,
            warnings,
        })
    } else {
        Err(problems)
    }
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

/// YAML text, one line at a time.
#[derive(Default)]
struct Writer {
    text: String,
}

impl Writer {
    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.text, "{}{text}", " ".repeat(indent));
    }

    fn key(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("{key}: {value}"));
    }

    fn comment(&mut self, indent: usize, text: &str) {
        self.line(indent, &format!("# {text}"));
    }
}

/// `text` as a single-quoted YAML scalar.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A problem with `key` (a global key, or a path into a flow such as
/// `flows[0].initialPosition`), at the first place its last part is written in `text`.
fn problem(text: &str, key: &str, message: impl Into<String>) -> Problem {
    let last = if key.starts_with("flows[") {
        key.rsplit('.').next().unwrap_or(key)
    } else {
        key
    };
    let needle = format!("\"{}\"", last.split('[').next().unwrap_or(last));
    let line = text
        .find(&needle)
        .map(|at| text[..at].matches('\n').count() + 1);
    Problem {
        line,
        column: None,
        key: key.to_owned(),
        message: message.into(),
    }
}

fn globals(
    root: &Map<String, Value>,
    text: &str,
    out: &mut Writer,
    warnings: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    for (key, value) in root {
        if key == "flows" {
            continue;
        }
        if let Some((_, why)) = IGNORED_GLOBALS.iter().find(|(name, _)| name == key) {
            warnings.push(format!("{key}: ignored; {why}"));
            continue;
        }
        if key.starts_with("userDefinedCredentialsProvider") {
            problems.push(problem(text, key, "a Java credentials provider cannot be loaded by kinship; use a profile, static keys, assume_role or the default chain"));
            continue;
        }
        let known = [
            "checkpointFile",
            "checkpointTimeToLiveDays",
            "shutdownTimeoutMillis",
            "awsAccessKeyId",
            "awsSecretAccessKey",
            "assumeRoleARN",
            "assumeRoleExternalId",
            "sts.endpoint",
            "kinesis.endpoint",
            "kinesis.region",
            "firehose.endpoint",
            "cloudwatch.endpoint",
            "cloudwatch.emitMetrics",
            "cloudwatch.metricsBufferTimeMillis",
            "cloudwatch.namespace",
            "log.statusReportingPeriodSeconds",
            "log.file",
            "log.level",
            "log.maxBackupIndex",
            "log.maxFileSize",
            "connectionTimeoutMillis",
            "socketTimeoutMillis",
        ];
        if !known.contains(&key.as_str()) {
            let _ = value;
            warnings.push(format!(
                "{key}: not a Kinesis Agent key (it ignores unknown keys too); ignored"
            ));
        }
    }
    // The Kinesis Agent's checkpoints (SQLite) cannot be read: each file starts as
    // initial_position says.
    let state_dir = match string(root, "checkpointFile") {
        Some(file) => {
            let parent = Path::new(&file)
                .parent()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default();
            let volatile = parent.is_empty()
                || parent == "/var/run"
                || parent.starts_with("/var/run/")
                || parent == "/run"
                || parent.starts_with("/run/");
            warnings.push(format!("checkpointFile: {file} (the Kinesis Agent's SQLite checkpoints) is not read; each file starts as initial_position says"));
            if volatile {
                None
            } else {
                Some(parent)
            }
        }
        None => None,
    };
    match state_dir {
        Some(dir) => {
            out.comment(
                0,
                "Beside the Kinesis Agent's checkpointFile; kinship writes checkpoints.json here.",
            );
            out.key(0, "state_dir", &quoted(&dir));
        }
        None => {
            out.comment(
                0,
                "Checkpoints live here, not in /var/run (lost at each reboot) as the Kinesis Agent's did.",
            );
            out.key(0, "state_dir", "/var/lib/kinship");
        }
    }
    if let Some(days) = number(root, "checkpointTimeToLiveDays", text, problems) {
        out.key(0, "checkpoint_expiry", &format!("{days}d"));
    }
    if let Some(ms) = number(root, "shutdownTimeoutMillis", text, problems) {
        out.key(0, "shutdown_grace", &format!("{ms}ms"));
    }
    if let Some(seconds) = number(root, "log.statusReportingPeriodSeconds", text, problems) {
        out.key(0, "progress_interval", &format!("{seconds}s"));
    }
    if let Some(level) = string(root, "log.level") {
        out.key(0, "log_level", &quoted(&level.to_lowercase()));
    }
    if let Some(file) = string(root, "log.file") {
        out.key(0, "log_file", &quoted(&file));
        if let Some(bytes) = number(root, "log.maxFileSize", text, problems).filter(|b| *b > 0) {
            out.key(0, "log_file_max_bytes", &bytes.to_string());
        }
        if let Some(keep) = number(root, "log.maxBackupIndex", text, problems).filter(|k| *k >= 0) {
            out.key(0, "log_file_keep", &keep.to_string());
        }
    }
    // AWS settings for every flow; each flow adds its service's endpoint.
    let mut aws = Vec::new();
    if let Some(region) = string(root, "kinesis.region") {
        aws.push(("region", quoted(&region)));
    }
    if let Some(endpoint) = string(root, "sts.endpoint") {
        aws.push(("sts_endpoint_url", quoted(&with_scheme(&endpoint))));
    }
    match (
        string(root, "awsAccessKeyId"),
        string(root, "awsSecretAccessKey"),
    ) {
        (Some(id), Some(secret)) => {
            aws.push(("access_key_id", quoted(&id)));
            aws.push(("secret_access_key", quoted(&secret)));
        }
        (Some(_), None) | (None, Some(_)) => warnings.push("awsAccessKeyId, awsSecretAccessKey: only one is set; the Kinesis Agent then uses neither, and neither does kinship".to_owned()),
        (None, None) => {}
    }
    if let Some(ms) = number(root, "connectionTimeoutMillis", text, problems) {
        aws.push(("connect_timeout", format!("{ms}ms")));
    }
    if let Some(ms) = number(root, "socketTimeoutMillis", text, problems) {
        aws.push(("request_timeout", format!("{ms}ms")));
    }
    let role = string(root, "assumeRoleARN");
    if !aws.is_empty() || role.is_some() {
        out.line(0, "aws:");
        for (key, value) in &aws {
            out.key(2, key, value);
        }
        if let Some(role) = role {
            out.comment(
                2,
                "The Kinesis Agent's session name and its fixed one-hour duration.",
            );
            out.line(2, "assume_role:");
            out.key(4, "role_arn", &quoted(&role));
            if let Some(external) = string(root, "assumeRoleExternalId") {
                out.key(4, "external_id", &quoted(&external));
            }
            out.key(4, "session_name", "AWSKinesisAgent");
            out.key(4, "duration", "1h");
        }
    }
    let emit = boolean(root, "cloudwatch.emitMetrics", text, problems).unwrap_or(true);
    if emit {
        out.comment(
            0,
            "The Kinesis Agent publishes its metrics unless cloudwatch.emitMetrics is false.",
        );
        out.line(0, "cloudwatch:");
        if let Some(namespace) = string(root, "cloudwatch.namespace") {
            out.key(2, "namespace", &quoted(&namespace));
        }
        let ms = number(root, "cloudwatch.metricsBufferTimeMillis", text, problems)
            .unwrap_or(30_000)
            .max(1000);
        out.key(2, "interval", &format!("{ms}ms"));
        if let Some(endpoint) = string(root, "cloudwatch.endpoint") {
            out.line(2, "aws:");
            let (region, url) = endpoint_parts(&endpoint, "monitoring");
            if let Some(region) = region {
                out.key(4, "region", &quoted(&region));
            }
            if let Some(url) = url {
                out.key(4, "endpoint_url", &quoted(&url));
            }
        }
    }
}

/// An endpoint as the Kinesis Agent takes it (`kinesis.us-east-1.amazonaws.com`, with or
/// without scheme): the region of a standard AWS endpoint (no endpoint URL is needed then), or
/// the URL of any other.
fn endpoint_parts(endpoint: &str, service: &str) -> (Option<String>, Option<String>) {
    let url = with_scheme(endpoint);
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let prefix = format!("{service}.");
    if let Some(rest) = host.strip_prefix(&prefix) {
        if let Some(region) = rest
            .strip_suffix(".amazonaws.com")
            .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
        {
            if !region.contains('.') {
                return (Some(region.to_owned()), None);
            }
        }
    }
    (None, Some(url))
}

fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

#[allow(clippy::too_many_arguments)]
fn flow_block(
    index: usize,
    flow: &Map<String, Value>,
    text: &str,
    root: &Map<String, Value>,
    names: &mut Vec<String>,
    out: &mut Writer,
    warnings: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    let key_of = |key: &str| format!("flows[{index}].{key}");
    let firehose = string(flow, "deliveryStream");
    let kinesis = string(flow, "kinesisStream");
    let (kind, stream) = match (&firehose, &kinesis) {
        (Some(stream), Some(_)) => {
            warnings.push(format!("{}: both deliveryStream and kinesisStream; the Kinesis Agent sends to the Firehose stream, and so does kinship", key_of("kinesisStream")));
            ("firehose_stream", stream.clone())
        }
        (Some(stream), None) => ("firehose_stream", stream.clone()),
        (None, Some(stream)) => ("kinesis_stream", stream.clone()),
        (None, None) => {
            problems.push(problem(
                text,
                &format!("flows[{index}]"),
                "a flow needs kinesisStream or deliveryStream",
            ));
            return;
        }
    };
    let base = format!(
        "{}-{}",
        if kind == "firehose_stream" {
            "firehose"
        } else {
            "kinesis"
        },
        stream
            .chars()
            .map(
                |c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            )
            .take(50)
            .collect::<String>()
    );
    let mut name = base.clone();
    let mut suffix = 2;
    while names.contains(&name) {
        name = format!("{base}-{suffix}");
        suffix += 1;
    }
    names.push(name.clone());
    out.line(2, &format!("- name: {}", quoted(&name)));
    match string(flow, "filePattern") {
        Some(pattern) => out.key(4, "files", &quoted(&pattern)),
        None => problems.push(problem(text, &key_of("filePattern"), "is required")),
    }
    out.key(4, kind, &quoted(&stream));
    // The service endpoint the Kinesis Agent would use for this flow.
    let (service_key, service) = if kind == "firehose_stream" {
        ("firehose.endpoint", "firehose")
    } else {
        ("kinesis.endpoint", "kinesis")
    };
    if let Some(endpoint) = string(root, service_key) {
        let (region, url) = endpoint_parts(&endpoint, service);
        out.line(4, "aws:");
        if let Some(region) = region {
            out.key(6, "region", &quoted(&region));
        }
        if let Some(url) = url {
            out.key(6, "endpoint_url", &quoted(&url));
            if url.starts_with("http://") {
                out.key(6, "allow_insecure_http", "true");
            }
        }
    }
    if !flow.contains_key("initialPosition") {
        out.comment(4, "The Kinesis Agent's default.");
    }
    let position = match string(flow, "initialPosition").as_deref() {
        None | Some("END_OF_FILE") => "end_of_file",
        Some("START_OF_FILE") => "start_of_file",
        Some(other) => {
            problems.push(problem(
                text,
                &key_of("initialPosition"),
                format!(
                    "`{}` is not START_OF_FILE or END_OF_FILE",
                    secrets::quoted(other)
                ),
            ));
            "end_of_file"
        }
    };
    out.key(4, "initial_position", position);
    if kind == "kinesis_stream" {
        match string(flow, "partitionKeyOption").as_deref() {
            None | Some("RANDOM") => out.key(4, "partition_key", "random"),
            Some("DETERMINISTIC") => {
                out.comment(4, "Equal records get equal keys, as with the Kinesis Agent's DETERMINISTIC, but the key is kinship's 64-bit hash, not an MD5: equal records still share a shard.");
                out.key(4, "partition_key", "deterministic");
            }
            Some(other) => problems.push(problem(
                text,
                &key_of("partitionKeyOption"),
                format!(
                    "`{}` is not RANDOM or DETERMINISTIC",
                    secrets::quoted(other)
                ),
            )),
        }
    }
    let millis =
        |key: &str, problems: &mut Vec<Problem>| number_at(flow, key, &key_of(key), text, problems);
    if !flow.contains_key("maxBufferAgeMillis") {
        out.comment(
            4,
            "The Kinesis Agent's default batch age (kinship's own is 1 s).",
        );
    }
    out.key(
        4,
        "max_batch_age",
        &format!(
            "{}ms",
            millis("maxBufferAgeMillis", problems).unwrap_or(60_000)
        ),
    );
    for (agent_key, kinship_key, unit) in [
        ("maxBufferSizeRecords", "max_batch_records", ""),
        ("maxBufferSizeBytes", "max_batch_bytes", ""),
        ("retryInitialBackoffMillis", "retry_initial_backoff", "ms"),
        ("retryMaxBackoffMillis", "retry_max_backoff", "ms"),
        ("minTimeBetweenFilePollsMillis", "poll_interval", "ms"),
        (
            "maxTimeBetweenFileTrackerRefreshMillis",
            "scan_interval",
            "ms",
        ),
        ("skipHeaderLines", "skip_header_lines", ""),
    ] {
        if let Some(value) = millis(agent_key, problems) {
            out.key(4, kinship_key, &format!("{value}{unit}"));
        }
    }
    for (agent_key, kinship_key) in [
        ("multiLineStartPattern", "multiline_start_pattern"),
        ("fileFooterPattern", "file_footer_pattern"),
        ("truncatedRecordTerminator", "truncated_record_terminator"),
    ] {
        if let Some(value) = string(flow, agent_key) {
            if agent_key == "fileFooterPattern" {
                out.comment(4, "Matched against the footer line without its line ending; the Kinesis Agent trims it first.");
            }
            out.key(4, kinship_key, &json_quoted(&value));
        }
    }
    if let Some(bytes) = millis("aggregatedRecordSizeBytes", problems).filter(|b| *b > 0) {
        if kind == "firehose_stream" {
            out.key(4, "pack_records", "true");
            out.key(4, "pack_record_bytes", &bytes.to_string());
        } else {
            warnings.push(format!(
                "{}: applies to Firehose flows only; ignored, as the Kinesis Agent does",
                key_of("aggregatedRecordSizeBytes")
            ));
        }
    }
    for (key, why) in IGNORED_FLOW_KEYS {
        if flow.contains_key(*key) {
            warnings.push(format!("{}: ignored; {why}", key_of(key)));
        }
    }
    let known_flow_keys = [
        "filePattern",
        "kinesisStream",
        "deliveryStream",
        "initialPosition",
        "partitionKeyOption",
        "maxBufferAgeMillis",
        "maxBufferSizeRecords",
        "maxBufferSizeBytes",
        "retryInitialBackoffMillis",
        "retryMaxBackoffMillis",
        "minTimeBetweenFilePollsMillis",
        "maxTimeBetweenFileTrackerRefreshMillis",
        "skipHeaderLines",
        "multiLineStartPattern",
        "fileFooterPattern",
        "truncatedRecordTerminator",
        "aggregatedRecordSizeBytes",
        "dataProcessingOptions",
    ];
    for key in flow.keys() {
        if !known_flow_keys.contains(&key.as_str())
            && !IGNORED_FLOW_KEYS.iter().any(|(name, _)| name == key)
        {
            warnings.push(format!(
                "{}: not a Kinesis Agent flow key (it ignores unknown keys too); ignored",
                key_of(key)
            ));
        }
    }
    match flow.get("dataProcessingOptions") {
        None => {}
        Some(Value::Array(options)) => {
            processors(index, options, text, out, problems);
        }
        Some(_) => warnings.push(format!(
            "{}: not a list; ignored, as the Kinesis Agent does",
            key_of("dataProcessingOptions")
        )),
    }
}

fn processors(
    flow: usize,
    options: &[Value],
    text: &str,
    out: &mut Writer,
    problems: &mut Vec<Problem>,
) {
    let mut lines = Writer::default();
    let mut drop_unmatched = false;
    for (index, option) in options.iter().enumerate() {
        let key = format!("flows[{flow}].dataProcessingOptions[{index}]");
        let Value::Object(option) = option else {
            problems.push(problem(text, &key, "must be an object"));
            continue;
        };
        if let Some(format) = string(option, "jsonFormat") {
            if format != "COMPACT" {
                problems.push(problem(
                    text,
                    &format!("{key}.jsonFormat"),
                    format!(
                        "`{}`: kinship writes compact JSON only; remove it or write COMPACT",
                        secrets::quoted(&format)
                    ),
                ));
            }
        }
        let name = string(option, "optionName").unwrap_or_default();
        match name.as_str() {
            "SINGLELINE" => {
                let parse_options: Vec<String> = list(option, "parseOptions");
                lines.line(6, "- type: single_line");
                if parse_options.iter().any(|o| o == "NO_TRIM") {
                    lines.key(8, "no_trim", "true");
                }
                if parse_options.iter().any(|o| o == "ESCAPE_NEW_LINE") {
                    lines.comment(8, "The three characters the Kinesis Agent's ESCAPE_NEW_LINE puts between lines.");
                    lines.key(8, "separator", &quoted("\\\\n"));
                }
            }
            "CSVTOJSON" => {
                let names: Vec<String> = list(option, "customFieldNames");
                if names.is_empty() {
                    problems.push(problem(
                        text,
                        &format!("{key}.customFieldNames"),
                        "is required",
                    ));
                    continue;
                }
                lines.line(6, "- type: csv_to_json");
                lines.comment(8, "Quoted fields are read as CSV quoting says; the Kinesis Agent split them at every delimiter.");
                lines.key(8, "field_names", &yaml_list(&names));
                if let Some(delimiter) = string(option, "delimiter") {
                    let literal = match delimiter.as_str() {
                        "\\t" | "\t" => Some("\\t".to_owned()),
                        one if one.chars().count() == 1 && !".$|()[{^?*+\\".contains(one) => {
                            Some(one.to_owned())
                        }
                        escaped
                            if escaped.len() == 2
                                && escaped.starts_with('\\')
                                && !escaped[1..].chars().all(char::is_alphanumeric) =>
                        {
                            Some(escaped[1..].to_owned())
                        }
                        _ => None,
                    };
                    match literal {
                        Some(literal) => lines.key(8, "delimiter", &quoted(&literal)),
                        None => problems.push(problem(text, &format!("{key}.delimiter"), format!("`{}` is a regular expression to the Kinesis Agent; kinship takes one character", secrets::quoted(&delimiter)))),
                    }
                }
            }
            "LOGTOJSON" => {
                let format = string(option, "logFormat").unwrap_or_default();
                let kinship_format = match format.as_str() {
                    "COMMONAPACHELOG" => "common_apache",
                    "COMBINEDAPACHELOG" => "combined_apache",
                    "APACHEERRORLOG" => "apache_error",
                    "SYSLOG" => "syslog",
                    "RFC3339SYSLOG" => "rfc3339_syslog",
                    other => {
                        problems.push(problem(text, &format!("{key}.logFormat"), format!("`{}` is not COMMONAPACHELOG, COMBINEDAPACHELOG, APACHEERRORLOG, SYSLOG or RFC3339SYSLOG", secrets::quoted(other))));
                        continue;
                    }
                };
                lines.line(6, "- type: log_to_json");
                match string(option, "matchPattern") {
                    Some(pattern) => {
                        lines.key(8, "pattern", &json_quoted(&pattern));
                    }
                    None => lines.key(8, "format", kinship_format),
                }
                let names: Vec<String> = list(option, "customFieldNames");
                if !names.is_empty() {
                    lines.key(8, "field_names", &yaml_list(&names));
                }
                drop_unmatched = true;
            }
            "ADDMETADATA" => {
                lines.line(6, "- type: add_metadata");
                lines.key(8, "envelope", "true");
                if string(option, "timestamp").is_some_and(|t| t.eq_ignore_ascii_case("true")) {
                    lines.key(8, "timestamp", "true");
                }
                match option.get("metadata") {
                    None => {}
                    Some(Value::Object(fields)) => {
                        lines.line(8, "fields:");
                        for (field, value) in fields {
                            lines.key(10, &quoted(field), &value.to_string());
                        }
                    }
                    Some(_) => problems.push(problem(
                        text,
                        &format!("{key}.metadata"),
                        "kinship takes an object of fields",
                    )),
                }
            }
            "ADDEC2METADATA" => {
                lines.line(6, "- type: add_ec2_metadata");
                lines.comment(8, "Tags come from the instance metadata (allow tags in it), not from ec2:DescribeTags as with the Kinesis Agent.");
                lines.key(8, "tags", "true");
                let mut ttl_problems = Vec::new();
                let seconds =
                    number(option, "metadataTTL", text, &mut ttl_problems).unwrap_or(3600);
                problems.extend(ttl_problems);
                lines.key(8, "refresh", &format!("{}s", seconds.max(60)));
            }
            other => {
                problems.push(problem(text, &format!("{key}.optionName"), format!("`{}` has no kinship processor (kinship has SINGLELINE, CSVTOJSON, LOGTOJSON, ADDMETADATA, ADDEC2METADATA); remove it, or the records would change", secrets::quoted(other))));
            }
        }
    }
    if lines.text.is_empty() {
        return;
    }
    if drop_unmatched {
        out.comment(4, "The Kinesis Agent drops a line LOGTOJSON cannot match; it sends other unconvertible records as read, which kinship would do with send_raw.");
        out.key(4, "on_error", "drop");
    }
    out.line(4, "processors:");
    out.text.push_str(&lines.text);
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A string as a double-quoted YAML scalar, which takes JSON's escapes.
fn json_quoted(text: &str) -> String {
    Value::from(text).to_string()
}

fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn list(map: &Map<String, Value>, key: &str) -> Vec<String> {
    match map.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A whole number, written as a number or a string (decimal or 0x hex).
fn number(
    map: &Map<String, Value>,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<i64> {
    number_at(map, key, key, text, problems)
}

/// As [`number`], a problem named by `path`.
fn number_at(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<i64> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => {
            let trimmed = text.as_str();
            match trimmed
                .strip_prefix("0x")
                .or_else(|| trimmed.strip_prefix("0X"))
            {
                Some(hex) => i64::from_str_radix(hex, 16).ok(),
                None => trimmed.parse().ok(),
            }
        }
        _ => None,
    };
    if parsed.is_none() {
        problems.push(problem(
            text,
            path,
            format!("{} is not a whole number", shown(value)),
        ));
    }
    parsed
}

/// A boolean, written as one or as a string (true/yes/t/y/1, false/no/f/n/0).
fn boolean(
    map: &Map<String, Value>,
    key: &str,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<bool> {
    let value = map.get(key)?;
    let parsed = match value {
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(text) => match text.to_lowercase().as_str() {
            "true" | "yes" | "t" | "y" | "1" => Some(true),
            "false" | "no" | "f" | "n" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    if parsed.is_none() {
        problems.push(problem(
            text,
            key,
            format!("{} is not true or false", shown(value)),
        ));
    }
    parsed
}

/// A JSON value as a message may quote it: a string that looks like a secret as its prefix.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("\"{}\"", secrets::quoted(text)),
        other => secrets::quoted(&other.to_string()).into_owned(),
    }
}

/// The text parsed as one JSON object, comments allowed.
fn parse_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(&strip_comments(text)) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the file must hold one JSON object".to_owned()),
        Err(error) => Err(format!(
            "not valid JSON at line {} column {}: {error}",
            error.line(),
            error.column()
        )),
    }
}

/// `text` with `//` and `/* */` comments outside strings replaced by spaces (newlines kept, so
/// JSON errors give the right line).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        out.push('\n');
                    }
                    if last == '*' && skipped == '/' {
                        break;
                    }
                    last = skipped;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_outside_strings() {
        let text = "{ // a comment\n \"a\": \"x // y\", /* block\n */ \"b\": 1 }";
        let map = parse_object(text).expect("object");
        assert_eq!(map.get("a"), Some(&Value::from("x // y")));
        assert_eq!(map.get("b"), Some(&Value::from(1)));
        assert!(looks_like_agent_json(Path::new("/etc/x.conf"), "// c\n{}"));
        assert!(!looks_like_agent_json(
            Path::new("/etc/x.yaml"),
            "flows: []"
        ));
    }

    #[test]
    fn every_global_and_flow_key_becomes_its_kinship_key() {
        let text = r#"{
          "checkpointFile": "/var/run/aws-kinesis-agent/checkpoints",
          "checkpointTimeToLiveDays": "3",
          "shutdownTimeoutMillis": 20000,
          "awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "secret",
          "assumeRoleARN": "arn:aws:iam::123456789012:role/shipper", "assumeRoleExternalId": "ext",
          "kinesis.endpoint": "kinesis.eu-west-1.amazonaws.com",
          "firehose.endpoint": "https://firehose.eu-central-1.amazonaws.com",
          "cloudwatch.namespace": "MyAgent", "cloudwatch.metricsBufferTimeMillis": "0x2710",
          "log.statusReportingPeriodSeconds": 10, "log.level": "DEBUG",
          "connectionTimeoutMillis": 3000, "socketTimeoutMillis": "40000",
          "useHttpGzip": true, "somethingElse": 1,
          "flows": [
            { "filePattern": "/var/log/a/*.log", "kinesisStream": "a", "partitionKeyOption": "RANDOM",
              "maxBufferSizeRecords": "100", "maxBufferSizeBytes": 1048576, "retryInitialBackoffMillis": 200,
              "retryMaxBackoffMillis": "5000", "minTimeBetweenFilePollsMillis": 50, "skipHeaderLines": 1,
              "truncatedRecordTerminator": "...\n", "publishQueueCapacity": 10 },
            { "filePattern": "/var/log/b/*.log", "deliveryStream": "b", "aggregatedRecordSizeBytes": 65536 }
          ]
        }"#;
        let migration = migrate(Path::new("/etc/aws-kinesis/agent.json"), text).expect("migrates");
        let config =
            super::super::Config::parse(Path::new("/etc/kinship/kinship.yaml"), &migration.yaml)
                .unwrap_or_else(|error| panic!("{error}\n{}", migration.yaml));
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/kinship"));
        assert_eq!(
            config.checkpoint_expiry,
            std::time::Duration::from_secs(3 * 86400)
        );
        assert_eq!(config.shutdown_grace, std::time::Duration::from_secs(20));
        assert_eq!(config.progress_interval, std::time::Duration::from_secs(10));
        assert_eq!(config.log_level, "debug");
        let cloudwatch = config
            .cloudwatch
            .as_ref()
            .expect("cloudwatch on by default");
        assert_eq!(
            (cloudwatch.namespace.as_str(), cloudwatch.interval),
            ("MyAgent", std::time::Duration::from_secs(10))
        );
        let (a, b) = (&config.flows[0], &config.flows[1]);
        assert_eq!(
            (a.name.as_str(), b.name.as_str()),
            ("kinesis-a", "firehose-b")
        );
        assert_eq!(a.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(b.aws.region.as_deref(), Some("eu-central-1"));
        assert_eq!(a.aws.endpoint_url, None);
        assert_eq!(a.aws.connect_timeout, std::time::Duration::from_secs(3));
        assert_eq!(a.aws.request_timeout, std::time::Duration::from_secs(40));
        let role = a.aws.assume_role.as_ref().expect("role");
        assert_eq!(role.role_arn, "arn:aws:iam::123456789012:role/shipper");
        assert_eq!(role.external_id.as_ref().map(|id| id.expose()), Some("ext"));
        assert!(config.holds_secret_keys);
        assert_eq!(a.initial_position, super::super::InitialPosition::EndOfFile);
        assert_eq!(a.max_batch_age, std::time::Duration::from_secs(60));
        assert_eq!((a.max_batch_records, a.max_batch_bytes), (100, 1048576));
        assert_eq!(
            a.retry_initial_backoff,
            std::time::Duration::from_millis(200)
        );
        assert_eq!(a.retry_max_backoff, std::time::Duration::from_secs(5));
        assert_eq!(a.poll_interval, std::time::Duration::from_millis(50));
        assert_eq!(a.skip_header_lines, 1);
        assert_eq!(a.truncated_record_terminator, "...\n");
        assert_eq!(
            b.combine,
            super::super::Combine::Pack {
                record_bytes: 65536
            }
        );
        let warned = migration.warnings.join("\n");
        for key in [
            "useHttpGzip: ignored",
            "somethingElse: not a Kinesis Agent key",
            "flows[0].publishQueueCapacity: ignored",
            "checkpointFile:",
        ] {
            assert!(warned.contains(key), "{key} in {warned}");
        }
    }

    #[test]
    fn endpoints_become_regions_or_urls() {
        assert_eq!(
            endpoint_parts("kinesis.eu-west-1.amazonaws.com", "kinesis"),
            (Some("eu-west-1".into()), None)
        );
        assert_eq!(
            endpoint_parts("https://firehose.us-east-2.amazonaws.com", "firehose"),
            (Some("us-east-2".into()), None)
        );
        assert_eq!(
            endpoint_parts("http://127.0.0.1:4567", "kinesis"),
            (None, Some("http://127.0.0.1:4567".into()))
        );
    }

    #[test]
    fn values_that_look_like_secrets_are_not_echoed() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let text = format!(
            r#"{{ "flows": [ {{ "filePattern": "/var/log/*.log", "kinesisStream": "a",
              "initialPosition": "{secret}", "maxBufferSizeRecords": "{secret}" }} ] }}"#
        );
        let problems =
            migrate(Path::new("/etc/aws-kinesis/agent.json"), &text).expect_err("values refused");
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`wJal… (40 characters)` is not START_OF_FILE or END_OF_FILE",
                "\"wJal… (40 characters)\" is not a whole number",
            ]
        );
    }
}
