//! Files done with (`shipped_files`): once every line of a file is acknowledged and the file is
//! no longer written (renamed away, or idle past `shipped_files_idle`, and never the newest
//! match of its glob), it is deleted or moved into `shipped_files_dir`.
//!
//! [`decide`] is the rule, a pure function; [`newest_of_globs`] finds the files being written;
//! [`act`] checks the file is still the one acknowledged and deletes or moves it, on a blocking
//! thread. Discovery asks the checkpoint store how far files were acknowledged and calls them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::ShippedFiles;
use crate::record::{FileId, Head};

use super::identity;

/// What is known of one file a scan found, to decide whether it is done with.
#[derive(Clone, Copy, Debug)]
pub(super) struct Facts {
    /// How far it was acknowledged; `None` when it has no checkpoint (never read).
    pub(super) acknowledged: Option<u64>,
    pub(super) size: u64,
    /// It is the newest match (by modification time) of one of the flow's globs.
    pub(super) newest: bool,
    /// Found at another path than the one it was first known at: rotated away.
    pub(super) renamed: bool,
    /// How long since it was last modified; `None` if unknown.
    pub(super) idle: Option<Duration>,
}

/// What [`decide`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Done with: delete or move it.
    Act,
    /// The newest match of its glob, the file being written: never acted on.
    Newest,
    /// Some of it is not acknowledged (or it has no checkpoint, or it changed since).
    Unacknowledged,
    /// Neither renamed nor idle for long enough: it may still be written.
    MaybeWritten,
}

/// How long a file renamed away must stay unmodified before it is done with (or `idle_after`,
/// if shorter): an application writes on into its rotated file until it reopens its log (after
/// logrotate's `postrotate` signal, say).
pub(super) const RENAMED_QUIET: Duration = Duration::from_secs(10);

/// Whether a file is done with: never the newest match of its glob; every byte acknowledged
/// (the acknowledged offset is the file's size: nothing of it is in flight, nothing unread);
/// and no longer written, for it was renamed away and not modified for [`RENAMED_QUIET`], or
/// was not modified for `idle_after`.
pub(super) fn decide(facts: Facts, idle_after: Duration) -> Verdict {
    if facts.newest {
        return Verdict::Newest;
    }
    // Past the size, the file shrank since (truncated): not the bytes acknowledged.
    if facts.acknowledged != Some(facts.size) {
        return Verdict::Unacknowledged;
    }
    let idle_for = |needed: Duration| facts.idle.is_some_and(|idle| idle >= needed);
    if (facts.renamed && idle_for(idle_after.min(RENAMED_QUIET))) || idle_for(idle_after) {
        Verdict::Act
    } else {
        Verdict::MaybeWritten
    }
}

/// One file a scan found, as [`newest_of_globs`] weighs it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Match<'a> {
    pub(super) path: &'a Path,
    pub(super) modified: Option<SystemTime>,
    pub(super) renamed: bool,
}

/// For each of `files`, whether it is the newest match of one of `patterns` that it matches:
/// the latest modified and, among files modified at the same instant (timestamps are coarse),
/// one still at its first path rather than one renamed away. A file whose time is unknown, or
/// that matches no pattern, counts as newest: it is left alone. Files equal on both counts are
/// all newest.
pub(super) fn newest_of_globs(patterns: &[String], files: &[Match<'_>]) -> Vec<bool> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let globs: Vec<glob::Pattern> = patterns
        .iter()
        .filter_map(|pattern| glob::Pattern::new(pattern).ok())
        .collect();
    let matches: Vec<Vec<usize>> = files
        .iter()
        .map(|file| {
            (0..globs.len())
                .filter(|&glob| globs[glob].matches_path_with(file.path, options))
                .collect()
        })
        .collect();
    let rank = |file: &Match<'_>| file.modified.map(|modified| (modified, !file.renamed));
    let mut newest: HashMap<usize, (SystemTime, bool)> = HashMap::new();
    for (file, globs) in files.iter().zip(&matches) {
        let Some(rank) = rank(file) else { continue };
        for glob in globs {
            let latest = newest.entry(*glob).or_insert(rank);
            if rank > *latest {
                *latest = rank;
            }
        }
    }
    files
        .iter()
        .zip(&matches)
        .map(|(file, globs)| match rank(file) {
            None => true,
            Some(rank) => {
                globs.is_empty()
                    || globs
                        .iter()
                        .any(|glob| newest.get(glob).is_none_or(|latest| rank >= *latest))
            }
        })
        .collect()
}

/// What [`act`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Deleted,
    Moved(PathBuf),
    /// The file at the path is no longer the one acknowledged (it grew, or was replaced):
    /// nothing was done; the next scan looks at it again.
    Changed,
}

