//! A real implementation of Firehose, S3, STS, IAM and a second Kinesis (moto, from PyPI) for
//! whole-agent tests.
//!
//! `install()` builds a Python virtual environment with `moto[server]` once per target
//! directory; `Moto::start()` runs a private, in-memory moto server on a loopback port for one
//! test and stops it on drop, even when the test panics. Setup and read-back go through boto3
//! (which moto installs) in the same environment, run as a short Python script per call, so
//! the tests need no AWS SDK crate for the services the agent itself does not link.
//!
//! What moto 5.2.5 does, as checked by `tests/moto_selftest.rs`:
//! - Firehose with an S3 destination writes one S3 object per `PutRecord`/`PutRecordBatch` call,
//!   before the call returns, holding the records' bytes concatenated exactly: no newline or
//!   other delimiter is added and bytes that are not UTF-8 are kept. Buffering hints are ignored.
//!   The object key is `YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<random uuid>`, so the
//!   order of keys is not the order of writes within a second; [`Moto::s3_objects`] therefore
//!   orders objects by when moto created them.
//! - Kinesis `PutRecords` (and `PutRecord`, `ListShards`) accept `StreamARN` in place of
//!   `StreamName`. Streams are ACTIVE as soon as `CreateStream` returns, and records can be read
//!   as soon as `PutRecords` returns.
//! - STS `GetCallerIdentity` with the dummy keys answers `arn:aws:sts::123456789012:user/moto`;
//!   with the keys `AssumeRole` returned it answers
//!   `arn:aws:sts::123456789012:assumed-role/<role>/<session>`. moto checks no signature,
//!   permission or trust policy, nor that an assumed role exists, so a denial cannot be tested
//!   against it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

use super::emulator::{self, Installed, ServerLaunch, ServerProcess};

pub const VERSION: &str = "5.2.5";
/// The KPL deaggregator from awslabs (PyPI), installed beside moto: an independent reader of
/// the aggregated records kinship writes.
pub const KINESIS_AGG: &str = "aws-kinesis-agg==1.2.3";
pub const REGION: &str = "us-east-1";
/// The account moto answers for (its default, unless `MOTO_ACCOUNT_ID` is set, which the
/// harness prevents).
pub const ACCOUNT: &str = "123456789012";

/// Dummy credentials: moto accepts any, and boto3 refuses to sign without some.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

const VENV_DEADLINE: Duration = Duration::from_secs(120);
const PIP_DEADLINE: Duration = Duration::from_secs(900);
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Bounds one boto3 script: a wedged server fails the test with a message instead of hanging it.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

/// The virtual environment's interpreter, below the directory `install()` returns.
fn venv_python(dir: &Path) -> PathBuf {
    dir.join("venv").join("bin").join("python")
}

/// Installs moto (once per target directory, in `target/emulators/moto`) and returns the
/// directory it lives in: its virtual environment is `<dir>/venv`.
///
/// Safe to call from many test threads and processes at once, and an interrupted install is
/// never mistaken for a finished one: see [`emulator::install_once`]. The environment is built
/// in a staging directory and renamed into place, so it is only ever run as `venv/bin/python`
/// (never through its console scripts, whose `#!` lines still name the staging directory): the
/// interpreter finds its packages relative to itself, so the rename does not break it.
pub fn install() -> PathBuf {
    static INSTALLED: Installed = Installed::new();
    emulator::install_once(
        &INSTALLED,
        "moto",
        &format!("moto[server]=={VERSION}\n{KINESIS_AGG}\n"),
        |dir| venv_python(dir).exists(),
        build_venv,
    )
}

