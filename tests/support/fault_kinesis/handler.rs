//! Takes each call of the fault server to its operation, after counting it and checking its
//! signature, and answers it now, later or not at all; and the answers and errors the
//! operations share, with a fresh request id each.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::auth::authenticate;
use super::describe::{describe_delivery_stream, describe_stream_summary, list_shards};
use super::put::{put_record_batch, put_records};
use super::state::Shared;
use super::sts::{sts, sts_error};
use crate::support::kinesis_server::protocol::{
    self, Wire, DESCRIBE_DELIVERY_STREAM, DESCRIBE_STREAM_SUMMARY, LIST_SHARDS, PUT_RECORDS,
    PUT_RECORD_BATCH,
};

/// The service's way of leaving a call unanswered: returning it makes hyper close the
/// connection without writing a response.
#[derive(Debug)]
pub(super) struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the fault server closed the connection without an answer, on purpose")
    }
}

impl std::error::Error for Unanswered {}

/// What to do with a call once it has been handled.
pub(super) enum Reply {
    Now(Response<Full<Bytes>>),
    After(Duration, Response<Full<Bytes>>),
    Unanswered,
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Unanswered> {
    let (parts, body) = request.into_parts();
    // A client that cannot finish sending its request gets no answer either.
    let body = body.collect().await.map_err(|_| Unanswered)?.to_bytes();
    shared.lock().stats.calls += 1;
    let wire = Wire::of(&parts.headers);
    let target = protocol::target(&parts.headers);
    let is_sts = target.is_empty() && body.starts_with(b"Action=");
    let service = if is_sts {
        "sts"
    } else if target.starts_with("Firehose_") {
        "firehose"
    } else {
        "kinesis"
    };
    let signer = match authenticate(&shared, &parts, &body, service) {
        Ok(signer) => {
            shared.lock().stats.signatures_verified += 1;
            signer
        }
        Err(refused) => {
            shared.lock().stats.signatures_refused += 1;
            return Ok(if is_sts {
                sts_error(&shared, &refused)
            } else {
                error_response(
                    &shared,
                    wire,
                    StatusCode::BAD_REQUEST,
                    refused.code,
                    &refused.message,
                )
            });
        }
    };
    if matches!(target, PUT_RECORDS | PUT_RECORD_BATCH) {
        shared
            .lock()
            .sts
            .signed
            .push((signer.clone(), SystemTime::now()));
    }
    let reply = match target {
        "" if is_sts => Reply::Now(sts(&shared, &body, &signer)),
        PUT_RECORDS => put_records(&shared, wire, &body),
        PUT_RECORD_BATCH => put_record_batch(&shared, wire, &body),
        DESCRIBE_STREAM_SUMMARY => Reply::Now(describe_stream_summary(&shared, wire, &body)),
        LIST_SHARDS => Reply::Now(list_shards(&shared)),
        DESCRIBE_DELIVERY_STREAM => Reply::Now(describe_delivery_stream(&shared, &body)),
        other => Reply::Now(invalid(
            &shared,
            wire,
            "UnknownOperationException",
            &format!("operation {other:?} is not served here"),
        )),
    };
    match reply {
        Reply::Now(response) => Ok(response),
        Reply::After(delay, response) => {
            tokio::time::sleep(delay).await;
            Ok(response)
        }
        Reply::Unanswered => Err(Unanswered),
    }
}

pub(super) fn malformed(shared: &Shared, error: &serde_json::Error) -> Response<Full<Bytes>> {
    invalid(
        shared,
        Wire::Json,
        "SerializationException",
        &format!("the request body is not a valid request: {error}"),
    )
}

/// A 400 for a request the service would refuse whatever the faults.
pub(super) fn invalid(
    shared: &Shared,
    wire: Wire,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    shared.lock().stats.invalid_calls += 1;
    error_response(shared, wire, StatusCode::BAD_REQUEST, code, message)
}

/// `{"__type": code, "message": message}` in the request's format, as the services answer.
pub(super) fn error_response(
    shared: &Shared,
    wire: Wire,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    protocol::error_response(wire, status, code, message, request_id(shared))
}

pub(super) fn json_response(
    shared: &Shared,
    status: StatusCode,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    protocol::json_response(status, body, request_id(shared))
}

/// An answer whose body is already written in `wire`'s format.
pub(super) fn wire_response(
    shared: &Shared,
    wire: Wire,
    status: StatusCode,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    protocol::wire_response(wire, status, body, request_id(shared))
}

/// A fresh `x-amzn-RequestId` value.
fn request_id(shared: &Shared) -> HeaderValue {
    HeaderValue::from_str(&shared.request_id()).expect("a request id is hex digits and dashes")
}
