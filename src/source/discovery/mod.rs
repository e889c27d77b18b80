//! Discovery: the periodic scan of a flow's globs. It decides where each file not followed yet
//! starts (its checkpoint, its end if ignored, or, for a new file, whether it is a copy), opens
//! it within the open-file budget, and starts its tailer; it forgets what it no longer finds.

mod new_file;
mod shipping;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::catch_up::{CatchUp, CatchUpState};
use super::copies::FirstBytes;
use super::copy_decision::CopyCandidate;
use super::identity;
use super::tailer::{self, blocking, Finished, Opened, Start};
use super::{FlowShared, KnownOffset};
use crate::config::FlowConfig;
use crate::limits::FilePermit;
use crate::record::{Ack, FileId, Head};

/// A file found by a scan and not being followed.
struct Candidate {
    path: PathBuf,
    id: FileId,
    modified: Option<SystemTime>,
    size: u64,
}

/// Where a file found by a scan starts, and what was learned deciding it.
struct Decided {
    start: Start,
    /// The checkpoint of the file that had this device and inode before, if it was replaced.
    replaced: Option<KnownOffset>,
    /// A new file's first bytes, as read to decide where it starts.
    new_first: Option<FirstBytes>,
}

/// The discovery loop's state: which files are followed, and where others resume.
pub(super) struct Discovery {
    flow: Arc<FlowConfig>,
    shared: Arc<FlowShared>,
    /// Where to resume files not followed now: checkpoints, then where tailers stopped.
    known: HashMap<FileId, KnownOffset>,
    /// When a scan last found each file in `known`.
    known_found: HashMap<FileId, Instant>,
    checkpoint_expiry: Duration,
    active: HashSet<FileId>,
    unopenable: HashSet<PathBuf>,
    /// Files skipped by `ignore_older`, with their size then: read from there once written.
    ignored: HashMap<FileId, u64>,
    /// Files waiting for a descriptor, since when: the longest waiting goes first.
    waiting_since: HashMap<FileId, Instant>,
    /// New files that start like a followed file, since when: a copy, or a file of their own?
    deferred: HashMap<FileId, Instant>,
    /// Checkpoints whose file no longer starts as it did, until that file is opened.
    replaced: HashMap<FileId, KnownOffset>,
    /// This flow's share of `OpenFiles::waiting`.
    waiting_count: usize,
    catch_up: Arc<CatchUpState>,
    first_scan: bool,
    /// What the followed files start with on disk, once read in this scan.
    now_holding: Option<Arc<Vec<CopyCandidate>>>,
    /// Where each file found was first known (its checkpoint, or the first scan that found
    /// it): a file found elsewhere since was renamed (`shipped_files`).
    first_paths: HashMap<FileId, PathBuf>,
    /// Files done with that could not be deleted or moved: retried at every scan, warned of
    /// once.
    ship_failing: HashSet<FileId>,
}

impl Discovery {
    pub(super) fn new(
        flow: Arc<FlowConfig>,
        shared: Arc<FlowShared>,
        checkpoints: HashMap<FileId, KnownOffset>,
        checkpoint_expiry: Duration,
    ) -> Self {
        let first_paths = checkpoints
            .iter()
            .filter_map(|(id, known)| Some((*id, known.path.clone()?)))
            .collect();
        Discovery {
            flow,
            shared,
            known: checkpoints,
            known_found: HashMap::new(),
            checkpoint_expiry,
            active: HashSet::new(),
            unopenable: HashSet::new(),
            ignored: HashMap::new(),
            waiting_since: HashMap::new(),
            deferred: HashMap::new(),
            replaced: HashMap::new(),
            waiting_count: 0,
            catch_up: Arc::new(CatchUpState::default()),
            first_scan: true,
            now_holding: None,
            first_paths,
            ship_failing: HashSet::new(),
        }
    }

    /// Whether some of this flow's files wait for a descriptor.
    pub(super) fn waiting_for_files(&self) -> bool {
        self.waiting_count > 0
    }

    /// Whether some new files' start is undecided: they are looked at again soon.
    pub(super) fn has_undecided(&self) -> bool {
        !self.deferred.is_empty()
    }

    pub(super) fn catch_up(&self) -> &CatchUpState {
        &self.catch_up
    }

