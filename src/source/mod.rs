//! The source: finds the files a flow's globs match, follows each with its own tailer, and sends
//! their lines on. inotify (through `notify`) wakes tailers early; a periodic stat poll and a
//! periodic re-scan stay the authority, since events are missed on some filesystems.

mod assembler;
mod framer;
mod identity;
mod tailer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{FlowConfig, InitialPosition};
use crate::limits::{MemoryBudget, OpenFiles};
use crate::metrics::FlowMetrics;
use crate::record::{Ack, CopyFrom, FileId, Head, Lines, Original};
use identity::Lead;
use tailer::{blocking, Finished, Opened, Start};

pub use assembler::{AssembleOptions, Assembled, Assembler};
pub use framer::{FrameOptions, Framed, Framer};

/// How long after a file was truncated a new file starting with the same bytes is taken for
/// the copy made just before the truncation (copytruncate).
const COPY_WINDOW: Duration = Duration::from_secs(120);

/// An offset known for a file, with the head it had, so that another file that later gets the
/// same device and inode is not mistaken for it, and the path it was last seen at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownOffset {
    pub offset: u64,
    pub head: Option<Head>,
    pub path: Option<PathBuf>,
    /// Set for a copy of a file truncated while this process read it.
    pub original: Option<Original>,
}

/// What the tailers of one flow need.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub frame: FrameOptions,
    pub assemble: AssembleOptions,
    pub poll_interval: Duration,
    /// How long a rotated or deleted file must stay idle at its end before it is released.
    pub release_after: Duration,
    pub partial_line_timeout: Duration,
    pub multiline_flush_timeout: Duration,
    /// How long a file stays idle before it gives its descriptor to a file waiting for one.
    pub park_after: Duration,
    pub fingerprint_bytes: usize,
}

impl TailSettings {
    pub fn for_flow(flow: &FlowConfig) -> Self {
        let terminator = Bytes::from(flow.truncated_record_terminator.clone().into_bytes());
        let max_line_bytes = flow.max_line_bytes();
        Self {
            frame: FrameOptions {
                max_line_bytes,
                oversize: flow.oversize_records,
                terminator: terminator.clone(),
            },
            assemble: AssembleOptions {
                skip_header_lines: flow.skip_header_lines,
                footer: flow
                    .file_footer_pattern
                    .as_ref()
                    .map(|pattern| pattern.regex.clone()),
                multiline_start: flow
                    .multiline_start_pattern
                    .as_ref()
                    .map(|pattern| pattern.regex.clone()),
                max_record_bytes: max_line_bytes,
                oversize: flow.oversize_records,
                terminator,
            },
            poll_interval: flow.poll_interval,
            release_after: flow.scan_interval.max(flow.poll_interval * 4),
            partial_line_timeout: flow.partial_line_timeout,
            multiline_flush_timeout: flow.multiline_flush_timeout,
            park_after: flow.scan_interval.max(flow.poll_interval * 4),
            fingerprint_bytes: flow.fingerprint_bytes,
        }
    }
}

/// Held by the tailer of a file that was rotated while the agent was stopped, until it has
/// read that file to its end: new files of the flow wait for it, so the old lines go first.
pub struct CatchUp {
    state: Arc<CatchUpState>,
}

#[derive(Default)]
struct CatchUpState {
    remaining: AtomicUsize,
    done: Notify,
}

impl CatchUp {
    fn new(state: &Arc<CatchUpState>) -> Self {
        state.remaining.fetch_add(1, Ordering::SeqCst);
        Self {
            state: Arc::clone(state),
        }
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        if self.state.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.done.notify_waiters();
        }
    }
}

/// What a file was found to start with, to recognise its copies by.
#[derive(Clone, Copy, Debug)]
struct FirstBytes {
    head: Option<Head>,
    /// `None` for a position from a checkpoint, whose first bytes were not read yet.
    lead: Option<Lead>,
}

impl FirstBytes {
    /// Read from the file: its head (`None` if it was empty) and lead.
    fn read(head: Option<Head>, lead: Lead) -> Self {
        FirstBytes {
            head,
            lead: Some(lead),
        }
    }

    /// Known only by the head saved in a checkpoint.
    fn head_only(head: Option<Head>) -> Self {
        FirstBytes { head, lead: None }
    }
}

