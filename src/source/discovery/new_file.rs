//! Where a new file starts: its first bytes are read and compared (by `copy_decision`) with
//! what is known of the flow's other files, to tell a copy (copytruncate) from a file of its
//! own; this keeps the timers of files whose start is undecided and logs what was decided.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use super::{Candidate, Discovery};
use crate::config::InitialPosition;
use crate::source::copies::FirstBytes;
use crate::source::copy_decision::{
    self, Comparison, CopyCandidate, CopyDecision, CopyOf, CopyRules, NewFile,
};
use crate::source::identity::{self, Lead};
use crate::source::tailer::{blocking, Start};
use crate::source::KnownOffset;

impl Discovery {
    /// Where a file with no known position starts (see `copy_start`), with its first bytes
    /// as read for that (`None` if they could not be read); `None` to decide at a later scan.
    pub(super) async fn new_file_start(
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
        let followed = self.shared.copies.followed_paths();
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

    /// Files with a checkpoint not opened yet: they may have been copied and truncated while
    /// the agent was stopped, so a new file like one of them waits for their tailers to tell.
    fn checkpointed_candidates(&self) -> impl Iterator<Item = CopyCandidate> + '_ {
        self.known.values().filter_map(|known| {
            let path = known.path.clone().unwrap_or_default();
            Some(CopyCandidate {
                head: Some(known.head?),
                lead: None,
                of: CopyOf::Followed {
                    path: Arc::from(path),
                },
            })
        })
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
        // Taken after reading the new file: an original truncated before its copy was read is
        // then known as truncated, or else still followed.
        let mut candidates = self.shared.copies.candidates();
        candidates.extend(now_holding);
        candidates.extend(self.checkpointed_candidates());
        let new = NewFile {
            first_bytes,
            size,
            undecided_for: self
                .deferred
                .get(&candidate.id)
                .map_or(Duration::ZERO, |since| since.elapsed()),
        };
        let rules = CopyRules {
            fingerprint_bytes: self.shared.settings.fingerprint_bytes,
            patience: self.shared.settings.poll_interval * 4 + Duration::from_secs(1),
        };
        let decided = copy_decision::decide(&new, candidates, &rules);
        if let Some(Comparison { compared, matched }) = decided.comparison {
            debug!(flow = %self.flow.name, file = %candidate.path.display(), first = %String::from_utf8_lossy(&first_bytes[..first_bytes.len().min(40)]), compared, matched, "Compared a new file's first bytes with files followed or truncated lately.");
        }
        match decided.decision {
            CopyDecision::NotACopy => Some(self.fresh_start()),
            CopyDecision::MaybeBeingWritten { like } => {
                self.deferred
                    .entry(candidate.id)
                    .or_insert_with(Instant::now);
                debug!(flow = %self.flow.name, file = %candidate.path.display(), size, like = %like.display(), "New file is too short to tell whether it is a copy being written; looking again soon.");
                None
            }
            CopyDecision::ContinuesTruncated {
                offset,
                head,
                original,
                of,
            } => {
                info!(flow = %self.flow.name, file = %candidate.path.display(), copy_of = %of.display(), offset, "File is the copy of a file truncated lately (copytruncate); reading it from where that file was read to.");
                Some(Start::At(KnownOffset {
                    offset,
                    head: Some(head),
                    path: None,
                    original,
                    cursor: None,
                }))
            }
            CopyDecision::StartsLikeFollowed { like } => {
                self.deferred
                    .entry(candidate.id)
                    .or_insert_with(Instant::now);
                debug!(flow = %self.flow.name, file = %candidate.path.display(), like = %like.display(), "New file starts like a followed file; waiting to see whether that one is truncated.");
                None
            }
            CopyDecision::OwnFile { like } => {
                info!(flow = %self.flow.name, file = %candidate.path.display(), like = %like.display(), "New file starts like a followed file, which was not truncated; reading it as a file of its own.");
                Some(Start::Beginning)
            }
        }
    }
}
