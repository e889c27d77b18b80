//! Checks the fault-injecting Kinesis server itself: that the real SDK reads its answers the way
//! it reads the service's, that each fault shows the client what the service would show (in
//! JSON and in CBOR), that it takes exactly the requests signed with a key it knows, over HTTP
//! and HTTPS, and that what the server reports as stored is exactly what it stored. Tests of
//! the agent under faults rely on all of it.

use std::cell::RefCell;
use std::error::Error as _;
use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard, StreamStatus};
use aws_sdk_kinesis::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use base64::Engine as _;
use ciborium::Value;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::fault_kinesis::cbor::{self, map, text_value};
use crate::support::fault_kinesis::sigv4::{self, Signable, SIGNATURE_MISMATCH};
use crate::support::fault_kinesis::{
    delivery_report, losses_and_duplicates, DeliveryReport, FaultKinesis, FaultStats, Faults,
};
use crate::support::wait;

const STREAM: &str = "fault-selftest";
/// Short, so that a stalled call times out quickly; long enough for a loaded debug build.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to poll for something that should happen at once (an outage taking effect).
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

type PutResult = Result<PutRecordsOutput, SdkError<PutRecordsError>>;

/// A client that makes exactly one attempt per call and gives up on it after
/// [`ATTEMPT_TIMEOUT`], so each fault reaches the test as the SDK reports it. It signs with
/// the server's known key pair.
fn client(server: &FaultKinesis) -> Client {
    let known = FaultKinesis::credentials();
    client_signing_with(
        server,
        Credentials::new(
            known.access_key_id,
            known.secret_access_key,
            None,
            None,
            "tests",
        ),
    )
}

fn client_signing_with(server: &FaultKinesis, credentials: Credentials) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
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
    let last_error = &RefCell::new(String::new());
    let client_ref = &client;
    let refused = wait::poll_async(Duration::ZERO, SETTLE_DEADLINE, move || async move {
        let error = expect_error(put(client_ref, &payloads(5)).await);
        assert_dispatch_failure(&error, "during an outage");
        *last_error.borrow_mut() = DisplayErrorContext(&error).to_string();
        caused_by(&error, ErrorKind::ConnectionRefused).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "no connection refused during the outage: {}",
        last_error.borrow()
    );
    assert_eq!(server.accepted_len(), 5, "nothing stored during the outage");

    server.set_down(false);
    assert_eq!(
        server.endpoint(),
        endpoint,
        "same endpoint after the outage"
    );
    let recovered = wait::poll_async(Duration::ZERO, SETTLE_DEADLINE, move || async move {
        match put(client_ref, &payloads(5)).await {
            Ok(output) => Some(output),
            Err(error) => {
                *last_error.borrow_mut() = DisplayErrorContext(&error).to_string();
                None
            }
        }
    })
    .await;
    let output = recovered
        .unwrap_or_else(|| panic!("still failing after the outage: {}", last_error.borrow()));
    assert_eq!(output.failed_record_count(), Some(0));
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

    let server_ref = &server;
    let arrived = wait::poll_async(
        Duration::from_millis(5),
        SETTLE_DEADLINE,
        move || async move { (server_ref.stats().stalls > 0).then_some(()) },
    )
    .await;
    assert!(arrived.is_some(), "the call never arrived");
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

/// A raw HTTP/1.1 answer: status, headers (lowercased names) and the body (a CBOR body read
/// into the same JSON shape).
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

const JSON_1_1: &str = "application/x-amz-json-1.1";
const CBOR_1_1: &str = "application/x-amz-cbor-1.1";

/// How a raw request is signed.
#[derive(Clone, Copy)]
enum Signing<'a> {
    /// With the server's known key pair.
    Known,
    /// With this access key id and secret.
    As(&'a str, &'a str),
    /// Signed over this body, while another is sent.
    OverBody(&'a [u8]),
    /// No `Authorization` header.
    Unsigned,
}

/// A raw request to the fault server: its target, content type and body, signed as `signing`
/// says for the service the target names.
struct RawRequest<'a> {
    target: &'a str,
    content_type: &'a str,
    body: &'a [u8],
    signing: Signing<'a>,
}

