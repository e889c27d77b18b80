//! AWS SDK clients built from each flow's settings: region, endpoints, credentials (default
//! chain, profile, static keys, a role assumed through STS), timeouts, extra trusted CAs
//! (`aws.tls.ca_file`), and proxies from the standard environment variables. Flows with equal
//! settings share one SDK configuration and one client per service; SDK clients trusting the
//! same CAs share one HTTP connection pool, and so do the data path's own HTTP clients
//! ([`crate::sink::transport`]) of flows with equal connection settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_kinesis::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder as HttpClientBuilder, Connector};

use super::check::IdentityProbe;
use crate::config::{AwsSettings, CredentialSource, DataPath, DestinationKind, FlowConfig};
use crate::secrets;
use crate::sink::transport::{self, AwsCaller, HttpClient, HttpSettings, TransportError};
use crate::sink::wire::WireFormat;

/// Credentials are renewed this long before they expire, so no call is signed with keys about
/// to lapse (assumed roles last 15 minutes at least).
const CREDENTIALS_RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("flow `{flow}`: no AWS region is set; set aws.region in the config (for every flow, or in the flow's own aws block), or AWS_REGION in the environment")]
    NoRegion { flow: String },
    #[error("cloudwatch: no AWS region is set; set aws.region or cloudwatch.aws.region in the config, or AWS_REGION in the environment")]
    NoCloudWatchRegion,
    /// The HTTP client cannot be built (`aws.tls.ca_file` unreadable or without certificates).
    #[error("flow `{flow}`: {error}")]
    Http { flow: String, error: TransportError },
    #[error("cloudwatch: {0}")]
    CloudWatchHttp(TransportError),
}

/// The SDK clients of one flow.
#[derive(Clone)]
pub struct FlowClients {
    pub region: String,
    /// The flow's SDK configuration (region, credentials provider, clock), for the data
    /// path's [`transport::AwsCaller`].
    pub sdk: SdkConfig,
    /// The data path's HTTP client for the flow's connection settings, shared by flows with
    /// equal ones.
    pub http: HttpClient,
    pub kinesis: Option<aws_sdk_kinesis::Client>,
    pub firehose: Option<aws_sdk_firehose::Client>,
    /// `None` when `check_identity` is off.
    pub identity: Option<IdentityProbe>,
    /// kinship's own data calls to the flow's destination (`data_path: direct`); `None` when
    /// they go through the SDK client.
    pub data_caller: Option<AwsCaller>,
    /// How those calls' bodies are encoded: as the flow says, else by the endpoint.
    pub wire_format: WireFormat,
}

/// Hosts of AWS's own endpoints (every partition), which speak AWS CBOR 1.1 as well as JSON.
const AWS_ENDPOINT_DOMAINS: &[&str] = &[
    "amazonaws.com",
    "amazonaws.com.cn",
    "api.aws",
    "c2s.ic.gov",
    "sc2s.sgov.gov",
];

/// The wire format of a flow's own data calls: as written, else CBOR to AWS's own endpoints
/// and JSON to any other, which may be an emulator (kinesalite cuts CBOR answers at 16 KiB,
/// moto reads no CBOR) or a proxy; an endpoint set in the environment counts as well.
pub fn wire_format_for(written: Option<WireFormat>, host: Option<&str>) -> WireFormat {
    written.unwrap_or_else(|| {
        let host = host
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let aws = AWS_ENDPOINT_DOMAINS
            .iter()
            .any(|domain| host.ends_with(&format!(".{domain}")));
        if aws {
            WireFormat::Cbor
        } else {
            WireFormat::Json
        }
    })
}

/// Builds and shares SDK clients.
pub struct AwsClients {
    /// The SDK's HTTP clients, by the extra CA bundle they trust.
    sdk_http: HashMap<Option<PathBuf>, SharedHttpClient>,
    /// The data path's HTTP clients, by connection settings.
    transport_http: HashMap<HttpSettings, HttpClient>,
    configs: HashMap<AwsSettings, SdkConfig>,
    kinesis: HashMap<AwsSettings, aws_sdk_kinesis::Client>,
    firehose: HashMap<AwsSettings, aws_sdk_firehose::Client>,
    sts: HashMap<AwsSettings, aws_sdk_sts::Client>,
}

impl Default for AwsClients {
    fn default() -> Self {
        Self::new()
    }
}

impl AwsClients {
    pub fn new() -> Self {
        Self {
            sdk_http: HashMap::new(),
            transport_http: HashMap::new(),
            configs: HashMap::new(),
            kinesis: HashMap::new(),
            firehose: HashMap::new(),
            sts: HashMap::new(),
        }
    }

    /// Distinct SDK configurations built so far (flows with equal settings share one).
    pub fn distinct_settings(&self) -> usize {
        self.configs.len()
    }

