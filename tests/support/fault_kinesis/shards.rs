//! The fault server's shards: how the 128-bit hash key space is cut, which shard a record goes
//! to, how shards are split and re-made, each shard's own write limit and what each stored.
//!
//! Every shard ever made is kept, in the order made, which is also the order of their ids:
//! closed shards stay listed (as `ListShards` lists them) with the sequence number that ended
//! them. Records are routed by the open shards only, as the service routes them.

use std::sync::Arc;
use std::time::Instant;

use md5::{Digest, Md5};

use super::{Faults, RateLimit};

/// What one shard has seen since it was made. Records of a call refused as a whole are not
/// routed, so they count nowhere here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStats {
    pub id: String,
    /// Records stored in this shard.
    pub stored: u64,
    /// Records routed to this shard and answered `ProvisionedThroughputExceededException`,
    /// whatever refused them: the drawn per-record throttle, the flow-wide limit or the shard's
    /// own.
    pub throttled: u64,
    /// When the first and the last record stored here were stored.
    pub first_stored: Option<Instant>,
    pub last_stored: Option<Instant>,
}

/// A position in the list of every shard made (the number in its id).
pub type ShardIndex = usize;

/// One shard, open or closed.
pub struct Shard {
    pub id: Arc<str>,
    parent: Option<Arc<str>>,
    start: u128,
    end: u128,
    starting_sequence: u64,
    /// `Some` once closed (split, or replaced by a re-made map).
    ending_sequence: Option<u64>,
    /// The shard's own write limit, `None` when unlimited (and for a closed shard).
    pub limit: Option<RateLimit>,
    pub stats: ShardStats,
}

impl Shard {
    fn new(
        index: ShardIndex,
        parent: Option<Arc<str>>,
        (start, end): (u128, u128),
        starting_sequence: u64,
    ) -> Shard {
        let id = shard_id(index);
        Shard {
            stats: ShardStats {
                id: id.clone(),
                stored: 0,
                throttled: 0,
                first_stored: None,
                last_stored: None,
            },
            id: Arc::from(id),
            parent,
            start,
            end,
            starting_sequence,
            ending_sequence: None,
            limit: None,
        }
    }

    pub fn record_stored(&mut self, at: Instant) {
        self.stats.stored += 1;
        self.stats.first_stored.get_or_insert(at);
        self.stats.last_stored = Some(at);
    }

    /// Closes the shard after `sequence`, the last sequence number handed out.
    fn close(&mut self, sequence: u64) {
        self.ending_sequence = Some(sequence);
        self.limit = None;
    }
}

/// The ids the service gives: `shardId-` and the shard's number in 12 digits.
fn shard_id(index: ShardIndex) -> String {
    format!("shardId-{index:012}")
}

/// A sequence number as the service writes it: 56 decimal digits. Those the server hands out
/// increase across every shard, so a child's always follow its parent's.
pub fn sequence_number(sequence: u64) -> String {
    format!("49{sequence:054}")
}

/// `Faults::shards` as a count: 0 means one shard, as before there were more.
pub fn shard_count(shards: u32) -> u32 {
    shards.max(1)
}

/// The shard a partition key hashes to: the MD5 of its UTF-8 bytes as a big-endian number.
pub fn partition_hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Why an `ExplicitHashKey` is refused: the error code and message the service answers.
pub struct BadHashKey {
    pub code: &'static str,
    pub message: String,
}

/// Reads an `ExplicitHashKey` as the service does: a decimal number without sign or leading
/// zeros (its pattern), no greater than 2^128 - 1 (its range). `record` is the record's
/// position in the call, from 1, as validation messages count.
pub fn explicit_hash_key(text: &str, record: usize) -> Result<u128, BadHashKey> {
    let digits = text.bytes().all(|byte| byte.is_ascii_digit());
    let shaped =
        digits && (text == "0" || (1..=39).contains(&text.len()) && !text.starts_with('0'));
    if !shaped {
        return Err(BadHashKey {
            code: "ValidationException",
            message: format!(
                "1 validation error detected: Value '{text}' at \
                 'records.{record}.member.explicitHashKey' failed to satisfy constraint: Member \
                 must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}})"
            ),
        });
    }
    text.parse().map_err(|_| BadHashKey {
        code: "InvalidArgumentException",
        message: format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. \
             Specified value was {text}"
        ),
    })
}

/// Every shard made so far and the open ones in hash key order.
pub struct ShardMap {
    shards: Vec<Shard>,
    /// Indexes of the open shards, by the start of their ranges: together they cover the whole
    /// hash key space without gaps.
    open: Vec<ShardIndex>,
}

impl ShardMap {
    /// `count` shards (0 counts as 1) splitting the hash key space evenly.
    pub fn new(count: u32) -> ShardMap {
        let mut map = ShardMap {
            shards: Vec::new(),
            open: Vec::new(),
        };
        map.add_even(count, 0);
        map
    }

    /// Closes every open shard at `sequence` (the last sequence number handed out) and makes
    /// `count` new ones, numbered after every shard so far.
    pub fn remake(&mut self, count: u32, sequence: u64) {
        for &index in &self.open {
            self.shards[index].close(sequence);
        }
        self.open.clear();
        self.add_even(count, sequence + 1);
    }