    /// Finds the files the globs match and starts following those not followed yet.
    pub(super) async fn scan(
        &mut self,
        tailers: &mut JoinSet<Finished>,
        data_watch: &watch::Receiver<()>,
    ) {
        self.now_holding = None;
        let found = self.find_files().await;
        self.report_seen(&found).await;
        let found = self.ship_done_files(found).await;
        let now = Instant::now();
        let candidates = self.not_followed_in_turn(found, now);
        let catching_up = self.catch_up.is_catching_up();
        let mut waiting = 0;
        let mut present = HashSet::new();
        let failed_opens = self.shared.metrics.open_failures_now();
        for candidate in candidates {
            present.insert(candidate.id);
            if self.shared.cancel.is_cancelled() {
                // Shutting down: tailers are ending and what they knew with them.
                continue;
            }
            if self.is_ignored(&candidate) {
                continue;
            }
            let Some(decided) = self.decide_start(&candidate, catching_up).await else {
                continue;
            };
            let Some(permit) = self.take_descriptor(&candidate, &decided.start, now, &mut waiting)
            else {
                continue;
            };
            self.open_and_follow(candidate, decided, permit, tailers, data_watch)
                .await;
        }
        self.shared.metrics.scan_done(failed_opens);
        self.forget_absent(&present, now);
        self.set_waiting(waiting);
        self.first_scan = false;
    }

    /// Every regular file the flow's globs match, found on a blocking thread.
    async fn find_files(&self) -> Vec<Candidate> {
        let patterns = self.flow.files.clone();
        let exclude = self.flow.exclude.clone();
        blocking(move || matching_files(&patterns, &exclude))
            .await
            .unwrap_or_default()
    }

    /// Tells the checkpoint store which files are still there, so that it keeps their
    /// checkpoints.
    async fn report_seen(&self, found: &[Candidate]) {
        if self.shared.cancel.is_cancelled() {
            return;
        }
        // Files followed count as seen even when no glob matches them any more.
        let mut ids: Vec<FileId> = found.iter().map(|candidate| candidate.id).collect();
        ids.extend(self.active.iter().copied());
        let seen = Ack::Seen {
            flow: Arc::clone(&self.shared.flow),
            ids,
        };
        let _ = self.shared.acks.send(seen).await;
    }

