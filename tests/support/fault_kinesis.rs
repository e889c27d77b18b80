//! A Kinesis Data Streams (and Firehose) endpoint that misbehaves on purpose, for tests of what
//! the agent does when the service does not simply say yes.
//!
//! It speaks the real JSON 1.1 wire format, keeps the data of every record it stores, and fails
//! calls and records the ways the real services do: per-record and whole-call throttling, server
//! errors, connections closed without an answer (before or after storing), answers that arrive
//! after the client has given up, slow answers, rate limits and a full outage. Which call or
//! record fails is drawn from a seeded random sequence, so a run can be repeated.
//!
//! A Kinesis stream has [`Faults::shards`] shards (see `shards.rs`): `ListShards` lists them,
//! `PutRecords` routes each record by the MD5 of its partition key, or by its
//! `ExplicitHashKey`, answers the shard it landed on, and can throttle one shard or each on its
//! own. A test can split a shard while the server runs ([`FaultKinesis::split_shard`]) or
//! re-make the map with another count. Every stream the server is asked about has the same
//! shards.
//!
//! `PutRecords` is read in AWS JSON 1.1 and in AWS CBOR 1.1 (`Content-Type:
//! application/x-amz-cbor-1.1`) and answered in the format it came in, every fault alike; the
//! stats count which format each put call used. The describe and list operations, which the
//! agent makes through the AWS SDK, speak JSON; `PutRecordBatch` too, as Firehose does.
//!
//! Every request must carry a valid SigV4 signature (checked by [`sigv4`], code of its own) by a
//! key the server knows: [`FaultKinesis::credentials`] (what every agent the tests start signs
//! with), the other keys of [`KNOWN_CREDENTIALS`], keys added with
//! [`FaultKinesis::add_credentials`], and the temporary keys its own STS `AssumeRole` issued,
//! with their session token and until they expire. A request that fails is refused as the
//! service refuses it, and counted.
//!
//! [`FaultKinesis::start_tls`] serves HTTPS (HTTP/2 or HTTP/1.1, by ALPN) instead, with a
//! certificate for `localhost` and `127.0.0.1` from a CA made at start, whose certificate
//! [`FaultKinesis::ca_pem_path`] names.
//!
//! The server runs on a runtime of its own, so sync and async tests alike can drive it, and it
//! stops when dropped. Record sizes are not limited; the record count per call is, as the
//! service does.

pub mod cbor;
mod shards;
pub mod sigv4;
pub mod tls;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use ciborium::Value;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::cbor::{map, text_value, PutRecordsCall, RecordIn};
pub use self::shards::ShardStats;
use self::shards::{sequence_number, shard_count, ShardIndex, ShardMap};
use self::sigv4::{Authorization, Refusal, Signable};
use self::tls::ThrowawayCa;

const JSON_1_1: &str = "application/x-amz-json-1.1";
const CBOR_1_1: &str = "application/x-amz-cbor-1.1";
const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const DESCRIBE_STREAM_SUMMARY: &str = "Kinesis_20131202.DescribeStreamSummary";
const LIST_SHARDS: &str = "Kinesis_20131202.ListShards";
const PUT_RECORD_BATCH: &str = "Firehose_20150804.PutRecordBatch";
const DESCRIBE_DELIVERY_STREAM: &str = "Firehose_20150804.DescribeDeliveryStream";

/// Both services take 1 to 500 records per call.
const MAX_RECORDS_PER_CALL: usize = 500;
/// Kinesis partition keys are 1 to 256 Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// The seed of [`FaultKinesis::start`]; any fixed value makes runs repeatable.
const DEFAULT_SEED: u64 = 0x6b69_6e73_6869_7021;
const LISTEN_BACKLOG: u32 = 1024;
/// How long [`FaultKinesis::set_down`] waits for open connections to close, or for the port to
/// become free again, before it gives up and fails the test.
const OUTAGE_SWITCH_DEADLINE: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// What the HTTPS listener offers, the services' preference first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The key pair tests sign with: what the test harness gives every agent it starts
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, see `kinesalite::env_for_agent`).
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";

/// Every access key the server knows from the start, with its secret: the account's users.
/// Besides [`ACCESS_KEY_ID`], the static keys that tests write into agent configs and
/// credentials files (`tests/destinations.rs`); a test with a key of its own adds it with
/// [`FaultKinesis::add_credentials`]. A session token sent with one of these is signed over
/// but not checked; the temporary keys of the server's STS must bring theirs.
pub const KNOWN_CREDENTIALS: [(&str, &str); 4] = [
    (ACCESS_KEY_ID, SECRET_ACCESS_KEY),
    (
        "AKIAKINSHIPTESTKEY01",
        "kinshipTestSecret/MustNeverBeLogged+0123456789",
    ),
    ("AKIAPROFILEKEY000001", "profile-secret"),
    ("AKIASTATICKEY0000001", "static-secret"),
];

/// An access key id and its secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestCredentials {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
}

/// What goes wrong, in percent of calls or of records. Every field can be changed while the
/// server runs ([`FaultKinesis::set_faults`]); the next call sees the change.
///
/// Faults apply to `PutRecords` and `PutRecordBatch` only; the describe and list operations always
/// answer. The call-level faults exclude one another: one draw per call picks at most one, in the
/// order of the fields below, so their percentages should add up to 100 at most. Records of a call
/// that stores (no fault, `reset_after`, `stall`, `slow`) then each get their own draw for the
/// record-level faults, and what survives those meets the rate limits: the flow-wide one, then
/// its shard's own. A record refused by either takes no token from the other.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Per record: `ProvisionedThroughputExceededException` (Firehose:
    /// `ServiceUnavailableException`); the record is not stored.
    pub record_throttle_percent: f64,
    /// Per record: `InternalFailure`; the record is not stored.
    pub record_internal_percent: f64,
    /// A record refused by either per-record fault makes the rest of its call's records for
    /// the same shard refused the same way, as a shard over its limit refuses them: then a
    /// call never stores a record after an earlier one of its shard that it refused.
    pub refusals_hold_shard: bool,
    /// Whole call: Kinesis answers 400 `ProvisionedThroughputExceededException`; Firehose answers
    /// 500 `ServiceUnavailableException` (its model marks that error a server fault). Nothing is
    /// stored.
    pub call_throttle_percent: f64,
    /// Whole call: 500 `InternalFailure` and 503 `ServiceUnavailable` (Firehose:
    /// `ServiceUnavailableException`) in turn. Nothing is stored.
    pub call_5xx_percent: f64,
    /// The request is read, nothing is stored and the connection is closed without an answer.
    pub reset_before_percent: f64,
    /// The records are stored as a normal answer would have reported them, then the connection is
    /// closed without an answer: the client cannot know, and sends them again.
    pub reset_after_percent: f64,
    /// The records are stored, then the answer waits `stall` (meant to be longer than the
    /// client's timeout, so the client gives up and sends them again).
    pub stall_percent: f64,
    pub stall: Duration,
    /// The records are stored and the answer comes after `slow` (meant to be shorter than the
    /// client's timeout).
    pub slow_percent: f64,
    pub slow: Duration,
    /// A write limit over all the records of every stream, whatever their shards: a token
    /// bucket holding one second's worth of records, full at start and whenever this value
    /// changes. Records beyond it get `ProvisionedThroughputExceededException` (Firehose:
    /// `ServiceUnavailableException`).
    pub records_per_second: Option<u64>,
    /// How many shards a Kinesis stream has (0 and 1 both mean one), cutting the hash key space
    /// evenly, with ids `shardId-000000000000` on. Changing it while the server runs closes
    /// every open shard and makes this many new ones, numbered after all shards so far.
    pub shards: u32,
    /// Each shard's own write limit, as [`Faults::records_per_second`] is the flow's: a token
    /// bucket per shard, full at start, for a new shard and whenever the shard's limit changes.
    /// Records beyond it get `ProvisionedThroughputExceededException`, naming the shard.
    pub shard_records_per_second: Option<u64>,
    /// A hot shard: the open shard at this position in hash key order
    /// ([`FaultKinesis::shard_ids`]) is limited to this many records per second (the lower of
    /// the two when `shard_records_per_second` is set too); the others are not, unless
    /// `shard_records_per_second` limits them.
    pub hot_shard: Option<(usize, u64)>,
    /// `MaxRecordSizeInKiB` in `DescribeStreamSummary` (a stream owner's raised or lowered
    /// record limit); absent when `None`, as older endpoints answer.
    pub max_record_size_kib: Option<u32>,
    /// `DescribeStreamSummary` and `DescribeDeliveryStream` answer `AccessDeniedException`, as
    /// for credentials without the describe permission.
    pub describe_denied: bool,
    /// How long the credentials STS `AssumeRole` hands out last (`None`: one hour).
    pub sts_credentials_lifetime: Option<Duration>,
}

