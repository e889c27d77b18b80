//! Counting what the sink did: file bytes delivered, records sent and the units the destination
//! bills them as, and records throttled (with the line that says so).

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::shared::{Shared, TRANSIENT_LOG_EVERY};
use crate::metrics::FlowMetrics;
use crate::record::{FileRange, OutRecord};

/// How a destination bills each record it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Billing {
    /// Kinesis Data Streams: PUT payload units of 25 KiB (data plus partition key), rounded up.
    KinesisPutUnits,
    /// Firehose Direct PUT: each record rounded up to a multiple of 5 KiB.
    FirehoseUnits,
}

/// Kinesis's PUT payload unit.
pub const KINESIS_PUT_UNIT: usize = 25 * 1024;
/// Firehose's billing increment.
pub const FIREHOSE_BILLING_UNIT: usize = 5 * 1024;

impl Billing {
    /// The units `record` is billed as.
    pub fn units(self, record: &OutRecord) -> u64 {
        let (size, unit) = match self {
            Billing::KinesisPutUnits => (record.size(), KINESIS_PUT_UNIT),
            Billing::FirehoseUnits => (record.data.len(), FIREHOSE_BILLING_UNIT),
        };
        size.div_ceil(unit).max(1) as u64
    }
}

/// Counts the file bytes of `ranges` as delivered: every range a batch covers is counted here
/// once, as it was counted read once.
pub(super) fn count_delivered(metrics: &FlowMetrics, ranges: &[FileRange]) {
    let bytes = ranges
        .iter()
        .map(|range| range.end.saturating_sub(range.start))
        .sum();
    FlowMetrics::add(&metrics.bytes_delivered, bytes);
}

/// Counts throttled records and logs, at most every ten seconds, how many there were.
pub(super) fn count_throttled<P>(shared: &Shared<P>, records: u64) {
    if records == 0 {
        return;
    }
    FlowMetrics::add(&shared.metrics.records_throttled, records);
    let mut window = shared
        .throttled
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (last_line, count) = &mut *window;
    *count += records;
    let now = tokio::time::Instant::now();
    let since = last_line.map(|at| now.duration_since(at));
    if since.is_none_or(|since| since >= TRANSIENT_LOG_EVERY) {
        let seconds = since.map_or(0, |since| since.as_secs());
        let limit = shared.pacer.limit().map(|rate| rate.round() as u64);
        warn!(flow = %shared.flow, destination = %shared.stream, records = *count, seconds, records_per_second_limit = limit, "Records throttled by the stream in the last `seconds`; slowing down and sending them again.");
        *last_line = Some(now);
        *count = 0;
    }
}

/// Counts `accepted` records: the lines they carry, the records themselves, their bytes, and
/// the units the destination bills them as.
pub(super) fn record_sent<'a, P>(
    shared: &Shared<P>,
    accepted: impl Iterator<Item = &'a OutRecord>,
) {
    let (mut lines, mut records, mut bytes, mut units) = (0u64, 0u64, 0u64, 0u64);
    for record in accepted {
        lines += u64::from(record.lines);
        records += 1;
        bytes += record.data.len() as u64;
        units += shared.billing.units(record);
    }
    FlowMetrics::add(&shared.metrics.records_sent, lines);
    FlowMetrics::add(&shared.metrics.records_put, records);
    FlowMetrics::add(&shared.metrics.bytes_sent, bytes);
    FlowMetrics::add(&shared.metrics.billing_units, units);
    if shared.failing.swap(false, Ordering::Relaxed) {
        info!(flow = %shared.flow, destination = %shared.stream, "The stream accepts records again.");
    }
}
