//! Whole-agent delivery: the real binary, real files, a real Kinesis server (kinesalite).

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use crate::support::agent::{saved_offset, write_config, Agent};
use crate::support::files::append;
use crate::support::kinesalite::{self, Kinesalite};
use crate::support::stream::{
    read_back, read_back_within, setup, setup_with_shards, READ_DEADLINE,
};
use crate::support::wait;

const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// Line `index` of a test log: mostly ordinary text, with the awkward cases mixed in.
fn line(index: usize) -> Vec<u8> {
    let mut line = match index % 50 {
        7 => b"\n".to_vec(),
        13 => format!("crlf line {index}\r\n").into_bytes(),
        21 => {
            let mut bytes = format!("binary {index} ").into_bytes();
            bytes.extend_from_slice(&[0x00, 0xff, 0xfe, 0xc3, 0x28, 0x00]);
            bytes.push(b'\n');
            bytes
        }
        _ => format!(
            "10.0.{}.{} - - [23/Nov/2026:10:00:00 +0000] \"GET /item/{index} HTTP/1.1\" 200 {} \"-\" \"agent/{}\"\n",
            index % 256,
            (index / 256) % 256,
            index * 7 % 10_000,
            index % 13
        )
        .into_bytes(),
    };
    if index % 1000 == 999 {
        // A longer line now and then.
        let tail = line.pop();
        line.extend(std::iter::repeat_n(b'x', 3000));
        line.extend(tail);
    }
    line
}

fn lines(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(line).collect()
}

/// Waits until the checkpoint shows some delivery, so a stop lands mid-file.
fn wait_for_progress(dir: &std::path::Path, agent: &mut Agent, at_least: u64) {
    wait::wait_until_showing(
        "progress in the checkpoint",
        READ_DEADLINE,
        || saved_offset(dir).unwrap_or(0) >= at_least,
        || agent.output(),
    );
}

#[test]
fn lines_appended_in_bursts_arrive_exactly_once_in_file_order() {
    let (server, dir, runtime) = setup("bursts");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "bursts",
        &log.display().to_string(),
        // The file is created by the first burst, which the first scan may find already
        // written: read it from its start whenever it is found.
        &[
            "max_in_flight: 1",
            "max_batch_age: 200ms",
            "initial_position: start_of_file",
        ],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("kinship is running.", EXIT_DEADLINE);

    let expected = lines(0..100_000);
    // Bursts of uneven size; every few bursts end in the middle of a line, whose rest follows.
    let mut pending = Vec::new();
    for (burst, chunk) in expected.chunks(997).enumerate() {
        let mut bytes = std::mem::take(&mut pending);
        for line in chunk {
            bytes.extend_from_slice(line);
        }
        if burst % 3 == 0 && bytes.len() > 10 {
            pending = bytes.split_off(bytes.len() - 7);
        }
        append(&log, &bytes);
        if burst % 10 == 0 {
            std::thread::sleep(Duration::from_millis(30)); // The shape of the load, not a wait.
        }
    }
    append(&log, &pending);

    let delivered = read_back(&runtime, &server, "bursts", expected.len());
    assert_eq!(delivered.len(), expected.len(), "records delivered");
    let first_difference = delivered
        .iter()
        .zip(&expected)
        .position(|(got, want)| got != want);
    assert_eq!(
        first_difference, None,
        "records differ from the file's lines"
    );
    agent.signal("TERM");
    assert!(
        agent.wait_exit(EXIT_DEADLINE).success(),
        "{}",
        agent.output()
    );
}

/// A 200,000-line file being shipped to `stream`, with an agent stopped by `signal` once a
/// tenth of it was delivered; the stop must land mid-file for the test to mean anything.
struct StoppedMidFile {
    server: Kinesalite,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    expected: Vec<Vec<u8>>,
    size: u64,
    config: std::path::PathBuf,
    first_run: Agent,
}

