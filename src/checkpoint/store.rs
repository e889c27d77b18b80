//! The on-disk checkpoint file: versioned JSON, written atomically (temp file in the same
//! directory, fsync, rename over the old file, fsync the directory), so a crash at any instant
//! leaves either the old state or the new one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tracker::Checkpoint;
use crate::record::{CopyFrom, FileId, Head};

const FORMAT_VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";
const TEMP_NAME: &str = ".checkpoints.json.tmp";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {source}; create it or set state_dir to a writable directory", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read the checkpoint file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("the checkpoint file {} is corrupt ({reason})", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("the checkpoint file {} has format version {found}, newer than this kinship understands ({FORMAT_VERSION})", path.display())]
    NewerVersion { path: PathBuf, found: u32 },
    #[error("cannot write the checkpoint file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    files: Vec<OnDiskFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskFile {
    flow: String,
    device: u64,
    inode: u64,
    /// Bytes hashed from the file's start, and their xxh3 hash; absent for a file empty when opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_len: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_hash: Option<u64>,
    path: PathBuf,
    offset: u64,
    /// When a scan last found the file, in seconds since the Unix epoch; absent in files
    /// written before checkpoints expired, taken as "now" when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<u64>,
    /// Set after the file was truncated: where a copy of it made before each of its latest
    /// truncations continues (the head the file had then, and the offset delivered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    copy_from: Vec<CopyFrom>,
}

#[derive(Debug)]
pub struct CheckpointStore {
    directory: PathBuf,
    path: PathBuf,
    temp: PathBuf,
}

/// What opening the store found.
#[derive(Debug)]
pub struct Loaded {
    pub checkpoints: Vec<Checkpoint>,
    /// A temp file left by a write that was interrupted (and removed).
    pub removed_leftover: bool,
    /// The checkpoint file could not be read as checkpoints: it was moved aside to `moved_to`
    /// and the store starts empty.
    pub corrupt: Option<MovedAside>,
}

#[derive(Debug)]
pub struct MovedAside {
    pub reason: String,
    pub moved_to: PathBuf,
}

impl CheckpointStore {
    /// Opens the store in `directory` (created if missing) and reads its checkpoints.
    pub fn open(directory: &Path) -> Result<(CheckpointStore, Loaded), StoreError> {
        fs::create_dir_all(directory).map_err(|source| StoreError::CreateDir {
            path: directory.to_owned(),
            source,
        })?;
        let store = CheckpointStore {
            directory: directory.to_owned(),
            path: directory.join(FILE_NAME),
            temp: directory.join(TEMP_NAME),
        };
        // A leftover temp file is a write that never reached its rename: the real file still
        // holds the state before it.
        let removed_leftover = match fs::remove_file(&store.temp) {
            Ok(()) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(StoreError::Write {
                    path: store.temp.clone(),
                    source,
                })
            }
        };
        let (checkpoints, corrupt) = match store.read() {
            Ok(checkpoints) => (checkpoints, None),
            Err(StoreError::Corrupt { reason, .. }) => {
                // Kept for whoever wants to look at it; the agent must start regardless.
                let moved_to = directory.join(format!(
                    "{FILE_NAME}.corrupt-{}",
                    super::tracker::unix_now()
                ));
                fs::rename(&store.path, &moved_to).map_err(|source| StoreError::Write {
                    path: moved_to.clone(),
                    source,
                })?;
                (Vec::new(), Some(MovedAside { reason, moved_to }))
            }
            Err(other) => return Err(other),
        };
        Ok((
            store,
            Loaded {
                checkpoints,
                removed_leftover,
                corrupt,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let version: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        match version.get("version").and_then(serde_json::Value::as_u64) {
            Some(found) if found > u64::from(FORMAT_VERSION) => {
                return Err(StoreError::NewerVersion {
                    path: self.path.clone(),
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                })
            }
            Some(_) => {}
            None => return Err(corrupt("no format version".into())),
        }
        let on_disk: OnDisk =
            serde_json::from_value(version).map_err(|error| corrupt(error.to_string()))?;
        let now = super::tracker::unix_now();
        Ok(on_disk
            .files
            .into_iter()
            .map(|file| Checkpoint {
                flow: file.flow,
                id: FileId {
                    device: file.device,
                    inode: file.inode,
                },
                head: file
                    .head_len
                    .zip(file.head_hash)
                    .map(|(len, hash)| Head { len, hash }),
                path: file.path,
                offset: file.offset,
                seen: file.seen.unwrap_or(now),
                copy_from: file.copy_from,
            })
            .collect())
    }

    /// Replaces the saved checkpoints with `checkpoints`, atomically and durably.
    pub fn write(&self, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
        let on_disk = OnDisk {
            version: FORMAT_VERSION,
            files: checkpoints
                .iter()
                .map(|c| OnDiskFile {
                    flow: c.flow.clone(),
                    device: c.id.device,
                    inode: c.id.inode,
                    head_len: c.head.map(|head| head.len),
                    head_hash: c.head.map(|head| head.hash),
                    path: c.path.clone(),
                    offset: c.offset,
                    seen: Some(c.seen),
                    copy_from: c.copy_from.clone(),
                })
                .collect(),
        };
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Write { path, source }
        };
        let mut bytes = serde_json::to_vec_pretty(&on_disk).map_err(|error| StoreError::Write {
            path: self.temp.clone(),
            source: io::Error::other(error),
        })?;
        bytes.push(b'\n');
        let result = (|| {
            let mut temp = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.temp)?;
            temp.write_all(&bytes)?;
            temp.sync_all()
        })();
        if let Err(source) = result {
            // Leave no half-written temp file behind (best effort: the next write truncates it).
            let _ = fs::remove_file(&self.temp);
            return Err(write_error(&self.temp)(source));
        }
        fs::rename(&self.temp, &self.path).map_err(write_error(&self.path))?;
        sync_directory(&self.directory).map_err(write_error(&self.directory))
    }
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> io::Result<()> {
    fs::File::open(directory)?.sync_all()
}

// Windows cannot open a directory as a file; its rename is made durable by the file's flush.
#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(inode: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            flow: "app".into(),
            id: FileId { device: 3, inode },
            head: inode.is_multiple_of(2).then_some(Head {
                len: 7,
                hash: inode * 31,
            }),
            path: format!("/logs/{inode}.log").into(),
            offset,
            seen: 1_700_000_000 + inode,
            copy_from: if inode == 2 {
                vec![
                    CopyFrom {
                        head: Head { len: 64, hash: 9 },
                        offset: 640,
                    },
                    CopyFrom {
                        head: Head { len: 64, hash: 10 },
                        offset: 80,
                    },
                ]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn written_checkpoints_are_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state/nested");
        let (store, loaded) = CheckpointStore::open(&state).expect("open");
        assert!(loaded.checkpoints.is_empty());
        let saved = vec![checkpoint(1, 10), checkpoint(2, 20)];
        store.write(&saved).expect("write");
        store.write(&saved[..1]).expect("write again");
        let (_, loaded) = CheckpointStore::open(&state).expect("reopen");
        assert_eq!(loaded.checkpoints, saved[..1]);
        assert!(!state.join(TEMP_NAME).exists());
    }

