//! Chooses each record's partition key.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::warn;

use crate::config::limits::PARTITION_KEY_MAX_CHARS;
use crate::config::{KeyField, PartitionKey};
use crate::metrics::FlowMetrics;
use crate::record::{record_id, SourceFile};

#[derive(Debug)]
pub struct KeyChooser {
    mode: PartitionKey,
    random: fastrand::Rng,
    /// Where keys cut to the service's limit are counted and told, when known.
    cuts: Option<CutReport>,
}

/// Counts extracted keys cut to the limit, and warns of the first.
#[derive(Debug)]
struct CutReport {
    flow: String,
    metrics: Arc<FlowMetrics>,
    warned: bool,
}

impl KeyChooser {
    pub fn new(mode: PartitionKey) -> Self {
        Self {
            mode,
            random: fastrand::Rng::new(),
            cuts: None,
        }
    }

    /// Counts each key cut to the limit in `metrics`, and warns once, naming `flow`.
    pub fn reporting_cuts(mut self, flow: &str, metrics: Arc<FlowMetrics>) -> Self {
        self.cuts = Some(CutReport {
            flow: flow.to_owned(),
            metrics,
            warned: false,
        });
        self
    }

    /// The key for the record `data`, which starts at `offset` in `file`.
    pub fn key_for(&mut self, data: &[u8], file: &SourceFile, offset: u64) -> String {
        let mode = match &self.mode {
            PartitionKey::Extracted { from, fallback } => match extract(from, data) {
                Some(found) => return self.cut(found),
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

impl KeyChooser {
    /// `found`, cut to the service's 256 characters (the rest would be refused), counted and,
    /// the first time, told.
    fn cut(&mut self, found: String) -> String {
        let Some((cut, _)) = found.char_indices().nth(PARTITION_KEY_MAX_CHARS) else {
            return found;
        };
        if let Some(report) = &mut self.cuts {
            report
                .metrics
                .partition_keys_cut
                .fetch_add(1, Ordering::Relaxed);
            if !report.warned {
                report.warned = true;
                warn!(
                    flow = %report.flow,
                    characters = found.chars().count(),
                    limit = PARTITION_KEY_MAX_CHARS,
                    "A partition key taken from a record is longer than the service takes; cut to fit (told once per flow, counted in partition_keys_cut)."
                );
            }
        }
        found[..cut].to_owned()
    }
}

/// The key `from` finds in `data`, as found (not cut yet); `None` if it finds nothing (or an
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
    Some(found)
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

    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn cut_keys_are_counted_and_told_once_per_flow() {
        let f = file(None);
        let metrics = Arc::new(FlowMetrics::default());
        let mut chooser = KeyChooser::new(json("k", PartitionKey::Random))
            .reporting_cuts("web", Arc::clone(&metrics));
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for length in [300, 256, 1000] {
                let record = format!("{{\"k\":\"{}\"}}", "x".repeat(length));
                let key = chooser.key_for(record.as_bytes(), &f, 0);
                assert_eq!(key.len(), length.min(256));
            }
        });
        assert_eq!(metrics.partition_keys_cut.load(Ordering::Relaxed), 2);
        let logged =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(logged.matches("cut to fit").count(), 1, "{logged}");
        assert!(
            logged.contains("WARN")
                && logged.contains("flow=web")
                && logged.contains("characters=300"),
            "{logged}"
        );
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
