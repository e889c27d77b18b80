//! The ordered acknowledgement tracker: a file's checkpoint advances only across a contiguous
//! run of delivered ranges, so a record still being retried holds its file's checkpoint back,
//! however many later calls finished first.
//!
//! This module keeps the readings and the checkpoints to save; [`watermark`] orders one
//! reading's acknowledgements, and [`copies`] continues a truncated file's checkpoint into its
//! copy.

mod copies;
mod fast_hash;
mod watermark;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{Ack, Acknowledged, CopyFrom, FileId, FileRange, Head, Original, SourceFile};
use copies::Behind;
use fast_hash::{FastMap, FastSet};
use watermark::Watermark;

/// One file's saved position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub flow: String,
    pub id: FileId,
    /// The file's first bytes, hashed; `None` if it was empty when opened.
    pub head: Option<Head>,
    pub path: PathBuf,
    /// Every byte before this offset was delivered.
    pub offset: u64,
    /// When a scan last found the file, in seconds since the Unix epoch.
    pub seen: u64,
    /// Set when the file was truncated: its copy continues from here. The latest truncations
    /// are kept, up to `MAX_COPIES_KEPT`, oldest first: a file truncated twice in quick
    /// succession may have two copies still to be found.
    pub copy_from: Vec<CopyFrom>,
    /// Where a source that is not a file resumes (the journal's cursor of the last entry
    /// delivered, with every entry before it): set for `journald` flows only.
    pub cursor: Option<String>,
}

/// A saved checkpoint's key: its flow and its file's identity.
pub type Identity = (String, FileId);

/// What changed in the saved checkpoints since the last `AckTracker::take_delta`: each
/// changed checkpoint in full, and the keys of those forgotten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub changed: Vec<Checkpoint>,
    pub removed: Vec<Identity>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// How stale the saved `seen` time may get before it alone makes the file worth writing.
const SEEN_PRECISION_SECS: u64 = 3600;

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    crate::clock::unix_seconds()
}

/// One reading of a file: how far its records were delivered, and what ends it.
#[derive(Debug)]
struct Progress {
    file: Arc<SourceFile>,
    /// The key of the file's saved checkpoint (its flow and identity, which every later
    /// `file` of this reading shares), made once rather than for each acknowledgement.
    identity: Identity,
    watermark: Watermark,
    /// Set when the file was released because it was deleted: forget it once delivered to here.
    forget_at: Option<u64>,
    /// Set for the earlier reading of a truncated file: its late acknowledgements only move
    /// the saved `copy_from` offset, up to this offset.
    superseded: Option<u64>,
    /// Set for a copy of a file truncated while its records were in flight.
    behind: Option<Behind>,
    /// Cursors of entries read but not yet delivered, by the position their entry ends at, in
    /// order (sources that are not files: see [`Ack::Marked`]).
    marks: VecDeque<(u64, Box<str>)>,
}

/// Hears files opened and ranges delivered, and keeps each file's checkpoint: how far its
/// records were delivered without a gap.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Files being read, by their per-process key.
    live: FastMap<u64, Progress>,
    /// Keys of earlier readings that a later reading of the same file continues.
    continued_by: FastMap<u64, u64>,
    /// Keys of copies' readings whose checkpoints wait for their originals' (see [`Behind`]).
    waiting_copies: FastSet<u64>,
    /// The positions to save, by flow and identity.
    saved: FastMap<Identity, Checkpoint>,
    /// Keys of `saved` changed (or removed) since the last delta was taken: a write costs what
    /// changed, not what is saved.
    dirty: FastSet<Identity>,
}

impl AckTracker {
    /// Starts from the checkpoints read at start-up.
    pub fn new(loaded: Vec<Checkpoint>) -> Self {
        let saved = loaded
            .into_iter()
            .map(|c| ((c.flow.clone(), c.id), c))
            .collect();
        Self {
            saved,
            ..Self::default()
        }
    }

    /// Applies one event; returns how many bytes became newly delivered at the watermark.
    pub(crate) fn apply(&mut self, ack: Ack) -> u64 {
        match ack {
            Ack::Opened {
                file,
                offset,
                original,
            } => {
                self.opened(file, offset, original);
                0
            }
            Ack::Restarted {
                file,
                offset,
                before,
            } => {
                self.restarted(file, offset, before);
                0
            }
            Ack::Delivered(ranges) => ranges.into_iter().map(|range| self.delivered(range)).sum(),
            Ack::Closed { file, end } => {
                self.closed(&file, end);
                0
            }
            Ack::Identified { file } => {
                self.identified(file);
                0
            }
            Ack::Seen { flow, ids } => {
                self.seen(&flow, &ids, unix_now());
                0
            }
            Ack::AskAcknowledged { flow, ids, reply } => {
                // The source may have stopped asking meanwhile: nothing to tell then.
                let _ = reply.send(self.acknowledged(&flow, &ids));
                0
            }
            Ack::Shipped { flow, id } => {
                self.shipped(&flow, id);
                0
            }
            Ack::Marked { file, end, cursor } => {
                self.marked(&file, end, cursor);
                0
            }
        }
    }

