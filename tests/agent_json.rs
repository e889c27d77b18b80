//! A Kinesis Agent agent.json (with a flow in agent.d/) run as it is, then migrated to YAML
//! with `kinship migrate` and run again: both deliver the same records, converted as the
//! Kinesis Agent would, to moto's Kinesis.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::agent::{run_command, Agent};
use crate::support::moto::Moto;
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(120);

/// Writes the logs, an agent.json and agent.d/app.json for `moto` under `dir`.
fn write_agent_config(dir: &Path, moto: &Moto) -> std::path::PathBuf {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("logs");
    let mut access = String::new();
    for index in 0..50 {
        access.push_str(&format!(
            "10.1.1.{index} - - [03/Feb/2024:04:05:{:02} +0000] \"GET /page/{index} HTTP/1.1\" 200 {} \"https://example.com/\" \"agent/{index}\"\n",
            index % 60,
            100 + index
        ));
        if index % 10 == 0 {
            access.push_str("this line is not an access log line\n");
        }
    }
    fs::write(logs.join("access.log"), access).expect("access log");
    let mut app = String::new();
    for index in 0..30 {
        app.push_str(&format!(
            "2024-02-03 04:05:{:02} job {index} failed\n    at step {index}\n    at main\n",
            index % 60
        ));
    }
    // The last record is complete once the next one starts, or once the file has been idle
    // for multiline_flush_timeout (5 s by default).
    app.push_str("2024-02-03 05:00:00 end\n");
    fs::write(logs.join("app.log"), app).expect("app log");
    let endpoint = moto.endpoint();
    let agent_json = dir.join("agent.json");
    fs::write(
        &agent_json,
        format!(
            r#"{{
  // As an existing Kinesis Agent install has it.
  "checkpointFile": "{state}/checkpoints",
  "cloudwatch.emitMetrics": "false",
  "kinesis.endpoint": "{endpoint}",
  "kinesis.region": "us-east-1",
  "sts.endpoint": "{endpoint}",
  "maxSendingThreads": "4",
  "flows": [
    {{
      "filePattern": "{logs}/access*.log",
      "kinesisStream": "web",
      "initialPosition": "START_OF_FILE",
      "maxBufferAgeMillis": "200",
      "dataProcessingOptions": [
        {{ "optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG" }},
        {{ "optionName": "ADDMETADATA", "metadata": {{ "env": "test" }} }}
      ]
    }}
  ]
}}
"#,
            state = dir.join("state").display(),
            logs = logs.display(),
        ),
    )
    .expect("agent.json");
    fs::create_dir_all(dir.join("agent.d")).expect("agent.d");
    fs::write(
        dir.join("agent.d/app.json"),
        format!(
            r#"{{ "flows": [ {{
  "filePattern": "{logs}/app.log", "kinesisStream": "app", "initialPosition": "START_OF_FILE",
  "maxBufferAgeMillis": 200, "multiLineStartPattern": "^\\d{{4}}-",
  "dataProcessingOptions": [ {{ "optionName": "SINGLELINE" }} ]
}} ] }}
"#,
            logs = logs.display(),
        ),
    )
    .expect("agent.d/app.json");
    agent_json
}

fn expected_web() -> Vec<String> {
    (0..50)
        .map(|index| {
            let converted = format!(
                "{{\"host\":\"10.1.1.{index}\",\"ident\":null,\"authuser\":null,\"datetime\":\"03/Feb/2024:04:05:{:02} +0000\",\"request\":\"GET /page/{index} HTTP/1.1\",\"response\":\"200\",\"bytes\":\"{}\",\"referer\":\"https://example.com/\",\"agent\":\"agent/{index}\"}}",
                index % 60,
                100 + index
            );
            format!(
                "{{\"metadata\":{{\"env\":\"test\"}},\"data\":{}}}\n",
                serde_json::Value::from(converted)
            )
        })
        .collect()
}

fn expected_app() -> Vec<String> {
    let mut expected: Vec<String> = (0..30)
        .map(|index| {
            format!(
                "2024-02-03 04:05:{:02} job {index} failedat step {index}at main\n",
                index % 60
            )
        })
        .collect();
    // Sent once the file has been idle for multiline_flush_timeout: waited for, so that the
    // result does not depend on how soon the agent is stopped.
    expected.push("2024-02-03 05:00:00 end\n".to_owned());
    expected
}

