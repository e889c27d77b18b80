//! The bodies decoded by independent decoders (serde_json, ciborium) and compared with the
//! bodies the AWS SDK sends; the answer scanners against hand-built answers.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::response::{
    scan_error, scan_put_record_batch, scan_put_records, PutAnswer, Refused, ScanError,
    UNKNOWN_ERROR_CODE,
};
use super::*;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The request `entries` should make, as JSON, with each record's data shown by `data`.
fn expected_request(
    stream: StreamRef<'_>,
    entries: &[Entry<'_>],
    data: impl Fn(&[u8]) -> Value,
) -> Value {
    let records: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut record = serde_json::Map::new();
            record.insert("Data".into(), data(entry.data));
            if let Some(key) = entry.explicit_hash_key {
                let text = match key {
                    HashKey::Text(text) => text.to_owned(),
                    HashKey::Number(n) => n.to_string(),
                };
                record.insert("ExplicitHashKey".into(), Value::String(text));
            }
            record.insert(
                "PartitionKey".into(),
                Value::String(entry.partition_key.to_owned()),
            );
            Value::Object(record)
        })
        .collect();
    match stream {
        StreamRef::Name(name) => json!({ "Records": records, "StreamName": name }),
        StreamRef::Arn(arn) => json!({ "Records": records, "StreamARN": arn }),
    }
}

/// How CBOR byte strings appear once a CBOR body is turned into JSON for comparison.
fn cbor_bytes(data: &[u8]) -> Value {
    Value::String(format!("bytes:{}", b64(data)))
}

/// A CBOR value as JSON, byte strings marked so they cannot pass for text.
fn cbor_to_json(value: ciborium::Value) -> Value {
    match value {
        ciborium::Value::Bytes(bytes) => cbor_bytes(&bytes),
        ciborium::Value::Text(text) => Value::String(text),
        ciborium::Value::Integer(n) => json!(i128::from(n) as i64),
        ciborium::Value::Bool(b) => Value::Bool(b),
        ciborium::Value::Null => Value::Null,
        ciborium::Value::Array(items) => {
            Value::Array(items.into_iter().map(cbor_to_json).collect())
        }
        ciborium::Value::Map(pairs) => Value::Object(
            pairs
                .into_iter()
                .map(|(key, value)| {
                    let ciborium::Value::Text(key) = key else {
                        panic!("a map key is not text: {key:?}")
                    };
                    (key, cbor_to_json(value))
                })
                .collect(),
        ),
        other => panic!("unexpected CBOR value in a request: {other:?}"),
    }
}

fn decode_cbor(body: &[u8]) -> Value {
    let value: ciborium::Value = ciborium::de::from_reader(body).expect("the CBOR body decodes");
    cbor_to_json(value)
}

fn decode_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("the JSON body decodes")
}

/// Writes the body into a buffer sized by `put_records_body_len` and checks it was neither
/// outgrown nor left short.
fn write(format: WireFormat, stream: StreamRef<'_>, entries: &[Entry<'_>]) -> Vec<u8> {
    let len = put_records_body_len(format, stream, entries);
    let mut out = Vec::with_capacity(len);
    let capacity = out.capacity();
    put_records_body(format, stream, entries, &mut out);
    assert_eq!(out.len(), len, "the computed length is exact ({format:?})");
    assert_eq!(
        out.capacity(),
        capacity,
        "the buffer never grew ({format:?})"
    );
    out
}

/// Checks both formats against the expected request and returns the JSON value.
fn check_both(stream: StreamRef<'_>, entries: &[Entry<'_>]) -> Value {
    let json_body = write(WireFormat::Json, stream, entries);
    let json_value = decode_json(&json_body);
    assert_eq!(
        json_value,
        expected_request(stream, entries, |data| Value::String(b64(data)))
    );
    let cbor_body = write(WireFormat::Cbor, stream, entries);
    assert_eq!(
        decode_cbor(&cbor_body),
        expected_request(stream, entries, cbor_bytes)
    );
    json_value
}

fn entry<'a>(data: &'a [u8], partition_key: &'a str) -> Entry<'a> {
    Entry {
        data,
        partition_key,
        explicit_hash_key: None,
    }
}

#[test]
fn content_types_and_targets() {
    assert_eq!(WireFormat::default(), WireFormat::Cbor);
    assert_eq!(
        WireFormat::Cbor.content_type(),
        "application/x-amz-cbor-1.1"
    );
    assert_eq!(
        WireFormat::Json.content_type(),
        "application/x-amz-json-1.1"
    );
    assert_eq!(PUT_RECORDS_TARGET, "Kinesis_20131202.PutRecords");
    assert_eq!(PUT_RECORD_BATCH_TARGET, "Firehose_20150804.PutRecordBatch");
}

#[test]
fn json_body_is_exactly_as_documented() {
    let entries = [
        entry(b"hello\n", "pk"),
        Entry {
            data: b"",
            partition_key: "k\"2",
            explicit_hash_key: Some(HashKey::Number(7)),
        },
    ];
    let body = write(WireFormat::Json, StreamRef::Name("logs"), &entries);
    assert_eq!(
        std::str::from_utf8(&body).expect("the body is UTF-8"),
        r#"{"Records":[{"Data":"aGVsbG8K","PartitionKey":"pk"},{"Data":"","ExplicitHashKey":"7","PartitionKey":"k\"2"}],"StreamName":"logs"}"#
    );
}

