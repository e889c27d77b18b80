//! Reloading the config while running: what asks for it (SIGHUP, or a change to the file when
//! `watch_config` is on), and what a new config changes: flows added, removed or changed, and
//! top-level settings that only a restart applies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, FlowConfig};

/// Reads the config file again, with the command line's overrides applied.
pub type LoadConfig = Box<dyn Fn(&Path) -> Result<Config, ConfigError> + Send + Sync>;

/// What a running agent needs to reload its config.
pub struct Reloading {
    /// Each message asks for the config file to be read again.
    pub requests: mpsc::Receiver<()>,
    /// Sends into `requests` (a signal handler, the config file watcher).
    pub trigger: mpsc::Sender<()>,
    pub load: LoadConfig,
}

impl Reloading {
    /// Reloads read the file with [`Config::load`], then apply `adjust` (the command line's
    /// overrides).
    pub fn new(adjust: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        let (trigger, requests) = mpsc::channel(1);
        Self {
            requests,
            trigger,
            load: Box::new(move |path| {
                let mut config = Config::load(path)?;
                adjust(&mut config);
                Ok(config)
            }),
        }
    }
}

/// How a new config's flows differ from the running ones, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FlowChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl FlowChanges {
    /// Compares the running flows (as configured, before anything learnt at start-up) with
    /// the new config's.
    pub fn between<'a>(
        running: impl IntoIterator<Item = &'a FlowConfig>,
        new: &[FlowConfig],
    ) -> Self {
        let mut changes = Self::default();
        let running: Vec<&FlowConfig> = running.into_iter().collect();
        for flow in &running {
            match new.iter().find(|candidate| candidate.name == flow.name) {
                None => changes.removed.push(flow.name.clone()),
                Some(candidate) if candidate != *flow => changes.changed.push(flow.name.clone()),
                Some(_) => changes.unchanged.push(flow.name.clone()),
            }
        }
        for flow in new {
            if !running.iter().any(|old| old.name == flow.name) {
                changes.added.push(flow.name.clone());
            }
        }
        changes
    }

    /// Whether any flow starts or stops.
    pub fn any(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty())
    }
}

/// The top-level keys whose new values differ but apply only at the next start.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut compare = |key: &'static str, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    compare("state_dir", running.state_dir != new.state_dir);
    compare(
        "shutdown_grace",
        running.shutdown_grace != new.shutdown_grace,
    );
    compare(
        "checkpoint_interval",
        running.checkpoint_interval != new.checkpoint_interval,
    );
    compare(
        "checkpoint_commit",
        running.checkpoint_commit != new.checkpoint_commit,
    );
    compare(
        "progress_interval",
        running.progress_interval != new.progress_interval,
    );
    compare(
        "progress_format",
        running.progress_format != new.progress_format,
    );
    compare(
        "behind_warning_bytes",
        running.behind_warning_bytes != new.behind_warning_bytes,
    );
    compare(
        "checkpoint_expiry",
        running.checkpoint_expiry != new.checkpoint_expiry,
    );
    compare(
        "max_open_files",
        running.max_open_files != new.max_open_files,
    );
    compare("memory_budget", running.memory_budget != new.memory_budget);
    compare(
        "dry_run_output",
        running.dry_run_output != new.dry_run_output,
    );
    compare("metrics", running.metrics != new.metrics);
    compare("log_level", running.log_level != new.log_level);
    compare("log_format", running.log_format != new.log_format);
    compare("watch_config", running.watch_config != new.watch_config);
    keys
}

/// How long the file must stay quiet after a change before it is read: an editor's save is
/// often several writes and a rename.
const SETTLE: Duration = Duration::from_millis(300);

