//! The ordered acknowledgement tracker: a file's checkpoint advances only across a contiguous
//! run of delivered ranges, so a record still being retried holds its file's checkpoint back,
//! however many later calls finished first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::record::{Ack, CopyFrom, FileId, FileRange, Head, Original, SourceFile};

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
}

/// A saved checkpoint's key: its flow and its file's identity.
pub type Identity = (String, FileId);

/// What changed in the saved checkpoints since the last [`AckTracker::take_delta`]: each
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

/// How many truncations of one file are remembered for its copies.
pub const MAX_COPIES_KEPT: usize = 4;

/// How stale the saved `seen` time may get before it alone makes the file worth writing.
const SEEN_PRECISION_SECS: u64 = 3600;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[derive(Debug)]
struct Progress {
    file: Arc<SourceFile>,
    /// The key of the file's saved checkpoint (its flow and identity, which every later
    /// `file` of this reading shares), made once rather than for each acknowledgement.
    identity: Identity,
    /// Every byte before this offset was delivered.
    watermark: u64,
    /// Delivered ranges beyond the watermark, by start.
    ahead: BTreeMap<u64, u64>,
    /// Set when the file was released because it was deleted: forget it once delivered to here.
    forget_at: Option<u64>,
    /// Set for the earlier reading of a truncated file: its late acknowledgements only move
    /// the saved `copy_from` offset, up to this offset.
    superseded: Option<u64>,
    /// Set for a copy of a file truncated while its records were in flight.
    behind: Option<Behind>,
}

/// A copy's reading that starts where its original was read to, while records of the
/// original's reading are still in flight. They hold the copy's first bytes: until they are
/// delivered, the copy's checkpoint is what of them was, so a crash reads them again from the
/// copy instead of losing them.
#[derive(Clone, Copy, Debug)]
struct Behind {
    /// The key of the original's reading (or of an earlier reading it continues).
    original: u64,
    /// How far the original's records were delivered: the copy's checkpoint meanwhile.
    delivered: u64,
    /// Where the copy's reading started: once the original's delivery reaches it, the copy's
    /// checkpoint is its own.
    until: u64,
}