/// Credentials the server's STS issued, and which keys signed the data calls.
#[derive(Clone, Debug, Default)]
pub struct StsLog {
    /// Access key id and expiry of each `AssumeRole` answer, in order.
    pub issued: Vec<(String, SystemTime)>,
    /// Access key id that signed each `PutRecords` or `PutRecordBatch` call, and when.
    pub signed: Vec<(String, SystemTime)>,
}

/// What the server has seen and done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests read, of every operation (requests dropped by an outage before they were read
    /// are not counted).
    pub calls: u64,
    /// Valid `PutRecords` and `PutRecordBatch` calls, whatever their fate.
    pub put_calls: u64,
    /// Valid put calls read as AWS JSON 1.1 and as AWS CBOR 1.1 (they add up to `put_calls`).
    pub json_put_calls: u64,
    pub cbor_put_calls: u64,
    /// Requests answered 400 because they were malformed, too large or of an unknown operation.
    pub invalid_calls: u64,
    /// Requests whose SigV4 signature was checked and found good.
    pub signatures_verified: u64,
    /// Requests refused for their signature: none, malformed, an unknown or expired key, or a
    /// mismatch. They are counted in `calls` and in nothing else.
    pub signatures_refused: u64,
    /// TLS clients that did not finish a handshake (one that does not trust the CA, say).
    pub tls_handshakes_failed: u64,
    pub records_stored: u64,
    pub record_throttled: u64,
    pub record_internal: u64,
    /// Records refused by the flow-wide rate limit ([`Faults::records_per_second`]).
    pub rate_limited: u64,
    /// Records refused by their shard's own limit ([`Faults::shard_records_per_second`],
    /// [`Faults::hot_shard`]).
    pub shard_rate_limited: u64,
    pub calls_throttled: u64,
    pub calls_5xx: u64,
    pub resets_before: u64,
    pub resets_after: u64,
    pub stalls: u64,
    pub slow: u64,
}

/// A record the server stored, as [`FaultKinesis::stored`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The shard it was stored in; empty for a Firehose record.
    pub shard_id: String,
    /// Empty for a Firehose record.
    pub partition_key: String,
    pub data: Vec<u8>,
    pub at: Instant,
}

/// A running fault-injecting endpoint. See the module documentation.
pub struct FaultKinesis {
    addr: SocketAddr,
    /// The CA and acceptor of an HTTPS server; `None` for plain HTTP.
    tls: Option<(ThrowawayCa, TlsAcceptor)>,
    shared: Arc<Shared>,
    /// The accept loop and connections while the server is up; `None` during an outage.
    listening: Mutex<Option<Listening>>,
    handle: Handle,
    /// Taken by `drop`, which shuts it down without waiting (it may run inside another runtime).
    runtime: Option<Runtime>,
}

impl FaultKinesis {
    /// Serves on 127.0.0.1 (a free port) from a runtime on its own threads, so sync tests can use
    /// it too. Faults are drawn from a fixed seed.
    pub fn start(faults: Faults) -> FaultKinesis {
        FaultKinesis::start_seeded(faults, DEFAULT_SEED)
    }

    /// Like [`FaultKinesis::start`], with the seed of the random sequence that picks the calls
    /// and records that fail.
    pub fn start_seeded(faults: Faults, seed: u64) -> FaultKinesis {
        FaultKinesis::start_with(faults, seed, false)
    }

    /// Like [`FaultKinesis::start`], serving HTTPS (HTTP/2 or HTTP/1.1) with a certificate for
    /// `localhost` and `127.0.0.1` from a CA made now: trust [`FaultKinesis::ca_pem_path`] and
    /// use [`FaultKinesis::endpoint`] (`https://localhost:PORT`).
    pub fn start_tls(faults: Faults) -> FaultKinesis {
        FaultKinesis::start_with(faults, DEFAULT_SEED, true)
    }

    pub fn start_tls_seeded(faults: Faults, seed: u64) -> FaultKinesis {
        FaultKinesis::start_with(faults, seed, true)
    }

