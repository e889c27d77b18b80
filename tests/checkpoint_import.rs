//! Switching from the Kinesis Agent with its checkpoints: a database written as the agent
//! writes it says which lines of a file were sent; after `kinship migrate --checkpoints` (or
//! with `kinship run --import-checkpoints`) kinship sends exactly the lines after those, each
//! once. A file whose identity is not the one the agent recorded is skipped with a warning
//! and read from its initial_position.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::support::agent::{run_command, Agent};
use crate::support::config::{AgentConfig, Flow};
use crate::support::kinesalite::{self, Kinesalite};
use crate::support::stream::{read_back, setup};
use crate::support::wait;

const DEADLINE: Duration = Duration::from_secs(60);

/// The table exactly as the Kinesis Agent creates it (its SQLiteFileCheckpointStore).
const AGENT_SCHEMA: &str = "create table if not exists FILE_CHECKPOINTS(       flow text,       path text,       fileId text,       lastModifiedTime bigint,       size bigint,       offset bigint,       lastUpdated datetime,       primary key (flow, path))";

/// Lines in app.log, of which the agent had sent the first `SENT`.
const LINES: usize = 40;
const SENT: usize = 25;
/// Lines in other.log, which the agent's database mistakes for another file.
const OTHER_LINES: usize = 6;

/// A switch in progress: the stream, the logs, the agent's database and kinship's config.
struct Switch {
    server: Kinesalite,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    stream: String,
    app: PathBuf,
    other: PathBuf,
    db: PathBuf,
    config: PathBuf,
    app_lines: Vec<String>,
    other_lines: Vec<String>,
}

fn lines(name: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{name} line {index:04}\n"))
        .collect()
}

/// The id the Kinesis Agent saves for a file: Java's Unix file key.
fn agent_file_id(path: &Path, inode_offset: u64) -> String {
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::metadata(path).expect("stat");
    format!(
        "(dev={:x},ino={})",
        metadata.dev(),
        metadata.ino() + inode_offset
    )
}

impl Switch {
    fn prepare(stream: &str) -> Switch {
        let (server, dir, runtime) = setup(stream);
        let logs = dir.path().join("logs");
        fs::create_dir_all(&logs).expect("logs");
        fs::create_dir_all(dir.path().join("agent")).expect("agent dir");
        let app = logs.join("app.log");
        let other = logs.join("other.log");
        let app_lines = lines("app", LINES);
        let other_lines = lines("other", OTHER_LINES);
        fs::write(&app, app_lines.concat()).expect("app.log");
        fs::write(&other, other_lines.concat()).expect("other.log");

        // What the agent left: app.log sent up to line SENT; other.log all sent, but under an
        // inode that is not the one other.log has now.
        let db = dir.path().join("agent/checkpoints");
        let connection = Connection::open(&db).expect("agent database");
        connection.execute(AGENT_SCHEMA, []).expect("agent schema");
        let flow = format!("kinesis:{stream}:{}/*.log", logs.display());
        let sent = app_lines[..SENT].concat().len() as i64;
        let other_len = other_lines.concat().len() as i64;
        for (path, id, offset) in [
            (&app, agent_file_id(&app, 0), sent),
            (&other, agent_file_id(&other, 1_000_000), other_len),
        ] {
            connection
                .execute(
                    "insert into FILE_CHECKPOINTS values(?, ?, ?, ?, ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
                    (&flow, path.display().to_string(), id, 1_700_000_000_000_i64, offset, offset),
                )
                .expect("agent row");
        }
        drop(connection);

        let config = AgentConfig::new(dir.path())
            .emulator(kinesalite::REGION, &server.endpoint)
            .top("checkpoint_interval: 100ms")
            .flow(
                Flow::kinesis("app", format!("{}/*.log", logs.display()), stream).keys(&[
                    "initial_position: start_of_file",
                    "max_batch_age: 50ms",
                    "poll_interval: 50ms",
                    "scan_interval: 200ms",
                ]),
            )
            .write();
        Switch {
            server,
            dir,
            runtime,
            stream: stream.to_owned(),
            app,
            other,
            db,
            config,
            app_lines,
            other_lines,
        }
    }

    fn saved_offset(&self, path: &Path) -> Option<u64> {
        kinship::checkpoint::read_saved(&self.dir.path().join("state"))
            .ok()?
            .into_iter()
            .find(|checkpoint| checkpoint.path == path)
            .map(|checkpoint| checkpoint.offset)
    }

    /// Waits until both files are acknowledged to their ends, then checks that the stream
    /// holds exactly app.log's lines after SENT and every line of other.log, each once.
    fn assert_exactly_the_unsent_lines(&self, agent: &Agent) {
        let app_len = fs::metadata(&self.app).expect("app").len();
        let other_len = fs::metadata(&self.other).expect("other").len();
        wait::wait_until_showing(
            "both files acknowledged to their ends",
            DEADLINE,
            || {
                self.saved_offset(&self.app) == Some(app_len)
                    && self.saved_offset(&self.other) == Some(other_len)
            },
            || agent.output(),
        );
        let mut expected: Vec<String> = self.app_lines[SENT..]
            .iter()
            .chain(&self.other_lines)
            .cloned()
            .collect();
        // Everything acknowledged is in the stream: this reads all of it.
        let mut delivered: Vec<String> =
            read_back(&self.runtime, &self.server, &self.stream, expected.len())
                .into_iter()
                .map(|record| String::from_utf8(record).expect("utf-8"))
                .collect();
        expected.sort();
        delivered.sort();
        assert_eq!(delivered, expected, "{}", agent.output());
    }
}