    /// The files found that are not followed, longest waiting first; on the first scan,
    /// oldest file first.
    fn not_followed_in_turn(&self, found: Vec<Candidate>, now: Instant) -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = found
            .into_iter()
            .filter(|candidate| !self.active.contains(&candidate.id))
            .collect();
        candidates.sort_by_key(|candidate| {
            (
                self.waiting_since
                    .get(&candidate.id)
                    .copied()
                    .unwrap_or(now),
                candidate.modified,
            )
        });
        candidates
    }

    /// Where a file not followed starts; `None` to leave it for a later scan.
    async fn decide_start(&mut self, candidate: &Candidate, catching_up: bool) -> Option<Decided> {
        let known = self.known.get(&candidate.id).cloned();
        if known.is_none() && catching_up && !self.first_scan {
            return None; // Rotated files are finished first.
        }
        let known = self.checkpoint_if_still_valid(candidate, known).await;
        let replaced = self.replaced.get(&candidate.id).cloned();
        let (start, new_first) = self.start_of(candidate, known).await?;
        Some(Decided {
            start,
            replaced,
            new_first,
        })
    }

    /// A checkpoint whose file no longer starts as it did belongs to a file that is gone (its
    /// inode reused, or it was truncated and written again while stopped): this file is new,
    /// perhaps a copy. Returns the checkpoint if it still holds.
    async fn checkpoint_if_still_valid(
        &mut self,
        candidate: &Candidate,
        known: Option<KnownOffset>,
    ) -> Option<KnownOffset> {
        let known = known?;
        if self.still_starts_with(&candidate.path, known.head).await {
            return Some(known);
        }
        // Noted at once, so that a copy found before this file is opened is recognised.
        self.known.remove(&candidate.id);
        let first = FirstBytes::head_only(known.head);
        self.shared.copies.note_truncation(
            candidate.id,
            first,
            known.offset,
            &candidate.path,
            None,
        );
        self.replaced.insert(candidate.id, known);
        None
    }

    /// Where reading starts: the checkpoint (`known`), the size when `ignore_older` skipped
    /// it, or as a new file; with a new file's first bytes if they were read. `None` to decide
    /// at a later scan.
    async fn start_of(
        &mut self,
        candidate: &Candidate,
        known: Option<KnownOffset>,
    ) -> Option<(Start, Option<FirstBytes>)> {
        match (known, self.ignored.get(&candidate.id)) {
            // Saved while its file was empty, the checkpoint cannot tell that file, grown
            // since, from a later file given the same inode (a copy, say, made after the
            // first was deleted): if this one is the copy of a truncated file, it is that.
            (Some(known), _) if known.head.is_none() && known.offset == 0 && candidate.size > 0 => {
                match self.new_file_start(candidate).await? {
                    (Start::At(copy), first) => Some((Start::At(copy), first)),
                    (_, first) => Some((Start::At(known), first)),
                }
            }
            (Some(known), _) => Some((Start::At(known), None)),
            (None, Some(&size)) => Some((
                Start::At(KnownOffset {
                    offset: size,
                    head: None,
                    path: None,
                    original: None,
                    cursor: None,
                }),
                None,
            )),
            (None, None) => self.new_file_start(candidate).await,
        }
    }

    /// A descriptor from the open-file budget; `None` if none is free, the file then waits
    /// its turn (unless it was read to its end already).
    fn take_descriptor(
        &mut self,
        candidate: &Candidate,
        start: &Start,
        now: Instant,
        waiting: &mut usize,
    ) -> Option<FilePermit> {
        if let Some(permit) = self.shared.open_files.try_take() {
            return Some(permit);
        }
        if matches!(start, Start::At(known) if known.offset == candidate.size) {
            // Read to its end already: it needs a descriptor only once written again.
            self.waiting_since.remove(&candidate.id);
            return None;
        }
        self.waiting_since.entry(candidate.id).or_insert(now);
        *waiting += 1;
        None
    }

    /// Opens the file, if it is still the one found, and starts its tailer.
    async fn open_and_follow(
        &mut self,
        candidate: Candidate,
        decided: Decided,
        permit: FilePermit,
        tailers: &mut JoinSet<Finished>,
        data_watch: &watch::Receiver<()>,
    ) {
        let opened = {
            let path = candidate.path.clone();
            let id = candidate.id;
            blocking(move || open_checked(&path, id)).await
        };
        match opened.and_then(|result| result) {
            Ok(Some(file)) => {
                let opened = self.opened(candidate, decided, file, permit);
                tailers.spawn(tailer::follow(
                    opened,
                    Arc::clone(&self.shared),
                    data_watch.clone(),
                ));
            }
            Ok(None) => {} // Replaced between the scan and the open: the next scan sees the new file.
            Err(error) => {
                self.shared.metrics.open_failed();
                if self.unopenable.insert(candidate.path.clone()) {
                    warn!(flow = %self.flow.name, file = %candidate.path.display(), %error, "Cannot open file; will keep trying at every scan (logged once).");
                }
            }
        }
    }

    /// Hands an opened file over to its tailer: from here on, the tailer reports where to
    /// resume.
    fn opened(
        &mut self,
        candidate: Candidate,
        decided: Decided,
        file: std::fs::File,
        permit: FilePermit,
    ) -> Opened {
        let Decided {
            start,
            replaced,
            new_first,
        } = decided;
        self.unopenable.remove(&candidate.path);
        self.waiting_since.remove(&candidate.id);
        self.deferred.remove(&candidate.id);
        self.replaced.remove(&candidate.id);
        self.ignored.remove(&candidate.id);
        // Used now: from here on, the tailer reports where to resume.
        let known = self.known.remove(&candidate.id);
        // Another file found in this scan may be a copy of this one.
        let opening = match &known {
            Some(known) => Some((FirstBytes::head_only(known.head), known.offset)),
            None => new_first.map(|first| (first, 0)),
        };
        if let Some((first, offset)) = opening {
            self.shared
                .copies
                .note_opening(candidate.id, first, offset, &candidate.path);
        }
        let catch_up = known
            .as_ref()
            .and_then(|known| known.path.as_ref())
            .filter(|saved| self.first_scan && **saved != candidate.path)
            .map(|saved| {
                info!(flow = %self.flow.name, file = %candidate.path.display(), was = %saved.display(), "File was renamed while the agent was stopped; finishing it before new files.");
                CatchUp::new(&self.catch_up)
            });
        self.active.insert(candidate.id);
        if let Some(replaced) = &replaced {
            warn!(flow = %self.flow.name, file = %candidate.path.display(), checkpoint = replaced.offset, "This file does not start as the file its device and inode belonged to (replaced, or truncated while the agent was stopped); reading it as a new file.");
        }
        Opened {
            file,
            path: candidate.path,
            id: candidate.id,
            start,
            replaced,
            permit,
            catch_up,
        }
    }

    /// Forgets what is known of files this scan did not find (`present` holds those it did):
    /// where to resume one is kept for `checkpoint_expiry` after it was last found.
    fn forget_absent(&mut self, present: &HashSet<FileId>, now: Instant) {
        for id in present {
            self.known_found.insert(*id, now);
        }
        let expiry = self.checkpoint_expiry;
        let known_found = &mut self.known_found;
        self.known.retain(|id, _| {
            let found = *known_found.entry(*id).or_insert(now);
            now.duration_since(found) <= expiry
        });
        known_found.retain(|id, _| self.known.contains_key(id) || present.contains(id));
        self.waiting_since.retain(|id, _| present.contains(id));
        self.deferred.retain(|id, _| present.contains(id));
        self.replaced.retain(|id, _| present.contains(id));
        self.ignored.retain(|id, _| present.contains(id));
    }

    /// Whether the file at `path` still starts with the bytes `head` was taken from (or
    /// cannot be read now, which the tailer reports).
    async fn still_starts_with(&self, path: &Path, head: Option<Head>) -> bool {
        let Some(head) = head else {
            return true;
        };
        let path = path.to_owned();
        let checked = blocking(move || -> std::io::Result<bool> {
            identity::starts_with(&std::fs::File::open(&path)?, head)
        })
        .await
        .and_then(|result| result);
        checked.unwrap_or(true)
    }

    /// Whether `ignore_older` skips this file now.
    fn is_ignored(&mut self, candidate: &Candidate) -> bool {
        let Some(ignore_older) = self.flow.ignore_older else {
            return false;
        };
        let old = candidate
            .modified
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > ignore_older);
        if !old {
            return false;
        }
        if !self.ignored.contains_key(&candidate.id) && !self.known.contains_key(&candidate.id) {
            let size = std::fs::metadata(&candidate.path).map_or(0, |m| m.len());
            debug!(flow = %self.flow.name, file = %candidate.path.display(), size, "Not modified within ignore_older; not followed until written again.");
            self.ignored.insert(candidate.id, size);
        }
        true
    }

    /// Takes back a tailer that stopped: where it stopped is where its file resumes.
    pub(super) fn finished(&mut self, done: Result<Finished, tokio::task::JoinError>) {
        match done {
            Ok(finished) => {
                self.active.remove(&finished.id);
                self.shared.copies.forget_reached(finished.id);
                if let Some(known) = finished.resume_at {
                    self.known.insert(finished.id, known);
                }
                if finished.parked {
                    // Back of the queue behind the files already waiting.
                    self.waiting_since.insert(finished.id, Instant::now());
                }
            }
            Err(error) => warn!(flow = %self.flow.name, %error, "A file tailer failed."),
        }
    }

    /// Publishes how many of this flow's files wait for a descriptor.
    pub(super) fn set_waiting(&mut self, waiting: usize) {
        let open_files = &self.shared.open_files;
        if waiting > self.waiting_count {
            open_files
                .waiting
                .fetch_add(waiting - self.waiting_count, Ordering::Relaxed);
        } else {
            open_files
                .waiting
                .fetch_sub(self.waiting_count - waiting, Ordering::Relaxed);
        }
        if waiting > 0 && self.waiting_count == 0 {
            info!(flow = %self.flow.name, waiting, "More files match than max_open_files allows open; idle files take turns.");
        }
        self.waiting_count = waiting;
    }
}

/// Every regular file matching one of `patterns` and none of `exclude`, once each.
fn matching_files(patterns: &[String], exclude: &[glob::Pattern]) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for pattern in patterns {
        let Ok(paths) = glob::glob(pattern) else {
            continue; // Validated with the config.
        };
        for path in paths.flatten() {
            if exclude.iter().any(|excluded| excluded.matches_path(&path)) {
                continue;
            }
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let Ok(id) = identity::id_at(&path, &metadata) else {
                continue;
            };
            if seen.insert(id) {
                found.push(Candidate {
                    path,
                    id,
                    modified: metadata.modified().ok(),
                    size: metadata.len(),
                });
            }
        }
    }
    found
}

/// Opens `path` if it is still the file `id`.
fn open_checked(path: &Path, id: FileId) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::File::open(path)?;
    let opened = identity::id_of(&file)?;
    Ok((opened == id).then_some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_each_regular_file_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.log"), b"x").expect("write");
        std::fs::write(dir.path().join("b.txt"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("c.log")).expect("mkdir");
        let base = dir.path().display();
        let found = matching_files(&[format!("{base}/*.log"), format!("{base}/a.*")], &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, dir.path().join("a.log"));
    }
}
