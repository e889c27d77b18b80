use std::path::{Path, PathBuf};

use serde_json::Value;

use super::endpoint::endpoint_parts;
use super::jsonc::parse_object;
use super::{looks_like_agent_json, migrate};

#[test]
fn comments_are_stripped_outside_strings() {
    let text = "{ // a comment\n \"a\": \"x // y\", /* block\n */ \"b\": 1 }";
    let map = parse_object(text).expect("object");
    assert_eq!(map.get("a"), Some(&Value::from("x // y")));
    assert_eq!(map.get("b"), Some(&Value::from(1)));
    assert!(looks_like_agent_json(Path::new("/etc/x.conf"), "// c\n{}"));
    assert!(!looks_like_agent_json(
        Path::new("/etc/x.yaml"),
        "flows: []"
    ));
}

#[test]
fn every_global_and_flow_key_becomes_its_kinship_key() {
    let text = r#"{
      "checkpointFile": "/var/run/aws-kinesis-agent/checkpoints",
      "checkpointTimeToLiveDays": "3",
      "shutdownTimeoutMillis": 20000,
      "awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "secret",
      "assumeRoleARN": "arn:aws:iam::123456789012:role/shipper", "assumeRoleExternalId": "ext",
      "kinesis.endpoint": "kinesis.eu-west-1.amazonaws.com",
      "firehose.endpoint": "https://firehose.eu-central-1.amazonaws.com",
      "cloudwatch.namespace": "MyAgent", "cloudwatch.metricsBufferTimeMillis": "0x2710",
      "log.statusReportingPeriodSeconds": 10, "log.level": "DEBUG",
      "connectionTimeoutMillis": 3000, "socketTimeoutMillis": "40000",
      "useHttpGzip": true, "somethingElse": 1,
      "checkpoints.queryTimeoutSeconds": 30, "checkpoints.connectionTimeoutSeconds": "5",
      "flows": [
        { "filePattern": "/var/log/a/*.log", "kinesisStream": "a", "partitionKeyOption": "RANDOM",
          "maxBufferSizeRecords": "100", "maxBufferSizeBytes": 1048576, "retryInitialBackoffMillis": 200,
          "retryMaxBackoffMillis": "5000", "minTimeBetweenFilePollsMillis": 50, "skipHeaderLines": 1,
          "truncatedRecordTerminator": "...\n", "publishQueueCapacity": 10 },
        { "filePattern": "/var/log/b/*.log", "deliveryStream": "b", "aggregatedRecordSizeBytes": 65536 }
      ]
    }"#;
    let migration = migrate(Path::new("/etc/aws-kinesis/agent.json"), text).expect("migrates");
    let config =
        super::super::Config::parse(Path::new("/etc/kinship/kinship.yaml"), &migration.yaml)
            .unwrap_or_else(|error| panic!("{error}\n{}", migration.yaml));
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/kinship"));
    assert_eq!(
        config.checkpoint_expiry,
        std::time::Duration::from_secs(3 * 86400)
    );
    assert_eq!(config.shutdown_grace, std::time::Duration::from_secs(20));
    assert_eq!(config.progress_interval, std::time::Duration::from_secs(10));
    assert_eq!(config.log_level, "debug");
    let cloudwatch = config
        .cloudwatch
        .as_ref()
        .expect("cloudwatch on by default");
    assert_eq!(
        (cloudwatch.namespace.as_str(), cloudwatch.interval),
        ("MyAgent", std::time::Duration::from_secs(10))
    );
    let (a, b) = (&config.flows[0], &config.flows[1]);
    assert_eq!(
        (a.name.as_str(), b.name.as_str()),
        ("kinesis-a", "firehose-b")
    );
    assert_eq!(a.aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(b.aws.region.as_deref(), Some("eu-central-1"));
    assert_eq!(a.aws.endpoint_url, None);
    assert_eq!(a.aws.connect_timeout, std::time::Duration::from_secs(3));
    assert_eq!(a.aws.request_timeout, std::time::Duration::from_secs(40));
    let role = a.aws.assume_role.as_ref().expect("role");
    assert_eq!(role.role_arn, "arn:aws:iam::123456789012:role/shipper");
    assert_eq!(role.external_id.as_ref().map(|id| id.expose()), Some("ext"));
    assert!(config.holds_secret_keys);
    assert_eq!(a.initial_position, super::super::InitialPosition::EndOfFile);
    assert_eq!(a.max_batch_age, std::time::Duration::from_secs(60));
    assert_eq!((a.max_batch_records, a.max_batch_bytes), (100, 1048576));
    assert_eq!(
        a.retry_initial_backoff,
        std::time::Duration::from_millis(200)
    );
    assert_eq!(a.retry_max_backoff, std::time::Duration::from_secs(5));
    assert_eq!(a.poll_interval, std::time::Duration::from_millis(50));
    assert_eq!(a.skip_header_lines, 1);
    assert_eq!(a.truncated_record_terminator, "...\n");
    assert_eq!(
        b.combine,
        super::super::Combine::Pack {
            record_bytes: 65536
        }
    );
    let warned = migration.warnings.join("\n");
    for key in [
        "useHttpGzip: ignored",
        "somethingElse: not a Kinesis Agent key",
        "flows[0].publishQueueCapacity: ignored",
        "checkpointFile:",
        "checkpoints.queryTimeoutSeconds: ignored; kinship keeps its checkpoints in a file",
        "checkpoints.connectionTimeoutSeconds: ignored; kinship keeps its checkpoints in a file",
    ] {
        assert!(warned.contains(key), "{key} in {warned}");
    }
    assert!(!warned.contains("checkpoints.queryTimeoutSeconds: not a Kinesis Agent key"));
}

