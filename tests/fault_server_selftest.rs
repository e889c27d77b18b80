//! Checks the fault-injecting Kinesis server itself: that the real SDK reads its answers the way
//! it reads the service's, that each fault shows the client what the service would show, and
//! that what the server reports as stored is exactly what it stored. Tests of the agent under
//! faults rely on all three.

use std::error::Error as _;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use aws_sdk_kinesis::Client;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::fault_kinesis::{
    delivery_report, losses_and_duplicates, DeliveryReport, FaultKinesis, Faults,
};

const STREAM: &str = "fault-selftest";
/// Short, so that a stalled call times out quickly; long enough for a loaded debug build.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to poll for something that should happen at once (an outage taking effect).
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

type PutResult = Result<PutRecordsOutput, SdkError<PutRecordsError>>;

/// A client that makes exactly one attempt per call and gives up on it after
/// [`ATTEMPT_TIMEOUT`], so each fault reaches the test as the SDK reports it.
fn client(server: &FaultKinesis) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(server.endpoint())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(ATTEMPT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// Record `i`'s data: not UTF-8, with NUL, CR and LF, base64 padding of every length, and
/// unique per `i`.
fn payload(i: usize) -> Vec<u8> {
    let mut data = format!("record {i:06} ").into_bytes();
    data.extend_from_slice(&[0x00, 0xff, b'\r', b'\n', 0xc3, 0x28]);
    data.extend((0..i % 7).map(|j| (i * 13 + j) as u8));
    data
}

fn payloads(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(payload).collect()
}

async fn put(client: &Client, records: &[Vec<u8>]) -> PutResult {
    let entries = records
        .iter()
        .enumerate()
        .map(|(i, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{}", i % 11))
                .data(Blob::new(data.clone()))
                .build()
                .expect("an entry with data and a partition key is complete")
        })
        .collect::<Vec<_>>();
    client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries))
        .send()
        .await
}

fn expect_output(result: PutResult) -> PutRecordsOutput {
    result.unwrap_or_else(|e| panic!("PutRecords failed: {}", DisplayErrorContext(&e)))
}

fn expect_error(result: PutResult) -> SdkError<PutRecordsError> {
    match result {
        Ok(output) => panic!("PutRecords succeeded where it should have failed: {output:?}"),
        Err(error) => error,
    }
}

/// Whether an `io::Error` of `kind` is somewhere in `error`'s chain of causes.
fn caused_by(error: &SdkError<PutRecordsError>, kind: ErrorKind) -> bool {
    let mut cause = error.source();
    while let Some(current) = cause {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Asserts that the call failed in the connection: no answer was parsed, nor did it time out.
fn assert_dispatch_failure(error: &SdkError<PutRecordsError>, what: &str) {
    match error {
        SdkError::DispatchFailure(failure) => assert!(
            !failure.is_timeout() && !failure.is_user(),
            "{what}: a dispatch failure of the wrong kind: {}",
            DisplayErrorContext(error)
        ),
        other => panic!(
            "{what}: expected a dispatch failure, got {}",
            DisplayErrorContext(other)
        ),
    }
}

#[tokio::test]
async fn fault_server_stores_records_and_returns_them_exactly() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);
    let sent = payloads(1_200);

    for chunk in sent.chunks(500) {
        let output = expect_output(put(&client, chunk).await);
        assert_eq!(output.failed_record_count(), Some(0), "failed records");
        assert_eq!(output.records().len(), chunk.len(), "answers per record");
        for entry in output.records() {
            assert_eq!(entry.shard_id(), Some("shardId-000000000000"));
            assert_eq!(entry.error_code(), None);
        }
    }

    assert_eq!(server.accepted(), sent, "stored data, in order");
    assert_eq!(server.accepted_len(), sent.len());
    let stats = server.stats();
    assert_eq!(stats.put_calls, 3);
    assert_eq!(stats.records_stored, 1_200);
    assert_eq!(losses_and_duplicates(&sent, &server.accepted()), (0, 0));
}

#[tokio::test]
async fn fault_server_sequence_numbers_increase_across_calls() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);
    let mut sequence_numbers = Vec::new();
    for chunk in payloads(30).chunks(10) {
        let output = expect_output(put(&client, chunk).await);
        sequence_numbers.extend(
            output
                .records()
                .iter()
                .map(|entry| entry.sequence_number().unwrap_or_default().to_string()),
        );
    }
    for pair in sequence_numbers.windows(2) {
        assert_eq!(pair[0].len(), 56, "sequence number length");
        assert!(pair[0] < pair[1], "sequence numbers out of order: {pair:?}");
    }
}