    #[test]
    fn a_leftover_temp_file_is_removed_and_the_real_file_wins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = CheckpointStore::open(dir.path()).expect("open");
        store.write(&[checkpoint(1, 10)]).expect("write");
        fs::write(dir.path().join(TEMP_NAME), b"{\"version\":1,\"fi").expect("torn temp file");
        let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
        assert!(loaded.removed_leftover);
        assert_eq!(loaded.checkpoints, vec![checkpoint(1, 10)]);
        assert!(!dir.path().join(TEMP_NAME).exists());
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_the_store_starts_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let torn = b"{\"version\":1,\"files\":[{\"flow\":";
        fs::write(dir.path().join(FILE_NAME), torn).expect("write");
        let (store, loaded) = CheckpointStore::open(dir.path()).expect("opens anyway");
        assert!(loaded.checkpoints.is_empty());
        let moved = loaded.corrupt.expect("reported");
        assert!(moved.reason.contains("EOF"), "{}", moved.reason);
        assert_eq!(fs::read(&moved.moved_to).expect("kept"), torn);
        assert!(!store.path().exists());
        store.write(&[checkpoint(1, 10)]).expect("writes again");
        fs::write(dir.path().join(FILE_NAME), b"[]").expect("write");
        let (_, loaded) = CheckpointStore::open(dir.path()).expect("opens anyway");
        assert!(loaded.corrupt.is_some(), "no format version");
        fs::write(dir.path().join(FILE_NAME), b"{\"version\":9,\"files\":[]}").expect("write");
        assert!(matches!(
            CheckpointStore::open(dir.path()),
            Err(StoreError::NewerVersion { found: 9, .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_write_leaves_the_old_file_intact() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = CheckpointStore::open(dir.path()).expect("open");
        store.write(&[checkpoint(1, 10)]).expect("write");
        // A directory where the temp file should go makes the write fail as a full disk would.
        fs::create_dir(dir.path().join(TEMP_NAME)).expect("block the temp path");
        let error = store
            .write(&[checkpoint(1, 99)])
            .expect_err("write must fail");
        assert!(
            error
                .to_string()
                .contains("cannot write the checkpoint file"),
            "{error}"
        );
        fs::remove_dir(dir.path().join(TEMP_NAME)).expect("unblock");
        let (_, loaded) = CheckpointStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded.checkpoints, vec![checkpoint(1, 10)]);
        let _ = fs::metadata(dir.path()).map(|m| m.permissions().mode());
    }
}
