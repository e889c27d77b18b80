//! Sample log lines for tests: each numbered, so that it is unique and its place can be
//! checked, and written to a log file in one go as an application writes a burst.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use super::files::open_log;

/// `{index:06} GET /{topic}/{index} 200`, newline included: a short access-log line, unique per
/// topic and index.
pub fn numbered(topic: &str, index: usize) -> Vec<u8> {
    format!("{index:06} GET /{topic}/{index} 200\n").into_bytes()
}

/// Lines `range` of `topic`, as [`numbered`] makes them.
pub fn numbered_range(topic: &str, range: Range<usize>) -> Vec<Vec<u8>> {
    range.map(|index| numbered(topic, index)).collect()
}

/// Appends `lines` to `path` in one write, creating the file and its directory if needed;
/// returns them, for the test to compare with what arrives.
pub fn append_lines(path: &Path, lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("log directory");
    }
    open_log(path)
        .write_all(&lines.concat())
        .expect("write lines");
    lines
}
