//! The envelope of the JSON services' calls: which operation a request is (`X-Amz-Target`),
//! which format its body is in (AWS JSON 1.1 or AWS CBOR 1.1, by `Content-Type`), and answers
//! and errors written back in that format, as the services write them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::answers::cbor;

pub const JSON_1_1: &str = "application/x-amz-json-1.1";
pub const CBOR_1_1: &str = "application/x-amz-cbor-1.1";

pub const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
pub const DESCRIBE_STREAM_SUMMARY: &str = "Kinesis_20131202.DescribeStreamSummary";
pub const LIST_SHARDS: &str = "Kinesis_20131202.ListShards";
pub const PUT_RECORD_BATCH: &str = "Firehose_20150804.PutRecordBatch";
pub const DESCRIBE_DELIVERY_STREAM: &str = "Firehose_20150804.DescribeDeliveryStream";

/// Both services take 1 to 500 records per call.
pub const MAX_RECORDS_PER_CALL: usize = 500;

/// The operation a request names in `X-Amz-Target`; empty when it names none.
pub fn target(headers: &HeaderMap) -> &str {
    headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// The format a request's body is in, and so its answer's (the describe and list operations
/// always answer in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Json,
    Cbor,
}

impl Wire {
    /// CBOR when the request says `Content-Type: application/x-amz-cbor-1.1`; JSON otherwise.
    pub fn of(headers: &HeaderMap) -> Wire {
        let cbor = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case(CBOR_1_1));
        if cbor {
            Wire::Cbor
        } else {
            Wire::Json
        }
    }
}

/// An answer with `body` of `content_type`, and `request_id` in `x-amzn-RequestId`.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    request_id: HeaderValue,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-amzn-requestid", request_id);
    response
}

pub fn json_response(
    status: StatusCode,
    body: impl Into<Bytes>,
    request_id: HeaderValue,
) -> Response<Full<Bytes>> {
    response(status, JSON_1_1, body.into(), request_id)
}

/// An answer in `wire`'s format, whose body is already written in it.
pub fn wire_response(
    wire: Wire,
    status: StatusCode,
    body: impl Into<Bytes>,
    request_id: HeaderValue,
) -> Response<Full<Bytes>> {
    let content_type = match wire {
        Wire::Json => JSON_1_1,
        Wire::Cbor => CBOR_1_1,
    };
    response(status, content_type, body.into(), request_id)
}

/// `{"__type": code, "message": message}` in `wire`'s format, with the code in
/// `x-amzn-ErrorType` too, as the services answer.
pub fn error_response(
    wire: Wire,
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: HeaderValue,
) -> Response<Full<Bytes>> {
    let body = match wire {
        Wire::Json => {
            Bytes::from(serde_json::json!({"__type": code, "message": message}).to_string())
        }
        Wire::Cbor => {
            let mut body = Vec::with_capacity(32 + code.len() + message.len());
            cbor::map_head(&mut body, 2);
            cbor::text(&mut body, "__type");
            cbor::text(&mut body, code);
            cbor::text(&mut body, "message");
            cbor::text(&mut body, message);
            Bytes::from(body)
        }
    };
    let mut response = wire_response(wire, status, body, request_id);
    if let Ok(code) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-errortype", code);
    }
    response
}
