//! Tailing with the real binary, real files and kinesalite: partial and multi-line records,
//! headers and footers, over-size lines, binary files, globs, unreadable files, the open-file
//! budget, copytruncate with the copy followed, rapid rotations, checkpoint expiry and
//! starting at the end of the files present at start.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::support::agent::{write_config, Agent};
use crate::support::config::{AgentConfig, Flow};
use crate::support::files::{append, open_log};
use crate::support::kinesalite;
use crate::support::stream::{read_back, setup, READ_DEADLINE};
use crate::support::wait;

const DEADLINE: Duration = Duration::from_secs(60);

fn text(records: &[Vec<u8>]) -> Vec<String> {
    records
        .iter()
        .map(|record| String::from_utf8_lossy(record).into_owned())
        .collect()
}

/// Flow keys that make the agent quick to notice things in tests.
const QUICK: &[&str] = &[
    "initial_position: start_of_file",
    "max_in_flight: 1",
    "max_batch_age: 50ms",
    "poll_interval: 50ms",
    "scan_interval: 200ms",
];

fn with_quick<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    QUICK.iter().copied().chain(extra.iter().copied()).collect()
}

/// Polls `condition` until it holds, or fails with `what` and the agent's log.
fn wait_until(agent: &Agent, what: &str, condition: impl FnMut() -> bool) {
    wait::wait_until_showing(what, DEADLINE, condition, || agent.output());
}

fn stop(mut agent: Agent) {
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn a_last_line_without_newline_is_sent_once_its_file_is_idle() {
    let (server, dir, runtime) = setup("partial");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "partial",
        &log.display().to_string(),
        &with_quick(&["partial_line_timeout: 300ms"]),
        &[],
    );
    append(&log, b"first\nsecond, still being written");
    let agent = Agent::start(&config, dir.path());
    let delivered = read_back(&runtime, &server, "partial", 2);
    assert_eq!(
        text(&delivered),
        vec!["first\n", "second, still being written"],
        "{}",
        agent.output()
    );
    // What is written after it is a record of its own.
    append(&log, b" and finished\n");
    let delivered = read_back(&runtime, &server, "partial", 3);
    assert_eq!(text(&delivered[2..]), vec![" and finished\n"]);
    stop(agent);
}

#[test]
fn the_unterminated_last_line_of_a_rotated_file_is_sent_when_it_is_released() {
    let (server, dir, runtime) = setup("released");
    let log = dir.path().join("app.log");
    // A partial line would wait an hour here; rotation must not wait for it.
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "released",
        &log.display().to_string(),
        &with_quick(&["partial_line_timeout: 1h"]),
        &[],
    );
    let agent = Agent::start(&config, dir.path());
    append(&log, b"one\ntwo\nlast line of the day");
    let delivered = read_back(&runtime, &server, "released", 2);
    assert_eq!(text(&delivered), vec!["one\n", "two\n"]);
    fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, b"new file\n");
    let mut delivered = text(&read_back(&runtime, &server, "released", 4));
    delivered.sort();
    assert_eq!(
        delivered,
        vec!["last line of the day", "new file\n", "one\n", "two\n"],
        "{}",
        agent.output()
    );
    stop(agent);
}

#[test]
fn multi_line_records_run_from_one_start_line_to_the_next() {
    let (server, dir, runtime) = setup("multiline");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "multiline",
        &log.display().to_string(),
        &with_quick(&[
            r"multiline_start_pattern: '^\d{4}-\d{2}-\d{2} '",
            "multiline_flush_timeout: 300ms",
        ]),
        &[],
    );
    let agent = Agent::start(&config, dir.path());
    let trace = "2026-11-23 ERROR request failed\n\
                 java.lang.IllegalStateException: boom\n\
                 \tat com.example.Handler.run(Handler.java:42)\n\
                 \tat java.base/java.lang.Thread.run(Thread.java:1583)\n";
    // Written in pieces, as a logger flushes: the record must still come out whole.
    let (first, rest) = trace.split_at(50);
    append(&log, first.as_bytes());
    append(&log, rest.as_bytes());
    append(&log, b"2026-11-23 INFO next request\n");
    // The last record has no next start line: it goes after the flush timeout.
    let delivered = read_back(&runtime, &server, "multiline", 2);
    assert_eq!(
        text(&delivered),
        vec![trace, "2026-11-23 INFO next request\n"],
        "{}",
        agent.output()
    );
    stop(agent);
}

