//! A file's identity and the few blocking file operations the tailer needs, per platform.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

use crate::record::{FileId, Head};

#[cfg(unix)]
fn file_id(metadata: &Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId {
        device: metadata.dev(),
        inode: metadata.ino(),
    }
}

/// The identity of the file at `path`, whose `metadata` was just read.
#[cfg(unix)]
pub(super) fn id_at(_path: &Path, metadata: &Metadata) -> io::Result<FileId> {
    Ok(file_id(metadata))
}

/// The identity of an open file.
#[cfg(unix)]
pub(super) fn id_of(file: &File) -> io::Result<FileId> {
    Ok(file_id(&file.metadata()?))
}

/// How many names the file still has; 0 once it was deleted while open.
#[cfg(unix)]
pub(super) fn link_count(metadata: &Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    metadata.nlink()
}

#[cfg(unix)]
pub(super) fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buffer, offset) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

// Windows: the volume serial number and the file index (GetFileInformationByHandle), which
// survive renames, as device and inode do. std does not offer them yet, and the creation time
// cannot stand in: a file created under a name just renamed away inherits its creation time
// (file system tunnelling), which is exactly what log rotation does.
#[cfg(windows)]
pub(super) fn id_at(path: &Path, _metadata: &Metadata) -> io::Result<FileId> {
    id_of(&File::open(path)?)
}

#[cfg(windows)]
pub(super) fn id_of(file: &File) -> io::Result<FileId> {
    let information = winapi_util::file::information(file)?;
    Ok(FileId {
        device: information.volume_serial_number(),
        inode: information.file_index(),
    })
}

#[cfg(not(unix))]
pub(super) fn link_count(_metadata: &Metadata) -> u64 {
    1
}

#[cfg(not(unix))]
pub(super) fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buffer, offset)
}

/// Up to `len` bytes from the start of `file`.
pub(super) fn read_start(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)];
    let mut filled = 0;
    while filled < bytes.len() {
        let read = read_at(file, &mut bytes[filled..], filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// How many first bytes of a followed file are kept as they are, beside its head's hash.
pub(super) const LEAD_BYTES: usize = 64;

/// A file's first bytes, up to `LEAD_BYTES`: enough to tell whether a file still too short to
/// be compared by its head may be a copy of this one that is still being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lead {
    bytes: [u8; LEAD_BYTES],
    len: u8,
}

impl Lead {
    pub(super) fn of(start: &[u8]) -> Lead {
        let len = start.len().min(LEAD_BYTES);
        let mut bytes = [0; LEAD_BYTES];
        bytes[..len].copy_from_slice(&start[..len]);
        Lead {
            bytes,
            len: len as u8,
        }
    }

    /// Whether a file that starts with `start` begins as this one does, as far as both go.
    pub(super) fn agrees_with(&self, start: &[u8]) -> bool {
        let len = start.len().min(usize::from(self.len));
        self.bytes[..len] == start[..len]
    }
}

/// The head of a file now `size` bytes long (a hash of its first `len` bytes, fewer if it is
/// shorter; `None` if it is empty) and its lead.
pub(super) fn head_and_lead(
    file: &File,
    size: u64,
    len: usize,
) -> io::Result<(Option<Head>, Lead)> {
    let bytes = read_start(file, size.min(len as u64))?;
    Ok((head_of_bytes(&bytes), Lead::of(&bytes)))
}

/// The head of a file that starts with `bytes` (as many as were hashed).
pub(super) fn head_of_bytes(bytes: &[u8]) -> Option<Head> {
    (!bytes.is_empty()).then(|| Head {
        len: bytes.len() as u32,
        hash: xxhash_rust::xxh3::xxh3_64(bytes),
    })
}

/// The start of a file, compared with the heads of many others: each prefix length is hashed
/// once, however many heads of that length it is compared with.
pub(super) struct Prefixes<'a> {
    bytes: &'a [u8],
    hashes: Vec<(u32, u64)>,
}

impl<'a> Prefixes<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Prefixes {
            bytes,
            hashes: Vec::new(),
        }
    }

    /// Whether these bytes begin with the bytes `head` was taken from.
    pub(super) fn start_with(&mut self, head: Head) -> bool {
        let Some(prefix) = self.bytes.get(..head.len as usize) else {
            return false;
        };
        let hash = match self.hashes.iter().find(|(len, _)| *len == head.len) {
            Some(&(_, hash)) => hash,
            None => {
                let hash = xxhash_rust::xxh3::xxh3_64(prefix);
                self.hashes.push((head.len, hash));
                hash
            }
        };
        hash == head.hash
    }
}

