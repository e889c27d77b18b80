//! What kinship's own data calls share, Kinesis and Firehose alike: a call sent through the
//! transport, and its answer sorted into the records refused or a [`PutError`].

use bytes::Bytes;

use super::service_error::{classify_service_error, classify_transport_error};
use super::{PutError, RecordFailure};
use crate::sink::transport::AwsCaller;
use crate::sink::wire::response::{scan_error, PutAnswer, ScanError};
use crate::sink::wire::WireFormat;

/// The destination as an error message names it.
pub struct Named<'a> {
    /// The stream, as the config names it.
    pub stream: &'a str,
    pub region: &'a str,
    /// The config key that names the stream.
    pub key: &'a str,
}

/// Sends `body` to `target` and reads a successful answer with `scan`; any other outcome is
/// the [`PutError`] it means. The answer must list one result for each of the `sent` records.
pub async fn call(
    caller: &AwsCaller,
    target: &'static str,
    format: WireFormat,
    body: Vec<u8>,
    sent: usize,
    named: &Named<'_>,
    scan: impl FnOnce(&[u8]) -> Result<PutAnswer, ScanError>,
) -> Result<PutAnswer, PutError> {
    let answer = caller
        .post(target, format.content_type(), Bytes::from(body))
        .await
        .map_err(|error| classify_transport_error(&error))?;
    if !(200..300).contains(&answer.status) {
        let error = scan_error(format, answer.error_type.as_deref(), &answer.body);
        return Err(classify_service_error(
            Some(error.code.as_str()).filter(|code| !code.is_empty()),
            Some(error.message.as_str()),
            answer.status,
            named.stream,
            named.region,
            named.key,
        ));
    }
    let operation = target.rsplit('.').next().unwrap_or(target);
    let scanned = scan(&answer.body).map_err(|error| PutError::Transient {
        message: format!("cannot read the {operation} answer: {error}"),
    })?;
    if scanned.results != sent {
        return Err(PutError::Transient {
            message: format!(
                "the answer listed {} results for {sent} records",
                scanned.results
            ),
        });
    }
    Ok(scanned)
}

/// The records an answer refused, as the sink retries them.
pub fn refused(answer: PutAnswer) -> Vec<RecordFailure> {
    answer
        .refused
        .into_iter()
        .map(|refused| RecordFailure {
            index: refused.index,
            code: refused.code,
            message: refused.message,
        })
        .collect()
}
