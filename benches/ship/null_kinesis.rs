//! A Kinesis endpoint that accepts every record and keeps nothing but counts: the agent under
//! test must be the only thing that limits the measurement.
//!
//! It speaks just enough of the JSON 1.1 protocol for an agent built on the AWS SDK:
//! `PutRecords` and `DescribeStreamSummary`. Signatures are not checked.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use memchr::memmem;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::Context;

const JSON_1_1: &str = "application/x-amz-json-1.1";
const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const DESCRIBE_STREAM_SUMMARY: &str = "Kinesis_20131202.DescribeStreamSummary";
/// The service's own limit; a larger batch is an agent bug the bench must not hide.
const MAX_RECORDS_PER_REQUEST: usize = 500;

/// The SDK writes compact JSON and record data is base64, so these byte strings appear exactly
/// once per record and nowhere else.
static PARTITION_KEY_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"PartitionKey\""));
static DATA_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"Data\":\""));

/// What the endpoint has received since the last reset.
#[derive(Default)]
pub struct Stats {
    records: AtomicU64,
    data_bytes: AtomicU64,
    put_requests: AtomicU64,
    describe_requests: AtomicU64,
    rejected_requests: AtomicU64,
    refused_records: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub records: u64,
    /// Decoded bytes of record data.
    pub data_bytes: u64,
    pub put_requests: u64,
    pub describe_requests: u64,
    /// Requests answered with an error: unknown operations and invalid batches.
    pub rejected_requests: u64,
    /// Records answered with a per-record error (and so not counted as received).
    pub refused_records: u64,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records, {} bytes of data, {} PutRecords, {} DescribeStreamSummary, {} rejected",
            self.records,
            self.data_bytes,
            self.put_requests,
            self.describe_requests,
            self.rejected_requests
        )
    }
}

impl Stats {
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            records: self.records(),
            data_bytes: self.data_bytes.load(Ordering::Relaxed),
            put_requests: self.put_requests.load(Ordering::Relaxed),
            describe_requests: self.describe_requests.load(Ordering::Relaxed),
            rejected_requests: self.rejected_requests.load(Ordering::Relaxed),
            refused_records: self.refused_records.load(Ordering::Relaxed),
        }
    }

    pub fn reset(&self) {
        for counter in [
            &self.records,
            &self.data_bytes,
            &self.put_requests,
            &self.describe_requests,
            &self.rejected_requests,
            &self.refused_records,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// A running endpoint; it serves until the runtime it was started on shuts down.
pub struct NullKinesis {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

impl NullKinesis {
    /// Serves on `port` (0: any free one), refusing `fail_percent` % of records as throttled.
    pub fn start(runtime: &Runtime, port: u16, fail_percent: f64) -> Result<NullKinesis, String> {
        let listener = runtime
            .block_on(TcpListener::bind(("127.0.0.1", port)))
            .context(format!(
                "binding the null Kinesis endpoint to 127.0.0.1:{port}"
            ))?;
        let addr = listener
            .local_addr()
            .context("reading the endpoint's address")?;
        let state = Arc::new(State {
            stats: Arc::default(),
            put_responses: (0..=MAX_RECORDS_PER_REQUEST)
                .map(|_| OnceLock::new())
                .collect(),
            refuse_per_million: (fail_percent * 10_000.0) as u64,
            draws: AtomicU64::new(0),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        });
        let stats = Arc::clone(&state.stats);
        runtime.spawn(accept_loop(listener, state));
        Ok(NullKinesis { addr, stats })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

struct State {
    stats: Arc<Stats>,
    /// Response bodies by record count: built once, then shared for every batch of that size.
    put_responses: Vec<OnceLock<Bytes>>,
    /// Records refused per million, chosen by a deterministic sequence of draws.
    refuse_per_million: u64,
    draws: AtomicU64,
    created: u64,
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&state)));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                eprintln!("null Kinesis: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    // Responses are small and written in one go; Nagle would only add latency to each batch.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(Arc::clone(&state), request));
    // Errors here are clients hanging up mid-request, which an agent being stopped may do.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request.headers().get("x-amz-target").cloned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Ok(error_response(
                "SerializationException",
                &format!("reading body: {error}"),
            ))
        }
    };
    let target = target
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    Ok(match target {
        PUT_RECORDS => put_records(&state, &body),
        DESCRIBE_STREAM_SUMMARY => describe_stream_summary(&state, &body),
        other => {
            state
                .stats
                .rejected_requests
                .fetch_add(1, Ordering::Relaxed);
            error_response(
                "UnknownOperationException",
                &format!("the null Kinesis endpoint does not implement X-Amz-Target {other:?}"),
            )
        }
    })
}