/// Asks for a reload each time the config file's content changes, until `stop` fires. The
/// file's directory is watched, so a file replaced by a rename (as editors and configuration
/// tools save) is seen too.
pub async fn watch_file(path: PathBuf, requests: mpsc::Sender<()>, stop: CancellationToken) {
    let (events, mut changed) = mpsc::channel::<()>(1);
    let name = path.file_name().map(ToOwned::to_owned);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event
            .paths
            .iter()
            .any(|changed| changed.file_name() == name.as_deref())
        {
            let _ = events.try_send(());
        }
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(failure) => {
            warn!(path = %path.display(), %failure, "Cannot watch the config file (watch_config); reload with SIGHUP instead.");
            return;
        }
    };
    if let Err(failure) = watcher.watch(&directory, RecursiveMode::NonRecursive) {
        warn!(path = %path.display(), %failure, "Cannot watch the config file (watch_config); reload with SIGHUP instead.");
        return;
    }
    let mut last = read(&path).await;
    // Logged once a change would be seen: the watch is set and the content to compare with read.
    info!(path = %path.display(), "Watching the config file; a change reloads it.");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            event = changed.recv() => if event.is_none() { return },
        }
        // Let the writes settle; events meanwhile belong to the same change.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => break,
                _ = changed.recv() => {}
            }
        }
        let now = read(&path).await;
        if now.is_some() && now != last {
            last = now;
            if requests.send(()).await.is_err() {
                return;
            }
        }
    }
}

async fn read(path: &Path) -> Option<Vec<u8>> {
    tokio::fs::read(path).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "state_dir: /var/lib/kinship\nflows:\n";

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/kinship.yaml"), text).expect("valid config")
    }

    fn flow(name: &str, stream: &str) -> String {
        format!("  - name: {name}\n    files: [/logs/{name}.log]\n    kinesis_stream: {stream}\n")
    }

    #[test]
    fn flows_are_matched_by_name() {
        let running = config(&format!(
            "{BASE}{}{}{}",
            flow("kept", "a"),
            flow("edited", "a"),
            flow("dropped", "a")
        ));
        let new = config(&format!(
            "{BASE}{}{}{}",
            flow("edited", "b"),
            flow("kept", "a"),
            flow("new", "a")
        ));
        let changes = FlowChanges::between(&running.flows, &new.flows);
        assert_eq!(
            changes,
            FlowChanges {
                added: vec!["new".into()],
                removed: vec!["dropped".into()],
                changed: vec!["edited".into()],
                unchanged: vec!["kept".into()],
            }
        );
        assert!(changes.any());
        assert!(!FlowChanges::between(&running.flows, &running.flows).any());
    }

    #[test]
    fn top_level_changes_are_named() {
        let running = config(&format!("{BASE}{}", flow("app", "a")));
        let new = config(&format!(
            "state_dir: /elsewhere\ncheckpoint_commit: interval\nmemory_budget: 10000000\nlog_level: debug\nflows:\n{}",
            flow("app", "a")
        ));
        assert_eq!(
            needs_restart(&running, &new),
            vec![
                "state_dir",
                "checkpoint_commit",
                "memory_budget",
                "log_level"
            ]
        );
        assert!(needs_restart(&running, &running).is_empty());
    }

    #[tokio::test]
    async fn a_changed_file_asks_for_one_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kinship.yaml");
        std::fs::write(&path, "one").expect("write");
        let (requests, mut received) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(watch_file(path.clone(), requests, stop.clone()));
        // Replace the file as an editor does, until the watcher (which may start watching
        // after the first replacement) reports it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut round = 0;
        loop {
            round += 1;
            let temporary = dir.path().join(".kinship.yaml.tmp");
            std::fs::write(&temporary, format!("two {round}")).expect("write");
            std::fs::rename(&temporary, &path).expect("rename");
            match tokio::time::timeout(Duration::from_secs(2), received.recv()).await {
                Ok(Some(())) => break,
                Ok(None) => panic!("the watcher stopped"),
                Err(_) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "no reload asked for"
                ),
            }
        }
        stop.cancel();
        watcher.await.expect("watcher task");
    }
}