    /// The clients `flow` sends and checks through.
    pub async fn for_flow(&mut self, flow: &FlowConfig) -> Result<FlowClients, ClientError> {
        let settings = &flow.aws;
        let http_error = |error| ClientError::Http {
            flow: flow.name.clone(),
            error,
        };
        let sdk = self.sdk_config(settings).await.map_err(http_error)?;
        let http = self.transport_http(settings).map_err(http_error)?;
        let region =
            sdk.region()
                .map(ToString::to_string)
                .ok_or_else(|| ClientError::NoRegion {
                    flow: flow.name.clone(),
                })?;
        let (kinesis, firehose) = match flow.destination.kind {
            DestinationKind::Kinesis => {
                let client = self.kinesis.entry(settings.clone()).or_insert_with(|| {
                    let mut builder = aws_sdk_kinesis::config::Builder::from(&sdk);
                    if let Some(endpoint) = &settings.endpoint_url {
                        builder = builder.endpoint_url(endpoint);
                    }
                    aws_sdk_kinesis::Client::from_conf(builder.build())
                });
                (Some(client.clone()), None)
            }
            DestinationKind::Firehose => {
                let client = self.firehose.entry(settings.clone()).or_insert_with(|| {
                    let mut builder = aws_sdk_firehose::config::Builder::from(&sdk);
                    if let Some(endpoint) = &settings.endpoint_url {
                        builder = builder.endpoint_url(endpoint);
                    }
                    aws_sdk_firehose::Client::from_conf(builder.build())
                });
                (None, Some(client.clone()))
            }
        };
        let identity = settings.check_identity.then(|| {
            let client = self
                .sts
                .entry(settings.clone())
                .or_insert_with(|| aws_sdk_sts::Client::from_conf(sts_config(&sdk, settings)));
            IdentityProbe::new(client.clone(), sts_endpoint_text(settings, &region))
        });
        let mut wire_format = WireFormat::Json;
        let data_caller = match flow.data_path {
            DataPath::Sdk => None,
            DataPath::Direct => {
                let (endpoint, signing_name) = match flow.destination.kind {
                    DestinationKind::Kinesis => (
                        transport::kinesis_endpoint(
                            &sdk,
                            settings.endpoint_url.as_deref(),
                            flow.destination.arn.as_deref(),
                        )
                        .await,
                        "kinesis",
                    ),
                    DestinationKind::Firehose => (
                        transport::firehose_endpoint(&sdk, settings.endpoint_url.as_deref()).await,
                        "firehose",
                    ),
                };
                let endpoint = endpoint.map_err(http_error)?;
                wire_format = wire_format_for(flow.wire_format, endpoint.url.host());
                let caller = AwsCaller::new(http.clone(), endpoint, &sdk, signing_name);
                Some(caller.map_err(http_error)?)
            }
        };
        Ok(FlowClients {
            region,
            sdk,
            http,
            kinesis,
            firehose,
            identity,
            data_caller,
            wire_format,
        })
    }

