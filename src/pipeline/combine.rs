//! Combines lines into fewer, larger records before they are batched: KPL aggregates (one open
//! aggregate per shard, so records whose keys hash to different shards never share one) or
//! Firehose packs (one open pack). Open groups belong to the batch being built: they are closed
//! into it before it is handed on, so a batch's file ranges cover exactly the lines it carries.
//! Records are built small enough to stay under the limit once compressed; the sink compresses
//! them, in its concurrent calls.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::kpl::{key_hash, Aggregate};
use super::pack::Pack;
use crate::compression::Compression;
use crate::config::Combine;
use crate::record::{Batch, OutRecord};
use crate::shard_map::{shard_for, Shard, ShardMap};

/// Where a line goes: the open group it joins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// The shard, by index in the batch's snapshot of the shard map.
    Shard(usize),
    /// Records with exactly this key (the shard map is not known).
    Key(String),
    /// The one Firehose pack.
    Pack,
}

#[derive(Debug)]
enum Body {
    Kpl(Aggregate),
    Pack(Pack),
}

/// An open group and the first line's place, which the combined record keeps.
#[derive(Debug)]
struct Group {
    body: Body,
    /// The first line's record (its key, offset and file range).
    first: OutRecord,
    /// Its size as last counted into the batch's bytes.
    counted: usize,
}

impl Group {
    fn size(&self) -> usize {
        match &self.body {
            Body::Kpl(aggregate) => aggregate.encoded_len() + self.first.partition_key.len(),
            Body::Pack(pack) => pack.encoded_len(),
        }
    }

    fn lines(&self) -> usize {
        match &self.body {
            Body::Kpl(aggregate) => aggregate.len(),
            Body::Pack(pack) => pack.len(),
        }
    }
}

/// What adding one line does to the batch.
#[derive(Debug)]
pub struct Plan {
    slot: Option<Slot>,
    /// The line's open group is full and is closed first.
    close_first: bool,
    /// Records the batch gains (open groups count as records).
    pub new_records: usize,
    /// Bytes the batch gains (at most; compression only makes records smaller).
    pub new_bytes: usize,
}

#[derive(Debug)]
pub struct Combiner {
    mode: Combine,
    /// The largest combined record, data plus key, with the compression margin kept free.
    limit: usize,
    /// Room kept for compression: calls are built this much under their limit too, so a call
    /// holding one full record has no room left for a sliver of another.
    margin: usize,
    shards: Option<Arc<ShardMap>>,
    /// The shard map as it was when the current batch started.
    snapshot: Arc<Vec<Shard>>,
    groups: HashMap<Slot, Group>,
}

impl Combiner {
    /// A combiner for `mode`, or `None` when lines are sent as they are.
    pub fn new(
        mode: Combine,
        compression: Compression,
        record_limit: usize,
        shards: Option<Arc<ShardMap>>,
    ) -> Option<Self> {
        if mode == Combine::None {
            return None;
        }
        let limit = match mode {
            Combine::Pack { record_bytes } => record_bytes.min(record_limit),
            _ => record_limit,
        };
        let snapshot = shards
            .as_ref()
            .map_or_else(|| Arc::new(Vec::new()), |map| map.snapshot());
        Some(Self {
            mode,
            limit: limit.saturating_sub(compression.margin(record_limit)),
            margin: compression.margin(record_limit),
            shards,
            snapshot,
            groups: HashMap::new(),
        })
    }

    pub fn margin(&self) -> usize {
        self.margin
    }

    pub fn open_groups(&self) -> usize {
        self.groups.len()
    }

    /// Decides where `record` goes and what it adds to the batch.
    pub fn plan(&self, record: &OutRecord) -> Plan {
        let alone = |size: usize| Plan {
            slot: None,
            close_first: false,
            new_records: 1,
            new_bytes: size,
        };
        let slot = match self.mode {
            Combine::None => return alone(record.size()),
            Combine::Pack { .. } => Slot::Pack,
            Combine::Kpl => match shard_for(&self.snapshot, key_hash(&record.partition_key)) {
                Some(index) => Slot::Shard(index),
                None => Slot::Key(record.partition_key.clone()),
            },
        };
        let key = &record.partition_key;
        let data = &record.data;
        let size_alone = match self.mode {
            Combine::Kpl => Aggregate::encoded_len_alone(key, data.len()) + key.len(),
            _ => Pack::default().encoded_len_with(data),
        };
        if size_alone > self.limit {
            // Too big to combine even alone: sent as it is.
            return alone(record.size());
        }
        match self.groups.get(&slot) {
            Some(group) => {
                let grown = match &group.body {
                    Body::Kpl(aggregate) => {
                        aggregate.encoded_len_with(key, data.len())
                            + group.first.partition_key.len()
                    }
                    Body::Pack(pack) => pack.encoded_len_with(data),
                };
                if grown <= self.limit {
                    Plan {
                        slot: Some(slot),
                        close_first: false,
                        new_records: 0,
                        new_bytes: grown - group.counted,
                    }
                } else {
                    Plan {
                        slot: Some(slot),
                        close_first: true,
                        new_records: 1,
                        new_bytes: size_alone,
                    }
                }
            }
            None => Plan {
                slot: Some(slot),
                close_first: false,
                new_records: 1,
                new_bytes: size_alone,
            },
        }
    }

