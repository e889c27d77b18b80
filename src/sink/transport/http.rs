//! The data path's HTTP client: one keep-alive pool (hyper-util's legacy client) over TCP with
//! TCP_NODELAY, rustls with aws-lc trusting the platform's roots plus `aws.tls.ca_file`,
//! HTTP/1.1 or (through ALPN) HTTP/2, and the proxies of `HTTPS_PROXY`, `HTTP_PROXY` and
//! `NO_PROXY`, read as the SDK's client reads them.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, PROXY_AUTHORIZATION};
use http::uri::Scheme;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

use super::error::{chain, chain_text, find_in_chain, TimeoutPhase, TransportError};

/// Idle pooled connections are closed after this long (AWS endpoints close theirs at about
/// two minutes; closing first avoids sending on a connection the server is closing).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The longest proxy answer to a CONNECT request read before giving up on it.
const MAX_PROXY_ANSWER: usize = 16 * 1024;
/// Sent on every request (not signed: proxies may rewrite it).
const USER_AGENT: &str = concat!("kinship/", env!("CARGO_PKG_VERSION"));

type BoxError = Box<dyn StdError + Send + Sync>;

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

/// A TLS failure in words an operator can act on.
fn describe_tls(error: &rustls::Error, ca_file: Option<&Path>) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match ca_file {
            None => "the certificate is not trusted (UnknownIssuer); set aws.tls.ca_file to your CA bundle".to_owned(),
            Some(path) => format!(
                "the certificate is not trusted (UnknownIssuer), not even with aws.tls.ca_file {}; add the issuing CA to that bundle",
                path.display()
            ),
        },
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the certificate does not name this host ({error}); check the endpoint URL"),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("the certificate is outside its validity period ({error}); check this host's clock"),
        rustls::Error::InvalidCertificate(_) => {
            format!("the certificate is not accepted ({error})")
        }
        _ => format!("the TLS handshake failed ({error})"),
    }
}

/// The platform's root certificates (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`), read once.
static NATIVE_ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(error = %chain_text(error), "Cannot read some of the platform's root certificates.");
    }
    loaded.certs
});

/// Whether the platform's store holds at least one usable root certificate.
pub(crate) fn native_roots_available() -> bool {
    RootCertStore::empty()
        .add_parsable_certificates(NATIVE_ROOTS.iter().cloned())
        .0
        > 0
}

/// The certificates of a CA bundle, checked to be usable as trust anchors.
pub(crate) struct CaBundle {
    /// The file as read (PEM).
    pub(crate) pem: Vec<u8>,
    pub(crate) certificates: Vec<CertificateDer<'static>>,
}

/// Reads and checks the PEM bundle at `path`: every certificate in it must be usable as a trust
/// anchor, and there must be at least one. Blocking file I/O: for start-up.
pub(crate) fn read_ca_file(path: &Path) -> Result<CaBundle, TransportError> {
    let config_error = |reason: String| TransportError::Config {
        path: path.to_owned(),
        reason,
    };
    let pem =
        std::fs::read(path).map_err(|error| config_error(format!("cannot read it: {error}")))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config_error(format!("it is not a PEM file ({error})")))?;
    if certificates.is_empty() {
        return Err(config_error(
            "it holds no certificate (no -----BEGIN CERTIFICATE----- block)".to_owned(),
        ));
    }
    let mut check = RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        check.add(certificate.clone()).map_err(|error| {
            config_error(format!(
                "certificate {} in it is not usable as a CA: {error}",
                index + 1
            ))
        })?;
    }
    Ok(CaBundle { pem, certificates })
}

fn tls_config(roots: Arc<RootCertStore>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Why a connection could not be made (before or without TLS).
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
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

/// Opens connections (direct, or through a proxy) for hyper-rustls to put TLS on.
#[derive(Clone)]
struct ProxyConnector {
    proxies: Arc<Matcher>,
    /// TLS to an `https://` proxy itself.
    proxy_tls: Arc<ClientConfig>,
    no_trust_roots: bool,
}

impl Service<Uri> for ProxyConnector {
    type Response = Conn;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectFailure>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.connect(destination).await })
    }
}