    /// The client metrics are published through (`cloudwatch.enabled`).
    pub async fn cloudwatch(
        &mut self,
        settings: &AwsSettings,
    ) -> Result<aws_sdk_cloudwatch::Client, ClientError> {
        let sdk = self
            .sdk_config(settings)
            .await
            .map_err(ClientError::CloudWatchHttp)?;
        if sdk.region().is_none() {
            return Err(ClientError::NoCloudWatchRegion);
        }
        let mut builder = aws_sdk_cloudwatch::config::Builder::from(&sdk);
        if let Some(endpoint) = &settings.endpoint_url {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(aws_sdk_cloudwatch::Client::from_conf(builder.build()))
    }

    /// The SDK configuration (credentials, region, clock) and the data path's HTTP client of
    /// `flow`'s AWS settings, shared with its other clients, for calls kinship makes itself
    /// outside the data path (`add_ec2_metadata`'s `DescribeTags`). Dry-run flows too.
    pub async fn sdk_and_http(
        &mut self,
        flow: &FlowConfig,
    ) -> Result<(SdkConfig, HttpClient), ClientError> {
        let http_error = |error| ClientError::Http {
            flow: flow.name.clone(),
            error,
        };
        let sdk = self.sdk_config(&flow.aws).await.map_err(http_error)?;
        let http = self.transport_http(&flow.aws).map_err(http_error)?;
        Ok((sdk, http))
    }

    async fn sdk_config(&mut self, settings: &AwsSettings) -> Result<SdkConfig, TransportError> {
        if let Some(config) = self.configs.get(settings) {
            return Ok(config.clone());
        }
        let http = match self.sdk_http.get(&settings.tls_ca_file) {
            Some(http) => http.clone(),
            None => {
                let http = http_client(settings.tls_ca_file.as_deref())?;
                self.sdk_http
                    .insert(settings.tls_ca_file.clone(), http.clone());
                http
            }
        };
        let config = build_sdk_config(settings, http).await;
        self.configs.insert(settings.clone(), config.clone());
        Ok(config)
    }

    /// The data path's HTTP client for `settings`' timeouts and CA bundle.
    fn transport_http(&mut self, settings: &AwsSettings) -> Result<HttpClient, TransportError> {
        let http_settings = HttpSettings {
            connect_timeout: settings.connect_timeout,
            request_timeout: settings.request_timeout,
            ca_file: settings.tls_ca_file.clone(),
            http2: false,
        };
        if let Some(client) = self.transport_http.get(&http_settings) {
            return Ok(client.clone());
        }
        let client = HttpClient::new(&http_settings)?;
        self.transport_http.insert(http_settings, client.clone());
        Ok(client)
    }
}

fn sts_endpoint_text(settings: &AwsSettings, region: &str) -> String {
    settings
        .sts_endpoint_url
        .clone()
        .unwrap_or_else(|| format!("sts.{region}.amazonaws.com"))
}

fn sts_config(sdk: &SdkConfig, settings: &AwsSettings) -> aws_sdk_sts::Config {
    let mut builder = aws_sdk_sts::config::Builder::from(sdk);
    if let Some(endpoint) = &settings.sts_endpoint_url {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

/// The SDK's HTTPS client (rustls with aws-lc), with `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`
/// honoured (the SDK's default client ignores them), trusting the certificates of `ca_file`
/// beside the platform's roots.
fn http_client(ca_file: Option<&Path>) -> Result<SharedHttpClient, TransportError> {
    let tls_context = match ca_file {
        None => None,
        Some(path) => {
            // Checked here: the SDK's TLS setup panics on a certificate it cannot use.
            let bundle = transport::read_ca_file(path)?;
            // Native roots only where there are some: the SDK asserts that enabled ones parse.
            let trust = TrustStore::empty()
                .with_native_roots(transport::native_roots_available())
                .with_pem_certificate(bundle.pem);
            let context = TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .map_err(|error| TransportError::Config {
                    path: path.to_owned(),
                    reason: format!("the SDK's TLS setup refuses it ({error})"),
                })?;
            Some(context)
        }
    };
    Ok(
        HttpClientBuilder::new().build_with_connector_fn(move |settings, components| {
            let mut builder = Connector::builder().proxy_config(ProxyConfig::from_env());
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            let builder = builder.tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
            match &tls_context {
                Some(context) => builder.tls_context(context.clone()).build(),
                None => builder.build(),
            }
        }),
    )
}

/// The SDK configuration for `settings`, without any service endpoint (each client sets its
/// own). The SDK's own retries are off: the sink retries knowing which records failed.
async fn build_sdk_config(settings: &AwsSettings, http: SharedHttpClient) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .identity_cache(
            IdentityCache::lazy()
                .buffer_time(CREDENTIALS_RENEW_BEFORE)
                .build(),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.request_timeout)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    match &settings.credentials {
        CredentialSource::DefaultChain => {}
        // The profile's own credentials, not the default chain's first find (the
        // environment's keys would come first there); its region is read too.
        CredentialSource::Profile(name) => {
            loader = loader.profile_name(name).credentials_provider(
                ProfileFileCredentialsProvider::builder()
                    .profile_name(name)
                    .build(),
            );
        }
        CredentialSource::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id.expose().to_owned(),
                secret_access_key.expose().to_owned(),
                session_token
                    .as_ref()
                    .map(|token| token.expose().to_owned()),
                None,
                "kinship-config",
            ));
        }
    }
    let base = registering_credentials(loader.load().await);
    let Some(role) = &settings.assume_role else {
        return base;
    };
    // The role is assumed with the base credentials, through the STS endpoint.
    let sts_base = match &settings.sts_endpoint_url {
        Some(endpoint) => base.to_builder().endpoint_url(endpoint).build(),
        None => base.clone(),
    };
    let mut provider = AssumeRoleProvider::builder(role.role_arn.clone())
        .session_name(role.session_name.clone())
        .session_length(role.duration)
        .configure(&sts_base);
    if let Some(external_id) = &role.external_id {
        provider = provider.external_id(external_id.expose());
    }
    let provider = provider.build().await;
    base.into_builder()
        .credentials_provider(SharedCredentialsProvider::new(RegisteringCredentials(
            SharedCredentialsProvider::new(provider),
        )))
        .build()
}

/// `config` with its credentials provider wrapped so that every credential it provides is
/// registered as a secret before anything else sees it.
fn registering_credentials(config: SdkConfig) -> SdkConfig {
    let Some(inner) = config.credentials_provider() else {
        return config;
    };
    config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(RegisteringCredentials(
            inner,
        )))
        .build()
}