/// Where a file being followed was read up to, for recognising its copies.
#[derive(Debug)]
struct Reached {
    first: FirstBytes,
    offset: u64,
    path: Arc<Path>,
}

/// A file that was truncated, with what it started with and how far it had been read.
#[derive(Debug)]
struct Truncation {
    head: Head,
    /// `None` for a truncation known from a checkpoint.
    lead: Option<Lead>,
    offset: u64,
    path: Arc<Path>,
    at: Instant,
    /// `None` for a truncation known from a checkpoint: its reading is over, and `offset` is
    /// what of it was delivered.
    original: Option<Original>,
}

#[derive(Debug, Default)]
struct CopyTracking {
    reached: HashMap<FileId, Reached>,
    /// Files being opened at a known offset, not read to their end yet.
    opening: HashMap<FileId, Reached>,
    truncations: Vec<Truncation>,
}

/// Shared by the discovery loop and every tailer of one flow.
pub struct FlowShared {
    pub flow: Arc<str>,
    pub settings: TailSettings,
    pub lines: mpsc::Sender<Lines>,
    pub acks: mpsc::Sender<Ack>,
    pub metrics: Arc<FlowMetrics>,
    pub cancel: CancellationToken,
    /// Shared by every flow: tailers wait for room in it before handing records on.
    pub budget: Arc<MemoryBudget>,
    open_files: Arc<OpenFiles>,
    copies: Mutex<CopyTracking>,
    /// Whether file events are being delivered for at least one watched directory.
    events: std::sync::atomic::AtomicBool,
}

impl FlowShared {
    /// Records how far the file `id` was read (called when a tailer reaches the end).
    fn note_reached(&self, id: FileId, first: FirstBytes, offset: u64, path: &Path) {
        let Ok(mut copies) = self.copies.lock() else {
            return;
        };
        copies.opening.remove(&id);
        match copies.reached.get_mut(&id) {
            Some(reached) => {
                reached.offset = offset;
                reached.first = first;
            }
            None => {
                copies.reached.insert(
                    id,
                    Reached {
                        first,
                        offset,
                        path: Arc::from(path),
                    },
                );
            }
        }
    }

    /// Records that the file `id` was truncated after being read to `offset`, by the reading
    /// `reading` of this process if it was.
    fn note_truncation(
        &self,
        id: FileId,
        first: FirstBytes,
        offset: u64,
        path: &Path,
        reading: Option<u64>,
    ) {
        let Ok(mut copies) = self.copies.lock() else {
            return;
        };
        copies.reached.remove(&id);
        copies.opening.remove(&id);
        copies.truncations.retain(|t| t.at.elapsed() < COPY_WINDOW);
        debug!(file = %path.display(), head = ?first.head, offset, "Noted a truncation.");
        if let Some(head) = first.head {
            copies.truncations.push(Truncation {
                head,
                lead: first.lead,
                offset,
                path: Arc::from(path),
                at: Instant::now(),
                original: reading.map(|reading| Original { reading }),
            });
        }
    }

    fn forget_reached(&self, id: FileId) {
        if let Ok(mut copies) = self.copies.lock() {
            copies.reached.remove(&id);
            copies.opening.remove(&id);
        }
    }

    /// Records that the file `id` is being opened to be read from `offset`, so that a copy of
    /// it found before its tailer has looked at it is recognised.
    fn note_opening(&self, id: FileId, first: FirstBytes, offset: u64, path: &Path) {
        if first.head.is_none() && first.lead.is_none() {
            return; // Nothing to recognise a copy by.
        }
        if let Ok(mut copies) = self.copies.lock() {
            let reached = Reached {
                first,
                offset,
                path: Arc::from(path),
            };
            copies.opening.insert(id, reached);
        }
    }

    /// Paths of the files being followed.
    fn followed_paths(&self) -> Vec<Arc<Path>> {
        let Ok(copies) = self.copies.lock() else {
            return Vec::new();
        };
        copies
            .reached
            .values()
            .chain(copies.opening.values())
            .map(|reached| reached.path.clone())
            .collect()
    }

