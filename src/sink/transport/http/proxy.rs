//! Connections through a proxy: which proxy (if any) a destination goes through, TLS to an
//! `https://` proxy, and the `CONNECT` tunnel an `https://` destination is reached through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http::uri::Scheme;
use http::Uri;
use hyper_util::client::proxy::matcher::Matcher;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower_service::Service;

use super::super::error::{chain_text, find_in_chain};
use super::connect::{connect_tcp, ConnectFailure};
use super::origin;
use super::stream::{Conn, ProxyStream};
use super::tls::describe_tls;

/// The longest proxy answer to a CONNECT request read before giving up on it.
const MAX_PROXY_ANSWER: usize = 16 * 1024;

/// Opens connections (direct, or through a proxy) for hyper-rustls to put TLS on.
#[derive(Clone)]
pub(super) struct ProxyConnector {
    pub(super) proxies: Arc<Matcher>,
    /// TLS to an `https://` proxy itself.
    pub(super) proxy_tls: Arc<ClientConfig>,
    pub(super) no_trust_roots: bool,
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

/// Asks the proxy on `stream` for a tunnel to `destination` (`CONNECT host:port`).
pub(super) async fn open_tunnel<S>(
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
