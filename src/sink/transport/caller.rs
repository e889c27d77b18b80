//! One signed AWS JSON/CBOR POST to one endpoint: the request built, signed with SigV4 as the
//! SDK signs it, and sent; credentials from the flow's SDK provider, held until shortly before
//! they expire and renewed by one task at a time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::Full;

use super::endpoint::Endpoint;
use super::error::{chain_text, TransportError};
use super::http::{origin, HttpClient, RawResponse};

/// Credentials are renewed this long before they expire, so no call is signed with keys about
/// to lapse (the SDK clients of `crate::sink::clients` renew as early).
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// After a failed renewal, the next attempt waits this long (calls meanwhile use the
/// credentials still held, while they last).
const RETRY_RENEWAL_AFTER: Duration = Duration::from_secs(10);

const X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");

/// Everything needed to send one signed AWS JSON/CBOR POST to one endpoint. Clones share the
/// connection pool and the credentials.
#[derive(Clone)]
pub struct AwsCaller {
    inner: Arc<CallerInner>,
}

impl std::fmt::Debug for AwsCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCaller")
            .field("endpoint", &self.inner.credentials.endpoint.url)
            .field("signing_name", &self.inner.signing_name)
            .field("region", &self.inner.credentials.region)
            .finish_non_exhaustive()
    }
}

struct CallerInner {
    http: HttpClient,
    signing_name: &'static str,
    credentials: CredentialCache,
}

impl AwsCaller {
    /// A caller for `endpoint`, signing as `signing_name` (`kinesis`, `firehose`) in the
    /// endpoint's signing region, else `sdk`'s region, with `sdk`'s credentials provider and
    /// clock. Without a credentials provider every call fails with
    /// [`TransportError::NoCredentials`].
    pub fn new(
        http: HttpClient,
        endpoint: Endpoint,
        sdk: &SdkConfig,
        signing_name: &'static str,
    ) -> Result<Self, TransportError> {
        let region = match (endpoint.signing_region(), sdk.region()) {
            (Some(region), _) => region.to_owned(),
            (None, Some(region)) => region.as_ref().to_owned(),
            (None, None) => {
                return Err(TransportError::Endpoint {
                    service: signing_name,
                    message: "no AWS region is set to sign for; set aws.region in the config, or AWS_REGION in the environment".to_owned(),
                })
            }
        };
        Ok(Self {
            inner: Arc::new(CallerInner {
                http,
                signing_name,
                credentials: CredentialCache {
                    provider: sdk.credentials_provider(),
                    time: sdk.time_source().unwrap_or_default(),
                    endpoint,
                    region,
                    current: Mutex::new(None),
                    renewal: tokio::sync::Mutex::new(None),
                },
            }),
        })
    }

    /// POSTs `body` with `X-Amz-Target: target` and `Content-Type: content_type`, signed with
    /// SigV4; returns the status, the `x-amzn-errortype` header and the whole body.
    pub async fn post(
        &self,
        target: &'static str,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<RawResponse, TransportError> {
        let inner = &self.inner;
        let signer = inner.credentials.signer().await?;
        let mut request = unsigned_request(&signer.endpoint.url, target, content_type, body.len())?;
        let now = inner.credentials.time.now();
        sign_request(
            &mut request,
            &body,
            &signer.identity,
            &signer.region,
            inner.signing_name,
            now,
        )?;
        let (parts, ()) = request.into_parts();
        inner
            .http
            .send(Request::from_parts(parts, Full::new(body)))
            .await
    }
}

/// The request `post` signs: the headers the SDK sends for the same call, but its own
/// bookkeeping ones (`amz-sdk-invocation-id`, `amz-sdk-request`, `x-amz-user-agent`).
fn unsigned_request(
    url: &http::Uri,
    target: &str,
    content_type: &str,
    body_length: usize,
) -> Result<Request<()>, TransportError> {
    // `header` takes the values as they are; a value that is not a valid header fails `body`.
    Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(CONTENT_TYPE, content_type)
        .header(X_AMZ_TARGET, target)
        .header(CONTENT_LENGTH, body_length)
        .body(())
        .map_err(|error| TransportError::Signing {
            endpoint: origin(url),
            message: chain_text(&error),
        })
}

