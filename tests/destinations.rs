//! Destinations and AWS access, with the real binary: start-up checks, a record limit learnt
//! from the stream, proxies, dry runs, and secrets kept out of every log. These use the
//! Kinesis-compatible fault server where an emulator cannot produce the answer (a stream's
//! `MaxRecordSizeInKiB`, a refused describe); `tests/aws_emulated.rs` covers Firehose, STS and
//! several endpoints with moto.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::{run_command_with_env, saved_offset, Agent};
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::{FaultKinesis, Faults};
use crate::support::files::open_log;
use crate::support::lines::{append_lines, numbered, numbered_range};
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(60);

/// The topic of every sample line here.
const TOPIC: &str = "destinations";

/// A config shipping `<dir>/logs/*` from their start; `aws` lines go in the top-level aws
/// block, `flow` lines in the flow, `top` lines at the top.
fn config(dir: &Path, aws: &[&str], flow: &[&str], top: &[&str]) -> PathBuf {
    let app = Flow::new("app", format!("{}/logs/*", dir.display())).keys(&[
        "initial_position: start_of_file",
        "max_batch_age: 100ms",
        "poll_interval: 100ms",
        "max_in_flight: 1",
    ]);
    AgentConfig::new(dir)
        .tops(&["progress_interval: 1s", "shutdown_grace: 10s"])
        .aws_keys(&[
            "region: us-east-1",
            "request_timeout: 2s",
            "connect_timeout: 1s",
        ])
        .aws_keys(aws)
        .tops(top)
        .flow(app.keys(flow))
        .write()
}

fn logs(dir: &Path) -> PathBuf {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("logs dir");
    logs
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn the_streams_own_record_limit_is_learnt_at_start_up() {
    let server = FaultKinesis::start(Faults {
        max_record_size_kib: Some(2),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let config = config(
        dir.path(),
        &[&endpoint, "check_identity: false"],
        &["kinesis_stream: limited"],
        &[],
    );
    let mut long = vec![b'x'; 5000];
    long.push(b'\n');
    let mut file = open_log(&log);
    file.write_all(&numbered(TOPIC, 0)).expect("write");
    file.write_all(&long).expect("write");
    file.write_all(&numbered(TOPIC, 1)).expect("write");
    drop(file);
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("Record size limit taken from the stream.", DEADLINE);
    assert!(output.contains("max_record_bytes=2048"), "{output}");
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 3));
    let accepted = server.accepted();
    assert_eq!(accepted[0], numbered(TOPIC, 0));
    assert_eq!(accepted[2], numbered(TOPIC, 1));
    // Cut to fit 2 KiB beside the largest partition key, and ended with the terminator.
    assert!(accepted[1].len() <= 2048 - 20, "{}", accepted[1].len());
    assert!(accepted[1].len() > 1900, "{}", accepted[1].len());
    assert!(accepted[1].ends_with(b"x\n"));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
}

#[test]
fn a_refused_describe_is_a_warning_and_records_still_flow() {
    let server = FaultKinesis::start(Faults {
        describe_denied: true,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let config = config(
        dir.path(),
        &[&endpoint, "check_identity: false"],
        &["kinesis_stream: private"],
        &[],
    );
    let expected = append_lines(&log, numbered_range(TOPIC, 0..100));
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("Cannot describe the destination", DEADLINE);
    let warning = output
        .lines()
        .find(|line| line.contains("Cannot describe the destination"))
        .unwrap_or_default();
    assert!(
        warning.contains("WARN") && warning.contains("kinesis:DescribeStreamSummary"),
        "{warning}"
    );
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 100));
    assert_eq!(server.accepted(), expected);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert!(!agent.output().contains("ERROR"), "{}", agent.output());
}

#[test]
fn requests_go_through_the_proxy_named_in_the_environment() {
    let proxy = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    // A host name that does not resolve: the records can only arrive through the proxy.
    let config = config(
        dir.path(),
        &[
            "endpoint_url: http://kinesis.proxied.invalid:4567",
            "allow_insecure_http: true",
            "check_identity: false",
        ],
        &["kinesis_stream: proxied"],
        &[],
    );
    let expected = append_lines(&log, numbered_range(TOPIC, 0..200));
    let proxy_url = proxy.endpoint();
    let mut agent = Agent::start_with(
        &config,
        dir.path(),
        None,
        &[],
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")],
    );
    assert!(
        holds_within(DEADLINE, || proxy.accepted_len() >= 200),
        "{}",
        agent.output()
    );
    assert_eq!(proxy.accepted(), expected);
    agent.wait_for_log("Destination found.", DEADLINE);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
}

#[test]
fn plain_http_to_another_host_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        dir.path(),
        &["endpoint_url: http://kinesis.example.com"],
        &["kinesis_stream: s"],
        &[],
    );
    let output = run_command_with_env(&["check", "--config", &config.display().to_string()], &[]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("aws.endpoint_url: `http://kinesis.example.com` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true"),
        "{stderr}"
    );
}

