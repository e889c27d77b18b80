//! The copytruncate decision, as a pure function: is a newly found file the copy of a file
//! truncated lately (read from where that file was read to), perhaps the copy of a followed
//! file about to be truncated or a copy still being written (look again soon), or a file of
//! its own (read in full)? The callers read the files and keep the timers; this only weighs
//! what they found.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::identity::{self, Lead};
use crate::record::{Head, Original};

/// A file that a new file may be a copy of, and how to recognise its copies.
#[derive(Clone, Debug)]
pub(super) struct CopyCandidate {
    /// `None` while the file was empty at its tailer's last look.
    pub(super) head: Option<Head>,
    /// `None` where the file's first bytes were not read by this process (a checkpoint).
    pub(super) lead: Option<Lead>,
    pub(super) of: CopyOf,
}

/// What a new file starting with the same bytes as another may be a copy of.
#[derive(Clone, Debug)]
pub(super) enum CopyOf {
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
    pub(super) fn path(&self) -> &Path {
        match self {
            CopyOf::Truncated { path, .. } | CopyOf::Followed { path } => path,
        }
    }
}

/// What was found of the new file.
#[derive(Clone, Copy, Debug)]
pub(super) struct NewFile<'a> {
    /// Its first bytes, up to `fingerprint_bytes` of them.
    pub(super) first_bytes: &'a [u8],
    pub(super) size: u64,
    /// How long its start has been undecided already (zero when first looked at).
    pub(super) undecided_for: Duration,
}

/// The flow's settings the decision depends on.
#[derive(Clone, Copy, Debug)]
pub(super) struct CopyRules {
    /// How many first bytes a full head covers.
    pub(super) fingerprint_bytes: usize,
    /// How long a new file's start may stay undecided before it is read as a file of its own.
    pub(super) patience: Duration,
}

/// Where a new file starts, as far as copies go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CopyDecision {
    /// Like no file known: read as a new file.
    NotACopy,
    /// The copy of a file truncated lately: reading starts where that file was read to (no
    /// further than the copy's size), and the copy is known by `head` from then on.
    ContinuesTruncated {
        offset: u64,
        head: Head,
        original: Option<Original>,
        of: Arc<Path>,
    },
    /// Too short to compare by head with a file it begins like: a copy still being written
    /// (`cp` creates the file empty, then fills it)? Decided once it has grown, or once it has
    /// stayed short for a while.
    MaybeBeingWritten { like: Arc<Path> },
    /// Starts like a followed file: its copy, if that file is truncated soon? Decided later.
    StartsLikeFollowed { like: Arc<Path> },
    /// Started like a followed file long enough without that file being truncated: a file of
    /// its own, read from its beginning.
    OwnFile { like: Arc<Path> },
}

/// How the new file's head compared with the candidates' heads, when it was compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Comparison {
    pub(super) compared: usize,
    pub(super) matched: usize,
}

/// A decision, and the comparison it came from (`None` when it came before any comparison).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Decided {
    pub(super) decision: CopyDecision,
    pub(super) comparison: Option<Comparison>,
}

impl Decided {
    fn before_comparing(decision: CopyDecision) -> Self {
        Decided {
            decision,
            comparison: None,
        }
    }
}

/// Decides whether `new` is the copy of one of `candidates` (files truncated lately first,
/// then files followed, in the order they were noted).
pub(super) fn decide(
    new: &NewFile<'_>,
    candidates: Vec<CopyCandidate>,
    rules: &CopyRules,
) -> Decided {
    let candidates: Vec<CopyCandidate> = candidates
        .into_iter()
        .filter(|candidate| stands_for_its_file(candidate, rules.fingerprint_bytes))
        .collect();
    if candidates.is_empty() {
        return Decided::before_comparing(CopyDecision::NotACopy);
    }
    let patient = new.undecided_for < rules.patience;
    if let Some(like) = being_written_like(new.first_bytes, &candidates, rules.fingerprint_bytes) {
        if patient {
            let like = Arc::from(like.of.path());
            return Decided::before_comparing(CopyDecision::MaybeBeingWritten { like });
        }
    }
    let Some(head) = identity::head_of_bytes(new.first_bytes) else {
        return Decided::before_comparing(CopyDecision::NotACopy);
    };
    let compared = candidates.len();
    let matches = matching(new.first_bytes, candidates);
    let comparison = Some(Comparison {
        compared,
        matched: matches.len(),
    });
    let decision = match likeliest_original(matches) {
        None => CopyDecision::NotACopy,
        Some(CopyOf::Truncated {
            offset,
            path,
            original,
        }) => CopyDecision::ContinuesTruncated {
            offset: offset.min(new.size),
            head,
            original,
            of: path,
        },
        Some(CopyOf::Followed { path }) if patient => {
            CopyDecision::StartsLikeFollowed { like: path }
        }
        Some(CopyOf::Followed { path }) => CopyDecision::OwnFile { like: path },
    };
    Decided {
        decision,
        comparison,
    }
}

/// A truncated file with a short head stands for the whole file only if nothing past that
/// head was read: else its copy would be recognised by fewer bytes than were read of it.
fn stands_for_its_file(candidate: &CopyCandidate, fingerprint_bytes: usize) -> bool {
    match (&candidate.of, candidate.head) {
        (CopyOf::Truncated { offset, .. }, Some(head)) => {
            head.len == fingerprint_bytes as u32 || *offset <= u64::from(head.len)
        }
        _ => true,
    }
}

/// The first candidate that `first_bytes` begins like while too short to compare by head.
fn being_written_like<'a>(
    first_bytes: &[u8],
    candidates: &'a [CopyCandidate],
    fingerprint_bytes: usize,
) -> Option<&'a CopyCandidate> {
    candidates.iter().find(|candidate| {
        let comparable = candidate
            .head
            .map_or(fingerprint_bytes, |head| head.len as usize);
        first_bytes.len() < comparable
            && candidate
                .lead
                .is_some_and(|lead| lead.agrees_with(first_bytes))
    })
}

/// A candidate whose head `first_bytes` starts with: its place in the list, its head's length,
/// and what it is.
struct Match {
    order: usize,
    head_len: u32,
    of: CopyOf,
}

/// The candidates whose heads `first_bytes` starts with, in their order.
fn matching(first_bytes: &[u8], candidates: Vec<CopyCandidate>) -> Vec<Match> {
    let mut prefixes = identity::Prefixes::new(first_bytes);
    candidates
        .into_iter()
        .enumerate()
        .filter_map(|(order, candidate)| {
            let head = candidate.head?;
            prefixes.start_with(head).then_some(Match {
                order,
                head_len: head.len,
                of: candidate.of,
            })
        })
        .collect()
}

/// The likeliest original is the one whose head covers the most bytes (a short head matches
/// many files); then a truncated file over a followed one; then the latest.
fn likeliest_original(matches: Vec<Match>) -> Option<CopyOf> {
    matches
        .into_iter()
        .max_by_key(|found| {
            let truncated = matches!(found.of, CopyOf::Truncated { .. });
            (found.head_len, truncated, found.order)
        })
        .map(|found| found.of)
}

#[cfg(test)]
mod tests;
