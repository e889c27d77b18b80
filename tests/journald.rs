//! The journald source with the real binary and a real `journalctl`: journal files written by
//! `systemd-journal-remote` (see `support::journal`), shipped to kinesalite. Every entry once,
//! filters applied, entries appended while running, a crash re-sending only what was in
//! flight, bytes and long entries as documented, and its failures told with the flow's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::Agent;
use crate::support::config::{AgentConfig, Flow};
use crate::support::files::agent_user_held_by_permissions;
use crate::support::journal::{self, Entry};
use crate::support::kinesalite::{self, Kinesalite};
use crate::support::stream::{read_back, read_back_within, setup};
use crate::support::wait::wait_for;

const DEADLINE: Duration = Duration::from_secs(120);
const STREAM: &str = "journal";
const UNITS: [&str; 3] = ["nginx.service", "sshd.service", "cron.service"];
const FIRST_REALTIME_US: u64 = 1_700_000_000_000_000;

/// Entries `from..to`, cycling through the units and the eight priorities.
fn entries(from: usize, to: usize) -> Vec<Entry> {
    (from..to)
        .map(|n| {
            let priority = u8::try_from(n % 8).expect("priority");
            Entry::new(
                &format!("entry {n}"),
                UNITS[n % UNITS.len()],
                priority,
                FIRST_REALTIME_US + n as u64 * 1000,
            )
        })
        .collect()
}

/// A journal directory with `entries` in one journal file; returns the directory and the file.
fn journal_with(dir: &Path, entries: &[Entry]) -> (PathBuf, PathBuf) {
    let directory = dir.join("journal");
    std::fs::create_dir_all(&directory).expect("journal dir");
    let file = directory.join("remote.journal");
    journal::write(&file, entries);
    (directory, file)
}

/// Creates a second one-shard stream on `server`.
fn another_stream(runtime: &tokio::runtime::Runtime, server: &Kinesalite, name: &str) {
    runtime.block_on(async {
        let client = kinesalite::client(&server.endpoint).await;
        kinesalite::create_stream(&client, name, 1).await;
    });
}

fn config(dir: &Path, server: &Kinesalite, flows: Vec<Flow>) -> PathBuf {
    flows
        .into_iter()
        .fold(
            AgentConfig::new(dir)
                .emulator(kinesalite::REGION, &server.endpoint)
                .top("progress_interval: 1s"),
            |config, flow| config.flow(flow.keys(&["max_batch_age: 100ms"])),
        )
        .write()
}

fn as_json(record: &[u8]) -> serde_json::Value {
    serde_json::from_slice(record).unwrap_or_else(|error| panic!("not JSON ({error}): {record:?}"))
}

/// How many times each entry number (from its MESSAGE, `entry N`) is in `records`.
fn entry_numbers(records: &[Vec<u8>]) -> BTreeMap<usize, usize> {
    let mut numbers = BTreeMap::new();
    for record in records {
        let entry = as_json(record);
        let message = entry["MESSAGE"].as_str().expect("MESSAGE");
        let number = message
            .strip_prefix("entry ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected entry {entry}"));
        *numbers.entry(number).or_insert(0) += 1;
    }
    numbers
}

fn each_once(numbers: &BTreeMap<usize, usize>, expected: impl Iterator<Item = usize>) {
    let expected: std::collections::BTreeSet<usize> = expected.collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|n| !numbers.contains_key(n))
        .collect();
    let unexpected: Vec<_> = numbers.keys().filter(|n| !expected.contains(n)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing {} (first {:?}), unexpected {} (first {:?})",
        missing.len(),
        missing.first(),
        unexpected.len(),
        unexpected.first()
    );
    let again: Vec<_> = numbers.iter().filter(|(_, times)| **times != 1).collect();
    assert!(again.is_empty(), "sent more than once: {again:?}");
}

/// Whether entry `n` passes the filtered flow's filters: nginx or sshd, warning or more urgent.
fn passes_filters(n: usize) -> bool {
    n % UNITS.len() < 2 && n % 8 <= 4
}

