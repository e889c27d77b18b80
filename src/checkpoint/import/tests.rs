//! The import end to end: a database written with the Kinesis Agent's own table, real files,
//! kinship flows from YAML, and the store written.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::agent_db::{format_file_id, AGENT_SCHEMA};
use super::*;
use crate::checkpoint::read_saved;
use crate::config::{Config, DestinationKind};
use crate::record::{FileId, Head};

/// A directory with logs, an agent database and kinship's state.
struct Setup {
    dir: tempfile::TempDir,
    db: Connection,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["logs", "fh", "state"] {
            fs::create_dir_all(dir.path().join(sub)).expect("dir");
        }
        let db = Connection::open(dir.path().join("checkpoints")).expect("create database");
        db.execute(AGENT_SCHEMA, []).expect("agent schema");
        Setup { dir, db }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db_path(&self) -> PathBuf {
        self.path("checkpoints")
    }

    fn state(&self) -> PathBuf {
        self.path("state")
    }

    /// Writes `lines` numbered lines to `name`; returns the bytes written.
    fn write_log(&self, name: &str, lines: usize) -> Vec<u8> {
        let text: String = (0..lines)
            .map(|index| format!("line {index:04} of {name}\n"))
            .collect();
        fs::write(self.path(name), &text).expect("write log");
        text.into_bytes()
    }

    /// A row as the agent saves it, for `flow` and the file `name`, with `file_id`.
    fn row(&self, flow: &str, name: &str, file_id: &str, offset: i64) {
        let path = self.path(name);
        self.db
            .execute(
                "insert into FILE_CHECKPOINTS values(?, ?, ?, ?, ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
                (flow, path.display().to_string(), file_id, 1_700_000_000_000_i64, offset, offset),
            )
            .expect("insert row");
    }

    /// The agent's flow id for a pattern under the directory.
    fn agent_flow(&self, prefix: &str, stream: &str, pattern: &str) -> String {
        format!("{prefix}:{stream}:{}", self.path(pattern).display())
    }

    /// kinship's flows: `app` (Kinesis `app-stream`, logs/*.log, excluding logs/skip-*) and
    /// `delivery` (Firehose `delivery`, fh/*.txt).
    fn flows(&self) -> Vec<FlowConfig> {
        let text = format!(
            "state_dir: {state}\naws:\n  region: us-east-1\nflows:\n  - name: app\n    files: {logs}/*.log\n    exclude: {logs}/skip-*\n    kinesis_stream: app-stream\n  - name: delivery\n    files: {fh}/*.txt\n    firehose_stream: delivery\n    fingerprint_bytes: 16\n",
            state = self.state().display(),
            logs = self.path("logs").display(),
            fh = self.path("fh").display(),
        );
        Config::parse(Path::new("k.yaml"), &text)
            .unwrap_or_else(|error| panic!("{error}"))
            .flows
    }
}

fn id_of(path: &Path) -> FileId {
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::metadata(path).expect("stat");
    FileId {
        device: metadata.dev(),
        inode: metadata.ino(),
    }
}

/// The id the agent would have saved for `path`.
fn agent_id(path: &Path) -> String {
    format_file_id(id_of(path))
}

fn head(bytes: &[u8], len: usize) -> Option<Head> {
    let bytes = &bytes[..len.min(bytes.len())];
    Some(Head {
        len: bytes.len() as u32,
        hash: xxhash_rust::xxh3::xxh3_64(bytes),
    })
}

fn action_of<'a>(outcomes: &'a [Outcome], path: &Path, flow: Option<&str>) -> &'a Action {
    &outcomes
        .iter()
        .find(|outcome| outcome.path == path && outcome.flow.as_deref() == flow)
        .unwrap_or_else(|| panic!("no outcome for {} {flow:?}: {outcomes:#?}", path.display()))
        .action
}

