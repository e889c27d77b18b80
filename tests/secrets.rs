//! Secrets never reach any output: the real binary, run and `check --online`, against moto
//! (Kinesis and STS), at info, debug and trace, in text and JSON, to the console and to
//! `log_file`, with every way credentials arrive. Everything it prints and writes is searched:
//! standard output and error, the log file, the state directory, dry-run output and `/metrics`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::{run_command_with_env, saved_offset, Agent};
use crate::support::http::{free_port, get};
use crate::support::moto::Moto;
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(120);

const KEY_ID: &str = "AKIAKINSHIPMATRIX001";
const SECRET: &str = "kinshipMatrixSecret/0123456789+abcdefghij";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEKinshipMatrixToken/0123456789+ABCDEFGHIJ==";
const EXTERNAL_ID: &str = "kinship-matrix-external-id-0042";
const PROFILE_KEY_ID: &str = "AKIAKINSHIPPROFILE01";
const PROFILE_SECRET: &str = "kinshipProfileSecret/9876543210+zyxwvuts";
const PROFILE_TOKEN: &str = "IQoJProfileSessionToken/kinship+0123456789abcdef";
const ENV_KEY_ID: &str = "AKIAKINSHIPENVIRON01";
const ENV_SECRET: &str = "kinshipEnvironmentSecret/13579+abcdefghijk";
const ENV_TOKEN: &str = "IQoJEnvironmentSessionToken/kinship+9876543210fedcba";

/// Every secret any case holds: none may appear in any case's output.
const ALL_SECRETS: [&str; 10] = [
    KEY_ID,
    SECRET,
    TOKEN,
    EXTERNAL_ID,
    PROFILE_KEY_ID,
    PROFILE_SECRET,
    PROFILE_TOKEN,
    ENV_KEY_ID,
    ENV_SECRET,
    ENV_TOKEN,
];

/// moto's session tokens for assumed roles all begin so.
const MOTO_SESSION_TOKEN_PREFIX: &str = "FQoGZXIvYXdzEBYaD";

const CONFIG_NAME: &str = "kinship.yaml";

const LEVELS: [&str; 3] = ["info", "debug", "trace"];

