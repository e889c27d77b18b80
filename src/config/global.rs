//! The checks of the file's top-level keys: the state directory, timings of checkpoints and
//! shutdown, budgets, logging, metrics and CloudWatch; each flow is checked by `flow`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::aws;
use super::checker::Checker;
use super::model::{
    CheckpointCommit, CloudWatchSettings, Config, FlowConfig, InstanceDimension, LogFileSettings,
    LogFormat, MetricsSettings, ProgressFormat, DEFAULT_CLOUDWATCH_NAMESPACE,
    DEFAULT_METRICS_LISTEN,
};
use super::paths::default_paths;
use super::raw::{RawCloudWatch, RawConfig, RawFlow, RawMetrics};
use crate::secrets::quoted;

/// Open files at once, over all flows: well under the usual soft limit of 1,024 descriptors
/// once the network's sockets and the agent's own files are counted.
pub(super) const DEFAULT_MAX_OPEN_FILES: usize = 768;
const MIN_MAX_OPEN_FILES: usize = 2;
const MAX_MAX_OPEN_FILES: usize = 1_000_000;
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
const DEFAULT_LOG_LEVEL: &str = "info";
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(30);
/// A flow is warned about when this far behind: the level at which the Kinesis Agent's own
/// "behind" line turns into a WARN (40 MiB).
const DEFAULT_BEHIND_WARNING_BYTES: usize = crate::metrics::AGENT_BEHIND_WARN_BYTES as usize;
const MAX_BEHIND_WARNING_BYTES: usize = 1 << 50;
/// CloudWatch takes dimension values up to this long.
const MAX_INSTANCE_ID_CHARS: usize = 1024;
/// Checkpoints of files not found for a week are forgotten.
const DEFAULT_CHECKPOINT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_METRICS_STUCK_AFTER: Duration = Duration::from_secs(60);
const DEFAULT_CLOUDWATCH_INTERVAL: Duration = Duration::from_secs(60);
const MIN_CLOUDWATCH_INTERVAL: Duration = Duration::from_secs(1);
/// CloudWatch's limit on a namespace's length.
const MAX_CLOUDWATCH_NAMESPACE_CHARS: usize = 255;