#[test]
fn endpoints_become_regions_or_urls() {
    assert_eq!(
        endpoint_parts("kinesis.eu-west-1.amazonaws.com", "kinesis"),
        (Some("eu-west-1".into()), None)
    );
    assert_eq!(
        endpoint_parts("https://firehose.us-east-2.amazonaws.com", "firehose"),
        (Some("us-east-2".into()), None)
    );
    assert_eq!(
        endpoint_parts("http://127.0.0.1:4567", "kinesis"),
        (None, Some("http://127.0.0.1:4567".into()))
    );
}

#[test]
fn values_that_look_like_secrets_are_not_echoed() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let text = format!(
        r#"{{ "flows": [ {{ "filePattern": "/var/log/*.log", "kinesisStream": "a",
          "initialPosition": "{secret}", "maxBufferSizeRecords": "{secret}" }} ] }}"#
    );
    let problems =
        migrate(Path::new("/etc/aws-kinesis/agent.json"), &text).expect_err("values refused");
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "`wJal… (40 characters)` is not START_OF_FILE or END_OF_FILE",
            "\"wJal… (40 characters)\" is not a whole number",
        ]
    );
}

#[test]
fn a_match_pattern_keeps_the_dash_rule_of_its_log_format() {
    let text = r#"{ "flows": [ { "filePattern": "/var/log/*.log", "kinesisStream": "a",
      "dataProcessingOptions": [
        { "optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG",
          "matchPattern": "(\\S+) (\\S+)", "customFieldNames": ["a", "b"] },
        { "optionName": "LOGTOJSON", "logFormat": "SYSLOG",
          "matchPattern": "(\\S+) (\\S+)", "customFieldNames": ["a", "b"] },
        { "optionName": "LOGTOJSON", "logFormat": "APACHEERRORLOG" } ] } ] }"#;
    let migration = migrate(Path::new("/etc/aws-kinesis/agent.json"), text).expect("migrates");
    let config =
        super::super::Config::parse(Path::new("/etc/kinship/kinship.yaml"), &migration.yaml)
            .unwrap_or_else(|error| panic!("{error}\n{}", migration.yaml));
    let dash_as_null: Vec<bool> = config.flows[0]
        .processors
        .iter()
        .map(|spec| match spec {
            super::super::ProcessorSpec::LogToJson { dash_as_null, .. } => *dash_as_null,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(dash_as_null, [true, false, true], "{}", migration.yaml);
}

#[test]
fn tag_instance_becomes_the_instance_dimension_and_the_progress_format_is_offered() {
    let text = r#"{ "cloudwatch.tagInstance": true,
      "flows": [ { "filePattern": "/var/log/*.log", "kinesisStream": "a" } ] }"#;
    let migration = migrate(Path::new("/etc/aws-kinesis/agent.json"), text).expect("migrates");
    assert!(migration.warnings.is_empty(), "{:?}", migration.warnings);
    let config =
        super::super::Config::parse(Path::new("/etc/kinship/kinship.yaml"), &migration.yaml)
            .unwrap_or_else(|error| panic!("{error}\n{}", migration.yaml));
    let cloudwatch = config.cloudwatch.expect("cloudwatch on by default");
    assert_eq!(
        cloudwatch.instance,
        super::super::InstanceDimension::FromMetadata
    );
    // Offered, commented out: kinship's own line stays the default.
    assert!(
        migration
            .yaml
            .contains("\n# progress_format: kinesis_agent\n"),
        "{}",
        migration.yaml
    );
    assert_eq!(
        config.progress_format,
        super::super::ProgressFormat::Kinship
    );
    let without = migrate(
        Path::new("/etc/aws-kinesis/agent.json"),
        r#"{ "flows": [ { "filePattern": "/var/log/*.log", "kinesisStream": "a" } ] }"#,
    )
    .expect("migrates");
    assert!(!without.yaml.contains("tag_instance"), "{}", without.yaml);
}