    /// Adds `record` to `batch` as `plan` says.
    pub fn add(&mut self, plan: Plan, record: OutRecord, batch: &mut Batch) {
        let Some(slot) = plan.slot else {
            batch.bytes += record.size();
            batch.records.push(record);
            return;
        };
        if plan.close_first {
            if let Some(group) = self.groups.remove(&slot) {
                self.close(&slot, group, batch);
            }
        }
        let group = self.groups.entry(slot).or_insert_with(|| Group {
            body: match self.mode {
                Combine::Kpl => Body::Kpl(Aggregate::default()),
                _ => Body::Pack(Pack::default()),
            },
            first: OutRecord {
                data: Bytes::new(),
                ..record.clone()
            },
            counted: 0,
        });
        match &mut group.body {
            Body::Kpl(aggregate) => aggregate.add(&record.partition_key, record.data),
            Body::Pack(pack) => pack.add(record.data),
        }
        let size = group.size();
        batch.bytes = batch.bytes + size - group.counted;
        group.counted = size;
    }

    /// Closes every open group into `batch`, and takes a fresh look at the shard map for the
    /// next batch.
    pub fn close_all(&mut self, batch: &mut Batch) {
        let mut groups: Vec<(Slot, Group)> = self.groups.drain().collect();
        // In file order of their first lines, as far as one batch goes.
        groups.sort_by_key(|(_, group)| (group.first.range, group.first.offset));
        for (slot, group) in groups {
            self.close(&slot, group, batch);
        }
        if let Some(map) = &self.shards {
            self.snapshot = map.snapshot();
        }
    }

