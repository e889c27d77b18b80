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
//!
//! The loop is here; `batches` takes batches in and acknowledges them, `lanes` keeps the
//! per-shard queues, `calls` builds calls from idle lanes, and `answers` applies their answers.

mod answers;
mod batches;
mod calls;
mod lanes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::error;

use super::shared::Shared;
use super::PutRecords;
use crate::compression::Compression;
use crate::config::{Delivery, DestinationKind, FlowConfig, PartitionKey};
use crate::record::{Ack, Batch};
use crate::shard_map::{Shard, ShardMap};
use batches::Held;
use calls::Answered;
use lanes::Lane;

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

/// Ordered delivery of one flow: its lanes, the batches it holds and its calls in flight.
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

impl<P: PutRecords> Scheduler<P> {
    /// Whether another batch may be taken in.
    fn has_room(&self) -> bool {
        self.held.len() < self.max_held_batches && self.queued_bytes < self.max_queued_bytes
    }

    /// No call in flight and no record waiting.
    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.lanes.iter().all(|lane| lane.queue.is_empty())
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
mod tests;
