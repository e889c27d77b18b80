//! The agent's counters, named in one place, and the periodic progress lines: kinship's own
//! structured line, or the Kinesis Agent's prose lines (`progress_format`), and the warning
//! when a flow falls far behind its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::MemoryBudget;
use crate::limits::OpenFiles;

mod progress;

pub use progress::{report_progress, ProgressFormat, ProgressSettings, AGENT_BEHIND_WARN_BYTES};

/// Metric names, as exporters will publish them.
pub mod names {
    pub const RECORDS_READ: &str = "kinship_records_read_total";
    pub const BYTES_READ: &str = "kinship_bytes_read_total";
    pub const RECORDS_SENT: &str = "kinship_records_sent_total";
    pub const RECORDS_PUT: &str = "kinship_service_records_sent_total";
    pub const BILLING_UNITS: &str = "kinship_billing_units_total";
    pub const BYTES_SENT: &str = "kinship_bytes_sent_total";
    pub const RECORDS_FAILED: &str = "kinship_records_failed_total";
    pub const CALLS_FAILED: &str = "kinship_calls_failed_total";
    pub const RECORDS_RETRIED: &str = "kinship_records_retried_total";
    pub const RECORDS_THROTTLED: &str = "kinship_records_throttled_total";
    pub const RECORDS_DEAD_LETTERED: &str = "kinship_records_dead_lettered_total";
    pub const MEMORY_USED: &str = "kinship_memory_budget_used_bytes";
    pub const RECORDS_TRUNCATED: &str = "kinship_records_truncated_total";
    pub const RECORDS_FILTERED: &str = "kinship_records_filtered_total";
    pub const RECORDS_UNPARSABLE: &str = "kinship_records_unparsable_total";
    pub const PARTITION_KEYS_CUT: &str = "kinship_partition_keys_cut_total";
    pub const BYTES_ACKNOWLEDGED: &str = "kinship_bytes_acknowledged_total";
    pub const SHIPPED_FILES: &str = "kinship_shipped_files_total";
    pub const BYTES_BEHIND: &str = "kinship_bytes_behind";
    pub const FILE_BYTES_UNREAD: &str = "kinship_file_bytes_unread";
    pub const PUT_LATENCY: &str = "kinship_put_latency_seconds";
    pub const CALLS_IN_FLIGHT: &str = "kinship_calls_in_flight";
    pub const SHARDS_PACED: &str = "kinship_shards_paced";
    pub const SHARD_RATE_LIMIT: &str = "kinship_shard_rate_limit_records_per_second";
    pub const OPEN_FILES: &str = "kinship_open_files";
    pub const CHECKPOINT_AGE: &str = "kinship_checkpoint_age_seconds";
    pub const UPTIME: &str = "kinship_uptime_seconds";
    pub const PROCESSING_ERRORS: &str = "kinship_processing_errors_total";
    pub const CONSECUTIVE_PROCESSING_ERRORS: &str = "kinship_consecutive_processing_errors";
}

/// Upper bounds, in seconds, of the put latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of call latencies: counts per bucket (not cumulative), their sum and count.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    /// Calls slower than the largest bucket.
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        match LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (the last for `+Inf`), and the sum in seconds.
    pub fn cumulative(&self) -> (Vec<u64>, f64) {
        let mut running = 0;
        let mut counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Ordering::Relaxed);
                running
            })
            .collect();
        counts.push(running + self.over.load(Ordering::Relaxed));
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (counts, sum)
    }
}

