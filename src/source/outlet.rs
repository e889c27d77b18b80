//! Where a source that is not a file tailer (an `.evtx` file, a live Event Log channel, the
//! journal) hands its records on: the pipeline's channel, within the memory budget, and the
//! checkpoint store's acknowledgement channel, with the keep-alive that keeps its checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::FlowConfig;
use crate::limits::{MemoryBudget, RECORD_OVERHEAD};
use crate::metrics::FlowMetrics;
use crate::record::{Ack, FileId, Lines, SourceFile};

/// The device of every identity made from a name (a journal, a channel): no file has it
/// (device numbers are small, and Windows volume serial numbers are 32 bits), so such a
/// checkpoint is never taken for a file's.
pub const NAMED_DEVICE: u64 = u64::MAX;

/// The identity of a source that is not a file, made from its name: the same across restarts.
pub fn named_id(name: &str) -> FileId {
    FileId {
        device: NAMED_DEVICE,
        inode: xxhash_rust::xxh3::xxh3_64(name.as_bytes()),
    }
}

/// Where a source's records and positions go: the pipeline and the checkpoint store, within
/// the memory budget, until `cancel` fires.
pub struct Outlet {
    pub flow: Arc<FlowConfig>,
    pub lines: mpsc::Sender<Lines>,
    pub acks: mpsc::Sender<Ack>,
    pub metrics: Arc<FlowMetrics>,
    pub budget: Arc<MemoryBudget>,
    pub cancel: CancellationToken,
}

impl Outlet {
    /// The source `id` of this flow, shown as `path`, under a new reading key.
    pub fn source(&self, id: FileId, path: PathBuf) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            key: super::tailer::next_file_key(),
            flow: Arc::from(self.flow.name.as_str()),
            id,
            head: None,
            path,
        })
    }

    /// Tells the checkpoint store the source is wanted, so its checkpoint is kept; false if
    /// shutting down.
    pub async fn seen(&self, source: &SourceFile) -> bool {
        let seen = Ack::Seen {
            flow: Arc::clone(&source.flow),
            ids: vec![source.id],
        };
        self.acks.send(seen).await.is_ok()
    }

    /// Tells the checkpoint store the source's records are sent from position `from` on (a
    /// record id, an entry count); false if shutting down.
    pub async fn announce(&self, source: &Arc<SourceFile>, from: u64) -> bool {
        let opened = Ack::Opened {
            file: Arc::clone(source),
            offset: from,
            original: None,
        };
        self.acks.send(opened).await.is_ok()
    }

    /// Hands `lines` on once the memory budget has room; false if shutdown began first.
    pub async fn send(&self, mut lines: Lines) -> bool {
        let records = lines
            .spans
            .iter()
            .filter(|span| span.data_end > span.data_start)
            .count();
        let cost = lines.data.len() + records * RECORD_OVERHEAD;
        let reserve = self.budget.reserve(cost);
        lines.reserved = tokio::select! {
            _ = self.cancel.cancelled() => return false,
            reserved = reserve => reserved,
        };
        let positions = lines
            .spans
            .last()
            .map_or(0, |span| span.file_end - lines.file_start);
        let sent = tokio::select! {
            _ = self.cancel.cancelled() => return false,
            sent = self.lines.send(lines) => sent.is_ok(),
        };
        if sent {
            FlowMetrics::add(&self.metrics.records_read, records as u64);
            FlowMetrics::add(&self.metrics.bytes_read, positions);
        }
        sent
    }

    /// Tells the checkpoint store the file is still wanted, every scan interval, so its
    /// checkpoint is not forgotten while the agent runs.
    pub async fn keep_alive(&self, source: &Arc<SourceFile>) {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(self.flow.scan_interval) => {}
            }
            if !self.seen(source).await {
                return;
            }
        }
    }
}
