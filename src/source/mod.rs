//! The source: finds the files a flow's globs match, follows each with its own tailer, and sends
//! their lines on. inotify (through `notify`) wakes tailers early; a periodic stat poll and a
//! periodic re-scan stay the authority, since events are missed on some filesystems.

mod framer;
mod identity;
mod tailer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{FlowConfig, InitialPosition};
use crate::metrics::FlowMetrics;
use crate::record::{Ack, FileId, Head, Lines};
use tailer::{blocking, Finished, Start};

pub use framer::{Framed, Framer};

/// An offset known for a file, with the head it had, so that another file that later gets the
/// same device and inode is not mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownOffset {
    pub offset: u64,
    pub head: Option<Head>,
}

/// What the tailers of one flow need.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub max_line_bytes: usize,
    pub poll_interval: Duration,
    /// How long a rotated or deleted file must stay idle at its end before it is released.
    pub release_after: Duration,
}

/// Shared by the discovery loop and every tailer of one flow.
pub struct FlowShared {
    pub flow: Arc<str>,
    pub settings: TailSettings,
    pub lines: mpsc::Sender<Lines>,
    pub acks: mpsc::Sender<Ack>,
    pub metrics: Arc<FlowMetrics>,
    pub cancel: CancellationToken,
}

/// Everything one flow's source needs to run.
pub struct Source {
    pub flow: Arc<FlowConfig>,
    /// Acknowledged offsets from the checkpoint store, for this flow's files.
    pub checkpoints: HashMap<FileId, KnownOffset>,
    pub lines: mpsc::Sender<Lines>,
    pub acks: mpsc::Sender<Ack>,
    pub metrics: Arc<FlowMetrics>,
    pub cancel: CancellationToken,
}

impl Source {
    /// Finds and follows files until `cancel` fires; returns once every tailer has stopped.
    pub async fn run(self) {
        let Source {
            flow,
            mut checkpoints,
            lines,
            acks,
            metrics,
            cancel,
        } = self;
        let shared = Arc::new(FlowShared {
            flow: Arc::from(flow.name.as_str()),
            settings: TailSettings {
                max_line_bytes: flow.max_line_bytes(),
                poll_interval: flow.poll_interval,
                release_after: flow.scan_interval.max(flow.poll_interval * 4),
            },
            lines,
            acks,
            metrics,
            cancel: cancel.clone(),
        });
        let (data_changed, data_watch) = watch::channel(());
        let (dirs_changed, mut dirs_watch) = watch::channel(());
        // The senders stay alive here too: without a watcher, `changed()` must wait, not fail.
        let _watch_senders = (data_changed.clone(), dirs_changed.clone());
        let _watcher = start_watcher(&flow.name, &flow.files, data_changed, dirs_changed);

        let mut tailers: JoinSet<Finished> = JoinSet::new();
        let mut active: HashSet<FileId> = HashSet::new();
        let mut resume: HashMap<FileId, KnownOffset> = HashMap::new();
        let mut unopenable: HashSet<PathBuf> = HashSet::new();
        let mut first_scan = true;
        loop {
            let patterns = flow.files.clone();
            let found = blocking(move || scan(&patterns)).await.unwrap_or_default();
            for (path, id) in found {
                if active.contains(&id) {
                    continue;
                }
                let start = match resume.get(&id).or_else(|| checkpoints.get(&id)).copied() {
                    Some(known) => Start::At(known),
                    None if first_scan && flow.initial_position == InitialPosition::EndOfFile => {
                        Start::End
                    }
                    None => Start::Beginning,
                };
                let opened = {
                    let path = path.clone();
                    blocking(move || open_checked(&path, id)).await
                };
                match opened.and_then(|result| result) {
                    Ok(Some(file)) => {
                        unopenable.remove(&path);
                        // Used now: from here on, the tailer reports where to resume.
                        resume.remove(&id);
                        checkpoints.remove(&id);
                        active.insert(id);
                        tailers.spawn(tailer::follow(
                            file,
                            path,
                            id,
                            start,
                            Arc::clone(&shared),
                            data_watch.clone(),
                        ));
                    }
                    Ok(None) => {} // Replaced between the scan and the open: the next scan sees the new file.
                    Err(error) => {
                        if unopenable.insert(path.clone()) {
                            warn!(flow = %flow.name, file = %path.display(), %error, "Cannot open file; will keep trying at every scan (logged once).");
                        }
                    }
                }
            }
            first_scan = false;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = dirs_watch.changed() => {}
                _ = tokio::time::sleep(flow.scan_interval) => {}
                Some(done) = tailers.join_next() => {
                    match done {
                        Ok(finished) => {
                            active.remove(&finished.id);
                            if let Some(known) = finished.resume_at {
                                resume.insert(finished.id, known);
                            }
                        }
                        Err(error) => warn!(flow = %flow.name, %error, "A file tailer failed."),
                    }
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
        while let Some(done) = tailers.join_next().await {
            if let Err(error) = done {
                warn!(flow = %flow.name, %error, "A file tailer failed.");
            }
        }
        debug!(flow = %flow.name, "Source stopped.");
    }
}

/// Every regular file matching one of `patterns`, once each.
fn scan(patterns: &[String]) -> Vec<(PathBuf, FileId)> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for pattern in patterns {
        let Ok(paths) = glob::glob(pattern) else {
            continue; // Validated with the config.
        };
        for path in paths.flatten() {
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let id = identity::file_id(&metadata);
            if seen.insert(id) {
                found.push((path, id));
            }
        }
    }
    found
}

/// Opens `path` if it is still the file `id`.
fn open_checked(path: &Path, id: FileId) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::File::open(path)?;
    let opened = identity::file_id(&file.metadata()?);
    Ok((opened == id).then_some(file))
}

/// Watches the directories the patterns name. Any event wakes the tailers; a file appearing,
/// disappearing or being renamed also wakes discovery.
fn start_watcher(
    flow: &str,
    patterns: &[String],
    data_changed: watch::Sender<()>,
    dirs_changed: watch::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
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
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            warn!(flow, %error, "File events are unavailable; following files by polling alone.");
            return None;
        }
    };
    for pattern in patterns {
        let (directory, mode) = watch_root(pattern);
        match watcher.watch(&directory, mode) {
            Ok(()) => debug!(flow, directory = %directory.display(), "Watching directory."),
            Err(error) => {
                info!(flow, directory = %directory.display(), %error, "Cannot watch directory yet; polling it.")
            }
        }
    }
    Some(watcher)
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
        let found = scan(&[format!("{base}/*.log"), format!("{base}/a.*")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, dir.path().join("a.log"));
    }
}