impl RawRequest<'_> {
    /// The request's head, for the server at `host`.
    fn head(&self, host: &str) -> String {
        let amz_date = sigv4::amz_date(SystemTime::now());
        let headers = vec![
            ("host".to_owned(), host.to_owned()),
            ("content-type".to_owned(), self.content_type.to_owned()),
            ("x-amz-date".to_owned(), amz_date),
            ("x-amz-target".to_owned(), self.target.to_owned()),
        ];
        let service = if self.target.starts_with("Firehose_") {
            "firehose"
        } else {
            "kinesis"
        };
        let known = FaultKinesis::credentials();
        let (key, secret, signed_body) = match self.signing {
            Signing::Known => (known.access_key_id, known.secret_access_key, self.body),
            Signing::As(key, secret) => (key, secret, self.body),
            Signing::OverBody(body) => (known.access_key_id, known.secret_access_key, body),
            Signing::Unsigned => ("", "", self.body),
        };
        let mut head = String::from("POST / HTTP/1.1\r\n");
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !matches!(self.signing, Signing::Unsigned) {
            let signable = Signable {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: signed_body,
            };
            let authorization = sigv4::authorization_header(
                &signable,
                key,
                secret,
                "us-east-1",
                service,
                &["host", "content-type", "x-amz-date", "x-amz-target"],
            );
            head.push_str(&format!("authorization: {authorization}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        head
    }
}

/// Sends `request` over a fresh connection and reads whatever comes back until the server
/// closes it: nothing at all when it leaves the call unanswered.
async fn raw_exchange(server: &FaultKinesis, request: &RawRequest<'_>) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr())
        .await
        .expect("connecting to the fault server");
    let mut bytes = request.head(&server.addr().to_string()).into_bytes();
    bytes.extend_from_slice(request.body);
    stream.write_all(&bytes).await.expect("sending the request");
    let mut answer = Vec::new();
    // A connection closed without an answer may be reset rather than closed cleanly.
    let _ = stream.read_to_end(&mut answer).await;
    answer
}

/// Sends `request` and parses the answer, JSON or CBOR by its content type.
async fn raw_request(server: &FaultKinesis, request: &RawRequest<'_>) -> RawAnswer {
    let answer = raw_exchange(server, request).await;
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("the answer has a head and a body");
    let head = std::str::from_utf8(&answer[..split]).expect("the head is text");
    let body = &answer[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let content_type = headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.as_str());
    let body = if content_type == Some(CBOR_1_1) {
        ciborium::from_reader(body).expect("the body is CBOR")
    } else {
        serde_json::from_slice(body).expect("the body is JSON")
    };
    RawAnswer {
        status,
        headers,
        body,
    }
}

/// POSTs the JSON `body` with `target`, signed with the known key pair.
async fn raw_call(server: &FaultKinesis, target: &str, body: &str) -> RawAnswer {
    raw_request(
        server,
        &RawRequest {
            target,
            content_type: JSON_1_1,
            body: body.as_bytes(),
            signing: Signing::Known,
        },
    )
    .await
}

/// POSTs the CBOR `body` as `PutRecords`, signed as `signing` says.
async fn cbor_put(server: &FaultKinesis, body: &[u8], signing: Signing<'_>) -> RawAnswer {
    raw_request(
        server,
        &RawRequest {
            target: "Kinesis_20131202.PutRecords",
            content_type: CBOR_1_1,
            body,
            signing,
        },
    )
    .await
}

/// A CBOR `PutRecords` body of definite lengths, as the agent's encoder writes it.
fn cbor_put_records(records: &[Vec<u8>]) -> Vec<u8> {
    let records = records
        .iter()
        .enumerate()
        .map(|(i, data)| {
            map(vec![
                ("Data", Value::Bytes(data.clone())),
                ("PartitionKey", Value::Text(format!("key-{}", i % 11))),
            ])
        })
        .collect();
    cbor::encode(&map(vec![
        ("StreamName", text_value(STREAM)),
        ("Records", Value::Array(records)),
    ]))
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

#[tokio::test]
async fn fault_server_reads_cbor_and_answers_partial_failures_in_cbor() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 25.0,
        record_internal_percent: 25.0,
        ..Faults::default()
    });
    let sent = payloads(200);

    let answer = cbor_put(&server, &cbor_put_records(&sent), Signing::Known).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some(CBOR_1_1));
    assert!(answer.header("x-amzn-requestid").is_some());
    let entries = answer.body["Records"]
        .as_array()
        .expect("Records is a list");
    assert_eq!(entries.len(), 200, "one answer per record, in order");
    let mut expected_stored = Vec::new();
    let mut failed = 0;
    for (entry, data) in entries.iter().zip(&sent) {
        match entry["ErrorCode"].as_str() {
            None => {
                assert_eq!(entry["ShardId"], "shardId-000000000000");
                assert_eq!(entry["SequenceNumber"].as_str().map(str::len), Some(56));
                expected_stored.push(data.clone());
            }
            Some("ProvisionedThroughputExceededException" | "InternalFailure") => {
                assert!(entry["ErrorMessage"].is_string());
                assert!(entry.get("SequenceNumber").is_none());
                failed += 1;
            }
            Some(other) => panic!("unexpected error code {other}"),
        }
    }
    assert_eq!(answer.body["FailedRecordCount"], failed);
    assert!(
        (50..=150).contains(&failed),
        "{failed} of 200 failed at 50 %"
    );
    assert_eq!(server.accepted(), expected_stored);
    let stats = server.stats();
    assert_eq!((stats.cbor_put_calls, stats.json_put_calls), (1, 0));
    assert_eq!(stats.put_calls, 1);
    assert_eq!(stats.signatures_verified, 1);
}

#[tokio::test]
async fn fault_server_reads_cbor_of_indefinite_lengths() {
    let server = FaultKinesis::start(Faults::default());
    // {_ "StreamName": "s", "Records": [_ {_ "Data": (_ h'6162', h'63'),
    //   "PartitionKey": (_ "k", "ey"), "ExplicitHashKey": "7"}]}
    let mut body = vec![0xbf];
    body.extend(b"\x6aStreamName\x61s");
    body.extend(b"\x67Records\x9f\xbf");
    body.extend(b"\x64Data\x5f\x42ab\x41c\xff");
    body.extend(b"\x6cPartitionKey\x7f\x61k\x62ey\xff");
    body.extend(b"\x6fExplicitHashKey\x617");
    body.extend(b"\xff\xff\xff");

    let answer = cbor_put(&server, &body, Signing::Known).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["FailedRecordCount"], 0);
    assert_eq!(server.accepted(), vec![b"abc".to_vec()]);

    // Data as a text string is not a blob: the whole call is refused, in CBOR.
    let text_data = cbor::encode(&map(vec![
        ("StreamName", text_value("s")),
        (
            "Records",
            Value::Array(vec![map(vec![
                ("Data", text_value("abc")),
                ("PartitionKey", text_value("k")),
            ])]),
        ),
    ]));
    let answer = cbor_put(&server, &text_data, Signing::Known).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("content-type"), Some(CBOR_1_1));
    assert_eq!(answer.body["__type"], "SerializationException");
    assert_eq!(
        answer.header("x-amzn-errortype"),
        Some("SerializationException")
    );
    let answer = cbor_put(&server, b"\xa1\x61", Signing::Known).await;
    assert_eq!(answer.body["__type"], "SerializationException");
    let answer = cbor_put(&server, &cbor_put_records(&[]), Signing::Known).await;
    assert_eq!(answer.body["__type"], "ValidationException");
    assert_eq!(server.accepted_len(), 1);
    assert_eq!(server.stats().invalid_calls, 3);
}

