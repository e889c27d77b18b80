//! Amazon Data Firehose: `PutRecordBatch` for data, written by kinship itself
//! ([`crate::sink::wire`], sent through [`crate::sink::transport`]) or by `aws-sdk-firehose`
//! (`data_path: sdk`); `DescribeDeliveryStream` for the start-up check through the SDK. Records
//! go as they were read, newline included, so the objects Firehose writes stay one line per
//! line.

use aws_sdk_firehose::config::http::HttpResponse;
use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{DeliveryStreamType, Record};

use super::direct::{self, Named};
use super::service_error::classify_sdk_error;
use super::{refused_records, PutError, PutRecords, RecordFailure, StreamStatus};
use crate::config::Destination;
use crate::record::OutRecord;
use crate::sink::transport::AwsCaller;
use crate::sink::wire::response::scan_put_record_batch;
use crate::sink::wire::{
    put_record_batch_body, put_record_batch_body_len, WireFormat, PUT_RECORD_BATCH_TARGET,
};

pub struct FirehoseClient {
    client: aws_sdk_firehose::Client,
    /// `PutRecordBatch` takes the name only; an ARN in the config gave the name and region.
    stream_name: String,
    region: String,
    /// kinship's own `PutRecordBatch` calls; `None`: through the SDK (`data_path: sdk`).
    direct: Option<AwsCaller>,
}

impl FirehoseClient {
    pub fn new(
        client: aws_sdk_firehose::Client,
        stream: &Destination,
        region: String,
        direct: Option<AwsCaller>,
    ) -> Self {
        Self {
            client,
            stream_name: stream.name.clone(),
            region,
            direct,
        }
    }

    /// One `PutRecordBatch` call written and sent by kinship (AWS JSON 1.1).
    async fn put_direct(
        &self,
        caller: &AwsCaller,
        records: &[OutRecord],
    ) -> Result<Vec<RecordFailure>, PutError> {
        let mut body = Vec::new();
        {
            let data: Vec<&[u8]> = records.iter().map(|record| &record.data[..]).collect();
            put_record_batch_body(&self.stream_name, &data, &mut body);
        }
        let named = Named {
            stream: &self.stream_name,
            region: &self.region,
            key: "firehose_stream",
        };
        let answer = direct::call(
            caller,
            PUT_RECORD_BATCH_TARGET,
            WireFormat::Json,
            body,
            records.len(),
            &named,
            scan_put_record_batch,
        )
        .await?;
        Ok(direct::refused(answer))
    }

    fn classify<E>(&self, error: &SdkError<E, HttpResponse>) -> PutError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classify_sdk_error(error, &self.stream_name, &self.region, "firehose_stream")
    }
}

impl PutRecords for FirehoseClient {
    async fn put_records(&self, records: &[OutRecord]) -> Result<Vec<RecordFailure>, PutError> {
        if let Some(caller) = &self.direct {
            return self.put_direct(caller, records).await;
        }
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let entry = Record::builder()
                .data(Blob::new(record.data.to_vec()))
                .build()
                .map_err(|error| PutError::Transient {
                    message: format!("cannot build the request: {error}"),
                })?;
            entries.push(entry);
        }
        let output = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        refused_records(
            records.len(),
            output
                .request_responses()
                .iter()
                .map(|result| (result.error_code(), result.error_message())),
        )
    }

    /// kinship's own body is the only copy: its exact size.
    fn request_bytes(&self, records: &[OutRecord]) -> usize {
        if self.direct.is_none() {
            return super::request_bytes(records);
        }
        let data: Vec<&[u8]> = records.iter().map(|record| &record.data[..]).collect();
        put_record_batch_body_len(&self.stream_name, &data)
    }

    async fn describe(&self) -> Result<StreamStatus, PutError> {
        let output = self
            .client
            .describe_delivery_stream()
            .delivery_stream_name(&self.stream_name)
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        let description = output.delivery_stream_description();
        let kind = description.map(|d| d.delivery_stream_type());
        if let Some(DeliveryStreamType::KinesisStreamAsSource) = kind {
            return Err(PutError::Configuration {
                message: format!(
                    "Firehose stream `{}` reads from a Kinesis stream and takes no direct writes",
                    self.stream_name
                ),
                hint: "send to its source Kinesis stream with kinesis_stream, or use a Direct PUT Firehose stream".into(),
            });
        }
        Ok(StreamStatus {
            status: description.map_or_else(
                || "UNKNOWN".to_owned(),
                |d| d.delivery_stream_status().as_str().to_owned(),
            ),
            open_shards: None,
            max_record_bytes: None,
        })
    }
}
