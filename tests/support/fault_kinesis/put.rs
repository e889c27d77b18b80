//! The fault server's put calls, `PutRecords` (JSON 1.1 or CBOR 1.1) and `PutRecordBatch`:
//! each is checked as the service checks it, then meets its faults: one draw for the whole
//! call, one per record, and the rate limits, flow-wide and per shard. What survives is stored.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use super::cbor::{self, PutRecordsCall, RecordIn};
use super::describe::stream_name;
use super::handler::{error_response, invalid, json_response, malformed, wire_response, Reply};
use super::shards::{self, sequence_number};
use super::state::{Kept, Shared, State};
use super::Faults;
use crate::support::kinesis_server::answers::{self, BatchAnswer, RecordAnswer, Refusal};
use crate::support::kinesis_server::protocol::{Wire, MAX_RECORDS_PER_CALL};
use crate::support::kinesis_server::ACCOUNT;

/// Kinesis partition keys are 1 to 256 Unicode characters.
const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Which service's dialect a put call speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Kinesis,
    Firehose,
}

impl Api {
    /// The per-record code of a throttled record, also used for the whole-call throttle.
    fn throttle_code(self) -> &'static str {
        match self {
            Api::Kinesis => "ProvisionedThroughputExceededException",
            Api::Firehose => "ServiceUnavailableException",
        }
    }

    fn call_throttle_status(self) -> StatusCode {
        match self {
            Api::Kinesis => StatusCode::BAD_REQUEST,
            Api::Firehose => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn unavailable_code(self) -> &'static str {
        match self {
            Api::Kinesis => "ServiceUnavailable",
            Api::Firehose => "ServiceUnavailableException",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsRequest<'a> {
    #[serde(borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    records: Vec<KinesisRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KinesisRecord<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(borrow)]
    partition_key: Cow<'a, str>,
    #[serde(borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchRequest<'a> {
    #[serde(borrow)]
    delivery_stream_name: Cow<'a, str>,
    #[serde(borrow, default)]
    records: Vec<FirehoseRecord<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FirehoseRecord<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

pub(super) fn put_records(shared: &Shared, wire: Wire, body: &[u8]) -> Reply {
    let call = match wire {
        Wire::Json => json_put_records(body),
        Wire::Cbor => cbor::put_records(body),
    };
    let call = match call {
        Ok(call) => call,
        Err(message) => {
            return Reply::Now(invalid(shared, wire, "SerializationException", &message))
        }
    };
    let Some(stream) = stream_name(call.stream_name.as_deref(), call.stream_arn.as_deref()) else {
        return Reply::Now(invalid(
            shared,
            wire,
            "ValidationException",
            "either StreamName or StreamARN must be given",
        ));
    };
    if let Some(response) = check_count(shared, wire, call.records.len()) {
        return Reply::Now(response);
    }
    let stream = stream.to_owned();
    let mut records = Vec::with_capacity(call.records.len());
    // Validation messages count records from 1.
    for (number, record) in (1..).zip(call.records) {
        let Some(partition_key) = record
            .partition_key
            .filter(|key| (1..=MAX_PARTITION_KEY_CHARS).contains(&key.chars().count()))
        else {
            return Reply::Now(invalid(
                shared,
                wire,
                "ValidationException",
                &format!(
                    "1 validation error detected: Value at 'records.{number}.member.partitionKey' \
                     failed to satisfy constraint: Member must have length between 1 and \
                     {MAX_PARTITION_KEY_CHARS}"
                ),
            ));
        };
        let hash_key = match record.explicit_hash_key {
            Some(text) => match shards::explicit_hash_key(&text, number) {
                Ok(hash_key) => hash_key,
                Err(bad) => return Reply::Now(invalid(shared, wire, bad.code, &bad.message)),
            },
            None => shards::partition_hash_key(&partition_key),
        };
        records.push(RecordToStore {
            data: record.data,
            route: Some(Route {
                partition_key,
                hash_key,
            }),
        });
    }
    put(shared, Api::Kinesis, wire, &stream, records)
}

/// Reads a JSON `PutRecords` body into the shape both formats share, its data decoded.
fn json_put_records(body: &[u8]) -> Result<PutRecordsCall, String> {
    let request: PutRecordsRequest = serde_json::from_slice(body)
        .map_err(|error| format!("the request body is not a valid request: {error}"))?;
    let data = decode_all(request.records.iter().map(|record| &record.data))?;
    Ok(PutRecordsCall {
        stream_name: request.stream_name.map(Cow::into_owned),
        stream_arn: request.stream_arn.map(Cow::into_owned),
        records: request
            .records
            .iter()
            .zip(data)
            .map(|(record, data)| RecordIn {
                data,
                partition_key: Some(record.partition_key.to_string()),
                explicit_hash_key: record.explicit_hash_key.as_deref().map(str::to_owned),
            })
            .collect(),
    })
}

pub(super) fn put_record_batch(shared: &Shared, wire: Wire, body: &[u8]) -> Reply {
    if wire == Wire::Cbor {
        return Reply::Now(invalid(
            shared,
            wire,
            "SerializationException",
            "PutRecordBatch is read only in AWS JSON 1.1 here: Firehose's API speaks nothing else",
        ));
    }
    let request: PutRecordBatchRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return Reply::Now(malformed(shared, &error)),
    };
    if let Some(response) = check_count(shared, wire, request.records.len()) {
        return Reply::Now(response);
    }
    let data = match decode_all(request.records.iter().map(|record| &record.data)) {
        Ok(data) => data,
        Err(message) => {
            return Reply::Now(invalid(shared, wire, "SerializationException", &message))
        }
    };
    let records = data
        .into_iter()
        .map(|data| RecordToStore { data, route: None })
        .collect();
    put(
        shared,
        Api::Firehose,
        wire,
        &request.delivery_stream_name,
        records,
    )
}

fn check_count(shared: &Shared, wire: Wire, records: usize) -> Option<Response<Full<Bytes>>> {
    (!(1..=MAX_RECORDS_PER_CALL).contains(&records)).then(|| {
        invalid(
            shared,
            wire,
            "ValidationException",
            &format!(
                "1 validation error detected: Value at 'records' failed to satisfy constraint: \
                 Member must have length between 1 and {MAX_RECORDS_PER_CALL} (it has {records})"
            ),
        )
    })
}

/// Decodes every record's data before anything is stored, so a bad record rejects the whole
/// call as the service does. Returns the error message for the first undecodable record.
fn decode_all<'a>(encoded: impl Iterator<Item = &'a Cow<'a, str>>) -> Result<Vec<Vec<u8>>, String> {
    encoded
        .enumerate()
        .map(|(index, data)| {
            base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|error| format!("record {index}: data is not valid base64: {error}"))
        })
        .collect()
}