/// The status, error code (body and header) of a call answered with an error.
fn error_of(answer: &RawAnswer) -> (u16, String, Option<String>) {
    (
        answer.status,
        answer.body["__type"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        answer.header("x-amzn-errortype").map(str::to_owned),
    )
}

#[tokio::test]
async fn fault_server_injects_every_call_fault_alike_in_json_and_cbor() {
    let sent = payloads(5);
    let json = serde_json::json!({
        "StreamName": STREAM,
        "Records": sent.iter().map(|data| serde_json::json!({
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
            "PartitionKey": "k",
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let cbor = cbor_put_records(&sent);
    let request = |wire: &'static str| RawRequest {
        target: "Kinesis_20131202.PutRecords",
        content_type: wire,
        body: if wire == CBOR_1_1 {
            &cbor
        } else {
            json.as_bytes()
        },
        signing: Signing::Known,
    };
    let mut stats_by_wire = Vec::new();
    for wire in [JSON_1_1, CBOR_1_1] {
        let server = FaultKinesis::start(Faults {
            call_throttle_percent: 100.0,
            ..Faults::default()
        });
        let answer = raw_request(&server, &request(wire)).await;
        assert_eq!(answer.header("content-type"), Some(wire));
        let throttled = "ProvisionedThroughputExceededException".to_owned();
        assert_eq!(
            error_of(&answer),
            (400, throttled.clone(), Some(throttled)),
            "{wire}"
        );

        server.set_faults(Faults {
            call_5xx_percent: 100.0,
            ..Faults::default()
        });
        let first = raw_request(&server, &request(wire)).await;
        let second = raw_request(&server, &request(wire)).await;
        assert_eq!(
            [error_of(&first), error_of(&second)],
            [
                (
                    500,
                    "InternalFailure".to_owned(),
                    Some("InternalFailure".to_owned())
                ),
                (
                    503,
                    "ServiceUnavailable".to_owned(),
                    Some("ServiceUnavailable".to_owned())
                )
            ],
            "{wire}"
        );
        assert_eq!(server.accepted_len(), 0);

        for (faults, stored) in [
            (
                Faults {
                    reset_before_percent: 100.0,
                    ..Faults::default()
                },
                0,
            ),
            (
                Faults {
                    reset_after_percent: 100.0,
                    ..Faults::default()
                },
                5,
            ),
        ] {
            server.set_faults(faults);
            let before = server.accepted_len();
            let answer = raw_exchange(&server, &request(wire)).await;
            assert!(answer.is_empty(), "{wire}: an answer to a reset call");
            assert_eq!(server.accepted_len() - before, stored, "{wire}");
        }

        server.set_faults(Faults {
            slow_percent: 100.0,
            slow: Duration::from_millis(300),
            ..Faults::default()
        });
        let started = Instant::now();
        let answer = raw_request(&server, &request(wire)).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "{wire}");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["FailedRecordCount"], 0);

        server.set_faults(Faults {
            stall_percent: 100.0,
            stall: Duration::from_secs(30),
            ..Faults::default()
        });
        let stalled = tokio::time::timeout(
            Duration::from_millis(500),
            raw_exchange(&server, &request(wire)),
        )
        .await;
        assert!(stalled.is_err(), "{wire}: a stalled call was answered");

        server.set_faults(Faults::default());
        server.set_down(true);
        assert!(
            TcpStream::connect(server.addr()).await.is_err(),
            "{wire}: connected during an outage"
        );
        server.set_down(false);
        let answer = raw_request(&server, &request(wire)).await;
        assert_eq!(answer.status, 200, "{wire}: after the outage");
        assert_eq!(server.accepted_len(), 20, "{wire}");
        let stats = server.stats();
        assert_eq!(stats.put_calls, 8, "{wire}");
        stats_by_wire.push(FaultStats {
            json_put_calls: 0,
            cbor_put_calls: 0,
            ..stats
        });
    }
    assert_eq!(
        stats_by_wire[0], stats_by_wire[1],
        "the same faults, counted the same, in JSON and CBOR"
    );
}

#[test]
fn fault_server_signer_matches_the_documented_example() {
    // The worked example of the SigV4 documentation (IAM ListUsers, 2015-08-30).
    let headers = vec![
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        ),
        ("host".to_owned(), "iam.amazonaws.com".to_owned()),
        ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
    ];
    let request = Signable {
        method: "GET",
        path: "/",
        query: "Action=ListUsers&Version=2010-05-08",
        headers: &headers,
        body: b"",
    };
    let authorization = sigv4::authorization_header(
        &request,
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "us-east-1",
        "iam",
        &["content-type", "host", "x-amz-date"],
    );
    assert_eq!(
        authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, \
         Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}

#[tokio::test]
async fn fault_server_takes_good_signatures_and_refuses_the_others() {
    let server = FaultKinesis::start(Faults::default());
    let sent = payloads(3);
    let body = firehose_batch(&sent).replace("DeliveryStreamName", "StreamName");
    let body = body.replace("\"Data\"", "\"PartitionKey\":\"k\",\"Data\"");
    let put = |signing| RawRequest {
        target: "Kinesis_20131202.PutRecords",
        content_type: JSON_1_1,
        body: body.as_bytes(),
        signing,
    };

    let answer = raw_request(&server, &put(Signing::Known)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(server.accepted(), sent);

    let tampered = body.replace("\"k\"", "\"x\"");
    let refusals = [
        (
            Signing::OverBody(tampered.as_bytes()),
            "InvalidSignatureException",
        ),
        (
            Signing::As(FaultKinesis::credentials().access_key_id, "wrong secret"),
            "InvalidSignatureException",
        ),
        (
            Signing::As("AKIAUNKNOWNKEY000001", "secret"),
            "UnrecognizedClientException",
        ),
        (Signing::Unsigned, "MissingAuthenticationTokenException"),
    ];
    for (signing, code) in refusals {
        let answer = raw_request(&server, &put(signing)).await;
        assert_eq!(
            error_of(&answer),
            (400, code.to_owned(), Some(code.to_owned()))
        );
        assert!(answer.body["message"].is_string());
        if code == "InvalidSignatureException" {
            assert!(
                answer.body["message"]
                    .as_str()
                    .is_some_and(|message| message.starts_with(SIGNATURE_MISMATCH)),
                "{}",
                answer.body
            );
        }
    }
    // Refused in the request's own format.
    let cbor = cbor_put_records(&sent);
    let answer = cbor_put(&server, &cbor, Signing::OverBody(b"{}")).await;
    assert_eq!(answer.header("content-type"), Some(CBOR_1_1));
    assert_eq!(answer.body["__type"], "InvalidSignatureException");

    // A key added later is known from then on.
    server.add_credentials("AKIAADDEDKEY00000001", "added-secret");
    let answer = raw_request(
        &server,
        &put(Signing::As("AKIAADDEDKEY00000001", "added-secret")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    assert_eq!(server.accepted_len(), 6, "refused calls store nothing");
    let stats = server.stats();
    assert_eq!(stats.signatures_verified, 2);
    assert_eq!(stats.signatures_refused, 5);
    assert_eq!(stats.put_calls, 2);
    assert_eq!(stats.invalid_calls, 0);
}

#[tokio::test]
async fn fault_server_verifies_the_sdks_signatures() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);
    client
        .describe_stream_summary()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStreamSummary: {}", DisplayErrorContext(&e)));
    expect_output(put(&client, &payloads(10)).await);
    let stats = server.stats();
    assert_eq!(
        (stats.signatures_verified, stats.signatures_refused),
        (2, 0)
    );
    assert_eq!(stats.json_put_calls, 1);

    let known = FaultKinesis::credentials();
    let wrong_secret = client_signing_with(
        &server,
        Credentials::new(known.access_key_id, "not-the-secret", None, None, "tests"),
    );
    let error = expect_error(put(&wrong_secret, &payloads(1)).await);
    assert_eq!(error.code(), Some("InvalidSignatureException"));
    let unknown = client_signing_with(
        &server,
        Credentials::new("AKIANOBODY0000000001", "secret", None, None, "tests"),
    );
    let error = expect_error(put(&unknown, &payloads(1)).await);
    assert_eq!(error.code(), Some("UnrecognizedClientException"));
    assert_eq!(server.stats().signatures_refused, 2);
    assert_eq!(server.accepted_len(), 10);
}

#[tokio::test]
async fn fault_server_takes_the_keys_its_sts_issued_with_their_token() {
    let server = FaultKinesis::start(Faults::default());
    let known = FaultKinesis::credentials();
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                known.access_key_id,
                known.secret_access_key,
                None,
                None,
                "tests",
            ))
            .endpoint_url(server.endpoint())
            .build(),
    );
    let assumed = sts
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/fault")
        .role_session_name("selftest")
        .send()
        .await
        .unwrap_or_else(|e| panic!("AssumeRole: {}", DisplayErrorContext(&e)));
    let issued = assumed.credentials().expect("credentials in the answer");
    let with_token = client_signing_with(
        &server,
        Credentials::new(
            issued.access_key_id(),
            issued.secret_access_key(),
            Some(issued.session_token().to_owned()),
            None,
            "sts",
        ),
    );
    expect_output(put(&with_token, &payloads(2)).await);
    let without_token = client_signing_with(
        &server,
        Credentials::new(
            issued.access_key_id(),
            issued.secret_access_key(),
            None,
            None,
            "sts",
        ),
    );
    let error = expect_error(put(&without_token, &payloads(2)).await);
    assert_eq!(error.code(), Some("UnrecognizedClientException"));
    assert_eq!(server.accepted_len(), 2);
    assert_eq!(server.sts_log().signed.len(), 1, "{:?}", server.sts_log());
}

/// An HTTPS client for `server` that trusts `ca_pem` only, or the system's roots when `None`.
fn https_client(server: &FaultKinesis, ca_pem: Option<Vec<u8>>) -> Client {
    let trust = match ca_pem {
        Some(pem) => TrustStore::empty().with_pem_certificate(pem),
        None => TrustStore::default(),
    };
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .expect("a TLS context from a valid PEM certificate"),
        )
        .build_https();
    let config = client(server)
        .config()
        .to_builder()
        .http_client(http_client)
        .build();
    Client::from_conf(config)
}