#[test]
fn a_dry_run_writes_batches_and_advances_checkpoints_without_aws() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    // No endpoint answers, no credentials, no region in the environment: a dry run needs none.
    let config = config(
        dir.path(),
        &[&format!("endpoint_url: http://127.0.0.1:{}", closed_port())],
        &["kinesis_stream: never", "partition_key: deterministic"],
        &[],
    );
    let expected = append_lines(&log, numbered_range(TOPIC, 0..1000));
    let mut agent = Agent::start_with(
        &config,
        dir.path(),
        None,
        &["--dry-run"],
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    let total: u64 = expected.iter().map(|l| l.len() as u64).sum();
    assert!(
        holds_within(DEADLINE, || saved_offset(dir.path()) == Some(total)),
        "{}",
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let stdout = fs::read_to_string(&agent.stdout).expect("stdout");
    let mut records = Vec::new();
    for batch in stdout.lines() {
        let batch: serde_json::Value =
            serde_json::from_str(batch).expect("one JSON batch per line");
        assert_eq!(batch["flow"], "app");
        assert_eq!(batch["destination"], "kinesis_stream");
        assert_eq!(batch["stream"], "never");
        for record in batch["records"].as_array().expect("records") {
            assert_eq!(record["partition_key"].as_str().map(str::len), Some(16));
            records.push(record["data"].as_str().expect("text").as_bytes().to_vec());
        }
    }
    assert_eq!(records, expected);
    let output = agent.output();
    assert!(output.contains("Dry run"), "{output}");
    assert!(!output.contains("ERROR"), "{output}");
}

#[test]
fn a_dry_run_flow_writes_to_the_configured_file_beside_a_real_one() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let output_path = dir.path().join("dry.jsonl");
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let dry_output = format!("dry_run_output: {}", output_path.display());
    let mut config_text = fs::read_to_string(config(
        dir.path(),
        &[&endpoint, "check_identity: false"],
        &["kinesis_stream: real"],
        &[&dry_output],
    ))
    .expect("config");
    config_text.push_str(&format!(
        "  - name: rehearsal\n    files: {}/logs/*\n    firehose_stream: planned\n    initial_position: start_of_file\n    max_in_flight: 1\n    dry_run: true\n",
        dir.path().display()
    ));
    let config = dir.path().join("two.yaml");
    fs::write(&config, config_text).expect("config");
    let expected = append_lines(&log, numbered_range(TOPIC, 0..300));
    let mut agent = Agent::start(&config, dir.path());
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 300));
    assert!(holds_within(DEADLINE, || {
        fs::read_to_string(&output_path)
            .unwrap_or_default()
            .matches("GET /destinations/")
            .count()
            >= 300
    }));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert_eq!(server.accepted(), expected);
    let written = fs::read_to_string(&output_path).expect("dry-run file");
    let mut records = Vec::new();
    for batch in written.lines() {
        let batch: serde_json::Value = serde_json::from_str(batch).expect("JSON");
        assert_eq!(batch["flow"], "rehearsal");
        assert_eq!(batch["destination"], "firehose_stream");
        for record in batch["records"].as_array().expect("records") {
            assert!(record.get("partition_key").is_none(), "{record}");
            records.push(record["data"].as_str().expect("text").as_bytes().to_vec());
        }
    }
    assert_eq!(records, expected);
}

