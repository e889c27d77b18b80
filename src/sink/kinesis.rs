//! Kinesis Data Streams: `PutRecords` for data, written by kinship itself ([`crate::sink::wire`],
//! sent through [`crate::sink::transport`]) or by `aws-sdk-kinesis` (`data_path: sdk`);
//! `DescribeStreamSummary` and `ListShards` through the SDK. Errors are sorted by what to do
//! about them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::direct::{self, Named};
use super::service_error::classify_sdk_error;
use super::{refused_records, PutError, PutRecords, RecordFailure, StreamStatus};
use crate::config::Destination;
use crate::record::OutRecord;
use crate::shard_map::{shard_for, Shard, ShardMap};
use crate::sink::transport::AwsCaller;
use crate::sink::wire::response::scan_put_records;
use crate::sink::wire::{
    put_records_body, put_records_body_len, Entry, HashKey, StreamRef, WireFormat,
    PUT_RECORDS_TARGET,
};

pub struct KinesisClient {
    client: aws_sdk_kinesis::Client,
    /// The stream's name, and its ARN when the config names it by ARN (then calls use the ARN).
    stream_name: String,
    stream_arn: Option<String>,
    region: String,
    /// The stream's shards, kept for flows that aggregate.
    shards: Option<Arc<ShardMap>>,
    /// Set with `explicit_hash_key: spread`: records are numbered for [`spread_hash_key`].
    spread: Option<AtomicU64>,
    /// kinship's own `PutRecords` calls; `None`: through the SDK (`data_path: sdk`).
    direct: Option<DirectPut>,
}

/// A flow that does not aggregate reads one answer in this many, on average, for the shards
/// its records landed on.
const ROUTING_CHECK_EVERY: u64 = 16;

/// What kinship's own `PutRecords` calls need.
pub struct DirectPut {
    pub caller: AwsCaller,
    pub format: WireFormat,
}

/// 2^128 divided by the golden ratio: stepping by it visits the hash key space evenly.
const GOLDEN_STEP: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;

/// The explicit hash key of the `index`-th record: consecutive records land evenly over the
/// 128-bit hash key space (a golden-ratio sequence), so over any equal split into shards,
/// whatever the partition keys say.
pub fn spread_hash_key(index: u64) -> String {
    spread_hash_value(index).to_string()
}

/// [`spread_hash_key`] as a number.
fn spread_hash_value(index: u64) -> u128 {
    u128::from(index).wrapping_mul(GOLDEN_STEP)
}

impl KinesisClient {
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream: &Destination,
        region: String,
        spread: bool,
        shards: Option<Arc<ShardMap>>,
        direct: Option<DirectPut>,
    ) -> Self {
        Self {
            client,
            stream_name: stream.name.clone(),
            stream_arn: stream.arn.clone(),
            region,
            shards,
            spread: spread.then(|| AtomicU64::new(fastrand::u64(..))),
            direct,
        }
    }

    /// The stream as messages show it: its ARN when the config names it so.
    fn shown(&self) -> &str {
        self.stream_arn.as_deref().unwrap_or(&self.stream_name)
    }

    /// The stream as the body names it: by ARN when the config does.
    fn stream_ref(&self) -> StreamRef<'_> {
        match &self.stream_arn {
            Some(arn) => StreamRef::Arn(arn),
            None => StreamRef::Name(&self.stream_name),
        }
    }

    /// The body's entries for `records`; `spread` gives the hash key of each record that has
    /// none of its own when the flow spreads records.
    fn entries<'a>(
        &self,
        records: &'a [OutRecord],
        mut spread: impl FnMut(&AtomicU64) -> u128,
    ) -> Vec<Entry<'a>> {
        records
            .iter()
            .map(|record| Entry {
                data: &record.data,
                partition_key: &record.partition_key,
                explicit_hash_key: match &record.explicit_hash_key {
                    Some(key) => Some(HashKey::Text(key)),
                    None => self
                        .spread
                        .as_ref()
                        .map(|next| HashKey::Number(spread(next))),
                },
            })
            .collect()
    }

    /// One `PutRecords` call written and sent by kinship: the body straight from the records'
    /// bytes, the answer skimmed for the refused records.
    async fn put_direct(
        &self,
        direct: &DirectPut,
        records: &[OutRecord],
    ) -> Result<Vec<RecordFailure>, PutError> {
        let mut body = Vec::new();
        let entries = self.entries(records, |next| {
            spread_hash_value(next.fetch_add(1, Ordering::Relaxed))
        });
        put_records_body(direct.format, self.stream_ref(), &entries, &mut body);
        drop(entries);
        let named = Named {
            stream: self.shown(),
            region: &self.region,
            key: "kinesis_stream",
        };
        let want_shard_ids = self.shards.is_some() && self.check_routing_now(records);
        let answer = direct::call(
            &direct.caller,
            PUT_RECORDS_TARGET,
            direct.format,
            body,
            records.len(),
            &named,
            |body| scan_put_records(direct.format, body, want_shard_ids),
        )
        .await?;
        if let (Some(map), true) = (&self.shards, want_shard_ids) {
            check_routing(
                map,
                records,
                answer.shard_ids.iter().map(|id| Some(id.as_str())),
            );
        }
        Ok(direct::refused(answer))
    }

    /// Whether this call's answer is read for the shards its records landed on: always for
    /// aggregated records (each meant for one shard), and one call in [`ROUTING_CHECK_EVERY`]
    /// otherwise, drawn at random (calls built per shard take turns, so a fixed step could
    /// always land on the same shards): that finds a resharding soon enough at a fraction of
    /// the reading.
    fn check_routing_now(&self, records: &[OutRecord]) -> bool {
        records
            .first()
            .is_some_and(|record| record.explicit_hash_key.is_some())
            || fastrand::u64(..ROUTING_CHECK_EVERY) == 0
    }

    fn classify<E>(&self, error: &SdkError<E, HttpResponse>) -> PutError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classify_sdk_error(error, self.shown(), &self.region, "kinesis_stream")
    }
}

