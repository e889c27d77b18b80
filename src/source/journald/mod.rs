//! The systemd journal as a source: `journald:` runs `journalctl --follow --output=export`
//! and ships each entry as a JSON object record (see `reader`, `export` and `entry`). Running
//! journalctl keeps the binary free of libsystemd, and the journal's own reader handles its
//! file formats, rotation and access rights. The export format, rather than journalctl's JSON,
//! costs journalctl a third of the CPU (it escapes nothing) and gives binary values as bytes.
//!
//! An entry's position is its count since the flow first read the journal: entry `n` spans
//! the positions `n..n+1`, in the place of byte offsets, so batching, acknowledgements and the
//! checkpoint store work as for files (and the flow's `bytes_*` counters count entries). The
//! position alone cannot find an entry again, so before each block of entries is handed on
//! the source tells the checkpoint store the cursor of the block's last entry
//! ([`Ack::Marked`]); the store keeps the cursor once the block and everything before it is
//! delivered, and a restart follows the journal after that cursor.
//!
//! journalctl is read only as fast as the pipeline takes records: while the memory budget or
//! the channel is full, its output waits in the pipe and journalctl waits with it. If it stops,
//! it is started again after the last entry handed on, after a pause that grows while it keeps
//! failing.

mod command;
mod entry;
mod export;
mod reader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::outlet::{named_id, Outlet};
use super::KnownOffset;
use crate::config::{InitialPosition, JournaldSource};
use crate::limits::Reservation;
use crate::record::{Ack, FileId, SourceFile};
use export::ExportError;
use reader::{Block, ReadSettings};

/// Blocks of entries read ahead of the pipeline.
const READ_AHEAD_BLOCKS: usize = 2;
/// The first pause before journalctl is started again; it doubles while starts keep failing.
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(60);
/// Lines journalctl writes to its standard error that are logged per run; the rest are not.
const STDERR_LINES_LOGGED: usize = 20;

/// What one journald flow needs.
pub(super) struct Journald {
    pub journal: JournaldSource,
    pub checkpoints: HashMap<FileId, KnownOffset>,
    pub outlet: Outlet,
}

/// Why following the journal stopped.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("the journalctl program `{program}` was not found; install systemd's journalctl or set journald.journalctl")]
    NotFound { program: String },
    #[error("journalctl could not be started: {0}")]
    Start(std::io::Error),
    #[error("{0}")]
    Read(ExportError),
    #[error("journalctl ended ({status}){}", last_words(.stderr))]
    Ended {
        status: String,
        stderr: Option<String>,
    },
    #[error("shutting down")]
    ShuttingDown,
}

fn last_words(stderr: &Option<String>) -> String {
    stderr
        .as_deref()
        .map(|line| format!(": {line}"))
        .unwrap_or_default()
}

/// Where the flow stands: the position of the next entry, and the cursor of the last one
/// handed on (where journalctl resumes).
struct Place {
    position: u64,
    after: Option<String>,
}

impl Journald {
    /// Follows the journal until `cancel` fires.
    pub(super) async fn run(self) {
        let file = self.identity();
        if !self.outlet.seen(&file).await {
            return;
        }
        let known = self.checkpoints.get(&file.id);
        let place = Place {
            position: known.map_or(0, |known| known.offset),
            after: known.and_then(|known| known.cursor.clone()),
        };
        // With `end_of_file` and no checkpoint, the journal's last entry is where reading
        // starts; until journalctl has named it, nothing is read.
        let tail_pending =
            known.is_none() && self.outlet.flow.initial_position == InitialPosition::EndOfFile;
        if !self.outlet.announce(&file, place.position).await {
            return;
        }
        // The checkpoint is kept alive whatever the flow waits for (journalctl, the budget).
        tokio::select! {
            _ = self.outlet.keep_alive(&file) => {}
            _ = self.keep_following(&file, place, tail_pending) => {}
        }
    }

    /// Follows the journal from `place`, starting journalctl again whenever it stops, until
    /// shutdown.
    async fn keep_following(
        &self,
        file: &Arc<SourceFile>,
        mut place: Place,
        mut tail_pending: bool,
    ) {
        let flow = self.outlet.flow.name.as_str();
        let mut pause = FIRST_RESTART_PAUSE;
        loop {
            let before = place.position;
            let stopped = match self.find_tail(file, &mut place, &mut tail_pending).await {
                Ok(()) => {
                    info!(flow, journal = %file.path.display(), position = place.position, after_cursor = place.after.as_deref().unwrap_or(""), "Following the journal.");
                    self.follow(file, &mut place).await
                }
                Err(stopped) => stopped,
            };
            if matches!(stopped, Stopped::ShuttingDown) || self.outlet.cancel.is_cancelled() {
                return;
            }
            if place.position > before {
                pause = FIRST_RESTART_PAUSE;
            }
            error!(flow, journal = %file.path.display(), error = %stopped, retry_in = ?pause, "Following the journal stopped; journalctl is started again after the last entry read.");
            tokio::select! {
                _ = self.outlet.cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RESTART_PAUSE);
        }
    }

    /// For `initial_position: end_of_file` without a checkpoint (`tail_pending`): asks
    /// journalctl for the journal's last entry, reading starts after it, and its cursor is
    /// saved at once, so that a restart before any new entry still starts there. An empty
    /// journal is read from its start.
    async fn find_tail(
        &self,
        file: &Arc<SourceFile>,
        place: &mut Place,
        tail_pending: &mut bool,
    ) -> Result<(), Stopped> {
        if !*tail_pending {
            return Ok(());
        }
        if let Some(last) = self.last_cursor().await? {
            if !self.mark(file, place.position, &last).await {
                return Err(Stopped::ShuttingDown);
            }
            place.after = Some(last);
        }
        *tail_pending = false;
        Ok(())
    }

