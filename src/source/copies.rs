//! Copy tracking (copytruncate): what each of a flow's files starts with and how far it was
//! read, and which files were truncated lately, shared by discovery and the tailers, so that a
//! new file can be compared with them (see `copy_decision`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::copy_decision::{CopyCandidate, CopyOf};
use super::identity::Lead;
use crate::record::{CopyFrom, FileId, Head, Original};

/// How long after a file was truncated a new file starting with the same bytes is taken for
/// the copy made just before the truncation (copytruncate).
const COPY_WINDOW: Duration = Duration::from_secs(120);

/// What a file was found to start with, to recognise its copies by.
#[derive(Clone, Copy, Debug)]
pub(super) struct FirstBytes {
    head: Option<Head>,
    /// `None` for a position from a checkpoint, whose first bytes were not read yet.
    lead: Option<Lead>,
}

impl FirstBytes {
    /// Read from the file: its head (`None` if it was empty) and lead.
    pub(super) fn read(head: Option<Head>, lead: Lead) -> Self {
        FirstBytes {
            head,
            lead: Some(lead),
        }
    }

    /// Known only by the head saved in a checkpoint.
    pub(super) fn head_only(head: Option<Head>) -> Self {
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

/// One flow's copy tracking, behind a lock shared by discovery and the tailers.
#[derive(Debug)]
pub(super) struct Copies {
    tracking: Mutex<CopyTracking>,
}

impl Copies {
    /// The tracking state; a panic elsewhere while it was held leaves it usable (each change
    /// is a single insert or removal).
    fn tracking(&self) -> MutexGuard<'_, CopyTracking> {
        self.tracking.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts with the files truncated before the last stop, from the checkpoint store: their
    /// copies continue.
    pub(super) fn with_truncations(truncated: Vec<(CopyFrom, PathBuf)>) -> Self {
        let truncations = truncated
            .into_iter()
            .map(|(copy, path)| Truncation {
                head: copy.head,
                lead: None,
                offset: copy.offset,
                path: Arc::from(path),
                at: Instant::now(),
                original: None,
            })
            .collect();
        Copies {
            tracking: Mutex::new(CopyTracking {
                truncations,
                ..CopyTracking::default()
            }),
        }
    }

    /// Records how far the file `id` was read (called when a tailer reaches the end).
    pub(super) fn note_reached(&self, id: FileId, first: FirstBytes, offset: u64, path: &Path) {
        let mut copies = self.tracking();
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
    pub(super) fn note_truncation(
        &self,
        id: FileId,
        first: FirstBytes,
        offset: u64,
        path: &Path,
        reading: Option<u64>,
    ) {
        let mut copies = self.tracking();
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

    pub(super) fn forget_reached(&self, id: FileId) {
        let mut copies = self.tracking();
        copies.reached.remove(&id);
        copies.opening.remove(&id);
    }

    /// Records that the file `id` is being opened to be read from `offset`, so that a copy of
    /// it found before its tailer has looked at it is recognised.
    pub(super) fn note_opening(&self, id: FileId, first: FirstBytes, offset: u64, path: &Path) {
        if first.head.is_none() && first.lead.is_none() {
            return; // Nothing to recognise a copy by.
        }
        let reached = Reached {
            first,
            offset,
            path: Arc::from(path),
        };
        self.tracking().opening.insert(id, reached);
    }

    /// Paths of the files being followed.
    pub(super) fn followed_paths(&self) -> Vec<Arc<Path>> {
        let copies = self.tracking();
        copies
            .reached
            .values()
            .chain(copies.opening.values())
            .map(|reached| reached.path.clone())
            .collect()
    }

    /// Heads (and leads, where known) of files truncated lately, then of files followed, to
    /// compare a new file with.
    pub(super) fn candidates(&self) -> Vec<CopyCandidate> {
        let mut copies = self.tracking();
        copies.truncations.retain(|t| t.at.elapsed() < COPY_WINDOW);
        let truncated = copies.truncations.iter().map(|t| CopyCandidate {
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
