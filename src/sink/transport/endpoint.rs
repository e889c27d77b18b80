//! Where data-path calls go: the URL the SDK itself would send `PutRecords` or `PutRecordBatch`
//! to, from the SDK's own endpoint resolvers given the parameters the SDK gives them.

use aws_config::SdkConfig;
use aws_sdk_firehose::config::endpoint::ResolveEndpoint as _;
use aws_sdk_kinesis::config::endpoint::ResolveEndpoint as _;
use aws_smithy_types::Document;
use aws_types::service_config::ServiceConfigKey;
use http::Uri;

use super::error::{chain_text, TransportError};

const KINESIS: &str = "Kinesis";
const FIREHOSE: &str = "Firehose";

/// A resolved endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Where calls go: scheme, authority and path (`https://kinesis.eu-west-1.amazonaws.com/`).
    /// For Kinesis, credentials that name their account may move calls to the account's own
    /// endpoint, as the SDK does; [`crate::sink::transport::AwsCaller`] resolves that itself.
    pub url: Uri,
    /// The region to sign for, when the resolver names one.
    signing_region: Option<String>,
    /// Kinesis only: the resolver's parameters, to resolve again for an account ID.
    kinesis: Option<KinesisParams>,
}

impl Endpoint {
    /// The signing region the resolver gave, if it gave one (else the SDK's region applies).
    pub fn signing_region(&self) -> Option<&str> {
        self.signing_region.as_deref()
    }

    /// The endpoint for credentials of `account_id`: the SDK passes the account ID of the
    /// resolved credentials to the Kinesis resolver, which may route by it.
    pub(crate) async fn for_account(
        &self,
        account_id: Option<&str>,
    ) -> Result<Endpoint, TransportError> {
        match (&self.kinesis, account_id) {
            (Some(params), Some(_)) => resolve_kinesis(params.clone(), account_id).await,
            _ => Ok(self.clone()),
        }
    }

    fn from_resolved(
        service: &'static str,
        resolved: &aws_smithy_types::endpoint::Endpoint,
    ) -> Result<Self, TransportError> {
        let invalid = |detail: String| TransportError::Endpoint {
            service,
            message: format!("the resolver gave `{}`, {detail}", resolved.url()),
        };
        let parsed: Uri = resolved
            .url()
            .parse()
            .map_err(|error| invalid(format!("not a URL ({error})")))?;
        let (Some(scheme), Some(authority)) = (parsed.scheme(), parsed.authority()) else {
            return Err(invalid("which has no scheme or host".to_owned()));
        };
        // The operation's path ("/") goes after the endpoint's own path, as the SDK joins them.
        let path = format!("{}/", parsed.path().trim_end_matches('/'));
        let url = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|error| invalid(format!("not a URL ({error})")))?;
        Ok(Self {
            url,
            signing_region: sigv4_signing_region(resolved),
            kinesis: None,
        })
    }
}

/// The Kinesis data-plane endpoint exactly as aws-sdk-kinesis resolves it for `PutRecords`:
/// region, FIPS and dual-stack from `sdk`, `endpoint_url` (else the SDK's own endpoint URL
/// settings), the stream's ARN when the stream is named by ARN, operation type `data`.
pub async fn kinesis_endpoint(
    sdk: &SdkConfig,
    endpoint_url: Option<&str>,
    stream_arn: Option<&str>,
) -> Result<Endpoint, TransportError> {
    let params = KinesisParams {
        region: sdk_region(sdk),
        use_fips: sdk.use_fips(),
        use_dual_stack: sdk.use_dual_stack(),
        endpoint: service_endpoint_url(sdk, KINESIS, endpoint_url),
        stream_arn: stream_arn.map(str::to_owned),
        account_id_endpoint_mode: sdk
            .account_id_endpoint_mode()
            .cloned()
            .unwrap_or_default()
            .to_string(),
    };
    resolve_kinesis(params, None).await
}

