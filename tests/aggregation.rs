//! KPL aggregation, Firehose line packing and compression, end to end: the real agent sends
//! to moto, and what arrived is read back and unpacked by code kinship does not share — the
//! awslabs deaggregator (`aws-kinesis-agg` from PyPI), boto3, and Python's gzip.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::agent::Agent;
use crate::support::config::{AgentConfig, Flow};
use crate::support::files::open_log;
use crate::support::moto::Moto;
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(120);

/// Line `i`: about 100 bytes, by one of 37 users.
fn line(i: usize) -> String {
    format!(
        "{i:06} user=u{} \"GET /aggregated/{i} HTTP/1.1\" 200 {}\n",
        i % 37,
        "x".repeat(i % 50)
    )
}

fn write_lines(path: &Path, count: usize) -> Vec<String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("log dir");
    }
    let lines: Vec<String> = (0..count).map(line).collect();
    open_log(path)
        .write_all(lines.concat().as_bytes())
        .expect("write lines");
    lines
}

fn config(dir: &Path, moto: &Moto, flow: &[&str]) -> PathBuf {
    let endpoint = moto.endpoint();
    AgentConfig::new(dir)
        .top("progress_interval: 1s")
        .aws("region: us-east-1")
        .aws(format!("endpoint_url: {endpoint}"))
        .aws(format!("sts_endpoint_url: {endpoint}"))
        .flow(
            Flow::new("app", format!("{}/*.log", dir.join("logs").display()))
                .keys(&[
                    "initial_position: start_of_file",
                    "max_batch_age: 300ms",
                    "max_in_flight: 1",
                ])
                .keys(flow),
        )
        .write()
}

