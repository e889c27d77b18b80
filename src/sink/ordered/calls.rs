//! Building calls: the heads of lanes that have no call in flight and may send now (their
//! backoff and pacer allow it) are gathered into calls, spread over the free call slots, and
//! each call is sent in a task of its own.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::lanes::{Note, Queued};
use super::Scheduler;
use crate::compression::{compress_records, Compression};
use crate::metrics::FlowMetrics;
use crate::record::OutRecord;
use crate::sink::{PutError, PutRecords, RecordFailure};

/// A lane's queue that empties with room for more than this many records gives the room back:
/// with many shards, each queue's largest backlog would otherwise stay allocated.
const QUEUE_ROOM_KEPT: usize = 1024;

/// What a call's task hands back.
pub(super) struct Answered {
    pub(super) records: Vec<OutRecord>,
    pub(super) notes: Vec<Note>,
    pub(super) lanes: Vec<usize>,
    pub(super) result: Result<Vec<RecordFailure>, PutError>,
}

impl<P: PutRecords> Scheduler<P> {
    /// Starts calls while slots are free and some lane that is not busy has records it may
    /// send now; returns when the next lane waiting out a delay may go.
    pub(super) fn dispatch(&mut self, calls: &mut JoinSet<Answered>) -> Option<Instant> {
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
}
