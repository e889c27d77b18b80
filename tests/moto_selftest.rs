//! Checks the moto harness itself, and pins down what moto does where whole-agent tests rely on
//! it: Firehose writes each call to S3 before answering and adds nothing between records,
//! Kinesis takes a stream ARN in place of a name, and STS names an assumed role as AWS does.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc;

use serde_json::{json, Value};

use crate::support::moto::{Moto, ACCOUNT, REGION};

/// Sends batches with PutRecordBatch, one call per batch; `ARGS[1]` is a JSON list of batches,
/// each a list of base64 records. Replies each call's FailedPutCount.
const PUT_RECORD_BATCHES: &str = r#"
stream = ARGS[0]
firehose = client("firehose")
failed = []
for batch in json.loads(ARGS[1]):
    answer = firehose.put_record_batch(
        DeliveryStreamName=stream, Records=[{"Data": b64decode(r)} for r in batch]
    )
    failed.append(answer["FailedPutCount"])
reply(failed)
"#;

/// Sends batches with PutRecords naming the stream by `StreamARN` only; `ARGS[1]` is a JSON
/// list of batches of `[partition key, base64 data]`. Replies the shard id of every record.
const PUT_RECORDS_BY_ARN: &str = r#"
arn = ARGS[0]
kinesis = client("kinesis")
shards = []
for batch in json.loads(ARGS[1]):
    answer = kinesis.put_records(
        StreamARN=arn, Records=[{"PartitionKey": k, "Data": b64decode(d)} for k, d in batch]
    )
    if answer["FailedRecordCount"]:
        raise SystemExit(f"PutRecords failed records: {answer['Records']}")
    shards.extend(r["ShardId"] for r in answer["Records"])
reply(shards)
"#;

/// Assumes role `ARGS[0]` as session `ARGS[1]` and asks STS who the assumed keys belong to.
const ASSUME_ROLE_AND_ASK_IDENTITY: &str = r#"
role_arn, session = ARGS
credentials = client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session)["Credentials"]
assumed = client(
    "sts",
    aws_access_key_id=credentials["AccessKeyId"],
    aws_secret_access_key=credentials["SecretAccessKey"],
    aws_session_token=credentials["SessionToken"],
)
identity = assumed.get_caller_identity()
reply({
    "access_key_id": credentials["AccessKeyId"],
    "arn": identity["Arn"],
    "account": identity["Account"],
    "user_id": identity["UserId"],
})
"#;

fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The server process is gone (reaped, or its pid now names something else) and its port no
/// longer accepts connections.
fn assert_stopped(pid: u32, port: u16) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("moto.server"),
        "moto (pid {pid}) is still running"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after moto was stopped"
    );
}

#[test]
fn moto_starts_answers_and_stops_on_drop() {
    let server = Moto::start();
    let port = server.port();
    assert_eq!(server.endpoint(), format!("http://127.0.0.1:{port}"));
    assert!(
        server
            .output()
            .contains(&format!("Running on http://127.0.0.1:{port}")),
        "moto's output does not name its port: {}",
        server.output()
    );

    // The dummy keys are moto's default user in the fixed account.
    let identity = server.python("reply(client('sts').get_caller_identity())", &[]);
    assert_eq!(identity["Account"], ACCOUNT, "account of {identity}");
    assert_eq!(
        identity["Arn"],
        format!("arn:aws:sts::{ACCOUNT}:user/moto"),
        "identity of the dummy keys"
    );

    // A failing script is reported with what it wrote to stderr.
    let failure = panic::catch_unwind(AssertUnwindSafe(|| {
        server.python(
            "raise SystemExit('no such thing: ' + ARGS[0])",
            &["marker-17"],
        )
    }))
    .expect_err("a script that exits with an error must make the helper panic");
    let message = failure
        .downcast_ref::<String>()
        .expect("the helper panics with a formatted message");
    assert!(
        message.contains("no such thing: marker-17"),
        "the panic message lacks the script's stderr: {message}"
    );

    let pid = server.pid();
    drop(server);
    assert_stopped(pid, port);
}