#[test]
fn header_lines_are_skipped_and_nothing_after_the_footer_is_sent() {
    let (server, dir, runtime) = setup("framed");
    let log = dir.path().join("report.csv");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "framed",
        &log.display().to_string(),
        &with_quick(&["skip_header_lines: 2", "file_footer_pattern: '^#END'"]),
        &["checkpoint_interval: 100ms"],
    );
    let content = b"#version 2\nid,name\n1,alpha\n2,beta\n#END of report\n3,after the footer\n";
    append(&log, content);
    let agent = Agent::start(&config, dir.path());
    wait_until(&agent, "the whole file acknowledged", || {
        crate::support::agent::saved_offset(dir.path()) == Some(content.len() as u64)
    });
    let delivered = read_back(&runtime, &server, "framed", 2);
    assert_eq!(text(&delivered), vec!["1,alpha\n", "2,beta\n"]);
    assert!(agent.output().contains("Found the file's footer line"));
    stop(agent);
}

#[test]
fn over_size_lines_are_split_or_skipped_as_configured() {
    let server = kinesalite::Kinesalite::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::create_stream(&client, "split", 1).await;
        kinesalite::create_stream(&client, "skip", 1).await;
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let flow = |name: &str| {
        Flow::kinesis(name, dir.path().join(format!("{name}.log")).display(), name)
            .keys(&[
                "initial_position: start_of_file",
                "max_in_flight: 1",
                "max_batch_age: 50ms",
                "partition_key: k",
                "max_record_bytes: 1024",
            ])
            .key(format!("oversize_records: {name}"))
    };
    let config = AgentConfig::new(dir.path())
        .emulator(kinesalite::REGION, &server.endpoint)
        .flow(flow("split"))
        .flow(flow("skip"))
        .write();
    // The limit for a line beside a one-character key is 1,023 bytes.
    let long: Vec<u8> = (0..3000u32)
        .map(|i| b'a' + (i % 26) as u8)
        .chain([b'\n'])
        .collect();
    for name in ["split", "skip"] {
        let path = dir.path().join(format!("{name}.log"));
        append(&path, b"before\n");
        append(&path, &long);
        append(&path, b"after\n");
    }
    let agent = Agent::start(&config, dir.path());
    let split = runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::read_all(&client, "split", 5, READ_DEADLINE).await
    });
    let split: Vec<Vec<u8>> = split.into_iter().map(|record| record.data).collect();
    assert_eq!(split.len(), 5, "{}", agent.output());
    assert_eq!(split[0], b"before\n");
    assert_eq!(split[1].len(), 1023);
    assert_eq!(split[2].len(), 1023);
    assert_eq!(
        split[1..4].concat(),
        long,
        "the pieces together are the line"
    );
    assert_eq!(split[4], b"after\n");
    let skip = runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::read_all(&client, "skip", 2, READ_DEADLINE).await
    });
    let skip: Vec<Vec<u8>> = skip.into_iter().map(|record| record.data).collect();
    assert_eq!(
        text(&skip),
        vec!["before\n", "after\n"],
        "{}",
        agent.output()
    );
    let output = agent.output();
    assert!(
        output.contains("Records longer than the record limit"),
        "{output}"
    );
    assert!(output.contains("action=\"not sent\""), "{output}");
    stop(agent);
}

#[test]
fn a_binary_file_passes_through_byte_for_byte_and_does_not_stall_the_agent() {
    let (server, dir, runtime) = setup("binary");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "binary",
        &dir.path().join("*.bin").display().to_string(),
        &with_quick(&["partition_key: k", "max_record_bytes: 1024"]),
        &[],
    );
    // Pseudo-random bytes: NULs, invalid UTF-8, CRs, lines of every length, some too long.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut blob: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state.is_multiple_of(700) {
                b'\n'
            } else {
                (state >> 24) as u8
            }
        })
        .collect();
    blob.extend_from_slice(b"\r\n\n\0\n");
    append(&dir.path().join("data.bin"), &blob);
    // Each line, newline included, as its own record; a line over 1,023 bytes is cut to
    // 1,022 bytes and a newline.
    let expected: Vec<Vec<u8>> = blob
        .split_inclusive(|byte| *byte == b'\n')
        .map(|line| {
            if line.len() > 1023 {
                let mut cut = line[..1022].to_vec();
                cut.push(b'\n');
                cut
            } else {
                line.to_vec()
            }
        })
        .collect();
    let agent = Agent::start(&config, dir.path());
    let delivered = read_back(&runtime, &server, "binary", expected.len());
    assert_eq!(delivered.len(), expected.len(), "{}", agent.output());
    assert!(
        delivered == expected,
        "records differ from the file's lines"
    );
    stop(agent);
}

