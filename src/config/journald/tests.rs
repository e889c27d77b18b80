use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, InitialPosition, JournaldSource};

const FLOW: &str = "flows:\n  - name: system\n    kinesis_stream: s\n";

fn parse(keys: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/k.yaml"), &format!("{FLOW}{keys}")).map_err(|error| match error {
        ConfigError::Invalid { problems, .. } => problems
            .iter()
            .map(|problem| format!("{problem:?}"))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    })
}

#[test]
fn a_flow_reads_the_journal_with_its_filters() {
    let config = parse(
        "    journald:\n      directory: /var/log/journal\n      units: [nginx.service, sshd]\n      max_priority: warning\n",
    )
    .expect("valid");
    let flow = &config.flows[0];
    assert!(flow.files.is_empty() && flow.event_log.is_none());
    assert_eq!(
        flow.journald,
        Some(JournaldSource {
            directory: Some(PathBuf::from("/var/log/journal")),
            units: vec!["nginx.service".into(), "sshd".into()],
            max_priority: Some(4),
            journalctl: PathBuf::from("journalctl"),
        })
    );
    // Only new entries unless told otherwise, as for files.
    assert_eq!(flow.initial_position, InitialPosition::EndOfFile);
    let bare = parse("    journald: {}\n").expect("valid");
    let journal = bare.flows[0].journald.as_ref().expect("journald");
    assert!(journal.directory.is_none() && journal.units.is_empty());
    assert_eq!(journal.max_priority, None);
}

#[test]
fn a_priority_is_a_name_or_a_number() {
    for (written, expected) in [
        ("emerg", 0),
        ("crit", 2),
        ("error", 3),
        ("ERR", 3),
        ("warn", 4),
        ("info", 6),
        ("debug", 7),
        ("\"0\"", 0),
        ("\"5\"", 5),
    ] {
        let config = parse(&format!("    journald: {{ max_priority: {written} }}\n"))
            .unwrap_or_else(|problems| panic!("{written}: {problems}"));
        let journal = config.flows[0].journald.as_ref().expect("journald");
        assert_eq!(journal.max_priority, Some(expected), "{written}");
    }
}

#[test]
fn journald_mistakes_name_their_key() {
    let told = |keys: &str| parse(keys).err().unwrap_or_default();
    let priority = told("    journald: { max_priority: loud }\n");
    assert!(
        priority.contains("flows[0].journald.max_priority") && priority.contains("emerg"),
        "{priority}"
    );
    let eight = told("    journald: { max_priority: \"8\" }\n");
    assert!(eight.contains("flows[0].journald.max_priority"), "{eight}");
    let relative = told("    journald: { directory: log/journal }\n");
    assert!(
        relative.contains("flows[0].journald.directory") && relative.contains("absolute"),
        "{relative}"
    );
    let unit = told("    journald: { units: [nginx.service, 'a b'] }\n");
    assert!(unit.contains("flows[0].journald.units[1]"), "{unit}");
    let empty_program = told("    journald: { journalctl: '' }\n");
    assert!(
        empty_program.contains("flows[0].journald.journalctl"),
        "{empty_program}"
    );
    let both = told("    files: /var/log/*.log\n    journald: {}\n");
    assert!(
        both.contains("flows[0].files") && both.contains("not both"),
        "{both}"
    );
    let event_log = told("    windows_event_log: { file: /a.evtx }\n    journald: {}\n");
    assert!(
        event_log.contains("flows[0].windows_event_log") && event_log.contains("not both"),
        "{event_log}"
    );
    let line_keys = told("    journald: {}\n    multiline_start_pattern: '^x'\n");
    assert!(
        line_keys.contains("flows[0].multiline_start_pattern")
            && line_keys.contains("reads the journal"),
        "{line_keys}"
    );
    let unknown = told("    journald: { unit: nginx.service }\n");
    assert!(unknown.contains("unit"), "{unknown}");
}

#[test]
fn a_flow_says_what_it_reads() {
    let system = parse("    journald: {}\n").expect("valid");
    assert_eq!(system.flows[0].reads(), "the system journal");
    let directory = parse("    journald: { directory: /var/log/journal }\n").expect("valid");
    assert_eq!(
        directory.flows[0].reads(),
        "the journal in /var/log/journal"
    );
    let files = Config::parse(
        Path::new("/etc/k.yaml"),
        "flows:\n  - name: app\n    files: [/var/log/a/*.log, /var/log/b.log]\n    kinesis_stream: s\n",
    )
    .expect("valid");
    assert_eq!(files.flows[0].reads(), "/var/log/a/*.log, /var/log/b.log");
    let evtx = parse("    windows_event_log: { file: /archive/Security.evtx }\n").expect("valid");
    assert_eq!(
        evtx.flows[0].reads(),
        "the event log file /archive/Security.evtx"
    );
}
