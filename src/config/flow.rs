//! The checks of one flow: its name and files, where its records go, how they are batched,
//! retried and read. Each group of keys is one step; a flow with any problem is left out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::aws::{self, arn_region, AwsSettings, Destination};
use super::checker::Checker;
use super::limits;
use super::model::{
    Combine, DataPath, Delivery, EventLogSource, FlowConfig, InitialPosition, Oversize,
    ShippedFiles, WireFormat,
};
use super::raw::{self, RawFlow};
use crate::pattern::Pattern;
use crate::secrets::quoted;

/// A flow's name: 1 to this many letters, digits, '-', '_' or '.'.
const MAX_FLOW_NAME_CHARS: usize = 64;
const DEFAULT_MAX_BATCH_AGE: Duration = Duration::from_secs(1);
const DEFAULT_MAX_IN_FLIGHT: usize = 4;
const MAX_MAX_IN_FLIGHT: usize = 64;
const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(10);
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_FINGERPRINT_BYTES: usize = 1024;
const MIN_FINGERPRINT_BYTES: usize = 16;
const MAX_FINGERPRINT_BYTES: usize = 65536;
const DEFAULT_PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MULTILINE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SKIP_HEADER_LINES: usize = 1_000_000;
const DEFAULT_TRUNCATED_RECORD_TERMINATOR: &str = "\n";
const MAX_TRUNCATED_RECORD_TERMINATOR_BYTES: usize = 256;
/// How long a file that was not renamed must stay unmodified, besides not being the newest
/// match of its glob, before `shipped_files` acts on it.
const DEFAULT_SHIPPED_FILES_IDLE: Duration = Duration::from_secs(5 * 60);

/// Where a flow's records go and who sends them.
struct Route {
    data_path: DataPath,
    wire_format: Option<WireFormat>,
    ordering: Delivery,
    /// `None` when the destination has a problem (reported).
    destination: Option<Destination>,
    aws: AwsSettings,
}

/// How records are gathered into calls.
struct Batching {
    max_batch_age: Duration,
    max_batch_records: usize,
    max_batch_bytes: usize,
    max_record_bytes: usize,
    record_limit_set: bool,
}

/// How calls are sent and retried.
struct Retries {
    max_in_flight: usize,
    retry_initial_backoff: Duration,
    retry_max_backoff: Duration,
    max_retry_duration: Option<Duration>,
}

/// How files are found and read into records.
struct Tailing {
    initial_position: InitialPosition,
    exclude: Vec<glob::Pattern>,
    ignore_older: Option<Duration>,
    poll_interval: Duration,
    scan_interval: Duration,
    fingerprint_bytes: usize,
    partial_line_timeout: Duration,
    multiline_start_pattern: Option<Pattern>,
    multiline_flush_timeout: Duration,
    skip_header_lines: usize,
    file_footer_pattern: Option<Pattern>,
    oversize_records: Oversize,
    truncated_record_terminator: String,
}

