//! What can go wrong on a data-path call, sorted by what the sink must do about it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use crate::error_chain::{chain, chain_text, find_in_chain};

/// A failed call, by what the sink must do: send again soon ([`TransportError::is_transient`]),
/// or keep the data and retry slowly while an operator fixes the cause.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint cannot be reached: DNS, connection refused, the proxy, the TLS handshake or
    /// the server's certificate. `reason` says which, and what to do.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// No connection within the connect timeout, or no whole answer within the request timeout.
    #[error("{endpoint} {phase} within {}", humantime::format_duration(*after))]
    Timeout {
        endpoint: String,
        phase: TimeoutPhase,
        after: Duration,
    },
    /// The connection closed or was reset during the call: the request may or may not have
    /// been processed.
    #[error("the connection to {endpoint} closed during the call: {reason}")]
    Reset { endpoint: String, reason: String },
    /// Any other I/O or protocol failure during the call.
    #[error("the call to {endpoint} failed: {reason}")]
    Io { endpoint: String, reason: String },
    /// The credentials provider gave no credentials (its message follows).
    #[error("no AWS credentials: {message}")]
    NoCredentials { message: String },
    /// The SDK's endpoint resolver gave no endpoint for these settings.
    #[error("cannot resolve the {service} endpoint: {message}")]
    Endpoint {
        service: &'static str,
        message: String,
    },
    /// `aws.tls.ca_file` cannot be used.
    #[error("aws.tls.ca_file {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// The request could not be built or signed (a header value the credentials or the caller
    /// gave is not valid HTTP).
    #[error("cannot sign the request to {endpoint}: {message}")]
    Signing { endpoint: String, message: String },
}

impl TransportError {
    /// Whether sending the same request again soon is likely to succeed: timeouts and
    /// connections lost mid-call. The other errors need the network, the credentials or the
    /// configuration fixed first (the data is kept and retried slowly).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Reset { .. } | Self::Io { .. }
        )
    }
}

/// Which deadline a [`TransportError::Timeout`] passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// No connection (TCP, proxy tunnel, TLS handshake) within the connect timeout.
    Connect,
    /// No whole response (status, headers and body) within the request timeout.
    Response,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "could not be connected to",
            Self::Response => "did not answer",
        })
    }
}
