//! A Kinesis stream's open shards and their hash key ranges, learnt with `ListShards` and shared
//! by a flow's batcher (which groups aggregated records by shard) and its client (which refreshes
//! the map at start, periodically, and when the service puts a record on another shard than the
//! map says, as after resharding). Bottom layer: imports nothing of the crate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

/// One open shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub start: u128,
    pub end: u128,
}

#[derive(Debug, Default)]
pub struct ShardMap {
    /// Sorted by `start`; empty while unknown.
    shards: RwLock<Arc<Vec<Shard>>>,
    refresh: Notify,
    stale: AtomicBool,
}

impl ShardMap {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The shards as last learnt (empty if never).
    pub fn snapshot(&self) -> Arc<Vec<Shard>> {
        let shards = self
            .shards
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&shards)
    }

    /// Replaces the map with `shards` (any order).
    pub fn replace(&self, mut shards: Vec<Shard>) {
        shards.sort_by_key(|shard| shard.start);
        *self
            .shards
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(shards);
        self.stale.store(false, Ordering::Relaxed);
    }

    /// Asks for the map to be learnt again (once, however often it is asked before that).
    pub fn request_refresh(&self) {
        if !self.stale.swap(true, Ordering::Relaxed) {
            self.refresh.notify_one();
        }
    }

    /// Whether a refresh was asked for and has not happened yet.
    pub fn refresh_pending(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Waits until a refresh is asked for.
    pub async fn refresh_requested(&self) {
        self.refresh.notified().await;
    }
}

/// The index of the shard whose range holds `hash`.
pub fn shard_for(shards: &[Shard], hash: u128) -> Option<usize> {
    let after = shards.partition_point(|shard| shard.start <= hash);
    let index = after.checked_sub(1)?;
    (hash <= shards[index].end).then_some(index)
}

/// `count` shards of equal hash key ranges, named as Kinesis names them (for tests).
#[cfg(test)]
pub fn even_shards(count: u128) -> Vec<Shard> {
    let width = u128::MAX / count;
    (0..count)
        .map(|i| Shard {
            id: format!("shardId-{i:012}"),
            start: i * width,
            end: if i + 1 == count {
                u128::MAX
            } else {
                (i + 1) * width - 1
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(count: u128) -> Vec<Shard> {
        even_shards(count)
    }

    #[test]
    fn hashes_find_their_shard() {
        let shards = even(4);
        let width = u128::MAX / 4;
        assert_eq!(shard_for(&shards, 0), Some(0));
        assert_eq!(shard_for(&shards, width - 1), Some(0));
        assert_eq!(shard_for(&shards, width), Some(1));
        assert_eq!(shard_for(&shards, u128::MAX), Some(3));
        assert_eq!(shard_for(&[], 5), None);
        let gap = vec![Shard {
            id: "s".into(),
            start: 10,
            end: 20,
        }];
        assert_eq!(shard_for(&gap, 5), None);
        assert_eq!(shard_for(&gap, 21), None);
        assert_eq!(shard_for(&gap, 15), Some(0));
    }

    #[test]
    fn a_replaced_map_is_sorted_and_refreshes_are_asked_once() {
        let map = ShardMap::new();
        let mut shards = even(3);
        shards.reverse();
        map.replace(shards);
        let snapshot = map.snapshot();
        assert!(snapshot
            .windows(2)
            .all(|pair| pair[0].start < pair[1].start));
        map.request_refresh();
        map.request_refresh();
        assert!(map.stale.load(Ordering::Relaxed));
        map.replace(even(2));
        assert!(!map.stale.load(Ordering::Relaxed));
    }
}
