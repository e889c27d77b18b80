//! The instance's tags through the EC2 Query API's `DescribeTags`, as the Kinesis Agent reads
//! them: one form POST per page, signed with SigV4 (`aws-sigv4`) with the flow's credentials,
//! the XML answer read with `aws-smithy-xml`. The HTTP exchange itself goes through
//! [`SendRequest`], which `app` fills with the flow's HTTP client (proxies, CA bundle,
//! timeouts).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_xml::decode::{try_data, Document, ScopedDecoder};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request};

/// The EC2 Query API version the request names (the current one).
const API_VERSION: &str = "2016-11-15";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// Pages read at most in one refresh: far more than an instance's 50 tags ever need, so a
/// service that keeps answering with a token cannot keep the refresh going forever.
const MAX_PAGES: usize = 20;

/// A whole HTTP answer.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: Bytes,
}

/// What `send` returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<HttpAnswer, String>> + Send + 'a>>;

/// Sends one request and reads its whole answer; the error is why it could not (a connection
/// refused, a timeout, a proxy's refusal).
pub trait SendRequest: Send + Sync + fmt::Debug {
    fn send(&self, request: Request<Bytes>) -> SendFuture<'_>;
}

/// What a flow gives its `add_ec2_metadata` to call EC2 with.
#[derive(Clone)]
pub struct Ec2Access {
    /// The flow's credentials; `None` when its AWS configuration has none.
    pub credentials: Option<SharedCredentialsProvider>,
    /// The clock requests are signed at.
    pub time: SharedTimeSource,
    /// The flow's region: used when the instance's own region is not known.
    pub region: Option<String>,
    pub http: Arc<dyn SendRequest>,
}

impl fmt::Debug for Ec2Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ec2Access")
            .field("region", &self.region)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// Why the tags could not be read with `DescribeTags`.
#[derive(Debug, thiserror::Error)]
pub enum DescribeTagsError {
    #[error("no AWS credentials to sign DescribeTags with: {0}")]
    NoCredentials(String),
    #[error("no AWS region is known to call EC2 in; set aws.region")]
    NoRegion,
    #[error("the EC2 endpoint `{0}` is not a usable URL")]
    Endpoint(String),
    #[error("cannot sign DescribeTags: {0}")]
    Signing(String),
    #[error("cannot reach EC2 at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("EC2 refused DescribeTags (HTTP {status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("EC2's answer to DescribeTags cannot be read: {0}")]
    Malformed(String),
    #[error("DescribeTags did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

impl DescribeTagsError {
    /// The service's error code (`UnauthorizedOperation`, …), or what kind of failure it was.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { code, .. } => code,
            Self::NoCredentials(_) => "NoCredentials",
            Self::NoRegion => "NoRegion",
            Self::Endpoint(_) => "InvalidEndpoint",
            Self::Signing(_) => "SigningFailed",
            Self::Unreachable { .. } => "Unreachable",
            Self::Malformed(_) => "MalformedResponse",
            Self::TimedOut(_) => "TimedOut",
        }
    }
}

/// One instance tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One page of a `DescribeTags` answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TagsPage {
    pub tags: Vec<Tag>,
    pub next_token: Option<String>,
}

/// The EC2 endpoint of `region`, unless `configured`.
pub fn endpoint_for(configured: Option<&str>, region: &str) -> String {
    match configured {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if region.starts_with("cn-") => format!("https://ec2.{region}.amazonaws.com.cn"),
        None => format!("https://ec2.{region}.amazonaws.com"),
    }
}

/// Every tag of `instance_id`, page after page, from the EC2 endpoint of `region` (or
/// `endpoint`).
pub async fn describe_tags(
    access: &Ec2Access,
    endpoint: Option<&str>,
    instance_region: Option<&str>,
    instance_id: &str,
) -> Result<Vec<Tag>, DescribeTagsError> {
    // The instance's tags live in the instance's region, whatever the flow's stream is in.
    let region = instance_region
        .or(access.region.as_deref())
        .ok_or(DescribeTagsError::NoRegion)?;
    let url = endpoint_for(endpoint, region);
    let provider = access
        .credentials
        .as_ref()
        .ok_or_else(|| DescribeTagsError::NoCredentials("the flow has no credentials".into()))?;
    let credentials = provider.provide_credentials().await.map_err(|error| {
        DescribeTagsError::NoCredentials(crate::error_chain::chain_text(&error))
    })?;
    let identity: Identity = credentials.into();
    let mut tags = Vec::new();
    let mut next_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let body = form_body(instance_id, next_token.as_deref());
        let request = signed_request(&url, body, &identity, region, access.time.now())?;
        let answer =
            access
                .http
                .send(request)
                .await
                .map_err(|message| DescribeTagsError::Unreachable {
                    endpoint: url.clone(),
                    message,
                })?;
        let page = read_answer(&answer)?;
        tags.extend(page.tags);
        match page.next_token {
            Some(token) => next_token = Some(token),
            None => return Ok(tags),
        }
    }
    Err(DescribeTagsError::Malformed(format!(
        "still a nextToken after {MAX_PAGES} pages"
    )))
}

