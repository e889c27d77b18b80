//! Order per partition key (`ordering: per_shard`, the default): files keyed by their name,
//! shipped at once to streams of several shards, reach each shard in file order, also when the
//! stream refuses and throttles records and when a shard is split while shipping.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};

use crate::support::agent::{write_config, Agent};
use crate::support::fault_kinesis::{FaultKinesis, Faults};
use crate::support::files::append;
use crate::support::kinesalite;
use crate::support::stream::setup_with_shards;
use crate::support::wait;

/// How long a test waits for every line to be read back.
const READ_DEADLINE: Duration = Duration::from_secs(240);
/// How long the agent may take to learn a changed shard map: its periodic refresh (every
/// minute) and some slack.
const SHARD_REFRESH_DEADLINE: Duration = Duration::from_secs(90);
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The partition key of each line: its file's name, the line's first word.
const KEY_BY_FILE: &str = r"partition_key: { regex: '^(f\d+) ' }";

/// `count` lines of file `file`, numbered from `first`: `f3 00000012 …`.
fn file_lines(file: usize, first: usize, count: usize) -> Vec<u8> {
    let mut text = Vec::new();
    for line in first..first + count {
        text.extend_from_slice(
            format!("f{file} {line:08} GET /orders/{line} HTTP/1.1 200 512\n").as_bytes(),
        );
    }
    text
}

/// Each key's line numbers, in the order the stream holds them: `records` are (partition key,
/// data) in stream order per shard, a parent shard's before its children's.
fn numbers_per_key<'a>(
    records: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> BTreeMap<String, Vec<usize>> {
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (key, data) in records {
        let text = String::from_utf8_lossy(data);
        let number = text
            .split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a record that is no line of the test: {text:?}"));
        per_key.entry(key.to_owned()).or_default().push(number);
    }
    per_key
}

/// Every key's lines, each once and in file order; a message naming the first departure.
fn check_order(per_key: &BTreeMap<String, Vec<usize>>, files: usize, lines: usize) {
    assert_eq!(
        per_key.keys().cloned().collect::<Vec<_>>(),
        (0..files).map(|f| format!("f{f}")).collect::<Vec<_>>(),
        "every file's key in the stream"
    );
    for (key, numbers) in per_key {
        if let Some(at) = numbers.iter().enumerate().position(|(i, n)| *n != i) {
            panic!(
                "{key}: {} records for {lines} lines; the stream departs from the file at record {at}: {:?}",
                numbers.len(),
                &numbers[at.saturating_sub(3)..(at + 5).min(numbers.len())]
            );
        }
        assert_eq!(numbers.len(), lines, "{key}: every line once");
    }
}

fn stop(mut agent: Agent) {
    agent.signal("TERM");
    assert!(
        agent.wait_exit(EXIT_DEADLINE).success(),
        "the agent stops cleanly:\n{}",
        agent.output()
    );
}

fn write_files(dir: &Path, files: usize, lines: usize) -> String {
    for file in 0..files {
        append(
            &dir.join(format!("f{file}.log")),
            &file_lines(file, 0, lines),
        );
    }
    dir.join("f*.log").display().to_string()
}

#[test]
fn lines_keyed_by_file_reach_a_four_shard_stream_in_file_order() {
    const FILES: usize = 8;
    const LINES: usize = 5_000;
    let (server, dir, runtime) = setup_with_shards("ordered", 4);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let glob = write_files(&logs, FILES, LINES);
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "ordered",
        &glob,
        &["initial_position: start_of_file", KEY_BY_FILE],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("calls are built per shard", Duration::from_secs(60));
    let records = runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::read_all(&client, "ordered", FILES * LINES, READ_DEADLINE).await
    });
    stop(agent);
    let per_key = numbers_per_key(
        records
            .iter()
            .map(|record| (record.partition_key.as_str(), record.data.as_slice())),
    );
    check_order(&per_key, FILES, LINES);
    let shards: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|record| record.shard_id.as_str())
        .collect();
    assert!(shards.len() > 1, "the keys spread over shards: {shards:?}");
}

#[test]
fn a_shard_split_while_shipping_keeps_every_line_once_and_in_order() {
    const FILES: usize = 6;
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 500;
    let (server, dir, runtime) = setup_with_shards("split", 2);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let glob = write_files(&logs, FILES, PER_ROUND);
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "split",
        &glob,
        &["initial_position: start_of_file", KEY_BY_FILE],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    let client = runtime.block_on(kinesalite::client(&server.endpoint));
    for round in 1..ROUNDS {
        if round == ROUNDS / 2 {
            // Once the agent is shipping: the lines written so far are read back.
            let shipped = runtime.block_on(kinesalite::read_all(
                &client,
                "split",
                FILES * PER_ROUND * round,
                READ_DEADLINE,
            ));
            assert_eq!(
                shipped.len(),
                FILES * PER_ROUND * round,
                "shipped before the split"
            );
            // Split the first shard at the middle of its range while lines keep coming.
            runtime.block_on(async {
                let shards = client
                    .list_shards()
                    .stream_name("split")
                    .send()
                    .await
                    .expect("ListShards");
                let first = &shards.shards()[0];
                let range = first.hash_key_range().expect("a hash key range");
                let start: u128 = range.starting_hash_key().parse().expect("a number");
                let end: u128 = range.ending_hash_key().parse().expect("a number");
                client
                    .split_shard()
                    .stream_name("split")
                    .shard_to_split(first.shard_id())
                    .new_starting_hash_key((start + (end - start) / 2).to_string())
                    .send()
                    .await
                    .expect("SplitShard");
            });
        }
        for file in 0..FILES {
            append(
                &logs.join(format!("f{file}.log")),
                &file_lines(file, round * PER_ROUND, PER_ROUND),
            );
        }
    }
    let expected = FILES * ROUNDS * PER_ROUND;
    let records = runtime.block_on(kinesalite::read_all(
        &client,
        "split",
        expected,
        READ_DEADLINE,
    ));
    // The agent learns the new map from an answer naming a shard it does not know (checked on
    // one call in 16, drawn at random, so the calls after the split may all go unchecked) or,
    // at the latest, from its periodic refresh.
    agent.wait_for_log("The stream's shards changed.", SHARD_REFRESH_DEADLINE);
    let output = agent.output();
    stop(agent);
    let shards: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|record| record.shard_id.as_str())
        .collect();
    assert!(
        shards.len() > 2,
        "records reached the split shard's children: {shards:?}"
    );
    // Shard ids grow, so a parent's records come before its children's.
    let per_key = numbers_per_key(
        records
            .iter()
            .map(|record| (record.partition_key.as_str(), record.data.as_slice())),
    );
    check_order(&per_key, FILES, ROUNDS * PER_ROUND);
    assert!(
        output.contains("The stream's shards changed."),
        "the agent learnt the new shards:\n{output}"
    );
}

