//! Groups records into calls: at most `max_records` records and `max_bytes` bytes (data plus
//! partition keys) each, sent when full or when the oldest record has waited `max_age`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::combine::Combiner;
use super::partition_key::KeyChooser;
use super::processors::{Chain, Origin};
use crate::limits::RECORD_OVERHEAD;
use crate::record::{Batch, FileRange, Lines, OutRecord};

#[derive(Clone, Debug)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// Builds batches from lines; pure, so the limits are tested without channels or clocks.
#[derive(Debug)]
pub struct BatchBuilder {
    limits: BatchLimits,
    keys: KeyChooser,
    /// Aggregation, packing or compression, when the flow asks for any.
    combiner: Option<Combiner>,
    /// The flow's processors, when it has any.
    processors: Option<Chain>,
    current: Batch,
}

impl BatchBuilder {
    pub fn new(limits: BatchLimits, keys: KeyChooser) -> Self {
        Self {
            limits,
            keys,
            combiner: None,
            processors: None,
            current: Batch::default(),
        }
    }

    /// Combines lines into fewer records (or compresses them) before batching.
    pub fn with_combiner(mut self, combiner: Option<Combiner>) -> Self {
        self.combiner = combiner;
        self
    }

    /// Runs each record through `processors` before it is keyed and batched.
    pub fn with_processors(mut self, processors: Option<Chain>) -> Self {
        self.processors = processors;
        self
    }

    /// Records in the current batch, open groups of lines included.
    fn records(&self) -> usize {
        self.current.records.len() + self.combiner.as_ref().map_or(0, Combiner::open_groups)
    }

    pub fn is_empty(&self) -> bool {
        self.current.records.is_empty() && self.current.ranges.is_empty()
    }

    /// Adds every line of `lines`; returns the batches that filled up on the way.
    pub fn add(&mut self, mut lines: Lines, full: &mut Vec<Batch>) {
        let mut start = lines.file_start;
        // Budget owed by the current batch for records of `lines` added to it, moved over from
        // `lines` once per batch rather than once per record.
        let mut cost = 0;
        for span in &lines.spans {
            if span.data_end == span.data_start {
                // Skipped bytes: no record, but covered, so they are acknowledged in order.
                self.cover(&lines, start, span.file_end);
                start = span.file_end;
                continue;
            }
            let data = lines
                .data
                .slice(span.data_start as usize..span.data_end as usize);
            // The budget was taken for the record as read.
            let record_cost = data.len() + RECORD_OVERHEAD;
            let data = match &mut self.processors {
                None => data,
                Some(chain) => match chain.apply(
                    data,
                    Origin {
                        file: &lines.file,
                        offset: start,
                    },
                ) {
                    Some(processed) => processed,
                    None => {
                        // Left out: covered, so it is acknowledged in order.
                        self.cover(&lines, start, span.file_end);
                        start = span.file_end;
                        continue;
                    }
                },
            };
            let partition_key = self.keys.key_for(&data, &lines.file, start);
            let mut record = OutRecord::line(data, partition_key, start, 0);
            let mut plan = self
                .combiner
                .as_ref()
                .map(|combiner| combiner.plan(&record));
            let (new_records, new_bytes) = plan.as_ref().map_or((1, record.size()), |plan| {
                (plan.new_records, plan.new_bytes)
            });
            let records = self.records();
            let max_bytes = self
                .limits
                .max_bytes
                .saturating_sub(self.combiner.as_ref().map_or(0, Combiner::margin));
            if records + new_records > self.limits.max_records
                || (records > 0 && self.current.bytes + new_bytes > max_bytes)
            {
                self.current
                    .reserved
                    .merge(lines.reserved.take(std::mem::take(&mut cost)));
                full.push(self.take());
                // The batch is new: where the line goes may have changed.
                plan = self
                    .combiner
                    .as_ref()
                    .map(|combiner| combiner.plan(&record));
            }
            self.cover(&lines, start, span.file_end);
            let batch = &mut self.current;
            record.range = u32::try_from(batch.ranges.len().saturating_sub(1)).unwrap_or(u32::MAX);
            match (&mut self.combiner, plan) {
                (Some(combiner), Some(plan)) => combiner.add(plan, record, batch),
                _ => {
                    batch.bytes += record.size();
                    batch.records.push(record);
                }
            }
            cost += record_cost;
            start = span.file_end;
        }
        self.current.reserved.merge(lines.reserved.take(cost));
    }