#[tokio::test]
async fn fault_server_serves_https_to_clients_that_trust_its_ca() {
    let server = FaultKinesis::start_tls(Faults {
        record_throttle_percent: 50.0,
        ..Faults::default()
    });
    assert_eq!(
        server.endpoint(),
        format!("https://localhost:{}", server.addr().port())
    );
    let ca_pem = std::fs::read(server.ca_pem_path()).expect("the CA's PEM file");
    assert!(ca_pem.starts_with(b"-----BEGIN CERTIFICATE-----"));

    let trusting = https_client(&server, Some(ca_pem));
    let output = expect_output(put(&trusting, &payloads(100)).await);
    let failed = output.failed_record_count().unwrap_or_default() as usize;
    assert!((1..100).contains(&failed), "{failed} of 100 failed at 50 %");
    assert_eq!(server.accepted_len(), 100 - failed);
    trusting
        .describe_stream_summary()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStreamSummary: {}", DisplayErrorContext(&e)));

    let untrusting = https_client(&server, None);
    let error = expect_error(put(&untrusting, &payloads(1)).await);
    assert_dispatch_failure(&error, "a client without the CA");
    let plain = Client::from_conf(
        client(&server)
            .config()
            .to_builder()
            .endpoint_url(format!("http://{}", server.addr()))
            .build(),
    );
    assert!(
        put(&plain, &payloads(1)).await.is_err(),
        "plain HTTP served"
    );
    let stats = server.stats();
    assert!(stats.tls_handshakes_failed >= 2, "{stats:?}");
    assert_eq!(stats.put_calls, 1, "{stats:?}");
    assert_eq!(stats.signatures_verified, 2);
}