#[tokio::test]
async fn fault_server_describes_one_active_shard() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);

    let summary = client
        .describe_stream_summary()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStreamSummary: {}", DisplayErrorContext(&e)));
    let summary = summary
        .stream_description_summary()
        .expect("a summary in the answer");
    assert_eq!(summary.stream_name(), STREAM);
    assert_eq!(summary.stream_status(), &StreamStatus::Active);
    assert_eq!(summary.open_shard_count(), 1);

    let shards = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListShards: {}", DisplayErrorContext(&e)));
    let [shard] = shards.shards() else {
        panic!("expected one shard, got {:?}", shards.shards());
    };
    assert_eq!(shard.shard_id(), "shardId-000000000000");
    let range = shard.hash_key_range().expect("a hash key range");
    assert_eq!(range.starting_hash_key(), "0");
    assert_eq!(range.ending_hash_key(), u128::MAX.to_string());
}

#[tokio::test]
async fn fault_server_rejects_empty_and_oversized_calls() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);

    for count in [0, 501] {
        let error = expect_error(put(&client, &payloads(count)).await);
        assert_eq!(error.code(), Some("ValidationException"), "{count} records");
        assert_eq!(
            error.raw_response().map(|raw| raw.status().as_u16()),
            Some(400),
            "status for {count} records"
        );
    }
    assert_eq!(server.accepted_len(), 0);
    assert_eq!(server.stats().invalid_calls, 2);
    assert_eq!(server.stats().put_calls, 0);
}

#[tokio::test]
async fn fault_server_throttles_every_record() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 100.0,
        ..Faults::default()
    });
    let client = client(&server);

    let output = expect_output(put(&client, &payloads(100)).await);
    assert_eq!(output.failed_record_count(), Some(100));
    assert_eq!(output.records().len(), 100);
    for entry in output.records() {
        assert_eq!(
            entry.error_code(),
            Some("ProvisionedThroughputExceededException")
        );
        assert!(
            entry
                .error_message()
                .is_some_and(|message| message.contains("Rate exceeded")),
            "message: {:?}",
            entry.error_message()
        );
        assert_eq!(entry.sequence_number(), None);
    }
    assert_eq!(server.accepted_len(), 0);
    assert_eq!(server.stats().record_throttled, 100);
}

#[tokio::test]
async fn fault_server_fails_some_records_and_stores_the_others() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 25.0,
        record_internal_percent: 25.0,
        ..Faults::default()
    });
    let client = client(&server);
    let sent = payloads(500);

    let output = expect_output(put(&client, &sent).await);
    let mut expected_stored = Vec::new();
    let (mut throttled, mut internal) = (0, 0);
    for (entry, data) in output.records().iter().zip(&sent) {
        match entry.error_code() {
            None => expected_stored.push(data.clone()),
            Some("ProvisionedThroughputExceededException") => throttled += 1,
            Some("InternalFailure") => internal += 1,
            Some(other) => panic!("unexpected error code {other}"),
        }
    }
    let failed = throttled + internal;
    assert_eq!(output.failed_record_count(), Some(failed as i32));
    assert!(
        (150..=350).contains(&failed),
        "{failed} of 500 records failed at 50 %"
    );
    assert!(throttled > 50 && internal > 50, "{throttled} / {internal}");
    assert_eq!(
        server.accepted(),
        expected_stored,
        "stored exactly the records answered as stored, in order"
    );
    let stats = server.stats();
    assert_eq!(stats.record_throttled, throttled as u64);
    assert_eq!(stats.record_internal, internal as u64);
    assert_eq!(stats.records_stored, expected_stored.len() as u64);

    let report = delivery_report(&sent, &server.accepted());
    assert_eq!(
        report,
        DeliveryReport {
            lost: failed,
            duplicates: 0,
            unexpected: 0
        }
    );
}