    /// Adds `[start, end)` of the file of `lines` to the ranges the current batch covers.
    fn cover(&mut self, lines: &Lines, start: u64, end: u64) {
        let ranges = &mut self.current.ranges;
        match ranges.last_mut() {
            Some(range) if Arc::ptr_eq(&range.file, &lines.file) && range.end == start => {
                range.end = end
            }
            _ => ranges.push(FileRange {
                file: Arc::clone(&lines.file),
                start,
                end,
            }),
        }
    }

    /// The partial batch, leaving an empty one.
    pub fn take(&mut self) -> Batch {
        if let Some(combiner) = &mut self.combiner {
            combiner.close_all(&mut self.current);
        }
        std::mem::take(&mut self.current)
    }
}

/// Batches lines from `lines` into `batches` until `lines` closes, then sends the partial batch.
pub async fn run(
    mut builder: BatchBuilder,
    mut lines: mpsc::Receiver<Lines>,
    batches: mpsc::Sender<Batch>,
) {
    let max_age = builder.limits.max_age;
    let mut deadline: Option<Instant> = None;
    let mut full = Vec::new();
    loop {
        let received = match deadline {
            Some(at) => tokio::select! {
                biased;
                received = lines.recv() => received,
                _ = tokio::time::sleep_until(at) => {
                    deadline = None;
                    if batches.send(builder.take()).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
            None => lines.recv().await,
        };
        let Some(received) = received else {
            break;
        };
        let was_empty = builder.is_empty();
        builder.add(received, &mut full);
        for batch in full.drain(..) {
            deadline = None;
            if batches.send(batch).await.is_err() {
                return;
            }
        }
        if builder.is_empty() {
            deadline = None;
        } else if was_empty || deadline.is_none() {
            deadline = Some(Instant::now() + max_age);
        }
    }
    if !builder.is_empty() {
        let _ = batches.send(builder.take()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PartitionKey;
    use crate::record::{FileId, LineSpan, SourceFile};
    use bytes::Bytes;

    fn file(key: u64) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            key,
            flow: Arc::from("test"),
            id: FileId {
                device: 1,
                inode: key,
            },
            head: None,
            path: "/x".into(),
        })
    }

    /// `count` lines of `line_len` bytes each from `file`, starting at `offset`.
    fn lines(file: &Arc<SourceFile>, offset: u64, count: usize, line_len: usize) -> Lines {
        let mut data = Vec::new();
        let mut spans = Vec::new();
        for index in 0..count {
            let start = data.len();
            data.resize(start + line_len - 1, b'a' + (index % 26) as u8);
            data.push(b'\n');
            spans.push(LineSpan {
                data_start: start as u32,
                data_end: data.len() as u32,
                file_end: offset + data.len() as u64,
            });
        }
        Lines {
            file: Arc::clone(file),
            file_start: offset,
            data: Bytes::from(data),
            spans,
            reserved: crate::limits::Reservation::none(),
        }
    }

    fn builder(max_records: usize, max_bytes: usize, key: &str) -> BatchBuilder {
        let limits = BatchLimits {
            max_records,
            max_bytes,
            max_age: Duration::from_secs(1),
        };
        BatchBuilder::new(limits, KeyChooser::new(PartitionKey::Fixed(key.into())))
    }

    #[tokio::test]
    async fn each_batch_takes_the_budget_of_its_own_records() {
        let budget = crate::limits::MemoryBudget::new(1 << 20);
        let mut builder = builder(3, 5 * 1024 * 1024, "k");
        let mut block = lines(&file(1), 0, 5, 10);
        block.reserved = budget.reserve(5 * (10 + RECORD_OVERHEAD)).await;
        let mut full = Vec::new();
        builder.add(block, &mut full);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].reserved.bytes(), 3 * (10 + RECORD_OVERHEAD));
        assert_eq!(builder.take().reserved.bytes(), 2 * (10 + RECORD_OVERHEAD));
        drop(full);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_501st_record_starts_a_new_batch() {
        let mut builder = builder(500, 5 * 1024 * 1024, "k");
        let mut full = Vec::new();
        builder.add(lines(&file(1), 0, 500, 10), &mut full);
        assert!(full.is_empty(), "500 records fit in one call");
        builder.add(lines(&file(1), 5000, 1, 10), &mut full);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].records.len(), 500);
        assert_eq!(full[0].ranges.len(), 1);
        assert_eq!((full[0].ranges[0].start, full[0].ranges[0].end), (0, 5000));
        let rest = builder.take();
        assert_eq!(rest.records.len(), 1);
        assert_eq!((rest.ranges[0].start, rest.ranges[0].end), (5000, 5010));
    }

    #[test]
    fn exactly_five_mebibytes_with_partition_keys_fits_and_one_more_byte_does_not() {
        let key = "0123456789"; // 10 bytes per record
        let max_bytes = 5 * 1024 * 1024;
        // 5 records whose data + key add up to exactly max_bytes.
        let per_record = max_bytes / 5;
        let mut builder = builder(500, max_bytes, key);
        let mut full = Vec::new();
        builder.add(lines(&file(1), 0, 5, per_record - key.len()), &mut full);
        assert!(full.is_empty());
        assert_eq!(builder.current.bytes, max_bytes);
        builder.add(
            lines(&file(1), 5 * (per_record - key.len()) as u64, 1, 1),
            &mut full,
        );
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].bytes, max_bytes);
        assert_eq!(full[0].records.len(), 5);
    }

    #[test]
    fn a_one_mebibyte_record_with_a_long_key_is_counted_with_its_key() {
        let key = "k".repeat(256);
        let record_limit = 1024 * 1024;
        let mut builder = builder(500, record_limit, &key);
        let mut full = Vec::new();
        builder.add(lines(&file(1), 0, 1, record_limit - 256), &mut full);
        assert_eq!(builder.current.bytes, record_limit);
        builder.add(
            lines(&file(1), (record_limit - 256) as u64, 1, 1),
            &mut full,
        );
        assert_eq!(full.len(), 1, "the key's bytes count toward the call limit");
    }

    #[test]
    fn ranges_follow_files_and_merge_when_contiguous() {
        let mut builder = builder(500, 5 * 1024 * 1024, "k");
        let mut full = Vec::new();
        let (a, b) = (file(1), file(2));
        builder.add(lines(&a, 0, 2, 10), &mut full);
        builder.add(lines(&a, 20, 2, 10), &mut full);
        builder.add(lines(&b, 100, 1, 10), &mut full);
        builder.add(lines(&a, 40, 1, 10), &mut full);
        let batch = builder.take();
        let ranges: Vec<_> = batch
            .ranges
            .iter()
            .map(|r| (r.file.key, r.start, r.end))
            .collect();
        assert_eq!(ranges, vec![(1, 0, 40), (2, 100, 110), (1, 40, 50)]);
        assert_eq!(batch.records.len(), 6);
    }

    #[test]
    fn skipped_spans_send_nothing_but_are_covered() {
        let mut builder = builder(500, 5 * 1024 * 1024, "k");
        let mut full = Vec::new();
        let a = file(1);
        let mut block = lines(&a, 0, 3, 10);
        block.spans[1].data_end = block.spans[1].data_start;
        builder.add(block, &mut full);
        let batch = builder.take();
        assert_eq!(batch.records.len(), 2);
        let ranges: Vec<_> = batch.ranges.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(ranges, vec![(0, 30)]);
        // A block with nothing to send still makes a batch, to be acknowledged.
        let mut skipped = lines(&a, 30, 1, 10);
        skipped.spans[0].data_end = 0;
        builder.add(skipped, &mut full);
        assert!(!builder.is_empty());
        let batch = builder.take();
        assert!(batch.records.is_empty());
        assert_eq!(batch.ranges.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_is_sent_after_max_age() {
        let (lines_tx, lines_rx) = mpsc::channel(4);
        let (batches_tx, mut batches_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            builder(500, 5 * 1024 * 1024, "k"),
            lines_rx,
            batches_tx,
        ));
        lines_tx
            .send(lines(&file(1), 0, 3, 10))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert!(
            batches_rx.try_recv().is_err(),
            "not yet: the batch is younger than max_age"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        let batch = batches_rx.recv().await.expect("batch");
        assert_eq!(batch.records.len(), 3);
        drop(lines_tx);
        task.await.expect("batcher");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_input_flushes_the_partial_batch() {
        let (lines_tx, lines_rx) = mpsc::channel(4);
        let (batches_tx, mut batches_rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            builder(500, 5 * 1024 * 1024, "k"),
            lines_rx,
            batches_tx,
        ));
        lines_tx
            .send(lines(&file(1), 0, 2, 10))
            .await
            .expect("send");
        drop(lines_tx);
        let batch = batches_rx.recv().await.expect("batch");
        assert_eq!(batch.records.len(), 2);
        assert!(batches_rx.recv().await.is_none());
        task.await.expect("batcher");
    }
}
