//! A Kinesis and Firehose endpoint that accepts every record and keeps nothing but counts: the
//! agent under test must be the only thing that limits the measurement.
//!
//! It speaks just enough of the JSON 1.1 protocols for an agent built on the AWS SDK: Kinesis
//! `PutRecords`, `DescribeStreamSummary` and `ListShards` (a stream of `shards` even shards),
//! Firehose `PutRecordBatch` and `DescribeDeliveryStream`; and `PutRecords` in AWS CBOR 1.1
//! too (`Content-Type: application/x-amz-cbor-1.1`), answered in CBOR. A request must be
//! signed (carry an `Authorization` header), but the signature is not checked: that would
//! cost the measurement. It counts service records and the lines they carry, undoing the
//! agent's aggregation, packing and compression only when the bench turned them on (see
//! [`crate::record_lines`]).
//!
//! [`NullKinesis::start_tls`] serves HTTPS instead, with a certificate for `localhost` and
//! `127.0.0.1` from a CA made at start, whose PEM file [`NullKinesis::ca_pem_path`] names.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::TlsAcceptor;

use crate::put_request::{self, Data, Entry};
use crate::record_lines::Encoding;
use crate::Context;

/// The test servers' throwaway CA, shared with them.
#[path = "../../tests/support/fault_kinesis/tls.rs"]
// Used through NullKinesis::start_tls, which the bench's options do not reach yet.
#[allow(dead_code)]
mod tls;

const JSON_1_1: &str = "application/x-amz-json-1.1";
const CBOR_1_1: &str = "application/x-amz-cbor-1.1";
/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const DESCRIBE_STREAM_SUMMARY: &str = "Kinesis_20131202.DescribeStreamSummary";
const LIST_SHARDS: &str = "Kinesis_20131202.ListShards";
const PUT_RECORD_BATCH: &str = "Firehose_20150804.PutRecordBatch";
const DESCRIBE_DELIVERY_STREAM: &str = "Firehose_20150804.DescribeDeliveryStream";
/// The services' own limits; a larger batch or record is an agent bug the bench must not hide.
const MAX_RECORDS_PER_REQUEST: usize = 500;
/// Kinesis: a record's data plus partition key (a stream's default), and a whole call.
const KINESIS_MAX_RECORD_BYTES: u64 = 1024 * 1024;
const KINESIS_MAX_REQUEST_BYTES: u64 = 5 * 1024 * 1024;
/// Firehose: a record's data, and a whole call.
const FIREHOSE_MAX_RECORD_BYTES: u64 = 1000 * 1024;
const FIREHOSE_MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;
/// What each service bills a record in: Kinesis 25 KiB PUT payload units (data plus partition
/// key), Firehose 5 KiB increments (data); every record is at least one unit.
const KINESIS_BILLING_UNIT: u64 = 25 * 1024;
const FIREHOSE_BILLING_UNIT: u64 = 5 * 1024;
/// `ListShards` pages, as the service's default `MaxResults`.
const SHARDS_PER_PAGE: usize = 1000;
/// The most shards the endpoint pretends to have.
pub const MAX_SHARDS: u32 = 10_000;