    /// How far each of `ids` of `flow` was acknowledged: its saved offset, which advances only
    /// across delivered bytes, so that nothing before it is in flight. A file another flow
    /// follows too is told at the lesser of the two offsets: it is not done with while any flow
    /// that read it still has lines of it to deliver.
    pub(crate) fn acknowledged(&self, flow: &str, ids: &[FileId]) -> Vec<Option<Acknowledged>> {
        let mut told: FastMap<FileId, Option<Acknowledged>> = ids
            .iter()
            .map(|id| {
                let own = self.saved.get(&(flow.to_owned(), *id));
                let own = own.map(|saved| Acknowledged {
                    offset: saved.offset,
                    head: saved.head,
                });
                (*id, own)
            })
            .collect();
        for saved in self.saved.values() {
            if let Some(Some(own)) = told.get_mut(&saved.id) {
                own.offset = own.offset.min(saved.offset);
            }
        }
        ids.iter()
            .map(|id| told.get(id).copied().flatten())
            .collect()
    }

    /// The file `id` of `flow` is done with (deleted or moved away): its readings end and its
    /// checkpoint is forgotten, so that the store does not grow.
    pub(crate) fn shipped(&mut self, flow: &str, id: FileId) {
        let readings: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, progress)| *progress.file.flow == *flow && progress.file.id == id)
            .map(|(key, _)| *key)
            .collect();
        for key in readings {
            self.waiting_copies.remove(&key);
            self.end_reading(key);
        }
        let identity = (flow.to_owned(), id);
        if self.saved.remove(&identity).is_some() {
            self.dirty.insert(identity);
        }
    }

    /// Notes that a scan of `flow` found `ids` at `now`.
    pub(crate) fn seen(&mut self, flow: &str, ids: &[FileId], now: u64) {
        let flow = flow.to_owned();
        for id in ids {
            let identity = (flow.clone(), *id);
            if let Some(saved) = self.saved.get_mut(&identity) {
                if now.saturating_sub(saved.seen) >= SEEN_PRECISION_SECS {
                    self.dirty.insert(identity);
                }
                saved.seen = saved.seen.max(now);
            }
        }
    }

    /// Forgets the checkpoints of files that no scan found (and no tailer followed) for
    /// `max_age`; returns them.
    pub(crate) fn expire(&mut self, now: u64, max_age: Duration) -> Vec<Checkpoint> {
        let mut expired: Vec<Identity> = self
            .saved
            .iter()
            .filter(|(_, saved)| now.saturating_sub(saved.seen) > max_age.as_secs())
            .map(|(identity, _)| identity.clone())
            .collect();
        expired.sort_unstable();
        let mut forgotten = Vec::new();
        for identity in expired {
            let stale: Vec<u64> = self
                .live
                .iter()
                .filter(|(_, p)| p.file.id == identity.1 && *p.file.flow == *identity.0)
                .map(|(key, _)| *key)
                .collect();
            for key in stale {
                self.end_reading(key);
            }
            forgotten.extend(self.saved.remove(&identity));
            self.dirty.insert(identity);
        }
        forgotten
    }

    fn opened(&mut self, file: Arc<SourceFile>, offset: u64, original: Option<Original>) {
        // A continuation only if the earlier reading's file still exists (an inode reused
        // after a delete is another file) and reading resumes at or past its watermark.
        let earlier = self
            .live
            .iter()
            .find(|(_, progress)| {
                same_file(&progress.file, &file)
                    && progress.forget_at.is_none()
                    && progress.superseded.is_none()
                    && offset >= progress.watermark.offset()
            })
            .map(|(key, _)| *key);
        let Some(progress) = earlier.and_then(|key| self.live.remove(&key)) else {
            self.forget_readings_of(&file);
            let key = file.key;
            self.start_reading(file, offset);
            if let Some(original) = original {
                self.wait_for_original(key, original, offset);
            }
            return;
        };
        self.continue_reading(progress, file);
    }

    /// The file was released and found again while records of its earlier reading were in
    /// flight: keep the earlier watermark, and let late acknowledgements still count.
    fn continue_reading(&mut self, mut progress: Progress, file: Arc<SourceFile>) {
        let earlier = progress.file.key;
        for target in self.continued_by.values_mut() {
            if *target == earlier {
                *target = file.key;
            }
        }
        self.continued_by.insert(earlier, file.key);
        if progress.behind.is_some() {
            self.waiting_copies.remove(&earlier);
            self.waiting_copies.insert(file.key);
        }
        progress.file = Arc::clone(&file);
        let identity = (file.flow.to_string(), file.id);
        if let Some(saved) = self.saved.get_mut(&identity) {
            saved.path.clone_from(&file.path);
            saved.head = file.head.or(saved.head);
            self.dirty.insert(identity);
        }
        self.live.insert(file.key, progress);
    }

    fn start_reading(&mut self, file: Arc<SourceFile>, offset: u64) {
        let identity = (file.flow.to_string(), file.id);
        let (copy_from, cursor) = self
            .saved
            .get(&identity)
            .map(|saved| (saved.copy_from.clone(), saved.cursor.clone()))
            .unwrap_or_default();
        self.saved.insert(
            identity.clone(),
            Checkpoint {
                flow: identity.0.clone(),
                id: file.id,
                head: file.head,
                path: file.path.clone(),
                offset,
                seen: unix_now(),
                copy_from,
                cursor,
            },
        );
        self.dirty.insert(identity);
        self.live.insert(
            file.key,
            Progress {
                identity: (file.flow.to_string(), file.id),
                file,
                watermark: Watermark::at(offset),
                forget_at: None,
                superseded: None,
                behind: None,
                marks: VecDeque::new(),
            },
        );
    }

    /// The tailer released the file after reading to `end`: its checkpoint is forgotten once
    /// everything read is delivered.
    fn closed(&mut self, file: &SourceFile, end: u64) {
        let key = self.current_key(file.key);
        if let Some(progress) = self.live.get_mut(&key) {
            progress.forget_at = Some(end);
        }
        self.forget_if_done(key);
    }

    /// The reading's file has a longer head now: the saved checkpoint takes it.
    fn identified(&mut self, file: Arc<SourceFile>) {
        let key = self.current_key(file.key);
        if let Some(progress) = self.live.get_mut(&key) {
            let identity = (file.flow.to_string(), file.id);
            if let Some(saved) = self.saved.get_mut(&identity) {
                saved.head = file.head;
                self.dirty.insert(identity);
            }
            progress.file = file;
        }
    }

    /// Drops every reading of `file`'s identity: their offsets mean nothing any more.
    fn forget_readings_of(&mut self, file: &SourceFile) {
        self.forget_readings_of_except(file, &[]);
    }

    /// Drops every reading of `file`'s identity but those in `keep` and those of it before a
    /// truncation: they end once their records are delivered, which moves their copies on.
    fn forget_readings_of_except(&mut self, file: &SourceFile, keep: &[u64]) {
        let stale: Vec<u64> = self
            .live
            .iter()
            .filter(|(key, progress)| {
                same_file(&progress.file, file)
                    && progress.superseded.is_none()
                    && !keep.contains(key)
            })
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.end_reading(key);
        }
    }

    /// Drops the reading `key`: acknowledgements still to come for it no longer count.
    fn end_reading(&mut self, key: u64) {
        self.live.remove(&key);
        self.continued_by.retain(|_, target| *target != key);
    }

    /// The key whose progress a reading's acknowledgements now count toward.
    fn current_key(&self, key: u64) -> u64 {
        self.continued_by.get(&key).copied().unwrap_or(key)
    }

    /// The entry of `file` ending at `end` is named `cursor`: it is where the source resumes
    /// once every position before `end` is delivered.
    fn marked(&mut self, file: &SourceFile, end: u64, cursor: Box<str>) {
        let key = self.current_key(file.key);
        let Some(progress) = self.live.get_mut(&key) else {
            return;
        };
        if end > progress.watermark.offset() {
            progress.marks.push_back((end, cursor));
            return;
        }
        if let Some(saved) = self.saved.get_mut(&progress.identity) {
            saved.cursor = Some(cursor.into());
            self.dirty.insert(progress.identity.clone());
        }
    }

    fn delivered(&mut self, range: FileRange) -> u64 {
        let key = self.current_key(range.file.key);
        let Some(progress) = self.live.get_mut(&key) else {
            return 0; // A reading replaced after truncation: its offsets mean nothing now.
        };
        let advanced = progress.watermark.deliver(range.start, range.end);
        if advanced == 0 {
            return 0;
        }
        if let Some(limit) = progress.superseded {
            self.earlier_reading_delivered(key, limit);
            return 0;
        }
        if let Some(saved) = self.saved.get_mut(&progress.identity) {
            saved.offset = progress
                .behind
                .map_or(progress.watermark.offset(), |behind| behind.delivered);
            if saved.path != progress.file.path {
                saved.path.clone_from(&progress.file.path);
            }
            let delivered_to = progress.watermark.offset();
            let mut passed = None;
            while progress
                .marks
                .front()
                .is_some_and(|(end, _)| *end <= delivered_to)
            {
                passed = progress.marks.pop_front().map(|(_, cursor)| cursor);
            }
            if let Some(cursor) = passed {
                saved.cursor = Some(cursor.into());
            }
            // Most acknowledgements find their file marked already: no key is made for them.
            if !self.dirty.contains(&progress.identity) {
                self.dirty.insert(progress.identity.clone());
            }
        }
        // Acknowledgements for a truncated file's reading may come before the truncation is
        // known here: a copy found meanwhile waits for them too.
        self.original_delivered(key);
        self.forget_if_done(key);
        advanced
    }

    fn forget_if_done(&mut self, key: u64) {
        let Some(progress) = self.live.get(&key) else {
            return;
        };
        if progress
            .forget_at
            .is_some_and(|end| progress.watermark.offset() >= end)
        {
            let identity = (progress.file.flow.to_string(), progress.file.id);
            self.original_delivered(key);
            self.end_reading(key);
            self.saved.remove(&identity);
            self.dirty.insert(identity);
        }
    }

    /// Forgets every reading of `flow`'s files (its tailers have stopped: a reload stopped the
    /// flow) and returns its checkpoints, from which the flow resumes if it starts again.
    /// Acknowledgements still to come for those readings no longer count.
    pub(crate) fn release_flow(&mut self, flow: &str) -> Vec<Checkpoint> {
        let released: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, progress)| *progress.file.flow == *flow)
            .map(|(key, _)| *key)
            .collect();
        for key in released {
            self.live.remove(&key);
            self.continued_by
                .retain(|earlier, target| *earlier != key && *target != key);
        }
        let mut released: Vec<Checkpoint> = self
            .saved
            .values()
            .filter(|saved| saved.flow == flow)
            .cloned()
            .collect();
        released.sort_unstable_by(by_key);
        released
    }

    /// Whether anything changed since the last delta was taken.
    pub(crate) fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// What changed since the last call, if anything: the checkpoints changed, in full, and
    /// the keys of those forgotten. Costs what changed, however many checkpoints are saved.
    pub(crate) fn take_delta(&mut self) -> Option<Delta> {
        if self.dirty.is_empty() {
            return None;
        }
        let mut delta = Delta::default();
        for identity in self.dirty.drain() {
            match self.saved.get(&identity) {
                Some(saved) => delta.changed.push(saved.clone()),
                None => delta.removed.push(identity),
            }
        }
        delta.changed.sort_unstable_by(by_key);
        delta.removed.sort_unstable();
        Some(delta)
    }

    /// Every saved checkpoint, by flow and identity, as a snapshot writes them.
    pub(crate) fn snapshot(&self) -> Vec<Checkpoint> {
        let mut all: Vec<Checkpoint> = self.saved.values().cloned().collect();
        all.sort_unstable_by(by_key);
        all
    }

    /// The checkpoints to write, all of them, if anything changed since the last call.
    pub fn take_changes(&mut self) -> Option<Vec<Checkpoint>> {
        self.take_delta().map(|_| self.snapshot())
    }

    /// Marks `delta`'s keys as not yet written (its write failed): the next delta holds them
    /// again, with whatever they hold by then.
    pub(crate) fn mark_unwritten(&mut self, delta: &Delta) {
        self.dirty.extend(
            delta
                .changed
                .iter()
                .map(|saved| (saved.flow.clone(), saved.id))
                .chain(delta.removed.iter().cloned()),
        );
    }

    pub fn checkpoint(&self, flow: &str, id: FileId) -> Option<u64> {
        self.saved.get(&(flow.to_owned(), id)).map(|c| c.offset)
    }
}

/// Checkpoints in the order of their keys: flow, then identity.
fn by_key(one: &Checkpoint, other: &Checkpoint) -> std::cmp::Ordering {
    (one.flow.as_str(), one.id).cmp(&(other.flow.as_str(), other.id))
}

fn same_file(one: &SourceFile, other: &SourceFile) -> bool {
    one.id == other.id && one.flow == other.flow
}

#[cfg(test)]
mod tests;