    fn start_with(faults: Faults, seed: u64, https: bool) -> FaultKinesis {
        let tls = https.then(|| {
            let ca = ThrowawayCa::generate(&ALPN).unwrap_or_else(|error| {
                panic!("making the fault server's TLS certificate: {error}")
            });
            let acceptor = ca.acceptor();
            (ca, acceptor)
        });
        let socket = reusable_socket(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("binding a loopback port for the fault server");
        let addr = socket
            .local_addr()
            .expect("a bound socket knows its address");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-kinesis")
            .enable_all()
            .build()
            .expect("starting the fault server's runtime");
        let handle = runtime.handle().clone();
        let listener = match listen(&handle, socket) {
            Ok(listener) => listener,
            Err(error) => {
                // Dropping a runtime inside a test's runtime would panic over this message.
                runtime.shutdown_background();
                panic!("listening on {addr} for the fault server: {error}");
            }
        };
        let now = Instant::now();
        let mut shards = ShardMap::new(faults.shards);
        shards.apply_limits(&faults, now);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rate_limit: RateLimit::for_faults(&faults, now),
                faults,
                rng: fastrand::Rng::with_seed(seed),
                stored: Vec::new(),
                shards,
                stats: FaultStats::default(),
                next_sequence: 0,
                sts: StsLog::default(),
                identities: KNOWN_CREDENTIALS
                    .iter()
                    .map(|&(key, secret)| (key.to_owned(), Identity::permanent(secret)))
                    .collect(),
            }),
            next_request: AtomicU64::new(1),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        });
        let acceptor = tls.as_ref().map(|(_, acceptor)| acceptor.clone());
        let listening = serve(&handle, listener, Arc::clone(&shared), acceptor);
        FaultKinesis {
            addr,
            tls,
            shared,
            listening: Mutex::new(Some(listening)),
            handle,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for a server started with
    /// [`FaultKinesis::start_tls`]: for the SDK's and the agent's `endpoint_url`. It stays the
    /// same across outages.
    pub fn endpoint(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The PEM file of the CA that signed an HTTPS server's certificate, for the agent's
    /// `aws.tls.ca_file`; it lasts as long as the server. Panics for a plain HTTP server.
    pub fn ca_pem_path(&self) -> &Path {
        match &self.tls {
            Some((ca, _)) => ca.ca_pem_path(),
            None => panic!("ca_pem_path: this fault server speaks plain HTTP; start it with FaultKinesis::start_tls"),
        }
    }

    /// The key pair tests should sign with ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]): the one
    /// the test harness gives every agent it starts.
    pub fn credentials() -> TestCredentials {
        TestCredentials {
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET_ACCESS_KEY,
        }
    }

    /// Teaches the server another access key and its secret (a permanent key: any session
    /// token is accepted with it); replaces the secret of a key it knew.
    pub fn add_credentials(&self, access_key_id: &str, secret_access_key: &str) {
        self.shared.lock().identities.insert(
            access_key_id.to_owned(),
            Identity::permanent(secret_access_key),
        );
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the faults; calls that arrive from now on see the new ones. A new shard count
    /// re-makes the shard map (see [`Faults::shards`]).
    pub fn set_faults(&self, faults: Faults) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let state = &mut *state;
        if faults.records_per_second != state.faults.records_per_second {
            state.rate_limit = RateLimit::for_faults(&faults, now);
        }
        if shard_count(faults.shards) != shard_count(state.faults.shards) {
            state.shards.remake(faults.shards, state.next_sequence);
        }
        state.faults = faults;
        state.shards.apply_limits(&state.faults, now);
    }

    /// Splits the open shard at `position` in hash key order ([`FaultKinesis::shard_ids`]) at
    /// the middle of its hash key range into two new shards, which name it as their parent, and
    /// closes it; from the next call on, its records go to the children. Panics when there is
    /// no open shard at `position`.
    pub fn split_shard(&self, position: usize) {
        let mut state = self.shared.lock();
        let state = &mut *state;
        if let Err(message) = state.shards.split(position, state.next_sequence) {
            panic!("split_shard: {message}");
        }
        state.shards.apply_limits(&state.faults, Instant::now());
    }

    /// The ids of the open shards, in hash key order.
    pub fn shard_ids(&self) -> Vec<String> {
        self.shared.lock().shards.open_ids()
    }

    /// What each shard ever made has stored and refused, in the order of their ids.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.shared.lock().shards.stats()
    }

    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// `true`: an outage. The listening socket is closed and every open connection dropped,
    /// calls in flight included, so clients get connection refused; returns once all of that has
    /// happened. `false`: listens again on the same port.
    pub fn set_down(&self, down: bool) {
        let mut listening = self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (down, listening.take()) {
            (true, Some(running)) => {
                running.stop.cancel();
                running.tasks.close();
                let (closed, all_closed) = mpsc::channel();
                let tasks = running.tasks.clone();
                self.handle.spawn(async move {
                    tasks.wait().await;
                    let _ = closed.send(());
                });
                all_closed
                    .recv_timeout(OUTAGE_SWITCH_DEADLINE)
                    .expect("the fault server's connections close soon after an outage begins");
            }
            (false, None) => {
                let listener = self.listen_again();
                let acceptor = self.tls.as_ref().map(|(_, acceptor)| acceptor.clone());
                *listening = Some(serve(
                    &self.handle,
                    listener,
                    Arc::clone(&self.shared),
                    acceptor,
                ));
            }
            (_, unchanged) => *listening = unchanged,
        }
    }

    /// Binds the server's port again. The port was free a moment ago, but another test may have
    /// been handed it in between, so this tries until a deadline.
    fn listen_again(&self) -> TcpListener {
        let deadline = Instant::now() + OUTAGE_SWITCH_DEADLINE;
        loop {
            match reusable_socket(self.addr).and_then(|socket| listen(&self.handle, socket)) {
                Ok(listener) => return listener,
                Err(error) if Instant::now() >= deadline => {
                    panic!("listening again on {} after an outage: {error}", self.addr)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The data of every record stored, in the order stored (duplicates included), all streams
    /// together.
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        let state = self.shared.lock();
        state.stored.iter().map(|kept| kept.data.clone()).collect()
    }

    /// Every record stored, with its shard, partition key and when it was stored, in the order
    /// stored (duplicates included), all streams together.
    pub fn stored(&self) -> Vec<StoredRecord> {
        let state = self.shared.lock();
        state
            .stored
            .iter()
            .map(|kept| StoredRecord {
                shard_id: kept
                    .shard
                    .map(|index| state.shards.shard(index).id.to_string())
                    .unwrap_or_default(),
                partition_key: kept.partition_key.clone().unwrap_or_default(),
                data: kept.data.clone(),
                at: kept.at,
            })
            .collect()
    }

    /// What the server's STS issued and which keys signed the data calls.
    pub fn sts_log(&self) -> StsLog {
        self.shared.lock().sts.clone()
    }

    pub fn accepted_len(&self) -> usize {
        self.shared.lock().stored.len()
    }

    pub fn stats(&self) -> FaultStats {
        self.shared.lock().stats
    }
}

impl Drop for FaultKinesis {
    fn drop(&mut self) {
        if let Some(running) = self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            running.stop.cancel();
        }
        if let Some(runtime) = self.runtime.take() {
            // Does not block, so it is allowed where the test itself runs on a runtime.
            runtime.shutdown_background();
        }
    }
}

/// How the records a test wrote compare with those the server stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Expected records of which fewer copies were stored than were expected.
    pub lost: usize,
    /// Copies stored beyond the expected number of an expected record.
    pub duplicates: usize,
    /// Stored records that match no expected record at all (a corrupted or split line).
    pub unexpected: usize,
}

/// Compares records as multisets: order is ignored, and a record expected twice must be stored
/// twice.
pub fn delivery_report(expected: &[Vec<u8>], accepted: &[Vec<u8>]) -> DeliveryReport {
    // (copies expected, copies stored) per distinct record.
    let mut counts: HashMap<&[u8], (usize, usize)> = HashMap::with_capacity(expected.len());
    for record in expected {
        counts.entry(record.as_slice()).or_default().0 += 1;
    }
    let mut report = DeliveryReport::default();
    for record in accepted {
        match counts.get_mut(record.as_slice()) {
            Some((_, stored)) => *stored += 1,
            None => report.unexpected += 1,
        }
    }
    for &(wanted, stored) in counts.values() {
        report.lost += wanted.saturating_sub(stored);
        report.duplicates += stored.saturating_sub(wanted);
    }
    report
}

/// Lines written vs records stored: how many of `expected` are missing, and how many extra
/// records arrived. Extra copies of expected records and records that match none are both
/// counted as extra, so `(0, 0)` means exactly what was written was stored; see
/// [`delivery_report`] to tell the two apart.
pub fn losses_and_duplicates(expected: &[Vec<u8>], accepted: &[Vec<u8>]) -> (usize, usize) {
    let report = delivery_report(expected, accepted);
    (report.lost, report.duplicates + report.unexpected)
}

struct Shared {
    state: Mutex<State>,
    next_request: AtomicU64,
    /// Seconds since the epoch, reported as every stream's creation time.
    created: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh `x-amzn-requestid`, shaped like the service's UUIDs.
    fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}

/// Everything a call reads or changes, behind one lock so that the draws, the rate limit and the
/// stored records of a call are consistent with each other.
struct State {
    faults: Faults,
    rng: fastrand::Rng,
    /// The flow-wide limit.
    rate_limit: Option<RateLimit>,
    stored: Vec<Kept>,
    shards: ShardMap,
    stats: FaultStats,
    /// The last sequence number handed out (0 before the first).
    next_sequence: u64,
    sts: StsLog,
    /// Secrets by access key id.
    identities: HashMap<String, Identity>,
}

/// What the server knows of an access key.
#[derive(Clone)]
struct Identity {
    secret: String,
    /// A temporary key's session token and expiry.
    session: Option<(String, SystemTime)>,
}

impl Identity {
    fn permanent(secret: &str) -> Identity {
        Identity {
            secret: secret.to_owned(),
            session: None,
        }
    }
}

/// A stored record: [`StoredRecord`] before it is shown.
struct Kept {
    /// `None` for a Firehose record, as is the partition key.
    shard: Option<ShardIndex>,
    partition_key: Option<String>,
    data: Vec<u8>,
    at: Instant,
}

/// A token bucket of records per second, holding one second's worth.
struct RateLimit {
    per_second: u64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimit {
    /// A full bucket.
    fn new(per_second: u64, now: Instant) -> RateLimit {
        RateLimit {
            per_second,
            tokens: per_second as f64,
            refilled_at: now,
        }
    }

    fn for_faults(faults: &Faults, now: Instant) -> Option<RateLimit> {
        faults
            .records_per_second
            .map(|per_second| RateLimit::new(per_second, now))
    }

    fn per_second(&self) -> u64 {
        self.per_second
    }

    /// Whether a record may pass now; [`RateLimit::spend`] takes its token. Checking first
    /// lets a record that another limit refuses leave this one's token in place.
    fn ready(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        let capacity = self.per_second as f64;
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.refilled_at = now;
        self.tokens >= 1.0
    }

    fn spend(&mut self) {
        self.tokens -= 1.0;
    }
}

/// One listening period: cancelling `stop` closes the listener and every connection.
struct Listening {
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// A socket bound to `addr` that may take a port back while old connections linger in
/// TIME_WAIT, which an outage followed by a restart needs.
fn reusable_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Listens on `socket`, registered with the server's runtime (the caller may be on another).
fn listen(handle: &Handle, socket: TcpSocket) -> io::Result<TcpListener> {
    let _entered = handle.enter();
    socket.listen(LISTEN_BACKLOG)
}

fn serve(
    handle: &Handle,
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) -> Listening {
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn_on(
        accept_loop(listener, shared, tls, stop.clone(), tasks.clone()),
        handle,
    );
    Listening { stop, tasks }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            // Returning drops the listener: from here on, connecting is refused.
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let connection = Connection {
                    shared: Arc::clone(&shared),
                    stop: stop.clone(),
                    tasks: tasks.clone(),
                };
                tasks.spawn(connection.serve(stream, tls.clone()));
            }
            Err(_) => {
                // Out of file descriptors and the like: back off rather than spin.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
    }
}

/// One accepted connection and what it needs to serve calls until an outage.
struct Connection {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Connection {
    async fn serve(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        // Answers are written in one go; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return self.serve_http(stream, false).await;
        };
        let handshake = tokio::select! {
            () = self.stop.cancelled() => return,
            handshake = tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, acceptor.accept(stream)) => handshake,
        };
        match handshake {
            Ok(Ok(stream)) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                self.serve_http(stream, h2).await;
            }
            _ => self.shared.lock().stats.tls_handshakes_failed += 1,
        }
    }

    async fn serve_http<I>(self, io: I, h2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let service = service_fn(move |request| handle(Arc::clone(&shared), request));
        let io = TokioIo::new(io);
        // An error is a client hanging up, or a call this server chose to leave unanswered
        // (over HTTP/2, that stream is reset). An outage drops the connection, which closes its
        // socket, even mid-call.
        if h2 {
            let executor = TrackedExecutor {
                stop: self.stop.clone(),
                tasks: self.tasks.clone(),
            };
            let connection = http2::Builder::new(executor).serve_connection(io, service);
            tokio::select! {
                _ = connection => {}
                () = self.stop.cancelled() => {}
            }
        } else {
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            tokio::select! {
                _ = connection => {}
                () = self.stop.cancelled() => {}
            }
        }
    }
}

