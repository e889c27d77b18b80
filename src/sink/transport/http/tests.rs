use std::io::Write as _;
use std::sync::atomic::Ordering;

use http::Version;

use super::*;
use crate::sink::transport::test_support::{
    ProxySeen, SilentServer, TestCa, TestProxy, TestServer, OK,
};

fn settings(ca_file: Option<&Path>) -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ca_file: ca_file.map(Path::to_owned),
        http2: false,
    }
}

fn no_proxies() -> Matcher {
    Matcher::builder().build()
}

fn post(url: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from_static(b"{\"Records\":[]}")))
        .expect("a request")
}

fn ca_file(ca: &TestCa) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(ca.pem().as_bytes()).expect("written");
    file
}

#[tokio::test]
async fn https_succeeds_with_the_ca_file_and_names_the_certificate_problem_without_it() {
    let ca = TestCa::new();
    let server = TestServer::start(Some(ca.server_config(&["localhost"], &[])), OK).await;
    let url = format!("https://localhost:{}/", server.addr.port());
    let bundle = ca_file(&ca);

    let trusting =
        HttpClient::with_proxies(&settings(Some(bundle.path())), no_proxies()).expect("a client");
    let response = trusting.send(post(&url)).await.expect("the call succeeds");
    assert_eq!(response.status, 200);
    assert_eq!(response.request_id.as_deref(), Some("test-request-1"));
    assert_eq!(response.body, Bytes::from_static(OK.body));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, Bytes::from_static(b"{\"Records\":[]}"));
    assert!(seen[0].headers.contains_key("user-agent"));

    let untrusting = HttpClient::with_proxies(&settings(None), no_proxies()).expect("a client");
    let error = untrusting
        .send(post(&url))
        .await
        .expect_err("the certificate is not trusted");
    let TransportError::Connect { endpoint, reason } = &error else {
        panic!("a connect error, not {error}");
    };
    assert_eq!(
        endpoint,
        &format!("https://localhost:{}", server.addr.port())
    );
    assert!(reason.contains("aws.tls.ca_file"), "{error}");
    if native_roots_available() {
        assert!(
            reason.contains("the certificate is not trusted (UnknownIssuer)"),
            "{error}"
        );
    }
    assert!(!error.to_string().contains('\n'));
    assert!(!error.is_transient());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named_as_such() {
    let ca = TestCa::new();
    let server = TestServer::start(Some(ca.server_config(&["elsewhere.test"], &[])), OK).await;
    let bundle = ca_file(&ca);
    let client =
        HttpClient::with_proxies(&settings(Some(bundle.path())), no_proxies()).expect("a client");
    let error = client
        .send(post(&format!("https://localhost:{}/", server.addr.port())))
        .await
        .expect_err("the name does not match");
    assert!(
        matches!(&error, TransportError::Connect { reason, .. } if reason.contains("does not name this host")),
        "{error}"
    );
}