#[test]
fn rows_of_several_flows_are_seeded_only_for_the_files_they_recorded() {
    let setup = Setup::new();
    let kinesis_flow = setup.agent_flow("kinesis", "app-stream", "logs/*.log");
    let firehose_flow = setup.agent_flow("fh", "delivery", "fh/*.txt");

    // Acknowledged up to its 7th line of 20.
    let app = setup.write_log("logs/app.log", 20);
    let acknowledged = app
        .split_inclusive(|&byte| byte == b'\n')
        .take(7)
        .map(<[u8]>::len)
        .sum::<usize>() as i64;
    setup.row(
        &kinesis_flow,
        "logs/app.log",
        &agent_id(&setup.path("logs/app.log")),
        acknowledged,
    );
    // Sent to Firehose, all of it.
    let events = setup.write_log("fh/events.txt", 3);
    setup.row(
        &firehose_flow,
        "fh/events.txt",
        &agent_id(&setup.path("fh/events.txt")),
        events.len() as i64,
    );
    // Deleted since.
    setup.row(&kinesis_flow, "logs/gone.log", "(dev=803,ino=424242)", 10);
    // Rotated away: another file (another inode) has its name now.
    setup.write_log("logs/rotated.log", 5);
    let old = agent_id(&setup.path("logs/rotated.log"));
    fs::rename(
        setup.path("logs/rotated.log"),
        setup.path("logs/rotated.log.1"),
    )
    .expect("rotate");
    setup.write_log("logs/rotated.log", 2);
    setup.row(&kinesis_flow, "logs/rotated.log", &old, 40);
    // Truncated: the agent's offset is past its end.
    let short = setup.write_log("logs/short.log", 2);
    setup.row(
        &kinesis_flow,
        "logs/short.log",
        &agent_id(&setup.path("logs/short.log")),
        short.len() as i64 + 100,
    );
    // A stream no kinship flow sends to, and a file kinship's flow excludes.
    setup.write_log("logs/other.log", 1);
    setup.row(
        &setup.agent_flow("kinesis", "elsewhere", "logs/*.log"),
        "logs/other.log",
        &agent_id(&setup.path("logs/other.log")),
        5,
    );
    setup.write_log("logs/skip-me.log", 1);
    setup.row(
        &kinesis_flow,
        "logs/skip-me.log",
        &agent_id(&setup.path("logs/skip-me.log")),
        5,
    );

    let (mut store, loaded) = CheckpointStore::open(&setup.state()).expect("open store");
    let rows = read_agent_db(&setup.db_path()).expect("read database");
    assert_eq!(rows.len(), 7);
    let imported = import(&mut store, loaded.checkpoints, &setup.flows(), rows).expect("import");
    let outcomes = &imported.outcomes;

    let app_path = setup.path("logs/app.log");
    assert_eq!(
        *action_of(outcomes, &app_path, Some("app")),
        Action::Seeded {
            offset: acknowledged as u64,
            size: app.len() as u64
        }
    );
    let events_path = setup.path("fh/events.txt");
    assert_eq!(
        *action_of(outcomes, &events_path, Some("delivery")),
        Action::Seeded {
            offset: events.len() as u64,
            size: events.len() as u64
        }
    );
    assert_eq!(
        *action_of(outcomes, &setup.path("logs/gone.log"), Some("app")),
        Action::Skipped(Skip::Gone)
    );
    let rotated = action_of(outcomes, &setup.path("logs/rotated.log"), Some("app"));
    assert_eq!(
        *rotated,
        Action::Skipped(Skip::Replaced {
            recorded: old.clone(),
            found: id_of(&setup.path("logs/rotated.log")),
        })
    );
    assert_eq!(
        *action_of(outcomes, &setup.path("logs/short.log"), Some("app")),
        Action::Skipped(Skip::Shorter {
            offset: short.len() as u64 + 100,
            size: short.len() as u64
        })
    );
    for name in ["logs/other.log", "logs/skip-me.log"] {
        assert!(
            matches!(
                action_of(outcomes, &setup.path(name), None),
                Action::Skipped(Skip::NoFlow { .. })
            ),
            "{name}: {outcomes:#?}"
        );
    }
    assert_eq!(imported.seeded(), 2);

    // Written through the store: what kinship reads at start.
    let saved = read_saved(&setup.state()).expect("read store");
    assert_eq!(saved, imported.checkpoints);
    assert_eq!(saved.len(), 2);
    let app_saved = saved.iter().find(|c| c.flow == "app").expect("app seeded");
    assert_eq!(app_saved.id, id_of(&app_path));
    assert_eq!(app_saved.path, app_path);
    assert_eq!(app_saved.offset, acknowledged as u64);
    assert_eq!(
        app_saved.head,
        head(&app, 1024),
        "hashed as kinship hashes a file's head"
    );
    let events_saved = saved
        .iter()
        .find(|c| c.flow == "delivery")
        .expect("delivery seeded");
    assert_eq!(
        events_saved.head,
        head(&events, 16),
        "the flow's fingerprint_bytes"
    );

    // Each line names the file and says what was done, or why not.
    let printed: Vec<String> = outcomes.iter().map(ToString::to_string).collect();
    assert!(
        printed.iter().any(|line| line.starts_with("seeded ")
            && line.contains(&app_path.display().to_string())
            && line.contains(&format!("offset {acknowledged}"))),
        "{printed:#?}"
    );
    assert!(
        printed.iter().any(|line| line.starts_with("skipped ")
            && line.contains("rotated.log")
            && line.contains("another file is at this path now")
            && line.contains(&old)),
        "{printed:#?}"
    );
}