/// Creates `<staging>/venv`, installs moto into it and checks that the version imports.
fn build_venv(staging: &Path) -> Result<(), String> {
    let needs = "the moto tests need Python 3 with the venv module as `python3` on PATH, \
                 and access to PyPI";
    let log_path = emulator::emulators_dir().join("moto-pip.log");
    let venv = staging.join("venv");
    let python = venv_python(staging);

    let mut venv_command = Command::new("python3");
    venv_command.arg("-m").arg("venv").arg(&venv);
    emulator::run_logged(venv_command, &log_path, VENV_DEADLINE, needs)?;

    let mut pip_command = Command::new(&python);
    pip_command
        .args([
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ])
        .arg(format!("moto[server]=={VERSION}"))
        .arg(KINESIS_AGG);
    emulator::run_logged(pip_command, &log_path, PIP_DEADLINE, needs)?;

    let mut check = Command::new(&python);
    check.args([
        "-c",
        "import boto3, moto, moto.server, aws_kinesis_agg.deaggregator; print(moto.__version__, end='')",
    ]);
    let output = check
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {}: {e}", python.display()))?;
    let found = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || found != VERSION {
        return Err(format!(
            "moto was installed in {} but importing it gave version {found:?} ({}), \
             not {VERSION}; stderr:\n{}",
            venv.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Removes variables that would steer moto or boto3 away from the test setup (another
/// profile or endpoint, a session token that does not match the dummy keys, another default
/// account for moto), points the shared AWS files at nothing and sets the dummy credentials.
fn isolate_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("MOTO_") || text.starts_with("BOTO_") {
            command.env_remove(&name);
        }
    }
    // Missing files: botocore reads nothing and says nothing.
    let nothing = emulator::tmp_dir().join("moto-no-aws-files");
    command
        .env("AWS_CONFIG_FILE", nothing.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", nothing.join("credentials"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// Runs moto's server with the given arguments and stops it when stdin reaches end of file,
/// which happens when the test process exits however it exits (its end of the pipe closes), so
/// a server never outlives the tests even when no destructor ran.
const SERVER_SCRIPT: &str = r#"
import os, sys, threading

def stop_when_parent_goes():
    sys.stdin.buffer.read()
    os._exit(0)

threading.Thread(target=stop_when_parent_goes, daemon=True).start()
from moto.server import main
main(sys.argv[1:])
"#;

/// Defined for every script run by [`Moto::python`].
const PRELUDE: &str = r#"
import base64, json, os, sys, time
import boto3
from botocore.config import Config

ENDPOINT = os.environ["MOTO_HARNESS_ENDPOINT"]
REGION = os.environ["AWS_DEFAULT_REGION"]
ACCOUNT = os.environ["MOTO_HARNESS_ACCOUNT"]
ARGS = sys.argv[1:]
_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3})

def client(service, **kwargs):
    """A boto3 client for this server; keyword arguments (such as other credentials) win."""
    options = {"endpoint_url": ENDPOINT, "region_name": REGION, "config": _CONFIG}
    options.update(kwargs)
    return boto3.client(service, **options)

def b64encode(data):
    return base64.b64encode(data).decode("ascii")

def b64decode(text):
    return base64.b64decode(text)

def wait_until(what, check, seconds=30):
    """Polls check() until it returns something true; fails after `seconds`."""
    end = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= end:
            raise SystemExit(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)

def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot reply a {type(value).__name__}; carry bytes with b64encode")

def reply(value):
    json.dump(value, sys.stdout, default=_json_default)
    sys.stdout.flush()

"#;

const CREATE_FIREHOSE_TO_S3: &str = r#"
stream, bucket = ARGS
client("s3").create_bucket(Bucket=bucket)
firehose = client("firehose")
arn = firehose.create_delivery_stream(
    DeliveryStreamName=stream,
    DeliveryStreamType="DirectPut",
    ExtendedS3DestinationConfiguration={
        "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose-delivery",
        "BucketARN": f"arn:aws:s3:::{bucket}",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
        "CompressionFormat": "UNCOMPRESSED",
        "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
    },
)["DeliveryStreamARN"]
wait_until(
    f"delivery stream {stream} to become ACTIVE",
    lambda: firehose.describe_delivery_stream(DeliveryStreamName=stream)
        ["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE",
)
reply(arn)
"#;

/// Lists the bucket through S3 and orders the objects by moto's own record of when each was
/// created: `/moto-api/data.json` lists every S3 object moto made, oldest first.
const S3_OBJECTS: &str = r#"
import urllib.request
(bucket,) = ARGS
s3 = client("s3")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    keys.extend(o["Key"] for o in page.get("Contents", []))
with urllib.request.urlopen(ENDPOINT + "/moto-api/data.json", timeout=60) as answer:
    state = json.load(answer)
created = {}
for index, key in enumerate(state.get("s3", {}).get("FakeKey", [])):
    if key.get("bucket_name") == bucket:
        created.setdefault(key.get("name"), index)
unknown = [k for k in keys if k not in created]
if unknown:
    raise SystemExit(f"moto's state does not list these objects of {bucket}: {unknown}")
keys.sort(key=lambda k: (created[k], k))
reply([b64encode(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys])
"#;

const CREATE_KINESIS_STREAM: &str = r#"
name, shards = ARGS
kinesis = client("kinesis")
kinesis.create_stream(StreamName=name, ShardCount=int(shards))

def active_summary():
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return summary if summary["StreamStatus"] == "ACTIVE" else None

reply(wait_until(f"stream {name} to become ACTIVE", active_summary)["StreamARN"])
"#;

const KINESIS_RECORDS: &str = r#"
(name,) = ARGS
kinesis = client("kinesis")
shard_ids = []
request = {"StreamName": name}
while True:
    page = kinesis.list_shards(**request)
    shard_ids.extend(s["ShardId"] for s in page["Shards"])
    token = page.get("NextToken")
    if not token:
        break
    # The service rejects StreamName together with NextToken.
    request = {"NextToken": token}
records = []
for shard_id in sorted(shard_ids):
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    # moto stores records before PutRecords returns, so an empty page means the shard is read.
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        if not page["Records"]:
            break
        records.extend([r["PartitionKey"], b64encode(r["Data"])] for r in page["Records"])
        iterator = page.get("NextShardIterator")
reply(records)
"#;

const CREATE_ROLE: &str = r#"
(name,) = ARGS
trust = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}
role = client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
reply(role["Role"]["Arn"])
"#;

/// A running moto server on `127.0.0.1`, private to one test.
///
/// Dropping it kills the server. The server also exits by itself when its stdin closes, so it
/// does not outlive a test process that is killed before it can run destructors.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    endpoint: String,
    /// The environment's interpreter, which also runs the boto3 scripts.
    python: PathBuf,
    server: ServerProcess,
}

impl Moto {
    /// Installs moto if needed and starts a fresh in-memory server on a free loopback port.
    ///
    /// Returns once the server answers HTTP. Panics with the server's output if it cannot be
    /// started.
    pub fn start() -> Moto {
        let python = venv_python(&install());
        let spawn = |port: u16, stdout: Stdio, stderr: Stdio| {
            let mut command = Command::new(&python);
            command
                .arg("-c")
                .arg(SERVER_SCRIPT)
                .args(["-H", "127.0.0.1", "-p"])
                .arg(port.to_string());
            isolate_env(&mut command)
                .stdin(Stdio::piped())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .map_err(|e| format!("could not run {} to start moto: {e}", python.display()))
        };
        let server = ServerLaunch {
            name: "moto",
            deadline: STARTUP_DEADLINE,
            ready_means: "answer HTTP",
            spawn: &spawn,
            port_taken: &|_, output| output.contains("Address already in use"),
            // The banner names our port only once our process has bound it, so a server of
            // someone else that took the port in between is not mistaken for ours.
            ready: &|addr, output| {
                output.contains(&format!("Running on http://127.0.0.1:{}", addr.port()))
                    && answers_http(addr)
            },
        }
        .start();
        Moto {
            endpoint: format!("http://127.0.0.1:{}", server.port()),
            python,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url` of an SDK client or the agent's configuration.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The file that holds the server's output; kept when the test panics, removed otherwise.
    pub fn log_path(&self) -> &Path {
        self.server.log_path()
    }

    /// The OS process id of the server.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// What the server has written to stdout and stderr so far (one line per request).
    pub fn output(&self) -> String {
        self.server.output()
    }

    /// Runs `script` with boto3 against this server and returns the JSON value it replied.
    ///
    /// Before `script` runs, a prelude defines: `ENDPOINT`, `REGION`, `ACCOUNT`; `ARGS` (the
    /// strings in `args`); `client(service, **kwargs)`, a boto3 client for this server with the
    /// dummy credentials (keyword arguments override, e.g. `aws_session_token=`);
    /// `b64encode(bytes) -> str` and `b64decode(str) -> bytes` for carrying bytes through JSON;
    /// `wait_until(what, check, seconds=30)`, which polls `check()` until it is truthy; and
    /// `reply(value)`, which prints `value` as the JSON this function returns (`null` if the
    /// script never calls it; timestamps become ISO 8601 text). Panics with the script's stderr
    /// if it fails.
    pub fn python(&self, script: &str, args: &[&str]) -> Value {
        let program = format!("{PRELUDE}{script}");
        let mut command = Command::new(&self.python);
        command.arg("-c").arg(&program).args(args);
        isolate_env(&mut command)
            .env("MOTO_HARNESS_ENDPOINT", &self.endpoint)
            .env("MOTO_HARNESS_ACCOUNT", ACCOUNT);
        let run = run_captured(command, SCRIPT_DEADLINE).unwrap_or_else(|e| {
            panic!(
                "could not run a boto3 script against moto at {}: {e}",
                self.endpoint
            )
        });
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        let status = match run.status {
            Some(status) => status,
            None => panic!(
                "a boto3 script against moto at {} did not finish within {SCRIPT_DEADLINE:?}; \
                 args {args:?}; stderr:\n{stderr}\nscript:\n{script}",
                self.endpoint
            ),
        };
        assert!(
            status.success(),
            "a boto3 script against moto at {} failed ({status}); args {args:?}; \
             stderr:\n{stderr}\nscript:\n{script}",
            self.endpoint
        );
        if stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "a boto3 script against moto at {} printed something that is not JSON ({e}): \
                 {stdout:?}; args {args:?}; script:\n{script}",
                self.endpoint
            )
        })
    }

    /// Creates S3 bucket `bucket` and a DirectPut Firehose delivery stream `stream` that writes
    /// to it, and returns the delivery stream's ARN.
    ///
    /// Compression `UNCOMPRESSED` and `NoEncryption` are set explicitly: without them moto's
    /// `DescribeDeliveryStream` answer cannot be parsed by the AWS SDK for Rust. The buffering
    /// hints are the smallest the API has always accepted (1 MiB, 60 s); moto ignores them and
    /// writes one object per call at once (see the module documentation). The stream's role
    /// ARN is never checked by moto, so no role is created.
    pub fn create_firehose_to_s3(&self, stream: &str, bucket: &str) -> String {
        expect_string(
            self.python(CREATE_FIREHOSE_TO_S3, &[stream, bucket]),
            "CreateDeliveryStream",
        )
    }

    /// The body of every object in `bucket`, in the order moto created the objects.
    ///
    /// For a Firehose destination that is one element per `PutRecordBatch`/`PutRecord` call,
    /// in call order; concatenated they are everything delivered. The keys cannot give that
    /// order (they hold the time to the second and then a random UUID), so the order comes
    /// from moto's internal state (`/moto-api/data.json`); the listing itself comes from S3.
    pub fn s3_objects(&self, bucket: &str) -> Vec<Vec<u8>> {
        let value = self.python(S3_OBJECTS, &[bucket]);
        let Value::Array(items) = value else {
            panic!("listing s3://{bucket} replied {value}, not a list");
        };
        items
            .iter()
            .map(|item| decode_base64(item, &format!("an object of s3://{bucket}")))
            .collect()
    }

    /// Creates Kinesis stream `name` with `shards` shards in moto and returns its ARN. The
    /// stream is ACTIVE when this returns.
    pub fn create_kinesis_stream(&self, name: &str, shards: u32) -> String {
        expect_string(
            self.python(CREATE_KINESIS_STREAM, &[name, &shards.to_string()]),
            "CreateStream",
        )
    }

    /// Every record of Kinesis stream `name` as `(partition key, data)`: shard by shard in
    /// shard-id order, each shard from TRIM_HORIZON in sequence order.
    ///
    /// Reads what is stored now; to wait for records, poll this with a deadline.
    pub fn kinesis_records(&self, name: &str) -> Vec<(String, Vec<u8>)> {
        let value = self.python(KINESIS_RECORDS, &[name]);
        let Value::Array(items) = value else {
            panic!("reading Kinesis stream {name} replied {value}, not a list");
        };
        items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(key), data]) => (
                    key.clone(),
                    decode_base64(data, &format!("a record of Kinesis stream {name}")),
                ),
                _ => panic!("reading Kinesis stream {name} replied the record {item}"),
            })
            .collect()
    }

    /// Creates IAM role `name` whose trust policy lets any principal assume it, and returns
    /// its ARN (`arn:aws:iam::123456789012:role/<name>`).
    pub fn create_role(&self, name: &str) -> String {
        expect_string(self.python(CREATE_ROLE, &[name]), "CreateRole")
    }
}

/// Whether an HTTP server answers a request on `addr` (moto's dashboard page, which needs no
/// signature).
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..] == b"200"
}

/// What a finished (or killed) process wrote.
struct Captured {
    /// `None` when the deadline passed and the process was killed.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `command` with stdout and stderr captured, killing it once `deadline` has passed.
fn run_captured(mut command: Command, deadline: Duration) -> std::io::Result<Captured> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Both pipes are drained on their own threads so that a full pipe never stalls the child.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = emulator::wait_with_deadline(&mut child, deadline)?;
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    Ok(Captured {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn expect_string(value: Value, operation: &str) -> String {
    match value {
        Value::String(text) => text,
        other => panic!("{operation} in moto replied {other}, not a string"),
    }
}

fn decode_base64(value: &Value, what: &str) -> Vec<u8> {
    let Some(text) = value.as_str() else {
        panic!("{what} came back as {value}, not base64 text");
    };
    BASE64
        .decode(text)
        .unwrap_or_else(|e| panic!("{what} came back as invalid base64 ({e}): {text:?}"))
}
