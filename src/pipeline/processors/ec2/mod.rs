//! `add_ec2_metadata`: adds the EC2 instance's identity, when it was read
//! (`metadataTimestamp`) and, when asked, its tags to each JSON object record, with the Kinesis
//! Agent's ADDEC2METADATA key names. The identity comes from the instance metadata service
//! ([`imds`]); the tags from `ec2:DescribeTags` with the flow's credentials ([`describe_tags`]),
//! else from the instance metadata. All of it is cached and read again every `refresh`.

pub mod describe_tags;
pub mod imds;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::imds::client::Client as ImdsClient;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::json::{self, Object, Value};
use super::{split_line_end, Outcome};
pub use crate::config::Ec2Settings;
pub use describe_tags::{Ec2Access, HttpAnswer, SendFuture, SendRequest};

/// The processor: its settings, how it calls EC2, and the metadata last read (shared with its
/// refresher).
#[derive(Clone, Debug)]
pub struct AddEc2Metadata {
    pub settings: Ec2Settings,
    /// `None`: tags are read from the instance metadata only.
    ec2: Option<Ec2Access>,
    members: Arc<RwLock<Option<String>>>,
}

/// How long one read of the metadata may take (the identity, then the tags page by page).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `DescribeTags` may take, all pages, before the instance metadata's tags are used.
const DESCRIBE_TAGS_TIMEOUT: Duration = Duration::from_secs(15);
/// How soon a failed read is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where the tags added last came from, and why `DescribeTags` failed if it did: a WARN is
/// logged when that changes, not at every refresh.
#[derive(Debug, Default)]
struct TagsState {
    describe_tags_failure: Option<String>,
    imds_failure: Option<String>,
}

impl AddEc2Metadata {
    pub fn new(settings: Ec2Settings, ec2: Option<Ec2Access>) -> Self {
        Self {
            settings,
            ec2,
            members: Arc::new(RwLock::new(None)),
        }
    }

    pub fn apply(&self, record: Bytes) -> Outcome {
        let members = self
            .members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // Not known (yet): the record goes on as it is, as with the Kinesis Agent.
        let Some(members) = members else {
            return Outcome::Keep(record);
        };
        let (body, line_end) = split_line_end(&record);
        match json::add_members(body, &members, line_end) {
            Some(out) => Outcome::Keep(Bytes::from(out)),
            None => Outcome::Unparsable(
                "add_ec2_metadata adds keys to JSON objects; this record is not one".into(),
            ),
        }
    }