#[test]
fn cbor_body_is_exactly_as_documented() {
    let entries = [entry(b"hi", "k")];
    let body = write(WireFormat::Cbor, StreamRef::Name("s"), &entries);
    let mut expected = vec![0xA2, 0x67];
    expected.extend_from_slice(b"Records");
    expected.extend_from_slice(&[0x81, 0xA2, 0x64]);
    expected.extend_from_slice(b"Data");
    expected.extend_from_slice(&[0x42, b'h', b'i', 0x6C]);
    expected.extend_from_slice(b"PartitionKey");
    expected.extend_from_slice(&[0x61, b'k', 0x6A]);
    expected.extend_from_slice(b"StreamName");
    expected.extend_from_slice(&[0x61, b's']);
    assert_eq!(body, expected);
}

#[test]
fn empty_data_and_empty_batch() {
    check_both(StreamRef::Name("logs"), &[entry(b"", "pk")]);
    let value = check_both(StreamRef::Name("logs"), &[]);
    assert_eq!(value, json!({"Records": [], "StreamName": "logs"}));
}

#[test]
fn one_mebibyte_of_data() {
    let data: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    check_both(StreamRef::Name("logs"), &[entry(&data, "big")]);
}

#[test]
fn data_lengths_at_every_cbor_head_width() {
    let data = vec![0xA5u8; 70_000];
    for len in [0, 1, 2, 3, 4, 23, 24, 255, 256, 65_535, 65_536, 70_000] {
        check_both(StreamRef::Name("logs"), &[entry(&data[..len], "pk")]);
    }
}

