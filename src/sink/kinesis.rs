//! Kinesis Data Streams through `aws-sdk-kinesis`: `PutRecords` for data and
//! `DescribeStreamSummary` for the start-up check, with errors sorted by what to do about them.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::service_error::classify_sdk_error;
use super::{refused_records, PutError, PutRecords, RecordFailure, StreamStatus};
use crate::aws::{Identity, IdentityProbe};
use crate::config::Destination;
use crate::record::OutRecord;

pub struct KinesisClient {
    client: aws_sdk_kinesis::Client,
    /// The stream's name, and its ARN when the config names it by ARN (then calls use the ARN).
    stream_name: String,
    stream_arn: Option<String>,
    region: String,
    identity: Option<IdentityProbe>,
    /// Set with `explicit_hash_key: spread`: records are numbered for [`spread_hash_key`].
    spread: Option<AtomicU64>,
}

/// 2^128 divided by the golden ratio: stepping by it visits the hash key space evenly.
const GOLDEN_STEP: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;

/// The explicit hash key of the `index`-th record: consecutive records land evenly over the
/// 128-bit hash key space (a golden-ratio sequence), so over any equal split into shards,
/// whatever the partition keys say.
pub fn spread_hash_key(index: u64) -> String {
    u128::from(index).wrapping_mul(GOLDEN_STEP).to_string()
}

impl KinesisClient {
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream: &Destination,
        region: String,
        spread: bool,
        identity: Option<IdentityProbe>,
    ) -> Self {
        Self {
            client,
            stream_name: stream.name.clone(),
            stream_arn: stream.arn.clone(),
            region,
            identity,
            spread: spread.then(|| AtomicU64::new(fastrand::u64(..))),
        }
    }

    fn classify<E>(&self, error: &SdkError<E, HttpResponse>) -> PutError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let shown = self.stream_arn.as_deref().unwrap_or(&self.stream_name);
        classify_sdk_error(error, shown, &self.region, "kinesis_stream")
    }
}

impl PutRecords for KinesisClient {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let explicit_hash_key = self
                .spread
                .as_ref()
                .map(|next| spread_hash_key(next.fetch_add(1, Ordering::Relaxed)));
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
        refused_records(
            records.len(),
            output
                .records()
                .iter()
                .map(|result| (result.error_code(), result.error_message())),
        )
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

    async fn identity(&self) -> Result<Option<Identity>, PutError> {
        match &self.identity {
            Some(probe) => probe.identity().await.map(Some),
            None => Ok(None),
        }
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
