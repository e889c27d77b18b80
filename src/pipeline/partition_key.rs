//! Chooses each record's partition key.

use std::fmt::Write;

use crate::config::limits::PARTITION_KEY_MAX_CHARS;
use crate::config::{KeyField, PartitionKey};
use crate::record::{record_id, SourceFile};

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
        let mode = match &self.mode {
            PartitionKey::Extracted { from, fallback } => match extract(from, data) {
                Some(key) => return key,
                None => fallback.as_ref(),
            },
            other => other,
        };
        match mode {
            PartitionKey::Random => self.random.u64(..).to_string(),
            PartitionKey::Deterministic => {
                let mut key = String::with_capacity(16);
                let _ = write!(key, "{:016x}", xxhash_rust::xxh3::xxh3_64(data));
                key
            }
            PartitionKey::Fixed(key) => key.clone(),
            PartitionKey::None => String::new(),
            PartitionKey::RecordId => record_id(file, offset),
            // Fallbacks are never extracted (the config does not allow it); a fixed record
            // id keeps the key defined if one ever were.
            PartitionKey::Extracted { .. } => record_id(file, offset),
        }
    }
}

/// The key `from` finds in `data`, cut to 256 characters; `None` if it finds nothing (or an
/// empty value).
fn extract(from: &KeyField, data: &[u8]) -> Option<String> {
    let found = match from {
        KeyField::Regex(pattern) => {
            let captures = pattern.regex.captures(data)?;
            let matched = captures.get(1).or_else(|| captures.get(0))?;
            String::from_utf8_lossy(matched.as_bytes()).into_owned()
        }
        KeyField::Json(path) => {
            let record: serde_json::Value = serde_json::from_slice(data).ok()?;
            let value = path
                .iter()
                .try_fold(&record, |value, field| value.get(field.as_str()))?;
            match value {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                _ => return None,
            }
        }
    };
    if found.is_empty() {
        return None;
    }
    Some(match found.char_indices().nth(PARTITION_KEY_MAX_CHARS) {
        Some((cut, _)) => found[..cut].to_owned(),
        None => found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;
    use crate::record::{FileId, Head};
    use std::sync::Arc;

    fn regex(text: &str, fallback: PartitionKey) -> PartitionKey {
        PartitionKey::Extracted {
            from: KeyField::Regex(Pattern {
                text: text.into(),
                regex: regex::bytes::Regex::new(text).expect("valid"),
            }),
            fallback: Box::new(fallback),
        }
    }

    fn json(path: &str, fallback: PartitionKey) -> PartitionKey {
        PartitionKey::Extracted {
            from: KeyField::Json(path.split('.').map(str::to_owned).collect()),
            fallback: Box::new(fallback),
        }
    }

    #[test]
    fn a_regex_key_is_the_first_group_or_the_whole_match() {
        let f = file(None);
        let mut by_user = KeyChooser::new(regex(r"user=(\w+)", PartitionKey::Fixed("none".into())));
        assert_eq!(by_user.key_for(b"GET / user=alice 200\n", &f, 0), "alice");
        assert_eq!(by_user.key_for(b"GET / 200\n", &f, 0), "none", "no match");
        assert_eq!(by_user.key_for(b"user= x\n", &f, 0), "none", "empty group");
        let mut whole = KeyChooser::new(regex(r"\d+\.\d+\.\d+\.\d+", PartitionKey::Deterministic));
        assert_eq!(whole.key_for(b"10.0.0.7 - - GET\n", &f, 0), "10.0.0.7");
        let invalid_utf8 = whole.key_for(b"\xff\xfe no address\n", &f, 0);
        assert_eq!(
            invalid_utf8.len(),
            16,
            "the deterministic fallback: {invalid_utf8}"
        );
    }

    #[test]
    fn a_json_key_is_the_field_at_its_path() {
        let f = file(None);
        let mut chooser = KeyChooser::new(json("request.id", PartitionKey::Fixed("fb".into())));
        assert_eq!(
            chooser.key_for(br#"{"request":{"id":"r-1","n":2}}"#, &f, 0),
            "r-1"
        );
        assert_eq!(chooser.key_for(b"{\"request\":{\"id\":42}}\n", &f, 0), "42");
        assert_eq!(
            chooser.key_for(br#"{"request":{"id":true}}"#, &f, 0),
            "true"
        );
        for missing in [
            &br#"{"request":{"other":1}}"#[..],
            br#"{"request":{"id":{"deep":1}}}"#,
            br#"{"request":{"id":""}}"#,
            br#"{"request":"flat"}"#,
            b"not json at all\n",
            br#"["request"]"#,
        ] {
            assert_eq!(
                chooser.key_for(missing, &f, 0),
                "fb",
                "{:?}",
                String::from_utf8_lossy(missing)
            );
        }
    }

    #[test]
    fn extracted_keys_are_cut_to_256_characters() {
        let f = file(None);
        let long = format!("{{\"k\":\"{}\"}}", "é".repeat(300));
        let mut chooser = KeyChooser::new(json("k", PartitionKey::Random));
        let key = chooser.key_for(long.as_bytes(), &f, 0);
        assert_eq!(key.chars().count(), 256);
        assert!(
            key.len()
                <= PartitionKey::Random
                    .max_len()
                    .max(crate::config::EXTRACTED_KEY_MAX_BYTES)
        );
        let exact = format!("{{\"k\":\"{}\"}}", "a".repeat(256));
        assert_eq!(chooser.key_for(exact.as_bytes(), &f, 0).len(), 256);
    }

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