#[test]
fn partition_keys_that_need_escaping() {
    let all_controls: String = (0u8..0x20).map(char::from).collect();
    let keys = [
        "quote\"in",
        "back\\slash",
        "\n\r\t\u{8}\u{c}",
        all_controls.as_str(),
        "\u{7f}del",
        "emoji 🦀🎉 and é, 中文",
        "/slash",
        "\u{2028}\u{2029}",
        "x",
    ];
    let entries: Vec<Entry<'_>> = keys.iter().map(|key| entry(b"d", key)).collect();
    check_both(StreamRef::Name("na\"me"), &entries);
    let body = write(WireFormat::Json, StreamRef::Name("n"), &entries[3..4]);
    let text = std::str::from_utf8(&body).expect("the body is UTF-8");
    assert!(text.contains(r#"\u0000\u0001"#), "{text}");
    assert!(text.contains(r#"\b\t\n\u000b\f\r"#), "{text}");
}

#[test]
fn explicit_hash_keys_as_text_and_number() {
    let entries = [
        Entry {
            data: b"a",
            partition_key: "pk",
            explicit_hash_key: Some(HashKey::Number(u128::MAX)),
        },
        Entry {
            data: b"b",
            partition_key: "pk",
            explicit_hash_key: Some(HashKey::Number(0)),
        },
        Entry {
            data: b"c",
            partition_key: "pk",
            explicit_hash_key: Some(HashKey::Text("170141183460469231731687303715884105728")),
        },
        Entry {
            data: b"d",
            partition_key: "pk",
            explicit_hash_key: Some(HashKey::Number(10_000_000_000_000_000_000)),
        },
        Entry {
            data: b"e",
            partition_key: "pk",
            explicit_hash_key: Some(HashKey::Text("odd \"text\"")),
        },
    ];
    let value = check_both(StreamRef::Name("logs"), &entries);
    assert_eq!(
        value["Records"][0]["ExplicitHashKey"],
        "340282366920938463463374607431768211455"
    );
    assert_eq!(value["Records"][1]["ExplicitHashKey"], "0");
    assert_eq!(
        value["Records"][3]["ExplicitHashKey"],
        "10000000000000000000"
    );
}

#[test]
fn decimal_digits() {
    let mut buf = [0u8; 39];
    for n in [
        0u128,
        9,
        10,
        99,
        1 << 64,
        (1 << 64) - 1,
        10u128.pow(19) - 1,
        10u128.pow(38),
        u128::MAX,
    ] {
        assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
    }
}

#[test]
fn stream_by_arn_or_name() {
    let entries = [entry(b"x", "pk")];
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/logs";
    let value = check_both(StreamRef::Arn(arn), &entries);
    assert_eq!(value["StreamARN"], arn);
    assert!(value.get("StreamName").is_none());
    let value = check_both(StreamRef::Name("logs"), &entries);
    assert_eq!(value["StreamName"], "logs");
    assert!(value.get("StreamARN").is_none());
}

#[test]
fn five_hundred_entries_of_log_lines() {
    let lines: Vec<String> = (0..500)
        .map(|i| format!("2024-01-01T00:00:00Z line {i} {}\n", "x".repeat(i % 300)))
        .collect();
    let keys: Vec<String> = (0..500).map(|i| format!("{}", i * 7919)).collect();
    let entries: Vec<Entry<'_>> = lines
        .iter()
        .zip(&keys)
        .map(|(line, key)| entry(line.as_bytes(), key))
        .collect();
    check_both(StreamRef::Name("logs"), &entries);
}

#[test]
fn a_reused_buffer_is_cleared_and_large_enough_is_not_grown() {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(b"stale bytes");
    let capacity = out.capacity();
    let entries = [entry(b"fresh", "pk")];
    for format in [WireFormat::Json, WireFormat::Cbor] {
        put_records_body(format, StreamRef::Name("logs"), &entries, &mut out);
        assert_eq!(out.capacity(), capacity);
        assert_eq!(
            out.len(),
            put_records_body_len(format, StreamRef::Name("logs"), &entries)
        );
    }
    put_record_batch_body("d", &[b"x".as_slice()], &mut out);
    assert_eq!(out.capacity(), capacity);
    assert_eq!(
        decode_json(&out),
        json!({"DeliveryStreamName": "d", "Records": [{"Data": "eA=="}]})
    );
}

#[test]
fn firehose_body() {
    let records: Vec<&[u8]> = vec![b"line one\n", b"", b"\x00\xff binary"];
    let len = put_record_batch_body_len("my \"stream\"", &records);
    let mut out = Vec::with_capacity(len);
    let capacity = out.capacity();
    put_record_batch_body("my \"stream\"", &records, &mut out);
    assert_eq!(out.len(), len);
    assert_eq!(out.capacity(), capacity);
    assert_eq!(
        decode_json(&out),
        json!({
            "DeliveryStreamName": "my \"stream\"",
            "Records": records.iter().map(|r| json!({"Data": b64(r)})).collect::<Vec<_>>(),
        })
    );
    put_record_batch_body("d", &[], &mut out);
    assert_eq!(
        decode_json(&out),
        json!({"DeliveryStreamName": "d", "Records": []})
    );
}

/// A random record: data, partition key (any characters), an optional hash key.
type OwnedEntry = (Vec<u8>, String, Option<Result<String, u128>>);

fn owned_entry() -> impl Strategy<Value = OwnedEntry> {
    (
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<char>(), 1..24)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        proptest::option::of(prop_oneof![
            proptest::collection::vec(any::<char>(), 0..8)
                .prop_map(|c| Ok(c.into_iter().collect::<String>())),
            any::<u128>().prop_map(Err),
        ]),
    )
}

fn borrow(owned: &[OwnedEntry]) -> Vec<Entry<'_>> {
    owned
        .iter()
        .map(|(data, key, hash)| Entry {
            data,
            partition_key: key,
            explicit_hash_key: hash.as_ref().map(|hash| match hash {
                Ok(text) => HashKey::Text(text),
                Err(n) => HashKey::Number(*n),
            }),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_decode_to_the_request(
        owned in proptest::collection::vec(owned_entry(), 0..20),
        by_arn in any::<bool>(),
        stream in "\\PC{1,30}",
    ) {
        let entries = borrow(&owned);
        let stream = if by_arn { StreamRef::Arn(&stream) } else { StreamRef::Name(&stream) };
        check_both(stream, &entries);
    }

    #[test]
    fn random_firehose_batches_decode(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
        stream in proptest::collection::vec(any::<char>(), 1..30).prop_map(|c| c.into_iter().collect::<String>()),
    ) {
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let len = put_record_batch_body_len(&stream, &slices);
        let mut out = Vec::with_capacity(len);
        let capacity = out.capacity();
        put_record_batch_body(&stream, &slices, &mut out);
        prop_assert_eq!(out.len(), len);
        prop_assert_eq!(out.capacity(), capacity);
        prop_assert_eq!(
            decode_json(&out),
            json!({"DeliveryStreamName": stream, "Records": records.iter().map(|r| json!({"Data": b64(r)})).collect::<Vec<_>>()})
        );
    }

    #[test]
    fn scanners_never_panic_on_garbage(body in proptest::collection::vec(any::<u8>(), 0..64), shard_ids in any::<bool>()) {
        let _ = scan_put_records(WireFormat::Cbor, &body, shard_ids);
        let _ = scan_put_records(WireFormat::Json, &body, shard_ids);
        let _ = scan_put_record_batch(&body);
        let _ = scan_error(WireFormat::Cbor, None, &body);
        let _ = scan_error(WireFormat::Json, None, &body);
    }

    #[test]
    fn truncated_answers_are_errors(cut in 0usize..1000) {
        let json_answer = br#"{"FailedRecordCount":1,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000000"},{"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}"#;
        let cut_json = cut % json_answer.len();
        prop_assert!(scan_put_records(WireFormat::Json, &json_answer[..cut_json], false).is_err());
        let cbor_answer = cbor_answer_two_records();
        let cut_cbor = cut % cbor_answer.len();
        prop_assert!(scan_put_records(WireFormat::Cbor, &cbor_answer[..cut_cbor], true).is_err());
    }
}

// ---- The SDK's own bodies for the same batch ----

mod sdk {
    use aws_smithy_http_client::test_util::capture_request;

    /// The body the Kinesis SDK sends for `PutRecords` of `entries` to `stream`.
    pub(super) async fn kinesis_body(
        stream: super::StreamRef<'_>,
        entries: &[super::Entry<'_>],
    ) -> Vec<u8> {
        use aws_sdk_kinesis::config::{Credentials, Region};
        use aws_sdk_kinesis::primitives::Blob;
        use aws_sdk_kinesis::types::PutRecordsRequestEntry;

        let (http_client, request) = capture_request(None);
        let config = aws_sdk_kinesis::Config::builder()
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .region(Region::new("us-east-1"))
            .behavior_version_latest()
            .http_client(http_client)
            .build();
        let client = aws_sdk_kinesis::Client::from_conf(config);
        let mut call = client.put_records();
        call = match stream {
            super::StreamRef::Name(name) => call.stream_name(name),
            super::StreamRef::Arn(arn) => call.stream_arn(arn),
        };
        for entry in entries {
            let mut record = PutRecordsRequestEntry::builder()
                .data(Blob::new(entry.data))
                .partition_key(entry.partition_key);
            if let Some(key) = entry.explicit_hash_key {
                record = record.explicit_hash_key(match key {
                    super::HashKey::Text(text) => text.to_owned(),
                    super::HashKey::Number(n) => n.to_string(),
                });
            }
            call = call.records(record.build().expect("the record has its required members"));
        }
        // The captured answer is empty, so the call itself fails; only its request matters.
        let _ = call.send().await;
        let request = request.expect_request();
        assert_eq!(
            request.headers().get("x-amz-target"),
            Some(super::PUT_RECORDS_TARGET),
            "the SDK's target header"
        );
        assert_eq!(
            request.headers().get("content-type"),
            Some(super::WireFormat::Json.content_type()),
            "the SDK's content type"
        );
        request
            .body()
            .bytes()
            .expect("the body is in memory")
            .to_vec()
    }

    /// The body the Firehose SDK sends for `PutRecordBatch` of `records`.
    pub(super) async fn firehose_body(delivery_stream: &str, records: &[&[u8]]) -> Vec<u8> {
        use aws_sdk_firehose::config::{Credentials, Region};
        use aws_sdk_firehose::primitives::Blob;
        use aws_sdk_firehose::types::Record;

        let (http_client, request) = capture_request(None);
        let config = aws_sdk_firehose::Config::builder()
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .region(Region::new("us-east-1"))
            .behavior_version_latest()
            .http_client(http_client)
            .build();
        let client = aws_sdk_firehose::Client::from_conf(config);
        let mut call = client
            .put_record_batch()
            .delivery_stream_name(delivery_stream);
        for record in records {
            call = call.records(
                Record::builder()
                    .data(Blob::new(*record))
                    .build()
                    .expect("the record has its data"),
            );
        }
        let _ = call.send().await;
        let request = request.expect_request();
        assert_eq!(
            request.headers().get("x-amz-target"),
            Some(super::PUT_RECORD_BATCH_TARGET),
            "the SDK's target header"
        );
        request
            .body()
            .bytes()
            .expect("the body is in memory")
            .to_vec()
    }
}

fn differential_batch() -> (Vec<Vec<u8>>, Vec<String>) {
    let mut data: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"a plain line\n".to_vec(),
        (0..=255u8).collect(),
        "unicode ✓ 🦀\n".as_bytes().to_vec(),
        vec![b'z'; 100_000],
    ];
    let mut keys: Vec<String> = vec![
        "1".into(),
        "quote\" back\\ slash/".into(),
        (0u8..0x20).map(char::from).collect(),
        "emoji 🦀 é \u{7f} \u{2028}".into(),
        "k".repeat(256),
    ];
    for i in 0..495 {
        data.push(format!("line {i}\n").into_bytes());
        keys.push(format!("{}", i * 104_729));
    }
    (data, keys)
}

#[tokio::test]
async fn the_json_body_matches_the_kinesis_sdk() {
    let (data, keys) = differential_batch();
    let mut entries: Vec<Entry<'_>> = data.iter().zip(&keys).map(|(d, k)| entry(d, k)).collect();
    entries[1].explicit_hash_key = Some(HashKey::Number(u128::MAX));
    entries[2].explicit_hash_key = Some(HashKey::Text("12345"));
    entries[7].explicit_hash_key = Some(HashKey::Number(0));
    for stream in [
        StreamRef::Name("logs"),
        StreamRef::Arn("arn:aws:kinesis:us-east-1:123456789012:stream/logs"),
    ] {
        let sdk_body = sdk::kinesis_body(stream, &entries).await;
        let sdk_value = decode_json(&sdk_body);
        let ours = write(WireFormat::Json, stream, &entries);
        assert_eq!(
            decode_json(&ours),
            sdk_value,
            "JSON bodies differ for {stream:?}"
        );
        // The CBOR body carries the same request, the data as bytes instead of base64.
        let cbor = decode_cbor(&write(WireFormat::Cbor, stream, &entries));
        assert_eq!(
            cbor,
            base64_to_cbor_bytes(sdk_value),
            "CBOR body differs for {stream:?}"
        );
    }
}

/// The SDK's JSON request with each record's base64 `Data` shown as CBOR bytes are.
fn base64_to_cbor_bytes(mut request: Value) -> Value {
    if let Some(records) = request.get_mut("Records").and_then(Value::as_array_mut) {
        for record in records {
            if let Some(data) = record.get_mut("Data") {
                let text = data.as_str().expect("the SDK's data is a string");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .expect("the SDK's data is base64");
                *data = cbor_bytes(&bytes);
            }
        }
    }
    request
}

#[tokio::test]
async fn the_firehose_body_matches_the_firehose_sdk() {
    let (data, _) = differential_batch();
    let records: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let sdk_body = sdk::firehose_body("delivery \"stream\"", &records).await;
    let mut ours = Vec::new();
    put_record_batch_body("delivery \"stream\"", &records, &mut ours);
    assert_eq!(decode_json(&ours), decode_json(&sdk_body));
}

// ---- Answers ----

/// A tiny CBOR writer for hand-built answers, with a choice of head width.
mod cb {
    pub fn head(major: u8, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        super::cbor::write_head(&mut out, major, n);
        out
    }
    /// A head with the argument in `width` bytes (0 means in the initial byte).
    pub fn wide_head(major: u8, n: u64, width: usize) -> Vec<u8> {
        let info = match width {
            0 => return vec![major << 5 | n as u8],
            1 => 24,
            2 => 25,
            4 => 26,
            _ => 27,
        };
        let mut out = vec![major << 5 | info];
        out.extend_from_slice(&n.to_be_bytes()[8 - width.min(8)..]);
        out
    }
    pub fn text(s: &str) -> Vec<u8> {
        let mut out = head(3, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
        out
    }
    /// An indefinite-length text string in the given chunks.
    pub fn text_chunks(chunks: &[&str]) -> Vec<u8> {
        let mut out = vec![0x7F];
        for chunk in chunks {
            out.extend(text(chunk));
        }
        out.push(0xFF);
        out
    }
    pub fn uint(n: u64) -> Vec<u8> {
        head(0, n)
    }
    pub fn map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = head(5, pairs.len() as u64);
        for (k, v) in pairs {
            out.extend_from_slice(k);
            out.extend_from_slice(v);
        }
        out
    }
    pub fn indefinite_map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0xBF];
        for (k, v) in pairs {
            out.extend_from_slice(k);
            out.extend_from_slice(v);
        }
        out.push(0xFF);
        out
    }
    pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = head(4, items.len() as u64);
        items.iter().for_each(|i| out.extend_from_slice(i));
        out
    }
    pub fn indefinite_array(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0x9F];
        items.iter().for_each(|i| out.extend_from_slice(i));
        out.push(0xFF);
        out
    }
    pub fn ok_entry(seq: &str, shard: &str) -> Vec<u8> {
        map(&[
            (text("SequenceNumber"), text(seq)),
            (text("ShardId"), text(shard)),
        ])
    }
    pub fn failed_entry(code: &str, message: &str) -> Vec<u8> {
        map(&[
            (text("ErrorCode"), text(code)),
            (text("ErrorMessage"), text(message)),
        ])
    }
}