#[test]
fn a_file_kinship_has_a_checkpoint_for_keeps_it() {
    let setup = Setup::new();
    let flow = setup.agent_flow("kinesis", "app-stream", "logs/*.log");
    let app = setup.write_log("logs/app.log", 10);
    let path = setup.path("logs/app.log");
    setup.row(&flow, "logs/app.log", &agent_id(&path), 30);
    let own = Checkpoint {
        flow: "app".into(),
        id: id_of(&path),
        head: head(&app, 1024),
        path: path.clone(),
        offset: 90,
        seen: 1_700_000_000,
        copy_from: Vec::new(),
        cursor: None,
    };
    let (mut store, _) = CheckpointStore::open(&setup.state()).expect("open store");
    store
        .write(std::slice::from_ref(&own))
        .expect("kinship's own");

    let imported = import_into(&setup.state(), &setup.flows(), &setup.db_path()).expect("import");
    assert_eq!(
        *action_of(&imported.outcomes, &path, Some("app")),
        Action::Kept { offset: 90 }
    );
    assert_eq!(imported.seeded(), 0);
    assert_eq!(read_saved(&setup.state()).expect("read"), vec![own]);
}

#[test]
fn of_two_agent_checkpoints_for_one_file_and_flow_the_lower_is_seeded() {
    let setup = Setup::new();
    let app = setup.write_log("logs/app.log", 10);
    let path = setup.path("logs/app.log");
    // The agent's flows for one stream under two patterns both followed the file.
    setup.row(
        &setup.agent_flow("kinesis", "app-stream", "logs/*.log"),
        "logs/app.log",
        &agent_id(&path),
        60,
    );
    setup.row(
        &setup.agent_flow("kinesis", "app-stream", "logs/app.*"),
        "logs/app.log",
        &agent_id(&path),
        20,
    );
    let imported = import_into(&setup.state(), &setup.flows(), &setup.db_path()).expect("import");
    let actions: Vec<&Action> = imported
        .outcomes
        .iter()
        .map(|outcome| &outcome.action)
        .collect();
    assert_eq!(
        actions,
        vec![
            &Action::Seeded {
                offset: 20,
                size: app.len() as u64
            },
            &Action::Skipped(Skip::Duplicate { seeded: 20 })
        ]
    );
    let saved = read_saved(&setup.state()).expect("read");
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].offset, 20);
}