/// The shard (of `shards` even ones) a partition key goes to.
fn shard_of(key: &str, shards: u128) -> usize {
    let hash = u128::from_be_bytes(Md5::digest(key.as_bytes()).into());
    (hash / (u128::MAX / shards + 1)) as usize
}

#[test]
fn refusals_and_a_throttled_shard_keep_order_and_the_other_shards_go_on() {
    const FILES: usize = 8;
    const LINES: usize = 2_000;
    const HOT_RATE: u64 = 200;
    // The hot shard is the one the first file's key goes to.
    let hot = shard_of("f0", 4);
    let server = FaultKinesis::start(Faults {
        shards: 4,
        // A refused record takes the rest of its shard's records in the call with it, as a
        // shard refuses them: with about 120 records per shard in a call, these draws refuse
        // about 1 % of the records (the test prints the share).
        record_internal_percent: 0.002,
        record_throttle_percent: 0.002,
        refusals_hold_shard: true,
        hot_shard: Some((hot, HOT_RATE)),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let glob = write_files(&logs, FILES, LINES);
    let config = write_config(
        dir.path(),
        &server.endpoint(),
        "faults",
        &glob,
        &[
            "initial_position: start_of_file",
            KEY_BY_FILE,
            "retry_initial_backoff: 50ms",
            "retry_max_backoff: 1s",
        ],
        &[],
    );
    let agent = Agent::start(&config, dir.path());
    wait::poll_every(POLL, READ_DEADLINE, || {
        (server.stored().len() >= FILES * LINES).then_some(())
    });
    let output = agent.output();
    stop(agent);
    let stored = server.stored();
    // Each shard's records in the order it stored them, shard by shard.
    let mut by_shard: BTreeMap<&str, Vec<(&str, &[u8])>> = BTreeMap::new();
    for record in &stored {
        by_shard
            .entry(record.shard_id.as_str())
            .or_default()
            .push((record.partition_key.as_str(), record.data.as_slice()));
    }
    let per_key = numbers_per_key(by_shard.values().flatten().copied());
    check_order(&per_key, FILES, LINES);

    // The rates: the hot shard's, and the others' while it was still throttled.
    let stats = format!("{:?}", server.stats());
    let hot_id = &server.shard_ids()[hot];
    let shard_stats = server.shard_stats();
    let rate = |stats: &crate::support::fault_kinesis::ShardStats| {
        let (Some(first), Some(last)) = (stats.first_stored, stats.last_stored) else {
            return 0.0;
        };
        stats.stored as f64 / last.duration_since(first).as_secs_f64().max(0.001)
    };
    let hot_stats = shard_stats
        .iter()
        .find(|stats| &stats.id == hot_id)
        .expect("the hot shard's stats");
    let others: Vec<_> = shard_stats
        .iter()
        .filter(|stats| &stats.id != hot_id && stats.stored > 0)
        .collect();
    let hot_rate = rate(hot_stats);
    let other_rates: Vec<f64> = others.iter().map(|stats| rate(stats)).collect();
    let server_stats = server.stats();
    let refused = server_stats.record_throttled + server_stats.record_internal;
    println!(
        "hot shard {hot_id}: {} records at {hot_rate:.0}/s ({} throttled); other shards: {:?} records/s; {:.2} % of records refused at random; {stats}",
        hot_stats.stored,
        hot_stats.throttled,
        other_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        refused as f64 * 100.0 / (server_stats.records_stored + refused) as f64,
    );
    assert!(
        hot_stats.throttled > 0,
        "the hot shard throttled:\n{output}"
    );
    let hot_done = hot_stats.last_stored.expect("the hot shard stored");
    for stats in &others {
        let done = stats.last_stored.expect("stored");
        assert!(
            done < hot_done,
            "shard {} finished after the hot shard: it was held to the hot shard's pace ({:?} records/s against {hot_rate:.0})",
            stats.id,
            other_rates
        );
    }
    assert!(
        other_rates.iter().all(|rate| *rate > 2.0 * hot_rate),
        "the other shards went faster than the hot one: {other_rates:?} against {hot_rate:.0} records/s"
    );
}
