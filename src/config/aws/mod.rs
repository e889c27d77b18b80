//! A flow's destination and its AWS access: region, endpoints, credentials, timeouts. The
//! top-level `aws` block gives defaults; a flow's own `aws` block overrides them key by key
//! (credentials as a whole: a flow that names its own keys or profile does not inherit the
//! default ones).
//!
//! This module checks an `aws` block and merges a flow's over the defaults; `credentials`,
//! `endpoints`, `destination` and `arn` check their parts of it.

mod arn;
mod credentials;
mod destination;
mod endpoints;

use std::path::PathBuf;
use std::time::Duration;

pub use arn::arn_region;
use arn::is_region_name;
pub use credentials::{AssumeRole, CredentialSource, Secret};
pub use destination::{Destination, DestinationKind};

use super::raw::RawAws;
use super::Checker;
use crate::secrets::quoted;

/// What an AWS setting defaults to when neither block sets it.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A flow's AWS access, defaults filled in. Flows with equal settings share one SDK client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AwsSettings {
    /// `None`: the SDK's own chain (`AWS_REGION`, profile) decides.
    pub region: Option<String>,
    /// The destination service's endpoint; `None` for the AWS endpoint of the region.
    pub endpoint_url: Option<String>,
    /// Where STS calls go (the identity check, assuming a role).
    pub sts_endpoint_url: Option<String>,
    pub credentials: CredentialSource,
    pub assume_role: Option<AssumeRole>,
    /// How long one call may take before it is abandoned and retried.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Whether the start-up check calls `sts:GetCallerIdentity`.
    pub check_identity: bool,
    /// A PEM bundle trusted beside the system's roots (`tls.ca_file`), by every call.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            sts_endpoint_url: None,
            credentials: CredentialSource::DefaultChain,
            assume_role: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            check_identity: true,
            tls_ca_file: None,
        }
    }
}

impl AwsSettings {
    /// A short description for logs: never a secret.
    pub fn describe_credentials(&self) -> String {
        let base = match &self.credentials {
            CredentialSource::DefaultChain => "default chain".to_owned(),
            CredentialSource::Profile(name) => format!("profile {name}"),
            CredentialSource::Static { access_key_id, .. } => {
                format!("static key {}", key_id_hint(access_key_id.expose()))
            }
        };
        match &self.assume_role {
            Some(role) => format!("{base}, then role {}", role.role_arn),
            None => base,
        }
    }
}

/// The first four characters of an access key id (its kind, such as `AKIA` or `ASIA`).
fn key_id_hint(access_key_id: &str) -> String {
    let head: String = access_key_id.chars().take(4).collect();
    format!("{head}…")
}

/// One `aws` block, checked, every key still optional.
#[derive(Clone, Debug, Default)]
pub(super) struct AwsBlock {
    region: Option<String>,
    endpoint_url: Option<String>,
    sts_endpoint_url: Option<String>,
    credentials: Option<CredentialSource>,
    assume_role: Option<AssumeRole>,
    request_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    check_identity: Option<bool>,
    allow_insecure_http: Option<bool>,
    tls_ca_file: Option<PathBuf>,
    /// Whether the block writes a secret key in the config file.
    pub(super) holds_secret: bool,
}