#[tokio::test]
async fn fault_server_throttles_whole_calls() {
    let server = FaultKinesis::start(Faults {
        call_throttle_percent: 100.0,
        ..Faults::default()
    });
    let client = client(&server);

    let error = expect_error(put(&client, &payloads(10)).await);
    assert!(
        matches!(&error, SdkError::ServiceError(_)),
        "{}",
        DisplayErrorContext(&error)
    );
    assert!(error
        .as_service_error()
        .is_some_and(PutRecordsError::is_provisioned_throughput_exceeded_exception));
    assert_eq!(
        error.raw_response().map(|raw| raw.status().as_u16()),
        Some(400)
    );
    assert!(
        error
            .raw_response()
            .is_some_and(|raw| raw.headers().get("x-amzn-requestid").is_some()),
        "no request id"
    );
    assert_eq!(server.accepted_len(), 0);
    assert_eq!(server.stats().calls_throttled, 1);
}

#[tokio::test]
async fn fault_server_answers_5xx_alternately() {
    let server = FaultKinesis::start(Faults {
        call_5xx_percent: 100.0,
        ..Faults::default()
    });
    let client = client(&server);

    let mut seen = Vec::new();
    for _ in 0..4 {
        let error = expect_error(put(&client, &payloads(10)).await);
        assert!(
            matches!(&error, SdkError::ServiceError(_)),
            "{}",
            DisplayErrorContext(&error)
        );
        seen.push((
            error.raw_response().map(|raw| raw.status().as_u16()),
            error.code().map(str::to_string),
        ));
    }
    let internal = (Some(500), Some("InternalFailure".to_string()));
    let unavailable = (Some(503), Some("ServiceUnavailable".to_string()));
    assert_eq!(
        seen,
        vec![internal.clone(), unavailable.clone(), internal, unavailable]
    );
    assert_eq!(server.accepted_len(), 0);
    assert_eq!(server.stats().calls_5xx, 4);
}

#[tokio::test]
async fn fault_server_reset_before_stores_nothing_and_gives_no_answer() {
    let server = FaultKinesis::start(Faults {
        reset_before_percent: 100.0,
        ..Faults::default()
    });
    let client = client(&server);

    let error = expect_error(put(&client, &payloads(10)).await);
    assert_dispatch_failure(&error, "reset before storing");
    assert_eq!(server.accepted_len(), 0);
    assert_eq!(server.stats().resets_before, 1);

    // The next connection is served normally.
    server.set_faults(Faults::default());
    expect_output(put(&client, &payloads(10)).await);
    assert_eq!(server.accepted_len(), 10);
}

#[tokio::test]
async fn fault_server_reset_after_stores_but_gives_no_answer() {
    let server = FaultKinesis::start(Faults {
        reset_after_percent: 100.0,
        ..Faults::default()
    });
    let client = client(&server);
    let sent = payloads(10);

    let error = expect_error(put(&client, &sent).await);
    assert_dispatch_failure(&error, "reset after storing");
    assert_eq!(server.accepted(), sent);
    assert_eq!(server.stats().resets_after, 1);

    // A client that sends the call again stores a second copy of each record.
    server.set_faults(Faults::default());
    expect_output(put(&client, &sent).await);
    assert_eq!(
        delivery_report(&sent, &server.accepted()),
        DeliveryReport {
            lost: 0,
            duplicates: 10,
            unexpected: 0
        }
    );
    assert_eq!(losses_and_duplicates(&sent, &server.accepted()), (0, 10));
}

#[tokio::test]
async fn fault_server_stall_times_the_client_out_after_storing() {
    let server = FaultKinesis::start(Faults {
        stall_percent: 100.0,
        stall: Duration::from_secs(30),
        ..Faults::default()
    });
    let client = client(&server);
    let sent = payloads(10);

    let error = expect_error(put(&client, &sent).await);
    assert!(
        matches!(&error, SdkError::TimeoutError(_)),
        "expected a timeout, got {}",
        DisplayErrorContext(&error)
    );
    assert_eq!(server.accepted(), sent);
    assert_eq!(server.stats().stalls, 1);
}

#[tokio::test]
async fn fault_server_slow_answer_arrives() {
    let server = FaultKinesis::start(Faults {
        slow_percent: 100.0,
        slow: Duration::from_millis(50),
        ..Faults::default()
    });
    let client = client(&server);

    let output = expect_output(put(&client, &payloads(10)).await);
    assert_eq!(output.failed_record_count(), Some(0));
    assert_eq!(server.accepted_len(), 10);
    assert_eq!(server.stats().slow, 1);
}

