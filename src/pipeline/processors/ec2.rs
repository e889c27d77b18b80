//! `add_ec2_metadata`: adds the EC2 instance's identity (and, when asked, its tags) to each
//! JSON object record, with the Kinesis Agent's ADDEC2METADATA key names. The metadata comes
//! from the instance metadata service (IMDSv2, through the AWS SDK's client), is cached, and is
//! read again every `refresh`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_config::imds::client::Client as ImdsClient;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::json::{self, Object, Value};
use super::{split_line_end, Outcome};
pub use crate::config::Ec2Settings;

/// The processor: its settings, and the metadata last read (shared with its refresher).
#[derive(Clone, Debug)]
pub struct AddEc2Metadata {
    pub settings: Ec2Settings,
    members: Arc<RwLock<Option<String>>>,
}

/// How long one read of the metadata may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon a failed read is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

impl AddEc2Metadata {
    pub fn new(settings: Ec2Settings) -> Self {
        Self {
            settings,
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
        let client = match self.client() {
            Ok(client) => client,
            Err(failure) => {
                warn!(flow, %failure, "Cannot reach the EC2 instance metadata service (add_ec2_metadata); records go on without it.");
                return;
            }
        };
        let mut failing = false;
        loop {
            let wait = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch(&client)).await {
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

    fn client(&self) -> Result<ImdsClient, String> {
        let mut builder = ImdsClient::builder()
            .max_attempts(2)
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2));
        if let Some(endpoint) = &self.settings.endpoint {
            builder = builder
                .endpoint(endpoint)
                .map_err(|error| error.to_string())?;
        }
        Ok(builder.build())
    }

    /// The metadata as JSON members, in the Kinesis Agent's order.
    async fn fetch(&self, client: &ImdsClient) -> Result<String, String> {
        let document = client
            .get("/latest/dynamic/instance-identity/document")
            .await
            .map_err(|error| error.to_string())?;
        let document: serde_json::Value =
            serde_json::from_str(document.as_ref()).map_err(|error| error.to_string())?;
        let field = |name: &str| document.get(name).and_then(serde_json::Value::as_str);
        let mut object = Object::default();
        for (key, from) in [
            ("privateIp", "privateIp"),
            ("availabilityZone", "availabilityZone"),
            ("instanceId", "instanceId"),
            ("instanceType", "instanceType"),
            ("accountId", "accountId"),
            ("amiId", "imageId"),
            ("region", "region"),
        ] {
            object.push(key, field(from).map_or(Value::Null, Value::Text));
        }
        let read_at = humantime::format_rfc3339_seconds(crate::clock::wall_now()).to_string();
        object.push("metadataTimestamp", Value::Text(&read_at));
        let mut text = object.into_members();
        if self.settings.tags {
            // Without tags the identity still goes out, as with the Kinesis Agent.
            match read_tags(client).await {
                Ok(tags) => {
                    text.push_str(",\"tags\":");
                    text.push_str(&tags);
                }
                Err(failure) => {
                    warn!(cause = %failure, "Cannot read the instance's tags from its metadata (add_ec2_metadata tags: true; are tags allowed in the instance metadata?); records get the rest.");
                }
            }
        }
        Ok(text)
    }

    /// Sets the metadata directly (tests).
    #[cfg(test)]
    fn set(&self, members: &str) {
        *self.members.write().expect("lock") = Some(members.to_owned());
    }
}

/// The instance's tags as a JSON object, keys in lower case.
async fn read_tags(client: &ImdsClient) -> Result<String, String> {
    let keys = client
        .get("/latest/meta-data/tags/instance")
        .await
        .map_err(|error| error.to_string())?;
    let mut values = Vec::new();
    for key in keys.as_ref().lines().filter(|key| !key.is_empty()) {
        let value = client
            .get(format!("/latest/meta-data/tags/instance/{key}"))
            .await
            .map_err(|error| format!("tag {key}: {error}"))?;
        values.push((key.to_lowercase(), value.as_ref().to_owned()));
    }
    let mut tags = Object::default();
    for (key, value) in &values {
        tags.push(key, Value::Text(value));
    }
    Ok(tags.into_text())
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
        }
    }

    #[test]
    fn records_go_on_unchanged_until_the_metadata_is_known() {
        let add = AddEc2Metadata::new(settings(None, false));
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
    fn fake_imds() -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for stream in listener.incoming().take(5) {
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
        let (endpoint, server) = fake_imds();
        let add = AddEc2Metadata::new(settings(Some(endpoint), true));
        let client = add.client().expect("client");
        let members = add.fetch(&client).await.expect("metadata");
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
}