/// Runs an HTTP/2 connection's streams as tasks of the listening period, which an outage ends
/// as it ends HTTP/1.1 calls in flight.
#[derive(Clone)]
struct TrackedExecutor {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = future => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The service's way of leaving a call unanswered: returning it makes hyper close the
/// connection without writing a response.
#[derive(Debug)]
struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the fault server closed the connection without an answer, on purpose")
    }
}

impl std::error::Error for Unanswered {}

/// What to do with a call once it has been handled.
enum Reply {
    Now(Response<Full<Bytes>>),
    After(Duration, Response<Full<Bytes>>),
    Unanswered,
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Unanswered> {
    let (parts, body) = request.into_parts();
    // A client that cannot finish sending its request gets no answer either.
    let body = body.collect().await.map_err(|_| Unanswered)?.to_bytes();
    shared.lock().stats.calls += 1;
    let wire = Wire::of(&parts.headers);
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let is_sts = target.is_empty() && body.starts_with(b"Action=");
    let service = if is_sts {
        "sts"
    } else if target.starts_with("Firehose_") {
        "firehose"
    } else {
        "kinesis"
    };
    let signer = match authenticate(&shared, &parts, &body, service) {
        Ok(signer) => {
            shared.lock().stats.signatures_verified += 1;
            signer
        }
        Err(refused) => {
            shared.lock().stats.signatures_refused += 1;
            return Ok(if is_sts {
                sts_error(&shared, &refused)
            } else {
                error_response(
                    &shared,
                    wire,
                    StatusCode::BAD_REQUEST,
                    refused.code,
                    &refused.message,
                )
            });
        }
    };
    if matches!(target, PUT_RECORDS | PUT_RECORD_BATCH) {
        shared
            .lock()
            .sts
            .signed
            .push((signer.clone(), SystemTime::now()));
    }
    let reply = match target {
        "" if is_sts => Reply::Now(sts(&shared, &body, &signer)),
        PUT_RECORDS => put_records(&shared, wire, &body),
        PUT_RECORD_BATCH => put_record_batch(&shared, wire, &body),
        DESCRIBE_STREAM_SUMMARY => Reply::Now(describe_stream_summary(&shared, wire, &body)),
        LIST_SHARDS => Reply::Now(list_shards(&shared)),
        DESCRIBE_DELIVERY_STREAM => Reply::Now(describe_delivery_stream(&shared, &body)),
        other => Reply::Now(invalid(
            &shared,
            wire,
            "UnknownOperationException",
            &format!("operation {other:?} is not served here"),
        )),
    };
    match reply {
        Reply::Now(response) => Ok(response),
        Reply::After(delay, response) => {
            tokio::time::sleep(delay).await;
            Ok(response)
        }
        Reply::Unanswered => Err(Unanswered),
    }
}

/// A request refused for its signature, in the words of the JSON services.
struct Unauthenticated {
    code: &'static str,
    message: String,
}

impl Unauthenticated {
    fn new(code: &'static str, message: impl Into<String>) -> Unauthenticated {
        Unauthenticated {
            code,
            message: message.into(),
        }
    }
}

/// Checks the request's SigV4 signature for `service` in the server's region; returns the
/// access key id that signed it.
fn authenticate(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    service: &str,
) -> Result<String, Unauthenticated> {
    let Some(header) = parts.headers.get("authorization") else {
        return Err(Unauthenticated::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let authorization = header
        .to_str()
        .map_err(|_| "the authorization header is not ASCII".to_owned())
        .and_then(Authorization::parse)
        .map_err(|message| Unauthenticated::new("IncompleteSignatureException", message))?;
    if authorization.service != service {
        return Err(Unauthenticated::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{service}'. (got '{}')",
                authorization.service
            ),
        ));
    }
    if authorization.region != REGION {
        return Err(Unauthenticated::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region. (got '{}', this endpoint is {REGION})",
                authorization.region
            ),
        ));
    }
    let identity = shared
        .lock()
        .identities
        .get(&authorization.access_key_id)
        .cloned();
    let invalid_token = || {
        Unauthenticated::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let identity = identity.ok_or_else(invalid_token)?;
    if let Some((token, expires)) = &identity.session {
        let sent = parts
            .headers
            .get("x-amz-security-token")
            .and_then(|value| value.to_str().ok());
        if sent != Some(token.as_str()) {
            return Err(invalid_token());
        }
        if SystemTime::now() >= *expires {
            return Err(Unauthenticated::new(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ));
        }
    }
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // HTTP/2 carries the host as `:authority`, which SigV4 signs as `host`.
    if !parts.headers.contains_key("host") {
        if let Some(authority) = parts.uri.authority() {
            headers.push(("host".to_owned(), authority.as_str().to_owned()));
        }
    }
    let request = Signable {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    match sigv4::verify(
        &request,
        &authorization,
        &identity.secret,
        SystemTime::now(),
    ) {
        Ok(()) => Ok(authorization.access_key_id),
        Err(Refusal::Incomplete(message)) => Err(Unauthenticated::new(
            "IncompleteSignatureException",
            message,
        )),
        Err(Refusal::Mismatch(message)) => {
            Err(Unauthenticated::new("InvalidSignatureException", message))
        }
    }
}

/// The format a request's body is in, and so its answer's (the describe and list operations
/// always answer in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Json,
    Cbor,
}