    fn close(&self, slot: &Slot, group: Group, batch: &mut Batch) {
        batch.bytes -= group.counted;
        let lines = group.lines();
        let mut record = group.first;
        match group.body {
            Body::Kpl(aggregate) if aggregate.len() == 1 => {
                // One line: an aggregate would only add overhead; deaggregators pass plain
                // records through.
                if let Some((_, data)) = aggregate.into_records().pop() {
                    record.data = data;
                }
            }
            Body::Kpl(aggregate) => {
                record.data = Bytes::from(aggregate.encode());
                record.explicit_hash_key = match slot {
                    Slot::Shard(index) => self
                        .snapshot
                        .get(*index)
                        .map(|shard| shard.start.to_string().into_boxed_str()),
                    _ => None,
                };
            }
            Body::Pack(pack) => record.data = Bytes::from(pack.encode()),
        }
        record.lines = u32::try_from(lines).unwrap_or(u32::MAX);
        batch.bytes += record.size();
        batch.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;
    use crate::config::PartitionKey;
    use crate::pipeline::batcher::{BatchBuilder, BatchLimits};
    use crate::pipeline::kpl::testing::decode;
    use crate::pipeline::kpl::MAGIC;
    use crate::pipeline::partition_key::KeyChooser;
    use crate::record::{FileId, LineSpan, Lines, SourceFile};

    fn file() -> Arc<SourceFile> {
        Arc::new(SourceFile {
            key: 1,
            flow: Arc::from("test"),
            id: FileId {
                device: 1,
                inode: 1,
            },
            head: None,
            path: "/x".into(),
        })
    }

    /// A block of `lines` read from the start of a file.
    fn block(lines: &[Vec<u8>]) -> Lines {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for line in lines {
            let start = data.len();
            data.extend_from_slice(line);
            spans.push(LineSpan {
                data_start: start as u32,
                data_end: data.len() as u32,
                file_end: data.len() as u64,
            });
        }
        Lines {
            file: file(),
            file_start: 0,
            data: Bytes::from(data),
            spans,
            reserved: crate::limits::Reservation::none(),
        }
    }

    /// Line `i`: about 100 bytes, with a user name to key on.
    fn line(i: usize) -> Vec<u8> {
        format!(
            "{i:06} user=u{} GET /item/{i} HTTP/1.1 200 {}\n",
            i % 37,
            "x".repeat(i % 60)
        )
        .into_bytes()
    }

    fn four_shards() -> Arc<ShardMap> {
        let map = ShardMap::new();
        let width = u128::MAX / 4;
        map.replace(
            (0..4u128)
                .map(|i| Shard {
                    id: format!("shardId-{i:012}"),
                    start: i * width,
                    end: if i == 3 {
                        u128::MAX
                    } else {
                        (i + 1) * width - 1
                    },
                })
                .collect(),
        );
        map
    }

    fn run(
        lines: &[Vec<u8>],
        key: PartitionKey,
        mode: Combine,
        compression: Compression,
        record_limit: usize,
        shards: Option<Arc<ShardMap>>,
    ) -> Vec<Batch> {
        let limits = BatchLimits {
            max_records: 500,
            max_bytes: 5 * 1024 * 1024,
            max_age: Duration::from_secs(1),
        };
        let mut builder = BatchBuilder::new(limits, KeyChooser::new(key))
            .with_combiner(Combiner::new(mode, compression, record_limit, shards));
        let mut batches = Vec::new();
        for chunk in lines.chunks(97) {
            builder.add(block(chunk), &mut batches);
        }
        batches.push(builder.take());
        batches
    }

    /// Every user record of `batches`, in the order sent, with its key and the shard the
    /// record carrying it was routed to.
    fn user_records(batches: &[Batch], shards: &[Shard]) -> Vec<(String, Vec<u8>, Option<usize>)> {
        let mut out = Vec::new();
        for record in batches.iter().flat_map(|batch| &batch.records) {
            let routed = match &record.explicit_hash_key {
                Some(key) => shard_for(shards, key.parse().expect("decimal")),
                None => shard_for(shards, key_hash(&record.partition_key)),
            };
            if record.data.starts_with(&MAGIC) {
                let (keys, records) = decode(&record.data);
                assert_eq!(records.len(), record.lines as usize);
                for (index, data) in records {
                    out.push((keys[index as usize].clone(), data, routed));
                }
            } else {
                assert_eq!(record.lines, 1);
                out.push((record.partition_key.clone(), record.data.to_vec(), routed));
            }
        }
        out
    }

    #[test]
    fn aggregates_never_exceed_the_record_limit_and_carry_every_line_with_its_key() {
        let lines: Vec<Vec<u8>> = (0..3000).map(line).collect();
        for limit in [1024usize, 4096, 65536, 1024 * 1024] {
            let batches = run(
                &lines,
                PartitionKey::Random,
                Combine::Kpl,
                Compression::None,
                limit,
                Some(four_shards()),
            );
            let records: Vec<&OutRecord> = batches.iter().flat_map(|b| &b.records).collect();
            for record in &records {
                assert!(record.size() <= limit, "{} > {limit}", record.size());
            }
            let delivered = user_records(&batches, &four_shards().snapshot());
            let data: Vec<Vec<u8>> = delivered.iter().map(|(_, data, _)| data.clone()).collect();
            let mut sorted = data.clone();
            sorted.sort();
            let mut expected = lines.clone();
            expected.sort();
            assert_eq!(sorted, expected, "limit {limit}");
            // Far fewer records than lines once aggregates can hold many.
            if limit >= 65536 {
                assert!(
                    records.len() * 50 < lines.len(),
                    "{} records",
                    records.len()
                );
            }
            // Each batch covers exactly the lines it carries.
            for batch in &batches {
                let lines_in: u32 = batch.records.iter().map(|r| r.lines).sum();
                let covered: u64 = batch.ranges.iter().map(|r| r.end - r.start).sum();
                let bytes: usize = user_records(std::slice::from_ref(batch), &[])
                    .iter()
                    .map(|(_, data, _)| data.len())
                    .sum();
                assert_eq!(covered as usize, bytes);
                assert!(lines_in > 0 || batch.records.is_empty());
            }
        }
    }

    #[test]
    fn records_whose_keys_hash_to_different_shards_never_share_an_aggregate() {
        let lines: Vec<Vec<u8>> = (0..2000).map(line).collect();
        let shards = four_shards();
        let batches = run(
            &lines,
            PartitionKey::Random,
            Combine::Kpl,
            Compression::None,
            64 * 1024,
            Some(Arc::clone(&shards)),
        );
        let snapshot = shards.snapshot();
        let mut aggregates = 0;
        for record in batches.iter().flat_map(|b| &b.records) {
            if !record.data.starts_with(&MAGIC) {
                continue;
            }
            aggregates += 1;
            let routed: u128 = record
                .explicit_hash_key
                .as_deref()
                .expect("aggregates are routed by explicit hash key")
                .parse()
                .expect("decimal");
            let shard = shard_for(&snapshot, routed).expect("in a shard");
            assert_eq!(
                routed, snapshot[shard].start,
                "the shard's own starting key"
            );
            let (keys, _) = decode(&record.data);
            for key in keys {
                assert_eq!(shard_for(&snapshot, key_hash(&key)), Some(shard), "{key}");
            }
        }
        assert!(aggregates >= 4, "{aggregates}");
        // Every line's own key is kept and routed to its own shard.
        for (key, _, routed) in user_records(&batches, &snapshot) {
            assert_eq!(routed, shard_for(&snapshot, key_hash(&key)));
        }
    }

    #[test]
    fn a_record_too_big_to_aggregate_is_sent_alone() {
        let limit = 4096;
        let mut big = vec![b'b'; limit - 30];
        big.push(b'\n');
        let lines = vec![line(1), big.clone(), line(2)];
        let batches = run(
            &lines,
            PartitionKey::Fixed("k".into()),
            Combine::Kpl,
            Compression::None,
            limit,
            Some(four_shards()),
        );
        let records: Vec<&OutRecord> = batches.iter().flat_map(|b| &b.records).collect();
        let alone = records
            .iter()
            .find(|record| record.data.len() == big.len())
            .expect("the big line alone");
        assert_eq!(alone.data.as_ref(), &big[..]);
        assert_eq!((alone.lines, alone.explicit_hash_key.as_deref()), (1, None));
        assert!(records.iter().all(|record| record.size() <= limit));
        let delivered: Vec<Vec<u8>> = user_records(&batches, &[])
            .into_iter()
            .map(|(_, data, _)| data)
            .collect();
        assert_eq!(delivered.len(), 3);
        assert!(delivered.contains(&big) && delivered.contains(&line(1)));
    }

    #[test]
    fn without_a_shard_map_only_equal_keys_share_an_aggregate() {
        let lines: Vec<Vec<u8>> = (0..500).map(line).collect();
        let batches = run(
            &lines,
            PartitionKey::Extracted {
                from: crate::config::KeyField::Regex(crate::pattern::Pattern {
                    text: r"user=(\w+)".into(),
                    regex: regex::bytes::Regex::new(r"user=(\w+)").expect("regex"),
                }),
                fallback: Box::new(PartitionKey::Random),
            },
            Combine::Kpl,
            Compression::None,
            1024 * 1024,
            Some(ShardMap::new()),
        );
        let mut aggregates = 0;
        for record in batches.iter().flat_map(|b| &b.records) {
            let (keys, _) = decode(&record.data);
            assert_eq!(keys.len(), 1, "one key per aggregate: {keys:?}");
            assert_eq!(keys[0], record.partition_key);
            assert!(record.explicit_hash_key.is_none());
            aggregates += 1;
        }
        assert_eq!(aggregates, 37, "one aggregate per user");
    }

    #[test]
    fn firehose_packs_hold_whole_lines_under_the_limit() {
        let mut lines: Vec<Vec<u8>> = (0..3000).map(line).collect();
        lines.push(b"last line without newline".to_vec());
        let limit = 10 * 1024;
        let batches = run(
            &lines,
            PartitionKey::None,
            Combine::Pack {
                record_bytes: limit,
            },
            Compression::None,
            1000 * 1024,
            None,
        );
        let records: Vec<&OutRecord> = batches.iter().flat_map(|b| &b.records).collect();
        let mut joined = Vec::new();
        for record in &records {
            assert!(record.data.len() <= limit);
            assert!(record.data.ends_with(b"\n"));
            assert_eq!(record.partition_key, "");
            joined.extend_from_slice(&record.data);
        }
        let mut expected = lines.concat();
        expected.push(b'\n');
        assert_eq!(
            joined, expected,
            "the same lines, in order, one newline each"
        );
        let line_count: u32 = records.iter().map(|r| r.lines).sum();
        assert_eq!(line_count as usize, lines.len());
        assert!(
            records.len() * 20 < lines.len(),
            "{} records",
            records.len()
        );
    }

    #[test]
    fn compressed_records_decompress_to_what_would_have_been_sent() {
        let lines: Vec<Vec<u8>> = (0..2000).map(line).collect();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let batches = run(
                &lines,
                PartitionKey::None,
                Combine::Pack {
                    record_bytes: 1000 * 1024,
                },
                compression,
                1000 * 1024,
                None,
            );
            let mut joined = Vec::new();
            let mut sent = 0;
            let mut batches = batches;
            for batch in &mut batches {
                crate::compression::compress_records(&mut batch.records, compression);
            }
            for record in batches.iter().flat_map(|b| &b.records) {
                sent += record.data.len();
                let plain = match compression {
                    Compression::Gzip => {
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&record.data[..])
                            .read_to_end(&mut out)
                            .expect("gzip");
                        out
                    }
                    _ => zstd::stream::decode_all(&record.data[..]).expect("zstd"),
                };
                joined.extend_from_slice(&plain);
            }
            assert_eq!(joined, lines.concat(), "{compression:?}");
            assert!(
                sent * 4 < joined.len(),
                "{compression:?}: {sent} of {}",
                joined.len()
            );
        }
    }
}
