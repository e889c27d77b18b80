//! The fault server's describe and list operations: `DescribeStreamSummary` (which a test can
//! deny, or make name a record size limit), `ListShards` and `DescribeDeliveryStream`. They are
//! never faulted.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use super::handler::{error_response, json_response};
use super::state::Shared;
use crate::support::kinesis_server::answers::{
    delivery_stream_description, stream_description_summary,
};
use crate::support::kinesis_server::protocol::Wire;
use crate::support::kinesis_server::ACCOUNT;

/// The stream a describe request names: a Kinesis stream by name or ARN, or a delivery stream.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StreamRef<'a> {
    #[serde(borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delivery_stream_name: Option<Cow<'a, str>>,
}

impl StreamRef<'_> {
    fn name(&self) -> &str {
        stream_name(self.stream_name.as_deref(), self.stream_arn.as_deref())
            .or(self.delivery_stream_name.as_deref())
            .unwrap_or("stream")
    }
}

/// A Kinesis stream's name, given by name or by ARN.
pub(super) fn stream_name<'a>(name: Option<&'a str>, arn: Option<&'a str>) -> Option<&'a str> {
    name.or_else(|| arn.and_then(|arn| arn.rsplit('/').next()))
}

pub(super) fn describe_stream_summary(
    shared: &Shared,
    wire: Wire,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let (denied, max_record_size_kib, open_shards) = {
        let state = shared.lock();
        (
            state.faults.describe_denied,
            state.faults.max_record_size_kib,
            state.shards.open_count(),
        )
    };
    if denied {
        return describe_denied(shared, wire, "kinesis:DescribeStreamSummary");
    }
    let request: StreamRef = serde_json::from_slice(body).unwrap_or_default();
    let mut summary =
        stream_description_summary(request.name(), shared.created, open_shards as u64);
    if let Some(kib) = max_record_size_kib {
        summary["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] = kib.into();
    }
    json_response(shared, StatusCode::OK, summary.to_string())
}

fn describe_denied(shared: &Shared, wire: Wire, action: &str) -> Response<Full<Bytes>> {
    error_response(
        shared,
        wire,
        StatusCode::BAD_REQUEST,
        "AccessDeniedException",
        &format!("User: arn:aws:iam::{ACCOUNT}:user/test is not authorized to perform: {action}"),
    )
}

/// Every shard, open and closed, in one page: the agent tells the open ones by their missing
/// `EndingSequenceNumber`.
pub(super) fn list_shards(shared: &Shared) -> Response<Full<Bytes>> {
    let shards = shared.lock().shards.list_shards_json();
    json_response(shared, StatusCode::OK, shards.to_string())
}

pub(super) fn describe_delivery_stream(shared: &Shared, body: &[u8]) -> Response<Full<Bytes>> {
    let request: StreamRef = serde_json::from_slice(body).unwrap_or_default();
    let description = delivery_stream_description(request.name(), shared.created);
    json_response(shared, StatusCode::OK, description.to_string())
}