impl Wire {
    fn of(headers: &HeaderMap) -> Wire {
        let cbor = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case(CBOR_1_1));
        if cbor {
            Wire::Cbor
        } else {
            Wire::Json
        }
    }
}

/// Which service's dialect a put call speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Kinesis,
    Firehose,
}

impl Api {
    /// The per-record code of a throttled record, also used for the whole-call throttle.
    fn throttle_code(self) -> &'static str {
        match self {
            Api::Kinesis => "ProvisionedThroughputExceededException",
            Api::Firehose => "ServiceUnavailableException",
        }
    }

    fn call_throttle_status(self) -> StatusCode {
        match self {
            Api::Kinesis => StatusCode::BAD_REQUEST,
            Api::Firehose => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn unavailable_code(self) -> &'static str {
        match self {
            Api::Kinesis => "ServiceUnavailable",
            Api::Firehose => "ServiceUnavailableException",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsRequest<'a> {
    #[serde(borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    records: Vec<KinesisRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KinesisRecord<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(borrow)]
    partition_key: Cow<'a, str>,
    #[serde(borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchRequest<'a> {
    #[serde(borrow)]
    delivery_stream_name: Cow<'a, str>,
    #[serde(borrow, default)]
    records: Vec<FirehoseRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FirehoseRecord<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// The stream a describe request names: a Kinesis stream by name or ARN, or a delivery stream.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StreamRef<'a> {
    #[serde(borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delivery_stream_name: Option<Cow<'a, str>>,
}

impl StreamRef<'_> {
    fn name(&self) -> &str {
        stream_name(self.stream_name.as_deref(), self.stream_arn.as_deref())
            .or(self.delivery_stream_name.as_deref())
            .unwrap_or("stream")
    }
}

fn stream_name<'a>(name: Option<&'a str>, arn: Option<&'a str>) -> Option<&'a str> {
    name.or_else(|| arn.and_then(|arn| arn.rsplit('/').next()))
}

fn put_records(shared: &Shared, wire: Wire, body: &[u8]) -> Reply {
    let call = match wire {
        Wire::Json => json_put_records(body),
        Wire::Cbor => cbor::put_records(body),
    };
    let call = match call {
        Ok(call) => call,
        Err(message) => {
            return Reply::Now(invalid(shared, wire, "SerializationException", &message))
        }
    };
    let Some(stream) = stream_name(call.stream_name.as_deref(), call.stream_arn.as_deref()) else {
        return Reply::Now(invalid(
            shared,
            wire,
            "ValidationException",
            "either StreamName or StreamARN must be given",
        ));
    };
    if let Some(response) = check_count(shared, wire, call.records.len()) {
        return Reply::Now(response);
    }
    let stream = stream.to_owned();
    let mut records = Vec::with_capacity(call.records.len());
    // Validation messages count records from 1.
    for (number, record) in (1..).zip(call.records) {
        let Some(partition_key) = record
            .partition_key
            .filter(|key| (1..=MAX_PARTITION_KEY_CHARS).contains(&key.chars().count()))
        else {
            return Reply::Now(invalid(
                shared,
                wire,
                "ValidationException",
                &format!(
                    "1 validation error detected: Value at 'records.{number}.member.partitionKey' \
                     failed to satisfy constraint: Member must have length between 1 and \
                     {MAX_PARTITION_KEY_CHARS}"
                ),
            ));
        };
        let hash_key = match record.explicit_hash_key {
            Some(text) => match shards::explicit_hash_key(&text, number) {
                Ok(hash_key) => hash_key,
                Err(bad) => return Reply::Now(invalid(shared, wire, bad.code, &bad.message)),
            },
            None => shards::partition_hash_key(&partition_key),
        };
        records.push(RecordToStore {
            data: record.data,
            route: Some(Route {
                partition_key,
                hash_key,
            }),
        });
    }
    put(shared, Api::Kinesis, wire, &stream, records)
}

/// Reads a JSON `PutRecords` body into the shape both formats share, its data decoded.
fn json_put_records(body: &[u8]) -> Result<PutRecordsCall, String> {
    let request: PutRecordsRequest = serde_json::from_slice(body)
        .map_err(|error| format!("the request body is not a valid request: {error}"))?;
    let data = decode_all(request.records.iter().map(|record| &record.data))?;
    Ok(PutRecordsCall {
        stream_name: request.stream_name.map(Cow::into_owned),
        stream_arn: request.stream_arn.map(Cow::into_owned),
        records: request
            .records
            .iter()
            .zip(data)
            .map(|(record, data)| RecordIn {
                data,
                partition_key: Some(record.partition_key.to_string()),
                explicit_hash_key: record.explicit_hash_key.as_deref().map(str::to_owned),
            })
            .collect(),
    })
}

fn put_record_batch(shared: &Shared, wire: Wire, body: &[u8]) -> Reply {
    if wire == Wire::Cbor {
        return Reply::Now(invalid(
            shared,
            wire,
            "SerializationException",
            "PutRecordBatch is read only in AWS JSON 1.1 here: Firehose's API speaks nothing else",
        ));
    }
    let request: PutRecordBatchRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return Reply::Now(malformed(shared, &error)),
    };
    if let Some(response) = check_count(shared, wire, request.records.len()) {
        return Reply::Now(response);
    }
    let data = match decode_all(request.records.iter().map(|record| &record.data)) {
        Ok(data) => data,
        Err(message) => {
            return Reply::Now(invalid(shared, wire, "SerializationException", &message))
        }
    };
    let records = data
        .into_iter()
        .map(|data| RecordToStore { data, route: None })
        .collect();
    put(
        shared,
        Api::Firehose,
        wire,
        &request.delivery_stream_name,
        records,
    )
}

