//! The bodies of the answers both test endpoints give: `PutRecords` in JSON 1.1 and CBOR 1.1,
//! `PutRecordBatch` in JSON 1.1, and the describe operations' documents. Each endpoint decides
//! the fate of every record; this writes it down as the service would.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;

use super::protocol::Wire;
use super::{ACCOUNT, REGION};

/// Why a record was not stored, in the service's words.
#[derive(Clone, Debug)]
pub struct Refusal<'a> {
    pub code: &'a str,
    pub message: Cow<'a, str>,
}

/// The fate of one record of a `PutRecords` call.
#[derive(Clone, Debug)]
pub enum RecordAnswer<'a> {
    Stored {
        /// Real ones are 56 decimal digits; an endpoint's should be too.
        sequence_number: String,
        shard_id: Cow<'a, str>,
    },
    Refused(Refusal<'a>),
}

/// The fate of one record of a `PutRecordBatch` call.
#[derive(Clone, Debug)]
pub enum BatchAnswer<'a> {
    /// Stored; the record id is written as 64 hex digits.
    Stored {
        record_id: u64,
    },
    Refused(Refusal<'a>),
}

/// The `PutRecords` answer in `wire`'s format.
pub fn put_records(wire: Wire, records: &[RecordAnswer]) -> Bytes {
    match wire {
        Wire::Json => put_records_json(records),
        Wire::Cbor => put_records_cbor(records),
    }
}

/// `{"FailedRecordCount": N, "Records": [...]}` in JSON.
pub fn put_records_json(records: &[RecordAnswer]) -> Bytes {
    let failed = records
        .iter()
        .filter(|record| matches!(record, RecordAnswer::Refused(_)))
        .count();
    let mut body = String::with_capacity(48 + records.len() * 96);
    write!(body, "{{\"FailedRecordCount\":{failed},\"Records\":[").expect("writing to a String");
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        match record {
            RecordAnswer::Stored {
                sequence_number,
                shard_id,
            } => write!(
                body,
                "{{\"SequenceNumber\":\"{sequence_number}\",\"ShardId\":\"{shard_id}\"}}"
            )
            .expect("writing to a String"),
            RecordAnswer::Refused(refusal) => write_refusal(&mut body, refusal),
        }
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// The CBOR form of [`put_records_json`]: the same members, as the service writes them.
pub fn put_records_cbor(records: &[RecordAnswer]) -> Bytes {
    let failed = records
        .iter()
        .filter(|record| matches!(record, RecordAnswer::Refused(_)))
        .count();
    let mut body = Vec::with_capacity(32 + records.len() * 90);
    cbor::map_head(&mut body, 2);
    cbor::text(&mut body, "FailedRecordCount");
    cbor::unsigned(&mut body, failed as u64);
    cbor::text(&mut body, "Records");
    cbor::array_head(&mut body, records.len() as u64);
    for record in records {
        cbor::map_head(&mut body, 2);
        match record {
            RecordAnswer::Stored {
                sequence_number,
                shard_id,
            } => {
                cbor::text(&mut body, "SequenceNumber");
                cbor::text(&mut body, sequence_number);
                cbor::text(&mut body, "ShardId");
                cbor::text(&mut body, shard_id);
            }
            RecordAnswer::Refused(refusal) => {
                cbor::text(&mut body, "ErrorCode");
                cbor::text(&mut body, refusal.code);
                cbor::text(&mut body, "ErrorMessage");
                cbor::text(&mut body, &refusal.message);
            }
        }
    }
    Bytes::from(body)
}

/// `{"FailedPutCount": N, "Encrypted": false, "RequestResponses": [...]}` in JSON, the only
/// format Firehose speaks.
pub fn put_record_batch_json(records: &[BatchAnswer]) -> Bytes {
    let failed = records
        .iter()
        .filter(|record| matches!(record, BatchAnswer::Refused(_)))
        .count();
    let mut body = String::with_capacity(64 + records.len() * 96);
    write!(
        body,
        "{{\"FailedPutCount\":{failed},\"Encrypted\":false,\"RequestResponses\":["
    )
    .expect("writing to a String");
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        match record {
            BatchAnswer::Stored { record_id } => {
                write!(body, "{{\"RecordId\":\"{record_id:064x}\"}}").expect("writing to a String")
            }
            BatchAnswer::Refused(refusal) => write_refusal(&mut body, refusal),
        }
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// `{"ErrorCode": ..., "ErrorMessage": ...}`; the message may name the client's stream, so it
/// is escaped when it needs to be.
fn write_refusal(body: &mut String, refusal: &Refusal) {
    write!(
        body,
        "{{\"ErrorCode\":\"{}\",\"ErrorMessage\":",
        refusal.code
    )
    .expect("writing to a String");
    let needs_escaping = refusal
        .message
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control());
    if needs_escaping {
        body.push_str(&serde_json::Value::from(refusal.message.as_ref()).to_string());
    } else {
        body.push('"');
        body.push_str(&refusal.message);
        body.push('"');
    }
    body.push('}');
}

/// `DescribeStreamSummary`'s document for an active provisioned stream `name`.
pub fn stream_description_summary(name: &str, created: u64, open_shards: u64) -> serde_json::Value {
    serde_json::json!({
        "StreamDescriptionSummary": {
            "StreamName": name,
            "StreamARN": format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": created,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": open_shards,
            "ConsumerCount": 0,
        }
    })
}

/// `DescribeDeliveryStream`'s document for an active direct-put delivery stream `name`.
pub fn delivery_stream_description(name: &str, created: u64) -> serde_json::Value {
    serde_json::json!({
        "DeliveryStreamDescription": {
            "DeliveryStreamName": name,
            "DeliveryStreamARN": format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}"),
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "DirectPut",
            "VersionId": "1",
            "CreateTimestamp": created,
            "Destinations": [],
            "HasMoreDestinations": false,
        }
    })
}

/// A CBOR writer of just what the answers need: definite-length maps, arrays, text strings and
/// unsigned integers, each head in the fewest bytes, as a CBOR encoder writes them.
pub mod cbor {
    pub fn map_head(out: &mut Vec<u8>, entries: u64) {
        head(out, 5, entries);
    }

    pub fn array_head(out: &mut Vec<u8>, items: u64) {
        head(out, 4, items);
    }

    pub fn unsigned(out: &mut Vec<u8>, value: u64) {
        head(out, 0, value);
    }

    pub fn text(out: &mut Vec<u8>, text: &str) {
        head(out, 3, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }

    /// An item head: major type and a definite argument.
    fn head(out: &mut Vec<u8>, major: u8, argument: u64) {
        let major = major << 5;
        match argument {
            0..=23 => out.push(major | argument as u8),
            24..=0xff => out.extend([major | 24, argument as u8]),
            0x100..=0xffff => {
                out.push(major | 25);
                out.extend((argument as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(major | 26);
                out.extend((argument as u32).to_be_bytes());
            }
            _ => {
                out.push(major | 27);
                out.extend(argument.to_be_bytes());
            }
        }
    }
}
