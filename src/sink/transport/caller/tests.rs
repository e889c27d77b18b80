use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_async::time::StaticTimeSource;
use aws_smithy_http_client::test_util::capture_request;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;

use super::*;
use crate::sink::transport::test_support::{CountingProvider, TestClock, TestServer, OK};
use crate::sink::transport::{kinesis_endpoint, HttpSettings};

/// 2023-11-14T22:13:20Z, and a little.
fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
}

fn session_credentials() -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUC".to_owned()),
        None,
        "test",
    )
}

/// The headers the SDK adds for its own bookkeeping, which kinship does not send.
const SDK_ONLY: [&str; 3] = [
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "x-amz-user-agent",
];

fn header<'a>(request: &'a HttpRequest, name: &str) -> &'a str {
    request
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("the SDK sent {name}"))
}

fn signed_headers(authorization: &str) -> Vec<String> {
    let (_, rest) = authorization
        .split_once("SignedHeaders=")
        .expect("an Authorization header names its signed headers");
    let list = rest.split(',').next().unwrap_or_default();
    list.split(';').map(str::to_owned).collect()
}

/// Signs the SDK's own request (the headers it signed, the same body, time and credentials)
/// with kinship's signing code, and checks that the signature is the SDK's; then checks that
/// the request `post` builds signs the same headers with the same values, but the SDK's
/// bookkeeping ones.
fn assert_signs_as_the_sdk(sdk: &HttpRequest, credentials: Credentials, service: &str) {
    let body = sdk.body().bytes().expect("an in-memory body");
    // The headers the SDK had when it signed (it adds some after), but those signing adds.
    let sdk_signed = signed_headers(header(sdk, "authorization"));
    let mut ours = Request::builder().method(sdk.method()).uri(sdk.uri());
    for (name, value) in sdk.headers().iter() {
        if sdk_signed.iter().any(|signed| signed == name)
            && !matches!(name, "host" | "x-amz-date" | "x-amz-security-token")
        {
            ours = ours.header(name, value);
        }
    }
    let mut ours = ours.body(()).expect("a request");
    let identity: Identity = credentials.clone().into();
    sign_request(
        &mut ours,
        body,
        &identity,
        "eu-west-1",
        service,
        signing_time(),
    )
    .expect("signed");
    for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
        assert_eq!(
            ours.headers()
                .get(name)
                .and_then(|value| value.to_str().ok()),
            sdk.headers().get(name),
            "{name}"
        );
    }
    assert!(sdk.headers().contains_key("authorization"));
    assert_eq!(header(sdk, "x-amz-date"), "20231114T221320Z");

    let url: http::Uri = sdk.uri().parse().expect("a URL");
    let mut posted = unsigned_request(
        &url,
        header(sdk, "x-amz-target"),
        header(sdk, "content-type"),
        body.len(),
    )
    .expect("a request");
    sign_request(
        &mut posted,
        body,
        &identity,
        "eu-west-1",
        service,
        signing_time(),
    )
    .expect("signed");
    let sdk_signed: Vec<String> = sdk_signed
        .into_iter()
        .filter(|name| !SDK_ONLY.contains(&name.as_str()))
        .collect();
    let posted_authorization = posted.headers()["authorization"].to_str().expect("text");
    assert_eq!(signed_headers(posted_authorization), sdk_signed);
    for name in &sdk_signed {
        if name == "host" {
            continue;
        }
        assert_eq!(
            posted
                .headers()
                .get(name.as_str())
                .and_then(|value| value.to_str().ok()),
            Some(header(sdk, name)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn kinesis_requests_are_signed_exactly_as_the_sdk_signs_them() {
    for credentials in [
        session_credentials(),
        Credentials::new("AKIDSTATIC", "static-secret", None, None, "test"),
    ] {
        let (http, captured) = capture_request(None);
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(credentials.clone())
            .time_source(StaticTimeSource::new(signing_time()))
            .retry_config(RetryConfig::disabled())
            .http_client(http)
            .build();
        let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
            .data(aws_sdk_kinesis::primitives::Blob::new(
                b"2024-01-01 GET /index.html 200\n".to_vec(),
            ))
            .partition_key("host-1")
            .build()
            .expect("an entry");
        let _ = aws_sdk_kinesis::Client::from_conf(config)
            .put_records()
            .stream_name("logs")
            .records(entry)
            .send()
            .await;
        let request = captured.expect_request();
        assert_eq!(request.uri(), "https://kinesis.eu-west-1.amazonaws.com/");
        assert_signs_as_the_sdk(&request, credentials, "kinesis");
    }
}

#[tokio::test]
async fn firehose_requests_are_signed_exactly_as_the_sdk_signs_them() {
    let (http, captured) = capture_request(None);
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(session_credentials())
        .time_source(StaticTimeSource::new(signing_time()))
        .retry_config(RetryConfig::disabled())
        .http_client(http)
        .build();
    let record = aws_sdk_firehose::types::Record::builder()
        .data(aws_sdk_firehose::primitives::Blob::new(
            b"line one\nline two\n".to_vec(),
        ))
        .build()
        .expect("a record");
    let _ = aws_sdk_firehose::Client::from_conf(config)
        .put_record_batch()
        .delivery_stream_name("logs")
        .records(record)
        .send()
        .await;
    let request = captured.expect_request();
    assert_eq!(request.uri(), "https://firehose.eu-west-1.amazonaws.com/");
    assert_signs_as_the_sdk(&request, session_credentials(), "firehose");
}

struct Fixture {
    server: TestServer,
    clock: TestClock,
    calls: Arc<AtomicUsize>,
    caller: AwsCaller,
}

async fn fixture(lifetime: Option<Duration>, fail: bool) -> Fixture {
    let server = TestServer::start(None, OK).await;
    let clock = TestClock::new(signing_time());
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = CountingProvider {
        calls: Arc::clone(&calls),
        clock: clock.clone(),
        lifetime,
        fail,
    };
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .time_source(SharedTimeSource::new(clock.clone()))
        .build();
    let caller = caller_to(&sdk, Some(&format!("http://{}", server.addr))).await;
    Fixture {
        server,
        clock,
        calls,
        caller,
    }
}

/// A caller of Kinesis at `endpoint_url` (the region's endpoint when `None`) for `sdk`.
async fn caller_to(sdk: &SdkConfig, endpoint_url: Option<&str>) -> AwsCaller {
    let endpoint = kinesis_endpoint(sdk, endpoint_url, None)
        .await
        .expect("an endpoint");
    let http = HttpClient::new(&HttpSettings {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ca_file: None,
        http2: false,
    })
    .expect("a client");
    AwsCaller::new(http, endpoint, sdk, "kinesis").expect("a caller")
}

const TARGET: &str = "Kinesis_20131202.PutRecords";
const JSON: &str = "application/x-amz-json-1.1";

fn body() -> Bytes {
    Bytes::from_static(b"{\"StreamName\":\"logs\",\"Records\":[]}")
}

#[tokio::test]
async fn credentials_are_asked_for_once_and_again_when_their_expiry_nears() {
    let fixture = fixture(Some(Duration::from_secs(3600)), false).await;
    let mut calls = Vec::new();
    for _ in 0..10 {
        let caller = fixture.caller.clone();
        calls.push(tokio::spawn(async move {
            caller.post(TARGET, JSON, body()).await
        }));
    }
    for call in calls {
        let response = call.await.expect("joined").expect("the call succeeds");
        assert_eq!(response.status, 200);
    }
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 1);

    // Until five minutes before expiry, the same credentials.
    fixture.clock.advance(Duration::from_secs(54 * 60));
    fixture
        .caller
        .post(TARGET, JSON, body())
        .await
        .expect("sent");
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 1);

    // Then renewed once.
    fixture.clock.advance(Duration::from_secs(2 * 60));
    for _ in 0..3 {
        fixture
            .caller
            .post(TARGET, JSON, body())
            .await
            .expect("sent");
    }
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 2);

    let seen = fixture.server.seen();
    assert_eq!(seen.len(), 14);
    let credential_of = |index: usize| {
        let authorization = seen[index].headers["authorization"].to_str().expect("text");
        authorization
            .split("Credential=")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("a credential")
            .to_owned()
    };
    assert_eq!(credential_of(0), "AKIDTEST1");
    assert_eq!(credential_of(10), "AKIDTEST1");
    assert_eq!(credential_of(13), "AKIDTEST2");
    assert_eq!(seen[0].headers["x-amz-security-token"], "test-token");
    assert_eq!(seen[0].headers["x-amz-target"], TARGET);
    assert_eq!(seen[0].headers["content-type"], JSON);
    assert_eq!(seen[0].body, body());
    assert_eq!(seen[0].uri, "/");
    assert_eq!(seen[0].method, "POST");
}