/// What the endpoint has received since the last reset. Only records the endpoint accepted
/// count, not those it refused as throttled or in rejected requests.
#[derive(Default)]
pub struct Stats {
    lines: AtomicU64,
    records: AtomicU64,
    data_bytes: AtomicU64,
    billing_units: AtomicU64,
    put_requests: AtomicU64,
    cbor_put_requests: AtomicU64,
    describe_requests: AtomicU64,
    list_shards_requests: AtomicU64,
    rejected_requests: AtomicU64,
    unsigned_requests: AtomicU64,
    /// Put calls answered with a failure during a simulated outage.
    failed_requests: AtomicU64,
    refused_records: AtomicU64,
    malformed_records: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Lines (user records) in the accepted records.
    pub lines: u64,
    /// Records as the service counts them.
    pub records: u64,
    /// Decoded bytes of record data, as sent (aggregated, packed, compressed).
    pub data_bytes: u64,
    /// What the records are billed as (see [`KINESIS_BILLING_UNIT`], [`FIREHOSE_BILLING_UNIT`]).
    pub billing_units: u64,
    /// `PutRecords` and `PutRecordBatch` calls accepted.
    pub put_requests: u64,
    /// Of `put_requests`, those in AWS CBOR 1.1 (the rest were JSON 1.1).
    pub cbor_put_requests: u64,
    /// `DescribeStreamSummary` and `DescribeDeliveryStream` calls.
    pub describe_requests: u64,
    pub list_shards_requests: u64,
    /// Requests answered with an error: unknown operations, invalid batches, unsigned
    /// requests.
    pub rejected_requests: u64,
    /// Of `rejected_requests`, those without an `Authorization` header.
    pub unsigned_requests: u64,
    /// Put calls failed whole during a simulated outage (see [`NullKinesis::set_failing`]).
    pub failed_requests: u64,
    /// Records answered with a per-record error (and so not counted as received).
    pub refused_records: u64,
    /// Records not in the form the bench's mode says (see [`crate::record_lines::Lines`]).
    pub malformed_records: u64,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines in {} records, {} bytes of data, {} billing units, {} put calls \
             ({} in CBOR), {} describe calls, {} ListShards, {} rejected, {} malformed records",
            self.lines,
            self.records,
            self.data_bytes,
            self.billing_units,
            self.put_requests,
            self.cbor_put_requests,
            self.describe_requests,
            self.list_shards_requests,
            self.rejected_requests,
            self.malformed_records
        )
    }
}

impl Stats {
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            lines: get(&self.lines),
            records: get(&self.records),
            data_bytes: get(&self.data_bytes),
            billing_units: get(&self.billing_units),
            put_requests: get(&self.put_requests),
            cbor_put_requests: get(&self.cbor_put_requests),
            describe_requests: get(&self.describe_requests),
            list_shards_requests: get(&self.list_shards_requests),
            rejected_requests: get(&self.rejected_requests),
            unsigned_requests: get(&self.unsigned_requests),
            failed_requests: get(&self.failed_requests),
            refused_records: get(&self.refused_records),
            malformed_records: get(&self.malformed_records),
        }
    }

    pub fn reset(&self) {
        for counter in [
            &self.lines,
            &self.records,
            &self.data_bytes,
            &self.billing_units,
            &self.put_requests,
            &self.cbor_put_requests,
            &self.describe_requests,
            &self.list_shards_requests,
            &self.rejected_requests,
            &self.unsigned_requests,
            &self.failed_requests,
            &self.refused_records,
            &self.malformed_records,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn add(counter: &AtomicU64, value: u64) {
        if value > 0 {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }
}

/// How the endpoint behaves.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Percent of records refused as throttled, to show retries add no duplicates.
    pub fail_percent: f64,
    /// Open shards of the Kinesis stream, with even hash key ranges.
    pub shards: u32,
    /// What the agent does to lines, which the endpoint undoes to count them.
    pub encoding: Encoding,
}

/// What an HTTPS listener offers by ALPN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
// The bench's options do not reach the HTTPS listener yet.
#[allow(dead_code)]
pub enum Alpn {
    /// HTTP/2, then HTTP/1.1, as the services do: the AWS SDK then sends every call of a
    /// client over one HTTP/2 connection.
    #[default]
    H2AndHttp1,
    /// HTTP/1.1 only: a connection per call in flight, as over plain HTTP.
    Http1,
}

impl Alpn {
    fn protocols(self) -> &'static [&'static [u8]] {
        match self {
            Alpn::H2AndHttp1 => &[b"h2", b"http/1.1"],
            Alpn::Http1 => &[b"http/1.1"],
        }
    }
}

/// A running endpoint; it serves until the runtime it was started on shuts down.
pub struct NullKinesis {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    state: Arc<State>,
    /// The CA of an HTTPS endpoint (its PEM file lasts as long as this value).
    tls: Option<tls::ThrowawayCa>,
}

impl NullKinesis {
    /// Serves plain HTTP on `port` (0: any free one).
    pub fn start(runtime: &Runtime, port: u16, options: Options) -> Result<NullKinesis, String> {
        NullKinesis::start_with(runtime, port, options, None)
    }

    /// Serves HTTPS on `port` (0: any free one), offering `alpn`, with a certificate for
    /// `localhost` and `127.0.0.1` signed by a CA made now. The agent must trust
    /// [`NullKinesis::ca_pem_path`] (`aws: tls: ca_file: PATH`) and use
    /// [`NullKinesis::url`] (`https://localhost:PORT`) as its endpoint.
    pub fn start_tls(
        runtime: &Runtime,
        port: u16,
        options: Options,
        alpn: Alpn,
    ) -> Result<NullKinesis, String> {
        let ca = tls::ThrowawayCa::generate(alpn.protocols())
            .map_err(|error| format!("making the null endpoint's TLS certificate: {error}"))?;
        NullKinesis::start_with(runtime, port, options, Some(ca))
    }

