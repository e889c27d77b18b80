//! Applying a call's answer: accepted records are done, refused ones go back to the head of
//! their lanes (or, past `max_retry_duration`, to the dead-letter file), each lane's backoff
//! and pacer learn from it, and a record a later one of its shard overtook is warned of.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::warn;

use super::calls::Answered;
use super::lanes::{Note, Queued};
use super::Scheduler;
use crate::metrics::FlowMetrics;
use crate::record::OutRecord;
use crate::sink::accounting::{count_throttled, record_sent};
use crate::sink::give_up::give_up;
use crate::sink::pacing::Answer;
use crate::sink::shared::{report_call_failure, TRANSIENT_LOG_EVERY};
use crate::sink::{is_throttle_code, Backoff, PutError, PutRecords, RecordFailure};

/// A shard that throttled more than one in this many of a call's records for it waits a
/// little before its next call.
const THROTTLED_SHARE_WORTH_WAITING: usize = 20;

/// Per lane of a call: records accepted, throttled and refused.
type Tally = HashMap<usize, (usize, usize, usize)>;

/// A call's records sorted by its answer.
struct Sorted {
    accepted: Vec<Queued>,
    again: Vec<Queued>,
    tally: Tally,
    throttled_total: u64,
}

impl<P: PutRecords> Scheduler<P> {
    /// Learns from a call's answer: accepted records are done, the rest go back to the head
    /// of their lanes.
    pub(super) async fn answered(&mut self, answered: Answered) {
        self.in_flight -= 1;
        let Answered {
            records,
            notes,
            lanes,
            result,
        } = answered;
        if matches!(&result, Ok(failures) if failures.is_empty()) {
            self.all_accepted(records, notes, &lanes).await;
            self.update_gauges();
            return;
        }
        let records: Vec<Queued> = records
            .into_iter()
            .zip(notes)
            .map(|(record, note)| Queued { record, note })
            .collect();
        let result = match result {
            Err(PutError::TooLarge { message }) if records.len() == 1 => {
                Err(PutError::Configuration {
                    message: format!(
                        "the endpoint refuses a record of {} bytes as too large ({message})",
                        records[0].record.size()
                    ),
                    hint: "set max_record_bytes to the stream's maximum record size".into(),
                })
            }
            other => other,
        };
        match result {
            Ok(failures) => self.answered_records(records, &lanes, &failures).await,
            Err(PutError::TooLarge { message }) => {
                if let Some(held_back) = self.shared.may_log("split", TRANSIENT_LOG_EVERY) {
                    warn!(flow = %self.shared.flow, destination = %self.shared.stream, records = records.len(), %message, repeats = held_back, "The endpoint refused a call as too large; sending smaller calls. Consider a smaller max_batch_bytes.");
                }
                self.call_records = (records.len() / 2).max(1);
                for &lane in &lanes {
                    self.lanes[lane].busy = false;
                }
                self.requeue(records, None);
            }
            Err(failure) => self.call_failed(records, &lanes, failure).await,
        }
        self.update_gauges();
    }

    /// The common answer: every record of the call accepted.
    async fn all_accepted(&mut self, records: Vec<OutRecord>, notes: Vec<Note>, lanes: &[usize]) {
        record_sent(&self.shared, records.iter());
        drop(records);
        // Records of a call come lane by lane, and mostly batch by batch: counted in runs.
        let mut per_lane: Vec<(usize, usize)> = lanes.iter().map(|&lane| (lane, 0)).collect();
        let mut run: Option<(u64, usize, usize)> = None;
        for note in &notes {
            if let Some(counted) = per_lane.iter_mut().find(|(lane, _)| *lane == note.lane) {
                counted.1 += 1;
            }
            match &mut run {
                Some((batch, count, cost)) if *batch == note.batch => {
                    *count += 1;
                    *cost += note.cost;
                }
                _ => {
                    if let Some((batch, count, cost)) = run.take() {
                        self.done_many(batch, count, cost).await;
                    }
                    run = Some((note.batch, 1, note.cost));
                }
            }
        }
        if let Some((batch, count, cost)) = run {
            self.done_many(batch, count, cost).await;
        }
        for (lane, accepted) in per_lane {
            let lane = &mut self.lanes[lane];
            lane.busy = false;
            lane.backoff = Backoff::new(self.shared.retry);
            lane.pacer.answered(Answer {
                accepted,
                throttled: 0,
            });
        }
        self.call_records = self.max_records;
    }