impl PutRecords for KinesisClient {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        if let Some(direct) = &self.direct {
            return self.put_direct(direct, records).await;
        }
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let explicit_hash_key = match &record.explicit_hash_key {
                Some(key) => Some(key.to_string()),
                None => self
                    .spread
                    .as_ref()
                    .map(|next| spread_hash_key(next.fetch_add(1, Ordering::Relaxed))),
            };
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(record.data.to_vec()))
                .partition_key(record.partition_key.clone())
                .set_explicit_hash_key(explicit_hash_key)
                .build()
                .map_err(|error| PutError::Transient {
                    message: format!("cannot build the request: {error}"),
                })?;
            entries.push(entry);
        }
        let output = self
            .client
            .put_records()
            .set_stream_name(self.stream_arn.is_none().then(|| self.stream_name.clone()))
            .set_stream_arn(self.stream_arn.clone())
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        if let Some(map) = &self.shards {
            check_routing(
                map,
                records,
                output.records().iter().map(|result| result.shard_id()),
            );
        }
        refused_records(
            records.len(),
            output
                .records()
                .iter()
                .map(|result| (result.error_code(), result.error_message())),
        )
    }

    fn shards(&self) -> Option<Arc<ShardMap>> {
        self.shards.clone()
    }

    /// kinship's own body is the only copy: its exact size (explicit hash keys counted at
    /// their longest).
    fn request_bytes(&self, records: &[OutRecord]) -> usize {
        let Some(direct) = &self.direct else {
            return super::request_bytes(records);
        };
        let entries = self.entries(records, |_| u128::MAX);
        put_records_body_len(direct.format, self.stream_ref(), &entries)
    }

    async fn refresh_shards(&self) -> Result<usize, PutError> {
        let Some(map) = &self.shards else {
            return Ok(0);
        };
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                // A continued listing names nothing but the token.
                Some(token) => self.client.list_shards().next_token(token),
                None => self
                    .client
                    .list_shards()
                    .set_stream_name(self.stream_arn.is_none().then(|| self.stream_name.clone()))
                    .set_stream_arn(self.stream_arn.clone()),
            };
            let output = request
                .send()
                .await
                .map_err(|error| self.classify(&error))?;
            for shard in output.shards() {
                let open = shard
                    .sequence_number_range()
                    .is_none_or(|range| range.ending_sequence_number().is_none());
                let range = shard.hash_key_range();
                let bounds = range.and_then(|range| {
                    Some((
                        range.starting_hash_key().parse::<u128>().ok()?,
                        range.ending_hash_key().parse::<u128>().ok()?,
                    ))
                });
                if let (true, Some((start, end))) = (open, bounds) {
                    shards.push(Shard {
                        id: shard.shard_id().to_owned(),
                        start,
                        end,
                    });
                }
            }
            next_token = output.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        let count = shards.len();
        map.replace(shards);
        Ok(count)
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        let output = self
            .client
            .describe_stream_summary()
            .set_stream_name(self.stream_arn.is_none().then(|| self.stream_name.clone()))
            .set_stream_arn(self.stream_arn.clone())
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        let summary = output.stream_description_summary();
        Ok(StreamStatus {
            status: summary.map_or_else(
                || "UNKNOWN".to_owned(),
                |s| s.stream_status().as_str().to_owned(),
            ),
            open_shards: summary.map(|s| s.open_shard_count()),
            max_record_bytes: summary
                .and_then(|s| s.max_record_size_in_kib())
                .and_then(|kib| usize::try_from(kib).ok())
                .map(|kib| kib * 1024),
        })
    }
}

