//! Sorts the SDK's errors, for any destination service, by what to do about them.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use super::{is_throttle_code, PutError};
pub use crate::error_chain::error_chain;
use crate::sink::transport::TransportError;

/// Sorts a failed call to the stream `stream` (whose config key is `key`) in `region`.
pub fn classify_sdk_error<E>(
    error: &SdkError<E, HttpResponse>,
    stream: &str,
    region: &str,
    key: &str,
) -> PutError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = error_chain(error);
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            classify_service_error(
                service.err().code(),
                service.err().message(),
                status,
                stream,
                region,
                key,
            )
        }
        SdkError::TimeoutError(_) => PutError::Transient {
            message: "the call timed out".into(),
        },
        SdkError::DispatchFailure(_) if mentions_certificate(&detail) => untrusted(detail),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            PutError::Unreachable { message: detail }
        }
        _ if mentions_credentials(&detail) => no_credentials(detail),
        _ => PutError::Transient { message: detail },
    }
}

/// Sorts a data call of kinship's own that got no answer.
pub fn classify_transport_error(error: &TransportError) -> PutError {
    let message = error_chain(error);
    match error {
        TransportError::Connect { .. } if mentions_certificate(&message) => untrusted(message),
        TransportError::Connect { .. } => PutError::Unreachable { message },
        TransportError::Timeout { .. } | TransportError::Reset { .. } | TransportError::Io { .. } => {
            PutError::Transient { message }
        }
        TransportError::NoCredentials { message } => no_credentials(message.clone()),
        TransportError::Endpoint { .. } => PutError::Configuration {
            message,
            hint: "check aws.region and aws.endpoint_url".into(),
        },
        TransportError::Config { .. } => PutError::Configuration {
            message,
            hint: "check aws.tls.ca_file".into(),
        },
        TransportError::Signing { .. } => PutError::Configuration {
            message,
            hint: "check the access key, secret key and session token, or the profile or role that provides them".into(),
        },
    }
}

fn mentions_certificate(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("certificate") || lower.contains("unknownissuer")
}

fn untrusted(detail: String) -> PutError {
    if detail.contains("tls.ca_file") {
        return PutError::Configuration {
            message: detail,
            hint: "see aws.tls.ca_file in the README".into(),
        };
    }
    PutError::Configuration {
        message: format!("the endpoint's TLS certificate is not trusted ({detail})"),
        hint: "if a private CA or a TLS-inspecting proxy signed it, name that CA's PEM bundle in aws.tls.ca_file".into(),
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
    key: &str,
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
            hint: format!("check {key} and aws.region, or create the stream"),
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

/// Sorts a failed `sts:GetCallerIdentity` call of the start-up checks to the STS endpoint
/// `endpoint`.
pub fn classify_sts_error<E>(
    error: &SdkError<E, aws_sdk_sts::config::http::HttpResponse>,
    endpoint: &str,
) -> PutError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = error_chain(error);
    let lower = detail.to_ascii_lowercase();
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or_default();
            match code {
                "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "IncompleteSignature" | "UnrecognizedClientException" => PutError::Configuration {
                    message: format!("STS rejected the credentials ({code}: {message})"),
                    hint: "check the access key, secret key and session token, or the profile or role that provides them".into(),
                },
                _ if service.raw().status().as_u16() >= 500 => PutError::Transient {
                    message: format!("STS answered {code}: {message}"),
                },
                _ => PutError::Configuration {
                    message: format!("STS answered {code}: {message}"),
                    hint: format!("check the credentials and that {endpoint} is an STS endpoint (aws.sts_endpoint_url)"),
                },
            }
        }
        _ if lower.contains("assume") && lower.contains("role") => PutError::Configuration {
            message: format!("cannot assume the role ({detail})"),
            hint: "check assume_role.role_arn, that the role's trust policy allows these credentials (and external_id), and sts:AssumeRole in their policy".into(),
        },
        _ if lower.contains("credential") => PutError::Configuration {
            message: format!("no usable AWS credentials ({detail})"),
            hint: "set access keys or a profile in the aws block, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance or task role".into(),
        },
        SdkError::TimeoutError(_) => PutError::Unreachable {
            message: format!("STS at {endpoint} did not answer in time"),
        },
        SdkError::DispatchFailure(_) => PutError::Configuration {
            message: format!("cannot reach STS at {endpoint} ({detail})"),
            hint: "check the network, any proxy (HTTPS_PROXY, NO_PROXY) and aws.sts_endpoint_url".into(),
        },
        _ => PutError::Transient { message: detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .rev()
            .fold(None, |inner: Option<Layer>, text| {
                Some(Layer {
                    text,
                    source: inner.map(Box::new),
                })
            })
            .expect("at least one layer")
    }

    #[test]
    fn an_error_chain_reads_as_one_line_each_cause_once() {
        let error = layers(&[
            "dispatch failure",
            "io error",
            "client error (Connect)",
            "",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(
            error_chain(&error),
            "dispatch failure: io error: client error (Connect): Connection refused (os error 111)"
        );
        let repeated = layers(&["timed out: operation timed out", "operation timed out"]);
        assert_eq!(error_chain(&repeated), "timed out: operation timed out");
        assert_eq!(error_chain(&layers(&[""])), "no detail given");
    }

    fn classify(code: &str, message: &str, status: u16) -> PutError {
        classify_service_error(
            Some(code),
            Some(message),
            status,
            "logs",
            "eu-west-1",
            "kinesis_stream",
        )
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
            classify_service_error(None, None, 413, "s", "r", "kinesis_stream"),
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