    fn start_with(
        runtime: &Runtime,
        port: u16,
        options: Options,
        tls: Option<tls::ThrowawayCa>,
    ) -> Result<NullKinesis, String> {
        let listener = runtime
            .block_on(TcpListener::bind(("127.0.0.1", port)))
            .context(format!(
                "binding the null Kinesis endpoint to 127.0.0.1:{port}"
            ))?;
        let addr = listener
            .local_addr()
            .context("reading the endpoint's address")?;
        let answers = || {
            (0..=MAX_RECORDS_PER_REQUEST)
                .map(|_| OnceLock::new())
                .collect()
        };
        let state = Arc::new(State {
            stats: Arc::default(),
            kinesis_answers: answers(),
            kinesis_cbor_answers: answers(),
            firehose_answers: answers(),
            refuse_per_million: (options.fail_percent * 10_000.0) as u64,
            draws: AtomicU64::new(0),
            shards: options.shards.clamp(1, MAX_SHARDS),
            encoding: options.encoding,
            failing: AtomicBool::new(false),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        });
        let stats = Arc::clone(&state.stats);
        let acceptor = tls.as_ref().map(tls::ThrowawayCa::acceptor);
        runtime.spawn(accept_loop(listener, Arc::clone(&state), acceptor));
        Ok(NullKinesis {
            addr,
            stats,
            state,
            tls,
        })
    }

    /// The PEM file of the CA an HTTPS endpoint's certificate is signed by; `None` for plain
    /// HTTP.
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(tls::ThrowawayCa::ca_pem_path)
    }

    /// While `failing`, every put call is answered `500 InternalFailure`, as in an outage of
    /// the service: nothing is accepted and the agent keeps what it read and retries.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::Relaxed);
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for an HTTPS endpoint (the name
    /// its certificate is for).
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }
}

struct State {
    stats: Arc<Stats>,
    /// Answers by record count when every record is stored on shard 0: built once, then shared
    /// for every call of that size.
    kinesis_answers: Vec<OnceLock<Bytes>>,
    kinesis_cbor_answers: Vec<OnceLock<Bytes>>,
    firehose_answers: Vec<OnceLock<Bytes>>,
    /// Records refused per million, chosen by a deterministic sequence of draws.
    refuse_per_million: u64,
    draws: AtomicU64,
    shards: u32,
    encoding: Encoding,
    created: u64,
    /// Put calls fail whole while set (see [`NullKinesis::set_failing`]).
    failing: AtomicBool,
}

impl State {
    /// The shard whose even hash key range holds `hash`.
    fn shard_of(&self, hash: u128) -> u32 {
        let width = u128::MAX / u128::from(self.shards);
        (hash / width).min(u128::from(self.shards - 1)) as u32
    }

    /// Shard `index`'s hash key range.
    fn shard_range(&self, index: u32) -> (u128, u128) {
        let width = u128::MAX / u128::from(self.shards);
        let start = u128::from(index) * width;
        let end = if index + 1 == self.shards {
            u128::MAX
        } else {
            start + width - 1
        };
        (start, end)
    }

    fn reject(&self, wire: Wire, kind: &str, message: &str) -> Response<Full<Bytes>> {
        self.stats.rejected_requests.fetch_add(1, Ordering::Relaxed);
        error_response(wire, StatusCode::BAD_REQUEST, kind, message)
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&state), tls.clone()));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off rather than spin.
                eprintln!("null Kinesis: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>, tls: Option<TlsAcceptor>) {
    // Responses are small and written in one go; Nagle would only add latency to each batch.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve_http(stream, state, false).await;
    };
    match tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            serve_http(stream, state, h2).await;
        }
        Ok(Err(error)) => eprintln!("null Kinesis: TLS handshake failed: {error}"),
        Err(_) => eprintln!("null Kinesis: TLS handshake timed out"),
    }
}

async fn serve_http<I>(io: I, state: Arc<State>, h2: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(Arc::clone(&state), request));
    let io = TokioIo::new(io);
    // Errors here are clients hanging up mid-request, which an agent being stopped may do.
    if h2 {
        let _ = http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service)
            .await;
    }
}