/// One way credentials reach the agent.
struct Credentials {
    name: &'static str,
    /// Lines of the top-level `aws` block besides region and endpoints.
    aws: Vec<String>,
    /// Environment set for the agent on top of the test's.
    env: Vec<(&'static str, String)>,
    /// Whether records are expected to arrive (moto refuses nothing, but a key id with a `/`
    /// in it cannot be parsed out of the signature).
    delivers: bool,
}

fn cases(dir: &Path, role_arn: &str) -> Vec<Credentials> {
    let credentials_file = dir.join("aws-credentials");
    fs::write(
        &credentials_file,
        format!("[shipping]\naws_access_key_id = {PROFILE_KEY_ID}\naws_secret_access_key = {PROFILE_SECRET}\naws_session_token = {PROFILE_TOKEN}\n"),
    )
    .expect("write credentials file");
    let keys = vec![
        format!("access_key_id: {KEY_ID}"),
        format!("secret_access_key: {SECRET}"),
    ];
    vec![
        Credentials {
            name: "static keys",
            aws: keys.clone(),
            env: Vec::new(),
            delivers: true,
        },
        Credentials {
            name: "session token",
            aws: [keys.clone(), vec![format!("session_token: {TOKEN}")]].concat(),
            env: Vec::new(),
            delivers: true,
        },
        Credentials {
            name: "profile",
            aws: vec!["profile: shipping".to_owned()],
            env: vec![(
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials_file.display().to_string(),
            )],
            delivers: true,
        },
        Credentials {
            name: "assumed role with an external id",
            aws: [
                keys.clone(),
                vec![
                    "assume_role:".to_owned(),
                    format!("  role_arn: {role_arn}"),
                    format!("  external_id: {EXTERNAL_ID}"),
                    "  session_name: kinship-matrix".to_owned(),
                ],
            ]
            .concat(),
            env: Vec::new(),
            delivers: true,
        },
        Credentials {
            name: "swapped key id and secret",
            aws: vec![
                format!("access_key_id: {SECRET}"),
                format!("secret_access_key: {KEY_ID}"),
            ],
            env: Vec::new(),
            delivers: false,
        },
        Credentials {
            name: "environment",
            aws: Vec::new(),
            env: vec![
                ("AWS_ACCESS_KEY_ID", ENV_KEY_ID.to_owned()),
                ("AWS_SECRET_ACCESS_KEY", ENV_SECRET.to_owned()),
                ("AWS_SESSION_TOKEN", ENV_TOKEN.to_owned()),
            ],
            delivers: true,
        },
    ]
}

/// A config for one case at one level: JSON logs at debug, human-readable text otherwise; with `log_file`
/// when `to_file`; a second flow in dry-run mode over the same file; the metrics endpoint.
fn write_config(
    dir: &Path,
    moto: &Moto,
    credentials: &Credentials,
    level: &str,
    to_file: bool,
    metrics_port: u16,
) -> PathBuf {
    let mut text = format!(
        "state_dir: {state}\nprogress_interval: 1s\ncheckpoint_interval: 100ms\nlog_level: {level}\nlog_format: {format}\ndry_run_output: {dry}\nmetrics:\n  listen: 127.0.0.1:{metrics_port}\n",
        state = dir.join("state").display(),
        format = if level == "debug" { "json" } else { "human" },
        dry = dir.join("dry-run.jsonl").display(),
    );
    if to_file {
        text.push_str(&format!(
            "log_file: {}\n",
            dir.join("kinship.log").display()
        ));
    }
    text.push_str(&format!(
        "aws:\n  region: us-east-1\n  endpoint_url: {moto}\n  sts_endpoint_url: {moto}\n",
        moto = moto.endpoint()
    ));
    for line in &credentials.aws {
        text.push_str(&format!("  {line}\n"));
    }
    let files = dir.join("logs/*.log");
    text.push_str(&format!(
        "flows:\n  - name: app\n    files: {files}\n    kinesis_stream: matrix\n    initial_position: start_of_file\n    max_batch_age: 100ms\n  - name: dry\n    files: {files}\n    kinesis_stream: matrix\n    initial_position: start_of_file\n    max_batch_age: 100ms\n    dry_run: true\n",
        files = files.display()
    ));
    let path = dir.join(CONFIG_NAME);
    fs::write(&path, text).expect("write config");
    // Readable by its owner only, as the README asks of a file with keys in it.
    set_owner_only(&path);
    path
}

#[cfg(unix)]
fn set_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Everything under `dir` the agent wrote (state, log file, dry-run output), as text: all but
/// the config the test wrote.
fn written_files(dir: &Path) -> String {
    let mut text = String::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&written_files(&path));
        } else if path.file_name().is_some_and(|name| name == CONFIG_NAME) {
            continue;
        } else if let Ok(bytes) = fs::read(&path) {
            text.push_str(&format!("\n--- {} ---\n", path.display()));
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

/// Panics naming `what` when `output` holds any secret: one of ours, an access key id in full
/// (moto's assumed-role keys included), a secret-key-shaped token, or moto's session token.
fn assert_no_secret(output: &str, what: &str) {
    for secret in ALL_SECRETS {
        if let Some(at) = output.find(secret) {
            panic!("{what}: `{secret}` appears:\n{}", around(output, at));
        }
    }
    if let Some(at) = output.find(MOTO_SESSION_TOKEN_PREFIX) {
        panic!(
            "{what}: an assumed role's session token appears:\n{}",
            around(output, at)
        );
    }
    for token in output.split(|c: char| !(c.is_ascii_alphanumeric() || c == '/' || c == '+')) {
        let full_key_id = token.len() == 20
            && (token.starts_with("AKIA") || token.starts_with("ASIA"))
            && token
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let secret_key_shape = token.len() == 40
            && token.bytes().any(|b| b.is_ascii_uppercase())
            && token.bytes().any(|b| b.is_ascii_lowercase())
            && token.bytes().any(|b| b.is_ascii_digit());
        if full_key_id || secret_key_shape {
            let at = output.find(token).unwrap_or(0);
            panic!(
                "{what}: `{token}` looks like a key id or a secret key:\n{}",
                around(output, at)
            );
        }
    }
}

fn around(text: &str, at: usize) -> String {
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(300)
        .map_or(0, |(i, _)| i);
    let end = text[at..]
        .char_indices()
        .nth(300)
        .map_or(text.len(), |(i, _)| at + i);
    text[start..end].to_owned()
}

/// Runs `one` for every source of credentials at every level, each with a directory of its
/// own, and checks that nothing `one` gathered (all the agent printed and wrote) holds a secret.
fn across_the_matrix(
    command: &str,
    mut one: impl FnMut(&Moto, &Credentials, &str, &Path, &str) -> String,
) {
    let moto = Moto::start();
    moto.create_kinesis_stream("matrix", 1);
    let role = moto.create_role("kinship-matrix");
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut masked_key_ids_seen = false;
    for case in &cases(scratch.path(), &role) {
        for level in LEVELS {
            let what = format!("{command}, {}, {level}", case.name);
            let dir = tempfile::tempdir().expect("temp dir");
            let everything = one(&moto, case, level, dir.path(), &what);
            assert_no_secret(&everything, &what);
            masked_key_ids_seen |= everything.contains("AKIA…");
        }
    }
    // The SDK's own debug lines name the access key id: shown as its first and last four.
    assert!(
        masked_key_ids_seen,
        "{command}: no masked access key id was ever shown"
    );
}

#[test]
fn no_secret_reaches_the_output_of_a_run_at_any_level() {
    across_the_matrix("run", |moto, case, level, dir, what| {
        let log = dir.join("logs/app.log");
        fs::create_dir_all(dir.join("logs")).expect("logs dir");
        let lines: String = (0..20).map(|i| format!("matrix line {i}\n")).collect();
        fs::write(&log, &lines).expect("write log");
        let metrics_port = free_port();
        let to_file = level == "debug";
        let config = write_config(dir, moto, case, level, to_file, metrics_port);
        // The level comes from the config's log_level.
        let env: Vec<(&str, &str)> = std::iter::once(("RUST_LOG", ""))
            .chain(case.env.iter().map(|(name, value)| (*name, value.as_str())))
            .collect();
        let mut agent = Agent::start_with(&config, dir, None, &[], &env);
        let dry_run = dir.join("dry-run.jsonl");
        if case.delivers {
            let all = lines.len() as u64;
            assert!(
                holds_within(DEADLINE, || saved_offset(dir) == Some(all)
                    && fs::metadata(&dry_run).is_ok_and(|meta| meta.len() > 0)),
                "{what}: the lines were not delivered:\n{}\n{}",
                agent.output(),
                written_files(dir)
            );
        } else {
            let tried =
                || format!("{}{}", agent.output(), written_files(dir)).contains("A call failed");
            assert!(
                holds_within(DEADLINE, tried),
                "{what}: no send was tried:\n{}",
                agent.output()
            );
        }
        let scrape = holds_within(DEADLINE, || get(metrics_port, "/metrics").is_some())
            .then(|| get(metrics_port, "/metrics"))
            .flatten()
            .map(|(_, body)| body)
            .unwrap_or_default();
        assert!(scrape.contains("kinship_"), "{what}: no /metrics");
        agent.signal("TERM");
        agent.wait_exit(DEADLINE);
        if to_file {
            assert!(
                fs::read_to_string(dir.join("kinship.log"))
                    .is_ok_and(|text| text.contains("\"level\":\"DEBUG\"")),
                "{what}: nothing logged to log_file at debug"
            );
        }
        format!(
            "{}\n{}\n{}\n{scrape}",
            agent.output(),
            fs::read_to_string(&agent.stdout).unwrap_or_default(),
            written_files(dir),
        )
    });
}

#[test]
fn no_secret_reaches_the_output_of_check_online_at_any_level() {
    across_the_matrix("check --online", |moto, case, level, dir, what| {
        let config = write_config(dir, moto, case, level, false, free_port());
        // The level comes from RUST_LOG, over the config's.
        let env: Vec<(&str, &str)> = std::iter::once(("RUST_LOG", level))
            .chain(case.env.iter().map(|(name, value)| (*name, value.as_str())))
            .collect();
        let output = run_command_with_env(
            &[
                "check",
                "--online",
                "--config",
                &config.display().to_string(),
            ],
            &env,
        );
        let everything = format!(
            "{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            written_files(dir)
        );
        if case.delivers {
            assert_eq!(output.status.code(), Some(0), "{what}:\n{everything}");
        }
        assert!(everything.contains("flow `app`"), "{what}:\n{everything}");
        everything
    });
}
