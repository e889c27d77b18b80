//! The data path's HTTP client: one keep-alive pool (hyper-util's legacy client) over TCP with
//! TCP_NODELAY, rustls with aws-lc trusting the platform's roots plus `aws.tls.ca_file`,
//! HTTP/1.1 or (through ALPN) HTTP/2, and the proxies of `HTTPS_PROXY`, `HTTP_PROXY` and
//! `NO_PROXY`, read as the SDK's client reads them.
//!
//! This module owns the client and its calls; a connection is opened in `connect` (TCP and the
//! connect timeout), through `proxy` (proxies and `CONNECT` tunnels), over the byte streams of
//! `stream`, trusting the roots of `tls`.

mod connect;
mod proxy;
mod stream;
mod tls;

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, PROXY_AUTHORIZATION};
use http::uri::Scheme;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;

use super::error::{chain, chain_text, find_in_chain, TimeoutPhase, TransportError};
use connect::{ConnectFailure, TimedConnector};
use proxy::ProxyConnector;
use tls::{describe_tls, tls_config, NATIVE_ROOTS};
pub(crate) use tls::{native_roots_available, read_ca_file};

/// Idle pooled connections are closed after this long (AWS endpoints close theirs at about
/// two minutes; closing first avoids sending on a connection the server is closing).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Sent on every request (not signed: proxies may rewrite it).
const USER_AGENT: &str = concat!("kinship/", env!("CARGO_PKG_VERSION"));

/// How the data path connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpSettings {
    /// For DNS, TCP, any proxy tunnel and the TLS handshake together.
    pub connect_timeout: Duration,
    /// For a whole exchange: connecting, sending, and reading the whole response.
    pub request_timeout: Duration,
    /// A PEM bundle of CA certificates trusted beside the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// Offer HTTP/2 through ALPN (HTTP/1.1 stays the fallback); HTTP/1.1 only when false.
    pub http2: bool,
}

/// The data path's HTTP client. Clones share one connection pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<TimedConnector, Full<Bytes>>,
    proxies: Arc<Matcher>,
    request_timeout: Duration,
    ca_file: Option<Arc<Path>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("request_timeout", &self.request_timeout)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// A whole response: what the sink needs to tell success, throttling and errors apart.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The `x-amzn-errortype` header (`ResourceNotFoundException`, possibly followed by
    /// `:` and a URL), when the service sent one.
    pub error_type: Option<String>,
    /// The `x-amzn-requestid` header, for support cases and logs.
    pub request_id: Option<String>,
    pub body: Bytes,
}

impl HttpClient {
    /// A client with proxies from the environment. Reads the platform's root certificates
    /// (once per process) and `ca_file`: call it at start-up, not on the data path.
    pub fn new(settings: &HttpSettings) -> Result<Self, TransportError> {
        Self::with_proxies(settings, Matcher::from_env())
    }

    /// A client with the given proxy rules instead of the environment's.
    pub(crate) fn with_proxies(
        settings: &HttpSettings,
        proxies: Matcher,
    ) -> Result<Self, TransportError> {
        let mut roots = RootCertStore::empty();
        let (native, _) = roots.add_parsable_certificates(NATIVE_ROOTS.iter().cloned());
        if let Some(path) = &settings.ca_file {
            for certificate in read_ca_file(path)?.certificates {
                roots
                    .add(certificate)
                    .map_err(|error| TransportError::Config {
                        path: path.clone(),
                        reason: format!("a certificate in it is not usable: {error}"),
                    })?;
            }
        }
        if roots.is_empty() {
            tracing::warn!(
                "This host has no CA bundle: HTTPS calls will fail until aws.tls.ca_file or SSL_CERT_FILE names one."
            );
        }
        tracing::debug!(
            native_roots = native,
            trusted_roots = roots.len(),
            ca_file = ?settings.ca_file,
            http2 = settings.http2,
            "Built the data path's HTTP client."
        );
        let no_trust_roots = roots.is_empty();
        let roots = Arc::new(roots);
        let proxies = Arc::new(proxies);
        let proxy_connector = ProxyConnector {
            proxies: Arc::clone(&proxies),
            // A proxy speaks HTTP/1.1 to set up a tunnel: no ALPN.
            proxy_tls: Arc::new(tls_config(Arc::clone(&roots))),
            no_trust_roots,
        };
        let tls = tls_config(roots);
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1();
        let https = if settings.http2 {
            builder.enable_http2().wrap_connector(proxy_connector)
        } else {
            builder.wrap_connector(proxy_connector)
        };
        let connector = TimedConnector {
            inner: https,
            timeout: settings.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            client,
            proxies,
            request_timeout: settings.request_timeout,
            ca_file: settings.ca_file.as_deref().map(Arc::from),
        })
    }

    /// Sends `request` and reads the whole response within the request timeout.
    pub(crate) async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<RawResponse, TransportError> {
        let endpoint = origin(request.uri());
        request.headers_mut().insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        // A plain-http request through a proxy goes to the proxy in absolute form, with the
        // proxy's credentials (an https request carries them in its CONNECT instead).
        if request.uri().scheme() == Some(&Scheme::HTTP) {
            if let Some(auth) = self
                .proxies
                .intercept(request.uri())
                .and_then(|proxy| proxy.basic_auth().cloned())
            {
                request.headers_mut().insert(PROXY_AUTHORIZATION, auth);
            }
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| self.classify(&error, &endpoint))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| self.classify(&error, &endpoint))?
                .to_bytes();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            Ok(RawResponse {
                status: parts.status.as_u16(),
                error_type: header("x-amzn-errortype"),
                request_id: header("x-amzn-requestid"),
                body,
            })
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                endpoint,
                phase: TimeoutPhase::Response,
                after: self.request_timeout,
            }),
        }
    }

    /// The error the sink acts on, from hyper's error and its causes.
    fn classify(&self, error: &(dyn StdError + 'static), endpoint: &str) -> TransportError {
        let endpoint = endpoint.to_owned();
        if let Some(failure) = find_in_chain::<ConnectFailure>(error) {
            return match failure {
                ConnectFailure::TimedOut { after } => TransportError::Timeout {
                    endpoint,
                    phase: TimeoutPhase::Connect,
                    after: *after,
                },
                other => TransportError::Connect {
                    endpoint,
                    reason: other.to_string(),
                },
            };
        }
        if let Some(tls) = find_in_chain::<rustls::Error>(error) {
            return TransportError::Connect {
                endpoint,
                reason: describe_tls(tls, self.ca_file.as_deref()),
            };
        }
        let connecting = error
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect);
        let reason = chain_text(error);
        if connecting {
            TransportError::Connect { endpoint, reason }
        } else if closed_mid_call(error) {
            TransportError::Reset { endpoint, reason }
        } else {
            TransportError::Io { endpoint, reason }
        }
    }
}

/// `scheme://authority` of `uri`: what error messages name.
pub(crate) fn origin(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => uri.to_string(),
    }
}

/// Whether the connection was closed or reset under the call.
fn closed_mid_call(error: &(dyn StdError + 'static)) -> bool {
    chain(error).any(|cause| {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed();
        }
        cause.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        })
    })
}

#[cfg(test)]
mod tests;
