//! The sink: sends batches to the destination through a small trait, retries what failed (only
//! the failed records of a partly failed call), and acknowledges each batch once every one of
//! its records was accepted. Nothing is ever dropped.

pub mod backoff;
pub mod check;
pub mod clients;
pub mod dead_letter;
pub mod destination;
pub mod direct;
pub mod dry_run;
pub mod firehose;
pub mod kinesis;
pub mod ordered;
pub mod pacing;
pub mod service_error;
pub mod transport;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use bytes::Bytes;

use crate::compression::{compress_records, Compression};
use crate::limits::{MemoryBudget, RECORD_OVERHEAD};
pub use crate::log_limit::LogLimiter;
use crate::metrics::FlowMetrics;
use crate::record::{Ack, Batch, FileRange, OutRecord};
use crate::shard_map::ShardMap;
pub use backoff::{Backoff, RetryPolicy};
use check::Identity;
use dead_letter::{DeadLetters, Letters};
use pacing::{Answer, Pacer};

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

/// How a destination bills each record it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Billing {
    /// Kinesis Data Streams: PUT payload units of 25 KiB (data plus partition key), rounded up.
    KinesisPutUnits,
    /// Firehose Direct PUT: each record rounded up to a multiple of 5 KiB.
    FirehoseUnits,
}

/// Kinesis's PUT payload unit.
pub const KINESIS_PUT_UNIT: usize = 25 * 1024;
/// Firehose's billing increment.
pub const FIREHOSE_BILLING_UNIT: usize = 5 * 1024;

impl Billing {
    /// The units `record` is billed as.
    pub fn units(self, record: &OutRecord) -> u64 {
        let (size, unit) = match self {
            Billing::KinesisPutUnits => (record.size(), KINESIS_PUT_UNIT),
            Billing::FirehoseUnits => (record.data.len(), FIREHOSE_BILLING_UNIT),
        };
        size.div_ceil(unit).max(1) as u64
    }
}

/// State shared by the calls of one flow.
struct Shared<P> {
    flow: Arc<str>,
    stream: String,
    client: Arc<P>,
    retry: RetryPolicy,
    give_up: Option<(Duration, Arc<DeadLetters>)>,
    metrics: Arc<FlowMetrics>,
    billing: Billing,
    limiters: Mutex<HashMap<&'static str, LogLimiter>>,
    failing: AtomicBool,
    pacer: Pacer,
    /// Records throttled since the last throttling line, and when that line was logged.
    throttled: Mutex<(Option<tokio::time::Instant>, u64)>,
    budget: Arc<MemoryBudget>,
}

impl<P> Shared<P> {
    /// `Some(held back)` if a line of `class` may be logged now.
    fn may_log(&self, class: &'static str, every: Duration) -> Option<u64> {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        limiters
            .entry(class)
            .or_insert_with(|| LogLimiter::new(every))
            .allow()
    }
}

/// Batches the sink may hold per call slot: those waiting to retry refused records included.
/// A batch waiting to retry holds only its refused records (copied out of the read buffers),
/// so many may wait while others flow.
const HELD_BATCHES_PER_CALL: usize = 32;

/// `bytes` in KiB, rounded up, as semaphore permits.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Operator errors are repeated once a minute; transient trouble every ten seconds.
const OPERATOR_LOG_EVERY: Duration = Duration::from_secs(60);
const TRANSIENT_LOG_EVERY: Duration = Duration::from_secs(10);

