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
//!
//! The listener, the request envelope and the answer bodies are the shared core's
//! ([`super::kinesis_server`]); here live the server's own parts: `handler.rs` takes a call to
//! its operation, `auth.rs` checks its signature, `put.rs` draws the faults of a put call and
//! stores its records, `describe.rs` and `sts.rs` answer the other operations, `state.rs` holds
//! what they share, and `report.rs` compares what a test wrote with what was stored.

mod auth;
pub mod cbor;
mod describe;
mod handler;
mod put;
mod report;
mod shards;
pub mod sigv4;
mod state;
mod sts;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::{Handle, Runtime};
use tokio_rustls::TlsAcceptor;

pub use self::report::{delivery_report, losses_and_duplicates, DeliveryReport};
pub use self::shards::ShardStats;
use self::shards::{shard_count, ShardMap};
use self::state::{Identity, RateLimit, Shared, State};
use super::kinesis_server::listener::Listening;
use super::kinesis_server::tls::ThrowawayCa;
use super::wait;

/// The seed of [`FaultKinesis::start`]; any fixed value makes runs repeatable.
const DEFAULT_SEED: u64 = 0x6b69_6e73_6869_7021;
const LISTEN_BACKLOG: u32 = 1024;
/// How long [`FaultKinesis::set_down`] waits for open connections to close, or for the port to
/// become free again, before it gives up and fails the test.
const OUTAGE_SWITCH_DEADLINE: Duration = Duration::from_secs(10);
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
        let listening = Listening::start(&handle, listener, Arc::clone(&shared), acceptor);
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
            (true, Some(running)) => assert!(
                running.stop_and_wait(&self.handle, OUTAGE_SWITCH_DEADLINE),
                "the fault server's connections close soon after an outage begins"
            ),
            (false, None) => {
                let listener = self.listen_again();
                let acceptor = self.tls.as_ref().map(|(_, acceptor)| acceptor.clone());
                *listening = Some(Listening::start(
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
        let mut last_error = None;
        let listener = wait::poll(OUTAGE_SWITCH_DEADLINE, || {
            match reusable_socket(self.addr).and_then(|socket| listen(&self.handle, socket)) {
                Ok(listener) => Some(listener),
                Err(error) => {
                    last_error = Some(error);
                    None
                }
            }
        });
        listener.unwrap_or_else(|| {
            panic!(
                "listening again on {} after an outage: {}",
                self.addr,
                last_error.map_or_else(String::new, |error| error.to_string())
            )
        })
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
            running.stop();
        }
        if let Some(runtime) = self.runtime.take() {
            // Does not block, so it is allowed where the test itself runs on a runtime.
            runtime.shutdown_background();
        }
    }
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
