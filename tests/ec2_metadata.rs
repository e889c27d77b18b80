//! `add_ec2_metadata` in the whole agent: the instance's identity from an IMDSv2 stand-in
//! (`support::imds`), its tags from moto's EC2 `DescribeTags`, in a dry run whose records show
//! what was added; and, when `DescribeTags` cannot be reached, the tags of the instance
//! metadata with one WARN saying why.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::agent::Agent;
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::sigv4::{self, Authorization, Signable};
use crate::support::http::free_port;
use crate::support::imds::{Imds, Instance};
use crate::support::moto::{self, Moto};
use crate::support::wait::wait_for_showing;

const DEADLINE: Duration = Duration::from_secs(120);

/// An instance in moto (from an image moto lists), tagged as given; its ID.
const RUN_TAGGED_INSTANCE: &str = r#"
ec2 = client("ec2")
image = ec2.describe_images()["Images"][0]["ImageId"]
instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
tags = [{"Key": key, "Value": value} for key, value in zip(ARGS[0::2], ARGS[1::2])]
ec2.create_tags(Resources=[instance], Tags=tags)
reply(instance)
"#;

/// A dry-run flow over `<dir>/logs/*` adding the EC2 metadata with tags, from `imds`, with
/// `DescribeTags` sent to `ec2_endpoint`.
fn config(dir: &Path, imds: &str, ec2_endpoint: &str) -> PathBuf {
    fs::create_dir_all(dir.join("logs")).expect("logs dir");
    let flow = Flow::kinesis("app", format!("{}/logs/*", dir.display()), "never").keys(&[
        "dry_run: true",
        "initial_position: start_of_file",
        "max_batch_age: 100ms",
        "poll_interval: 100ms",
        "processors:",
        "  - type: add_ec2_metadata",
        "    tags: true",
        &format!("    endpoint: {imds}"),
        &format!("    ec2_endpoint: {ec2_endpoint}"),
    ]);
    AgentConfig::new(dir)
        .tops(&["progress_interval: 1s", "shutdown_grace: 10s"])
        .aws_keys(&[
            &format!("region: {}", moto::REGION),
            "request_timeout: 5s",
            "connect_timeout: 1s",
        ])
        .flow(flow)
        .write()
}

/// Starts the agent, waits until it has read the metadata, then writes two JSON lines and
/// returns the records of the dry run once both are out, and the agent's log.
fn run_and_read_records(dir: &Path, config: &Path, env: &[(&str, &str)]) -> (Vec<Value>, String) {
    let mut agent = Agent::start_with(config, dir, None, &[], env);
    // Records before the first read go on unchanged, as with the Kinesis Agent.
    agent.wait_for_log("EC2 instance metadata read", DEADLINE);
    fs::write(dir.join("logs/app.log"), "{\"n\":1}\n{\"n\":2}\n").expect("write log");
    let records = wait_for_showing(
        "both records in the dry run's output",
        DEADLINE,
        || {
            let stdout = fs::read_to_string(&agent.stdout).unwrap_or_default();
            let records: Vec<Value> = stdout
                .lines()
                .filter_map(|batch| serde_json::from_str::<Value>(batch).ok())
                .flat_map(|batch| batch["records"].as_array().cloned().unwrap_or_default())
                .filter_map(|record| serde_json::from_str(record["data"].as_str()?).ok())
                .collect();
            (records.len() == 2).then_some(records)
        },
        || agent.output(),
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    (records, agent.output())
}

/// `yyyy-MM-ddTHH:mm:ss+0000`, as the Kinesis Agent's `metadataTimestamp`.
fn is_agent_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 24
        && text.ends_with("+0000")
        && bytes.iter().enumerate().all(|(at, byte)| match at {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            19..=23 => true,
            _ => byte.is_ascii_digit(),
        })
}

#[test]
fn records_carry_the_tags_describe_tags_returns_and_the_metadata_timestamp() {
    let moto = Moto::start();
    let instance = moto.python(
        RUN_TAGGED_INSTANCE,
        &["Name", "web-1", "Team", "Payments", "cost-Center", "42"],
    );
    let instance = instance.as_str().expect("an instance ID").to_owned();
    let imds = Imds::start(Instance {
        instance_id: instance.clone(),
        region: moto::REGION.to_owned(),
        tags: vec![("Source".into(), "instance-metadata".into())],
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &imds.endpoint(), &moto.endpoint());
    let (records, log) = run_and_read_records(dir.path(), &config, &[]);
    for (index, record) in records.iter().enumerate() {
        let object = record.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "n",
                "privateIp",
                "availabilityZone",
                "instanceId",
                "instanceType",
                "accountId",
                "amiId",
                "region",
                "metadataTimestamp",
                "tags"
            ],
            "{record}"
        );
        assert_eq!(record["n"], index + 1);
        assert_eq!(record["instanceId"], instance.as_str());
        assert_eq!(record["region"], moto::REGION);
        let timestamp = record["metadataTimestamp"].as_str().unwrap_or_default();
        assert!(is_agent_timestamp(timestamp), "{timestamp}");
        assert_eq!(
            record["tags"],
            serde_json::json!({"name": "web-1", "team": "Payments", "cost-center": "42"}),
            "{record}"
        );
    }
    // The tags came from DescribeTags alone: the instance metadata was not asked for them.
    assert!(
        !imds.requests().iter().any(|r| r.contains("/tags/")),
        "{:?}",
        imds.requests()
    );
    assert!(imds
        .requests()
        .contains(&"PUT /latest/api/token".to_owned()));
    assert!(!log.contains("WARN"), "{log}");
    assert!(moto.output().contains("POST / "), "{}", moto.output());
}

