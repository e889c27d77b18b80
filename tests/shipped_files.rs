//! `shipped_files` with the real binary: a file is deleted or moved once every line of it is
//! acknowledged and it is no longer written (rotated away, or idle and not the newest match of
//! its glob); never before, never the newest match; and not sent again after a crash.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::support::agent::{write_config, Agent};
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::{FaultKinesis, Faults};
use crate::support::files::open_log;
use crate::support::http::{free_port, get};
use crate::support::stream::{read_back, setup};
use crate::support::wait;

const DEADLINE: Duration = Duration::from_secs(60);

/// Line `index` of `topic`: unique, newline-terminated.
fn line(topic: &str, index: usize) -> Vec<u8> {
    format!("{topic} seq={index:06} GET /shipped/{index} 200\n").into_bytes()
}

fn lines(topic: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(|index| line(topic, index)).collect()
}

/// Writes `lines` through `file` in one write, as an application writes a burst.
fn write(file: &mut fs::File, lines: &[Vec<u8>]) {
    file.write_all(&lines.concat()).expect("write lines");
}

/// Fails unless `delivered` holds each of `expected` exactly once, and nothing else.
fn assert_each_once(delivered: &[Vec<u8>], expected: &[Vec<u8>], agent: &Agent) {
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for record in delivered {
        *seen.entry(record.as_slice()).or_default() += 1;
    }
    let missing = expected
        .iter()
        .filter(|line| !seen.contains_key(line.as_slice()))
        .count();
    let repeated = seen.values().filter(|&&count| count > 1).count();
    assert!(
        missing == 0 && repeated == 0 && delivered.len() == expected.len(),
        "{} delivered of {}; {missing} missing, {repeated} repeated\n{}",
        delivered.len(),
        expected.len(),
        agent.output()
    );
}

/// The lines of `app.log` renamed to `app.log.1` (some written after the rename, as an
/// application that has not reopened yet does), then of a new `app.log`. The agent is told to
/// follow `app.log*` and must have opened `app.log` before the rotation.
struct Rotated {
    log: PathBuf,
    rotated: PathBuf,
    expected: Vec<Vec<u8>>,
}

/// Writes the first lines, lets `agent` (started by `start`) open the file, rotates, and
/// writes the rest.
fn rotate_under(logs: &Path, start: impl FnOnce() -> Agent) -> (Rotated, Agent) {
    let log = logs.join("app.log");
    let rotated = logs.join("app.log.1");
    let mut expected = lines("old", 0..1000);
    let mut writer = open_log(&log);
    write(&mut writer, &expected);
    let mut agent = start();
    agent.wait_for_log("Following file.", DEADLINE);
    fs::rename(&log, &rotated).expect("rotate");
    let late = lines("old", 1000..1100);
    write(&mut writer, &late);
    expected.extend(late);
    drop(writer);
    let mut writer = open_log(&log);
    let new = lines("new", 0..400);
    write(&mut writer, &new);
    expected.extend(new);
    (
        Rotated {
            log,
            rotated,
            expected,
        },
        agent,
    )
}

/// Starts the agent with `config`, logging why files are not done with yet.
fn start(config: &Path, dir: &Path) -> Agent {
    let filter = "info,kinship::source::discovery::shipping=debug";
    Agent::start_with(config, dir, None, &[], &[("RUST_LOG", filter)])
}

fn logs_dir(dir: &Path) -> PathBuf {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("logs dir");
    logs
}

/// Quick scans and polls, so that a test waits for seconds, not minutes.
const QUICK: &[&str] = &[
    "initial_position: start_of_file",
    "max_batch_age: 100ms",
    "scan_interval: 200ms",
    "poll_interval: 50ms",
];

fn flow_keys(extra: &[&str]) -> Vec<String> {
    QUICK
        .iter()
        .chain(extra)
        .map(|key| (*key).to_owned())
        .collect()
}

fn config(dir: &Path, endpoint: &str, stream: &str, glob: &Path, extra: &[&str]) -> PathBuf {
    config_with(dir, endpoint, stream, glob, extra, &[])
}

/// As [`config`], with `top` keys besides.
fn config_with(
    dir: &Path,
    endpoint: &str,
    stream: &str,
    glob: &Path,
    extra: &[&str],
    top: &[&str],
) -> PathBuf {
    let keys = flow_keys(extra);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let top: Vec<&str> = ["checkpoint_interval: 100ms"]
        .into_iter()
        .chain(top.iter().copied())
        .collect();
    write_config(
        dir,
        endpoint,
        stream,
        &glob.display().to_string(),
        &keys,
        &top,
    )
}