/// The bench endpoint's own CBOR reader (it cannot use ciborium: it must stay cheap), checked
/// here, where tests run, against the bodies the fault server reads.
#[path = "../benches/ship/put_request.rs"]
#[allow(dead_code)]
mod bench_put_request;

#[test]
fn bench_endpoint_reads_the_cbor_the_fault_server_reads() {
    use bench_put_request::{cbor::entries, Data};

    let sent = payloads(20);
    let mut body = cbor_put_records(&sent);
    // An unknown member of every kind before Records is passed over: a map holding a tag, a
    // float, an array and an indefinite text string.
    body[0] += 1;
    body.splice(
        1..1,
        b"\x65Extra\xa2\x61a\xc1\x1a\x00\x00\x00\x01\x61b\x82\xfb\x3f\xf0\0\0\0\0\0\0\x7f\x61x\xff"
            .iter()
            .copied(),
    );
    let read = entries(&body).expect("a valid body");
    assert_eq!(read.len(), 20);
    for (i, (entry, data)) in read.iter().zip(&sent).enumerate() {
        assert!(matches!(&entry.data, Data::Bytes(bytes) if bytes.as_ref() == data.as_slice()));
        assert_eq!(entry.data.decoded_len(), data.len() as u64);
        assert_eq!(
            entry
                .partition_key
                .as_ref()
                .map(|key| key.text().into_owned()),
            Some(format!("key-{}", i % 11))
        );
    }

    // The indefinite-length body of `fault_server_reads_cbor_of_indefinite_lengths`.
    let mut body = vec![0xbf];
    body.extend(b"\x6aStreamName\x61s");
    body.extend(b"\x67Records\x9f\xbf");
    body.extend(b"\x64Data\x5f\x42ab\x41c\xff");
    body.extend(b"\x6cPartitionKey\x7f\x61k\x62ey\xff");
    body.extend(b"\x6fExplicitHashKey\x617");
    body.extend(b"\xff\xff\xff");
    let [entry] = &entries(&body).expect("a valid body")[..] else {
        panic!("one record expected");
    };
    assert!(matches!(&entry.data, Data::Bytes(bytes) if bytes.as_ref() == b"abc"));
    assert_eq!(
        entry
            .partition_key
            .as_ref()
            .map(|key| key.text())
            .as_deref(),
        Some("key")
    );
    assert_eq!(
        entry
            .explicit_hash_key
            .as_ref()
            .map(|key| key.text())
            .as_deref(),
        Some("7")
    );

    for bad in [
        &b""[..],
        b"\xa1\x67Records\x81\xa1\x64Data\x63abc",
        b"\xa1\x67Records\x81\xa1\x64Data\x45ab",
        b"\xa1\x66Stream\x61s",
        b"\x9f\xff",
    ] {
        assert!(entries(bad).is_err(), "{bad:?} was read");
    }
}

/// The shard the service puts a partition key in: the MD5 of the key, big-endian.
fn md5_hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Which of `shards` even shards (a power of two) holds `hash_key`.
fn even_shard(hash_key: u128, shards: u32) -> usize {
    (hash_key >> (128 - shards.trailing_zeros())) as usize
}

fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// `count` records with partition keys of their own: (key, data).
fn keyed(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| (format!("partition-{i}"), payload(i)))
        .collect()
}

async fn put_keyed(client: &Client, records: &[(String, Vec<u8>)]) -> PutRecordsOutput {
    let entries = records
        .iter()
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data.clone()))
                .build()
                .expect("an entry with data and a partition key is complete")
        })
        .collect::<Vec<_>>();
    expect_output(
        client
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await,
    )
}

async fn list_shards(client: &Client) -> Vec<Shard> {
    client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListShards: {}", DisplayErrorContext(&e)))
        .shards()
        .to_vec()
}

async fn open_shard_count(client: &Client) -> i32 {
    client
        .describe_stream_summary()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStreamSummary: {}", DisplayErrorContext(&e)))
        .stream_description_summary()
        .expect("a summary in the answer")
        .open_shard_count()
}

