//! Destinations and AWS access against emulators written by others: Firehose to S3, STS
//! (identity and an assumed role) and a second Kinesis in moto, Kinesis in kinesalite. The
//! agent is the real binary; what it delivered is read back with boto3 and the AWS SDK.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::{run_command_with_env, Agent};
use crate::support::files::open_log;
use crate::support::kinesalite::{self, Kinesalite};
use crate::support::lines::append_lines;
use crate::support::moto::{Moto, ACCOUNT};
use crate::support::stream::read_back;
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(120);

fn line(flow: &str, index: usize) -> Vec<u8> {
    format!("{flow} {index:06} 10.0.0.1 \"GET /emulated/{index} HTTP/1.1\" 200 128\n").into_bytes()
}

fn write_lines(path: &Path, flow: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    append_lines(path, range.map(|index| line(flow, index)).collect())
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("kinship.yaml");
    fs::write(&path, text).expect("write config");
    path
}

/// Waits until the agent reports `records` sent over all flows, failing with its log if not.
fn wait_sent(agent: &Agent, records: u64) {
    assert!(
        holds_within(DEADLINE, || agent.progress("records_sent") == Some(records)),
        "expected {records} records sent:\n{}",
        agent.output()
    );
}

#[test]
fn firehose_delivers_every_line_to_s3_and_the_identity_is_logged() {
    let moto = Moto::start();
    moto.create_firehose_to_s3("logs-to-s3", "kinship-logs");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("logs/app.log");
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir: {state}\nprogress_interval: 1s\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  sts_endpoint_url: {endpoint}\nflows:\n  - name: to-s3\n    files: {logs}/*.log\n    firehose_stream: logs-to-s3\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    max_in_flight: 1\n",
            state = dir.path().join("state").display(),
            endpoint = moto.endpoint(),
            logs = dir.path().join("logs").display(),
        ),
    );
    let mut expected = write_lines(&log, "s3", 0..2000);
    // A line without a newline yet, and one that is not UTF-8: both arrive as written.
    let odd = b"\xff\xfe not utf-8 \x00\n".to_vec();
    open_log(&log).write_all(&odd).expect("write");
    expected.push(odd);
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("AWS credentials work.", DEADLINE);
    let identity = output
        .lines()
        .find(|line| line.contains("AWS credentials work."))
        .unwrap_or_default();
    assert!(
        identity.contains("INFO")
            && identity.contains(&format!("account={ACCOUNT}"))
            && identity.contains("destination=Firehose stream `logs-to-s3`"),
        "{identity}"
    );
    agent.wait_for_log("Destination found.", DEADLINE);
    wait_sent(&agent, expected.len() as u64);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let stored = moto.s3_objects("kinship-logs").concat();
    let expected = expected.concat();
    if stored != expected {
        let first = stored
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(stored.len().min(expected.len()));
        let around = |bytes: &[u8]| {
            String::from_utf8_lossy(&bytes[first.saturating_sub(80)..(first + 80).min(bytes.len())])
                .into_owned()
        };
        panic!(
            "S3 holds {} bytes, {} expected; first difference at byte {first}:\nstored:   {:?}\nexpected: {:?}",
            stored.len(),
            expected.len(),
            around(&stored),
            around(&expected)
        );
    }
    assert!(!agent.output().contains("ERROR"), "{}", agent.output());
}

#[test]
fn flows_reach_destinations_with_their_own_endpoints_regions_and_stream_arns() {
    let moto = Moto::start();
    let kinesalite_server = Kinesalite::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = kinesalite::client(&kinesalite_server.endpoint).await;
        kinesalite::create_stream(&client, "local", 1).await;
    });
    moto.create_firehose_to_s3("archive", "archive-bucket");
    let arn = moto.create_kinesis_stream("by-arn", 1);
    assert_eq!(
        arn,
        format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/by-arn")
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let logs = |name: &str| dir.path().join(name).join("app.log");
    // Defaults point at moto (in another region than the flows use); one flow overrides the
    // endpoint and turns the identity check off, one takes its region from a stream ARN.
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir: {state}\nprogress_interval: 1s\naws:\n  region: eu-west-1\n  endpoint_url: {moto}\n  sts_endpoint_url: {moto}\nflows:\n\
             \x20 - name: local\n    files: {a}\n    kinesis_stream: local\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    max_in_flight: 1\n    aws:\n      region: us-east-1\n      endpoint_url: {kinesalite}\n      check_identity: false\n\
             \x20 - name: archive\n    files: {b}\n    firehose_stream: archive\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    max_in_flight: 1\n    aws:\n      region: us-east-1\n\
             \x20 - name: by-arn\n    files: {c}\n    kinesis_stream: {arn}\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    max_in_flight: 1\n    partition_key: deterministic\n",
            state = dir.path().join("state").display(),
            moto = moto.endpoint(),
            kinesalite = kinesalite_server.endpoint,
            a = logs("a").display(),
            b = logs("b").display(),
            c = logs("c").display(),
        ),
    );
    let local = write_lines(&logs("a"), "local", 0..600);
    let archived = write_lines(&logs("b"), "archive", 0..600);
    let by_arn = write_lines(&logs("c"), "arn", 0..300);
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("AWS clients ready", DEADLINE);
    // `archive` and `by-arn` end with equal settings (region us-east-1, moto): one client set.
    assert!(output.contains("flows=3 distinct_settings=2"), "{output}");
    wait_sent(&agent, (local.len() + archived.len() + by_arn.len()) as u64);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());

    assert_eq!(
        read_back(&runtime, &kinesalite_server, "local", local.len()),
        local
    );
    assert_eq!(
        moto.s3_objects("archive-bucket").concat(),
        archived.concat()
    );
    let records = moto.kinesis_records("by-arn");
    let data: Vec<Vec<u8>> = records.iter().map(|(_, data)| data.clone()).collect();
    assert_eq!(data, by_arn);
    assert!(
        records.iter().all(|(key, _)| key.len() == 16),
        "deterministic keys are 16 hex digits"
    );
    let output = agent.output();
    assert!(
        output.contains(&format!(
            "destination=Kinesis stream `{arn}` region=us-east-1"
        )),
        "{output}"
    );
    assert!(!output.contains("ERROR"), "{output}");
}

#[test]
fn a_role_assumed_through_sts_sends_records_and_check_online_names_it() {
    let moto = Moto::start();
    let role = moto.create_role("kinship-writer");
    moto.create_kinesis_stream("assumed", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("logs/app.log");
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir: {state}\nprogress_interval: 1s\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  sts_endpoint_url: {endpoint}\n  assume_role:\n    role_arn: {role}\n    session_name: kinship-test\n    external_id: kinship-external\n    duration: 15m\nflows:\n  - name: app\n    files: {logs}/*.log\n    kinesis_stream: assumed\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    max_in_flight: 1\n",
            state = dir.path().join("state").display(),
            endpoint = moto.endpoint(),
            logs = dir.path().join("logs").display(),
        ),
    );
    let assumed = format!("arn:aws:sts::{ACCOUNT}:assumed-role/kinship-writer/kinship-test");

    let check = run_command_with_env(
        &[
            "check",
            "--online",
            "--config",
            &config.display().to_string(),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}\n{check:?}");
    assert!(
        stdout.contains(&format!(
            "flow `app`: Kinesis stream `assumed`: ok (account {ACCOUNT}, {assumed}; status ACTIVE)"
        )),
        "{stdout}"
    );

    let expected = write_lines(&log, "role", 0..500);
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("AWS credentials work.", DEADLINE);
    assert!(output.contains(&format!("arn={assumed}")), "{output}");
    assert!(
        output.contains(&format!("credentials=default chain, then role {role}")),
        "{output}"
    );
    wait_sent(&agent, expected.len() as u64);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let data: Vec<Vec<u8>> = moto
        .kinesis_records("assumed")
        .into_iter()
        .map(|(_, data)| data)
        .collect();
    assert_eq!(data, expected);
}

/// Sums every data point of each Kinesis Agent metric for one `Destination`, in moto.
const CLOUDWATCH_SUMS: &str = r#"
import datetime
cloudwatch = client("cloudwatch")
now = datetime.datetime.now(datetime.timezone.utc)
sums = {}
for name in ["BytesSent", "RecordSendAttempts", "RecordSendErrors", "RecordsSent", "ServiceErrors"]:
    answer = cloudwatch.get_metric_statistics(
        Namespace=ARGS[0], MetricName=name,
        Dimensions=[{"Name": "Destination", "Value": ARGS[1]}],
        StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(hours=1),
        Period=60, Statistics=["Sum", "SampleCount"])
    points = answer["Datapoints"]
    sums[name] = [sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points)]
reply(sums)
"#;

#[test]
fn metrics_are_published_to_cloudwatch_under_the_kinesis_agent_names() {
    let moto = Moto::start();
    moto.create_kinesis_stream("watched", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("logs/app.log");
    let lines = write_lines(&log, "watched", 0..1500);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir: {state}\nprogress_interval: 1s\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  sts_endpoint_url: {endpoint}\ncloudwatch:\n  interval: 1s\nflows:\n  - name: app\n    files: {logs}/*.log\n    kinesis_stream: watched\n    initial_position: start_of_file\n    max_batch_age: 200ms\n",
            state = dir.path().join("state").display(),
            endpoint = moto.endpoint(),
            logs = log.parent().expect("log dir").display(),
        ),
    );
    let mut agent = Agent::start(&config, dir.path());
    wait_sent(&agent, 1500);
    agent.wait_for_log("Publishing metrics to CloudWatch.", DEADLINE);
    // The last counts are published as the agent stops.
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let sums = moto.python(
        CLOUDWATCH_SUMS,
        &["AWSKinesisAgent", "KinesisStream:watched"],
    );
    let sum = |name: &str| sums[name][0].as_f64().unwrap_or(f64::NAN);
    assert_eq!(sum("RecordsSent"), 1500.0, "{sums}\n{}", agent.output());
    assert_eq!(sum("RecordSendAttempts"), 1500.0, "{sums}");
    assert_eq!(sum("BytesSent"), bytes as f64, "{sums}");
    assert_eq!(sum("RecordSendErrors"), 0.0, "{sums}");
    assert_eq!(sum("ServiceErrors"), 0.0, "{sums}");
    // One point per metric at each publish, zeros included, so alarms on a quiet flow work.
    let samples = sums["RecordsSent"][1].as_f64().unwrap_or(0.0);
    assert!(samples >= 1.0, "{sums}");
    assert_eq!(sums["ServiceErrors"][1].as_f64(), Some(samples), "{sums}");
}

/// Every metric moto holds in a namespace, with its dimensions, and the sum and maximum of its
/// points for the dimensions given.
const CLOUDWATCH_METRICS: &str = r#"
import datetime
cloudwatch = client("cloudwatch")
now = datetime.datetime.now(datetime.timezone.utc)
found = {}
for metric in cloudwatch.list_metrics(Namespace=ARGS[0])["Metrics"]:
    dimensions = sorted([d["Name"], d["Value"]] for d in metric["Dimensions"])
    answer = cloudwatch.get_metric_statistics(
        Namespace=ARGS[0], MetricName=metric["MetricName"], Dimensions=metric["Dimensions"],
        StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(hours=1),
        Period=60, Statistics=["Sum", "Maximum"])
    points = answer["Datapoints"]
    found[metric["MetricName"]] = {
        "dimensions": dimensions,
        "sum": sum(p["Sum"] for p in points),
        "max": max([p["Maximum"] for p in points], default=None),
    }
reply(found)
"#;

#[test]
fn tag_instance_adds_the_instance_dimension_beside_destination() {
    let moto = Moto::start();
    moto.create_kinesis_stream("tagged", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("logs/app.log");
    write_lines(&log, "tagged", 0..200);
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir: {state}\nprogress_interval: 1s\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  sts_endpoint_url: {endpoint}\ncloudwatch:\n  interval: 1s\n  namespace: Tagged\n  tag_instance: true\n  instance_id: i-0123456789abcdef0\nflows:\n  - name: app\n    files: {logs}/*.log\n    kinesis_stream: tagged\n    initial_position: start_of_file\n    max_batch_age: 200ms\n",
            state = dir.path().join("state").display(),
            endpoint = moto.endpoint(),
            logs = log.parent().expect("log dir").display(),
        ),
    );
    let mut agent = Agent::start(&config, dir.path());
    wait_sent(&agent, 200);
    agent.wait_for_log("Publishing metrics to CloudWatch.", DEADLINE);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let metrics = moto.python(CLOUDWATCH_METRICS, &["Tagged"]);
    let both = serde_json::json!([
        ["Destination", "KinesisStream:tagged"],
        ["Instance", "i-0123456789abcdef0"]
    ]);
    for name in [
        "BytesSent",
        "RecordSendAttempts",
        "RecordSendErrors",
        "RecordsSent",
        "ServiceErrors",
        "ConsecutiveProcessingErrors",
    ] {
        assert_eq!(metrics[name]["dimensions"], both, "{name}: {metrics}");
    }
    assert_eq!(
        metrics["RecordsSent"]["sum"].as_f64(),
        Some(200.0),
        "{metrics}"
    );
    // Every file was read without a failure.
    assert_eq!(
        metrics["ConsecutiveProcessingErrors"]["max"].as_f64(),
        Some(0.0),
        "{metrics}"
    );
}