/// Runs the agent on `config` until both streams hold what they should; returns what they hold.
fn ship(moto: &Moto, config: &Path, dir: &Path) -> (Vec<String>, Vec<String>, String) {
    let mut agent = Agent::start(config, dir);
    let read = |stream: &str| -> Vec<String> {
        moto.kinesis_records(stream)
            .into_iter()
            .map(|(_, data)| String::from_utf8_lossy(&data).into_owned())
            .collect()
    };
    let done = holds_within(DEADLINE, || {
        read("web").len() >= 50 && read("app").len() >= 31
    });
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert!(done, "not every record arrived:\n{}", agent.output());
    (read("web"), read("app"), agent.output())
}

#[test]
fn an_agent_json_and_its_migration_deliver_the_kinesis_agents_records() {
    let first = Moto::start();
    first.create_kinesis_stream("web", 1);
    first.create_kinesis_stream("app", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_json = write_agent_config(dir.path(), &first);

    let (web, app, output) = ship(&first, &agent_json, dir.path());
    assert_eq!(web, expected_web(), "{output}");
    assert_eq!(app, expected_app(), "{output}");
    assert!(
        output.contains("Kinesis Agent key not carried over: maxSendingThreads: ignored"),
        "{output}"
    );
    // The checkpoints moved from the agent's checkpointFile to kinship's state_dir beside it.
    assert!(dir.path().join("state/checkpoints.json").is_file());

    // The same config, migrated, against a fresh server.
    let second = Moto::start();
    second.create_kinesis_stream("web", 1);
    second.create_kinesis_stream("app", 1);
    let again = tempfile::tempdir().expect("temp dir");
    let agent_json = write_agent_config(again.path(), &second);
    let migrated = run_command(&["migrate", &agent_json.display().to_string()]);
    assert_eq!(migrated.status.code(), Some(0), "{migrated:?}");
    let yaml = String::from_utf8(migrated.stdout).expect("utf-8");
    assert!(
        yaml.contains("# Not carried over: maxSendingThreads: ignored"),
        "{yaml}"
    );
    assert!(yaml.contains("on_error: drop"), "{yaml}");
    fs::remove_file(&agent_json).expect("remove agent.json");
    let config = again.path().join("kinship.yaml");
    fs::write(&config, &yaml).expect("kinship.yaml");
    let (web, app, output) = ship(&second, &config, again.path());
    assert_eq!(web, expected_web(), "{output}\n{yaml}");
    assert_eq!(app, expected_app(), "{output}\n{yaml}");
}

#[test]
fn keys_that_would_change_the_records_are_errors_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_json = dir.path().join("agent.json");
    fs::write(
        &agent_json,
        "{\n  \"flows\": [\n    {\n      \"filePattern\": \"/var/log/x.log\",\n      \"kinesisStream\": \"s\",\n      \"dataProcessingOptions\": [ { \"optionName\": \"ADDBRACKETS\" } ]\n    }\n  ]\n}\n",
    )
    .expect("agent.json");
    let output = run_command(&["check", "--config", &agent_json.display().to_string()]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:6: flows[0].dataProcessingOptions[0].optionName: `ADDBRACKETS` has no kinship processor",
            agent_json.display()
        )),
        "{stderr}"
    );
}

#[test]
fn checkpoint_database_timeouts_are_agent_keys_and_unknown_option_keys_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_json = dir.path().join("agent.json");
    fs::write(
        &agent_json,
        r#"{
  "checkpoints.queryTimeoutSeconds": 30,
  "checkpoints.connectionTimeoutSeconds": 5,
  "flows": [ { "filePattern": "/var/log/x.log", "kinesisStream": "s",
    "dataProcessingOptions": [ { "optionName": "CSVTOJSON", "customFieldNames": ["a"],
                                 "delimeter": ";" } ] } ]
}
"#,
    )
    .expect("agent.json");
    let migrated = run_command(&["migrate", &agent_json.display().to_string()]);
    assert_eq!(migrated.status.code(), Some(0), "{migrated:?}");
    let yaml = String::from_utf8(migrated.stdout).expect("utf-8");
    for expected in [
        "# Not carried over: checkpoints.queryTimeoutSeconds: ignored; kinship keeps its checkpoints in a file, with no database to time out",
        "# Not carried over: checkpoints.connectionTimeoutSeconds: ignored; kinship keeps its checkpoints in a file, with no database to time out",
        "# Not carried over: flows[0].dataProcessingOptions[0].delimeter: not a key of CSVTOJSON",
    ] {
        assert!(yaml.contains(expected), "{expected} in\n{yaml}");
    }
    assert!(!yaml.contains("not a Kinesis Agent key"), "{yaml}");
}