/// A listed shard's hash key range, as numbers.
fn range_of(shard: &Shard) -> (u128, u128) {
    let range = shard.hash_key_range().expect("a hash key range");
    let number = |text: &str| {
        text.parse::<u128>()
            .unwrap_or_else(|_| panic!("{}: hash key {text:?}", shard.shard_id()))
    };
    (
        number(range.starting_hash_key()),
        number(range.ending_hash_key()),
    )
}

fn ending_sequence_number(shard: &Shard) -> Option<&str> {
    shard
        .sequence_number_range()
        .and_then(|range| range.ending_sequence_number())
}

fn starting_sequence_number(shard: &Shard) -> &str {
    shard
        .sequence_number_range()
        .map(|range| range.starting_sequence_number())
        .unwrap_or_else(|| panic!("{}: no sequence number range", shard.shard_id()))
}

#[tokio::test]
async fn fault_server_lists_shards_that_cover_the_hash_key_space() {
    for count in [0_u32, 1, 3, 4, 7] {
        let server = FaultKinesis::start(Faults {
            shards: count,
            ..Faults::default()
        });
        let client = client(&server);
        let expected = count.max(1) as usize;

        let shards = list_shards(&client).await;
        assert_eq!(shards.len(), expected, "{count} shards");
        let mut next_start = 0_u128;
        for (index, shard) in shards.iter().enumerate() {
            assert_eq!(shard.shard_id(), shard_id(index), "{count} shards");
            assert_eq!(ending_sequence_number(shard), None, "open: {shard:?}");
            assert_eq!(starting_sequence_number(shard).len(), 56);
            assert_eq!(shard.parent_shard_id(), None);
            let (start, end) = range_of(shard);
            assert_eq!(
                start, next_start,
                "{count} shards: a gap or overlap before {index}"
            );
            assert!(start <= end, "{count} shards: {shard:?}");
            // Even: every shard but the last is 2^128 / count wide.
            if index + 1 < expected {
                let width = end - start + 1;
                let count = u128::from(count);
                // 2^128 / count, written so that 2^128 need not fit.
                let even = u128::MAX / count + u128::from(u128::MAX % count == count - 1);
                assert_eq!(width, even, "{count} shards: width of {index}");
                next_start = end + 1;
            } else {
                assert_eq!(end, u128::MAX, "{count} shards: the last ends the space");
            }
        }
        let ids: Vec<String> = shards.iter().map(|s| s.shard_id().to_owned()).collect();
        assert_eq!(server.shard_ids(), ids);
        assert_eq!(open_shard_count(&client).await, expected as i32);
    }

    // Four shards: a quarter of the space each.
    let server = FaultKinesis::start(Faults {
        shards: 4,
        ..Faults::default()
    });
    let ranges: Vec<(u128, u128)> = list_shards(&client(&server))
        .await
        .iter()
        .map(range_of)
        .collect();
    let quarter = 1_u128 << 126;
    assert_eq!(
        ranges,
        (0..4)
            .map(|i| (i * quarter, i * quarter + (quarter - 1)))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fault_server_routes_records_by_the_md5_of_their_partition_keys() {
    let server = FaultKinesis::start(Faults {
        shards: 4,
        ..Faults::default()
    });
    let client = client(&server);
    let sent = keyed(200);

    let output = put_keyed(&client, &sent).await;
    assert_eq!(output.failed_record_count(), Some(0));
    let mut per_shard = [0_u64; 4];
    for (entry, (key, _)) in output.records().iter().zip(&sent) {
        let shard = even_shard(md5_hash_key(key), 4);
        assert_eq!(
            entry.shard_id(),
            Some(shard_id(shard).as_str()),
            "key {key}"
        );
        per_shard[shard] += 1;
    }
    assert!(
        per_shard.iter().all(|&count| count > 0),
        "every shard gets some of 200 keys: {per_shard:?}"
    );

    let stored = server.stored();
    assert_eq!(stored.len(), sent.len());
    for (record, (key, data)) in stored.iter().zip(&sent) {
        assert_eq!(&record.partition_key, key);
        assert_eq!(&record.data, data);
        assert_eq!(record.shard_id, shard_id(even_shard(md5_hash_key(key), 4)));
    }
    assert!(stored.windows(2).all(|pair| pair[0].at <= pair[1].at));
    let stats = server.shard_stats();
    assert_eq!(
        stats.iter().map(|shard| shard.stored).collect::<Vec<_>>(),
        per_shard
    );
    for shard in &stats {
        assert_eq!(shard.throttled, 0, "{}", shard.id);
        assert!(shard.first_stored.is_some() && shard.first_stored <= shard.last_stored);
    }
}

#[tokio::test]
async fn fault_server_routes_by_explicit_hash_key_in_json_and_cbor() {
    let server = FaultKinesis::start(Faults {
        shards: 4,
        ..Faults::default()
    });
    let quarter = 1_u128 << 126;
    // Each shard's edges, under any partition key.
    let explicit = [
        (0, 0),
        (quarter - 1, 0),
        (quarter, 1),
        (2 * quarter + 5, 2),
        (3 * quarter, 3),
        (u128::MAX, 3),
    ];

    let client = client(&server);
    let entries = explicit
        .iter()
        .map(|(hash_key, _)| {
            PutRecordsRequestEntry::builder()
                .partition_key("the same key for every record")
                .explicit_hash_key(hash_key.to_string())
                .data(Blob::new(hash_key.to_string()))
                .build()
                .expect("an entry with data and a partition key is complete")
        })
        .collect::<Vec<_>>();
    let output = expect_output(
        client
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await,
    );
    let answered: Vec<Option<&str>> = output.records().iter().map(|r| r.shard_id()).collect();
    let expected: Vec<String> = explicit.iter().map(|&(_, shard)| shard_id(shard)).collect();
    assert_eq!(
        answered,
        expected
            .iter()
            .map(|id| Some(id.as_str()))
            .collect::<Vec<_>>()
    );

    // CBOR: partition keys, and an explicit hash key that overrides one.
    let keys = ["alpha", "beta", "gamma", "delta"];
    let mut records: Vec<Value> = keys
        .iter()
        .map(|key| {
            map(vec![
                ("Data", Value::Bytes(key.as_bytes().to_vec())),
                ("PartitionKey", text_value(key)),
            ])
        })
        .collect();
    records.push(map(vec![
        ("Data", Value::Bytes(b"explicit".to_vec())),
        ("PartitionKey", text_value("alpha")),
        ("ExplicitHashKey", text_value(&(3 * quarter).to_string())),
    ]));
    let body = cbor::encode(&map(vec![
        ("StreamName", text_value(STREAM)),
        ("Records", Value::Array(records)),
    ]));
    let answer = cbor_put(&server, &body, Signing::Known).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answered: Vec<&str> = answer.body["Records"]
        .as_array()
        .expect("Records is a list")
        .iter()
        .map(|entry| entry["ShardId"].as_str().expect("a stored record's shard"))
        .collect();
    let mut expected: Vec<String> = keys
        .iter()
        .map(|key| shard_id(even_shard(md5_hash_key(key), 4)))
        .collect();
    expected.push(shard_id(3));
    assert_eq!(answered, expected);
    let stored = server.stored();
    assert_eq!(
        stored.last().map(|r| r.partition_key.as_str()),
        Some("alpha")
    );
    assert_eq!(stored.last().map(|r| r.shard_id.clone()), Some(shard_id(3)));

    // Refused as the service refuses them, and nothing of the call stored.
    let before = server.accepted_len();
    for (hash_key, code) in [
        ("12a", "ValidationException"),
        ("-1", "ValidationException"),
        ("007", "ValidationException"),
        (
            "340282366920938463463374607431768211456",
            "InvalidArgumentException",
        ),
    ] {
        let body = serde_json::json!({
            "StreamName": STREAM,
            "Records": [
                {"Data": "YQ==", "PartitionKey": "k"},
                {"Data": "Yg==", "PartitionKey": "k", "ExplicitHashKey": hash_key},
            ],
        });
        let answer = raw_call(&server, "Kinesis_20131202.PutRecords", &body.to_string()).await;
        assert_eq!(answer.status, 400, "{hash_key}");
        assert_eq!(answer.body["__type"], code, "{hash_key}: {}", answer.body);
    }
    assert_eq!(server.accepted_len(), before);
}

#[tokio::test]
async fn fault_server_hot_shard_throttles_only_its_records_beyond_its_rate() {
    // 5 records/s and one call: the call's records meet the bucket at one instant, so exactly
    // the full bucket passes, however slow the machine.
    let server = FaultKinesis::start(Faults {
        shards: 4,
        hot_shard: Some((1, 5)),
        ..Faults::default()
    });
    let client = client(&server);
    let sent = keyed(200);

    let output = put_keyed(&client, &sent).await;
    let hot = shard_id(1);
    let mut hot_seen = 0_usize;
    let mut expected_stored = Vec::new();
    for (entry, (key, data)) in output.records().iter().zip(&sent) {
        let shard = even_shard(md5_hash_key(key), 4);
        if shard != 1 {
            assert_eq!(entry.error_code(), None, "key {key} on {}", shard_id(shard));
            expected_stored.push(data.clone());
            continue;
        }
        hot_seen += 1;
        if hot_seen <= 5 {
            assert_eq!(
                entry.error_code(),
                None,
                "the hot shard's record {hot_seen}"
            );
            assert_eq!(entry.shard_id(), Some(hot.as_str()));
            expected_stored.push(data.clone());
        } else {
            assert_eq!(
                entry.error_code(),
                Some("ProvisionedThroughputExceededException")
            );
            assert_eq!(
                entry.error_message(),
                Some(
                    format!(
                        "Rate exceeded for shard {hot} in stream {STREAM} under account 123456789012."
                    )
                    .as_str()
                )
            );
        }
    }
    assert!(
        hot_seen > 5,
        "only {hot_seen} of 200 keys hash to the hot shard"
    );
    let throttled = hot_seen - 5;
    assert_eq!(output.failed_record_count(), Some(throttled as i32));
    assert_eq!(server.accepted(), expected_stored);
    let stats = server.stats();
    assert_eq!(stats.shard_rate_limited, throttled as u64);
    assert_eq!(stats.rate_limited, 0);
    for shard in server.shard_stats() {
        let expected = if shard.id == hot { throttled as u64 } else { 0 };
        assert_eq!(shard.throttled, expected, "{}", shard.id);
    }
    assert_eq!(server.shard_stats()[1].stored, 5);
}

#[tokio::test]
async fn fault_server_limits_each_shard_on_its_own_and_refills_on_a_change() {
    let server = FaultKinesis::start(Faults {
        shards: 4,
        shard_records_per_second: Some(3),
        ..Faults::default()
    });
    let client = client(&server);
    let sent = keyed(200);

    let output = put_keyed(&client, &sent).await;
    let mut seen = [0_usize; 4];
    for (entry, (key, _)) in output.records().iter().zip(&sent) {
        let shard = even_shard(md5_hash_key(key), 4);
        seen[shard] += 1;
        let expected = (seen[shard] > 3).then_some("ProvisionedThroughputExceededException");
        assert_eq!(
            entry.error_code(),
            expected,
            "record {} of {}",
            seen[shard],
            shard_id(shard)
        );
    }
    let stored: Vec<u64> = server.shard_stats().iter().map(|s| s.stored).collect();
    assert_eq!(stored, [3, 3, 3, 3]);

    // A new limit gives every shard a full bucket of it: 4 more each, whatever time has passed
    // (a bucket never holds more than a second's worth).
    server.set_faults(Faults {
        shards: 4,
        shard_records_per_second: Some(4),
        ..Faults::default()
    });
    put_keyed(&client, &sent).await;
    let stored: Vec<u64> = server.shard_stats().iter().map(|s| s.stored).collect();
    assert_eq!(stored, [7, 7, 7, 7]);
    assert_eq!(server.accepted_len(), 28);
    assert_eq!(server.stats().shard_rate_limited, 400 - 28);
}

#[tokio::test]
async fn fault_server_split_shard_closes_the_parent_and_routes_to_its_children() {
    let server = FaultKinesis::start(Faults {
        shards: 4,
        ..Faults::default()
    });
    let client = client(&server);
    let sent = keyed(200);
    let before = put_keyed(&client, &sent).await;
    let last_before = before
        .records()
        .iter()
        .filter_map(|entry| entry.sequence_number())
        .max()
        .expect("records were stored")
        .to_owned();
    let parent_stored = server.shard_stats()[2].stored;

    server.split_shard(2);

    let children = [shard_id(4), shard_id(5)];
    assert_eq!(
        server.shard_ids(),
        [
            shard_id(0),
            shard_id(1),
            children[0].clone(),
            children[1].clone(),
            shard_id(3)
        ]
    );
    let shards = list_shards(&client).await;
    let ids: Vec<&str> = shards.iter().map(|s| s.shard_id()).collect();
    assert_eq!(ids, (0..6).map(shard_id).collect::<Vec<_>>());
    let quarter = 1_u128 << 126;
    let parent = &shards[2];
    let parent_end = ending_sequence_number(parent).expect("the parent is closed");
    assert!(
        parent_end >= last_before.as_str(),
        "{parent_end} < {last_before}"
    );
    assert_eq!(range_of(parent), (2 * quarter, 3 * quarter - 1));
    let middle = 2 * quarter + quarter / 2;
    for (child, range) in shards[4..]
        .iter()
        .zip([(2 * quarter, middle - 1), (middle, 3 * quarter - 1)])
    {
        assert_eq!(child.parent_shard_id(), Some(parent.shard_id()));
        assert_eq!(ending_sequence_number(child), None, "the child is open");
        assert!(starting_sequence_number(child) > parent_end);
        assert_eq!(range_of(child), range);
    }
    for (index, shard) in shards.iter().enumerate() {
        if index != 2 {
            assert_eq!(ending_sequence_number(shard), None, "{index} is open");
        }
    }
    assert_eq!(open_shard_count(&client).await, 5);

    let after = put_keyed(&client, &sent).await;
    assert_eq!(after.failed_record_count(), Some(0));
    let mut to_children = 0;
    for (entry, (key, _)) in after.records().iter().zip(&sent) {
        let hash_key = md5_hash_key(key);
        let expected = match even_shard(hash_key, 4) {
            2 if hash_key < middle => children[0].clone(),
            2 => children[1].clone(),
            other => shard_id(other),
        };
        to_children += usize::from(expected == children[0] || expected == children[1]);
        assert_eq!(entry.shard_id(), Some(expected.as_str()), "key {key}");
        assert!(entry
            .sequence_number()
            .is_some_and(|seq| seq > last_before.as_str()));
    }
    assert!(to_children > 0);
    let stats = server.shard_stats();
    assert_eq!(stats.len(), 6);
    assert_eq!(
        stats[2].stored, parent_stored,
        "nothing lands on a closed shard"
    );
    assert_eq!(stats[4].stored + stats[5].stored, to_children as u64);
}

#[tokio::test]
async fn fault_server_remakes_the_shard_map_when_the_count_changes() {
    let server = FaultKinesis::start(Faults::default());
    let client = client(&server);
    let sent = keyed(50);
    put_keyed(&client, &sent).await;

    server.set_faults(Faults {
        shards: 2,
        ..Faults::default()
    });
    assert_eq!(server.shard_ids(), [shard_id(1), shard_id(2)]);
    // Another fault with the same count leaves the map as it is.
    server.set_faults(Faults {
        shards: 2,
        record_internal_percent: 0.0,
        ..Faults::default()
    });
    assert_eq!(server.shard_ids(), [shard_id(1), shard_id(2)]);
    let shards = list_shards(&client).await;
    assert_eq!(shards.len(), 3);
    assert!(
        ending_sequence_number(&shards[0]).is_some(),
        "the old shard is closed"
    );
    assert!(shards[1..]
        .iter()
        .all(|s| ending_sequence_number(s).is_none()));

    let output = put_keyed(&client, &sent).await;
    for (entry, (key, _)) in output.records().iter().zip(&sent) {
        let expected = shard_id(1 + even_shard(md5_hash_key(key), 2));
        assert_eq!(entry.shard_id(), Some(expected.as_str()), "key {key}");
    }
    let stats = server.shard_stats();
    assert_eq!(stats[0].stored, 50);
    assert_eq!(stats[1].stored + stats[2].stored, 50);
}
