//! agent.json's global keys: where checkpoints and logs go, shutdown and progress timing, the
//! AWS settings every flow shares, and CloudWatch metrics. Keys kinship does without are
//! warnings; a Java credentials provider is an error.

use std::path::Path;

use serde_json::{Map, Value};

use super::endpoint::{endpoint_parts, with_scheme};
use super::jsonc::problem;
use super::values::{boolean, number, string};
use super::yaml_out::quoted;
use super::Translation;

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
        "cloudwatch.metricsQueueSize",
        "kinship keeps counters, not a queue of metrics",
    ),
    (
        "checkpoints.queryTimeoutSeconds",
        "kinship keeps its checkpoints in a file, with no database to time out",
    ),
    (
        "checkpoints.connectionTimeoutSeconds",
        "kinship keeps its checkpoints in a file, with no database to time out",
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

/// The global keys kinship translates (besides `flows`).
const TRANSLATED_GLOBALS: &[&str] = &[
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
    "cloudwatch.tagInstance",
    "log.statusReportingPeriodSeconds",
    "log.file",
    "log.level",
    "log.maxBackupIndex",
    "log.maxFileSize",
    "connectionTimeoutMillis",
    "socketTimeoutMillis",
];

/// agent.json's global keys, read from `text`.
pub(super) struct GlobalKeys<'a> {
    pub(super) root: &'a Map<String, Value>,
    /// The agent.json's text, to locate problems.
    pub(super) text: &'a str,
}