#[tokio::test]
async fn fault_server_outage_refuses_connections_until_it_ends() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);
    let endpoint = server.endpoint();
    expect_output(put(&client, &payloads(5)).await);

    server.set_down(true);
    // The client may hold a pooled connection that the outage closed; the first call can fail
    // on it before a new connection is refused.
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let error = expect_error(put(&client, &payloads(5)).await);
        assert_dispatch_failure(&error, "during an outage");
        if caused_by(&error, ErrorKind::ConnectionRefused) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection refused during the outage: {}",
            DisplayErrorContext(&error)
        );
    }
    assert_eq!(server.accepted_len(), 5, "nothing stored during the outage");

    server.set_down(false);
    assert_eq!(
        server.endpoint(),
        endpoint,
        "same endpoint after the outage"
    );
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        match put(&client, &payloads(5)).await {
            Ok(output) => {
                assert_eq!(output.failed_record_count(), Some(0));
                break;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "still failing after the outage: {}",
                DisplayErrorContext(&error)
            ),
        }
    }
    assert_eq!(server.accepted_len(), 10);
}

#[tokio::test]
async fn fault_server_outage_drops_calls_in_flight() {
    let server = FaultKinesis::start(Faults {
        stall_percent: 100.0,
        stall: Duration::from_secs(30),
        ..Faults::default()
    });
    // Long enough that only the outage can end the call.
    let config = client(&server)
        .config()
        .to_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        )
        .build();
    let client = Client::from_conf(config);
    let call = tokio::spawn(async move { put(&client, &payloads(3)).await });

    let deadline = Instant::now() + SETTLE_DEADLINE;
    while server.stats().stalls == 0 {
        assert!(Instant::now() < deadline, "the call never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.set_down(true);
    let error = expect_error(call.await.expect("the call's task does not panic"));
    assert_dispatch_failure(&error, "a stalled call during an outage");
    assert_eq!(server.accepted_len(), 3, "stored before the stall");
}

#[tokio::test]
async fn fault_server_rate_limit_cuts_a_burst() {
    let server = FaultKinesis::start(Faults {
        records_per_second: Some(100),
        ..Faults::default()
    });
    let client = client(&server);
    let sent = payloads(500);

    let output = expect_output(put(&client, &sent).await);
    let stored = server.accepted_len();
    // A full bucket, plus whatever trickled in while the call was handled.
    assert!(
        (100..=110).contains(&stored),
        "{stored} of a 500-record burst stored at 100 records/s"
    );
    assert_eq!(output.failed_record_count(), Some((500 - stored) as i32));
    // The bucket empties in request order: the first records pass, the rest are throttled.
    for (index, entry) in output.records().iter().enumerate() {
        let expected = (index >= stored).then_some("ProvisionedThroughputExceededException");
        assert_eq!(entry.error_code(), expected, "record {index}");
    }
    assert_eq!(server.accepted(), sent[..stored]);
    assert_eq!(server.stats().rate_limited, (500 - stored) as u64);
}

/// A raw HTTP/1.1 answer: status, headers (lowercased names) and the JSON body.
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// POSTs `body` with `target` over a fresh connection and reads the answer to the end.
async fn raw_call(server: &FaultKinesis, target: &str, body: &str) -> RawAnswer {
    let mut stream = TcpStream::connect(server.addr())
        .await
        .expect("connecting to the fault server");
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-amz-json-1.1\r\n\
         x-amz-target: {target}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        server.addr(),
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the request");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("reading the answer");
    let answer = String::from_utf8(answer).expect("the answer is UTF-8");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .expect("the answer has a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let body = serde_json::from_str(body).expect("the body is JSON");
    RawAnswer {
        status,
        headers,
        body,
    }
}

fn firehose_batch(records: &[Vec<u8>]) -> String {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|data| {
            serde_json::json!({"Data": base64::engine::general_purpose::STANDARD.encode(data)})
        })
        .collect();
    serde_json::json!({"DeliveryStreamName": "fault-selftest-firehose", "Records": records})
        .to_string()
}

#[tokio::test]
async fn fault_server_firehose_throttles_every_record() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 100.0,
        ..Faults::default()
    });
    let sent = payloads(3);

    let answer = raw_call(
        &server,
        "Firehose_20150804.PutRecordBatch",
        &firehose_batch(&sent),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert!(answer.header("x-amzn-requestid").is_some());
    assert_eq!(answer.body["FailedPutCount"], 3);
    assert_eq!(answer.body["Encrypted"], false);
    let responses = answer.body["RequestResponses"]
        .as_array()
        .expect("RequestResponses is a list");
    assert_eq!(responses.len(), 3);
    for response in responses {
        assert_eq!(response["ErrorCode"], "ServiceUnavailableException");
        assert!(response["ErrorMessage"].is_string());
        assert!(response.get("RecordId").is_none());
    }
    assert_eq!(server.accepted_len(), 0);

    server.set_faults(Faults::default());
    let answer = raw_call(
        &server,
        "Firehose_20150804.PutRecordBatch",
        &firehose_batch(&sent),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["FailedPutCount"], 0);
    let responses = answer.body["RequestResponses"]
        .as_array()
        .expect("RequestResponses is a list");
    assert!(responses.iter().all(|r| r["RecordId"].is_string()));
    assert_eq!(server.accepted(), sent);

    // A throttled call is a server fault in the Firehose model, and stores nothing.
    server.set_faults(Faults {
        call_throttle_percent: 100.0,
        ..Faults::default()
    });
    let answer = raw_call(
        &server,
        "Firehose_20150804.PutRecordBatch",
        &firehose_batch(&sent),
    )
    .await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.body["__type"], "ServiceUnavailableException");
    assert_eq!(server.accepted(), sent);
    server.set_faults(Faults::default());

    let answer = raw_call(
        &server,
        "Firehose_20150804.DescribeDeliveryStream",
        r#"{"DeliveryStreamName":"fault-selftest-firehose"}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    let description = &answer.body["DeliveryStreamDescription"];
    assert_eq!(description["DeliveryStreamName"], "fault-selftest-firehose");
    assert_eq!(description["DeliveryStreamStatus"], "ACTIVE");
    assert_eq!(description["HasMoreDestinations"], false);
}