    /// Heads (and leads, where known) of files followed or truncated lately, to compare a new
    /// file with.
    fn copy_candidates(&self) -> Vec<CopyCandidate> {
        let Ok(mut copies) = self.copies.lock() else {
            return Vec::new();
        };
        copies.truncations.retain(|t| t.at.elapsed() < COPY_WINDOW);
        let full = self.settings.fingerprint_bytes as u32;
        // A short head stands for the whole file only if nothing past it was read.
        let truncated = copies
            .truncations
            .iter()
            .filter(|t| t.head.len == full || t.offset <= u64::from(t.head.len))
            .map(|t| CopyCandidate {
                head: Some(t.head),
                lead: t.lead,
                of: CopyOf::Truncated {
                    offset: t.offset,
                    path: t.path.clone(),
                    original: t.original,
                },
            });
        let followed = copies.reached.values().chain(copies.opening.values());
        let followed = followed.map(|r| CopyCandidate {
            head: r.first.head,
            lead: r.first.lead,
            of: CopyOf::Followed {
                path: r.path.clone(),
            },
        });
        truncated.chain(followed).collect()
    }
}

/// A file that a new file may be a copy of, and how to recognise its copies.
#[derive(Clone, Debug)]
struct CopyCandidate {
    /// `None` while the file was empty at its tailer's last look.
    head: Option<Head>,
    lead: Option<Lead>,
    of: CopyOf,
}

/// What a new file starting with the same bytes as another may be a copy of.
#[derive(Clone, Debug)]
enum CopyOf {
    /// A file truncated lately: the copy holds what was not read of it before the truncation.
    Truncated {
        offset: u64,
        path: Arc<Path>,
        original: Option<Original>,
    },
    /// A file still followed: perhaps about to be truncated; decided at a later scan.
    Followed { path: Arc<Path> },
}

impl CopyOf {
    fn path(&self) -> &Path {
        match self {
            CopyOf::Truncated { path, .. } | CopyOf::Followed { path } => path,
        }
    }
}

/// Everything one flow's source needs to run.
pub struct Source {
    pub flow: Arc<FlowConfig>,
    /// Acknowledged offsets from the checkpoint store, for this flow's files.
    pub checkpoints: HashMap<FileId, KnownOffset>,
    /// Files truncated before the last stop, from the checkpoint store: their copies continue.
    pub truncated: Vec<(CopyFrom, PathBuf)>,
    /// Where to resume a file no scan found for this long is forgotten, as its checkpoint is.
    pub checkpoint_expiry: Duration,
    pub lines: mpsc::Sender<Lines>,
    pub acks: mpsc::Sender<Ack>,
    pub metrics: Arc<FlowMetrics>,
    pub open_files: Arc<OpenFiles>,
    pub budget: Arc<MemoryBudget>,
    pub cancel: CancellationToken,
}

/// A file found by a scan and not being followed.
struct Candidate {
    path: PathBuf,
    id: FileId,
    modified: Option<SystemTime>,
    size: u64,
}