#[test]
fn moto_is_stopped_and_its_log_kept_when_the_test_panics() {
    let (started, on_start) = mpsc::channel::<(u32, u16, PathBuf)>();
    let outcome = std::thread::spawn(move || {
        let server = Moto::start();
        started
            .send((server.pid(), server.port(), server.log_path().to_path_buf()))
            .expect("the test thread is waiting for the server's details");
        panic!("a test fails while its moto server runs");
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    let (pid, port, log_path) = on_start
        .recv()
        .expect("the thread sends the server's details before it panics");
    assert_stopped(pid, port);
    assert!(
        log_path.is_file(),
        "the log of a server stopped by a panic is kept"
    );
    std::fs::remove_file(&log_path).expect("remove the kept log");
}

/// moto's Firehose writes one S3 object per PutRecordBatch before the call returns, holding the
/// records' bytes back to back: no delimiter is added and bytes that are not UTF-8 survive. The
/// objects come back from `s3_objects` in call order even when many calls share one second.
#[test]
fn moto_firehose_writes_each_batch_to_s3_at_once_and_verbatim() {
    let server = Moto::start();
    let stream = "selftest-delivery";
    let bucket = "selftest-bucket";

    let arn = server.create_firehose_to_s3(stream, bucket);
    assert_eq!(
        arn,
        format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{stream}")
    );
    let description = server.python(
        "reply(client('firehose').describe_delivery_stream(DeliveryStreamName=ARGS[0])\
         ['DeliveryStreamDescription'])",
        &[stream],
    );
    assert_eq!(description["DeliveryStreamStatus"], "ACTIVE");
    let destination = &description["Destinations"][0]["ExtendedS3DestinationDescription"];
    assert_eq!(destination["BucketARN"], format!("arn:aws:s3:::{bucket}"));
    assert_eq!(destination["CompressionFormat"], "UNCOMPRESSED");
    assert_eq!(
        destination["EncryptionConfiguration"],
        json!({"NoEncryptionConfig": "NoEncryption"})
    );
    assert!(
        server.s3_objects(bucket).is_empty(),
        "a new bucket is empty"
    );

    let first: Vec<&[u8]> = vec![
        b"first line\n",
        b"\xff\xfe\x00 not UTF-8 \xc3\x28",
        b"no newline at the end",
    ];
    let encoded = json!([first.iter().map(|r| base64(r)).collect::<Vec<_>>()]);
    let failed = server.python(PUT_RECORD_BATCHES, &[stream, &encoded.to_string()]);
    assert_eq!(failed, json!([0]), "FailedPutCount");

    // Read straight after the call returned: nothing is buffered.
    let objects = server.s3_objects(bucket);
    assert_eq!(
        objects,
        vec![first.concat()],
        "one object holding exactly the records, back to back"
    );

    // Many calls within the same second: one object each, listed in call order although their
    // keys, which end in a random UUID, sort otherwise.
    let later: Vec<Vec<Vec<u8>>> = (0..12)
        .map(|call| {
            (0..=call % 3)
                .map(|i| format!("call {call} record {i}|").into_bytes())
                .collect()
        })
        .collect();
    let encoded = json!(later
        .iter()
        .map(|batch| batch.iter().map(|r| base64(r)).collect::<Vec<_>>())
        .collect::<Vec<_>>());
    let failed = server.python(PUT_RECORD_BATCHES, &[stream, &encoded.to_string()]);
    assert_eq!(failed, json!(vec![0; later.len()]), "FailedPutCount");

    let mut expected = vec![first.concat()];
    expected.extend(later.iter().map(|batch| batch.concat()));
    let objects = server.s3_objects(bucket);
    assert_eq!(
        objects.len(),
        expected.len(),
        "objects after {} calls",
        expected.len()
    );
    for (i, (object, wanted)) in objects.iter().zip(&expected).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(object),
            String::from_utf8_lossy(wanted),
            "object {i}"
        );
    }
    assert_eq!(objects, expected, "the bytes of every object");
}

/// moto's Kinesis takes PutRecords with `StreamARN` and no `StreamName`, and `kinesis_records`
/// gives back every record shard by shard, in the order written.
#[test]
fn moto_kinesis_accepts_stream_arn_and_reads_back_in_order() {
    let server = Moto::start();
    let name = "selftest-stream";
    let arn = server.create_kinesis_stream(name, 2);
    assert_eq!(
        arn,
        format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
    );
    assert!(
        server.kinesis_records(name).is_empty(),
        "a new stream is empty"
    );

    let sent: Vec<(String, Vec<u8>)> = (0..30u8)
        .map(|i| {
            let mut data = format!("record {i:02} ").into_bytes();
            data.extend_from_slice(&[0xff, i, b'\n', 0x80]);
            (format!("key-{}", i % 11), data)
        })
        .collect();
    let batches = json!(sent
        .chunks(10)
        .map(|batch| batch
            .iter()
            .map(|(key, data)| json!([key, base64(data)]))
            .collect::<Vec<_>>())
        .collect::<Vec<_>>());
    let shards = server.python(PUT_RECORDS_BY_ARN, &[&arn, &batches.to_string()]);
    let shards: Vec<String> = serde_json::from_value(shards).expect("a list of shard ids");
    assert_eq!(shards.len(), sent.len(), "one shard id per record");

    // Expected: shard by shard, and within a shard in the order sent.
    let mut expected: Vec<(&String, &(String, Vec<u8>))> = shards.iter().zip(&sent).collect();
    expected.sort_by(|a, b| a.0.cmp(b.0));
    let expected: Vec<(String, Vec<u8>)> = expected
        .into_iter()
        .map(|(_, record)| record.clone())
        .collect();
    let mut distinct = shards.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "the keys spread over both shards");

    assert_eq!(server.kinesis_records(name), expected);
}

/// After AssumeRole, GetCallerIdentity with the assumed keys names the role and session the
/// way AWS does.
#[test]
fn moto_sts_names_the_assumed_role_and_session() {
    let server = Moto::start();
    let role = "selftest-role";
    let session = "selftest-session";
    let role_arn = server.create_role(role);
    assert_eq!(role_arn, format!("arn:aws:iam::{ACCOUNT}:role/{role}"));

    let identity: Value = server.python(ASSUME_ROLE_AND_ASK_IDENTITY, &[&role_arn, session]);
    assert_eq!(
        identity["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"),
        "caller identity of the assumed keys: {identity}"
    );
    assert_eq!(identity["account"], ACCOUNT);
    let user_id = identity["user_id"].as_str().unwrap_or_default();
    assert!(
        user_id.starts_with("AROA") && user_id.ends_with(&format!(":{session}")),
        "user id of the assumed keys: {user_id}"
    );
    let key = identity["access_key_id"].as_str().unwrap_or_default();
    assert!(
        key.starts_with("ASIA"),
        "temporary keys start with ASIA: {key}"
    );
}
