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
//!
//! The listener, the request envelope and the answer bodies are the test endpoints' shared
//! core (`tests/support/kinesis_server`); the answers this endpoint gives most are built once
//! per record count and then shared.

use std::borrow::Cow;
use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{Request, Response, StatusCode};
use md5::{Digest, Md5};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::put_request::{self, Data, Entry};
use crate::record_lines::Encoding;
use crate::Context;

use self::kinesis_server::answers::{self, BatchAnswer, RecordAnswer, Refusal};
use self::kinesis_server::listener::{Endpoint, Listening};
use self::kinesis_server::protocol::{
    self, Wire, DESCRIBE_DELIVERY_STREAM, DESCRIBE_STREAM_SUMMARY, LIST_SHARDS,
    MAX_RECORDS_PER_CALL, PUT_RECORDS, PUT_RECORD_BATCH,
};
use self::kinesis_server::tls;

/// The test endpoints' shared core: listener, request envelope, answers, throwaway CA.
#[path = "../../tests/support/kinesis_server/mod.rs"]
// Parts of it serve only the fault server of the tests.
#[allow(dead_code)]
mod kinesis_server;

/// The services' own limits (with [`MAX_RECORDS_PER_CALL`]); a larger batch or record is an
/// agent bug the bench must not hide. Kinesis: a record's data plus partition key (a stream's
/// default), and a whole call.
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
            (0..=MAX_RECORDS_PER_CALL)
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
        // Never stopped: the endpoint serves until its runtime shuts down.
        let _listening = Listening::start(runtime.handle(), listener, Arc::clone(&state), acceptor);
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

impl Endpoint for State {
    type Error = Infallible;

    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send {
        handle(self, request)
    }

    fn tls_handshake_failed(&self, why: &str) {
        eprintln!("null Kinesis: {why}");
    }

    fn accept_failed(&self, error: &io::Error) {
        eprintln!("null Kinesis: accept failed: {error}");
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = request.headers();
    let target = headers.get("x-amz-target").cloned();
    let wire = Wire::of(headers);
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
    if count == 0 || count > MAX_RECORDS_PER_CALL {
        return state.reject(
            wire,
            "ValidationException",
            &format!("1 validation error detected: {count} records; a request takes 1 to {MAX_RECORDS_PER_CALL}"),
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
            .get_or_init(|| kinesis_answer(wire, count, |_| Some(0)))
            .clone(),
        (Api::Kinesis, Wire::Cbor, None, None) => state.kinesis_cbor_answers[count]
            .get_or_init(|| kinesis_answer(wire, count, |_| Some(0)))
            .clone(),
        (Api::Firehose, _, None, _) => state.firehose_answers[count]
            .get_or_init(|| firehose_answer(count, |_| true))
            .clone(),
        (Api::Kinesis, _, _, _) => kinesis_answer(wire, count, stored_on),
        (Api::Firehose, _, _, _) => firehose_answer(count, |index| !is_refused(index)),
    };
    match api {
        Api::Kinesis => protocol::wire_response(wire, StatusCode::OK, body, request_id()),
        Api::Firehose => json_response(StatusCode::OK, body),
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

/// How a throttled record is answered, in either service's words.
const KINESIS_THROTTLED: Refusal<'static> = Refusal {
    code: "ProvisionedThroughputExceededException",
    message: Cow::Borrowed(
        "Rate exceeded for shard shardId-000000000000 in stream bench under account 123456789012.",
    ),
};
const FIREHOSE_THROTTLED: Refusal<'static> = Refusal {
    code: "ServiceUnavailableException",
    message: Cow::Borrowed("Slow down."),
};

/// A `PutRecords` answer in `wire`'s format; `stored_on(index)` is the shard record `index`
/// went to, or `None` when it was refused as throttled.
fn kinesis_answer(wire: Wire, records: usize, stored_on: impl Fn(usize) -> Option<u32>) -> Bytes {
    let records: Vec<RecordAnswer> = (0..records)
        .map(|index| match stored_on(index) {
            // Real sequence numbers are 56 decimal digits; the same length keeps parsing honest.
            Some(shard) => RecordAnswer::Stored {
                sequence_number: format!("4960{index:052}"),
                shard_id: Cow::Owned(shard_id(shard)),
            },
            None => RecordAnswer::Refused(KINESIS_THROTTLED),
        })
        .collect();
    answers::put_records(wire, &records)
}

/// A `PutRecordBatch` answer; `stored(index)` is false for a record refused as throttled.
fn firehose_answer(records: usize, stored: impl Fn(usize) -> bool) -> Bytes {
    let records: Vec<BatchAnswer> = (0..records)
        .map(|index| {
            if stored(index) {
                BatchAnswer::Stored {
                    record_id: index as u64,
                }
            } else {
                BatchAnswer::Refused(FIREHOSE_THROTTLED)
            }
        })
        .collect();
    answers::put_record_batch_json(&records)
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
    let summary =
        answers::stream_description_summary(&name, state.created, u64::from(state.shards));
    json_response(StatusCode::OK, Bytes::from(summary.to_string()))
}

fn describe_delivery_stream(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    state
        .stats
        .describe_requests
        .fetch_add(1, Ordering::Relaxed);
    let name = requested_stream_name(body, "DeliveryStreamName", "DeliveryStreamARN");
    let description = answers::delivery_stream_description(&name, state.created);
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
    protocol::error_response(wire, status, kind, message, request_id())
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    protocol::json_response(status, body, request_id())
}

/// Every answer carries the same request id: making fresh ones would cost the measurement.
fn request_id() -> HeaderValue {
    HeaderValue::from_static("00000000-0000-0000-0000-000000000000")
}
