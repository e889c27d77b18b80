//! Chooses each record's partition key.

use std::fmt::Write;

use crate::config::PartitionKey;
use crate::record::SourceFile;

#[derive(Debug)]
pub struct KeyChooser {
    mode: PartitionKey,
    random: fastrand::Rng,
}

impl KeyChooser {
    pub fn new(mode: PartitionKey) -> Self {
        Self {
            mode,
            random: fastrand::Rng::new(),
        }
    }

    /// The key for the record `data`, which starts at `offset` in `file`.
    pub fn key_for(&mut self, data: &[u8], file: &SourceFile, offset: u64) -> String {
        match &self.mode {
            PartitionKey::RecordId => record_id(file, offset),
            PartitionKey::Random => self.random.u64(..).to_string(),
            PartitionKey::Deterministic => {
                let mut key = String::with_capacity(16);
                let _ = write!(key, "{:016x}", xxhash_rust::xxh3::xxh3_64(data));
                key
            }
            PartitionKey::Fixed(key) => key.clone(),
        }
    }
}

/// A record's stable identity: the hash of its file's first bytes and the offset it starts at.
/// Sending a record again (after a retry whose outcome was unknown, or a restart) gives it the
/// same id, and so does reading it from a copy of its file; consumers drop duplicates by it.
/// A file that was empty when opened is named by device and inode until its start is known.
pub fn record_id(file: &SourceFile, offset: u64) -> String {
    let mut id = String::with_capacity(40);
    let _ = match file.head {
        Some(head) => write!(id, "{:016x}-{offset}", head.hash),
        None => write!(id, "{:x}.{:x}-{offset}", file.id.device, file.id.inode),
    };
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileId, Head};
    use std::sync::Arc;

    fn file(head: Option<Head>) -> SourceFile {
        SourceFile {
            key: 1,
            flow: Arc::from("f"),
            id: FileId {
                device: 0xfd01,
                inode: 77,
            },
            head,
            path: "/x".into(),
        }
    }

    #[test]
    fn keys_fit_the_bound_the_framer_leaves_room_for() {
        for mode in [
            PartitionKey::Random,
            PartitionKey::Deterministic,
            PartitionKey::Fixed("fixed".into()),
            PartitionKey::RecordId,
        ] {
            let bound = mode.max_len();
            let mut chooser = KeyChooser::new(mode);
            let files = [
                file(None),
                file(Some(Head {
                    len: 1024,
                    hash: u64::MAX,
                })),
            ];
            for line in 0..1000u32 {
                let offset = if line == 999 {
                    u64::MAX
                } else {
                    u64::from(line)
                };
                let key = chooser.key_for(&line.to_le_bytes(), &files[line as usize % 2], offset);
                assert!(!key.is_empty() && key.len() <= bound, "{key}");
            }
        }
    }

    #[test]
    fn deterministic_keys_depend_only_on_the_data() {
        let mut one = KeyChooser::new(PartitionKey::Deterministic);
        let mut two = KeyChooser::new(PartitionKey::Deterministic);
        let f = file(None);
        assert_eq!(one.key_for(b"line\n", &f, 0), two.key_for(b"line\n", &f, 9));
        assert_ne!(
            one.key_for(b"line\n", &f, 0),
            one.key_for(b"other\n", &f, 0)
        );
    }

    #[test]
    fn random_keys_vary() {
        let mut chooser = KeyChooser::new(PartitionKey::Random);
        let keys: std::collections::HashSet<String> = (0..100)
            .map(|_| chooser.key_for(b"x", &file(None), 0))
            .collect();
        assert!(keys.len() > 90);
    }

    #[test]
    fn record_ids_name_the_file_start_and_offset_and_nothing_else() {
        let head = Some(Head {
            len: 1024,
            hash: 0xabc,
        });
        let mut chooser = KeyChooser::new(PartitionKey::RecordId);
        assert_eq!(
            chooser.key_for(b"a\n", &file(head), 42),
            "0000000000000abc-42"
        );
        let mut moved = file(head);
        moved.id.inode = 5;
        moved.path = "/elsewhere".into();
        assert_eq!(
            chooser.key_for(b"other\n", &moved, 42),
            "0000000000000abc-42",
            "a copy of the file gives its records the same ids"
        );
        assert_eq!(chooser.key_for(b"a\n", &file(None), 7), "fd01.4d-7");
    }
}