fn cbor_answer_two_records() -> Vec<u8> {
    cb::map(&[
        (cb::text("FailedRecordCount"), cb::uint(1)),
        (
            cb::text("Records"),
            cb::array(&[
                cb::ok_entry("4960", "shardId-000000000000"),
                cb::failed_entry("InternalFailure", "x"),
            ]),
        ),
    ])
}

fn refused(index: usize, code: &str, message: &str) -> Refused {
    Refused {
        index,
        code: code.into(),
        message: message.into(),
    }
}

#[test]
fn json_answer_all_accepted() {
    let body = br#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"4961","ShardId":"shardId-000000000001"},{"SequenceNumber":"4962","ShardId":"shardId-000000000002"}],"EncryptionType":"NONE"}"#;
    let answer = scan_put_records(WireFormat::Json, body, false).expect("the answer scans");
    assert_eq!(
        answer,
        PutAnswer {
            results: 2,
            failed: 0,
            refused: vec![],
            shard_ids: vec![]
        }
    );
    let answer = scan_put_records(WireFormat::Json, body, true).expect("the answer scans");
    assert_eq!(
        answer.shard_ids,
        ["shardId-000000000001", "shardId-000000000002"]
    );
}

#[test]
fn json_answer_some_refused_in_any_member_order_with_whitespace() {
    let body = r#"
    {
      "EncryptionType" : "KMS",
      "Records" : [
        { "SequenceNumber" : "1", "ShardId" : "shardId-000000000000" } ,
        { "ErrorMessage" : "Rate exceeded for shard shardId-000000000001 in stream logs under account 123.",
          "ErrorCode" : "ProvisionedThroughputExceededException" },
        { "ShardId" : "shardId-000000000003", "SequenceNumber" : "2", "Unknown": {"nested": [1, 2.5e3, -3, true, false, null]} },
        { "ErrorCode" : "InternalFailure", "ErrorMessage" : "Internal service failure \u00e9 \ud83e\udd80 \"q\" \\ \/" }
      ],
      "FailedRecordCount" : 2
    }
    "#;
    for shard_ids in [false, true] {
        let answer = scan_put_records(WireFormat::Json, body.as_bytes(), shard_ids)
            .expect("the answer scans");
        assert_eq!(answer.results, 4);
        assert_eq!(answer.failed, 2);
        assert_eq!(
            answer.refused,
            [
                refused(
                    1,
                    "ProvisionedThroughputExceededException",
                    "Rate exceeded for shard shardId-000000000001 in stream logs under account 123."
                ),
                refused(3, "InternalFailure", "Internal service failure é 🦀 \"q\" \\ /"),
            ]
        );
        if shard_ids {
            assert_eq!(
                answer.shard_ids,
                ["shardId-000000000000", "", "shardId-000000000003", ""]
            );
        } else {
            assert!(answer.shard_ids.is_empty());
        }
    }
}

