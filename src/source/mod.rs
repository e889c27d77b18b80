//! The source: finds the files a flow's globs match, follows each with its own tailer, and sends
//! their lines on. inotify (through `notify`) wakes tailers early; a periodic stat poll and a
//! periodic re-scan stay the authority, since events are missed on some filesystems.
//!
//! This module wires one flow's source together; the jobs live beside it: `discovery` (the
//! scans), `copies` and `copy_decision` (copytruncate), `catch_up` (files rotated while the
//! agent was stopped), `watcher` (file events) and `tailer` (one file). A flow that reads an
//! `.evtx` file or a live Event Log channel instead runs `event_log`.

mod assembler;
mod catch_up;
mod copies;
mod copy_decision;
mod discovery;
mod event_log;
mod framer;
mod identity;
mod journald;
mod outlet;
mod shipped;
mod tailer;
mod watcher;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::{EventLogSource, FlowConfig};
use crate::limits::{MemoryBudget, OpenFiles};
use crate::metrics::FlowMetrics;
use crate::record::{Ack, CopyFrom, FileId, Head, Lines, Original};
use assembler::AssembleOptions;
use copies::Copies;
use discovery::Discovery;
use framer::FrameOptions;
use outlet::Outlet;
use tailer::Finished;
use watcher::Watch;

/// An offset known for a file, with the head it had, so that another file that later gets the
/// same device and inode is not mistaken for it, and the path it was last seen at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownOffset {
    pub offset: u64,
    pub head: Option<Head>,
    pub path: Option<PathBuf>,
    /// Set for a copy of a file truncated while this process read it.
    pub original: Option<Original>,
    /// Where a `journald` flow resumes: the cursor of the last entry delivered.
    pub cursor: Option<String>,
}

/// What the tailers of one flow need.
#[derive(Debug, Clone)]
struct TailSettings {
    frame: FrameOptions,
    assemble: AssembleOptions,
    poll_interval: Duration,
    /// How long a rotated or deleted file must stay idle at its end before it is released.
    release_after: Duration,
    partial_line_timeout: Duration,
    multiline_flush_timeout: Duration,
    /// How long a file stays idle before it gives its descriptor to a file waiting for one.
    park_after: Duration,
    fingerprint_bytes: usize,
}

impl TailSettings {
    fn for_flow(flow: &FlowConfig) -> Self {
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

/// Shared by the discovery loop and every tailer of one flow.
struct FlowShared {
    flow: Arc<str>,
    settings: TailSettings,
    lines: mpsc::Sender<Lines>,
    acks: mpsc::Sender<Ack>,
    metrics: Arc<FlowMetrics>,
    cancel: CancellationToken,
    /// Shared by every flow: tailers wait for room in it before handing records on.
    budget: Arc<MemoryBudget>,
    open_files: Arc<OpenFiles>,
    /// What the flow's files start with and how far they were read, to recognise copies by.
    copies: Copies,
    /// Whether file events are being delivered for at least one watched directory.
    events: AtomicBool,
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
        if flow.journald.is_some() || flow.event_log.is_some() {
            let outlet = Outlet {
                flow: Arc::clone(&flow),
                lines,
                acks,
                metrics,
                budget,
                cancel,
            };
            if let Some(journal) = &flow.journald {
                let journald = journald::Journald {
                    journal: journal.clone(),
                    checkpoints,
                    outlet,
                };
                journald.run().await;
            } else if let Some(EventLogSource::File(path)) = &flow.event_log {
                let file = event_log::EventLogFile {
                    path: path.clone(),
                    checkpoints,
                    outlet,
                };
                file.run().await;
            } else if let Some(EventLogSource::Channel { channel, query }) = &flow.event_log {
                let live = event_log::EventLogChannel {
                    channel: channel.clone(),
                    query: query.clone(),
                    checkpoints,
                    outlet,
                };
                live.run().await;
            }
            return;
        }
        let shared = Arc::new(FlowShared {
            flow: Arc::from(flow.name.as_str()),
            settings: TailSettings::for_flow(&flow),
            lines,
            acks,
            metrics,
            cancel: cancel.clone(),
            budget,
            open_files,
            copies: Copies::with_truncations(truncated),
            events: AtomicBool::new(false),
        });
        let (data_changed, data_watch) = watch::channel(());
        let (dirs_changed, mut dirs_watch) = watch::channel(());
        // The senders stay alive here too: without a watcher, `changed()` must wait, not fail.
        let _watch_senders = (data_changed.clone(), dirs_changed.clone());
        let mut watcher = Watch::start(&flow.name, data_changed, dirs_changed);
        let mut discovery = Discovery::new(
            Arc::clone(&flow),
            Arc::clone(&shared),
            checkpoints,
            checkpoint_expiry,
        );
        let mut tailers: JoinSet<Finished> = JoinSet::new();
        loop {
            if watcher.watch_missing(&flow.files) {
                shared.events.store(true, Ordering::Relaxed);
            }
            discovery.scan(&mut tailers, &data_watch).await;
            let waiting_for_files = discovery.waiting_for_files();
            let catching_up = discovery.catch_up().is_catching_up();
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = dirs_watch.changed() => {}
                _ = tokio::time::sleep(flow.scan_interval) => {}
                // Files whose start is undecided are looked at again soon.
                _ = tokio::time::sleep(flow.poll_interval), if discovery.has_undecided() => {}
                _ = shared.open_files.freed.notified(), if waiting_for_files => {}
                _ = discovery.catch_up().caught_up(), if catching_up => {}
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