fn stop_mid_file(stream: &str, signal: &str) -> StoppedMidFile {
    let (server, dir, runtime) = setup(stream);
    let log = dir.path().join("app.log");
    let expected = lines(0..200_000);
    append(&log, &expected.concat());
    let size = std::fs::metadata(&log).expect("stat").len();
    let config = write_config(
        dir.path(),
        &server.endpoint,
        stream,
        &log.display().to_string(),
        &["max_in_flight: 1", "initial_position: start_of_file"],
        &["checkpoint_interval: 100ms"],
    );
    let mut first_run = Agent::start(&config, dir.path());
    wait_for_progress(dir.path(), &mut first_run, size / 10);
    first_run.signal(signal);
    let status = first_run.wait_exit(EXIT_DEADLINE);
    if signal == "TERM" {
        assert!(status.success(), "exit {status}:\n{}", first_run.output());
    }
    let stopped_at = saved_offset(dir.path()).expect("a checkpoint was saved");
    assert!(
        stopped_at < size,
        "the stop must land mid-file for this test to mean anything"
    );
    StoppedMidFile {
        server,
        dir,
        runtime,
        expected,
        size,
        config,
        first_run,
    }
}

/// How long the restart tests wait for the whole file to arrive: a restarted agent re-reads and
/// re-sends on a machine that may be loaded; reading stops as soon as everything is there.
const RESTART_READ_DEADLINE: Duration = Duration::from_secs(240);

#[test]
fn sigterm_mid_file_then_restart_delivers_every_line_once() {
    let StoppedMidFile {
        server,
        dir,
        runtime,
        expected,
        size,
        config,
        first_run,
    } = stop_mid_file("term", "TERM");
    assert!(
        first_run.output().contains("Stopped."),
        "{}",
        first_run.output()
    );

    let mut agent = Agent::start(&config, dir.path());
    let delivered = read_back_within(
        &runtime,
        &server,
        "term",
        expected.len(),
        RESTART_READ_DEADLINE,
    );
    assert_eq!(
        delivered.len(),
        expected.len(),
        "every line once, no duplicates: {} records read back within {RESTART_READ_DEADLINE:?} for {} lines written:\n{}",
        delivered.len(),
        expected.len(),
        agent.output()
    );
    assert!(
        delivered == expected,
        "records differ from the file's lines"
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    assert_eq!(saved_offset(dir.path()), Some(size));
}

#[test]
fn sigkill_mid_file_then_restart_loses_nothing_and_repeats_little() {
    let StoppedMidFile {
        server,
        dir,
        runtime,
        expected,
        config,
        ..
    } = stop_mid_file("kill", "KILL");

    let mut agent = Agent::start(&config, dir.path());
    // Everything arrives; the records between the last checkpoint and the kill arrive twice.
    let mut delivered = Vec::new();
    // `read_back` waits on its own; the next read starts at once.
    wait::poll_every(Duration::ZERO, RESTART_READ_DEADLINE, || {
        delivered = read_back(&runtime, &server, "kill", expected.len());
        let covered = delivered.last() == expected.last() && delivered.len() >= expected.len();
        covered.then_some(())
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());

    assert!(
        delivered.len() >= expected.len() && delivered.last() == expected.last(),
        "after {RESTART_READ_DEADLINE:?}, {} records read back for {} lines written (last one {}):\n{}",
        delivered.len(),
        expected.len(),
        if delivered.last() == expected.last() {
            "the file's last line"
        } else {
            "not the file's last line"
        },
        agent.output()
    );
    // The stream holds the file's lines in order, with one contiguous stretch sent twice: the
    // lines delivered after the last checkpoint and before the kill.
    let duplicates = delivered.len() - expected.len();
    let restart = (0..delivered.len())
        .find(|&index| index >= expected.len() || delivered[index] != expected[index])
        .unwrap_or(delivered.len());
    assert!(
        restart >= duplicates,
        "{duplicates} records sent twice, but the stream departs from the file at record {restart}"
    );
    let resent_from = restart - duplicates;
    assert_eq!(
        &delivered[..restart],
        &expected[..restart],
        "first run in order"
    );
    assert_eq!(
        &delivered[restart..],
        &expected[resent_from..],
        "second run resumes from the checkpoint"
    );
    // At most what one checkpoint interval and the in-flight call can hold at this server's pace.
    assert!(duplicates <= 5_000, "{duplicates} duplicates");
}

#[test]
fn a_missing_stream_is_reported_and_lines_flow_once_it_exists() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = Kinesalite::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    append(&log, &lines(0..100).concat());
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "late",
        &log.display().to_string(),
        &[
            "initial_position: start_of_file",
            "retry_max_backoff: 500ms",
            "retry_initial_backoff: 50ms",
        ],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("ERROR", EXIT_DEADLINE);
    let error_line = output
        .lines()
        .find(|line| line.contains("ERROR"))
        .unwrap_or_default()
        .to_owned();
    assert!(error_line.contains("flow=app"), "{error_line}");
    assert!(
        error_line.contains("destination=Kinesis stream `late`"),
        "{error_line}"
    );
    assert!(
        error_line.contains("stream `late` was not found in region us-east-1"),
        "{error_line}"
    );
    assert!(
        error_line.contains("check kinesis_stream and aws.region"),
        "{error_line}"
    );

    let delivered = runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::create_stream(&client, "late", 1).await;
        kinesalite::read_all(&client, "late", 100, READ_DEADLINE)
            .await
            .into_iter()
            .map(|record| record.data)
            .collect::<Vec<_>>()
    });
    assert_eq!(delivered, lines(0..100));
    agent.wait_for_log("The start-up check passes now.", EXIT_DEADLINE);
    agent.wait_for_log("Destination found.", EXIT_DEADLINE);
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
}

