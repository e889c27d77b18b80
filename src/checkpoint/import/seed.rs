//! The agent's checkpoints turned into kinship's: each row is given to the kinship flows that
//! send to the same stream and whose `files` match its path, and seeded only for the file now
//! at that path if it is the very file the agent recorded (its device and inode) and is at
//! least as long as the agent's offset. A file kinship already has a checkpoint for keeps
//! kinship's.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::agent_db::{format_file_id, parse_file_id, AgentCheckpoint, AgentFlow};
use crate::checkpoint::tracker::{unix_now, Checkpoint, Identity};
use crate::config::{DestinationKind, FlowConfig};
use crate::record::{FileId, Head};

/// What became of one agent checkpoint for one kinship flow (or for none, when no flow
/// takes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The agent's flow id.
    pub agent_flow: String,
    pub path: PathBuf,
    /// The kinship flow it was given to; `None` when no flow takes it.
    pub flow: Option<String>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A checkpoint at `offset` was added; the file is `size` bytes long.
    Seeded { offset: u64, size: u64 },
    /// kinship had a checkpoint for this file already, at `offset`, and keeps it.
    Kept { offset: u64 },
    /// Nothing was added: the file is read as a file without a checkpoint.
    Skipped(Skip),
}

/// Why an agent checkpoint was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The agent flow id is not `kinesis:STREAM:PATTERN` or `fh:STREAM:PATTERN`.
    UnknownFlow,
    /// No kinship flow sends to this stream with `files` matching the path.
    NoFlow {
        kind: DestinationKind,
        destination: String,
    },
    /// The row has no file id, or not one the agent writes on Linux.
    BadFileId(Option<String>),
    /// The row has no offset, or a negative one.
    BadOffset(Option<i64>),
    /// No file is at the path now.
    Gone,
    /// The file at the path could not be read.
    Unreadable(String),
    /// Another file is at the path now (the agent's was rotated away or replaced).
    Replaced { recorded: String, found: FileId },
    /// The file is shorter than the agent's offset: truncated or written anew since.
    Shorter { offset: u64, size: u64 },
    /// Another of the agent's flows had a checkpoint for the same file and kinship flow, at a
    /// lower offset, which was seeded instead (lines are sent again rather than skipped).
    Duplicate { seeded: u64 },
    /// File identities cannot be compared with the agent's on this platform.
    Unsupported,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::UnknownFlow => f.write_str(
                "the agent flow id is neither kinesis:STREAM:PATTERN nor fh:STREAM:PATTERN",
            ),
            Skip::NoFlow { kind, destination } => {
                let noun = match kind {
                    DestinationKind::Kinesis => "Kinesis stream",
                    DestinationKind::Firehose => "Firehose stream",
                };
                write!(
                    f,
                    "no kinship flow sends to the {noun} `{destination}` with files matching this path"
                )
            }
            Skip::BadFileId(None) => f.write_str("the agent saved no file id"),
            Skip::BadFileId(Some(id)) => write!(
                f,
                "the agent's file id `{id}` is not (dev=HEX,ino=NUMBER) as it writes on Linux"
            ),
            Skip::BadOffset(None) => f.write_str("the agent saved no offset"),
            Skip::BadOffset(Some(offset)) => write!(f, "the agent's offset {offset} is negative"),
            Skip::Gone => f.write_str("the file is gone"),
            Skip::Unreadable(error) => write!(f, "cannot read the file: {error}"),
            Skip::Replaced { recorded, found } => write!(
                f,
                "another file is at this path now (the agent recorded {recorded}, this one is {})",
                format_file_id(*found)
            ),
            Skip::Shorter { offset, size } => write!(
                f,
                "the file is {size} bytes long, shorter than the agent's offset {offset} (truncated or written anew since)"
            ),
            Skip::Duplicate { seeded } => write!(
                f,
                "another agent flow's checkpoint for this file, at offset {seeded}, was seeded instead"
            ),
            Skip::Unsupported => f.write_str(
                "the agent's file ids are Linux device and inode numbers, which cannot be compared here",
            ),
        }
    }
}

impl fmt::Display for Outcome {
    /// One line of `kinship migrate --checkpoints`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flow = self
            .flow
            .as_ref()
            .map_or_else(String::new, |flow| format!(" (flow `{flow}`)"));
        let path = self.path.display();
        match &self.action {
            Action::Seeded { offset, size } => write!(
                f,
                "seeded {path}{flow}: from offset {offset} of {size} bytes, as the Kinesis Agent's flow {} left it",
                self.agent_flow
            ),
            Action::Kept { offset } => write!(
                f,
                "kept {path}{flow}: kinship's own checkpoint at offset {offset} is kept"
            ),
            Action::Skipped(reason) => write!(
                f,
                "skipped {path}{flow}: {reason}; it is read as initial_position says"
            ),
        }
    }
}

