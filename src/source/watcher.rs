//! Watching with `notify`: file events in the directories a flow's patterns name wake its
//! tailers (any change) and its discovery (a file appearing, disappearing or renamed) early.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Watches the directories the patterns name. Any event wakes the tailers; a file appearing,
/// disappearing or being renamed also wakes discovery. A directory that does not exist yet
/// is watched once it does.
pub(super) struct Watch {
    flow: String,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    watching: bool,
}

impl Watch {
    pub(super) fn start(
        flow: &str,
        data_changed: watch::Sender<()>,
        dirs_changed: watch::Sender<()>,
    ) -> Self {
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
    pub(super) fn watch_missing(&mut self, patterns: &[String]) -> bool {
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
}
