//! The AWS CBOR 1.1 side of the fault server: `PutRecords` requests read into the same shape the
//! JSON side reads, and answers and errors written as the service writes them. CBOR items of
//! definite and indefinite length are both read (the decoder joins the chunks).

use ciborium::Value;

/// A `PutRecords` request as the server checks it; the same for both wire formats.
pub struct PutRecordsCall {
    pub stream_name: Option<String>,
    pub stream_arn: Option<String>,
    pub records: Vec<RecordIn>,
}

pub struct RecordIn {
    pub data: Vec<u8>,
    /// `None` when the request has none, which the service refuses.
    pub partition_key: Option<String>,
    /// The hash key that picks the record's shard instead of its partition key's, as sent.
    pub explicit_hash_key: Option<String>,
}

/// Reads a `PutRecords` body; `Err` is the message of a `SerializationException`.
pub fn put_records(body: &[u8]) -> Result<PutRecordsCall, String> {
    let value: Value = ciborium::from_reader(body)
        .map_err(|error| format!("the request body is not valid CBOR: {error}"))?;
    let Value::Map(fields) = value else {
        return Err("the request body is not a CBOR map".to_owned());
    };
    let mut call = PutRecordsCall {
        stream_name: None,
        stream_arn: None,
        records: Vec::new(),
    };
    for (key, value) in fields {
        match (key.as_text(), value) {
            (Some("StreamName"), value) => call.stream_name = Some(text(value, "StreamName")?),
            (Some("StreamARN"), value) => call.stream_arn = Some(text(value, "StreamARN")?),
            (Some("Records"), Value::Array(records)) => {
                call.records = records
                    .into_iter()
                    .enumerate()
                    .map(|(index, record)| record_in(index, record))
                    .collect::<Result<_, _>>()?;
            }
            (Some("Records"), _) => return Err("Records is not a CBOR array".to_owned()),
            // Other members (StreamId, ...) are not the server's business.
            _ => {}
        }
    }
    Ok(call)
}

fn record_in(index: usize, record: Value) -> Result<RecordIn, String> {
    let Value::Map(fields) = record else {
        return Err(format!("record {index} is not a CBOR map"));
    };
    let (mut data, mut partition_key, mut explicit_hash_key) = (None, None, None);
    for (key, value) in fields {
        match (key.as_text(), value) {
            (Some("Data"), Value::Bytes(bytes)) => data = Some(bytes),
            (Some("Data"), _) => {
                return Err(format!(
                    "record {index}: Data must be a CBOR byte string (major type 2)"
                ))
            }
            (Some("PartitionKey"), value) => partition_key = Some(text(value, "PartitionKey")?),
            (Some("ExplicitHashKey"), value) => {
                explicit_hash_key = Some(text(value, "ExplicitHashKey")?);
            }
            _ => {}
        }
    }
    Ok(RecordIn {
        data: data.ok_or_else(|| format!("record {index} has no Data"))?,
        partition_key,
        explicit_hash_key,
    })
}

fn text(value: Value, what: &str) -> Result<String, String> {
    match value {
        Value::Text(text) => Ok(text),
        _ => Err(format!("{what} must be a CBOR text string")),
    }
}

/// A map with text keys, in the order given.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (Value::Text(key.to_owned()), value))
            .collect(),
    )
}

pub fn text_value(text: &str) -> Value {
    Value::Text(text.to_owned())
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    ciborium::into_writer(value, &mut bytes).expect("writing CBOR into a Vec cannot fail");
    bytes
}