fn stop(mut agent: Agent) {
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn migrate_seeds_the_agents_checkpoints_and_only_unsent_lines_are_shipped() {
    let switch = Switch::prepare("migrated");
    let output = run_command(&[
        "migrate",
        "--checkpoints",
        &switch.db.display().to_string(),
        "--config",
        &switch.config.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let sent = switch.app_lines[..SENT].concat().len();
    assert!(
        stdout.contains(&format!(
            "seeded {} (flow `app`): from offset {sent} of",
            switch.app.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 of the Kinesis Agent's checkpoints seeded"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "kinship: warning: skipped {} (flow `app`): another file is at this path now",
            switch.other.display()
        )),
        "{stderr}"
    );
    assert_eq!(switch.saved_offset(&switch.app), Some(sent as u64));
    assert_eq!(switch.saved_offset(&switch.other), None);

    let agent = Agent::start(&switch.config, switch.dir.path());
    switch.assert_exactly_the_unsent_lines(&agent);
    stop(agent);
}

#[test]
fn run_imports_the_agents_checkpoints_before_opening_files() {
    let switch = Switch::prepare("imported");
    let agent = Agent::start_with(
        &switch.config,
        switch.dir.path(),
        None,
        &["--import-checkpoints", &switch.db.display().to_string()],
        &[],
    );
    switch.assert_exactly_the_unsent_lines(&agent);
    let output = agent.output();
    let warning = output
        .lines()
        .find(|line| line.contains("Did not import the Kinesis Agent's checkpoint"))
        .unwrap_or_else(|| panic!("no warning:\n{output}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&switch.other.display().to_string()),
        "{warning}"
    );
    assert!(
        warning.contains("another file is at this path now"),
        "{warning}"
    );
    assert!(
        output.contains("Seeded the file's checkpoint from the Kinesis Agent's."),
        "{output}"
    );
    stop(agent);
}

#[test]
fn run_fails_before_starting_when_the_agents_database_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = AgentConfig::new(dir.path())
        .emulator(kinesalite::REGION, "http://127.0.0.1:9")
        .flow(Flow::kinesis(
            "app",
            format!("{}/*.log", dir.path().display()),
            "s",
        ))
        .write();
    let missing = dir.path().join("no-agent-db");
    let mut agent = Agent::start_with(
        &config,
        dir.path(),
        None,
        &["--import-checkpoints", &missing.display().to_string()],
        &[],
    );
    let status = agent.wait_exit(DEADLINE);
    assert!(!status.success());
    let output = agent.output();
    assert!(output.contains("no-agent-db"), "{output}");
    assert!(output.contains("does not exist"), "{output}");
    assert!(
        !dir.path().join("state/checkpoints.json").exists(),
        "nothing started"
    );
}

#[test]
fn migrate_seeds_the_flows_of_an_agent_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("logs");
    fs::create_dir_all(dir.path().join("agent")).expect("agent dir");
    let app = logs.join("app.log");
    fs::write(&app, lines("app", 10).concat()).expect("app.log");
    let db = dir.path().join("agent/checkpoints");
    let connection = Connection::open(&db).expect("agent database");
    connection.execute(AGENT_SCHEMA, []).expect("agent schema");
    connection
        .execute(
            "insert into FILE_CHECKPOINTS values(?, ?, ?, 0, 0, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
            (
                format!("fh:web-delivery:{}/*.log", logs.display()),
                app.display().to_string(),
                agent_file_id(&app, 0),
                42_i64,
            ),
        )
        .expect("agent row");
    drop(connection);
    // The agent's own config: its checkpointFile is not under /var/run, so kinship's state_dir
    // is translated to be beside it.
    let agent_json = dir.path().join("agent.json");
    fs::write(
        &agent_json,
        format!(
            r#"{{ "checkpointFile": "{db}", "firehose.endpoint": "https://firehose.us-east-1.amazonaws.com",
  "flows": [ {{ "filePattern": "{logs}/*.log", "deliveryStream": "web-delivery" }} ] }}
"#,
            db = db.display(),
            logs = logs.display(),
        ),
    )
    .expect("agent.json");
    let output = run_command(&[
        "migrate",
        &agent_json.display().to_string(),
        "--checkpoints",
        &db.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let saved = kinship::checkpoint::read_saved(&dir.path().join("agent")).expect("saved");
    assert_eq!(saved.len(), 1, "{stdout}");
    assert_eq!(saved[0].path, app);
    assert_eq!(saved[0].offset, 42);
    assert!(
        stdout.contains(&format!("(flow `{}`)", saved[0].flow)),
        "named as migrate names the flow: {stdout}"
    );
}