/// The format of a request's body, and so of its answer (the describe and list operations
/// always answer in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Json,
    Cbor,
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = request.headers();
    let target = headers.get("x-amz-target").cloned();
    let wire = match headers.get(CONTENT_TYPE) {
        Some(value) if value.as_bytes().eq_ignore_ascii_case(CBOR_1_1.as_bytes()) => Wire::Cbor,
        _ => Wire::Json,
    };
    let signed = headers.contains_key(AUTHORIZATION);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Ok(error_response(
                wire,
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &format!("reading body: {error}"),
            ))
        }
    };
    if !signed {
        state
            .stats
            .unsigned_requests
            .fetch_add(1, Ordering::Relaxed);
        return Ok(state.reject(
            wire,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    }
    let target = target
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    Ok(match target {
        PUT_RECORDS => put(&state, Api::Kinesis, wire, &body),
        PUT_RECORD_BATCH => put(&state, Api::Firehose, wire, &body),
        DESCRIBE_STREAM_SUMMARY => describe_stream_summary(&state, &body),
        DESCRIBE_DELIVERY_STREAM => describe_delivery_stream(&state, &body),
        LIST_SHARDS => list_shards(&state, &body),
        other => state.reject(
            wire,
            "UnknownOperationException",
            &format!("the null Kinesis endpoint does not implement X-Amz-Target {other:?}"),
        ),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Kinesis,
    Firehose,
}

impl Api {
    fn max_record_bytes(self) -> u64 {
        match self {
            Api::Kinesis => KINESIS_MAX_RECORD_BYTES,
            Api::Firehose => FIREHOSE_MAX_RECORD_BYTES,
        }
    }

    fn max_request_bytes(self) -> u64 {
        match self {
            Api::Kinesis => KINESIS_MAX_REQUEST_BYTES,
            Api::Firehose => FIREHOSE_MAX_REQUEST_BYTES,
        }
    }

    fn billing_units(self, record: &RecordSize) -> u64 {
        let (bytes, unit) = match self {
            Api::Kinesis => (record.size(), KINESIS_BILLING_UNIT),
            Api::Firehose => (record.data_bytes, FIREHOSE_BILLING_UNIT),
        };
        bytes.div_ceil(unit).max(1)
    }
}

/// A record's sizes, worked out from the request alone.
struct RecordSize {
    data_bytes: u64,
    key_bytes: u64,
}

impl RecordSize {
    /// What the service's size limits count: data plus partition key.
    fn size(&self) -> u64 {
        self.data_bytes + self.key_bytes
    }
}

/// `PutRecords` or `PutRecordBatch`: checks the call against the service's limits, then counts
/// the records it accepts and the lines in them.
fn put(state: &State, api: Api, wire: Wire, body: &[u8]) -> Response<Full<Bytes>> {
    if state.failing.load(Ordering::Relaxed) {
        state.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
        return error_response(
            wire,
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "the null endpoint simulates an outage",
        );
    }
    let entries = match (wire, api) {
        (Wire::Json, _) => put_request::entries(body),
        (Wire::Cbor, Api::Kinesis) => put_request::cbor::entries(body),
        (Wire::Cbor, Api::Firehose) => Err(
            "PutRecordBatch is read only in AWS JSON 1.1: Firehose's API speaks nothing else"
                .to_owned(),
        ),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(message) => return state.reject(wire, "SerializationException", &message),
    };
    let count = entries.len();
    if count == 0 || count > MAX_RECORDS_PER_REQUEST {
        return state.reject(
            wire,
            "ValidationException",
            &format!("1 validation error detected: {count} records; a request takes 1 to {MAX_RECORDS_PER_REQUEST}"),
        );
    }
    let mut sizes = Vec::with_capacity(count);
    for (index, entry) in entries.iter().enumerate() {
        let key_bytes = match (api, &entry.partition_key) {
            (Api::Kinesis, Some(key)) => key.len() as u64,
            (Api::Kinesis, None) => {
                return state.reject(
                    wire,
                    "ValidationException",
                    &format!("1 validation error detected: Value null at 'records.{}.member.partitionKey' failed to satisfy constraint: Member must not be null", index + 1),
                )
            }
            (Api::Firehose, _) => 0,
        };
        let record = RecordSize {
            data_bytes: entry.data.decoded_len(),
            key_bytes,
        };
        if record.size() > api.max_record_bytes() {
            return state.reject(
                wire,
                "ValidationException",
                &format!(
                    "1 validation error detected: Value at 'records.{}.member.data' failed to satisfy constraint: Member must have length less than or equal to {} (it has {} bytes)",
                    index + 1,
                    api.max_record_bytes(),
                    record.size()
                ),
            );
        }
        sizes.push(record);
    }
    let request_bytes: u64 = sizes.iter().map(RecordSize::size).sum();
    if request_bytes > api.max_request_bytes() {
        return state.reject(
            wire,
            "InvalidArgumentException",
            &format!(
                "Records size exceeds {} MB limit ({request_bytes} bytes)",
                api.max_request_bytes() >> 20
            ),
        );
    }
    let shards = match shards_of(state, api, &entries) {
        Ok(shards) => shards,
        Err(message) => return state.reject(wire, "ValidationException", &message),
    };
    let stats = &state.stats;
    stats.put_requests.fetch_add(1, Ordering::Relaxed);
    if wire == Wire::Cbor {
        stats.cbor_put_requests.fetch_add(1, Ordering::Relaxed);
    }
    let refused: Option<Vec<bool>> = (state.refuse_per_million > 0).then(|| {
        (0..count)
            .map(|_| {
                let draw = split_mix(state.draws.fetch_add(1, Ordering::Relaxed));
                draw % 1_000_000 < state.refuse_per_million
            })
            .collect()
    });
    let is_refused = |index: usize| refused.as_ref().is_some_and(|refused| refused[index]);
    let (mut lines, mut records, mut data_bytes, mut billing_units, mut malformed) =
        (0, 0, 0, 0, 0);
    for (index, (entry, record)) in entries.iter().zip(&sizes).enumerate() {
        if is_refused(index) {
            continue;
        }
        records += 1;
        data_bytes += record.data_bytes;
        billing_units += api.billing_units(record);
        if state.encoding.is_plain() {
            lines += 1;
        } else {
            let carried = match &entry.data {
                Data::Base64(encoded) => state.encoding.lines(encoded),
                Data::Bytes(bytes) => lines_of_bytes(state.encoding, bytes),
            };
            lines += carried.count;
            malformed += u64::from(carried.malformed);
        }
    }
    let refused_count = count as u64 - records;
    Stats::add(&stats.refused_records, refused_count);
    Stats::add(&stats.malformed_records, malformed);
    Stats::add(&stats.data_bytes, data_bytes);
    Stats::add(&stats.billing_units, billing_units);
    Stats::add(&stats.records, records);
    // Lines last: the bench stops waiting once they are all in, and reads the rest after.
    Stats::add(&stats.lines, lines);
    let stored_on = |index: usize| {
        (!is_refused(index)).then(|| shards.as_ref().map_or(0, |shards| shards[index]))
    };
    let body = match (api, wire, &refused, &shards) {
        (Api::Kinesis, Wire::Json, None, None) => state.kinesis_answers[count]
            .get_or_init(|| kinesis_answer(count, |_| Some(0)))
            .clone(),
        (Api::Kinesis, Wire::Cbor, None, None) => state.kinesis_cbor_answers[count]
            .get_or_init(|| kinesis_cbor_answer(count, |_| Some(0)))
            .clone(),
        (Api::Firehose, _, None, _) => state.firehose_answers[count]
            .get_or_init(|| firehose_answer(count, |_| true))
            .clone(),
        (Api::Kinesis, Wire::Json, _, _) => kinesis_answer(count, stored_on),
        (Api::Kinesis, Wire::Cbor, _, _) => kinesis_cbor_answer(count, stored_on),
        (Api::Firehose, _, _, _) => firehose_answer(count, |index| !is_refused(index)),
    };
    match (api, wire) {
        (Api::Kinesis, Wire::Cbor) => response(StatusCode::OK, CBOR_1_1, body),
        _ => json_response(StatusCode::OK, body),
    }
}

/// The lines in a record whose data came as bytes (CBOR). [`Encoding::lines`] reads base64, so
/// the data is encoded into a buffer kept per thread first: a cost of the modes that decode
/// records (aggregation, packing, compression) only.
fn lines_of_bytes(encoding: Encoding, data: &[u8]) -> crate::record_lines::Lines {
    thread_local! {
        static BASE64: RefCell<String> = RefCell::default();
    }
    BASE64.with_borrow_mut(|encoded| {
        encoded.clear();
        base64::engine::general_purpose::STANDARD.encode_string(data, encoded);
        encoding.lines(encoded.as_bytes())
    })
}

/// The shard each Kinesis record is stored on, when the stream has more than one: the one its
/// explicit hash key falls in, else the one the MD5 of its partition key does.
fn shards_of(state: &State, api: Api, entries: &[Entry]) -> Result<Option<Vec<u32>>, String> {
    if api != Api::Kinesis {
        return Ok(None);
    }
    let mut shards = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let hash = match &entry.explicit_hash_key {
            Some(key) => Some(key.text().parse::<u128>().map_err(|_| {
                format!("1 validation error detected: Value at 'records.{}.member.explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})", index + 1)
            })?),
            None => None,
        };
        if state.shards > 1 {
            let hash = hash.unwrap_or_else(|| {
                let key = entry
                    .partition_key
                    .as_ref()
                    .map(|key| key.text())
                    .unwrap_or_default();
                u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
            });
            shards.push(state.shard_of(hash));
        }
    }
    Ok((state.shards > 1).then_some(shards))
}

/// A `PutRecords` answer; `stored_on(index)` is the shard record `index` went to, or `None`
/// when it was refused as throttled.
fn kinesis_answer(records: usize, stored_on: impl Fn(usize) -> Option<u32>) -> Bytes {
    let failed = (0..records)
        .filter(|&index| stored_on(index).is_none())
        .count();
    let mut body = String::with_capacity(40 + records * 100);
    body.push_str(&format!("{{\"FailedRecordCount\":{failed},\"Records\":["));
    for index in 0..records {
        if index > 0 {
            body.push(',');
        }
        match stored_on(index) {
            // Real sequence numbers are 56 decimal digits; the same length keeps parsing honest.
            Some(shard) => body.push_str(&format!(
                "{{\"SequenceNumber\":\"4960{index:052}\",\"ShardId\":\"{}\"}}",
                shard_id(shard)
            )),
            None => body.push_str("{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded for shard shardId-000000000000 in stream bench under account 123456789012.\"}"),
        }
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// The CBOR form of [`kinesis_answer`]: the same members, as the service writes them.
fn kinesis_cbor_answer(records: usize, stored_on: impl Fn(usize) -> Option<u32>) -> Bytes {
    let failed = (0..records)
        .filter(|&index| stored_on(index).is_none())
        .count();
    let mut body = Vec::with_capacity(32 + records * 90);
    cbor_head(&mut body, 5, 2);
    cbor_text(&mut body, "FailedRecordCount");
    cbor_head(&mut body, 0, failed as u64);
    cbor_text(&mut body, "Records");
    cbor_head(&mut body, 4, records as u64);
    for index in 0..records {
        cbor_head(&mut body, 5, 2);
        match stored_on(index) {
            Some(shard) => {
                cbor_text(&mut body, "SequenceNumber");
                cbor_text(&mut body, &format!("4960{index:052}"));
                cbor_text(&mut body, "ShardId");
                cbor_text(&mut body, &shard_id(shard));
            }
            None => {
                cbor_text(&mut body, "ErrorCode");
                cbor_text(&mut body, "ProvisionedThroughputExceededException");
                cbor_text(&mut body, "ErrorMessage");
                cbor_text(&mut body, "Rate exceeded for shard shardId-000000000000 in stream bench under account 123456789012.");
            }
        }
    }
    Bytes::from(body)
}

/// A CBOR item head: major type and a definite argument, in the fewest bytes.
fn cbor_head(out: &mut Vec<u8>, major: u8, argument: u64) {
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

fn cbor_text(out: &mut Vec<u8>, text: &str) {
    cbor_head(out, 3, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A `PutRecordBatch` answer; `stored(index)` is false for a record refused as throttled.
fn firehose_answer(records: usize, stored: impl Fn(usize) -> bool) -> Bytes {
    let failed = (0..records).filter(|&index| !stored(index)).count();
    let mut body = String::with_capacity(64 + records * 96);
    body.push_str(&format!(
        "{{\"FailedPutCount\":{failed},\"Encrypted\":false,\"RequestResponses\":["
    ));
    for index in 0..records {
        if index > 0 {
            body.push(',');
        }
        if stored(index) {
            body.push_str(&format!("{{\"RecordId\":\"{index:064x}\"}}"));
        } else {
            body.push_str(
                "{\"ErrorCode\":\"ServiceUnavailableException\",\"ErrorMessage\":\"Slow down.\"}",
            );
        }
    }
    body.push_str("]}");
    Bytes::from(body)
}

fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// SplitMix64: a well-spread pseudo-random value from a counter, so every run refuses the
/// same records.
fn split_mix(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn describe_stream_summary(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    state
        .stats
        .describe_requests
        .fetch_add(1, Ordering::Relaxed);
    let name = requested_stream_name(body, "StreamName", "StreamARN");
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
            "OpenShardCount": state.shards,
            "ConsumerCount": 0,
        }
    });
    json_response(StatusCode::OK, Bytes::from(summary.to_string()))
}

fn describe_delivery_stream(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    state
        .stats
        .describe_requests
        .fetch_add(1, Ordering::Relaxed);
    let name = requested_stream_name(body, "DeliveryStreamName", "DeliveryStreamARN");
    let description = serde_json::json!({
        "DeliveryStreamDescription": {
            "DeliveryStreamName": name,
            "DeliveryStreamARN": format!("arn:aws:firehose:us-east-1:123456789012:deliverystream/{name}"),
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "DirectPut",
            "VersionId": "1",
            "CreateTimestamp": state.created,
            "Destinations": [],
            "HasMoreDestinations": false,
        }
    });
    json_response(StatusCode::OK, Bytes::from(description.to_string()))
}

/// The stream's shards, `SHARDS_PER_PAGE` (or `MaxResults`) at a time; a continued listing's
/// `NextToken` is where it goes on from.
fn list_shards(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    state
        .stats
        .list_shards_requests
        .fetch_add(1, Ordering::Relaxed);
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let first = match request["NextToken"].as_str() {
        Some(token) => match token
            .strip_prefix("shards-from-")
            .and_then(|from| from.parse::<u32>().ok())
        {
            Some(from) => from,
            None => {
                return state.reject(
                    Wire::Json,
                    "InvalidArgumentException",
                    &format!("NextToken {token:?} is not one this endpoint gave"),
                )
            }
        },
        None => 0,
    };
    let page = request["MaxResults"]
        .as_u64()
        .map_or(SHARDS_PER_PAGE, |max| max.clamp(1, 10_000) as usize);
    let end = state.shards.min(first.saturating_add(page as u32));
    let shards: Vec<serde_json::Value> = (first..end)
        .map(|index| {
            let (start, end) = state.shard_range(index);
            serde_json::json!({
                "ShardId": shard_id(index),
                "HashKeyRange": {"StartingHashKey": start.to_string(), "EndingHashKey": end.to_string()},
                "SequenceNumberRange": {"StartingSequenceNumber": format!("49{:054}", index)},
            })
        })
        .collect();
    let mut answer = serde_json::json!({ "Shards": shards });
    if end < state.shards {
        answer["NextToken"] = format!("shards-from-{end}").into();
    }
    json_response(StatusCode::OK, Bytes::from(answer.to_string()))
}

/// The stream a request names, by its name field or by the last part of its ARN field.
fn requested_stream_name(body: &[u8], name_field: &str, arn_field: &str) -> String {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(name) = request[name_field].as_str() {
        return name.to_owned();
    }
    request[arn_field]
        .as_str()
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or("bench")
        .to_owned()
}

/// `{"__type": kind, "message": message}` in the request's format, the code also in
/// `x-amzn-ErrorType`.
fn error_response(
    wire: Wire,
    status: StatusCode,
    kind: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let mut response = match wire {
        Wire::Json => {
            let body = serde_json::json!({"__type": kind, "message": message});
            json_response(status, Bytes::from(body.to_string()))
        }
        Wire::Cbor => {
            let mut body = Vec::with_capacity(32 + kind.len() + message.len());
            cbor_head(&mut body, 5, 2);
            cbor_text(&mut body, "__type");
            cbor_text(&mut body, kind);
            cbor_text(&mut body, "message");
            cbor_text(&mut body, message);
            response(status, CBOR_1_1, Bytes::from(body))
        }
    };
    if let Ok(kind) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", kind);
    }
    response
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    response(status, JSON_1_1, body)
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    response
}
