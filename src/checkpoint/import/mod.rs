//! Importing the Kinesis Agent's checkpoints, so that switching to kinship neither sends again
//! what the agent sent nor skips what it had not: `kinship migrate --checkpoints` seeds the
//! store before kinship first starts, `kinship run --import-checkpoints` at start, before any
//! file is opened.
//!
//! [`agent_db`] reads the agent's SQLite database; [`seed`] decides, row by row, what kinship
//! checkpoint it becomes. The seeded checkpoints are written by the store itself, as a
//! snapshot, so its format stays kinship's one format.

mod agent_db;
mod seed;
// The agent's file ids are Unix device and inode numbers.
#[cfg(all(test, unix))]
mod tests;

use std::path::{Path, PathBuf};

use super::store::{find_corruption, CheckpointStore, StoreError};
use super::tracker::Checkpoint;
use crate::config::FlowConfig;
pub use agent_db::{read_agent_db, AgentCheckpoint, AgentFlow, DEFAULT_AGENT_DB};
pub use seed::{seed, Action, Outcome, Skip};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the Kinesis Agent's checkpoint database {} does not exist; give the agent's checkpointFile (by default {DEFAULT_AGENT_DB})", path.display())]
    MissingDatabase { path: PathBuf },
    #[error("cannot read {} as the Kinesis Agent's checkpoint database: {source}", path.display())]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("kinship's checkpoint file {} is corrupt ({reason}); nothing was imported: start kinship once without importing, so that it reads every file without a checkpoint from its start", path.display())]
    CorruptStore { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    /// Every checkpoint now saved: those the store had, and those seeded.
    pub checkpoints: Vec<Checkpoint>,
    /// What became of each of the agent's checkpoints, in the order of their paths.
    pub outcomes: Vec<Outcome>,
}

impl Imported {
    /// How many checkpoints were seeded.
    pub fn seeded(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|outcome| matches!(outcome.action, Action::Seeded { .. }))
            .count()
    }
}

/// Adds the agent's checkpoints `rows` that hold to `saved` (what `store` holds) for `flows`,
/// and writes the result through `store` if anything was added. Blocking: the files are read
/// and the store written.
pub fn import(
    store: &mut CheckpointStore,
    saved: Vec<Checkpoint>,
    flows: &[FlowConfig],
    rows: Vec<AgentCheckpoint>,
) -> Result<Imported, StoreError> {
    let (checkpoints, outcomes) = seed(flows, rows, saved);
    let imported = Imported {
        checkpoints,
        outcomes,
    };
    if imported.seeded() > 0 {
        store.write(&imported.checkpoints)?;
    }
    Ok(imported)
}

/// Seeds the store in `state_dir` from the agent's database at `db`, for `flows`, with kinship
/// stopped (`kinship migrate --checkpoints`). A corrupt store is left as it is, for kinship's
/// next start to handle: importing into it would hide that it was corrupt.
pub fn import_into(
    state_dir: &Path,
    flows: &[FlowConfig],
    db: &Path,
) -> Result<Imported, ImportError> {
    // The database first: a wrong path changes nothing.
    let rows = read_agent_db(db)?;
    if let Some((path, reason)) = find_corruption(state_dir)? {
        return Err(ImportError::CorruptStore { path, reason });
    }
    let (mut store, loaded) = CheckpointStore::open(state_dir)?;
    Ok(import(&mut store, loaded.checkpoints, flows, rows)?)
}
