//! Chooses each record's partition key.

use std::fmt::Write;

use crate::config::PartitionKey;

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

    pub fn key_for(&mut self, data: &[u8]) -> String {
        match &self.mode {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_the_bound_the_framer_leaves_room_for() {
        for mode in [
            PartitionKey::Random,
            PartitionKey::Deterministic,
            PartitionKey::Fixed("fixed".into()),
        ] {
            let bound = mode.max_len();
            let mut chooser = KeyChooser::new(mode);
            for line in 0..1000u32 {
                let key = chooser.key_for(&line.to_le_bytes());
                assert!(!key.is_empty() && key.len() <= bound, "{key}");
            }
        }
    }

    #[test]
    fn deterministic_keys_depend_only_on_the_data() {
        let mut one = KeyChooser::new(PartitionKey::Deterministic);
        let mut two = KeyChooser::new(PartitionKey::Deterministic);
        assert_eq!(one.key_for(b"line\n"), two.key_for(b"line\n"));
        assert_ne!(one.key_for(b"line\n"), one.key_for(b"other\n"));
    }

    #[test]
    fn random_keys_vary() {
        let mut chooser = KeyChooser::new(PartitionKey::Random);
        let keys: std::collections::HashSet<String> =
            (0..100).map(|_| chooser.key_for(b"x")).collect();
        assert!(keys.len() > 90);
    }
}
