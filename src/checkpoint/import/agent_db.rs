//! The Kinesis Agent's checkpoint database, read: a SQLite file (the agent's `checkpointFile`,
//! `/var/run/aws-kinesis-agent/checkpoints` by default) with one table, `FILE_CHECKPOINTS`, of
//! one row per flow and path: the file's identity as Java printed it, and the offset up to
//! which its records were sent.
//!
//! The database is opened read-only and waited for while the agent holds it, so it can be read
//! while the agent still runs; nothing in it is changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::ImportError;
use crate::config::DestinationKind;
use crate::record::FileId;

/// The Kinesis Agent's default `checkpointFile`.
pub const DEFAULT_AGENT_DB: &str = "/var/run/aws-kinesis-agent/checkpoints";

/// How long a read waits while the agent holds a lock on the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One row of `FILE_CHECKPOINTS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentCheckpoint {
    /// The agent flow's id: `kinesis:STREAM:PATTERN` or `fh:STREAM:PATTERN`.
    pub flow: String,
    /// The file's absolute path when the agent last saved its checkpoint.
    pub path: PathBuf,
    /// The file's identity as the agent printed it (`(dev=803,ino=1234)`); `None` if the row
    /// has none.
    pub file_id: Option<String>,
    /// Every byte before this offset was sent; `None` if the row has none.
    pub offset: Option<i64>,
}

/// Reads every row of the agent's checkpoint database at `path`, ordered by path and flow.
pub fn read_agent_db(path: &Path) -> Result<Vec<AgentCheckpoint>, ImportError> {
    // Opening a missing file read-only fails with a message that names no file: say it here.
    if !path.is_file() {
        return Err(ImportError::MissingDatabase {
            path: path.to_owned(),
        });
    }
    let sqlite = |source| ImportError::Database {
        path: path.to_owned(),
        source,
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let mut statement = connection
        .prepare(
            "select coalesce(flow, ''), coalesce(path, ''), fileId, offset \
             from FILE_CHECKPOINTS order by path, flow",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map([], |row| {
            Ok(AgentCheckpoint {
                flow: row.get(0)?,
                path: PathBuf::from(row.get::<_, String>(1)?),
                file_id: row.get(2)?,
                offset: row.get(3)?,
            })
        })
        .map_err(sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite)
}

/// What an agent flow's id says: where it sent and which files it followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFlow {
    pub kind: DestinationKind,
    /// The stream's name (the last part of an ARN).
    pub destination: String,
    /// The agent's `filePattern`, as the agent printed it.
    pub pattern: String,
}

impl AgentFlow {
    /// Parses an agent flow id: `kinesis:` or `fh:`, the stream, `:`, the file pattern. The
    /// pattern is an absolute path, so the stream ends at the first `:/` (an ARN has none);
    /// for a relative pattern, at the last `:`.
    pub fn parse(id: &str) -> Option<AgentFlow> {
        let (kind, rest) = if let Some(rest) = id.strip_prefix("kinesis:") {
            (DestinationKind::Kinesis, rest)
        } else if let Some(rest) = id.strip_prefix("fh:") {
            (DestinationKind::Firehose, rest)
        } else {
            return None;
        };
        let split = rest.find(":/").or_else(|| rest.rfind(':'))?;
        let (destination, pattern) = (&rest[..split], &rest[split + 1..]);
        let name = if destination.starts_with("arn:") {
            destination.rsplit('/').next().unwrap_or(destination)
        } else {
            destination
        };
        if name.is_empty() || pattern.is_empty() {
            return None;
        }
        Some(AgentFlow {
            kind,
            destination: name.to_owned(),
            pattern: pattern.to_owned(),
        })
    }
}

/// Parses the agent's file id: Java's Unix file key, `(dev=HEX,ino=DECIMAL)`: the device in
/// hexadecimal, the inode in decimal, each a Java `long` (so a huge inode prints negative).
pub fn parse_file_id(text: &str) -> Option<FileId> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (device, inode) = inner.split_once(',')?;
    let device = u64::from_str_radix(device.trim().strip_prefix("dev=")?, 16).ok()?;
    let inode = inode.trim().strip_prefix("ino=")?;
    let inode = inode
        .parse::<u64>()
        .ok()
        .or_else(|| inode.parse::<i64>().ok().map(|signed| signed as u64))?;
    Some(FileId { device, inode })
}

/// A file id as the agent prints it, to compare in messages with the one it recorded.
pub fn format_file_id(id: FileId) -> String {
    format!("(dev={:x},ino={})", id.device, id.inode as i64)
}

