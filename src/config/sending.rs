//! The checks of how a flow's records are sent: who writes the calls and in which wire
//! format, ordering, partition keys, and how records are combined and compressed.

use super::checker::Checker;
use super::limits;
use super::model::{Combine, DataPath, Delivery, KeyField, PartitionKey, WireFormat};
use super::raw::{self, RawFlow, RawPartitionKey};
use crate::compression::Compression;
use crate::secrets::quoted;

impl Checker<'_> {
    /// `data_path` and `wire_format` as written (`None`: the default, which depends on the
    /// endpoint): CBOR is Kinesis's alone, and only kinship's own data path writes it.
    pub(super) fn data_path(
        &mut self,
        key: &str,
        data_path: Option<&str>,
        wire_format: Option<&str>,
        firehose: bool,
    ) -> (DataPath, Option<WireFormat>) {
        let path = match data_path {
            None | Some("direct") => DataPath::Direct,
            Some("sdk") => DataPath::Sdk,
            Some(other) => {
                self.problem(
                    &format!("{key}.data_path"),
                    format!("`{}` is not one of direct, sdk", quoted(other)),
                );
                DataPath::Direct
            }
        };
        let format = match wire_format {
            None => None,
            Some("json") => Some(WireFormat::Json),
            Some("cbor") if firehose => {
                self.problem(
                    &format!("{key}.wire_format"),
                    "cbor applies to Kinesis streams only; Firehose speaks json",
                );
                None
            }
            Some("cbor") if path == DataPath::Sdk => {
                self.problem(
                    &format!("{key}.wire_format"),
                    "cbor needs data_path: direct; the AWS SDK sends json",
                );
                None
            }
            Some("cbor") => Some(WireFormat::Cbor),
            Some(other) => {
                self.problem(
                    &format!("{key}.wire_format"),
                    format!("`{}` is not one of cbor, json", quoted(other)),
                );
                None
            }
        };
        // The SDK speaks JSON whatever the default says.
        let format = if path == DataPath::Sdk {
            Some(WireFormat::Json)
        } else {
            format
        };
        (path, format)
    }

    /// `ordering`: `per_shard` (the default) or `none`; a Kinesis key.
    pub(super) fn ordering(
        &mut self,
        key: &str,
        ordering: Option<&str>,
        firehose: bool,
    ) -> Delivery {
        let ordering = match ordering {
            None => {
                return if firehose {
                    Delivery::Unordered
                } else {
                    Delivery::PerShard
                }
            }
            Some(written) => written,
        };
        if firehose {
            self.problem(
                &format!("{key}.ordering"),
                "ordering applies to Kinesis streams only: Firehose has no shards and keeps no order",
            );
            return Delivery::Unordered;
        }
        match ordering {
            "per_shard" => Delivery::PerShard,
            "none" => Delivery::Unordered,
            other => {
                self.problem(
                    &format!("{key}.ordering"),
                    format!("`{}` is not one of per_shard, none", quoted(other)),
                );
                Delivery::PerShard
            }
        }
    }

    /// `aggregation` (Kinesis), `pack_records` and `pack_record_bytes` (Firehose), `compression`.
    pub(super) fn combining(
        &mut self,
        key: &str,
        raw: &RawFlow,
        firehose: bool,
        spread: bool,
        max_record_bytes: usize,
    ) -> (Combine, Compression) {
        let aggregation = match raw.aggregation.as_deref() {
            None | Some("none") => false,
            Some("kpl") if firehose => {
                self.problem(
                    &format!("{key}.aggregation"),
                    "applies to Kinesis streams only; for Firehose, use pack_records",
                );
                false
            }
            Some("kpl") => true,
            Some(other) => {
                self.problem(
                    &format!("{key}.aggregation"),
                    format!("`{}` is not one of none, kpl", quoted(other)),
                );
                false
            }
        };
        if aggregation && spread {
            self.problem(
                &format!("{key}.explicit_hash_key"),
                "cannot be spread with aggregation: kpl, which routes each aggregated record to the shard of its records' keys",
            );
        }
        let pack = raw.pack_records.unwrap_or(false);
        let pack_rejected = self.rejected(&format!("{key}.pack_records"));
        if pack && !firehose {
            self.problem(
                &format!("{key}.pack_records"),
                "applies to Firehose streams only; for Kinesis, use aggregation: kpl",
            );
        }
        let record_bytes = match raw.pack_record_bytes {
            None => max_record_bytes,
            Some(_) if !pack && !pack_rejected => {
                self.problem(
                    &format!("{key}.pack_record_bytes"),
                    "is set without pack_records: true",
                );
                max_record_bytes
            }
            Some(value) => self.number(
                &format!("{key}.pack_record_bytes"),
                Some(value),
                max_record_bytes,
                limits::MIN_RECORD_BYTES..=max_record_bytes,
            ),
        };
        let compression = match raw.compression.as_deref() {
            None | Some("none") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(other) => {
                self.problem(
                    &format!("{key}.compression"),
                    format!("`{}` is not one of none, gzip, zstd", quoted(other)),
                );
                Compression::None
            }
        };
        let combine = if aggregation {
            Combine::Kpl
        } else if pack && firehose {
            Combine::Pack { record_bytes }
        } else {
            Combine::None
        };
        (combine, compression)
    }

    /// `partition_key` and `explicit_hash_key`: Kinesis keys only.
    pub(super) fn partition_keys(
        &mut self,
        key: &str,
        raw: &mut RawFlow,
        firehose: bool,
    ) -> (PartitionKey, bool) {
        if firehose {
            for (set, name) in [
                (raw.partition_key.is_some(), "partition_key"),
                (raw.explicit_hash_key.is_some(), "explicit_hash_key"),
            ] {
                if set {
                    self.problem(
                        &format!("{key}.{name}"),
                        "applies to Kinesis streams only; Firehose records have no partition key",
                    );
                }
            }
        }
        let partition_key = match raw.partition_key.take() {
            None if firehose => PartitionKey::None,
            None => PartitionKey::Random,
            Some(RawPartitionKey::Mode(mode)) => {
                self.simple_partition_key(&format!("{key}.partition_key"), &mode)
            }
            Some(RawPartitionKey::Extract(extract)) => {
                self.extracted_partition_key(&format!("{key}.partition_key"), extract)
            }
        };
        let explicit_hash_key = match raw.explicit_hash_key.as_deref() {
            None | Some("none") => false,
            Some("spread") => true,
            Some(other) => {
                self.problem(
                    &format!("{key}.explicit_hash_key"),
                    format!("`{}` is not one of none, spread", quoted(other)),
                );
                false
            }
        };
        (partition_key, explicit_hash_key)
    }

    /// `random`, `deterministic`, `record_id`, or a fixed key.
    fn simple_partition_key(&mut self, key: &str, mode: &str) -> PartitionKey {
        match mode {
            "random" => PartitionKey::Random,
            "deterministic" => PartitionKey::Deterministic,
            "record_id" => PartitionKey::RecordId,
            fixed => {
                let chars = fixed.chars().count();
                if chars == 0 || chars > limits::PARTITION_KEY_MAX_CHARS {
                    self.problem(
                        key,
                        format!(
                            "a fixed key must be 1 to {} characters, not {chars}",
                            limits::PARTITION_KEY_MAX_CHARS
                        ),
                    );
                }
                PartitionKey::Fixed(fixed.to_owned())
            }
        }
    }

    /// `{ regex: '...' }` or `{ json_field: 'a.b' }`, with an optional `fallback`.
    fn extracted_partition_key(&mut self, key: &str, raw: raw::RawKeyExtraction) -> PartitionKey {
        let fallback = match raw.fallback {
            None => PartitionKey::Random,
            Some(mode) => self.simple_partition_key(&format!("{key}.fallback"), &mode),
        };
        let from = match (raw.regex, raw.json_field) {
            (Some(text), None) => self
                .pattern(&format!("{key}.regex"), text)
                .map(KeyField::Regex),
            (None, Some(path)) => {
                let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
                if parts.iter().any(String::is_empty) {
                    self.problem(
                        &format!("{key}.json_field"),
                        format!(
                            "`{}` is not a field path such as `request.id`",
                            quoted(&path)
                        ),
                    );
                    None
                } else {
                    Some(KeyField::Json(parts))
                }
            }
            // A misspelt or mistyped one was reported already.
            _ if self.rejected(&format!("{key}.regex"))
                || self.rejected(&format!("{key}.json_field")) =>
            {
                None
            }
            _ => {
                self.problem(key, "give exactly one of `regex` and `json_field`");
                None
            }
        };
        match from {
            Some(from) => PartitionKey::Extracted {
                from,
                fallback: Box::new(fallback),
            },
            None => fallback,
        }
    }
}