impl GlobalKeys<'_> {
    /// Writes the top-level YAML keys, before `flows:`.
    pub(super) fn write(&self, translation: &mut Translation) {
        self.report_untranslated(translation);
        self.write_state_dir(translation);
        self.write_timing_and_log(translation);
        self.write_aws(translation);
        self.write_cloudwatch(translation);
    }

    /// A warning for each key kinship does without; an error for a Java credentials provider.
    fn report_untranslated(&self, translation: &mut Translation) {
        for key in self.root.keys() {
            if key == "flows" {
                continue;
            }
            if let Some((_, why)) = IGNORED_GLOBALS.iter().find(|(name, _)| name == key) {
                translation.warnings.push(format!("{key}: ignored; {why}"));
                continue;
            }
            if key.starts_with("userDefinedCredentialsProvider") {
                translation.problems.push(problem(self.text, key, "a Java credentials provider cannot be loaded by kinship; use a profile, static keys, assume_role or the default chain"));
                continue;
            }
            if !TRANSLATED_GLOBALS.contains(&key.as_str()) {
                translation.warnings.push(format!(
                    "{key}: not a Kinesis Agent key (it ignores unknown keys too); ignored"
                ));
            }
        }
    }

    /// `state_dir`: beside the Kinesis Agent's checkpointFile, unless that is lost at reboot.
    fn write_state_dir(&self, translation: &mut Translation) {
        // The Kinesis Agent's checkpoints (SQLite) are read only when imported (the
        // checkpoint component's import); otherwise each file starts as initial_position says.
        let state_dir = match string(self.root, "checkpointFile") {
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
                translation.warnings.push(format!("checkpointFile: {file} (the Kinesis Agent's SQLite checkpoints) is not read at each start; import it once with `kinship migrate --checkpoints {file}` (or `kinship run --import-checkpoints {file}`), or each file starts as initial_position says"));
                (!volatile).then_some(parent)
            }
            None => None,
        };
        let yaml = &mut translation.yaml;
        match state_dir {
            Some(dir) => {
                yaml.comment(
                    0,
                    "Beside the Kinesis Agent's checkpointFile; kinship writes checkpoints.json here.",
                );
                yaml.key(0, "state_dir", &quoted(&dir));
            }
            None => {
                yaml.comment(
                    0,
                    "Checkpoints live here, not in /var/run (lost at each reboot) as the Kinesis Agent's did.",
                );
                yaml.key(0, "state_dir", "/var/lib/kinship");
            }
        }
    }

    /// Checkpoint expiry, shutdown grace, the progress line, and the agent's own log.
    fn write_timing_and_log(&self, translation: &mut Translation) {
        let (root, text) = (self.root, self.text);
        let Translation { yaml, problems, .. } = translation;
        if let Some(days) = number(root, "checkpointTimeToLiveDays", text, problems) {
            yaml.key(0, "checkpoint_expiry", &format!("{days}d"));
        }
        if let Some(ms) = number(root, "shutdownTimeoutMillis", text, problems) {
            yaml.key(0, "shutdown_grace", &format!("{ms}ms"));
        }
        if let Some(seconds) = number(root, "log.statusReportingPeriodSeconds", text, problems) {
            yaml.key(0, "progress_interval", &format!("{seconds}s"));
        }
        yaml.comment(
            0,
            "progress_format: kinesis_agent logs progress worded as the Kinesis Agent did, for scrapers of its log.",
        );
        yaml.line(0, "# progress_format: kinesis_agent");
        if let Some(level) = string(root, "log.level") {
            yaml.key(0, "log_level", &quoted(&level.to_lowercase()));
        }
        if let Some(file) = string(root, "log.file") {
            yaml.key(0, "log_file", &quoted(&file));
            if let Some(bytes) = number(root, "log.maxFileSize", text, problems).filter(|b| *b > 0)
            {
                yaml.key(0, "log_file_max_bytes", &bytes.to_string());
            }
            if let Some(keep) =
                number(root, "log.maxBackupIndex", text, problems).filter(|k| *k >= 0)
            {
                yaml.key(0, "log_file_keep", &keep.to_string());
            }
        }
    }

    /// The top-level `aws` block: settings for every flow; each flow adds its service's
    /// endpoint.
    fn write_aws(&self, translation: &mut Translation) {
        let (root, text) = (self.root, self.text);
        let Translation {
            yaml,
            warnings,
            problems,
        } = translation;
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
        if aws.is_empty() && role.is_none() {
            return;
        }
        yaml.line(0, "aws:");
        for (key, value) in &aws {
            yaml.key(2, key, value);
        }
        if let Some(role) = role {
            yaml.comment(
                2,
                "The Kinesis Agent's session name and its fixed one-hour duration.",
            );
            yaml.line(2, "assume_role:");
            yaml.key(4, "role_arn", &quoted(&role));
            if let Some(external) = string(root, "assumeRoleExternalId") {
                yaml.key(4, "external_id", &quoted(&external));
            }
            yaml.key(4, "session_name", "AWSKinesisAgent");
            yaml.key(4, "duration", "1h");
        }
    }

    /// The `cloudwatch` block, unless cloudwatch.emitMetrics is false.
    fn write_cloudwatch(&self, translation: &mut Translation) {
        let (root, text) = (self.root, self.text);
        let Translation { yaml, problems, .. } = translation;
        let emit = boolean(root, "cloudwatch.emitMetrics", text, problems).unwrap_or(true);
        if !emit {
            return;
        }
        yaml.comment(
            0,
            "The Kinesis Agent publishes its metrics unless cloudwatch.emitMetrics is false.",
        );
        yaml.line(0, "cloudwatch:");
        if let Some(namespace) = string(root, "cloudwatch.namespace") {
            yaml.key(2, "namespace", &quoted(&namespace));
        }
        let ms = number(root, "cloudwatch.metricsBufferTimeMillis", text, problems)
            .unwrap_or(30_000)
            .max(1000);
        yaml.key(2, "interval", &format!("{ms}ms"));
        if boolean(root, "cloudwatch.tagInstance", text, problems).unwrap_or(false) {
            yaml.comment(
                2,
                "The EC2 instance id, read from the instance metadata service, as an Instance dimension.",
            );
            yaml.key(2, "tag_instance", "true");
        }
        if let Some(endpoint) = string(root, "cloudwatch.endpoint") {
            yaml.line(2, "aws:");
            let (region, url) = endpoint_parts(&endpoint, "monitoring");
            if let Some(region) = region {
                yaml.key(4, "region", &quoted(&region));
            }
            if let Some(url) = url {
                yaml.key(4, "endpoint_url", &quoted(&url));
            }
        }
    }
}