    /// Learns from an answer that refused some of the call's records.
    async fn answered_records(
        &mut self,
        records: Vec<Queued>,
        lanes: &[usize],
        failures: &[RecordFailure],
    ) {
        let Sorted {
            accepted,
            again,
            tally,
            throttled_total,
        } = self.sort_answer(records, lanes, failures);
        record_sent(&self.shared, accepted.iter().map(|queued| &queued.record));
        for queued in accepted {
            self.done(queued).await;
        }
        for (&lane, &(accepted, throttled, _)) in &tally {
            let lane = &mut self.lanes[lane];
            lane.busy = false;
            lane.pacer.answered(Answer {
                accepted,
                throttled,
            });
        }
        if again.is_empty() {
            self.call_records = self.max_records;
            for &lane in lanes {
                self.lanes[lane].backoff = Backoff::new(self.shared.retry);
            }
            return;
        }
        count_throttled(&self.shared, throttled_total);
        FlowMetrics::add(&self.shared.metrics.records_failed, again.len() as u64);
        let first = failures[0].clone();
        if (throttled_total as usize) < again.len() {
            if let Some(held_back) = self.shared.may_log("record-failures", TRANSIENT_LOG_EVERY) {
                warn!(flow = %self.shared.flow, destination = %self.shared.stream, failed = again.len(), code = %first.code, message = %first.message, repeats = held_back, "The stream refused some records; sending those again before later records of their shards.");
            }
        }
        let error = format!("{}: {}", first.code, first.message);
        let again = self.give_up_if_due(again, &error).await;
        self.requeue(again, None);
        self.delay_refusing_lanes(&tally);
    }

    /// Sorts a call's records into those accepted and those to send again, tallies them per
    /// lane, and warns of accepted records that got ahead of a refused one of their shard.
    fn sort_answer(
        &self,
        records: Vec<Queued>,
        lanes: &[usize],
        failures: &[RecordFailure],
    ) -> Sorted {
        let mut refused = vec![None; records.len()];
        for failure in failures {
            if let Some(slot) = refused.get_mut(failure.index) {
                *slot = Some(failure);
            }
        }
        // Per lane of the call: records accepted, throttled and refused.
        let mut tally: Tally = lanes.iter().map(|&l| (l, (0, 0, 0))).collect();
        let mut accepted = Vec::new();
        let mut again = Vec::new();
        let mut throttled_total = 0u64;
        // Lanes with a refused record so far in this call: a later record of one that the
        // stream accepted got ahead of it, which no sender can undo.
        let mut refused_lanes: Vec<usize> = Vec::new();
        let mut overtaken = 0usize;
        for (queued, refusal) in records.into_iter().zip(refused) {
            let lane = self.lane_of(queued.note.hash);
            let counts = tally.entry(lane).or_default();
            match refusal {
                None => {
                    counts.0 += 1;
                    if refused_lanes.contains(&lane) {
                        overtaken += 1;
                    }
                    accepted.push(queued);
                }
                Some(failure) => {
                    counts.2 += 1;
                    if is_throttle_code(&failure.code) {
                        counts.1 += 1;
                        throttled_total += 1;
                    }
                    if !refused_lanes.contains(&lane) {
                        refused_lanes.push(lane);
                    }
                    again.push(queued);
                }
            }
        }
        if overtaken > 0 {
            if let Some(held_back) = self.shared.may_log("overtaken", TRANSIENT_LOG_EVERY) {
                warn!(flow = %self.shared.flow, destination = %self.shared.stream, records = overtaken, repeats = held_back, "The stream refused a record of a call but accepted later records of its shard in the same call; those got ahead of it.");
            }
        }
        Sorted {
            accepted,
            again,
            tally,
            throttled_total,
        }
    }

