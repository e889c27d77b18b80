//! A flow's destination and its AWS access: region, endpoints, credentials, timeouts. The
//! top-level `aws` block gives defaults; a flow's own `aws` block overrides them key by key
//! (credentials as a whole: a flow that names its own keys or profile does not inherit the
//! default ones).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawAssumeRole, RawAws};
use super::Checker;
use crate::secrets::quoted;

/// What an AWS setting defaults to when neither block sets it.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_SESSION_NAME: &str = "kinship";
/// STS allows role sessions of 15 minutes to 12 hours (the role's own maximum may be lower).
const MIN_ROLE_SESSION: Duration = Duration::from_secs(15 * 60);
const MAX_ROLE_SESSION: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_ROLE_SESSION: Duration = Duration::from_secs(3600);

/// A value that must never be logged: its `Debug` output is a placeholder and it has no
/// `Display`, so it can only be read on purpose, with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Where a flow's base credentials come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// The SDK's default chain: environment, shared profile, web identity, ECS, IMDSv2.
    #[default]
    DefaultChain,
    /// A named profile of the shared config and credentials files.
    Profile(String),
    /// Keys written in the config file.
    Static {
        /// Not secret on its own, but kept out of logs all the same (only its kind prefix shows).
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

/// A role assumed through STS on top of the base credentials, refreshed before it expires.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<Secret>,
    pub session_name: String,
    pub duration: Duration,
}

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
    /// Whether these settings carry keys written in the config file.
    pub fn has_static_keys(&self) -> bool {
        matches!(self.credentials, CredentialSource::Static { .. })
    }

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

/// Which service a flow sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// Kinesis Data Streams, through `PutRecords`.
    Kinesis,
    /// Amazon Data Firehose, through `PutRecordBatch`.
    Firehose,
}

/// A flow's destination: a stream named by name or by ARN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    pub kind: DestinationKind,
    /// The stream's name (taken from the ARN when an ARN is given).
    pub name: String,
    /// The ARN as written, when the config gives one (another account's stream, say).
    pub arn: Option<String>,
}