/// Whether `file` still starts with the bytes `head` was taken from.
pub(super) fn starts_with(file: &File, head: Head) -> io::Result<bool> {
    let bytes = read_start(file, u64::from(head.len))?;
    Ok(bytes.len() == head.len as usize && xxhash_rust::xxh3::xxh3_64(&bytes) == head.hash)
}

/// Offset just after the last complete line that ends at or before `size`, looking back at most
/// `window` bytes; where no newline is found, the start of the window.
pub(super) fn after_last_newline(file: &File, size: u64, window: u64) -> io::Result<u64> {
    let start = size.saturating_sub(window);
    let mut tail = vec![0; (size - start) as usize];
    let mut filled = 0;
    while filled < tail.len() {
        let read = read_at(file, &mut tail[filled..], start + filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(match memchr::memrchr(b'\n', &tail[..filled]) {
        Some(newline) => start + newline as u64 + 1,
        None => start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_head_recognises_the_same_file_and_not_another() {
        let mut file = tempfile::tempfile().expect("temp file");
        assert_eq!(head_and_lead(&file, 0, 1024).expect("head").0, None);
        file.write_all(b"first line\n").expect("write");
        let short = head_and_lead(&file, 11, 1024)
            .expect("head")
            .0
            .expect("not empty");
        assert_eq!(short.len, 11);
        file.write_all(&[b'x'; 2000]).expect("grow");
        assert!(
            starts_with(&file, short).expect("read"),
            "growing keeps the head"
        );
        let full = head_and_lead(&file, 2011, 1024)
            .expect("head")
            .0
            .expect("not empty");
        assert_eq!(full.len, 1024);
        let mut other = tempfile::tempfile().expect("temp file");
        other.write_all(b"other line\n").expect("write");
        assert!(!starts_with(&other, short).expect("read"));
        let empty = tempfile::tempfile().expect("temp file");
        assert!(
            !starts_with(&empty, short).expect("read"),
            "a shorter file is another file"
        );
    }

    #[test]
    fn prefixes_match_heads_of_every_length_they_cover() {
        let head = |bytes: &[u8]| head_of_bytes(bytes).expect("not empty");
        let mut prefixes = Prefixes::new(b"line 1\nline 2\n");
        assert!(prefixes.start_with(head(b"line 1\n")));
        assert!(
            prefixes.start_with(head(b"line 1\n")),
            "again, from the cache"
        );
        assert!(
            !prefixes.start_with(head(b"line 2\n")),
            "same length, other bytes"
        );
        assert!(prefixes.start_with(head(b"line 1\nline 2\n")));
        assert!(
            !prefixes.start_with(head(b"line 1\nline 2\nline 3\n")),
            "longer than the start"
        );
    }

    #[test]
    fn a_lead_agrees_with_any_start_that_matches_as_far_as_both_go() {
        let lead = Lead::of(b"line 000013 xxxxxxxxxxxxx\n");
        assert!(
            lead.agrees_with(b""),
            "an empty file may be a copy being written"
        );
        assert!(lead.agrees_with(b"line 0000"));
        assert!(lead.agrees_with(b"line 000013 xxxxxxxxxxxxx\nline 000014"));
        assert!(!lead.agrees_with(b"line 000017"));
        let long = Lead::of(&[b'a'; 100]);
        assert!(long.agrees_with(&[b'a'; 100]));
        assert!(!long.agrees_with(&[&[b'a'; 63][..], b"b"].concat()));
        assert!(
            long.agrees_with(&[&[b'a'; 64][..], b"b"].concat()),
            "only the first LEAD_BYTES are kept"
        );
    }

    #[test]
    fn after_last_newline_skips_a_partial_last_line() {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(b"one\ntwo\nthr").expect("write");
        assert_eq!(after_last_newline(&file, 11, 64).expect("read"), 8);
        assert_eq!(after_last_newline(&file, 8, 64).expect("read"), 8);
        assert_eq!(after_last_newline(&file, 3, 64).expect("read"), 0);
        // A window that sees no newline starts where it starts.
        assert_eq!(after_last_newline(&file, 11, 2).expect("read"), 9);
    }
}
