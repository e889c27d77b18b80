//! One file's share of its flow's unread-bytes gauge, and its own gauge in the flow's list of
//! followed files.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::metrics::{FileGauge, FlowMetrics};

/// This file's share of the flow's unread-bytes gauge, taken back when the tailer ends, and
/// its own gauge in the flow's list of followed files.
///
/// Unread is what of the file was not handed on yet: the bytes after the last record counted
/// in `bytes_read`, whether still on disk or already in this tailer's buffers (a chunk waiting
/// for the memory budget, a line without its newline yet, an open multi-line record). So
/// unread + read − delivered counts every byte of the file once, wherever it is.
pub(super) struct Unread {
    metrics: Arc<FlowMetrics>,
    file: FileGauge,
    /// The file's size at the last look.
    size: u64,
    /// Where the records handed on end.
    handed_on: u64,
    /// This file's share of the flow's gauge now.
    current: i64,
}

impl Unread {
    pub(super) fn new(metrics: &Arc<FlowMetrics>, path: &std::path::Path, offset: u64) -> Self {
        Self {
            metrics: Arc::clone(metrics),
            file: metrics.follow_file(path),
            size: offset,
            handed_on: offset,
            current: 0,
        }
    }

    /// The file was found `size` bytes long.
    pub(super) fn set_size(&mut self, size: u64) {
        self.size = size;
        self.update();
    }

    /// Records up to `offset` were handed on (and counted in `bytes_read`).
    pub(super) fn handed_on(&mut self, offset: u64) {
        self.handed_on = self.handed_on.max(offset);
        self.update();
    }

    /// A read of the file, or a look at it, failed (counted for ConsecutiveProcessingErrors).
    pub(super) fn failed(&self) {
        self.file.failed();
    }

    /// A read of the file, or a look at it, worked.
    pub(super) fn succeeded(&self) {
        self.file.succeeded();
    }

    /// The file was truncated to `size` and is read again from its start.
    pub(super) fn restart(&mut self, size: u64) {
        self.handed_on = 0;
        self.set_size(size);
    }

    fn update(&mut self) {
        let unread = self.size.saturating_sub(self.handed_on);
        let unread = i64::try_from(unread).unwrap_or(i64::MAX);
        self.metrics
            .bytes_unread
            .fetch_add(unread - self.current, Ordering::Relaxed);
        self.file.set(unread);
        self.current = unread;
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        self.metrics
            .bytes_unread
            .fetch_sub(self.current, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges(metrics: &FlowMetrics) -> (i64, Vec<u64>) {
        let files = metrics
            .files_unread()
            .into_iter()
            .map(|(_, unread)| unread)
            .collect();
        (metrics.bytes_unread.load(Ordering::Relaxed), files)
    }

    #[test]
    fn unread_is_what_was_not_handed_on_wherever_it_is() {
        let metrics = Arc::new(FlowMetrics::default());
        let mut unread = Unread::new(&metrics, std::path::Path::new("/a.log"), 100);
        unread.set_size(1000);
        assert_eq!(gauges(&metrics), (900, vec![900]));
        // Records to 400 handed on; the bytes read after them wait in the tailer: still unread.
        unread.handed_on(400);
        assert_eq!(gauges(&metrics), (600, vec![600]));
        // The file grew while reading waited.
        unread.set_size(5000);
        assert_eq!(gauges(&metrics), (4600, vec![4600]));
        // Truncated and read again from its start.
        unread.restart(300);
        assert_eq!(gauges(&metrics), (300, vec![300]));
        unread.handed_on(300);
        assert_eq!(gauges(&metrics), (0, vec![0]));
        unread.set_size(350);
        drop(unread);
        assert_eq!(
            gauges(&metrics),
            (0, vec![]),
            "given back when the tailer ends"
        );
    }
}