/// The form body of one `DescribeTags` call for `instance_id`'s tags.
pub fn form_body(instance_id: &str, next_token: Option<&str>) -> String {
    let mut body = format!(
        "Action=DescribeTags&Version={API_VERSION}&Filter.1.Name=resource-id&Filter.1.Value.1={}",
        form_encode(instance_id)
    );
    if let Some(token) = next_token {
        body.push_str("&NextToken=");
        body.push_str(&form_encode(token));
    }
    body
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as the SDK's query
/// serializer does.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A POST of `body` to `url`, signed for the `ec2` service in `region` at `time`: the
/// `content-type` and `host` headers signed, `x-amz-date`, `authorization` and, with a session
/// token, `x-amz-security-token` added.
pub fn signed_request(
    url: &str,
    body: String,
    identity: &Identity,
    region: &str,
    time: SystemTime,
) -> Result<Request<Bytes>, DescribeTagsError> {
    let uri: http::Uri = format!("{}/", url.trim_end_matches('/'))
        .parse()
        .map_err(|_| DescribeTagsError::Endpoint(url.to_owned()))?;
    let Some(authority) = uri
        .authority()
        .map(|authority| signed_host(&uri, authority))
    else {
        return Err(DescribeTagsError::Endpoint(url.to_owned()));
    };
    let signing = |error: &(dyn std::error::Error + 'static)| {
        DescribeTagsError::Signing(crate::error_chain::chain_text(error))
    };
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("ec2")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| signing(&error))?
        .into();
    let headers = [
        (CONTENT_TYPE.as_str(), FORM_CONTENT_TYPE),
        ("host", authority.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        uri.to_string(),
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|error| signing(&error))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|error| signing(&error))?
        .into_parts();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body(Bytes::from(body))
        .map_err(|error| signing(&error))?;
    let (signed_headers, _query) = instructions.into_parts();
    for header in signed_headers {
        let mut value = HeaderValue::from_str(header.value()).map_err(|_| {
            DescribeTagsError::Signing(format!("the {} header is not text", header.name()))
        })?;
        value.set_sensitive(header.sensitive());
        request
            .headers_mut()
            .insert(HeaderName::from_static(header.name()), value);
    }
    Ok(request)
}

/// One answer: its page of tags, or the service's error.
pub fn read_answer(answer: &HttpAnswer) -> Result<TagsPage, DescribeTagsError> {
    let text = std::str::from_utf8(&answer.body)
        .map_err(|_| DescribeTagsError::Malformed("the body is not UTF-8".into()))?;
    if (200..300).contains(&answer.status) {
        return parse_tags(text);
    }
    let (code, message) = parse_error(text).unwrap_or_else(|| {
        let start: String = text.chars().take(200).collect();
        ("Unknown".to_owned(), start)
    });
    Err(DescribeTagsError::Refused {
        status: answer.status,
        code,
        message,
    })
}

fn malformed(error: impl fmt::Display) -> DescribeTagsError {
    DescribeTagsError::Malformed(error.to_string())
}

/// A `DescribeTagsResponse`: each `tagSet` item's key and value, and the `nextToken`.
pub fn parse_tags(text: &str) -> Result<TagsPage, DescribeTagsError> {
    let mut document = Document::new(text);
    let mut root = document.root_element().map_err(malformed)?;
    if !root.start_el().matches("DescribeTagsResponse") {
        return Err(DescribeTagsError::Malformed(format!(
            "the answer is a <{}>, not a <DescribeTagsResponse>",
            root.start_el().local()
        )));
    }
    let mut page = TagsPage::default();
    while let Some(mut child) = root.next_tag() {
        if child.start_el().matches("tagSet") {
            while let Some(mut item) = child.next_tag() {
                if item.start_el().matches("item") {
                    page.tags.push(parse_item(&mut item)?);
                }
            }
        } else if child.start_el().matches("nextToken") {
            let token = try_data(&mut child).map_err(malformed)?;
            let token = token.trim();
            if !token.is_empty() {
                page.next_token = Some(token.to_owned());
            }
        }
    }
    Ok(page)
}

