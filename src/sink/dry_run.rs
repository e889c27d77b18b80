//! The dry-run destination: every batch is written as one JSON line to standard output or a
//! file instead of being sent, and counts as delivered, so checkpoints advance as they would.
//! It needs no AWS access at all.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::dead_letter::RecordData;
use super::{PutError, PutRecords, RecordFailure, StreamStatus};
use crate::config::Destination;
use crate::record::OutRecord;

/// Where dry-run batches go; shared by every flow in dry-run mode.
pub struct DryRunOutput {
    writer: Mutex<Box<dyn Write + Send>>,
}

impl DryRunOutput {
    /// `None` writes to standard output; a path is created or appended to.
    pub fn open(path: Option<&Path>) -> io::Result<Arc<Self>> {
        let writer: Box<dyn Write + Send> = match path {
            None => Box::new(io::stdout()),
            Some(path) => Box::new(BufWriter::new(
                File::options().create(true).append(true).open(path)?,
            )),
        };
        Ok(Arc::new(Self {
            writer: Mutex::new(writer),
        }))
    }

    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.write_all(line)?;
        writer.write_all(b"\n")?;
        writer.flush()
    }
}

pub struct DryRunClient {
    flow: String,
    destination: Destination,
    output: Arc<DryRunOutput>,
}

impl DryRunClient {
    pub fn new(flow: &str, destination: &Destination, output: Arc<DryRunOutput>) -> Self {
        Self {
            flow: flow.to_owned(),
            destination: destination.clone(),
            output,
        }
    }
}

#[derive(Serialize)]
struct BatchLine<'a> {
    flow: &'a str,
    /// `kinesis_stream` or `firehose_stream`.
    destination: &'a str,
    stream: &'a str,
    records: Vec<RecordLine<'a>>,
}

#[derive(Serialize)]
struct RecordLine<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    partition_key: &'a str,
    #[serde(flatten)]
    data: RecordData<'a>,
}

impl PutRecords for DryRunClient {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        let line = BatchLine {
            flow: &self.flow,
            destination: self.destination.key(),
            stream: self
                .destination
                .arn
                .as_deref()
                .unwrap_or(&self.destination.name),
            records: records
                .iter()
                .map(|record| RecordLine {
                    partition_key: &record.partition_key,
                    data: RecordData::of(&record.data),
                })
                .collect(),
        };
        let text = serde_json::to_vec(&line).map_err(|error| PutError::Transient {
            message: format!("cannot write the batch as JSON: {error}"),
        })?;
        let output = Arc::clone(&self.output);
        let written = tokio::task::spawn_blocking(move || output.write_line(&text))
            .await
            .map_err(|error| PutError::Transient {
                message: format!("the dry-run writer failed: {error}"),
            })?;
        written.map_err(|error| PutError::Configuration {
            message: format!("cannot write dry-run output: {error}"),
            hint: "check dry_run_output and the space on its disk".into(),
        })?;
        Ok(Vec::new())
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        Ok(StreamStatus {
            status: "DRY RUN".to_owned(),
            open_shards: None,
            max_record_bytes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DestinationKind;
    use bytes::Bytes;

    #[tokio::test]
    async fn each_batch_is_one_json_line_with_its_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dry.jsonl");
        let output = DryRunOutput::open(Some(&path)).expect("open");
        let destination = Destination {
            kind: DestinationKind::Kinesis,
            name: "logs".into(),
            arn: None,
        };
        let client = DryRunClient::new("app", &destination, output);
        let records = vec![
            OutRecord {
                data: Bytes::from_static(b"hello\n"),
                partition_key: "k1".into(),
                offset: 0,
                range: 0,
                explicit_hash_key: None,
                lines: 1,
            },
            OutRecord {
                data: Bytes::from_static(b"\xff\xfe\n"),
                partition_key: "k2".into(),
                offset: 6,
                range: 0,
                explicit_hash_key: None,
                lines: 1,
            },
        ];
        let failures = client.put_records(&records).await.expect("written");
        assert!(failures.is_empty());
        client.put_records(&records[..1]).await.expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["flow"], "app");
        assert_eq!(lines[0]["destination"], "kinesis_stream");
        assert_eq!(lines[0]["stream"], "logs");
        assert_eq!(lines[0]["records"][0]["data"], "hello\n");
        assert_eq!(lines[0]["records"][0]["partition_key"], "k1");
        assert_eq!(lines[0]["records"][1]["data_base64"], "//4K");
        assert_eq!(lines[1]["records"].as_array().map(Vec::len), Some(1));
    }
}