/// A ten-line log and a config for stream `gone` at a loopback port nothing listens on.
fn ten_lines_for_a_closed_port(
    flow: &[&str],
    top: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    append(&log, &lines(0..10).concat());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = write_config(
        dir.path(),
        &endpoint,
        "gone",
        &log.display().to_string(),
        flow,
        top,
    );
    (dir, config)
}

#[test]
fn an_unreachable_endpoint_is_reported_and_nothing_is_lost() {
    let (dir, config) = ten_lines_for_a_closed_port(
        &["initial_position: start_of_file"],
        &["shutdown_grace: 1s"],
    );
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("cannot reach the endpoint", EXIT_DEADLINE);
    let error_line = output
        .lines()
        .find(|line| line.contains("cannot reach the endpoint"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        error_line.contains("ERROR")
            && error_line.contains("flow=app")
            && error_line.contains("destination=Kinesis stream `gone`"),
        "{error_line}"
    );
    // The check fails before the file is read; the lines are in hand once a send has failed.
    agent.wait_for_log("Cannot deliver records", EXIT_DEADLINE);
    agent.signal("TERM");
    let status = agent.wait_exit(EXIT_DEADLINE);
    assert!(status.success(), "{}", agent.output());
    assert!(
        agent.output().contains("grace period ended"),
        "{}",
        agent.output()
    );
    // Nothing was acknowledged, so the checkpoint still points at the start.
    assert_eq!(saved_offset(dir.path()), Some(0));
}

#[test]
fn missing_credentials_are_reported_clearly() {
    let server = Kinesalite::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("app.log");
    append(&log, &lines(0..10).concat());
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "creds",
        &log.display().to_string(),
        &["initial_position: start_of_file"],
        &["shutdown_grace: 1s"],
    );
    let mut command = std::process::Command::new(crate::support::agent::BINARY);
    command.args(["run", "--config"]).arg(&config);
    kinesalite::apply_agent_env(&mut command);
    command
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let log_path = dir.path().join("agent.log");
    command
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .stdout(std::process::Stdio::null());
    let mut child = command.spawn().expect("start kinship");
    wait::holds_within(EXIT_DEADLINE, || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("ERROR")
    });
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let error_line = output
        .lines()
        .find(|line| line.contains("ERROR"))
        .unwrap_or_default();
    assert!(error_line.contains("no usable AWS credentials"), "{output}");
    assert!(
        error_line.contains("flow=app")
            && error_line.contains("destination=Kinesis stream `creds`"),
        "{error_line}"
    );
}

#[test]
fn a_file_deleted_while_followed_is_read_to_its_end_and_released() {
    let (server, dir, runtime) = setup("deleted");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "deleted",
        &dir.path().join("app*.log").display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 100ms",
            "scan_interval: 500ms",
            "poll_interval: 50ms",
        ],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("kinship is running.", EXIT_DEADLINE);
    let expected = lines(0..3000);
    append(&log, &expected[..1000].concat());
    agent.wait_for_log("Following file.", EXIT_DEADLINE);
    // Keep a handle open as a writer would, delete the name, and go on writing (at once: the
    // file is released once idle at its end for scan_interval).
    let rest = expected[1000..].concat();
    let mut writer = OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open writer");
    std::fs::remove_file(&log).expect("delete");
    writer.write_all(&rest).expect("write after delete");
    drop(writer);
    let output = agent.wait_for_log(
        "File was deleted and is read to its end; releasing it.",
        EXIT_DEADLINE,
    );
    assert!(output.contains("app.log"), "{output}");
    let delivered = read_back(&runtime, &server, "deleted", expected.len());
    assert!(
        delivered == expected,
        "{} of {} lines, in order:\n{}",
        delivered.len(),
        expected.len(),
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    // A deleted file's checkpoint is forgotten once it was delivered to its end.
    let saved =
        std::fs::read_to_string(dir.path().join("state/checkpoints.json")).expect("checkpoints");
    assert!(!saved.contains("app.log"), "{saved}");
}

