//! Delivery in order per shard (`ordering: per_shard`): the sink keeps the records waiting for
//! each shard in a queue of their own (a lane) and builds calls from the heads of lanes that
//! have no call in flight. So no two calls in flight hold records of one shard, a refused record
//! goes again before any later record of its shard, and each partition key's records reach the
//! stream in the order they were read. Calls for other shards go out in parallel, and each lane
//! is paced on its own: a throttled shard slows its own records only.
//!
//! A record's lane is the shard its hash key (the MD5 of its partition key, or its explicit hash
//! key) falls in, from the stream's shard map; while the map is unknown, the hash key space is
//! cut into [`UNMAPPED_LANES`] equal lanes, which keeps order per key just as well. When the map
//! changes (a split or a merge), no new call starts until the calls in flight have answered;
//! then the waiting records are regrouped into the new lanes, each lane's records in the order
//! they had.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, warn};

use super::pacing::{Answer, Pacer};
use super::{
    count_delivered, count_throttled, give_up, is_throttle_code, record_sent, report_call_failure,
    Backoff, PutError, PutRecords, RecordFailure, Shared, TRANSIENT_LOG_EVERY,
};
use crate::compression::{compress_records, Compression};
use crate::config::{Delivery, DestinationKind, FlowConfig, PartitionKey};
use crate::limits::Reservation;
use crate::metrics::FlowMetrics;
use crate::record::{Ack, Batch, FileRange, OutRecord};
use crate::shard_map::{shard_for, Shard, ShardMap};

/// Lanes while the stream's shards are unknown: equal slices of the hash key space.
pub const UNMAPPED_LANES: usize = 16;
/// A lane's queue that empties with room for more than this many records gives the room back:
/// with many shards, each queue's largest backlog would otherwise stay allocated.
const QUEUE_ROOM_KEPT: usize = 1024;
/// A shard that throttled more than one in this many of a call's records for it waits a
/// little before its next call.
const THROTTLED_SHARE_WORTH_WAITING: usize = 20;
/// The per-shard pacing gauges are brought up to date at most this often.
const GAUGES_EVERY: Duration = Duration::from_millis(250);

/// Whether `flow`'s records are delivered in order per shard: with `ordering: per_shard`, to
/// a Kinesis stream, when partition keys carry an order to keep (a fixed key or one taken from
/// each record). A random, deterministic or record-id key is a key of its own for (nearly)
/// every record, and `explicit_hash_key: spread` spreads each key over every shard: there is
/// no order per key to keep, and records go out as with `ordering: none`. A dry run writes
/// records in the order calls finish.
pub fn applies(flow: &FlowConfig) -> bool {
    flow.ordering == Delivery::PerShard
        && flow.destination.kind == DestinationKind::Kinesis
        && !flow.dry_run
        && !flow.explicit_hash_key
        && matches!(
            flow.partition_key,
            PartitionKey::Fixed(_) | PartitionKey::Extracted { .. }
        )
}

/// What ordered delivery needs besides the sink's own settings.
pub struct Lanes {
    /// The stream's shards (learnt with `ListShards` and kept fresh by the flow).
    pub map: Arc<ShardMap>,
    /// Records per call at most (`max_batch_records`).
    pub max_records: usize,
}

/// A record waiting in its lane, or in a call.
struct Queued {
    record: OutRecord,
    note: Note,
}

/// What the sink knows of a record besides the record.
struct Note {
    /// The lane it waits in (set again when lanes are regrouped).
    lane: usize,
    /// Where in the hash key space the record goes.
    hash: u128,
    /// The batch it came in (see [`Held`]).
    batch: u64,
    /// Already compressed (it was sent before).
    compressed: bool,
    /// Refused or failed before: counted as retried when sent.
    retry: bool,
    /// The record's bytes as it came (before compression): its share of what the sink holds
    /// and of its batch's room in the memory budget.
    cost: usize,
}

