//! The batches held until every one of their records is accepted: a batch's records are taken
//! into their lanes, and the batch is acknowledged with its last record.

use tokio::time::Instant;

use super::lanes::{Note, Queued};
use super::Scheduler;
use crate::limits::Reservation;
use crate::record::{Ack, Batch, FileRange};
use crate::sink::accounting::count_delivered;
use crate::sink::PutRecords;

/// A batch some of whose records are not yet accepted.
pub(super) struct Held {
    pub(super) ranges: Vec<FileRange>,
    pub(super) outstanding: usize,
    /// The batch's room in the memory budget, given back when the batch is done.
    pub(super) _reserved: Reservation,
    pub(super) started: Instant,
}

impl<P: PutRecords> Scheduler<P> {
    pub(super) async fn take(&mut self, batch: Batch) {
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

    /// One record accepted (or dead-lettered): its batch is acknowledged with its last.
    pub(super) async fn done(&mut self, queued: Queued) {
        self.done_many(queued.note.batch, 1, queued.note.cost).await;
    }

    /// `count` records of `batch`, of `cost` bytes, accepted (or dead-lettered). Their room in
    /// the memory budget is given back with their batch's last record: they share read buffers
    /// with the batch's other records, which other shards' calls may still hold. So a shard
    /// that refuses for long holds the room of every batch it has a record in, and once that is
    /// the flow's share of the budget, reading waits for it.
    pub(super) async fn done_many(&mut self, batch: u64, count: usize, cost: usize) {
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
}
