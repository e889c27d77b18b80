//! The Prometheus endpoint, scraped while the real agent ships to the fault server: counters
//! match what was shipped, and `/health` turns unhealthy while the endpoint is down and the
//! files grow, then healthy again once lines flow. `kinship_bytes_behind` keeps up with a file
//! that grows while reading waits for the memory budget, and counts bytes read but not yet
//! acknowledged. `progress_format: kinesis_agent` words progress as the Kinesis Agent does, and a
//! flow far behind is warned about once.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::agent::Agent;
use crate::support::config::{AgentConfig, Flow};
use crate::support::fault_kinesis::{FaultKinesis, Faults};
use crate::support::files::open_log;
use crate::support::http::{free_port, get};
use crate::support::inproc::{Accepted, InProcess};
use crate::support::lines::numbered_range;
use crate::support::wait::holds_within;

const DEADLINE: Duration = Duration::from_secs(60);

/// The value of the sample line `name` (with its labels) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

fn lines(range: std::ops::Range<usize>) -> Vec<u8> {
    numbered_range("metrics", range).concat()
}

fn append(path: &Path, bytes: &[u8]) {
    open_log(path).write_all(bytes).expect("append");
}

#[test]
fn the_endpoint_reports_what_was_shipped_and_a_stuck_flow() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("logs");
    let log = logs.join("app.log");
    let port = free_port();
    let config = AgentConfig::new(dir.path())
        .top("progress_interval: 1s")
        .top(format!(
            "metrics:\n  listen: 127.0.0.1:{port}\n  stuck_after: 2s"
        ))
        .emulator("us-east-1", &server.endpoint())
        .aws_keys(&["request_timeout: 2s", "connect_timeout: 1s"])
        .flow(
            Flow::kinesis("app", format!("{}/*.log", logs.display()), "metered").keys(&[
                "initial_position: start_of_file",
                "max_batch_age: 100ms",
                "poll_interval: 100ms",
                "retry_max_backoff: 500ms",
            ]),
        )
        .write();
    let first = lines(0..3000);
    append(&log, &first);
    let mut agent = Agent::start(&config, dir.path());
    agent.wait_for_log("Metrics endpoint listening", DEADLINE);
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 3000));
    // Acknowledgements reach the counters a moment after the records reach the server.
    let mut scrape = String::new();
    assert!(
        holds_within(DEADLINE, || {
            scrape = get(port, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default();
            // The checkpoint store counts acknowledged bytes a moment after the sink counts
            // them delivered.
            sample(&scrape, "kinship_bytes_behind{flow=\"app\"}") == Some(0.0)
                && sample(&scrape, "kinship_bytes_acknowledged_total{flow=\"app\"}")
                    == Some(first.len() as f64)
        }),
        "{scrape}"
    );
    let count = |name: &str| sample(&scrape, &format!("{name}{{flow=\"app\"}}"));
    assert_eq!(count("kinship_records_read_total"), Some(3000.0));
    assert_eq!(count("kinship_records_sent_total"), Some(3000.0));
    assert_eq!(count("kinship_bytes_read_total"), Some(first.len() as f64));
    assert_eq!(
        count("kinship_bytes_acknowledged_total"),
        Some(first.len() as f64)
    );
    assert_eq!(count("kinship_records_failed_total"), Some(0.0));
    assert_eq!(count("kinship_billing_units_total"), Some(3000.0));
    assert_eq!(count("kinship_partition_keys_cut_total"), Some(0.0));
    let calls = count("kinship_put_latency_seconds_count").expect("latency count");
    assert!(calls >= 6.0, "3,000 records need at least 6 calls: {calls}");
    assert_eq!(
        sample(
            &scrape,
            "kinship_put_latency_seconds_bucket{flow=\"app\",le=\"+Inf\"}"
        ),
        Some(calls)
    );
    assert_eq!(sample(&scrape, "kinship_open_files"), Some(1.0));
    assert_eq!(
        sample(
            &scrape,
            &format!(
                "kinship_file_bytes_unread{{flow=\"app\",file=\"{}\"}}",
                log.display()
            )
        ),
        Some(0.0),
        "{scrape}"
    );
    let (status, body) = get(port, "/health").expect("health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert_eq!(get(port, "/nothing").map(|(status, _)| status), Some(404));

    // The endpoint goes away while the file grows: the flow is stuck after 2 s.
    server.set_down(true);
    append(&log, &lines(3000..4000));
    let mut health = (0, String::new());
    assert!(
        holds_within(DEADLINE, || {
            health = get(port, "/health").unwrap_or_default();
            health.0 == 503
        }),
        "{health:?}"
    );
    assert!(health.1.contains("\"status\":\"stuck\""), "{}", health.1);
    assert!(health.1.contains("\"flow\":\"app\""), "{}", health.1);
    assert!(health.1.contains("\"stuck\":true"), "{}", health.1);

    // Back up: the lines flow and the flow is healthy again.
    server.set_down(false);
    assert!(holds_within(DEADLINE, || get(port, "/health")
        .is_some_and(|(status, _)| status == 200)));
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 4000));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
}