impl Checker<'_> {
    /// The flow at `key`, or `None` when anything about it is wrong (every problem reported).
    pub(super) fn flow(
        &mut self,
        key: &str,
        mut raw: RawFlow,
        top_aws: &aws::AwsBlock,
    ) -> Option<FlowConfig> {
        let before = self.problems.len();
        let name = self.flow_name(key, raw.name.take());
        // A journald or windows_event_log block, even a wrong one, stands instead of `files`.
        let reads_files = raw.journald.is_none() && raw.windows_event_log.is_none();
        let journald = self.journald(key, &mut raw);
        let event_log = self.event_log(key, &mut raw);
        let files = if reads_files {
            self.flow_files(key, raw.files.take())
        } else {
            Vec::new()
        };
        // The service is the one whose key is written, even when its stream's name is wrong,
        // so that keys of that service are checked as such and not also reported.
        let written = |raw: &Option<String>, name: &str| {
            raw.is_some() || self.rejected(&format!("{key}.{name}"))
        };
        let firehose = written(&raw.firehose_stream, "firehose_stream")
            && !written(&raw.kinesis_stream, "kinesis_stream");
        // The flow's own allowance, else the top level's, as its aws block inherits it.
        let allow_insecure_http = raw
            .aws
            .as_ref()
            .and_then(|block| block.allow_insecure_http)
            .or(top_aws.allows_insecure_http())
            .unwrap_or(false);
        let route = self.route(key, &mut raw, firehose, top_aws);
        let (partition_key, explicit_hash_key) = self.partition_keys(key, &mut raw, firehose);
        let batching = self.batching(key, &mut raw, firehose);
        let retries = self.retries(key, &mut raw);
        let (processors, on_error) = self.processors(
            key,
            raw.processors.take(),
            raw.on_error.take(),
            allow_insecure_http,
        );
        let mut tailing = self.tailing(key, &mut raw);
        if matches!(event_log, Some(EventLogSource::File(_))) && raw.initial_position.is_none() {
            // An event log file is shipped once: unless told otherwise, all of it.
            tailing.initial_position = InitialPosition::StartOfFile;
        }
        let (shipped_files, shipped_files_idle) = self.shipped_files(key, &mut raw, &files);
        let (combine, compression) = self.combining(
            key,
            &raw,
            firehose,
            explicit_hash_key,
            batching.max_record_bytes,
        );
        // Combined records fill up to the record limit; calls of more than one such record
        // would only hold more memory, so they are one record limit unless set.
        let max_batch_bytes = if combine != Combine::None && raw.max_batch_bytes.is_none() {
            batching.max_record_bytes
        } else {
            batching.max_batch_bytes
        };
        let destination = route.destination?;
        if self.problems.len() != before {
            return None;
        }
        Some(FlowConfig {
            name,
            files,
            event_log,
            journald,
            destination,
            aws: route.aws,
            dry_run: raw.dry_run.unwrap_or(false),
            data_path: route.data_path,
            wire_format: route.wire_format,
            ordering: route.ordering,
            combine,
            compression,
            record_limit_set: batching.record_limit_set,
            initial_position: tailing.initial_position,
            partition_key,
            explicit_hash_key,
            max_batch_age: batching.max_batch_age,
            max_batch_records: batching.max_batch_records,
            max_batch_bytes,
            max_record_bytes: batching.max_record_bytes,
            max_in_flight: retries.max_in_flight,
            poll_interval: tailing.poll_interval,
            scan_interval: tailing.scan_interval,
            retry_initial_backoff: retries.retry_initial_backoff,
            retry_max_backoff: retries.retry_max_backoff,
            max_retry_duration: retries.max_retry_duration,
            exclude: tailing.exclude,
            ignore_older: tailing.ignore_older,
            shipped_files,
            shipped_files_idle,
            fingerprint_bytes: tailing.fingerprint_bytes,
            partial_line_timeout: tailing.partial_line_timeout,
            multiline_start_pattern: tailing.multiline_start_pattern,
            multiline_flush_timeout: tailing.multiline_flush_timeout,
            skip_header_lines: tailing.skip_header_lines,
            file_footer_pattern: tailing.file_footer_pattern,
            oversize_records: tailing.oversize_records,
            truncated_record_terminator: tailing.truncated_record_terminator,
            processors,
            on_error,
        })
    }

    /// `name`: required, 1 to 64 letters, digits, '-', '_' or '.'.
    fn flow_name(&mut self, key: &str, raw: Option<String>) -> String {
        let Some(name) = raw else {
            self.problem(
                &format!("{key}.name"),
                "is missing; every flow needs a unique name",
            );
            return String::new();
        };
        let valid = !name.is_empty()
            && name.len() <= MAX_FLOW_NAME_CHARS
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

    /// `windows_event_log`: where the flow's events are read, instead of files. Keys that
    /// only say how files are read are mistakes beside it.
    fn event_log(&mut self, key: &str, raw: &mut RawFlow) -> Option<EventLogSource> {
        let block = raw.windows_event_log.take()?;
        let block_key = format!("{key}.windows_event_log");
        if raw.files.is_some() {
            self.problem(
                &format!("{key}.files"),
                "a flow reads files or the Windows Event Log, not both; give each its own flow",
            );
        }
        self.no_file_keys(
            key,
            raw,
            "applies to lines of files; this flow reads the Windows Event Log (an event over the record limit is not sent)",
        );
        match (block.file, block.channel) {
            (Some(file), None) => {
                if block.query.is_some() {
                    self.problem(
                        &format!("{block_key}.query"),
                        "applies to a live channel only (with `channel`); an .evtx file is shipped whole",
                    );
                }
                self.event_log_file(&block_key, file)
            }
            (None, Some(channel)) => self.event_log_channel(&block_key, channel, block.query),
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{block_key}.channel"),
                    "give `file` (an .evtx file) or `channel` (a live channel), not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    &format!("{block_key}.file"),
                    "is missing; give the path of the .evtx file to ship, or `channel` for a live channel",
                );
                None
            }
        }
    }

    /// `windows_event_log.file`: an absolute path.
    fn event_log_file(&mut self, block_key: &str, file: String) -> Option<EventLogSource> {
        let path = PathBuf::from(&file);
        if !path.is_absolute() {
            self.problem(
                &format!("{block_key}.file"),
                format!("`{}` must be an absolute path", quoted(&file)),
            );
            return None;
        }
        Some(EventLogSource::File(path))
    }

    /// Reports each key written in `raw` that only says how lines of files are read, for a flow
    /// that reads something else: `why` says so.
    pub(super) fn no_file_keys(&mut self, key: &str, raw: &RawFlow, why: &str) {
        let file_only = [
            ("exclude", raw.exclude.is_some()),
            ("ignore_older", raw.ignore_older.is_some()),
            ("partial_line_timeout", raw.partial_line_timeout.is_some()),
            (
                "multiline_start_pattern",
                raw.multiline_start_pattern.is_some(),
            ),
            (
                "multiline_flush_timeout",
                raw.multiline_flush_timeout.is_some(),
            ),
            ("skip_header_lines", raw.skip_header_lines.is_some()),
            ("file_footer_pattern", raw.file_footer_pattern.is_some()),
            ("oversize_records", raw.oversize_records.is_some()),
            (
                "truncated_record_terminator",
                raw.truncated_record_terminator.is_some(),
            ),
            ("shipped_files", raw.shipped_files.is_some()),
            ("shipped_files_dir", raw.shipped_files_dir.is_some()),
            ("shipped_files_idle", raw.shipped_files_idle.is_some()),
        ];
        for (name, _) in file_only.iter().filter(|(_, written)| *written) {
            self.problem(&format!("{key}.{name}"), why);
        }
    }

    /// `windows_event_log.channel` (with its optional `query`): followed live, so only on
    /// Windows.
    fn event_log_channel(
        &mut self,
        block_key: &str,
        channel: String,
        query: Option<String>,
    ) -> Option<EventLogSource> {
        let channel_key = format!("{block_key}.channel");
        if channel.trim().is_empty() {
            self.problem(
                &channel_key,
                "is empty; give a channel such as Security, System or Application",
            );
            return None;
        }
        if query
            .as_deref()
            .is_some_and(|query| query.trim().is_empty())
        {
            self.problem(
                &format!("{block_key}.query"),
                "is empty; give an XPath filter such as *[System[(Level<=3)]], or leave the key out",
            );
            return None;
        }
        // A structured XML query (<QueryList>) names its own channels, and the Event Log then
        // ignores `channel`: record ids of several channels would share one position.
        if query
            .as_deref()
            .is_some_and(|query| query.trim_start().starts_with('<'))
        {
            self.problem(
                &format!("{block_key}.query"),
                "must be an XPath filter such as *[System[(Level<=3)]], not a structured XML query (<QueryList>): give each channel its own flow",
            );
            return None;
        }
        let channel = channel.trim().to_owned();
        if !cfg!(windows) {
            self.problem(
                &channel_key,
                format!(
                    "`{}`: the live Windows Event Log needs Windows; use `file:` to ship an .evtx file here",
                    quoted(&channel)
                ),
            );
            return None;
        }
        Some(EventLogSource::Channel { channel, query })
    }

    /// `files`: one glob or a list, each an absolute path.
    fn flow_files(&mut self, key: &str, raw: Option<raw::OneOrMany>) -> Vec<String> {
        let Some(files) = raw.map(raw::OneOrMany::into_vec) else {
            self.problem(
                &format!("{key}.files"),
                "is missing; give a glob such as /var/log/app/*.log (or, instead, journald or windows_event_log)",
            );
            return Vec::new();
        };
        if files.is_empty() {
            self.problem(&format!("{key}.files"), "is empty; give at least one glob");
            return files;
        }
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

    /// `data_path`, `wire_format`, `ordering`, the stream, and the flow's `aws` block over the
    /// top-level one (a stream named by ARN sets the region).
    fn route(
        &mut self,
        key: &str,
        raw: &mut RawFlow,
        firehose: bool,
        top_aws: &aws::AwsBlock,
    ) -> Route {
        let (data_path, wire_format) = self.data_path(
            key,
            raw.data_path.as_deref(),
            raw.wire_format.as_deref(),
            firehose,
        );
        let ordering = self.ordering(key, raw.ordering.as_deref(), firehose);
        let destination =
            self.destination(key, raw.kinesis_stream.take(), raw.firehose_stream.take());
        let flow_aws = match raw.aws.take() {
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
        Route {
            data_path,
            wire_format,
            ordering,
            destination,
            aws,
        }
    }

    /// `max_batch_age`, `max_batch_records`, `max_record_bytes` and `max_batch_bytes`, within
    /// the service's limits; one record must fit in a call.
    fn batching(&mut self, key: &str, raw: &mut RawFlow, firehose: bool) -> Batching {
        let max_batch_age = self.duration(
            &format!("{key}.max_batch_age"),
            raw.max_batch_age.take(),
            DEFAULT_MAX_BATCH_AGE,
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
        Batching {
            max_batch_age,
            max_batch_records,
            max_batch_bytes,
            max_record_bytes,
            record_limit_set: raw.max_record_bytes.is_some(),
        }
    }

    /// `max_in_flight` and the retry keys; the longest backoff is not shorter than the first.
    fn retries(&mut self, key: &str, raw: &mut RawFlow) -> Retries {
        let max_in_flight = self.number(
            &format!("{key}.max_in_flight"),
            raw.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
            1..=MAX_MAX_IN_FLIGHT,
        );
        let retry_initial_backoff = self.duration(
            &format!("{key}.retry_initial_backoff"),
            raw.retry_initial_backoff.take(),
            DEFAULT_RETRY_INITIAL_BACKOFF,
        );
        let retry_max_backoff = self.duration(
            &format!("{key}.retry_max_backoff"),
            raw.retry_max_backoff.take(),
            DEFAULT_RETRY_MAX_BACKOFF,
        );
        let backoffs_written = !self.rejected(&format!("{key}.retry_initial_backoff"))
            && !self.rejected(&format!("{key}.retry_max_backoff"));
        if backoffs_written && retry_max_backoff < retry_initial_backoff {
            self.problem(
                &format!("{key}.retry_max_backoff"),
                "must not be shorter than retry_initial_backoff",
            );
        }
        let max_retry_duration = raw.max_retry_duration.take().map(|text| {
            self.long_duration(
                &format!("{key}.max_retry_duration"),
                Some(text),
                Duration::ZERO,
            )
        });
        Retries {
            max_in_flight,
            retry_initial_backoff,
            retry_max_backoff,
            max_retry_duration,
        }
    }

    /// Where reading starts, which files are left alone, how often they are looked at, and how
    /// their bytes become records.
    fn tailing(&mut self, key: &str, raw: &mut RawFlow) -> Tailing {
        let initial_position = self.initial_position(key, raw.initial_position.as_deref());
        let exclude = self.exclude(key, raw.exclude.take());
        let ignore_older = raw.ignore_older.take().map(|text| {
            self.long_duration(&format!("{key}.ignore_older"), Some(text), Duration::ZERO)
        });
        let poll_interval = self.duration(
            &format!("{key}.poll_interval"),
            raw.poll_interval.take(),
            DEFAULT_POLL_INTERVAL,
        );
        let scan_interval = self.duration(
            &format!("{key}.scan_interval"),
            raw.scan_interval.take(),
            DEFAULT_SCAN_INTERVAL,
        );
        let fingerprint_bytes = self.number(
            &format!("{key}.fingerprint_bytes"),
            raw.fingerprint_bytes,
            DEFAULT_FINGERPRINT_BYTES,
            MIN_FINGERPRINT_BYTES..=MAX_FINGERPRINT_BYTES,
        );
        let partial_line_timeout = self.duration(
            &format!("{key}.partial_line_timeout"),
            raw.partial_line_timeout.take(),
            DEFAULT_PARTIAL_LINE_TIMEOUT,
        );
        let (multiline_start_pattern, multiline_flush_timeout) = self.multiline(key, raw);
        let skip_header_lines = self.number(
            &format!("{key}.skip_header_lines"),
            raw.skip_header_lines,
            0,
            0..=MAX_SKIP_HEADER_LINES,
        );
        let file_footer_pattern = raw
            .file_footer_pattern
            .take()
            .and_then(|text| self.pattern(&format!("{key}.file_footer_pattern"), text));
        let (oversize_records, truncated_record_terminator) = self.oversize(key, raw);
        Tailing {
            initial_position,
            exclude,
            ignore_older,
            poll_interval,
            scan_interval,
            fingerprint_bytes,
            partial_line_timeout,
            multiline_start_pattern,
            multiline_flush_timeout,
            skip_header_lines,
            file_footer_pattern,
            oversize_records,
            truncated_record_terminator,
        }
    }

    /// `shipped_files`, `shipped_files_dir` and `shipped_files_idle`. The directory is
    /// needed with `move` and only then; it must exist, be a directory, and lie outside the
    /// flow's globs, or moved files would be found and read again.
    fn shipped_files(
        &mut self,
        key: &str,
        raw: &mut RawFlow,
        files: &[String],
    ) -> (ShippedFiles, Duration) {
        let idle = self.long_duration(
            &format!("{key}.shipped_files_idle"),
            raw.shipped_files_idle.take(),
            DEFAULT_SHIPPED_FILES_IDLE,
        );
        let dir_key = format!("{key}.shipped_files_dir");
        let dir = raw.shipped_files_dir.take();
        let shipped = match raw.shipped_files.as_deref() {
            None | Some("keep") => ShippedFiles::Keep,
            Some("delete") => ShippedFiles::Delete,
            Some("move") => match &dir {
                Some(dir) => self
                    .shipped_files_dir(&dir_key, dir, files)
                    .map_or(ShippedFiles::Keep, ShippedFiles::Move),
                None => {
                    if !self.rejected(&dir_key) {
                        self.problem(
                            &format!("{key}.shipped_files"),
                            "is move, but shipped_files_dir is missing; name the directory to move files into",
                        );
                    }
                    ShippedFiles::Keep
                }
            },
            Some(other) => {
                self.problem(
                    &format!("{key}.shipped_files"),
                    format!("`{}` is not one of keep, delete, move", quoted(other)),
                );
                return (ShippedFiles::Keep, idle);
            }
        };
        if dir.is_some() && raw.shipped_files.as_deref() != Some("move") {
            self.problem(
                &dir_key,
                "is set, but shipped_files is not move; set shipped_files: move or remove this key",
            );
        }
        (shipped, idle)
    }

    /// `shipped_files_dir`: an existing directory, outside the flow's globs.
    fn shipped_files_dir(&mut self, key: &str, dir: &str, files: &[String]) -> Option<PathBuf> {
        let path = PathBuf::from(dir);
        if !path.is_absolute() {
            self.problem(key, format!("`{}` must be an absolute path", quoted(dir)));
            return None;
        }
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                self.problem(key, format!("`{}` is not a directory", quoted(dir)));
                return None;
            }
            Err(error) => {
                self.problem(
                    key,
                    format!(
                        "`{}` cannot be used ({error}); create the directory first",
                        quoted(dir)
                    ),
                );
                return None;
            }
        }
        if let Some(pattern) = files
            .iter()
            .find(|pattern| glob_directory_matches(pattern, &path))
        {
            self.problem(
                key,
                format!(
                    "`{}` is a directory the glob `{}` reads; files moved there would be read again: choose a directory outside the flow's files",
                    quoted(dir),
                    quoted(pattern)
                ),
            );
            return None;
        }
        Some(path)
    }

    fn initial_position(&mut self, key: &str, raw: Option<&str>) -> InitialPosition {
        match raw {
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
        }
    }

    /// `exclude`: one glob or a list.
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

    /// `multiline_start_pattern` and `multiline_flush_timeout`.
    fn multiline(&mut self, key: &str, raw: &mut RawFlow) -> (Option<Pattern>, Duration) {
        let start = raw
            .multiline_start_pattern
            .take()
            .and_then(|text| self.pattern(&format!("{key}.multiline_start_pattern"), text));
        let flush_timeout = self.duration(
            &format!("{key}.multiline_flush_timeout"),
            raw.multiline_flush_timeout.take(),
            DEFAULT_MULTILINE_FLUSH_TIMEOUT,
        );
        (start, flush_timeout)
    }

    /// `oversize_records` and `truncated_record_terminator`.
    fn oversize(&mut self, key: &str, raw: &mut RawFlow) -> (Oversize, String) {
        let oversize = match raw.oversize_records.as_deref() {
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
        let terminator = raw
            .truncated_record_terminator
            .take()
            .unwrap_or_else(|| DEFAULT_TRUNCATED_RECORD_TERMINATOR.to_owned());
        if terminator.len() > MAX_TRUNCATED_RECORD_TERMINATOR_BYTES {
            self.problem(
                &format!("{key}.truncated_record_terminator"),
                "is longer than 256 bytes",
            );
        }
        (oversize, terminator)
    }
}

/// Whether `dir` is a directory whose files the glob `pattern` can match: its directory part
/// matches `dir`.
fn glob_directory_matches(pattern: &str, dir: &Path) -> bool {
    let Some(parent) = Path::new(pattern).parent().and_then(Path::to_str) else {
        return false;
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(parent).is_ok_and(|glob| glob.matches_path_with(dir, options))
}