/// The ids written by one dry run of `config` over the lines of `dir`, in order, each with the
/// record's data.
fn dry_run_ids(config: &Path, dir: &Path, total: u64) -> Vec<(String, String)> {
    let mut agent = Agent::start_with(
        config,
        dir,
        None,
        &["--dry-run"],
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    );
    assert!(
        holds_within(DEADLINE, || saved_offset(dir) == Some(total)),
        "{}",
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let stdout = fs::read_to_string(&agent.stdout).expect("stdout");
    let mut ids = Vec::new();
    for batch in stdout.lines() {
        let batch: serde_json::Value = serde_json::from_str(batch).expect("one JSON batch");
        assert_eq!(batch["destination"], "firehose_stream");
        for record in batch["records"].as_array().expect("records") {
            let data = record["data"].as_str().expect("text");
            let envelope: serde_json::Value = serde_json::from_str(data.trim_end())
                .unwrap_or_else(|error| panic!("{data:?} is not JSON: {error}"));
            let id = envelope["record_id"]
                .as_str()
                .expect("a record_id")
                .to_owned();
            let line = envelope["data"].as_str().expect("the line").to_owned();
            ids.push((id, line));
        }
    }
    ids
}

#[test]
fn a_firehose_record_carries_its_stable_id_and_a_resend_carries_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let config = config(
        dir.path(),
        &[&format!("endpoint_url: http://127.0.0.1:{}", closed_port())],
        &[
            "firehose_stream: planned",
            "processors:",
            "  - type: add_metadata",
            "    record_id: true",
            "    envelope: true",
        ],
        &[],
    );
    let expected = append_lines(&log, numbered_range(TOPIC, 0..500));
    let total: u64 = expected.iter().map(|l| l.len() as u64).sum();
    let first = dry_run_ids(&config, dir.path(), total);
    // Each line once, in order, each id naming where its line starts.
    let mut offset = 0;
    assert_eq!(first.len(), expected.len());
    for ((id, line), sent) in first.iter().zip(&expected) {
        assert_eq!(format!("{line}\n").as_bytes(), sent.as_slice());
        assert!(
            id.ends_with(&format!("-{offset}")),
            "{id} for offset {offset}"
        );
        offset += sent.len();
    }
    // Sent again from the start (the checkpoints forgotten, as after a lost acknowledgement):
    // the same records carry the same ids, so a consumer drops them as duplicates.
    fs::remove_dir_all(dir.path().join("state")).expect("forget checkpoints");
    let again = dry_run_ids(&config, dir.path(), total);
    assert_eq!(again, first);
}

const SECRET_KEY: &str = "kinshipTestSecret/MustNeverBeLogged+0123456789";
const SESSION_TOKEN: &str = "kinshipTestSessionTokenMustNeverBeLogged";
const EXTERNAL_ID: &str = "kinship-external-id-never-logged";