#[test]
fn json_answer_with_count_after_records_and_nothing_failed() {
    let body = br#"{"Records":[{"SequenceNumber":"1","ShardId":"s"},{"SequenceNumber":"2","ShardId":"s","ErrorCode":null}],"FailedRecordCount":0}"#;
    let answer = scan_put_records(WireFormat::Json, body, false).expect("the answer scans");
    assert_eq!(
        (answer.results, answer.failed, answer.refused.len()),
        (2, 0, 0)
    );
}

#[test]
fn json_answer_with_a_lone_surrogate_and_an_integral_float_count() {
    let body = br#"{"FailedRecordCount":1.0,"Records":[{"ErrorCode":"InternalFailure","ErrorMessage":"a\ud800b\udc00c"}]}"#;
    let answer = scan_put_records(WireFormat::Json, body, false).expect("the answer scans");
    assert_eq!(answer.failed, 1);
    assert_eq!(
        answer.refused,
        [refused(0, "InternalFailure", "a\u{fffd}b\u{fffd}c")]
    );
}

#[test]
fn entries_of_an_all_accepted_json_answer_are_counted_by_their_structure() {
    let answer = scan_put_records(
        WireFormat::Json,
        br#"{"FailedRecordCount":0,"Records":[{"ShardId":"a\"}{[","SequenceNumber":"1"},{"Nested":{"x":[1,{"y":"]}"}]}}]}"#,
        false,
    )
    .expect("the answer scans");
    assert_eq!((answer.results, answer.failed), (2, 0));
    // What is inside an entry is not checked, only where it ends.
    let answer = scan_put_records(
        WireFormat::Json,
        br#"{"FailedRecordCount":0,"Records":[{"ShardId":"\q"}]}"#,
        false,
    )
    .expect("the answer scans");
    assert_eq!(answer.results, 1);
    for cut in [
        &br#"{"FailedRecordCount":0,"Records":[{"ShardId":"a"#[..],
        br#"{"FailedRecordCount":0,"Records":[{"ShardId":"a"#,
        br#"{"FailedRecordCount":0,"Records":[{"Nested":{"x":1}"#,
    ] {
        assert!(scan_put_records(WireFormat::Json, cut, false).is_err());
    }
}