/// Asks for the shard map to be learnt again when the service put a record on a shard the
/// map does not know, or an aggregated record on another shard than the map says (the stream
/// was resharded).
fn check_routing<'a>(
    map: &ShardMap,
    records: &[OutRecord],
    stored_on: impl Iterator<Item = Option<&'a str>>,
) {
    let shards = map.snapshot();
    let mut last_known: Option<&str> = None;
    let moved = records.iter().zip(stored_on).any(|(record, stored_on)| {
        let Some(stored_on) = stored_on else {
            return false;
        };
        if !shards.is_empty() && last_known != Some(stored_on) {
            if !shards.iter().any(|shard| shard.id == stored_on) {
                return true;
            }
            last_known = Some(stored_on);
        }
        let Some(key) = &record.explicit_hash_key else {
            return false;
        };
        let expected = key
            .parse::<u128>()
            .ok()
            .and_then(|hash| shard_for(&shards, hash))
            .and_then(|index| shards.get(index));
        expected.is_some_and(|shard| shard.id != stored_on)
    });
    if moved {
        map.request_refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_hash_keys_fill_equal_shards_evenly() {
        for shards in [2u128, 3, 4, 7, 16] {
            let width = u128::MAX / shards + 1;
            let mut counts = vec![0u32; shards as usize];
            for index in 1_000..2_000 {
                let key: u128 = spread_hash_key(index).parse().expect("decimal");
                counts[(key / width) as usize] += 1;
            }
            let (least, most) = (
                counts.iter().min().copied().unwrap_or_default(),
                counts.iter().max().copied().unwrap_or_default(),
            );
            assert!(most - least <= 3, "{shards} shards: {counts:?}");
        }
        assert_eq!(spread_hash_key(0), "0");
        assert!(spread_hash_key(u64::MAX).len() <= 39);
    }
}

#[cfg(test)]
mod routing_tests {
    use super::*;
    use bytes::Bytes;

    fn stored_on(shard: &str) -> Option<&str> {
        Some(shard)
    }

    fn aggregate(hash_key: u128) -> OutRecord {
        OutRecord {
            explicit_hash_key: Some(hash_key.to_string().into_boxed_str()),
            lines: 10,
            ..OutRecord::line(Bytes::from_static(b"x"), "k".into(), 0, 0)
        }
    }

    #[test]
    fn a_record_stored_on_an_unexpected_shard_asks_for_the_map_again() {
        let map = ShardMap::new();
        map.replace(vec![
            Shard {
                id: "shardId-000000000000".into(),
                start: 0,
                end: u128::MAX / 2,
            },
            Shard {
                id: "shardId-000000000001".into(),
                start: u128::MAX / 2 + 1,
                end: u128::MAX,
            },
        ]);
        let records = [aggregate(0), aggregate(u128::MAX / 2 + 1)];
        check_routing(
            &map,
            &records,
            [
                stored_on("shardId-000000000000"),
                stored_on("shardId-000000000001"),
            ]
            .into_iter(),
        );
        assert!(
            !map.refresh_pending(),
            "no refresh while records land where expected"
        );
        // After a split, the second half moved to a new shard.
        check_routing(
            &map,
            &records,
            [
                stored_on("shardId-000000000000"),
                stored_on("shardId-000000000002"),
            ]
            .into_iter(),
        );
        assert!(map.refresh_pending(), "a refresh was asked for");
    }

    #[test]
    fn a_plain_record_stored_on_a_shard_the_map_does_not_know_asks_for_the_map_again() {
        let map = ShardMap::new();
        map.replace(vec![Shard {
            id: "shardId-000000000000".into(),
            start: 0,
            end: u128::MAX,
        }]);
        let records = [
            OutRecord::line(Bytes::from_static(b"a"), "a".into(), 0, 0),
            OutRecord::line(Bytes::from_static(b"b"), "b".into(), 1, 0),
        ];
        let known = [
            stored_on("shardId-000000000000"),
            stored_on("shardId-000000000000"),
        ];
        check_routing(&map, &records, known.into_iter());
        assert!(!map.refresh_pending());
        // The shard was split: its children take the records.
        let split = [
            stored_on("shardId-000000000001"),
            stored_on("shardId-000000000002"),
        ];
        check_routing(&map, &records, split.into_iter());
        assert!(map.refresh_pending(), "a refresh was asked for");
    }
}