impl<P: PutRecords> Sink<P> {
    /// Sends every batch from `batches` until it closes and every call has finished.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>) {
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
            return;
        }
        let in_flight = Arc::new(Semaphore::new(self.max_in_flight));
        let held_batches = Arc::new(Semaphore::new(self.max_in_flight * HELD_BATCHES_PER_CALL));
        let budget_kib = kib(self.max_in_flight * self.max_batch_bytes);
        let held_bytes = Arc::new(Semaphore::new(budget_kib as usize));
        let mut calls = JoinSet::new();
        while let Some(batch) = batches.recv().await {
            if batch.records.is_empty() {
                // Only lines that are not sent (skipped): nothing to call, done at once.
                count_delivered(&shared.metrics, &batch.ranges);
                let _ = self.acks.send(Ack::Delivered(batch.ranges)).await;
                continue;
            }
            let batch_kib = kib(batch.bytes).clamp(1, budget_kib);
            // The first call slot is taken here, so a new batch starts only when one is free.
            let (held, first_slot) = match (
                Arc::clone(&held_batches).acquire_owned().await,
                Arc::clone(&held_bytes).acquire_many_owned(batch_kib).await,
                Arc::clone(&in_flight).acquire_owned().await,
            ) {
                (Ok(count), Ok(bytes), Ok(slot)) => ((count, bytes), slot),
                _ => break,
            };
            let call_shared = Arc::clone(&shared);
            let acks = self.acks.clone();
            let in_flight = Arc::clone(&in_flight);
            let compression = self.compression;
            calls.spawn(async move {
                // Compressed here, in the flow's concurrent calls, rather than in its one
                // batcher.
                let mut batch = batch;
                compress_records(&mut batch.records, compression);
                let ranges = deliver(&call_shared, &in_flight, first_slot, batch).await;
                drop(held);
                count_delivered(&call_shared.metrics, &ranges);
                let _ = acks.send(Ack::Delivered(ranges)).await;
            });
            while let Some(done) = calls.try_join_next() {
                if let Err(failure) = done {
                    error!(flow = %shared.flow, %failure, "A delivery task failed.");
                }
            }
        }
        while let Some(done) = calls.join_next().await {
            if let Err(failure) = done {
                error!(flow = %shared.flow, %failure, "A delivery task failed.");
            }
        }
    }
}

fn report_call_failure<P>(shared: &Shared<P>, failure: &PutError, what: &'static str) {
    let every = if failure.needs_operator() {
        OPERATOR_LOG_EVERY
    } else {
        TRANSIENT_LOG_EVERY
    };
    let Some(held_back) = shared.may_log(failure.log_class(), every) else {
        return;
    };
    if failure.needs_operator() {
        error!(flow = %shared.flow, destination = %shared.stream, cause = %failure, repeats = held_back, "{what}");
    } else {
        warn!(flow = %shared.flow, destination = %shared.stream, cause = %failure, repeats = held_back, "{what}");
    }
}