#[test]
fn ten_thousand_entries_are_shipped_once_filters_select_and_new_entries_arrive() {
    let (server, dir, runtime) = setup(STREAM);
    another_stream(&runtime, &server, "filtered");
    let (directory, file) = journal_with(dir.path(), &entries(0, 10_000));
    let config = config(
        dir.path(),
        &server,
        vec![
            Flow::journald("all", directory.display(), "", STREAM)
                .key("initial_position: start_of_file"),
            Flow::journald(
                "filtered",
                directory.display(),
                ", units: [nginx.service, sshd.service], max_priority: warning",
                "filtered",
            )
            .key("initial_position: start_of_file"),
        ],
    );
    let mut agent = Agent::start(&config, dir.path());
    let all = read_back(&runtime, &server, STREAM, 10_000);
    each_once(&entry_numbers(&all), 0..10_000);
    let filtered_count = (0..10_000).filter(|n| passes_filters(*n)).count();
    let filtered = read_back(&runtime, &server, "filtered", filtered_count);
    each_once(
        &entry_numbers(&filtered),
        (0..10_000).filter(|n| passes_filters(*n)),
    );

    // The record is the entry: its fields, its time as RFC 3339.
    let first = as_json(&all[0]);
    assert_eq!(first["MESSAGE"], "entry 0");
    assert_eq!(first["_SYSTEMD_UNIT"], "nginx.service");
    assert_eq!(first["SYSLOG_IDENTIFIER"], "nginx");
    assert_eq!(first["PRIORITY"], "0");
    assert_eq!(first["_HOSTNAME"], "web-1");
    assert_eq!(first["__REALTIME_TIMESTAMP"], "2023-11-14T22:13:20.000000Z");
    assert!(first["__CURSOR"]
        .as_str()
        .is_some_and(|c| c.contains("i=1;")));

    // Entries written while the agent runs arrive too.
    journal::write(&file, &entries(10_000, 10_100));
    let all = read_back(&runtime, &server, STREAM, 10_100);
    each_once(&entry_numbers(&all), 0..10_100);
    let filtered_count = (0..10_100).filter(|n| passes_filters(*n)).count();
    let filtered = read_back(&runtime, &server, "filtered", filtered_count);
    each_once(
        &entry_numbers(&filtered),
        (0..10_100).filter(|n| passes_filters(*n)),
    );
    // The progress line counts entries as it counts lines, and every entry read is delivered.
    let both = (10_100 + filtered_count) as u64;
    wait_for("the progress line to count every entry", DEADLINE, || {
        let output = agent.output();
        let last = output
            .lines()
            .rev()
            .find(|line| line.contains("Progress."))?;
        (agent.progress("records_parsed") == Some(both)
            && agent.progress("records_sent") == Some(both)
            && last.contains("bytes_behind=all=0,filtered=0"))
        .then_some(())
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

/// The sequence number in a journal cursor (its `i=` part, hexadecimal).
fn seqnum(cursor: &str) -> u64 {
    cursor
        .split(';')
        .find_map(|part| part.strip_prefix("i="))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no seqnum in {cursor}"))
}

/// The cursor the checkpoint store saved for the flow.
fn saved_cursor(dir: &Path) -> Option<String> {
    let saved = kinship::checkpoint::read_saved(&dir.join("state")).ok()?;
    saved.into_iter().find_map(|checkpoint| checkpoint.cursor)
}

#[test]
fn a_crash_resends_only_entries_after_the_saved_cursor() {
    let (server, dir, runtime) = setup(STREAM);
    let (directory, _) = journal_with(dir.path(), &entries(0, 5_000));
    let config = config(
        dir.path(),
        &server,
        vec![
            Flow::journald("system", directory.display(), "", STREAM).keys(&[
                "initial_position: start_of_file",
                "max_batch_records: 20",
                "max_in_flight: 1",
            ]),
        ],
    );
    let mut agent = Agent::start(&config, dir.path());
    wait_for("some entries to arrive", DEADLINE, || {
        let arrived = read_back_within(&runtime, &server, STREAM, 0, Duration::ZERO).len();
        (arrived >= 1_000).then_some(arrived)
    });
    agent.signal("KILL");
    let _ = agent.wait_exit(DEADLINE);
    let saved = saved_cursor(dir.path()).expect("a cursor was saved before the kill");
    let saved_seqnum = seqnum(&saved);
    // Killed part-way: the restart has entries left to send.
    assert!(
        saved_seqnum < 5_000,
        "every entry was delivered before the kill"
    );

    let mut again = Agent::start(&config, dir.path());
    let output = again.wait_for_log("Following the journal.", DEADLINE);
    assert!(output.contains(&saved), "resumes after {saved}: {output}");
    // Some entries arrive twice: wait for every one, not for a count of records.
    let numbers = wait_for("every entry to arrive", DEADLINE, || {
        let records = read_back_within(&runtime, &server, STREAM, 0, Duration::ZERO);
        let numbers = entry_numbers(&records);
        (numbers.len() == 5_000).then_some(numbers)
    });
    assert_eq!(numbers.keys().next_back(), Some(&4_999));
    // Entry n has seqnum n + 1: only entries after the saved cursor were sent twice.
    let again_sent: Vec<usize> = numbers
        .iter()
        .filter(|(_, times)| **times > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        again_sent.iter().all(|n| *n as u64 + 1 > saved_seqnum),
        "saved seqnum {saved_seqnum}, sent again: {again_sent:?}"
    );
    assert!(
        numbers.values().all(|times| *times <= 2),
        "an entry arrived three times"
    );
    again.signal("TERM");
    assert!(again.wait_exit(DEADLINE).success(), "{}", again.output());
}

#[test]
fn bytes_are_base64_and_a_long_entry_is_cut_to_the_record_limit() {
    let (server, dir, runtime) = setup(STREAM);
    let long_message = "x".repeat(20_000);
    let written = vec![
        Entry::new("entry 0", "app.service", 6, FIRST_REALTIME_US)
            .bytes_field("DUMP", &[0, 1, 2, 0xff, b'\n']),
        Entry::new(&long_message, "app.service", 6, FIRST_REALTIME_US + 1),
        Entry::new("entry 2", "app.service", 6, FIRST_REALTIME_US + 2)
            .field("NOTE", "line one\nline two"),
    ];
    let (directory, _) = journal_with(dir.path(), &written);
    let config = config(
        dir.path(),
        &server,
        vec![Flow::journald("app", directory.display(), "", STREAM)
            .keys(&["initial_position: start_of_file", "max_record_bytes: 4096"])],
    );
    let mut agent = Agent::start(&config, dir.path());
    let records = read_back(&runtime, &server, STREAM, 3);
    assert_eq!(records.len(), 3);
    let binary = as_json(&records[0]);
    assert_eq!(binary["DUMP"], "AAEC/wo=");
    assert_eq!(binary["base64_fields"], serde_json::json!(["DUMP"]));
    let cut = as_json(&records[1]);
    assert!(records[1].len() <= 4096, "{} bytes", records[1].len());
    let message = cut["MESSAGE"].as_str().expect("MESSAGE");
    assert!(message.len() > 1000 && long_message.starts_with(message));
    assert_eq!(cut["truncated_fields"], serde_json::json!(["MESSAGE"]));
    let multiline = as_json(&records[2]);
    assert_eq!(multiline["NOTE"], "line one\nline two");
    assert!(multiline.get("base64_fields").is_none(), "{multiline}");
    let output = agent.wait_for_log("cut, named in truncated_fields", DEADLINE);
    assert!(output.contains("flow=\"app\""), "{output}");
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn end_of_file_ships_only_new_entries_even_after_a_restart_before_any() {
    let (server, dir, runtime) = setup(STREAM);
    another_stream(&runtime, &server, "cron");
    // The last entry now is sshd's: the filtered flow starts at an entry it does not take.
    let (directory, file) = journal_with(dir.path(), &entries(0, 50));
    let config = config(
        dir.path(),
        &server,
        vec![
            Flow::journald("system", directory.display(), "", STREAM),
            Flow::journald("cron", directory.display(), ", units: cron.service", "cron"),
        ],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("Following the journal.", DEADLINE);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    // Written while the agent is stopped: they are new all the same.
    journal::write(&file, &entries(50, 55));
    let mut again = Agent::start(&config, dir.path());
    let records = read_back(&runtime, &server, STREAM, 5);
    each_once(&entry_numbers(&records), 50..55);
    // Of the new entries, 50 and 53 are cron's; 50 comes right after the saved cursor's
    // entry, which the filter leaves out.
    let cron = read_back(&runtime, &server, "cron", 2);
    each_once(&entry_numbers(&cron), [50, 53].into_iter());
    again.signal("TERM");
    assert!(again.wait_exit(DEADLINE).success(), "{}", again.output());
    assert_eq!(
        read_back_within(&runtime, &server, STREAM, 0, Duration::ZERO).len(),
        5
    );
    assert_eq!(
        read_back_within(&runtime, &server, "cron", 0, Duration::ZERO).len(),
        2
    );
}

#[test]
fn a_missing_journalctl_and_an_unreadable_journal_are_told_with_the_flow() {
    let (server, dir, _runtime) = setup(STREAM);
    let (directory, _) = journal_with(dir.path(), &entries(0, 3));
    let missing = config(
        dir.path(),
        &server,
        vec![Flow::journald(
            "system",
            directory.display(),
            ", journalctl: /nonexistent/journalctl",
            STREAM,
        )],
    );
    let mut agent = Agent::start(&missing, dir.path());
    let output = agent.wait_for_log("Following the journal stopped", DEADLINE);
    assert!(
        output.contains("flow=\"system\"")
            && output.contains("/nonexistent/journalctl")
            && output.contains("was not found"),
        "{output}"
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());

    // A journal the agent's user may not read: journalctl's own words, with the flow's name.
    let Some(uid) = agent_user_held_by_permissions(dir.path()) else {
        eprintln!("not run as root: the unreadable journal is not tried (the journal written here is the agent's own)");
        return;
    };
    std::fs::remove_dir_all(dir.path().join("state")).expect("fresh state");
    let _ = agent_user_held_by_permissions(dir.path());
    let unreadable = config(
        dir.path(),
        &server,
        vec![Flow::journald("system", directory.display(), "", STREAM)],
    );
    let mut agent = Agent::start_as(&unreadable, dir.path(), Some(uid));
    // journalctl's words, as a WARN of their own and in the ERROR that it stopped.
    let output = agent.wait_for_log("journalctl reports a problem", DEADLINE);
    assert!(output.contains("flow=\"system\""), "{output}");
    let output = agent.wait_for_log("Following the journal stopped", DEADLINE);
    assert!(output.contains("insufficient permissions"), "{output}");
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn a_journalctl_that_dies_is_started_again_after_the_last_entry_read() {
    let (server, dir, runtime) = setup(STREAM);
    let (directory, file) = journal_with(dir.path(), &entries(0, 100));
    let config = config(
        dir.path(),
        &server,
        vec![Flow::journald("system", directory.display(), "", STREAM)
            .key("initial_position: start_of_file")],
    );
    let mut agent = Agent::start(&config, dir.path());
    each_once(
        &entry_numbers(&read_back(&runtime, &server, STREAM, 100)),
        0..100,
    );
    let children = std::process::Command::new("pkill")
        .args(["-KILL", "-x", "-P", &agent.pid().to_string(), "journalctl"])
        .status()
        .expect("pkill");
    assert!(children.success(), "no journalctl child to kill");
    agent.wait_for_log("Following the journal stopped", DEADLINE);
    journal::write(&file, &entries(100, 150));
    each_once(
        &entry_numbers(&read_back(&runtime, &server, STREAM, 150)),
        0..150,
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert_eq!(
        read_back_within(&runtime, &server, STREAM, 0, Duration::ZERO).len(),
        150
    );
}

#[test]
fn a_journalctl_that_appears_later_still_starts_at_the_end() {
    let (server, dir, runtime) = setup(STREAM);
    let (directory, file) = journal_with(dir.path(), &entries(0, 50));
    let program = dir.path().join("bin").join("journalctl");
    let config = config(
        dir.path(),
        &server,
        vec![Flow::journald(
            "system",
            directory.display(),
            &format!(", journalctl: {}", program.display()),
            STREAM,
        )],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("was not found", DEADLINE);
    std::fs::create_dir_all(program.parent().expect("bin")).expect("bin dir");
    std::os::unix::fs::symlink(which_journalctl(), &program).expect("symlink");
    agent.wait_for_log("Following the journal.", DEADLINE);
    journal::write(&file, &entries(50, 55));
    let records = read_back(&runtime, &server, STREAM, 5);
    each_once(&entry_numbers(&records), 50..55);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert_eq!(
        read_back_within(&runtime, &server, STREAM, 0, Duration::ZERO).len(),
        5
    );
}

/// The machine's journalctl, from `PATH`.
fn which_journalctl() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("journalctl"))
        .find(|candidate| candidate.is_file())
        .expect("journalctl on PATH")
}