#[test]
fn globs_reach_into_new_directories_and_honour_exclude_and_ignore_older() {
    let (server, dir, runtime) = setup("globs");
    let base = dir.path().join("logs");
    fs::create_dir_all(base.join("a/b")).expect("mkdir");
    fs::create_dir_all(base.join("skip")).expect("mkdir");
    append(&base.join("a/b/nested.log"), b"nested\n");
    append(&base.join("skip/excluded.log"), b"excluded\n");
    let old = base.join("old.log");
    append(&old, b"old line\n");
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(two_days_ago)
        .expect("age the file");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "globs",
        &format!("{}/**/*.log", base.display()),
        &with_quick(&[
            &format!("exclude: '{}/skip/**'", base.display()),
            "ignore_older: 1d",
        ]),
        &[],
    );
    let agent = Agent::start(&config, dir.path());
    let delivered = read_back(&runtime, &server, "globs", 1);
    assert_eq!(text(&delivered), vec!["nested\n"], "{}", agent.output());
    // A directory made after the start, two levels down.
    fs::create_dir_all(base.join("later/deeper")).expect("mkdir");
    append(&base.join("later/deeper/new.log"), b"created later\n");
    let delivered = read_back(&runtime, &server, "globs", 2);
    assert_eq!(text(&delivered[1..]), vec!["created later\n"]);
    // The old file is followed once written again, from where it was when it was skipped.
    append(&old, b"old file written again\n");
    let delivered = read_back(&runtime, &server, "globs", 3);
    assert_eq!(text(&delivered[2..]), vec!["old file written again\n"]);
    // A last line proves nothing else was queued behind them.
    append(&base.join("a/b/nested.log"), b"sentinel\n");
    let delivered = read_back(&runtime, &server, "globs", 4);
    assert_eq!(
        text(&delivered),
        vec![
            "nested\n",
            "created later\n",
            "old file written again\n",
            "sentinel\n"
        ],
        "{}",
        agent.output()
    );
    stop(agent);
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_reported_once_and_read_once_it_is_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let (server, dir, runtime) = setup("denied");
    // Root reads everything: run the agent as "nobody" then.
    let uid = crate::support::files::agent_user_held_by_permissions(dir.path());
    // Apart from the agent's own log, which the test keeps in `dir`.
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("mkdir");
    let secret = logs.join("secret.log");
    let open = logs.join("open.log");
    append(&secret, b"secret line\n");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    append(&open, b"open line\n");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "denied",
        &logs.join("*.log").display().to_string(),
        &with_quick(&[]),
        &[],
    );
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod config");
    let mut agent = Agent::start_as(&config, dir.path(), uid);
    let delivered = read_back(&runtime, &server, "denied", 1);
    assert_eq!(text(&delivered), vec!["open line\n"], "{}", agent.output());
    agent.wait_for_log("Cannot open file", DEADLINE);
    // Several scans pass while the file stays unreadable.
    append(&open, b"open line 2\n");
    let delivered = read_back(&runtime, &server, "denied", 2);
    assert_eq!(delivered.len(), 2);
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut delivered = text(&read_back(&runtime, &server, "denied", 3));
    delivered.sort();
    assert_eq!(
        delivered,
        vec!["open line\n", "open line 2\n", "secret line\n"],
        "{}",
        agent.output()
    );
    let output = agent.output();
    assert_eq!(
        output.matches("Cannot open file").count(),
        1,
        "reported once:\n{output}"
    );
    stop(agent);
}

