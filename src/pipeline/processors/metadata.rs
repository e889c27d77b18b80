//! `add_metadata`: adds fields to each record: a timestamp, fixed fields, the host name and
//! the file the record was read from, and the record's stable id. A JSON object record gets
//! them as its last keys, its own bytes otherwise untouched; with `envelope`, any record is
//! wrapped as `{"ts":…,"record_id":…,"metadata":{…},"data":"…"}` (the record as a string), as
//! the Kinesis Agent's ADDMETADATA writes it (which has no record id).

use bytes::Bytes;

use super::json;
use super::{split_line_end, Origin, Outcome};
use crate::record::record_id;

#[derive(Clone, Debug, PartialEq)]
pub struct AddMetadata {
    /// Add the time the record was processed (RFC 3339, UTC, milliseconds).
    pub timestamp: bool,
    /// Fixed fields, in the order written.
    pub fields: Vec<(String, serde_json::Value)>,
    /// The host name to add, when asked for (resolved once, at start).
    pub host: Option<String>,
    /// Add the path of the file the record was read from.
    pub file: bool,
    /// Add the record's stable id (the same each time the record is sent), by which consumers
    /// drop duplicates.
    pub record_id: bool,
    /// Wrap the record instead of adding keys to it.
    pub envelope: bool,
}

/// Key names of the added fields.
pub const TIMESTAMP_KEY: &str = "timestamp";
pub const HOST_KEY: &str = "host";
pub const FILE_KEY: &str = "file";
pub const RECORD_ID_KEY: &str = "record_id";

impl AddMetadata {
    pub fn apply(&self, record: Bytes, origin: Origin<'_>) -> Outcome {
        let now = self
            .timestamp
            .then(|| humantime::format_rfc3339_millis(crate::clock::wall_now()).to_string());
        self.apply_at(record, origin, now.as_deref())
    }

    fn apply_at(&self, record: Bytes, origin: Origin<'_>, now: Option<&str>) -> Outcome {
        let (body, line_end) = split_line_end(&record);
        let mut added = String::new();
        for (key, value) in &self.fields {
            push_field(&mut added, key, &value.to_string());
        }
        if let Some(host) = &self.host {
            push_field(&mut added, HOST_KEY, &json::string(host));
        }
        if self.file {
            push_field(
                &mut added,
                FILE_KEY,
                &json::string(&origin.file.path.to_string_lossy()),
            );
        }
        let id = self
            .record_id
            .then(|| json::string(&record_id(origin.file, origin.offset)));
        if !self.envelope {
            if let Some(id) = &id {
                push_field(&mut added, RECORD_ID_KEY, id);
            }
            if let Some(now) = now {
                push_field(&mut added, TIMESTAMP_KEY, &json::string(now));
            }
            return match json::add_members(body, &added, line_end) {
                Some(out) => Outcome::Keep(Bytes::from(out)),
                None => Outcome::Unparsable(
                    "add_metadata adds keys to JSON objects; this record is not one (set envelope: true to wrap any record)".into(),
                ),
            };
        }
        let mut out = Vec::with_capacity(body.len() + added.len() + 64);
        out.push(b'{');
        if let Some(now) = now {
            out.extend_from_slice(format!("\"ts\":{},", json::string(now)).as_bytes());
        }
        if let Some(id) = &id {
            out.extend_from_slice(format!("\"{RECORD_ID_KEY}\":{id},").as_bytes());
        }
        out.extend_from_slice(format!("\"metadata\":{{{added}}},\"data\":").as_bytes());
        // Always as a string, JSON or not, as the Kinesis Agent writes it.
        if serde_json::to_writer(&mut out, &String::from_utf8_lossy(body)).is_err() {
            return Outcome::Unparsable(
                "add_metadata: the record cannot be written as JSON".into(),
            );
        }
        out.push(b'}');
        out.extend_from_slice(line_end);
        Outcome::Keep(Bytes::from(out))
    }
}

/// Appends `"key":value` to a list of JSON members.
fn push_field(members: &mut String, key: &str, value: &str) {
    if !members.is_empty() {
        members.push(',');
    }
    members.push_str(&json::string(key));
    members.push(':');
    members.push_str(value);
}

