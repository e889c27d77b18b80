//! A real Kinesis Data Streams implementation (kinesalite, from npm) for whole-agent tests.
//!
//! `install()` fetches kinesalite once per target directory; `Kinesalite::start()` runs a private,
//! in-memory server on a loopback port for one test and stops it on drop, even when the test
//! panics. The async helpers drive it with the real AWS SDK so tests can set streams up and read
//! back exactly what the agent delivered.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;

use super::emulator::{self, Installed, ServerLaunch, ServerProcess};

pub const VERSION: &str = "3.3.3";
pub const REGION: &str = "us-east-1";

/// Server options: streams become ACTIVE at once (tests never wait on status transitions) and
/// the shard limit is high enough for any test layout.
const SERVER_OPTIONS: &str = "{createStreamMs:0,deleteStreamMs:0,updateStreamMs:0,shardLimit:1000}";

/// The most records one GetRecords call may return (the service's own limit).
const GET_RECORDS_LIMIT: i32 = 10_000;

const NPM_DEADLINE: Duration = Duration::from_secs(600);
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// Exit code of the launcher script when the port is already taken (Linux's EADDRINUSE), so a
/// lost race for a free port is told apart from a real failure and retried.
const EXIT_ADDR_IN_USE: i32 = 98;

const NEEDS: &str =
    "the kinesalite tests need Node.js 20 and npm on PATH, and access to the npm registry";

/// Whether npm prefix `dir` holds the kinesalite package.
fn has_package(dir: &Path) -> bool {
    dir.join("node_modules/kinesalite/package.json").is_file()
}

/// Installs kinesalite (once per target directory, in `target/emulators/kinesalite`) and returns
/// the npm prefix it lives in: `<prefix>/node_modules/kinesalite` is the package.
///
/// Safe to call from many test threads and processes at once, and an interrupted install is
/// never mistaken for a finished one: see [`emulator::install_once`].
pub fn install() -> PathBuf {
    static INSTALLED: Installed = Installed::new();
    emulator::install_once(
        &INSTALLED,
        "kinesalite",
        &format!("kinesalite@{VERSION}\n"),
        has_package,
        run_npm_install,
    )
}

fn run_npm_install(staging: &Path) -> Result<(), String> {
    let log_path = emulator::emulators_dir().join("kinesalite-npm.log");
    // The log holds this attempt only.
    let _ = fs::remove_file(&log_path);
    let mut npm = Command::new("npm");
    npm.arg("install")
        .arg("--prefix")
        .arg(staging)
        .arg(format!("kinesalite@{VERSION}"))
        .args(["--no-audit", "--no-fund", "--no-update-notifier"]);
    let command_line = format!("{npm:?}");
    emulator::run_logged(npm, &log_path, NPM_DEADLINE, NEEDS)?;
    if !has_package(staging) {
        return Err(format!(
            "{command_line} succeeded but left no node_modules/kinesalite in {}. Its output ({}):\n{}",
            staging.display(),
            log_path.display(),
            fs::read_to_string(&log_path).unwrap_or_default()
        ));
    }
    Ok(())
}