impl Destination {
    /// The service's word for the destination, for messages.
    pub fn noun(&self) -> &'static str {
        match self.kind {
            DestinationKind::Kinesis => "Kinesis stream",
            DestinationKind::Firehose => "Firehose stream",
        }
    }

    /// The config key that names it.
    pub fn key(&self) -> &'static str {
        match self.kind {
            DestinationKind::Kinesis => "kinesis_stream",
            DestinationKind::Firehose => "firehose_stream",
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}`",
            self.noun(),
            self.arn.as_deref().unwrap_or(&self.name)
        )
    }
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

/// Whether `text` holds a PEM certificate block.
fn holds_pem_certificate(text: &[u8]) -> bool {
    memchr::memmem::find(text, b"-----BEGIN CERTIFICATE-----").is_some()
}

/// Whether `host` (as written in a URL) is this machine.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of an `http://` or `https://` URL, `None` if it is not one.
fn url_host(url: &str) -> Option<(bool, &str)> {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("http://")?),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .map(|h| &host_port[..h.len() + 1])?
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some((tls, host))
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

    /// A CA bundle: an absolute path to a readable file holding at least one PEM certificate.
    fn ca_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            self.problem(
                key,
                format!(
                    "`{}` is not an absolute path",
                    quoted(&path.display().to_string())
                ),
            );
            return None;
        }
        match std::fs::read(&path) {
            Err(error) => {
                self.problem(key, format!("cannot read `{}`: {error}", path.display()));
                None
            }
            Ok(text) if !holds_pem_certificate(&text) => {
                self.problem(
                    key,
                    format!(
                        "`{}` holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)",
                        path.display()
                    ),
                );
                None
            }
            Ok(_) => Some(path),
        }
    }

    fn endpoint(&mut self, key: &str, url: &str, allow_insecure: bool) {
        match url_host(url) {
            None => self.problem(
                key,
                format!(
                    "`{}` is not an http:// or https:// URL with a host",
                    quoted(url)
                ),
            ),
            Some((false, host)) if !allow_insecure && !is_loopback_host(host) => self.problem(
                key,
                format!(
                    "`{}` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true",
                    quoted(url)
                ),
            ),
            Some(_) => {}
        }
    }

    fn credentials(&mut self, prefix: &str, raw: &RawAws) -> Option<CredentialSource> {
        // Which keys go together cannot be judged while one of them was reported already.
        let reported = [
            "profile",
            "access_key_id",
            "secret_access_key",
            "session_token",
        ]
        .iter()
        .any(|key| self.rejected(&format!("{prefix}.{key}")));
        if reported {
            return None;
        }
        let keys = (
            raw.access_key_id.as_ref(),
            raw.secret_access_key.as_ref(),
            raw.session_token.as_ref(),
        );
        let from_keys = match keys {
            (None, None, None) => None,
            (Some(id), Some(secret), token) => {
                if id.trim().is_empty() || secret.trim().is_empty() {
                    self.problem(
                        &format!("{prefix}.access_key_id"),
                        "the access key id and secret access key must not be empty",
                    );
                }
                Some(CredentialSource::Static {
                    access_key_id: Secret::new(id.clone()),
                    secret_access_key: Secret::new(secret.clone()),
                    session_token: token.map(|token| Secret::new(token.clone())),
                })
            }
            (None, Some(_), _) => {
                self.problem(
                    &format!("{prefix}.secret_access_key"),
                    "is set without access_key_id; give both",
                );
                None
            }
            (Some(_), None, _) => {
                self.problem(
                    &format!("{prefix}.access_key_id"),
                    "is set without secret_access_key; give both",
                );
                None
            }
            (None, None, Some(_)) => {
                self.problem(
                    &format!("{prefix}.session_token"),
                    "is set without access_key_id and secret_access_key",
                );
                None
            }
        };
        match (&raw.profile, from_keys) {
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{prefix}.profile"),
                    "is set together with access_key_id; choose one source of credentials",
                );
                None
            }
            (Some(profile), None) if profile.trim().is_empty() => {
                self.problem(&format!("{prefix}.profile"), "must not be empty");
                None
            }
            (Some(profile), None) => Some(CredentialSource::Profile(profile.clone())),
            (None, keys) => keys,
        }
    }

    fn assume_role(&mut self, key: &str, raw: RawAssumeRole) -> Option<AssumeRole> {
        let before = self.problems.len();
        let role_arn = match raw.role_arn {
            None => {
                self.problem(
                    &format!("{key}.role_arn"),
                    "is missing; give the ARN of the role to assume",
                );
                String::new()
            }
            Some(arn) => {
                if !is_role_arn(&arn) {
                    self.problem(
                        &format!("{key}.role_arn"),
                        format!(
                            "`{}` is not a role ARN such as arn:aws:iam::123456789012:role/kinship",
                            quoted(&arn)
                        ),
                    );
                }
                arn
            }
        };
        let session_name = raw
            .session_name
            .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_owned());
        let valid_session = (2..=64).contains(&session_name.len())
            && session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !valid_session {
            self.problem(
                &format!("{key}.session_name"),
                format!(
                    "`{}` must be 2 to 64 letters, digits or any of +=,.@_-",
                    quoted(&session_name)
                ),
            );
        }
        if let Some(external_id) = &raw.external_id {
            if !(2..=1224).contains(&external_id.len()) {
                self.problem(
                    &format!("{key}.external_id"),
                    "must be 2 to 1,224 characters",
                );
            }
        }
        let duration = self.duration(
            &format!("{key}.duration"),
            raw.duration.clone(),
            DEFAULT_ROLE_SESSION,
        );
        if raw.duration.is_some() && !(MIN_ROLE_SESSION..=MAX_ROLE_SESSION).contains(&duration) {
            self.problem(
                &format!("{key}.duration"),
                "must be from 15m to 12h (STS's bounds for a role session)",
            );
        }
        (self.problems.len() == before).then(|| AssumeRole {
            role_arn,
            external_id: raw.external_id.map(Secret::new),
            session_name,
            duration,
        })
    }

    /// `kinesis_stream` or `firehose_stream`, by name or ARN; exactly one of them.
    pub(super) fn destination(
        &mut self,
        key: &str,
        kinesis: Option<String>,
        firehose: Option<String>,
    ) -> Option<Destination> {
        let (kind, text) = match (kinesis, firehose) {
            (Some(text), None) => (DestinationKind::Kinesis, text),
            (None, Some(text)) => (DestinationKind::Firehose, text),
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{key}.firehose_stream"),
                    "is set together with kinesis_stream; a flow sends to one destination",
                );
                return None;
            }
            // A destination key written wrong was reported already.
            (None, None)
                if self.rejected(&format!("{key}.kinesis_stream"))
                    || self.rejected(&format!("{key}.firehose_stream")) =>
            {
                return None;
            }
            (None, None) => {
                self.problem(
                    &format!("{key}.kinesis_stream"),
                    "is missing; name the stream records go to (kinesis_stream or firehose_stream)",
                );
                return None;
            }
        };
        let field = match kind {
            DestinationKind::Kinesis => "kinesis_stream",
            DestinationKind::Firehose => "firehose_stream",
        };
        let field_key = format!("{key}.{field}");
        let (name, arn) = if text.starts_with("arn:") {
            match stream_arn_name(&text, kind) {
                Some(name) => (name.to_owned(), Some(text.clone())),
                None => {
                    let example = match kind {
                        DestinationKind::Kinesis => {
                            "arn:aws:kinesis:us-east-1:123456789012:stream/NAME"
                        }
                        DestinationKind::Firehose => {
                            "arn:aws:firehose:us-east-1:123456789012:deliverystream/NAME"
                        }
                    };
                    self.problem(
                        &field_key,
                        format!("`{}` is not a stream ARN such as {example}", quoted(&text)),
                    );
                    return None;
                }
            }
        } else {
            (text.clone(), None)
        };
        let longest = match kind {
            DestinationKind::Kinesis => 128,
            DestinationKind::Firehose => 64,
        };
        let valid = !name.is_empty()
            && name.len() <= longest
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.problem(
                &field_key,
                format!(
                    "`{}` is not a stream name (1 to {longest} letters, digits, '-', '_' or '.')",
                    quoted(&name)
                ),
            );
            return None;
        }
        Some(Destination { kind, name, arn })
    }
}

fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_account_id(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws") && is_account_id(account) && resource.starts_with("role/") && resource.len() > 5)
}

/// The parts of a stream ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:TYPE/NAME`.
pub fn stream_arn_parts(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, service, region, account, resource]
            if partition.starts_with("aws") && is_region_name(region) && is_account_id(account) =>
        {
            Some((service, region, account, resource))
        }
        _ => None,
    }
}

/// The stream name in a Kinesis or Firehose stream ARN.
fn stream_arn_name(arn: &str, kind: DestinationKind) -> Option<&str> {
    let (service, _, _, resource) = stream_arn_parts(arn)?;
    let prefix = match kind {
        DestinationKind::Kinesis if service == "kinesis" => "stream/",
        DestinationKind::Firehose if service == "firehose" => "deliverystream/",
        _ => return None,
    };
    resource.strip_prefix(prefix)
}

/// The region of a stream ARN.
pub fn arn_region(arn: &str) -> Option<&str> {
    stream_arn_parts(arn).map(|(_, region, _, _)| region)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:4567",
            "http://localhost:1",
            "http://[::1]:80/",
            "http://127.9.9.9",
        ] {
            let (tls, host) = url_host(url).expect(url);
            assert!(!tls && is_loopback_host(host), "{url}");
        }
        for url in [
            "http://kinesis.example.com",
            "http://10.0.0.1:80",
            "http://user@host:1/",
        ] {
            let (_, host) = url_host(url).expect(url);
            assert!(!is_loopback_host(host), "{url}");
        }
        assert_eq!(url_host("https://a.b:443/x"), Some((true, "a.b")));
        assert_eq!(url_host("ftp://a"), None);
        assert_eq!(url_host("http://"), None);
    }

    #[test]
    fn stream_arns_give_name_and_region() {
        let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/logs";
        assert_eq!(stream_arn_name(arn, DestinationKind::Kinesis), Some("logs"));
        assert_eq!(stream_arn_name(arn, DestinationKind::Firehose), None);
        assert_eq!(arn_region(arn), Some("eu-west-1"));
        let firehose = "arn:aws-cn:firehose:cn-north-1:123456789012:deliverystream/s3-logs";
        assert_eq!(
            stream_arn_name(firehose, DestinationKind::Firehose),
            Some("s3-logs")
        );
        assert_eq!(
            stream_arn_parts("arn:aws:kinesis:eu-west-1:12345:stream/x"),
            None
        );
        assert!(is_role_arn("arn:aws:iam::123456789012:role/path/kinship"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/kinship"));
        assert!(!is_role_arn("kinship"));
    }
}