impl Source {
    /// Finds and follows files until `cancel` fires; returns once every tailer has stopped.
    pub async fn run(self) {
        let Source {
            flow,
            checkpoints,
            truncated,
            checkpoint_expiry,
            lines,
            acks,
            metrics,
            open_files,
            budget,
            cancel,
        } = self;
        let shared = Arc::new(FlowShared {
            flow: Arc::from(flow.name.as_str()),
            settings: TailSettings::for_flow(&flow),
            lines,
            acks,
            metrics,
            cancel: cancel.clone(),
            budget,
            open_files,
            copies: Mutex::new(CopyTracking {
                truncations: truncated
                    .into_iter()
                    .map(|(copy, path)| Truncation {
                        head: copy.head,
                        lead: None,
                        offset: copy.offset,
                        path: Arc::from(path),
                        at: Instant::now(),
                        original: None,
                    })
                    .collect(),
                ..CopyTracking::default()
            }),
            events: std::sync::atomic::AtomicBool::new(false),
        });
        let (data_changed, data_watch) = watch::channel(());
        let (dirs_changed, mut dirs_watch) = watch::channel(());
        // The senders stay alive here too: without a watcher, `changed()` must wait, not fail.
        let _watch_senders = (data_changed.clone(), dirs_changed.clone());
        let mut watcher = Watch::start(&flow.name, data_changed, dirs_changed);
        let mut discovery = Discovery {
            flow: Arc::clone(&flow),
            shared: Arc::clone(&shared),
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
        };
        let mut tailers: JoinSet<Finished> = JoinSet::new();
        loop {
            if watcher.watch_missing(&flow.files) {
                shared.events.store(true, Ordering::Relaxed);
            }
            discovery.scan(&mut tailers, &data_watch).await;
            let waiting_for_files = discovery.waiting_count > 0;
            let catching_up = discovery.catch_up.remaining.load(Ordering::SeqCst) > 0;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = dirs_watch.changed() => {}
                _ = tokio::time::sleep(flow.scan_interval) => {}
                // Files whose start is undecided are looked at again soon.
                _ = tokio::time::sleep(flow.poll_interval), if !discovery.deferred.is_empty() => {}
                _ = shared.open_files.freed.notified(), if waiting_for_files => {}
                _ = discovery.catch_up.done.notified(), if catching_up => {}
                Some(done) = tailers.join_next() => discovery.finished(done),
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        discovery.set_waiting(0);
        while let Some(done) = tailers.join_next().await {
            if let Err(error) = done {
                warn!(flow = %flow.name, %error, "A file tailer failed.");
            }
        }
        debug!(flow = %flow.name, "Source stopped.");
    }
}

/// The discovery loop's state: which files are followed, and where others resume.
struct Discovery {
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
}

impl Discovery {
    async fn scan(&mut self, tailers: &mut JoinSet<Finished>, data_watch: &watch::Receiver<()>) {
        self.now_holding = None;
        let patterns = self.flow.files.clone();
        let exclude = self.flow.exclude.clone();
        let found = blocking(move || scan(&patterns, &exclude))
            .await
            .unwrap_or_default();
        if !self.shared.cancel.is_cancelled() {
            // Files followed count as seen even when no glob matches them any more.
            let mut ids: Vec<FileId> = found.iter().map(|candidate| candidate.id).collect();
            ids.extend(self.active.iter().copied());
            let seen = Ack::Seen {
                flow: Arc::clone(&self.shared.flow),
                ids,
            };
            let _ = self.shared.acks.send(seen).await;
        }
        let now = Instant::now();
        let mut candidates: Vec<Candidate> = found
            .into_iter()
            .filter(|candidate| !self.active.contains(&candidate.id))
            .collect();
        // Longest waiting first; on the first scan, oldest file first.
        candidates.sort_by_key(|candidate| {
            (
                self.waiting_since
                    .get(&candidate.id)
                    .copied()
                    .unwrap_or(now),
                candidate.modified,
            )
        });
        let catching_up = self.catch_up.remaining.load(Ordering::SeqCst) > 0;
        let mut waiting = 0;
        let mut present = HashSet::new();
        for candidate in candidates {
            present.insert(candidate.id);
            if self.shared.cancel.is_cancelled() {
                // Shutting down: tailers are ending and what they knew with them.
                continue;
            }
            if self.is_ignored(&candidate) {
                continue;
            }
            let known = self.known.get(&candidate.id).cloned();
            if known.is_none() && catching_up && !self.first_scan {
                continue; // Rotated files are finished first.
            }
            // A checkpoint whose file no longer starts as it did belongs to a file that is gone
            // (its inode reused, or it was truncated and written again while stopped): this
            // file is new, perhaps a copy.
            let known = match known {
                Some(known) if !self.still_starts_with(&candidate.path, known.head).await => {
                    // Noted at once, so that a copy found before this file is opened is
                    // recognised.
                    self.known.remove(&candidate.id);
                    let first = FirstBytes::head_only(known.head);
                    self.shared.note_truncation(
                        candidate.id,
                        first,
                        known.offset,
                        &candidate.path,
                        None,
                    );
                    self.replaced.insert(candidate.id, known);
                    None
                }
                other => other,
            };
            let replaced = self.replaced.get(&candidate.id).cloned();
            // A new file's first bytes, as read to decide where it starts.
            let mut new_first = None;
            let start = match (known, self.ignored.get(&candidate.id)) {
                // Saved while its file was empty, the checkpoint cannot tell that file, grown
                // since, from a later file given the same inode (a copy, say, made after the
                // first was deleted): if this one is the copy of a truncated file, it is that.
                (Some(known), _)
                    if known.head.is_none() && known.offset == 0 && candidate.size > 0 =>
                {
                    match self.new_file_start(&candidate).await {
                        Some((Start::At(copy), first)) => {
                            new_first = first;
                            Start::At(copy)
                        }
                        Some((_, first)) => {
                            new_first = first;
                            Start::At(known)
                        }
                        None => continue, // Decided at a later scan.
                    }
                }
                (Some(known), _) => Start::At(known),
                (None, Some(&size)) => Start::At(KnownOffset {
                    offset: size,
                    head: None,
                    path: None,
                    original: None,
                }),
                (None, None) => match self.new_file_start(&candidate).await {
                    Some((start, first)) => {
                        new_first = first;
                        start
                    }
                    None => continue, // Decided at a later scan.
                },
            };
            let Some(permit) = self.shared.open_files.try_take() else {
                if matches!(&start, Start::At(known) if known.offset == candidate.size) {
                    // Read to its end already: it needs a descriptor only once written again.
                    self.waiting_since.remove(&candidate.id);
                    continue;
                }
                self.waiting_since.entry(candidate.id).or_insert(now);
                waiting += 1;
                continue;
            };
            let opened = {
                let path = candidate.path.clone();
                let id = candidate.id;
                blocking(move || open_checked(&path, id)).await
            };
            match opened.and_then(|result| result) {
                Ok(Some(file)) => {
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
                    tailers.spawn(tailer::follow(
                        Opened {
                            file,
                            path: candidate.path,
                            id: candidate.id,
                            start,
                            replaced,
                            permit,
                            catch_up,
                        },
                        Arc::clone(&self.shared),
                        data_watch.clone(),
                    ));
                }
                Ok(None) => {} // Replaced between the scan and the open: the next scan sees the new file.
                Err(error) => {
                    if self.unopenable.insert(candidate.path.clone()) {
                        warn!(flow = %self.flow.name, file = %candidate.path.display(), %error, "Cannot open file; will keep trying at every scan (logged once).");
                    }
                }
            }
        }
        for id in &present {
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
        self.set_waiting(waiting);
        self.first_scan = false;
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

    /// Where a file with no known position starts (see `copy_start`), with its first bytes
    /// as read for that (`None` if they could not be read); `None` to decide at a later scan.
    async fn new_file_start(
        &mut self,
        candidate: &Candidate,
    ) -> Option<(Start, Option<FirstBytes>)> {
        let path = candidate.path.clone();
        let fingerprint_bytes = self.shared.settings.fingerprint_bytes as u64;
        let read = blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
            let file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            Ok((identity::read_start(&file, fingerprint_bytes)?, size))
        })
        .await
        .and_then(|result| result);
        let Ok((first_bytes, size)) = read else {
            return Some((self.fresh_start(), None));
        };
        let first = FirstBytes::read(
            identity::head_of_bytes(&first_bytes),
            Lead::of(&first_bytes),
        );
        let now_holding = self.followed_files_now().await;
        let now_holding = now_holding
            .iter()
            .filter(|held| *held.of.path() != *candidate.path)
            .cloned()
            .collect();
        let start = self.copy_start(candidate, &first_bytes, size, now_holding)?;
        Some((start, Some(first)))
    }

