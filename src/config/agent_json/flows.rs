//! One flow of agent.json (or of a file in `agent.d/`) as a kinship flow: its name, files and
//! stream, the service endpoint, where reading starts, partition keys, batching and retries,
//! line patterns, Firehose aggregation, and its processors.

use serde_json::{Map, Value};

use super::endpoint::endpoint_parts;
use super::jsonc::problem;
use super::processors::Processors;
use super::values::{number_at, string};
use super::yaml_out::{json_quoted, quoted};
use super::Translation;
use crate::secrets;

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

/// The flow keys kinship translates.
const TRANSLATED_FLOW_KEYS: &[&str] = &[
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

/// Whole-number flow keys and the kinship keys they become, with the unit kinship writes.
const NUMBER_KEYS: &[(&str, &str, &str)] = &[
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
];

/// Pattern flow keys and the kinship keys they become.
const PATTERN_KEYS: &[(&str, &str)] = &[
    ("multiLineStartPattern", "multiline_start_pattern"),
    ("fileFooterPattern", "file_footer_pattern"),
    ("truncatedRecordTerminator", "truncated_record_terminator"),
];

/// The service a flow sends to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Kinesis,
    Firehose,
}

impl Service {
    /// The service's name: the start of a flow's kinship name and of its AWS endpoint's host.
    fn name(self) -> &'static str {
        match self {
            Service::Kinesis => "kinesis",
            Service::Firehose => "firehose",
        }
    }

    /// The kinship key naming the stream.
    fn stream_key(self) -> &'static str {
        match self {
            Service::Kinesis => "kinesis_stream",
            Service::Firehose => "firehose_stream",
        }
    }

    /// The global agent.json key of the service's endpoint.
    fn endpoint_key(self) -> &'static str {
        match self {
            Service::Kinesis => "kinesis.endpoint",
            Service::Firehose => "firehose.endpoint",
        }
    }
}

/// One flow being translated.
pub(super) struct FlowBlock<'a> {
    /// Its place among all the flows, agent.json's first: keys are named `flows[index].…`.
    pub(super) index: usize,
    pub(super) flow: &'a Map<String, Value>,
    /// The text of the file the flow is written in, to locate problems.
    pub(super) text: &'a str,
    /// agent.json's global keys, for the service endpoints.
    pub(super) root: &'a Map<String, Value>,
}