/// One shard's records, oldest first, and how they are being sent.
struct Lane {
    shard: Option<Arc<str>>,
    queue: VecDeque<Queued>,
    /// A call holding this lane's records is in flight.
    busy: bool,
    /// Waiting out a backoff or the pacer until then.
    not_before: Option<Instant>,
    backoff: Backoff,
    pacer: Pacer,
}

/// A batch some of whose records are not yet accepted.
struct Held {
    ranges: Vec<FileRange>,
    outstanding: usize,
    /// The batch's room in the memory budget, given back when the batch is done.
    _reserved: Reservation,
    started: Instant,
}

/// What a call's task hands back.
struct Answered {
    records: Vec<OutRecord>,
    notes: Vec<Note>,
    lanes: Vec<usize>,
    result: Result<Vec<RecordFailure>, PutError>,
}

struct Scheduler<P> {
    shared: Arc<Shared<P>>,
    acks: mpsc::Sender<Ack>,
    compression: Compression,
    map: Arc<ShardMap>,
    /// The shard map the lanes were made from.
    shards: Arc<Vec<Shard>>,
    lanes: Vec<Lane>,
    held: HashMap<u64, Held>,
    next_batch: u64,
    /// Bytes of the records waiting or in flight.
    queued_bytes: usize,
    max_queued_bytes: usize,
    max_held_batches: usize,
    max_in_flight: usize,
    max_records: usize,
    max_bytes: usize,
    /// Records per call for now: halved after the endpoint found a call too large.
    call_records: usize,
    in_flight: usize,
    /// Where the next call's search for lanes starts, so every lane gets its turn.
    next_lane: usize,
    /// The last partition key hashed, and its hash: a fixed key is hashed once.
    last_key: Option<(String, u128)>,
    gauges_at: Option<Instant>,
}

