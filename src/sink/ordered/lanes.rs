//! The lanes: one queue per shard of the records waiting for it, which lane a record goes to
//! (by its hash key and the shard map), regrouping the waiting records when the map changes,
//! and putting records back at the head of their lanes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use md5::{Digest, Md5};
use tokio::time::Instant;

use super::Scheduler;
use crate::record::OutRecord;
use crate::shard_map::{shard_for, Shard};
use crate::sink::pacing::Pacer;
use crate::sink::{Backoff, PutRecords, RetryPolicy};

/// Lanes while the stream's shards are unknown: equal slices of the hash key space.
pub const UNMAPPED_LANES: usize = 16;

/// A record waiting in its lane, or in a call.
pub(super) struct Queued {
    pub(super) record: OutRecord,
    pub(super) note: Note,
}

/// What the sink knows of a record besides the record.
pub(super) struct Note {
    /// The lane it waits in (set again when lanes are regrouped).
    pub(super) lane: usize,
    /// Where in the hash key space the record goes.
    pub(super) hash: u128,
    /// The batch it came in (see [`Held`](super::batches::Held)).
    pub(super) batch: u64,
    /// Already compressed (it was sent before).
    pub(super) compressed: bool,
    /// Refused or failed before: counted as retried when sent.
    pub(super) retry: bool,
    /// The record's bytes as it came (before compression): its share of what the sink holds
    /// and of its batch's room in the memory budget.
    pub(super) cost: usize,
}

/// One shard's records, oldest first, and how they are being sent.
pub(super) struct Lane {
    pub(super) shard: Option<Arc<str>>,
    pub(super) queue: VecDeque<Queued>,
    /// A call holding this lane's records is in flight.
    pub(super) busy: bool,
    /// Waiting out a backoff or the pacer until then.
    pub(super) not_before: Option<Instant>,
    pub(super) backoff: Backoff,
    pub(super) pacer: Pacer,
}

/// The MD5 of `key` as a big-endian number: where Kinesis puts a record with that key.
pub fn key_hash(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

impl<P: PutRecords> Scheduler<P> {
    pub(super) fn lanes_for(
        shards: &[Shard],
        mut previous: Vec<Lane>,
        retry: RetryPolicy,
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

    pub(super) fn lane_of(&self, hash: u128) -> usize {
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

    pub(super) fn hash_of(&mut self, record: &OutRecord) -> u128 {
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

    /// Regroups the waiting records once the shard map changed and no call is in flight.
    pub(super) fn follow_map(&mut self) -> bool {
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

    /// Puts `records` back at the head of their lanes, in the order they had; with `delay`,
    /// their lanes wait out a backoff first (a slow one if `Some(true)`).
    pub(super) fn requeue(&mut self, records: Vec<Queued>, delay: Option<bool>) {
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
}