/// A whole-call fault; at most one per call.
#[derive(Clone, Copy)]
enum CallFault {
    Throttle,
    ServerError,
    ResetBefore,
    ResetAfter,
    Stall(Duration),
    Slow(Duration),
}

fn draw_call_fault(faults: &Faults, rng: &mut fastrand::Rng) -> Option<CallFault> {
    let draw = rng.f64() * 100.0;
    let mut threshold = 0.0;
    [
        (faults.call_throttle_percent, CallFault::Throttle),
        (faults.call_5xx_percent, CallFault::ServerError),
        (faults.reset_before_percent, CallFault::ResetBefore),
        (faults.reset_after_percent, CallFault::ResetAfter),
        (faults.stall_percent, CallFault::Stall(faults.stall)),
        (faults.slow_percent, CallFault::Slow(faults.slow)),
    ]
    .into_iter()
    .find_map(|(percent, fault)| {
        threshold += percent.max(0.0);
        (draw < threshold).then_some(fault)
    })
}

/// A record of a put call, checked and ready to store.
struct RecordToStore {
    data: Vec<u8>,
    /// `None` for a Firehose record, which goes to no shard.
    route: Option<Route>,
}

/// What puts a Kinesis record in a shard.
struct Route {
    partition_key: String,
    /// The MD5 of the partition key, or the record's `ExplicitHashKey`.
    hash_key: u128,
}

