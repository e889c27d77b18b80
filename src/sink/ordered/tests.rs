//! Ordered delivery against a simulated stream of several shards that checks no two calls in
//! flight hold records of one shard, refuses records, and keeps what it stored in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Mutex;

use bytes::Bytes;

use super::lanes::key_hash;
use super::*;
use crate::limits::MemoryBudget;
use crate::metrics::FlowMetrics;
use crate::record::{FileId, FileRange, OutRecord, SourceFile};
use crate::shard_map::{even_shards, shard_for};
use crate::sink::{Billing, PutError, RecordFailure, RetryPolicy, Sink, StreamStatus};

/// A stream of shards that refuses records as told and remembers what it stored.
struct Stream {
    shards: Vec<Shard>,
    /// Shards with a call in flight.
    busy: Mutex<HashSet<usize>>,
    /// Two calls in flight held records of one shard.
    overlaps: Mutex<u32>,
    /// Every `n`-th record offered is refused (0: none), unless it is the first of its call.
    refuse_every: u64,
    /// Records of this shard are refused for throttling until this many calls were made.
    hot_shard: Option<(usize, u64)>,
    offered: Mutex<u64>,
    calls: Mutex<u64>,
    /// (partition key, data) in the order stored, and when.
    stored: Mutex<Vec<(String, String, Instant)>>,
    /// Largest number of calls in flight at once.
    most_in_flight: Mutex<(usize, usize)>,
}

impl Stream {
    fn new(shards: u128, refuse_every: u64, hot_shard: Option<(usize, u64)>) -> Arc<Self> {
        Arc::new(Self {
            shards: even_shards(shards),
            busy: Mutex::default(),
            overlaps: Mutex::default(),
            refuse_every,
            hot_shard,
            offered: Mutex::default(),
            calls: Mutex::default(),
            stored: Mutex::default(),
            most_in_flight: Mutex::default(),
        })
    }

    fn shard_of(&self, record: &OutRecord) -> usize {
        shard_for(&self.shards, key_hash(&record.partition_key)).expect("a shard")
    }

    fn stored(&self) -> Vec<(String, String, Instant)> {
        self.stored.lock().expect("lock").clone()
    }
}

impl PutRecords for Stream {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        let shards: HashSet<usize> = records.iter().map(|r| self.shard_of(r)).collect();
        {
            let mut busy = self.busy.lock().expect("lock");
            if !busy.is_disjoint(&shards) {
                *self.overlaps.lock().expect("lock") += 1;
            }
            busy.extend(&shards);
            let mut most = self.most_in_flight.lock().expect("lock");
            most.0 += 1;
            most.1 = most.1.max(most.0);
        }
        let call = {
            let mut calls = self.calls.lock().expect("lock");
            *calls += 1;
            *calls
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut failures = Vec::new();
        // As a shard over its limit does, a shard that refused a record of a call refuses the
        // rest of that call's records for it.
        let mut refusing: HashSet<usize> = HashSet::new();
        for (index, record) in records.iter().enumerate() {
            let offered = {
                let mut offered = self.offered.lock().expect("lock");
                *offered += 1;
                *offered
            };
            let shard = self.shard_of(record);
            let hot = self
                .hot_shard
                .is_some_and(|(hot, until)| hot == shard && call <= until);
            if hot
                || refusing.contains(&shard)
                // Never a call's first record: a call of a multiple of `refuse_every` records
                // whose first record is refused would otherwise be refused whole, every time,
                // and the test would never end.
                || (self.refuse_every > 0 && offered % self.refuse_every == 0 && index > 0)
            {
                refusing.insert(shard);
                failures.push(RecordFailure {
                    index,
                    code: if hot {
                        "ProvisionedThroughputExceededException".into()
                    } else {
                        "InternalFailure".into()
                    },
                    message: "refused".into(),
                });
                continue;
            }
            self.stored.lock().expect("lock").push((
                record.partition_key.clone(),
                String::from_utf8_lossy(&record.data).into_owned(),
                Instant::now(),
            ));
        }
        let mut busy = self.busy.lock().expect("lock");
        for shard in &shards {
            busy.remove(shard);
        }
        self.most_in_flight.lock().expect("lock").0 -= 1;
        Ok(failures)
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        Ok(StreamStatus {
            status: "ACTIVE".into(),
            open_shards: Some(self.shards.len() as i32),
            max_record_bytes: None,
        })
    }
}

fn file(key: u64) -> Arc<SourceFile> {
    Arc::new(SourceFile {
        key,
        flow: Arc::from("app"),
        id: FileId {
            device: 1,
            inode: key,
        },
        head: None,
        path: format!("/logs/{key}.log").into(),
    })
}

/// A batch of `lines` lines of each of `keys` files, interleaved, numbered from `first`; each
/// file's lines keyed by the file.
fn batch(files: &[Arc<SourceFile>], first: u64, lines: u64) -> Batch {
    let mut records = Vec::new();
    let mut ranges = Vec::new();
    for (range, file) in files.iter().enumerate() {
        ranges.push(FileRange {
            file: Arc::clone(file),
            start: first * 10,
            end: (first + lines) * 10,
        });
        let _ = range;
    }
    for line in first..first + lines {
        for (range, file) in files.iter().enumerate() {
            records.push(OutRecord::line(
                Bytes::from(format!("{}:{line:08}", file.key)),
                format!("file-{}", file.key),
                line * 10,
                range as u32,
            ));
        }
    }
    Batch {
        bytes: records.iter().map(OutRecord::size).sum(),
        records,
        ranges,
        reserved: crate::limits::Reservation::none(),
    }
}

struct Running {
    batches: mpsc::Sender<Batch>,
    acks: mpsc::Receiver<Ack>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<FlowMetrics>,
}