    /// A shard that took some of its records goes on with the refused ones first: at once
    /// after other refusals and a few throttled records, after a short delay (up to
    /// `retry_initial_backoff`) when more than one in 20 were throttled (its pacer slows it
    /// too). One that took none waits out a backoff
    /// that grows while it goes on taking none.
    fn delay_refusing_lanes(&mut self, tally: &Tally) {
        let now = Instant::now();
        for (&lane, &(accepted, throttled, refused)) in tally {
            let lane = &mut self.lanes[lane];
            if refused == 0 {
                lane.backoff = Backoff::new(self.shared.retry);
            } else if accepted > 0 {
                lane.backoff = Backoff::new(self.shared.retry);
                if throttled * THROTTLED_SHARE_WORTH_WAITING > accepted + refused {
                    lane.not_before = Some(now + lane.backoff.next_delay());
                    lane.backoff = Backoff::new(self.shared.retry);
                }
            } else {
                lane.not_before = Some(now + lane.backoff.next_delay());
            }
        }
    }

    /// Learns from a whole call that failed: its records go back to the head of their lanes,
    /// which wait out a backoff first.
    async fn call_failed(&mut self, records: Vec<Queued>, lanes: &[usize], failure: PutError) {
        FlowMetrics::add(&self.shared.metrics.calls_failed, 1);
        self.shared
            .failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let throttled = matches!(failure, PutError::Throttled { .. });
        if throttled {
            count_throttled(&self.shared, records.len() as u64);
        } else if failure.needs_operator() {
            report_call_failure(
                &self.shared,
                &failure,
                "Cannot deliver records; keeping them and trying again.",
            );
        } else {
            report_call_failure(&self.shared, &failure, "A call failed; trying again.");
        }
        let mut per_lane: HashMap<usize, usize> = HashMap::new();
        for queued in &records {
            *per_lane.entry(self.lane_of(queued.note.hash)).or_default() += 1;
        }
        for &index in lanes {
            let lane = &mut self.lanes[index];
            lane.busy = false;
            if throttled {
                lane.pacer.answered(Answer {
                    accepted: 0,
                    throttled: per_lane.get(&index).copied().unwrap_or(0).max(1),
                });
            }
        }
        let records = self.give_up_if_due(records, &failure.to_string()).await;
        self.requeue(records, Some(failure.needs_operator()));
    }

    /// Writes the records whose batches have been retried past `max_retry_duration` to the
    /// dead-letter file; returns the others (all of them if none is due or writing failed).
    async fn give_up_if_due(&mut self, records: Vec<Queued>, error: &str) -> Vec<Queued> {
        let Some((limit, _)) = &self.shared.give_up else {
            return self.detach(records);
        };
        let limit = *limit;
        let (due, kept): (Vec<Queued>, Vec<Queued>) = records.into_iter().partition(|queued| {
            self.held
                .get(&queued.note.batch)
                .is_some_and(|held| held.started.elapsed() >= limit)
        });
        if due.is_empty() {
            return self.detach(kept);
        }
        let started = Instant::now() - limit;
        let due_records: Vec<OutRecord> = due.iter().map(|queued| queued.record.clone()).collect();
        let mut ranges = Vec::new();
        let mut batches = Vec::new();
        for queued in &due {
            if !batches.contains(&queued.note.batch) {
                batches.push(queued.note.batch);
                if let Some(held) = self.held.get(&queued.note.batch) {
                    ranges.extend(held.ranges.iter().cloned());
                }
            }
        }
        if give_up(&self.shared, started, &due_records, &ranges, error).await {
            for queued in due {
                self.done(queued).await;
            }
            self.detach(kept)
        } else {
            let mut all = due;
            all.extend(kept);
            self.detach(all)
        }
    }

    /// Copies the data of records that wait to be sent again out of the read buffers they
    /// share with accepted records, so those buffers are freed now.
    fn detach(&self, mut records: Vec<Queued>) -> Vec<Queued> {
        for queued in &mut records {
            queued.record.data = Bytes::copy_from_slice(&queued.record.data);
        }
        records
    }
}
