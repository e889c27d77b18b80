//! Record processors in the real agent: a filter, redaction and added fields between the file
//! and the stream; filtered lines are acknowledged, so the checkpoint reaches the file's end.

use std::fs;
use std::io::Write;
use std::time::Duration;

use crate::support::agent::{saved_offset, write_config, Agent};
use crate::support::files::open_log;
use crate::support::stream::{read_back, setup};
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn filter_redact_and_add_metadata_shape_what_is_sent() {
    let (server, dir, runtime) = setup("processed");
    let log = dir.path().join("app.log");
    let mut input = String::new();
    let mut expected = Vec::new();
    for index in 0..300 {
        match index % 3 {
            0 => input.push_str(&format!("{{\"level\":\"DEBUG\",\"seq\":{index}}}\n")),
            1 => {
                // The record's own `env` takes the added value where it stands.
                input.push_str(&format!(
                    "{{\"level\":\"INFO\",\"env\":\"mine\",\"seq\":{index},\"msg\":\"paid by jane@example.com with 4111 1111 1111 1111\"}}\n"
                ));
                expected.push(format!(
                    "{{\"level\":\"INFO\",\"env\":\"test\",\"seq\":{index},\"msg\":\"paid by [REDACTED] with [REDACTED]\",\"file\":\"{}\"}}\n",
                    log.display()
                ));
            }
            _ => {
                // Not JSON: add_metadata cannot add to it; it goes on redacted, as it was
                // before add_metadata.
                input.push_str(&format!("plain {index} from bob@example.org\n"));
                expected.push(format!("plain {index} from [REDACTED]\n"));
            }
        }
    }
    fs::write(&log, "").expect("create log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "processed",
        &log.display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 100ms",
            "processors:",
            "  - type: filter",
            "    exclude: '\"level\":\"DEBUG\"'",
            "  - type: redact",
            "    builtin: [email, card_number]",
            "  - type: add_metadata",
            "    fields: {env: test}",
            "    file: true",
        ],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("kinship is running.", DEADLINE);
    open_log(&log)
        .write_all(input.as_bytes())
        .expect("write lines");
    let delivered = read_back(&runtime, &server, "processed", expected.len());
    let delivered: Vec<String> = delivered
        .iter()
        .map(|record| String::from_utf8_lossy(record).into_owned())
        .collect();
    let first_difference = delivered
        .iter()
        .zip(&expected)
        .position(|(got, want)| got != want);
    assert!(
        delivered.len() == expected.len() && first_difference.is_none(),
        "{} records for {} expected; first difference at {first_difference:?}: {:?} vs {:?}\n{}",
        delivered.len(),
        expected.len(),
        first_difference.and_then(|at| delivered.get(at)),
        first_difference.and_then(|at| expected.get(at)),
        agent.output()
    );
    // The filtered lines were acknowledged too: the checkpoint covers the whole file.
    assert!(
        holds_within(DEADLINE, || saved_offset(dir.path())
            == Some(input.len() as u64)),
        "checkpoint {:?} of {}",
        saved_offset(dir.path()),
        input.len()
    );
    assert!(holds_within(DEADLINE, || agent
        .progress("records_filtered")
        .is_some_and(|filtered| filtered == 100)));
    assert_eq!(agent.progress("records_unparsable"), Some(100));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    assert!(
        agent
            .output()
            .contains("A processor could not parse a record."),
        "{}",
        agent.output()
    );
}

#[test]
fn log_to_json_converts_apache_lines_and_drops_the_rest_when_asked() {
    let (server, dir, runtime) = setup("converted");
    let log = dir.path().join("access.log");
    let mut input = String::new();
    let mut expected = Vec::new();
    for index in 0..200 {
        if index % 10 == 9 {
            input.push_str(&format!("garbage line {index}\n"));
            continue;
        }
        input.push_str(&format!(
            "10.0.0.{} - user{index} [27/Oct/2000:09:27:{:02} -0400] \"GET /item/{index} HTTP/1.1\" 200 {} \"-\" \"curl/8.0\"\n",
            index % 250,
            index % 60,
            index * 7
        ));
        expected.push(format!(
            "{{\"host\":\"10.0.0.{}\",\"ident\":null,\"authuser\":\"user{index}\",\"datetime\":\"27/Oct/2000:09:27:{:02} -0400\",\"request\":\"GET /item/{index} HTTP/1.1\",\"response\":\"200\",\"bytes\":\"{}\",\"referer\":null,\"agent\":\"curl/8.0\"}}\n",
            index % 250,
            index % 60,
            index * 7
        ));
    }
    fs::write(&log, &input).expect("write log");
    let config = write_config(
        dir.path(),
        &server.endpoint,
        "converted",
        &log.display().to_string(),
        &[
            "initial_position: start_of_file",
            "max_in_flight: 1",
            "max_batch_age: 100ms",
            "on_error: drop",
            "processors:",
            "  - type: log_to_json",
            "    format: combined_apache",
        ],
        &[],
    );
    let mut agent = Agent::start(&config, dir.path());
    let delivered: Vec<String> = read_back(&runtime, &server, "converted", expected.len())
        .iter()
        .map(|record| String::from_utf8_lossy(record).into_owned())
        .collect();
    assert_eq!(delivered.len(), expected.len(), "{}", agent.output());
    for (got, want) in delivered.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert!(
        holds_within(DEADLINE, || saved_offset(dir.path())
            == Some(input.len() as u64)),
        "the dropped lines are acknowledged too"
    );
    assert!(holds_within(DEADLINE, || agent
        .progress("records_unparsable")
        == Some(20)));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}