#[test]
fn json_answers_that_are_not_answers() {
    let cases: &[&[u8]] = &[
        b"",
        b"   ",
        b"{",
        b"{\"FailedRecordCount\":0,\"Records\":[",
        b"{\"FailedRecordCount\":0,\"Records\":[]",
        b"{\"FailedRecordCount\":0,\"Records\":[]}}",
        b"{\"FailedRecordCount\":0,\"Records\":[{\"ShardId\":\"x}]}",
        // Entries are checked whole when some record failed; when none did they are only
        // counted, by their structure (see the test after this one).
        b"{\"FailedRecordCount\":1,\"Records\":[{\"ShardId\":\"\\q\"}]}",
        b"{\"FailedRecordCount\":0,\"Records\":[1,]}",
        b"{\"FailedRecordCount\":0,,\"Records\":[]}",
        b"{\"FailedRecordCount\":-1,\"Records\":[]}",
        b"{\"FailedRecordCount\":\"1\",\"Records\":[]}",
        b"{\"FailedRecordCount\":1,\"Records\":{}}",
        b"{\"FailedRecordCount\":1,\"Records\":[5]}",
        b"{\"FailedRecordCount\":1,\"Records\":[{\"ErrorCode\":5}]}",
        b"{\"FailedRecordCount\":0}",
        b"{\"Records\":[],\"Records\":[]}",
        b"[]",
        b"<html><body>502 Bad Gateway</body></html>",
        b"{\"FailedRecordCount\":0,\"Records\":[],\"x\":tru}",
        b"{\"FailedRecordCount\":0,\"Records\":[],\"x\":\"a\nb\"}",
    ];
    for body in cases {
        let result = scan_put_records(WireFormat::Json, body, false);
        assert!(
            result.is_err(),
            "{:?} gave {result:?}",
            String::from_utf8_lossy(body)
        );
    }
    let error =
        scan_put_records(WireFormat::Json, b"{\"Records\":[{}{}]}", false).expect_err("not JSON");
    assert_eq!(
        error.to_string(),
        "the answer is not valid JSON at byte 14: a comma or ']' should follow an element"
    );
    assert_eq!(
        scan_put_records(WireFormat::Json, b"{}", false)
            .expect_err("no records")
            .to_string(),
        "the answer has no Records member"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut body = b"{\"Records\":[],\"x\":".to_vec();
    body.extend(std::iter::repeat_n(b'[', 100_000));
    assert!(matches!(
        scan_put_records(WireFormat::Json, &body, false),
        Err(ScanError::TooDeep { .. })
    ));
    let mut body = cb::map(&[
        (cb::text("Records"), cb::array(&[])),
        (cb::text("x"), vec![]),
    ]);
    body.extend(std::iter::repeat_n(0x81u8, 100_000));
    assert!(matches!(
        scan_put_records(WireFormat::Cbor, &body, false),
        Err(ScanError::TooDeep { .. })
    ));
}

#[test]
fn cbor_answer_some_refused() {
    let body = cbor_answer_two_records();
    let answer = scan_put_records(WireFormat::Cbor, &body, true).expect("the answer scans");
    assert_eq!(
        answer,
        PutAnswer {
            results: 2,
            failed: 1,
            refused: vec![refused(1, "InternalFailure", "x")],
            shard_ids: vec!["shardId-000000000000".into(), String::new()],
        }
    );
}

#[test]
fn cbor_answer_as_ciborium_writes_it() {
    // A real encoder's answer, members in a different order, EncryptionType included.
    let value = ciborium::Value::Map(vec![
        (
            "Records".into(),
            ciborium::Value::Array(
                (0..500)
                    .map(|i| {
                        if i % 100 == 7 {
                            ciborium::Value::Map(vec![
                                (
                                    "ErrorCode".into(),
                                    "ProvisionedThroughputExceededException".into(),
                                ),
                                ("ErrorMessage".into(), "Rate exceeded".into()),
                            ])
                        } else {
                            ciborium::Value::Map(vec![
                                ("SequenceNumber".into(), format!("{i:056}").into()),
                                ("ShardId".into(), format!("shardId-{:012}", i % 4).into()),
                            ])
                        }
                    })
                    .collect(),
            ),
        ),
        ("EncryptionType".into(), "NONE".into()),
        ("FailedRecordCount".into(), 5.into()),
    ]);
    let mut body = Vec::new();
    ciborium::ser::into_writer(&value, &mut body).expect("ciborium encodes");
    let answer = scan_put_records(WireFormat::Cbor, &body, false).expect("the answer scans");
    assert_eq!(answer.results, 500);
    assert_eq!(answer.failed, 5);
    assert_eq!(
        answer.refused.iter().map(|r| r.index).collect::<Vec<_>>(),
        [7, 107, 207, 307, 407]
    );
    assert!(answer.refused.iter().all(|r| r.message == "Rate exceeded"));
    let answer = scan_put_records(WireFormat::Cbor, &body, true).expect("the answer scans");
    assert_eq!(answer.shard_ids.len(), 500);
    assert_eq!(answer.shard_ids[5], "shardId-000000000001");
    assert_eq!(answer.shard_ids[7], "");
}

#[test]
fn cbor_answer_indefinite_lengths_tags_and_wide_integers() {
    let ok = cb::indefinite_map(&[
        (
            cb::text_chunks(&["Sequence", "Number"]),
            cb::text_chunks(&["4960", "1"]),
        ),
        (
            cb::text("ShardId"),
            cb::text_chunks(&["shardId-", "000000000002"]),
        ),
        // Members a future service may add: a tag, floats, a chunked byte string, undefined.
        (
            cb::text("Tagged"),
            [vec![0xC1], cb::uint(1_700_000_000)].concat(),
        ),
        (cb::text("Half"), vec![0xF9, 0x3C, 0x00]),
        (cb::text("Single"), vec![0xFA, 0x3F, 0x80, 0x00, 0x00]),
        (cb::text("Double"), vec![0xFB, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
        (cb::text("Bytes"), vec![0x5F, 0x41, 0x00, 0x40, 0xFF]),
        (cb::text("Undefined"), vec![0xF7]),
        (cb::text("Simple"), vec![0xF8, 0x20]),
        (
            cb::text("Bools"),
            cb::array(&[vec![0xF4], vec![0xF5], vec![0xF6]]),
        ),
        (cb::text("Negative"), cb::wide_head(1, 5, 8)),
        (cb::uint(5), cb::text("a non-text key")),
    ]);
    let failed = cb::map(&[
        (
            cb::text("ErrorCode"),
            [vec![0xD8, 0x20], cb::text("InternalFailure")].concat(),
        ),
        (
            cb::text("ErrorMessage"),
            cb::text_chunks(&["Internal ", "service ", "failure"]),
        ),
    ]);
    for width in [0usize, 1, 2, 4, 8] {
        let body = cb::indefinite_map(&[
            (
                cb::text("Records"),
                cb::indefinite_array(&[ok.clone(), failed.clone(), ok.clone()]),
            ),
            (cb::text("EncryptionType"), cb::text("NONE")),
            (cb::text("FailedRecordCount"), cb::wide_head(0, 1, width)),
        ]);
        for shard_ids in [false, true] {
            let answer =
                scan_put_records(WireFormat::Cbor, &body, shard_ids).expect("the answer scans");
            assert_eq!(answer.results, 3, "width {width}");
            assert_eq!(answer.failed, 1);
            assert_eq!(
                answer.refused,
                [refused(1, "InternalFailure", "Internal service failure")]
            );
            if shard_ids {
                assert_eq!(
                    answer.shard_ids,
                    ["shardId-000000000002", "", "shardId-000000000002"]
                );
            }
        }
        // Nothing failed, said first: the entries are passed over unread.
        let body = cb::map(&[
            (cb::text("FailedRecordCount"), cb::wide_head(0, 0, width)),
            (
                cb::text("Records"),
                cb::indefinite_array(&[ok.clone(), ok.clone()]),
            ),
        ]);
        let answer = scan_put_records(WireFormat::Cbor, &body, false).expect("the answer scans");
        assert_eq!((answer.results, answer.failed), (2, 0));
    }
}

#[test]
fn cbor_answers_that_are_not_answers() {
    let good = cbor_answer_two_records();
    let mut trailing = good.clone();
    trailing.push(0x00);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        trailing,
        vec![0xFF],
        vec![0x1C],
        cb::array(&[]),
        cb::map(&[(cb::text("FailedRecordCount"), cb::uint(0))]),
        cb::map(&[(cb::text("Records"), cb::text("no"))]),
        cb::map(&[
            (cb::text("FailedRecordCount"), cb::text("1")),
            (cb::text("Records"), cb::array(&[])),
        ]),
        cb::map(&[
            (cb::text("FailedRecordCount"), cb::uint(1)),
            (cb::text("Records"), cb::array(&[cb::uint(1)])),
        ]),
        cb::map(&[(
            cb::text("Records"),
            cb::array(&[cb::map(&[(cb::text("ErrorCode"), cb::uint(3))])]),
        )]),
        // An array claiming far more items than the answer holds.
        [
            cb::head(5, 1),
            cb::text("Records"),
            cb::wide_head(4, u64::MAX, 8),
        ]
        .concat(),
        // A text chunk inside an indefinite byte string.
        [
            cb::head(5, 1),
            cb::text("x"),
            vec![0x5F],
            cb::text("a"),
            vec![0xFF],
        ]
        .concat(),
        // A break where a value should be.
        [vec![0xBF], cb::text("Records"), vec![0xFF]].concat(),
        // A text string longer than the answer.
        [cb::head(5, 1), cb::wide_head(3, 1 << 40, 8)].concat(),
        // JSON is not CBOR.
        br#"{"FailedRecordCount":0,"Records":[]}"#.to_vec(),
    ];
    for body in &cases {
        let result = scan_put_records(WireFormat::Cbor, body, true);
        assert!(result.is_err(), "{body:02x?} gave {result:?}");
    }
    assert_eq!(
        scan_put_records(WireFormat::Cbor, &[0xA1, 0x67, b'R'], false)
            .expect_err("truncated")
            .to_string(),
        "the answer is not valid CBOR at byte 2: the answer ends inside an item"
    );
}

#[test]
fn firehose_answers() {
    let body = br#"{"FailedPutCount":1,"Encrypted":false,"RequestResponses":[{"RecordId":"49543463076548007577105092703039560359975228518395012686"},{"ErrorCode":"ServiceUnavailableException","ErrorMessage":"Slow down."},{"RecordId":"2"}]}"#;
    let answer = scan_put_record_batch(body).expect("the answer scans");
    assert_eq!(
        answer,
        PutAnswer {
            results: 3,
            failed: 1,
            refused: vec![refused(1, "ServiceUnavailableException", "Slow down.")],
            shard_ids: vec![],
        }
    );
    let body = br#"{"RequestResponses":[{"RecordId":"1"},{"RecordId":"2"}],"FailedPutCount":0}"#;
    let answer = scan_put_record_batch(body).expect("the answer scans");
    assert_eq!(
        (answer.results, answer.failed, answer.refused.len()),
        (2, 0, 0)
    );
    assert!(scan_put_record_batch(br#"{"FailedPutCount":0,"Records":[]}"#).is_err());
    assert!(scan_put_record_batch(b"").is_err());
}

#[test]
fn error_answers() {
    let json = WireFormat::Json;
    let cbor = WireFormat::Cbor;
    let error = scan_error(
        json,
        None,
        br#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded"}"#,
    );
    assert_eq!(error.code, "ProvisionedThroughputExceededException");
    assert_eq!(error.message, "Rate exceeded");
    assert_eq!(
        error.to_string(),
        "ProvisionedThroughputExceededException: Rate exceeded"
    );

    let error = scan_error(
        json,
        None,
        br#"{"message":"Stream logs under account 123 not found.","__type":"com.amazonaws.kinesis.v20131202#ResourceNotFoundException"}"#,
    );
    assert_eq!(error.code, "ResourceNotFoundException");
    assert_eq!(error.message, "Stream logs under account 123 not found.");

    let error = scan_error(
        json,
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/"),
        br#"{"__type":"SomethingElse","Message":"Rate exceeded"}"#,
    );
    assert_eq!(error.code, "ThrottlingException");
    assert_eq!(error.message, "Rate exceeded");

    let body = cb::map(&[
        (
            cb::text("__type"),
            cb::text("com.amazonaws.kinesis#LimitExceededException"),
        ),
        (cb::text("message"), cb::text_chunks(&["Too ", "many"])),
        (cb::text("extra"), cb::array(&[cb::uint(1)])),
    ]);
    let error = scan_error(cbor, None, &body);
    assert_eq!(error.code, "LimitExceededException");
    assert_eq!(error.message, "Too many");
    // The format asked for is only a hint: a JSON error to a CBOR call is read all the same.
    let error = scan_error(
        cbor,
        None,
        br#"{"__type":"AccessDeniedException","Message":"no"}"#,
    );
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("AccessDeniedException", "no")
    );
    let error = scan_error(json, None, &body);
    assert_eq!(error.code, "LimitExceededException");

    let error = scan_error(json, None, b"");
    assert_eq!(error.code, UNKNOWN_ERROR_CODE);
    assert_eq!(error.message, "the answer has no body");
    let error = scan_error(cbor, Some("InternalFailure"), b"");
    assert_eq!(error.code, "InternalFailure");

    let html = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let error = scan_error(json, None, html);
    assert_eq!(error.code, UNKNOWN_ERROR_CODE);
    assert!(error.message.starts_with("the answer is neither JSON nor CBOR (150 bytes): \"<html>  <head><title>502 Bad Gateway"), "{}", error.message);
    assert!(error.message.ends_with("…\""), "{}", error.message);

    let error = scan_error(json, Some(""), &[0xFF, 0xFE, 0x00, 0x80]);
    assert_eq!(error.code, UNKNOWN_ERROR_CODE);
    assert!(error.message.contains("4 bytes"), "{}", error.message);

    let error = scan_error(json, None, br#"{"code":"BarError","__type":5}"#);
    assert_eq!(error.code, "BarError");
    assert_eq!(error.message, "");
    let error = scan_error(
        json,
        None,
        br#"{"__type":"aws#Foo","errorMessage":"esc \u00e9\n"}"#,
    );
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("Foo", "esc é\n")
    );
}

#[test]
fn an_all_accepted_cbor_answer_is_read_no_further_than_its_list_of_results() {
    let mut head = vec![0xA2, 0x60 + 17];
    head.extend_from_slice(b"FailedRecordCount");
    head.push(0x00);
    head.push(0x60 + 7);
    head.extend_from_slice(b"Records");
    head.push(0x83); // a list of 3 results, not read
    let answer = scan_put_records(WireFormat::Cbor, &head, false).expect("the answer scans");
    assert_eq!((answer.results, answer.failed), (3, 0));
    assert!(answer.refused.is_empty());
    // With a refused record, or shard ids wanted, every result is read, so a cut is an error.
    let mut failed = head.clone();
    failed[2 + 17] = 0x01;
    assert!(scan_put_records(WireFormat::Cbor, &failed, false).is_err());
    assert!(scan_put_records(WireFormat::Cbor, &head, true).is_err());
}
