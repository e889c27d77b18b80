//! kinship's own data path end to end: the same lines shipped as AWS CBOR 1.1, as AWS JSON 1.1
//! and through the AWS SDK arrive in kinesalite byte for byte, with their partition keys and
//! explicit hash keys; a private CA named by `aws.tls.ca_file` is trusted by every call.
//!
//! kinesalite 3.3.3 speaks CBOR with two flaws the tests work around: it cuts a CBOR answer at
//! 16 KiB (its encoder returns only what one stream buffer holds), and it keeps CBOR-put data
//! as a Node.js buffer, which its JSON `GetRecords` then writes as `{"type":"Buffer",...}`
//! instead of base64 (the AWS SDK cannot read that; the tests read it with plain JSON calls).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::{run_command_with_env, Agent};
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::{delivery_report, FaultKinesis, Faults};
use crate::support::files::open_log;
use crate::support::kinesalite::{self, Kinesalite, StoredRecord};
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(120);
const SHARDS: i32 = 4;

/// The ways a flow can send, by the stream each one fills. CBOR calls carry at most 100
/// records here, whose answers stay under kinesalite's 16 KiB cut (about 160 results); the
/// fault server answers full calls.
const PATHS: [(&str, &[&str]); 3] = [
    ("cbor", &["wire_format: cbor", "max_batch_records: 100"]),
    ("json", &["wire_format: json"]),
    ("sdk", &["data_path: sdk"]),
];

/// Lines that test the encoders: keys with quotes, backslashes, control characters and
/// non-ASCII letters; data that is not UTF-8, holds NUL bytes, ends in CRLF, or is long.
fn awkward_lines() -> Vec<Vec<u8>> {
    let keys = [
        "plain",
        "quote\"d",
        "back\\slash",
        "tab\tkey",
        "ключ",
        "emoji-🦀",
        "{\"json\":1}",
    ];
    let mut lines = Vec::new();
    for index in 0..700 {
        let key = keys[index % keys.len()];
        let mut line = format!("key={key} {index:05} ").into_bytes();
        match index % 7 {
            0 => line.extend_from_slice(b"\xff\xfe not utf-8 \x80"),
            1 => line.extend_from_slice(b"nul \x00 inside"),
            2 => line.extend_from_slice(b"ends in crlf\r"),
            3 => line.extend_from_slice("x".repeat(20_000 + index).as_bytes()),
            4 => line.extend_from_slice("ünïcödé text".as_bytes()),
            _ => line.extend_from_slice(b"GET /plain HTTP/1.1 200"),
        }
        line.push(b'\n');
        lines.push(line);
    }
    lines
}

fn write_file(path: &Path, lines: &[Vec<u8>]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("log dir");
    }
    open_log(path)
        .write_all(&lines.concat())
        .expect("write lines");
}

fn flow(dir: &Path, name: &str, keys: &[&str]) -> Flow {
    Flow::kinesis(name, dir.join(name).join("app.log").display(), name)
        .keys(&[
            "initial_position: start_of_file",
            "max_batch_age: 200ms",
            "max_in_flight: 1",
        ])
        .keys(keys)
}

/// One call to kinesalite in AWS JSON 1.1 over plain HTTP/1.0 (it checks no signatures).
fn kinesalite_call(endpoint: &str, target: &str, body: &serde_json::Value) -> serde_json::Value {
    let address = endpoint.trim_start_matches("http://");
    let body = body.to_string();
    let mut stream = TcpStream::connect(address).expect("connect to kinesalite");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.{target}\r\nX-Amz-Date: 20261205T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20261205/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the answer");
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("an HTTP answer");
    serde_json::from_slice(&response[split + 4..]).expect("a JSON answer")
}

