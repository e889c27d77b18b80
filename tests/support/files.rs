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