fn check_count(shared: &Shared, wire: Wire, records: usize) -> Option<Response<Full<Bytes>>> {
    (!(1..=MAX_RECORDS_PER_CALL).contains(&records)).then(|| {
        invalid(
            shared,
            wire,
            "ValidationException",
            &format!(
                "1 validation error detected: Value at 'records' failed to satisfy constraint: \
                 Member must have length between 1 and {MAX_RECORDS_PER_CALL} (it has {records})"
            ),
        )
    })
}

/// Decodes every record's data before anything is stored, so a bad record rejects the whole
/// call as the service does. Returns the error message for the first undecodable record.
fn decode_all<'a>(encoded: impl Iterator<Item = &'a Cow<'a, str>>) -> Result<Vec<Vec<u8>>, String> {
    encoded
        .enumerate()
        .map(|(index, data)| {
            base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|error| format!("record {index}: data is not valid base64: {error}"))
        })
        .collect()
}

/// A whole-call fault; at most one per call.
#[derive(Clone, Copy)]
enum CallFault {
    Throttle,
    ServerError,
    ResetBefore,
    ResetAfter,
    Stall(Duration),
    Slow(Duration),
}

fn draw_call_fault(faults: &Faults, rng: &mut fastrand::Rng) -> Option<CallFault> {
    let draw = rng.f64() * 100.0;
    let mut threshold = 0.0;
    [
        (faults.call_throttle_percent, CallFault::Throttle),
        (faults.call_5xx_percent, CallFault::ServerError),
        (faults.reset_before_percent, CallFault::ResetBefore),
        (faults.reset_after_percent, CallFault::ResetAfter),
        (faults.stall_percent, CallFault::Stall(faults.stall)),
        (faults.slow_percent, CallFault::Slow(faults.slow)),
    ]
    .into_iter()
    .find_map(|(percent, fault)| {
        threshold += percent.max(0.0);
        (draw < threshold).then_some(fault)
    })
}

/// A record of a put call, checked and ready to store.
struct RecordToStore {
    data: Vec<u8>,
    /// `None` for a Firehose record, which goes to no shard.
    route: Option<Route>,
}

/// What puts a Kinesis record in a shard.
struct Route {
    partition_key: String,
    /// The MD5 of the partition key, or the record's `ExplicitHashKey`.
    hash_key: u128,
}

/// The fate of one record of a call that stores, with the id of the shard a Kinesis record was
/// routed to (`None` for Firehose).
enum RecordOutcome {
    /// Stored, with this sequence number.
    Stored {
        sequence: u64,
        shard: Option<Arc<str>>,
    },
    Throttled {
        shard: Option<Arc<str>>,
    },
    Internal,
}

impl RecordOutcome {
    fn stored(&self) -> bool {
        matches!(self, RecordOutcome::Stored { .. })
    }
}

/// The shard id a Kinesis answer names.
fn routed(shard: &Option<Arc<str>>) -> &str {
    shard
        .as_deref()
        .expect("every Kinesis record is routed to a shard before it is answered")
}