/// A hash for keys the process makes itself (reading keys, flow names, devices and inodes):
/// no one picks them to collide, so the default hasher's defence against that buys nothing
/// here, and it cost a third of the tracker's time at full speed. The multiply-rotate mix of
/// rustc's `FxHasher`.
#[derive(Clone, Copy, Debug, Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

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
    pub fn apply(&mut self, ack: Ack) -> u64 {
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
                let key = self.current_key(file.key);
                if let Some(progress) = self.live.get_mut(&key) {
                    progress.forget_at = Some(end);
                }
                self.forget_if_done(key);
                0
            }
            Ack::Identified { file } => {
                let key = self.current_key(file.key);
                if let Some(progress) = self.live.get_mut(&key) {
                    let identity = (file.flow.to_string(), file.id);
                    if let Some(saved) = self.saved.get_mut(&identity) {
                        saved.head = file.head;
                        self.dirty.insert(identity);
                    }
                    progress.file = file;
                }
                0
            }
            Ack::Seen { flow, ids } => {
                self.seen(&flow, &ids, unix_now());
                0
            }
        }
    }

    /// Notes that a scan of `flow` found `ids` at `now`.
    pub fn seen(&mut self, flow: &str, ids: &[crate::record::FileId], now: u64) {
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
    pub fn expire(&mut self, now: u64, max_age: Duration) -> Vec<Checkpoint> {
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
                self.live.remove(&key);
                self.continued_by.retain(|_, target| *target != key);
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
                    && offset >= progress.watermark
            })
            .map(|(key, _)| *key);
        let Some(mut progress) = earlier.and_then(|key| self.live.remove(&key)) else {
            self.forget_readings_of(&file);
            let key = file.key;
            self.start_reading(file, offset);
            if let Some(original) = original {
                self.wait_for_original(key, original, offset);
            }
            return;
        };
        // The file was released and found again while records of its earlier reading were in
        // flight: keep the earlier watermark, and let late acknowledgements still count.
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

    /// The file was truncated: a new reading starts at 0; the earlier one stays only to learn
    /// how far its records were delivered, which is where a copy of the file continues.
    fn restarted(&mut self, file: Arc<SourceFile>, offset: u64, before: Option<CopyFrom>) {
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
            .map(|progress| progress.watermark)
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
                self.live.remove(&key);
                self.continued_by.retain(|_, target| *target != key);
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

    fn start_reading(&mut self, file: Arc<SourceFile>, offset: u64) {
        let identity = (file.flow.to_string(), file.id);
        let copy_from = self
            .saved
            .get(&identity)
            .map(|saved| saved.copy_from.clone())
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
            },
        );
        self.dirty.insert(identity);
        self.live.insert(
            file.key,
            Progress {
                identity: (file.flow.to_string(), file.id),
                file,
                watermark: offset,
                ahead: BTreeMap::new(),
                forget_at: None,
                superseded: None,
                behind: None,
            },
        );
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
            self.live.remove(&key);
            self.continued_by.retain(|_, target| *target != key);
        }
    }

    /// The key whose progress a reading's acknowledgements now count toward.
    fn current_key(&self, key: u64) -> u64 {
        self.continued_by.get(&key).copied().unwrap_or(key)
    }

    fn delivered(&mut self, range: FileRange) -> u64 {
        let key = self.current_key(range.file.key);
        let Some(progress) = self.live.get_mut(&key) else {
            return 0; // A reading replaced after truncation: its offsets mean nothing now.
        };
        if range.end <= progress.watermark {
            return 0;
        }
        if range.start > progress.watermark {
            progress.ahead.insert(range.start, range.end);
            return 0;
        }
        let before = progress.watermark;
        progress.watermark = range.end;
        while let Some(entry) = progress.ahead.first_entry() {
            if *entry.key() > progress.watermark {
                break;
            }
            let end = entry.remove();
            progress.watermark = progress.watermark.max(end);
        }
        let advanced = progress.watermark - before;
        if let Some(limit) = progress.superseded {
            let identity = progress.identity.clone();
            // A truncated file's earlier reading: its copy may continue further now.
            let reached = progress.watermark.min(limit);
            let head = progress.file.head;
            self.original_delivered(key);
            if reached >= limit {
                self.live.remove(&key);
                self.continued_by.retain(|_, target| *target != key);
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
            return 0;
        }
        if let Some(saved) = self.saved.get_mut(&progress.identity) {
            saved.offset = progress
                .behind
                .map_or(progress.watermark, |behind| behind.delivered);
            if saved.path != progress.file.path {
                saved.path.clone_from(&progress.file.path);
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

    /// A copy's reading `copy` started at `offset`, where `original` was read to: if records
    /// of the original's reading are still in flight, the copy's checkpoint waits for them.
    fn wait_for_original(&mut self, copy: u64, original: Original, offset: u64) {
        // The reading before the truncation: superseded, or not yet known to be truncated
        // (the truncation and the copy are told by different tailers). Gone if it was
        // delivered in full.
        let original = self.current_key(original.reading);
        let Some(delivered) = self
            .live
            .get(&original)
            .filter(|_| original != copy)
            .map(|progress| progress.watermark)
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
    fn original_delivered(&mut self, original: u64) {
        if self.waiting_copies.is_empty() {
            return;
        }
        let Some((delivered, done)) = self.live.get(&original).map(|progress| {
            let delivered = progress.watermark;
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
                (progress.watermark, false)
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

    fn forget_if_done(&mut self, key: u64) {
        let Some(progress) = self.live.get(&key) else {
            return;
        };
        if progress
            .forget_at
            .is_some_and(|end| progress.watermark >= end)
        {
            let identity = (progress.file.flow.to_string(), progress.file.id);
            self.original_delivered(key);
            self.live.remove(&key);
            self.continued_by.retain(|_, target| *target != key);
            self.saved.remove(&identity);
            self.dirty.insert(identity);
        }
    }

    /// Forgets every reading of `flow`'s files (its tailers have stopped: a reload stopped the
    /// flow) and returns its checkpoints, from which the flow resumes if it starts again.
    /// Acknowledgements still to come for those readings no longer count.
    pub fn release_flow(&mut self, flow: &str) -> Vec<Checkpoint> {
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
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// What changed since the last call, if anything: the checkpoints changed, in full, and
    /// the keys of those forgotten. Costs what changed, however many checkpoints are saved.
    pub fn take_delta(&mut self) -> Option<Delta> {
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
    pub fn snapshot(&self) -> Vec<Checkpoint> {
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
    pub fn mark_unwritten(&mut self, delta: &Delta) {
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
mod tests {
    use super::*;

    fn file(key: u64, inode: u64) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            key,
            flow: Arc::from("app"),
            id: FileId { device: 1, inode },
            head: None,
            path: format!("/logs/{inode}.log").into(),
        })
    }

    fn range(file: &Arc<SourceFile>, start: u64, end: u64) -> FileRange {
        FileRange {
            file: Arc::clone(file),
            start,
            end,
        }
    }

    fn delivered(tracker: &mut AckTracker, ranges: Vec<FileRange>) -> u64 {
        tracker.apply(Ack::Delivered(ranges))
    }

    #[test]
    fn out_of_order_acknowledgements_advance_only_the_contiguous_prefix() {
        let a = file(1, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 0,
            original: None,
        });
        let id = a.id;
        assert_eq!(delivered(&mut tracker, vec![range(&a, 200, 300)]), 0);
        assert_eq!(delivered(&mut tracker, vec![range(&a, 100, 200)]), 0);
        assert_eq!(tracker.checkpoint("app", id), Some(0));
        // The first call finishes last: everything up to 300 is now delivered.
        assert_eq!(delivered(&mut tracker, vec![range(&a, 0, 100)]), 300);
        assert_eq!(tracker.checkpoint("app", id), Some(300));
    }

    #[test]
    fn a_released_flow_keeps_its_checkpoints_and_ignores_late_acknowledgements() {
        let a = file(1, 10);
        let other = Arc::new(SourceFile {
            flow: Arc::from("web"),
            ..(*file(2, 20)).clone()
        });
        let mut tracker = AckTracker::new(Vec::new());
        for (f, offset) in [(&a, 0), (&other, 0)] {
            tracker.apply(Ack::Opened {
                file: Arc::clone(f),
                offset,
                original: None,
            });
        }
        delivered(&mut tracker, vec![range(&a, 0, 100)]);
        delivered(&mut tracker, vec![range(&other, 0, 50)]);
        // [200, 300) was delivered, [100, 200) never will be: the flow stopped.
        delivered(&mut tracker, vec![range(&a, 200, 300)]);
        let released = tracker.release_flow("app");
        assert_eq!(released.len(), 1);
        assert_eq!((released[0].id, released[0].offset), (a.id, 100));
        // A late acknowledgement of the stopped reading moves nothing.
        assert_eq!(delivered(&mut tracker, vec![range(&a, 100, 200)]), 0);
        assert_eq!(tracker.checkpoint("app", a.id), Some(100));
        // The flow started again reads from 100, as a new reading.
        let again = file(3, 10);
        tracker.apply(Ack::Opened {
            file: Arc::clone(&again),
            offset: 100,
            original: None,
        });
        assert_eq!(delivered(&mut tracker, vec![range(&again, 100, 250)]), 150);
        assert_eq!(tracker.checkpoint("app", a.id), Some(250));
        // Other flows are untouched.
        assert_eq!(delivered(&mut tracker, vec![range(&other, 50, 60)]), 10);
    }

    #[test]
    fn a_record_being_retried_holds_the_watermark_back() {
        let a = file(1, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 1000,
            original: None,
        });
        // Batch 1 covers [1000, 1500) and is being retried; batches 2..=5 finish.
        for start in (1500..3500).step_by(500) {
            delivered(&mut tracker, vec![range(&a, start, start + 500)]);
        }
        assert_eq!(tracker.checkpoint("app", a.id), Some(1000));
        delivered(&mut tracker, vec![range(&a, 1000, 1500)]);
        assert_eq!(tracker.checkpoint("app", a.id), Some(3500));
    }

    #[test]
    fn one_batch_may_cover_several_files() {
        let (a, b) = (file(1, 10), file(2, 20));
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 0,
            original: None,
        });
        tracker.apply(Ack::Opened {
            file: Arc::clone(&b),
            offset: 50,
            original: None,
        });
        delivered(
            &mut tracker,
            vec![range(&a, 0, 10), range(&b, 50, 60), range(&a, 10, 20)],
        );
        assert_eq!(tracker.checkpoint("app", a.id), Some(20));
        assert_eq!(tracker.checkpoint("app", b.id), Some(60));
    }

    #[test]
    fn a_truncated_file_read_again_ignores_its_earlier_reading_but_its_copy_learns_from_it() {
        let head = Head { len: 64, hash: 77 };
        let old = Arc::new(SourceFile {
            head: Some(head),
            ..(*file(1, 10)).clone()
        });
        let new = file(2, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&old),
            offset: 0,
            original: None,
        });
        delivered(&mut tracker, vec![range(&old, 0, 500)]);
        // Read to 900 when truncated; [500, 900) still in flight.
        tracker.apply(Ack::Restarted {
            file: Arc::clone(&new),
            offset: 0,
            before: Some(CopyFrom { head, offset: 900 }),
        });
        assert_eq!(tracker.checkpoint("app", new.id), Some(0));
        let copy_from = |tracker: &AckTracker| {
            tracker
                .saved
                .get(&("app".to_owned(), new.id))
                .and_then(|saved| saved.copy_from.last().copied())
        };
        assert_eq!(copy_from(&tracker), Some(CopyFrom { head, offset: 500 }));
        delivered(&mut tracker, vec![range(&old, 500, 900)]);
        assert_eq!(
            tracker.checkpoint("app", new.id),
            Some(0),
            "late acks of the old reading do not move the new reading's checkpoint"
        );
        assert_eq!(copy_from(&tracker), Some(CopyFrom { head, offset: 900 }));
        delivered(&mut tracker, vec![range(&new, 0, 40)]);
        assert_eq!(tracker.checkpoint("app", new.id), Some(40));
        assert_eq!(copy_from(&tracker), Some(CopyFrom { head, offset: 900 }));
    }

    /// The original read to 900, of which `delivered` was delivered when it was truncated, and
    /// its copy found and read from 900: `truncation_first` says whether the tracker hears of
    /// the truncation before the copy's opening (the two come from different tailers, in
    /// either order).
    fn copy_of_a_truncated_file(
        delivered_before: u64,
        truncation_first: bool,
    ) -> (AckTracker, Arc<SourceFile>, Arc<SourceFile>) {
        let head = Head { len: 64, hash: 77 };
        let old = Arc::new(SourceFile {
            head: Some(head),
            ..(*file(1, 10)).clone()
        });
        let copy = Arc::new(SourceFile {
            head: Some(head),
            ..(*file(3, 11)).clone()
        });
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&old),
            offset: 0,
            original: None,
        });
        delivered(&mut tracker, vec![range(&old, 0, delivered_before)]);
        let truncation = Ack::Restarted {
            file: file(2, 10),
            offset: 0,
            before: Some(CopyFrom { head, offset: 900 }),
        };
        let copy_opened = Ack::Opened {
            file: Arc::clone(&copy),
            offset: 900,
            original: Some(Original { reading: old.key }),
        };
        if truncation_first {
            tracker.apply(truncation);
            tracker.apply(copy_opened);
        } else {
            tracker.apply(copy_opened);
            tracker.apply(truncation);
        }
        (tracker, old, copy)
    }

    #[test]
    fn a_copy_found_while_its_original_has_records_in_flight_is_checkpointed_where_they_are() {
        for truncation_first in [true, false] {
            let (mut tracker, old, copy) = copy_of_a_truncated_file(500, truncation_first);
            // Killed now, the copy must be read again from 500: [500, 900) is only in flight.
            assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
            // The copy's own records delivered first do not move it past the original's.
            delivered(&mut tracker, vec![range(&copy, 900, 1000)]);
            assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
            delivered(&mut tracker, vec![range(&old, 500, 700)]);
            assert_eq!(tracker.checkpoint("app", copy.id), Some(700));
            delivered(&mut tracker, vec![range(&old, 700, 900)]);
            assert_eq!(
                tracker.checkpoint("app", copy.id),
                Some(1000),
                "once the original's records are delivered, the copy's own count"
            );
            delivered(&mut tracker, vec![range(&copy, 1000, 1100)]);
            assert_eq!(tracker.checkpoint("app", copy.id), Some(1100));
        }
    }

    #[test]
    fn a_copy_whose_original_was_delivered_already_starts_where_it_was_read_to() {
        for truncation_first in [true, false] {
            let (mut tracker, _, copy) = copy_of_a_truncated_file(900, truncation_first);
            assert_eq!(tracker.checkpoint("app", copy.id), Some(900));
            delivered(&mut tracker, vec![range(&copy, 900, 950)]);
            assert_eq!(tracker.checkpoint("app", copy.id), Some(950));
        }
    }

    #[test]
    fn a_copy_waiting_for_its_original_moves_on_after_the_original_is_truncated_again() {
        let (mut tracker, old, copy) = copy_of_a_truncated_file(500, true);
        // The reading after the first truncation is truncated in turn.
        let second = Arc::new(SourceFile {
            head: Some(Head { len: 64, hash: 78 }),
            ..(*file(2, 10)).clone()
        });
        tracker.apply(Ack::Restarted {
            file: file(4, 10),
            offset: 0,
            before: second.head.map(|head| CopyFrom { head, offset: 0 }),
        });
        delivered(&mut tracker, vec![range(&copy, 900, 1000)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
        delivered(&mut tracker, vec![range(&old, 500, 900)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(1000));
    }

    #[test]
    fn a_copy_follows_its_original_reopened_under_a_new_key() {
        let head = Head { len: 64, hash: 77 };
        let old = Arc::new(SourceFile {
            head: Some(head),
            ..(*file(1, 10)).clone()
        });
        let copy = file(3, 11);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&old),
            offset: 0,
            original: None,
        });
        delivered(&mut tracker, vec![range(&old, 0, 500)]);
        tracker.apply(Ack::Opened {
            file: Arc::clone(&copy),
            offset: 900,
            original: Some(Original { reading: old.key }),
        });
        assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
        // The original, parked and opened again before its truncation is known here.
        tracker.apply(Ack::Opened {
            file: Arc::new(SourceFile {
                key: 5,
                ..(*old).clone()
            }),
            offset: 900,
            original: None,
        });
        delivered(&mut tracker, vec![range(&old, 500, 900)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(900));
    }

    #[test]
    fn a_copy_reopened_while_waiting_for_its_original_keeps_waiting() {
        let (mut tracker, old, copy) = copy_of_a_truncated_file(500, true);
        delivered(&mut tracker, vec![range(&copy, 900, 1000)]);
        // Parked for another file's turn and opened again under a new key.
        let reopened = Arc::new(SourceFile {
            key: 4,
            ..(*copy).clone()
        });
        tracker.apply(Ack::Opened {
            file: Arc::clone(&reopened),
            offset: 1000,
            original: None,
        });
        assert_eq!(tracker.checkpoint("app", copy.id), Some(500));
        delivered(&mut tracker, vec![range(&old, 500, 900)]);
        assert_eq!(tracker.checkpoint("app", copy.id), Some(1000));
    }

    #[test]
    fn the_latest_truncations_of_a_file_are_all_kept_for_their_copies() {
        let first = file(1, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&first),
            offset: 0,
            original: None,
        });
        let truncations = MAX_COPIES_KEPT as u64 + 2;
        for number in 1..=truncations {
            let head = Head {
                len: 64,
                hash: number,
            };
            tracker.apply(Ack::Restarted {
                file: file(1 + number, 10),
                offset: 0,
                before: Some(CopyFrom { head, offset: 0 }),
            });
        }
        let saved = &tracker.saved[&("app".to_owned(), first.id)];
        let kept: Vec<u64> = saved.copy_from.iter().map(|copy| copy.head.hash).collect();
        let latest: Vec<u64> = (truncations + 1 - MAX_COPIES_KEPT as u64..=truncations).collect();
        assert_eq!(kept, latest, "the latest truncations, oldest first");
    }

    #[test]
    fn a_file_found_again_while_its_records_are_in_flight_keeps_its_watermark() {
        let first = file(1, 10);
        let again = file(2, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&first),
            offset: 0,
            original: None,
        });
        delivered(&mut tracker, vec![range(&first, 0, 100)]);
        // Released at 300 with [100, 300) in flight, then found again and read on from 300.
        tracker.apply(Ack::Opened {
            file: Arc::clone(&again),
            offset: 300,
            original: None,
        });
        assert_eq!(
            tracker.checkpoint("app", again.id),
            Some(100),
            "in-flight records hold it back"
        );
        delivered(&mut tracker, vec![range(&again, 300, 400)]);
        assert_eq!(tracker.checkpoint("app", again.id), Some(100));
        delivered(&mut tracker, vec![range(&first, 100, 300)]);
        assert_eq!(tracker.checkpoint("app", again.id), Some(400));
    }

    #[test]
    fn an_inode_reused_after_a_delete_starts_a_new_reading() {
        let deleted = file(1, 10);
        let reused = file(2, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&deleted),
            offset: 0,
            original: None,
        });
        tracker.apply(Ack::Closed {
            file: Arc::clone(&deleted),
            end: 500,
        });
        tracker.apply(Ack::Opened {
            file: Arc::clone(&reused),
            offset: 0,
            original: None,
        });
        delivered(&mut tracker, vec![range(&deleted, 0, 500)]);
        assert_eq!(
            tracker.checkpoint("app", reused.id),
            Some(0),
            "the deleted file's acks do not count"
        );
        delivered(&mut tracker, vec![range(&reused, 0, 50)]);
        assert_eq!(tracker.checkpoint("app", reused.id), Some(50));
    }

    #[test]
    fn a_deleted_file_is_forgotten_once_delivered_to_its_end() {
        let a = file(1, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 0,
            original: None,
        });
        tracker.apply(Ack::Closed {
            file: Arc::clone(&a),
            end: 100,
        });
        assert_eq!(
            tracker.checkpoint("app", a.id),
            Some(0),
            "kept while records are in flight"
        );
        delivered(&mut tracker, vec![range(&a, 0, 100)]);
        assert_eq!(tracker.checkpoint("app", a.id), None);
    }

    #[test]
    fn loaded_checkpoints_are_kept_until_replaced_and_changes_are_reported_once() {
        let loaded = Checkpoint {
            flow: "app".into(),
            id: FileId {
                device: 1,
                inode: 99,
            },
            head: None,
            path: "/logs/old.log".into(),
            offset: 7,
            seen: unix_now(),
            copy_from: Vec::new(),
        };
        let mut tracker = AckTracker::new(vec![loaded.clone()]);
        assert_eq!(tracker.take_changes(), None);
        let a = file(1, 10);
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 0,
            original: None,
        });
        let written = tracker.take_changes().expect("changed");
        assert_eq!(written.len(), 2);
        assert!(written.contains(&loaded));
        assert_eq!(tracker.take_changes(), None);
        delivered(&mut tracker, vec![range(&a, 0, 10)]);
        let delta = tracker.take_delta().expect("changed");
        assert_eq!(tracker.take_delta(), None);
        tracker.mark_unwritten(&delta);
        assert_eq!(
            tracker.take_delta(),
            Some(delta),
            "the failed write's delta again"
        );
    }

    #[test]
    fn a_delta_holds_what_changed_and_not_what_is_saved() {
        let files: Vec<Arc<SourceFile>> = (1..=1000).map(|inode| file(inode, inode)).collect();
        let mut tracker = AckTracker::new(Vec::new());
        for f in &files {
            tracker.apply(Ack::Opened {
                file: Arc::clone(f),
                offset: 0,
                original: None,
            });
        }
        assert_eq!(
            tracker.take_delta().map(|delta| delta.changed.len()),
            Some(1000)
        );
        delivered(&mut tracker, vec![range(&files[500], 0, 80)]);
        let delta = tracker.take_delta().expect("one file moved");
        assert_eq!(delta.changed.len(), 1);
        assert_eq!(
            (delta.changed[0].id, delta.changed[0].offset),
            (files[500].id, 80)
        );
        assert!(delta.removed.is_empty());
        // Out of order: nothing moves, so nothing is written.
        delivered(&mut tracker, vec![range(&files[7], 100, 200)]);
        assert_eq!(tracker.take_delta(), None);
        // A deleted file delivered to its end is forgotten: the delta names its key.
        tracker.apply(Ack::Closed {
            file: Arc::clone(&files[9]),
            end: 30,
        });
        delivered(&mut tracker, vec![range(&files[9], 0, 30)]);
        let delta = tracker.take_delta().expect("one file forgotten");
        assert!(delta.changed.is_empty());
        assert_eq!(delta.removed, vec![("app".to_owned(), files[9].id)]);
        assert_eq!(tracker.snapshot().len(), 999);
    }

    #[test]
    fn expired_checkpoints_are_removed_in_the_delta() {
        let now = unix_now();
        let old = Checkpoint {
            flow: "app".into(),
            id: FileId {
                device: 1,
                inode: 5,
            },
            head: None,
            path: "/logs/5.log".into(),
            offset: 7,
            seen: now - 100,
            copy_from: Vec::new(),
        };
        let mut tracker = AckTracker::new(vec![old.clone()]);
        assert_eq!(
            tracker.expire(now, Duration::from_secs(10)),
            vec![old.clone()]
        );
        let delta = tracker.take_delta().expect("forgotten");
        assert_eq!(delta.removed, vec![("app".to_owned(), old.id)]);
    }

    #[test]
    fn checkpoints_of_files_no_scan_finds_for_the_expiry_are_forgotten() {
        let day = 24 * 3600;
        let now = unix_now();
        let saved = |inode: u64, seen: u64| Checkpoint {
            flow: "app".into(),
            id: FileId { device: 1, inode },
            head: None,
            path: format!("/logs/{inode}.log").into(),
            offset: 7,
            seen,
            copy_from: Vec::new(),
        };
        let mut tracker = AckTracker::new(vec![
            saved(1, now - 10 * day),
            saved(2, now - 10 * day),
            saved(3, now - day),
        ]);
        // File 2 is found again by a scan; file 10 is being read.
        tracker.seen(
            "app",
            &[FileId {
                device: 1,
                inode: 2,
            }],
            now,
        );
        let a = file(1, 10);
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 0,
            original: None,
        });
        let expired = tracker.expire(now + 3 * day, Duration::from_secs(7 * day));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id.inode, 1);
        assert_eq!(
            tracker.checkpoint(
                "app",
                FileId {
                    device: 1,
                    inode: 2
                }
            ),
            Some(7)
        );
        assert_eq!(
            tracker.checkpoint(
                "app",
                FileId {
                    device: 1,
                    inode: 3
                }
            ),
            Some(7)
        );
        assert_eq!(tracker.checkpoint("app", a.id), Some(0));
        // The file being read is reported as seen by its flow's scans.
        tracker.seen("app", &[a.id], now + 29 * day);
        let later = tracker.expire(now + 30 * day, Duration::from_secs(7 * day));
        assert_eq!(later.len(), 2, "only the file seen lately is kept");
        assert_eq!(tracker.checkpoint("app", a.id), Some(0));
        // Once forgotten, its late acknowledgements change nothing.
        let gone = tracker.expire(now + 60 * day, Duration::from_secs(7 * day));
        assert_eq!(gone.len(), 1);
        assert_eq!(delivered(&mut tracker, vec![range(&a, 0, 10)]), 0);
        assert_eq!(tracker.checkpoint("app", a.id), None);
    }

    #[test]
    fn a_longer_head_replaces_the_saved_one() {
        let a = file(1, 10);
        let mut tracker = AckTracker::new(Vec::new());
        tracker.apply(Ack::Opened {
            file: Arc::clone(&a),
            offset: 0,
            original: None,
        });
        let longer = Arc::new(SourceFile {
            key: a.key,
            flow: Arc::clone(&a.flow),
            id: a.id,
            head: Some(Head { len: 1024, hash: 5 }),
            path: a.path.clone(),
        });
        tracker.apply(Ack::Identified { file: longer });
        delivered(&mut tracker, vec![range(&a, 0, 10)]);
        let written = tracker.take_changes().expect("changed");
        assert_eq!(written[0].head, Some(Head { len: 1024, hash: 5 }));
        assert_eq!(written[0].offset, 10);
    }
}