/// Waits for `lines` lines sent and stops the agent; returns its last progress figures.
fn finish(mut agent: Agent, lines: usize) -> (u64, u64, String) {
    assert!(
        holds_within(DEADLINE, || agent.progress("records_sent")
            == Some(lines as u64)),
        "{}",
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let output = agent.output();
    let records_put = agent.progress("records_put").expect("records_put");
    let units = output
        .lines()
        .rev()
        .find_map(|line| line.split("billing_units=app=").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .expect("billing units");
    (records_put, units, output)
}

/// Reads every record of `stream` shard by shard and deaggregates it with `aws-kinesis-agg`:
/// each user record with its shard, key, whether the key hashes into that shard's range, and
/// its data. Also counts the Kinesis records themselves.
const READ_AND_DEAGGREGATE: &str = r#"
import hashlib
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
name = ARGS[0]
kinesis = client("kinesis")
shards = kinesis.list_shards(StreamName=name)["Shards"]
out = {"records": 0, "aggregated": 0, "users": []}
for shard in sorted(shards, key=lambda s: s["ShardId"]):
    low = int(shard["HashKeyRange"]["StartingHashKey"])
    high = int(shard["HashKeyRange"]["EndingHashKey"])
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        records = page["Records"]
        if not records:
            break
        out["records"] += len(records)
        out["aggregated"] += sum(1 for r in records if r["Data"][:4] == b"\xf3\x89\x9a\xc2")
        for user in iter_deaggregate_records(records, data_format="Boto3"):
            record = user["kinesis"]
            key = record["partitionKey"]
            hashed = int(hashlib.md5(key.encode()).hexdigest(), 16)
            data = b64decode(record["data"]) if isinstance(record["data"], (bytes, str)) else b""
            out["users"].append([shard["ShardId"], key, low <= hashed <= high, data.decode()])
        iterator = page.get("NextShardIterator")
reply(out)
"#;

#[test]
fn kpl_aggregates_deaggregate_with_the_awslabs_library_keys_and_shards_intact() {
    let moto = Moto::start();
    moto.create_kinesis_stream("aggregated", 4);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &moto,
        &[
            "kinesis_stream: aggregated",
            "aggregation: kpl",
            "partition_key: { regex: 'user=(\\w+)' }",
        ],
    );
    let lines = write_lines(&dir.path().join("logs/app.log"), 20_000);
    let agent = Agent::start(&config, dir.path());
    let (records_put, units, output) = finish(agent, lines.len());
    assert!(
        output.contains("Shards learnt. flow=app shards=4 usage=\"records are aggregated and calls built per shard\""),
        "{output}"
    );

    let read = moto.python(READ_AND_DEAGGREGATE, &["aggregated"]);
    let users = read["users"].as_array().expect("users");
    assert_eq!(users.len(), lines.len(), "every line, once");
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for user in users {
        let [Value::String(_shard), Value::String(key), Value::Bool(in_range), Value::String(data)] =
            user.as_array().expect("user record").as_slice()
        else {
            panic!("unexpected user record {user}");
        };
        assert!(
            in_range,
            "key {key} is stored on a shard its hash is not in"
        );
        let expected_key = data
            .split("user=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("user in line");
        assert_eq!(key, expected_key, "each line keeps its own partition key");
        by_key.entry(key.clone()).or_default().push(data.clone());
    }
    // Per key, lines arrive in file order.
    for (key, got) in &by_key {
        let expected: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains(&format!("user={key} ")))
            .collect();
        let got: Vec<&String> = got.iter().collect();
        assert_eq!(got, expected, "order of key {key}");
    }
    let kinesis_records = read["records"].as_u64().expect("records");
    assert_eq!(
        kinesis_records, records_put,
        "the progress line counts service records"
    );
    assert!(
        kinesis_records * 100 <= lines.len() as u64,
        "{kinesis_records} records for {} lines",
        lines.len()
    );
    assert!(read["aggregated"].as_u64() >= Some(4));
    // 20,000 lines of ~125 bytes in a few aggregates of up to 1 MiB: far under one PUT unit per line.
    assert!(units * 100 <= lines.len() as u64, "{units} units");
}

/// Every object in `bucket`, concatenated in creation order.
fn s3_text(moto: &Moto, bucket: &str) -> Vec<u8> {
    moto.s3_objects(bucket).concat()
}

#[test]
fn firehose_packs_lines_into_few_records_and_the_objects_hold_every_line() {
    let moto = Moto::start();
    moto.create_firehose_to_s3("packed", "packed-bucket");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &moto,
        &[
            "firehose_stream: packed",
            "pack_records: true",
            "pack_record_bytes: 65536",
        ],
    );
    let lines = write_lines(&dir.path().join("logs/app.log"), 10_000);
    let agent = Agent::start(&config, dir.path());
    let (records_put, units, _) = finish(agent, lines.len());
    assert_eq!(s3_text(&moto, "packed-bucket"), lines.concat().into_bytes());
    let bytes = lines.concat().len() as u64;
    // Records of up to 64 KiB: about bytes / 64 KiB of them, each billed by its size.
    assert!(
        records_put * 20 <= lines.len() as u64,
        "{records_put} records"
    );
    assert!(
        units <= bytes.div_ceil(5 * 1024) + records_put,
        "{units} units"
    );
}

#[test]
fn gzip_compressed_packs_gunzip_to_the_same_lines() {
    let moto = Moto::start();
    moto.create_firehose_to_s3("zipped", "zipped-bucket");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &moto,
        &[
            "firehose_stream: zipped",
            "pack_records: true",
            "compression: gzip",
        ],
    );
    let lines = write_lines(&dir.path().join("logs/app.log"), 5_000);
    let agent = Agent::start(&config, dir.path());
    finish(agent, lines.len());
    // Firehose writes each call's records back to back: a series of gzip members, which a
    // gzip reader reads as one stream.
    let objects = moto.s3_objects("zipped-bucket");
    let mut text = Vec::new();
    let mut stored = 0;
    for object in &objects {
        stored += object.len();
        let mut reader = flate2::read::MultiGzDecoder::new(&object[..]);
        reader.read_to_end(&mut text).expect("gzip");
    }
    assert_eq!(text, lines.concat().into_bytes());
    assert!(
        stored * 4 < text.len(),
        "{stored} bytes stored for {}",
        text.len()
    );
}
