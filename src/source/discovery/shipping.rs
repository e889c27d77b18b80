//! The scan's part in `shipped_files`: which files found may be done with, how far the
//! checkpoint store has them acknowledged, and the action on those that are.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{Candidate, Discovery};
use crate::config::ShippedFiles;
use crate::metrics::FlowMetrics;
use crate::record::{Ack, Acknowledged};
use crate::source::shipped::{self, Facts, Match, Outcome, Verdict};
use crate::source::tailer::blocking;

impl Discovery {
    /// Deletes or moves the files found that are done with (see `shipped::decide`); returns
    /// the others.
    pub(super) async fn ship_done_files(&mut self, found: Vec<Candidate>) -> Vec<Candidate> {
        // A dry run sends nothing: it never deletes or moves a file either.
        if self.flow.shipped_files == ShippedFiles::Keep || self.flow.dry_run {
            return found;
        }
        let present: HashSet<_> = found.iter().map(|candidate| candidate.id).collect();
        self.first_paths.retain(|id, _| present.contains(id));
        self.ship_failing.retain(|id| present.contains(id));
        let mut renamed = Vec::with_capacity(found.len());
        for candidate in &found {
            let first = self
                .first_paths
                .entry(candidate.id)
                .or_insert_with(|| candidate.path.clone());
            renamed.push(*first != candidate.path);
        }
        if self.shared.cancel.is_cancelled() {
            return found;
        }
        let matches: Vec<_> = found
            .iter()
            .zip(&renamed)
            .map(|(candidate, renamed)| Match {
                path: &candidate.path,
                modified: candidate.modified,
                renamed: *renamed,
            })
            .collect();
        let newest = shipped::newest_of_globs(&self.flow.files, &matches);
        // Only files that would be done with if fully acknowledged are asked about.
        let asking: Vec<(usize, Facts)> = found
            .iter()
            .enumerate()
            .map(|(index, candidate)| {
                let facts = Facts {
                    acknowledged: Some(candidate.size),
                    size: candidate.size,
                    newest: newest[index],
                    renamed: renamed[index],
                    idle: candidate
                        .modified
                        .and_then(|modified| modified.elapsed().ok()),
                };
                (index, facts)
            })
            .filter(|(_, facts)| {
                shipped::decide(*facts, self.flow.shipped_files_idle) == Verdict::Act
            })
            .collect();
        if asking.is_empty() {
            return found;
        }
        let ids = asking.iter().map(|(index, _)| found[*index].id).collect();
        let Some(answers) = self.ask_acknowledged(ids).await else {
            return found;
        };
        let mut done = HashSet::new();
        for ((index, facts), acknowledged) in asking.into_iter().zip(answers) {
            let candidate = &found[index];
            let facts = Facts {
                acknowledged: acknowledged.map(|acknowledged| acknowledged.offset),
                ..facts
            };
            let verdict = shipped::decide(facts, self.flow.shipped_files_idle);
            let Some(acknowledged) = acknowledged.filter(|_| verdict == Verdict::Act) else {
                debug!(flow = %self.flow.name, path = %candidate.path.display(), ?verdict, acknowledged = ?facts.acknowledged, size = candidate.size, "Not done with this file yet.");
                continue;
            };
            if self.ship(candidate, acknowledged).await {
                done.insert(candidate.id);
            }
        }
        found
            .into_iter()
            .filter(|candidate| !done.contains(&candidate.id))
            .collect()
    }

    /// How far the checkpoint store has each of `ids` acknowledged, one answer per id; `None`
    /// if it has stopped or shutdown began.
    async fn ask_acknowledged(
        &self,
        ids: Vec<crate::record::FileId>,
    ) -> Option<Vec<Option<Acknowledged>>> {
        let (reply, answer) = oneshot::channel();
        let ask = Ack::AskAcknowledged {
            flow: Arc::clone(&self.shared.flow),
            ids,
            reply,
        };
        tokio::select! {
            _ = self.shared.cancel.cancelled() => None,
            answers = async {
                self.shared.acks.send(ask).await.ok()?;
                answer.await.ok()
            } => answers,
        }
    }

    /// Deletes or moves a file done with, then drops its checkpoint; true if it is gone.
    async fn ship(&mut self, candidate: &Candidate, acknowledged: Acknowledged) -> bool {
        let action = self.flow.shipped_files.clone();
        let path = candidate.path.clone();
        let (id, size) = (candidate.id, candidate.size);
        let acted = blocking(move || shipped::act(&action, &path, id, size, acknowledged.head))
            .await
            .map_err(shipped::ShipError::Task)
            .and_then(|result| result);
        let flow = &self.flow.name;
        let path = candidate.path.display();
        let action = self.flow.shipped_files.action().unwrap_or("keep");
        match acted {
            Ok(Outcome::Deleted) => {
                info!(flow = %flow, path = %path, action, size, "Deleted a file done with: every line of it is acknowledged.");
                FlowMetrics::add(&self.shared.metrics.files_deleted, 1);
            }
            Ok(Outcome::Moved(to)) => {
                info!(flow = %flow, path = %path, action, destination = %to.display(), size, "Moved a file done with: every line of it is acknowledged.");
                FlowMetrics::add(&self.shared.metrics.files_moved, 1);
            }
            Ok(Outcome::Changed) => {
                debug!(flow = %flow, path = %path, "The file changed since it was acknowledged; looking at it again at the next scan.");
                return false;
            }
            Err(error) => {
                if self.ship_failing.insert(candidate.id) {
                    warn!(flow = %flow, path = %path, action, %error, "Cannot act on a file done with; will retry at every scan (logged once).");
                } else {
                    debug!(flow = %flow, path = %path, action, %error, "Cannot act on a file done with; will retry.");
                }
                return false;
            }
        }
        self.ship_failing.remove(&candidate.id);
        self.first_paths.remove(&candidate.id);
        self.known.remove(&candidate.id);
        self.known_found.remove(&candidate.id);
        let shipped = Ack::Shipped {
            flow: Arc::clone(&self.shared.flow),
            id: candidate.id,
        };
        let _ = self.shared.acks.send(shipped).await;
        true
    }
}