/// A credentials provider that registers each credential it provides (keys from a profile, an
/// assumed role, instance or container credentials, as each is renewed) for masking in logs.
#[derive(Debug)]
struct RegisteringCredentials(SharedCredentialsProvider);

impl ProvideCredentials for RegisteringCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let credentials = self.0.provide_credentials().await?;
            secrets::register_renewed(credentials.access_key_id());
            secrets::register_renewed(credentials.secret_access_key());
            if let Some(token) = credentials.session_token() {
                secrets::register_renewed(token);
            }
            Ok(credentials)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cbor_goes_to_aws_endpoints_and_json_to_any_other_unless_written() {
        use crate::sink::wire::WireFormat::{Cbor, Json};
        for host in [
            "kinesis.eu-west-1.amazonaws.com",
            "210987654321.data-kinesis.eu-west-1.amazonaws.com",
            "kinesis-fips.us-gov-west-1.amazonaws.com",
            "kinesis.eu-west-1.api.aws",
            "kinesis.cn-north-1.amazonaws.com.cn",
            "vpce-0a1b2c3d-kinesis.eu-west-1.vpce.amazonaws.com",
            "KINESIS.US-EAST-1.AMAZONAWS.COM.",
        ] {
            assert_eq!(super::wire_format_for(None, Some(host)), Cbor, "{host}");
        }
        for host in [
            "localhost",
            "127.0.0.1",
            "kinesis.internal",
            "amazonaws.com.evil.example",
            "notamazonaws.com",
        ] {
            assert_eq!(super::wire_format_for(None, Some(host)), Json, "{host}");
        }
        assert_eq!(super::wire_format_for(None, None), Json);
        assert_eq!(super::wire_format_for(Some(Cbor), Some("localhost")), Cbor);
        assert_eq!(
            super::wire_format_for(Some(Json), Some("kinesis.eu-west-1.amazonaws.com")),
            Json
        );
    }

    use std::io::Write as _;

    use super::*;
    use crate::config::Secret;
    use crate::sink::transport::test_support::{TestCa, TestServer, OK};

    fn settings(endpoint: String, ca_file: Option<PathBuf>) -> AwsSettings {
        AwsSettings {
            region: Some("eu-west-1".to_owned()),
            endpoint_url: Some(endpoint),
            credentials: CredentialSource::Static {
                access_key_id: Secret::new("AKIDTLSTEST"),
                secret_access_key: Secret::new("tls-test-secret"),
                session_token: None,
            },
            check_identity: false,
            tls_ca_file: ca_file,
            ..AwsSettings::default()
        }
    }

    async fn put_records(sdk: &SdkConfig, endpoint: &str) -> bool {
        let client = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::config::Builder::from(sdk)
                .endpoint_url(endpoint)
                .build(),
        );
        let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
            .data(aws_sdk_kinesis::primitives::Blob::new(b"line\n".to_vec()))
            .partition_key("pk")
            .build()
            .expect("an entry");
        client
            .put_records()
            .stream_name("logs")
            .records(entry)
            .send()
            .await
            .is_ok()
    }

    /// The SDK clients trust `aws.tls.ca_file` as the data path's transport does.
    #[tokio::test]
    async fn sdk_clients_trust_the_transport_ca_file() {
        let ca = TestCa::new();
        let server = TestServer::start(Some(ca.server_config(&["localhost"], &[])), OK).await;
        let endpoint = format!("https://localhost:{}", server.addr.port());
        let mut bundle = tempfile::NamedTempFile::new().expect("a temporary file");
        bundle.write_all(ca.pem().as_bytes()).expect("written");

        let mut clients = AwsClients::new();
        let trusting = clients
            .sdk_config(&settings(endpoint.clone(), Some(bundle.path().to_owned())))
            .await
            .expect("an SDK configuration");
        assert!(put_records(&trusting, &endpoint).await);
        assert_eq!(server.seen().len(), 1);

        let untrusting = clients
            .sdk_config(&settings(endpoint.clone(), None))
            .await
            .expect("an SDK configuration");
        assert!(!put_records(&untrusting, &endpoint).await);
        assert_eq!(server.seen().len(), 1);
        assert_eq!(
            clients.sdk_http.len(),
            2,
            "one SDK HTTP client per CA bundle"
        );

        let missing = PathBuf::from("/nonexistent/kinship/ca.pem");
        let error = clients
            .sdk_config(&settings(endpoint, Some(missing.clone())))
            .await
            .expect_err("a missing CA file is refused");
        assert!(
            matches!(&error, TransportError::Config { path, .. } if *path == missing),
            "{error}"
        );
    }
}