    /// The journal as a source of records: an identity made from the journal read.
    fn identity(&self) -> Arc<SourceFile> {
        let path = match &self.journal.directory {
            Some(directory) => directory.clone(),
            None => PathBuf::from("system journal"),
        };
        let id = named_id(&path.to_string_lossy());
        self.outlet.source(id, path)
    }

    /// Tells the checkpoint store the entry ending at `end` is `cursor`; false if shutting down.
    async fn mark(&self, file: &Arc<SourceFile>, end: u64, cursor: &str) -> bool {
        let marked = Ack::Marked {
            file: Arc::clone(file),
            end,
            cursor: cursor.into(),
        };
        self.outlet.acks.send(marked).await.is_ok()
    }

    fn command(&self, args: Vec<std::ffi::OsString>) -> Command {
        let mut command = Command::new(&self.journal.journalctl);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn spawn(&self, args: Vec<std::ffi::OsString>) -> Result<Child, Stopped> {
        self.command(args).spawn().map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Stopped::NotFound {
                    program: self.journal.journalctl.display().to_string(),
                }
            } else {
                Stopped::Start(error)
            }
        })
    }

    /// The cursor of the journal's last entry now; `None` for an empty journal.
    async fn last_cursor(&self) -> Result<Option<String>, Stopped> {
        let child = self.spawn(command::last_entry(&self.journal))?;
        let output = tokio::select! {
            _ = self.outlet.cancel.cancelled() => return Err(Stopped::ShuttingDown),
            output = child.wait_with_output() => output.map_err(|error| Stopped::Read(error.into()))?,
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines().filter(|line| !line.trim().is_empty()) {
            report(&self.outlet.flow.name, line);
        }
        if !output.status.success() {
            return Err(Stopped::Ended {
                status: output.status.to_string(),
                stderr: last_line(&output.stderr),
            });
        }
        Ok(cursor_in(&output.stdout))
    }

    /// Runs journalctl from `place` and hands its entries on until it stops or shutdown
    /// begins; `place` follows what was handed on.
    async fn follow(&self, file: &Arc<SourceFile>, place: &mut Place) -> Stopped {
        let mut child = match self.spawn(command::follow(&self.journal, place.after.as_deref())) {
            Ok(child) => child,
            Err(stopped) => return stopped,
        };
        let stderr = child.stderr.take().map(|stderr| self.relay(stderr));
        let Some(stdout) = child.stdout.take() else {
            return Stopped::Start(std::io::Error::other("no output pipe"));
        };
        let (sender, mut blocks) = mpsc::channel(READ_AHEAD_BLOCKS);
        let settings = ReadSettings {
            flow: Arc::clone(&file.flow),
            max_record_bytes: self.outlet.flow.max_line_bytes(),
            metrics: Arc::clone(&self.outlet.metrics),
            resumed_at: place.after.clone(),
        };
        let reading = tokio::spawn(reader::read(stdout, place.position, settings, sender));
        loop {
            let block = tokio::select! {
                _ = self.outlet.cancel.cancelled() => return Stopped::ShuttingDown,
                block = blocks.recv() => block,
            };
            let Some(block) = block else {
                break;
            };
            if !self.hand_on(file, block, place).await {
                return Stopped::ShuttingDown;
            }
        }
        match reading.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Stopped::Read(error),
            Err(joined) => return Stopped::Read(ExportError::Io(std::io::Error::other(joined))),
        }
        let status = tokio::select! {
            _ = self.outlet.cancel.cancelled() => return Stopped::ShuttingDown,
            status = child.wait() => status,
        };
        let stderr = match stderr {
            Some(relay) => relay.await.ok().flatten(),
            None => None,
        };
        Stopped::Ended {
            status: status
                .as_ref()
                .map_or_else(ToString::to_string, ExitStatus::to_string),
            stderr,
        }
    }

    /// Logs what journalctl writes to its standard error (as warnings naming the flow); the
    /// task returns the last line.
    fn relay(&self, stderr: ChildStderr) -> JoinHandle<Option<String>> {
        let flow = self.outlet.flow.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut last = None;
            let mut logged = 0usize;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                if logged < STDERR_LINES_LOGGED {
                    report(&flow, &line);
                } else if logged == STDERR_LINES_LOGGED {
                    warn!(flow, "journalctl reports more; further lines are not logged until it is started again.");
                }
                logged += 1;
                last = Some(line);
            }
            last
        })
    }

    /// Hands a block on: first its last cursor to the checkpoint store, then its records once
    /// the memory budget has room. False if shutting down.
    async fn hand_on(&self, file: &Arc<SourceFile>, block: Block, place: &mut Place) -> bool {
        let Some(cursor) = block.last_cursor.clone() else {
            return true;
        };
        if !self.mark(file, block.position, &cursor).await {
            return false;
        }
        let position = block.position;
        let lines = block.into_lines(file, Reservation::none());
        if !self.outlet.send(lines).await {
            return false;
        }
        place.position = position;
        place.after = Some(cursor);
        true
    }
}

/// Logs a line journalctl wrote to its standard error.
fn report(flow: &str, line: &str) {
    warn!(flow, journalctl = %line, "journalctl reports a problem.");
}

/// The cursor of the entry `export` holds (in the export format), if any.
fn cursor_in(export: &[u8]) -> Option<String> {
    export
        .split(|byte| *byte == b'\n')
        .find_map(|line| line.strip_prefix(b"__CURSOR="))
        .and_then(|cursor| std::str::from_utf8(cursor).ok())
        .map(str::to_owned)
}

/// The last non-empty line of `bytes`, as text.
fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(str::to_owned)
}