fn parse_item(item: &mut ScopedDecoder<'_, '_>) -> Result<Tag, DescribeTagsError> {
    let mut key = None;
    let mut value = String::new();
    while let Some(mut field) = item.next_tag() {
        if field.start_el().matches("key") {
            key = Some(try_data(&mut field).map_err(malformed)?.into_owned());
        } else if field.start_el().matches("value") {
            value = try_data(&mut field).map_err(malformed)?.into_owned();
        }
    }
    let key = key.ok_or_else(|| DescribeTagsError::Malformed("a tag without a key".into()))?;
    Ok(Tag { key, value })
}

/// The first `<Error>`'s code and message of an EC2 error answer
/// (`<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>…`).
fn parse_error(text: &str) -> Option<(String, String)> {
    let mut document = Document::new(text);
    let mut root = document.root_element().ok()?;
    while let Some(mut errors) = root.next_tag() {
        if !errors.start_el().matches("Errors") {
            continue;
        }
        while let Some(mut error) = errors.next_tag() {
            if !error.start_el().matches("Error") {
                continue;
            }
            let mut code = None;
            let mut message = String::new();
            while let Some(mut field) = error.next_tag() {
                if field.start_el().matches("Code") {
                    code = try_data(&mut field).ok().map(|c| c.trim().to_owned());
                } else if field.start_el().matches("Message") {
                    message = try_data(&mut field)
                        .map(|m| m.trim().to_owned())
                        .unwrap_or_default();
                }
            }
            return Some((code?, message));
        }
    }
    None
}