#[test]
fn an_unreadable_or_empty_ca_file_is_a_config_error_naming_it() {
    let missing = Path::new("/nonexistent/kinship/ca.pem");
    let error = HttpClient::with_proxies(&settings(Some(missing)), no_proxies())
        .expect_err("a missing file is refused");
    assert!(
        matches!(&error, TransportError::Config { path, reason } if path == missing && reason.starts_with("cannot read it")),
        "{error}"
    );
    assert!(error.to_string().contains("/nonexistent/kinship/ca.pem"));

    let empty = tempfile::NamedTempFile::new().expect("a temporary file");
    let error = HttpClient::with_proxies(&settings(Some(empty.path())), no_proxies())
        .expect_err("an empty file is refused");
    assert!(
        matches!(&error, TransportError::Config { path, reason } if path == empty.path() && reason.contains("no certificate")),
        "{error}"
    );

    let mut broken = tempfile::NamedTempFile::new().expect("a temporary file");
    broken
        .write_all(b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
        .expect("written");
    let error = HttpClient::with_proxies(&settings(Some(broken.path())), no_proxies())
        .expect_err("a broken file is refused");
    assert!(matches!(&error, TransportError::Config { .. }), "{error}");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let client = HttpClient::with_proxies(&settings(None), no_proxies()).expect("a client");
    let error = client
        .send(post(&format!("http://{addr}/")))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&error, TransportError::Connect { reason, .. } if reason == &format!("{addr} refused the connection")),
        "{error}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_a_connect_error_naming_dns() {
    let client = HttpClient::with_proxies(&settings(None), no_proxies()).expect("a client");
    let error = client
        .send(post("http://kinship-test.invalid/"))
        .await
        .expect_err("no such host");
    assert!(
        matches!(&error, TransportError::Connect { reason, .. } if reason.starts_with("cannot resolve kinship-test.invalid")),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = SilentServer::start().await;
    let short = HttpSettings {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(600),
        ca_file: None,
        http2: false,
    };
    let client = HttpClient::with_proxies(&short, no_proxies()).expect("a client");

    // Plain HTTP connects at once, then no answer comes.
    let error = client
        .send(post(&format!("http://{}/", server.addr)))
        .await
        .expect_err("no answer");
    assert!(
        matches!(&error, TransportError::Timeout { phase: TimeoutPhase::Response, after, .. } if *after == short.request_timeout),
        "{error}"
    );
    assert!(error.is_transient());
    assert_eq!(
        error.to_string(),
        format!("http://{} did not answer within 600ms", server.addr)
    );

    // HTTPS: the TLS handshake never completes, within the connect timeout.
    let error = client
        .send(post(&format!("https://{}/", server.addr)))
        .await
        .expect_err("no handshake");
    assert!(
        matches!(&error, TransportError::Timeout { phase: TimeoutPhase::Connect, after, .. } if *after == short.connect_timeout),
        "{error}"
    );
}

#[tokio::test]
async fn one_connection_serves_many_calls() {
    let server = TestServer::start(None, OK).await;
    let client = HttpClient::with_proxies(&settings(None), no_proxies()).expect("a client");
    let url = format!("http://{}/", server.addr);
    for _ in 0..5 {
        let response = client
            .clone()
            .send(post(&url))
            .await
            .expect("the call succeeds");
        assert_eq!(response.status, 200);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert!(server
        .seen()
        .iter()
        .all(|seen| seen.version == Version::HTTP_11));
}

#[tokio::test]
async fn http2_is_negotiated_only_when_enabled() {
    let ca = TestCa::new();
    let server = TestServer::start(
        Some(ca.server_config(&["localhost"], &[b"h2", b"http/1.1"])),
        OK,
    )
    .await;
    let bundle = ca_file(&ca);
    let url = format!("https://localhost:{}/", server.addr.port());
    for (http2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let settings = HttpSettings {
            http2,
            ..settings(Some(bundle.path()))
        };
        let client = HttpClient::with_proxies(&settings, no_proxies()).expect("a client");
        client.send(post(&url)).await.expect("the call succeeds");
        assert_eq!(server.seen().last().map(|seen| seen.version), Some(version));
    }
}

#[tokio::test]
async fn https_goes_through_the_proxy_tunnel_with_its_credentials_unless_no_proxy_names_the_host() {
    let ca = TestCa::new();
    let server = TestServer::start(Some(ca.server_config(&["localhost"], &[])), OK).await;
    let proxy = TestProxy::start(Some("Basic dXNlcjpzM2NyZXQ=")).await;
    let bundle = ca_file(&ca);
    let url = format!("https://localhost:{}/", server.addr.port());

    let proxies = Matcher::builder()
        .https(format!("http://user:s3cret@{}", proxy.addr))
        .build();
    let client =
        HttpClient::with_proxies(&settings(Some(bundle.path())), proxies).expect("a client");
    let response = client.send(post(&url)).await.expect("the call succeeds");
    assert_eq!(response.status, 200);
    assert_eq!(
        proxy.seen(),
        vec![ProxySeen {
            request_line: format!("CONNECT localhost:{} HTTP/1.1", server.addr.port()),
            authorization: Some("Basic dXNlcjpzM2NyZXQ=".to_owned()),
        }]
    );
    // The request itself went through the tunnel, without the proxy's credentials.
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("proxy-authorization"));

    let bypassing = Matcher::builder()
        .https(format!("http://user:s3cret@{}", proxy.addr))
        .no("localhost")
        .build();
    let client =
        HttpClient::with_proxies(&settings(Some(bundle.path())), bypassing).expect("a client");
    client.send(post(&url)).await.expect("the call succeeds");
    assert_eq!(proxy.seen().len(), 1, "NO_PROXY bypasses the proxy");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_proxy_asking_for_credentials_is_a_connect_error_that_says_so() {
    let proxy = TestProxy::start(Some("Basic c29tZW9uZTplbHNl")).await;
    let proxies = Matcher::builder()
        .https(format!("http://{}", proxy.addr))
        .build();
    let client = HttpClient::with_proxies(&settings(None), proxies).expect("a client");
    let error = client
        .send(post("https://kinesis.eu-west-1.amazonaws.com/"))
        .await
        .expect_err("the proxy refuses");
    let TransportError::Connect { endpoint, reason } = &error else {
        panic!("a connect error, not {error}");
    };
    assert_eq!(endpoint, "https://kinesis.eu-west-1.amazonaws.com");
    assert!(
        reason.starts_with(&format!(
            "through the proxy http://{}: it asks for credentials (HTTP/1.1 407",
            proxy.addr
        )),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_proxy_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let proxies = Matcher::builder().https(format!("http://{addr}")).build();
    let client = HttpClient::with_proxies(&settings(None), proxies).expect("a client");
    let error = client
        .send(post("https://kinesis.eu-west-1.amazonaws.com/"))
        .await
        .expect_err("the proxy is down");
    assert!(
        matches!(&error, TransportError::Connect { reason, .. }
            if reason == &format!("through the proxy http://{addr}: cannot reach it: {addr} refused the connection")),
        "{error}"
    );
}

#[tokio::test]
async fn plain_http_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
    let proxy = TestProxy::start(Some("Basic dXNlcjpzM2NyZXQ=")).await;
    let proxies = Matcher::builder()
        .http(format!("http://user:s3cret@{}", proxy.addr))
        .build();
    let client = HttpClient::with_proxies(&settings(None), proxies).expect("a client");
    // The host is never resolved here: the proxy is asked for it.
    let response = client
        .send(post("http://kinesis.kinship-test.invalid:4566/"))
        .await
        .expect("the proxy answers");
    assert_eq!(response.request_id.as_deref(), Some("via-proxy"));
    assert_eq!(
        proxy.seen(),
        vec![ProxySeen {
            request_line: "POST http://kinesis.kinship-test.invalid:4566/ HTTP/1.1".to_owned(),
            authorization: Some("Basic dXNlcjpzM2NyZXQ=".to_owned()),
        }]
    );
}