#[test]
fn secrets_never_appear_in_output_and_a_readable_key_file_is_flagged() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let sts_port = closed_port();
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let secret = format!("secret_access_key: {SECRET_KEY}");
    let token = format!("session_token: {SESSION_TOKEN}");
    let sts = format!("sts_endpoint_url: http://127.0.0.1:{sts_port}");
    let config = config(
        dir.path(),
        &[
            &endpoint,
            &sts,
            "access_key_id: AKIAKINSHIPTESTKEY01",
            &secret,
            &token,
        ],
        &["kinesis_stream: secret"],
        &[],
    );
    let mut role_config_text = fs::read_to_string(&config).expect("config");
    role_config_text = role_config_text.replace(
        "flows:",
        &format!("  assume_role:\n    role_arn: arn:aws:iam::123456789012:role/kinship\n    external_id: {EXTERNAL_ID}\nflows:"),
    );
    let role_config = dir.path().join("role.yaml");
    fs::write(&role_config, role_config_text).expect("config");
    set_mode(&config, 0o644);
    set_mode(&role_config, 0o600);

    let expected = append_lines(&log, numbered_range(TOPIC, 0..50));
    // The identity check fails (STS is not listening); the agent says so and delivers anyway.
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("sts:GetCallerIdentity", DEADLINE);
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 50));
    assert_eq!(server.accepted(), expected);
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    let run_output = agent.output();
    assert!(
        run_output.contains("other users may read it"),
        "{run_output}"
    );

    let path = config.display().to_string();
    let check = run_command_with_env(&["check", "--online", "--config", &path], &[]);
    let role_path = role_config.display().to_string();
    let role_check = run_command_with_env(
        &["check", "--online", "--config", &role_path],
        &[("RUST_LOG", "trace")],
    );
    assert_eq!(check.status.code(), Some(69));
    assert_eq!(role_check.status.code(), Some(69));
    let role_stderr = String::from_utf8_lossy(&role_check.stderr);
    assert!(
        !role_stderr.contains("other users may read it"),
        "{role_stderr}"
    );
    let at_info = format!(
        "{run_output}\n{}\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        String::from_utf8_lossy(&role_check.stdout),
    );
    for shown in [
        SECRET_KEY,
        SESSION_TOKEN,
        EXTERNAL_ID,
        "AKIAKINSHIPTESTKEY01",
    ] {
        assert!(
            !at_info.contains(shown),
            "`{shown}` appears in the output:\n{at_info}"
        );
    }
    // Even the SDK's own trace output keeps every secret out (tests/secrets.rs runs the whole
    // matrix of levels and credential sources).
    for secret in [
        SECRET_KEY,
        SESSION_TOKEN,
        EXTERNAL_ID,
        "AKIAKINSHIPTESTKEY01",
    ] {
        assert!(
            !role_stderr.contains(secret),
            "`{secret}` appears in the trace output"
        );
    }
    assert!(role_stderr.contains("TRACE"), "{role_stderr}");
}