/// Why a file done with could not be deleted or moved.
#[derive(Debug, thiserror::Error)]
pub(super) enum ShipError {
    #[error("cannot read the file to check it is the one acknowledged: {0}")]
    Check(#[source] io::Error),
    #[error("cannot delete the file: {0}; check the agent may write to its directory")]
    Delete(#[source] io::Error),
    #[error("cannot move the file to {}: {source}; check the agent may write to both directories", to.display())]
    Move { to: PathBuf, source: io::Error },
    #[error("the path has no file name")]
    NoName,
    #[error("{0}")]
    Task(#[source] io::Error),
}

/// Deletes or moves the file at `path` if it is still the file `id`, `size` bytes long and
/// starting as `head` says (the checkpoint's file): otherwise [`Outcome::Changed`]. A move keeps
/// the name (with `-1`, `-2`… added when the name is taken) and, across filesystems, copies,
/// syncs, then removes the original. `keep` does nothing.
pub(super) fn act(
    action: &ShippedFiles,
    path: &Path,
    id: FileId,
    size: u64,
    head: Option<Head>,
) -> Result<Outcome, ShipError> {
    if !still_acknowledged(path, id, size, head).map_err(ShipError::Check)? {
        return Ok(Outcome::Changed);
    }
    match action {
        // Never asked for: `keep` acts on nothing.
        ShippedFiles::Keep => Ok(Outcome::Changed),
        ShippedFiles::Delete => {
            fs::remove_file(path).map_err(ShipError::Delete)?;
            Ok(Outcome::Deleted)
        }
        ShippedFiles::Move(dir) => move_into(path, dir).map(Outcome::Moved),
    }
}

/// Whether the file at `path` is still the file acknowledged: the same identity and size, and
/// the same first bytes (an empty file has none to compare).
fn still_acknowledged(path: &Path, id: FileId, size: u64, head: Option<Head>) -> io::Result<bool> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    if identity::id_at(path, &metadata)? != id || metadata.len() != size {
        return Ok(false);
    }
    match head {
        Some(head) => identity::starts_with(&file, head),
        None => Ok(size == 0),
    }
}

/// Moves `path` into `dir`, under a name not taken there; returns where it went. A file is
/// never replaced: the new name is made as a hard link, which fails where the name exists (two
/// flows moving files of one name at once each get their own), and only then is the old name
/// removed. A crash between the two leaves both names; the original, found again, is moved
/// again under another name.
fn move_into(path: &Path, dir: &Path) -> Result<PathBuf, ShipError> {
    let name = path
        .file_name()
        .ok_or(ShipError::NoName)?
        .to_string_lossy()
        .into_owned();
    match link_under_free_name(path, dir, &name) {
        Ok(to) => {
            fs::remove_file(path).map_err(|source| ShipError::Move {
                to: to.clone(),
                source,
            })?;
            sync_directories(path, dir);
            Ok(to)
        }
        Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {
            copy_then_remove(path, dir, &name).map_err(|source| ShipError::Move {
                to: dir.join(&name),
                source,
            })
        }
        // Where links cannot be made (a filesystem without them, or a file of another user
        // with protected hard links), a rename to a name not taken when looked at.
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
            ) =>
        {
            let to = free_name(dir, &name);
            fs::rename(path, &to).map_err(|source| ShipError::Move {
                to: to.clone(),
                source,
            })?;
            sync_directories(path, dir);
            Ok(to)
        }
        Err(source) => Err(ShipError::Move {
            to: dir.join(&name),
            source,
        }),
    }
}

/// `dir/name`, or `dir/name-1`, `dir/name-2`… the first that does not exist now.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let mut candidate = dir.join(name);
    let mut suffix = 1u64;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = dir.join(format!("{name}-{suffix}"));
        suffix += 1;
    }
    candidate
}

/// Links `from` as `dir/name`, or `dir/name-1`, `dir/name-2`… the first name not taken.
fn link_under_free_name(from: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    let mut suffix = 0u64;
    loop {
        let candidate = match suffix {
            0 => dir.join(name),
            n => dir.join(format!("{name}-{n}")),
        };
        match fs::hard_link(from, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => suffix += 1,
            Err(error) => return Err(error),
        }
    }
}

/// Another filesystem: copies to a temporary file of its own in `dir` (made new: never an
/// existing file, nor a link planted at its name), syncs it, links it under a free name, syncs
/// the directory, and only then removes the original. A crash before the removal leaves both;
/// the original, found again, is moved again under another name.
fn copy_then_remove(path: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = dir.join(format!(
        ".{name}.kinship-partial-{}-{copy}",
        std::process::id()
    ));
    let copied = (|| -> io::Result<PathBuf> {
        let mut from = File::open(path)?;
        let mut into = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        io::copy(&mut from, &mut into)?;
        into.sync_all()?;
        link_under_free_name(&temp, dir, name)
    })();
    let _ = fs::remove_file(&temp);
    let to = copied?;
    sync_directory(dir);
    fs::remove_file(path)?;
    if let Some(parent) = path.parent() {
        sync_directory(parent);
    }
    Ok(to)
}

/// Makes a rename durable: both directories synced (best effort; the rename itself is done).
fn sync_directories(path: &Path, dir: &Path) {
    sync_directory(dir);
    if let Some(parent) = path.parent() {
        sync_directory(parent);
    }
}

#[cfg(unix)]
fn sync_directory(dir: &Path) {
    let _ = File::open(dir).and_then(|dir| dir.sync_all());
}

// Windows cannot open a directory as a file; its renames are made durable by the file system.
#[cfg(not(unix))]
fn sync_directory(_dir: &Path) {}

#[cfg(test)]
mod tests;