#[test]
fn log_format_json_writes_one_object_per_line_at_the_configured_level() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("logs");
    append(&logs.join("app.log"), &lines(0..100));
    let config = AgentConfig::new(dir.path())
        .tops(&["log_format: json", "log_level: warn,kinship::app=debug"])
        .emulator("us-east-1", &server.endpoint())
        .flow(
            Flow::kinesis("app", format!("{}/*.log", logs.display()), "logged")
                .keys(&["initial_position: start_of_file", "max_batch_age: 100ms"]),
        )
        .write();
    // Without RUST_LOG, the config's level applies.
    let mut agent = Agent::start_with(&config, dir.path(), None, &[], &[("RUST_LOG", "")]);
    agent.wait_for_log("kinship is running.", DEADLINE);
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 100));
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success());
    let output = agent.output();
    let events: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let running = events
        .iter()
        .find(|event| event["message"] == "kinship is running.")
        .expect("the running line");
    assert_eq!(running["level"], "INFO");
    assert_eq!(
        running["flows"], 1,
        "fields are keys of the object: {running}"
    );
    assert_eq!(running["target"], "kinship::app");
    // kinship::app and its modules log at debug and above; everything else only at warn and
    // above. (A target is its module's path: `kinship::app=debug` covers `kinship::app::*`.)
    for event in &events {
        let target = event["target"].as_str().unwrap_or_default();
        let app = target == "kinship::app" || target.starts_with("kinship::app::");
        let level = event["level"].as_str().unwrap_or_default();
        assert!(app || matches!(level, "WARN" | "ERROR"), "{event}");
    }
    assert!(
        !events.iter().any(|event| event["message"] == "Progress."),
        "the progress line is INFO from kinship::metrics"
    );
}