impl ProxyConnector {
    async fn connect(self, destination: Uri) -> Result<Conn, ConnectFailure> {
        let secure = destination.scheme() == Some(&Scheme::HTTPS);
        if secure && self.no_trust_roots {
            return Err(ConnectFailure::NoTrustRoots);
        }
        let Some(proxy) = self.proxies.intercept(&destination) else {
            let tcp = connect_tcp(&destination).await?;
            tracing::debug!(endpoint = %origin(&destination), "Connected.");
            return Ok(Conn::new(ProxyStream::Tcp(tcp), false));
        };
        // The matcher keeps the credentials apart: this URI has none to leak into messages.
        let proxy_uri = proxy.uri().clone();
        let shown = origin(&proxy_uri);
        let proxy_failure = |reason: String| ConnectFailure::Proxy {
            proxy: shown.clone(),
            reason,
        };
        let mut stream = match proxy_uri.scheme_str() {
            Some("http") => ProxyStream::Tcp(
                connect_tcp(&proxy_uri)
                    .await
                    .map_err(|error| proxy_failure(format!("cannot reach it: {error}")))?,
            ),
            Some("https") => self
                .connect_tls_proxy(&proxy_uri)
                .await
                .map_err(|reason| proxy_failure(format!("cannot reach it: {reason}")))?,
            other => {
                return Err(proxy_failure(format!(
                    "proxies of scheme {} are not supported; use an http:// or https:// proxy",
                    other.unwrap_or("(none)")
                )))
            }
        };
        if secure {
            open_tunnel(&mut stream, &destination, proxy.basic_auth())
                .await
                .map_err(proxy_failure)?;
            tracing::debug!(endpoint = %origin(&destination), proxy = %shown, "Connected through a proxy tunnel.");
            Ok(Conn::new(stream, false))
        } else {
            tracing::debug!(endpoint = %origin(&destination), proxy = %shown, "Connected to a forwarding proxy.");
            Ok(Conn::new(stream, true))
        }
    }

    async fn connect_tls_proxy(&self, proxy: &Uri) -> Result<ProxyStream, String> {
        let tcp = connect_tcp(proxy)
            .await
            .map_err(|error| error.to_string())?;
        let host = proxy
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = ServerName::try_from(host).map_err(|error| error.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.proxy_tls))
            .connect(name, tcp)
            .await
            .map_err(|error| match find_in_chain::<rustls::Error>(&error) {
                Some(tls) => describe_tls(tls, None),
                None => chain_text(&error),
            })?;
        Ok(ProxyStream::Tls(Box::new(tls)))
    }
}

/// A TCP connection to `uri`'s host and port (the scheme's default port when none is given),
/// trying its addresses in the resolver's order.
async fn connect_tcp(uri: &Uri) -> Result<TcpStream, ConnectFailure> {
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

/// Asks the proxy on `stream` for a tunnel to `destination` (`CONNECT host:port`).
async fn open_tunnel<S>(
    stream: &mut S,
    destination: &Uri,
    auth: Option<&HeaderValue>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let host = destination.host().unwrap_or_default();
    let port = destination.port_u16().unwrap_or(443);
    let mut request =
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes();
    if let Some(auth) = auth {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream
        .write_all(&request)
        .await
        .map_err(|error| format!("cannot send the tunnel request ({error})"))?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0_u8; 1024];
    let head_end = loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("no answer to the tunnel request ({error})"))?;
        if read == 0 {
            return Err(
                "it closed the connection instead of answering the tunnel request".to_owned(),
            );
        }
        answer.extend_from_slice(&chunk[..read]);
        if let Some(end) = answer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        if answer.len() > MAX_PROXY_ANSWER {
            return Err("its answer to the tunnel request is too long".to_owned());
        }
    };
    let status_line = String::from_utf8_lossy(
        answer
            .split(|byte| *byte == b'\n')
            .next()
            .unwrap_or_default(),
    )
    .trim()
    .to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(200..=299) if head_end == answer.len() => Ok(()),
        Some(200..=299) => Err("it sent data before the tunnel was used".to_owned()),
        Some(407) => Err(format!(
            "it asks for credentials ({status_line}); put them in the proxy URL, http://user:password@host:port"
        )),
        Some(_) => Err(format!("it refused the tunnel to {host}:{port} ({status_line})")),
        None => Err(format!(
            "its answer to the tunnel request is not HTTP ({status_line})"
        )),
    }
}

/// A connection to the endpoint, or to a proxy.
enum ProxyStream {
    Tcp(TcpStream),
    /// TLS to an `https://` proxy (the endpoint's own TLS, if any, runs inside it).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection as hyper sees it; `proxied` makes hyper send plain-http requests in absolute
/// form to a forwarding proxy.
struct Conn {
    io: TokioIo<ProxyStream>,
    proxied: bool,
}

impl Conn {
    fn new(stream: ProxyStream, proxied: bool) -> Self {
        Self {
            io: TokioIo::new(stream),
            proxied,
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The whole connect (DNS, TCP, proxy tunnel, TLS handshake) under the connect timeout.
#[derive(Clone)]
struct TimedConnector {
    inner: HttpsConnector<ProxyConnector>,
    timeout: Duration,
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

#[cfg(test)]
mod tests;