#[test]
fn more_files_than_max_open_files_take_turns_and_every_line_arrives_once() {
    let (server, dir, runtime) = setup("turns");
    // Apart from the agent's own log, which the test keeps in `dir`.
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("mkdir");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "turns",
        &logs.join("*.log").display().to_string(),
        &with_quick(&[]),
        &["max_open_files: 8"],
    );
    let files = 40;
    let mut expected = Vec::new();
    let mut write_round = |round: usize| {
        for file in 0..files {
            let line = format!("file {file:02} round {round} line\n");
            append(&logs.join(format!("f{file:02}.log")), line.as_bytes());
            expected.push(line);
        }
    };
    for round in 0..5 {
        write_round(round);
    }
    let agent = Agent::start(&config, dir.path());
    let delivered = read_back(&runtime, &server, "turns", files * 5);
    assert_eq!(delivered.len(), files * 5, "{}", agent.output());
    // Idle files give their descriptors back, and are read again when written.
    for round in 5..8 {
        write_round(round);
    }
    let delivered = read_back(&runtime, &server, "turns", files * 8);
    let mut delivered = text(&delivered);
    delivered.sort();
    expected.sort();
    assert_eq!(delivered, expected, "{}", agent.output());
    assert!(agent
        .output()
        .contains("More files match than max_open_files allows open"));
    stop(agent);
}

/// Line `index` for the rotation tests below; the index can be read back.
fn line(index: usize) -> String {
    format!(
        "seq={index:07} GET /copies/{index} HTTP/1.1 200 {}\n",
        index * 17 % 5003
    )
}

fn assert_each_once(delivered: &[Vec<u8>], total: usize, agent: &Agent) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in text(delivered) {
        *seen.entry(record).or_default() += 1;
    }
    let missing: Vec<usize> = (0..total)
        .filter(|&i| !seen.contains_key(&line(i)))
        .collect();
    let repeated: Vec<usize> = (0..total)
        .filter(|&i| seen.get(&line(i)).copied().unwrap_or(0) > 1)
        .collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && delivered.len() == total,
        "{} delivered of {total}; missing {:?}; repeated {:?}\n{}",
        delivered.len(),
        &missing[..missing.len().min(10)],
        &repeated[..repeated.len().min(10)],
        agent.output()
    );
}

fn write_lines(file: &mut File, range: std::ops::Range<usize>) {
    let bytes: String = range.map(line).collect();
    file.write_all(bytes.as_bytes()).expect("write");
}