#[test]
fn a_second_signal_exits_at_once_and_loses_nothing_acknowledged() {
    // A long grace period: only the second signal can end this shutdown quickly.
    let (dir, config) = ten_lines_for_a_closed_port(
        &["initial_position: start_of_file", "max_batch_age: 50ms"],
        &["shutdown_grace: 1h"],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("Cannot deliver records", EXIT_DEADLINE);
    agent.signal("TERM");
    agent.wait_for_log("Shutting down", EXIT_DEADLINE);
    agent.signal("INT");
    let status = agent.wait_exit(EXIT_DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", agent.output());
    assert!(
        agent.output().contains("Second signal: exiting now"),
        "{}",
        agent.output()
    );
    assert_eq!(
        saved_offset(dir.path()).unwrap_or(0),
        0,
        "nothing was acknowledged, so nothing is skipped next time"
    );
}

#[test]
fn a_file_replaced_under_the_same_inode_while_stopped_is_read_from_its_start() {
    let (server, dir, runtime) = setup("replaced");
    let log = dir.path().join("app.log");
    let old_lines = lines(0..1000);
    append(&log, &old_lines.concat());
    let size = std::fs::metadata(&log).expect("stat").len();
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "replaced",
        &log.display().to_string(),
        &["initial_position: start_of_file", "max_in_flight: 1"],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    wait_for_progress(dir.path(), &mut agent, size);
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());

    // The same inode now holds another, longer file: truncate and rewrite in place.
    let new_lines: Vec<Vec<u8>> = (0..3000)
        .map(|index| format!("replacement line {index}, longer than the lines it replaces, so the new file outgrows the old checkpoint\n").into_bytes())
        .collect();
    std::fs::write(&log, new_lines.concat()).expect("rewrite in place");
    assert!(std::fs::metadata(&log).expect("stat").len() > size);

    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log(
        "does not start as the file its device and inode belonged to",
        EXIT_DEADLINE,
    );
    let expected: Vec<Vec<u8>> = old_lines.into_iter().chain(new_lines).collect();
    let delivered = read_back(&runtime, &server, "replaced", expected.len());
    assert!(
        delivered == expected,
        "{} of {} lines:\n{}",
        delivered.len(),
        expected.len(),
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
}

#[test]
fn spread_explicit_hash_keys_share_records_evenly_over_the_shards() {
    let stream = "spread";
    let (server, dir, runtime) = setup_with_shards(stream, 4);
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    let log = dir.path().join("logs/app.log");
    let written: Vec<Vec<u8>> = (0..400)
        .map(|index| format!("line {index}\n").into_bytes())
        .collect();
    append(&log, &written.concat());
    // One fixed partition key would put every record on one shard.
    let config = write_config(
        dir.path(),
        &server.endpoint,
        stream,
        &dir.path().join("logs/*.log").display().to_string(),
        &[
            "initial_position: start_of_file",
            "partition_key: same-key",
            "explicit_hash_key: spread",
        ],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    let records = runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::read_all(&client, stream, written.len(), READ_DEADLINE).await
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(EXIT_DEADLINE).success());
    let mut data: Vec<Vec<u8>> = records.iter().map(|record| record.data.clone()).collect();
    data.sort();
    let mut expected = written.clone();
    expected.sort();
    assert_eq!(data, expected, "{}", agent.output());
    let mut per_shard = std::collections::BTreeMap::<&str, usize>::new();
    for record in &records {
        assert_eq!(record.partition_key, "same-key");
        *per_shard.entry(record.shard_id.as_str()).or_default() += 1;
    }
    assert_eq!(per_shard.len(), 4, "{per_shard:?}");
    assert!(
        per_shard.values().all(|&count| (95..=105).contains(&count)),
        "{per_shard:?}"
    );
}
