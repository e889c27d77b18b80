//! Record processing: each flow's `processors`, applied in order to every record between the
//! file and the batch. A processor keeps a record (as it is or changed) or drops it; a dropped
//! record is still acknowledged, so it never holds its file's checkpoint back.

pub mod ec2;
pub mod filter;
mod json;
pub mod log;
pub mod metadata;
pub mod redact;
pub mod text;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

use crate::config::ProcessorSpec;
use crate::log_limit::LogLimiter;
use crate::metrics::FlowMetrics;
use crate::record::SourceFile;

pub use crate::config::OnError;
pub use ec2::{AddEc2Metadata, Ec2Access};
pub use filter::Filter;
pub use log::LogToJson;
pub use metadata::AddMetadata;
pub use redact::Redact;
pub use text::{CsvToJson, SingleLine};

/// One processor, built from its spec; clones share what it caches.
#[derive(Clone, Debug)]
pub enum Processor {
    SingleLine(SingleLine),
    CsvToJson(CsvToJson),
    LogToJson(LogToJson),
    Filter(Filter),
    Redact(Redact),
    AddMetadata(AddMetadata),
    AddEc2Metadata(AddEc2Metadata),
}

/// What one processor made of a record.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Keep(Bytes),
    /// Left out on purpose (a filter).
    Filtered,
    /// A converter could not parse it: why.
    Unparsable(String),
}

/// What a record is read from, for processors that add it.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub file: &'a SourceFile,
    /// Where the record starts in `file`.
    pub offset: u64,
}

/// The processors a flow's specs name, in order. The config checked every spec, so building
/// cannot fail; each `add_ec2_metadata` starts with no metadata until its refresher reads it,
/// and calls EC2 through `ec2` (the flow's credentials and HTTP client) when given.
pub fn build(specs: &[ProcessorSpec], ec2: Option<&Ec2Access>) -> Vec<Processor> {
    specs
        .iter()
        .map(|spec| Processor::from_spec(spec, ec2))
        .collect()
}

impl Processor {
    /// The processor `spec` names.
    pub fn from_spec(spec: &ProcessorSpec, ec2: Option<&Ec2Access>) -> Processor {
        match spec {
            ProcessorSpec::SingleLine { trim, separator } => Processor::SingleLine(SingleLine {
                trim: *trim,
                separator: separator.clone(),
            }),
            ProcessorSpec::CsvToJson {
                field_names,
                delimiter,
            } => Processor::CsvToJson(CsvToJson {
                field_names: field_names.clone(),
                delimiter: *delimiter,
            }),
            ProcessorSpec::LogToJson {
                parser,
                field_names,
                dash_as_null,
            } => Processor::LogToJson(LogToJson {
                parser: log::Parser::from_spec(parser),
                field_names: field_names.clone(),
                dash_as_null: *dash_as_null,
            }),
            ProcessorSpec::Filter { include, exclude } => Processor::Filter(Filter {
                include: include.clone(),
                exclude: exclude.clone(),
            }),
            ProcessorSpec::Redact { rules } => Processor::Redact(Redact::new(rules.clone())),
            ProcessorSpec::AddMetadata {
                timestamp,
                fields,
                host,
                file,
                record_id,
                envelope,
            } => Processor::AddMetadata(AddMetadata {
                timestamp: *timestamp,
                fields: fields.clone(),
                host: host.then(metadata::host_name),
                file: *file,
                record_id: *record_id,
                envelope: *envelope,
            }),
            ProcessorSpec::AddEc2Metadata(settings) => {
                Processor::AddEc2Metadata(AddEc2Metadata::new(settings.clone(), ec2.cloned()))
            }
        }
    }

    fn apply(&self, record: Bytes, origin: Origin<'_>) -> Outcome {
        match self {
            Processor::SingleLine(join) => join.apply(record),
            Processor::CsvToJson(csv) => csv.apply(record),
            Processor::LogToJson(log) => log.apply(record),
            Processor::Filter(filter) => filter.apply(record),
            Processor::Redact(redact) => Outcome::Keep(redact.apply(record)),
            Processor::AddMetadata(add) => add.apply(record, origin),
            Processor::AddEc2Metadata(add) => add.apply(record),
        }
    }
}