fn put(shared: &Shared, api: Api, wire: Wire, stream: &str, records: Vec<RecordToStore>) -> Reply {
    let mut state = shared.lock();
    let State {
        faults,
        rng,
        rate_limit,
        stored,
        shards,
        stats,
        next_sequence,
        ..
    } = &mut *state;
    stats.put_calls += 1;
    match wire {
        Wire::Json => stats.json_put_calls += 1,
        Wire::Cbor => stats.cbor_put_calls += 1,
    }
    let fault = draw_call_fault(faults, rng);
    match fault {
        Some(CallFault::Throttle) => {
            stats.calls_throttled += 1;
            return Reply::Now(error_response(
                shared,
                wire,
                api.call_throttle_status(),
                api.throttle_code(),
                &format!("Rate exceeded for stream {stream} under account {ACCOUNT}."),
            ));
        }
        Some(CallFault::ServerError) => {
            stats.calls_5xx += 1;
            let (status, code) = if stats.calls_5xx % 2 == 1 {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, api.unavailable_code())
            };
            return Reply::Now(error_response(
                shared,
                wire,
                status,
                code,
                "The service encountered an internal error; try again.",
            ));
        }
        Some(CallFault::ResetBefore) => {
            stats.resets_before += 1;
            return Reply::Unanswered;
        }
        _ => {}
    }

    let now = Instant::now();
    let throttle_percent = faults.record_throttle_percent;
    let failure_percent = throttle_percent + faults.record_internal_percent;
    let mut outcomes = Vec::with_capacity(records.len());
    // Shards that refused a record of this call, with whether for throttling.
    let mut refusing: HashMap<usize, bool> = HashMap::new();
    for RecordToStore { data, route } in records {
        let shard = route.as_ref().map(|route| shards.route(route.hash_key));
        let shard_id = shard.map(|index| Arc::clone(&shards.shard(index).id));
        let draw = rng.f64() * 100.0;
        let held = shard.and_then(|index| refusing.get(&index).copied());
        let draw = match held {
            Some(true) => 0.0,
            Some(false) => throttle_percent,
            None => draw,
        };
        if faults.refusals_hold_shard && draw < failure_percent {
            if let Some(index) = shard {
                refusing.insert(index, draw < throttle_percent);
            }
        }
        let outcome = if draw < throttle_percent {
            stats.record_throttled += 1;
            RecordOutcome::Throttled { shard: shard_id }
        } else if draw < failure_percent {
            stats.record_internal += 1;
            RecordOutcome::Internal
        } else if rate_limit.as_mut().is_some_and(|limit| !limit.ready(now)) {
            stats.rate_limited += 1;
            RecordOutcome::Throttled { shard: shard_id }
        } else if shard
            .and_then(|index| shards.shard_mut(index).limit.as_mut())
            .is_some_and(|limit| !limit.ready(now))
        {
            stats.shard_rate_limited += 1;
            RecordOutcome::Throttled { shard: shard_id }
        } else {
            // Both limits were ready: each gives up a token only now.
            if let Some(limit) = rate_limit.as_mut() {
                limit.spend();
            }
            if let Some(index) = shard {
                let shard = shards.shard_mut(index);
                if let Some(limit) = shard.limit.as_mut() {
                    limit.spend();
                }
                shard.record_stored(now);
            }
            stats.records_stored += 1;
            stored.push(Kept {
                shard,
                partition_key: route.map(|route| route.partition_key),
                data,
                at: now,
            });
            *next_sequence += 1;
            RecordOutcome::Stored {
                sequence: *next_sequence,
                shard: shard_id,
            }
        };
        if let (RecordOutcome::Throttled { .. }, Some(index)) = (&outcome, shard) {
            shards.shard_mut(index).stats.throttled += 1;
        }
        outcomes.push(outcome);
    }
    match fault {
        Some(CallFault::ResetAfter) => {
            stats.resets_after += 1;
            return Reply::Unanswered;
        }
        Some(CallFault::Stall(_)) => stats.stalls += 1,
        Some(CallFault::Slow(_)) => stats.slow += 1,
        _ => {}
    }
    drop(state);

    let response = match (api, wire) {
        (Api::Kinesis, Wire::Json) => {
            json_response(shared, StatusCode::OK, put_records_body(stream, &outcomes))
        }
        (Api::Kinesis, Wire::Cbor) => cbor_response(
            shared,
            StatusCode::OK,
            cbor::encode(&put_records_cbor(stream, &outcomes)),
        ),
        // Refused before anything was stored (see `put_record_batch`).
        (Api::Firehose, _) => {
            json_response(shared, StatusCode::OK, put_record_batch_body(&outcomes))
        }
    };
    match fault {
        Some(CallFault::Stall(delay) | CallFault::Slow(delay)) => Reply::After(delay, response),
        _ => Reply::Now(response),
    }
}

/// The message of a record refused for its shard's rate, as the service words it.
fn shard_throttled_message(shard: &str, stream: &str) -> String {
    format!("Rate exceeded for shard {shard} in stream {stream} under account {ACCOUNT}.")
}

fn put_records_body(stream: &str, outcomes: &[RecordOutcome]) -> String {
    let failed = outcomes.iter().filter(|outcome| !outcome.stored()).count();
    let mut body = String::with_capacity(48 + outcomes.len() * 96);
    write!(body, "{{\"FailedRecordCount\":{failed},\"Records\":[").expect("writing to a String");
    for (index, outcome) in outcomes.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        match outcome {
            // Real sequence numbers are 56 decimal digits; so are these, and they increase.
            RecordOutcome::Stored { sequence, shard } => write!(
                body,
                "{{\"SequenceNumber\":\"{}\",\"ShardId\":\"{}\"}}",
                sequence_number(*sequence),
                routed(shard)
            ),
            // The stream name is the client's and may need escaping.
            RecordOutcome::Throttled { shard } => write!(
                body,
                "{{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":{}}}",
                json_string(&shard_throttled_message(routed(shard), stream))
            ),
            RecordOutcome::Internal => write!(
                body,
                "{{\"ErrorCode\":\"InternalFailure\",\"ErrorMessage\":\"Internal service failure.\"}}"
            ),
        }
        .expect("writing to a String");
    }
    body.push_str("]}");
    body
}

/// The CBOR answer of `PutRecords`: the same members as the JSON one.
fn put_records_cbor(stream: &str, outcomes: &[RecordOutcome]) -> Value {
    let failed = outcomes.iter().filter(|outcome| !outcome.stored()).count();
    let records = outcomes
        .iter()
        .map(|outcome| match outcome {
            RecordOutcome::Stored { sequence, shard } => map(vec![
                ("SequenceNumber", Value::Text(sequence_number(*sequence))),
                ("ShardId", text_value(routed(shard))),
            ]),
            RecordOutcome::Throttled { shard } => map(vec![
                (
                    "ErrorCode",
                    text_value("ProvisionedThroughputExceededException"),
                ),
                (
                    "ErrorMessage",
                    Value::Text(shard_throttled_message(routed(shard), stream)),
                ),
            ]),
            RecordOutcome::Internal => map(vec![
                ("ErrorCode", text_value("InternalFailure")),
                ("ErrorMessage", text_value("Internal service failure.")),
            ]),
        })
        .collect();
    map(vec![
        ("FailedRecordCount", Value::Integer(failed.into())),
        ("Records", Value::Array(records)),
    ])
}