/// The `host` a request to `uri` carries, as signed: the authority without a port that is the
/// scheme's default, which the HTTP client leaves out of the header it sends.
fn signed_host(uri: &http::Uri, authority: &http::uri::Authority) -> String {
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    match authority.port_u16() {
        Some(port) if Some(port) == default_port => authority.host().to_owned(),
        _ => authority.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use std::sync::Mutex;
    use std::time::Duration;

    const PAGE_ONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>
    <tagSet>
        <item>
            <resourceId>i-1234567890abcdef0</resourceId>
            <resourceType>instance</resourceType>
            <key>Name</key>
            <value>web &amp; api</value>
        </item>
        <item>
            <resourceId>i-1234567890abcdef0</resourceId>
            <resourceType>instance</resourceType>
            <key>Empty</key>
            <value/>
        </item>
    </tagSet>
    <nextToken>AAAA+b/c==</nextToken>
</DescribeTagsResponse>"#;

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn tags_and_the_next_token_are_read() {
        let page = parse_tags(PAGE_ONE).expect("page");
        assert_eq!(
            page,
            TagsPage {
                tags: vec![tag("Name", "web & api"), tag("Empty", "")],
                next_token: Some("AAAA+b/c==".to_owned()),
            }
        );
    }

    #[test]
    fn an_empty_tag_set_and_no_token_end_the_listing() {
        for text in [
            "<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><tagSet/></DescribeTagsResponse>",
            "<DescribeTagsResponse><tagSet></tagSet><nextToken></nextToken></DescribeTagsResponse>",
            "<DescribeTagsResponse><requestId>r</requestId></DescribeTagsResponse>",
        ] {
            assert_eq!(parse_tags(text).expect(text), TagsPage::default(), "{text}");
        }
    }

    #[test]
    fn an_error_answer_gives_its_code_and_message() {
        let answer = HttpAnswer {
            status: 403,
            body: Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>b1c9</RequestID></Response>"),
        };
        let error = read_answer(&answer).expect_err("refused");
        assert_eq!(error.code(), "UnauthorizedOperation");
        assert_eq!(
            error.to_string(),
            "EC2 refused DescribeTags (HTTP 403, UnauthorizedOperation): You are not authorized to perform this operation."
        );
        let odd = HttpAnswer {
            status: 502,
            body: Bytes::from_static(b"Bad Gateway"),
        };
        assert!(matches!(
            read_answer(&odd),
            Err(DescribeTagsError::Refused { status: 502, ref code, ref message }) if code == "Unknown" && message == "Bad Gateway"
        ));
        let not_tags = HttpAnswer {
            status: 200,
            body: Bytes::from_static(b"<html><body>captive portal</body></html>"),
        };
        assert!(matches!(
            read_answer(&not_tags),
            Err(DescribeTagsError::Malformed(_))
        ));
    }

    #[test]
    fn the_form_names_the_instance_and_encodes_the_token() {
        assert_eq!(
            form_body("i-0abc", None),
            "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=i-0abc"
        );
        assert_eq!(
            form_body("i-0abc", Some("AAAA+b/c==")),
            "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=i-0abc&NextToken=AAAA%2Bb%2Fc%3D%3D"
        );
    }

    fn identity(token: Option<&str>) -> Identity {
        Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            token.map(str::to_owned),
            None,
            "test",
        )
        .into()
    }

    #[test]
    fn the_request_is_signed_for_ec2_in_the_region() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let request = signed_request(
            "https://ec2.eu-west-1.amazonaws.com",
            form_body("i-0abc", None),
            &identity(Some("session")),
            "eu-west-1",
            time,
        )
        .expect("signed");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://ec2.eu-west-1.amazonaws.com/"
        );
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), FORM_CONTENT_TYPE);
        assert_eq!(header("x-amz-date"), "20150830T123600Z");
        assert_eq!(header("x-amz-security-token"), "session");
        let authorization = header("authorization");
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{authorization}"
        );
        assert_eq!(
            request.body().as_ref(),
            form_body("i-0abc", None).as_bytes()
        );
        // Without a session token there is no token header, and it is not signed.
        let plain = signed_request(
            "http://127.0.0.1:5000/",
            form_body("i-0abc", None),
            &identity(None),
            "us-east-1",
            time,
        )
        .expect("signed");
        assert_eq!(plain.uri().to_string(), "http://127.0.0.1:5000/");
        assert!(plain.headers().get("x-amz-security-token").is_none());
        assert!(plain.headers()["authorization"]
            .to_str()
            .expect("text")
            .contains("SignedHeaders=content-type;host;x-amz-date,"));
    }

    #[test]
    fn endpoints_follow_the_region_unless_configured() {
        assert_eq!(
            endpoint_for(None, "eu-west-1"),
            "https://ec2.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint_for(None, "cn-north-1"),
            "https://ec2.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            endpoint_for(Some("http://127.0.0.1:5000/"), "eu-west-1"),
            "http://127.0.0.1:5000"
        );
    }

    /// Answers each request with the next canned answer, keeping the bodies sent.
    #[derive(Debug, Default)]
    struct Canned {
        answers: Mutex<Vec<HttpAnswer>>,
        sent: Mutex<Vec<String>>,
    }

    impl SendRequest for Canned {
        fn send(&self, request: Request<Bytes>) -> SendFuture<'_> {
            self.sent
                .lock()
                .expect("lock")
                .push(String::from_utf8_lossy(request.body()).into_owned());
            let answer = {
                let mut answers = self.answers.lock().expect("lock");
                (!answers.is_empty()).then(|| answers.remove(0))
            };
            Box::pin(async move { answer.ok_or_else(|| "connection refused".to_owned()) })
        }
    }

    fn access(http: Arc<Canned>) -> Ec2Access {
        Ec2Access {
            credentials: Some(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))),
            time: SharedTimeSource::default(),
            region: Some("us-east-1".to_owned()),
            http,
        }
    }

    #[tokio::test]
    async fn pages_are_followed_until_no_token_is_left() {
        let http = Arc::new(Canned::default());
        *http.answers.lock().expect("lock") = vec![
            HttpAnswer {
                status: 200,
                body: Bytes::from_static(PAGE_ONE.as_bytes()),
            },
            HttpAnswer {
                status: 200,
                body: Bytes::from_static(b"<DescribeTagsResponse><tagSet><item><key>Team</key><value>payments</value></item></tagSet></DescribeTagsResponse>"),
            },
        ];
        let tags = describe_tags(
            &access(Arc::clone(&http)),
            None,
            Some("eu-west-1"),
            "i-0abc",
        )
        .await
        .expect("tags");
        assert_eq!(
            tags,
            vec![
                tag("Name", "web & api"),
                tag("Empty", ""),
                tag("Team", "payments")
            ]
        );
        let sent = http.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 2);
        assert!(!sent[0].contains("NextToken"), "{}", sent[0]);
        assert!(
            sent[1].ends_with("&NextToken=AAAA%2Bb%2Fc%3D%3D"),
            "{}",
            sent[1]
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_says_where_and_why() {
        let http = Arc::new(Canned::default());
        let error = describe_tags(&access(http), Some("http://127.0.0.1:9"), None, "i-0abc")
            .await
            .expect_err("unreachable");
        assert_eq!(error.code(), "Unreachable");
        assert_eq!(
            error.to_string(),
            "cannot reach EC2 at http://127.0.0.1:9: connection refused"
        );
    }

    #[test]
    fn a_default_port_is_not_part_of_the_signed_host() {
        let host = |url: &str| {
            let uri: http::Uri = url.parse().expect("uri");
            let authority = uri.authority().expect("authority").clone();
            signed_host(&uri, &authority)
        };
        assert_eq!(
            host("https://ec2.eu-west-1.amazonaws.com:443/"),
            "ec2.eu-west-1.amazonaws.com"
        );
        assert_eq!(host("http://127.0.0.1:80/"), "127.0.0.1");
        assert_eq!(host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(host("https://ec2.internal:8443/"), "ec2.internal:8443");
    }
}