/// The paths of the files the state directory's checkpoints name, one per checkpoint.
fn checkpointed_paths(dir: &Path) -> Vec<PathBuf> {
    kinship::checkpoint::read_saved(&dir.join("state"))
        .map(|saved| {
            saved
                .into_iter()
                .map(|checkpoint| checkpoint.path)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every file of `paths` has a saved checkpoint at its size.
fn all_saved(dir: &Path, paths: &[&Path]) -> bool {
    let Ok(saved) = kinship::checkpoint::read_saved(&dir.join("state")) else {
        return false;
    };
    paths.iter().all(|path| {
        let Ok(size) = fs::metadata(path).map(|metadata| metadata.len()) else {
            return false;
        };
        saved
            .iter()
            .any(|checkpoint| checkpoint.path == *path && checkpoint.offset == size)
    })
}

#[test]
fn shipped_files_delete_removes_a_rotated_file_once_every_line_is_acknowledged() {
    let (server, dir, runtime) = setup("deleted");
    let logs = logs_dir(dir.path());
    let port = free_port();
    let config = config_with(
        dir.path(),
        &server.endpoint,
        "deleted",
        &logs.join("app.log*"),
        &["shipped_files: delete"],
        &[&format!("metrics:\n  listen: 127.0.0.1:{port}")],
    );
    let (files, mut agent) = rotate_under(&logs, || start(&config, dir.path()));
    wait::wait_until_showing(
        "the rotated file deleted",
        DEADLINE,
        || !files.rotated.exists(),
        || agent.output(),
    );
    let delivered = read_back(&runtime, &server, "deleted", files.expected.len());
    assert_each_once(&delivered, &files.expected, &agent);
    assert!(files.log.exists(), "the file being written stays");
    let output = agent.output();
    assert!(
        output.contains("Deleted a file done with")
            && output.contains(&format!("path={}", files.rotated.display())),
        "{output}"
    );
    let counted = "kinship_shipped_files_total{flow=\"app\",action=\"delete\"} 1\n";
    wait::wait_until_showing(
        "the deletion counted",
        DEADLINE,
        || get(port, "/metrics").is_some_and(|(_, body)| body.contains(counted)),
        || {
            get(port, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default()
        },
    );
    // Only the file being written keeps a checkpoint.
    wait::wait_until_showing(
        "the deleted file's checkpoint dropped",
        DEADLINE,
        || checkpointed_paths(dir.path()) == [files.log.clone()],
        || format!("{:?}\n{}", checkpointed_paths(dir.path()), agent.output()),
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn shipped_files_move_puts_a_rotated_file_into_the_directory_under_its_name() {
    let (server, dir, runtime) = setup("moved");
    let logs = logs_dir(dir.path());
    let shipped = dir.path().join("shipped");
    fs::create_dir(&shipped).expect("shipped dir");
    // A file of that name is there already: the moved file takes another.
    fs::write(shipped.join("app.log.1"), b"earlier\n").expect("clash");
    let dir_key = format!("shipped_files_dir: {}", shipped.display());
    let config = config(
        dir.path(),
        &server.endpoint,
        "moved",
        &logs.join("app.log*"),
        &["shipped_files: move", &dir_key],
    );
    let (files, mut agent) = rotate_under(&logs, || start(&config, dir.path()));
    let destination = shipped.join("app.log.1-1");
    wait::wait_until_showing(
        "the rotated file moved",
        DEADLINE,
        || !files.rotated.exists() && destination.exists(),
        || agent.output(),
    );
    let delivered = read_back(&runtime, &server, "moved", files.expected.len());
    assert_each_once(&delivered, &files.expected, &agent);
    let old: Vec<u8> = files.expected[..1100].concat();
    assert_eq!(fs::read(&destination).expect("moved file"), old);
    assert_eq!(
        fs::read(shipped.join("app.log.1")).expect("kept"),
        b"earlier\n"
    );
    assert!(files.log.exists());
    let output = agent.output();
    assert!(
        output.contains("Moved a file done with")
            && output.contains(&format!("destination={}", destination.display())),
        "{output}"
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn shipped_files_keep_leaves_every_file() {
    let (server, dir, runtime) = setup("kept");
    let logs = logs_dir(dir.path());
    let config = config(
        dir.path(),
        &server.endpoint,
        "kept",
        &logs.join("app.log*"),
        &["shipped_files: keep", "shipped_files_idle: 1s"],
    );
    let (files, mut agent) = rotate_under(&logs, || start(&config, dir.path()));
    let delivered = read_back(&runtime, &server, "kept", files.expected.len());
    assert_each_once(&delivered, &files.expected, &agent);
    wait::wait_until_showing(
        "both files acknowledged to their ends",
        DEADLINE,
        || all_saved(dir.path(), &[&files.rotated, &files.log]),
        || agent.output(),
    );
    // Idle past shipped_files_idle, rotated and acknowledged: with keep, still there.
    wait::wait_until("a second past the last write", DEADLINE, || {
        idle_for(&files.rotated) > Duration::from_secs(2)
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert!(files.rotated.exists() && files.log.exists());
    assert!(!agent.output().contains("a file done with"));
}

/// How long since `path` was last modified.
fn idle_for(path: &Path) -> Duration {
    fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default()
}

/// Sets `path`'s modification time `ago` in the past.
fn modified_ago(path: &Path, ago: Duration) {
    let file = fs::File::options()
        .write(true)
        .open(path)
        .expect("open to set its time");
    file.set_modified(SystemTime::now() - ago)
        .expect("set modification time");
}

#[test]
fn shipped_files_idle_deletes_an_older_match_and_never_the_newest() {
    let (server, dir, runtime) = setup("idle");
    let logs = logs_dir(dir.path());
    let older = logs.join("worker-1.log");
    let newest = logs.join("worker-2.log");
    let mut expected = lines("w1", 0..500);
    write(&mut open_log(&older), &expected);
    let second = lines("w2", 0..500);
    write(&mut open_log(&newest), &second);
    expected.extend(second);
    // Both idle far past shipped_files_idle; worker-2.log is the newer.
    modified_ago(&older, Duration::from_secs(3600));
    modified_ago(&newest, Duration::from_secs(1800));
    let config = config(
        dir.path(),
        &server.endpoint,
        "idle",
        &logs.join("*.log"),
        &["shipped_files: delete", "shipped_files_idle: 1s"],
    );
    let mut agent = start(&config, dir.path());
    wait::wait_until_showing(
        "the older idle file deleted",
        DEADLINE,
        || !older.exists(),
        || agent.output(),
    );
    let delivered = read_back(&runtime, &server, "idle", expected.len());
    assert_each_once(&delivered, &expected, &agent);
    // Acknowledged to its end and idle, the newest match stays: it is the one written to.
    wait::wait_until_showing(
        "the newest file acknowledged to its end",
        DEADLINE,
        || all_saved(dir.path(), &[&newest]),
        || agent.output(),
    );
    assert!(newest.exists(), "{}", agent.output());
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert!(newest.exists());
}

#[cfg(unix)]
#[test]
fn shipped_files_a_file_that_cannot_be_deleted_is_warned_of_once_and_deleted_once_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let (server, dir, runtime) = setup("denied");
    // Root may delete anything: run the agent as "nobody" then.
    let uid = crate::support::files::agent_user_held_by_permissions(dir.path());
    let logs = logs_dir(dir.path());
    let older = logs.join("worker-1.log");
    let newest = logs.join("worker-2.log");
    let mut expected = lines("w1", 0..200);
    write(&mut open_log(&older), &expected);
    let second = lines("w2", 0..200);
    write(&mut open_log(&newest), &second);
    expected.extend(second);
    modified_ago(&older, Duration::from_secs(3600));
    modified_ago(&newest, Duration::from_secs(1800));
    // The agent may read the files but not remove them from their directory.
    let locked = if uid.is_some() { 0o755 } else { 0o555 };
    fs::set_permissions(&logs, fs::Permissions::from_mode(locked)).expect("chmod logs");
    let config = config(
        dir.path(),
        &server.endpoint,
        "denied",
        &logs.join("*.log"),
        &["shipped_files: delete", "shipped_files_idle: 1s"],
    );
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod config");
    let filter = "info,kinship::source::discovery::shipping=debug";
    let mut agent = Agent::start_with(&config, dir.path(), uid, &[], &[("RUST_LOG", filter)]);
    let delivered = read_back(&runtime, &server, "denied", expected.len());
    assert_each_once(&delivered, &expected, &agent);
    agent.wait_for_log("Cannot act on a file done with", DEADLINE);
    // Retried at later scans, warned of once.
    let retried = "Cannot act on a file done with; will retry.";
    wait::wait_until_showing(
        "the deletion tried again",
        DEADLINE,
        || agent.output().matches(retried).count() >= 2,
        || agent.output(),
    );
    let output = agent.output();
    assert_eq!(
        output
            .matches("will retry at every scan (logged once)")
            .count(),
        1,
        "{output}"
    );
    assert!(
        output.contains(&format!("path={}", older.display()))
            && output.contains("Permission denied"),
        "{output}"
    );
    assert!(older.exists());
    fs::set_permissions(&logs, fs::Permissions::from_mode(0o777)).expect("chmod logs");
    wait::wait_until_showing(
        "the file deleted once allowed",
        DEADLINE,
        || !older.exists(),
        || agent.output(),
    );
    assert!(newest.exists());
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

/// A config for the fault-injecting server, as `tests/faults.rs` writes them.
fn fault_config(dir: &Path, endpoint: &str, glob: &Path, extra: &[&str]) -> PathBuf {
    let keys = flow_keys(extra);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    AgentConfig::new(dir)
        .tops(&["progress_interval: 1s", "checkpoint_interval: 100ms"])
        .emulator("us-east-1", endpoint)
        .aws_keys(&["request_timeout: 2s", "connect_timeout: 1s"])
        .flow(
            Flow::kinesis("app", glob.display(), "refusing")
                .keys(&["retry_max_backoff: 500ms"])
                .keys(&keys),
        )
        .write()
}

#[test]
fn shipped_files_a_file_with_unacknowledged_lines_stays_until_they_are_delivered() {
    let server = FaultKinesis::start(Faults {
        record_internal_percent: 100.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = logs_dir(dir.path());
    let config = fault_config(
        dir.path(),
        &server.endpoint(),
        &logs.join("app.log*"),
        &["shipped_files: delete"],
    );
    let (files, mut agent) = rotate_under(&logs, || start(&config, dir.path()));
    // Read to its end and asked about, again and again: every record refused, it stays.
    let needle = format!(
        "Not done with this file yet. flow=app path={} verdict=Unacknowledged",
        files.rotated.display()
    );
    wait::wait_until_showing(
        "the rotated file found not acknowledged at several scans",
        DEADLINE,
        || agent.output().matches(&needle).count() >= 3,
        || agent.output(),
    );
    assert!(server.stats().record_internal > 0, "{:?}", server.stats());
    assert!(files.rotated.exists(), "{}", agent.output());
    assert!(server.accepted().is_empty());

    // Delivery resumes: every line arrives, and then the file goes.
    server.set_faults(Faults::default());
    wait::wait_until_showing(
        "the rotated file deleted once delivered",
        DEADLINE,
        || !files.rotated.exists(),
        || agent.output(),
    );
    let accepted = server.accepted();
    let old: Vec<Vec<u8>> = files.expected[..1100].to_vec();
    for line in &old {
        assert!(accepted.contains(line), "{}", agent.output());
    }
    assert!(files.log.exists());
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn shipped_files_a_crash_after_acknowledgement_deletes_at_restart_without_sending_again() {
    let (server, dir, runtime) = setup("crashed");
    let logs = logs_dir(dir.path());
    let glob = logs.join("app.log*");
    let keep = config(dir.path(), &server.endpoint, "crashed", &glob, &[]);
    let (files, mut agent) = rotate_under(&logs, || start(&keep, dir.path()));
    let delivered = read_back(&runtime, &server, "crashed", files.expected.len());
    assert_each_once(&delivered, &files.expected, &agent);
    wait::wait_until_showing(
        "both files' checkpoints saved at their ends",
        DEADLINE,
        || all_saved(dir.path(), &[&files.rotated, &files.log]),
        || agent.output(),
    );
    // Killed: acknowledged, saved, and not acted on.
    agent.signal("KILL");
    agent.wait_exit(DEADLINE);
    assert!(files.rotated.exists());
    // The restart comes a while later: the rotated file was last written before the new one.
    modified_ago(&files.rotated, Duration::from_secs(600));

    let delete = config(
        dir.path(),
        &server.endpoint,
        "crashed",
        &glob,
        &["shipped_files: delete", "shipped_files_idle: 1s"],
    );
    let mut agent = start(&delete, dir.path());
    wait::wait_until_showing(
        "the rotated file deleted after the restart",
        DEADLINE,
        || !files.rotated.exists(),
        || agent.output(),
    );
    assert!(files.log.exists());
    assert!(
        agent.output().contains("Deleted a file done with"),
        "{}",
        agent.output()
    );
    // One more line to know the agent still ships: it arrives alone, nothing else again.
    let last = line("new", 400);
    write(&mut open_log(&files.log), std::slice::from_ref(&last));
    let mut expected = files.expected.clone();
    expected.push(last);
    let delivered = read_back(&runtime, &server, "crashed", expected.len());
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert_each_once(&delivered, &expected, &agent);
}