impl FlowBlock<'_> {
    /// Writes the flow as an item of `flows:`; `names` holds the names of the flows before it
    /// and gets this one's.
    pub(super) fn write(&self, names: &mut Vec<String>, translation: &mut Translation) {
        let Some((service, stream)) = self.destination(translation) else {
            return;
        };
        let name = unique_name(service, &stream, names);
        let yaml = &mut translation.yaml;
        yaml.line(2, &format!("- name: {}", quoted(&name)));
        match string(self.flow, "filePattern") {
            Some(pattern) => yaml.key(4, "files", &quoted(&pattern)),
            None => translation.problems.push(problem(
                self.text,
                &self.key("filePattern"),
                "is required",
            )),
        }
        yaml.key(4, service.stream_key(), &quoted(&stream));
        self.write_endpoint(service, translation);
        self.write_initial_position(translation);
        if service == Service::Kinesis {
            self.write_partition_key(translation);
        }
        self.write_batching(translation);
        self.write_patterns(translation);
        self.write_aggregation(service, translation);
        self.report_untranslated(translation);
        self.write_processors(translation);
    }

    /// `flows[index].key`.
    fn key(&self, key: &str) -> String {
        format!("flows[{}].{key}", self.index)
    }

    /// The service and stream, the Firehose stream when both are named (as the Kinesis Agent
    /// does); `None`, a problem, when neither is.
    fn destination(&self, translation: &mut Translation) -> Option<(Service, String)> {
        let firehose = string(self.flow, "deliveryStream");
        let kinesis = string(self.flow, "kinesisStream");
        match (firehose, kinesis) {
            (Some(stream), Some(_)) => {
                translation.warnings.push(format!("{}: both deliveryStream and kinesisStream; the Kinesis Agent sends to the Firehose stream, and so does kinship", self.key("kinesisStream")));
                Some((Service::Firehose, stream))
            }
            (Some(stream), None) => Some((Service::Firehose, stream)),
            (None, Some(stream)) => Some((Service::Kinesis, stream)),
            (None, None) => {
                translation.problems.push(problem(
                    self.text,
                    &format!("flows[{}]", self.index),
                    "a flow needs kinesisStream or deliveryStream",
                ));
                None
            }
        }
    }

    /// The flow's `aws` block: the service endpoint the Kinesis Agent would use for it.
    fn write_endpoint(&self, service: Service, translation: &mut Translation) {
        let Some(endpoint) = string(self.root, service.endpoint_key()) else {
            return;
        };
        let yaml = &mut translation.yaml;
        let (region, url) = endpoint_parts(&endpoint, service.name());
        yaml.line(4, "aws:");
        if let Some(region) = region {
            yaml.key(6, "region", &quoted(&region));
        }
        if let Some(url) = url {
            yaml.key(6, "endpoint_url", &quoted(&url));
            if url.starts_with("http://") {
                yaml.key(6, "allow_insecure_http", "true");
            }
        }
    }

    fn write_initial_position(&self, translation: &mut Translation) {
        if !self.flow.contains_key("initialPosition") {
            translation.yaml.comment(4, "The Kinesis Agent's default.");
        }
        let position = match string(self.flow, "initialPosition").as_deref() {
            None | Some("END_OF_FILE") => "end_of_file",
            Some("START_OF_FILE") => "start_of_file",
            Some(other) => {
                translation.problems.push(problem(
                    self.text,
                    &self.key("initialPosition"),
                    format!(
                        "`{}` is not START_OF_FILE or END_OF_FILE",
                        secrets::quoted(other)
                    ),
                ));
                "end_of_file"
            }
        };
        translation.yaml.key(4, "initial_position", position);
    }

    fn write_partition_key(&self, translation: &mut Translation) {
        let yaml = &mut translation.yaml;
        match string(self.flow, "partitionKeyOption").as_deref() {
            None | Some("RANDOM") => yaml.key(4, "partition_key", "random"),
            Some("DETERMINISTIC") => {
                yaml.comment(4, "Equal records get equal keys, as with the Kinesis Agent's DETERMINISTIC, but the key is kinship's 64-bit hash, not an MD5: equal records still share a shard.");
                yaml.key(4, "partition_key", "deterministic");
            }
            Some(other) => translation.problems.push(problem(
                self.text,
                &self.key("partitionKeyOption"),
                format!(
                    "`{}` is not RANDOM or DETERMINISTIC",
                    secrets::quoted(other)
                ),
            )),
        }
    }

    /// The flow's whole number at `key`; a problem names it when it is not one.
    fn number(&self, key: &str, translation: &mut Translation) -> Option<i64> {
        number_at(
            self.flow,
            key,
            &self.key(key),
            self.text,
            &mut translation.problems,
        )
    }

    /// Batch age and size, retry backoff, polling and scanning, header lines.
    fn write_batching(&self, translation: &mut Translation) {
        if !self.flow.contains_key("maxBufferAgeMillis") {
            translation.yaml.comment(
                4,
                "The Kinesis Agent's default batch age (kinship's own is 1 s).",
            );
        }
        let age = self
            .number("maxBufferAgeMillis", translation)
            .unwrap_or(60_000);
        translation
            .yaml
            .key(4, "max_batch_age", &format!("{age}ms"));
        for (agent_key, kinship_key, unit) in NUMBER_KEYS {
            if let Some(value) = self.number(agent_key, translation) {
                translation
                    .yaml
                    .key(4, kinship_key, &format!("{value}{unit}"));
            }
        }
    }

    fn write_patterns(&self, translation: &mut Translation) {
        for (agent_key, kinship_key) in PATTERN_KEYS {
            if let Some(value) = string(self.flow, agent_key) {
                if *agent_key == "fileFooterPattern" {
                    translation.yaml.comment(4, "Matched against the footer line without its line ending; the Kinesis Agent trims it first.");
                }
                translation.yaml.key(4, kinship_key, &json_quoted(&value));
            }
        }
    }

    /// aggregatedRecordSizeBytes: packed records for a Firehose flow, ignored for Kinesis.
    fn write_aggregation(&self, service: Service, translation: &mut Translation) {
        let Some(bytes) = self
            .number("aggregatedRecordSizeBytes", translation)
            .filter(|b| *b > 0)
        else {
            return;
        };
        match service {
            Service::Firehose => {
                translation.yaml.key(4, "pack_records", "true");
                translation
                    .yaml
                    .key(4, "pack_record_bytes", &bytes.to_string());
            }
            Service::Kinesis => translation.warnings.push(format!(
                "{}: applies to Firehose flows only; ignored, as the Kinesis Agent does",
                self.key("aggregatedRecordSizeBytes")
            )),
        }
    }

    /// A warning for each flow key kinship does without or does not know.
    fn report_untranslated(&self, translation: &mut Translation) {
        for (key, why) in IGNORED_FLOW_KEYS {
            if self.flow.contains_key(*key) {
                translation
                    .warnings
                    .push(format!("{}: ignored; {why}", self.key(key)));
            }
        }
        for key in self.flow.keys() {
            if !TRANSLATED_FLOW_KEYS.contains(&key.as_str())
                && !IGNORED_FLOW_KEYS.iter().any(|(name, _)| name == key)
            {
                translation.warnings.push(format!(
                    "{}: not a Kinesis Agent flow key (it ignores unknown keys too); ignored",
                    self.key(key)
                ));
            }
        }
    }

    fn write_processors(&self, translation: &mut Translation) {
        match self.flow.get("dataProcessingOptions") {
            None => {}
            Some(Value::Array(options)) => {
                Processors::new(self.index, self.text).write(options, translation);
            }
            Some(_) => translation.warnings.push(format!(
                "{}: not a list; ignored, as the Kinesis Agent does",
                self.key("dataProcessingOptions")
            )),
        }
    }
}

/// `kinesis-STREAM` or `firehose-STREAM` (the stream's name made safe and cut to 50
/// characters), with `-2`, `-3`… after a name an earlier flow took; added to `names`.
fn unique_name(service: Service, stream: &str, names: &mut Vec<String>) -> String {
    let safe: String = stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    let base = format!("{}-{safe}", service.name());
    let mut name = base.clone();
    let mut suffix = 2;
    while names.contains(&name) {
        name = format!("{base}-{suffix}");
        suffix += 1;
    }
    names.push(name.clone());
    name
}
