//! The URL our resolution gives against the URL the SDK client actually sent its call to.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_http_client::test_util::capture_request;
use aws_types::endpoint_config::AccountIdEndpointMode;

use super::*;

/// One way of configuring the SDK.
#[derive(Clone, Copy, Debug, Default)]
struct Case {
    region: &'static str,
    fips: bool,
    dual_stack: bool,
    endpoint_url: Option<&'static str>,
    stream_arn: Option<&'static str>,
    account_id: Option<&'static str>,
    account_mode_disabled: bool,
}

const ARN: &str = "arn:aws:kinesis:eu-west-1:123456789012:stream/logs";

fn cases() -> Vec<Case> {
    let base = Case {
        region: "eu-west-1",
        ..Case::default()
    };
    vec![
        base,
        Case {
            region: "us-east-1",
            fips: true,
            ..base
        },
        Case {
            dual_stack: true,
            ..base
        },
        Case {
            region: "us-west-2",
            fips: true,
            dual_stack: true,
            ..base
        },
        Case {
            region: "cn-north-1",
            ..base
        },
        Case {
            endpoint_url: Some("http://localhost:4566"),
            ..base
        },
        Case {
            endpoint_url: Some("https://vpce-0123.kinesis.eu-west-1.vpce.amazonaws.com/prefix/"),
            ..base
        },
        Case {
            stream_arn: Some(ARN),
            ..base
        },
        Case {
            stream_arn: Some(ARN),
            fips: true,
            ..base
        },
        Case {
            stream_arn: Some(ARN),
            endpoint_url: Some("http://localhost:4566"),
            ..base
        },
        Case {
            account_id: Some("210987654321"),
            ..base
        },
        Case {
            account_id: Some("210987654321"),
            stream_arn: Some(ARN),
            ..base
        },
        Case {
            account_id: Some("210987654321"),
            account_mode_disabled: true,
            ..base
        },
    ]
}

fn credentials(case: Case) -> Credentials {
    let builder = Credentials::builder()
        .access_key_id("AKIDEXAMPLE")
        .secret_access_key("secret")
        .provider_name("test");
    match case.account_id {
        Some(account) => builder.account_id(account).build(),
        None => builder.build(),
    }
}

fn sdk_config(
    case: Case,
    http: aws_smithy_http_client::test_util::CaptureRequestHandler,
) -> SdkConfig {
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(case.region))
        .use_fips(case.fips)
        .use_dual_stack(case.dual_stack)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials(case)),
        )
        .retry_config(RetryConfig::disabled())
        .http_client(http);
    if case.account_mode_disabled {
        builder = builder.account_id_endpoint_mode(AccountIdEndpointMode::Disabled);
    }
    builder.build()
}

#[tokio::test]
async fn kinesis_endpoints_are_where_the_sdk_sends_put_records() {
    for case in cases() {
        let (http, captured) = capture_request(None);
        let sdk = sdk_config(case, http);
        let mut config = aws_sdk_kinesis::config::Builder::from(&sdk);
        if let Some(url) = case.endpoint_url {
            config = config.endpoint_url(url);
        }
        let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
            .data(aws_sdk_kinesis::primitives::Blob::new(b"line\n".to_vec()))
            .partition_key("pk")
            .build()
            .expect("an entry");
        let request = aws_sdk_kinesis::Client::from_conf(config.build())
            .put_records()
            .set_stream_name(case.stream_arn.is_none().then(|| "logs".to_owned()))
            .set_stream_arn(case.stream_arn.map(str::to_owned))
            .records(entry);
        let _ = request.send().await;
        let sent = captured.expect_request();

        let endpoint = kinesis_endpoint(&sdk, case.endpoint_url, case.stream_arn)
            .await
            .unwrap_or_else(|error| panic!("{case:?}: {error}"));
        let endpoint = endpoint
            .for_account(case.account_id)
            .await
            .unwrap_or_else(|error| panic!("{case:?}: {error}"));
        assert_eq!(endpoint.url.to_string(), sent.uri(), "{case:?}");
    }
}

#[tokio::test]
async fn firehose_endpoints_are_where_the_sdk_sends_put_record_batch() {
    for case in cases().into_iter().filter(|case| case.stream_arn.is_none()) {
        let (http, captured) = capture_request(None);
        let sdk = sdk_config(case, http);
        let mut config = aws_sdk_firehose::config::Builder::from(&sdk);
        if let Some(url) = case.endpoint_url {
            config = config.endpoint_url(url);
        }
        let record = aws_sdk_firehose::types::Record::builder()
            .data(aws_sdk_firehose::primitives::Blob::new(b"line\n".to_vec()))
            .build()
            .expect("a record");
        let _ = aws_sdk_firehose::Client::from_conf(config.build())
            .put_record_batch()
            .delivery_stream_name("logs")
            .records(record)
            .send()
            .await;
        let sent = captured.expect_request();

        let endpoint = firehose_endpoint(&sdk, case.endpoint_url)
            .await
            .unwrap_or_else(|error| panic!("{case:?}: {error}"));
        let endpoint = endpoint
            .for_account(case.account_id)
            .await
            .unwrap_or_else(|error| panic!("{case:?}: {error}"));
        assert_eq!(endpoint.url.to_string(), sent.uri(), "{case:?}");
    }
}

#[tokio::test]
async fn the_sdk_config_endpoint_url_applies_when_the_flow_sets_none() {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url("http://localhost:4567")
        .build();
    let endpoint = kinesis_endpoint(&sdk, None, None)
        .await
        .expect("an endpoint");
    assert_eq!(endpoint.url.to_string(), "http://localhost:4567/");
    let endpoint = kinesis_endpoint(&sdk, Some("http://localhost:4566"), None)
        .await
        .expect("an endpoint");
    assert_eq!(endpoint.url.to_string(), "http://localhost:4566/");
}

#[tokio::test]
async fn no_region_and_no_endpoint_is_an_endpoint_error() {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .build();
    let error = kinesis_endpoint(&sdk, None, None)
        .await
        .expect_err("no region");
    assert!(
        matches!(
            &error,
            TransportError::Endpoint {
                service: "Kinesis",
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains('\n'));
}