/// A running kinesalite server on `127.0.0.1`, private to one test.
///
/// Dropping it kills the server. The server also exits by itself when its stdin closes, so it
/// does not outlive a test process that is killed before it can run destructors.
#[derive(Debug)]
pub struct Kinesalite {
    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url` and the agent's configuration.
    pub endpoint: String,
    pub port: u16,
    /// The server's stdout and stderr; kept when the test panics, removed otherwise.
    pub log_path: PathBuf,
    server: ServerProcess,
}

impl Kinesalite {
    /// Installs kinesalite if needed and starts a fresh in-memory server on a free loopback port.
    ///
    /// Returns once the server accepts TCP connections. Panics with the server's output if it
    /// cannot be started.
    pub fn start() -> Kinesalite {
        let prefix = install();
        let module = prefix.join("node_modules").join("kinesalite");
        let module_js = serde_json::to_string(&module.display().to_string())
            .unwrap_or_else(|e| panic!("cannot quote a path for JavaScript: {e}"));
        // kinesalite's own CLI binds every interface; this binds loopback only. The 'listening'
        // line tells the harness the server is ours and not some other process on the port.
        let spawn = |port: u16, stdout: Stdio, stderr: Stdio| {
            let script = format!(
                "const server = require({module_js})({SERVER_OPTIONS});\n\
                 server.on('error', (e) => {{\n\
                   console.error(e && e.stack || e);\n\
                   process.exit(e && e.code === 'EADDRINUSE' ? {EXIT_ADDR_IN_USE} : 1);\n\
                 }});\n\
                 server.listen({port}, '127.0.0.1', () => console.log('kinesalite listening on 127.0.0.1:{port}'));\n\
                 process.stdin.on('end', () => process.exit(0));\n\
                 process.stdin.resume();\n"
            );
            Command::new("node")
                .arg("-e")
                .arg(&script)
                .stdin(Stdio::piped())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .map_err(|e| {
                    format!(
                        "could not run `node` to start kinesalite: {e}; the kinesalite tests need Node.js 20 on PATH"
                    )
                })
        };
        let server = ServerLaunch {
            name: "kinesalite",
            deadline: STARTUP_DEADLINE,
            ready_means: "accept connections",
            spawn: &spawn,
            port_taken: &|status, _| status.code() == Some(EXIT_ADDR_IN_USE),
            ready: &|addr, output| {
                output.contains("kinesalite listening")
                    && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            },
        }
        .start();
        Kinesalite {
            endpoint: format!("http://127.0.0.1:{}", server.port()),
            port: server.port(),
            log_path: server.log_path().to_path_buf(),
            server,
        }
    }

    /// What the server has written to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.server.output()
    }

    /// The OS process id of the server.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// A Kinesis client for a kinesalite endpoint, with static dummy credentials.
///
/// The configuration is built by hand rather than loaded, so no credential chain runs: nothing
/// reads `~/.aws`, the environment or instance metadata.
pub async fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        // A wedged server should fail the test with a message, not hang it.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// Creates a stream and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateStream {name} ({shards} shards) failed: {}",
                DisplayErrorContext(&e)
            )
        });

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "DescribeStreamSummary {name} failed: {}",
                    DisplayErrorContext(&e)
                )
            });
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} is still {status:?} 20 s after CreateStream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes records with PutRecords, at most 500 per call, and panics if any record fails.
/// Returns `(shard_id, sequence_number)` for each record, in input order.
pub async fn put_records(
    client: &Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Vec<(String, String)> {
    let mut placed = Vec::with_capacity(records.len());
    for chunk in records.chunks(500) {
        let entries = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("a PutRecords entry with data and a partition key is complete")
            })
            .collect::<Vec<_>>();
        let output = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PutRecords of {} records to {stream} failed: {}",
                    chunk.len(),
                    DisplayErrorContext(&e)
                )
            });
        assert_eq!(
            output.failed_record_count().unwrap_or(0),
            0,
            "PutRecords to {stream} reported failed records: {:?}",
            output.records()
        );
        assert_eq!(
            output.records().len(),
            chunk.len(),
            "PutRecords to {stream} answered for a different number of records"
        );
        for entry in output.records() {
            placed.push((
                entry.shard_id().unwrap_or_default().to_string(),
                entry.sequence_number().unwrap_or_default().to_string(),
            ));
        }
    }
    placed
}

/// One record as stored in a stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub shard_id: String,
    pub sequence_number: String,
}

/// Reads every record of `stream` from TRIM_HORIZON, polling until at least `expected` records
/// have arrived or `deadline` has passed; then returns what it has (the caller asserts on it).
///
/// Records are grouped by shard in shard-id order and, within a shard, in sequence order.
pub async fn read_all(
    client: &Client,
    stream: &str,
    expected: usize,
    deadline: Duration,
) -> Vec<StoredRecord> {
    let end = Instant::now() + deadline;
    // Shard id -> (records read so far, iterator to continue from; None once the shard is
    // closed and fully read).
    let mut shards: BTreeMap<String, (Vec<StoredRecord>, Option<String>)> = BTreeMap::new();

    loop {
        // Shards are listed again every round so that shards created by resharding are read.
        for shard_id in list_shards(client, stream).await {
            if let Entry::Vacant(slot) = shards.entry(shard_id) {
                let iterator = trim_horizon_iterator(client, stream, slot.key()).await;
                slot.insert((Vec::new(), iterator));
            }
        }

        for (shard_id, (records, iterator)) in shards.iter_mut() {
            // Read this shard until it has caught up. kinesalite reports MillisBehindLatest 0
            // and a next iterator even on empty pages, so "caught up" is a short page while not
            // behind; the deadline bounds the loop should a writer keep the shard busy.
            while let Some(current) = iterator.take() {
                let page = client
                    .get_records()
                    .shard_iterator(&current)
                    .limit(GET_RECORDS_LIMIT)
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "GetRecords on {stream}/{shard_id} failed: {}",
                            DisplayErrorContext(&e)
                        )
                    });
                let count = page.records().len();
                for record in page.records() {
                    records.push(StoredRecord {
                        partition_key: record.partition_key().unwrap_or_default().to_string(),
                        data: record.data().as_ref().to_vec(),
                        shard_id: shard_id.clone(),
                        sequence_number: record.sequence_number().to_string(),
                    });
                }
                *iterator = page.next_shard_iterator().map(str::to_string);
                let behind = page.millis_behind_latest().unwrap_or(0) > 0;
                let full_page = count >= GET_RECORDS_LIMIT as usize;
                if !(behind || full_page) || Instant::now() >= end {
                    break;
                }
            }
        }

        let total: usize = shards.values().map(|(records, _)| records.len()).sum();
        if total >= expected || Instant::now() >= end {
            return shards
                .into_values()
                .flat_map(|(records, _)| records)
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn trim_horizon_iterator(client: &Client, stream: &str, shard_id: &str) -> Option<String> {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GetShardIterator TRIM_HORIZON for {stream}/{shard_id} failed: {}",
                DisplayErrorContext(&e)
            )
        })
        .shard_iterator()
        .map(str::to_string)
}

/// The ids of all shards of `stream`, open and closed, sorted.
pub async fn list_shards(client: &Client, stream: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // The service rejects StreamName together with NextToken.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.unwrap_or_else(|e| {
            panic!(
                "ListShards for {stream} failed: {}",
                DisplayErrorContext(&e)
            )
        });
        ids.extend(page.shards().iter().map(|s| s.shard_id().to_string()));
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    ids.sort();
    ids
}

/// Environment for a spawned agent process so that it talks to kinesalite with dummy
/// credentials and never reaches AWS: no instance metadata, and empty shared config and
/// credentials files, so a developer's `~/.aws` is ignored. Use together with
/// [`AGENT_ENV_REMOVE`], or call [`apply_agent_env`].
pub fn env_for_agent() -> Vec<(String, String)> {
    let missing = emulator::tmp_dir().join("empty-aws-dir");
    // Empty files rather than missing ones: the SDK warns about a named file that is absent.
    let _ = fs::create_dir_all(&missing);
    for name in ["config", "credentials"] {
        let _ = touch(&missing.join(name));
    }
    [
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", REGION.to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (
            "AWS_CONFIG_FILE",
            missing.join("config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            missing.join("credentials").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Variables a developer's shell may set that would steer a spawned agent away from the test
/// setup (another profile, a session token that does not match the dummy keys, a different
/// endpoint, web-identity or container credentials).
pub const AGENT_ENV_REMOVE: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_ENDPOINT_URL_STS",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_DEFAULT_REGION",
];

fn touch(path: &Path) -> std::io::Result<File> {
    fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Removes [`AGENT_ENV_REMOVE`] from `command`'s environment and sets [`env_for_agent`].
pub fn apply_agent_env(command: &mut Command) -> &mut Command {
    for name in AGENT_ENV_REMOVE {
        command.env_remove(name);
    }
    command.envs(env_for_agent())
}