/// The lines `range` of a log whose every line is 100 bytes.
fn long_lines(range: std::ops::Range<usize>) -> Vec<u8> {
    range
        .map(|i| format!("{i:08} {:>90}\n", format!("GET /behind/{i} 200")))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn bytes_behind_follows_a_file_that_grows_while_reading_waits_for_the_memory_budget() {
    // A budget of 1 MiB: the 2 MB already in the file do not fit, so reading soon waits for
    // deliveries, which the held destination never answers.
    behind_follows_a_growing_file_while_reading_waits("memory_budget: 1048576\n", "", 20_000);
}

#[test]
fn bytes_behind_follows_a_file_that_grows_while_reading_waits_for_a_full_pipeline() {
    // The default budget, but one call at a time of 10 records: the sink holds 32 batches, the
    // queues a few read chunks, and reading waits for room in the queue long before the 8 MB
    // already in the file would fill the budget.
    behind_follows_a_growing_file_while_reading_waits(
        "",
        "    max_in_flight: 1\n    max_batch_records: 10\n",
        80_000,
    );
}

/// An in-process agent whose destination holds every call until released, following
/// `logs/app.log` (written with `first_lines` lines before it starts), with its metrics on a
/// port of its own; `agent_keys` and `flow_keys` are added to the config.
struct HeldAgent {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    port: u16,
    accepted: Arc<Accepted>,
    agent: InProcess,
}

fn start_held(agent_keys: &str, flow_keys: &str, first_lines: usize) -> HeldAgent {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("logs");
    let log = logs.join("app.log");
    let port = free_port();
    let config = dir.path().join("kinship.yaml");
    fs::write(
        &config,
        format!(
            "state_dir: {state}\n{agent_keys}metrics:\n  listen: 127.0.0.1:{port}\naws:\n  region: us-east-1\nflows:\n  - name: app\n    files: {logs}/*.log\n    kinesis_stream: behind\n    initial_position: start_of_file\n    max_batch_age: 100ms\n    poll_interval: 50ms\n{flow_keys}",
            state = dir.path().join("state").display(),
            logs = logs.display(),
        ),
    )
    .expect("config");
    append(&log, &long_lines(0..first_lines));
    let accepted = Arc::new(Accepted::default());
    accepted.hold();
    let agent = InProcess::start(&config, &accepted);
    HeldAgent {
        _dir: dir,
        log,
        port,
        accepted,
        agent,
    }
}

/// The agent's scrape now, or nothing while the endpoint is not up yet.
fn scrape_metrics(port: u16) -> String {
    get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// A sample of flow `app`.
fn count(scrape: &str, name: &str) -> Option<f64> {
    sample(scrape, &format!("{name}{{flow=\"app\"}}"))
}

/// Starts an agent whose destination holds every call, on a file of `first_lines` lines that
/// do not all fit in what the agent may hold; lets the file grow while reading waits and checks
/// that `bytes_behind` keeps up; then lets the calls through.
fn behind_follows_a_growing_file_while_reading_waits(
    agent_keys: &str,
    flow_keys: &str,
    first_lines: usize,
) {
    let held = start_held(agent_keys, flow_keys, first_lines);
    let (log, port, accepted) = (&held.log, held.port, &held.accepted);
    let all_lines = first_lines + 30_000;
    let scrape = || scrape_metrics(port);
    let mut seen = String::new();
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape();
            accepted.offered_while_held() > 0
                && sample(&seen, "kinship_memory_budget_used_bytes").is_some_and(|used| used > 0.0)
        }),
        "a call is held: {seen}"
    );

    // The file grows while the tailer waits: nothing is acknowledged, so the whole file is
    // behind, read or not.
    append(log, &long_lines(first_lines..all_lines));
    let size = fs::metadata(log).expect("log size").len() as f64;
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape();
            count(&seen, "kinship_bytes_behind") == Some(size)
        }),
        "bytes_behind reaches the file's size, {size}: {seen}"
    );
    let read = count(&seen, "kinship_bytes_read_total").expect("bytes read");
    assert!(
        read > 0.0 && read < size,
        "reading waits: {read} of {size} read"
    );
    assert_eq!(
        sample(
            &seen,
            &format!(
                "kinship_file_bytes_unread{{flow=\"app\",file=\"{}\"}}",
                log.display()
            )
        ),
        Some(size - read),
        "what was not handed on is unread: {seen}"
    );

    // Delivery resumes: every line arrives and nothing is behind any more.
    accepted.release();
    assert!(holds_within(DEADLINE, || accepted.len() == all_lines));
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape();
            count(&seen, "kinship_bytes_behind") == Some(0.0)
        }),
        "nothing behind once delivered: {seen}"
    );
    assert_eq!(count(&seen, "kinship_bytes_read_total"), Some(size));
    held.agent.stop();
}

#[test]
fn bytes_behind_returns_to_zero_after_a_file_is_truncated_with_records_in_flight() {
    let held = start_held("", "", 1000);
    let (log, port, accepted) = (&held.log, held.port, &held.accepted);
    let scrape = || scrape_metrics(port);
    let mut seen = String::new();
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape();
            accepted.offered_while_held() > 0
                && count(&seen, "kinship_bytes_read_total") == Some(100_000.0)
        }),
        "every line read and a call held: {seen}"
    );
    // Truncated and written again while its records are in flight: their delivery moves no
    // checkpoint any more, yet they are delivered, and nothing stays behind once they are.
    fs::File::create(log).expect("truncate");
    append(log, &long_lines(1000..1010));
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape();
            count(&seen, "kinship_bytes_read_total") == Some(101_000.0)
        }),
        "the new lines are read: {seen}"
    );
    accepted.release();
    assert!(holds_within(DEADLINE, || accepted.len() >= 1010));
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape();
            count(&seen, "kinship_bytes_behind") == Some(0.0)
        }),
        "nothing behind once delivered: {seen}"
    );
    held.agent.stop();
}

