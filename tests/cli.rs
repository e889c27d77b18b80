//! The command line: `check`, exit codes and messages, `--help` and `--version`.

use std::fs;

use crate::support::agent::run_command;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    fs::write(&path, text).expect("write config");
    path.display().to_string()
}

const GOOD: &str = "\
state_dir: /tmp/kinship-check-state
aws:
  region: us-east-1
flows:
  - name: app
    files: /var/log/app/*.log
    kinesis_stream: app-logs
";

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(&dir, "good.yaml", GOOD);
    let output = run_command(&["check", "--config", &path]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid (1 flows)"));
}

#[test]
fn check_lists_every_problem_with_file_line_and_key_and_exits_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = GOOD.replace(
        "  region: us-east-1\n",
        "  region: us-east-1\n  endpoint_url: nowhere\n",
    ) + "    max_batch_age: forever\n    partition_key: \"\"\n";
    let path = write(&dir, "bad.yaml", &text);
    let output = run_command(&["check", "--config", &path]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{path}:4:3: aws.endpoint_url: `nowhere` is not an http:// or https:// URL"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:9:5: flows[0].max_batch_age: `forever` is not a duration"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:10:5: flows[0].partition_key: a fixed key must be 1 to 256 characters"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("the config has 3 problem(s)"), "{stderr}");
}

#[test]
fn check_names_an_unknown_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        &dir,
        "typo.yaml",
        &GOOD.replace("    kinesis_stream", "    kinesis_streams"),
    );
    let output = run_command(&["check", "--config", &path]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{path}:7:5: flows[0].kinesis_streams: unknown key; did you mean kinesis_stream?"
        )),
        "{stderr}"
    );
    // The misspelt key is not also reported as missing.
    assert!(stderr.contains("the config has 1 problem(s)"), "{stderr}");
}

/// Seven different problems: wrong types, an unknown key, a value that means nothing (and
/// looks like a secret), a duplicate flow name, a duplicate key.
const SEVEN_PROBLEMS: &str = include_str!("configs/seven-problems.yaml");

#[test]
fn check_reports_seven_problems_in_seven_lines_in_file_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(&dir, "seven.yaml", SEVEN_PROBLEMS);
    let output = run_command(&["check", "--config", &path]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        format!("{path}:3:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string"),
        format!("{path}:4:3: aws.endpoint_url: `wJal… (40 characters)` is not an http:// or https:// URL with a host"),
        format!("{path}:8:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string"),
        format!("{path}:9:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?"),
        format!("{path}:10:20: flows[0].max_in_flight: expected a whole number, found the text `many`"),
        format!("{path}:11:5: flows[1].name: `app` is used by another flow; names must be unique"),
        format!("{path}:14:5: flows[1].kinesis_stream: duplicate key (first written at 13:5); remove one"),
        "kinship: the config has 7 problem(s); nothing was started".to_owned(),
    ];
    assert_eq!(lines, expected, "{stderr}");
    assert!(!stderr.contains("wJalrXUtnFEMI/K7MDENG"), "{stderr}");
}

#[test]
fn check_reports_each_mistake_of_a_flow_with_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "{GOOD}    max_batch_agee: 1s\n    max_in_flight: many\n    retry_max_backoff: soon\n"
    );
    let path = write(&dir, "three.yaml", &text);
    let output = run_command(&["check", "--config", &path]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{path}:8:5: flows[0].max_batch_agee: unknown key")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{path}:9:20: flows[0].max_in_flight: expected a whole number"
        )),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{path}:10:5: flows[0].retry_max_backoff: `soon` is not a duration"
        )),
        "{stderr}"
    );
    assert_eq!(
        lines[3],
        "kinship: the config has 3 problem(s); nothing was started"
    );
}

#[test]
fn check_reports_a_yaml_syntax_error_alone_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        &dir,
        "broken.yaml",
        &format!("{GOOD}    max_in_flight: many\n  - name: [unclosed\n"),
    );
    let output = run_command(&["check", "--config", &path]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(&format!("{path}:")), "{stderr}");
    assert!(lines[0].contains(": not valid YAML: "), "{stderr}");
}

#[test]
fn a_missing_config_file_exits_64() {
    let output = run_command(&["check", "--config", "/nonexistent/kinship.yaml"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("cannot read config file /nonexistent/kinship.yaml"));
}

#[test]
fn run_with_an_invalid_config_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let text = GOOD
        .replace("/tmp/kinship-check-state", &state.display().to_string())
        .replace("app-logs", "bad name");
    let path = write(&dir, "bad.yaml", &text);
    let output = run_command(&["run", "--config", &path]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("kinesis_stream: `bad name` is not a stream name"));
    assert!(
        !state.exists(),
        "nothing may start before the config is valid"
    );
}

#[test]
fn help_and_version() {
    let help = run_command(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("run") && text.contains("check"), "{text}");
    let run_help = String::from_utf8_lossy(&run_command(&["run", "--help"]).stdout).into_owned();
    assert!(run_help.contains("/etc/kinship/kinship.yaml"), "{run_help}");
}

#[test]
fn version_names_the_commit_and_the_target() {
    let version = run_command(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    let text = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let rest = text
        .strip_prefix(&format!("kinship {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("no version first: {text}"));
    let (commit, target) = rest
        .strip_suffix(')')
        .and_then(|rest| rest.split_once(", "))
        .unwrap_or_else(|| panic!("no (commit …, target): {text}"));
    // Built from this checkout when git is at hand, `unknown` from an exported tree.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(commit, head, "{text}"),
        None => assert_eq!(commit, "unknown", "{text}"),
    }
    // The triple this test binary was built for (tests run on the build's own target).
    let arch = std::env::consts::ARCH;
    assert!(
        target.starts_with(&format!("{arch}-")) && target.contains(std::env::consts::OS),
        "{text}"
    );
}

#[test]
fn the_example_configs_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = 0;
    for entry in fs::read_dir(&examples).expect("config folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let output = run_command(&["check", "--config", &path.display().to_string()]);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no example configs found");
}