/// Counts a call in flight while held.
pub struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of one flow. Every component of the flow adds to them; the progress line reads them.
#[derive(Debug, Default)]
pub struct FlowMetrics {
    /// The flow's destination as CloudWatch's `Destination` dimension shows it.
    pub destination: String,
    /// The flow as the Kinesis Agent names its tailer: `kinesis:STREAM:GLOB` or `fh:STREAM:GLOB`.
    pub tailer_id: String,
    /// Whether the flow has processors (the Kinesis Agent's "transformed" count is zero without).
    pub transforms: bool,
    pub records_read: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Lines the destination accepted (inside aggregated or packed records, each counts).
    pub records_sent: AtomicU64,
    /// Records as the service counts them: one per aggregated or packed record.
    pub records_put: AtomicU64,
    /// Bytes of record data accepted, as sent (after aggregation and compression).
    pub bytes_sent: AtomicU64,
    /// Billing units of the accepted records: 25 KiB PUT payload units for Kinesis, 5 KiB
    /// units for Firehose.
    pub billing_units: AtomicU64,
    /// Records the service refused inside a call that succeeded; each is sent again.
    pub records_failed: AtomicU64,
    /// Calls that failed whole; each is sent again.
    pub calls_failed: AtomicU64,
    /// Records sent again, after a refusal or a failed call.
    pub records_retried: AtomicU64,
    /// Records refused for throttling, alone or with their whole call.
    pub records_throttled: AtomicU64,
    /// Records given up after `max_retry_duration` and written to the dead-letter file.
    pub records_dead_lettered: AtomicU64,
    pub records_truncated: AtomicU64,
    /// Records a `filter` processor left out (acknowledged, never sent).
    pub records_filtered: AtomicU64,
    /// Records a converter could not parse (sent as read or dropped, per `on_error`).
    pub records_unparsable: AtomicU64,
    /// Partition keys taken from records that were longer than the service takes, cut to fit.
    pub partition_keys_cut: AtomicU64,
    /// Bytes of files whose delivery moved a checkpoint forward (counted by the checkpoint
    /// store, as its watermarks advance).
    pub bytes_acknowledged: AtomicU64,
    /// Files deleted by `shipped_files: delete` once every line of them was acknowledged.
    pub files_deleted: AtomicU64,
    /// Files moved by `shipped_files: move` once every line of them was acknowledged.
    pub files_moved: AtomicU64,
    /// Bytes of files the sink acknowledged, each range once, as soon as all of its records
    /// were accepted (or dead-lettered, or were not to be sent): the counterpart of
    /// `bytes_read`, in the same units, whatever happens to the file afterwards (a range of a
    /// file truncated meanwhile moves no checkpoint but was delivered all the same).
    pub bytes_delivered: AtomicU64,
    /// Bytes in the followed files that the tailers have not handed on yet (on disk, or in a
    /// tailer's buffers).
    pub bytes_unread: AtomicI64,
    /// Put calls waiting for their answer.
    pub calls_in_flight: AtomicI64,
    /// Shards whose records are being paced after throttling (`ordering: per_shard`).
    pub shards_paced: AtomicI64,
    /// The lowest records-per-second limit of a paced shard; 0 while none is paced.
    pub shard_rate_limit: AtomicI64,
    /// Errors reading, looking at or opening the flow's files, since start.
    pub processing_errors: AtomicU64,
    /// Attempts to open files a scan found that failed since the last scan in which none did.
    pub open_failures: AtomicU64,
    /// The files being followed, each with its unread bytes and its errors in a row.
    followed: Mutex<BTreeMap<u64, Followed>>,
    next_followed: AtomicU64,
    pub put_latency: LatencyHistogram,
}

/// A followed file as its flow's metrics list it.
#[derive(Debug)]
struct Followed {
    path: PathBuf,
    unread: Arc<AtomicI64>,
    /// Reads or looks at the file that failed since one last succeeded.
    errors: Arc<AtomicU64>,
}

/// One followed file's unread bytes and errors in a row, listed in its flow's metrics until
/// dropped.
#[derive(Debug)]
pub struct FileGauge {
    metrics: Arc<FlowMetrics>,
    key: u64,
    unread: Arc<AtomicI64>,
    errors: Arc<AtomicU64>,
}

impl FileGauge {
    pub fn set(&self, unread: i64) {
        self.unread.store(unread, Ordering::Relaxed);
    }

