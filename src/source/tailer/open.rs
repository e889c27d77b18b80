//! Opening a file for its tailer: where reading starts (a checkpoint still valid, the
//! beginning, or after the last complete line), the file's identity (its head and lead), and
//! what the checkpoint store is told of it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::{blocking, new_source, Finished, Opened, Start, Tailer, Unread, LOG_EVERY};
use crate::log_limit::LogLimiter;
use crate::record::{Ack, CopyFrom, FileId, Head, Original};
use crate::source::assembler::Assembler;
use crate::source::copies::FirstBytes;
use crate::source::framer::Framer;
use crate::source::identity::{self, Lead};
use crate::source::{FlowShared, KnownOffset};

/// How far back `end_of_file` looks for the end of the last complete line.
const END_OF_FILE_WINDOW: u64 = 64 * 1024;

/// What opening a file found.
struct Opening {
    offset: u64,
    size: u64,
    head: Option<Head>,
    lead: Lead,
    /// The known offset belonged to another file that had the same device and inode.
    replaced: bool,
}

impl Tailer {
    /// Finds where reading starts and tells the checkpoint store; returns the tailer and the
    /// file's size, or how it finished if the file cannot be read or shutdown began.
    pub(super) async fn open(
        opened: Opened,
        shared: Arc<FlowShared>,
    ) -> Result<(Tailer, u64), Finished> {
        let Opened {
            file,
            path,
            id,
            start,
            replaced: replaced_known,
            permit,
            catch_up,
        } = opened;
        let file = Arc::new(file);
        let opening = {
            let file = Arc::clone(&file);
            let start = start.clone();
            let fingerprint_bytes = shared.settings.fingerprint_bytes;
            blocking(move || read_opening(&file, &start, fingerprint_bytes))
        };
        let opening = match opening.await.and_then(|result| result) {
            Ok(found) => found,
            Err(error) => {
                warn!(file = %path.display(), %error, "Cannot read file; will try again at the next scan.");
                return Err(unreadable(id, start));
            }
        };
        report_checkpoint_lost(&start, &opening, &path);
        let truncated_before =
            note_earlier_file(&shared, &start, &opening, replaced_known, id, &path);
        let original = copy_of(&start, &opening);
        let Opening {
            offset,
            size,
            head,
            lead,
            replaced,
        } = opening;
        if start == Start::Beginning || start == Start::End || replaced {
            info!(file = %path.display(), offset, size, "Following file.");
        } else {
            tracing::debug!(file = %path.display(), offset, size, "Following file.");
        }

        let settings = &shared.settings;
        let assembler = settings
            .assemble
            .is_needed()
            .then(|| Assembler::new(settings.assemble.clone(), offset));
        let unread = Unread::new(&shared.metrics, &path, offset);
        let mut tailer = Tailer {
            source: new_source(&shared, id, head, &path),
            lead,
            file,
            path,
            framer: Framer::new(settings.frame.clone(), offset),
            assembler,
            unread,
            oversize_log: LogLimiter::new(LOG_EVERY),
            footer_logged: false,
            idle_polls: 0,
            trouble_log: LogLimiter::new(LOG_EVERY),
            catch_up,
            shared: Arc::clone(&shared),
            _permit: permit,
        };
        shared
            .copies
            .note_reached(id, FirstBytes::read(head, lead), offset, &tailer.path);
        if !tailer.announce(offset, truncated_before, original).await {
            return Err(tailer.finish(false));
        }
        tailer.unread.set_size(size);
        Ok((tailer, size))
    }

    /// Tells the checkpoint store where reading starts (and, for a file found truncated, what
    /// it was before, so a copy of it can continue even after a restart); false if shutting
    /// down.
    async fn announce(
        &self,
        offset: u64,
        truncated_before: Option<CopyFrom>,
        original: Option<Original>,
    ) -> bool {
        let ack = match truncated_before {
            Some(before) => Ack::Restarted {
                file: Arc::clone(&self.source),
                offset,
                before: Some(before),
            },
            None => Ack::Opened {
                file: Arc::clone(&self.source),
                offset,
                original,
            },
        };
        self.shared.acks.send(ack).await.is_ok()
    }
}

/// How a tailer whose file could not be read finishes: its known offset, if it had one, is
/// kept for the next scan.
fn unreadable(id: FileId, start: Start) -> Finished {
    let resume_at = match start {
        Start::At(known) => Some(known),
        Start::Beginning | Start::End => None,
    };
    Finished {
        id,
        resume_at,
        parked: false,
    }
}

/// A copy of a file truncated while this process read it: reading starts where that file was
/// read to, and the checkpoint store is told which reading it continues.
fn copy_of(start: &Start, opening: &Opening) -> Option<Original> {
    match start {
        Start::At(known) if !opening.replaced && known.offset <= opening.size => known.original,
        _ => None,
    }
}

/// Where reading `file` starts from `start`, and what the file starts with (blocking).
fn read_opening(file: &File, start: &Start, fingerprint_bytes: usize) -> std::io::Result<Opening> {
    let size = file.metadata()?.len();
    let mut replaced = false;
    let offset = match start {
        Start::At(known) => {
            let same_file = match known.head {
                Some(head) => identity::starts_with(file, head)?,
                None => true,
            };
            replaced = !same_file;
            if same_file && known.offset <= size {
                known.offset
            } else {
                0
            }
        }
        Start::Beginning => 0,
        Start::End => identity::after_last_newline(file, size, END_OF_FILE_WINDOW)?,
    };
    let (head, lead) = identity::head_and_lead(file, size, fingerprint_bytes)?;
    Ok(Opening {
        offset,
        size,
        head,
        lead,
        replaced,
    })
}

/// Says why a known offset is not where reading starts, if it is not.
fn report_checkpoint_lost(start: &Start, opening: &Opening, path: &Path) {
    let Start::At(known) = start else {
        return;
    };
    if opening.replaced {
        warn!(file = %path.display(), checkpoint = known.offset, "Another file now has this file's device and inode (its first bytes differ); reading it from the start.");
    } else if known.offset > opening.size {
        warn!(file = %path.display(), checkpoint = known.offset, size = opening.size, "File is shorter than its checkpoint; it was truncated, reading it from the start.");
    }
}

/// The file this checkpoint belonged to is gone (truncated, or its inode reused): a copy of it
/// made before, if one turns up, continues where it was read to, even after a restart. Returns
/// what that file was, for the checkpoint store.
fn note_earlier_file(
    shared: &FlowShared,
    start: &Start,
    opening: &Opening,
    replaced_known: Option<KnownOffset>,
    id: FileId,
    path: &Path,
) -> Option<CopyFrom> {
    let earlier = match start {
        Start::At(known) if opening.replaced || known.offset > opening.size => {
            shared.copies.note_truncation(
                id,
                FirstBytes::head_only(known.head),
                known.offset,
                path,
                None,
            );
            Some(known)
        }
        // Discovery noted this one when it found it.
        _ => replaced_known.as_ref(),
    };
    earlier.and_then(|known| {
        known.head.map(|head| CopyFrom {
            head,
            offset: known.offset,
        })
    })
}