/// The MD5 of `key` as a big-endian number: where Kinesis puts a record with that key.
pub fn key_hash(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

impl<P: PutRecords> Scheduler<P> {
    fn lanes_for(
        shards: &[Shard],
        mut previous: Vec<Lane>,
        retry: super::RetryPolicy,
    ) -> Vec<Lane> {
        let mut kept: HashMap<Arc<str>, Lane> = previous
            .drain(..)
            .filter_map(|lane| lane.shard.clone().map(|id| (id, lane)))
            .collect();
        let fresh = |shard: Option<Arc<str>>| Lane {
            shard,
            queue: VecDeque::new(),
            busy: false,
            not_before: None,
            backoff: Backoff::new(retry),
            pacer: Pacer::new(),
        };
        if shards.is_empty() {
            return (0..UNMAPPED_LANES).map(|_| fresh(None)).collect();
        }
        shards
            .iter()
            .map(|shard| {
                let id: Arc<str> = Arc::from(shard.id.as_str());
                // A shard that stays keeps its pacing: its limit is still the stream's.
                kept.remove(&id).unwrap_or_else(|| fresh(Some(id)))
            })
            .collect()
    }

    fn lane_of(&self, hash: u128) -> usize {
        if self.shards.is_empty() {
            return (hash >> (128 - UNMAPPED_LANES.trailing_zeros())) as usize;
        }
        // A hash outside every range (a map being learnt) goes to the nearest lane below it.
        shard_for(&self.shards, hash).unwrap_or_else(|| {
            self.shards
                .partition_point(|shard| shard.start <= hash)
                .saturating_sub(1)
        })
    }

    fn hash_of(&mut self, record: &OutRecord) -> u128 {
        if let Some(hash) = record
            .explicit_hash_key
            .as_deref()
            .and_then(|key| key.parse::<u128>().ok())
        {
            return hash;
        }
        if let Some((key, hash)) = &self.last_key {
            if *key == record.partition_key {
                return *hash;
            }
        }
        let hash = key_hash(&record.partition_key);
        self.last_key = Some((record.partition_key.clone(), hash));
        hash
    }

    /// Whether another batch may be taken in.
    fn has_room(&self) -> bool {
        self.held.len() < self.max_held_batches && self.queued_bytes < self.max_queued_bytes
    }

    /// No call in flight and no record waiting.
    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.lanes.iter().all(|lane| lane.queue.is_empty())
    }

    async fn take(&mut self, batch: Batch) {
        if batch.records.is_empty() {
            count_delivered(&self.shared.metrics, &batch.ranges);
            let _ = self.acks.send(Ack::Delivered(batch.ranges)).await;
            return;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let Batch {
            records,
            ranges,
            reserved,
            ..
        } = batch;
        self.held.insert(
            id,
            Held {
                ranges,
                outstanding: records.len(),
                _reserved: reserved,
                started: Instant::now(),
            },
        );
        for record in records {
            let hash = self.hash_of(&record);
            let lane = self.lane_of(hash);
            let cost = record.data.len();
            self.queued_bytes += cost;
            self.lanes[lane].queue.push_back(Queued {
                record,
                note: Note {
                    lane,
                    hash,
                    batch: id,
                    compressed: false,
                    retry: false,
                    cost,
                },
            });
        }
    }

    /// Regroups the waiting records once the shard map changed and no call is in flight.
    fn follow_map(&mut self) -> bool {
        let current = self.map.snapshot();
        if Arc::ptr_eq(&current, &self.shards) {
            return true;
        }
        if self.in_flight > 0 {
            // Not while calls are in flight: a record must not overtake one of its shard's
            // whose answer is still to come.
            return false;
        }
        let old = std::mem::take(&mut self.lanes);
        let mut waiting: Vec<VecDeque<Queued>> = Vec::with_capacity(old.len());
        let mut kept = Vec::with_capacity(old.len());
        for mut lane in old {
            waiting.push(std::mem::take(&mut lane.queue));
            kept.push(lane);
        }
        self.lanes = Self::lanes_for(&current, kept, self.shared.retry);
        self.shards = current;
        for queue in waiting {
            for mut queued in queue {
                let lane = self.lane_of(queued.note.hash);
                queued.note.lane = lane;
                self.lanes[lane].queue.push_back(queued);
            }
        }
        true
    }

    /// Starts calls while slots are free and some lane that is not busy has records it may
    /// send now; returns when the next lane waiting out a delay may go.
    fn dispatch(&mut self, calls: &mut JoinSet<Answered>) -> Option<Instant> {
        if !self.follow_map() {
            return None;
        }
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        while self.in_flight < self.max_in_flight {
            let count = self.lanes.len();
            let mut ready = Vec::new();
            for step in 0..count {
                let index = (self.next_lane + step) % count;
                let lane = &self.lanes[index];
                if lane.busy || lane.queue.is_empty() {
                    continue;
                }
                match lane.not_before {
                    Some(at) if at > now => wake = Some(wake.map_or(at, |w| w.min(at))),
                    _ => ready.push(index),
                }
            }
            if ready.is_empty() {
                break;
            }
            // The lanes ready are spread over the free slots: with few shards, a call each;
            // with many, several shards share a call.
            let free = self.max_in_flight - self.in_flight;
            let per_call = ready.len().div_ceil(free);
            let mut records = Vec::new();
            let mut lanes = Vec::new();
            let mut bytes = 0usize;
            for index in ready {
                if lanes.len() == per_call || records.len() >= self.call_records {
                    break;
                }
                let lane = &mut self.lanes[index];
                let mut take = 0;
                let mut take_bytes = 0;
                for queued in &lane.queue {
                    let size = queued.record.size();
                    if records.len() + take >= self.call_records
                        || (bytes + take_bytes + size > self.max_bytes && records.len() + take > 0)
                    {
                        break;
                    }
                    take += 1;
                    take_bytes += size;
                }
                if take == 0 {
                    continue;
                }
                if let Err(wait) = lane.pacer.try_admit(take) {
                    let at = now + wait;
                    lane.not_before = Some(at);
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                    continue;
                }
                lane.not_before = None;
                lane.busy = true;
                records.extend(lane.queue.drain(..take));
                if lane.queue.is_empty() && lane.queue.capacity() > QUEUE_ROOM_KEPT {
                    lane.queue.shrink_to(QUEUE_ROOM_KEPT);
                }
                bytes += take_bytes;
                lanes.push(index);
            }
            let Some(&last) = lanes.last() else {
                break;
            };
            self.next_lane = (last + 1) % count;
            self.in_flight += 1;
            self.start_call(calls, records, lanes);
        }
        wake
    }

    fn start_call(&self, calls: &mut JoinSet<Answered>, records: Vec<Queued>, lanes: Vec<usize>) {
        let retried = records.iter().filter(|queued| queued.note.retry).count();
        if retried > 0 {
            FlowMetrics::add(&self.shared.metrics.records_retried, retried as u64);
        }
        let shared = Arc::clone(&self.shared);
        let compression = self.compression;
        // The call takes the records themselves; what the sink knows of each waits beside them.
        let (mut part, mut notes): (Vec<OutRecord>, Vec<Note>) = records
            .into_iter()
            .map(|queued| (queued.record, queued.note))
            .unzip();
        calls.spawn(async move {
            // Compressed in the call's task, once: a record sent again keeps its compression.
            if compression != Compression::None {
                for (record, note) in part.iter_mut().zip(&mut notes) {
                    if !note.compressed {
                        compress_records(std::slice::from_mut(record), compression);
                        note.compressed = true;
                    }
                }
            }
            let result = {
                let _request = shared
                    .budget
                    .reserve_request(shared.client.request_bytes(&part))
                    .await;
                let _in_flight = shared.metrics.call_started();
                let started = Instant::now();
                let answer = shared.client.put_records(&part).await;
                shared.metrics.put_latency.observe(started.elapsed());
                answer
            };
            Answered {
                records: part,
                notes,
                lanes,
                result,
            }
        });
    }

    /// Learns from a call's answer: accepted records are done, the rest go back to the head
    /// of their lanes.
    async fn answered(&mut self, answered: Answered) {
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

    async fn answered_records(
        &mut self,
        records: Vec<Queued>,
        lanes: &[usize],
        failures: &[RecordFailure],
    ) {
        let mut refused = vec![None; records.len()];
        for failure in failures {
            if let Some(slot) = refused.get_mut(failure.index) {
                *slot = Some(failure);
            }
        }
        // Per lane of the call: records accepted, throttled and refused.
        let mut tally: HashMap<usize, (usize, usize, usize)> =
            lanes.iter().map(|&l| (l, (0, 0, 0))).collect();
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
        // A shard that took some of its records goes on with the refused ones first: at once
        // after other refusals and a few throttled records, after a short delay (up to
        // `retry_initial_backoff`) when more than one in 20 were throttled (its pacer slows it
        // too). One that took none waits out a backoff
        // that grows while it goes on taking none.
        let now = Instant::now();
        for (&lane, &(accepted, throttled, refused)) in &tally {
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

    /// Puts `records` back at the head of their lanes, in the order they had; with `delay`,
    /// their lanes wait out a backoff first (a slow one if `Some(true)`).
    fn requeue(&mut self, records: Vec<Queued>, delay: Option<bool>) {
        let now = Instant::now();
        let mut delayed = Vec::new();
        for mut queued in records.into_iter().rev() {
            queued.note.retry = true;
            let lane = self.lane_of(queued.note.hash);
            if !delayed.contains(&lane) {
                delayed.push(lane);
            }
            self.lanes[lane].queue.push_front(queued);
        }
        let Some(slow) = delay else {
            return;
        };
        for lane in delayed {
            let lane = &mut self.lanes[lane];
            let wait = if slow {
                lane.backoff.slow_delay()
            } else {
                lane.backoff.next_delay()
            };
            lane.not_before = Some(now + wait);
        }
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

    /// One record accepted (or dead-lettered): its batch is acknowledged with its last.
    async fn done(&mut self, queued: Queued) {
        self.done_many(queued.note.batch, 1, queued.note.cost).await;
    }

    /// `count` records of `batch`, of `cost` bytes, accepted (or dead-lettered). Their room in
    /// the memory budget is given back with their batch's last record: they share read buffers
    /// with the batch's other records, which other shards' calls may still hold. So a shard
    /// that refuses for long holds the room of every batch it has a record in, and once that is
    /// the flow's share of the budget, reading waits for it.
    async fn done_many(&mut self, batch: u64, count: usize, cost: usize) {
        self.queued_bytes = self.queued_bytes.saturating_sub(cost);
        let Some(held) = self.held.get_mut(&batch) else {
            return;
        };
        held.outstanding = held.outstanding.saturating_sub(count);
        if held.outstanding > 0 {
            return;
        }
        if let Some(held) = self.held.remove(&batch) {
            count_delivered(&self.shared.metrics, &held.ranges);
            let _ = self.acks.send(Ack::Delivered(held.ranges)).await;
        }
    }

    /// Shards being paced, and the lowest limit in force (records per second).
    fn update_gauges(&mut self) {
        let now = Instant::now();
        if self
            .gauges_at
            .is_some_and(|at| now.duration_since(at) < GAUGES_EVERY)
        {
            return;
        }
        self.gauges_at = Some(now);
        let limits: Vec<f64> = self
            .lanes
            .iter()
            .filter_map(|lane| lane.pacer.limit())
            .collect();
        let lowest = limits.iter().copied().fold(f64::INFINITY, f64::min);
        let metrics = &self.shared.metrics;
        metrics
            .shards_paced
            .store(limits.len() as i64, std::sync::atomic::Ordering::Relaxed);
        metrics.shard_rate_limit.store(
            if lowest.is_finite() {
                lowest.round() as i64
            } else {
                0
            },
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Sends every batch from `batches` in order per shard until it closes and every record is
/// accepted (or dead-lettered).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<P: PutRecords>(
    shared: Arc<Shared<P>>,
    lanes: Lanes,
    acks: mpsc::Sender<Ack>,
    compression: Compression,
    max_in_flight: usize,
    max_batch_bytes: usize,
    held_batches: usize,
    mut batches: mpsc::Receiver<Batch>,
) {
    let shards = lanes.map.snapshot();
    let retry = shared.retry;
    let mut scheduler = Scheduler {
        shared,
        acks,
        compression,
        map: lanes.map,
        lanes: Scheduler::<P>::lanes_for(&shards, Vec::new(), retry),
        shards,
        held: HashMap::new(),
        next_batch: 0,
        queued_bytes: 0,
        max_queued_bytes: max_in_flight * max_batch_bytes,
        max_held_batches: held_batches,
        max_in_flight,
        max_records: lanes.max_records.max(1),
        max_bytes: max_batch_bytes.max(1),
        call_records: lanes.max_records.max(1),
        in_flight: 0,
        next_lane: 0,
        last_key: None,
        gauges_at: None,
    };
    let mut calls: JoinSet<Answered> = JoinSet::new();
    let mut open = true;
    loop {
        let wake = scheduler.dispatch(&mut calls);
        if !open && scheduler.is_idle() {
            break;
        }
        let room = open && scheduler.has_room();
        tokio::select! {
            biased;
            done = calls.join_next(), if !calls.is_empty() => match done {
                Some(Ok(answered)) => scheduler.answered(answered).await,
                Some(Err(failure)) => {
                    // A call's task cannot fail but by a panic; its records are lost to this
                    // run and read again after a restart.
                    scheduler.in_flight -= 1;
                    error!(flow = %scheduler.shared.flow, %failure, "A delivery task failed.");
                }
                None => {}
            },
            batch = batches.recv(), if room => match batch {
                Some(batch) => scheduler.take(batch).await,
                None => open = false,
            },
            () = sleep_until_some(wake) => {}
            // A map that changes while nothing else happens is noticed within a second.
            () = tokio::time::sleep(Duration::from_secs(1)), if !scheduler.is_idle() => {}
        }
    }
    if !scheduler.held.is_empty() {
        error!(flow = %scheduler.shared.flow, batches = scheduler.held.len(), "Delivery stopped with records not acknowledged; they are read again at the next start.");
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "ordered_tests.rs"]
mod tests;
