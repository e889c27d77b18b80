//! The configuration's checks, end to end: YAML text in, settings or problems out.

use std::path::PathBuf;
use std::time::Duration;

use super::global::DEFAULT_MAX_OPEN_FILES;
use super::problem::ProblemAt;
use super::*;
use crate::compression::Compression;

const GOOD: &str = "\
state_dir: /tmp/state
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:4567
flows:
  - name: app
    files: /var/log/app/*.log
    kinesis_stream: app-logs
    initial_position: start_of_file
    partition_key: deterministic
    max_batch_age: 250ms
";

fn problems(text: &str) -> Vec<String> {
    match Config::parse(Path::new("/etc/k.yaml"), text) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { path, problems }) => problems
            .iter()
            .map(|problem| {
                ProblemAt {
                    path: &path,
                    problem,
                }
                .to_string()
            })
            .collect(),
        Err(other) => vec![other.to_string()],
    }
}

#[test]
fn a_good_config_validates_with_defaults_filled_in() {
    let config = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
    assert_eq!(config.state_dir, PathBuf::from("/tmp/state"));
    assert_eq!(config.flows[0].aws.region.as_deref(), Some("us-east-1"));
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    let flow = &config.flows[0];
    assert_eq!(flow.files, vec!["/var/log/app/*.log".to_owned()]);
    assert_eq!(flow.initial_position, InitialPosition::StartOfFile);
    assert_eq!(flow.partition_key, PartitionKey::Deterministic);
    assert_eq!(flow.max_batch_age, Duration::from_millis(250));
    assert_eq!(flow.max_batch_records, 500);
    assert_eq!(flow.max_batch_bytes, 5 * 1024 * 1024);
    assert_eq!(flow.max_line_bytes(), 1024 * 1024 - 16);
}

#[test]
fn files_may_be_a_list_and_partition_key_a_fixed_string() {
    let text = GOOD
        .replace("files: /var/log/app/*.log", "files: [/a/*.log, /b/*.log]")
        .replace("partition_key: deterministic", "partition_key: host-1");
    let config = Config::parse(Path::new("k.yaml"), &text).expect("valid config");
    assert_eq!(config.flows[0].files.len(), 2);
    assert_eq!(
        config.flows[0].partition_key,
        PartitionKey::Fixed("host-1".into())
    );
    assert_eq!(config.flows[0].max_line_bytes(), 1024 * 1024 - 6);
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let text = GOOD.replace("    max_batch_age: 250ms", "    max_batch_agee: 250ms");
    assert_eq!(
        problems(&text),
        ["/etc/k.yaml:11:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?"]
    );
}

#[test]
fn a_wrong_type_names_file_line_and_key() {
    let text = GOOD.replace(
        "  - name: app\n",
        "  - name: app\n    max_in_flight: many\n",
    );
    assert_eq!(
            problems(&text),
            ["/etc/k.yaml:7:20: flows[0].max_in_flight: expected a whole number, found the text `many`"]
        );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let text = "\
shutdown_grace: soon
aws:
  endpoint_url: localhost:4567
flows:
  - name: app
    files: relative/*.log
    max_batch_age: 0s
    max_batch_records: 501
    initial_position: middle
  - name: app
    files: /x/*.log
    kinesis_stream: bad/name
";
    let found = problems(text);
    let expected = [
            "/etc/k.yaml:1:1: shutdown_grace: `soon` is not a duration",
            "/etc/k.yaml:3:3: aws.endpoint_url: `localhost:4567` is not an http:// or https:// URL with a host",
            "/etc/k.yaml:6:5: flows[0].files: `relative/*.log` must be an absolute path",
            "/etc/k.yaml:5:5: flows[0].kinesis_stream: is missing",
            "/etc/k.yaml:9:5: flows[0].initial_position: `middle` is not one of end_of_file, start_of_file",
            "/etc/k.yaml:7:5: flows[0].max_batch_age: must be longer than zero",
            "/etc/k.yaml:8:5: flows[0].max_batch_records: 501 is out of range; it must be from 1 to 500",
            // The second flow's name is a duplicate even though the first flow has problems.
            "/etc/k.yaml:10:5: flows[1].name: `app` is used by another flow; names must be unique",
            "/etc/k.yaml:12:5: flows[1].kinesis_stream: `bad/name` is not a stream name",
        ];
    for want in expected {
        assert!(
            found.iter().any(|line| line.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn duplicate_flow_names_are_rejected() {
    let text = format!("{GOOD}  - name: app\n    files: /b/*.log\n    kinesis_stream: other\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("/etc/k.yaml:12:5: flows[1].name: `app` is used by another flow"),
        "{}",
        found[0]
    );
}

/// A config with seven different problems: types, an unknown key, a duplicate key, a
/// duplicate flow name and values that mean nothing (`kinship check` is run on it too).
const SEVEN_PROBLEMS: &str = include_str!("../../tests/configs/seven-problems.yaml");

#[test]
fn every_problem_of_the_file_is_reported_in_one_run_in_file_order() {
    assert_eq!(
            problems(SEVEN_PROBLEMS),
            [
                "/etc/k.yaml:3:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string",
                "/etc/k.yaml:4:3: aws.endpoint_url: `wJal… (40 characters)` is not an http:// or https:// URL with a host",
                "/etc/k.yaml:8:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string",
                "/etc/k.yaml:9:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?",
                "/etc/k.yaml:10:20: flows[0].max_in_flight: expected a whole number, found the text `many`",
                "/etc/k.yaml:11:5: flows[1].name: `app` is used by another flow; names must be unique",
                "/etc/k.yaml:14:5: flows[1].kinesis_stream: duplicate key (first written at 13:5); remove one",
            ]
        );
}

#[test]
fn three_mistakes_in_one_flow_give_three_lines() {
    let text = GOOD.replace(
        "    max_batch_age: 250ms\n",
        "    max_batch_agee: 1s\n    max_in_flight: many\n    retry_max_backoff: soon\n",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(
        found[0],
        "/etc/k.yaml:11:5: flows[0].max_batch_agee: unknown key; did you mean max_batch_age?"
    );
    assert_eq!(
        found[1],
        "/etc/k.yaml:12:20: flows[0].max_in_flight: expected a whole number, found the text `many`"
    );
    assert!(
        found[2]
            .starts_with("/etc/k.yaml:13:5: flows[0].retry_max_backoff: `soon` is not a duration"),
        "{}",
        found[2]
    );
}

#[test]
fn plain_scalars_of_the_wrong_type_are_errors_and_quoted_ones_strings() {
    let found = problems(&format!(
        "aws:\n  region: 42\n{FLOW}    kinesis_stream: true\n    dry_run: 'false'\n"
    ));
    assert_eq!(
            found,
            [
                "/etc/k.yaml:2:11: aws.region: expected a string, found `42`, which YAML reads as a number; write it in quotes (\"42\") to make it a string",
                "/etc/k.yaml:6:21: flows[0].kinesis_stream: expected a string, found `true`, which YAML reads as a boolean; write it in quotes (\"true\") to make it a string",
                "/etc/k.yaml:7:14: flows[0].dry_run: expected true or false, found the quoted text `false`; write it without quotes",
            ]
        );
    let config = parse(&format!(
        "aws:\n  region: \"42\"\n{FLOW}    kinesis_stream: 'true'\n    max_in_flight: 0x10\n"
    ));
    assert_eq!(config.flows[0].aws.region.as_deref(), Some("42"));
    assert_eq!(config.flows[0].destination.name, "true");
    assert_eq!(config.flows[0].max_in_flight, 16);
}

#[test]
fn a_key_written_wrong_draws_no_follow_on_problems() {
    // No "has no destination" for a destination of the wrong type or misspelt, and a
    // Firehose flow's keys are not taken for a Kinesis flow's.
    for destination in [
        "kinesis_stream: true",
        "kinesis_stream: [a, b]",
        "kinesis_streem: logs",
    ] {
        let found = problems(&format!("{FLOW}    {destination}\n"));
        assert_eq!(found.len(), 1, "{destination}: {found:#?}");
    }
    let found = problems(&format!(
            "{FLOW}    firehose_stream: {{name: x}}\n    pack_records: true\n    pack_record_bytes: 4096\n"
        ));
    assert_eq!(found.len(), 1, "{found:#?}");
    // A wrong-typed flag says nothing of the keys it goes with.
    let found = problems(&format!(
            "aws:\n  endpoint_url: http://kinesis.example.com\n  allow_insecure_http: yes\n{FLOW}    firehose_stream: a\n    pack_records: sure\n    pack_record_bytes: 4096\n    max_record_bytes: lots\n    max_batch_bytes: 2048\n"
        ));
    assert_eq!(
            found,
            [
                "/etc/k.yaml:3:24: aws.allow_insecure_http: expected true or false, found the text `yes`",
                "/etc/k.yaml:8:19: flows[0].pack_records: expected true or false, found the text `sure`",
                "/etc/k.yaml:10:23: flows[0].max_record_bytes: expected a whole number, found the text `lots`",
            ]
        );
    // A processor misspelt, or its only pattern misspelt, says only that.
    let found = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: filtre\n        include: x\n      - type: filter\n        includ: x\n      - type: log_to_json\n        formt: syslog\n"
        ));
    assert_eq!(
            found,
            [
                "/etc/k.yaml:6:15: flows[0].processors[0].type: `filtre` is not a processor type; did you mean filter?",
                "/etc/k.yaml:9:9: flows[0].processors[1].includ: unknown key; did you mean include?",
                "/etc/k.yaml:11:9: flows[0].processors[2].formt: unknown key; did you mean format?",
            ]
        );
}

#[test]
fn duplicate_flow_names_are_found_whatever_else_is_wrong() {
    let found = problems(
            "flows:\n  - name: app\n    files: relative.log\n    kinesis_stream: a\n  - name: app\n    files: /b/*.log\n    firehose_stream: b\n    max_in_flight: 0\n",
        );
    assert_eq!(
        found,
        [
            "/etc/k.yaml:3:5: flows[0].files: `relative.log` must be an absolute path",
            "/etc/k.yaml:5:5: flows[1].name: `app` is used by another flow; names must be unique",
            "/etc/k.yaml:8:5: flows[1].max_in_flight: 0 is out of range; it must be from 1 to 64",
        ]
    );
}

#[test]
fn duplicate_keys_are_reported_where_they_are_with_their_path() {
    let found = problems(&format!(
            "state_dir: /a\nstate_dir: /b\n{FLOW}    kinesis_stream: a\n    max_in_flight: 2\n    max_in_flight: 3\n    aws:\n      assume_role:\n        role_arn: arn:aws:iam::123456789012:role/a\n        role_arn: arn:aws:iam::123456789012:role/b\n"
        ));
    assert_eq!(
            found,
            [
                "/etc/k.yaml:2:1: state_dir: duplicate key (first written at 1:1); remove one",
                "/etc/k.yaml:8:5: flows[0].max_in_flight: duplicate key (first written at 7:5); remove one",
                "/etc/k.yaml:12:9: flows[0].aws.assume_role.role_arn: duplicate key (first written at 11:9); remove one",
            ]
        );
}

#[test]
fn values_that_look_like_secrets_are_not_echoed() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let token = "FwoGZXIvYXdzEBYaDH7tokenTOKEN123";
    let found = problems(&format!(
            "aws:\n  region: {secret}\n  endpoint_url: {token}\n{FLOW}    kinesis_stream: a\n    aws:\n      region: {token}\n      endpoint_url: {secret}\n"
        ));
    assert_eq!(
            found,
            [
                "/etc/k.yaml:2:3: aws.region: `wJal… (40 characters)` is not a region name such as us-east-1",
                "/etc/k.yaml:3:3: aws.endpoint_url: `FwoG… (32 characters)` is not an http:// or https:// URL with a host",
                "/etc/k.yaml:9:7: flows[0].aws.region: `FwoG… (32 characters)` is not a region name such as us-east-1",
                "/etc/k.yaml:10:7: flows[0].aws.endpoint_url: `wJal… (40 characters)` is not an http:// or https:// URL with a host",
            ]
        );
}

#[test]
fn an_unusable_list_item_leaves_the_others_their_index() {
    let found = problems(
            "flows:\n  - just-a-name\n  - name: b\n    files: relative\n    kinesis_stream: b\n    processors:\n      - type: nope\n      - type: redact\n        patterns:\n          - oops\n          - pattern: '(x'\n",
        );
    assert_eq!(
            found,
            [
                "/etc/k.yaml:2:5: flows[0]: expected a mapping, found the text `just-a-name`",
                "/etc/k.yaml:4:5: flows[1].files: `relative` must be an absolute path",
                "/etc/k.yaml:7:15: flows[1].processors[0].type: `nope` is not a processor type; give one of single_line, csv_to_json, log_to_json, filter, redact, add_ec2_metadata, add_metadata",
                "/etc/k.yaml:10:13: flows[1].processors[1].patterns[0]: expected a mapping, found the text `oops`",
                "/etc/k.yaml:11:13: flows[1].processors[1].patterns[1].pattern: `(x` is not a valid regular expression: unclosed group",
            ]
        );
    assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    processors:\n      - type: redact\n        patterns: [{{replacement: x}}]\n"
            )),
            ["/etc/k.yaml:7:21: flows[0].processors[0].patterns[0].pattern: is missing; give the regular expression to redact"]
        );
}

#[test]
fn values_serde_quotes_are_shown_as_secrets_are() {
    assert_eq!(
            quote_values_in(
                "invalid type: string \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\", expected `u64` at `x"
            ),
            "invalid type: string \"wJal… (40 characters)\", expected `u64` at `x"
        );
}

#[test]
fn the_packaged_config_is_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/kinship.yaml"
    ));
    let text = std::fs::read_to_string(path).expect("packaged config");
    Config::parse(path, &text).unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn missing_and_empty_flows_are_rejected() {
    assert!(problems("state_dir: /x\n")[0].contains("flows: is missing"));
    assert!(problems("flows: []\n")[0].contains("flows: is empty"));
    assert!(problems("   \n")[0].contains("the file is empty"));
}

#[test]
fn sizes_are_checked_against_each_other_and_the_service() {
    let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_age: 250ms\n    max_record_bytes: 2097152\n    max_batch_bytes: 1048576\n    partition_key: \"\"\n",
        );
    let text = text.replace("    partition_key: deterministic\n", "");
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|l| l
                .contains("flows[0].max_batch_bytes: 1048576 is smaller than max_record_bytes")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|l| l
            .contains("flows[0].partition_key: a fixed key must be 1 to 256 characters, not 0")),
        "{found:#?}"
    );
}

#[test]
fn tailing_keys_are_read_with_their_defaults() {
    let config = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
    assert_eq!(config.checkpoint_expiry, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.max_open_files, DEFAULT_MAX_OPEN_FILES);
    let flow = &config.flows[0];
    assert!(flow.exclude.is_empty());
    assert_eq!(flow.ignore_older, None);
    assert_eq!(flow.fingerprint_bytes, 1024);
    assert_eq!(flow.partial_line_timeout, Duration::from_secs(5));
    assert!(flow.multiline_start_pattern.is_none());
    assert_eq!(flow.skip_header_lines, 0);
    assert!(flow.file_footer_pattern.is_none());
    assert_eq!(flow.oversize_records, Oversize::Truncate);
    assert_eq!(flow.truncated_record_terminator, "\n");

    let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_age: 250ms\n    exclude: [/var/log/app/*.gz, /var/log/app/debug-*]\n    ignore_older: 2d\n    fingerprint_bytes: 64\n    multiline_start_pattern: '^\\d{4}-'\n    skip_header_lines: 2\n    file_footer_pattern: '^#end'\n    oversize_records: split\n    truncated_record_terminator: ' [cut]'\n",
        );
    let text = format!("checkpoint_expiry: 30d\nmax_open_files: 64\n{text}");
    let config = Config::parse(Path::new("/etc/k.yaml"), &text).expect("valid config");
    assert_eq!(
        config.checkpoint_expiry,
        Duration::from_secs(30 * 24 * 3600)
    );
    assert_eq!(config.max_open_files, 64);
    let flow = &config.flows[0];
    assert_eq!(flow.exclude.len(), 2);
    assert!(flow.exclude[1].matches("/var/log/app/debug-1.log"));
    assert_eq!(flow.ignore_older, Some(Duration::from_secs(2 * 24 * 3600)));
    assert_eq!(flow.fingerprint_bytes, 64);
    let start = flow.multiline_start_pattern.as_ref().expect("a pattern");
    assert!(start.regex.is_match(b"2026-11-23 started"));
    assert!(!start.regex.is_match(b"\tat Foo.bar"));
    assert_eq!(flow.skip_header_lines, 2);
    assert!(flow.file_footer_pattern.is_some());
    assert_eq!(flow.oversize_records, Oversize::Split);
    assert_eq!(flow.truncated_record_terminator, " [cut]");
}

#[test]
fn bad_tailing_keys_name_file_line_and_key() {
    let text = GOOD.replace(
            "    max_batch_age: 250ms\n",
            "    max_batch_age: 250ms\n    exclude: ['/x/[a.log', /y/*.log]\n    ignore_older: 400d\n    fingerprint_bytes: 8\n    multiline_start_pattern: '(unclosed'\n    file_footer_pattern: '*oops'\n    oversize_records: drop\n",
        );
    let text = format!("checkpoint_expiry: forever\nmax_open_files: 1\n{text}");
    let found = problems(&text);
    let expected = [
            "/etc/k.yaml:1:1: checkpoint_expiry: `forever` is not a duration",
            "/etc/k.yaml:2:1: max_open_files: 1 is out of range; it must be from 2 to 1000000",
            "/etc/k.yaml:14:15: flows[0].exclude[0]: `/x/[a.log` is not a valid glob",
            "/etc/k.yaml:15:5: flows[0].ignore_older: `400d` is longer than the 366 days this setting allows",
            "/etc/k.yaml:16:5: flows[0].fingerprint_bytes: 8 is out of range; it must be from 16 to 65536",
            "/etc/k.yaml:17:5: flows[0].multiline_start_pattern: `(unclosed` is not a valid regular expression: unclosed group",
            "/etc/k.yaml:18:5: flows[0].file_footer_pattern: `*oops` is not a valid regular expression: repetition operator missing expression",
            "/etc/k.yaml:19:5: flows[0].oversize_records: `drop` is not one of truncate, split, skip",
        ];
    for want in expected {
        assert!(
            found.iter().any(|line| line.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn yaml_syntax_errors_give_a_position() {
    let found = problems("flows:\n  - name: [unclosed\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("/etc/k.yaml:"), "{}", found[0]);
    assert!(
        found[0].chars().filter(|c| *c == ':').count() >= 3,
        "{}",
        found[0]
    );
}

#[test]
fn the_example_config_is_valid_as_shipped_and_with_every_optional_key_set() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kinship.yaml"));
    let text = std::fs::read_to_string(path).expect("example config");
    let config = Config::parse(path, &text).expect("valid as shipped");
    assert_eq!(config.memory_budget, crate::limits::DEFAULT_MEMORY_BUDGET);
    // Uncomment every `# key: value` line (keeping its indentation).
    let uncommented: String = text
        .lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            match line.trim_start().strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(':').is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    format!("{}{rest}\n", &line[..indent])
                }
                _ => format!("{line}\n"),
            }
        })
        .collect();
    assert!(
        uncommented.contains("  request_timeout: 30s"),
        "{uncommented}"
    );
    let config =
        Config::parse(path, &uncommented).unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
    assert_eq!(config.flows[0].aws.request_timeout, Duration::from_secs(30));
    assert_eq!(
        config.flows[0].max_retry_duration,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn the_delivery_keys_are_read_and_checked() {
    let text = GOOD
        .replace(
            "  endpoint_url: http://127.0.0.1:4567\n",
            "  endpoint_url: http://127.0.0.1:4567\n  request_timeout: 3s\n  connect_timeout: 1s\n",
        )
        .replace(
            "    partition_key: deterministic\n",
            "    partition_key: record_id\n    max_retry_duration: 2h\n",
        );
    let text = format!("memory_budget: 8388608\n{text}");
    let config = Config::parse(Path::new("/etc/k.yaml"), &text).expect("valid config");
    assert_eq!(config.memory_budget, 8 * 1024 * 1024);
    assert_eq!(config.flows[0].aws.request_timeout, Duration::from_secs(3));
    assert_eq!(config.flows[0].aws.connect_timeout, Duration::from_secs(1));
    let flow = &config.flows[0];
    assert_eq!(flow.partition_key, PartitionKey::RecordId);
    assert_eq!(flow.max_retry_duration, Some(Duration::from_secs(7200)));
    let defaults = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
    assert_eq!(defaults.flows[0].max_retry_duration, None);
    assert_eq!(
        defaults.flows[0].aws.request_timeout,
        Duration::from_secs(30)
    );

    let bad = format!(
        "memory_budget: 1000\n{}",
        GOOD.replace(
            "    partition_key: deterministic\n",
            "    max_retry_duration: soon\n"
        )
    );
    let found = problems(&bad);
    assert!(
        found[0].starts_with("/etc/k.yaml:1:1: memory_budget: 1000 is out of range"),
        "{found:?}"
    );
    assert!(
        found[1]
            .starts_with("/etc/k.yaml:11:5: flows[0].max_retry_duration: `soon` is not a duration"),
        "{found:?}"
    );
}

#[test]
fn partition_keys_may_be_extracted_from_records_with_a_fallback() {
    let with_key = |value: &str| {
        GOOD.replace(
            "    partition_key: deterministic\n",
            &format!("    partition_key: {value}\n"),
        )
    };
    let config = Config::parse(
        Path::new("/etc/k.yaml"),
        &with_key(r"{ regex: 'user=(\w+)', fallback: deterministic }"),
    )
    .expect("valid config");
    match &config.flows[0].partition_key {
        PartitionKey::Extracted {
            from: KeyField::Regex(pattern),
            fallback,
        } => {
            assert_eq!(pattern.text, r"user=(\w+)");
            assert_eq!(**fallback, PartitionKey::Deterministic);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        config.flows[0].max_line_bytes(),
        limits::KINESIS_DEFAULT_RECORD_BYTES - EXTRACTED_KEY_MAX_BYTES
    );
    let config = Config::parse(
        Path::new("/etc/k.yaml"),
        &with_key("{ json_field: request.id }"),
    )
    .expect("valid config");
    assert_eq!(
        config.flows[0].partition_key,
        PartitionKey::Extracted {
            from: KeyField::Json(vec!["request".into(), "id".into()]),
            fallback: Box::new(PartitionKey::Random),
        }
    );
    let spread = with_key("random\n    explicit_hash_key: spread");
    let config = Config::parse(Path::new("/etc/k.yaml"), &spread).expect("valid config");
    assert!(config.flows[0].explicit_hash_key);
    assert!(
        !Config::parse(Path::new("/etc/k.yaml"), GOOD)
            .expect("valid config")
            .flows[0]
            .explicit_hash_key
    );
    let found = problems(&with_key("random\n    explicit_hash_key: sometimes"));
    assert_eq!(
        found,
        vec![
            "/etc/k.yaml:11:5: flows[0].explicit_hash_key: `sometimes` is not one of none, spread"
        ]
    );
    for (value, expected) in [
            (
                "{ regex: 'a', json_field: b }",
                "/etc/k.yaml:10:5: flows[0].partition_key: give exactly one of `regex` and `json_field`",
            ),
            (
                "{ json_field: 'a..b' }",
                "/etc/k.yaml:10:5: flows[0].partition_key.json_field: `a..b` is not a field path",
            ),
            (
                "{ regex: '(x' }",
                "/etc/k.yaml:10:5: flows[0].partition_key.regex: `(x` is not a valid regular expression",
            ),
            (
                "{ json_field: a, fallback: '' }",
                "/etc/k.yaml:10:5: flows[0].partition_key.fallback: a fixed key must be 1 to 256 characters",
            ),
        ] {
            let found = problems(&with_key(value));
            // The line, and the column of the key inside the braces.
            let (position, message) = expected.split_at("/etc/k.yaml:10:".len());
            let message = message.split_once(' ').map_or("", |(_, rest)| rest);
            assert!(
                found.len() == 1 && found[0].starts_with(position) && found[0].contains(message),
                "{value}: {found:?}"
            );
        }
}

fn parse(text: &str) -> Config {
    Config::parse(Path::new("/etc/k.yaml"), text).expect("valid config")
}

const FLOW: &str = "flows:\n  - name: app\n    files: /var/log/*.log\n";

#[test]
fn a_firehose_flow_gets_firehose_limits_and_no_partition_key() {
    let config = parse(&format!("{FLOW}    firehose_stream: to-s3\n"));
    let flow = &config.flows[0];
    assert_eq!(flow.destination.kind, DestinationKind::Firehose);
    assert_eq!(flow.destination.name, "to-s3");
    assert_eq!(flow.partition_key, PartitionKey::None);
    assert_eq!(flow.max_record_bytes, 1000 * 1024);
    assert_eq!(flow.max_batch_bytes, 4 * 1024 * 1024);
    assert_eq!(flow.max_batch_records, 500);
    assert_eq!(flow.max_line_bytes(), 1000 * 1024);
    let wrong = problems(&format!(
            "{FLOW}    firehose_stream: to-s3\n    partition_key: fixed\n    explicit_hash_key: spread\n    max_batch_bytes: 5242880\n    max_record_bytes: 1048576\n"
        ));
    assert_eq!(
            wrong,
            [
                "/etc/k.yaml:5:5: flows[0].partition_key: applies to Kinesis streams only; Firehose records have no partition key",
                "/etc/k.yaml:6:5: flows[0].explicit_hash_key: applies to Kinesis streams only; Firehose records have no partition key",
                "/etc/k.yaml:7:5: flows[0].max_batch_bytes: 5242880 is out of range; it must be from 1024 to 4194304",
                "/etc/k.yaml:8:5: flows[0].max_record_bytes: 1048576 is out of range; it must be from 1024 to 1024000",
            ]
        );
}

#[test]
fn a_flow_names_exactly_one_destination_by_name_or_arn() {
    assert_eq!(
            problems(&format!("{FLOW}    firehose_stream: a\n    kinesis_stream: b\n")),
            ["/etc/k.yaml:4:5: flows[0].firehose_stream: is set together with kinesis_stream; a flow sends to one destination"]
        );
    assert_eq!(
            problems(FLOW),
            ["/etc/k.yaml:2:5: flows[0].kinesis_stream: is missing; name the stream records go to (kinesis_stream or firehose_stream)"]
        );
    let config = parse(&format!(
            "aws:\n  region: us-east-1\n{FLOW}    kinesis_stream: arn:aws:kinesis:eu-central-1:210987654321:stream/shared-logs\n"
        ));
    let flow = &config.flows[0];
    assert_eq!(flow.destination.name, "shared-logs");
    assert_eq!(
        flow.destination.arn.as_deref(),
        Some("arn:aws:kinesis:eu-central-1:210987654321:stream/shared-logs")
    );
    assert_eq!(flow.aws.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: arn:aws:kinesis:eu-central-1:210987654321:stream/s\n    aws:\n      region: us-east-1\n"
            )),
            ["/etc/k.yaml:6:7: flows[0].aws.region: is us-east-1, but the stream's ARN is in eu-central-1; remove one"]
        );
    assert_eq!(
            problems(&format!(
                "{FLOW}    firehose_stream: arn:aws:kinesis:eu-central-1:210987654321:stream/s\n"
            )),
            ["/etc/k.yaml:4:5: flows[0].firehose_stream: `arn:aws:kinesis:eu-central-1:210987654321:stream/s` is not a stream ARN such as arn:aws:firehose:us-east-1:123456789012:deliverystream/NAME"]
        );
}

#[test]
fn a_flows_aws_block_overrides_the_top_one_key_by_key() {
    let config = parse(&format!(
            "aws:\n  region: us-east-1\n  endpoint_url: https://kinesis.example.com\n  access_key_id: AKIATOP\n  secret_access_key: top-secret\n  assume_role:\n    role_arn: arn:aws:iam::123456789012:role/top\n  request_timeout: 10s\n\
             {FLOW}    kinesis_stream: a\n\
             \x20 - name: own\n    files: /var/log/*.log\n    kinesis_stream: b\n    aws:\n      region: eu-west-1\n      profile: logs\n      connect_timeout: 2s\n      check_identity: false\n"
        ));
    assert!(config.holds_secret_keys);
    let (top, own) = (&config.flows[0].aws, &config.flows[1].aws);
    assert_eq!(top.region.as_deref(), Some("us-east-1"));
    assert!(matches!(
        &top.credentials,
        CredentialSource::Static { access_key_id, secret_access_key, session_token: None }
            if access_key_id.expose() == "AKIATOP" && secret_access_key.expose() == "top-secret"
    ));
    assert_eq!(top.request_timeout, Duration::from_secs(10));
    assert_eq!(top.connect_timeout, Duration::from_secs(5));
    assert!(top.check_identity);
    assert_eq!(own.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        own.endpoint_url.as_deref(),
        Some("https://kinesis.example.com")
    );
    assert_eq!(own.credentials, CredentialSource::Profile("logs".into()));
    assert_eq!(own.assume_role, top.assume_role);
    let role = own.assume_role.as_ref().expect("inherited role");
    assert_eq!(role.session_name, "kinship");
    assert_eq!(role.duration, Duration::from_secs(3600));
    assert_eq!(own.request_timeout, Duration::from_secs(10));
    assert_eq!(own.connect_timeout, Duration::from_secs(2));
    assert!(!own.check_identity);
    assert_ne!(top, own);
    let plain = parse(&format!("{FLOW}    kinesis_stream: a\n"));
    assert!(!plain.holds_secret_keys);
    assert_eq!(plain.flows[0].aws, AwsSettings::default());
}

#[test]
fn credential_mistakes_name_the_key() {
    let wrong = problems(&format!(
            "aws:\n  profile: p\n  access_key_id: AKIA\n  secret_access_key: s\n{FLOW}    kinesis_stream: a\n    aws:\n      session_token: t\n      assume_role:\n        role_arn: arn:aws:iam::123:role/x\n        session_name: 'has space'\n        duration: 5m\n        external_id: x\n  - name: b\n    files: /var/log/*.log\n    kinesis_stream: b\n    aws:\n      secret_access_key: s\n"
        ));
    assert_eq!(
            wrong,
            [
                "/etc/k.yaml:2:3: aws.profile: is set together with access_key_id; choose one source of credentials",
                "/etc/k.yaml:10:7: flows[0].aws.session_token: is set without access_key_id and secret_access_key",
                "/etc/k.yaml:12:9: flows[0].aws.assume_role.role_arn: `arn:aws:iam::123:role/x` is not a role ARN such as arn:aws:iam::123456789012:role/kinship",
                "/etc/k.yaml:13:9: flows[0].aws.assume_role.session_name: `has space` must be 2 to 64 letters, digits or any of +=,.@_-",
                "/etc/k.yaml:14:9: flows[0].aws.assume_role.duration: must be from 15m to 12h (STS's bounds for a role session)",
                "/etc/k.yaml:15:9: flows[0].aws.assume_role.external_id: must be 2 to 1,224 characters",
                "/etc/k.yaml:20:7: flows[1].aws.secret_access_key: is set without access_key_id; give both",
            ]
        );
}

#[test]
fn plain_http_is_for_loopback_unless_allowed() {
    let text = |url: &str, allow: &str| {
        format!("aws:\n  endpoint_url: {url}\n{allow}{FLOW}    kinesis_stream: a\n")
    };
    assert!(problems(&text("http://127.0.0.1:4567", "")).is_empty());
    assert!(problems(&text("http://localhost:4567", "")).is_empty());
    assert!(problems(&text("https://kinesis.example.com", "")).is_empty());
    assert_eq!(
            problems(&text("http://kinesis.example.com", "")),
            ["/etc/k.yaml:2:3: aws.endpoint_url: `http://kinesis.example.com` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true"]
        );
    assert!(problems(&text(
        "http://kinesis.example.com",
        "  allow_insecure_http: true\n"
    ))
    .is_empty());
    // The top-level allowance covers flows' own endpoints too.
    assert!(problems(&format!(
            "aws:\n  allow_insecure_http: true\n{FLOW}    kinesis_stream: a\n    aws:\n      sts_endpoint_url: http://sts.internal:80\n"
        ))
        .is_empty());
    assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    aws:\n      sts_endpoint_url: http://sts.internal:80\n"
            )),
            ["/etc/k.yaml:6:7: flows[0].aws.sts_endpoint_url: `http://sts.internal:80` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true"]
        );
}

#[test]
fn dry_run_is_per_flow_with_one_output() {
    let config = parse(&format!(
        "dry_run_output: /tmp/batches.jsonl\n{FLOW}    kinesis_stream: a\n    dry_run: true\n"
    ));
    assert!(config.flows[0].dry_run);
    assert_eq!(
        config.dry_run_output.as_deref(),
        Some(Path::new("/tmp/batches.jsonl"))
    );
    let config = parse(&format!(
        "dry_run_output: '-'\n{FLOW}    kinesis_stream: a\n"
    ));
    assert!(!config.flows[0].dry_run);
    assert_eq!(config.dry_run_output, None);
}

#[test]
fn ordering_is_per_shard_by_default_and_a_kinesis_key() {
    let config = parse(&format!(
        "{FLOW}    kinesis_stream: a\n\
             \x20 - name: b\n    files: /var/log/*.log\n    kinesis_stream: b\n    ordering: none\n\
             \x20 - name: c\n    files: /var/log/*.log\n    firehose_stream: c\n"
    ));
    let orderings: Vec<_> = config.flows.iter().map(|flow| flow.ordering).collect();
    assert_eq!(
        orderings,
        [Delivery::PerShard, Delivery::Unordered, Delivery::Unordered]
    );
    let wrong = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    ordering: strict\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    ordering: per_shard\n"
        ));
    assert_eq!(
            wrong,
            [
                "/etc/k.yaml:5:5: flows[0].ordering: `strict` is not one of per_shard, none",
                "/etc/k.yaml:9:5: flows[1].ordering: ordering applies to Kinesis streams only: Firehose has no shards and keeps no order",
            ]
        );
}

#[test]
fn the_data_path_and_its_wire_format_are_checked_against_the_destination() {
    let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    wire_format: cbor\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n\
             \x20 - name: c\n    files: /var/log/*.log\n    kinesis_stream: c\n\
             \x20 - name: d\n    files: /var/log/*.log\n    kinesis_stream: d\n    data_path: sdk\n\
             \x20 - name: e\n    files: /var/log/*.log\n    kinesis_stream: e\n    aws:\n      endpoint_url: http://localhost:4567\n"
        ));
    let paths: Vec<_> = config
        .flows
        .iter()
        .map(|flow| (flow.data_path, flow.wire_format))
        .collect();
    assert_eq!(
        paths,
        [
            (DataPath::Direct, Some(WireFormat::Cbor)),
            // Firehose speaks JSON; for Kinesis, unless written, the endpoint decides
            // when the flow starts (CBOR to AWS's own, JSON to any other).
            (DataPath::Direct, Some(WireFormat::Json)),
            (DataPath::Direct, None),
            (DataPath::Sdk, Some(WireFormat::Json)),
            (DataPath::Direct, None),
        ]
    );
    let wrong = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    data_path: fast\n    wire_format: xml\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    wire_format: cbor\n\
             \x20 - name: c\n    files: /var/log/*.log\n    kinesis_stream: c\n    data_path: sdk\n    wire_format: cbor\n"
        ));
    assert_eq!(
            wrong,
            [
                "/etc/k.yaml:5:5: flows[0].data_path: `fast` is not one of direct, sdk",
                "/etc/k.yaml:6:5: flows[0].wire_format: `xml` is not one of cbor, json",
                "/etc/k.yaml:10:5: flows[1].wire_format: cbor applies to Kinesis streams only; Firehose speaks json",
                "/etc/k.yaml:15:5: flows[2].wire_format: cbor needs data_path: direct; the AWS SDK sends json",
            ]
        );
}

#[test]
fn a_ca_file_must_be_a_readable_pem_bundle() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(
        &bundle,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("bundle written");
    let not_pem = dir.path().join("ca.der");
    std::fs::write(&not_pem, [0x30, 0x82, 0x01]).expect("file written");
    let missing = dir.path().join("missing.pem");
    let config = parse(&format!(
        "aws:\n  tls:\n    ca_file: {}\n{FLOW}    kinesis_stream: a\n",
        bundle.display()
    ));
    assert_eq!(
        config.flows[0].aws.tls_ca_file.as_deref(),
        Some(bundle.as_path())
    );
    let wrong = problems(&format!(
            "aws:\n  tls:\n    ca_file: {}\n{FLOW}    kinesis_stream: a\n    aws:\n      tls:\n        ca_file: {}\n\
             \x20 - name: b\n    files: /var/log/*.log\n    kinesis_stream: b\n    aws:\n      tls: {{ca_file: certs/ca.pem}}\n",
            not_pem.display(),
            missing.display()
        ));
    assert_eq!(wrong.len(), 3, "{wrong:?}");
    assert!(
        wrong[0].starts_with("/etc/k.yaml:3:5: aws.tls.ca_file: `")
            && wrong[0].ends_with(
                "ca.der` holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"
            ),
        "{wrong:?}"
    );
    assert!(
        wrong[1].starts_with("/etc/k.yaml:10:9: flows[0].aws.tls.ca_file: cannot read `")
            && wrong[1].contains("No such file"),
        "{wrong:?}"
    );
    assert_eq!(
        wrong[2],
        "/etc/k.yaml:15:13: flows[1].aws.tls.ca_file: `certs/ca.pem` is not an absolute path"
    );
}

#[test]
fn aggregation_packing_and_compression_are_checked_against_the_destination() {
    let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    aggregation: kpl\n    compression: zstd\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    pack_records: true\n    pack_record_bytes: 65536\n    compression: gzip\n\
             \x20 - name: c\n    files: /var/log/*.log\n    firehose_stream: c\n    pack_records: true\n"
        ));
    let flows = &config.flows;
    assert_eq!(flows[0].combine, Combine::Kpl);
    assert_eq!(flows[0].compression, Compression::Zstd);
    // Calls of combined records are one record limit unless set.
    assert_eq!(flows[0].max_batch_bytes, 1024 * 1024);
    assert_eq!(flows[1].max_batch_bytes, 1000 * 1024);
    // Room is kept for compression to grow what does not compress.
    assert_eq!(
        flows[0].max_line_bytes(),
        1024 * 1024 - 20 - (1024 * 1024 / 128 + 256)
    );
    assert_eq!(
        flows[1].combine,
        Combine::Pack {
            record_bytes: 65536
        }
    );
    assert_eq!(flows[1].compression, Compression::Gzip);
    assert_eq!(
        flows[2].combine,
        Combine::Pack {
            record_bytes: 1000 * 1024
        }
    );
    assert_eq!(flows[2].compression, Compression::None);
    let wrong = problems(&format!(
            "{FLOW}    kinesis_stream: a\n    aggregation: kpl\n    explicit_hash_key: spread\n    pack_records: true\n    compression: lz4\n\
             \x20 - name: b\n    files: /var/log/*.log\n    firehose_stream: b\n    aggregation: kpl\n    pack_record_bytes: 4096\n\
             \x20 - name: c\n    files: /var/log/*.log\n    firehose_stream: c\n    pack_records: true\n    pack_record_bytes: 2000000\n    aggregation: maybe\n"
        ));
    assert_eq!(
            wrong,
            [
                "/etc/k.yaml:6:5: flows[0].explicit_hash_key: cannot be spread with aggregation: kpl, which routes each aggregated record to the shard of its records' keys",
                "/etc/k.yaml:7:5: flows[0].pack_records: applies to Firehose streams only; for Kinesis, use aggregation: kpl",
                "/etc/k.yaml:8:5: flows[0].compression: `lz4` is not one of none, gzip, zstd",
                "/etc/k.yaml:12:5: flows[1].aggregation: applies to Kinesis streams only; for Firehose, use pack_records",
                "/etc/k.yaml:13:5: flows[1].pack_record_bytes: is set without pack_records: true",
                "/etc/k.yaml:18:5: flows[2].pack_record_bytes: 2000000 is out of range; it must be from 1024 to 1024000",
                "/etc/k.yaml:19:5: flows[2].aggregation: `maybe` is not one of none, kpl",
            ]
        );
}

#[test]
fn checkpoint_commit_is_group_unless_set_to_interval() {
    let defaults = parse(&format!("{FLOW}    kinesis_stream: a\n"));
    assert_eq!(defaults.checkpoint_commit, CheckpointCommit::Group);
    assert_eq!(defaults.checkpoint_interval, Duration::from_secs(1));
    let interval = parse(&format!(
        "checkpoint_commit: interval\ncheckpoint_interval: 200ms\n{FLOW}    kinesis_stream: a\n"
    ));
    assert_eq!(interval.checkpoint_commit, CheckpointCommit::Interval);
    assert_eq!(interval.checkpoint_interval, Duration::from_millis(200));
    assert_eq!(
        problems(&format!(
            "state_dir: /x\ncheckpoint_commit: always\n{FLOW}    kinesis_stream: a\n"
        )),
        ["/etc/k.yaml:2:1: checkpoint_commit: `always` is not one of group, interval"]
    );
}

#[test]
fn logging_and_metrics_keys_are_read_and_checked() {
    let config = parse(&format!(
            "log_level: kinship=debug,warn\nlog_format: json\nmetrics:\n  stuck_after: 5s\n{FLOW}    kinesis_stream: a\n"
        ));
    assert_eq!(config.log_level, "kinship=debug,warn");
    assert_eq!(config.log_format, LogFormat::Json);
    let metrics = config.metrics.expect("metrics block");
    assert_eq!(metrics.listen.to_string(), DEFAULT_METRICS_LISTEN);
    assert_eq!(metrics.stuck_after, Duration::from_secs(5));
    let defaults = parse(&format!("{FLOW}    kinesis_stream: a\n"));
    assert_eq!(
        (
            defaults.log_level.as_str(),
            defaults.log_format,
            defaults.metrics
        ),
        ("info", LogFormat::Human, None)
    );
    assert_eq!(
            problems(&format!(
                "log_level: 'kinship=loud'\nlog_format: xml\nmetrics:\n  listen: everywhere\n{FLOW}    kinesis_stream: a\n"
            )),
            [
                "/etc/k.yaml:1:1: log_level: `kinship=loud` is not a log level or filter such as info, debug or kinship=debug,info (error parsing level filter: expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\", or a number 0-5)",
                "/etc/k.yaml:2:1: log_format: `xml` is not one of human, json",
                "/etc/k.yaml:4:3: metrics.listen: `everywhere` is not an address and port such as 127.0.0.1:9720",
            ]
        );
}

#[test]
fn processors_are_read_and_checked() {
    let config = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    on_error: drop\n    processors:\n      - type: filter\n        include: ERROR\n      - type: redact\n        builtin: [email]\n        patterns:\n          - pattern: 'pw=\\S+'\n            replacement: 'pw=*'\n      - type: add_metadata\n        fields: {{env: prod, tier: 2}}\n        timestamp: true\n"
        ));
    let flow = &config.flows[0];
    assert_eq!(flow.on_error, OnError::Drop);
    assert_eq!(flow.processors.len(), 3);
    match &flow.processors[2] {
        ProcessorSpec::AddMetadata {
            fields,
            timestamp,
            envelope,
            host,
            ..
        } => {
            assert_eq!(
                fields,
                &vec![
                    ("env".to_owned(), serde_json::json!("prod")),
                    ("tier".to_owned(), serde_json::json!(2))
                ]
            );
            assert!(*timestamp && !*envelope && !*host);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    on_error: retry\n    processors:\n      - type: filter\n        include: '(oops'\n      - type: filter\n      - type: redact\n        builtin: [email, phone]\n"
            )),
            [
                "/etc/k.yaml:5:5: flows[0].on_error: `retry` is not one of send_raw, drop",
                "/etc/k.yaml:8:9: flows[0].processors[0].include[0]: `(oops` is not a valid regular expression: unclosed group",
                "/etc/k.yaml:9:9: flows[0].processors[1]: a filter needs include or exclude patterns",
                "/etc/k.yaml:11:26: flows[0].processors[2].builtin[1]: `phone` is not one of email, us_ssn, card_number, aws_access_key_id, aws_secret_key, bearer_token",
            ]
        );
    let converters = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: single_line\n        escape_newlines: true\n      - type: csv_to_json\n        field_names: [a, b]\n        delimiter: '\\t'\n      - type: log_to_json\n        format: combined_apache\n"
        ));
    assert_eq!(
        converters.flows[0].processors[..2],
        [
            ProcessorSpec::SingleLine {
                trim: true,
                separator: "\\n".into()
            },
            ProcessorSpec::CsvToJson {
                field_names: vec!["a".into(), "b".into()],
                delimiter: b'\t'
            },
        ]
    );
    // `-` is null by default in the Apache formats only, as with the Kinesis Agent; a pattern
    // takes it when asked (what an Apache `logFormat` with a `matchPattern` migrates to).
    let dashes = parse(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: log_to_json\n        format: apache_error\n      - type: log_to_json\n        format: syslog\n      - type: log_to_json\n        pattern: '(a)'\n        field_names: [one]\n      - type: log_to_json\n        pattern: '(a)'\n        field_names: [one]\n        dash_as_null: true\n      - type: log_to_json\n        format: common_apache\n        dash_as_null: false\n"
        ));
    let dash_as_null: Vec<bool> = dashes.flows[0]
        .processors
        .iter()
        .map(|spec| match spec {
            ProcessorSpec::LogToJson { dash_as_null, .. } => *dash_as_null,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(dash_as_null, [true, false, false, true, false]);
    assert_eq!(
            problems(&format!(
                "{FLOW}    kinesis_stream: a\n    processors:\n      - type: csv_to_json\n        delimiter: ';;'\n      - type: log_to_json\n        format: nginx\n      - type: log_to_json\n        pattern: '(a)(b)'\n        field_names: [one]\n"
            )),
            [
                "/etc/k.yaml:6:9: flows[0].processors[0].field_names: is required: one name per column",
                "/etc/k.yaml:9:9: flows[0].processors[1].format: `nginx` is not one of common_apache, combined_apache, apache_error, syslog, rfc3339_syslog",
                "/etc/k.yaml:12:9: flows[0].processors[2].field_names: names 1 fields, but the pattern has 2 groups",
            ]
        );
    let unknown = problems(&format!(
        "{FLOW}    kinesis_stream: a\n    processors:\n      - type: to_xml\n"
    ));
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(
        unknown[0].contains("flows[0].processors") && unknown[0].contains("to_xml"),
        "{unknown:?}"
    );
}

#[test]
fn cloudwatch_publishing_is_off_unless_asked_for_and_checked() {
    assert_eq!(
        parse(&format!("{FLOW}    kinesis_stream: a\n")).cloudwatch,
        None
    );
    let off = parse(&format!(
        "cloudwatch:\n  enabled: false\n{FLOW}    kinesis_stream: a\n"
    ));
    assert_eq!(off.cloudwatch, None);
    let on = parse(&format!(
            "aws:\n  region: eu-west-1\ncloudwatch:\n  interval: 30s\n  aws:\n    endpoint_url: https://monitoring.example.com\n{FLOW}    kinesis_stream: a\n"
        ));
    let settings = on.cloudwatch.expect("cloudwatch on");
    assert_eq!(settings.namespace, DEFAULT_CLOUDWATCH_NAMESPACE);
    assert_eq!(settings.interval, Duration::from_secs(30));
    assert_eq!(settings.aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        settings.aws.endpoint_url.as_deref(),
        Some("https://monitoring.example.com")
    );
    assert_eq!(
            problems(&format!(
                "cloudwatch:\n  namespace: AWS/Kinesis\n  interval: 10ms\n{FLOW}    kinesis_stream: a\n"
            )),
            [
                "/etc/k.yaml:2:3: cloudwatch.namespace: `AWS/Kinesis` starts with AWS/, which is reserved for AWS services",
                "/etc/k.yaml:3:3: cloudwatch.interval: must be at least 1s",
            ]
        );
}

#[test]
fn the_instance_dimension_is_off_read_from_metadata_or_given() {
    let cloudwatch = |keys: &str| {
        parse(&format!("cloudwatch:\n{keys}{FLOW}    kinesis_stream: a\n"))
            .cloudwatch
            .expect("cloudwatch on")
            .instance
    };
    assert_eq!(cloudwatch("  interval: 60s\n"), InstanceDimension::Off);
    assert_eq!(
        cloudwatch("  tag_instance: true\n"),
        InstanceDimension::FromMetadata
    );
    assert_eq!(
        cloudwatch("  tag_instance: true\n  instance_id: i-0123456789abcdef0\n"),
        InstanceDimension::Given("i-0123456789abcdef0".to_owned())
    );
    assert_eq!(
        problems(&format!(
            "cloudwatch:\n  instance_id: i-0123\n{FLOW}    kinesis_stream: a\n"
        )),
        ["/etc/k.yaml:2:3: cloudwatch.instance_id: is used only with tag_instance: true; add it, or remove instance_id"]
    );
    assert_eq!(
        problems(&format!(
            "cloudwatch:\n  tag_instance: true\n  instance_id: ' '\n{FLOW}    kinesis_stream: a\n"
        )),
        ["/etc/k.yaml:3:3: cloudwatch.instance_id: must be from 1 to 1024 characters long, such as i-0123456789abcdef0"]
    );
}

#[test]
fn the_progress_format_and_the_behind_warning_are_read_and_checked() {
    let config = parse(&format!("{FLOW}    kinesis_stream: a\n"));
    assert_eq!(config.progress_format, ProgressFormat::Kinship);
    assert_eq!(config.behind_warning_bytes, 40 * 1024 * 1024);
    let set = parse(&format!(
        "progress_format: kinesis_agent\nbehind_warning_bytes: 0\n{FLOW}    kinesis_stream: a\n"
    ));
    assert_eq!(set.progress_format, ProgressFormat::KinesisAgent);
    assert_eq!(set.behind_warning_bytes, 0);
    assert_eq!(
        problems(&format!(
            "progress_format: java\nbehind_warning_bytes: -1\n{FLOW}    kinesis_stream: a\n"
        )),
        [
            "/etc/k.yaml:1:1: progress_format: `java` is not one of kinship, kinesis_agent",
            "/etc/k.yaml:2:23: behind_warning_bytes: `-1` is negative; give a whole number from 0 up",
        ]
    );
}

#[test]
fn the_log_file_keys_are_read_and_checked() {
    let config = parse(&format!(
            "log_file: 'C:\\ProgramData\\kinship\\logs\\kinship.log'\nlog_file_max_bytes: 1048576\nlog_file_keep: 0\n{FLOW}    kinesis_stream: a\n"
        ));
    assert_eq!(
        config.log_file,
        LogFileSettings {
            path: Some(PathBuf::from(r"C:\ProgramData\kinship\logs\kinship.log")),
            max_bytes: 1024 * 1024,
            keep: 0,
        }
    );
    let defaults = parse(&format!("{FLOW}    kinesis_stream: a\n"));
    assert_eq!(
        defaults.log_file,
        LogFileSettings {
            path: None,
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    );
    assert_eq!(
            problems(&format!(
                "log_file: ''\nlog_file_max_bytes: 100\nlog_file_keep: 5000\n{FLOW}    kinesis_stream: a\n"
            )),
            [
                "/etc/k.yaml:1:1: log_file: must not be empty; leave it out to log to standard error",
                "/etc/k.yaml:2:1: log_file_max_bytes: 100 is out of range; it must be from 65536 to 1073741824",
                "/etc/k.yaml:3:1: log_file_keep: 5000 is out of range; it must be from 0 to 1000",
            ]
        );
}

#[test]
fn add_ec2_metadata_keys_are_read_and_checked() {
    let config = parse(&format!(
        "{FLOW}    kinesis_stream: a\n    processors:\n      - type: add_ec2_metadata\n        tags: true\n        refresh: 10m\n        endpoint: http://127.0.0.1:1338\n        ec2_endpoint: http://127.0.0.1:5000\n      - type: add_ec2_metadata\n"
    ));
    assert_eq!(
        config.flows[0].processors,
        [
            ProcessorSpec::AddEc2Metadata(Ec2Settings {
                refresh: Duration::from_secs(600),
                tags: true,
                endpoint: Some("http://127.0.0.1:1338".into()),
                ec2_endpoint: Some("http://127.0.0.1:5000".into()),
            }),
            ProcessorSpec::AddEc2Metadata(Ec2Settings {
                refresh: Duration::from_secs(3600),
                tags: false,
                endpoint: None,
                ec2_endpoint: None,
            }),
        ]
    );
    // A refresh under the minimum is refused, naming the key, rather than raised silently;
    // DescribeTags carries a signature, so it goes over https:// to any other host.
    assert_eq!(
        problems(&format!(
            "{FLOW}    kinesis_stream: a\n    processors:\n      - type: add_ec2_metadata\n        refresh: 30s\n        ec2_endpoint: http://ec2.internal\n      - type: add_ec2_metadata\n        ec2_endpoint: ec2.eu-west-1.amazonaws.com\n"
        )),
        [
            "/etc/k.yaml:7:9: flows[0].processors[0].refresh: must be at least 1m",
            "/etc/k.yaml:8:9: flows[0].processors[0].ec2_endpoint: `http://ec2.internal` would send requests and signatures unencrypted to another host; use https://, or set allow_insecure_http: true",
            "/etc/k.yaml:10:9: flows[0].processors[1].ec2_endpoint: `ec2.eu-west-1.amazonaws.com` is not an http:// or https:// URL with a host",
        ]
    );
    assert!(problems(&format!(
        "aws:\n  allow_insecure_http: true\n{FLOW}    kinesis_stream: a\n    processors:\n      - type: add_ec2_metadata\n        ec2_endpoint: http://ec2.internal\n"
    ))
    .is_empty());
}

#[test]
fn shipped_files_defaults_to_keep_and_takes_delete_or_move_into_a_directory() {
    let config = Config::parse(Path::new("/etc/k.yaml"), GOOD).expect("valid config");
    assert_eq!(config.flows[0].shipped_files, ShippedFiles::Keep);
    assert_eq!(
        config.flows[0].shipped_files_idle,
        Duration::from_secs(5 * 60)
    );
    let text = GOOD.replace(
        "    max_batch_age: 250ms\n",
        "    max_batch_age: 250ms\n    shipped_files: delete\n    shipped_files_idle: 1h\n",
    );
    let config = Config::parse(Path::new("/etc/k.yaml"), &text).expect("valid config");
    assert_eq!(config.flows[0].shipped_files, ShippedFiles::Delete);
    assert_eq!(
        config.flows[0].shipped_files_idle,
        Duration::from_secs(3600)
    );

    let done = tempfile::tempdir().expect("temp dir");
    let text = GOOD.replace(
        "    max_batch_age: 250ms\n",
        &format!(
            "    max_batch_age: 250ms\n    shipped_files: move\n    shipped_files_dir: {}\n",
            done.path().display()
        ),
    );
    let config = Config::parse(Path::new("/etc/k.yaml"), &text).expect("valid config");
    assert_eq!(
        config.flows[0].shipped_files,
        ShippedFiles::Move(done.path().to_path_buf())
    );
}

#[test]
fn bad_shipped_files_keys_name_file_line_and_key() {
    let with = |keys: &str| {
        problems(&GOOD.replace(
            "    max_batch_age: 250ms\n",
            &format!("    max_batch_age: 250ms\n{keys}"),
        ))
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    let missing = dir.path().join("missing");
    let cases = [
        (
            "    shipped_files: archive\n".to_owned(),
            "/etc/k.yaml:12:5: flows[0].shipped_files: `archive` is not one of keep, delete, move"
                .to_owned(),
        ),
        (
            "    shipped_files: move\n".to_owned(),
            "/etc/k.yaml:12:5: flows[0].shipped_files: is move, but shipped_files_dir is missing"
                .to_owned(),
        ),
        (
            format!("    shipped_files_dir: {}\n", dir.path().display()),
            "/etc/k.yaml:12:5: flows[0].shipped_files_dir: is set, but shipped_files is not move"
                .to_owned(),
        ),
        (
            format!(
                "    shipped_files: move\n    shipped_files_dir: {}\n",
                file.display()
            ),
            format!(
                "/etc/k.yaml:13:5: flows[0].shipped_files_dir: `{}` is not a directory",
                file.display()
            ),
        ),
        (
            format!(
                "    shipped_files: move\n    shipped_files_dir: {}\n",
                missing.display()
            ),
            format!(
                "/etc/k.yaml:13:5: flows[0].shipped_files_dir: `{}` cannot be used (",
                missing.display()
            ),
        ),
        (
            "    shipped_files: move\n    shipped_files_dir: done\n".to_owned(),
            "/etc/k.yaml:13:5: flows[0].shipped_files_dir: `done` must be an absolute path"
                .to_owned(),
        ),
        (
            "    shipped_files: delete\n    shipped_files_idle: soon\n".to_owned(),
            "/etc/k.yaml:13:5: flows[0].shipped_files_idle: `soon` is not a duration".to_owned(),
        ),
    ];
    for (keys, want) in cases {
        let found = with(&keys);
        assert!(
            found.len() == 1 && found[0].starts_with(&want),
            "{keys}: want {want}\nfound {found:#?}"
        );
    }
}

#[test]
fn a_shipped_files_dir_the_flow_reads_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = GOOD
        .replace(
            "files: /var/log/app/*.log",
            &format!("files: {}/*.log", dir.path().display()),
        )
        .replace(
            "    max_batch_age: 250ms\n",
            &format!(
                "    max_batch_age: 250ms\n    shipped_files: move\n    shipped_files_dir: {}\n",
                dir.path().display()
            ),
        );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("flows[0].shipped_files_dir:")
            && found[0].contains("files moved there would be read again"),
        "{found:#?}"
    );
}

#[test]
fn a_flow_reads_an_event_log_file_instead_of_files() {
    let text = "flows:\n  - name: winlog\n    windows_event_log: { file: /archive/Security.evtx }\n    kinesis_stream: s\n";
    let config = Config::parse(Path::new("/etc/k.yaml"), text).expect("valid");
    let flow = &config.flows[0];
    assert!(flow.files.is_empty());
    assert_eq!(
        flow.event_log,
        Some(EventLogSource::File(PathBuf::from(
            "/archive/Security.evtx"
        )))
    );
    // Shipped once, so from its start unless told otherwise.
    assert_eq!(flow.initial_position, InitialPosition::StartOfFile);
    let told = Config::parse(
        Path::new("/etc/k.yaml"),
        &text.replace(
            "kinesis_stream: s\n",
            "kinesis_stream: s\n    initial_position: end_of_file\n",
        ),
    )
    .expect("valid");
    assert_eq!(told.flows[0].initial_position, InitialPosition::EndOfFile);
}

#[test]
fn event_log_mistakes_name_their_key() {
    let flow = |keys: &str| {
        problems(&format!(
            "flows:\n  - name: winlog\n    kinesis_stream: s\n{keys}"
        ))
        .join("\n")
    };
    let both = flow("    files: /var/log/*.log\n    windows_event_log: { file: /a.evtx }\n");
    assert!(
        both.contains("flows[0].files") && both.contains("not both"),
        "{both}"
    );
    let relative = flow("    windows_event_log: { file: logs/a.evtx }\n");
    assert!(
        relative.contains("flows[0].windows_event_log.file") && relative.contains("absolute"),
        "{relative}"
    );
    let missing = flow("    windows_event_log: {}\n");
    assert!(
        missing.contains("flows[0].windows_event_log.file"),
        "{missing}"
    );
    let line_keys = flow(
        "    windows_event_log: { file: /a.evtx }\n    multiline_start_pattern: '^x'\n    skip_header_lines: 1\n",
    );
    assert!(
        line_keys.contains("flows[0].multiline_start_pattern")
            && line_keys.contains("flows[0].skip_header_lines")
            && line_keys.contains("applies to lines of files"),
        "{line_keys}"
    );
    let unknown = flow("    windows_event_log: { file: /a.evtx, chanel: Security }\n");
    assert!(unknown.contains("chanel"), "{unknown}");
    let neither = flow("");
    assert!(neither.contains("windows_event_log"), "{neither}");
}

#[test]
fn an_event_log_block_takes_a_file_or_a_channel_and_a_query_only_with_a_channel() {
    let flow = |block: &str| {
        problems(&format!(
            "flows:\n  - name: winlog\n    kinesis_stream: s\n    windows_event_log: {block}\n"
        ))
        .join("\n")
    };
    let both = flow("{ file: /a.evtx, channel: Security }");
    assert!(
        both.contains("flows[0].windows_event_log.channel") && both.contains("not both"),
        "{both}"
    );
    let file_query = flow("{ file: /a.evtx, query: '*' }");
    assert!(
        file_query.contains("flows[0].windows_event_log.query")
            && file_query.contains("with `channel`"),
        "{file_query}"
    );
    let empty = flow("{ channel: ' ' }");
    assert!(
        empty.contains("flows[0].windows_event_log.channel") && empty.contains("is empty"),
        "{empty}"
    );
    let empty_query = flow("{ channel: Security, query: '' }");
    assert!(
        empty_query.contains("flows[0].windows_event_log.query")
            && empty_query.contains("is empty"),
        "{empty_query}"
    );
    let structured = flow(
        "{ channel: Security, query: '<QueryList><Query Id=\"0\"><Select Path=\"System\">*</Select></Query></QueryList>' }",
    );
    assert!(
        structured.contains("flows[0].windows_event_log.query")
            && structured.contains("not a structured XML query"),
        "{structured}"
    );
}

#[cfg(not(windows))]
#[test]
fn a_live_channel_needs_windows() {
    let found = problems(
        "flows:\n  - name: security\n    kinesis_stream: s\n    windows_event_log: { channel: Security, query: '*[System[(Level<=3)]]' }\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("flows[0].windows_event_log.channel")
            && found[0].contains("`Security`")
            && found[0].contains("needs Windows")
            && found[0].contains("`file:`"),
        "{found:#?}"
    );
}

#[cfg(windows)]
#[test]
fn a_flow_follows_a_live_channel_from_new_events_unless_told() {
    let text = "flows:\n  - name: security\n    windows_event_log: { channel: Security, query: '*[System[(Level<=3)]]' }\n    kinesis_stream: s\n";
    let config = Config::parse(Path::new("C:\\k.yaml"), text).expect("valid");
    let flow = &config.flows[0];
    assert_eq!(
        flow.event_log,
        Some(EventLogSource::Channel {
            channel: "Security".into(),
            query: Some("*[System[(Level<=3)]]".into()),
        })
    );
    // As the Kinesis Agent for Windows' WindowsEventLogSource: new events only, by default.
    assert_eq!(flow.initial_position, InitialPosition::EndOfFile);
}
