//! Writing log files as an application does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Opens `path` for appending, creating it if needed, as a logging application does.
pub fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log")
}

/// Appends `bytes` to `path` through a handle of its own.
pub fn append(path: &Path, bytes: &[u8]) {
    open_log(path).write_all(bytes).expect("append");
}

/// For a test of permissions: the user to run the agent as (`nobody`, when the tests run as
/// root, whom no permission stops; `None` otherwise), with `dir` and its `state` directory made
/// usable by that user.
#[cfg(unix)]
pub fn agent_user_held_by_permissions(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
    const NOBODY: u32 = 65534;
    let running_as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    if running_as_root {
        chown(&state, Some(NOBODY), Some(NOBODY)).expect("chown state");
    }
    running_as_root.then_some(NOBODY)
}