/// The checkpoints `saved` with the agent's `rows` added where they hold, and what became of
/// each row. `flows` are the kinship flows to seed.
pub fn seed(
    flows: &[FlowConfig],
    rows: Vec<AgentCheckpoint>,
    saved: Vec<Checkpoint>,
) -> (Vec<Checkpoint>, Vec<Outcome>) {
    let mut checkpoints: HashMap<Identity, Checkpoint> = saved
        .into_iter()
        .map(|checkpoint| ((checkpoint.flow.clone(), checkpoint.id), checkpoint))
        .collect();
    // The lowest offset first, so that of two rows for one file and flow the lower is seeded.
    let mut rows = rows;
    rows.sort_by(|a, b| (&a.path, a.offset, &a.flow).cmp(&(&b.path, b.offset, &b.flow)));
    let mut seeded: HashMap<Identity, u64> = HashMap::new();
    let mut outcomes = Vec::new();
    for row in rows {
        let outcome = |flow: Option<&FlowConfig>, action| Outcome {
            agent_flow: row.flow.clone(),
            path: row.path.clone(),
            flow: flow.map(|flow| flow.name.clone()),
            action,
        };
        let Some(agent_flow) = AgentFlow::parse(&row.flow) else {
            outcomes.push(outcome(None, Action::Skipped(Skip::UnknownFlow)));
            continue;
        };
        let takers: Vec<&FlowConfig> = flows
            .iter()
            .filter(|flow| takes(flow, &agent_flow, &row.path))
            .collect();
        if takers.is_empty() {
            outcomes.push(outcome(
                None,
                Action::Skipped(Skip::NoFlow {
                    kind: agent_flow.kind,
                    destination: agent_flow.destination,
                }),
            ));
            continue;
        }
        for flow in takers {
            let action = match file_at(&row, flow.fingerprint_bytes) {
                Err(skip) => Action::Skipped(skip),
                Ok(file) => {
                    let identity = (flow.name.clone(), file.id);
                    if let Some(&lower) = seeded.get(&identity) {
                        Action::Skipped(Skip::Duplicate { seeded: lower })
                    } else if let Some(own) = checkpoints.get(&identity) {
                        Action::Kept { offset: own.offset }
                    } else {
                        seeded.insert(identity.clone(), file.offset);
                        checkpoints.insert(
                            identity,
                            Checkpoint {
                                flow: flow.name.clone(),
                                id: file.id,
                                head: file.head,
                                path: row.path.clone(),
                                offset: file.offset,
                                seen: unix_now(),
                                copy_from: Vec::new(),
                                cursor: None,
                            },
                        );
                        Action::Seeded {
                            offset: file.offset,
                            size: file.size,
                        }
                    }
                }
            };
            outcomes.push(outcome(Some(flow), action));
        }
    }
    let mut checkpoints: Vec<Checkpoint> = checkpoints.into_values().collect();
    checkpoints.sort_by(|a, b| (&a.flow, a.id).cmp(&(&b.flow, b.id)));
    (checkpoints, outcomes)
}

/// Whether kinship's `flow` takes the agent's checkpoint of `path` from `agent_flow`: it sends
/// to the same stream, and its `files` match the path (as a scan of them would find it: a `*`
/// does not cross a `/`), which its `exclude` does not.
fn takes(flow: &FlowConfig, agent_flow: &AgentFlow, path: &Path) -> bool {
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    flow.destination.kind == agent_flow.kind
        && flow.destination.name == agent_flow.destination
        && flow.files.iter().any(|pattern| {
            glob::Pattern::new(pattern)
                .is_ok_and(|pattern| pattern.matches_path_with(path, options))
        })
        && !flow
            .exclude
            .iter()
            .any(|excluded| excluded.matches_path(path))
}

/// The file at a row's path, found to be the one the agent recorded.
struct Verified {
    id: FileId,
    head: Option<Head>,
    offset: u64,
    size: u64,
}

/// Checks that the file at the row's path is the file the agent recorded and is at least as
/// long as its offset, and hashes its first `fingerprint_bytes` as kinship identifies a file.
fn file_at(row: &AgentCheckpoint, fingerprint_bytes: usize) -> Result<Verified, Skip> {
    let recorded = row
        .file_id
        .as_deref()
        .and_then(parse_file_id)
        .ok_or_else(|| Skip::BadFileId(row.file_id.clone()))?;
    let offset = row
        .offset
        .and_then(|offset| u64::try_from(offset).ok())
        .ok_or(Skip::BadOffset(row.offset))?;
    let unreadable = |error: io::Error| match error.kind() {
        io::ErrorKind::NotFound => Skip::Gone,
        _ => Skip::Unreadable(error.to_string()),
    };
    let file = File::open(&row.path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    let found = file_id(&metadata).ok_or(Skip::Unsupported)?;
    if found != recorded {
        return Err(Skip::Replaced {
            recorded: row.file_id.clone().unwrap_or_default(),
            found,
        });
    }
    let size = metadata.len();
    if size < offset {
        return Err(Skip::Shorter { offset, size });
    }
    let mut first = Vec::new();
    file.take(fingerprint_bytes as u64)
        .read_to_end(&mut first)
        .map_err(unreadable)?;
    let head = (!first.is_empty()).then(|| Head {
        len: first.len() as u32,
        hash: xxhash_rust::xxh3::xxh3_64(&first),
    });
    Ok(Verified {
        id: found,
        head,
        offset,
        size,
    })
}

/// The file's device and inode, as the agent's file id holds them.
#[cfg(unix)]
fn file_id(metadata: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId {
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

#[cfg(not(unix))]
fn file_id(_metadata: &std::fs::Metadata) -> Option<FileId> {
    None
}
