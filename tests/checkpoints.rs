//! Checkpoints of the real agent: with `checkpoint_commit: group`, each delivery is saved to
//! the journal within milliseconds (not at `checkpoint_interval`), so a SIGKILL once lines are
//! delivered sends none of them again; an `interval` run reads the journal a `group` run left
//! and folds it into `checkpoints.json`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::agent::{saved_offset, write_config, Agent};
use crate::support::fault_kinesis::{delivery_report, FaultKinesis, Faults};
use crate::support::files::open_log;
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(120);
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn write_lines(path: &Path, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    let lines: Vec<Vec<u8>> = range
        .map(|index| format!("{index:08} a line the checkpoint tests write\n").into_bytes())
        .collect();
    let mut file = std::io::BufWriter::new(open_log(path));
    for line in &lines {
        file.write_all(line).expect("write line");
    }
    file.flush().expect("flush");
    lines
}

fn journal_len(dir: &Path) -> u64 {
    fs::metadata(dir.join("state/checkpoints.journal")).map_or(0, |journal| journal.len())
}

#[test]
fn group_commit_saves_deliveries_at_once_and_a_kill_then_sends_none_again() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(dir.path().join("logs")).expect("logs");
    let log = dir.path().join("logs/app.log");
    let files = format!("{}/logs/*", dir.path().display());
    let mut expected = write_lines(&log, 0..2_000);
    let flow = ["initial_position: start_of_file", "max_batch_age: 100ms"];
    // An hour: neither the interval nor a quiet spell can be what saves the checkpoint.
    let config = write_config(
        dir.path(),
        &server.endpoint(),
        "checkpoints",
        &files,
        &flow,
        &["checkpoint_interval: 1h"],
    );
    let mut agent = Agent::start(&config, dir.path());
    let size = fs::metadata(&log).expect("log").len();
    assert!(
        holds_within(DEADLINE, || server.accepted_len() == expected.len()),
        "not delivered:\n{}",
        agent.output()
    );
    assert!(
        holds_within(Duration::from_secs(10), || saved_offset(dir.path())
            == Some(size)),
        "not saved within seconds of delivery:\n{}",
        agent.output()
    );
    assert!(journal_len(dir.path()) > 0, "saved by the journal");
    agent.signal("KILL");
    agent.wait_exit(EXIT_DEADLINE);

    // The next run commits by interval: it reads the journal, folds it into the snapshot and
    // sends only the new lines.
    expected.extend(write_lines(&log, 2_000..2_500));
    let config = write_config(
        dir.path(),
        &server.endpoint(),
        "checkpoints",
        &files,
        &flow,
        &["checkpoint_interval: 100ms", "checkpoint_commit: interval"],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("Checkpoints loaded.", DEADLINE);
    assert_eq!(journal_len(dir.path()), 0, "folded in at start");
    assert!(
        holds_within(DEADLINE, || server.accepted_len() >= expected.len()),
        "not delivered:\n{}",
        agent.output()
    );
    agent.signal("TERM");
    assert!(
        agent.wait_exit(EXIT_DEADLINE).success(),
        "{}",
        agent.output()
    );
    let report = delivery_report(&expected, &server.accepted());
    assert_eq!(
        (report.lost, report.duplicates),
        (0, 0),
        "nothing lost, nothing sent twice:\n{}",
        agent.output()
    );
    assert_eq!(
        saved_offset(dir.path()),
        Some(fs::metadata(&log).expect("log").len())
    );
    assert_eq!(journal_len(dir.path()), 0);
}