    /// A read of the file, or a look at it, failed.
    pub fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .processing_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A read of the file, or a look at it, worked: the errors in a row start again from zero.
    /// On the read path: one relaxed load, and a store only after errors.
    pub fn succeeded(&self) {
        if self.errors.load(Ordering::Relaxed) != 0 {
            self.errors.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for FileGauge {
    fn drop(&mut self) {
        self.metrics
            .followed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.key);
    }
}

impl FlowMetrics {
    /// Lists `path` among the files followed until the gauge returned is dropped.
    pub fn follow_file(self: &Arc<Self>, path: &Path) -> FileGauge {
        let key = self.next_followed.fetch_add(1, Ordering::Relaxed);
        let unread = Arc::new(AtomicI64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        self.followed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                key,
                Followed {
                    path: path.to_owned(),
                    unread: Arc::clone(&unread),
                    errors: Arc::clone(&errors),
                },
            );
        FileGauge {
            metrics: Arc::clone(self),
            key,
            unread,
            errors,
        }
    }

    /// An attempt to open a file a scan found failed.
    pub fn open_failed(&self) {
        self.open_failures.fetch_add(1, Ordering::Relaxed);
        self.processing_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed opens counted so far, to give [`Self::scan_done`] at the end of a scan.
    pub fn open_failures_now(&self) -> u64 {
        self.open_failures.load(Ordering::Relaxed)
    }

    /// A scan ended; `failures_at_start` were counted when it began. If no open failed
    /// during it, the failures in a row are over (the file was opened, or is gone).
    pub fn scan_done(&self, failures_at_start: u64) {
        let _ = self.open_failures.compare_exchange(
            failures_at_start,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The Kinesis Agent's `ConsecutiveProcessingErrors` for this flow: the longest run of
    /// failures, without a success between them, of reading or looking at one of its files, or
    /// the failed opens since the last scan that opened (or found no need to open) every file
    /// it found. Zero while every file is read as it should be.
    pub fn consecutive_processing_errors(&self) -> u64 {
        let followed = self
            .followed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let worst = followed
            .values()
            .map(|file| file.errors.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        worst.max(self.open_failures.load(Ordering::Relaxed))
    }

    /// Followed files with bytes not handed on yet: kinship reads all of a flow's files at
    /// once, so this stands for the Kinesis Agent's files waiting behind the one it reads.
    pub fn files_behind(&self) -> u64 {
        self.followed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter(|file| file.unread.load(Ordering::Relaxed) > 0)
            .count() as u64
    }

    /// Each followed file and its unread bytes, in the order they were followed.
    pub fn files_unread(&self) -> Vec<(PathBuf, u64)> {
        self.followed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .map(|file| {
                (
                    file.path.clone(),
                    file.unread.load(Ordering::Relaxed).max(0).unsigned_abs(),
                )
            })
            .collect()
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Counts a call in flight until the result is dropped.
    pub fn call_started(&self) -> InFlight<'_> {
        self.calls_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.calls_in_flight)
    }

    /// How far behind the files acknowledged delivery is: bytes not handed on yet (still on
    /// disk, or in a tailer's buffers) plus bytes handed on but not delivered yet (queued,
    /// batched, in calls, being retried).
    pub fn bytes_behind(&self) -> u64 {
        let unread = self
            .bytes_unread
            .load(Ordering::Relaxed)
            .max(0)
            .unsigned_abs();
        // Delivered is read last: a range is counted read before it can be delivered, so the
        // difference never goes below what is really in flight.
        let delivered = self.bytes_delivered.load(Ordering::Relaxed);
        let read = self.bytes_read.load(Ordering::Relaxed);
        unread + read.saturating_sub(delivered)
    }
}

/// How a flow is named in metrics and progress lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowLabels {
    /// CloudWatch's `Destination` dimension: `KinesisStream:NAME` or `DeliveryStream:NAME`.
    pub destination: String,
    /// The Kinesis Agent's name for the flow's tailer: `kinesis:STREAM:GLOB` or `fh:STREAM:GLOB`.
    pub tailer_id: String,
    /// Whether the flow has processors.
    pub transforms: bool,
}

/// Every flow's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Each running flow's counters, in start order; a reload adds and removes flows.
    flows: RwLock<Vec<(String, Arc<FlowMetrics>)>>,
    started: Instant,
    memory: OnceLock<Arc<MemoryBudget>>,
    open_files: OnceLock<Arc<OpenFiles>>,
    /// When the checkpoint store was last known up to date on disk, in milliseconds since
    /// `started`.
    checkpoint_saved_ms: AtomicU64,
}

/// Totals over every flow at one instant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_sent: u64,
    pub records_put: u64,
    pub bytes_sent: u64,
    pub records_failed: u64,
    pub calls_failed: u64,
    pub records_retried: u64,
    pub records_throttled: u64,
    pub records_dead_lettered: u64,
    pub records_truncated: u64,
    pub records_filtered: u64,
    pub records_unparsable: u64,
}

impl Metrics {
    pub fn new<'a>(flow_names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            flows: RwLock::new(
                flow_names
                    .into_iter()
                    .map(|name| (name.to_owned(), Arc::new(FlowMetrics::default())))
                    .collect(),
            ),
            started: Instant::now(),
            memory: OnceLock::new(),
            open_files: OnceLock::new(),
            checkpoint_saved_ms: AtomicU64::new(0),
        }
    }

    /// Shows the files open over all flows.
    pub fn watch_open_files(&self, open_files: &Arc<OpenFiles>) {
        let _ = self.open_files.set(Arc::clone(open_files));
    }

    /// The checkpoint store is up to date on disk now (it wrote, or had nothing new).
    pub fn checkpoints_saved(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.checkpoint_saved_ms.store(ms, Ordering::Relaxed);
    }

    /// Seconds since the checkpoint store was last known up to date on disk.
    pub fn checkpoint_age(&self) -> f64 {
        let now = self.started.elapsed().as_millis() as f64;
        (now - self.checkpoint_saved_ms.load(Ordering::Relaxed) as f64).max(0.0) / 1000.0
    }

    /// Every flow's name and counters, in start order, at this instant.
    pub fn flows(&self) -> Vec<(String, Arc<FlowMetrics>)> {
        self.read_flows().clone()
    }

    fn read_flows(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Arc<FlowMetrics>)>> {
        self.flows
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives `name` new counters (a flow started, or started again with a changed config:
    /// its counters begin at zero) and returns them.
    pub fn start_flow(&self, name: &str, labels: FlowLabels) -> Arc<FlowMetrics> {
        let counters = Arc::new(FlowMetrics {
            destination: labels.destination,
            tailer_id: labels.tailer_id,
            transforms: labels.transforms,
            ..FlowMetrics::default()
        });
        let mut flows = self
            .flows
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match flows.iter_mut().find(|(flow, _)| flow == name) {
            Some((_, slot)) => *slot = Arc::clone(&counters),
            None => flows.push((name.to_owned(), Arc::clone(&counters))),
        }
        counters
    }

    /// Forgets a flow that a reload removed.
    pub fn remove_flow(&self, name: &str) {
        self.flows
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|(flow, _)| flow != name);
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn memory_used(&self) -> usize {
        self.memory.get().map_or(0, |budget| budget.used())
    }

    pub fn open_files(&self) -> usize {
        self.open_files.get().map_or(0, |files| files.open_now())
    }

    /// Shows the memory budget's use in the progress line.
    pub fn watch_memory(&self, budget: &Arc<MemoryBudget>) {
        let _ = self.memory.set(Arc::clone(budget));
    }

    pub fn flow(&self, name: &str) -> Option<Arc<FlowMetrics>> {
        self.read_flows()
            .iter()
            .find(|(flow, _)| flow == name)
            .map(|(_, metrics)| Arc::clone(metrics))
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for (_, flow) in self.read_flows().iter() {
            let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            totals.records_read += get(&flow.records_read);
            totals.bytes_read += get(&flow.bytes_read);
            totals.records_sent += get(&flow.records_sent);
            totals.records_put += get(&flow.records_put);
            totals.bytes_sent += get(&flow.bytes_sent);
            totals.records_failed += get(&flow.records_failed);
            totals.calls_failed += get(&flow.calls_failed);
            totals.records_retried += get(&flow.records_retried);
            totals.records_throttled += get(&flow.records_throttled);
            totals.records_dead_lettered += get(&flow.records_dead_lettered);
            totals.records_truncated += get(&flow.records_truncated);
            totals.records_filtered += get(&flow.records_filtered);
            totals.records_unparsable += get(&flow.records_unparsable);
        }
        totals
    }

    /// `app=0,web=1234`: bytes behind per flow.
    pub fn behind_by_flow(&self) -> String {
        let parts: Vec<String> = self
            .read_flows()
            .iter()
            .map(|(name, flow)| format!("{name}={}", flow.bytes_behind()))
            .collect();
        parts.join(",")
    }

    /// `app=12,web=0`: billing units per flow.
    pub fn billing_units_by_flow(&self) -> String {
        let parts: Vec<String> = self
            .read_flows()
            .iter()
            .map(|(name, flow)| format!("{name}={}", flow.billing_units.load(Ordering::Relaxed)))
            .collect();
        parts.join(",")
    }

    /// Bytes held in the memory budget now.
    fn memory_now(&self) -> usize {
        self.memory.get().map_or(0, |budget| budget.used())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_behind_counts_unread_and_undelivered_bytes() {
        let metrics = Metrics::new(["a", "b"]);
        let a = metrics.flow("a").expect("flow a");
        a.bytes_unread.store(100, Ordering::Relaxed);
        FlowMetrics::add(&a.bytes_read, 50);
        FlowMetrics::add(&a.bytes_delivered, 20);
        // A checkpoint that moved less (a truncated file's late deliveries) changes nothing.
        FlowMetrics::add(&a.bytes_acknowledged, 5);
        assert_eq!(a.bytes_behind(), 130);
        assert_eq!(metrics.behind_by_flow(), "a=130,b=0");
    }
}