/// The fate of one record of a call that stores, with the id of the shard a Kinesis record was
/// routed to (`None` for Firehose).
enum RecordOutcome {
    /// Stored, with this sequence number.
    Stored {
        sequence: u64,
        shard: Option<Arc<str>>,
    },
    Throttled {
        shard: Option<Arc<str>>,
    },
    Internal,
}

impl RecordOutcome {
    fn stored(&self) -> bool {
        matches!(self, RecordOutcome::Stored { .. })
    }
}

/// The shard id a Kinesis answer names.
fn routed(shard: &Option<Arc<str>>) -> &str {
    shard
        .as_deref()
        .expect("every Kinesis record is routed to a shard before it is answered")
}

fn put(shared: &Shared, api: Api, wire: Wire, stream: &str, records: Vec<RecordToStore>) -> Reply {
    let mut state = shared.lock();
    let State {
        faults,
        rng,
        rate_limit,
        stored,
        shards,
        stats,
        next_sequence,
        ..
    } = &mut *state;
    stats.put_calls += 1;
    match wire {
        Wire::Json => stats.json_put_calls += 1,
        Wire::Cbor => stats.cbor_put_calls += 1,
    }
    let fault = draw_call_fault(faults, rng);
    match fault {
        Some(CallFault::Throttle) => {
            stats.calls_throttled += 1;
            return Reply::Now(error_response(
                shared,
                wire,
                api.call_throttle_status(),
                api.throttle_code(),
                &format!("Rate exceeded for stream {stream} under account {ACCOUNT}."),
            ));
        }
        Some(CallFault::ServerError) => {
            stats.calls_5xx += 1;
            let (status, code) = if stats.calls_5xx % 2 == 1 {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, api.unavailable_code())
            };
            return Reply::Now(error_response(
                shared,
                wire,
                status,
                code,
                "The service encountered an internal error; try again.",
            ));
        }
        Some(CallFault::ResetBefore) => {
            stats.resets_before += 1;
            return Reply::Unanswered;
        }
        _ => {}
    }

    let now = Instant::now();
    let throttle_percent = faults.record_throttle_percent;
    let failure_percent = throttle_percent + faults.record_internal_percent;
    let mut outcomes = Vec::with_capacity(records.len());
    // Shards that refused a record of this call, with whether for throttling.
    let mut refusing: HashMap<usize, bool> = HashMap::new();
    for RecordToStore { data, route } in records {
        let shard = route.as_ref().map(|route| shards.route(route.hash_key));
        let shard_id = shard.map(|index| Arc::clone(&shards.shard(index).id));
        let draw = rng.f64() * 100.0;
        let held = shard.and_then(|index| refusing.get(&index).copied());
        let draw = match held {
            Some(true) => 0.0,
            Some(false) => throttle_percent,
            None => draw,
        };
        if faults.refusals_hold_shard && draw < failure_percent {
            if let Some(index) = shard {
                refusing.insert(index, draw < throttle_percent);
            }
        }
        let outcome = if draw < throttle_percent {
            stats.record_throttled += 1;
            RecordOutcome::Throttled { shard: shard_id }
        } else if draw < failure_percent {
            stats.record_internal += 1;
            RecordOutcome::Internal
        } else if rate_limit.as_mut().is_some_and(|limit| !limit.ready(now)) {
            stats.rate_limited += 1;
            RecordOutcome::Throttled { shard: shard_id }
        } else if shard
            .and_then(|index| shards.shard_mut(index).limit.as_mut())
            .is_some_and(|limit| !limit.ready(now))
        {
            stats.shard_rate_limited += 1;
            RecordOutcome::Throttled { shard: shard_id }
        } else {
            // Both limits were ready: each gives up a token only now.
            if let Some(limit) = rate_limit.as_mut() {
                limit.spend();
            }
            if let Some(index) = shard {
                let shard = shards.shard_mut(index);
                if let Some(limit) = shard.limit.as_mut() {
                    limit.spend();
                }
                shard.record_stored(now);
            }
            stats.records_stored += 1;
            stored.push(Kept {
                shard,
                partition_key: route.map(|route| route.partition_key),
                data,
                at: now,
            });
            *next_sequence += 1;
            RecordOutcome::Stored {
                sequence: *next_sequence,
                shard: shard_id,
            }
        };
        if let (RecordOutcome::Throttled { .. }, Some(index)) = (&outcome, shard) {
            shards.shard_mut(index).stats.throttled += 1;
        }
        outcomes.push(outcome);
    }
    match fault {
        Some(CallFault::ResetAfter) => {
            stats.resets_after += 1;
            return Reply::Unanswered;
        }
        Some(CallFault::Stall(_)) => stats.stalls += 1,
        Some(CallFault::Slow(_)) => stats.slow += 1,
        _ => {}
    }
    drop(state);

    let response = match api {
        Api::Kinesis => {
            let body = answers::put_records(wire, &kinesis_answers(stream, &outcomes));
            wire_response(shared, wire, StatusCode::OK, body)
        }
        // Refused before anything was stored (see `put_record_batch`).
        Api::Firehose => {
            let body = answers::put_record_batch_json(&batch_answers(&outcomes));
            json_response(shared, StatusCode::OK, body)
        }
    };
    match fault {
        Some(CallFault::Stall(delay) | CallFault::Slow(delay)) => Reply::After(delay, response),
        _ => Reply::Now(response),
    }
}