impl Checker<'_> {
    /// The whole file's settings, every flow's included.
    pub(super) fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let state_dir = self.state_dir(raw.state_dir);
        let top_aws = self.aws_block("aws", raw.aws, false);
        let dry_run_output = self.dry_run_output(raw.dry_run_output.as_deref());
        let mut holds_secret_keys = top_aws.holds_secret;
        let log_level = self.log_level(raw.log_level);
        let log_format = self.log_format(raw.log_format.as_deref());
        let log_file = self.log_file(raw.log_file, raw.log_file_max_bytes, raw.log_file_keep);
        let cloudwatch = match raw.cloudwatch {
            Some(block) if block.enabled != Some(false) => {
                Some(self.cloudwatch(block, &top_aws, &mut holds_secret_keys))
            }
            _ => None,
        };
        let metrics = raw.metrics.map(|raw| self.metrics(raw));
        let shutdown_grace =
            self.duration("shutdown_grace", raw.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        let checkpoint_interval = self.duration(
            "checkpoint_interval",
            raw.checkpoint_interval,
            DEFAULT_CHECKPOINT_INTERVAL,
        );
        let checkpoint_commit = self.checkpoint_commit(raw.checkpoint_commit.as_deref());
        let progress_interval = self.duration(
            "progress_interval",
            raw.progress_interval,
            DEFAULT_PROGRESS_INTERVAL,
        );
        let progress_format = self.progress_format(raw.progress_format.as_deref());
        let behind_warning_bytes = self.number(
            "behind_warning_bytes",
            raw.behind_warning_bytes,
            DEFAULT_BEHIND_WARNING_BYTES,
            0..=MAX_BEHIND_WARNING_BYTES,
        ) as u64;
        let checkpoint_expiry = self.long_duration(
            "checkpoint_expiry",
            raw.checkpoint_expiry,
            DEFAULT_CHECKPOINT_EXPIRY,
        );
        let max_open_files = self.number(
            "max_open_files",
            raw.max_open_files,
            DEFAULT_MAX_OPEN_FILES,
            MIN_MAX_OPEN_FILES..=MAX_MAX_OPEN_FILES,
        );
        let memory_budget = self.number(
            "memory_budget",
            raw.memory_budget,
            crate::limits::DEFAULT_MEMORY_BUDGET,
            MIN_MEMORY_BUDGET..=MAX_MEMORY_BUDGET,
        );
        let flows = self.flows(raw.flows, &top_aws, &mut holds_secret_keys);
        Config {
            source: path.to_owned(),
            state_dir,
            shutdown_grace,
            checkpoint_interval,
            checkpoint_commit,
            progress_interval,
            progress_format,
            behind_warning_bytes,
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

    /// `state_dir`: the platform's default unless written.
    fn state_dir(&mut self, raw: Option<String>) -> PathBuf {
        match raw {
            Some(dir) => {
                if dir.trim().is_empty() {
                    self.problem("state_dir", "must not be empty");
                }
                PathBuf::from(dir)
            }
            None => default_paths().state_dir,
        }
    }

    /// `dry_run_output`: `None` (or `-`) for standard output.
    fn dry_run_output(&mut self, raw: Option<&str>) -> Option<PathBuf> {
        match raw {
            None | Some("-") => None,
            Some("") => {
                self.problem(
                    "dry_run_output",
                    "must not be empty; write - for standard output",
                );
                None
            }
            Some(path) => Some(PathBuf::from(path)),
        }
    }

    /// `log_level`: a level or a filter, as `RUST_LOG` takes it.
    fn log_level(&mut self, raw: Option<String>) -> String {
        let log_level = raw.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            self.problem(
                "log_level",
                format!(
                    "`{}` is not a log level or filter such as info, debug or kinship=debug,info ({error})",
                    quoted(&log_level)
                ),
            );
        }
        log_level
    }

    fn progress_format(&mut self, raw: Option<&str>) -> ProgressFormat {
        match raw {
            None | Some("kinship") => ProgressFormat::Kinship,
            Some("kinesis_agent") => ProgressFormat::KinesisAgent,
            Some(other) => {
                self.problem(
                    "progress_format",
                    format!("`{}` is not one of kinship, kinesis_agent", quoted(other)),
                );
                ProgressFormat::Kinship
            }
        }
    }

    fn log_format(&mut self, raw: Option<&str>) -> LogFormat {
        match raw {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.problem(
                    "log_format",
                    format!("`{}` is not one of human, json", quoted(other)),
                );
                LogFormat::Human
            }
        }
    }

    /// The `metrics` block: where the endpoint listens, and when a flow counts as stuck.
    fn metrics(&mut self, raw: RawMetrics) -> MetricsSettings {
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
            DEFAULT_METRICS_STUCK_AFTER,
        );
        MetricsSettings {
            listen,
            stuck_after,
        }
    }

    fn checkpoint_commit(&mut self, raw: Option<&str>) -> CheckpointCommit {
        match raw {
            None | Some("group") => CheckpointCommit::Group,
            Some("interval") => CheckpointCommit::Interval,
            Some(other) => {
                self.problem(
                    "checkpoint_commit",
                    format!("`{}` is not one of group, interval", quoted(other)),
                );
                CheckpointCommit::Group
            }
        }
    }

    /// `flows`: at least one, names unique, each checked; a flow with a problem is left out.
    fn flows(
        &mut self,
        raw: Option<Vec<Option<RawFlow>>>,
        top_aws: &aws::AwsBlock,
        holds_secret_keys: &mut bool,
    ) -> Vec<FlowConfig> {
        let mut flows = Vec::new();
        match raw {
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
                    *holds_secret_keys |= raw_flow
                        .aws
                        .as_ref()
                        .is_some_and(|aws| aws.secret_access_key.is_some());
                    if let Some(flow) = self.flow(&key, raw_flow, top_aws) {
                        flows.push(flow);
                    }
                }
            }
        }
        flows
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

    /// `log_file`, `log_file_max_bytes` and `log_file_keep`.
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

    /// The `cloudwatch` block, its `aws` block over the top-level one.
    fn cloudwatch(
        &mut self,
        raw: RawCloudWatch,
        top_aws: &aws::AwsBlock,
        holds_secret_keys: &mut bool,
    ) -> CloudWatchSettings {
        let namespace = raw
            .namespace
            .unwrap_or_else(|| DEFAULT_CLOUDWATCH_NAMESPACE.to_owned());
        if namespace.is_empty() || namespace.len() > MAX_CLOUDWATCH_NAMESPACE_CHARS {
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
        let interval = self.duration(
            "cloudwatch.interval",
            raw.interval,
            DEFAULT_CLOUDWATCH_INTERVAL,
        );
        if interval < MIN_CLOUDWATCH_INTERVAL {
            self.problem("cloudwatch.interval", "must be at least 1s");
        }
        let instance = self.instance_dimension(raw.tag_instance, raw.instance_id);
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
            instance,
            aws: own.over(top_aws),
        }
    }

    /// `cloudwatch.tag_instance` and `cloudwatch.instance_id`.
    fn instance_dimension(
        &mut self,
        tag_instance: Option<bool>,
        instance_id: Option<String>,
    ) -> InstanceDimension {
        match (tag_instance.unwrap_or(false), instance_id) {
            (false, None) => InstanceDimension::Off,
            (false, Some(_)) => {
                self.problem(
                    "cloudwatch.instance_id",
                    "is used only with tag_instance: true; add it, or remove instance_id",
                );
                InstanceDimension::Off
            }
            (true, None) => InstanceDimension::FromMetadata,
            (true, Some(id)) => {
                let id = id.trim().to_owned();
                if id.is_empty() || id.len() > MAX_INSTANCE_ID_CHARS {
                    self.problem(
                        "cloudwatch.instance_id",
                        "must be from 1 to 1024 characters long, such as i-0123456789abcdef0",
                    );
                }
                InstanceDimension::Given(id)
            }
        }
    }
}