/// A record's data as kinesalite gives it back through JSON: base64 for data put as JSON, a
/// Node.js buffer (`{"type":"Buffer","data":[...]}`) for data put as CBOR byte strings.
fn stored_data(data: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    match data {
        serde_json::Value::String(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64 data"),
        serde_json::Value::Object(buffer) => buffer["data"]
            .as_array()
            .expect("a buffer's bytes")
            .iter()
            .map(|byte| u8::try_from(byte.as_u64().expect("a byte")).expect("a byte"))
            .collect(),
        other => panic!("record data in an unknown form: {other}"),
    }
}

/// Every record of `stream`, shard by shard in sequence order, read with plain JSON calls, so
/// that records put as CBOR read back too (the SDK cannot parse kinesalite's form of them).
fn read_stream(server: &Kinesalite, stream: &str, expected: usize) -> Vec<StoredRecord> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shards = runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::list_shards(&client, stream).await
    });
    let mut records = Vec::new();
    for shard in shards {
        let answer = kinesalite_call(
            &server.endpoint,
            "GetShardIterator",
            &serde_json::json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        );
        let mut iterator = answer["ShardIterator"].as_str().map(str::to_owned);
        assert!(iterator.is_some(), "{stream}/{shard}: {answer}");
        while let Some(current) = iterator.take() {
            let page = kinesalite_call(
                &server.endpoint,
                "GetRecords",
                &serde_json::json!({"ShardIterator": current, "Limit": 100}),
            );
            let page_records = page["Records"].as_array().cloned().unwrap_or_default();
            for record in &page_records {
                records.push(StoredRecord {
                    partition_key: record["PartitionKey"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    data: stored_data(&record["Data"]),
                    shard_id: shard.clone(),
                    sequence_number: record["SequenceNumber"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            if page_records.is_empty() {
                break;
            }
            iterator = page["NextShardIterator"].as_str().map(str::to_owned);
        }
    }
    assert_eq!(records.len(), expected, "{stream}: records read back");
    records
}

/// Each record's key, data and shard, per key in stream order.
fn by_key(records: &[StoredRecord]) -> BTreeMap<String, Vec<(Vec<u8>, String)>> {
    let mut keyed: BTreeMap<String, Vec<(Vec<u8>, String)>> = BTreeMap::new();
    for record in records {
        keyed
            .entry(record.partition_key.clone())
            .or_default()
            .push((record.data.clone(), record.shard_id.clone()));
    }
    keyed
}

fn records_per_shard(records: &[StoredRecord]) -> Vec<usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for record in records {
        *counts.entry(record.shard_id.as_str()).or_default() += 1;
    }
    let mut counts: Vec<usize> = counts.into_values().collect();
    counts.sort_unstable();
    counts
}

#[test]
fn cbor_json_and_the_sdk_deliver_the_same_bytes_with_their_keys() {
    let server = Kinesalite::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spread_streams: Vec<String> = PATHS
        .iter()
        .map(|(name, _)| format!("{name}-spread"))
        .collect();
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        for (name, _) in PATHS {
            kinesalite::create_stream(&client, name, SHARDS).await;
        }
        for name in &spread_streams {
            kinesalite::create_stream(&client, name, SHARDS).await;
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let lines = awkward_lines();
    let mut config = AgentConfig::new(dir.path())
        .top("progress_interval: 1s")
        .emulator(kinesalite::REGION, &server.endpoint);
    for (name, keys) in PATHS {
        write_file(&dir.path().join(name).join("app.log"), &lines);
        config = config
            .flow(flow(dir.path(), name, keys).key("partition_key: { regex: '^key=(\\S+)' }"));
    }
    // Explicit hash keys: records step evenly through the hash key space, so they land on
    // the four shards evenly only if each record's key reached the stream.
    for ((_, keys), name) in PATHS.iter().zip(&spread_streams) {
        write_file(&dir.path().join(name).join("app.log"), &lines);
        config = config.flow(flow(dir.path(), name, keys).key("explicit_hash_key: spread"));
    }
    let config = config.write();
    let mut agent = Agent::start(&config, dir.path());
    let total = (lines.len() * PATHS.len() * 2) as u64;
    assert!(
        holds_within(DEADLINE, || agent.progress("records_sent") == Some(total)),
        "expected {total} records sent:\n{}",
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());

    let mut expected_by_key: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for line in &lines {
        let text = String::from_utf8_lossy(line);
        let key = text
            .strip_prefix("key=")
            .and_then(|rest| rest.split_whitespace().next())
            .expect("every line has a key")
            .to_owned();
        expected_by_key.entry(key).or_default().push(line.clone());
    }
    let mut delivered = Vec::new();
    for (name, _) in PATHS {
        let records = read_stream(&server, name, lines.len());
        let keyed = by_key(&records);
        let data_by_key: BTreeMap<String, Vec<Vec<u8>>> = keyed
            .iter()
            .map(|(key, records)| {
                (
                    key.clone(),
                    records.iter().map(|(data, _)| data.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            data_by_key.keys().collect::<Vec<_>>(),
            expected_by_key.keys().collect::<Vec<_>>(),
            "{name}: the partition keys that arrived"
        );
        // Every line, byte for byte, under its key and in file order (one call at a time).
        assert!(data_by_key == expected_by_key, "{name}: the records' data");
        // Each key's records share one shard, as its hash decides.
        for (key, records) in &keyed {
            let first = &records[0].1;
            assert!(
                records.iter().all(|(_, shard)| shard == first),
                "{name}: key {key:?} spread over shards"
            );
        }
        delivered.push((name, keyed));
    }
    // The three paths put every key on the same shard.
    let shards_of = |keyed: &BTreeMap<String, Vec<(Vec<u8>, String)>>| -> Vec<(String, String)> {
        keyed
            .iter()
            .map(|(key, records)| (key.clone(), records[0].1.clone()))
            .collect()
    };
    for (name, keyed) in &delivered[1..] {
        assert_eq!(
            shards_of(keyed),
            shards_of(&delivered[0].1),
            "{name} and cbor"
        );
    }
    for name in &spread_streams {
        let records = read_stream(&server, name, lines.len());
        let mut data: Vec<Vec<u8>> = records.iter().map(|record| record.data.clone()).collect();
        data.sort();
        let mut want = lines.clone();
        want.sort();
        assert!(data == want, "{name}: every line once");
        let counts = records_per_shard(&records);
        eprintln!("{name}: records per shard {counts:?}");
        assert_eq!(counts.len(), SHARDS as usize, "{name}: {counts:?}");
        let (least, most) = (counts[0], counts[counts.len() - 1]);
        assert!(
            most - least <= 8,
            "{name}: records not spread evenly by their explicit hash keys: {counts:?}"
        );
    }
    assert!(!agent.output().contains("ERROR"), "{}", agent.output());
}

fn tls_config(dir: &Path, server: &FaultKinesis, ca_file: Option<&Path>, keys: &str) -> PathBuf {
    let tls = ca_file.map_or_else(String::new, |path| {
        format!("  tls:\n    ca_file: {}\n", path.display())
    });
    let path = dir.join("kinship.yaml");
    fs::write(
        &path,
        format!(
            "state_dir: {state}\nprogress_interval: 1s\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  check_identity: false\n  request_timeout: 5s\n{tls}flows:\n  - name: app\n    files: {logs}/*.log\n    kinesis_stream: private\n    initial_position: start_of_file\n    max_batch_age: 200ms\n    {keys}\n",
            state = dir.join("state").display(),
            endpoint = server.endpoint(),
            logs = dir.join("logs").display(),
        ),
    )
    .expect("write config");
    path
}

#[test]
fn a_private_ca_in_tls_ca_file_is_trusted_by_every_call() {
    let server = FaultKinesis::start_tls(Faults::default());
    let lines: Vec<Vec<u8>> = (0..3_000)
        .map(|index| format!("{index:06} over tls\n").into_bytes())
        .collect();
    for keys in ["wire_format: cbor", "data_path: sdk"] {
        let dir = tempfile::tempdir().expect("temp dir");
        write_file(&dir.path().join("logs/app.log"), &lines);
        // Without the CA, the start-up check names the problem and the key that solves it.
        let config = tls_config(dir.path(), &server, None, keys);
        let config_text = config.display().to_string();
        let output = run_command_with_env(&["check", "--online", "--config", &config_text], &[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{keys}: {text}");
        assert!(
            text.contains("certificate") && text.contains("tls.ca_file"),
            "{keys}: {text}"
        );
        assert!(
            !text.contains("ConnectorError {"),
            "{keys}: a Debug dump: {text}"
        );

        let accepted_before = server.accepted_len();
        let config = tls_config(dir.path(), &server, Some(server.ca_pem_path()), keys);
        let mut agent = Agent::start(&config, dir.path());
        assert!(
            holds_within(DEADLINE, || server.accepted_len()
                >= accepted_before + lines.len()),
            "{keys}: {}",
            agent.output()
        );
        agent.signal("TERM");
        assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
        let accepted = server.accepted();
        let report = delivery_report(&lines, &accepted[accepted_before..]);
        assert_eq!(
            (report.lost, report.duplicates),
            (0, 0),
            "{keys}: {report:?}"
        );
    }
    let stats = server.stats();
    assert!(
        stats.cbor_put_calls > 0 && stats.json_put_calls > 0 && stats.signatures_refused == 0,
        "{stats:?}"
    );
}