/// The message of a record refused for its shard's rate, as the service words it.
fn shard_throttled_message(shard: &str, stream: &str) -> String {
    format!("Rate exceeded for shard {shard} in stream {stream} under account {ACCOUNT}.")
}

/// A record's `InternalFailure`, in both services' words.
const INTERNAL_FAILURE: Refusal<'static> = Refusal {
    code: "InternalFailure",
    message: Cow::Borrowed("Internal service failure."),
};

/// The records of a `PutRecords` answer. Real sequence numbers are 56 decimal digits; so are
/// these, and they increase.
fn kinesis_answers<'a>(stream: &str, outcomes: &'a [RecordOutcome]) -> Vec<RecordAnswer<'a>> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            RecordOutcome::Stored { sequence, shard } => RecordAnswer::Stored {
                sequence_number: sequence_number(*sequence),
                shard_id: Cow::Borrowed(routed(shard)),
            },
            // The stream name is the client's and may need escaping, which the writer does.
            RecordOutcome::Throttled { shard } => RecordAnswer::Refused(Refusal {
                code: "ProvisionedThroughputExceededException",
                message: Cow::Owned(shard_throttled_message(routed(shard), stream)),
            }),
            RecordOutcome::Internal => RecordAnswer::Refused(INTERNAL_FAILURE),
        })
        .collect()
}

/// The records of a `PutRecordBatch` answer, each stored one with its sequence as its id.
fn batch_answers(outcomes: &[RecordOutcome]) -> Vec<BatchAnswer<'static>> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            RecordOutcome::Stored { sequence, .. } => BatchAnswer::Stored {
                record_id: *sequence,
            },
            RecordOutcome::Throttled { .. } => BatchAnswer::Refused(Refusal {
                code: "ServiceUnavailableException",
                message: Cow::Borrowed("Slow down."),
            }),
            RecordOutcome::Internal => BatchAnswer::Refused(INTERNAL_FAILURE),
        })
        .collect()
}
