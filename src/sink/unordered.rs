//! Delivery without order (`ordering: none`): each batch is a call of its own, calls go out in
//! parallel up to `max_in_flight`, and a batch resends only its refused records until they are
//! accepted (or given up on).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, warn};

use super::accounting::{count_delivered, count_throttled, record_sent};
use super::give_up::give_up;
use super::pacing::Answer;
use super::shared::{report_call_failure, Shared, TRANSIENT_LOG_EVERY};
use super::{is_throttle_code, Backoff, PutError, PutRecords, RecordFailure};
use crate::compression::{compress_records, Compression};
use crate::limits::{Reservation, RECORD_OVERHEAD};
use crate::metrics::FlowMetrics;
use crate::record::{Ack, Batch, FileRange, OutRecord};

/// `bytes` in KiB, rounded up, as semaphore permits.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Sends every batch from `batches` until it closes and every call has finished. At most
/// `max_in_flight` calls are under way, `held_batches` batches held and `max_in_flight` batches'
/// worth of bytes.
pub(super) async fn run<P: PutRecords>(
    shared: Arc<Shared<P>>,
    acks: mpsc::Sender<Ack>,
    compression: Compression,
    max_in_flight: usize,
    max_batch_bytes: usize,
    held_batches: usize,
    mut batches: mpsc::Receiver<Batch>,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let held_batches = Arc::new(Semaphore::new(held_batches));
    let budget_kib = kib(max_in_flight * max_batch_bytes);
    let held_bytes = Arc::new(Semaphore::new(budget_kib as usize));
    let mut calls = JoinSet::new();
    while let Some(batch) = batches.recv().await {
        if batch.records.is_empty() {
            // Only lines that are not sent (skipped): nothing to call, done at once.
            count_delivered(&shared.metrics, &batch.ranges);
            let _ = acks.send(Ack::Delivered(batch.ranges)).await;
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
        let acks = acks.clone();
        let in_flight = Arc::clone(&in_flight);
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
        let answer = call(shared, in_flight, first_slot.take(), &part).await;
        match one_record_too_large(answer, &part) {
            Ok(failures) if failures.is_empty() => {
                shared.pacer.answered(Answer {
                    accepted: part.len(),
                    throttled: 0,
                });
                record_sent(shared, part.iter());
                backoff = Backoff::new(shared.retry);
            }
            Ok(failures) => {
                let (failed_records, error) = refused_some(shared, part, &failures, &mut reserved);
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
                let delay = call_failed(shared, &failure, part.len(), &mut backoff);
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

/// Sends `part` in one call, holding a call slot (`slot`, or one taken now) and its request's
/// room in the memory budget for the call only.
async fn call<P: PutRecords>(
    shared: &Shared<P>,
    in_flight: &Arc<Semaphore>,
    slot: Option<OwnedSemaphorePermit>,
    part: &[OutRecord],
) -> Result<Vec<RecordFailure>, PutError> {
    // A slot is held for the call only, never through a backoff delay. The semaphore
    // is never closed; without a slot the call simply goes ahead.
    let _slot = match slot {
        Some(slot) => Some(slot),
        None => Arc::clone(in_flight).acquire_owned().await.ok(),
    };
    // The request the client encodes is a second copy of the records, larger than
    // the first: it is in the budget too, until the answer came.
    let _request = shared
        .budget
        .reserve_request(shared.client.request_bytes(part))
        .await;
    let _in_flight = shared.metrics.call_started();
    let started = tokio::time::Instant::now();
    let answer = shared.client.put_records(part).await;
    shared.metrics.put_latency.observe(started.elapsed());
    answer
}

/// A call of one record the endpoint finds too large is an error only the operator can fix.
fn one_record_too_large(
    answer: Result<Vec<RecordFailure>, PutError>,
    part: &[OutRecord],
) -> Result<Vec<RecordFailure>, PutError> {
    match answer {
        // One record the endpoint will never take: only the operator can fix that.
        Err(PutError::TooLarge { message }) if part.len() == 1 => Err(PutError::Configuration {
            message: format!(
                "the endpoint refuses a record of {} bytes as too large ({message})",
                part[0].size()
            ),
            hint: "set max_record_bytes to the stream's maximum record size".into(),
        }),
        other => other,
    }
}

/// Learns from a call whose answer refused some of its records (`failures`, never empty):
/// counts and logs them, gives back the accepted records' room in the budget, and returns
/// copies of the refused records, to send again, with the first refusal's error.
fn refused_some<P>(
    shared: &Shared<P>,
    part: Vec<OutRecord>,
    failures: &[RecordFailure],
    reserved: &mut Reservation,
) -> (Vec<OutRecord>, String) {
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
    for failure in failures {
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
        if let Some(held_back) = shared.may_log("record-failures", TRANSIENT_LOG_EVERY) {
            warn!(flow = %shared.flow, destination = %shared.stream, failed = failures.len(), of = part.len(), code = %first.code, message = %first.message, repeats = held_back, "The stream refused some records; sending those again.");
        }
    }
    let error = format!("{}: {}", first.code, first.message);
    // The accepted records go now, not after the wait: they share read buffers,
    // whose room in the budget was just given back.
    drop(part);
    (failed_records, error)
}

/// Learns from a whole call that failed: counts and logs it, and returns how long to wait
/// before sending its `records` again.
fn call_failed<P>(
    shared: &Shared<P>,
    failure: &PutError,
    records: usize,
    backoff: &mut Backoff,
) -> Duration {
    FlowMetrics::add(&shared.metrics.calls_failed, 1);
    shared.failing.store(true, Ordering::Relaxed);
    let throttled = matches!(failure, PutError::Throttled { .. });
    shared.pacer.answered(Answer {
        accepted: 0,
        throttled: if throttled { records } else { 0 },
    });
    if throttled {
        count_throttled(shared, records as u64);
        backoff.next_delay()
    } else if failure.needs_operator() {
        report_call_failure(
            shared,
            failure,
            "Cannot deliver records; keeping them and trying again.",
        );
        backoff.slow_delay()
    } else {
        report_call_failure(shared, failure, "A call failed; trying again.");
        backoff.next_delay()
    }
}