#[test]
fn copytruncate_with_the_copy_in_the_glob_sends_each_line_once() {
    let (server, dir, runtime) = setup("copies");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "copies",
        &dir.path().join("app.log*").display().to_string(),
        &with_quick(&[]),
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    let mut writer = open_log(&log);
    let per_round = 3000;
    let rounds = 4;
    for round in 0..rounds {
        let start = round * per_round;
        // Written in pieces while the agent reads; then copied and truncated at once, so the
        // lines it had not read yet are found only in the copy.
        for piece in (start..start + per_round).step_by(500) {
            write_lines(&mut writer, piece..piece + 500);
        }
        fs::copy(&log, dir.path().join(format!("app.log.{round}"))).expect("copy");
        writer.set_len(0).expect("truncate");
    }
    let total = rounds * per_round;
    read_back(&runtime, &server, "copies", total);
    // Every copy is looked at (some only after waiting to see whether their file is
    // truncated); only then can a repeat no longer arrive.
    wait_until(&agent, "every copy followed", || {
        let output = agent.output();
        (0..rounds).all(|round| {
            output.contains(&format!(
                "file={}",
                dir.path().join(format!("app.log.{round}")).display()
            ))
        })
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let delivered = read_back(&runtime, &server, "copies", total);
    assert_each_once(&delivered, total, &agent);
}

#[test]
fn rapid_rotations_lose_and_repeat_nothing() {
    let (server, dir, runtime) = setup("rapid");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "rapid",
        &dir.path().join("app.log*").display().to_string(),
        &with_quick(&[]),
        &[],
    );
    let agent = Agent::start(&config, dir.path());
    let mut writer = open_log(&log);
    let rotations = 40;
    let per_file = 250;
    for rotation in 0..rotations {
        let start = rotation * per_file;
        write_lines(&mut writer, start..start + per_file - 10);
        fs::rename(&log, dir.path().join(format!("app.log.{rotation}"))).expect("rotate");
        write_lines(&mut writer, start + per_file - 10..start + per_file);
        writer = open_log(&log);
    }
    let total = rotations * per_file;
    let delivered = read_back(&runtime, &server, "rapid", total);
    assert_each_once(&delivered, total, &agent);
    stop(agent);
}

#[test]
fn checkpoints_of_files_gone_longer_than_the_expiry_are_forgotten() {
    use std::os::unix::fs::MetadataExt;

    let (server, dir, runtime) = setup("expiry");
    let log = dir.path().join("app.log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "expiry",
        &log.display().to_string(),
        &with_quick(&[]),
        &["checkpoint_expiry: 2s", "checkpoint_interval: 100ms"],
    );
    append(&log, b"one\n");
    let mut agent = Agent::start(&config, dir.path());
    read_back(&runtime, &server, "expiry", 1);
    let checkpoints = dir.path().join("state/checkpoints.json");
    // The inodes of the files with a checkpoint.
    let saved_inodes = || -> Vec<u64> {
        fs::read_to_string(&checkpoints)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|value| {
                value["files"].as_array().map(|files| {
                    files
                        .iter()
                        .filter_map(|file| file["inode"].as_u64())
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    let inode = |path: &std::path::Path| fs::metadata(path).expect("metadata").ino();
    let first = inode(&log);
    wait_until(&agent, "the first file's checkpoint", || {
        saved_inodes() == [first]
    });
    // Rotated out of the glob: released, then no scan finds it again.
    fs::rename(&log, dir.path().join("app.log.1")).expect("rotate");
    append(&log, b"two\n");
    let second = inode(&log);
    read_back(&runtime, &server, "expiry", 2);
    // The rotated file's checkpoint lives only a few seconds, so its end, not its brief
    // company, is what is waited for.
    agent.wait_for_log("Forgot the checkpoint of a file", DEADLINE);
    wait_until(&agent, "only the new file's checkpoint", || {
        saved_inodes() == [second]
    });
    stop(agent);
}

#[test]
fn end_of_file_skips_what_is_there_at_start_and_sends_what_is_appended() {
    let (server, dir, runtime) = setup("from-end");
    let log = dir.path().join("app.log");
    // Complete lines, then a line still being written: reading starts after the last
    // complete line, so the unfinished one is sent whole once it ends.
    let present = "old 1\nold 2\nold 3\nunfini";
    append(&log, present.as_bytes());
    let config = AgentConfig::new(dir.path())
        .emulator(kinesalite::REGION, &server.endpoint)
        .top("progress_interval: 1s")
        .flow(
            Flow::kinesis("app", dir.path().join("app*.log").display(), "from-end").keys(&[
                "initial_position: end_of_file",
                "max_in_flight: 1",
                "max_batch_age: 50ms",
                "poll_interval: 50ms",
                "scan_interval: 200ms",
            ]),
        )
        .write();
    let mut agent = Agent::start(&config, dir.path());
    // Appending before the file is opened would make the new lines "present at start" too.
    let opened = agent.wait_for_log("Following file.", DEADLINE);
    let start = "old 1\nold 2\nold 3\n".len();
    let following = opened
        .lines()
        .find(|line| line.contains("Following file."))
        .unwrap_or_default()
        .to_owned();
    assert!(
        following.contains(&format!("offset={start}")),
        "{following}\n{opened}"
    );
    append(&log, b"shed\nnew 1\nnew 2\n");
    let delivered = read_back(&runtime, &server, "from-end", 3);
    assert_eq!(
        text(&delivered),
        vec!["unfinished\n", "new 1\n", "new 2\n"],
        "{}",
        agent.output()
    );
    // A file that appears while kinship runs is read from its start.
    append(&dir.path().join("app-2.log"), b"later 1\nlater 2\n");
    let delivered = read_back(&runtime, &server, "from-end", 5);
    assert_eq!(
        text(&delivered[3..]),
        vec!["later 1\n", "later 2\n"],
        "{}",
        agent.output()
    );
    // Nothing that was there at start ever arrives.
    wait_until(&agent, "the appended lines acknowledged", || {
        agent.progress("records_sent") == Some(5)
    });
    let all = text(&read_back(&runtime, &server, "from-end", 5));
    assert!(
        all.iter().all(|record| !record.starts_with("old")),
        "{all:?}"
    );
    assert_eq!(all.len(), 5, "{all:?}");
    stop(agent);
}