/// Signs `request` (whose body is `body`) with SigV4 at `time`, exactly as the SDK signs its
/// JSON and CBOR calls: every header present is signed (but `user-agent`, `authorization`,
/// `transfer-encoding` and X-Ray's), plus `host`, `x-amz-date` and `x-amz-security-token`;
/// the payload hash is not sent. Adds `authorization`, `x-amz-date` and, with a session token,
/// `x-amz-security-token`.
pub(crate) fn sign_request(
    request: &mut Request<()>,
    body: &[u8],
    identity: &Identity,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), TransportError> {
    let endpoint = origin(request.uri());
    let failure = |message: String| TransportError::Signing {
        endpoint: endpoint.clone(),
        message,
    };
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| failure(chain_text(&error)))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            value
                .to_str()
                .map(|value| (name.as_str(), value))
                .map_err(|_| failure(format!("the header {name} is not text")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|error| failure(chain_text(&error)))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|error| failure(chain_text(&error)))?
        .into_parts();
    let (signed_headers, _params) = instructions.into_parts();
    for header in signed_headers {
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| failure(format!("the {} header is not text", header.name())))?;
        value.set_sensitive(header.sensitive());
        request
            .headers_mut()
            .insert(HeaderName::from_static(header.name()), value);
    }
    Ok(())
}

/// What a call is signed with: credentials, the endpoint they lead to, the region.
struct Signer {
    identity: Identity,
    endpoint: Endpoint,
    region: String,
    /// When to renew; `None` for credentials that never expire.
    renew_at: Option<SystemTime>,
    /// When the credentials stop working; `None` for never.
    expires_at: Option<SystemTime>,
}

impl Signer {
    fn fresh_at(&self, now: SystemTime) -> bool {
        self.renew_at.is_none_or(|renew_at| now < renew_at)
    }

    fn usable_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

/// The credentials a caller signs with, from the SDK provider, shared by the caller's clones.
struct CredentialCache {
    provider: Option<SharedCredentialsProvider>,
    time: SharedTimeSource,
    /// The endpoint resolved without an account ID.
    endpoint: Endpoint,
    /// The region signed for when the endpoint names none.
    region: String,
    current: Mutex<Option<Arc<Signer>>>,
    /// Held by the one task renewing; holds when the last renewal failed.
    renewal: tokio::sync::Mutex<Option<SystemTime>>,
}

impl CredentialCache {
    fn load(&self) -> Option<Arc<Signer>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The signer for a call now: the one held while fresh; else one task renews while the
    /// others go on with the held credentials as long as they work.
    async fn signer(&self) -> Result<Arc<Signer>, TransportError> {
        let now = self.time.now();
        let held = self.load();
        let mut renewal = match &held {
            Some(signer) if signer.fresh_at(now) => return Ok(Arc::clone(signer)),
            Some(signer) if signer.usable_at(now) => match self.renewal.try_lock() {
                Ok(renewal) => renewal,
                // Another task is renewing.
                Err(_) => return Ok(Arc::clone(signer)),
            },
            _ => self.renewal.lock().await,
        };
        // Renewed by another task while this one waited?
        let now = self.time.now();
        let held = self.load();
        if let Some(signer) = held.as_ref().filter(|signer| signer.fresh_at(now)) {
            return Ok(Arc::clone(signer));
        }
        let usable = held.filter(|signer| signer.usable_at(now));
        if let (Some(signer), Some(failed_at)) = (&usable, *renewal) {
            if now < failed_at + RETRY_RENEWAL_AFTER {
                return Ok(Arc::clone(signer));
            }
        }
        match self.fetch().await {
            Ok(signer) => {
                *renewal = None;
                let signer = Arc::new(signer);
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&signer));
                Ok(signer)
            }
            Err(error) => {
                *renewal = Some(now);
                match usable {
                    Some(signer) => {
                        tracing::warn!(
                            error = %error,
                            "Cannot renew the AWS credentials; signing with the ones held until they expire."
                        );
                        Ok(signer)
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Signer, TransportError> {
        let Some(provider) = &self.provider else {
            return Err(TransportError::NoCredentials {
                message: "the AWS configuration has no credentials provider".to_owned(),
            });
        };
        let credentials: Credentials = provider.provide_credentials().await.map_err(|error| {
            TransportError::NoCredentials {
                message: chain_text(&error),
            }
        })?;
        let expires_at = credentials.expiry();
        let account_id = credentials
            .account_id()
            .map(|account| account.as_str().to_owned());
        let endpoint = self.endpoint.for_account(account_id.as_deref()).await?;
        tracing::debug!(
            expires_at = ?expires_at.map(humantime::format_rfc3339_seconds),
            endpoint = %endpoint.url,
            "Renewed the data path's AWS credentials."
        );
        let region = endpoint
            .signing_region()
            .map_or_else(|| self.region.clone(), str::to_owned);
        Ok(Signer {
            identity: credentials.into(),
            endpoint,
            region,
            renew_at: expires_at.map(|expires_at| {
                expires_at
                    .checked_sub(RENEW_BEFORE)
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            }),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests;
