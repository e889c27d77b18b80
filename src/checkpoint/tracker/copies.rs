//! Continuing a file's checkpoint into its copy after a truncation (copytruncate) or a
//! replacement: the truncated file's earlier reading stays to learn how far its records were
//! delivered, which is where a copy of the file continues, and a copy found while those
//! records are in flight keeps its checkpoint where their delivery has reached.

use std::sync::Arc;

use super::{same_file, AckTracker};
use crate::record::{CopyFrom, Original, SourceFile};

/// How many truncations of one file are remembered for its copies.
pub(super) const MAX_COPIES_KEPT: usize = 4;

/// A copy's reading that starts where its original was read to, while records of the
/// original's reading are still in flight. They hold the copy's first bytes: until they are
/// delivered, the copy's checkpoint is what of them was, so a crash reads them again from the
/// copy instead of losing them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Behind {
    /// The key of the original's reading (or of an earlier reading it continues).
    original: u64,
    /// How far the original's records were delivered: the copy's checkpoint meanwhile.
    pub(super) delivered: u64,
    /// Where the copy's reading started: once the original's delivery reaches it, the copy's
    /// checkpoint is its own.
    until: u64,
}

impl AckTracker {
    /// The file was truncated: a new reading starts at 0; the earlier one stays only to learn
    /// how far its records were delivered, which is where a copy of the file continues.
    pub(super) fn restarted(
        &mut self,
        file: Arc<SourceFile>,
        offset: u64,
        before: Option<CopyFrom>,
    ) {
        let earlier: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, progress)| {
                same_file(&progress.file, &file) && progress.superseded.is_none()
            })
            .map(|(key, _)| *key)
            .collect();
        let delivered = earlier
            .iter()
            .filter_map(|key| self.live.get(key))
            .map(|progress| progress.watermark.offset())
            .max();
        self.forget_readings_of_except(&file, &earlier);
        let copy_from = before.map(|before| CopyFrom {
            head: before.head,
            offset: delivered.map_or(before.offset, |delivered| delivered.min(before.offset)),
        });
        for key in earlier {
            let keep = copy_from.is_some_and(|copy| copy.offset < before.map_or(0, |b| b.offset));
            if keep {
                if let Some(progress) = self.live.get_mut(&key) {
                    progress.superseded = before.map(|b| b.offset);
                }
            } else {
                self.original_delivered(key);
                self.end_reading(key);
            }
        }
        let identity = (file.flow.to_string(), file.id);
        self.start_reading(file, offset);
        if let (Some(saved), Some(copy_from)) = (self.saved.get_mut(&identity), copy_from) {
            saved.copy_from.push(copy_from);
            let excess = saved.copy_from.len().saturating_sub(MAX_COPIES_KEPT);
            saved.copy_from.drain(..excess);
            self.dirty.insert(identity);
        }
    }

    /// The earlier reading `key` of a truncated file, which was read to `limit`, was delivered
    /// further: its copy may continue further now.
    pub(super) fn earlier_reading_delivered(&mut self, key: u64, limit: u64) {
        let Some(progress) = self.live.get(&key) else {
            return;
        };
        let identity = progress.identity.clone();
        let reached = progress.watermark.offset().min(limit);
        let head = progress.file.head;
        self.original_delivered(key);
        if reached >= limit {
            self.end_reading(key);
        }
        if let Some(copy) = self.saved.get_mut(&identity).and_then(|saved| {
            saved
                .copy_from
                .iter_mut()
                .rev()
                .find(|copy| Some(copy.head) == head)
        }) {
            copy.offset = copy.offset.max(reached);
            self.dirty.insert(identity);
        }
    }

    /// A copy's reading `copy` started at `offset`, where `original` was read to: if records
    /// of the original's reading are still in flight, the copy's checkpoint waits for them.
    pub(super) fn wait_for_original(&mut self, copy: u64, original: Original, offset: u64) {
        // The reading before the truncation: superseded, or not yet known to be truncated
        // (the truncation and the copy are told by different tailers). Gone if it was
        // delivered in full.
        let original = self.current_key(original.reading);
        let Some(delivered) = self
            .live
            .get(&original)
            .filter(|_| original != copy)
            .map(|progress| progress.watermark.offset())
        else {
            return;
        };
        if delivered >= offset {
            return;
        }
        let Some(progress) = self.live.get_mut(&copy) else {
            return;
        };
        progress.behind = Some(Behind {
            original,
            delivered,
            until: offset,
        });
        self.waiting_copies.insert(copy);
        let identity = (progress.file.flow.to_string(), progress.file.id);
        if let Some(saved) = self.saved.get_mut(&identity) {
            saved.offset = delivered;
            self.dirty.insert(identity);
        }
    }

    /// The reading `original` was delivered further (or is done): copies waiting for it move
    /// their checkpoints along, and take their own once it reaches where they started.
    pub(super) fn original_delivered(&mut self, original: u64) {
        if self.waiting_copies.is_empty() {
            return;
        }
        let Some((delivered, done)) = self.live.get(&original).map(|progress| {
            let delivered = progress.watermark.offset();
            (
                delivered,
                progress.forget_at.is_some_and(|end| delivered >= end),
            )
        }) else {
            return;
        };
        let mut moved = Vec::new();
        let (live, continued_by) = (&mut self.live, &self.continued_by);
        self.waiting_copies.retain(|copy| {
            let Some(progress) = live.get_mut(copy) else {
                return false; // The copy's reading is over.
            };
            let waits_for_this = |behind: &&mut Behind| {
                continued_by
                    .get(&behind.original)
                    .copied()
                    .unwrap_or(behind.original)
                    == original
            };
            let Some(behind) = progress.behind.as_mut().filter(waits_for_this) else {
                return true;
            };
            let (offset, waiting) = if done || delivered >= behind.until {
                progress.behind = None;
                (progress.watermark.offset(), false)
            } else {
                behind.delivered = behind.delivered.max(delivered);
                (behind.delivered, true)
            };
            moved.push(((progress.file.flow.to_string(), progress.file.id), offset));
            waiting
        });
        for (identity, offset) in moved {
            if let Some(saved) = self.saved.get_mut(&identity) {
                saved.offset = offset;
                self.dirty.insert(identity);
            }
        }
    }
}