#[test]
fn unknown_keys_of_a_processing_option_are_warned_by_name() {
    let text = r#"{ "flows": [ { "filePattern": "/var/log/*.log", "kinesisStream": "a",
      "dataProcessingOptions": [
        { "optionName": "LOGTOJSON", "logFormat": "COMMONAPACHELOG", "customFieldName": ["a"],
          "jsonFormat": "COMPACT" },
        { "optionName": "ADDEC2METADATA", "metadataTTL": 600 },
        { "optionName": "SINGLELINE", "parseOption": ["NO_TRIM"] } ] } ] }"#;
    let migration = migrate(Path::new("/etc/aws-kinesis/agent.json"), text).expect("migrates");
    assert_eq!(
        migration.warnings,
        [
            "flows[0].dataProcessingOptions[0].customFieldName: not a key of LOGTOJSON (the Kinesis Agent ignores it too; misspelt?); ignored",
            "flows[0].dataProcessingOptions[2].parseOption: not a key of SINGLELINE (the Kinesis Agent ignores it too; misspelt?); ignored",
        ]
    );
}

#[test]
fn a_metadata_ttl_below_the_shortest_refresh_is_raised_with_a_warning() {
    let text = r#"{ "flows": [ { "filePattern": "/var/log/*.log", "kinesisStream": "a",
      "dataProcessingOptions": [ { "optionName": "ADDEC2METADATA", "metadataTTL": 10 } ] } ] }"#;
    let migration = migrate(Path::new("/etc/aws-kinesis/agent.json"), text).expect("migrates");
    assert_eq!(
        migration.warnings,
        ["flows[0].dataProcessingOptions[0].metadataTTL: 10 s is below kinship's shortest refresh of the instance metadata; it is read again every 60 s instead"]
    );
    assert!(
        migration.yaml.contains("refresh: 60s"),
        "{}",
        migration.yaml
    );
    assert!(
        migration.yaml.contains("tags: true") && migration.yaml.contains("ec2:DescribeTags"),
        "{}",
        migration.yaml
    );
}