    /// What the followed files start with on disk now, read once a scan (when a new file is
    /// to be compared): a file truncated and written again, then copied, before its tailer
    /// saw the truncation, has a copy that starts like none of the heads its tailer noted.
    async fn followed_files_now(&mut self) -> Arc<Vec<CopyCandidate>> {
        if let Some(now_holding) = &self.now_holding {
            return Arc::clone(now_holding);
        }
        let followed = self.shared.followed_paths();
        let fingerprint_bytes = self.shared.settings.fingerprint_bytes as u64;
        let now_holding = blocking(move || {
            followed
                .into_iter()
                .filter_map(|path| {
                    let file = std::fs::File::open(&path).ok()?;
                    let start = identity::read_start(&file, fingerprint_bytes).ok()?;
                    Some(CopyCandidate {
                        head: Some(identity::head_of_bytes(&start)?),
                        lead: None,
                        of: CopyOf::Followed { path },
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let now_holding = Arc::new(now_holding);
        self.now_holding = Some(Arc::clone(&now_holding));
        now_holding
    }

    /// Where a file that is neither followed nor known starts reading.
    fn fresh_start(&self) -> Start {
        if self.first_scan && self.flow.initial_position == InitialPosition::EndOfFile {
            Start::End
        } else {
            Start::Beginning
        }
    }

    /// Where a new file that starts with `first_bytes` and is `size` bytes long starts: from
    /// the beginning (or its end, on the first scan with `end_of_file`); where a truncated
    /// file's reading stopped, if it is that file's copy; or `None` to decide at a later scan.
    fn copy_start(
        &mut self,
        candidate: &Candidate,
        first_bytes: &[u8],
        size: u64,
        now_holding: Vec<CopyCandidate>,
    ) -> Option<Start> {
        let (candidate_id, candidate_path) = (candidate.id, &candidate.path);
        let fresh = self.fresh_start();
        let fingerprint_bytes = self.shared.settings.fingerprint_bytes;
        // Taken after reading the new file: an original truncated before its copy was read is
        // then known as truncated, or else still followed.
        let mut candidates = self.shared.copy_candidates();
        candidates.extend(now_holding);
        // Files with a checkpoint not opened yet may have been copied and truncated while the
        // agent was stopped: wait for their tailers to tell.
        candidates.extend(self.known.values().filter_map(|known| {
            let path = known.path.clone().unwrap_or_default();
            Some(CopyCandidate {
                head: Some(known.head?),
                lead: None,
                of: CopyOf::Followed {
                    path: Arc::from(path),
                },
            })
        }));
        if candidates.is_empty() {
            return Some(fresh);
        }
        let wait = self.shared.settings.poll_interval * 4 + Duration::from_secs(1);
        // Too short to compare by head with a file it begins like: a copy still being written
        // (`cp` creates the file empty, then fills it)? Decide once it has grown, or once it
        // has stayed short for a while.
        let being_copied = candidates.iter().find(|candidate| {
            let comparable = candidate
                .head
                .map_or(fingerprint_bytes, |head| head.len as usize);
            first_bytes.len() < comparable
                && candidate
                    .lead
                    .is_some_and(|lead| lead.agrees_with(first_bytes))
        });
        if let Some(candidate) = being_copied {
            let since = *self
                .deferred
                .entry(candidate_id)
                .or_insert_with(Instant::now);
            if since.elapsed() < wait {
                debug!(flow = %self.flow.name, file = %candidate_path.display(), size, like = %candidate.of.path().display(), "New file is too short to tell whether it is a copy being written; looking again soon.");
                return None;
            }
        }
        let Some(head) = identity::head_of_bytes(first_bytes) else {
            return Some(fresh);
        };
        let compared = candidates.len();
        // The likeliest original is the one whose head covers the most bytes (a short head
        // matches many files); then a truncated file over a followed one; then the latest.
        let mut prefixes = identity::Prefixes::new(first_bytes);
        let matches: Vec<(usize, u32, CopyOf)> = candidates
            .into_iter()
            .enumerate()
            .filter_map(|(order, candidate)| {
                let head = candidate.head?;
                prefixes
                    .start_with(head)
                    .then_some((order, head.len, candidate.of))
            })
            .collect();
        debug!(flow = %self.flow.name, file = %candidate.path.display(), first = %String::from_utf8_lossy(&first_bytes[..first_bytes.len().min(40)]), compared, matched = matches.len(), "Compared a new file's first bytes with files followed or truncated lately.");
        let best = matches.into_iter().max_by_key(|(order, head_len, of)| {
            let truncated = matches!(of, CopyOf::Truncated { .. });
            (*head_len, truncated, *order)
        });
        let Some((_, _, best)) = best else {
            return Some(fresh);
        };
        if let CopyOf::Truncated {
            offset,
            path: origin,
            original,
        } = &best
        {
            let offset = (*offset).min(size);
            info!(flow = %self.flow.name, file = %candidate.path.display(), copy_of = %origin.display(), offset, "File is the copy of a file truncated lately (copytruncate); reading it from where that file was read to.");
            return Some(Start::At(KnownOffset {
                offset,
                head: Some(head),
                path: None,
                original: *original,
            }));
        }
        let origin = best.path();
        let since = *self
            .deferred
            .entry(candidate.id)
            .or_insert_with(Instant::now);
        if since.elapsed() < wait {
            debug!(flow = %self.flow.name, file = %candidate.path.display(), like = %origin.display(), "New file starts like a followed file; waiting to see whether that one is truncated.");
            return None;
        }
        info!(flow = %self.flow.name, file = %candidate.path.display(), like = %origin.display(), "New file starts like a followed file, which was not truncated; reading it as a file of its own.");
        Some(Start::Beginning)
    }

    fn finished(&mut self, done: Result<Finished, tokio::task::JoinError>) {
        match done {
            Ok(finished) => {
                self.active.remove(&finished.id);
                self.shared.forget_reached(finished.id);
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
    fn set_waiting(&mut self, waiting: usize) {
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
fn scan(patterns: &[String], exclude: &[glob::Pattern]) -> Vec<Candidate> {
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

/// Watches the directories the patterns name. Any event wakes the tailers; a file appearing,
/// disappearing or being renamed also wakes discovery. A directory that does not exist yet
/// is watched once it does.
struct Watch {
    flow: String,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    watching: bool,
}

impl Watch {
    fn start(flow: &str, data_changed: watch::Sender<()>, dirs_changed: watch::Sender<()>) -> Self {
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else {
                return;
            };
            if let EventKind::Access(_) = event.kind {
                // Opens, reads and closes change nothing, and the agent's own reads cause
                // them: waking every tailer for each would keep them all busy.
                return;
            }
            data_changed.send_replace(());
            if matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(notify::event::ModifyKind::Name(_))
            ) {
                dirs_changed.send_replace(());
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                warn!(flow, %error, "File events are unavailable; following files by polling alone.");
                None
            }
        };
        Self {
            flow: flow.to_owned(),
            watcher,
            watched: HashSet::new(),
            watching: false,
        }
    }

    /// Watches each pattern's directory not watched yet (it may not have existed before);
    /// returns whether any directory is watched.
    fn watch_missing(&mut self, patterns: &[String]) -> bool {
        let Some(watcher) = self.watcher.as_mut() else {
            return false;
        };
        for pattern in patterns {
            let (directory, mode) = watch_root(pattern);
            if self.watched.contains(&directory) {
                continue;
            }
            if !directory.is_dir() {
                continue; // Found by the periodic scan once created, and watched then.
            }
            match watcher.watch(&directory, mode) {
                Ok(()) => {
                    debug!(flow = %self.flow, directory = %directory.display(), "Watching directory.");
                    self.watched.insert(directory);
                    self.watching = true;
                }
                Err(error) => {
                    info!(flow = %self.flow, directory = %directory.display(), %error, "Cannot watch directory; polling it.");
                    self.watched.insert(directory);
                }
            }
        }
        self.watching
    }
}

/// The directory to watch for `pattern`: its parent when only the file name has wildcards,
/// else the literal part before the first wildcard, recursively.
fn watch_root(pattern: &str) -> (PathBuf, RecursiveMode) {
    let path = Path::new(pattern);
    let has_wildcard = |part: &str| part.contains(['*', '?', '[']);
    let mut root = PathBuf::new();
    let components: Vec<_> = path.components().collect();
    for (index, component) in components.iter().enumerate() {
        let part = component.as_os_str().to_string_lossy();
        if has_wildcard(&part) {
            let mode = if index + 1 == components.len() {
                RecursiveMode::NonRecursive
            } else {
                RecursiveMode::Recursive
            };
            return (root, mode);
        }
        root.push(component);
    }
    let parent = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    (parent, RecursiveMode::NonRecursive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_root_is_the_literal_prefix() {
        assert_eq!(
            watch_root("/var/log/app/*.log"),
            (PathBuf::from("/var/log/app"), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            watch_root("/var/log/app/one.log"),
            (PathBuf::from("/var/log/app"), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            watch_root("/var/lib/docker/*/x.log"),
            (PathBuf::from("/var/lib/docker"), RecursiveMode::Recursive)
        );
    }

    #[test]
    fn scan_finds_each_regular_file_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.log"), b"x").expect("write");
        std::fs::write(dir.path().join("b.txt"), b"x").expect("write");
        std::fs::create_dir(dir.path().join("c.log")).expect("mkdir");
        let base = dir.path().display();
        let found = scan(&[format!("{base}/*.log"), format!("{base}/a.*")], &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, dir.path().join("a.log"));
    }
}
