//! Giving up on records: past a flow's `max_retry_duration`, refused records are written to
//! the dead-letter file and counted as done.

use tracing::error;

use super::dead_letter::Letters;
use super::shared::{Shared, OPERATOR_LOG_EVERY};
use crate::metrics::FlowMetrics;
use crate::record::{FileRange, OutRecord};

/// Past the flow's `max_retry_duration`, writes `records` to the dead-letter file; true if
/// they were written (and so are done with).
pub(super) async fn give_up<P>(
    shared: &Shared<P>,
    started: tokio::time::Instant,
    records: &[OutRecord],
    ranges: &[FileRange],
    error: &str,
) -> bool {
    let Some((limit, letters)) = &shared.give_up else {
        return false;
    };
    if started.elapsed() < *limit || records.is_empty() {
        return false;
    }
    let written = letters
        .write(&Letters {
            flow: &shared.flow,
            stream: &shared.stream,
            error,
            records,
            ranges,
        })
        .await;
    match written {
        Ok(()) => {
            FlowMetrics::add(&shared.metrics.records_dead_lettered, records.len() as u64);
            error!(flow = %shared.flow, destination = %shared.stream, records = records.len(), cause = %error, path = %letters.path().display(), max_retry_duration = ?limit, "Gave up on records after max_retry_duration; they are in the dead-letter file.");
            true
        }
        Err(failure) => {
            if let Some(held_back) = shared.may_log("dead-letter", OPERATOR_LOG_EVERY) {
                error!(flow = %shared.flow, path = %letters.path().display(), %failure, repeats = held_back, "Cannot write the dead-letter file; the records are kept and retried.");
            }
            false
        }
    }
}
