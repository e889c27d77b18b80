//! The sink: sends batches to the destination through a small trait, retries what failed (only
//! the failed records of a partly failed call), and acknowledges each batch once every one of
//! its records was accepted. Nothing is ever dropped.
//!
//! [`Sink::run`] hands a flow's batches to one of two loops: `unordered` (each batch a call of
//! its own) or [`ordered`] (calls built per shard). Both keep the flow's client, settings and
//! log limits in `shared`, count what they did in `accounting`, and give up on records past
//! `max_retry_duration` in `give_up`.

mod accounting;
pub(crate) mod backoff;
pub mod check;
pub(crate) mod clients;
pub(crate) mod dead_letter;
pub(crate) mod destination;
pub(crate) mod direct;
pub(crate) mod dry_run;
pub(crate) mod firehose;
mod give_up;
pub(crate) mod kinesis;
pub(crate) mod ordered;
pub(crate) mod pacing;
pub(crate) mod service_error;
mod shared;
pub(crate) mod transport;
mod unordered;
pub(crate) mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::compression::Compression;
use crate::limits::MemoryBudget;
pub use crate::log_limit::LogLimiter;
use crate::metrics::FlowMetrics;
use crate::record::{Ack, Batch, OutRecord};
use crate::shard_map::ShardMap;
pub use accounting::{Billing, FIREHOSE_BILLING_UNIT, KINESIS_PUT_UNIT};
pub use backoff::{Backoff, RetryPolicy};
use check::Identity;
use dead_letter::DeadLetters;
use pacing::Pacer;
use shared::Shared;

/// A record the destination refused inside a call that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// Index of the record in the call.
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// What the destination says of a stream at start-up.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    pub status: String,
    pub open_shards: Option<i32>,
    /// The stream's own record size limit (data + partition key), when it says.
    pub max_record_bytes: Option<usize>,
}

/// A whole call that failed, by what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PutError {
    #[error("the stream is throttling requests ({message})")]
    Throttled { message: String },
    #[error("{message}")]
    Transient { message: String },
    #[error(
        "cannot reach the endpoint ({message}); check aws.endpoint_url, the network and any proxy"
    )]
    Unreachable { message: String },
    #[error("the call is larger than the endpoint accepts ({message})")]
    TooLarge { message: String },
    #[error("access denied ({message}); check that the credentials' IAM policy allows this call on the stream")]
    AccessDenied { message: String },
    #[error("{message}; {hint}")]
    Configuration { message: String, hint: String },
}

/// The records a call's answer refused: `results` gives each record's error code and message,
/// in request order (both `None` for an accepted record).
pub fn refused_records<'a>(
    sent: usize,
    results: impl ExactSizeIterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> Result<Vec<RecordFailure>, PutError> {
    if results.len() != sent {
        return Err(PutError::Transient {
            message: format!(
                "the answer listed {} results for {sent} records",
                results.len()
            ),
        });
    }
    Ok(results
        .enumerate()
        .filter_map(|(index, (code, message))| {
            code.map(|code| RecordFailure {
                index,
                code: code.to_owned(),
                message: message.unwrap_or_default().to_owned(),
            })
        })
        .collect())
}

/// Error codes, of a record or of a whole call, that mean the stream is over its rate
/// (Firehose says `ServiceUnavailableException`).
pub fn is_throttle_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "ServiceUnavailableException"
    )
}

impl PutError {
    /// Errors an operator must fix: retried slowly and logged as ERROR.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            PutError::AccessDenied { .. }
                | PutError::Configuration { .. }
                | PutError::Unreachable { .. }
        )
    }

    fn log_class(&self) -> &'static str {
        match self {
            PutError::Throttled { .. } => "throttled",
            PutError::Transient { .. } => "transient",
            PutError::Unreachable { .. } => "unreachable",
            PutError::TooLarge { .. } => "too-large",
            PutError::AccessDenied { .. } => "access-denied",
            PutError::Configuration { .. } => "configuration",
        }
    }
}