#[tokio::test]
async fn fault_server_answers_bad_requests_with_wire_errors() {
    let server = FaultKinesis::start(Faults::default());

    let answer = raw_call(&server, "Kinesis_20131202.MergeShards", "{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["__type"], "UnknownOperationException");
    assert!(answer.body["message"].is_string());
    assert!(answer.header("x-amzn-requestid").is_some());

    let answer = raw_call(
        &server,
        "Kinesis_20131202.PutRecords",
        r#"{"StreamName":"s","Records":[{"Data":"not base64!","PartitionKey":"k"}]}"#,
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["__type"], "SerializationException");

    let answer = raw_call(
        &server,
        "Kinesis_20131202.PutRecords",
        r#"{"Records":[{"Data":"AA==","PartitionKey":"k"}]}"#,
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["__type"], "ValidationException");

    let answer = raw_call(&server, "Kinesis_20131202.PutRecords", "{not json").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["__type"], "SerializationException");

    // A StreamARN names the stream as well as a StreamName does; ExplicitHashKey is accepted.
    let answer = raw_call(
        &server,
        "Kinesis_20131202.PutRecords",
        r#"{"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:stream/by-arn",
            "Records":[{"Data":"AA==","PartitionKey":"k","ExplicitHashKey":"1"}]}"#,
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["FailedRecordCount"], 0);
    assert_eq!(server.accepted(), vec![vec![0u8]]);
    assert_eq!(server.stats().invalid_calls, 4);
}

#[test]
fn fault_server_counts_losses_and_duplicates() {
    let expected = vec![b"a".to_vec(), b"b".to_vec(), b"b".to_vec(), b"c".to_vec()];
    let accepted = vec![
        b"b".to_vec(),
        b"a".to_vec(),
        b"a".to_vec(),
        b"x".to_vec(),
        b"b".to_vec(),
    ];
    assert_eq!(
        delivery_report(&expected, &accepted),
        DeliveryReport {
            lost: 1,
            duplicates: 1,
            unexpected: 1
        }
    );
    assert_eq!(losses_and_duplicates(&expected, &accepted), (1, 2));
    assert_eq!(losses_and_duplicates(&expected, &expected), (0, 0));
}

#[test]
fn fault_server_serves_sync_callers_and_repeats_its_draws() {
    let faults = Faults {
        record_throttle_percent: 30.0,
        ..Faults::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    let mut runs = Vec::new();
    for _ in 0..2 {
        // Started and dropped outside any runtime.
        let server = FaultKinesis::start_seeded(faults.clone(), 7);
        let client = client(&server);
        runtime.block_on(async {
            expect_output(put(&client, &payloads(200)).await);
        });
        runs.push(server.accepted());
    }
    assert_eq!(runs[0], runs[1], "the same seed fails the same records");
    assert!(!runs[0].is_empty() && runs[0].len() < 200);
}