#[test]
fn check_online_reports_a_failed_identity_check_and_exits_69() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let sts_port = closed_port();
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let sts = format!("sts_endpoint_url: http://127.0.0.1:{sts_port}");
    let config = config(dir.path(), &[&endpoint, &sts], &["kinesis_stream: s"], &[]);
    let output = run_command_with_env(
        &[
            "check",
            "--online",
            "--config",
            &config.display().to_string(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(69), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "flow `app`: Kinesis stream `s`: FAILED: sts:GetCallerIdentity failed: cannot reach STS at http://127.0.0.1:{sts_port}"
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(
        stdout.contains(
            "check the network, any proxy (HTTPS_PROXY, NO_PROXY) and aws.sts_endpoint_url"
        ),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 of 1 destination check(s) failed"),
        "{stderr}"
    );

    // Without the identity check, the same config passes.
    let config = self::config(
        dir.path(),
        &[&endpoint, "check_identity: false"],
        &["kinesis_stream: s"],
        &[],
    );
    let output = run_command_with_env(
        &[
            "check",
            "--online",
            "--config",
            &config.display().to_string(),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("flow `app`: Kinesis stream `s`: ok (identity not checked; status ACTIVE)"),
        "{stdout}"
    );
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn an_assumed_role_is_renewed_before_its_credentials_expire() {
    // Credentials that last less than the renewal margin (5 minutes) must be renewed rather
    // than used until they lapse: here, before every call.
    let server = FaultKinesis::start(Faults {
        sts_credentials_lifetime: Some(Duration::from_secs(100)),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let sts = format!("sts_endpoint_url: {}", server.endpoint());
    let config = config(
        dir.path(),
        &[
            &endpoint,
            &sts,
            "assume_role:",
            "  role_arn: arn:aws:iam::123456789012:role/fault",
            "  duration: 15m",
        ],
        &["kinesis_stream: renewed", "max_batch_records: 100"],
        &[],
    );
    let expected = append_lines(&log, numbered_range(TOPIC, 0..1000));
    let mut agent = Agent::start(&config, dir.path());
    let output = agent.wait_for_log("AWS credentials work.", DEADLINE);
    assert!(
        output.contains("arn=arn:aws:sts::123456789012:assumed-role/fault/kinship"),
        "{output}"
    );
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 1000));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert_eq!(server.accepted(), expected);
    let sts_log = server.sts_log();
    assert!(sts_log.signed.len() >= 10, "{sts_log:?}");
    assert!(
        sts_log.issued.len() > sts_log.signed.len() / 2,
        "{sts_log:?}"
    );
    for (key, at) in &sts_log.signed {
        let (_, expires) = sts_log
            .issued
            .iter()
            .find(|(issued, _)| issued == key)
            .unwrap_or_else(|| panic!("{key} was not issued by STS: {sts_log:?}"));
        let left = expires.duration_since(*at).unwrap_or_default();
        assert!(
            left > Duration::from_secs(90),
            "{key} was used {left:?} before it expired"
        );
    }
}

#[test]
fn a_profile_and_static_keys_sign_with_their_own_credentials() {
    let by_profile = FaultKinesis::start(Faults::default());
    let by_keys = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = dir.path().join("credentials");
    fs::write(
        &credentials,
        "[shipping]\naws_access_key_id = AKIAPROFILEKEY000001\naws_secret_access_key = profile-secret\n",
    )
    .expect("credentials file");
    let log = logs(dir.path()).join("app.log");
    let mut text = fs::read_to_string(config(
        dir.path(),
        &["check_identity: false"],
        &[
            "kinesis_stream: by-profile",
            "aws:",
            &format!("  endpoint_url: {}", by_profile.endpoint()),
            "  profile: shipping",
        ],
        &[],
    ))
    .expect("config");
    text.push_str(&format!(
        "  - name: keys\n    files: {}/logs/*\n    kinesis_stream: by-keys\n    initial_position: start_of_file\n    max_batch_age: 100ms\n    aws:\n      endpoint_url: {}\n      access_key_id: AKIASTATICKEY0000001\n      secret_access_key: static-secret\n",
        dir.path().display(),
        by_keys.endpoint()
    ));
    let config = dir.path().join("two.yaml");
    fs::write(&config, text).expect("config");
    set_mode(&config, 0o600);
    let expected = append_lines(&log, numbered_range(TOPIC, 0..100));
    let credentials_path = credentials.display().to_string();
    let mut agent = Agent::start_with(
        &config,
        dir.path(),
        None,
        &[],
        &[("AWS_SHARED_CREDENTIALS_FILE", &credentials_path)],
    );
    assert!(holds_within(DEADLINE, || by_profile.accepted_len() >= 100
        && by_keys.accepted_len() >= 100));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    assert_eq!(by_profile.accepted(), expected);
    assert_eq!(by_keys.accepted(), expected);
    let signers = |server: &FaultKinesis| {
        let mut keys: Vec<String> = server
            .sts_log()
            .signed
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.dedup();
        keys
    };
    // The environment's keys ("test") are ignored by both flows.
    assert_eq!(signers(&by_profile), ["AKIAPROFILEKEY000001"]);
    assert_eq!(signers(&by_keys), ["AKIASTATICKEY0000001"]);
    let output = agent.output();
    assert!(output.contains("credentials=profile shipping"), "{output}");
    assert!(output.contains("credentials=static key AKIA…"), "{output}");
    assert!(output.contains("distinct_settings=2"), "{output}");
    assert!(!output.contains("other users may read it"), "{output}");
}

#[test]
fn firehose_partial_failures_resend_only_the_refused_records() {
    let server = FaultKinesis::start(Faults {
        record_throttle_percent: 20.0,
        call_throttle_percent: 5.0,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let log = logs(dir.path()).join("app.log");
    let endpoint = format!("endpoint_url: {}", server.endpoint());
    let config = config(
        dir.path(),
        &[&endpoint, "check_identity: false"],
        &["firehose_stream: partial", "retry_max_backoff: 200ms"],
        &[],
    );
    let expected = append_lines(&log, numbered_range(TOPIC, 0..5000));
    let mut agent = Agent::start(&config, dir.path());
    assert!(
        holds_within(Duration::from_secs(120), || server.accepted_len() >= 5000),
        "{}",
        agent.output()
    );
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    let stats = server.stats();
    assert!(stats.record_throttled > 500, "{stats:?}");
    // Every line exactly once: a refused record is sent again alone, never its whole batch.
    let mut accepted = server.accepted();
    assert_eq!(accepted.len(), expected.len());
    accepted.sort();
    assert_eq!(accepted, expected);
}