/// The destination seam: put records, learn which failed.
pub trait PutRecords: Send + Sync + 'static {
    /// Sends `records` in one call; `Ok` lists the records the destination refused.
    fn put_records(
        &self,
        records: &[OutRecord],
    ) -> impl Future<Output = Result<Vec<RecordFailure>, PutError>> + Send;

    /// Checks that the destination exists and is usable.
    fn describe(&self) -> impl Future<Output = Result<StreamStatus, PutError>> + Send;

    /// Who the credentials belong to (`sts:GetCallerIdentity`); `None` when not checked.
    fn identity(&self) -> impl Future<Output = Result<Option<Identity>, PutError>> + Send {
        async { Ok(None) }
    }

    /// The stream's shard map, kept by clients of flows that aggregate.
    fn shards(&self) -> Option<Arc<ShardMap>> {
        None
    }

    /// The memory a call of `records` takes while it is encoded and sent, beside the records.
    fn request_bytes(&self, records: &[OutRecord]) -> usize {
        request_bytes(records)
    }

    /// Learns the stream's open shards again; returns how many there are.
    fn refresh_shards(&self) -> impl Future<Output = Result<usize, PutError>> + Send {
        async { Ok(0) }
    }
}

/// One flow's sink.
pub struct Sink<P> {
    pub flow: Arc<str>,
    pub stream: String,
    pub client: Arc<P>,
    pub max_in_flight: usize,
    /// The largest batch; with `max_in_flight`, it bounds the bytes the sink holds.
    pub max_batch_bytes: usize,
    pub retry: RetryPolicy,
    /// Records still refused after this long are written to `dead_letters` and acknowledged.
    pub give_up: Option<(Duration, Arc<DeadLetters>)>,
    pub metrics: Arc<FlowMetrics>,
    /// How the destination bills records, for the cost counters.
    pub billing: Billing,
    /// Each record's data is compressed so before its batch is first sent.
    pub compression: Compression,
    pub acks: mpsc::Sender<Ack>,
    /// The agent's memory budget: each call reserves its request in it while under way.
    pub budget: Arc<MemoryBudget>,
    /// Set for `ordering: per_shard`: calls are built per shard (see [`ordered`]).
    pub lanes: Option<ordered::Lanes>,
}

/// Batches the sink may hold per call slot: those waiting to retry refused records included.
/// A batch waiting to retry holds only its refused records (copied out of the read buffers),
/// so many may wait while others flow.
const HELD_BATCHES_PER_CALL: usize = 32;

impl<P: PutRecords> Sink<P> {
    /// Sends every batch from `batches` until it closes and every call has finished.
    pub async fn run(self, batches: mpsc::Receiver<Batch>) {
        let shared = Arc::new(Shared {
            flow: self.flow,
            stream: self.stream,
            client: self.client,
            retry: self.retry,
            give_up: self.give_up,
            metrics: self.metrics,
            billing: self.billing,
            limiters: Mutex::new(HashMap::new()),
            failing: AtomicBool::new(false),
            pacer: Pacer::new(),
            throttled: Mutex::new((None, 0)),
            budget: self.budget,
        });
        // Calls in flight are bounded, and so are the batches the sink holds: a batch waiting to
        // retry a few refused records gives up its call slot, but not its place in the budget.
        if let Some(lanes) = self.lanes {
            ordered::run(
                shared,
                lanes,
                self.acks,
                self.compression,
                self.max_in_flight,
                self.max_batch_bytes,
                self.max_in_flight * HELD_BATCHES_PER_CALL,
                batches,
            )
            .await;
        } else {
            unordered::run(
                shared,
                self.acks,
                self.compression,
                self.max_in_flight,
                self.max_batch_bytes,
                self.max_in_flight * HELD_BATCHES_PER_CALL,
                batches,
            )
            .await;
        }
    }
}

/// JSON and field names around each record's data in a request, with room for its explicit
/// hash key.
const REQUEST_RECORD_OVERHEAD: usize = 128;

/// The memory a call's request takes while the AWS SDK encodes and sends it: the client copies
/// each record's data, then writes it base64-encoded (4 bytes for 3) into the request's JSON
/// body, which grows by doubling as it is written.
pub fn request_bytes(records: &[OutRecord]) -> usize {
    records
        .iter()
        .map(|record| {
            let data = record.data.len();
            data + data.div_ceil(3) * 4 + record.partition_key.len() + REQUEST_RECORD_OVERHEAD
        })
        .sum()
}

#[cfg(test)]
mod tests;
