//! Start-up checks of a flow's destination: who the credentials belong to
//! (`sts:GetCallerIdentity`) and whether the stream exists and is usable (a describe call, which
//! also tells a Kinesis stream's record size limit). A failure is one ERROR line naming the
//! flow, the destination, the call that failed and what to check; the agent keeps running and
//! checks again with backoff. Missing permission to describe is only a warning.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::service_error::classify_sts_error;
use super::{Backoff, LogLimiter, PutError, PutRecords, RetryPolicy, StreamStatus};
use crate::config::{limits, Destination, DestinationKind, FlowConfig};

/// What a passed check learnt.
#[derive(Clone, Debug)]
pub struct CheckPassed {
    /// `None` when the identity check is off.
    pub identity: Option<Identity>,
    /// `None` when the credentials may not describe the stream.
    pub status: Option<StreamStatus>,
    /// Why the describe call was refused, if it was.
    pub describe_denied: Option<String>,
}

/// A failed check: which call failed and why (the cause says what to check).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{call} failed: {cause}")]
pub struct CheckFailed {
    pub call: &'static str,
    pub cause: PutError,
}

/// The describe call of a destination kind, as IAM names it.
pub fn describe_call(kind: DestinationKind) -> &'static str {
    match kind {
        DestinationKind::Kinesis => "kinesis:DescribeStreamSummary",
        DestinationKind::Firehose => "firehose:DescribeDeliveryStream",
    }
}

const IDENTITY_CALL: &str = "sts:GetCallerIdentity";

/// Runs the checks once, giving up after `deadline`.
pub async fn check<P: PutRecords>(
    client: &P,
    kind: DestinationKind,
    deadline: Duration,
) -> Result<CheckPassed, CheckFailed> {
    let checks = async {
        let identity = client.identity().await.map_err(|cause| CheckFailed {
            call: IDENTITY_CALL,
            cause,
        })?;
        match client.describe().await {
            Ok(status) => Ok(CheckPassed {
                identity,
                status: Some(status),
                describe_denied: None,
            }),
            Err(PutError::AccessDenied { message }) => Ok(CheckPassed {
                identity,
                status: None,
                describe_denied: Some(message),
            }),
            Err(cause) => Err(CheckFailed {
                call: describe_call(kind),
                cause,
            }),
        }
    };
    match tokio::time::timeout(deadline, checks).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailed {
            call: "the start-up check",
            cause: PutError::Unreachable {
                message: format!("no answer within {}", humantime::format_duration(deadline)),
            },
        }),
    }
}

/// How long one round of checks may take: a connection and two calls.
pub fn deadline(flow: &FlowConfig) -> Duration {
    flow.aws.connect_timeout + flow.aws.request_timeout * 2
}

/// Logs a passed check: the identity at INFO, the stream at INFO, a refused describe at WARN.
pub fn log_passed(flow: &str, destination: &Destination, passed: &CheckPassed) {
    if let Some(identity) = &passed.identity {
        info!(flow = %flow, destination = %destination, account = %identity.account, arn = %identity.arn, "AWS credentials work.");
    }
    if let Some(status) = &passed.status {
        info!(flow = %flow, destination = %destination, status = %status.status, open_shards = status.open_shards, max_record_bytes = status.max_record_bytes, "Destination found.");
    }
    if let Some(message) = &passed.describe_denied {
        warn!(flow = %flow, destination = %destination, %message, "Cannot describe the destination (no {} permission); sending anyway, with the configured record size limit.", describe_call(destination.kind));
    }
}

/// Logs a failed check as one ERROR line.
pub fn log_failed(flow: &str, destination: &Destination, failed: &CheckFailed) {
    error!(flow = %flow, destination = %destination, call = failed.call, cause = %failed.cause, "Start-up check failed; kinship keeps running, keeps this flow's lines, and checks again with backoff.");
}