/// The table exactly as the Kinesis Agent creates it (its SQLiteFileCheckpointStore), for
/// tests to write databases the agent could have written.
#[cfg(test)]
pub(super) const AGENT_SCHEMA: &str = "create table if not exists FILE_CHECKPOINTS(       flow text,       path text,       fileId text,       lastModifiedTime bigint,       size bigint,       offset bigint,       lastUpdated datetime,       primary key (flow, path))";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_ids_name_the_service_the_stream_and_the_pattern() {
        assert_eq!(
            AgentFlow::parse("kinesis:app-stream:/var/log/app/*.log"),
            Some(AgentFlow {
                kind: DestinationKind::Kinesis,
                destination: "app-stream".into(),
                pattern: "/var/log/app/*.log".into(),
            })
        );
        assert_eq!(
            AgentFlow::parse("fh:delivery:/var/log/a:b/x.log"),
            Some(AgentFlow {
                kind: DestinationKind::Firehose,
                destination: "delivery".into(),
                pattern: "/var/log/a:b/x.log".into(),
            }),
            "a colon in the path stays in the pattern"
        );
        assert_eq!(
            AgentFlow::parse(
                "kinesis:arn:aws:kinesis:eu-west-1:123456789012:stream/other:/logs/*.log"
            )
            .map(|flow| flow.destination),
            Some("other".into()),
            "an ARN's stream name"
        );
        assert_eq!(
            AgentFlow::parse("kinesis:s:logs/app.log").map(|flow| flow.pattern),
            Some("logs/app.log".into()),
            "a relative pattern"
        );
        assert_eq!(AgentFlow::parse("s3:bucket:/logs/*.log"), None);
        assert_eq!(AgentFlow::parse("kinesis::/logs/*.log"), None);
        assert_eq!(AgentFlow::parse("kinesis:nopattern"), None);
    }

    #[test]
    fn file_ids_are_read_as_java_prints_them() {
        assert_eq!(
            parse_file_id("(dev=803,ino=1234)"),
            Some(FileId {
                device: 0x803,
                inode: 1234
            })
        );
        assert_eq!(
            parse_file_id("(dev=fd01,ino=-2)"),
            Some(FileId {
                device: 0xfd01,
                inode: u64::MAX - 1
            }),
            "a Java long prints an inode past 2^63 negative"
        );
        let id = FileId {
            device: 0x10302,
            inode: 98_765,
        };
        assert_eq!(parse_file_id(&format_file_id(id)), Some(id));
        assert_eq!(parse_file_id("dev=803,ino=1234"), None);
        assert_eq!(parse_file_id("(dev=zz,ino=1)"), None);
        assert_eq!(parse_file_id("(ino=1,dev=803)"), None);
    }

    #[test]
    fn rows_are_read_from_the_agents_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("checkpoints");
        let connection = Connection::open(&db).expect("create");
        connection.execute(AGENT_SCHEMA, []).expect("schema");
        connection
            .execute(
                "insert into FILE_CHECKPOINTS values(?, ?, ?, ?, ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
                ("kinesis:s:/logs/*.log", "/logs/b.log", "(dev=803,ino=7)", 1_700_000_000_000_i64, 500_i64, 120_i64),
            )
            .expect("row");
        connection
            .execute(
                "insert into FILE_CHECKPOINTS (flow, path) values('fh:d:/logs/*.log', '/logs/a.log')",
                [],
            )
            .expect("row without id or offset");
        // The agent still holds the database open.
        let rows = read_agent_db(&db).expect("read");
        assert_eq!(
            rows,
            vec![
                AgentCheckpoint {
                    flow: "fh:d:/logs/*.log".into(),
                    path: "/logs/a.log".into(),
                    file_id: None,
                    offset: None,
                },
                AgentCheckpoint {
                    flow: "kinesis:s:/logs/*.log".into(),
                    path: "/logs/b.log".into(),
                    file_id: Some("(dev=803,ino=7)".into()),
                    offset: Some(120),
                },
            ]
        );
        drop(connection);
    }

    #[test]
    fn a_missing_or_foreign_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nothing-here");
        let error = read_agent_db(&missing).expect_err("missing");
        assert!(matches!(error, ImportError::MissingDatabase { .. }));
        assert!(error.to_string().contains("nothing-here"), "{error}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .expect("create")
            .execute("create table t(x)", [])
            .expect("table");
        let error = read_agent_db(&other).expect_err("no agent table");
        assert!(matches!(error, ImportError::Database { .. }));
        assert!(error.to_string().contains("other.db"), "{error}");

        let text = dir.path().join("text");
        std::fs::write(&text, "not a database at all, just text\n".repeat(40)).expect("write");
        assert!(matches!(
            read_agent_db(&text),
            Err(ImportError::Database { .. })
        ));
    }
}