    /// Reads the metadata now, then again every `refresh` (every minute while it fails), until
    /// `stop` fires.
    pub async fn keep_fresh(self, flow: String, stop: CancellationToken) {
        let client = match imds::client(self.settings.endpoint.as_deref()) {
            Ok(client) => client,
            Err(failure) => {
                warn!(flow, %failure, "Cannot reach the EC2 instance metadata service (add_ec2_metadata); records go on without it.");
                return;
            }
        };
        let mut failing = false;
        let mut tags_state = TagsState::default();
        loop {
            let read = self.fetch(&client, &flow, &mut tags_state);
            let wait = match tokio::time::timeout(FETCH_TIMEOUT, read).await {
                Ok(Ok(members)) => {
                    if failing || self.members.read().map_or(true, |m| m.is_none()) {
                        info!(
                            flow,
                            "EC2 instance metadata read; add_ec2_metadata adds it to records."
                        );
                    }
                    failing = false;
                    *self
                        .members
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(members);
                    self.settings.refresh
                }
                Ok(Err(failure)) => {
                    if !failing {
                        warn!(flow, cause = %failure, "Cannot read the EC2 instance metadata (add_ec2_metadata); records go on with what was read last, or without it; trying again every minute.");
                    }
                    failing = true;
                    RETRY_AFTER
                }
                Err(_) => {
                    if !failing {
                        warn!(flow, "Reading the EC2 instance metadata timed out (add_ec2_metadata); trying again every minute.");
                    }
                    failing = true;
                    RETRY_AFTER
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The metadata as JSON members, in the Kinesis Agent's order.
    async fn fetch(
        &self,
        client: &ImdsClient,
        flow: &str,
        tags_state: &mut TagsState,
    ) -> Result<String, String> {
        // As with the Kinesis Agent, the timestamp is when this read began.
        let read_at = metadata_timestamp(crate::clock::wall_now());
        let identity = imds::identity(client).await?;
        let mut object = Object::default();
        for (key, value) in [
            ("privateIp", &identity.private_ip),
            ("availabilityZone", &identity.availability_zone),
            ("instanceId", &identity.instance_id),
            ("instanceType", &identity.instance_type),
            ("accountId", &identity.account_id),
            ("amiId", &identity.image_id),
            ("region", &identity.region),
        ] {
            object.push(key, value.as_deref().map_or(Value::Null, Value::Text));
        }
        object.push("metadataTimestamp", Value::Text(&read_at));
        let mut text = object.into_members();
        if self.settings.tags {
            // Without tags the identity still goes out, as with the Kinesis Agent.
            if let Some(tags) = self.tags(client, &identity, flow, tags_state).await {
                text.push_str(",\"tags\":");
                text.push_str(&tags_object(&tags));
            }
        }
        Ok(text)
    }

    /// The instance's tags: from `DescribeTags`, else from the instance metadata; `None` when
    /// neither can be read (each failure logged once until it changes).
    async fn tags(
        &self,
        client: &ImdsClient,
        identity: &imds::InstanceIdentity,
        flow: &str,
        state: &mut TagsState,
    ) -> Option<Vec<(String, String)>> {
        if let Some(ec2) = &self.ec2 {
            let described = match identity.instance_id.as_deref() {
                Some(instance_id) => {
                    let call = describe_tags::describe_tags(
                        ec2,
                        self.settings.ec2_endpoint.as_deref(),
                        identity.region.as_deref(),
                        instance_id,
                    );
                    tokio::time::timeout(DESCRIBE_TAGS_TIMEOUT, call)
                        .await
                        .unwrap_or(Err(describe_tags::DescribeTagsError::TimedOut(
                            DESCRIBE_TAGS_TIMEOUT,
                        )))
                }
                None => Err(describe_tags::DescribeTagsError::Malformed(
                    "the instance identity document has no instanceId".into(),
                )),
            };
            match described {
                Ok(tags) => {
                    if state.describe_tags_failure.take().is_some() {
                        info!(
                            flow,
                            "ec2:DescribeTags answers again; add_ec2_metadata adds the tags it gives."
                        );
                    }
                    return Some(tags.into_iter().map(|tag| (tag.key, tag.value)).collect());
                }
                Err(failure) => {
                    let text = failure.to_string();
                    if state.describe_tags_failure.as_deref() != Some(text.as_str()) {
                        warn!(flow, code = failure.code(), cause = %failure, "Cannot read the instance's tags with ec2:DescribeTags (add_ec2_metadata tags: true; allow ec2:DescribeTags to the flow's credentials); using the tags in the instance metadata instead.");
                        state.describe_tags_failure = Some(text);
                    }
                }
            }
        }
        match imds::tags(client).await {
            Ok(tags) => {
                state.imds_failure = None;
                Some(tags)
            }
            Err(failure) => {
                if state.imds_failure.as_deref() != Some(failure.as_str()) {
                    warn!(flow, cause = %failure, "Cannot read the instance's tags from its metadata (add_ec2_metadata tags: true; are tags allowed in the instance metadata?); records get the rest.");
                    state.imds_failure = Some(failure);
                }
                None
            }
        }
    }

    /// Sets the metadata directly (tests).
    #[cfg(test)]
    fn set(&self, members: &str) {
        *self.members.write().expect("lock") = Some(members.to_owned());
    }
}

/// The tags as a JSON object, keys in lower case as the Kinesis Agent writes them; of keys
/// equal in lower case, the first one's place and the last one's value.
fn tags_object(tags: &[(String, String)]) -> String {
    let mut merged: Vec<(String, &str)> = Vec::with_capacity(tags.len());
    for (key, value) in tags {
        let key = key.to_lowercase();
        match merged.iter_mut().find(|(known, _)| *known == key) {
            Some(slot) => slot.1 = value,
            None => merged.push((key, value)),
        }
    }
    let mut object = Object::default();
    for (key, value) in &merged {
        object.push(key, Value::Text(value));
    }
    object.into_text()
}

/// `metadataTimestamp` as the Kinesis Agent writes it (Java's `yyyy-MM-dd'T'HH:mm:ssZ`):
/// seconds, and the offset as `+0000`; kinship writes UTC.
fn metadata_timestamp(time: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    let seconds = rfc3339.strip_suffix('Z').unwrap_or(&rfc3339);
    format!("{seconds}+0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    fn settings(endpoint: Option<String>, tags: bool) -> Ec2Settings {
        Ec2Settings {
            refresh: Duration::from_secs(3600),
            tags,
            endpoint,
            ec2_endpoint: None,
        }
    }

    #[test]
    fn records_go_on_unchanged_until_the_metadata_is_known() {
        let add = AddEc2Metadata::new(settings(None, false), None);
        assert_eq!(
            add.apply(Bytes::from_static(b"{\"a\":1}\n")),
            Outcome::Keep(Bytes::from_static(b"{\"a\":1}\n"))
        );
        add.set("\"instanceId\":\"i-1\"");
        assert_eq!(
            add.apply(Bytes::from_static(b"{\"a\":1}\n")),
            Outcome::Keep(Bytes::from_static(b"{\"a\":1,\"instanceId\":\"i-1\"}\n"))
        );
        assert_eq!(
            add.apply(Bytes::from_static(b"{}\n")),
            Outcome::Keep(Bytes::from_static(b"{\"instanceId\":\"i-1\"}\n"))
        );
        add.set("\"instanceId\":\"i-1\",\"region\":\"eu-west-1\"");
        assert_eq!(
            add.apply(Bytes::from_static(b"{\"region\":\"mine\",\"a\":1}\n")),
            Outcome::Keep(Bytes::from_static(
                b"{\"region\":\"eu-west-1\",\"a\":1,\"instanceId\":\"i-1\"}\n"
            ))
        );
        assert!(matches!(
            add.apply(Bytes::from_static(b"plain\n")),
            Outcome::Unparsable(_)
        ));
    }

    /// A metadata service on loopback speaking IMDSv2: a token first, then reads that carry it.
    fn fake_imds(requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.expect("connection");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                reader.read_line(&mut request_line).expect("request line");
                let mut token = None;
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).expect("header");
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let lower = header.to_lowercase();
                    if let Some(value) = lower.strip_prefix("x-aws-ec2-metadata-token: ") {
                        token = Some(value.to_owned());
                    }
                    if let Some(value) = lower.strip_prefix("content-length: ") {
                        length = value.parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).expect("body");
                let path = request_line
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                seen.push(format!(
                    "{} {path}",
                    request_line.split(' ').next().unwrap_or_default()
                ));
                let (status, reply) = match (request_line.starts_with("PUT"), path.as_str(), token.as_deref()) {
                    (true, "/latest/api/token", _) => ("200 OK", "secret-token".to_owned()),
                    (false, _, Some("secret-token")) => match path.as_str() {
                        "/latest/dynamic/instance-identity/document" => ("200 OK", r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1b","imageId":"ami-0abc","instanceId":"i-0123","instanceType":"m7g.large","privateIp":"10.0.1.5","region":"eu-west-1"}"#.to_owned()),
                        "/latest/meta-data/tags/instance" => ("200 OK", "Name\nTeam".to_owned()),
                        "/latest/meta-data/tags/instance/Name" => ("200 OK", "web-1".to_owned()),
                        "/latest/meta-data/tags/instance/Team" => ("200 OK", "payments".to_owned()),
                        _ => ("404 Not Found", String::new()),
                    },
                    _ => ("401 Unauthorized", String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
            seen
        });
        (endpoint, server)
    }

    #[tokio::test]
    async fn the_metadata_is_read_with_a_token_in_the_kinesis_agents_order() {
        let (endpoint, server) = fake_imds(5);
        let add = AddEc2Metadata::new(settings(Some(endpoint.clone()), true), None);
        let client = imds::client(Some(&endpoint)).expect("client");
        let members = add
            .fetch(&client, "f", &mut TagsState::default())
            .await
            .expect("metadata");
        let seen = server.join().expect("server");
        assert_eq!(seen[0], "PUT /latest/api/token");
        assert_eq!(seen.len(), 5, "{seen:?}");
        let timestamp_at = members.find("\"metadataTimestamp\":").expect("timestamp");
        let (before, after) = members.split_at(timestamp_at);
        assert_eq!(
            before,
            "\"privateIp\":\"10.0.1.5\",\"availabilityZone\":\"eu-west-1b\",\"instanceId\":\"i-0123\",\"instanceType\":\"m7g.large\",\"accountId\":\"123456789012\",\"amiId\":\"ami-0abc\",\"region\":\"eu-west-1\","
        );
        assert!(
            after.ends_with(",\"tags\":{\"name\":\"web-1\",\"team\":\"payments\"}"),
            "{after}"
        );
    }

    /// Answers every request with one canned answer, keeping the requests' bodies.
    #[derive(Debug)]
    struct OneAnswer {
        answer: Result<HttpAnswer, String>,
        sent: std::sync::Mutex<Vec<(String, String)>>,
    }

    impl SendRequest for OneAnswer {
        fn send(&self, request: http::Request<Bytes>) -> SendFuture<'_> {
            let authorization = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.sent.lock().expect("lock").push((
                authorization,
                String::from_utf8_lossy(request.body()).into_owned(),
            ));
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
    }

    fn access(answer: Result<HttpAnswer, String>) -> (Ec2Access, Arc<OneAnswer>) {
        let http = Arc::new(OneAnswer {
            answer,
            sent: std::sync::Mutex::new(Vec::new()),
        });
        let access = Ec2Access {
            credentials: Some(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("AKID", "secret", None, None, "test"),
                ),
            ),
            time: aws_smithy_async::time::SharedTimeSource::default(),
            region: Some("us-east-1".to_owned()),
            http: Arc::clone(&http) as Arc<dyn SendRequest>,
        };
        (access, http)
    }

    #[tokio::test]
    async fn tags_come_from_describe_tags_in_the_instances_region() {
        let (endpoint, server) = fake_imds(2);
        let (ec2, http) = access(Ok(HttpAnswer {
            status: 200,
            body: Bytes::from_static(b"<DescribeTagsResponse><tagSet><item><key>Name</key><value>from-api</value></item><item><key>NAME</key><value>last</value></item><item><key>Env</key><value>prod</value></item></tagSet></DescribeTagsResponse>"),
        }));
        let add = AddEc2Metadata::new(settings(Some(endpoint.clone()), true), Some(ec2));
        let client = imds::client(Some(&endpoint)).expect("client");
        let mut state = TagsState::default();
        let members = add.fetch(&client, "f", &mut state).await.expect("metadata");
        let seen = server.join().expect("server");
        assert_eq!(seen.len(), 2, "only the identity is read: {seen:?}");
        assert!(
            members.ends_with(",\"tags\":{\"name\":\"last\",\"env\":\"prod\"}"),
            "{members}"
        );
        let sent = http.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].0.contains("/eu-west-1/ec2/aws4_request"),
            "{}",
            sent[0].0
        );
        assert!(
            sent[0].1.ends_with("Filter.1.Value.1=i-0123"),
            "{}",
            sent[0].1
        );
        assert_eq!(state.describe_tags_failure, None);
    }

    #[tokio::test]
    async fn a_refused_describe_tags_falls_back_to_the_instance_metadata_tags() {
        let (endpoint, server) = fake_imds(5);
        let (ec2, _http) = access(Ok(HttpAnswer {
            status: 403,
            body: Bytes::from_static(b"<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors></Response>"),
        }));
        let add = AddEc2Metadata::new(settings(Some(endpoint.clone()), true), Some(ec2));
        let client = imds::client(Some(&endpoint)).expect("client");
        let mut state = TagsState::default();
        let members = add.fetch(&client, "f", &mut state).await.expect("metadata");
        server.join().expect("server");
        assert!(
            members.ends_with(",\"tags\":{\"name\":\"web-1\",\"team\":\"payments\"}"),
            "{members}"
        );
        let failure = state.describe_tags_failure.expect("failure kept");
        assert!(failure.contains("UnauthorizedOperation"), "{failure}");
    }

    #[test]
    fn the_metadata_timestamp_is_written_as_the_kinesis_agent_writes_it() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_928_398_750);
        assert_eq!(metadata_timestamp(time), "2025-12-05T09:53:18+0000");
        assert_eq!(
            metadata_timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00+0000"
        );
    }

    #[test]
    fn tag_keys_are_lower_case_the_last_of_equal_keys_winning() {
        let tags = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(tags_object(&[]), "{}");
        assert_eq!(
            tags_object(&tags(&[
                ("Name", "a"),
                ("Team", "t"),
                ("name", "b"),
                ("Q\"", "x")
            ])),
            "{\"name\":\"b\",\"team\":\"t\",\"q\\\"\":\"x\"}"
        );
    }
}