/// How often an unparsable record is logged, at most, per flow.
const UNPARSABLE_LOG_EVERY: Duration = Duration::from_secs(10);

/// A flow's processors, with the counters they add to.
#[derive(Debug)]
pub struct Chain {
    steps: Vec<Processor>,
    on_error: OnError,
    /// The longest record that fits the flow's record limit.
    max_bytes: usize,
    metrics: Arc<FlowMetrics>,
    flow: Arc<str>,
    unparsable_log: LogLimiter,
}

impl Chain {
    /// `None` when the flow has no processors: records pass untouched, at no cost.
    pub fn new(
        flow: &str,
        steps: Vec<Processor>,
        on_error: OnError,
        max_bytes: usize,
        metrics: Arc<FlowMetrics>,
    ) -> Option<Self> {
        (!steps.is_empty()).then(|| Self {
            steps,
            on_error,
            max_bytes,
            metrics,
            flow: Arc::from(flow),
            unparsable_log: LogLimiter::new(UNPARSABLE_LOG_EVERY),
        })
    }

    /// Runs `record` through every processor; `None` when it is left out. A record a
    /// processor cannot parse goes on as it was before that processor (so redactions before
    /// it hold), or is dropped, per `on_error`; so does a record processing made longer than
    /// the record limit, as it was when it last fitted.
    pub fn apply(&mut self, record: Bytes, origin: Origin<'_>) -> Option<Bytes> {
        let mut current = record;
        let mut last_fitting = current.clone();
        for step in &self.steps {
            match step.apply(current.clone(), origin) {
                Outcome::Keep(next) => current = next,
                Outcome::Filtered => {
                    count(&self.metrics.records_filtered);
                    return None;
                }
                Outcome::Unparsable(reason) => return self.unparsable(current, &reason, origin),
            }
            if current.len() <= self.max_bytes {
                last_fitting = current.clone();
            }
        }
        if current.len() > self.max_bytes && current.len() > last_fitting.len() {
            let reason = format!(
                "{} bytes after processing, over the record limit ({} bytes for the data)",
                current.len(),
                self.max_bytes
            );
            return self.unparsable(last_fitting, &reason, origin);
        }
        Some(current)
    }

    fn unparsable(&mut self, record: Bytes, reason: &str, origin: Origin<'_>) -> Option<Bytes> {
        count(&self.metrics.records_unparsable);
        self.log_unparsable(reason, origin);
        match self.on_error {
            OnError::SendRaw => Some(record),
            OnError::Drop => None,
        }
    }

    /// Logs an unparsable record at most every [`UNPARSABLE_LOG_EVERY`], with how many more
    /// there were since.
    fn log_unparsable(&mut self, reason: &str, origin: Origin<'_>) {
        let Some(more_since_last) = self.unparsable_log.allow() else {
            return;
        };
        let action = match self.on_error {
            OnError::SendRaw => "sent as it was before that processor",
            OnError::Drop => "dropped",
        };
        warn!(flow = %self.flow, file = %origin.file.path.display(), reason, action, more_since_last, "A processor could not parse a record.");
    }
}

fn count(counter: &AtomicU64) {
    FlowMetrics::add(counter, 1);
}

/// The record's text without its line ending, and the ending (`\n`, `\r\n` or nothing).
pub fn split_line_end(record: &[u8]) -> (&[u8], &'static [u8]) {
    if let Some(body) = record.strip_suffix(b"\r\n") {
        (body, b"\r\n")
    } else if let Some(body) = record.strip_suffix(b"\n") {
        (body, b"\n")
    } else {
        (record, b"")
    }
}

#[cfg(test)]
pub mod testing {
    use std::path::PathBuf;
    use std::sync::Arc;

    use crate::pattern::Pattern;
    use crate::record::{FileId, SourceFile};

    pub fn pattern(text: &str) -> Pattern {
        Pattern {
            text: text.to_owned(),
            regex: regex::bytes::Regex::new(text).expect("regex"),
        }
    }

