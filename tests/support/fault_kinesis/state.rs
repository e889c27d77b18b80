//! What every call of the fault server reads or changes: the faults, the random sequence, the
//! stored records, the shards, the stats and the keys it knows, behind one lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::handler::{self, Unanswered};
use super::shards::{ShardIndex, ShardMap};
use super::{FaultStats, Faults, StsLog};
use crate::support::kinesis_server::listener::Endpoint;

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) next_request: AtomicU64,
    /// Seconds since the epoch, reported as every stream's creation time.
    pub(super) created: u64,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh `x-amzn-requestid`, shaped like the service's UUIDs.
    pub(super) fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}

/// Everything a call reads or changes, behind one lock so that the draws, the rate limit and the
/// stored records of a call are consistent with each other.
pub(super) struct State {
    pub(super) faults: Faults,
    pub(super) rng: fastrand::Rng,
    /// The flow-wide limit.
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) stored: Vec<Kept>,
    pub(super) shards: ShardMap,
    pub(super) stats: FaultStats,
    /// The last sequence number handed out (0 before the first).
    pub(super) next_sequence: u64,
    pub(super) sts: StsLog,
    /// Secrets by access key id.
    pub(super) identities: HashMap<String, Identity>,
}

/// What the server knows of an access key.
#[derive(Clone)]
pub(super) struct Identity {
    pub(super) secret: String,
    /// A temporary key's session token and expiry.
    pub(super) session: Option<(String, SystemTime)>,
}

impl Identity {
    pub(super) fn permanent(secret: &str) -> Identity {
        Identity {
            secret: secret.to_owned(),
            session: None,
        }
    }
}

/// A stored record: [`StoredRecord`] before it is shown.
pub(super) struct Kept {
    /// `None` for a Firehose record, as is the partition key.
    pub(super) shard: Option<ShardIndex>,
    pub(super) partition_key: Option<String>,
    pub(super) data: Vec<u8>,
    pub(super) at: Instant,
}

/// A token bucket of records per second, holding one second's worth.
pub(super) struct RateLimit {
    per_second: u64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimit {
    /// A full bucket.
    pub(super) fn new(per_second: u64, now: Instant) -> RateLimit {
        RateLimit {
            per_second,
            tokens: per_second as f64,
            refilled_at: now,
        }
    }

    pub(super) fn for_faults(faults: &Faults, now: Instant) -> Option<RateLimit> {
        faults
            .records_per_second
            .map(|per_second| RateLimit::new(per_second, now))
    }

    pub(super) fn per_second(&self) -> u64 {
        self.per_second
    }

    /// Whether a record may pass now; [`RateLimit::spend`] takes its token. Checking first
    /// lets a record that another limit refuses leave this one's token in place.
    pub(super) fn ready(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        let capacity = self.per_second as f64;
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.refilled_at = now;
        self.tokens >= 1.0
    }

    pub(super) fn spend(&mut self) {
        self.tokens -= 1.0;
    }
}

impl Endpoint for Shared {
    type Error = Unanswered;

    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl std::future::Future<Output = Result<Response<Full<Bytes>>, Unanswered>> + Send {
        handler::handle(self, request)
    }

    fn tls_handshake_failed(&self, _why: &str) {
        self.lock().stats.tls_handshakes_failed += 1;
    }
}