#[test]
fn rows_without_a_usable_id_offset_or_flow_are_skipped() {
    let setup = Setup::new();
    setup.write_log("logs/app.log", 3);
    let path = setup.path("logs/app.log");
    let flow = setup.agent_flow("kinesis", "app-stream", "logs/*.log");
    let rows = vec![
        AgentCheckpoint {
            flow: flow.clone(),
            path: path.clone(),
            file_id: Some("/dev/sda1:1234".into()),
            offset: Some(5),
        },
        AgentCheckpoint {
            flow: flow.clone(),
            path: path.clone(),
            file_id: Some(agent_id(&path)),
            offset: Some(-1),
        },
        AgentCheckpoint {
            flow: flow.clone(),
            path: path.clone(),
            file_id: None,
            offset: Some(5),
        },
        AgentCheckpoint {
            flow: "s3:bucket:/logs/*.log".into(),
            path: path.clone(),
            file_id: Some(agent_id(&path)),
            offset: Some(5),
        },
    ];
    let (checkpoints, outcomes) = seed(&setup.flows(), rows, Vec::new());
    assert!(checkpoints.is_empty());
    let mut reasons: Vec<Action> = outcomes.into_iter().map(|outcome| outcome.action).collect();
    reasons.sort_by_key(|action| format!("{action:?}"));
    assert_eq!(
        reasons,
        vec![
            Action::Skipped(Skip::BadFileId(None)),
            Action::Skipped(Skip::BadFileId(Some("/dev/sda1:1234".into()))),
            Action::Skipped(Skip::BadOffset(Some(-1))),
            Action::Skipped(Skip::UnknownFlow),
        ]
    );
}

#[test]
fn a_corrupt_store_is_left_for_kinship_to_handle() {
    let setup = Setup::new();
    setup.write_log("logs/app.log", 3);
    let path = setup.path("logs/app.log");
    setup.row(
        &setup.agent_flow("kinesis", "app-stream", "logs/*.log"),
        "logs/app.log",
        &agent_id(&path),
        5,
    );
    let snapshot = setup.state().join("checkpoints.json");
    fs::write(&snapshot, "{ not json").expect("corrupt");
    let error =
        import_into(&setup.state(), &setup.flows(), &setup.db_path()).expect_err("corrupt store");
    assert!(matches!(error, ImportError::CorruptStore { .. }), "{error}");
    assert_eq!(
        fs::read_to_string(&snapshot).expect("still there"),
        "{ not json",
        "not moved aside"
    );
}

#[test]
fn a_missing_database_changes_nothing() {
    let setup = Setup::new();
    let error = import_into(
        &setup.state(),
        &setup.flows(),
        &setup.path("no-such-database"),
    )
    .expect_err("missing");
    assert!(matches!(error, ImportError::MissingDatabase { .. }));
    assert!(!setup.state().join("checkpoints.json").exists());
}

#[test]
fn the_flow_must_send_to_the_same_kind_of_stream() {
    let setup = Setup::new();
    setup.write_log("fh/events.txt", 3);
    let path = setup.path("fh/events.txt");
    // The agent sent these files to a Kinesis stream named like kinship's Firehose stream.
    let rows = vec![AgentCheckpoint {
        flow: setup.agent_flow("kinesis", "delivery", "fh/*.txt"),
        path: path.clone(),
        file_id: Some(agent_id(&path)),
        offset: Some(5),
    }];
    let (_, outcomes) = seed(&setup.flows(), rows, Vec::new());
    assert_eq!(
        outcomes[0].action,
        Action::Skipped(Skip::NoFlow {
            kind: DestinationKind::Kinesis,
            destination: "delivery".into()
        })
    );
}