/// Sends `batch` until every record is accepted (or, past `max_retry_duration`, written to
/// the dead-letter file); returns its ranges to acknowledge.
async fn deliver<P: PutRecords>(
    shared: &Shared<P>,
    in_flight: &Arc<Semaphore>,
    first_slot: OwnedSemaphorePermit,
    batch: Batch,
) -> Vec<FileRange> {
    let mut first_slot = Some(first_slot);
    let mut backoff = Backoff::new(shared.retry);
    let started = tokio::time::Instant::now();
    let Batch {
        records,
        ranges,
        mut reserved,
        ..
    } = batch;
    // Parts still to send, in order; a call the endpoint finds too large is split in two.
    let mut parts: VecDeque<Vec<OutRecord>> = VecDeque::from([records]);
    let mut resending = false;
    while let Some(part) = parts.pop_front() {
        if std::mem::take(&mut resending) {
            FlowMetrics::add(&shared.metrics.records_retried, part.len() as u64);
        }
        if shared.pacer.try_admit(part.len()).is_err() {
            // Paced: the call slot is not held while waiting for the call's turn.
            first_slot = None;
            shared.pacer.wait(part.len()).await;
        }
        let answer = {
            // A slot is held for the call only, never through a backoff delay. The semaphore
            // is never closed; without a slot the call simply goes ahead.
            let _slot = match first_slot.take() {
                Some(slot) => Some(slot),
                None => Arc::clone(in_flight).acquire_owned().await.ok(),
            };
            // The request the client encodes is a second copy of the records, larger than
            // the first: it is in the budget too, until the answer came.
            let _request = shared
                .budget
                .reserve_request(shared.client.request_bytes(&part))
                .await;
            let _in_flight = shared.metrics.call_started();
            let started = tokio::time::Instant::now();
            let answer = shared.client.put_records(&part).await;
            shared.metrics.put_latency.observe(started.elapsed());
            answer
        };
        let result = match answer {
            // One record the endpoint will never take: only the operator can fix that.
            Err(PutError::TooLarge { message }) if part.len() == 1 => {
                Err(PutError::Configuration {
                    message: format!(
                        "the endpoint refuses a record of {} bytes as too large ({message})",
                        part[0].size()
                    ),
                    hint: "set max_record_bytes to the stream's maximum record size".into(),
                })
            }
            other => other,
        };
        match result {
            Ok(failures) if failures.is_empty() => {
                shared.pacer.answered(Answer {
                    accepted: part.len(),
                    throttled: 0,
                });
                record_sent(shared, part.iter());
                backoff = Backoff::new(shared.retry);
            }
            Ok(failures) => {
                let throttled = failures
                    .iter()
                    .filter(|failure| is_throttle_code(&failure.code))
                    .count();
                shared.pacer.answered(Answer {
                    accepted: part.len() - failures.len(),
                    throttled,
                });
                count_throttled(shared, throttled as u64);
                FlowMetrics::add(&shared.metrics.records_failed, failures.len() as u64);
                // The refused records are copied out, so that while they wait to be sent again
                // the accepted ones, and the read buffers they share, are freed, and so is
                // their room in the memory budget.
                let mut failed_records = Vec::with_capacity(failures.len());
                for failure in &failures {
                    if let Some(record) = part.get(failure.index) {
                        failed_records.push(OutRecord {
                            data: Bytes::copy_from_slice(&record.data),
                            ..record.clone()
                        });
                    }
                }
                let accepted_cost: usize = part
                    .iter()
                    .map(|record| record.data.len() + RECORD_OVERHEAD)
                    .sum::<usize>()
                    .saturating_sub(
                        failed_records
                            .iter()
                            .map(|record| record.data.len() + RECORD_OVERHEAD)
                            .sum(),
                    );
                drop(reserved.take(accepted_cost));
                let refused: std::collections::HashSet<usize> =
                    failures.iter().map(|failure| failure.index).collect();
                record_sent(
                    shared,
                    part.iter()
                        .enumerate()
                        .filter(|(index, _)| !refused.contains(index))
                        .map(|(_, record)| record),
                );
                let first = &failures[0];
                if throttled < failures.len() {
                    if let Some(held_back) = shared.may_log("record-failures", TRANSIENT_LOG_EVERY)
                    {
                        warn!(flow = %shared.flow, destination = %shared.stream, failed = failures.len(), of = part.len(), code = %first.code, message = %first.message, repeats = held_back, "The stream refused some records; sending those again.");
                    }
                }
                let error = format!("{}: {}", first.code, first.message);
                // The accepted records go now, not after the wait: they share read buffers,
                // whose room in the budget was just given back.
                drop(part);
                if give_up(shared, started, &failed_records, &ranges, &error).await {
                    continue;
                }
                parts.push_front(failed_records);
                resending = true;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(PutError::TooLarge { message }) if part.len() > 1 => {
                if let Some(held_back) = shared.may_log("split", TRANSIENT_LOG_EVERY) {
                    warn!(flow = %shared.flow, destination = %shared.stream, records = part.len(), %message, repeats = held_back, "The endpoint refused a call as too large; sending it in two halves. Consider a smaller max_batch_bytes.");
                }
                let mut first = part;
                let second = first.split_off(first.len() / 2);
                parts.push_front(second);
                parts.push_front(first);
            }
            Err(failure) => {
                FlowMetrics::add(&shared.metrics.calls_failed, 1);
                shared.failing.store(true, Ordering::Relaxed);
                let throttled = matches!(failure, PutError::Throttled { .. });
                shared.pacer.answered(Answer {
                    accepted: 0,
                    throttled: if throttled { part.len() } else { 0 },
                });
                let delay = if throttled {
                    count_throttled(shared, part.len() as u64);
                    backoff.next_delay()
                } else if failure.needs_operator() {
                    report_call_failure(
                        shared,
                        &failure,
                        "Cannot deliver records; keeping them and trying again.",
                    );
                    backoff.slow_delay()
                } else {
                    report_call_failure(shared, &failure, "A call failed; trying again.");
                    backoff.next_delay()
                };
                if give_up(shared, started, &part, &ranges, &failure.to_string()).await {
                    continue;
                }
                parts.push_front(part);
                resending = true;
                tokio::time::sleep(delay).await;
            }
        }
    }
    drop(reserved);
    ranges
}

/// Past the flow's `max_retry_duration`, writes `records` to the dead-letter file; true if
/// they were written (and so are done with).
async fn give_up<P>(
    shared: &Shared<P>,
    started: tokio::time::Instant,
    records: &[OutRecord],
    ranges: &[FileRange],
    error: &str,
) -> bool {
    let Some((limit, letters)) = &shared.give_up else {
        return false;
    };
    if started.elapsed() < *limit || records.is_empty() {
        return false;
    }
    let written = letters
        .write(&Letters {
            flow: &shared.flow,
            stream: &shared.stream,
            error,
            records,
            ranges,
        })
        .await;
    match written {
        Ok(()) => {
            FlowMetrics::add(&shared.metrics.records_dead_lettered, records.len() as u64);
            error!(flow = %shared.flow, destination = %shared.stream, records = records.len(), cause = %error, path = %letters.path().display(), max_retry_duration = ?limit, "Gave up on records after max_retry_duration; they are in the dead-letter file.");
            true
        }
        Err(failure) => {
            if let Some(held_back) = shared.may_log("dead-letter", OPERATOR_LOG_EVERY) {
                error!(flow = %shared.flow, path = %letters.path().display(), %failure, repeats = held_back, "Cannot write the dead-letter file; the records are kept and retried.");
            }
            false
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

/// Counts the file bytes of `ranges` as delivered: every range a batch covers is counted here
/// once, as it was counted read once.
fn count_delivered(metrics: &FlowMetrics, ranges: &[FileRange]) {
    let bytes = ranges
        .iter()
        .map(|range| range.end.saturating_sub(range.start))
        .sum();
    FlowMetrics::add(&metrics.bytes_delivered, bytes);
}

/// Counts throttled records and logs, at most every ten seconds, how many there were.
fn count_throttled<P>(shared: &Shared<P>, records: u64) {
    if records == 0 {
        return;
    }
    FlowMetrics::add(&shared.metrics.records_throttled, records);
    let mut window = shared
        .throttled
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (last_line, count) = &mut *window;
    *count += records;
    let now = tokio::time::Instant::now();
    let since = last_line.map(|at| now.duration_since(at));
    if since.is_none_or(|since| since >= TRANSIENT_LOG_EVERY) {
        let seconds = since.map_or(0, |since| since.as_secs());
        let limit = shared.pacer.limit().map(|rate| rate.round() as u64);
        warn!(flow = %shared.flow, destination = %shared.stream, records = *count, seconds, records_per_second_limit = limit, "Records throttled by the stream in the last `seconds`; slowing down and sending them again.");
        *last_line = Some(now);
        *count = 0;
    }
}

/// Counts `accepted` records: the lines they carry, the records themselves, their bytes, and
/// the units the destination bills them as.
fn record_sent<'a, P>(shared: &Shared<P>, accepted: impl Iterator<Item = &'a OutRecord>) {
    let (mut lines, mut records, mut bytes, mut units) = (0u64, 0u64, 0u64, 0u64);
    for record in accepted {
        lines += u64::from(record.lines);
        records += 1;
        bytes += record.data.len() as u64;
        units += shared.billing.units(record);
    }
    FlowMetrics::add(&shared.metrics.records_sent, lines);
    FlowMetrics::add(&shared.metrics.records_put, records);
    FlowMetrics::add(&shared.metrics.bytes_sent, bytes);
    FlowMetrics::add(&shared.metrics.billing_units, units);
    if shared.failing.swap(false, Ordering::Relaxed) {
        info!(flow = %shared.flow, destination = %shared.stream, "The stream accepts records again.");
    }
}

#[cfg(test)]
mod tests;