#[tokio::test]
async fn credentials_that_never_expire_are_asked_for_once() {
    let fixture = fixture(None, false).await;
    fixture
        .caller
        .post(TARGET, JSON, body())
        .await
        .expect("sent");
    fixture.clock.advance(Duration::from_secs(400 * 24 * 3600));
    fixture
        .caller
        .post(TARGET, JSON, body())
        .await
        .expect("sent");
    assert_eq!(fixture.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_provider_without_credentials_fails_the_call_with_its_message() {
    let fixture = fixture(None, true).await;
    let error = fixture
        .caller
        .post(TARGET, JSON, body())
        .await
        .expect_err("no credentials");
    assert!(
        matches!(&error, TransportError::NoCredentials { message } if message.contains("the test provider has nothing")),
        "{error}"
    );
    assert!(fixture.server.seen().is_empty());
}

#[tokio::test]
async fn no_credentials_provider_fails_every_call() {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .build();
    let caller = caller_to(&sdk, None).await;
    for _ in 0..2 {
        let error = caller
            .post(TARGET, JSON, body())
            .await
            .expect_err("no provider");
        assert!(
            matches!(error, TransportError::NoCredentials { .. }),
            "{error}"
        );
    }
}

#[tokio::test]
async fn the_service_error_type_and_request_id_come_back() {
    let server = TestServer::start(
        None,
        crate::sink::transport::test_support::Reply {
            status: 400,
            error_type: Some("ResourceNotFoundException:http://internal.amazon.com/coral/"),
            body: b"{\"message\":\"Stream logs not found\"}",
        },
    )
    .await;
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(session_credentials()))
        .build();
    let caller = caller_to(&sdk, Some(&format!("http://{}", server.addr))).await;
    let response = caller.post(TARGET, JSON, body()).await.expect("answered");
    assert_eq!(response.status, 400);
    assert_eq!(
        response.error_type.as_deref(),
        Some("ResourceNotFoundException:http://internal.amazon.com/coral/")
    );
    assert_eq!(response.request_id.as_deref(), Some("test-request-1"));
    assert_eq!(
        response.body,
        Bytes::from_static(b"{\"message\":\"Stream logs not found\"}")
    );
}
