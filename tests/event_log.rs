//! The Windows Event Log source's file mode with the real binary: real `.evtx` logs (from
//! `../shared/fixtures/evtx/`) shipped to kinesalite, every event once as a JSON record,
//! resumed by record id after a restart or a crash, and a damaged log read around its damage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::{saved_offset, Agent};
use crate::support::config::{AgentConfig, Flow};
use crate::support::kinesalite::{self, Kinesalite};
use crate::support::stream::{read_back, setup};
use crate::support::wait::{wait_for, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
const STREAM: &str = "events";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/evtx")
        .join(name)
}

fn config(dir: &Path, server: &Kinesalite, file: &Path, keys: &[&str]) -> PathBuf {
    AgentConfig::new(dir)
        .emulator(kinesalite::REGION, &server.endpoint)
        .top("progress_interval: 1s")
        .flow(
            Flow::event_log_file("winlog", file.display(), STREAM)
                .keys(&["max_batch_age: 100ms"])
                .keys(keys),
        )
        .write()
}

/// How many times each record id is in `records`; panics on a record that is not an event.
fn record_ids(records: &[Vec<u8>]) -> BTreeMap<u64, usize> {
    let mut ids = BTreeMap::new();
    for record in records {
        let event: serde_json::Value = serde_json::from_slice(record)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {record:?}"));
        let id = event["EventRecordID"].as_u64().expect("EventRecordID");
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// Every record id `name` holds, read with the parser on its own.
fn ids_in(name: &str) -> Vec<u64> {
    let mut parser = evtx::EvtxParser::from_path(fixture(name)).expect("fixture");
    parser
        .records()
        .map_while(Result::ok)
        .map(|record| record.event_record_id)
        .collect()
}

#[test]
fn a_security_log_is_shipped_once_and_a_restart_sends_nothing_again() {
    let (server, dir, runtime) = setup(STREAM);
    let file = fixture("post-Security.evtx");
    let config = config(dir.path(), &server, &file, &[]);
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("Every event of the event log file has been read.", DEADLINE);
    let records = read_back(&runtime, &server, STREAM, 126);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let ids = record_ids(&records);
    assert_eq!(
        ids.keys().copied().collect::<Vec<_>>(),
        ids_in("post-Security.evtx")
    );
    assert!(ids.values().all(|&times| times == 1), "{ids:?}");
    // The records are the events: a logon carries who, how and from where.
    let logon: serde_json::Value = records
        .iter()
        .map(|record| serde_json::from_slice::<serde_json::Value>(record).expect("JSON"))
        .find(|event| event["EventID"] == 4624)
        .expect("a logon event");
    assert_eq!(logon["Channel"], "Security");
    for field in ["TargetUserName", "LogonType", "IpAddress"] {
        assert!(logon["EventData"][field].is_string(), "{logon}");
    }

    let mut again = Agent::start(&config, dir.path());
    let output = again.wait_for_log("Every event of the event log file has been read.", DEADLINE);
    assert!(output.contains("from_record_id=127"), "{output}");
    again.signal("TERM");
    assert!(again.wait_exit(DEADLINE).success(), "{}", again.output());
    // Stopped cleanly: whatever it sent is in the stream now.
    assert_eq!(read_back(&runtime, &server, STREAM, 0).len(), 126);
}

#[test]
fn a_crash_part_way_resends_only_what_was_not_saved_as_acknowledged() {
    let (server, dir, runtime) = setup(STREAM);
    let file = fixture("system.evtx");
    let config = config(
        dir.path(),
        &server,
        &file,
        &["max_batch_records: 50", "max_in_flight: 1"],
    );
    let mut agent = Agent::start(&config, dir.path());
    // Killed once part of the log has arrived.
    wait_for("some events to arrive", DEADLINE, || {
        let arrived = read_back(&runtime, &server, STREAM, 0).len();
        (arrived >= 300).then_some(arrived)
    });
    agent.signal("KILL");
    let _ = agent.wait_exit(DEADLINE);
    let saved = saved_offset(dir.path()).expect("a checkpoint was saved before the kill");
    let before_restart = record_ids(&read_back(&runtime, &server, STREAM, 0));
    assert!(
        before_restart.keys().all(|&id| id < 1881),
        "not all sent yet"
    );

    let mut again = Agent::start(&config, dir.path());
    let output = again.wait_for_log("Every event of the event log file has been read.", DEADLINE);
    assert!(
        output.contains(&format!("from_record_id={saved}")),
        "{output}"
    );
    let expected = ids_in("system.evtx");
    let ids = wait_for("every event in the stream", DEADLINE, || {
        let ids = record_ids(&read_back(&runtime, &server, STREAM, 0));
        (ids.len() >= expected.len()).then_some(ids)
    });
    again.signal("TERM");
    assert!(again.wait_exit(DEADLINE).success(), "{}", again.output());
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), expected);
    // Only events at or after the saved position went twice: those the crash caught in
    // flight or acknowledged but not yet saved.
    let twice: Vec<u64> = ids
        .iter()
        .filter(|(_, &times)| times > 1)
        .map(|(&id, _)| id)
        .collect();
    assert!(
        twice.iter().all(|&id| id >= saved),
        "saved {saved}; sent twice: {twice:?}"
    );
    assert!(ids.values().all(|&times| times <= 2), "{ids:?}");
}

#[test]
fn a_damaged_log_is_read_around_its_damage_and_the_agent_goes_on() {
    let (server, dir, runtime) = setup(STREAM);
    let file = fixture("sysmon.evtx");
    let config = config(dir.path(), &server, &file, &[]);
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("The event log file is damaged here", DEADLINE);
    let line = output
        .lines()
        .find(|line| line.contains("The event log file is damaged here"))
        .expect("the line");
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("sysmon.evtx"), "{line}");
    assert!(
        line.contains("chunk=9") && line.contains("offset=593920"),
        "{line}"
    );
    let expected = ids_in("sysmon.evtx");
    assert_eq!(expected.len(), 358);
    let records = read_back(&runtime, &server, STREAM, expected.len());
    let ids = record_ids(&records);
    assert_eq!(ids.keys().copied().collect::<Vec<_>>(), expected);
    // The flow goes on: the agent still runs and reports progress, and stops cleanly.
    let progress_lines = |output: &str| output.matches("Progress.").count();
    let seen = progress_lines(&agent.output());
    wait_until("another progress line", DEADLINE, || {
        progress_lines(&agent.output()) > seen
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let output = agent.output();
    assert_eq!(
        output.matches("The event log file is damaged here").count(),
        1,
        "{output}"
    );
    // Every chunk after the damage was tried: the ones that follow are damaged too.
    let end = output
        .lines()
        .find(|line| line.contains("Every event of the event log file has been read."))
        .expect("the end of the file reached");
    assert!(end.contains("damaged_chunks=8"), "{end}");
}