#[test]
fn kinesis_agent_progress_lines_and_a_flow_far_behind_warned_once_with_read_bytes_counted() {
    let server = FaultKinesis::start(Faults::default());
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("logs");
    let log = logs.join("app.log");
    let port = free_port();
    let glob = format!("{}/*.log", logs.display());
    let config = AgentConfig::new(dir.path())
        .tops(&[
            "progress_interval: 1s",
            "progress_format: kinesis_agent",
            "behind_warning_bytes: 10000",
        ])
        .top(format!("metrics:\n  listen: 127.0.0.1:{port}"))
        .emulator("us-east-1", &server.endpoint())
        .aws_keys(&["request_timeout: 2s", "connect_timeout: 1s"])
        .flow(Flow::kinesis("app", &glob, "prose").keys(&[
            "initial_position: start_of_file",
            "max_batch_age: 100ms",
            "poll_interval: 100ms",
            "retry_max_backoff: 500ms",
        ]))
        .write();
    // Fewer bytes than the warning's threshold, so the flow is never far behind before the
    // destination goes away.
    let first = lines(0..100);
    assert!(first.len() < 10_000, "{}", first.len());
    append(&log, &first);
    let mut agent = Agent::start(&config, dir.path());
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 100));
    agent.wait_for_log(
        &format!(
            "FileTailer[kinesis:prose:{glob}]: Tailer Progress: Tailer has parsed 100 records ({} bytes), transformed 0 records, skipped 0 records, and has successfully sent 100 records to destination.",
            first.len()
        ),
        DEADLINE,
    );
    let output = agent.wait_for_log(
        &format!(
            "Agent: Progress: 100 records parsed ({} bytes), and 100 records sent successfully to destinations. Uptime: ",
            first.len()
        ),
        DEADLINE,
    );
    assert!(!output.contains("Progress. records_parsed="), "{output}");

    // The destination goes away: what is read next is in calls that fail, read but not
    // acknowledged, and counted behind all the same.
    server.set_down(true);
    let more = lines(100..1100);
    assert!(more.len() > 20_000, "{}", more.len());
    append(&log, &more);
    let mut seen = String::new();
    assert!(
        holds_within(DEADLINE, || {
            seen = scrape_metrics(port);
            count(&seen, "kinship_bytes_read_total") == Some((first.len() + more.len()) as f64)
                && count(&seen, "kinship_calls_failed_total").is_some_and(|failed| failed > 0.0)
        }),
        "every line read, calls failing: {seen}"
    );
    assert_eq!(
        sample(
            &seen,
            &format!(
                "kinship_file_bytes_unread{{flow=\"app\",file=\"{}\"}}",
                log.display()
            )
        ),
        Some(0.0),
        "nothing left unread: {seen}"
    );
    assert_eq!(
        count(&seen, "kinship_bytes_behind"),
        Some(more.len() as f64),
        "read and not acknowledged is behind: {seen}"
    );
    agent.wait_for_log("Flow is far behind its files", DEADLINE);

    server.set_down(false);
    assert!(holds_within(DEADLINE, || server.accepted_len() >= 1100));
    let output = agent.wait_for_log("Flow has caught up with its files", DEADLINE);
    assert_eq!(
        output.matches("Flow is far behind its files").count(),
        1,
        "warned once: {output}"
    );
    // And once more as it stops.
    agent.signal("TERM");
    assert!(agent.wait_exit(DEADLINE).success(), "{}", agent.output());
    let output = agent.output();
    let total = first.len() + more.len();
    assert!(
        output.contains(&format!(
            "Agent: Progress: 1100 records parsed ({total} bytes), and 1100 records sent successfully to destinations."
        )),
        "{output}"
    );
}