impl AwsBlock {
    /// `self` (a flow's block) over `defaults` (the top-level block).
    pub(super) fn over(&self, defaults: &AwsBlock) -> AwsSettings {
        AwsSettings {
            region: self.region.clone().or_else(|| defaults.region.clone()),
            endpoint_url: self
                .endpoint_url
                .clone()
                .or_else(|| defaults.endpoint_url.clone()),
            sts_endpoint_url: self
                .sts_endpoint_url
                .clone()
                .or_else(|| defaults.sts_endpoint_url.clone()),
            credentials: self
                .credentials
                .clone()
                .or_else(|| defaults.credentials.clone())
                .unwrap_or_default(),
            assume_role: self
                .assume_role
                .clone()
                .or_else(|| defaults.assume_role.clone()),
            request_timeout: self
                .request_timeout
                .or(defaults.request_timeout)
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            connect_timeout: self
                .connect_timeout
                .or(defaults.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            check_identity: self
                .check_identity
                .or(defaults.check_identity)
                .unwrap_or(true),
            tls_ca_file: self
                .tls_ca_file
                .clone()
                .or_else(|| defaults.tls_ca_file.clone()),
        }
    }

    pub(super) fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub(super) fn allows_insecure_http(&self) -> Option<bool> {
        self.allow_insecure_http
    }
}

impl Checker<'_> {
    /// Checks one `aws` block written at `prefix` (`aws` or `flows[N].aws`); `insecure_default`
    /// is the top-level `allow_insecure_http`, which a flow inherits.
    pub(super) fn aws_block(
        &mut self,
        prefix: &str,
        raw: RawAws,
        insecure_default: bool,
    ) -> AwsBlock {
        if let Some(region) = &raw.region {
            if !is_region_name(region) {
                self.problem(
                    &format!("{prefix}.region"),
                    format!(
                        "`{}` is not a region name such as us-east-1",
                        quoted(region)
                    ),
                );
            }
        }
        // An allowance written wrong was reported already: its endpoints are not also refused.
        let allow_insecure = raw.allow_insecure_http.unwrap_or(insecure_default)
            || self.rejected(&format!("{prefix}.allow_insecure_http"));
        for (key, url) in [
            ("endpoint_url", &raw.endpoint_url),
            ("sts_endpoint_url", &raw.sts_endpoint_url),
        ] {
            if let Some(url) = url {
                self.endpoint(&format!("{prefix}.{key}"), url, allow_insecure);
            }
        }
        let holds_secret = raw.secret_access_key.is_some();
        let credentials = self.credentials(prefix, &raw);
        let request_timeout = raw.request_timeout.map(|text| {
            self.duration(
                &format!("{prefix}.request_timeout"),
                Some(text),
                DEFAULT_REQUEST_TIMEOUT,
            )
        });
        let connect_timeout = raw.connect_timeout.map(|text| {
            self.duration(
                &format!("{prefix}.connect_timeout"),
                Some(text),
                DEFAULT_CONNECT_TIMEOUT,
            )
        });
        let assume_role = raw
            .assume_role
            .and_then(|role| self.assume_role(&format!("{prefix}.assume_role"), role));
        let tls_ca_file = raw
            .tls
            .and_then(|tls| tls.ca_file)
            .and_then(|path| self.ca_file(&format!("{prefix}.tls.ca_file"), &path));
        AwsBlock {
            region: raw.region,
            endpoint_url: raw.endpoint_url,
            sts_endpoint_url: raw.sts_endpoint_url,
            credentials,
            assume_role,
            request_timeout,
            connect_timeout,
            check_identity: raw.check_identity,
            allow_insecure_http: raw.allow_insecure_http,
            tls_ca_file,
            holds_secret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::credentials::DEFAULT_ROLE_SESSION;
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let settings = AwsSettings {
            credentials: CredentialSource::Static {
                access_key_id: Secret::new("AKIAEXAMPLEKEY"),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCY"),
                session_token: Some(Secret::new("FwoGZXIvYXdzEJr//////////token")),
            },
            assume_role: Some(AssumeRole {
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                external_id: Some(Secret::new("shared-external-id")),
                session_name: "kinship".into(),
                duration: DEFAULT_ROLE_SESSION,
            }),
            ..AwsSettings::default()
        };
        let shown = format!("{settings:?} {}", settings.describe_credentials());
        for secret in [
            "wJalrXUtnFEMI",
            "FwoGZXIvYXdzEJr",
            "shared-external-id",
            "AKIAEXAMPLEKEY",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("static key AKIA…"), "{shown}");
        assert!(
            shown.contains("role arn:aws:iam::123456789012:role/r"),
            "{shown}"
        );
    }
}