/// The Firehose endpoint exactly as aws-sdk-firehose resolves it for `PutRecordBatch`.
pub async fn firehose_endpoint(
    sdk: &SdkConfig,
    endpoint_url: Option<&str>,
) -> Result<Endpoint, TransportError> {
    let error = |message: String| TransportError::Endpoint {
        service: FIREHOSE,
        message,
    };
    let params = aws_sdk_firehose::config::endpoint::Params::builder()
        .set_region(sdk_region(sdk))
        .set_use_fips(sdk.use_fips())
        .set_use_dual_stack(sdk.use_dual_stack())
        .set_endpoint(service_endpoint_url(sdk, FIREHOSE, endpoint_url))
        .build()
        .map_err(|invalid| error(chain_text(&invalid)))?;
    let resolved = aws_sdk_firehose::config::endpoint::DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|failure| error(chain_text(failure.as_ref())))?;
    Endpoint::from_resolved(FIREHOSE, &resolved)
}

/// The Kinesis resolver's inputs, as the SDK's `PutRecords` sets them.
#[derive(Clone, Debug)]
struct KinesisParams {
    region: Option<String>,
    use_fips: Option<bool>,
    use_dual_stack: Option<bool>,
    endpoint: Option<String>,
    stream_arn: Option<String>,
    account_id_endpoint_mode: String,
}

async fn resolve_kinesis(
    params: KinesisParams,
    account_id: Option<&str>,
) -> Result<Endpoint, TransportError> {
    let error = |message: String| TransportError::Endpoint {
        service: KINESIS,
        message,
    };
    let built = aws_sdk_kinesis::config::endpoint::Params::builder()
        .set_region(params.region.clone())
        .set_use_fips(params.use_fips)
        .set_use_dual_stack(params.use_dual_stack)
        .set_endpoint(params.endpoint.clone())
        .set_account_id_endpoint_mode(Some(params.account_id_endpoint_mode.clone()))
        .set_operation_type(Some("data".to_owned()))
        .set_stream_arn(params.stream_arn.clone())
        .set_account_id(account_id.map(str::to_owned))
        .build()
        .map_err(|invalid| error(chain_text(&invalid)))?;
    let resolved = aws_sdk_kinesis::config::endpoint::DefaultResolver::new()
        .resolve_endpoint(&built)
        .await
        .map_err(|failure| error(chain_text(failure.as_ref())))?;
    let mut endpoint = Endpoint::from_resolved(KINESIS, &resolved)?;
    endpoint.kinesis = Some(params);
    Ok(endpoint)
}

fn sdk_region(sdk: &SdkConfig) -> Option<String> {
    sdk.region().map(|region| region.as_ref().to_owned())
}

/// The endpoint URL a service client built from `sdk` uses: `explicit` when given (the
/// config's `endpoint_url`); else, as the SDK decides, one set in code on the `SdkConfig`, then
/// the service's own `AWS_ENDPOINT_URL_<SERVICE>` or profile `endpoint_url`, then the general
/// one.
fn service_endpoint_url(
    sdk: &SdkConfig,
    service_id: &str,
    explicit: Option<&str>,
) -> Option<String> {
    if let Some(url) = explicit {
        return Some(url.to_owned());
    }
    let general = sdk.endpoint_url().map(str::to_owned);
    if sdk.get_origin("endpoint_url").is_client_config() {
        return general;
    }
    let key = ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| {
        sdk.service_config()
            .and_then(|config| config.load_config(key))
    })
    .or(general)
}

/// The `signingRegion` of the endpoint's SigV4 auth scheme, when it names one.
fn sigv4_signing_region(resolved: &aws_smithy_types::endpoint::Endpoint) -> Option<String> {
    let Some(Document::Array(schemes)) = resolved.properties().get("authSchemes") else {
        return None;
    };
    schemes.iter().find_map(|scheme| {
        let Document::Object(scheme) = scheme else {
            return None;
        };
        if !matches!(scheme.get("name"), Some(Document::String(name)) if name == "sigv4") {
            return None;
        }
        match scheme.get("signingRegion") {
            Some(Document::String(region)) => Some(region.clone()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests;
