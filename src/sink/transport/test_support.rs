//! Doubles for the transport tests: a certificate authority, HTTP(S) servers that record what
//! they receive, a server that never answers, a proxy (CONNECT tunnels and forwarded plain-http
//! requests), a settable clock and a counting credentials provider.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_smithy_async::time::TimeSource;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A certificate authority of the tests' own, unknown to any trust store.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "kinship test CA");
        let key = KeyPair::generate().expect("a CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server configuration with a certificate for `names` issued by this CA, offering
    /// `alpn` protocols.
    pub(crate) fn server_config(
        &self,
        names: &[&str],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = CertificateParams::new(names).expect("server parameters");
        let key = KeyPair::generate().expect("a server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone(), self.issuer.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("a server configuration");
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

/// One request as a test server received it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What a test server answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) error_type: Option<&'static str>,
    pub(crate) body: &'static [u8],
}

pub(crate) const OK: Reply = Reply {
    status: 200,
    error_type: None,
    body: b"{\"FailedRecordCount\":0,\"Records\":[]}",
};

/// An HTTP/1.1 (and, through ALPN, HTTP/2) server on 127.0.0.1, plain or TLS.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    pub(crate) connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub(crate) async fn start(tls: Option<Arc<rustls::ServerConfig>>, reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let seen = Arc::clone(&seen);
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => serve_connection(tcp, false, seen, reply).await,
                            Some(config) => {
                                let Ok(stream) =
                                    tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                                else {
                                    return;
                                };
                                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                serve_connection(stream, h2, seen, reply).await;
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            seen,
            connections,
            task,
        }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

async fn serve_connection<S>(stream: S, h2: bool, seen: Arc<Mutex<Vec<Seen>>>, reply: Reply)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            seen.lock().expect("not poisoned").push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                version: parts.version,
                headers: parts.headers,
                body,
            });
            let mut response = Response::builder()
                .status(reply.status)
                .header("x-amzn-RequestId", "test-request-1")
                .header("content-type", "application/x-amz-json-1.1");
            if let Some(error_type) = reply.error_type {
                response = response.header("x-amzn-ErrorType", error_type);
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from_static(reply.body)))
                    .expect("a response"),
            )
        }
    });
    let io = TokioIo::new(stream);
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}

/// A server that accepts connections and never reads or answers.
pub(crate) struct SilentServer {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentServer {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        Self { addr, task }
    }
}

/// What the proxy received: the request line and any `Proxy-Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxySeen {
    pub(crate) request_line: String,
    pub(crate) authorization: Option<String>,
}

/// A proxy: CONNECT tunnels to the requested host, and plain-http requests in absolute form
/// answered by the proxy itself. With `require` set, requests without that
/// `Proxy-Authorization` value get 407.
pub(crate) struct TestProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Mutex<Vec<ProxySeen>>>,
    task: JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    pub(crate) async fn start(require: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    tokio::spawn(proxy_connection(tcp, Arc::clone(&seen), require));
                }
            }
        });
        Self { addr, seen, task }
    }

    pub(crate) fn seen(&self) -> Vec<ProxySeen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

async fn proxy_connection(
    mut client: TcpStream,
    seen: Arc<Mutex<Vec<ProxySeen>>>,
    require: Option<&'static str>,
) {
    let mut head = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&chunk[..read]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    seen.lock().expect("not poisoned").push(ProxySeen {
        request_line: request_line.clone(),
        authorization: authorization.clone(),
    });
    if require.is_some() && authorization.as_deref() != require {
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    let mut fields = request_line.split(' ');
    let (method, target) = (
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
    );
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok()
        {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    } else {
        let body = OK.body;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-amzn-requestid: via-proxy\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = client.write_all(answer.as_bytes()).await;
        let _ = client.write_all(body).await;
        let _ = client.shutdown().await;
    }
}

/// A clock the test sets.
#[derive(Clone, Debug)]
pub(crate) struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    pub(crate) fn new(now: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    pub(crate) fn advance(&self, by: Duration) {
        *self.0.lock().expect("not poisoned") += by;
    }
}

impl TimeSource for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().expect("not poisoned")
    }
}

/// A credentials provider that counts its calls; its credentials last `lifetime` from the
/// clock's now (forever when `None`), or it fails when `fail` is set.
#[derive(Debug)]
pub(crate) struct CountingProvider {
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) clock: TestClock,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) fail: bool,
}

impl ProvideCredentials for CountingProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail {
            return provider::future::ProvideCredentials::ready(Err(
                provider::error::CredentialsError::not_loaded("the test provider has nothing"),
            ));
        }
        let expiry = self.lifetime.map(|lifetime| self.clock.now() + lifetime);
        provider::future::ProvideCredentials::ready(Ok(Credentials::new(
            format!("AKIDTEST{call}"),
            "test-secret",
            Some("test-token".to_owned()),
            expiry,
            "counting",
        )))
    }
}