fn start(stream: Arc<Stream>, map: Arc<ShardMap>, max_in_flight: usize) -> Running {
    let (batches, batches_received) = mpsc::channel(4);
    let (acks_sender, acks) = mpsc::channel(1024);
    let metrics = Arc::new(FlowMetrics::default());
    let sink = Sink {
        flow: Arc::from("app"),
        stream: "logs".into(),
        client: stream,
        max_in_flight,
        max_batch_bytes: 5 * 1024 * 1024,
        retry: RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        },
        give_up: None,
        metrics: Arc::clone(&metrics),
        billing: Billing::KinesisPutUnits,
        compression: Compression::None,
        acks: acks_sender,
        budget: MemoryBudget::new(64 << 20),
        lanes: Some(Lanes {
            map,
            max_records: 500,
        }),
    };
    let task = tokio::spawn(sink.run(batches_received));
    Running {
        batches,
        acks,
        task,
        metrics,
    }
}

/// Sends `batches` batches of `lines` lines of each of `files` files, then waits for the sink
/// to finish; returns the acknowledged line count per file.
async fn ship(running: Running, files: &[Arc<SourceFile>], batches: u64, lines: u64) -> u64 {
    let Running {
        batches: sender,
        mut acks,
        task,
        ..
    } = running;
    let feeding = {
        let files = files.to_vec();
        tokio::spawn(async move {
            for index in 0..batches {
                let batch = batch(&files, index * lines, lines);
                sender.send(batch).await.expect("the sink takes batches");
            }
        })
    };
    feeding.await.expect("fed");
    task.await.expect("the sink finishes");
    let mut acknowledged = 0;
    while let Ok(ack) = acks.try_recv() {
        if let Ack::Delivered(ranges) = ack {
            acknowledged += ranges.len() as u64;
        }
    }
    acknowledged
}

/// Each key's lines, as stored: every line once and in order.
fn assert_in_order_per_key(stored: &[(String, String, Instant)], keys: usize, lines: u64) {
    let mut per_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, data, _) in stored {
        per_key.entry(key).or_default().push(data);
    }
    assert_eq!(per_key.len(), keys, "every key's lines arrived");
    for (key, data) in per_key {
        let numbers: Vec<u64> = data
            .iter()
            .map(|d| {
                d.split(':')
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .expect("a number")
            })
            .collect();
        let expected: Vec<u64> = (0..lines).collect();
        assert_eq!(numbers, expected, "the lines of {key} in order, each once");
    }
}

#[tokio::test(start_paused = true)]
async fn refused_records_go_again_before_later_records_of_their_shard() {
    let stream = Stream::new(4, 7, None);
    let map = ShardMap::new();
    map.replace(even_shards(4));
    let files: Vec<_> = (1..=8).map(file).collect();
    let running = start(Arc::clone(&stream), map, 4);
    let acknowledged = ship(running, &files, 40, 25).await;
    assert_eq!(
        acknowledged,
        40 * 8,
        "every batch acknowledged, each range once"
    );
    assert_in_order_per_key(&stream.stored(), 8, 1000);
    assert_eq!(
        *stream.overlaps.lock().expect("lock"),
        0,
        "no shard in two calls at once"
    );
    assert!(
        stream.most_in_flight.lock().expect("lock").1 > 1,
        "calls for other shards went in parallel"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_shard_holds_back_its_own_records_only() {
    // Shard 0 throttles everything for its first 30 calls.
    let stream = Stream::new(4, 0, Some((0, 30)));
    let map = ShardMap::new();
    map.replace(even_shards(4));
    let files: Vec<_> = (1..=8).map(file).collect();
    let hot: HashSet<String> = files
        .iter()
        .map(|f| format!("file-{}", f.key))
        .filter(|key| shard_for(&stream.shards, key_hash(key)) == Some(0))
        .collect();
    assert!(
        !hot.is_empty() && hot.len() < 8,
        "some keys hash to the hot shard: {hot:?}"
    );
    let started = Instant::now();
    let running = start(Arc::clone(&stream), map, 4);
    let metrics = Arc::clone(&running.metrics);
    ship(running, &files, 4, 50).await;
    let stored = stream.stored();
    assert_in_order_per_key(&stored, 8, 200);
    let finished = |hot_keys: bool| {
        stored
            .iter()
            .filter(|(key, _, _)| hot.contains(key) == hot_keys)
            .map(|(_, _, at)| at.duration_since(started))
            .max()
            .expect("stored")
    };
    let (cool, hot_done) = (finished(false), finished(true));
    assert!(
        cool * 4 < hot_done,
        "the other shards finished in {cool:?}, long before the hot one ({hot_done:?})"
    );
    assert!(metrics.records_throttled.load(AtomicOrdering::Relaxed) > 0);
}

#[tokio::test(start_paused = true)]
async fn records_are_regrouped_when_the_shard_map_changes() {
    let stream = Stream::new(2, 5, None);
    let map = ShardMap::new();
    // Unknown at first: the hash key space is cut into lanes of its own.
    let files: Vec<_> = (1..=6).map(file).collect();
    let running = start(Arc::clone(&stream), Arc::clone(&map), 4);
    let changing = {
        let map = Arc::clone(&map);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            map.replace(even_shards(2));
        })
    };
    ship(running, &files, 30, 20).await;
    changing.await.expect("changed");
    // Before the map was known, two of the sixteen lanes may share a real shard: order per key
    // holds all the same, which is what is checked.
    assert_in_order_per_key(&stream.stored(), 6, 600);
}

#[test]
fn key_hashes_are_kinesis_md5_big_endian() {
    // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
    assert_eq!(key_hash("a"), 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661);
}
