//! The dead-letter file: records a flow gave up on after `max_retry_duration`, one JSON object
//! per line, written and synced before the records are acknowledged, so nothing is ever
//! dropped without a trace. Fields: `time` (Unix seconds), `flow`, `stream`, `file`, `offset`,
//! `id` (the record's stable id), `error`, and `data` (the record as text) or `data_base64`
//! (when it is not UTF-8).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Serialize;

use crate::record::record_id;
use crate::record::{FileRange, OutRecord};

pub const FILE_NAME: &str = "dead-letter.jsonl";

#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    file: Mutex<Writer>,
}

#[derive(Debug, Default)]
struct Writer {
    file: Option<File>,
    /// A write failed part-way: the next one starts a new line, so each line stays whole JSON.
    torn: bool,
}

#[derive(Serialize)]
struct Entry<'a> {
    time: u64,
    flow: &'a str,
    stream: &'a str,
    file: &'a Path,
    offset: u64,
    id: String,
    error: &'a str,
    #[serde(flatten)]
    data: RecordData<'a>,
}

/// A record's bytes in JSON: `data` when they are UTF-8 text, else `data_base64`.
#[derive(Serialize)]
pub struct RecordData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

impl<'a> RecordData<'a> {
    pub fn of(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                data: Some(text),
                data_base64: None,
            },
            Err(_) => Self {
                data: None,
                data_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }
}

/// The records to write and what they were refused for.
pub struct Letters<'a> {
    pub flow: &'a str,
    pub stream: &'a str,
    pub error: &'a str,
    pub records: &'a [OutRecord],
    pub ranges: &'a [FileRange],
}

impl DeadLetters {
    /// The file in `state_dir`; it is created on the first record written.
    pub fn in_dir(state_dir: &Path) -> Arc<DeadLetters> {
        Arc::new(DeadLetters {
            path: state_dir.join(FILE_NAME),
            file: Mutex::new(Writer::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per record and syncs the file. The lines are made here; the file is
    /// written and synced on a blocking thread, so a slow disk never stalls the runtime.
    pub async fn write(self: &Arc<Self>, letters: &Letters<'_>) -> io::Result<()> {
        let text = lines(letters)?;
        let letters = Arc::clone(self);
        tokio::task::spawn_blocking(move || letters.append(text))
            .await
            .map_err(io::Error::other)?
    }

    /// Appends `text` (whole lines) to the file and syncs it.
    fn append(&self, mut text: Vec<u8>) -> io::Result<()> {
        let mut writer = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if writer.torn {
            text.insert(0, b'\n');
        }
        let file = match writer.file.take() {
            Some(file) => file,
            None => OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        };
        let written = (&file).write_all(&text).and_then(|()| file.sync_data());
        writer.torn = written.is_err();
        if written.is_ok() {
            writer.file = Some(file);
        }
        written
    }
}

/// One JSON line per record of `letters`.
fn lines(letters: &Letters<'_>) -> io::Result<Vec<u8>> {
    let time = crate::clock::unix_seconds();
    let mut text = Vec::new();
    for record in letters.records {
        let Some(range) = letters.ranges.get(record.range as usize) else {
            continue;
        };
        let entry = Entry {
            time,
            flow: letters.flow,
            stream: letters.stream,
            file: &range.file.path,
            offset: record.offset,
            id: record_id(&range.file, record.offset),
            error: letters.error,
            data: RecordData::of(&record.data),
        };
        serde_json::to_writer(&mut text, &entry).map_err(io::Error::other)?;
        text.push(b'\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileId, Head, SourceFile};
    use bytes::Bytes;

    #[tokio::test]
    async fn each_record_is_one_json_line_naming_its_file_offset_and_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let letters = DeadLetters::in_dir(dir.path());
        let file = Arc::new(SourceFile {
            key: 1,
            flow: Arc::from("app"),
            id: FileId {
                device: 1,
                inode: 2,
            },
            head: Some(Head { len: 4, hash: 0xff }),
            path: "/var/log/app.log".into(),
        });
        let ranges = [FileRange {
            file,
            start: 0,
            end: 20,
        }];
        let records = [
            OutRecord {
                data: Bytes::from_static(b"hello\n"),
                partition_key: "k".into(),
                offset: 0,
                range: 0,
                explicit_hash_key: None,
                lines: 1,
            },
            OutRecord {
                data: Bytes::from_static(b"\xff\xfe\n"),
                partition_key: "k".into(),
                offset: 6,
                range: 0,
                explicit_hash_key: None,
                lines: 1,
            },
        ];
        letters
            .write(&Letters {
                flow: "app",
                stream: "logs",
                error: "AccessDeniedException: no",
                records: &records,
                ranges: &ranges,
            })
            .await
            .expect("written");
        let text = std::fs::read_to_string(letters.path()).expect("read back");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["flow"], "app");
        assert_eq!(lines[0]["stream"], "logs");
        assert_eq!(lines[0]["file"], "/var/log/app.log");
        assert_eq!(lines[0]["offset"], 0);
        assert_eq!(lines[0]["id"], "00000000000000ff-0");
        assert_eq!(lines[0]["error"], "AccessDeniedException: no");
        assert_eq!(lines[0]["data"], "hello\n");
        assert_eq!(lines[1]["offset"], 6);
        assert_eq!(lines[1]["data_base64"], "//4K");
        assert!(lines[1].get("data").is_none());
    }
}