/// Checks again, with backoff, until the check passes or `stop` fires; failures are logged
/// at most once a minute.
pub async fn keep_checking<P: PutRecords>(
    client: std::sync::Arc<P>,
    flow: String,
    destination: Destination,
    deadline: Duration,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(RetryPolicy {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(300),
    });
    let mut limiter = LogLimiter::new(Duration::from_secs(60));
    // The failure that started this was just logged.
    let _ = limiter.allow();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = check(client.as_ref(), destination.kind, deadline) => result,
        };
        match result {
            Ok(passed) => {
                info!(flow = %flow, destination = %destination, "The start-up check passes now.");
                log_passed(&flow, &destination, &passed);
                return;
            }
            Err(failed) => {
                if limiter.allow().is_some() {
                    log_failed(&flow, &destination, &failed);
                }
            }
        }
    }
}

/// What a flow's record size limit becomes once the stream has told its own: the stream's
/// limit replaces the default, and caps a configured limit that is larger. `None`: no change.
pub fn learned_record_limit(flow: &FlowConfig, stream_limit: usize) -> Option<(usize, usize)> {
    let stream_limit =
        stream_limit.clamp(limits::MIN_RECORD_BYTES, limits::KINESIS_MAX_RECORD_BYTES);
    let record = if flow.record_limit_set {
        flow.max_record_bytes.min(stream_limit)
    } else {
        stream_limit
    };
    // One record must fit in a call; calls may be as large as the API allows.
    let batch = flow
        .max_batch_bytes
        .max(record)
        .min(limits::KINESIS_MAX_BYTES_PER_CALL);
    (record != flow.max_record_bytes || batch != flow.max_batch_bytes).then_some((record, batch))
}

/// Applies [`learned_record_limit`] to `flow`, logging the change.
pub fn apply_learned_limit(flow: &mut FlowConfig, passed: &CheckPassed) {
    let Some(stream_limit) = passed.status.as_ref().and_then(|s| s.max_record_bytes) else {
        return;
    };
    if flow.destination.kind != DestinationKind::Kinesis {
        return;
    }
    if let Some((record, batch)) = learned_record_limit(flow, stream_limit) {
        if flow.record_limit_set && record < flow.max_record_bytes {
            warn!(flow = %flow.name, configured = flow.max_record_bytes, stream_limit, "max_record_bytes is larger than the stream accepts; the stream's limit is used.");
        } else {
            info!(flow = %flow.name, max_record_bytes = record, max_batch_bytes = batch, "Record size limit taken from the stream.");
        }
        flow.max_record_bytes = record;
        flow.max_batch_bytes = batch;
    }
}

/// The account and principal the credentials belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

/// `sts:GetCallerIdentity` with a flow's credentials.
#[derive(Clone, Debug)]
pub struct IdentityProbe {
    client: aws_sdk_sts::Client,
    endpoint: String,
}

impl IdentityProbe {
    pub fn new(client: aws_sdk_sts::Client, endpoint: String) -> Self {
        Self { client, endpoint }
    }

    pub async fn identity(&self) -> Result<Identity, PutError> {
        let output = self
            .client
            .get_caller_identity()
            .send()
            .await
            .map_err(|error| classify_sts_error(&error, &self.endpoint))?;
        Ok(Identity {
            account: output.account().unwrap_or_default().to_owned(),
            arn: output.arn().unwrap_or_default().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn flow(extra: &str) -> FlowConfig {
        let text = format!(
            "flows:\n  - name: app\n    files: /var/log/*.log\n    kinesis_stream: s\n{extra}"
        );
        let mut config = Config::parse(Path::new("k.yaml"), &text).expect("valid");
        config.flows.remove(0)
    }

    #[test]
    fn the_streams_limit_replaces_the_default_and_caps_a_larger_setting() {
        let default = flow("");
        assert_eq!(
            learned_record_limit(&default, 4 * 1024 * 1024),
            Some((4 * 1024 * 1024, 5 * 1024 * 1024))
        );
        assert_eq!(
            learned_record_limit(&default, 8 * 1024 * 1024),
            Some((8 * 1024 * 1024, 8 * 1024 * 1024))
        );
        assert_eq!(learned_record_limit(&default, 1024 * 1024), None);
        assert_eq!(
            learned_record_limit(&default, 2048),
            Some((2048, 5 * 1024 * 1024))
        );
        let set = flow("    max_record_bytes: 65536\n");
        assert_eq!(learned_record_limit(&set, 4 * 1024 * 1024), None);
        assert_eq!(
            learned_record_limit(&set, 4096),
            Some((4096, 5 * 1024 * 1024))
        );
    }
}
