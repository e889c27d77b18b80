//! Opening connections: TCP to a host (with TCP_NODELAY), the connect timeout around the whole
//! of DNS, TCP, any proxy tunnel and the TLS handshake, and why a connection could not be made.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Scheme;
use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use tokio::net::TcpStream;
use tower_service::Service;

use super::proxy::ProxyConnector;
use super::stream::Conn;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a connection could not be made (before or without TLS).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectFailure {
    #[error("cannot resolve {host} ({reason})")]
    Dns { host: String, reason: String },
    #[error("{addr} refused the connection")]
    Refused { addr: SocketAddr },
    #[error("cannot reach {addr} ({reason})")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("no connection within {}", humantime::format_duration(*after))]
    TimedOut { after: Duration },
    #[error("this host has no CA bundle (no root certificate in the platform's store); set aws.tls.ca_file to your CA bundle, or SSL_CERT_FILE")]
    NoTrustRoots,
    #[error("the URL has no host")]
    NoHost,
    #[error("through the proxy {proxy}: {reason}")]
    Proxy { proxy: String, reason: String },
}

/// A TCP connection to `uri`'s host and port (the scheme's default port when none is given),
/// trying its addresses in the resolver's order.
pub(super) async fn connect_tcp(uri: &Uri) -> Result<TcpStream, ConnectFailure> {
    let host = uri
        .host()
        .ok_or(ConnectFailure::NoHost)?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let default_port = if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| ConnectFailure::Dns {
            host: host.to_owned(),
            reason: error.to_string(),
        })?
        .collect();
    let mut failure = ConnectFailure::Dns {
        host: host.to_owned(),
        reason: "no address".to_owned(),
    };
    for addr in addresses {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%addr, %error, "Cannot set TCP_NODELAY.");
                }
                return Ok(tcp);
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                failure = ConnectFailure::Refused { addr };
            }
            Err(error) => {
                failure = ConnectFailure::Unreachable {
                    addr,
                    reason: error.to_string(),
                };
            }
        }
    }
    Err(failure)
}

/// The whole connect (DNS, TCP, proxy tunnel, TLS handshake) under the connect timeout.
#[derive(Clone)]
pub(super) struct TimedConnector {
    pub(super) inner: HttpsConnector<ProxyConnector>,
    pub(super) timeout: Duration,
}

impl Service<Uri> for TimedConnector {
    type Response = MaybeHttpsStream<Conn>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let connecting = self.inner.call(destination);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ConnectFailure::TimedOut { after: timeout }) as BoxError),
            }
        })
    }
}