#[test]
fn a_failing_describe_tags_gives_the_instance_metadata_tags_and_one_warning() {
    let imds = Imds::start(Instance {
        instance_id: "i-0123456789abcdef0".to_owned(),
        region: moto::REGION.to_owned(),
        tags: vec![
            ("Name".into(), "web-1".into()),
            ("Source".into(), "instance-metadata".into()),
        ],
    });
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens there: DescribeTags cannot be sent.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let config = config(dir.path(), &imds.endpoint(), &unreachable);
    let (records, log) = run_and_read_records(dir.path(), &config, &[]);
    for record in &records {
        assert_eq!(
            record["tags"],
            serde_json::json!({"name": "web-1", "source": "instance-metadata"}),
            "{record}"
        );
        assert!(
            is_agent_timestamp(record["metadataTimestamp"].as_str().unwrap_or_default()),
            "{record}"
        );
    }
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("ec2:DescribeTags")
            && warnings[0].contains("Unreachable")
            && warnings[0].contains(&unreachable),
        "{}",
        warnings[0]
    );
}

/// An EC2 endpoint answering `DescribeTags` in two pages, after checking each request's SigV4
/// signature with the test harness's own verifier (not the `aws-sigv4` crate the agent signs
/// with), for the secret key the agent is given. Keeps what it saw of each request.
struct PagedTags {
    endpoint: String,
    seen: Arc<Mutex<Vec<String>>>,
}

const FIRST_PAGE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r-1</requestId><tagSet><item><resourceId>i-0feedface0000001</resourceId><resourceType>instance</resourceType><key>Name</key><value>web-1</value></item></tagSet><nextToken>page+2/=</nextToken></DescribeTagsResponse>";
const SECOND_PAGE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r-2</requestId><tagSet><item><resourceId>i-0feedface0000001</resourceId><resourceType>instance</resourceType><key>Team</key><value>payments</value></item></tagSet></DescribeTagsResponse>";

impl PagedTags {
    fn start(secret: &'static str) -> PagedTags {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        // Runs until the test process ends; each test has its own listener.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(Received {
                    request_line,
                    headers,
                    body,
                }) = read_request(&stream)
                else {
                    continue;
                };
                let body_text = String::from_utf8_lossy(&body).into_owned();
                let verdict = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                    .ok_or_else(|| "no authorization header".to_owned())
                    .and_then(|(_, value)| Authorization::parse(value))
                    .and_then(|authorization| {
                        let signable = Signable {
                            method: "POST",
                            path: "/",
                            query: "",
                            headers: &headers,
                            body: &body,
                        };
                        sigv4::verify(&signable, &authorization, secret, SystemTime::now())
                            .map(|()| authorization)
                            .map_err(|refusal| format!("{refusal:?}"))
                    });
                let (status, reply) = match &verdict {
                    Err(_) => ("403 Forbidden", "<Response><Errors><Error><Code>AuthFailure</Code><Message>signature refused</Message></Error></Errors></Response>"),
                    Ok(_) if body_text.contains("&NextToken=page%2B2%2F%3D") => ("200 OK", SECOND_PAGE),
                    Ok(_) => ("200 OK", FIRST_PAGE),
                };
                kept.lock().expect("lock").push(format!(
                    "{} {body_text} -> {}",
                    request_line.trim(),
                    match &verdict {
                        Ok(authorization) => format!("signed for {}", authorization.scope()),
                        Err(refusal) => format!("refused: {refusal}"),
                    }
                ));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        PagedTags { endpoint, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

/// One HTTP/1.1 request as received.
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request.
fn read_request(stream: &std::net::TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        request_line,
        headers,
        body,
    })
}

#[test]
fn describe_tags_is_signed_for_ec2_in_the_instances_region_and_follows_every_page() {
    let ec2 = PagedTags::start("a-secret-of-the-flow");
    // The flow's stream is in another region than the instance: its tags live in the
    // instance's.
    let imds = Imds::start(Instance {
        instance_id: "i-0feedface0000001".to_owned(),
        region: "eu-west-1".to_owned(),
        tags: Vec::new(),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &imds.endpoint(), &ec2.endpoint);
    let (records, log) = run_and_read_records(
        dir.path(),
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDFLOWKEY"),
            ("AWS_SECRET_ACCESS_KEY", "a-secret-of-the-flow"),
        ],
    );
    for record in &records {
        assert_eq!(
            record["tags"],
            serde_json::json!({"name": "web-1", "team": "payments"}),
            "{record}\n{:?}",
            ec2.seen()
        );
    }
    let seen = ec2.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let form = "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=i-0feedface0000001";
    assert!(
        seen[0].starts_with(&format!("POST / HTTP/1.1 {form} -> signed for ")),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with(&format!(
            "POST / HTTP/1.1 {form}&NextToken=page%2B2%2F%3D -> signed for "
        )),
        "{seen:?}"
    );
    for request in &seen {
        assert!(
            request.ends_with("/eu-west-1/ec2/aws4_request"),
            "{request}"
        );
    }
    assert!(!log.contains("WARN"), "{log}");
}