/// This host's name: from the kernel on Linux, from the environment elsewhere.
pub fn host_name() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    from_kernel
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::processors::testing;

    const NOW: &str = "2024-05-06T07:08:09.123Z";

    fn add(processor: &AddMetadata, line: &'static str) -> Outcome {
        let file = testing::file("/var/log/app.log");
        processor.apply_at(
            Bytes::from_static(line.as_bytes()),
            Origin {
                file: &file,
                offset: 1234,
            },
            processor.timestamp.then_some(NOW),
        )
    }

    fn every() -> AddMetadata {
        AddMetadata {
            timestamp: true,
            fields: vec![
                ("env".into(), serde_json::json!("prod")),
                ("shard".into(), serde_json::json!(3)),
            ],
            host: Some("web-1".into()),
            file: true,
            record_id: false,
            envelope: false,
        }
    }

    fn text(outcome: Outcome) -> String {
        match outcome {
            Outcome::Keep(bytes) => String::from_utf8(bytes.to_vec()).expect("utf-8"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_objects_get_the_fields_as_last_keys() {
        assert_eq!(
            text(add(&every(), "{\"b\":1, \"a\":[2]}\n")),
            "{\"b\":1, \"a\":[2],\"env\":\"prod\",\"shard\":3,\"host\":\"web-1\",\"file\":\"/var/log/app.log\",\"timestamp\":\"2024-05-06T07:08:09.123Z\"}\n"
        );
        assert_eq!(
            text(add(&every(), " {} \r\n")),
            "{\"env\":\"prod\",\"shard\":3,\"host\":\"web-1\",\"file\":\"/var/log/app.log\",\"timestamp\":\"2024-05-06T07:08:09.123Z\"}\r\n"
        );
        assert!(matches!(
            add(&every(), "plain text\n"),
            Outcome::Unparsable(_)
        ));
        assert!(matches!(add(&every(), "[1,2]\n"), Outcome::Unparsable(_)));
    }

    #[test]
    fn a_key_the_record_has_takes_the_added_value_in_its_place() {
        assert_eq!(
            text(add(
                &every(),
                "{\"host\":\"mine\",\"a\":1,\"env\":\"dev\"}\n"
            )),
            "{\"host\":\"web-1\",\"a\":1,\"env\":\"prod\",\"shard\":3,\"file\":\"/var/log/app.log\",\"timestamp\":\"2024-05-06T07:08:09.123Z\"}\n"
        );
    }

    #[test]
    fn the_envelope_wraps_any_record() {
        let envelope = AddMetadata {
            envelope: true,
            ..every()
        };
        assert_eq!(
            text(add(&envelope, "GET /x \"q\"\n")),
            "{\"ts\":\"2024-05-06T07:08:09.123Z\",\"metadata\":{\"env\":\"prod\",\"shard\":3,\"host\":\"web-1\",\"file\":\"/var/log/app.log\"},\"data\":\"GET /x \\\"q\\\"\"}\n"
        );
        assert_eq!(
            text(add(&envelope, "{\"a\":1}\n")),
            "{\"ts\":\"2024-05-06T07:08:09.123Z\",\"metadata\":{\"env\":\"prod\",\"shard\":3,\"host\":\"web-1\",\"file\":\"/var/log/app.log\"},\"data\":\"{\\\"a\\\":1}\"}\n"
        );
        let bare = AddMetadata {
            timestamp: false,
            fields: vec![],
            host: None,
            file: false,
            record_id: false,
            envelope: true,
        };
        assert_eq!(text(add(&bare, "x")), "{\"metadata\":{},\"data\":\"x\"}");
    }

    #[test]
    fn the_record_id_names_the_file_head_and_the_record_offset() {
        let with_id = AddMetadata {
            timestamp: false,
            fields: vec![],
            host: None,
            file: false,
            record_id: true,
            envelope: false,
        };
        let file = testing::file("/var/log/app.log");
        let id = record_id(&file, 1234);
        assert!(id.ends_with("-1234"), "{id}");
        assert_eq!(
            text(add(&with_id, "{\"a\":1,\"record_id\":\"mine\"}\n")),
            format!("{{\"a\":1,\"record_id\":\"{id}\"}}\n")
        );
        let envelope = AddMetadata {
            timestamp: true,
            envelope: true,
            ..with_id
        };
        assert_eq!(
            text(add(&envelope, "plain line\n")),
            format!("{{\"ts\":\"{NOW}\",\"record_id\":\"{id}\",\"metadata\":{{}},\"data\":\"plain line\"}}\n")
        );
    }
}