fn put_record_batch_body(outcomes: &[RecordOutcome]) -> String {
    let failed = outcomes.iter().filter(|outcome| !outcome.stored()).count();
    let mut body = String::with_capacity(64 + outcomes.len() * 96);
    write!(
        body,
        "{{\"FailedPutCount\":{failed},\"Encrypted\":false,\"RequestResponses\":["
    )
    .expect("writing to a String");
    for (index, outcome) in outcomes.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        match outcome {
            RecordOutcome::Stored { sequence, .. } => {
                write!(body, "{{\"RecordId\":\"{sequence:064x}\"}}")
            }
            RecordOutcome::Throttled { .. } => write!(
                body,
                "{{\"ErrorCode\":\"ServiceUnavailableException\",\"ErrorMessage\":\"Slow down.\"}}"
            ),
            RecordOutcome::Internal => write!(
                body,
                "{{\"ErrorCode\":\"InternalFailure\",\"ErrorMessage\":\"Internal service failure.\"}}"
            ),
        }
        .expect("writing to a String");
    }
    body.push_str("]}");
    body
}

fn describe_stream_summary(shared: &Shared, wire: Wire, body: &[u8]) -> Response<Full<Bytes>> {
    let (denied, max_record_size_kib, open_shards) = {
        let state = shared.lock();
        (
            state.faults.describe_denied,
            state.faults.max_record_size_kib,
            state.shards.open_count(),
        )
    };
    if denied {
        return describe_denied(shared, wire, "kinesis:DescribeStreamSummary");
    }
    let request: StreamRef = serde_json::from_slice(body).unwrap_or_default();
    let name = request.name();
    let mut summary = serde_json::json!({
        "StreamDescriptionSummary": {
            "StreamName": name,
            "StreamARN": format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": shared.created,
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": open_shards,
            "ConsumerCount": 0,
        }
    });
    if let Some(kib) = max_record_size_kib {
        summary["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] = kib.into();
    }
    json_response(shared, StatusCode::OK, summary.to_string())
}

fn describe_denied(shared: &Shared, wire: Wire, action: &str) -> Response<Full<Bytes>> {
    error_response(
        shared,
        wire,
        StatusCode::BAD_REQUEST,
        "AccessDeniedException",
        &format!("User: arn:aws:iam::{ACCOUNT}:user/test is not authorized to perform: {action}"),
    )
}

/// Every shard, open and closed, in one page: the agent tells the open ones by their missing
/// `EndingSequenceNumber`.
fn list_shards(shared: &Shared) -> Response<Full<Bytes>> {
    let shards = shared.lock().shards.list_shards_json();
    json_response(shared, StatusCode::OK, shards.to_string())
}

fn describe_delivery_stream(shared: &Shared, body: &[u8]) -> Response<Full<Bytes>> {
    let request: StreamRef = serde_json::from_slice(body).unwrap_or_default();
    let name = request.name();
    let description = serde_json::json!({
        "DeliveryStreamDescription": {
            "DeliveryStreamName": name,
            "DeliveryStreamARN": format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}"),
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamType": "DirectPut",
            "VersionId": "1",
            "CreateTimestamp": shared.created,
            "Destinations": [],
            "HasMoreDestinations": false,
        }
    });
    json_response(shared, StatusCode::OK, description.to_string())
}

fn malformed(shared: &Shared, error: &serde_json::Error) -> Response<Full<Bytes>> {
    invalid(
        shared,
        Wire::Json,
        "SerializationException",
        &format!("the request body is not a valid request: {error}"),
    )
}

/// A 400 for a request the service would refuse whatever the faults.
fn invalid(shared: &Shared, wire: Wire, code: &str, message: &str) -> Response<Full<Bytes>> {
    shared.lock().stats.invalid_calls += 1;
    error_response(shared, wire, StatusCode::BAD_REQUEST, code, message)
}

/// `{"__type": code, "message": message}` in the request's format, with the code in
/// `x-amzn-ErrorType` too, as the services answer.
fn error_response(
    shared: &Shared,
    wire: Wire,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let mut response = match wire {
        Wire::Json => {
            let body = serde_json::json!({"__type": code, "message": message});
            json_response(shared, status, body.to_string())
        }
        Wire::Cbor => {
            let body = map(vec![
                ("__type", text_value(code)),
                ("message", text_value(message)),
            ]);
            cbor_response(shared, status, cbor::encode(&body))
        }
    };
    if let Ok(code) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-errortype", code);
    }
    response
}

fn json_response(shared: &Shared, status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(shared, status, JSON_1_1, Bytes::from(body))
}

fn cbor_response(shared: &Shared, status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    response(shared, status, CBOR_1_1, Bytes::from(body))
}

fn response(
    shared: &Shared,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(request_id) = HeaderValue::from_str(&shared.request_id()) {
        headers.insert("x-amzn-requestid", request_id);
    }
    response
}

/// `text` as a quoted JSON string.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// STS (query protocol, XML answers): `AssumeRole` issues fresh keys that last
/// `sts_credentials_lifetime`; `GetCallerIdentity` names the assumed role for keys it issued.
fn sts(shared: &Shared, body: &[u8], signer: &str) -> Response<Full<Bytes>> {
    let form = String::from_utf8_lossy(body);
    let action = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default()
        .to_owned();
    let request_id = shared.request_id();
    let xml = match action.as_str() {
        "AssumeRole" => {
            let mut state = shared.lock();
            let lifetime = state
                .faults
                .sts_credentials_lifetime
                .unwrap_or(Duration::from_secs(3600));
            let expiration = SystemTime::now() + lifetime;
            let key = format!("ASIAFAULT{:011}", state.sts.issued.len());
            state.sts.issued.push((key.clone(), expiration));
            state.identities.insert(
                key.clone(),
                Identity {
                    secret: format!("fault-secret-{key}"),
                    session: Some((format!("fault-token-{key}"), expiration)),
                },
            );
            format!(
                "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>fault-secret-{key}</SecretAccessKey><SessionToken>fault-token-{key}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROAFAULT:kinship</AssumedRoleId><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/fault/kinship</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></AssumeRoleResponse>",
                humantime::format_rfc3339_seconds(expiration)
            )
        }
        "GetCallerIdentity" => {
            let arn = if signer.starts_with("ASIAFAULT") {
                format!("arn:aws:sts::{ACCOUNT}:assumed-role/fault/kinship")
            } else {
                format!("arn:aws:iam::{ACCOUNT}:user/test")
            };
            format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AIDAFAULT</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            )
        }
        other => {
            return invalid(
                shared,
                Wire::Json,
                "InvalidAction",
                &format!("STS action {other:?} is not served here"),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// STS (query protocol) refuses a signature with an XML error of its own codes.
fn sts_error(shared: &Shared, refused: &Unauthenticated) -> Response<Full<Bytes>> {
    let (status, code) = match refused.code {
        "MissingAuthenticationTokenException" => {
            (StatusCode::FORBIDDEN, "MissingAuthenticationToken")
        }
        "IncompleteSignatureException" => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
        "UnrecognizedClientException" => (StatusCode::FORBIDDEN, "InvalidClientTokenId"),
        "ExpiredTokenException" => (StatusCode::BAD_REQUEST, "ExpiredToken"),
        _ => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
    };
    let message = refused
        .message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        shared.request_id()
    );
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}