    pub fn file(path: &str) -> SourceFile {
        SourceFile {
            key: 1,
            flow: Arc::from("app"),
            id: FileId {
                device: 1,
                inode: 2,
            },
            head: None,
            path: PathBuf::from(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pattern;
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn processors_run_in_order_and_a_filtered_record_is_counted() {
        let metrics = Arc::new(FlowMetrics::default());
        let mut chain = Chain::new(
            "app",
            vec![
                Processor::Redact(Redact::new(vec![redact::Rule::Custom {
                    pattern: pattern("secret=\\S+"),
                    replacement: "secret=***".into(),
                }])),
                // Sees the redacted text.
                Processor::Filter(Filter {
                    include: vec![],
                    exclude: vec![pattern("secret=\\*\\*\\* drop")],
                }),
            ],
            OnError::SendRaw,
            1000,
            Arc::clone(&metrics),
        )
        .expect("a chain");
        let file = testing::file("/logs/a.log");
        let origin = Origin {
            file: &file,
            offset: 0,
        };
        assert_eq!(
            chain.apply(Bytes::from_static(b"login secret=hunter2 ok\n"), origin),
            Some(Bytes::from_static(b"login secret=*** ok\n"))
        );
        assert_eq!(
            chain.apply(Bytes::from_static(b"secret=x drop\n"), origin),
            None
        );
        assert_eq!(metrics.records_filtered.load(Ordering::Relaxed), 1);
        assert!(Chain::new("app", vec![], OnError::Drop, 1000, metrics).is_none());
    }

    #[test]
    fn an_unparsable_record_goes_on_as_it_was_before_the_failing_processor() {
        let steps = vec![
            Processor::Redact(Redact::new(vec![redact::Rule::Builtin {
                kind: redact::Builtin::Email,
                replacement: "[REDACTED]".into(),
            }])),
            Processor::AddMetadata(AddMetadata {
                timestamp: false,
                fields: vec![("env".into(), serde_json::json!("prod"))],
                host: None,
                file: false,
                record_id: false,
                envelope: false,
            }),
        ];
        let file = testing::file("/logs/a.log");
        let origin = Origin {
            file: &file,
            offset: 0,
        };
        let metrics = Arc::new(FlowMetrics::default());
        let mut send_raw = Chain::new(
            "app",
            steps.clone(),
            OnError::SendRaw,
            1000,
            Arc::clone(&metrics),
        )
        .expect("a chain");
        assert_eq!(
            send_raw.apply(Bytes::from_static(b"mail jane@example.com\n"), origin),
            Some(Bytes::from_static(b"mail [REDACTED]\n"))
        );
        assert_eq!(
            send_raw.apply(
                Bytes::from_static(b"{\"to\":\"jane@example.com\"}\n"),
                origin
            ),
            Some(Bytes::from_static(
                b"{\"to\":\"[REDACTED]\",\"env\":\"prod\"}\n"
            ))
        );
        let mut drop = Chain::new(
            "app",
            steps.clone(),
            OnError::Drop,
            1000,
            Arc::clone(&metrics),
        )
        .expect("a chain");
        assert_eq!(drop.apply(Bytes::from_static(b"plain\n"), origin), None);
        assert_eq!(metrics.records_unparsable.load(Ordering::Relaxed), 2);
        // Too long once the field is added: sent as it last fitted.
        let mut tight =
            Chain::new("app", steps, OnError::SendRaw, 20, Arc::clone(&metrics)).expect("a chain");
        assert_eq!(
            tight.apply(Bytes::from_static(b"{\"to\":\"a@b.io\"}\n"), origin),
            Some(Bytes::from_static(b"{\"to\":\"[REDACTED]\"}\n"))
        );
        assert_eq!(metrics.records_unparsable.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn line_endings_are_split_off() {
        assert_eq!(split_line_end(b"a\r\n"), (&b"a"[..], &b"\r\n"[..]));
        assert_eq!(split_line_end(b"a\n"), (&b"a"[..], &b"\n"[..]));
        assert_eq!(split_line_end(b"a"), (&b"a"[..], &b""[..]));
    }
}