    /// Splits the open shard at `position` (in hash key order) at the middle of its range into
    /// two new shards, and closes it at `sequence`.
    pub fn split(&mut self, position: usize, sequence: u64) -> Result<(), String> {
        let Some(&index) = self.open.get(position) else {
            return Err(format!(
                "there is no open shard at position {position}: the stream has {} open shards",
                self.open.len()
            ));
        };
        let parent = &mut self.shards[index];
        let (start, end) = (parent.start, parent.end);
        if start == end {
            return Err(format!(
                "{} holds a single hash key and cannot be split",
                parent.id
            ));
        }
        parent.close(sequence);
        let parent_id = Some(Arc::clone(&parent.id));
        let middle = start + (end - start) / 2;
        let lower = self.shards.len();
        let halves = [(start, middle), (middle + 1, end)];
        for (offset, range) in halves.into_iter().enumerate() {
            self.shards.push(Shard::new(
                lower + offset,
                parent_id.clone(),
                range,
                sequence + 1,
            ));
        }
        self.open.splice(position..=position, [lower, lower + 1]);
        Ok(())
    }

    /// Appends `count` open shards that cut the space evenly, their sequence numbers starting
    /// at `starting`: each as wide as 2^128 / count, the last taking what the division leaves.
    fn add_even(&mut self, count: u32, starting: u64) {
        let count = shard_count(count);
        let width = even_width(count);
        let first = self.shards.len();
        for i in 0..count {
            let start = width.map_or(0, |width| width * u128::from(i));
            let end = match width {
                Some(width) if i + 1 < count => start + width - 1,
                _ => u128::MAX,
            };
            let index = first + i as usize;
            self.shards
                .push(Shard::new(index, None, (start, end), starting));
            self.open.push(index);
        }
    }

    /// The open shard whose range holds `hash_key`.
    pub fn route(&self, hash_key: u128) -> ShardIndex {
        // The open shards cover the space from 0, so the first one starts at or below any key.
        let after = self
            .open
            .partition_point(|&index| self.shards[index].start <= hash_key);
        self.open[after - 1]
    }

    pub fn shard(&self, index: ShardIndex) -> &Shard {
        &self.shards[index]
    }

    pub fn shard_mut(&mut self, index: ShardIndex) -> &mut Shard {
        &mut self.shards[index]
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The ids of the open shards, in hash key order.
    pub fn open_ids(&self) -> Vec<String> {
        self.open
            .iter()
            .map(|&index| self.shards[index].id.to_string())
            .collect()
    }

    pub fn stats(&self) -> Vec<ShardStats> {
        self.shards
            .iter()
            .map(|shard| shard.stats.clone())
            .collect()
    }

    /// Gives each open shard the write limit `faults` set for it: `shard_records_per_second`,
    /// and for the hot shard the lower of that and its own rate. A shard whose limit changed
    /// (or that had none) starts with a full bucket; one whose limit stayed keeps its tokens.
    pub fn apply_limits(&mut self, faults: &Faults, now: Instant) {
        for (position, &index) in self.open.iter().enumerate() {
            let hot = faults
                .hot_shard
                .and_then(|(hot, rate)| (hot == position).then_some(rate));
            let wanted = match (faults.shard_records_per_second, hot) {
                (Some(every), Some(hot)) => Some(every.min(hot)),
                (every, hot) => every.or(hot),
            };
            let shard = &mut self.shards[index];
            if shard.limit.as_ref().map(RateLimit::per_second) != wanted {
                shard.limit = wanted.map(|rate| RateLimit::new(rate, now));
            }
        }
    }

    /// The `ListShards` answer: every shard, open and closed, in the order of their ids. Only
    /// a closed shard has an `EndingSequenceNumber`.
    pub fn list_shards_json(&self) -> serde_json::Value {
        let shards: Vec<serde_json::Value> = self
            .shards
            .iter()
            .map(|shard| {
                let mut sequence_range = serde_json::json!({
                    "StartingSequenceNumber": sequence_number(shard.starting_sequence),
                });
                if let Some(ending) = shard.ending_sequence {
                    sequence_range["EndingSequenceNumber"] = sequence_number(ending).into();
                }
                let mut listed = serde_json::json!({
                    "ShardId": &*shard.id,
                    "HashKeyRange": {
                        "StartingHashKey": shard.start.to_string(),
                        "EndingHashKey": shard.end.to_string(),
                    },
                    "SequenceNumberRange": sequence_range,
                });
                if let Some(parent) = &shard.parent {
                    listed["ParentShardId"] = (&**parent).into();
                }
                listed
            })
            .collect();
        serde_json::json!({ "Shards": shards })
    }
}

/// 2^128 / count, or `None` for one shard (2^128 does not fit in a `u128`).
fn even_width(count: u32) -> Option<u128> {
    if count <= 1 {
        return None;
    }
    let count = u128::from(count);
    // 2^128 = u128::MAX + 1 = quotient * count + remainder + 1.
    let (quotient, remainder) = (u128::MAX / count, u128::MAX % count);
    Some(quotient + u128::from(remainder + 1 == count))
}
