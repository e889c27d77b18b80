//! The log file (`log_file:`), for hosts where standard error goes nowhere, such as a Windows
//! service: appended to, and rotated by size. When a line would take the file past
//! `max_bytes`, the file is renamed `NAME.1` (older ones shift to `NAME.2` … `NAME.<keep>`, the
//! oldest is deleted) and a new file is started. Each log line is written whole by one call, so
//! a line is never split between two files and none is lost at the switch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// An open log file shared by every thread that logs.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    /// `None` after a failed reopen; opening is tried again at the next line.
    file: Option<File>,
    /// Bytes in the current file, or written since rotating it last failed.
    written: u64,
}

impl LogFile {
    /// Opens `path` for appending, creating it and its directory if missing.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<LogFile> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            current: Mutex::new(Current {
                file: Some(file),
                written,
            }),
        })
    }

    /// Appends `line` (one whole log line), rotating first if it would not fit.
    fn append(&self, line: &[u8]) -> io::Result<()> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let length = line.len() as u64;
        if current.written > 0 && current.written.saturating_add(length) > self.max_bytes {
            // Closed first: Windows does not rename a file that is open.
            current.file = None;
            // When the shift fails (a viewer holds an old file open, on Windows), the line goes
            // to the same file, and rotating is tried again after another `max_bytes`.
            let _ = self.shift();
            current.written = 0;
            current.file = Some(open_append(&self.path)?);
        }
        let file = match current.file.as_mut() {
            Some(file) => file,
            None => {
                let file = open_append(&self.path)?;
                current.written = file.metadata()?.len();
                current.file.insert(file)
            }
        };
        file.write_all(line)?;
        current.written = current.written.saturating_add(length);
        Ok(())
    }

    /// `NAME.<keep-1>` → `NAME.<keep>`, …, `NAME` → `NAME.1`; the oldest is deleted.
    fn shift(&self) -> io::Result<()> {
        if self.keep == 0 {
            return remove_if_present(&self.path);
        }
        remove_if_present(&self.rotated(self.keep))?;
        for index in (1..self.keep).rev() {
            rename_if_present(&self.rotated(index), &self.rotated(index + 1))?;
        }
        fs::rename(&self.path, self.rotated(1))
    }

    /// The path of the `index`th older file: `kinship.log.1` is the newest.
    pub fn rotated(&self, index: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// A handle that writes to the log file; tracing makes one per event.
#[derive(Debug)]
pub struct LogFileWriter<'a> {
    file: &'a LogFile,
}

impl Write for LogFileWriter<'_> {
    /// Writes all of `buf` to one file: tracing hands over each event as a single buffer.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Nothing is buffered: every line goes straight to the file.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter { file: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_line(log: &LogFile, line: &str) {
        log.make_writer()
            .write_all(line.as_bytes())
            .expect("the test directory is writable");
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotates_at_the_limit_and_never_splits_or_loses_a_line() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("logs").join("kinship.log");
        // Ten-byte lines, three to a file.
        let log = LogFile::open(&path, 30, 2).expect("the log file opens");
        let lines: Vec<String> = (0..10).map(|n| format!("line {n:03}\n")).collect();
        for line in &lines {
            write_line(&log, line);
        }
        // The last line is in the current file, the rest in the two kept files; older ones
        // were deleted as they aged out.
        assert_eq!(read(&path), "line 009\n");
        assert_eq!(read(&log.rotated(1)), "line 006\nline 007\nline 008\n");
        assert_eq!(read(&log.rotated(2)), "line 003\nline 004\nline 005\n");
        assert!(!log.rotated(3).exists());
        let kept: String = [log.rotated(2), log.rotated(1), path.clone()]
            .iter()
            .map(|file| read(file))
            .collect();
        assert_eq!(kept, lines[3..].concat());
    }

    #[test]
    fn a_line_larger_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("kinship.log");
        let log = LogFile::open(&path, 8, 3).expect("the log file opens");
        write_line(&log, "short\n");
        write_line(&log, "a line far longer than the limit\n");
        write_line(&log, "next\n");
        assert_eq!(read(&log.rotated(2)), "short\n");
        assert_eq!(read(&log.rotated(1)), "a line far longer than the limit\n");
        assert_eq!(read(&path), "next\n");
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_what_it_holds() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("kinship.log");
        fs::write(&path, "from before\n").expect("the test directory is writable");
        let log = LogFile::open(&path, 20, 1).expect("the log file opens");
        write_line(&log, "again\n");
        assert_eq!(read(&path), "from before\nagain\n");
        write_line(&log, "rotated now\n");
        assert_eq!(read(&log.rotated(1)), "from before\nagain\n");
        assert_eq!(read(&path), "rotated now\n");
    }

    #[test]
    fn keeping_none_starts_over_in_one_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("kinship.log");
        let log = LogFile::open(&path, 10, 0).expect("the log file opens");
        write_line(&log, "first ..\n");
        write_line(&log, "second .\n");
        assert_eq!(read(&path), "second .\n");
        assert!(!log.rotated(1).exists());
    }

    #[test]
    fn lines_from_many_threads_are_all_kept_whole() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("kinship.log");
        let log = LogFile::open(&path, 4096, 100).expect("the log file opens");
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let log = &log;
                scope.spawn(move || {
                    for n in 0..500 {
                        write_line(log, &format!("thread {thread} line {n:04}\n"));
                    }
                });
            }
        });
        let mut all = Vec::new();
        for index in (1..=100).rev() {
            all.extend(read(&log.rotated(index)).lines().map(str::to_owned));
        }
        all.extend(read(&path).lines().map(str::to_owned));
        assert_eq!(all.len(), 2000);
        for thread in 0..4 {
            let prefix = format!("thread {thread} line ");
            let numbers: Vec<usize> = all
                .iter()
                .filter_map(|line| line.strip_prefix(&prefix))
                .map(|n| n.parse().expect("every line is whole"))
                .collect();
            assert_eq!(numbers, (0..500).collect::<Vec<_>>());
        }
    }
}
