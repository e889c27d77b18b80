//! Kinesis Data Streams through `aws-sdk-kinesis`: `PutRecords` for data and
//! `DescribeStreamSummary` for the start-up check, with errors sorted by what to do about them.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{is_throttle_code, PutError, PutRecords, RecordFailure, StreamStatus};
use crate::record::OutRecord;

pub struct KinesisClient {
    client: aws_sdk_kinesis::Client,
    stream: String,
    region: String,
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
        stream: String,
        region: String,
        spread: bool,
    ) -> Self {
        Self {
            client,
            stream,
            region,
            spread: spread.then(|| AtomicU64::new(fastrand::u64(..))),
        }
    }

    fn classify<E>(&self, error: &SdkError<E, HttpResponse>) -> PutError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let detail = DisplayErrorContext(error).to_string();
        match error {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                classify_service_error(
                    service.err().code(),
                    service.err().message(),
                    status,
                    &self.stream,
                    &self.region,
                )
            }
            SdkError::TimeoutError(_) => PutError::Transient {
                message: "the call timed out".into(),
            },
            SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
                PutError::Unreachable { message: detail }
            }
            _ if mentions_credentials(&detail) => no_credentials(detail),
            SdkError::ResponseError(_) => PutError::Transient { message: detail },
            _ => PutError::Transient { message: detail },
        }
    }
}

fn mentions_credentials(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("credential") || lower.contains("identity")
}

fn no_credentials(detail: String) -> PutError {
    PutError::Configuration {
        message: format!("no usable AWS credentials ({detail})"),
        hint: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure a profile, or run with an instance or task role".into(),
    }
}

/// Sorts a service's error answer by what to do about it.
pub fn classify_service_error(
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
    stream: &str,
    region: &str,
) -> PutError {
    let code = code.unwrap_or("");
    let message = match message {
        Some(text) if !text.is_empty() => format!("{code}: {text}"),
        _ if !code.is_empty() => code.to_owned(),
        _ => format!("HTTP status {status}"),
    };
    let lower = message.to_ascii_lowercase();
    match code {
        throttle if is_throttle_code(throttle) => PutError::Throttled { message },
        "ResourceNotFoundException" => PutError::Configuration {
            message: format!("stream `{stream}` was not found in region {region} ({message})"),
            hint: "check kinesis_stream and aws.region, or create the stream".into(),
        },
        "AccessDeniedException" | "AccessDenied" => PutError::AccessDenied { message },
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" | "InvalidClientTokenId" | "IncompleteSignature" | "MissingAuthenticationToken" | "SignatureDoesNotMatch" => {
            PutError::Configuration {
                message: format!("the credentials were rejected ({message})"),
                hint: "check the access key, secret key and session token, or the profile or role that provides them".into(),
            }
        }
        kms if kms.starts_with("KMS") => PutError::Configuration {
            message: format!("the stream's KMS key cannot be used ({message})"),
            hint: "check the key's state and that the credentials may use it (kms:GenerateDataKey)".into(),
        },
        "InvalidArgumentException" | "ValidationException" | "SerializationException"
            if lower.contains("size") || lower.contains("exceed") || lower.contains("length") || lower.contains("too large") =>
        {
            PutError::TooLarge { message }
        }
        _ if status == 413 => PutError::TooLarge { message },
        _ if status >= 500 || code == "InternalFailure" || code == "ServiceUnavailable" => PutError::Transient { message },
        _ => PutError::Configuration {
            message: format!("the stream rejected the call ({message})"),
            hint: "check the flow's settings against the stream".into(),
        },
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
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        let results = output.records();
        if results.len() != records.len() {
            return Err(PutError::Transient {
                message: format!(
                    "the answer listed {} results for {} records",
                    results.len(),
                    records.len()
                ),
            });
        }
        let failures = results
            .iter()
            .enumerate()
            .filter_map(|(index, result)| {
                result.error_code().map(|code| RecordFailure {
                    index,
                    code: code.to_owned(),
                    message: result.error_message().unwrap_or_default().to_owned(),
                })
            })
            .collect();
        Ok(failures)
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        let output = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream)
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: &str, message: &str, status: u16) -> PutError {
        classify_service_error(Some(code), Some(message), status, "logs", "eu-west-1")
    }

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

    #[test]
    fn throttling_is_retried_quietly() {
        assert!(matches!(
            classify("ProvisionedThroughputExceededException", "slow down", 400),
            PutError::Throttled { .. }
        ));
        assert!(matches!(
            classify("KMSThrottlingException", "", 400),
            PutError::Throttled { .. }
        ));
    }

    #[test]
    fn a_missing_stream_names_stream_region_and_fix() {
        let error = classify(
            "ResourceNotFoundException",
            "Stream logs under account 1 not found.",
            400,
        );
        let text = error.to_string();
        assert!(
            text.contains("stream `logs` was not found in region eu-west-1"),
            "{text}"
        );
        assert!(
            text.contains("check kinesis_stream and aws.region"),
            "{text}"
        );
        assert!(error.needs_operator());
    }

    #[test]
    fn size_errors_and_413_mean_too_large() {
        assert!(matches!(
            classify(
                "InvalidArgumentException",
                "Records size exceeds 5 MB limit",
                400
            ),
            PutError::TooLarge { .. }
        ));
        assert!(matches!(
            classify_service_error(None, None, 413, "s", "r"),
            PutError::TooLarge { .. }
        ));
    }

    #[test]
    fn server_errors_are_transient_and_credentials_need_an_operator() {
        assert!(matches!(
            classify("InternalFailure", "", 500),
            PutError::Transient { .. }
        ));
        assert!(classify("UnrecognizedClientException", "bad token", 400).needs_operator());
        assert!(classify("KMSDisabledException", "off", 400).needs_operator());
        assert!(matches!(
            classify("AccessDeniedException", "no", 400),
            PutError::AccessDenied { .. }
        ));
    }
}