fn put_records(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let records = PARTITION_KEY_FIELD.find_iter(body).count();
    if records == 0 || records > MAX_RECORDS_PER_REQUEST {
        state
            .stats
            .rejected_requests
            .fetch_add(1, Ordering::Relaxed);
        return error_response(
            "ValidationException",
            &format!("1 validation error detected: {records} records; a request takes 1 to {MAX_RECORDS_PER_REQUEST}"),
        );
    }
    let stats = &state.stats;
    stats.put_requests.fetch_add(1, Ordering::Relaxed);
    if state.refuse_per_million > 0 {
        return put_records_refusing_some(state, body, records);
    }
    stats
        .data_bytes
        .fetch_add(data_bytes(body, |_| true), Ordering::Relaxed);
    stats.records.fetch_add(records as u64, Ordering::Relaxed);
    let body = state.put_responses[records].get_or_init(|| put_records_body(records));
    json_response(StatusCode::OK, body.clone())
}

/// Answers like a throttled shard: a successful call in which some records carry
/// `ProvisionedThroughputExceededException`. Only the accepted records count as received.
fn put_records_refusing_some(state: &State, body: &[u8], records: usize) -> Response<Full<Bytes>> {
    let refused: Vec<bool> = (0..records)
        .map(|_| {
            let draw = split_mix(state.draws.fetch_add(1, Ordering::Relaxed));
            draw % 1_000_000 < state.refuse_per_million
        })
        .collect();
    let refused_count = refused.iter().filter(|&&r| r).count();
    let stats = &state.stats;
    stats
        .refused_records
        .fetch_add(refused_count as u64, Ordering::Relaxed);
    stats
        .records
        .fetch_add((records - refused_count) as u64, Ordering::Relaxed);
    stats
        .data_bytes
        .fetch_add(data_bytes(body, |index| !refused[index]), Ordering::Relaxed);
    let mut answer = format!("{{\"FailedRecordCount\":{refused_count},\"Records\":[");
    for (index, &is_refused) in refused.iter().enumerate() {
        if index > 0 {
            answer.push(',');
        }
        if is_refused {
            answer.push_str("{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded for shard shardId-000000000000 in stream bench under account 123456789012.\"}");
        } else {
            answer.push_str(&format!(
                "{{\"SequenceNumber\":\"4960{index:052}\",\"ShardId\":\"shardId-000000000000\"}}"
            ));
        }
    }
    answer.push_str("]}");
    json_response(StatusCode::OK, Bytes::from(answer))
}

/// SplitMix64: a well-spread pseudo-random value from a counter, so every run refuses the
/// same records.
fn split_mix(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Decoded bytes of the `"Data"` values of the records `counted` selects (by index), worked out
/// from the base64 length alone.
fn data_bytes(body: &[u8], counted: impl Fn(usize) -> bool) -> u64 {
    let mut total = 0;
    let mut rest = body;
    let mut index = 0;
    while let Some(at) = DATA_FIELD.find(rest) {
        let value = &rest[at + DATA_FIELD.needle().len()..];
        let Some(end) = memchr::memchr(b'"', value) else {
            break;
        };
        if counted(index) {
            total += base64_decoded_len(&value[..end]);
        }
        index += 1;
        rest = &value[end..];
    }
    total
}

fn base64_decoded_len(encoded: &[u8]) -> u64 {
    let padding = encoded
        .iter()
        .rev()
        .take(2)
        .take_while(|&&byte| byte == b'=')
        .count();
    (encoded.len() / 4 * 3).saturating_sub(padding) as u64
}

fn put_records_body(records: usize) -> Bytes {
    let mut body = String::with_capacity(40 + records * 100);
    body.push_str("{\"FailedRecordCount\":0,\"Records\":[");
    for index in 0..records {
        if index > 0 {
            body.push(',');
        }
        // Real sequence numbers are 56 decimal digits; the same length keeps parsing honest.
        body.push_str(&format!(
            "{{\"SequenceNumber\":\"4960{index:052}\",\"ShardId\":\"shardId-000000000000\"}}"
        ));
    }
    body.push_str("]}");
    Bytes::from(body)
}

fn describe_stream_summary(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    state
        .stats
        .describe_requests
        .fetch_add(1, Ordering::Relaxed);
    let name = requested_stream_name(body);
    let summary = serde_json::json!({
        "StreamDescriptionSummary": {
            "StreamName": name,
            "StreamARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{name}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": state.created,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": 1,
            "ConsumerCount": 0,
        }
    });
    json_response(StatusCode::OK, Bytes::from(summary.to_string()))
}

/// The stream a request names, by `StreamName` or by the last part of its `StreamARN`.
fn requested_stream_name(body: &[u8]) -> String {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(name) = request["StreamName"].as_str() {
        return name.to_owned();
    }
    request["StreamARN"]
        .as_str()
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or("bench")
        .to_owned()
}

fn error_response(kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": kind, "message": message});
    json_response(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    response
}
